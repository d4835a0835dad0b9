//! MQTT load generator: Coupler's device MQTT server against mosquitto, in one run.
//!
//! Both brokers run on this machine with the same certificates (the group CA's). The load
//! generator (a lean MQTT 3.1.1 client on the same codec crate, so the client costs little
//! beside the brokers) runs N publishers and M subscribers with a fixed payload and QoS:
//!
//! * 1→1, 1→100 fan-out and 100→1 fan-in; QoS 0 and 1; plain TCP and TLS;
//! * a flood phase: every publisher sends as fast as the broker takes it (QoS 1 with 32
//!   messages in flight), giving delivered messages per second and the broker's CPU;
//! * a paced phase: a fixed rate well below saturation, giving p50/p99 latency from publish
//!   to delivery;
//! * the broker's RSS after the scenario.
//!
//! `cargo bench -p coupler --bench mqtt` runs a short mode (CI); `-- --full` sends 5× more.
//! Coupler routes along group subscriptions; mosquitto along topic subscriptions alone.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use bytes::{BufMut, BytesMut};
use rmqtt_codec::types::QoS;
use rmqtt_codec::v3;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio_util::codec::Decoder;

const KEY: &str = "AKIAMQTTBENCH0000001";
const SECRET: &str = "mqtt/bench/secret/00000000000000000000000";
const ACCOUNT_THING: &str = "arn:aws:iot:us-east-1:123456789012:thing/";
const PAYLOAD: usize = 64;
const WINDOW: usize = 32;
const FAN: usize = 100;

#[path = "../tests/support/mqtt_client.rs"]
mod mqtt_client;

use mqtt_client::{Api, Conn, Tls};

#[path = "../tests/support/procs.rs"]
mod procs;

use procs::{cpu_s, vm_kib};

/// Where a broker listens and how to reach it.
struct Target {
    name: &'static str,
    pid: u32,
    plain: SocketAddr,
    tls: SocketAddr,
}

