//! The Modbus-RTU Protocol Adapter connector (versions 1–3): performs the Modbus RTU
//! requests that arrive on `modbus/adapter/request` on a serial bus, and publishes each
//! device's answer, or why there is none, on `modbus/adapter/response`.
//!
//! A request is parsed and checked once, on arrival; a bad one is answered at once and never
//! reaches the bus. Good ones wait in a bounded queue for the bus, which carries one
//! transaction at a time. The port is opened on demand and reopened after any failure, so the
//! bus comes back by itself when a USB adapter is replugged. See `docs/connectors/modbus-rtu.md`.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_modbus::prelude::{Client, Request as Pdu, Response as Reply, Slave, SlaveContext};
use tokio_serial::{SerialPort, SerialPortBuilderExt};
use tracing::Level;

use crate::{BoxFuture, Connector, ConnectorError, Context, Kind};

pub static KIND: Kind = Kind {
    name: "ModbusRTUProtocolAdapter",
    versions: 1..=3,
    build,
};

pub const REQUEST_TOPIC: &str = "modbus/adapter/request";
pub const RESPONSE_TOPIC: &str = "modbus/adapter/response";

/// The documented answer when the bus gave nothing back: no device, no port, a timeout or a
/// garbled frame. The details go to the connector's log.
pub const NO_RESPONSE: &str = "[Input/Output] No Response received from the remote unit";

/// How a serial line is set up.
#[derive(Debug, Clone)]
struct Line {
    path: PathBuf,
    baud: u32,
    parity: tokio_serial::Parity,
    stop_bits: tokio_serial::StopBits,
    data_bits: tokio_serial::DataBits,
}

impl Line {
    fn open(&self) -> Result<tokio_modbus::client::Context, String> {
        let port = tokio_serial::new(self.path.to_string_lossy(), self.baud)
            .data_bits(self.data_bits)
            .parity(self.parity)
            .stop_bits(self.stop_bits)
            .flow_control(tokio_serial::FlowControl::None)
            .open_native_async()
            .map_err(|e| e.to_string())?;
        // Some drivers (ptys among them) accept a setting and quietly drop it; a bus at the
        // wrong framing would answer garbage, so refuse it and say which setting.
        let kept = (port.data_bits(), port.parity(), port.stop_bits());
        if let (Ok(d), Ok(p), Ok(s)) = kept
            && (d, p, s) != (self.data_bits, self.parity, self.stop_bits)
        {
            return Err(format!(
                "the port does not keep the line settings: asked for {:?} data bits, parity {:?}, {:?} stop bits; it has {d:?}, {p:?}, {s:?}",
                self.data_bits, self.parity, self.stop_bits
            ));
        }
        // Bytes left from before (a late reply, line noise) would be read as the next reply.
        port.clear(tokio_serial::ClearBuffer::Input)
            .map_err(|e| e.to_string())?;
        Ok(tokio_modbus::prelude::rtu::attach(port))
    }
}

#[derive(Debug)]
struct ModbusRtu {
    line: Line,
    timeout: Duration,
    /// Bus silence kept before each request (the Modbus t3.5 unless configured).
    silence: Duration,
    queue: usize,
    /// Versions 1–2 ran on Python 2.7, whose type names read `<type 'int'>`.
    py2: bool,
}

fn required<T>(ctx: &Context, name: &str, range: RangeInclusive<T>) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    ctx.number(name, range)?
        .ok_or_else(|| format!("{name} is required"))
}

