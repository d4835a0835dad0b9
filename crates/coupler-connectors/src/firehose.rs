//! The Kinesis Firehose connector (versions 1–5): sends the records that arrive on
//! `kinesisfirehose/message` (JSON) and `kinesisfirehose/message/binary/#` (raw bytes) to a
//! delivery stream, and reports each record's outcome on `kinesisfirehose/message/status`.
//!
//! Version 1 sends each record alone (`PutRecord`) and answers it alone. Versions 2–5 hold
//! records in a bounded queue per stream and send them every `PublishInterval` seconds (at
//! once with `0`) with `PutRecordBatch`, at most 500 records and 4 MB a call, answering each
//! batch in one status message. A record that fails for a passing reason (connection, 5xx,
//! throttling) goes back to the end of its queue and rides the next batch, a bounded number of
//! times; then it is answered with the error, counted, and dropped. A bad message is answered
//! at once and never sent. See `docs/connectors/kinesis-firehose.md`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, mpsc};
use tracing::Level;

use crate::aws::{self, Body, CallError, Client};
use crate::{BoxFuture, Connector, ConnectorError, Context, Kind};

pub static KIND: Kind = Kind {
    name: "KinesisFirehose",
    versions: 1..=5,
    build,
};

pub const INPUT_TOPIC: &str = "kinesisfirehose/message";
pub const BINARY_PREFIX: &str = "kinesisfirehose/message/binary/";
pub const STATUS_TOPIC: &str = "kinesisfirehose/message/status";

/// Firehose's limits: a record's data, the records and the bytes of one `PutRecordBatch`.
pub const MAX_RECORD_BYTES: usize = 1_024_000;
pub const MAX_BATCH_RECORDS: usize = 500;
/// The 4 MiB request limit, less room for the JSON around the Base64 data.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024 - 64 * 1024;
/// Times a record is sent in a batch before it is dropped; each send is itself up to three
/// HTTP attempts.
pub const MAX_SENDS: u32 = 3;
/// Version 1's queue of records waiting for their `PutRecord`.
pub const V1_QUEUE: usize = 256;
/// Streams that may have records waiting at once (a message may name any stream).
pub const MAX_STREAMS: usize = 32;
/// The pause after a batch that failed for a passing reason, doubling up to the cap.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const MAX_PAUSE: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Firehose {
    default_stream: String,
    /// `None` for version 1: one `PutRecord` per message.
    batching: Option<Batching>,
}

#[derive(Debug, Clone, Copy)]
struct Batching {
    queue_size: usize,
    memory_bytes: usize,
    interval: Duration,
}

fn build(ctx: &Context) -> Result<Box<dyn Connector>, String> {
    let default_stream = ctx
        .param("DefaultDeliveryStreamArn")
        .ok_or("DefaultDeliveryStreamArn is required")?
        .to_owned();
    aws::check_param(
        KIND.name,
        ctx.version(),
        "DefaultDeliveryStreamArn",
        &default_stream,
    )
    .map_err(|e| format!("DefaultDeliveryStreamArn: {e}"))?;
    let batching = if ctx.version() >= 2 {
        let queue_size = ctx
            .number::<usize>("DeliveryStreamQueueSize", 2000..=10_000_000)?
            .ok_or("DeliveryStreamQueueSize is required")?;
        let memory_kb = ctx
            .number::<usize>("MemorySize", 1..=64 * 1024 * 1024)?
            .ok_or("MemorySize is required")?;
        let interval = ctx
            .number::<u64>("PublishInterval", 0..=900)?
            .ok_or("PublishInterval is required")?;
        Some(Batching {
            queue_size,
            memory_bytes: memory_kb * 1024,
            interval: Duration::from_secs(interval),
        })
    } else {
        None
    };
    Ok(Box::new(Firehose {
        default_stream,
        batching,
    }))
}

/// A record that passed its checks.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    id: Option<String>,
    stream: String,
    data: Bytes,
    sends: u32,
}

/// A message answered without being sent.
#[derive(Debug, PartialEq)]
struct Refusal {
    id: Option<String>,
    message: String,
}

