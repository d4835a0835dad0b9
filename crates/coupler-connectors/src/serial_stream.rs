//! The Serial Stream connector (versions 1–3): reads and writes a serial port on request,
//! and optionally polls it.
//!
//! Topics, with `#` the port path without its leading `/`: requests on
//! `serial/<core thing>/read/#` and `serial/<core thing>/write/#`, answers on
//! `serial/<core thing>/status/#` and read data on `serial/<core thing>/read_response/#`.
//! See `docs/connectors/serial-stream.md`.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::{SerialPortBuilderExt, SerialStream as Port};
use tracing::Level;

use crate::{BoxFuture, Connector, ConnectorError, Context, Kind};

pub static KIND: Kind = Kind {
    name: "SerialStream",
    versions: 1..=3,
    build,
};

/// Largest read a request or the poller may ask for.
pub const MAX_READ: usize = 63_994;
/// Largest write.
pub const MAX_WRITE: usize = 128_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Ascii,
    /// Base64 on the wire ("hex" in the connector's contract).
    Hex,
}

impl Encoding {
    fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("ascii") {
            Some(Self::Ascii)
        } else if s.eq_ignore_ascii_case("hex") {
            Some(Self::Hex)
        } else {
            None
        }
    }

    fn encode(self, bytes: &[u8]) -> String {
        match self {
            Self::Ascii => String::from_utf8_lossy(bytes).into_owned(),
            Self::Hex => base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }

    fn decode(self, data: &str) -> Result<Vec<u8>, String> {
        match self {
            Self::Ascii => Ok(data.as_bytes().to_vec()),
            Self::Hex => base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| format!("data is not Base64: {e}")),
        }
    }
}

#[derive(Debug, Clone)]
struct Polling {
    length: usize,
    interval: Duration,
    encoding: Encoding,
}

#[derive(Debug, Clone)]
struct SerialStream {
    port: PathBuf,
    baud: u32,
    timeout: Duration,
    parity: tokio_serial::Parity,
    flow: tokio_serial::FlowControl,
    polling: Option<Polling>,
    read_topic: String,
    write_topic: String,
    status_topic: String,
    response_topic: String,
}

fn flag(ctx: &Context, name: &str) -> Result<bool, String> {
    match ctx.param(name).unwrap_or("") {
        "" => Ok(false),
        v if v.eq_ignore_ascii_case("true") => Ok(true),
        v if v.eq_ignore_ascii_case("false") => Ok(false),
        v => Err(format!("{name}: {v:?} must be true or false")),
    }
}

/// A required numeric parameter.
fn number<T>(ctx: &Context, name: &str, range: std::ops::RangeInclusive<T>) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    ctx.number(name, range)?
        .ok_or_else(|| format!("{name} is required"))
}

fn build(ctx: &Context) -> Result<Box<dyn Connector>, String> {
    let port = ctx.device_path("SerialPort", "SerialPort-ResourceId")?;
    let parity = match ctx.param("Parity").unwrap_or("N") {
        "" | "N" | "n" => tokio_serial::Parity::None,
        "E" | "e" => tokio_serial::Parity::Even,
        "O" | "o" => tokio_serial::Parity::Odd,
        other => {
            return Err(format!(
                "Parity {other:?} (mark or space) is not supported on this core's serial driver; use N, E or O"
            ));
        }
    };
    let flow = match (flag(ctx, "RtsCts")?, flag(ctx, "XonXoff")?) {
        (true, true) => return Err("RtsCts and XonXoff cannot both be true".into()),
        (true, false) => tokio_serial::FlowControl::Hardware,
        (false, true) => tokio_serial::FlowControl::Software,
        (false, false) => tokio_serial::FlowControl::None,
    };
    let polling = if flag(ctx, "PollingRead")? {
        Some(Polling {
            length: number(ctx, "PollingReadLength", 1..=MAX_READ)?,
            interval: Duration::from_secs(number(ctx, "PollingReadInterval", 1..=999)?),
            encoding: Encoding::parse(ctx.param("PollingReadType").unwrap_or(""))
                .ok_or("PollingReadType must be ascii or hex")?,
        })
    } else {
        None
    };
    let suffix = port.to_string_lossy();
    let suffix = suffix.trim_start_matches('/');
    let thing = ctx.core_thing();
    Ok(Box::new(SerialStream {
        baud: number(ctx, "BaudRate", 110..=230_400)?,
        timeout: Duration::from_secs(number(ctx, "Timeout", 1..=59)?),
        parity,
        flow,
        polling,
        read_topic: format!("serial/{thing}/read/{suffix}"),
        write_topic: format!("serial/{thing}/write/{suffix}"),
        status_topic: format!("serial/{thing}/status/{suffix}"),
        response_topic: format!("serial/{thing}/read_response/{suffix}"),
        port,
    }))
}

