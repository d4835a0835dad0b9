//! Lambda function benchmark: a pinned Python function, written with the unmodified
//! greengrasssdk 1.6.1 and run by Coupler's Python runtime over the Lambda IPC, beside the same
//! runtime against a bare HTTP server in the same run.
//!
//! Rows:
//!
//! * **bare Python** — Coupler's Python runtime (`coupler_lambda_runtime.py`, as a worker runs
//!   it) against a minimal HTTP server in this process that answers every `GET …/work` at once
//!   with the next item and every `POST …/work` with 202: Python's own cost per invocation
//!   (two HTTP round trips on a keep-alive connection, the JSON, the handler call).
//! * **Coupler, throughput** — a device publishes messages to the function through the MQTT
//!   server and the router (QoS 0, as fast as the core takes them); the function counts them.
//!   Invocations per second of the pinned function, one at a time in order.
//! * **Coupler, round trip** — device → function → device: the handler publishes each event
//!   back through the SDK (`iot-data.publish`, an IPC call to GGRouter); one message at a time,
//!   p50/p99 latency.
//!
//! IPC overhead = Coupler's time per invocation − the bare Python time. Targets (issue 10):
//! overhead under 150 µs per invocation, at least 5 000 invocations/s.
//!
//! `cargo bench -p coupler --bench functions` runs a short mode (CI); `-- --full` does 5×
//! more. Without Python 3 and greengrasssdk it says why and exits 0.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::Method;
use base64::Engine as _;
use bytes::Bytes;
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

use procs::{Reaped, cpu_ns, verdict};

const KEY: &str = "AKIAFUNCTIONBENCH001";
const SECRET: &str = "functions/bench/secret/00000000000000000000";
const ACCOUNT: &str = "123456789012";
const DEVICE: &str = "bench-device";
const FUNCTION: &str = "BenchEcho";

/// The function: counts `bench/count` events, echoes `bench/echo` ones back, and reports the
/// count on `bench/done`. The bare row runs the same module.
const HANDLER: &str = r#"
import json
import greengrasssdk

iot = greengrasssdk.client("iot-data")
count = 0

def handler(event, context):
    global count
    subject = context.client_context.custom["subject"]
    if subject == "bench/count":
        count += 1
    elif subject == "bench/echo":
        iot.publish(topic="bench/reply", payload=json.dumps(event))
    elif subject == "bench/done":
        iot.publish(topic="bench/counted", payload=json.dumps({"count": count}))
        count = 0
"#;

fn thing(name: &str) -> String {
    format!("arn:aws:iot:us-east-1:{ACCOUNT}:thing/{name}")
}

fn missing() -> Option<String> {
    let ok = Command::new("python3")
        .args(["-c", "import greengrasssdk"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!ok).then(|| {
        "python3 with greengrasssdk is not installed (pip install greengrasssdk==1.6.1)".into()
    })
}

fn zip_of(module: &str, source: &str) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        z.start_file(
            format!("{module}.py"),
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored),
        )
        .expect("zip entry");
        z.write_all(source.as_bytes()).expect("zip write");
        z.finish().expect("zip finish");
    }
    buf.into_inner()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p).round() as usize)
        .map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

/// The bare server's record of the runtime's calls.
#[derive(Default)]
struct Bare {
    /// Work items handed out.
    handed: AtomicUsize,
    /// Results posted.
    posted: AtomicUsize,
}

