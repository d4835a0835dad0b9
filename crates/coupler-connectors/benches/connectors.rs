//! Connector benchmarks.
//!
//! 1. Framework overhead: messages per second through router → no-op connector → router
//!    (a device publishes, the connector republishes, another device's inbox receives), next
//!    to the router alone (device → device) in the same run.
//! 2. Serial Stream throughput over a socat pty pair at 115200 baud: write requests of 4 KiB
//!    through the connector, bytes per second read at the other end, against the line rate
//!    of 115200 baud at 8N1 (11 520 bytes/s). A pty does not pace bytes at the baud rate, so
//!    this measures the connector's own ceiling; on a real UART the line is the limit.
//!
//! `cargo bench -p coupler-connectors --bench connectors` (CI runs it; `-- --full` for more).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coupler_connectors::context::{LocalResource, Parts};
use coupler_connectors::{BoxFuture, Connector, ConnectorError, Context, registry};
use coupler_model::validate::Route;
use coupler_model::{Entity, TopicFilter, TopicName};
use coupler_router::{Message, Router, RouterConfig, RoutingTable};
use coupler_runtime::logs::SystemLog;
use tokio_util::sync::CancellationToken;

const CONNECTOR: &str = "arn:aws:greengrass:us-east-1::/connectors/Bench/versions/1";

/// Republishes every message on `out/...`.
struct Echo;

impl Connector for Echo {
    fn run(self: Box<Self>, ctx: Context) -> BoxFuture<Result<(), ConnectorError>> {
        Box::pin(async move {
            while let Some(m) = ctx.recv().await {
                let _ = ctx.publish("out/echo", m.payload).await;
            }
            Ok(())
        })
    }
}

fn route(id: &str, source: &Entity, subject: &str, target: &Entity) -> Route {
    Route {
        id: id.into(),
        source: source.clone(),
        subject: TopicFilter::parse(subject).expect("filter"),
        target: target.clone(),
    }
}

fn parts(
    name: &'static str,
    entity: Entity,
    parameters: BTreeMap<String, String>,
    resources: BTreeMap<String, LocalResource>,
    dir: &Path,
) -> Parts {
    Parts {
        id: name.to_lowercase(),
        name,
        version: 3,
        entity,
        parameters,
        resources,
        core_thing: "core".into(),
        region: "us-east-1".into(),
        log: Arc::new(SystemLog::at(dir.join(format!("{name}.log")))),
        cancel: CancellationToken::new(),
        inside_container: false,
    }
}