impl Connector for SerialStream {
    fn run(self: Box<Self>, ctx: Context) -> BoxFuture<Result<(), ConnectorError>> {
        Box::pin(async move { self.serve(ctx).await })
    }
}

/// A request's outcome: the answer to publish, and whether the port must be reopened.
type Outcome = Result<(), (String, bool)>;

impl SerialStream {
    async fn serve(&self, ctx: Context) -> Result<(), ConnectorError> {
        let mut port = tokio_serial::new(self.port.to_string_lossy(), self.baud)
            .parity(self.parity)
            .flow_control(self.flow)
            .data_bits(tokio_serial::DataBits::Eight)
            .stop_bits(tokio_serial::StopBits::One)
            .open_native_async()
            .map_err(|e| ConnectorError::Failed(format!("opening {}: {e}", self.port.display())))?;
        // pyserial, which the Greengrass connector used, does not lock the port either.
        let _ = port.set_exclusive(false);
        ctx.log(
            Level::INFO,
            &format!("{} open at {} baud", self.port.display(), self.baud),
        );
        let mut poll = self.polling.as_ref().map(|p| {
            let mut t = tokio::time::interval(p.interval);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            tokio::select! {
                m = ctx.recv() => {
                    let Some(m) = m else { return Ok(()) };
                    self.handle(&ctx, &mut port, &m.topic, &m.payload).await?;
                }
                _ = async { poll.as_mut().expect("polling").tick().await }, if poll.is_some() => {
                    let p = self.polling.as_ref().expect("polling");
                    match read(&mut port, p.length, self.timeout).await {
                        Ok(data) if data.is_empty() => {}
                        Ok(data) => {
                            let body = json!({ "data": p.encoding.encode(&data) });
                            self.publish(&ctx, &self.response_topic, &body).await;
                        }
                        Err(e) => {
                            return Err(ConnectorError::Io { what: format!("polling {}", self.port.display()), source: e });
                        }
                    }
                }
            }
        }
    }

    async fn publish(&self, ctx: &Context, topic: &str, body: &Value) {
        if let Err(e) = ctx.publish(topic, body.to_string()).await {
            ctx.log(Level::ERROR, &format!("cannot publish on {topic}: {e}"));
        }
    }

    /// Answer one request; an `Err` means the port failed and must be reopened.
    async fn handle(
        &self,
        ctx: &Context,
        port: &mut Port,
        topic: &coupler_model::TopicName,
        payload: &[u8],
    ) -> Result<(), ConnectorError> {
        let (id, outcome) = match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(req)) => {
                let id = req.get("id").cloned();
                let outcome = match id {
                    Some(Value::String(_)) | None => {
                        if topic.as_str() == self.read_topic {
                            self.read_request(ctx, port, &req, id.as_ref()).await
                        } else if topic.as_str() == self.write_topic {
                            self.write_request(port, &req).await
                        } else {
                            Err((
                                format!(
                                    "topic {topic} is not one of this connector's ({} and {})",
                                    self.read_topic, self.write_topic
                                ),
                                false,
                            ))
                        }
                    }
                    Some(_) => Err(("id must be a string".into(), false)),
                };
                (id.filter(Value::is_string), outcome)
            }
            Ok(_) => (
                None,
                Err(("the payload must be a JSON object".into(), false)),
            ),
            Err(e) => (None, Err((format!("the payload is not JSON: {e}"), false))),
        };
        let mut status = Map::new();
        let port_failed = match outcome {
            Ok(()) => {
                // Reads answer on read_response; only writes get a success status.
                if topic.as_str() != self.write_topic {
                    return Ok(());
                }
                status.insert("response".into(), json!({ "status": "success" }));
                false
            }
            Err((message, port_failed)) => {
                ctx.rejected(&message);
                status.insert(
                    "response".into(),
                    json!({ "status": "fail", "error_message": message }),
                );
                port_failed
            }
        };
        if let Some(id) = id {
            status.insert("id".into(), id);
        }
        self.publish(ctx, &self.status_topic, &Value::Object(status))
            .await;
        if port_failed {
            return Err(ConnectorError::Failed(format!(
                "{} failed; reopening it",
                self.port.display()
            )));
        }
        Ok(())
    }

    async fn read_request(
        &self,
        ctx: &Context,
        port: &mut Port,
        req: &Map<String, Value>,
        id: Option<&Value>,
    ) -> Outcome {
        let length = match req.get("readLength") {
            Some(Value::String(s)) => s.parse::<usize>().ok(),
            Some(Value::Number(n)) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
            _ => return Err(("readLength is required".into(), false)),
        }
        .filter(|n| (1..=MAX_READ).contains(n))
        .ok_or_else(|| (format!("readLength must be from 1 to {MAX_READ}"), false))?;
        let encoding = encoding_of(req)?;
        let data = read(port, length, self.timeout)
            .await
            .map_err(|e| (format!("Could not read from port: {e}"), true))?;
        if data.is_empty() {
            return Err((
                format!(
                    "Could not read from port: no data within {}s",
                    self.timeout.as_secs()
                ),
                false,
            ));
        }
        let mut body = Map::new();
        body.insert("data".into(), encoding.encode(&data).into());
        if let Some(id) = id {
            body.insert("id".into(), id.clone());
        }
        self.publish(ctx, &self.response_topic, &Value::Object(body))
            .await;
        Ok(())
    }

    async fn write_request(&self, port: &mut Port, req: &Map<String, Value>) -> Outcome {
        let Some(Value::String(data)) = req.get("data") else {
            return Err(("data is required and must be a string".into(), false));
        };
        let bytes = encoding_of(req)?.decode(data).map_err(|m| (m, false))?;
        if bytes.len() > MAX_WRITE {
            return Err((
                format!(
                    "data is {} bytes; at most {MAX_WRITE} can be written",
                    bytes.len()
                ),
                false,
            ));
        }
        let write = async {
            port.write_all(&bytes).await?;
            port.flush().await
        };
        match tokio::time::timeout(self.timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err((format!("Could not write to port: {e}"), true)),
            Err(_) => Err((
                format!(
                    "Could not write to port: not done within {}s",
                    self.timeout.as_secs()
                ),
                false,
            )),
        }
    }
}

fn encoding_of(req: &Map<String, Value>) -> Result<Encoding, (String, bool)> {
    req.get("type")
        .and_then(Value::as_str)
        .and_then(Encoding::parse)
        .ok_or_else(|| ("type is required: ascii or hex".to_owned(), false))
}

/// Read up to `length` bytes, stopping early when `timeout` passes (as pyserial's
/// `read(size)` with a timeout does).
async fn read(port: &mut Port, length: usize, timeout: Duration) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; length];
    let mut got = 0;
    let deadline = tokio::time::Instant::now() + timeout;
    while got < length {
        match tokio::time::timeout_at(deadline, port.read(&mut buf[got..])).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => got += n,
            Ok(Err(e)) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}
