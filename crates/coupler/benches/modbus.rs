//! Modbus RTU benchmark: request/response transactions through the whole Coupler path (an MQTT
//! request from a device, the Modbus-RTU Protocol Adapter connector, the serial line, the
//! device's answer, the MQTT response) beside raw clients on the same line, in one run.
//!
//! The line is a socat pty pair; the Modbus device on its far end is `tests/e2e/modbus_peer.py`
//! (a pymodbus RTU server, unit 1). Every transaction reads holding registers 0–9 of unit 1 and
//! is checked against the peer's known values. Rows:
//!
//! * raw pymodbus: `benches/modbus_raw.py`, pymodbus's sync client with its defaults (what a
//!   user of the Greengrass connector, built on pymodbus, gets), and its async client;
//! * raw tokio-modbus: the crate and version the connector uses, straight on the line — the
//!   bus and peer time without Coupler;
//! * Coupler, sequential (one request at a time, QoS 1, wait for its response) and pipelined
//!   (16 requests in flight; the connector queues them, one is on the bus at a time), with the
//!   connector's default InterFrameDelay (the Modbus t3.5, 1750 µs at 115200 baud, which a
//!   real bus needs) and with InterFrameDelay 0 (as pymodbus's client, which keeps no silence).
//!
//! A pty does not enforce baud timing: bytes cross at memory speed, so these rates are above
//! what a real line allows; the physical ceiling computed from the frame sizes is printed too.
//!
//! `cargo bench -p coupler --bench modbus` runs a short mode (CI); `-- --full` does 5× more.
//! Without socat, pymodbus or a writable /dev it says why and exits 0.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rmqtt_codec::types::QoS;
use rmqtt_codec::v3;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_modbus::prelude::{Reader, Slave};
use tokio_serial::{SerialPort, SerialPortBuilderExt};

#[path = "../tests/support/up.rs"]
mod up;

#[path = "../tests/support/mqtt_client.rs"]
mod mqtt_client;

use mqtt_client::{Api, Conn};

#[path = "../tests/support/procs.rs"]
mod procs;

use procs::{Reaped, cpu_ns, verdict};

const KEY: &str = "AKIAMODBUSBENCH00001";
const SECRET: &str = "modbus/bench/secret/000000000000000000000";
const ACCOUNT: &str = "123456789012";
const CONNECTOR: &str =
    "arn:aws:greengrass:us-east-1::/connectors/ModbusRTUProtocolAdapter/versions/3";
const DEVICE: &str = "modbus-client";
const REQUEST_TOPIC: &str = "modbus/adapter/request";
const RESPONSE_TOPIC: &str = "modbus/adapter/response";
const BAUD: u32 = 115_200;
/// How long the raw client waits for a reply (the peer answers in well under a millisecond).
const REPLY_WITHIN: Duration = Duration::from_secs(3);
/// How long the device waits for the next response (the connector answers No Response after
/// its ResponseTimeoutMs, 3 s by default).
const ANSWER_WITHIN: Duration = Duration::from_secs(30);
/// Requests in flight in the pipelined runs.
const WINDOW: usize = 16;
/// `modbus_peer.py`'s holding registers 0–9 of unit 1: what every transaction reads.
const EXPECTED: [u16; 10] = [1234, 5678, 9012, 3456, 7890, 65535, 0, 42, 807, 907];
/// ReadHoldingRegisters of 10: request frame (address, function, start, count, CRC) and reply
/// frame (address, function, byte count, 2 per register, CRC), in bytes.
const REQUEST_BYTES: u32 = 8;
const REPLY_BYTES: u32 = 5 + 2 * 10;
/// Modbus RTU characters: start, 8 data, parity (or a second stop bit), stop.
const BITS_PER_CHAR: u32 = 11;

fn thing(name: &str) -> String {
    format!("arn:aws:iot:us-east-1:{ACCOUNT}:thing/{name}")
}

/// The processes whose CPU time each measurement splits per transaction.
#[derive(Clone, Copy)]
struct Procs {
    coupler: Option<u32>,
    peer: u32,
    socat: u32,
    /// The client: this process, or the Python one (measured from outside as a whole).
    client: Option<u32>,
}

