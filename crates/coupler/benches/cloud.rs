//! Cloud bridge benchmark: device → core → cloud through a deployed subscription, with
//! mosquitto as the cloud behind a TCP proxy (in this process) that adds 25 ms each way, a
//! 50 ms round trip, as a WAN link to AWS IoT Core would.
//!
//! Rows (same machine, same run, same proxy):
//!
//! * **Coupler, window 100** (the default `--cloud-window`), FileSystem spool: messages per
//!   second from the device's first publish until the last one reaches a subscriber on
//!   mosquitto.
//! * **Greengrass's bound, window 1**: the same Coupler with `--cloud-window 1`, which is
//!   how Greengrass v1 sends (the next publish after the PUBACK), about 1 / RTT = 20 msg/s.
//!
//! Target (issue 12): at least 1 000 msg/s at 50 ms round-trip time (50× Greengrass). The
//! spool's own write throughput is measured by `benches/spool.rs` (coupler-runtime).
//!
//! `cargo bench -p coupler --bench cloud` runs a short mode (CI); `-- --full` sends 5× more.
//! Without mosquitto it says why and exits 0.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rmqtt_codec::types::QoS;
use rmqtt_codec::v3;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[path = "../tests/support/up.rs"]
mod up;

#[path = "../tests/support/mqtt_client.rs"]
mod mqtt_client;

use mqtt_client::{Api, Conn};

#[path = "../tests/support/procs.rs"]
mod procs;

use procs::{Reaped, verdict};

const KEY: &str = "AKIACLOUDBENCH000001";
const SECRET: &str = "cloud/bench/secret/000000000000000000000000";
const ACCOUNT: &str = "123456789012";
const DEVICE: &str = "bench-device";
const ONE_WAY: Duration = Duration::from_millis(25);

fn thing(name: &str) -> String {
    format!("arn:aws:iot:us-east-1:{ACCOUNT}:thing/{name}")
}

/// The broker binary: on PATH, or where Debian puts it (`/usr/sbin`, not on every PATH).
fn mosquitto() -> &'static str {
    let sbin = "/usr/sbin/mosquitto";
    if std::path::Path::new(sbin).exists() {
        sbin
    } else {
        "mosquitto"
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Copy `from` to `to`, each chunk delivered `ONE_WAY` after it was read; the delay adds
/// latency, not a throughput limit (a reader and a writer task, a queue between them).
async fn delayed_pipe(
    from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(4096);
    let reader = tokio::spawn(async move {
        let mut from = from;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let due = tokio::time::Instant::now() + ONE_WAY;
                    if tx.send((due, buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    while let Some((due, data)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        if to.write_all(&data).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
    reader.abort();
}

/// A delaying TCP proxy to `target`, on its own thread and runtime; its address.
fn start_proxy(target: SocketAddr) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("proxy runtime");
        rt.block_on(async move {
            let listener = TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((down, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let Ok(upstream) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = down.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    let (dr, dw) = down.into_split();
                    let (ur, uw) = upstream.into_split();
                    tokio::join!(delayed_pipe(dr, uw), delayed_pipe(ur, dw));
                });
            }
        });
    });
    addr
}

fn start_mosquitto(dir: &std::path::Path) -> (Reaped, SocketAddr) {
    let port = free_port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 1000000\n"
        ),
    )
    .expect("conf");
    let child = Command::new(mosquitto())
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Reaped::new(child), addr)
}

