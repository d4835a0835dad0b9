//! The CloudWatch Metrics connector (versions 1–5): puts the metrics that arrive on
//! `cloudwatch/metric/put` into CloudWatch with `PutMetricData`, and reports each batch's
//! outcome on `cloudwatch/metric/put/status`.
//!
//! Metrics wait per namespace; a namespace's batch goes out when it has 20 metrics or when
//! `PublishInterval` seconds have passed (at once with `0`), within the API's 20 metrics and
//! 40 KB per call. At most `MaxMetricsToRetain` wait: when full, a new metric replaces the
//! oldest of its own namespace, or is refused when its namespace has none. A batch that fails
//! for a passing reason (connection, 5xx, throttling) is tried again in the next round, a
//! bounded number of times; then it is answered with the error, counted and dropped. A bad
//! metric is answered at once and never sent. See `docs/connectors/cloudwatch-metrics.md`.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::Level;

use crate::aws::{self, Body, CallError, Client};
use crate::{BoxFuture, Connector, ConnectorError, Context, Kind};

pub static KIND: Kind = Kind {
    name: "CloudWatchMetrics",
    versions: 1..=5,
    build,
};

pub const INPUT_TOPIC: &str = "cloudwatch/metric/put";
pub const STATUS_TOPIC: &str = "cloudwatch/metric/put/status";

/// `PutMetricData` limits: metrics and body bytes per call.
pub const MAX_BATCH_METRICS: usize = 20;
pub const MAX_BATCH_BYTES: usize = 40 * 1024;
/// Dimensions a message may give; the connector adds `coreName`.
pub const MAX_DIMENSIONS: usize = 10;
/// Times a metric is sent before it is dropped; each send is itself up to three HTTP attempts.
pub const MAX_SENDS: u32 = 3;
/// The smallest and largest magnitudes CloudWatch accepts (besides zero).
const MIN_MAGNITUDE: f64 = 8.515_920e-109;
const MAX_MAGNITUDE: f64 = 1.174_271e108;
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// CloudWatch's `StandardUnit` values.
pub const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

#[derive(Debug)]
struct CloudWatch {
    interval: Duration,
    region: String,
    max_retain: usize,
}

fn build(ctx: &Context) -> Result<Box<dyn Connector>, String> {
    let interval = ctx
        .number::<u64>("PublishInterval", 0..=900)?
        .ok_or("PublishInterval is required")?;
    let region = match ctx.param("PublishRegion").map(str::trim) {
        None | Some("") => ctx.region().to_owned(),
        Some(r) => r.to_owned(),
    };
    ctx.number::<u64>("MemorySize", 0..=u64::MAX)?
        .ok_or("MemorySize is required")?;
    let max_retain = ctx
        .number::<usize>("MaxMetricsToRetain", 2000..=10_000_000)?
        .ok_or("MaxMetricsToRetain is required")?;
    Ok(Box::new(CloudWatch {
        interval: Duration::from_secs(interval),
        region,
        max_retain,
    }))
}

/// A metric that passed its checks, `coreName` added.
#[derive(Debug, Clone, PartialEq)]
struct Metric {
    namespace: String,
    name: String,
    dimensions: Vec<(String, String)>,
    /// Seconds since the epoch.
    timestamp: f64,
    value: f64,
    unit: Option<&'static str>,
    sends: u32,
}

impl Metric {
    /// Its `MetricData.member.N.*` parameters.
    fn params(&self, n: usize, out: &mut Vec<(String, String)>) {
        let p = format!("MetricData.member.{n}");
        out.push((format!("{p}.MetricName"), self.name.clone()));
        for (i, (name, value)) in self.dimensions.iter().enumerate() {
            out.push((
                format!("{p}.Dimensions.member.{}.Name", i + 1),
                name.clone(),
            ));
            out.push((
                format!("{p}.Dimensions.member.{}.Value", i + 1),
                value.clone(),
            ));
        }
        out.push((format!("{p}.Timestamp"), aws::iso8601(self.timestamp)));
        out.push((format!("{p}.Value"), self.value.to_string()));
        if let Some(u) = self.unit {
            out.push((format!("{p}.Unit"), u.to_owned()));
        }
    }