fn build(ctx: &Context) -> Result<Box<dyn Connector>, String> {
    let path = ctx.device_path("ModbusSerialPort", "ModbusSerialPort-ResourceId")?;
    let baud: u32 = required(ctx, "BaudRate", 300..=921_600)?;
    let (parity, parity_bits) = match ctx.param("Parity").unwrap_or("N") {
        "N" => (tokio_serial::Parity::None, 0),
        "E" => (tokio_serial::Parity::Even, 1),
        "O" => (tokio_serial::Parity::Odd, 1),
        other => return Err(format!("Parity: {other:?} must be N, E or O")),
    };
    let (stop_bits, stop) = match ctx.param("StopBits").unwrap_or("1") {
        "1" => (tokio_serial::StopBits::One, 1),
        "2" => (tokio_serial::StopBits::Two, 2),
        other => return Err(format!("StopBits: {other:?} must be 1 or 2")),
    };
    let size: u32 = required(ctx, "ByteSize", 5..=8)?;
    let data_bits = match size {
        5 => tokio_serial::DataBits::Five,
        6 => tokio_serial::DataBits::Six,
        7 => tokio_serial::DataBits::Seven,
        _ => tokio_serial::DataBits::Eight,
    };
    let silence = match ctx.number::<u64>("InterFrameDelay", 0..=1_000_000)? {
        Some(us) => Duration::from_micros(us),
        None => t35(baud, 1 + size + parity_bits + stop),
    };
    Ok(Box::new(ModbusRtu {
        line: Line {
            path,
            baud,
            parity,
            stop_bits,
            data_bits,
        },
        timeout: Duration::from_millis(required(ctx, "ResponseTimeoutMs", 10..=60_000)?),
        silence,
        queue: required(ctx, "RequestQueueSize", 1..=10_000)?,
        py2: ctx.version() < 3,
    }))
}

/// The Modbus inter-frame gap: 3.5 character times, and a fixed 1750 µs above 19200 baud
/// (Modbus over Serial Line v1.02, §2.5.1.1).
pub fn t35(baud: u32, bits_per_char: u32) -> Duration {
    if baud > 19_200 {
        Duration::from_micros(1750)
    } else {
        Duration::from_nanos(3_500_000_000 * u64::from(bits_per_char) / u64::from(baud))
    }
}

impl Connector for ModbusRtu {
    fn run(self: Box<Self>, ctx: Context) -> BoxFuture<Result<(), ConnectorError>> {
        Box::pin(async move {
            self.serve(&ctx).await;
            Ok(())
        })
    }
}

impl ModbusRtu {
    async fn serve(&self, ctx: &Context) {
        ctx.log(
            Level::INFO,
            &format!(
                "{} at {} baud, {} µs between frames, replies within {} ms, {} requests may wait",
                self.line.path.display(),
                self.line.baud,
                self.silence.as_micros(),
                self.timeout.as_millis(),
                self.queue
            ),
        );
        let (tx, mut rx) = mpsc::channel::<Job>(self.queue);
        // De-duplication keys of the requests waiting for the bus.
        let waiting = Mutex::new(HashSet::<String>::new());
        let intake = async {
            while let Some(m) = ctx.recv().await {
                let job = match parse(&m.payload, self.py2) {
                    Ok(job) => job,
                    Err(refusal) => {
                        ctx.rejected(&refusal.message);
                        publish(ctx, refusal.reply()).await;
                        continue;
                    }
                };
                if let Some(key) = &job.key
                    && !waiting.lock().insert(key.clone())
                {
                    ctx.log(
                        Level::DEBUG,
                        &format!("request {} is already waiting; not sent twice", job.id),
                    );
                    continue;
                }
                if let Err(mpsc::error::TrySendError::Full(job)) = tx.try_send(job) {
                    if let Some(key) = &job.key {
                        waiting.lock().remove(key);
                    }
                    let message = format!(
                        "Request queue full: {} requests are waiting for the bus; this one was not sent",
                        self.queue
                    );
                    ctx.rejected(&message);
                    publish(ctx, job.refused(message)).await;
                }
            }
        };
        // Answers are published off the bus loop, so the next request goes out meanwhile.
        let (answers, mut to_publish) = mpsc::channel::<Value>(self.queue);
        let bus = async {
            let mut bus = Bus {
                line: &self.line,
                client: None,
                down: false,
                quiet_from: Instant::now(),
            };
            while let Some(job) = rx.recv().await {
                if let Some(key) = &job.key {
                    waiting.lock().remove(key);
                }
                let outcome = bus.transact(ctx, &job, self.silence, self.timeout).await;
                if answers.send(job.answer(outcome)).await.is_err() {
                    break;
                }
            }
        };
        let publisher = async {
            while let Some(answer) = to_publish.recv().await {
                publish(ctx, answer).await;
            }
        };
        // Intake ends when the connector is stopped; whatever waits for the bus is dropped.
        tokio::select! {
            () = intake => {}
            () = bus => {}
            () = publisher => {}
        }
    }
}

