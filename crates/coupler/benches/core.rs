//! Core benchmark: how fast `coupler up` is ready, how long a deployment of a group with 500
//! subscriptions takes to apply, and the idle memory of the process (RSS and PSS from
//! /proc/PID/smaps_rollup) with that group active.
//!
//! `cargo bench -p coupler --bench core` (the same in CI). Targets from the issue: API ready
//! under 100 ms; a 500-subscription deployment applied under 200 ms; idle PSS under 15 MB.
//! This build runs no connectors or functions, so the group's units are devices only.

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

#[path = "../tests/support/up.rs"]
mod up;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let up::Up {
        mut child,
        api: base,
        ..
    } = up::start(
        dir.path(),
        &[],
        &[
            ("COUPLER_ACCESS_KEY_ID", KEY),
            ("COUPLER_SECRET_ACCESS_KEY", SECRET),
            ("RUST_LOG", "warn"),
        ],
    );
    // Ready = the API accepts a connection.
    while std::net::TcpStream::connect(base.trim_start_matches("http://")).is_err() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let ready = started.elapsed();

    // A group with 20 devices and 500 subscriptions.
    let thing = |i: usize| format!("arn:aws:iot:us-east-1:123456789012:thing/sensor-{i}");
    let devices: Vec<Value> = (0..20)
        .map(|i| json!({"Id": format!("d{i}"), "ThingArn": thing(i), "CertificateArn": "arn:aws:iot:us-east-1:123456789012:cert/beef"}))
        .collect();
    let subs: Vec<Value> = (0..500)
        .map(|k| {
            let d = k % 20;
            if k % 2 == 0 {
                json!({"Id": format!("s{k}"), "Source": thing(d), "Subject": format!("sensors/sensor-{d}/m{k}"), "Target": "cloud"})
            } else {
                json!({"Id": format!("s{k}"), "Source": "cloud", "Subject": format!("commands/sensor-{d}/c{k}/+"), "Target": thing(d)})
            }
        })
        .collect();
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
    let sub = create("subscriptions", json!({ "Subscriptions": subs }));
    let group = call(
        &base,
        Method::POST,
        "/greengrass/groups",
        Some(json!({"Name": "bench", "InitialVersion": {
            "CoreDefinitionVersionArn": core, "DeviceDefinitionVersionArn": dev, "SubscriptionDefinitionVersionArn": sub}})),
    );
    let gid = group["Id"].as_str().expect("Id").to_owned();
    let vid = group["LatestVersion"].as_str().expect("version").to_owned();

    let mut applies = Vec::new();
    for _ in 0..5 {
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
    applies.sort();
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id();
    let (rss, pss) = (kib("Rss:", pid), kib("Pss:", pid));
    let (anon, file) = (kib("Pss_Anon:", pid), kib("Pss_File:", pid));
    let _ = child.kill();
    let _ = child.wait();

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "core: API ready {:.1} ms after start (target < 100 ms)",
        ms(ready)
    );
    println!(
        "core: deployment of 20 devices + 500 subscriptions, create → Success: median {:.1} ms, max {:.1} ms over 5 (target < 200 ms)",
        ms(applies[applies.len() / 2]),
        ms(applies[applies.len() - 1])
    );
    println!(
        "core: idle memory with that group active: RSS {:.1} MB, PSS {:.1} MB ({:.1} MB heap and stacks, {:.1} MB files) (target PSS < 15 MB)",
        rss as f64 / 1024.0,
        pss as f64 / 1024.0,
        anon as f64 / 1024.0,
        file as f64 / 1024.0
    );
}