    /// Its share of a request body, counted as the 20th member.
    fn encoded_len(&self) -> usize {
        let mut p = Vec::new();
        self.params(MAX_BATCH_METRICS, &mut p);
        crate::http::form_encode(&p).len() + 1
    }
}

fn request(namespace: &str, batch: &[Metric]) -> Body {
    let mut p = vec![
        ("Action".to_owned(), "PutMetricData".to_owned()),
        ("Version".to_owned(), "2010-08-01".to_owned()),
        ("Namespace".to_owned(), namespace.to_owned()),
    ];
    for (i, m) in batch.iter().enumerate() {
        m.params(i + 1, &mut p);
    }
    Body::Query(p)
}

/// A message answered without being sent; `namespace` when it gave one.
#[derive(Debug, PartialEq)]
struct Refusal {
    namespace: Option<String>,
    message: String,
}

fn parse(payload: &[u8], core: &str, now: f64) -> Result<Metric, Refusal> {
    let refuse = |namespace: Option<&str>, message: &str| Refusal {
        namespace: namespace.map(str::to_owned),
        message: message.to_owned(),
    };
    let top = match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(top)) => top,
        Ok(_) => return Err(refuse(None, "The payload must be a JSON object")),
        Err(e) => return Err(refuse(None, &format!("The payload is not JSON: {e}"))),
    };
    let req = match top.get("request") {
        Some(Value::Object(r)) => r,
        Some(_) => return Err(refuse(None, "request must be an object")),
        None => return Err(refuse(None, "request is required")),
    };
    let namespace = match req.get("namespace") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(refuse(None, "request.namespace must be a string")),
        None => return Err(refuse(None, "request.namespace is required")),
    };
    let refuse = |message: &str| refuse(Some(namespace), message);
    if namespace.is_empty() || namespace.chars().count() > 255 || namespace.starts_with(':') {
        return Err(refuse(
            "request.namespace must be 1 to 255 characters and not start with ':'",
        ));
    }
    if namespace.starts_with("AWS/") {
        return Err(refuse(
            "request.namespace must not start with AWS/ (reserved for AWS services)",
        ));
    }
    let datum = match req.get("metricData") {
        Some(Value::Object(d)) => d,
        Some(_) => return Err(refuse("request.metricData must be an object")),
        None => return Err(refuse("request.metricData is required")),
    };
    let name = match datum.get("metricName") {
        Some(Value::String(s)) if (1..=255).contains(&s.chars().count()) => s.clone(),
        Some(Value::String(_)) => {
            return Err(refuse(
                "request.metricData.metricName must be 1 to 255 characters",
            ));
        }
        Some(_) => return Err(refuse("request.metricData.metricName must be a string")),
        None => return Err(refuse("request.metricData.metricName is required")),
    };
    let dimensions = dimensions(datum.get("dimensions"), core).map_err(|m| refuse(&m))?;
    let timestamp = match datum.get("timestamp") {
        None | Some(Value::Null) => now,
        Some(Value::Number(n)) => match n.as_f64() {
            // Up to the end of year 9999, the last an ISO 8601 timestamp can say.
            Some(t) if (0.0..253_402_300_800.0).contains(&t) => t,
            _ => {
                return Err(refuse(
                    "request.metricData.timestamp must be seconds since the epoch",
                ));
            }
        },
        Some(_) => return Err(refuse("request.metricData.timestamp must be a number")),
    };
    let value = match datum.get("value") {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(_) => return Err(refuse("request.metricData.value must be a number")),
        None => return Err(refuse("request.metricData.value is required")),
    };
    let magnitude = value.abs();
    if !value.is_finite()
        || (magnitude != 0.0 && !(MIN_MAGNITUDE..=MAX_MAGNITUDE).contains(&magnitude))
    {
        return Err(refuse(
            "request.metricData.value must be 0 or of magnitude 8.515920e-109 to 1.174271e+108",
        ));
    }
    let unit = match datum.get("unit") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match UNITS.iter().find(|u| *u == s) {
            Some(u) => Some(*u),
            None => {
                return Err(refuse(&format!(
                    "request.metricData.unit {s:?} is not a CloudWatch unit ({})",
                    UNITS.join(", ")
                )));
            }
        },
        Some(_) => return Err(refuse("request.metricData.unit must be a string")),
    };
    Ok(Metric {
        namespace: namespace.to_owned(),
        name,
        dimensions,
        timestamp,
        value,
        unit,
        sends: 0,
    })
}

