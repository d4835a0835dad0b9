//! Isolation benchmark: the cost of GreengrassContainer over NoContainer for one unit.
//!
//! * **Start-up**: `coupler sandbox-exec` (cgroups, namespaces, the read-only root, then
//!   `exec`) running `/bin/true`, against `/bin/true` started directly, as the core starts a
//!   NoContainer worker. The difference is the container's start cost.
//! * **Memory per unit**: ten contained units running `sleep` at once; for each, the memory
//!   of its `sandbox-exec` process that no other process shares (USS: private clean + dirty
//!   pages) and its proportional share (PSS), beside the unit's own process.
//!
//! * **A connector**: `coupler connector-exec` running Device Defender, from spawn to its
//!   first report on stdout, contained (under `sandbox-exec`, as the core starts a
//!   GreengrassContainer connector) and not; and the memory of a running contained one.
//!
//! Targets (issue 11): container start under 50 ms; overhead under 2 MB per unit, apart from
//! the unit's own code. Needs root (it makes namespaces and cgroups); otherwise it says why
//! and exits 0. `-- --full` runs 5× more starts.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../tests/support/procs.rs"]
mod procs;

use procs::verdict;

const COUPLER: &str = env!("CARGO_BIN_EXE_coupler");

fn spec(unit: &str) -> String {
    serde_json::json!({
        "unit": unit, "memory_bytes": 64u64 << 20, "pids_max": 64, "run_as": [65534, 65534],
        "binds": [], "sysfs": false, "workdir": "/",
    })
    .to_string()
}

fn contained(unit: &str, argv: &[&str]) -> Command {
    let mut c = Command::new(COUPLER);
    c.arg("sandbox-exec")
        .arg("--spec")
        .arg(spec(unit))
        .arg("--")
        .args(argv)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    c
}

/// Mean milliseconds per run of `make()` to its exit, over `n` runs.
fn mean_ms(n: usize, mut make: impl FnMut() -> Command) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        let s = make().status().expect("spawn");
        assert!(s.success(), "exit status {s}");
    }
    t.elapsed().as_secs_f64() * 1e3 / n as f64
}

/// `Pss` and private (`Private_Clean` + `Private_Dirty`) KiB of `pid`.
fn memory_kib(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (
        field("Pss:"),
        field("Private_Clean:") + field("Private_Dirty:"),
    )
}

/// What the core sends a contained Device Defender first (its volume at /proc in both
/// modes, so that the same setup runs contained and not).
const DEFENDER_SETUP: &str = r#"{"setup": {"id": "defender", "name": "DeviceDefender", "version": 3,
  "arn": "arn:aws:greengrass:us-east-1::/connectors/DeviceDefender/versions/3",
  "parameters": {"SampleIntervalSeconds": "300", "ProcDestinationPath": "/proc",
                 "ProcDestinationPath-ResourceId": "proc"},
  "resources": {"ProcDestinationPath-ResourceId": {"volume": {"source_path": "/proc", "destination_path": "/proc"}}},
  "core_thing": "core", "region": "us-east-1"}}"#;

/// A Device Defender process, started as `make` says and fed its setup; it is ready when
/// its first report is on its stdout. Returns the process and the milliseconds it took.
fn defender(mut cmd: Command) -> (std::process::Child, f64) {
    use std::io::{BufRead as _, Write as _};
    let t = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(DEFENDER_SETUP.replace('\n', " ").as_bytes())
        .expect("setup");
    stdin.write_all(b"\n").expect("setup");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).expect("read") > 0,
            "the connector ended before its first report"
        );
        if line.starts_with("{\"publish\"") {
            break;
        }
    }
    let ms = t.elapsed().as_secs_f64() * 1e3;
    // Its stdin stays open (held by the child's handle) until `stop`.
    child.stdin = Some(stdin);
    child.stdout = Some(out.into_inner());
    (child, ms)
}

/// Ask it to stop (the end of its input) and wait.
fn stop(mut child: std::process::Child) {
    drop(child.stdin.take());
    let _ = child.wait();
}

