//! Kinesis Firehose benchmark: records per second from a device, through `coupler up`'s
//! Kinesis Firehose connector (version 5, batching with `PutRecordBatch`), into moto_server,
//! beside boto3 putting the same records into the same moto_server in the same run.
//!
//! Rows:
//!
//! * boto3 `put_record`, one call per record: what a Greengrass Lambda that talks to Firehose
//!   itself, without the connector, does (`benches/firehose_boto3.py`);
//! * boto3 `put_record_batch` of 500, for information: the best a client can do against moto;
//! * Coupler: a device publishes the records on `kinesisfirehose/message` (JSON, QoS 1) with up
//!   to `WINDOW` records not yet answered, and the clock stops at the last `success` entry in
//!   the connector's batch statuses on `kinesisfirehose/message/status`. Every record must be
//!   answered `success` exactly once, and the bucket must then hold every record once.
//!
//! Memory: the connector's queue is bounded (`DeliveryStreamQueueSize`, `MemorySize`). The
//! core's peak RSS (`VmHWM`, reset through `/proc/PID/clear_refs` before each phase) is shown
//! idle, during the delivery run, and during a stall phase: moto_server is stopped and the
//! device floods several queues' worth of records; the connector must refuse what does not
//! fit (`QueueFullException`) instead of growing.
//!
//! `cargo bench -p coupler --bench firehose` runs a short mode (CI); `-- --full` does 5× more.
//! Without moto_server or boto3 it says why and exits 0.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rmqtt_codec::types::QoS;
use rmqtt_codec::v3;
use serde_json::{Value, json};

#[path = "../tests/support/up.rs"]
mod up;

#[path = "../tests/support/mqtt_client.rs"]
mod mqtt_client;

use mqtt_client::{Api, Conn};

#[path = "../tests/support/procs.rs"]
mod procs;

use procs::{Reaped, cpu_s, verdict, vm_kib};

const KEY: &str = "AKIAFIREHOSEBENCH001";
const SECRET: &str = "firehose/bench/secret/00000000000000000000";
const ACCOUNT: &str = "123456789012";
const CONNECTOR: &str = "arn:aws:greengrass:us-east-1::/connectors/KinesisFirehose/versions/5";
const DEVICE: &str = "firehose-device";
const INPUT_TOPIC: &str = "kinesisfirehose/message";
const STATUS_TOPIC: &str = "kinesisfirehose/message/status";
/// The delivery streams `firehose_boto3.py setup` creates.
const STREAM: &str = "coupler";
const STALL_STREAM: &str = "coupler-stall";
/// The connector's bounds: records waiting per stream, and KB of record data waiting.
const QUEUE_SIZE: usize = 5000;
const MEMORY_KB: usize = 65535;
/// Records published and not yet answered, at most. Below the connector's inbox (1024
/// messages, dropping the oldest when full, as Greengrass's `maxWorkItemCount`) and its
/// QUEUE_SIZE, so that no record is lost or refused.
const WINDOW: usize = 1000;
/// Records sent before the clock starts (the connector's first HTTP connection to moto).
const WARMUP: usize = 100;
/// How long to wait for the next status before giving up.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

fn thing(name: &str) -> String {
    format!("arn:aws:iot:us-east-1:{ACCOUNT}:thing/{name}")
}

fn stream_arn(name: &str) -> String {
    format!("arn:aws:firehose:us-east-1:{ACCOUNT}:deliverystream/{name}")
}

/// Record `i`: the bytes `firehose_boto3.py`'s `record(i)` sends.
fn record(i: usize) -> String {
    format!("bench-record {i:08} temperature=21.5 humidity=40.25\n")
}

/// Start a new peak: `VmHWM` becomes the current RSS.
fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// The running core's API base, for `drops`.
static API_BASE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The lines of the core's `/metrics` that count dropped or refused messages.
fn drops() -> String {
    use std::io::{Read, Write};
    let Some(host) = API_BASE.get().and_then(|b| b.strip_prefix("http://")) else {
        return String::new();
    };
    let mut text = String::new();
    if let Ok(mut s) = TcpStream::connect(host) {
        let _ = write!(s, "GET /metrics HTTP/1.0\r\nHost: {host}\r\n\r\n");
        let _ = s.read_to_string(&mut text);
    }
    let wanted =
        |l: &&str| !l.starts_with('#') && (l.contains("dropped") || l.contains("rejected"));
    text.lines().filter(wanted).collect::<Vec<_>>().join("\n")
}