/// The message's dimensions, checked, with `coreName` added unless it gave one.
fn dimensions(v: Option<&Value>, core: &str) -> Result<Vec<(String, String)>, String> {
    let items = match v {
        None | Some(Value::Null) => &Vec::new(),
        Some(Value::Array(a)) => a,
        Some(_) => return Err("request.metricData.dimensions must be an array".into()),
    };
    if items.len() > MAX_DIMENSIONS {
        return Err(format!(
            "request.metricData.dimensions has {} entries; at most {MAX_DIMENSIONS}",
            items.len()
        ));
    }
    let mut out = Vec::with_capacity(items.len() + 1);
    for (i, d) in items.iter().enumerate() {
        let field = |k: &str, max: usize| match d.get(k) {
            Some(Value::String(s)) if (1..=max).contains(&s.chars().count()) => Ok(s.clone()),
            _ => Err(format!(
                "request.metricData.dimensions[{i}].{k} must be a string of 1 to {max} characters"
            )),
        };
        let name = field("name", 255)?;
        let value = field("value", 1024)?;
        if out.iter().any(|(n, _)| *n == name) {
            return Err(format!(
                "request.metricData.dimensions: {name:?} is given twice"
            ));
        }
        out.push((name, value));
    }
    // A message that names its own core keeps it; CloudWatch refuses a dimension twice.
    if !out.iter().any(|(n, _)| n == "coreName") {
        out.push(("coreName".into(), core.to_owned()));
    }
    Ok(out)
}

// ---- status shapes --------------------------------------------------------------------------

fn success(namespace: &str, request_id: &str) -> Value {
    json!({ "response": { "cloudwatch_rid": request_id, "namespace": namespace, "status": "success" } })
}

fn fail(namespace: Option<&str>, error: &str, message: &str) -> Value {
    let mut r = Map::new();
    if let Some(ns) = namespace {
        r.insert("namespace".into(), ns.into());
    }
    r.insert("error".into(), error.into());
    r.insert("error_message".into(), message.into());
    r.insert("status".into(), "fail".into());
    json!({ "response": r })
}

async fn publish_status(ctx: &Context, body: Value) {
    if let Err(e) = ctx.publish(STATUS_TOPIC, body.to_string()).await {
        ctx.log(
            Level::ERROR,
            &format!("cannot publish on {STATUS_TOPIC}: {e}"),
        );
    }
}

// ---- the buffer -----------------------------------------------------------------------------

/// The metrics waiting, per namespace, at most `max` in all.
#[derive(Debug)]
struct Buffer {
    max: usize,
    count: usize,
    namespaces: BTreeMap<String, VecDeque<Metric>>,
}

/// What became of a metric offered to a full buffer.
#[derive(Debug, PartialEq)]
enum Pushed {
    Queued,
    /// It took the place of this older metric of its namespace.
    Replaced(Metric),
    /// Its namespace has nothing to replace.
    Refused(Metric),
}

impl Buffer {
    fn new(max: usize) -> Self {
        Self {
            max,
            count: 0,
            namespaces: BTreeMap::new(),
        }
    }

    fn push(&mut self, m: Metric) -> Pushed {
        let full = self.count >= self.max;
        let q = self.namespaces.entry(m.namespace.clone()).or_default();
        if !full {
            q.push_back(m);
            self.count += 1;
            return Pushed::Queued;
        }
        match q.pop_front() {
            Some(old) => {
                q.push_back(m);
                Pushed::Replaced(old)
            }
            None => {
                self.namespaces.remove(&m.namespace);
                Pushed::Refused(m)
            }
        }
    }