/// One Coupler with `--cloud-window window` through the proxy: messages per second for `n`
/// device messages to reach the cloud subscriber.
fn run(dir: &std::path::Path, proxy: SocketAddr, broker: SocketAddr, window: u16, n: usize) -> f64 {
    let cloud = format!("mqtt://{proxy}");
    let window_arg = window.to_string();
    let up = up::start(
        &dir.join(format!("data-{window}")),
        &[
            "--mqtt-plain",
            "127.0.0.1:0",
            "--account-id",
            ACCOUNT,
            "--cloud",
            &cloud,
            "--cloud-window",
            &window_arg,
        ],
        &[
            ("COUPLER_ACCESS_KEY_ID", KEY),
            ("COUPLER_SECRET_ACCESS_KEY", SECRET),
            ("RUST_LOG", "warn"),
        ],
    );
    let _up = Reaped::new(up.child);
    let api = Api::new(&up.api, KEY, SECRET);
    let device = thing(DEVICE);
    let cert = format!("arn:aws:iot:us-east-1:{ACCOUNT}:cert/{}", "ab".repeat(32));
    let (group, version) = api.group(
        "cloud-bench",
        &[
            (
                "cores",
                json!({"Cores": [{"Id": "core", "ThingArn": thing("core"), "CertificateArn": cert}]}),
            ),
            (
                "devices",
                json!({"Devices": [{"Id": DEVICE, "ThingArn": device, "CertificateArn": cert}]}),
            ),
            (
                "functions",
                json!({"Functions": [{"Id": "spooler",
                    "FunctionArn": "arn:aws:lambda:::function:GGCloudSpooler:1",
                    "FunctionConfiguration": {"Executable": "spooler", "Pinned": true,
                        "MemorySize": 32768, "Timeout": 3, "Environment": {"Variables": {
                            "GG_CONFIG_STORAGE_TYPE": "FileSystem",
                            "GG_CONFIG_MAX_SIZE_BYTES": "10485760"}}}}]}),
            ),
            (
                "subscriptions",
                json!({"Subscriptions": [
                    {"Id": "up", "Source": device, "Subject": "bench/#", "Target": "cloud"},
                ]}),
            ),
        ],
    );
    api.deploy(&group, &version);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut app = Conn::open(broker, None, &format!("bench-cloud-app-{window}")).await;
        app.subscribe("bench/#", QoS::AtMostOnce).await;
        let mut dev = Conn::open(up.mqtt_plain.expect("plain MQTT"), None, DEVICE).await;
        // The bridge is connected once a first message makes it through.
        let started = Instant::now();
        'warm: loop {
            dev.put(mqtt_client::publish(
                "bench/warm",
                QoS::AtMostOnce,
                0,
                Bytes::from_static(b"{}"),
            ));
            dev.flush().await;
            let until = tokio::time::Instant::now() + Duration::from_millis(500);
            while let Ok(p) = tokio::time::timeout_at(until, app.next()).await {
                if matches!(p, v3::Packet::Publish(_)) {
                    break 'warm;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the bridge never connected"
            );
        }
        while tokio::time::timeout(Duration::from_millis(300), app.next())
            .await
            .is_ok()
        {}

        let t0 = Instant::now();
        for i in 0..n {
            let payload = Bytes::from(format!("{{\"seq\": {i}, \"pad\": \"{}\"}}", "x".repeat(64)));
            dev.put(mqtt_client::publish(
                "bench/data",
                QoS::AtMostOnce,
                0,
                payload,
            ));
            if i % 64 == 63 {
                dev.flush().await;
            }
        }
        dev.flush().await;
        let mut got = 0;
        let mut last_seq = None;
        while got < n {
            match tokio::time::timeout(Duration::from_secs(120), app.next()).await {
                Ok(v3::Packet::Publish(p)) if &*p.topic == "bench/data" => {
                    let v: serde_json::Value = serde_json::from_slice(&p.payload).expect("JSON");
                    let seq = v["seq"].as_u64().expect("seq");
                    if last_seq.is_none_or(|l| seq > l) {
                        got += 1;
                        last_seq = Some(seq);
                    }
                }
                Ok(_) => {}
                Err(_) => panic!("window {window}: {got} of {n} messages arrived"),
            }
        }
        n as f64 / t0.elapsed().as_secs_f64()
    })
}

fn main() {
    let full = std::env::args().any(|a| a == "--full");
    let scale = if full { 5 } else { 1 };
    println!(
        "Cloud bridge benchmark ({} mode): mosquitto behind a proxy adding {} ms of round trip",
        if full { "full" } else { "short" },
        ONE_WAY.as_millis() * 2
    );
    if Command::new("mosquitto")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        println!("  skipped: mosquitto is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (_broker, broker) = start_mosquitto(dir.path());
    let proxy = start_proxy(broker);

    let n = 5_000 * scale;
    let fast = run(dir.path(), proxy, broker, 100, n);
    let slow = run(dir.path(), proxy, broker, 1, 40 * scale);
    println!();
    println!("  row                                        msg/s");
    println!("  Coupler, --cloud-window 100, FileSystem    {fast:>8.0}   ({n} messages)");
    println!(
        "  Greengrass's bound, --cloud-window 1       {slow:>8.1}   ({} messages)",
        40 * scale
    );
    println!();
    println!("  ratio: {:.0}× the one-in-flight rate", fast / slow);
    println!(
        "  cloud throughput at 50 ms RTT: {fast:.0} msg/s (target ≥ 1000): {}",
        verdict(fast >= 1000.0)
    );
}