async fn publish(ctx: &Context, body: Value) {
    if let Err(e) = ctx.publish(RESPONSE_TOPIC, body.to_string()).await {
        ctx.log(
            Level::ERROR,
            &format!("cannot publish on {RESPONSE_TOPIC}: {e}"),
        );
    }
}

/// The serial bus: opened when first needed and after any failure.
struct Bus<'a> {
    line: &'a Line,
    client: Option<tokio_modbus::client::Context>,
    /// Whether the port is known to be unusable (logged once per outage).
    down: bool,
    /// When the bus last went quiet.
    quiet_from: Instant,
}

/// What the bus gave for one request.
#[derive(Debug)]
enum Outcome {
    Success(Value),
    /// A Modbus exception reply: the exception code.
    Exception(u8),
    NoResponse,
}

impl Bus<'_> {
    async fn transact(
        &mut self,
        ctx: &Context,
        job: &Job,
        silence: Duration,
        timeout: Duration,
    ) -> Outcome {
        if self.client.is_none() {
            match self.line.open() {
                Ok(c) => {
                    if std::mem::take(&mut self.down) {
                        ctx.log(
                            Level::INFO,
                            &format!("{} is back", self.line.path.display()),
                        );
                    }
                    self.client = Some(c);
                }
                Err(e) => {
                    if !std::mem::replace(&mut self.down, true) {
                        ctx.log(
                            Level::ERROR,
                            &format!(
                                "cannot open {}: {e}; answering No Response until it opens",
                                self.line.path.display()
                            ),
                        );
                    }
                    return Outcome::NoResponse;
                }
            }
        }
        let client = self.client.as_mut().expect("opened above");
        // Only when the gap is not over yet: tokio's timer would round even a past deadline
        // up to its next millisecond tick.
        let quiet_until = self.quiet_from + silence;
        if quiet_until > Instant::now() {
            tokio::time::sleep_until(quiet_until).await;
        }
        client.set_slave(Slave(job.device));
        let result = tokio::time::timeout(timeout, client.call(job.pdu.clone())).await;
        self.quiet_from = Instant::now();
        let failure = match result {
            Ok(Ok(Ok(reply))) => return Outcome::Success(payload(&job.pdu, reply)),
            Ok(Ok(Err(exception))) => return Outcome::Exception(exception.into()),
            Ok(Err(e)) => format!("{e}"),
            Err(_) => format!("no reply within {} ms", timeout.as_millis()),
        };
        ctx.log(
            Level::WARN,
            &format!(
                "{} to device {} ({}): {failure}",
                job.operation,
                job.device,
                self.line.path.display()
            ),
        );
        // A late or partial reply must not be taken for the next one: start afresh.
        self.client = None;
        Outcome::NoResponse
    }
}

/// A request that passed its checks, ready for the bus.
#[derive(Debug)]
struct Job {
    id: Value,
    device: u8,
    operation: &'static str,
    pdu: Pdu<'static>,
    /// Identifies the same request sent again while the first still waits.
    key: Option<String>,
}

impl Job {
    fn answer(&self, outcome: Outcome) -> Value {
        let (status, payload, error) = match outcome {
            Outcome::Success(payload) => ("success", payload, None),
            Outcome::Exception(code) => (
                "fail",
                json!({
                    "function_code": self.pdu.function_code().value() | 0x80,
                    "exception_code": code,
                }),
                Some(("Exception", "Internal Error".to_owned())),
            ),
            Outcome::NoResponse => (
                "fail",
                json!({ "error": NO_RESPONSE }),
                Some(("No Response", NO_RESPONSE.to_owned())),
            ),
        };
        response(
            Some(&self.id),
            Some(&Value::from(self.device)),
            Some(&Value::from(self.operation)),
            status,
            payload,
            error,
        )
    }

    fn refused(&self, message: String) -> Value {
        Refusal {
            id: Some(self.id.clone()),
            device: Some(self.device.into()),
            operation: Some(self.operation.into()),
            message,
        }
        .reply()
    }
}

