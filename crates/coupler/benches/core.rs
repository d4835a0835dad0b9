//! Core benchmark: how fast `coupler up` is ready, how long a deployment of a group with 20
//! units and 500 subscriptions takes to apply, and the idle memory of the process (RSS and PSS from
//! /proc/PID/smaps_rollup) with that group active.
//!
//! `cargo bench -p coupler --bench core` (the same in CI). Targets from the issue: API ready
//! under 100 ms; a deployment of 20 units and 500 subscriptions applied under 200 ms; idle
//! PSS under 15 MB. The units are 3 connectors (SNS, Kinesis Firehose, CloudWatch Metrics)
//! and 17 Python functions (2 pinned, whose worker processes start at deployment).

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use axum::http::Method;
use coupler_api::client::Client;
use serde_json::{Value, json};

const KEY: &str = "AKIACOREBENCH0000001";
const SECRET: &str = "core/bench/secret/00000000000000000000000";

fn call(base: &str, method: Method, path: &str, body: Option<Value>) -> Value {
    let client = Client::new(base, KEY, SECRET, "us-east-1").expect("a client");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let what = format!("{method} {path}");
    rt.block_on(client.call(method, path, body.as_ref()))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn kib(field: &str, pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The process's PSS by mapping (file, `[heap]`, `[stack]`, or anonymous), largest first:
/// where the memory is, for `COUPLER_BENCH_SMAPS=1`.
fn print_mappings(pid: u32) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut by_name: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    let mut name = String::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            name = parts.nth(4).unwrap_or("[anon]").to_owned();
            by_name.entry(name.clone()).or_default().1 += 1;
        } else if first == "Pss:" {
            by_name.entry(name.clone()).or_default().0 +=
                parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    let mut rows: Vec<_> = by_name.into_iter().collect();
    rows.sort_by_key(|(_, (pss, _))| std::cmp::Reverse(*pss));
    for (name, (pss, maps)) in rows.iter().take(15) {
        println!("  {pss:>7} KiB PSS in {maps:>3} mappings  {name}");
    }
}

#[path = "../tests/support/up.rs"]
mod up;

#[path = "../tests/support/procs.rs"]
mod procs;

use procs::{Reaped, verdict};

/// Python functions in the group, and how many of them are pinned (a worker process each).
const FUNCTIONS: usize = 17;
const PINNED: usize = 2;

/// The topic a connector of the group takes its input on.
fn input_topic(path: &str) -> &'static str {
    match path.split('/').next() {
        Some("SNS") => "sns/message",
        Some("KinesisFirehose") => "kinesisfirehose/message",
        _ => "cloudwatch/metric/put",
    }
}

