//! Processes the benchmarks start and measure: a guard that kills and reaps a child, and
//! what `/proc` says of a process's CPU time and memory.

// Each benchmark uses a part.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Child;

/// A child process, killed and reaped when dropped (also while unwinding from a panic), and
/// files of its to remove then.
pub struct Reaped {
    pub child: Child,
    pub remove: Vec<PathBuf>,
}

impl Reaped {
    pub fn new(child: Child) -> Reaped {
        Reaped {
            child,
            remove: Vec::new(),
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for f in &self.remove {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// Nanoseconds of CPU used so far by the live threads of `pid`
/// (`/proc/PID/task/*/schedstat`): precise, for processes whose threads live as long as the
/// measurement (a thread that has ended is no longer listed).
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// CPU seconds (user + system) used so far by `pid`, ended threads included
/// (`/proc/PID/stat`, in 10 ms ticks): for servers that start a thread per request.
pub fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) follow the last ')'.
    let ticks: u64 = stat.rsplit_once(')').map_or(0, |(_, rest)| {
        let fields = rest.split_whitespace().skip(11).take(2);
        fields.filter_map(|v| v.parse::<u64>().ok()).sum()
    });
    ticks as f64 / 100.0 // USER_HZ
}

/// `VmFIELD` of `pid` in KiB (`RSS` now, `HWM` the peak since the last reset).
pub fn vm_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let key = format!("Vm{field}:");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// How a benchmark prints a figure against its target (it never fails on a miss).
pub fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "MISS" }
}