/// Parse and check a message on `topic`; a refusal says which field is wrong.
fn parse(topic: &str, payload: &Bytes, default: &str, version: u32) -> Result<Record, Refusal> {
    if let Some(suffix) = topic.strip_prefix(BINARY_PREFIX) {
        let id = (!suffix.is_empty()).then(|| suffix.to_owned());
        return checked_size(Record {
            id,
            stream: default.to_owned(),
            data: payload.clone(),
            sends: 0,
        });
    }
    let refuse = |id: Option<String>, message: &str| Refusal {
        id,
        message: message.to_owned(),
    };
    let top = match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(top)) => top,
        Ok(_) => return Err(refuse(None, "The payload must be a JSON object")),
        Err(e) => return Err(refuse(None, &format!("The payload is not JSON: {e}"))),
    };
    let id = match top.get("id") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(refuse(None, "id must be a string")),
    };
    let req = match top.get("request") {
        Some(Value::Object(r)) => r,
        Some(_) => return Err(refuse(id, "request must be an object")),
        None => return Err(refuse(id, "request is required")),
    };
    let data = match req.get("data") {
        Some(Value::String(s)) => Bytes::from(s.clone().into_bytes()),
        Some(_) => return Err(refuse(id, "request.data must be a string")),
        None => return Err(refuse(id, "request.data is required")),
    };
    let stream = match req.get("delivery_stream_arn") {
        None => default.to_owned(),
        Some(Value::String(s)) => {
            if aws::check_param(KIND.name, version, "DefaultDeliveryStreamArn", s).is_err() {
                return Err(refuse(id, "Delivery stream ARN is invalid"));
            }
            s.clone()
        }
        Some(_) => return Err(refuse(id, "request.delivery_stream_arn must be a string")),
    };
    checked_size(Record {
        id,
        stream,
        data,
        sends: 0,
    })
}

fn checked_size(r: Record) -> Result<Record, Refusal> {
    if r.data.len() > MAX_RECORD_BYTES {
        return Err(Refusal {
            message: format!(
                "the record is {} bytes; Firehose takes at most {MAX_RECORD_BYTES}",
                r.data.len()
            ),
            id: r.id,
        });
    }
    Ok(r)
}

/// The stream name and region in a delivery stream ARN (checked at parse).
fn stream_name(arn: &str) -> (&str, &str) {
    let (region, resource) = aws::arn_region_and_resource(arn).unwrap_or_default();
    (
        resource.strip_prefix("deliverystream/").unwrap_or(resource),
        region,
    )
}

// ---- status shapes --------------------------------------------------------------------------

fn with_id(mut m: Map<String, Value>, id: Option<&str>) -> Value {
    if let Some(id) = id {
        m.insert("id".into(), id.into());
    }
    Value::Object(m)
}

/// One record's entry in a version 2–5 batch status.
fn entry(id: Option<&str>, outcome: &Result<String, CallError>) -> Value {
    let m = match outcome {
        Ok(rid) => Map::from_iter([
            ("firehose_record_id".into(), rid.as_str().into()),
            ("status".into(), "success".into()),
        ]),
        Err(e) => Map::from_iter([
            ("ErrorCode".into(), e.code.as_str().into()),
            ("ErrorMessage".into(), e.message.as_str().into()),
            ("status".into(), "fail".into()),
        ]),
    };
    with_id(m, id)
}

/// A version 1 status: one record.
fn single(id: Option<&str>, outcome: &Result<String, CallError>) -> Value {
    let response = match outcome {
        Ok(rid) => json!({ "firehose_record_id": rid, "status": "success" }),
        Err(e) => json!({ "error": e.code, "error_message": e.message, "status": "fail" }),
    };
    with_id(Map::from_iter([("response".into(), response)]), id)
}

fn batch_status(entries: Vec<Value>) -> Value {
    json!({ "response": entries })
}

fn refused(id: Option<&str>, code: &str, message: &str, batched: bool) -> Value {
    let e = Err(CallError {
        code: code.into(),
        message: message.into(),
        retryable: false,
    });
    if batched {
        batch_status(vec![entry(id, &e)])
    } else {
        single(id, &e)
    }
}

async fn publish_status(ctx: &Context, body: Value) {
    if let Err(e) = ctx.publish(STATUS_TOPIC, body.to_string()).await {
        ctx.log(
            Level::ERROR,
            &format!("cannot publish on {STATUS_TOPIC}: {e}"),
        );
    }
}