/// CPU time so far of each of `Procs`, in the same order.
#[derive(Clone, Copy, Default)]
struct Cpu([Option<u64>; 4]);

impl Procs {
    fn cpu(&self) -> Cpu {
        Cpu([
            self.coupler.map(cpu_ns),
            Some(cpu_ns(self.peer)),
            Some(cpu_ns(self.socat)),
            self.client.map(cpu_ns),
        ])
    }
}

/// One measurement.
#[derive(Default)]
struct Stats {
    n: usize,
    failed: usize,
    tx_s: f64,
    mean_us: f64,
    p50_us: f64,
    p99_us: f64,
    /// CPU µs per transaction of coupler, peer, socat, client.
    cpu_us: [Option<f64>; 4],
    note: String,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p).round() as usize)
        .map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

/// Collects one measurement: transactions numbered from 0, the first `warmup` not counted.
struct Meter {
    warmup: usize,
    procs: Procs,
    lat: Vec<Duration>,
    failed: usize,
    /// When counting started, and the CPU times then.
    start: (Instant, Cpu),
}

impl Meter {
    fn new(n: usize, warmup: usize, procs: Procs) -> Meter {
        Meter {
            warmup,
            procs,
            lat: Vec::with_capacity(n),
            failed: 0,
            start: (Instant::now(), procs.cpu()),
        }
    }

    /// Counting starts now (the rate is over what follows).
    fn restart(&mut self) {
        self.start = (Instant::now(), self.procs.cpu());
    }

    /// Transaction `i`, started at `t`, has just ended.
    fn record(&mut self, i: usize, t: Instant, ok: bool) {
        if i >= self.warmup {
            self.lat.push(t.elapsed());
            self.failed += usize::from(!ok);
        }
    }

    fn finish(mut self) -> Stats {
        let elapsed = self.start.0.elapsed();
        let cpu = (self.start.1, self.procs.cpu());
        self.lat.sort_unstable();
        let n = self.lat.len();
        let mut s = Stats {
            n,
            failed: self.failed,
            tx_s: n as f64 / elapsed.as_secs_f64(),
            mean_us: self.lat.iter().sum::<Duration>().as_secs_f64() * 1e6 / n.max(1) as f64,
            p50_us: percentile(&self.lat, 0.5),
            p99_us: percentile(&self.lat, 0.99),
            ..Stats::default()
        };
        s.cpu(cpu, n);
        s
    }
}

impl Stats {
    fn cpu(&mut self, (before, after): (Cpu, Cpu), n: usize) {
        for (i, slot) in self.cpu_us.iter_mut().enumerate() {
            if let (Some(a), Some(b)) = (before.0[i], after.0[i]) {
                *slot = Some(b.saturating_sub(a) as f64 / 1e3 / n.max(1) as f64);
            }
        }
    }

    fn failed(note: String) -> Stats {
        Stats {
            note,
            ..Stats::default()
        }
    }
}

/// What is missing for this benchmark to run, if anything.
fn missing(peer: &Path) -> Option<String> {
    let runs = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !runs("socat", &["-V"]) {
        return Some("socat is not installed (scripts/install-test-deps.sh installs it)".into());
    }
    if !runs("python3", &["-c", "import pymodbus, serial"]) {
        return Some(
            "python3 with pymodbus and pyserial is not available (scripts/install-test-deps.sh installs them)"
                .into(),
        );
    }
    if !peer.exists() {
        return Some(format!("{} is not there", peer.display()));
    }
    // The connector's serial port is a local device resource, whose path must be under /dev.
    let probe = PathBuf::from(format!("/dev/ttyCPLprobe{}", std::process::id()));
    if let Err(e) = std::os::unix::fs::symlink("/dev/null", &probe) {
        return Some(format!(
            "cannot make a link in /dev for the pty ({e}); the device resource must be under /dev"
        ));
    }
    let _ = std::fs::remove_file(&probe);
    None
}