/// Messages the router has dropped on their way to the connector (its inbox was full).
fn inbox_drops() -> u64 {
    drops()
        .lines()
        .filter(|l| l.starts_with("coupler_router_dropped_total") && l.contains("KinesisFirehose"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// `firehose_boto3.py ARGS…`: its JSON, or why it failed.
fn boto3(args: &[&str]) -> Result<Value, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/firehose_boto3.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "firehose_boto3.py {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("firehose_boto3.py printed no JSON: {e}"))
}

/// Why the benchmark cannot run here, if it cannot.
fn missing() -> Option<String> {
    let boto = Command::new("python3")
        .args(["-c", "import boto3"])
        .stderr(Stdio::null())
        .status();
    if !boto.is_ok_and(|s| s.success()) {
        return Some("python3 with boto3 is not installed".into());
    }
    let moto = Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    (!moto.is_ok_and(|s| s.success())).then(|| "moto_server is not installed".into())
}

/// moto_server on a free port, once it accepts connections; its URL.
fn start_moto(log: &Path) -> (Reaped, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).expect("moto log"))
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let moto = Reaped::new(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (moto, format!("http://127.0.0.1:{port}"))
}

/// Deploy the bench group: the device, the connector for `stream` and its two subscriptions.
fn deploy(api: &Api, name: &str, stream: &str) {
    let cert = format!("arn:aws:iot:us-east-1:{ACCOUNT}:cert/{}", "ab".repeat(32));
    let params = json!({
        "DefaultDeliveryStreamArn": stream_arn(stream),
        "DeliveryStreamQueueSize": QUEUE_SIZE.to_string(),
        "MemorySize": MEMORY_KB.to_string(),
        "PublishInterval": "0",
        "IsolationMode": "NoContainer",
    });
    let (gid, vid) = api.group(
        name,
        &[
            (
                "cores",
                json!({"Cores": [{"Id": "core", "ThingArn": thing("core"), "CertificateArn": cert}]}),
            ),
            (
                "devices",
                json!({"Devices": [{"Id": "device", "ThingArn": thing(DEVICE), "CertificateArn": cert}]}),
            ),
            (
                "connectors",
                json!({"Connectors": [{"Id": "firehose", "ConnectorArn": CONNECTOR, "Parameters": params}]}),
            ),
            (
                "subscriptions",
                json!({"Subscriptions": [
                    {"Id": "in", "Source": thing(DEVICE), "Subject": INPUT_TOPIC, "Target": CONNECTOR},
                    {"Id": "status", "Source": CONNECTOR, "Subject": STATUS_TOPIC, "Target": thing(DEVICE)},
                ]}),
            ),
        ],
    );
    api.deploy(&gid, &vid);
}

/// What the statuses said so far.
#[derive(Debug, Default)]
struct Tally {
    success: usize,
    /// Failures by error code.
    failed: std::collections::BTreeMap<String, usize>,
    first_failure: Option<String>,
    /// Records answered more than once.
    twice: usize,
    /// Whether record `i` has been answered.
    seen: Vec<bool>,
    statuses: usize,
}

impl Tally {
    fn new(n: usize) -> Tally {
        Tally {
            seen: vec![false; n],
            ..Tally::default()
        }
    }

    fn answered(&self) -> usize {
        self.success + self.failed.values().sum::<usize>()
    }

    fn failures(&self) -> usize {
        self.failed.values().sum()
    }

    /// Count the entries of one batch status.
    fn add(&mut self, payload: &[u8]) {
        let v: Value = serde_json::from_slice(payload).unwrap_or_else(|e| {
            panic!(
                "a status that is not JSON ({e}): {}",
                String::from_utf8_lossy(payload)
            )
        });
        let entries = v["response"]
            .as_array()
            .unwrap_or_else(|| panic!("a status without entries: {v}"));
        self.statuses += 1;
        for e in entries {
            let i: usize = e["id"]
                .as_str()
                .and_then(|id| id.parse().ok())
                .unwrap_or_else(|| panic!("an entry for no record of ours: {e}"));
            let seen = self
                .seen
                .get_mut(i)
                .unwrap_or_else(|| panic!("record {i} was never sent"));
            self.twice += usize::from(*seen);
            *seen = true;
            if e["status"] == "success" && e["firehose_record_id"].is_string() {
                self.success += 1;
            } else {
                let code = e["ErrorCode"]
                    .as_str()
                    .unwrap_or("(no ErrorCode)")
                    .to_owned();
                *self.failed.entry(code).or_default() += 1;
                self.first_failure.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// The device: publishes records, reads the batch statuses.
struct Device {
    conn: Conn,
    packet_id: u16,
}

impl Device {
    async fn open(addr: SocketAddr) -> Device {
        let mut conn = Conn::open(addr, None, DEVICE).await;
        conn.subscribe(STATUS_TOPIC, QoS::AtLeastOnce).await;
        Device { conn, packet_id: 0 }
    }

    /// Queue record `i` (QoS 1); `flush` sends it.
    fn put(&mut self, i: usize) {
        self.packet_id = self.packet_id.wrapping_add(1).max(1);
        let body = json!({ "request": { "data": record(i) }, "id": i.to_string() });
        let p = mqtt_client::publish(
            INPUT_TOPIC,
            QoS::AtLeastOnce,
            self.packet_id,
            body.to_string().into(),
        );
        self.conn.put(p);
    }

    /// Count a packet from the broker; acknowledge a status (sent with the next flush).
    fn take(&mut self, p: v3::Packet, tally: &mut Tally) {
        let v3::Packet::Publish(p) = p else {
            return; // PUBACKs of the records
        };
        if let Some(packet_id) = p.packet_id {
            self.conn.put(v3::Packet::PublishAck { packet_id });
        }
        tally.add(&p.payload);
    }

    /// Wait for the next packet and count it.
    async fn wait(&mut self, tally: &mut Tally) {
        self.conn.flush().await;
        let next = tokio::time::timeout(ANSWER_WITHIN, self.conn.next()).await;
        let p = next.unwrap_or_else(|_| {
            panic!(
                "no status for {ANSWER_WITHIN:?}; {} of {} records answered; the core's /metrics:\n{}",
                tally.answered(),
                tally.seen.len(),
                drops()
            )
        });
        self.take(p, tally);
    }

    /// Send records `range` with at most `window` unanswered, and wait until all are answered.
    async fn deliver(&mut self, range: std::ops::Range<usize>, window: usize, tally: &mut Tally) {
        let mut sent = range.start;
        let goal = tally.answered() + range.len();
        while tally.answered() < goal {
            let unanswered = sent - tally.answered();
            let room = window.saturating_sub(unanswered).min(range.end - sent);
            for i in sent..sent + room {
                self.put(i);
            }
            sent += room;
            self.wait(tally).await;
        }
    }

    /// Send records `range` as fast as the broker takes them, in chunks, counting the statuses
    /// that have come meanwhile.
    async fn flood(&mut self, range: std::ops::Range<usize>, tally: &mut Tally) {
        const CHUNK: usize = 200;
        let mut i = range.start;
        while i < range.end {
            let end = range.end.min(i + CHUNK);
            for j in i..end {
                self.put(j);
            }
            i = end;
            self.conn.flush().await;
            while let Some(p) = self.conn.ready().await {
                self.take(p, tally);
            }
        }
        self.conn.flush().await;
    }
}

/// A row of the table.
struct Row {
    name: String,
    n: usize,
    seconds: f64,
    note: String,
}

impl Row {
    fn rate(&self) -> f64 {
        self.n as f64 / self.seconds
    }

    fn from_boto3(name: &str, r: Result<Value, String>) -> Row {
        match r {
            Ok(v) => Row {
                name: name.into(),
                n: v["n"].as_u64().unwrap_or(0) as usize,
                seconds: v["seconds"].as_f64().unwrap_or(f64::NAN),
                note: match v["failed"].as_u64() {
                    Some(0) => String::new(),
                    f => format!("{} failed", f.unwrap_or(0)),
                },
            },
            Err(e) => Row {
                name: name.into(),
                n: 0,
                seconds: f64::NAN,
                note: e,
            },
        }
    }
}

fn mb(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() {
    let full = std::env::args().any(|a| a == "--full");
    let scale = if full { 5 } else { 1 };
    // boto3's put_record runs at a few hundred a second on moto: fewer records keep CI short.
    let (n, n_single, n_stall) = (20_000 * scale, 1000 * scale, 4 * QUEUE_SIZE * scale);
    // How long the stall phase waits for the answers: failing records take three rounds of
    // batches, each batch three HTTP tries (about half a minute for a full queue).
    let stall_wait = Duration::from_secs(if full { 40 } else { 3 });
    if let Some(why) = missing() {
        eprintln!("Kinesis Firehose benchmark skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut moto, url) = start_moto(&dir.path().join("moto.log"));
    let moto_pid = moto.child.id();
    boto3(&["setup", &url]).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "Kinesis Firehose benchmark ({} mode): {}-byte records into moto_server (Firehose → S3); boto3 put_record {n_single} records, put_record_batch and Coupler {n} each",
        if full { "full" } else { "short" },
        record(0).len()
    );

    // boto3 first, alone on the machine beside moto.
    let cpu0 = cpu_s(moto_pid);
    let single = Row::from_boto3(
        "boto3 put_record",
        boto3(&[
            "put",
            &url,
            "boto3-put-record",
            &n_single.to_string(),
            "record",
        ]),
    );
    let moto_cpu_single = cpu_s(moto_pid) - cpu0;
    let cpu0 = cpu_s(moto_pid);
    let batch = Row::from_boto3(
        "boto3 put_record_batch (500)",
        boto3(&[
            "put",
            &url,
            "boto3-put-record-batch",
            &n.to_string(),
            "batch",
        ]),
    );
    let moto_cpu_batch = cpu_s(moto_pid) - cpu0;

    // Then Coupler.
    let up = up::start(
        &dir.path().join("coupler"),
        &["--mqtt-plain", "127.0.0.1:0", "--allow-uncontained"],
        &[
            ("COUPLER_ACCESS_KEY_ID", KEY),
            ("COUPLER_SECRET_ACCESS_KEY", SECRET),
            ("AWS_ENDPOINT_URL", &url),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("RUST_LOG", "error"),
        ],
    );
    let mqtt = up.mqtt_plain.expect("the plain MQTT listener");
    let api = Api::new(&up.api, KEY, SECRET);
    let _ = API_BASE.set(up.api.clone());
    let coupler = Reaped::new(up.child);
    let pid = coupler.child.id();
    deploy(&api, "firehose-bench", STREAM);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let rss_before = vm_kib(pid, "RSS");
    let mut tally = Tally::new(WARMUP + n);
    let (seconds, coupler_cpu, moto_cpu) = rt.block_on(async {
        let mut dev = Device::open(mqtt).await;
        dev.deliver(0..WARMUP, WINDOW, &mut tally).await;
        assert_eq!(
            tally.success, WARMUP,
            "the warm-up records were not all sent: {:?}",
            tally.first_failure
        );
        reset_peak(pid);
        let (c0, m0) = (cpu_s(pid), cpu_s(moto_pid));
        let start = Instant::now();
        dev.deliver(WARMUP..WARMUP + n, WINDOW, &mut tally).await;
        let seconds = start.elapsed().as_secs_f64();
        dev.conn.flush().await;
        (seconds, cpu_s(pid) - c0, cpu_s(moto_pid) - m0)
    });
    let rss_peak_run = vm_kib(pid, "HWM");
    let rss_after_run = vm_kib(pid, "RSS");
    let coupler_row = Row {
        name: "Coupler (connector v5, PublishInterval 0)".into(),
        n,
        seconds,
        note: format!(
            "{} batch statuses (warm-up included); {} failed; {} answered twice",
            tally.statuses,
            tally.failures(),
            tally.twice
        ),
    };
    let bucket = boto3(&["count", &url, STREAM]).unwrap_or_else(|e| panic!("{e}"));
    let in_bucket = bucket["records"].as_u64().unwrap_or(0) as usize;
    let distinct = bucket["distinct"].as_u64().unwrap_or(0) as usize;
    assert!(
        tally.success == WARMUP + n && tally.twice == 0,
        "Coupler: {} of {} records answered success ({} twice); first failure: {:?}",
        tally.success,
        WARMUP + n,
        tally.twice,
        tally.first_failure
    );
    let lost = inbox_drops();
    assert_eq!(
        lost, 0,
        "the router dropped records on their way to the connector"
    );
    assert!(
        in_bucket == WARMUP + n && distinct == WARMUP + n,
        "the bucket holds {in_bucket} records ({distinct} distinct) of the {} Coupler sent",
        WARMUP + n
    );

    // Stall: moto gone, the device floods; the connector's queue must stay bounded.
    deploy(&api, "firehose-bench-stall", STALL_STREAM);
    drop(std::mem::replace(
        &mut moto,
        Reaped::new(Command::new("true").spawn().expect("true")),
    ));
    let rss_idle_stall = vm_kib(pid, "RSS");
    let drops_before = inbox_drops();
    let mut inbox_dropped = 0;
    reset_peak(pid);
    let mut stall = Tally::new(n_stall);
    let stall_start = Instant::now();
    let flood_seconds = rt.block_on(async {
        let mut dev = Device::open(mqtt).await;
        dev.flood(0..n_stall, &mut stall).await;
        let flood_seconds = stall_start.elapsed().as_secs_f64();
        let deadline = Instant::now() + stall_wait;
        while stall.answered() + inbox_dropped < n_stall && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(100), dev.conn.next()).await {
                Ok(p) => dev.take(p, &mut stall),
                Err(_) => {
                    dev.conn.flush().await;
                    inbox_dropped = inbox_drops().saturating_sub(drops_before) as usize;
                }
            }
        }
        inbox_dropped = inbox_drops().saturating_sub(drops_before) as usize;
        dev.conn.flush().await;
        flood_seconds
    });
    let rss_peak_stall = vm_kib(pid, "HWM");
    let rss_after_stall = vm_kib(pid, "RSS");

    println!(
        "\n{:<42} {:>7} {:>9} {:>10}  note",
        "", "records", "seconds", "msg/s"
    );
    for r in [&single, &batch, &coupler_row] {
        if r.n == 0 {
            println!("{:<42} {}", r.name, r.note);
        } else {
            println!(
                "{:<42} {:>7} {:>9.3} {:>10.0}  {}",
                r.name,
                r.n,
                r.seconds,
                r.rate(),
                r.note
            );
        }
    }
    println!(
        "CPU seconds: moto {moto_cpu_single:.2} during boto3 put_record, {moto_cpu_batch:.2} during put_record_batch; during the Coupler run: coupler {coupler_cpu:.2}, moto {moto_cpu:.2}"
    );
    println!(
        "verified in moto's bucket: {in_bucket} records from Coupler ({distinct} distinct, {} with the warm-up), in {} objects",
        WARMUP + n,
        bucket["objects"]
    );

    println!(
        "\nmemory of `coupler up` (DeliveryStreamQueueSize {QUEUE_SIZE}, MemorySize {MEMORY_KB} KB):"
    );
    println!(
        "  delivery run: RSS {:.1} MB before, peak {:.1} MB (+{:.1}), {:.1} MB after",
        mb(rss_before),
        mb(rss_peak_run),
        mb(rss_peak_run.saturating_sub(rss_before)),
        mb(rss_after_run)
    );
    let refused = stall.failed.get("QueueFullException").copied().unwrap_or(0);
    println!(
        "  stall (moto stopped, {n_stall} records flooded in {flood_seconds:.2} s): RSS {:.1} MB before, peak {:.1} MB (+{:.1}), {:.1} MB after",
        mb(rss_idle_stall),
        mb(rss_peak_stall),
        mb(rss_peak_stall.saturating_sub(rss_idle_stall)),
        mb(rss_after_stall)
    );
    println!(
        "  within {:.1} s: {inbox_dropped} dropped by the connector's full inbox (oldest first), {} answered ({} refused QueueFullException, other failures {:?}, {} success), {} still queued or being retried",
        stall_start.elapsed().as_secs_f64(),
        stall.answered(),
        refused,
        stall
            .failed
            .iter()
            .filter(|(k, _)| *k != "QueueFullException")
            .collect::<Vec<_>>(),
        stall.success,
        n_stall.saturating_sub(stall.answered() + inbox_dropped)
    );

    println!("\nagainst the target (information; the benchmark does not fail on a miss):");
    if single.n > 0 {
        let ratio = coupler_row.rate() / single.rate();
        println!(
            "  Coupler / boto3 put_record: {ratio:.1}x the message rate (target >= 5x): {}",
            verdict(ratio >= 5.0)
        );
    }
    if batch.n > 0 {
        println!(
            "  Coupler / boto3 put_record_batch: {:.2}x (information: the same batching, without MQTT)",
            coupler_row.rate() / batch.rate()
        );
    }
    let bounded =
        refused + inbox_dropped > 0 && rss_peak_stall.saturating_sub(rss_idle_stall) < 64 * 1024;
    println!(
        "  bounded memory: what did not fit was refused or dropped and RSS grew {:.1} MB while {n_stall} records arrived: {}",
        mb(rss_peak_stall.saturating_sub(rss_idle_stall)),
        verdict(bounded)
    );
    drop(coupler);
}
