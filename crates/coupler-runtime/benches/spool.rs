//! Cloud spool benchmark (`coupler_runtime::spool`), no networking: pushes per second with
//! 100-byte payloads for Memory and FileSystem storage (each durability setting), push + ack
//! round trips, pushes into a full spool (drop-oldest), bytes on disk, and reopen (recovery)
//! time. The target is the issue's: FileSystem spool writes of at least 50 000 msg/s.
//!
//! `cargo bench -p coupler-runtime --bench spool` (a few seconds), or `-- --full` for longer
//! runs. `-- --dir PATH` puts the FileSystem spools under PATH (default: the system's temporary
//! directory, which must be on a real disk for the fsync figures to mean anything).

#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use coupler_model::TopicName;
use coupler_router::Qos;
use coupler_runtime::spool::{Durability, Spool, SpoolConfig};

const TARGET_PUSHES_PER_SEC: f64 = 50_000.0;
const PAYLOAD_BYTES: usize = 100;

struct Args {
    full: bool,
    dir: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        full: false,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--full" => a.full = true,
            "--dir" => a.dir = it.next().map(PathBuf::from),
            _ => {} // `cargo bench` passes `--bench`
        }
    }
    a
}

fn topics() -> Vec<TopicName> {
    (0..4)
        .map(|i| TopicName::parse(&format!("site/line{i}/telemetry")).unwrap())
        .collect()
}

fn payload() -> Vec<u8> {
    (0..PAYLOAD_BYTES).map(|i| b'a' + (i % 26) as u8).collect()
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// What a FileSystem spool is set up with in a run.
#[derive(Clone, Copy)]
struct Mode {
    name: &'static str,
    durability: Durability,
}

fn modes() -> [Mode; 3] {
    [
        Mode {
            name: "default: pwrite each push, fsync every 1000 / 100 ms",
            durability: Durability::default(),
        },
        Mode {
            name: "64 KiB write buffer, fsync every 10000 / 100 ms",
            durability: Durability {
                write_buffer_bytes: 64 << 10,
                sync_every_messages: 10_000,
                sync_interval: Some(Duration::from_millis(100)),
            },
        },
        Mode {
            name: "fsync every push",
            durability: Durability::sync_each_push(),
        },
    ]
}

fn config(storage_dir: Option<&Path>, max: u64, durability: Durability) -> SpoolConfig {
    let mut c = match storage_dir {
        None => SpoolConfig::memory(max),
        Some(d) => SpoolConfig::file_system(d, max),
    };
    c.durability = durability;
    c
}

/// Push `n` messages; returns pushes per second (the final sync included).
fn push_rate(spool: &Spool, n: usize, topics: &[TopicName], payload: &[u8]) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        spool
            .push(&topics[i % topics.len()], payload, Qos::AtLeastOnce)
            .unwrap();
    }
    spool.sync().unwrap();
    n as f64 / start.elapsed().as_secs_f64()
}

/// Push, take and ack `n` messages, `window` at a time; returns µs per message.
fn round_trip_us(
    spool: &Spool,
    n: usize,
    window: usize,
    topics: &[TopicName],
    payload: &[u8],
) -> f64 {
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        for i in 0..window {
            spool
                .push(
                    &topics[(done + i) % topics.len()],
                    payload,
                    Qos::AtLeastOnce,
                )
                .unwrap();
        }
        let batch = spool.next_batch(window).unwrap();
        assert_eq!(batch.len(), window);
        for m in batch {
            assert!(spool.ack(m.seq));
        }
        done += window;
    }
    spool.sync().unwrap();
    start.elapsed().as_secs_f64() * 1e6 / done as f64
}