fn connector_command(contained_in: Option<&str>) -> Command {
    match contained_in {
        Some(unit) => {
            // As the core contains a connector: its binary read-only, the core's user.
            let spec = serde_json::json!({
                "unit": unit, "memory_bytes": 64u64 << 20, "pids_max": 256, "run_as": null,
                "binds": [{"source": COUPLER, "target": COUPLER, "writable": false}],
                "sysfs": false, "workdir": "/tmp",
            });
            let mut c = Command::new(COUPLER);
            c.arg("sandbox-exec")
                .arg("--spec")
                .arg(spec.to_string())
                .arg("--")
                .args([COUPLER, "connector-exec"]);
            c
        }
        None => {
            let mut c = Command::new(COUPLER);
            c.arg("connector-exec");
            c
        }
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--full");
    let n = if full { 500 } else { 100 };
    println!(
        "Isolation benchmark ({} mode)",
        if full { "full" } else { "short" }
    );
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false);
    if !root {
        println!("  skipped: container mode needs root");
        return;
    }
    if let Err(why) = Command::new(COUPLER)
        .arg("doctor")
        .output()
        .map_err(|e| e.to_string())
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            if text.contains("ok    GreengrassContainer functions and connectors") {
                Ok(())
            } else {
                Err(text)
            }
        })
    {
        println!("  skipped: this host cannot isolate:\n{why}");
        return;
    }

    // Warm the page cache for both.
    let _ = mean_ms(5, || contained("warm", &["/bin/true"]));
    let plain = mean_ms(n, || {
        let mut c = Command::new("/bin/true");
        c.stdout(Stdio::null());
        c
    });
    let boxed = mean_ms(n, || contained("bench", &["/bin/true"]));
    let start = boxed - plain;

    let units = 10;
    let mut children: Vec<_> = (0..units)
        .map(|i| {
            contained(&format!("mem{i}"), &["/bin/sleep", "30"])
                .spawn()
                .expect("spawn")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (mut pss, mut private, mut unit_pss) = (0, 0, 0);
    for c in &children {
        let (p, u) = memory_kib(c.id());
        pss += p;
        private += u;
        // The unit: the helper's one child.
        let kids = std::fs::read_to_string(format!("/proc/{}/task/{}/children", c.id(), c.id()))
            .unwrap_or_default();
        if let Some(pid) = kids.split_whitespace().next().and_then(|p| p.parse().ok()) {
            unit_pss += memory_kib(pid).0;
        }
    }
    // SIGTERM: sandbox-exec ends its unit and removes its cgroups.
    for c in &mut children {
        let _ = Command::new("kill").arg(c.id().to_string()).status();
        let _ = c.wait();
    }
    let per_pss = pss as f64 / units as f64 / 1024.0;
    let per_private = private as f64 / units as f64 / 1024.0;
    let per_unit = unit_pss as f64 / units as f64 / 1024.0;

    println!();
    println!("  start to exit of /bin/true             ms (mean of {n})");
    println!("  NoContainer (plain process)           {plain:>8.2}");
    println!("  GreengrassContainer (sandbox-exec)    {boxed:>8.2}");
    println!();
    println!("  memory of each of {units} contained `sleep` units");
    println!("  sandbox-exec process, private (USS)   {per_private:>8.2} MiB");
    println!("  sandbox-exec process, PSS             {per_pss:>8.2} MiB");
    println!("  the unit itself (sleep), PSS          {per_unit:>8.2} MiB");
    println!();
    // A connector: Device Defender, to its first report.
    let runs = if full { 50 } else { 10 };
    let to_report = |unit: Option<&str>| {
        let mut total = 0.0;
        for _ in 0..runs {
            let (child, ms) = defender(connector_command(unit));
            total += ms;
            stop(child);
        }
        total / runs as f64
    };
    let _ = to_report(None);
    let plain_connector = to_report(None);
    let boxed_connector = to_report(Some("DeviceDefender"));
    let (running, _) = defender(connector_command(Some("DeviceDefender")));
    std::thread::sleep(Duration::from_millis(300));
    let helper = memory_kib(running.id());
    let kids = std::fs::read_to_string(format!(
        "/proc/{}/task/{}/children",
        running.id(),
        running.id()
    ))
    .unwrap_or_default();
    let connector_pss = kids
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .map_or(0, |pid| memory_kib(pid).0);
    stop(running);
    let connector_start = boxed_connector - plain_connector;
    println!("  Device Defender connector, spawn to its first report    ms (mean of {runs})");
    println!("  NoContainer (connector-exec)          {plain_connector:>8.2}");
    println!("  GreengrassContainer (sandbox-exec)    {boxed_connector:>8.2}");
    println!(
        "  contained connector: sandbox-exec {:.2} MiB private, {:.2} MiB PSS; connector process {:.2} MiB PSS",
        helper.1 as f64 / 1024.0,
        helper.0 as f64 / 1024.0,
        connector_pss as f64 / 1024.0
    );
    println!();
    println!(
        "  connector container start cost: {connector_start:.2} ms (target < 50): {}",
        verdict(connector_start < 50.0)
    );
    println!(
        "  container start cost: {start:.2} ms (target < 50): {}",
        verdict(start < 50.0)
    );
    println!(
        "  overhead per unit: {per_private:.2} MiB private, {per_pss:.2} MiB PSS (target < 2): {}",
        verdict(per_pss < 2.0)
    );
    // The helper of a contained connector shares the binary's pages with the connector's
    // own process, so its PSS carries half of those: its private memory is what it adds.
    let connector_overhead = helper.1 as f64 / 1024.0;
    println!(
        "  overhead of a contained connector: {connector_overhead:.2} MiB private (target < 2): {}",
        verdict(connector_overhead < 2.0)
    );
}
