//! Control-plane benchmark: create group versions (each with 10 connectors and 100
//! subscriptions) and read them back through the HTTP API with SigV4-signed requests, then the
//! same on moto_server, the only other Greengrass v1 implementation that runs here, in the
//! same run. One client measures latency, four at once throughput; it prints both for each
//! server, and the ratio of their best throughputs.
//!
//! `cargo bench -p coupler-api --bench api` runs 1 000 group versions;
//! `-- --quick` runs 200 (what CI runs).
//!
//! moto implements no connector definitions and refuses connector ARNs in subscriptions, so its
//! group versions carry the same 100 subscriptions between devices, a function and the cloud,
//! and no connectors: strictly less work than Coupler's.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use coupler_api::store::SqliteStore;
use coupler_api::wire::Identity;
use coupler_api::{AccessKey, AppState, Auth, Service};
use serde_json::{Value, json};

const KEY_ID: &str = "AKIABENCHMARK0000001";
const SECRET: &str = "benchmark/secret/key/0000000000000000000";
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const FUNCTION: &str = "arn:aws:lambda:us-east-1:123456789012:function:Worker:live";
const DEVICES: usize = 20;

fn thing(i: usize) -> String {
    format!("arn:aws:iot:us-east-1:123456789012:thing/sensor-{i}")
}

/// The library's signed client, with the benchmark's conventions: a failed request stops
/// the benchmark, and each call says how long it took.
struct Client(coupler_api::client::Client);

impl Client {
    fn new(base: &str) -> Self {
        Self(coupler_api::client::Client::new(base, KEY_ID, SECRET, REGION).expect("a client"))
    }

    /// One signed request; returns the JSON answer and how long it took.
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> (Value, Duration) {
        let body = body
            .map(|b| serde_json::to_vec(b).expect("json"))
            .unwrap_or_default();
        let (bytes, elapsed) = self.call_raw(method, path, body).await;
        (
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            elapsed,
        )
    }