/// Messages per second from `source` to the `sink` inbox.
async fn pump(router: &Router, source: &Entity, sink: &Entity, topic: &str, n: usize) -> f64 {
    let inbox = router.inbox(sink);
    let topic = TopicName::parse(topic).expect("topic");
    let payload = bytes::Bytes::from_static(b"{\"v\": 21.5}");
    let started = Instant::now();
    let mut got = 0;
    for sent in 1..=n {
        router
            .route(Message::new(source.clone(), topic.clone(), payload.clone()))
            .await;
        while inbox.try_recv().is_some() {
            got += 1;
        }
        // At most 256 in flight, so no inbox on the way overflows and drops.
        while sent - got > 256 {
            inbox.recv().await;
            got += 1;
        }
    }
    while got < n {
        inbox.recv().await;
        got += 1;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

async fn framework(n: usize, dir: &Path) {
    let device = Entity::device("sensor");
    let sink = Entity::device("sink");
    let connector = Entity::connector(CONNECTOR);
    let router = Arc::new(Router::new(RouterConfig::default()));
    router.install(RoutingTable::compile(&[
        route("in", &device, "in/#", &connector),
        route("out", &connector, "out/#", &sink),
        route("direct", &device, "direct/#", &sink),
    ]));
    let ctx = Context::new(
        parts("Bench", connector, BTreeMap::new(), BTreeMap::new(), dir),
        router.clone(),
    );
    let cancel = ctx.cancel().clone();
    let task = tokio::spawn(Box::new(Echo).run(ctx));
    let direct = pump(&router, &device, &sink, "direct/x", n).await;
    let through = pump(&router, &device, &sink, "in/x", n).await;
    cancel.cancel();
    let _ = task.await;
    println!(
        "framework: router alone {direct:>10.0} msg/s; through a no-op connector {through:>10.0} msg/s ({:.2} µs added per message)",
        (1.0 / through - 1.0 / direct) * 1e6
    );
}

async fn serial(total: usize, dir: &Path) {
    if Command::new("socat").arg("-V").output().is_err() {
        eprintln!("serial: socat is not installed; skipped");
        return;
    }
    let tag = std::process::id();
    let (port, peer) = (format!("/dev/ttyCPLb{tag}a"), format!("/dev/ttyCPLb{tag}b"));
    let mut socat = Command::new("socat")
        .args([
            format!("pty,raw,echo=0,link={port}"),
            format!("pty,raw,echo=0,link={peer}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("socat starts");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(Path::new(&port).exists() && Path::new(&peer).exists()) {
        if Instant::now() > deadline {
            eprintln!("serial: socat made no ptys (not root?); skipped");
            let _ = socat.kill();
            let _ = socat.wait();
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let device = Entity::device("tester");
    let connector =
        Entity::connector("arn:aws:greengrass:us-east-1::/connectors/SerialStream/versions/3");
    let router = Arc::new(Router::new(RouterConfig::default()));
    let suffix = port.trim_start_matches('/');
    let write_topic = format!("serial/core/write/{suffix}");
    router.install(RoutingTable::compile(&[
        route("w", &device, &write_topic, &connector),
        route("s", &connector, "serial/core/#", &device),
    ]));
    let params: BTreeMap<String, String> = [
        ("BaudRate", "115200"),
        ("Timeout", "5"),
        ("SerialPort", port.as_str()),
        ("SerialPort-ResourceId", "port"),
        ("PollingRead", "false"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let resources = BTreeMap::from([(
        "SerialPort-ResourceId".to_owned(),
        LocalResource::Device {
            source_path: port.clone().into(),
        },
    )]);
    let ctx = Context::new(
        parts("SerialStream", connector, params, resources, dir),
        router.clone(),
    );
    let kind = registry::kind("SerialStream", 3).expect("registered");
    let built = (kind.build)(&ctx).expect("builds");
    let cancel = ctx.cancel().clone();
    let task = tokio::spawn(built.run(ctx));
    // The other end of the line, read in a thread.
    let reader = std::thread::spawn({
        let peer = peer.clone();
        move || {
            use std::io::Read;
            let mut f = std::fs::File::open(&peer).expect("peer");
            let mut buf = vec![0u8; 65536];
            let mut got = 0;
            while got < total {
                match f.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            got
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let chunk = "x".repeat(4096);
    let body = serde_json::json!({ "data": chunk, "type": "ascii" }).to_string();
    let topic = TopicName::parse(&write_topic).expect("topic");
    let status = router.inbox(&device);
    let started = Instant::now();
    let mut sent = 0;
    while sent < total {
        router
            .route(Message::new(device.clone(), topic.clone(), body.clone()))
            .await;
        sent += chunk.len();
        // One request at a time, as a device waiting for each status would.
        let _ = tokio::time::timeout(Duration::from_secs(5), status.recv()).await;
    }
    let got = tokio::task::spawn_blocking(move || reader.join().expect("reader"))
        .await
        .expect("join");
    let rate = got as f64 / started.elapsed().as_secs_f64();
    let line = 115_200.0 / 10.0;
    println!(
        "serial: {got} bytes written through Serial Stream at {rate:>10.0} bytes/s; 115200 baud 8N1 carries {line:.0} bytes/s: {:.0}× the line rate (target >= 0.9×)",
        rate / line
    );
    cancel.cancel();
    let _ = task.await;
    let _ = socat.kill();
    let _ = socat.wait();
}

fn main() {
    let full = std::env::args().any(|a| a == "--full");
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(framework(
        if full { 1_000_000 } else { 200_000 },
        dir.path(),
    ));
    rt.block_on(serial(if full { 4 << 20 } else { 1 << 20 }, dir.path()));
}