/// A request answered without touching the bus, and why.
#[derive(Debug)]
struct Refusal {
    id: Option<Value>,
    device: Option<Value>,
    operation: Option<Value>,
    message: String,
}

impl Refusal {
    fn reply(self) -> Value {
        response(
            self.id.as_ref(),
            self.device.as_ref(),
            self.operation.as_ref(),
            "fail",
            json!({ "error": self.message }),
            Some(("No Response", self.message)),
        )
    }
}

/// The documented response shape; fields the request did not give are left out.
fn response(
    id: Option<&Value>,
    device: Option<&Value>,
    operation: Option<&Value>,
    status: &str,
    payload: Value,
    error: Option<(&str, String)>,
) -> Value {
    let mut r = Map::new();
    r.insert("status".into(), status.into());
    if let Some((error, message)) = error {
        r.insert("error_message".into(), message.into());
        r.insert("error".into(), error.into());
    }
    if let Some(d) = device {
        r.insert("device".into(), d.clone());
    }
    if let Some(o) = operation {
        r.insert("operation".into(), o.clone());
    }
    r.insert("payload".into(), payload);
    let mut top = Map::new();
    top.insert("response".into(), Value::Object(r));
    if let Some(id) = id {
        top.insert("id".into(), id.clone());
    }
    Value::Object(top)
}

/// The success payload for `reply` to `pdu`.
fn payload(pdu: &Pdu<'_>, reply: Reply) -> Value {
    let function_code = pdu.function_code().value();
    let bits = |mut bits: Vec<bool>| {
        // Replies carry whole bytes of bits; keep the ones asked for.
        if let Pdu::ReadCoils(_, n) | Pdu::ReadDiscreteInputs(_, n) = pdu {
            bits.truncate(usize::from(*n));
        }
        bits.into_iter().map(u8::from).collect::<Vec<_>>()
    };
    match reply {
        Reply::ReadCoils(b) | Reply::ReadDiscreteInputs(b) => {
            json!({ "function_code": function_code, "bits": bits(b) })
        }
        Reply::ReadHoldingRegisters(r)
        | Reply::ReadInputRegisters(r)
        | Reply::ReadWriteMultipleRegisters(r) => {
            json!({ "function_code": function_code, "registers": r })
        }
        Reply::WriteSingleCoil(address, value) => {
            json!({ "function_code": function_code, "address": address, "value": value })
        }
        Reply::WriteSingleRegister(address, value) => {
            json!({ "function_code": function_code, "address": address, "value": value })
        }
        Reply::WriteMultipleCoils(address, count)
        | Reply::WriteMultipleRegisters(address, count) => {
            json!({ "function_code": function_code, "address": address, "count": count })
        }
        Reply::MaskWriteRegister(address, and_mask, or_mask) => json!({
            "function_code": function_code,
            "address": address,
            "and_mask": and_mask,
            "or_mask": or_mask,
        }),
        // call() refuses replies that do not match the request's function code.
        other => json!({ "function_code": function_code, "reply": format!("{other:?}") }),
    }
}

/// The operations, with the Modbus limits on how much one request may carry.
pub const OPERATIONS: &[&str] = &[
    "ReadCoilsRequest",
    "ReadDiscreteInputsRequest",
    "ReadHoldingRegistersRequest",
    "ReadInputRegistersRequest",
    "WriteSingleCoilRequest",
    "WriteSingleRegisterRequest",
    "WriteMultipleCoilsRequest",
    "WriteMultipleRegistersRequest",
    "MaskWriteRegisterRequest",
    "ReadWriteMultipleRegistersRequest",
];