fn nanos(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn publish_packet(topic: &str, qos: QoS, id: u16, stamp: u64) -> v3::Packet {
    let mut payload = BytesMut::with_capacity(PAYLOAD);
    payload.put_u64(stamp);
    payload.resize(PAYLOAD, 0xAB);
    mqtt_client::publish(topic, qos, id, payload.freeze())
}

/// Send `count` messages; `pace` spreads them at a fixed rate, otherwise as fast as the
/// broker takes them (QoS 1: at most WINDOW unacknowledged).
async fn publisher(
    mut c: Conn,
    topic: String,
    qos: QoS,
    count: usize,
    pace: Option<Duration>,
    base: Instant,
) {
    let mut in_flight = 0usize;
    let mut next_id: u16 = 0;
    let start = tokio::time::Instant::now();
    let mut sent = 0;
    while sent < count {
        if let Some(gap) = pace {
            tokio::time::sleep_until(start + gap * u32::try_from(sent).unwrap_or(u32::MAX)).await;
        }
        // Queue a batch within the window, then write it at once.
        let batch = if pace.is_some() { 1 } else { 64 };
        let mut queued = 0;
        while queued < batch && sent < count && (qos == QoS::AtMostOnce || in_flight < WINDOW) {
            next_id = next_id.wrapping_add(1).max(1);
            c.put(publish_packet(&topic, qos, next_id, nanos(base)));
            queued += 1;
            sent += 1;
            if qos != QoS::AtMostOnce {
                in_flight += 1;
            }
        }
        c.flush().await;
        // Collect acknowledgements; block only when the window is full.
        while qos != QoS::AtMostOnce && (in_flight >= WINDOW || (sent == count && in_flight > 0)) {
            if let v3::Packet::PublishAck { .. } = c.next().await {
                in_flight -= 1;
            }
            while let Ok(Some((p, _))) = c.codec.decode(&mut c.rbuf) {
                if let v3::Packet::PublishAck { .. } = p {
                    in_flight -= 1;
                }
            }
        }
    }
    // Keep the connection until the subscribers are done, so nothing is cut off.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// Receive `expect` messages (or stop at `deadline`); returns latencies in microseconds
/// and when the last message arrived.
async fn subscriber(
    mut c: Conn,
    expect: usize,
    deadline: tokio::time::Instant,
    base: Instant,
) -> (Vec<u32>, Instant) {
    let mut lat = Vec::with_capacity(expect);
    let mut last = Instant::now();
    while lat.len() < expect {
        let read = tokio::time::timeout_at(deadline, c.io.read_buf(&mut c.rbuf)).await;
        match read {
            Ok(Ok(n)) if n > 0 => {}
            _ => break,
        }
        let now = nanos(base);
        last = Instant::now();
        loop {
            match c.codec.decode(&mut c.rbuf) {
                Ok(Some((v3::Packet::Publish(p), _))) => {
                    let stamp = u64::from_be_bytes(p.payload[..8].try_into().expect("stamp"));
                    lat.push(u32::try_from(now.saturating_sub(stamp) / 1000).unwrap_or(u32::MAX));
                    if let Some(packet_id) = p.packet_id {
                        c.put(v3::Packet::PublishAck { packet_id });
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => panic!("subscriber: undecodable packet from the broker: {e}"),
            }
        }
        c.flush().await;
    }
    (lat, last)
}

/// A client id and the topic it publishes on or the filter it subscribes to.
type Party = (String, String);

#[derive(Clone, Copy, Debug)]
enum Shape {
    OneToOne,
    FanOut,
    FanIn,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Self::OneToOne => "1->1",
            Self::FanOut => "1->100",
            Self::FanIn => "100->1",
        }
    }
    /// Publishers (id, topic) and subscribers (id, filter).
    fn parties(self) -> (Vec<Party>, Vec<Party>) {
        match self {
            Self::OneToOne => (
                vec![("pub-0".into(), "bench/one".into())],
                vec![("sub-0".into(), "bench/one".into())],
            ),
            Self::FanOut => (
                vec![("pub-0".into(), "bench/fanout".into())],
                (0..FAN)
                    .map(|i| (format!("sub-{i}"), "bench/fanout".into()))
                    .collect(),
            ),
            Self::FanIn => (
                (0..FAN)
                    .map(|i| (format!("pub-{i}"), format!("bench/fanin/{i}")))
                    .collect(),
                vec![("sub-0".into(), "bench/fanin/+".into())],
            ),
        }
    }
}

struct Outcome {
    rate: f64,
    delivered: u64,
    expected: u64,
    p50: u32,
    p99: u32,
    cpu_s: f64,
    rss_kb: u64,
}

/// One phase: connect everyone, send, wait for delivery. Returns (delivered, elapsed, latencies).
async fn phase(
    target: &Target,
    tls: Option<&Tls>,
    shape: Shape,
    qos: QoS,
    per_publisher: usize,
    pace: Option<Duration>,
) -> (u64, Duration, Vec<u32>) {
    let addr = if tls.is_some() {
        target.tls
    } else {
        target.plain
    };
    let (pubs, subs) = shape.parties();
    let base = Instant::now();
    // Each subscriber expects every message its filter matches.
    let expect = match shape {
        Shape::FanIn => per_publisher * pubs.len(),
        _ => per_publisher,
    };
    let mut sub_conns = Vec::new();
    for (id, filter) in &subs {
        let mut c = Conn::open(addr, tls, id).await;
        c.subscribe(filter, qos).await;
        sub_conns.push(c);
    }
    let mut pub_conns = Vec::new();
    for (id, topic) in &pubs {
        pub_conns.push((Conn::open(addr, tls, id).await, topic.clone()));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let started = Instant::now();
    let sub_tasks: Vec<_> = sub_conns
        .into_iter()
        .map(|c| tokio::spawn(subscriber(c, expect, deadline, base)))
        .collect();
    let pub_tasks: Vec<_> = pub_conns
        .into_iter()
        .map(|(c, topic)| tokio::spawn(publisher(c, topic, qos, per_publisher, pace, base)))
        .collect();
    let mut lat = Vec::new();
    let mut delivered = 0u64;
    let mut last = Duration::ZERO;
    for t in sub_tasks {
        let (l, at) = t.await.expect("subscriber");
        delivered += l.len() as u64;
        lat.extend(l);
        last = last.max(at.saturating_duration_since(started));
    }
    for t in pub_tasks {
        t.await.expect("publisher");
    }
    (delivered, last, lat)
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn scenario(
    target: &Target,
    tls: Option<&Tls>,
    shape: Shape,
    qos: QoS,
    scale: usize,
) -> Outcome {
    let (pubs, subs) = shape.parties();
    let per_publisher = match shape {
        Shape::OneToOne => 100_000,
        Shape::FanOut => 2_000,
        Shape::FanIn => 1_000,
    } * scale;
    let expected = (per_publisher * pubs.len() * subs.len()) as u64;
    let cpu0 = cpu_s(target.pid);
    let (delivered, elapsed, _) = phase(target, tls, shape, qos, per_publisher, None).await;
    let cpu1 = cpu_s(target.pid);
    let rss = vm_kib(target.pid, "RSS");
    // Paced: about 2 000 deliveries a second in all, for about a second.
    let (paced_n, gap) = match shape {
        Shape::OneToOne => (2000, Duration::from_micros(500)),
        Shape::FanOut => (20, Duration::from_millis(50)),
        Shape::FanIn => (20, Duration::from_millis(50)),
    };
    let (_, _, mut lat) = phase(target, tls, shape, qos, paced_n * scale.min(2), Some(gap)).await;
    lat.sort_unstable();
    Outcome {
        rate: delivered as f64 / elapsed.as_secs_f64(),
        delivered,
        expected,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        cpu_s: cpu1 - cpu0,
        rss_kb: rss,
    }
}

/// RSS growth (kB) for 200 idle TLS connections, and for a subscriber that never reads
/// while a publisher floods it for 3 s.
async fn bounds(target: &Target, tls: &Tls) -> (f64, f64) {
    let before = vm_kib(target.pid, "RSS") as f64;
    let mut idle = Vec::new();
    for i in 0..FAN {
        for role in ["pub", "sub"] {
            idle.push(Conn::open(target.tls, Some(tls), &format!("{role}-{i}")).await);
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle_growth = vm_kib(target.pid, "RSS") as f64 - before;
    drop(idle);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = vm_kib(target.pid, "RSS") as f64;
    let mut slow = Conn::open(target.plain, None, "sub-0").await;
    slow.subscribe("bench/one", QoS::AtMostOnce).await;
    let flood = Conn::open(target.plain, None, "pub-0").await;
    let base = Instant::now();
    let _ = tokio::time::timeout(
        Duration::from_secs(3),
        publisher(
            flood,
            "bench/one".into(),
            QoS::AtMostOnce,
            10_000_000,
            None,
            base,
        ),
    )
    .await;
    let slow_growth = vm_kib(target.pid, "RSS") as f64 - before;
    drop(slow);
    (idle_growth, slow_growth)
}

#[path = "../tests/support/up.rs"]
mod up;

fn start_coupler(dir: &Path) -> (Child, String, SocketAddr, SocketAddr) {
    let up = up::start(
        dir,
        &["--mqtt-plain", "127.0.0.1:0"],
        &[
            ("COUPLER_ACCESS_KEY_ID", KEY),
            ("COUPLER_SECRET_ACCESS_KEY", SECRET),
            ("RUST_LOG", "error"),
        ],
    );
    (
        up.child,
        up.api,
        up.mqtt_tls.expect("the TLS listener"),
        up.mqtt_plain.expect("the plain listener"),
    )
}

/// Deploy the bench group (publishers and subscribers as devices, the three shapes'
/// subscriptions) and issue every device a certificate.
fn deploy(base: &str, certs: &Path) {
    let api = Api::new(base, KEY, SECRET);
    let thing = |n: &str| format!("{ACCOUNT_THING}{n}");
    let mut devices = Vec::new();
    for i in 0..FAN {
        for role in ["pub", "sub"] {
            devices.push(
                json!({"Id": format!("{role}{i}"), "ThingArn": thing(&format!("{role}-{i}")),
                "CertificateArn": "arn:aws:iot:us-east-1:123456789012:cert/beef"}),
            );
        }
    }
    let mut subs = vec![
        json!({"Id": "one", "Source": thing("pub-0"), "Subject": "bench/one", "Target": thing("sub-0")}),
    ];
    for i in 0..FAN {
        subs.push(json!({"Id": format!("out{i}"), "Source": thing("pub-0"), "Subject": "bench/fanout", "Target": thing(&format!("sub-{i}"))}));
        subs.push(json!({"Id": format!("in{i}"), "Source": thing(&format!("pub-{i}")), "Subject": "bench/fanin/+", "Target": thing("sub-0")}));
    }
    let (gid, vid) = api.group(
        "mqtt-bench",
        &[
            (
                "cores",
                json!({"Cores": [{"Id": "core", "ThingArn": thing("core"), "CertificateArn": "arn:aws:iot:us-east-1:123456789012:cert/c0ffee"}]}),
            ),
            ("devices", json!({ "Devices": devices })),
            ("subscriptions", json!({ "Subscriptions": subs })),
        ],
    );
    api.deploy(&gid, &vid);
    std::fs::create_dir_all(certs).expect("certs dir");
    for i in 0..FAN {
        for role in ["pub", "sub"] {
            let name = format!("{role}-{i}");
            let c = api.call(
                Method::POST,
                "/coupler/device-certificates",
                Some(&json!({"ThingName": name, "GroupId": gid})),
            );
            std::fs::write(
                certs.join(format!("{name}.cert.pem")),
                c["CertificatePem"].as_str().expect("cert"),
            )
            .expect("write");
            std::fs::write(
                certs.join(format!("{name}.private.key")),
                c["PrivateKeyPem"].as_str().expect("key"),
            )
            .expect("write");
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// mosquitto on two free ports, with the group CA and Coupler's server certificate.
fn start_mosquitto(dir: &Path, server: &Path) -> Option<(Child, SocketAddr, SocketAddr)> {
    let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let (plain, tls) = (free_port(), free_port());
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "per_listener_settings false\nallow_anonymous true\nuser root\npersistence false\nlog_dest none\nset_tcp_nodelay true\n\
             listener {plain} 127.0.0.1\n\
             listener {tls} 127.0.0.1\ncafile {ca}\ncertfile {crt}\nkeyfile {key}\nrequire_certificate true\n",
            ca = server.join("ca.pem").display(),
            crt = server.join("server.crt").display(),
            key = server.join("server.key").display(),
        ),
    )
    .ok()?;
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", tls)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Some((
        child,
        ([127, 0, 0, 1], plain).into(),
        ([127, 0, 0, 1], tls).into(),
    ))
}

fn main() {
    let full = std::env::args().any(|a| a == "--full");
    let scale = if full { 5 } else { 1 };
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut coupler, api, ctls, cplain) = start_coupler(&dir.path().join("coupler"));
    let certs = dir.path().join("certs");
    deploy(&api, &certs);
    let server = dir.path().join("coupler/ggc/var/state/server");
    let mut roots = rustls::RootCertStore::empty();
    for c in {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::pem_file_iter(server.join("ca.pem")).expect("ca")
    } {
        roots.add(c.expect("pem")).expect("root");
    }
    let tls = Tls {
        certs,
        ca: Arc::new(roots),
    };
    let mut targets = vec![Target {
        name: "coupler",
        pid: coupler.id(),
        plain: cplain,
        tls: ctls,
    }];
    let mosquitto = start_mosquitto(dir.path(), &server);
    match &mosquitto {
        Some((child, plain, tls)) => targets.push(Target {
            name: "mosquitto",
            pid: child.id(),
            plain: *plain,
            tls: *tls,
        }),
        None => eprintln!("mosquitto not found or did not start: Coupler alone is measured"),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    println!(
        "MQTT benchmark ({} mode): payload {PAYLOAD} B; flood rate = messages delivered per second; latency from a paced run",
        if full { "full" } else { "short" }
    );
    println!(
        "{:<7} {:<4} {:<6} {:<10} {:>12} {:>9} {:>9} {:>8} {:>8} {:>9}",
        "shape",
        "qos",
        "tls",
        "broker",
        "msg/s",
        "p50 us",
        "p99 us",
        "cpu s",
        "rss MB",
        "delivered"
    );
    let mut ratios = Vec::new();
    let only = std::env::var("MQTT_BENCH_ONLY").unwrap_or_default();
    for shape in [Shape::OneToOne, Shape::FanOut, Shape::FanIn] {
        if !only.is_empty() && only != shape.name() {
            continue;
        }
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            for secure in [false, true] {
                let mut results = Vec::new();
                for t in &targets {
                    let o = rt.block_on(scenario(t, secure.then_some(&tls), shape, qos, scale));
                    println!(
                        "{:<7} {:<4} {:<6} {:<10} {:>12.0} {:>9} {:>9} {:>8.2} {:>8.1} {:>9}",
                        shape.name(),
                        qos.value(),
                        if secure { "tls" } else { "plain" },
                        t.name,
                        o.rate,
                        o.p50,
                        o.p99,
                        o.cpu_s,
                        o.rss_kb as f64 / 1024.0,
                        format!("{:.1}%", 100.0 * o.delivered as f64 / o.expected as f64),
                    );
                    results.push(o);
                }
                if let [c, m] = &results[..] {
                    ratios.push((
                        shape,
                        qos,
                        secure,
                        c.rate / m.rate,
                        c.p99 as f64 / m.p99.max(1) as f64,
                        c.rss_kb as f64 / m.rss_kb.max(1) as f64,
                    ));
                }
            }
        }
    }
    if only.is_empty() {
        println!(
            "\nbounds: RSS growth (MB) for 200 idle TLS connections, and for a subscriber that stops reading while a publisher floods it for 3 s"
        );
        for t in &targets {
            let (idle, slow) = rt.block_on(bounds(t, &tls));
            println!(
                "  {:<10} idle: +{:.1} MB ({:.0} kB per connection)   slow subscriber: +{:.1} MB",
                t.name,
                idle / 1024.0,
                idle / 200.0,
                slow / 1024.0
            );
        }
    }
    if !ratios.is_empty() {
        println!(
            "\ncoupler / mosquitto: throughput (target >= 1.5), p99 latency (target <= 1.0), RSS (target <= 2.0)"
        );
        for (shape, qos, secure, thr, p99, rss) in ratios {
            println!(
                "  {:<7} qos{} {:<6} throughput {:>5.2}x  p99 {:>5.2}x  rss {:>5.2}x",
                shape.name(),
                qos.value(),
                if secure { "tls" } else { "plain" },
                thr,
                p99,
                rss
            );
        }
    }
    println!("\nmemory at the end (kB, /proc/PID/smaps_rollup):");
    for t in &targets {
        let rollup =
            std::fs::read_to_string(format!("/proc/{}/smaps_rollup", t.pid)).unwrap_or_default();
        let field = |f: &str| {
            rollup
                .lines()
                .find(|l| l.starts_with(f))
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or("?")
                .to_owned()
        };
        println!(
            "  {:<10} Rss {:>7}  Pss_Anon {:>7}  Pss_File {:>7}",
            t.name,
            field("Rss:"),
            field("Pss_Anon:"),
            field("Pss_File:")
        );
    }
    let _ = coupler.kill();
    let _ = coupler.wait();
    if let Some((mut m, _, _)) = mosquitto {
        let _ = m.kill();
        let _ = m.wait();
    }
}