fn main() {
    let args = args();
    let n = if args.full { 2_000_000 } else { 200_000 };
    let n_fsync_each = if args.full { 2_000 } else { 300 };
    let rt_n = if args.full { 500_000 } else { 50_000 };
    let topics = topics();
    let payload = payload();
    let per_msg = (topics[0].as_str().len() + PAYLOAD_BYTES) as u64 + 64;
    // Large enough that nothing is dropped in the push runs.
    let big = (n as u64 * per_msg).next_power_of_two();
    let base = match &args.dir {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    println!(
        "spool benchmark ({} mode): {PAYLOAD_BYTES}-byte payloads, topics like {:?}, spool files under {}",
        if args.full { "full" } else { "short" },
        topics[0].as_str(),
        base.path().display()
    );
    println!();

    println!("pushes (each run ends with a sync):");
    let memory = Spool::open(config(None, big, Durability::default())).unwrap();
    let mem_rate = push_rate(&memory, n, &topics, &payload);
    println!(
        "  {:<60} {:>10.0} msg/s  ({n} messages)",
        "Memory", mem_rate
    );
    drop(memory);

    let mut fs_default_rate = 0.0;
    let mut disk_line = String::new();
    let mut reopen_line = String::new();
    for (k, mode) in modes().iter().enumerate() {
        let dir = base.path().join(format!("push{k}"));
        let count = if mode.durability.sync_every_messages == 1 {
            n_fsync_each
        } else {
            n
        };
        let spool = Spool::open(config(Some(&dir), big, mode.durability)).unwrap();
        let rate = push_rate(&spool, count, &topics, &payload);
        println!(
            "  {:<60} {:>10.0} msg/s  ({count} messages)",
            format!("FileSystem, {}", mode.name),
            rate
        );
        if k == 0 {
            fs_default_rate = rate;
            let s = spool.stats();
            let on_disk = dir_bytes(&dir);
            disk_line = format!(
                "  {count} messages held: {on_disk} bytes on disk ({:.1} per message; the spool charges {per_msg} per message against its bound), {} segment files",
                on_disk as f64 / count as f64,
                s.segments,
            );
            drop(spool);
            let start = Instant::now();
            let spool = Spool::open(config(Some(&dir), big, mode.durability)).unwrap();
            let took = start.elapsed();
            assert_eq!(spool.len(), count);
            reopen_line = format!(
                "  reopen (recovery scan) of {count} messages: {:.0} ms ({:.2} µs per message)",
                took.as_secs_f64() * 1e3,
                took.as_secs_f64() * 1e6 / count as f64
            );
            // Drain it all: every segment goes.
            let start = Instant::now();
            loop {
                let batch = spool.next_batch(1000).unwrap();
                if batch.is_empty() {
                    break;
                }
                for m in batch {
                    spool.ack(m.seq);
                }
            }
            spool.sync().unwrap();
            let drain = start.elapsed();
            reopen_line.push_str(&format!(
                "\n  drain (next_batch 1000 + ack each) of {count} messages: {:.2} µs per message; then {} bytes on disk",
                drain.as_secs_f64() * 1e6 / count as f64,
                dir_bytes(&dir)
            ));
        }
    }
    println!();

    println!("push + next_batch + ack, per message:");
    for (storage, window) in [
        ("Memory", 1),
        ("Memory", 100),
        ("FileSystem", 1),
        ("FileSystem", 100),
    ] {
        let dir = base.path().join(format!("rt-{storage}-{window}"));
        let d = (storage == "FileSystem").then_some(dir.as_path());
        let spool = Spool::open(config(d, big, Durability::default())).unwrap();
        let us = round_trip_us(&spool, rt_n, window, &topics, &payload);
        println!(
            "  {:<60} {:>10.2} µs",
            format!("{storage}, window {window} (default durability)"),
            us
        );
    }
    println!();

    println!("pushes into a full 2.5 MB spool (every push drops the oldest):");
    for storage in ["Memory", "FileSystem"] {
        let dir = base.path().join(format!("full-{storage}"));
        let d = (storage == "FileSystem").then_some(dir.as_path());
        let spool = Spool::open(config(d, 2_621_440, Durability::default())).unwrap();
        let rate = push_rate(&spool, n, &topics, &payload);
        let s = spool.stats();
        println!(
            "  {:<60} {:>10.0} msg/s  (dropped {}, held {} = {} bytes, {} bytes on disk)",
            storage,
            rate,
            s.dropped,
            s.messages,
            s.bytes,
            if d.is_some() { dir_bytes(&dir) } else { 0 }
        );
    }
    println!();

    println!("disk and recovery (FileSystem, default durability):");
    println!("{disk_line}");
    println!("{reopen_line}");
    println!();
    println!(
        "target: FileSystem spool writes >= {TARGET_PUSHES_PER_SEC:.0} msg/s with {PAYLOAD_BYTES}-byte payloads: {:.0} msg/s  {}",
        fs_default_rate,
        if fs_default_rate >= TARGET_PUSHES_PER_SEC {
            "PASS"
        } else {
            "MISS"
        }
    );
}