/// The functions' code: a handler that returns its event.
fn handler_zip() -> String {
    use base64::Engine as _;
    use std::io::Write as _;
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        z.start_file(
            "unit.py",
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored),
        )
        .expect("zip entry");
        z.write_all(b"def handler(event, context):\n    return event\n")
            .expect("zip write");
        z.finish().expect("zip finish");
    }
    base64::engine::general_purpose::STANDARD.encode(buf.into_inner())
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let up::Up {
        child, api: base, ..
    } = up::start(
        dir.path(),
        &[],
        &[
            ("COUPLER_ACCESS_KEY_ID", KEY),
            ("COUPLER_SECRET_ACCESS_KEY", SECRET),
            ("RUST_LOG", "warn"),
        ],
    );
    // Killed and reaped however the bench ends: a stray core would share the binary's pages
    // with the next run and lower its PSS.
    let child = Reaped::new(child);
    // Ready = the API accepts a connection.
    while std::net::TcpStream::connect(base.trim_start_matches("http://")).is_err() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let ready = started.elapsed();

    // A group of 20 units (3 connectors, 15 on-demand and 2 pinned Python functions), 20
    // devices and 500 subscriptions between them, the cloud and the units.
    let account = "123456789012";
    let thing = |i: usize| format!("arn:aws:iot:us-east-1:{account}:thing/sensor-{i}");
    let devices: Vec<Value> = (0..20)
        .map(|i| json!({"Id": format!("d{i}"), "ThingArn": thing(i), "CertificateArn": "arn:aws:iot:us-east-1:123456789012:cert/beef"}))
        .collect();
    let zip = handler_zip();
    let functions: Vec<(String, bool)> = (0..FUNCTIONS)
        .map(|i| {
            let name = format!("Unit{i}");
            let created = call(
                &base,
                Method::POST,
                "/2015-03-31/functions",
                Some(json!({"FunctionName": name, "Runtime": "python3.8",
                    "Role": format!("arn:aws:iam::{account}:role/bench"), "Handler": "unit.handler",
                    "Publish": true, "Code": {"ZipFile": zip}})),
            );
            let arn = created["FunctionArn"]
                .as_str()
                .expect("FunctionArn")
                .to_owned();
            (arn, i < PINNED)
        })
        .collect();
    let connectors = [
        (
            "sns",
            "SNS/versions/4",
            json!({"DefaultSNSArn": format!("arn:aws:sns:us-east-1:{account}:alerts"), "IsolationMode": "NoContainer"}),
        ),
        (
            "firehose",
            "KinesisFirehose/versions/5",
            json!({"DefaultDeliveryStreamArn": format!("arn:aws:firehose:us-east-1:{account}:deliverystream/s"), "DeliveryStreamQueueSize": "5000", "MemorySize": "65535", "PublishInterval": "10", "IsolationMode": "NoContainer"}),
        ),
        (
            "cloudwatch",
            "CloudWatchMetrics/versions/5",
            json!({"PublishInterval": "10", "MemorySize": "16", "MaxMetricsToRetain": "2500", "IsolationMode": "NoContainer"}),
        ),
    ];
    let connector_arn = |path: &str| format!("arn:aws:greengrass:us-east-1::/connectors/{path}");
    // Targets in turn: each function, each connector (on its input topic), the cloud.
    let mut targets: Vec<(String, Option<&str>)> =
        functions.iter().map(|(a, _)| (a.clone(), None)).collect();
    targets.extend(
        connectors
            .iter()
            .map(|(_, p, _)| (connector_arn(p), Some(input_topic(p)))),
    );
    targets.push(("cloud".into(), None));
    // `variant` changes one subject, so that each deployment installs a new routing table.
    let subscriptions = |variant: usize| -> Vec<Value> {
        (0..500)
            .map(|k| {
                let d = k % 20;
                let (target, topic): (&str, Option<&str>) = match &targets[k % targets.len()] {
                    // A connector takes its own topic; one subscription per device to it.
                    (_, Some(_)) if k >= 20 * targets.len() => (&targets[k % FUNCTIONS].0, None),
                    (t, topic) => (t, *topic),
                };
                let subject = match topic {
                    Some(t) => t.to_owned(),
                    None if k == 0 => format!("sensors/sensor-{d}/v{variant}"),
                    None => format!("sensors/sensor-{d}/m{k}/+"),
                };
                json!({"Id": format!("s{k}"), "Source": thing(d), "Subject": subject, "Target": target})
            })
            .collect()
    };
    let create = |kind: &str, v: Value| {
        call(
            &base,
            Method::POST,
            &format!("/greengrass/definition/{kind}"),
            Some(json!({"InitialVersion": v})),
        )["LatestVersionArn"]
            .clone()
    };
    let core = create(
        "cores",
        json!({"Cores": [{"Id": "core", "ThingArn": "arn:aws:iot:us-east-1:123456789012:thing/core", "CertificateArn": "arn:aws:iot:us-east-1:123456789012:cert/c0ffee"}]}),
    );
    let dev = create("devices", json!({ "Devices": devices }));
    let func = create(
        "functions",
        json!({"DefaultConfig": {"Execution": {"IsolationMode": "NoContainer"}},
               "Functions": functions.iter().enumerate().map(|(i, (arn, pinned))| json!({
                   "Id": format!("f{i}"), "FunctionArn": arn, "FunctionConfiguration": {
                       "Executable": "unit.handler", "Pinned": pinned, "Timeout": 3}})).collect::<Vec<_>>()}),
    );
    let conn = create(
        "connectors",
        json!({"Connectors": connectors.iter().map(|(id, p, params)| json!({
            "Id": id, "ConnectorArn": connector_arn(p), "Parameters": params})).collect::<Vec<_>>()}),
    );
    let group = call(
        &base,
        Method::POST,
        "/greengrass/groups",
        Some(json!({"Name": "bench"})),
    );
    let gid = group["Id"].as_str().expect("Id").to_owned();
    let versions: Vec<String> = (0..2)
        .map(|variant| {
            let sub = create(
                "subscriptions",
                json!({ "Subscriptions": subscriptions(variant) }),
            );
            call(
                &base,
                Method::POST,
                &format!("/greengrass/groups/{gid}/versions"),
                Some(
                    json!({"CoreDefinitionVersionArn": core, "DeviceDefinitionVersionArn": dev,
                    "FunctionDefinitionVersionArn": func, "ConnectorDefinitionVersionArn": conn,
                    "SubscriptionDefinitionVersionArn": sub}),
                ),
            )["Version"]
                .as_str()
                .expect("Version")
                .to_owned()
        })
        .collect();

    // The first deployment starts every unit; the next ones change the routes and keep the
    // units (they are unchanged), as a typical update does.
    let mut applies = Vec::new();
    for i in 0..6 {
        let vid = &versions[i % 2];
        let t = Instant::now();
        let d = call(
            &base,
            Method::POST,
            &format!("/greengrass/groups/{gid}/deployments"),
            Some(json!({"DeploymentType": "NewDeployment", "GroupVersionId": vid})),
        );
        let did = d["DeploymentId"].as_str().expect("id").to_owned();
        loop {
            let s = call(
                &base,
                Method::GET,
                &format!("/greengrass/groups/{gid}/deployments/{did}/status"),
                None,
            );
            match s["DeploymentStatus"].as_str() {
                Some("Success") => break,
                Some("Failure") => panic!("deployment failed: {s}"),
                _ => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        applies.push(t.elapsed());
    }
    let first = applies.remove(0);
    applies.sort();
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.child.id();
    let (rss, pss) = (kib("Rss:", pid), kib("Pss:", pid));
    let (anon, file) = (kib("Pss_Anon:", pid), kib("Pss_File:", pid));
    if std::env::var_os("COUPLER_BENCH_SMAPS").is_some() {
        print_mappings(pid);
    }
    // `COUPLER_BENCH_HOLD=FILE`: the core's pid goes to FILE, and the core runs on until FILE
    // is removed, for a look at its pages from outside.
    if let Some(f) = std::env::var_os("COUPLER_BENCH_HOLD") {
        std::fs::write(&f, pid.to_string()).unwrap();
        while std::path::Path::new(&f).exists() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    drop(child);

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "core: API ready {:.1} ms after start (target < 100 ms: {})",
        ms(ready),
        verdict(ready < Duration::from_millis(100))
    );
    println!(
        "core: deployment of 20 units (3 connectors, {FUNCTIONS} Python functions, {PINNED} of them pinned) + 20 devices + 500 subscriptions, create → Success: first (every unit new) {:.1} ms (target < 200 ms: {}); updates of the routes, units kept: median {:.1} ms, max {:.1} ms over 5",
        ms(first),
        verdict(first < Duration::from_millis(200)),
        ms(applies[applies.len() / 2]),
        ms(applies[applies.len() - 1])
    );
    println!(
        "core: idle memory of coupler up with that group active: RSS {:.1} MB, PSS {:.1} MB ({:.1} MB heap and stacks, {:.1} MB files) (target PSS < 15 MB: {}); the pinned functions' Python workers are processes of their own",
        rss as f64 / 1024.0,
        pss as f64 / 1024.0,
        anon as f64 / 1024.0,
        file as f64 / 1024.0,
        verdict(pss < 15 * 1024)
    );
}