    /// Batches to send now: every full batch, and with `all` the rest too.
    fn take(&mut self, all: bool) -> Vec<(String, Vec<Metric>)> {
        let mut out = Vec::new();
        for (ns, q) in &mut self.namespaces {
            while q.len() >= MAX_BATCH_METRICS || (all && !q.is_empty()) {
                let mut batch = Vec::new();
                let mut size = 0;
                while let Some(m) = q.front() {
                    let len = m.encoded_len();
                    if batch.len() == MAX_BATCH_METRICS
                        || (!batch.is_empty() && size + len > MAX_BATCH_BYTES - 512)
                    {
                        break;
                    }
                    size += len;
                    batch.extend(q.pop_front());
                }
                self.count -= batch.len();
                out.push((ns.clone(), batch));
            }
        }
        self.namespaces.retain(|_, q| !q.is_empty());
        out
    }

    /// Put a batch to try again back at the front of its namespace.
    fn put_back(&mut self, namespace: &str, batch: Vec<Metric>) {
        let q = self.namespaces.entry(namespace.to_owned()).or_default();
        self.count += batch.len();
        for m in batch.into_iter().rev() {
            q.push_front(m);
        }
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Connector for CloudWatch {
    fn run(self: Box<Self>, ctx: Context) -> BoxFuture<Result<(), ConnectorError>> {
        Box::pin(async move {
            let client =
                Client::new(aws::CLOUDWATCH, &self.region).map_err(ConnectorError::Failed)?;
            ctx.log(
                Level::INFO,
                &format!(
                    "putting metrics in {} through {} every {} s (or per 20); up to {} wait",
                    self.region,
                    client.endpoint(),
                    self.interval.as_secs(),
                    self.max_retain
                ),
            );
            let buffer = Mutex::new(Buffer::new(self.max_retain));
            let wake = Notify::new();
            let intake = async {
                while let Some(m) = ctx.recv().await {
                    let metric = match parse(&m.payload, ctx.core_thing(), now_secs()) {
                        Ok(metric) => metric,
                        Err(r) => {
                            ctx.rejected(&r.message);
                            publish_status(
                                &ctx,
                                fail(r.namespace.as_deref(), "InvalidInputException", &r.message),
                            )
                            .await;
                            continue;
                        }
                    };
                    let pushed = buffer.lock().push(metric);
                    let (ns, why) = match pushed {
                        Pushed::Queued => {
                            wake.notify_one();
                            continue;
                        }
                        Pushed::Replaced(old) => (
                            old.namespace,
                            format!(
                                "{} metrics are waiting (MaxMetricsToRetain); the oldest of this namespace, {}, was dropped for a newer one",
                                self.max_retain, old.name
                            ),
                        ),
                        Pushed::Refused(new) => (
                            new.namespace,
                            format!(
                                "{} metrics are waiting (MaxMetricsToRetain), none of this namespace to replace; metric {} was not queued",
                                self.max_retain, new.name
                            ),
                        ),
                    };
                    ctx.rejected(&why);
                    publish_status(&ctx, fail(Some(&ns), "MetricsBufferFull", &why)).await;
                }
            };
            let sender = async {
                let mut next_all = Instant::now() + self.interval;
                let mut paused_until = None::<Instant>;
                let mut pause = None::<Duration>;
                let mut dropped = 0u64;
                loop {
                    // While paused after a failure nothing goes out, full batches included.
                    if let Some(p) = paused_until.take() {
                        tokio::time::sleep_until(p).await;
                    } else {
                        tokio::select! {
                            () = wake.notified() => {}
                            () = tokio::time::sleep_until(next_all) => {}
                        }
                    }
                    let now = Instant::now();
                    let all = now >= next_all;
                    if all {
                        next_all = now + self.interval;
                    }
                    let batches = buffer.lock().take(all);
                    let mut passing_failure = false;
                    for (ns, mut batch) in batches {
                        let outcome = put(&client, &ctx, &ns, &batch).await;
                        for m in &mut batch {
                            m.sends += 1;
                        }
                        let status = match outcome {
                            Ok(rid) => success(&ns, &rid),
                            Err(e) if e.retryable && batch[0].sends < MAX_SENDS => {
                                passing_failure = true;
                                buffer.lock().put_back(&ns, batch);
                                continue;
                            }
                            Err(e) => {
                                passing_failure |= e.retryable;
                                dropped += batch.len() as u64;
                                ctx.rejected(&format!(
                                    "{} metrics of {ns} not put after {} sends ({e}); {dropped} dropped since start",
                                    batch.len(),
                                    batch[0].sends
                                ));
                                fail(Some(&ns), &e.code, &e.message)
                            }
                        };
                        publish_status(&ctx, status).await;
                    }
                    if passing_failure {
                        let p = pause.map_or(FIRST_PAUSE, |p| (p * 2).min(MAX_PAUSE));
                        pause = Some(p);
                        paused_until = Some(Instant::now() + p);
                    } else {
                        pause = None;
                    }
                }
            };
            tokio::select! {
                () = intake => {}
                () = sender => {}
            }
            Ok(())
        })
    }
}

/// The request id of a successful `PutMetricData`.
async fn put(
    client: &Client,
    ctx: &Context,
    namespace: &str,
    batch: &[Metric],
) -> Result<String, CallError> {
    let text = client
        .call(&request(namespace, batch), ctx.cancel())
        .await?;
    Ok(aws::xml_text(&text, "RequestId").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(v: Value) -> Result<Metric, Refusal> {
        parse(v.to_string().as_bytes(), "gateway", 1000.0)
    }

    fn metric(ns: &str, name: &str) -> Metric {
        parsed(
            json!({"request": {"namespace": ns, "metricData": {"metricName": name, "value": 1}}}),
        )
        .expect("metric")
    }

    #[test]
    fn the_documented_example_parses() {
        let m = parsed(json!({ "request": { "namespace": "Greengrass",
            "metricData": { "metricName": "latency",
                "dimensions": [ { "name": "hostname", "value": "test_hostname" } ],
                "timestamp": 1539027324, "value": 123.0, "unit": "Seconds" } } }))
        .expect("parsed");
        assert_eq!(
            m,
            Metric {
                namespace: "Greengrass".into(),
                name: "latency".into(),
                dimensions: vec![
                    ("hostname".into(), "test_hostname".into()),
                    ("coreName".into(), "gateway".into())
                ],
                timestamp: 1_539_027_324.0,
                value: 123.0,
                unit: Some("Seconds"),
                sends: 0,
            }
        );
        let Body::Query(q) = request("Greengrass", &[m]) else {
            panic!("query")
        };
        let has = |k: &str, v: &str| q.contains(&(k.to_owned(), v.to_owned()));
        assert!(has("Action", "PutMetricData") && has("Version", "2010-08-01"));
        assert!(has(
            "MetricData.member.1.Dimensions.member.2.Name",
            "coreName"
        ));
        assert!(has(
            "MetricData.member.1.Timestamp",
            "2018-10-08T19:35:24.000Z"
        ));
        assert!(
            has("MetricData.member.1.Value", "123") && has("MetricData.member.1.Unit", "Seconds")
        );
        assert_eq!(metric("n", "m").timestamp, 1000.0);
    }

    #[test]
    fn bad_metrics_are_refused_with_the_field_named() {
        let refused = |v: Value| parsed(v).expect_err("refused");
        let with = |d: Value| refused(json!({"request": {"namespace": "ns", "metricData": d}}));
        assert_eq!(refused(json!([])).namespace, None);
        assert!(refused(json!({})).message.contains("request"));
        assert!(
            refused(json!({"request": {"metricData": {}}}))
                .message
                .contains("namespace")
        );
        for ns in ["", ":x", "AWS/EC2"] {
            let r = refused(
                json!({"request": {"namespace": ns, "metricData": {"metricName": "m", "value": 1}}}),
            );
            assert!(r.message.contains("namespace"), "{ns}: {}", r.message);
            assert_eq!(r.namespace.as_deref(), Some(ns));
        }
        assert!(with(json!({"value": 1})).message.contains("metricName"));
        assert!(with(json!({"metricName": "m"})).message.contains("value"));
        assert!(
            with(json!({"metricName": "m", "value": "1"}))
                .message
                .contains("value")
        );
        assert!(
            with(json!({"metricName": "m", "value": 1e-200}))
                .message
                .contains("magnitude")
        );
        assert!(
            with(json!({"metricName": "m", "value": -2e108}))
                .message
                .contains("magnitude")
        );
        assert!(parsed(json!({"request": {"namespace": "ns", "metricData": {"metricName": "m", "value": 0}}})).is_ok());
        assert!(
            with(json!({"metricName": "m", "value": 1, "unit": "Furlongs"}))
                .message
                .contains("unit")
        );
        assert!(
            with(json!({"metricName": "m", "value": 1, "timestamp": "now"}))
                .message
                .contains("timestamp")
        );
        let many: Vec<Value> = (0..11)
            .map(|i| json!({"name": format!("d{i}"), "value": "v"}))
            .collect();
        assert!(
            with(json!({"metricName": "m", "value": 1, "dimensions": many}))
                .message
                .contains("at most 10")
        );
        let twice = json!([{"name": "a", "value": "1"}, {"name": "a", "value": "2"}]);
        assert!(
            with(json!({"metricName": "m", "value": 1, "dimensions": twice}))
                .message
                .contains("twice")
        );
        let empty = json!([{"name": "a", "value": ""}]);
        assert!(
            with(json!({"metricName": "m", "value": 1, "dimensions": empty}))
                .message
                .contains("dimensions[0].value")
        );
        let own = json!([{"name": "coreName", "value": "other"}]);
        let m = parsed(json!({"request": {"namespace": "ns", "metricData": {"metricName": "m", "value": 1, "dimensions": own}}})).expect("own core name");
        assert_eq!(m.dimensions, [("coreName".to_owned(), "other".to_owned())]);
    }

    #[test]
    fn batches_are_per_namespace_and_within_limits() {
        let mut b = Buffer::new(2000);
        for i in 0..45 {
            b.push(metric("a", &format!("m{i}")));
        }
        b.push(metric("b", "x"));
        let full: Vec<(String, usize)> = b
            .take(false)
            .into_iter()
            .map(|(n, v)| (n, v.len()))
            .collect();
        assert_eq!(full, [("a".to_owned(), 20), ("a".to_owned(), 20)]);
        let rest: Vec<(String, usize)> = b
            .take(true)
            .into_iter()
            .map(|(n, v)| (n, v.len()))
            .collect();
        assert_eq!(rest, [("a".to_owned(), 5), ("b".to_owned(), 1)]);
        assert_eq!(b.count, 0);
        // Big dimensions: 40 KB bounds the batch before 20 metrics do.
        let dims: Vec<Value> = (0..10)
            .map(|i| json!({"name": format!("d{i}"), "value": "v".repeat(1024)}))
            .collect();
        for _ in 0..20 {
            let m = parsed(json!({"request": {"namespace": "big", "metricData": {"metricName": "m", "value": 1, "dimensions": dims}}})).expect("big");
            b.push(m);
        }
        let batches = b.take(true);
        assert!(batches.len() > 1);
        for (ns, batch) in &batches {
            let Body::Query(q) = request(ns, batch) else {
                panic!("query")
            };
            assert!(crate::http::form_encode(&q).len() <= MAX_BATCH_BYTES);
        }
    }

    #[test]
    fn a_full_buffer_replaces_the_oldest_of_the_same_namespace() {
        let mut b = Buffer::new(2);
        assert_eq!(b.push(metric("a", "1")), Pushed::Queued);
        assert_eq!(b.push(metric("b", "2")), Pushed::Queued);
        let Pushed::Replaced(old) = b.push(metric("a", "3")) else {
            panic!("replaced")
        };
        assert_eq!(old.name, "1");
        assert!(matches!(b.push(metric("c", "4")), Pushed::Refused(m) if m.name == "4"));
        assert_eq!(b.count, 2);
        let mut batches = b.take(true);
        assert_eq!(
            batches.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let (ns, mut batch) = batches.remove(0);
        batch[0].sends = 1;
        b.put_back(&ns, batch);
        b.push(metric("a", "5"));
        let again = b.take(true);
        assert_eq!(
            again[0]
                .1
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>(),
            ["3", "5"]
        );
    }

    #[test]
    fn status_shapes_follow_the_spec() {
        assert_eq!(
            success("Greengrass", "70573243"),
            json!({"response": {"cloudwatch_rid": "70573243", "namespace": "Greengrass", "status": "success"}})
        );
        assert_eq!(
            fail(
                Some("Greengrass"),
                "InvalidInputException",
                "cw metric is invalid"
            ),
            json!({"response": {"namespace": "Greengrass", "error": "InvalidInputException",
                "error_message": "cw metric is invalid", "status": "fail"}})
        );
    }
}