/// Python's own cost per invocation: the runtime against a server that answers at once (on
/// a thread of its own, as Coupler's IPC is).
fn bare_python(runtime_dir: &Path, code_dir: &Path, n: usize) -> (f64, f64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let bare = Arc::new(Bare::default());
    let context = base64::engine::general_purpose::STANDARD
        .encode(json!({"custom": {"subject": "bench/count"}}).to_string());
    let work = {
        let context = context.clone();
        move |State(b): State<Arc<Bare>>| {
            let context = context.clone();
            async move {
                let i = b.handed.fetch_add(1, Ordering::Relaxed);
                (
                    StatusCode::OK,
                    [
                        ("x-amz-invocationid", format!("inv-{i}")),
                        ("x-amz-client-context", context),
                    ],
                    format!("{{\"seq\": {i}}}"),
                )
                    .into_response()
            }
        }
    };
    let result = |State(b): State<Arc<Bare>>| async move {
        b.posted.fetch_add(1, Ordering::Relaxed);
        StatusCode::ACCEPTED
    };
    let app = axum::Router::new()
        .route(
            "/2016-11-01/functions/{arn}/work",
            axum::routing::get(work).post(result),
        )
        .route(
            "/2016-11-01/functions/{arn}/initialized",
            axum::routing::put(|| async { StatusCode::ACCEPTED }),
        )
        .with_state(bare.clone());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = rt.spawn(async move { axum::serve(listener, app).await });
    let arn = format!("arn:aws:lambda:us-east-1:{ACCOUNT}:function:Bare:1");
    let child = Command::new("python3")
        .arg("-u")
        .arg(runtime_dir.join("coupler_lambda_runtime.py"))
        .current_dir(code_dir)
        .env("PYTHONPATH", runtime_dir)
        .env("MY_FUNCTION_ARN", &arn)
        .env("ROUTER_FUNCTION_ARN", "arn:aws:lambda:::function:GGRouter")
        .env("GG_DAEMON_PORT", port.to_string())
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", "Basic bare")
        .env("COUPLER_FUNCTION_HANDLER", "bench_echo.handler")
        .env("COUPLER_FUNCTION_DIR", code_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 starts");
    let pid = child.id();
    let _child = Reaped::new(child);
    // Warm up, then measure n more.
    let warm = n / 10;
    while bare.posted.load(Ordering::Relaxed) < warm {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (t0, posted0, cpu0) = (
        Instant::now(),
        bare.posted.load(Ordering::Relaxed),
        cpu_ns(pid),
    );
    while bare.posted.load(Ordering::Relaxed) < posted0 + n {
        std::thread::sleep(Duration::from_millis(1));
    }
    let done = bare.posted.load(Ordering::Relaxed) - posted0;
    let elapsed = t0.elapsed();
    let cpu = (cpu_ns(pid) - cpu0) as f64 / 1e3 / done as f64;
    server.abort();
    (elapsed.as_secs_f64() * 1e6 / done as f64, cpu)
}

/// The next PUBLISH on `topic`, as JSON.
async fn next_on(conn: &mut Conn, topic: &str) -> Value {
    loop {
        if let v3::Packet::Publish(p) = conn.next().await
            && &*p.topic == topic
        {
            return serde_json::from_slice(&p.payload).expect("JSON");
        }
    }
}

fn publish(conn: &mut Conn, topic: &str, payload: String) {
    conn.put(mqtt_client::publish(
        topic,
        QoS::AtMostOnce,
        0,
        Bytes::from(payload),
    ));
}

fn main() {
    let full = std::env::args().any(|a| a == "--full");
    let scale = if full { 5 } else { 1 };
    println!(
        "Lambda function benchmark ({} mode)",
        if full { "full" } else { "short" }
    );
    if let Some(why) = missing() {
        println!("  skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let up = up::start(
        &dir.path().join("data"),
        &["--mqtt-plain", "127.0.0.1:0", "--account-id", ACCOUNT],
        &[
            ("COUPLER_ACCESS_KEY_ID", KEY),
            ("COUPLER_SECRET_ACCESS_KEY", SECRET),
            ("RUST_LOG", "warn"),
        ],
    );
    let coupler_pid = up.child.id();
    let _up = Reaped::new(up.child);
    let api = Api::new(&up.api, KEY, SECRET);
    let zip = zip_of("bench_echo", HANDLER);
    let created = api.call(
        Method::POST,
        "/2015-03-31/functions",
        Some(&json!({
            "FunctionName": FUNCTION, "Runtime": "python3.8",
            "Role": format!("arn:aws:iam::{ACCOUNT}:role/bench"),
            "Handler": "bench_echo.handler", "Publish": true,
            "Code": {"ZipFile": base64::engine::general_purpose::STANDARD.encode(&zip)},
        })),
    );
    let arn = created["FunctionArn"]
        .as_str()
        .expect("FunctionArn")
        .to_owned();
    let device = thing(DEVICE);
    let cert = format!("arn:aws:iot:us-east-1:{ACCOUNT}:cert/{}", "ab".repeat(32));
    let (group, version) = api.group(
        "functions-bench",
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
                json!({"DefaultConfig": {"Execution": {"IsolationMode": "NoContainer"}},
                       "Functions": [{"Id": "echo", "FunctionArn": arn, "FunctionConfiguration": {
                           "Executable": "bench_echo.handler", "Pinned": true, "Timeout": 10,
                           "EncodingType": "json"}}]}),
            ),
            (
                "subscriptions",
                json!({"Subscriptions": [
                    {"Id": "in", "Source": device, "Subject": "bench/#", "Target": arn},
                    {"Id": "out", "Source": arn, "Subject": "bench/#", "Target": device},
                ]}),
            ),
        ],
    );
    api.deploy(&group, &version);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let n = 5_000 * scale;
    let samples = 1_000 * scale;
    let (coupler_us, coupler_rate, coupler_cpu, p50, p99, rtt_rate) = rt.block_on(async {
        let mut conn = Conn::open(up.mqtt_plain.expect("plain MQTT"), None, DEVICE).await;
        conn.subscribe("bench/#", QoS::AtMostOnce).await;
        // The worker is up once an echo comes back.
        let started = Instant::now();
        loop {
            publish(&mut conn, "bench/echo", "{\"warm\": true}".into());
            conn.flush().await;
            match tokio::time::timeout(
                Duration::from_millis(500),
                next_on(&mut conn, "bench/reply"),
            )
            .await
            {
                Ok(_) => break,
                Err(_) if started.elapsed() < Duration::from_secs(30) => continue,
                Err(_) => panic!("the function did not answer within 30 s"),
            }
        }
        // Drain stray replies of the warm-up.
        while tokio::time::timeout(Duration::from_millis(100), conn.next())
            .await
            .is_ok()
        {}

        // Throughput: n events, then a marker; the function counts what it ran.
        let (t0, cpu0) = (Instant::now(), cpu_ns(coupler_pid));
        for i in 0..n {
            publish(&mut conn, "bench/count", format!("{{\"seq\": {i}}}"));
            if i % 64 == 63 {
                conn.flush().await;
            }
        }
        publish(&mut conn, "bench/done", "{}".into());
        conn.flush().await;
        let counted = next_on(&mut conn, "bench/counted").await;
        let elapsed = t0.elapsed();
        let cpu = (cpu_ns(coupler_pid) - cpu0) as f64 / 1e3 / n as f64;
        assert_eq!(counted["count"], json!(n), "every event ran once");
        let per = elapsed.as_secs_f64() * 1e6 / (n + 1) as f64;

        // Round trip, one at a time.
        let mut lat = Vec::with_capacity(samples);
        let t1 = Instant::now();
        for i in 0..samples {
            let t = Instant::now();
            publish(&mut conn, "bench/echo", format!("{{\"seq\": {i}}}"));
            conn.flush().await;
            let back = next_on(&mut conn, "bench/reply").await;
            assert_eq!(back["seq"], json!(i));
            lat.push(t.elapsed());
        }
        let rtt_rate = samples as f64 / t1.elapsed().as_secs_f64();
        lat.sort_unstable();
        (
            per,
            1e6 / per,
            cpu,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            rtt_rate,
        )
    });

    let code_dir = dir.path().join("bare-code");
    std::fs::create_dir_all(&code_dir).expect("code dir");
    std::fs::write(code_dir.join("bench_echo.py"), HANDLER).expect("handler");
    let runtime_dir = dir.path().join("data/ggc/runtime/python");
    let (bare_us, bare_cpu) = bare_python(&runtime_dir, &code_dir, n);

    let overhead = coupler_us - bare_us;
    println!();
    println!(
        "  row                                   µs/invocation   invocations/s   core CPU µs/inv   Python CPU µs/inv"
    );
    println!(
        "  bare Python (runtime vs bare server)  {bare_us:>13.1}   {:>13.0}   {:>15}   {bare_cpu:>17.1}",
        1e6 / bare_us,
        "-"
    );
    println!(
        "  Coupler pinned function, throughput   {coupler_us:>13.1}   {coupler_rate:>13.0}   {coupler_cpu:>15.1}   {:>17}",
        "-"
    );
    println!();
    println!(
        "  device → function → device, one at a time: p50 {p50:.0} µs, p99 {p99:.0} µs, {rtt_rate:.0} round trips/s"
    );
    println!();
    println!(
        "  IPC overhead beyond Python's own cost: {overhead:.1} µs per invocation (target < 150): {}",
        verdict(overhead < 150.0)
    );
    println!(
        "  pinned function throughput: {coupler_rate:.0} invocations/s (target ≥ 5000): {}",
        verdict(coupler_rate >= 5000.0)
    );
}