// ---- clients --------------------------------------------------------------------------------

/// A client per region, made on first use.
#[derive(Debug, Default)]
struct Clients(BTreeMap<String, Client>);

impl Clients {
    fn get(&mut self, region: &str) -> Result<&Client, CallError> {
        if !self.0.contains_key(region) {
            let c = Client::new(aws::FIREHOSE, region).map_err(|m| CallError {
                code: "InternalError".into(),
                message: m,
                retryable: false,
            })?;
            self.0.insert(region.to_owned(), c);
        }
        Ok(&self.0[region])
    }
}

fn bad_answer(text: &str) -> CallError {
    CallError {
        code: "InternalError".into(),
        message: format!(
            "Firehose answered with an unexpected document: {}",
            text.chars().take(200).collect::<String>()
        ),
        retryable: false,
    }
}

impl Connector for Firehose {
    fn run(self: Box<Self>, ctx: Context) -> BoxFuture<Result<(), ConnectorError>> {
        Box::pin(async move {
            let (_, region) = stream_name(&self.default_stream);
            let endpoint = aws::endpoint(&aws::ProcessEnv, aws::FIREHOSE, region);
            match self.batching {
                None => {
                    ctx.log(
                        Level::INFO,
                        &format!(
                            "sending each record to {} through {endpoint}",
                            self.default_stream
                        ),
                    );
                    self.one_by_one(&ctx).await;
                }
                Some(b) => {
                    ctx.log(
                        Level::INFO,
                        &format!(
                            "sending to {} through {endpoint} every {} s; up to {} records and {} bytes wait per stream",
                            self.default_stream,
                            b.interval.as_secs(),
                            b.queue_size,
                            b.memory_bytes
                        ),
                    );
                    self.batched(&ctx, b).await;
                }
            }
            Ok(())
        })
    }
}

impl Firehose {
    /// Version 1: a `PutRecord` per message, in arrival order.
    async fn one_by_one(&self, ctx: &Context) {
        let (tx, mut rx) = mpsc::channel::<Record>(V1_QUEUE);
        let intake = async {
            while let Some(m) = ctx.recv().await {
                match parse(
                    m.topic.as_str(),
                    &m.payload,
                    &self.default_stream,
                    ctx.version(),
                ) {
                    Ok(r) => {
                        if let Err(mpsc::error::TrySendError::Full(r)) = tx.try_send(r) {
                            let why = format!(
                                "{V1_QUEUE} records are already waiting for Firehose; this one was not sent"
                            );
                            ctx.rejected(&why);
                            publish_status(
                                ctx,
                                refused(r.id.as_deref(), "QueueFullException", &why, false),
                            )
                            .await;
                        }
                    }
                    Err(r) => {
                        ctx.rejected(&r.message);
                        publish_status(
                            ctx,
                            refused(r.id.as_deref(), "InvalidInputException", &r.message, false),
                        )
                        .await;
                    }
                }
            }
        };
        let sender = async {
            let mut clients = Clients::default();
            let mut dropped = 0u64;
            while let Some(r) = rx.recv().await {
                let outcome = put_record(&mut clients, ctx, &r).await;
                if let Err(e) = &outcome {
                    dropped += 1;
                    ctx.rejected(&format!(
                        "record not sent to {} ({e}); {dropped} dropped since start",
                        r.stream
                    ));
                }
                publish_status(ctx, single(r.id.as_deref(), &outcome)).await;
            }
        };
        tokio::select! {
            () = intake => {}
            () = sender => {}
        }
    }