/// A socat pty pair: the peer's end `a` (in `dir`) and the clients' end `b` (under /dev).
fn line(dir: &Path) -> (Reaped, PathBuf, PathBuf) {
    let a = dir.join("peer-tty");
    let b = PathBuf::from(format!("/dev/ttyCPLbench{}", std::process::id()));
    let _ = std::fs::remove_file(&b);
    let child = Command::new("socat")
        .arg(format!("pty,raw,echo=0,link={}", a.display()))
        .arg(format!("pty,raw,echo=0,link={}", b.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("socat starts");
    let mut socat = Reaped::new(child);
    socat.remove = vec![a.clone(), b.clone()];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(a.exists() && b.exists()) {
        assert!(Instant::now() < deadline, "socat made no ptys");
        std::thread::sleep(Duration::from_millis(10));
    }
    (socat, a, b)
}

/// `modbus_peer.py` on `a`, once it says it is ready.
fn peer(script: &Path, a: &Path, log: &Path) -> Reaped {
    let child = Command::new("python3")
        .arg(script)
        .arg(a)
        .args(["--baud", &BAUD.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("peer log"))
        .spawn()
        .expect("python3 starts");
    let mut peer = Reaped::new(child);
    let mut stdout = BufReader::new(peer.child.stdout.take().expect("stdout"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = String::new();
        let _ = stdout.read_line(&mut first);
        let _ = tx.send(first);
        // Whatever it prints later is not wanted, but must not meet a closed pipe.
        let _ = std::io::copy(&mut stdout, &mut std::io::sink());
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(l) if l.starts_with("ready") => peer,
        other => panic!(
            "modbus_peer.py did not get ready ({other:?}); its stderr:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        ),
    }
}

/// `modbus_raw.py` with pymodbus's `client` (sync or async).
fn raw_pymodbus(b: &Path, client: &str, n: usize, warmup: usize, procs: Procs) -> Stats {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/modbus_raw.py");
    let before = procs.cpu();
    let out = Command::new("python3")
        .arg(script)
        .arg(b)
        .args(["--baud", &BAUD.to_string()])
        .args(["--count", &n.to_string(), "--warmup", &warmup.to_string()])
        .args(["--client", client])
        .output()
        .expect("python3 runs");
    let after = procs.cpu();
    if !out.status.success() {
        return Stats::failed(format!(
            "modbus_raw.py --client {client} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let r: Value = serde_json::from_slice(&out.stdout).expect("modbus_raw.py prints JSON");
    let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
    let mut s = Stats {
        n: r["n"].as_u64().unwrap_or(0) as usize,
        tx_s: f("tx_s"),
        mean_us: f("mean_us"),
        p50_us: f("p50_us"),
        p99_us: f("p99_us"),
        note: r["note"].as_str().unwrap_or_default().to_owned(),
        ..Stats::default()
    };
    // Peer and socat over the warm-up too (the client process is gone by then).
    s.cpu((before, after), n + warmup);
    s
}

/// The same transactions with tokio-modbus straight on the line, opened as the connector does.
async fn raw_tokio(b: &Path, n: usize, warmup: usize, procs: Procs) -> Stats {
    let port = tokio_serial::new(b.to_string_lossy(), BAUD)
        .flow_control(tokio_serial::FlowControl::None)
        .open_native_async()
        .expect("open the line");
    port.clear(tokio_serial::ClearBuffer::Input).expect("clear");
    let mut ctx = tokio_modbus::prelude::rtu::attach_slave(port, Slave(1));
    let mut m = Meter::new(n, warmup, procs);
    for i in 0..warmup + n {
        if i == warmup {
            m.restart();
        }
        let t = Instant::now();
        let r = tokio::time::timeout(REPLY_WITHIN, ctx.read_holding_registers(0, 10)).await;
        let ok = matches!(&r, Ok(Ok(Ok(regs))) if regs[..] == EXPECTED);
        assert!(
            ok || i > 0,
            "tokio-modbus: the first transaction failed: {r:?}"
        );
        m.record(i, t, ok);
    }
    m.finish()
}

/// The parts of a response the benchmark checks.
#[derive(Deserialize)]
struct Answer {
    id: String,
    response: AnswerBody,
}

#[derive(Deserialize)]
struct AnswerBody {
    status: String,
    #[serde(default)]
    payload: Value,
}

/// The device: publishes requests, receives responses.
struct Device {
    conn: Conn,
    packet_id: u16,
}

impl Device {
    async fn open(addr: SocketAddr) -> Device {
        let mut conn = Conn::open(addr, None, DEVICE).await;
        conn.subscribe(RESPONSE_TOPIC, QoS::AtLeastOnce).await;
        Device { conn, packet_id: 0 }
    }

    /// Queue request `i` (QoS 1); `flush` sends it.
    fn request(&mut self, i: usize) {
        self.packet_id = self.packet_id.wrapping_add(1).max(1);
        let body = format!(
            r#"{{"request":{{"operation":"ReadHoldingRegistersRequest","device":1,"address":0,"count":10}},"id":"r{i}"}}"#
        );
        let p = mqtt_client::publish(REQUEST_TOPIC, QoS::AtLeastOnce, self.packet_id, body.into());
        self.conn.put(p);
    }

    async fn flush(&mut self) {
        self.conn.flush().await;
    }

    /// The next response: the request number it answers and whether it read the registers.
    /// Its PUBACK is queued, to go with the next flush.
    async fn answer(&mut self) -> (usize, bool) {
        loop {
            let next = tokio::time::timeout(ANSWER_WITHIN, self.conn.next()).await;
            let next = next.unwrap_or_else(|_| panic!("no response for {ANSWER_WITHIN:?}"));
            let v3::Packet::Publish(p) = next else {
                continue; // PUBACKs of the requests
            };
            if let Some(packet_id) = p.packet_id {
                self.conn.put(v3::Packet::PublishAck { packet_id });
            }
            let a: Answer = serde_json::from_slice(&p.payload).unwrap_or_else(|e| {
                panic!(
                    "unexpected response ({e}): {}",
                    String::from_utf8_lossy(&p.payload)
                )
            });
            let i = a.id.strip_prefix('r').and_then(|i| i.parse().ok());
            let i = i.unwrap_or_else(|| panic!("a response to no request of ours: {}", a.id));
            let ok = a.response.status == "success"
                && a.response.payload["registers"] == json!(EXPECTED);
            if !ok && i == 0 {
                panic!(
                    "the first request failed: {}",
                    String::from_utf8_lossy(&p.payload)
                );
            }
            return (i, ok);
        }
    }
}

/// One request at a time, each sent once the previous one is answered.
async fn sequential(dev: &mut Device, n: usize, warmup: usize, procs: Procs) -> Stats {
    let mut m = Meter::new(n, warmup, procs);
    for i in 0..warmup + n {
        if i == warmup {
            m.restart();
        }
        let t = Instant::now();
        dev.request(i);
        dev.flush().await;
        let (got, ok) = dev.answer().await;
        assert_eq!(got, i, "answers come in order");
        m.record(i, t, ok);
    }
    dev.flush().await;
    m.finish()
}

/// WINDOW requests in flight: a new one goes out as each answer comes in.
async fn pipelined(dev: &mut Device, n: usize, warmup: usize, procs: Procs) -> Stats {
    let total = warmup + n;
    let mut sent_at = Vec::with_capacity(total);
    let mut m = Meter::new(n, warmup, procs);
    for done in 0..total {
        while sent_at.len() < total.min(done + WINDOW) {
            dev.request(sent_at.len());
            sent_at.push(Instant::now());
        }
        dev.flush().await;
        let (i, ok) = dev.answer().await;
        m.record(i, sent_at[i], ok);
        if done + 1 == warmup {
            // The rate is over the answers after the warm-up ones.
            m.restart();
        }
    }
    dev.flush().await;
    m.finish()
}

/// Deploy the bench group: the device, the line as a device resource, the connector with
/// `extra` parameters, and the two subscriptions.
fn deploy(api: &Api, name: &str, b: &Path, extra: &[(&str, &str)]) {
    let port = b.to_string_lossy();
    let mut params = json!({
        "ModbusSerialPort-ResourceId": "modbus-line",
        "ModbusSerialPort": port,
        "BaudRate": BAUD.to_string(),
    });
    for (k, v) in extra {
        params[*k] = json!(v);
    }
    let cert = format!("arn:aws:iot:us-east-1:{ACCOUNT}:cert/{}", "ab".repeat(32));
    let (gid, vid) = api.group(
        name,
        &[
            (
                "cores",
                json!({"Cores": [{"Id": "core", "ThingArn": thing("core"), "CertificateArn": cert}]}),
            ),
            (
                "devices",
                json!({"Devices": [{"Id": "client", "ThingArn": thing(DEVICE), "CertificateArn": cert}]}),
            ),
            (
                "resources",
                json!({"Resources": [{"Id": "modbus-line", "Name": "modbus-line", "ResourceDataContainer": {
                    "LocalDeviceResourceData": {"SourcePath": port, "GroupOwnerSetting": {"AutoAddGroupOwner": true}}}}]}),
            ),
            (
                "connectors",
                json!({"Connectors": [{"Id": "modbus", "ConnectorArn": CONNECTOR, "Parameters": params}]}),
            ),
            (
                "subscriptions",
                json!({"Subscriptions": [
                    {"Id": "request", "Source": thing(DEVICE), "Subject": REQUEST_TOPIC, "Target": CONNECTOR},
                    {"Id": "response", "Source": CONNECTOR, "Subject": RESPONSE_TOPIC, "Target": thing(DEVICE)},
                ]}),
            ),
        ],
    );
    api.deploy(&gid, &vid);
}

/// The Modbus t3.5 in seconds (Modbus over Serial Line v1.02, §2.5.1.1).
fn t35(baud: u32) -> f64 {
    if baud > 19_200 {
        1750e-6
    } else {
        3.5 * f64::from(BITS_PER_CHAR) / f64::from(baud)
    }
}

/// Seconds on the wire for one transaction's two frames, and the most transactions a second
/// the line allows with a t3.5 after each frame.
fn ceiling(baud: u32) -> (f64, f64) {
    let wire = f64::from((REQUEST_BYTES + REPLY_BYTES) * BITS_PER_CHAR) / f64::from(baud);
    (wire, 1.0 / (wire + 2.0 * t35(baud)))
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.0}"))
}

fn row(name: &str, s: &Stats) {
    if s.n == 0 {
        println!("{name:<30} {}", s.note);
        return;
    }
    println!(
        "{name:<30} {:>8.0} {:>9.0} {:>8.0} {:>8.0} {:>5} {:>8} {:>6} {:>6} {:>7}",
        s.tx_s,
        s.mean_us,
        s.p50_us,
        s.p99_us,
        s.failed,
        opt(s.cpu_us[0]),
        opt(s.cpu_us[1]),
        opt(s.cpu_us[2]),
        opt(s.cpu_us[3]),
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--full");
    let (n, warmup) = if full { (2500, 100) } else { (500, 50) };
    let peer_script = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/e2e/modbus_peer.py"
    ));
    if let Some(why) = missing(&peer_script) {
        eprintln!("Modbus benchmark skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (socat, a, b) = line(dir.path());
    let peer = peer(&peer_script, &a, &dir.path().join("peer.log"));
    let mut procs = Procs {
        coupler: None,
        peer: peer.child.id(),
        socat: socat.child.id(),
        client: None,
    };
    println!(
        "Modbus RTU benchmark ({} mode): ReadHoldingRegisters of 10 from unit 1 of modbus_peer.py (pymodbus) on a socat pty pair at {BAUD} baud; {n} transactions per row after {warmup} for warm-up",
        if full { "full" } else { "short" }
    );

    // Raw clients first: each opens the line alone (serial ports are opened exclusively).
    let py_sync = raw_pymodbus(&b, "sync", n, warmup, procs);
    let py_async = raw_pymodbus(&b, "async", n, warmup, procs);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    procs.client = Some(std::process::id());
    let raw = rt.block_on(raw_tokio(&b, n, warmup, procs));

    // Then the whole path through Coupler.
    let up = up::start(
        &dir.path().join("coupler"),
        &["--mqtt-plain", "127.0.0.1:0", "--allow-uncontained"],
        &[
            ("COUPLER_ACCESS_KEY_ID", KEY),
            ("COUPLER_SECRET_ACCESS_KEY", SECRET),
            ("RUST_LOG", "error"),
        ],
    );
    let mqtt = up.mqtt_plain.expect("the plain MQTT listener");
    let api = Api::new(&up.api, KEY, SECRET);
    let coupler = Reaped::new(up.child);
    procs.coupler = Some(coupler.child.id());
    let mut runs = Vec::new();
    for (label, extra) in [("t3.5", &[][..]), ("0", &[("InterFrameDelay", "0")][..])] {
        deploy(&api, &format!("modbus-bench-{label}"), &b, extra);
        let (seq, pipe) = rt.block_on(async {
            let mut dev = Device::open(mqtt).await;
            let seq = sequential(&mut dev, n, warmup, procs).await;
            let pipe = pipelined(&mut dev, n, warmup, procs).await;
            (seq, pipe)
        });
        runs.push((label, seq, pipe));
    }

    println!(
        "\n{:<30} {:>8} {:>9} {:>8} {:>8} {:>5} {:>8} {:>6} {:>6} {:>7}",
        "",
        "tx/s",
        "mean us",
        "p50 us",
        "p99 us",
        "fail",
        "cpu/tx: coupler",
        "peer",
        "socat",
        "client"
    );
    row("raw pymodbus (sync client)", &py_sync);
    row("raw pymodbus (async client)", &py_async);
    row("raw tokio-modbus", &raw);
    for (label, seq, _) in &runs {
        row(&format!("coupler sequential ({label})"), seq);
    }
    for (label, _, pipe) in &runs {
        row(&format!("coupler pipelined x{WINDOW} ({label})"), pipe);
    }
    println!(
        "(t3.5) = the connector's default InterFrameDelay, 1750 us of silence before each request at {BAUD} baud; (0) = InterFrameDelay 0, like pymodbus's client.\n\
         Latency is from the request to its answer (pipelined: including the wait in the connector's queue). cpu/tx = CPU microseconds per transaction of each process\n\
         (pymodbus rows: peer and socat over the warm-up too; the Python client is not measured)."
    );
    if !py_sync.note.is_empty() {
        println!("note: {}", py_sync.note);
    }

    let (_, seq0, pipe0) = &runs[1];
    println!("\nagainst the targets (information; the benchmark does not fail on a miss):");
    if py_sync.n > 0 {
        let ratio = seq0.tx_s / py_sync.tx_s;
        println!(
            "  coupler sequential (0) / raw pymodbus sync: {ratio:.2}x the transaction rate (target >= 3x): {}",
            verdict(ratio >= 3.0)
        );
        println!(
            "  coupler pipelined (0) / raw pymodbus sync:  {:.2}x",
            pipe0.tx_s / py_sync.tx_s
        );
    }
    if py_async.n > 0 {
        println!(
            "  coupler sequential (0) / raw pymodbus async: {:.2}x (information: the async client does not poll)",
            seq0.tx_s / py_async.tx_s
        );
    }
    let added = seq0.mean_us - raw.mean_us;
    println!(
        "  added latency, coupler sequential (0) mean - raw tokio-modbus mean: {added:.0} us per transaction (target < 200 us): {}",
        verdict(added < 200.0)
    );
    let (_, seq35, _) = &runs[0];
    println!(
        "  (p50: {:.0} us; with the default InterFrameDelay, beyond the 1750 us of silence it keeps: {:.0} us)",
        seq0.p50_us - raw.p50_us,
        seq35.mean_us - raw.mean_us - 1750.0
    );

    println!(
        "\nphysical ceiling: a pty does not enforce baud timing, so the rates above exceed what a real line carries.\n\
         ReadHoldingRegisters of 10: request {REQUEST_BYTES} bytes, reply 5 + 2*10 = {REPLY_BYTES} bytes, {BITS_PER_CHAR} bits a character, a t3.5 of silence after each frame:\n\
         T = ({REQUEST_BYTES} + {REPLY_BYTES}) * {BITS_PER_CHAR} / baud + 2 * t3.5, t3.5 = 3.5 * {BITS_PER_CHAR} / baud up to 19200 baud, 1750 us above; max tx/s = 1 / T (device turnaround not counted)"
    );
    for baud in [9600, 115_200] {
        let (wire, max) = ceiling(baud);
        println!(
            "  {baud:>6} baud: {:.3} ms on the wire + 2 * {:.3} ms = {:.3} ms -> {max:.1} tx/s (without the gaps: {:.1} tx/s)",
            wire * 1e3,
            t35(baud) * 1e3,
            (wire + 2.0 * t35(baud)) * 1e3,
            1.0 / wire
        );
    }
    drop(coupler);
    drop(peer);
    drop(socat);
}