/// Parse and check a request; a refusal names the field at fault.
fn parse(payload: &[u8], py2: bool) -> Result<Job, Refusal> {
    let refuse = |message: String| Refusal {
        id: None,
        device: None,
        operation: None,
        message,
    };
    let top = match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(top)) => top,
        Ok(_) => return Err(refuse("The payload must be a JSON object".into())),
        Err(e) => return Err(refuse(format!("The payload is not JSON: {e}"))),
    };
    let id = top.get("id").cloned();
    let Some(Value::Object(req)) = top.get("request") else {
        let mut r = refuse(match top.get("request") {
            None => "Missing request field".into(),
            Some(v) => mistyped("request", "dict", v, py2),
        });
        r.id = id;
        return Err(r);
    };
    let fields = Fields { req, py2 };
    let refuse = |message: String| Refusal {
        id: id.clone(),
        device: req.get("device").cloned(),
        operation: req.get("operation").cloned(),
        message,
    };
    let id_value = match &id {
        Some(v @ Value::String(_)) => v.clone(),
        Some(v) => return Err(refuse(mistyped("id", "str", v, py2))),
        None => return Err(refuse("Missing id field".into())),
    };
    let operation = match req.get("operation") {
        Some(Value::String(s)) => OPERATIONS.iter().copied().find(|o| o == s).ok_or_else(|| {
            refuse(format!(
                "Invalid operation field. {s:?} is not one of {}",
                OPERATIONS.join(", ")
            ))
        })?,
        Some(v) => return Err(refuse(mistyped("operation", "str", v, py2))),
        None => return Err(refuse("Missing operation field".into())),
    };
    let device = u8::try_from(fields.int("device", 0..=247).map_err(&refuse)?).expect("≤ 247");
    let pdu = fields.pdu(operation).map_err(&refuse)?;
    let key = serde_json::to_string(req)
        .ok()
        .map(|r| format!("{}\u{0}{r}", id_value.as_str().unwrap_or_default()));
    Ok(Job {
        id: id_value,
        device,
        operation,
        pdu,
        key,
    })
}

/// The message for a field of the wrong JSON type, in the Python wording the Greengrass
/// connector used.
fn mistyped(field: &str, expected: &str, got: &Value, py2: bool) -> String {
    let got = match got {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int",
        Value::Number(_) => "float",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    };
    let kind = if py2 { "type" } else { "class" };
    format!("Invalid {field} field. Expected <{kind} '{expected}'>, got <{kind} '{got}'>")
}

/// The fields of one request object.
struct Fields<'a> {
    req: &'a Map<String, Value>,
    py2: bool,
}

type Checked<T> = Result<T, String>;

