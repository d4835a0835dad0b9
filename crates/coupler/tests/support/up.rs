//! `coupler up` as a separate process, for the CLI tests and the benchmarks: started on free
//! ports with the host's `AWS_*`/`COUPLER_*` variables removed, its printed addresses read,
//! and its stdout drained for as long as it runs (so it never writes to a closed pipe).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `coupler up` and the addresses it printed.
#[derive(Debug)]
#[allow(dead_code)] // each user reads the addresses it needs
pub struct Up {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub api: String,
    pub mqtt_tls: Option<SocketAddr>,
    pub mqtt_plain: Option<SocketAddr>,
}

/// The address after `prefix` and a scheme, in a line such as
/// `device MQTT plain  mqtt://127.0.0.1:1883  (…)`.
fn address(line: &str, prefix: &str, scheme: &str) -> Option<SocketAddr> {
    line.strip_prefix(prefix)?
        .trim()
        .strip_prefix(scheme)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A command without the host's `AWS_*` and `COUPLER_*` variables.
pub fn clean(cmd: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.starts_with("COUPLER_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// `coupler up --api 127.0.0.1:0 --mqtt 127.0.0.1:0 --ipc 127.0.0.1:0 EXTRA… --data-dir DIR`
/// with `env` added; returns once it has printed its startup lines.
pub fn start(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Up {
    let mut child = clean(&mut Command::new(env!("CARGO_BIN_EXE_coupler")))
        // Free ports for everything, so that tests and benchmarks can run side by side.
        .args([
            "up",
            "--api",
            "127.0.0.1:0",
            "--mqtt",
            "127.0.0.1:0",
            "--ipc",
            "127.0.0.1:0",
        ])
        .args(extra)
        .arg("--data-dir")
        .arg(dir)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("coupler up starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut api, mut mqtt_tls, mut mqtt_plain) = (None, None, None);
    loop {
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("coupler up did not print its startup lines: {e}");
            }
        };
        let t = line.trim();
        if let Some(v) = t.strip_prefix("control-plane API") {
            api = Some(v.trim().to_owned());
        }
        mqtt_tls = mqtt_tls.or_else(|| address(t, "device MQTT (TLS)", "mqtts://"));
        mqtt_plain = mqtt_plain.or_else(|| address(t, "device MQTT plain", "mqtt://"));
        // The last address line; the MQTT ones come before it.
        if t.starts_with("health / metrics") {
            break;
        }
    }
    std::thread::spawn(move || while rx.recv().is_ok() {});
    Up {
        child,
        api: api.expect("coupler up prints its API address"),
        mqtt_tls,
        mqtt_plain,
    }
}