    /// Versions 2–5: bounded queues per stream, sent in batches.
    async fn batched(&self, ctx: &Context, b: Batching) {
        let queues = Arc::new(Mutex::new(Queues::new(b)));
        let wake = Notify::new();
        let intake = async {
            while let Some(m) = ctx.recv().await {
                let record = match parse(
                    m.topic.as_str(),
                    &m.payload,
                    &self.default_stream,
                    ctx.version(),
                ) {
                    Ok(r) => r,
                    Err(r) => {
                        ctx.rejected(&r.message);
                        publish_status(
                            ctx,
                            refused(r.id.as_deref(), "InvalidInputException", &r.message, true),
                        )
                        .await;
                        continue;
                    }
                };
                let pushed = queues.lock().push(record);
                match pushed {
                    Ok(()) => wake.notify_one(),
                    Err((r, why)) => {
                        ctx.rejected(&why);
                        publish_status(
                            ctx,
                            refused(r.id.as_deref(), "QueueFullException", &why, true),
                        )
                        .await;
                    }
                }
            }
        };
        let sender = async {
            let mut clients = Clients::default();
            let mut pause = None::<Duration>;
            let mut dropped = 0u64;
            loop {
                let wait = pause.unwrap_or_default().max(b.interval);
                if wait.is_zero() {
                    if queues.lock().is_empty() {
                        wake.notified().await;
                    }
                } else {
                    tokio::time::sleep(wait).await;
                }
                // Only what is queued now: records put back for a retry wait for the next round.
                let rounds = queues.lock().take_all();
                let mut passing_failure = false;
                for batch in rounds {
                    let stream = batch[0].stream.clone();
                    let outcomes = put_batch(&mut clients, ctx, &stream, &batch).await;
                    let mut entries = Vec::new();
                    let mut retry = Vec::new();
                    let mut answered_bytes = 0;
                    for (mut r, outcome) in batch.into_iter().zip(outcomes) {
                        r.sends += 1;
                        match outcome {
                            Err(e) if e.retryable && r.sends < MAX_SENDS => {
                                passing_failure = true;
                                retry.push(r);
                            }
                            outcome => {
                                if let Err(e) = &outcome {
                                    passing_failure |= e.retryable;
                                    dropped += 1;
                                    ctx.rejected(&format!(
                                        "record not sent to {} after {} sends ({e}); {dropped} dropped since start",
                                        r.stream, r.sends
                                    ));
                                }
                                answered_bytes += r.data.len();
                                entries.push(entry(r.id.as_deref(), &outcome));
                            }
                        }
                    }
                    queues.lock().finish(answered_bytes, retry);
                    if !entries.is_empty() {
                        publish_status(ctx, batch_status(entries)).await;
                    }
                }
                pause =
                    passing_failure.then(|| pause.map_or(FIRST_PAUSE, |p| (p * 2).min(MAX_PAUSE)));
            }
        };
        tokio::select! {
            () = intake => {}
            () = sender => {}
        }
    }
}

async fn put_record(clients: &mut Clients, ctx: &Context, r: &Record) -> Result<String, CallError> {
    let (name, region) = stream_name(&r.stream);
    let body = json!({
        "DeliveryStreamName": name,
        "Record": { "Data": base64::engine::general_purpose::STANDARD.encode(&r.data) },
    });
    let text = clients
        .get(region)?
        .call(
            &Body::Json {
                target: "Firehose_20150804.PutRecord".into(),
                body: body.to_string().into_bytes(),
            },
            ctx.cancel(),
        )
        .await?;
    serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("RecordId")?.as_str().map(str::to_owned))
        .ok_or_else(|| bad_answer(&text))
}

/// The outcome of each record of `batch`, in order.
async fn put_batch(
    clients: &mut Clients,
    ctx: &Context,
    stream: &str,
    batch: &[Record],
) -> Vec<Result<String, CallError>> {
    let (name, region) = stream_name(stream);
    let records: Vec<Value> = batch
        .iter()
        .map(|r| json!({ "Data": base64::engine::general_purpose::STANDARD.encode(&r.data) }))
        .collect();
    let body = json!({ "DeliveryStreamName": name, "Records": records });
    let call = async {
        clients
            .get(region)?
            .call(
                &Body::Json {
                    target: "Firehose_20150804.PutRecordBatch".into(),
                    body: body.to_string().into_bytes(),
                },
                ctx.cancel(),
            )
            .await
    };
    let text = match call.await {
        Ok(t) => t,
        Err(e) => return vec![Err(e); batch.len()],
    };
    let answers = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("RequestResponses")?.as_array().cloned())
        .filter(|a| a.len() == batch.len());
    let Some(answers) = answers else {
        return vec![Err(bad_answer(&text)); batch.len()];
    };
    answers
        .iter()
        .map(|a| {
            if let Some(code) = a.get("ErrorCode").and_then(Value::as_str) {
                return Err(CallError {
                    code: code.to_owned(),
                    message: a
                        .get("ErrorMessage")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    // Firehose names only these two as per-record failures; both pass.
                    retryable: matches!(code, "ServiceUnavailableException" | "InternalFailure"),
                });
            }
            a.get("RecordId")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| bad_answer(&text))
        })
        .collect()
}