    /// One signed request with a body prepared beforehand; returns the raw answer and how
    /// long it took. The client's own work is kept small so that it measures the server.
    async fn call_raw(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> (bytes::Bytes, Duration) {
        let what = format!("{method} {path}");
        self.0
            .call_raw(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    async fn create_definition(&self, kind: &str, version: Value) -> String {
        let (v, _) = self
            .call(
                Method::POST,
                &format!("/greengrass/definition/{kind}"),
                Some(&json!({"Name": kind, "InitialVersion": version})),
            )
            .await;
        v["LatestVersionArn"]
            .as_str()
            .expect("LatestVersionArn")
            .to_owned()
    }
}

fn core_version() -> Value {
    json!({"Cores": [{"Id": "core", "ThingArn": "arn:aws:iot:us-east-1:123456789012:thing/bench-core",
        "CertificateArn": "arn:aws:iot:us-east-1:123456789012:cert/c0ffee"}]})
}

fn device_version() -> Value {
    let devices: Vec<Value> = (0..DEVICES)
        .map(|i| json!({"Id": format!("d{i}"), "ThingArn": thing(i), "CertificateArn": "arn:aws:iot:us-east-1:123456789012:cert/beef"}))
        .collect();
    json!({"Devices": devices})
}

fn function_version() -> Value {
    json!({"Functions": [{"Id": "worker", "FunctionArn": FUNCTION,
        "FunctionConfiguration": {"Executable": "worker.handler", "MemorySize": 16384, "Timeout": 10, "Pinned": true}}]})
}

const SECRET_ARN: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-token-AbCdEf";
const SPLUNK_ARN: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-splunk-AbCdEf";
const SNOW_ARN: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-snow-AbCdEf";

fn resource_version() -> Value {
    let secret = |id: &str, arn: &str| json!({"Id": id, "Name": id, "ResourceDataContainer": {"SecretsManagerSecretResourceData": {"ARN": arn}}});
    let device = |id: &str, path: &str| json!({"Id": id, "Name": id, "ResourceDataContainer": {"LocalDeviceResourceData": {"SourcePath": path, "GroupOwnerSetting": {"AutoAddGroupOwner": true}}}});
    json!({"Resources": [
        secret("Token", SECRET_ARN), secret("Splunk", SPLUNK_ARN), secret("Snow", SNOW_ARN),
        device("Serial", "/dev/ttyS0"), device("Modbus", "/dev/ttyS1"),
        {"Id": "Proc", "Name": "Proc", "ResourceDataContainer": {"LocalVolumeResourceData": {"SourcePath": "/proc", "DestinationPath": "/host_proc", "GroupOwnerSetting": {"AutoAddGroupOwner": false}}}}
    ]})
}

fn connector(name: &str, version: u32) -> String {
    format!("arn:aws:greengrass:us-east-1::/connectors/{name}/versions/{version}")
}

/// Ten connectors, one of each, with valid parameters; `n` varies one value per version.
fn connector_version(n: usize) -> Value {
    json!({"Connectors": [
        {"Id": "twilio", "ConnectorArn": connector("TwilioNotifications", 5), "Parameters": {
            "TWILIO_ACCOUNT_SID": format!("AC{n}"), "TwilioAuthTokenSecretArn": SECRET_ARN,
            "TwilioAuthTokenSecretArn-ResourceId": "Token", "DefaultFromPhoneNumber": "+19999999999"}},
        {"Id": "modbus", "ConnectorArn": connector("ModbusRTUProtocolAdapter", 3), "Parameters": {
            "ModbusSerialPort-ResourceId": "Modbus", "ModbusSerialPort": "/dev/ttyS1"}},
        {"Id": "serial", "ConnectorArn": connector("SerialStream", 3), "Parameters": {
            "BaudRate": "115200", "Timeout": "25", "SerialPort": "/dev/ttyS0", "SerialPort-ResourceId": "Serial",
            "PollingRead": "false"}},
        {"Id": "defender", "ConnectorArn": connector("DeviceDefender", 3), "Parameters": {
            "SampleIntervalSeconds": "300", "ProcDestinationPath-ResourceId": "Proc", "ProcDestinationPath": "/host_proc"}},
        {"Id": "sns", "ConnectorArn": connector("SNS", 4), "Parameters": {
            "DefaultSNSArn": "arn:aws:sns:us-east-1:123456789012:alerts"}},
        {"Id": "firehose", "ConnectorArn": connector("KinesisFirehose", 5), "Parameters": {
            "DefaultDeliveryStreamArn": "arn:aws:firehose:us-east-1:123456789012:deliverystream/telemetry",
            "DeliveryStreamQueueSize": "5000", "MemorySize": "65535", "PublishInterval": "10"}},
        {"Id": "metrics", "ConnectorArn": connector("CloudWatchMetrics", 5), "Parameters": {
            "PublishInterval": "60", "PublishRegion": "us-west-2", "MemorySize": "16384", "MaxMetricsToRetain": "5000"}},
        {"Id": "splunk", "ConnectorArn": connector("SplunkIntegration", 4), "Parameters": {
            "SplunkEndpoint": "https://splunk.example.com:8088", "MemorySize": "200000", "SplunkQueueSize": "10000",
            "SplunkFlushIntervalSeconds": "5", "SplunkTokenSecretArn": SPLUNK_ARN, "SplunkTokenSecretArn-ResourceId": "Splunk"}},
        {"Id": "snow", "ConnectorArn": connector("ServiceNowMetricBaseIntegration", 4), "Parameters": {
            "PublishInterval": "10", "PublishBatchSize": "100", "InstanceName": "acme", "DefaultTableName": "metrics",
            "MaxMetricsToRetain": "5000", "AuthSecretArn": SNOW_ARN, "AuthSecretArn-ResourceId": "Snow"}},
        {"Id": "analytics", "ConnectorArn": connector("IoTAnalytics", 4), "Parameters": {"MemorySize": "65535"}}
    ]})
}

/// 100 subscriptions. With connectors: into and out of each connector on its topics, plus
/// device and cloud traffic; without: device, function and cloud traffic only (for moto).
fn subscription_version(n: usize, connectors: bool) -> Value {
    let mut subs: Vec<Value> = Vec::new();
    fn add(subs: &mut Vec<Value>, source: String, subject: String, target: String) {
        subs.push(json!({"Id": format!("s{}", subs.len()), "Source": source, "Subject": subject, "Target": target}));
    }
    if connectors {
        let pairs = [
            (
                "TwilioNotifications",
                5,
                "twilio/txt",
                "twilio/message/status",
            ),
            (
                "ModbusRTUProtocolAdapter",
                3,
                "modbus/adapter/request",
                "modbus/adapter/response",
            ),
            (
                "SerialStream",
                3,
                "serial/core/write/dev/ttyS0",
                "serial/core/status/dev/ttyS0",
            ),
            ("SNS", 4, "sns/message", "sns/message/status"),
            (
                "KinesisFirehose",
                5,
                "kinesisfirehose/message",
                "kinesisfirehose/message/status",
            ),
            (
                "CloudWatchMetrics",
                5,
                "cloudwatch/metric/put",
                "cloudwatch/metric/put/status",
            ),
            (
                "SplunkIntegration",
                4,
                "splunk/logs/put",
                "splunk/logs/put/status",
            ),
            (
                "ServiceNowMetricBaseIntegration",
                4,
                "servicenow/metricbase/metric",
                "servicenow/metricbase/metric/status",
            ),
            (
                "IoTAnalytics",
                4,
                "iotanalytics/channels/line1/messages/put",
                "iotanalytics/messages/put/status",
            ),
        ];
        for (name, v, input, output) in pairs {
            add(&mut subs, FUNCTION.into(), input.into(), connector(name, v));
            add(
                &mut subs,
                connector(name, v),
                output.into(),
                FUNCTION.into(),
            );
            add(&mut subs, connector(name, v), output.into(), "cloud".into());
        }
        add(
            &mut subs,
            connector("DeviceDefender", 3),
            "$aws/things/+/defender/metrics/json".into(),
            "cloud".into(),
        );
    }
    let mut k = 0;
    while subs.len() < 100 {
        let d = k % DEVICES;
        match k % 3 {
            0 => add(
                &mut subs,
                thing(d),
                format!("sensors/site{n}/sensor-{d}/m{k}"),
                FUNCTION.into(),
            ),
            1 => add(
                &mut subs,
                FUNCTION.into(),
                format!("commands/sensor-{d}/k{k}"),
                thing(d),
            ),
            _ => add(
                &mut subs,
                "cloud".into(),
                format!("config/site{n}/k{k}"),
                FUNCTION.into(),
            ),
        }
        k += 1;
    }
    json!({"Subscriptions": subs})
}

/// What the benchmark reads of a create's answer.
#[derive(serde::Deserialize)]
struct Created {
    #[serde(rename = "Arn")]
    arn: String,
    #[serde(rename = "Version")]
    version: String,
}

/// What the benchmark checks of a version read back (items are counted, not decoded).
#[derive(serde::Deserialize)]
struct ReadBack {
    #[serde(rename = "Definition")]
    definition: ReadDefinition,
}

#[derive(serde::Deserialize)]
struct ReadDefinition {
    #[serde(rename = "Subscriptions")]
    subscriptions: Option<Vec<serde::de::IgnoredAny>>,
    #[serde(rename = "Connectors")]
    connectors: Option<Vec<serde::de::IgnoredAny>>,
    #[serde(rename = "ConnectorDefinitionVersionArn")]
    connector_arn: Option<String>,
}

#[derive(Default)]
struct Timings {
    create: Vec<Duration>,
    read: Vec<Duration>,
    /// Creates by operation: subscription version, connector version, group version.
    by_op: [Vec<Duration>; 3],
    wall: Duration,
    group_versions: usize,
    /// Median of a small GetGroup.
    floor: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

impl Timings {
    /// Group versions per second.
    fn rate(&self) -> f64 {
        self.group_versions as f64 / self.wall.as_secs_f64()
    }

    fn report(&mut self, who: &str) {
        self.create.sort();
        self.read.sort();
        let all: Vec<Duration> = {
            let mut v: Vec<Duration> = self.create.iter().chain(&self.read).copied().collect();
            v.sort();
            v
        };
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{who:8} {:>6} group versions in {:>7.2} s: {:>8.1} group versions/s, {:>8.1} requests/s; \
             create p50 {:.2} ms p99 {:.2} ms; read p50 {:.2} ms p99 {:.2} ms; all p99 {:.2} ms; \
             GetGroup p50 {:.3} ms",
            self.group_versions,
            self.wall.as_secs_f64(),
            self.rate(),
            all.len() as f64 / self.wall.as_secs_f64(),
            ms(percentile(&self.create, 0.5)),
            ms(percentile(&self.create, 0.99)),
            ms(percentile(&self.read, 0.5)),
            ms(percentile(&self.read, 0.99)),
            ms(percentile(&all, 0.99)),
            ms(self.floor),
        );
        for (name, v) in [
            "CreateSubscriptionDefinitionVersion",
            "CreateConnectorDefinitionVersion",
            "CreateGroupVersion",
        ]
        .iter()
        .zip(self.by_op.iter_mut())
        {
            v.sort();
            if !v.is_empty() {
                println!(
                    "         {name}: p50 {:.3} ms, p99 {:.3} ms",
                    ms(percentile(v, 0.5)),
                    ms(percentile(v, 0.99))
                );
            }
        }
    }
}

/// Create `n` group versions and read each back. With `connectors`, each version also has a
/// new connector definition version.
async fn workload(client: &Client, n: usize, connectors: bool) -> Timings {
    let core = client.create_definition("cores", core_version()).await;
    let devices = client.create_definition("devices", device_version()).await;
    let functions = client
        .create_definition("functions", function_version())
        .await;
    let resources = if connectors {
        Some(
            client
                .create_definition("resources", resource_version())
                .await,
        )
    } else {
        None
    };
    // moto answers 500 to a definition created without an initial version.
    let (sub_def, _) = client
        .call(
            Method::POST,
            "/greengrass/definition/subscriptions",
            Some(&json!({"Name": "subs", "InitialVersion": subscription_version(0, connectors)})),
        )
        .await;
    let sub_id = sub_def["Id"].as_str().expect("Id").to_owned();
    let conn_id = if connectors {
        let (c, _) = client
            .call(
                Method::POST,
                "/greengrass/definition/connectors",
                Some(&json!({"Name": "conns"})),
            )
            .await;
        Some(c["Id"].as_str().expect("Id").to_owned())
    } else {
        None
    };
    let (group, _) = client
        .call(
            Method::POST,
            "/greengrass/groups",
            Some(&json!({"Name": "bench"})),
        )
        .await;
    let gid = group["Id"].as_str().expect("Id").to_owned();

    // The request bodies are made before the clock starts: the client's work is not the
    // server's.
    let sub_bodies: Vec<Vec<u8>> = (0..n)
        .map(|i| serde_json::to_vec(&subscription_version(i, connectors)).expect("json"))
        .collect();
    let conn_bodies: Vec<Vec<u8>> = (0..n)
        .map(|i| serde_json::to_vec(&connector_version(i)).expect("json"))
        .collect();
    let mut t = Timings::default();
    let started = Instant::now();
    for (i, sub_body) in sub_bodies.into_iter().enumerate() {
        let (sv, d) = client
            .call_raw(
                Method::POST,
                &format!("/greengrass/definition/subscriptions/{sub_id}/versions"),
                sub_body,
            )
            .await;
        t.create.push(d);
        t.by_op[0].push(d);
        let sv: Created = serde_json::from_slice(&sv).expect("a version");
        let mut gv = json!({
            "CoreDefinitionVersionArn": core,
            "DeviceDefinitionVersionArn": devices,
            "FunctionDefinitionVersionArn": functions,
            "SubscriptionDefinitionVersionArn": sv.arn,
        });
        if let (Some(cid), Some(res)) = (&conn_id, &resources) {
            let (cv, d) = client
                .call_raw(
                    Method::POST,
                    &format!("/greengrass/definition/connectors/{cid}/versions"),
                    conn_bodies[i].clone(),
                )
                .await;
            t.create.push(d);
            t.by_op[1].push(d);
            let cv: Created = serde_json::from_slice(&cv).expect("a version");
            gv["ConnectorDefinitionVersionArn"] = Value::String(cv.arn);
            gv["ResourceDefinitionVersionArn"] = Value::String(res.clone());
        }
        let (v, d) = client
            .call_raw(
                Method::POST,
                &format!("/greengrass/groups/{gid}/versions"),
                serde_json::to_vec(&gv).expect("json"),
            )
            .await;
        t.create.push(d);
        t.by_op[2].push(d);
        let vid = serde_json::from_slice::<Created>(&v)
            .expect("a version")
            .version;
        // Read everything back, and check it is all there.
        let (got, d) = client
            .call_raw(
                Method::GET,
                &format!("/greengrass/groups/{gid}/versions/{vid}"),
                Vec::new(),
            )
            .await;
        t.read.push(d);
        let got: ReadBack = serde_json::from_slice(&got).expect("a group version");
        let (subs, d) = client
            .call_raw(
                Method::GET,
                &format!(
                    "/greengrass/definition/subscriptions/{sub_id}/versions/{}",
                    sv.version
                ),
                Vec::new(),
            )
            .await;
        t.read.push(d);
        let subs: ReadBack = serde_json::from_slice(&subs).expect("a subscription version");
        assert_eq!(subs.definition.subscriptions.map(|s| s.len()), Some(100));
        if let Some(cid) = &conn_id {
            let arn = got.definition.connector_arn.expect("connector arn");
            let cvid = arn.rsplit('/').next().expect("version id");
            let (conns, d) = client
                .call_raw(
                    Method::GET,
                    &format!("/greengrass/definition/connectors/{cid}/versions/{cvid}"),
                    Vec::new(),
                )
                .await;
            t.read.push(d);
            let conns: ReadBack = serde_json::from_slice(&conns).expect("a connector version");
            assert_eq!(conns.definition.connectors.map(|c| c.len()), Some(10));
        }
        t.group_versions += 1;
    }
    t.wall = started.elapsed();
    // The floor: a small read, to separate the fixed cost of a signed HTTP round trip.
    let mut small = Vec::new();
    for _ in 0..200 {
        let (_, d) = client
            .call(Method::GET, &format!("/greengrass/groups/{gid}"), None)
            .await;
        small.push(d);
    }
    small.sort();
    t.floor = percentile(&small, 0.5);
    t
}

/// Clients working at once in the throughput run.
const CLIENTS: usize = 4;

/// `clients` clients at once, each on its own group, `n` group versions in all.
async fn concurrent(base: &str, n: usize, connectors: bool, clients: usize) -> Timings {
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let base = base.to_owned();
            tokio::spawn(
                async move { workload(&Client::new(&base), n / clients, connectors).await },
            )
        })
        .collect();
    let mut all = Timings::default();
    let mut floors = Vec::new();
    for t in tasks {
        let t = t.await.expect("client task");
        all.create.extend(t.create);
        all.read.extend(t.read);
        for (a, b) in all.by_op.iter_mut().zip(t.by_op) {
            a.extend(b);
        }
        all.group_versions += t.group_versions;
        floors.push(t.floor);
        // The clients' loops run side by side; the slowest one bounds the run. (Setup and the
        // floor measurement are outside the loops.)
        all.wall = all.wall.max(t.wall);
    }
    floors.sort();
    all.floor = floors[floors.len() / 2];
    all
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_moto() -> Option<(Moto, String)> {
    let port = free_port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let moto = Moto(child);
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if reqwest::get(format!("{base}/moto-api/")).await.is_ok() {
            return Some((moto, base));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 200 } else { 1000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).expect("store"));
        let state = Arc::new(AppState {
            service: Arc::new(Service::new(store, Identity { region: REGION.into(), account_id: ACCOUNT.into() })),
            auth: Auth::SigV4(vec![AccessKey { access_key_id: KEY_ID.into(), secret_access_key: SECRET.into() }]),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(coupler_api::serve(listener, state, std::future::pending()));

        println!("control plane: {n} group versions, each with 10 connectors and 100 subscriptions, created and read back");
        let ours_url = format!("http://{addr}");
        let moto = start_moto().await;
        if moto.is_none() {
            println!("moto_server is not installed or did not start: no comparison (pip install 'moto[server]')");
        }
        // One client, for latency; then CLIENTS at once, for throughput. Each server's
        // throughput is its best rate over both runs: moto, single-threaded, is often faster
        // with one client than with four.
        let (mut best_ours, mut best_same, mut best_theirs) = (0f64, 0f64, 0f64);
        for clients in [1, CLIENTS] {
            println!("-- {clients} client(s)");
            let mut ours = concurrent(&ours_url, n, true, clients).await;
            ours.report("coupler");
            // The same requests as moto's run: no connectors, 4 requests per group version.
            let mut same = concurrent(&ours_url, n, false, clients).await;
            same.report("coupler, no connectors");
            best_ours = best_ours.max(ours.rate());
            best_same = best_same.max(same.rate());
            if let Some((_, base)) = &moto {
                let mut theirs = concurrent(base, n, false, clients).await;
                theirs.report("moto");
                best_theirs = best_theirs.max(theirs.rate());
                println!(
                    "coupler / moto throughput with {clients} client(s): {:.1}x on the same requests; {:.1}x with Coupler's group versions also carrying 10 connectors",
                    same.rate() / theirs.rate(),
                    ours.rate() / theirs.rate()
                );
            }
        }
        if moto.is_some() {
            println!(
                "throughput, best of 1 and {CLIENTS} clients: coupler {best_same:.0} group versions/s on the same requests ({best_ours:.0} with connectors), moto {best_theirs:.0}: {:.1}x on the same requests; {:.1}x with connectors",
                best_same / best_theirs,
                best_ours / best_theirs
            );
        }
    });
}