impl Fields<'_> {
    fn get(&self, name: &str) -> Checked<&Value> {
        self.req
            .get(name)
            .ok_or_else(|| format!("Missing {name} field"))
    }

    /// An integer within `range` (JSON `true` is not an integer here).
    fn int(&self, name: &str, range: RangeInclusive<i64>) -> Checked<i64> {
        let v = self.get(name)?;
        let n = v
            .as_i64()
            // Past i64: surely out of range, and said so below.
            .or_else(|| v.as_u64().map(|_| i64::MAX))
            .ok_or_else(|| mistyped(name, "int", v, self.py2))?;
        if range.contains(&n) {
            Ok(n)
        } else {
            Err(format!(
                "Invalid {name} field. Expected a value from {} to {}, got {v}",
                range.start(),
                range.end()
            ))
        }
    }

    fn word(&self, name: &str) -> Checked<u16> {
        self.int(name, 0..=0xFFFF)
            .map(|n| u16::try_from(n).expect("in range"))
    }

    /// A start address and a count that stay within the 65536 addresses.
    fn span(&self, address: &str, count: &str, limit: u16) -> Checked<(u16, u16)> {
        let a = self.word(address)?;
        let n = u16::try_from(self.int(count, 1..=i64::from(limit))?).expect("in range");
        Self::fits(a, usize::from(n), count)?;
        Ok((a, n))
    }

    fn fits(address: u16, count: usize, field: &str) -> Checked<()> {
        if usize::from(address) + count > 0x1_0000 {
            return Err(format!(
                "Invalid {field} field. {count} from address {address} runs past the last address, 65535"
            ));
        }
        Ok(())
    }

    fn coil(&self, v: &Value, name: &str) -> Checked<bool> {
        match v {
            Value::Bool(b) => Ok(*b),
            Value::Number(n) if n.as_u64() == Some(0) => Ok(false),
            Value::Number(n) if n.as_u64() == Some(1) => Ok(true),
            _ => Err(format!(
                "Invalid {name} field. Expected true, false, 0 or 1, got {v}"
            )),
        }
    }

    /// A list of 1 to `limit` items, each read by `item`.
    fn list<T>(
        &self,
        name: &str,
        limit: usize,
        item: impl Fn(&Value) -> Option<T>,
        what: &str,
    ) -> Checked<Vec<T>> {
        let v = self.get(name)?;
        let Value::Array(items) = v else {
            return Err(mistyped(name, "list", v, self.py2));
        };
        if items.is_empty() || items.len() > limit {
            return Err(format!(
                "Invalid {name} field. Expected 1 to {limit} values, got {}",
                items.len()
            ));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, x)| {
                item(x).ok_or_else(|| {
                    format!("Invalid {name} field. Item {i} is {x}; expected {what}")
                })
            })
            .collect()
    }

    fn registers(&self, name: &str, limit: usize) -> Checked<Vec<u16>> {
        self.list(
            name,
            limit,
            |x| x.as_u64().and_then(|n| u16::try_from(n).ok()),
            "an integer from 0 to 65535",
        )
    }

    fn pdu(&self, operation: &str) -> Checked<Pdu<'static>> {
        Ok(match operation {
            "ReadCoilsRequest" => {
                let (a, n) = self.span("address", "count", 2000)?;
                Pdu::ReadCoils(a, n)
            }
            "ReadDiscreteInputsRequest" => {
                let (a, n) = self.span("address", "count", 2000)?;
                Pdu::ReadDiscreteInputs(a, n)
            }
            "ReadHoldingRegistersRequest" => {
                let (a, n) = self.span("address", "count", 125)?;
                Pdu::ReadHoldingRegisters(a, n)
            }
            "ReadInputRegistersRequest" => {
                let (a, n) = self.span("address", "count", 125)?;
                Pdu::ReadInputRegisters(a, n)
            }
            "WriteSingleCoilRequest" => {
                let a = self.word("address")?;
                Pdu::WriteSingleCoil(a, self.coil(self.get("value")?, "value")?)
            }
            "WriteSingleRegisterRequest" => {
                Pdu::WriteSingleRegister(self.word("address")?, self.word("value")?)
            }
            "WriteMultipleCoilsRequest" => {
                let a = self.word("address")?;
                let coils = self.list(
                    "values",
                    1968,
                    |x| self.coil(x, "values").ok(),
                    "true, false, 0 or 1",
                )?;
                Self::fits(a, coils.len(), "values")?;
                Pdu::WriteMultipleCoils(a, Cow::Owned(coils))
            }
            "WriteMultipleRegistersRequest" => {
                let a = self.word("address")?;
                let words = self.registers("values", 123)?;
                Self::fits(a, words.len(), "values")?;
                Pdu::WriteMultipleRegisters(a, Cow::Owned(words))
            }
            "MaskWriteRegisterRequest" => Pdu::MaskWriteRegister(
                self.word("address")?,
                self.word("and_mask")?,
                self.word("or_mask")?,
            ),
            "ReadWriteMultipleRegistersRequest" => {
                let (ra, rn) = self.span("read_address", "read_count", 125)?;
                let wa = self.word("write_address")?;
                let words = self.registers("write_registers", 121)?;
                Self::fits(wa, words.len(), "write_registers")?;
                Pdu::ReadWriteMultipleRegisters(ra, rn, wa, Cow::Owned(words))
            }
            other => unreachable!("{other} is in OPERATIONS"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(body: Value) -> String {
        parse(body.to_string().as_bytes(), false)
            .expect_err("refused")
            .message
    }

    #[test]
    fn every_operation_parses_into_its_pdu() {
        let cases = [
            (
                json!({"operation": "ReadCoilsRequest", "device": 1, "address": 3, "count": 9}),
                Pdu::ReadCoils(3, 9),
            ),
            (
                json!({"operation": "MaskWriteRegisterRequest", "device": 2, "address": 4, "and_mask": 242, "or_mask": 37}),
                Pdu::MaskWriteRegister(4, 242, 37),
            ),
            (
                json!({"operation": "WriteMultipleCoilsRequest", "device": 1, "address": 0, "values": [1, 0, true]}),
                Pdu::WriteMultipleCoils(0, Cow::Owned(vec![true, false, true])),
            ),
            (
                json!({"operation": "ReadWriteMultipleRegistersRequest", "device": 1, "read_address": 1, "read_count": 2, "write_address": 3, "write_registers": [7, 8]}),
                Pdu::ReadWriteMultipleRegisters(1, 2, 3, Cow::Owned(vec![7, 8])),
            ),
        ];
        for (req, pdu) in cases {
            let job = parse(
                json!({"request": req, "id": "x"}).to_string().as_bytes(),
                false,
            )
            .expect("valid");
            assert_eq!(job.pdu, pdu);
        }
    }

    #[test]
    fn bad_fields_are_named() {
        let base = |extra: Value| {
            let mut r = json!({"operation": "ReadHoldingRegistersRequest", "device": 1});
            for (k, v) in extra.as_object().expect("object") {
                r[k] = v.clone();
            }
            json!({"request": r, "id": "r"})
        };
        assert_eq!(
            refusal(base(json!({"address": "1", "count": 1}))),
            "Invalid address field. Expected <class 'int'>, got <class 'str'>"
        );
        assert_eq!(refusal(base(json!({"address": 1}))), "Missing count field");
        assert!(
            refusal(base(json!({"address": 1, "count": 126}))).starts_with("Invalid count field")
        );
        assert!(
            refusal(base(json!({"address": 65535, "count": 2}))).contains("runs past"),
            "span"
        );
        assert!(refusal(base(json!({"address": true, "count": 1}))).contains("'bool'"));
        assert!(
            refusal(json!({"request": {"operation": "Nope", "device": 1}, "id": "r"}))
                .starts_with("Invalid operation field")
        );
        assert!(refusal(json!({"request": {"operation": "ReadCoilsRequest", "device": 248, "address": 0, "count": 1}, "id": "r"}))
            .starts_with("Invalid device field"));
        assert_eq!(
            refusal(
                json!({"request": {"operation": "ReadCoilsRequest", "device": 1, "address": 0, "count": 1}})
            ),
            "Missing id field"
        );
        let py2 = parse(
            base(json!({"address": "1", "count": 1}))
                .to_string()
                .as_bytes(),
            true,
        )
        .expect_err("refused");
        assert_eq!(
            py2.message,
            "Invalid address field. Expected <type 'int'>, got <type 'str'>"
        );
    }

    #[test]
    fn refusals_echo_what_was_given() {
        let r = parse(br#"{"request": {"operation": "ReadCoilsRequest", "device": 1, "address": "x", "count": 1}, "id": "t1"}"#, false)
            .expect_err("refused")
            .reply();
        assert_eq!(r["id"], "t1");
        assert_eq!(r["response"]["status"], "fail");
        assert_eq!(r["response"]["error"], "No Response");
        assert_eq!(r["response"]["device"], 1);
        assert_eq!(r["response"]["operation"], "ReadCoilsRequest");
        assert_eq!(
            r["response"]["payload"]["error"],
            r["response"]["error_message"]
        );
        let r = parse(b"not json", false).expect_err("refused").reply();
        assert!(r.get("id").is_none());
    }

    #[test]
    fn exception_answer_sets_the_high_bit() {
        let job = parse(br#"{"request": {"operation": "ReadCoilsRequest", "device": 1, "address": 9, "count": 1}, "id": "e"}"#, false)
            .expect("valid");
        let r = job.answer(Outcome::Exception(2));
        assert_eq!(r["response"]["payload"]["function_code"], 129);
        assert_eq!(r["response"]["payload"]["exception_code"], 2);
        assert_eq!(r["response"]["error"], "Exception");
    }

    #[test]
    fn read_bits_keep_only_those_asked_for() {
        let p = payload(&Pdu::ReadCoils(0, 3), Reply::ReadCoils(vec![true; 8]));
        assert_eq!(p["bits"], json!([1, 1, 1]));
    }

    #[test]
    fn t35_follows_the_serial_line_spec() {
        assert_eq!(t35(9600, 11), Duration::from_nanos(4_010_416));
        assert_eq!(t35(115_200, 11), Duration::from_micros(1750));
    }
}