/// The records waiting, per stream, with their bounds.
#[derive(Debug)]
struct Queues {
    limits: Batching,
    streams: BTreeMap<String, VecDeque<Record>>,
    /// Data bytes of every record waiting or being sent.
    bytes: usize,
}

impl Queues {
    fn new(limits: Batching) -> Self {
        Self {
            limits,
            streams: BTreeMap::new(),
            bytes: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.streams.values().all(VecDeque::is_empty)
    }

    fn push(&mut self, r: Record) -> Result<(), (Record, String)> {
        let streams = self.streams.len();
        let queue_size = self.limits.queue_size;
        if self.bytes + r.data.len() > self.limits.memory_bytes {
            let why = format!(
                "{} bytes are already waiting (MemorySize); this record was not queued",
                self.bytes
            );
            return Err((r, why));
        }
        let known = self.streams.contains_key(&r.stream);
        if !known && streams >= MAX_STREAMS {
            let why = format!(
                "records for {MAX_STREAMS} streams are already waiting; this record was not queued"
            );
            return Err((r, why));
        }
        let q = self.streams.entry(r.stream.clone()).or_default();
        if q.len() >= queue_size {
            let why = format!(
                "{queue_size} records for {} are already waiting (DeliveryStreamQueueSize); this record was not queued",
                r.stream
            );
            return Err((r, why));
        }
        self.bytes += r.data.len();
        q.push_back(r);
        Ok(())
    }

    /// Everything waiting, cut into batches within Firehose's limits.
    fn take_all(&mut self) -> Vec<Vec<Record>> {
        let mut out = Vec::new();
        for (_, q) in std::mem::take(&mut self.streams) {
            let mut batch = Vec::new();
            let mut size = 0;
            for r in q {
                let encoded = r.data.len().div_ceil(3) * 4;
                if !batch.is_empty()
                    && (batch.len() == MAX_BATCH_RECORDS || size + encoded > MAX_BATCH_BYTES)
                {
                    out.push(std::mem::take(&mut batch));
                    size = 0;
                }
                size += encoded;
                batch.push(r);
            }
            if !batch.is_empty() {
                out.push(batch);
            }
        }
        out
    }

    /// A batch is done: records of `answered` bytes are answered, `retry` go back to the
    /// end of their queues (still counted: they never left memory).
    fn finish(&mut self, answered: usize, retry: Vec<Record>) {
        self.bytes -= answered;
        for r in retry {
            self.streams
                .entry(r.stream.clone())
                .or_default()
                .push_back(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = "arn:aws:firehose:us-east-1:123456789012:deliverystream/stream-name";

    fn parsed(v: Value) -> Result<Record, Refusal> {
        parse(INPUT_TOPIC, &Bytes::from(v.to_string()), DEFAULT, 5)
    }

    fn record(stream: &str, len: usize) -> Record {
        Record {
            id: None,
            stream: stream.into(),
            data: Bytes::from(vec![b'x'; len]),
            sends: 0,
        }
    }

    #[test]
    fn json_and_binary_messages_parse() {
        let other = "arn:aws:firehose:eu-west-1:123456789012:deliverystream/stream2-name";
        let r = parsed(json!({"request": {"data": "d", "delivery_stream_arn": other}, "id": "r1"}))
            .expect("parsed");
        assert_eq!(
            (r.id.as_deref(), r.stream.as_str(), &r.data[..]),
            (Some("r1"), other, &b"d"[..])
        );
        assert_eq!(stream_name(other), ("stream2-name", "eu-west-1"));
        let raw = Bytes::from_static(&[0, 255, b'{']);
        let r = parse(
            "kinesisfirehose/message/binary/request123",
            &raw,
            DEFAULT,
            5,
        )
        .expect("raw");
        assert_eq!(
            (r.id.as_deref(), r.stream.as_str(), r.data),
            (Some("request123"), DEFAULT, raw.clone())
        );
        let r = parse("kinesisfirehose/message/binary/", &raw, DEFAULT, 5).expect("raw");
        assert_eq!(r.id, None);
    }

    #[test]
    fn bad_messages_are_refused() {
        let msg = |v: Value| parsed(v).expect_err("refused");
        assert!(
            parse(INPUT_TOPIC, &Bytes::from_static(b"x"), DEFAULT, 5)
                .unwrap_err()
                .message
                .contains("not JSON")
        );
        assert_eq!(msg(json!({"id": 1, "request": {"data": "x"}})).id, None);
        assert_eq!(
            msg(json!({"id": "a"})),
            Refusal {
                id: Some("a".into()),
                message: "request is required".into()
            }
        );
        assert!(
            msg(json!({"request": {"data": 5}}))
                .message
                .contains("request.data")
        );
        assert!(msg(json!({"request": {}})).message.contains("request.data"));
        assert_eq!(
            msg(json!({"request": {"data": "x", "delivery_stream_arn": "arn:aws:sns:x"}})).message,
            "Delivery stream ARN is invalid"
        );
        let big = Bytes::from(vec![0u8; MAX_RECORD_BYTES + 1]);
        assert!(
            parse("kinesisfirehose/message/binary/b", &big, DEFAULT, 5)
                .unwrap_err()
                .message
                .contains("1024000")
        );
    }

    #[test]
    fn queues_are_bounded_in_count_bytes_and_streams() {
        let mut q = Queues::new(Batching {
            queue_size: 2,
            memory_bytes: 100,
            interval: Duration::ZERO,
        });
        q.push(record("a", 10)).expect("1");
        q.push(record("a", 10)).expect("2");
        assert!(
            q.push(record("a", 10))
                .unwrap_err()
                .1
                .contains("DeliveryStreamQueueSize")
        );
        assert!(
            q.push(record("b", 81))
                .unwrap_err()
                .1
                .contains("MemorySize")
        );
        q.push(record("b", 80)).expect("fits exactly");
        let mut q = Queues::new(Batching {
            queue_size: 2000,
            memory_bytes: usize::MAX,
            interval: Duration::ZERO,
        });
        for i in 0..MAX_STREAMS {
            q.push(record(&format!("s{i}"), 1)).expect("stream");
        }
        assert!(
            q.push(record("one-more", 1))
                .unwrap_err()
                .1
                .contains("streams")
        );
    }

    #[test]
    fn batches_keep_firehose_limits_and_retries_go_to_the_end() {
        let mut q = Queues::new(Batching {
            queue_size: 5000,
            memory_bytes: usize::MAX,
            interval: Duration::ZERO,
        });
        for _ in 0..1201 {
            q.push(record("a", 10)).expect("queued");
        }
        for _ in 0..5 {
            q.push(record("b", MAX_RECORD_BYTES)).expect("queued");
        }
        let batches = q.take_all();
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [500, 500, 201, 3, 2]);
        for b in &batches {
            let bytes: usize = b.iter().map(|r| r.data.len().div_ceil(3) * 4).sum();
            assert!(bytes <= MAX_BATCH_BYTES);
        }
        assert!(q.is_empty());
        let mut retry = record("a", 10);
        retry.sends = 1;
        q.push(record("a", 3)).expect("new");
        q.finish(0, vec![retry]);
        let again = q.take_all();
        assert_eq!(again[0].iter().map(|r| r.sends).collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn status_shapes_follow_the_spec() {
        let e = Err(CallError {
            code: "error".into(),
            message: "test error".into(),
            retryable: false,
        });
        assert_eq!(
            batch_status(vec![
                entry(Some("request123"), &e),
                entry(Some("request456"), &Ok("xyz2".into()))
            ]),
            json!({"response": [
                {"ErrorCode": "error", "ErrorMessage": "test error", "id": "request123", "status": "fail"},
                {"firehose_record_id": "xyz2", "id": "request456", "status": "success"}]})
        );
        assert_eq!(
            single(Some("request123"), &Ok("1lxf".into())),
            json!({"response": {"firehose_record_id": "1lxf", "status": "success"}, "id": "request123"})
        );
        assert_eq!(
            single(None, &e),
            json!({"response": {"error": "error", "error_message": "test error", "status": "fail"}})
        );
    }
}
