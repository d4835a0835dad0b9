//! The cloud spool: messages for the upstream broker, held until it acknowledges them (PUBACK).
//!
//! Coupler's `GGCloudSpooler` (spec §2.4). `GG_CONFIG_STORAGE_TYPE` picks [`Storage::Memory`]
//! (lost on restart, as in Greengrass) or [`Storage::FileSystem`] (survives restarts and
//! `kill -9`); `GG_CONFIG_MAX_SIZE_BYTES` (at least 262144) bounds it. When a new message does
//! not fit, the **oldest** messages that are not in flight are dropped to make room, as
//! Greengrass does; [`Spool::push`] returns what it dropped so that the caller can log it, and
//! [`SpoolStats::dropped`] counts it. A message larger than the whole bound is refused
//! ([`SpoolError::TooLarge`]), and so is one that only in-flight messages stand in the way of
//! ([`SpoolError::Full`]).
//!
//! # Sending
//!
//! A sender takes a window of the oldest messages not in flight with [`Spool::next_batch`],
//! publishes them, and removes each with [`Spool::ack`] when its PUBACK arrives, in any order.
//! On a disconnect, [`Spool::requeue_in_flight`] puts every unacknowledged message back where it
//! was, so the resend keeps the original order (per topic, and overall). A message is removed
//! only by its ack, or by drop-oldest.
//!
//! # What counts against the bound
//!
//! A message is charged its topic and payload plus [`MESSAGE_OVERHEAD_BYTES`] (64) of
//! bookkeeping: about what its record header on disk and its entry in the in-memory index cost.
//! So the bound holds for memory (Memory storage) and for live data on disk (FileSystem) alike,
//! even with tiny messages.
//!
//! # FileSystem storage: an append-only segment log
//!
//! Chosen over an embedded store because the workload is a FIFO: append at one end, remove at
//! the other, with a window in between. A log makes the append a buffer copy and (by default)
//! one `pwrite`, recovery a sequential scan, and removal of old data the deletion of a whole
//! file; nothing is ever rewritten in place, and there is no new dependency.
//!
//! - **Segments** `<dir>/<first seq, 20 digits>.seg`: an 8-byte magic, then records
//!   `len u32 | crc32 u32 | seq u64 | qos u8 | topic_len u16 | topic | payload`
//!   (little-endian; the CRC-32 (IEEE) covers everything after itself). A segment is closed
//!   once it reaches the segment size (a quarter of the bound, from 64 KiB to 4 MiB, unless set)
//!   and **deleted as soon as every message in it is acked or dropped**.
//! - **Removals** `<dir>/acks.log`: a header holding a sequence-number floor, then records of
//!   removed ranges `start u64 | end u64 | crc32 u32` (consecutive acks coalesce into one
//!   range). It is compacted (rewritten to hold only the removals that still matter, i.e. those
//!   inside live segments, through a temporary file, fsync and rename) once it is larger than a
//!   segment and than twice its size after the last compaction, and on every open. So the
//!   files hold at most the bound plus a few segments (and one more for each message in flight
//!   that pins an otherwise drained segment).
//! - **In memory**: only an index `seq → (segment, offset, length)` (the 64 bytes charged per
//!   message), the write buffer (at most [`Durability::write_buffer_bytes`] plus one record) and
//!   one open file per segment. Payloads are read back from the file (the OS page cache) when a
//!   window is taken; there is no other cache.
//! - **Recovery** (on [`Spool::open`]) scans the segments in order. A record cut short, or with
//!   an impossible length, ends its segment (a torn tail after a crash): the file is truncated
//!   there. A record whose CRC does not match but whose length leads to a good record is skipped
//!   (damage costs that record only); two bad ones in a row cut the segment at the first. Each
//!   is counted in [`SpoolStats::damaged`] and logged, as is a damaged record met when a window
//!   is read (it is discarded). Then the removal log is applied, and what was in flight is
//!   queued again. A second process opening the same directory gets [`SpoolError::Locked`].
//!
//! # Durability
//!
//! Configurable through [`Durability`]; the default is:
//! - every push is written to its segment file (`pwrite`) before [`Spool::push`] returns, so a
//!   message survives `kill -9` of the process the moment `push` returns;
//! - the files are fsynced (`fdatasync`) after every 1000 pushes and, at the next push or ack,
//!   when the last sync is older than 100 ms, so a power loss loses at most that much.
//!   [`Spool::sync`] does it at once; the owner should call it on a timer (and before a clean
//!   exit), so that the last messages before a quiet spell get synced too.
//!
//! Acks follow the same path. An ack lost in a crash only means the message is sent again
//! (QoS 1 is at least once anyway); an ack whose write fails is kept and written later.
//! With [`Durability::write_buffer_bytes`] above 0, records are batched in the process instead,
//! and a `kill -9` loses the unwritten buffer, but never what [`Spool::sync`] has confirmed.
//!
//! `benches/spool.rs` measures each setting: on the 2-core development VM, about 200 000
//! pushes/s by default, close to a million with a 64 KiB buffer, a few thousand with an fsync
//! per push, against the target of 50 000 (100-byte payloads).
//!
//! # Threads
//!
//! [`Spool`] is `Send + Sync`: every method takes `&self` and holds one internal mutex for its
//! duration. Methods of a FileSystem spool do blocking file I/O (a `pwrite`, and now and then an
//! fsync of a few milliseconds); from async code, call [`Spool::sync`] through
//! `spawn_blocking`.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use coupler_model::TopicName;
use coupler_router::Qos;
use parking_lot::Mutex;

/// The smallest `GG_CONFIG_MAX_SIZE_BYTES` Greengrass accepts.
pub const MIN_MAX_SIZE_BYTES: u64 = coupler_model::validate::limits::MIN_SPOOL_BYTES as u64;
/// Greengrass's default spool size (2.5 MB).
pub const DEFAULT_MAX_SIZE_BYTES: u64 = 2_621_440;
/// Bytes charged to each message on top of its topic and payload.
pub const MESSAGE_OVERHEAD_BYTES: u64 = 64;
/// The smallest segment size that can be configured.
pub const MIN_SEGMENT_BYTES: u64 = 4096;

const SEGMENT_MAGIC: &[u8; 8] = b"CPLSPL1\n";
const ACKS_MAGIC: &[u8; 8] = b"CPLACK1\n";
const SEGMENT_SUFFIX: &str = ".seg";
const ACKS_FILE: &str = "acks.log";
const ACKS_TMP: &str = "acks.tmp";
const LOCK_FILE: &str = "LOCK";
/// `len` and `crc`.
const RECORD_HEADER: usize = 8;
/// `seq`, `qos` and `topic_len`.
const BODY_FIXED: usize = 11;
const RECORD_FIXED: usize = RECORD_HEADER + BODY_FIXED;
/// `start`, `end`, `crc`. The header is as long: the magic, `floor`, `crc` and 8 zero bytes.
const ACK_RECORD: usize = 20;

/// A message's place in the spool: increasing, never reused while the spool holds anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub u64);

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where the spool keeps its messages (`GG_CONFIG_STORAGE_TYPE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// In memory; lost on restart, as in Greengrass.
    Memory,
    /// In a segment log in `dir`, which the spool owns.
    FileSystem { dir: PathBuf },
}

/// When written data reaches the disk. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durability {
    /// Records held in the process before they are written to the file, in bytes. 0 (the
    /// default): each push and ack is written before it returns, and survives `kill -9`.
    pub write_buffer_bytes: usize,
    /// Fsync once this many pushes are unsynced (the push that reaches it syncs before
    /// returning). 0: never on count.
    pub sync_every_messages: u64,
    /// Fsync at the next push or ack once the last sync is this old. `None`: never on time.
    pub sync_interval: Option<Duration>,
}

impl Default for Durability {
    fn default() -> Self {
        Self {
            write_buffer_bytes: 0,
            sync_every_messages: 1000,
            sync_interval: Some(Duration::from_millis(100)),
        }
    }
}

impl Durability {
    /// Fsync every push before it returns: the safest, and slowest (a few ms per push).
    pub fn sync_each_push() -> Self {
        Self {
            write_buffer_bytes: 0,
            sync_every_messages: 1,
            sync_interval: None,
        }
    }
}

/// How a spool is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    pub storage: Storage,
    /// The bound, in charged bytes (`GG_CONFIG_MAX_SIZE_BYTES`); at least 262144.
    pub max_size_bytes: u64,
    /// Size at which a segment file is closed, and above which the removal log is compacted;
    /// `None`: a quarter of the bound, clamped to 64 KiB – 4 MiB. FileSystem only.
    pub segment_bytes: Option<u64>,
    /// FileSystem only.
    pub durability: Durability,
}

impl SpoolConfig {
    pub fn memory(max_size_bytes: u64) -> Self {
        Self {
            storage: Storage::Memory,
            max_size_bytes,
            segment_bytes: None,
            durability: Durability::default(),
        }
    }

    pub fn file_system(dir: impl Into<PathBuf>, max_size_bytes: u64) -> Self {
        Self {
            storage: Storage::FileSystem { dir: dir.into() },
            max_size_bytes,
            segment_bytes: None,
            durability: Durability::default(),
        }
    }

    /// From `GGCloudSpooler`'s environment variables, with Greengrass's defaults (Memory,
    /// 2621440 bytes); `dir` is used if they ask for FileSystem storage.
    pub fn from_greengrass_env(
        vars: &BTreeMap<String, String>,
        dir: impl Into<PathBuf>,
    ) -> Result<Self, SpoolError> {
        let max = match vars.get("GG_CONFIG_MAX_SIZE_BYTES") {
            None => DEFAULT_MAX_SIZE_BYTES,
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map_err(|_| SpoolError::InvalidSetting {
                    name: "GG_CONFIG_MAX_SIZE_BYTES",
                    reason: format!("{v:?} is not a number of bytes"),
                })?,
        };
        match vars.get("GG_CONFIG_STORAGE_TYPE").map(String::as_str) {
            None | Some("Memory") => Ok(Self::memory(max)),
            Some("FileSystem") => Ok(Self::file_system(dir, max)),
            Some(other) => Err(SpoolError::InvalidSetting {
                name: "GG_CONFIG_STORAGE_TYPE",
                reason: format!("{other:?} is not Memory or FileSystem"),
            }),
        }
    }

    fn segment_size(&self) -> u64 {
        self.segment_bytes
            .unwrap_or_else(|| (self.max_size_bytes / 4).clamp(64 << 10, 4 << 20))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Greengrass's own words for this.
    #[error("Spool size should be at least {MIN_MAX_SIZE_BYTES} bytes (got {0})")]
    TooSmall(u64),
    #[error("{name}: {reason}")]
    InvalidSetting { name: &'static str, reason: String },
    #[error("message of {size} bytes (as charged) is larger than the whole spool ({max} bytes)")]
    TooLarge { size: u64, max: u64 },
    #[error(
        "spool full: a message of {size} bytes does not fit beside the {in_flight_bytes} bytes in flight (bound {max})"
    )]
    Full {
        size: u64,
        in_flight_bytes: u64,
        max: u64,
    },
    #[error("{path}: in use by another process")]
    Locked { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a spool file: {reason}")]
    Corrupt { path: PathBuf, reason: &'static str },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What [`Spool::push`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub seq: Seq,
    /// The oldest messages dropped to make room, oldest first.
    pub dropped: Vec<Seq>,
}

/// A message taken from the spool to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    pub seq: Seq,
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: Qos,
}

/// Counters and sizes, for logs and `coupler status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct SpoolStats {
    /// Messages held, in flight or not.
    pub messages: usize,
    /// Their charged size.
    pub bytes: u64,
    pub max_bytes: u64,
    pub in_flight: usize,
    /// Messages dropped to make room (drop-oldest), since open.
    pub dropped: u64,
    /// Messages refused (larger than the bound, or the bound held by messages in flight).
    pub refused: u64,
    /// Damaged records found (a torn tail at recovery, a CRC mismatch) and discarded.
    pub damaged: u64,
    /// Pushes not yet fsynced (FileSystem).
    pub unsynced: u64,
    /// Segment files (FileSystem).
    pub segments: usize,
    /// Bytes of the spool's files plus what is still buffered (FileSystem).
    pub disk_bytes: u64,
    /// The sequence number the next push gets.
    pub next_seq: u64,
}

/// The spool. See the module documentation.
pub struct Spool {
    inner: Mutex<Inner>,
}

impl fmt::Debug for Spool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spool")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Spool {
    /// Open (FileSystem: create or recover) a spool.
    pub fn open(config: SpoolConfig) -> Result<Self, SpoolError> {
        if config.max_size_bytes < MIN_MAX_SIZE_BYTES {
            return Err(SpoolError::TooSmall(config.max_size_bytes));
        }
        let segment_bytes = config.segment_size();
        if segment_bytes < MIN_SEGMENT_BYTES {
            return Err(SpoolError::InvalidSetting {
                name: "segment_bytes",
                reason: format!("{segment_bytes} is below {MIN_SEGMENT_BYTES}"),
            });
        }
        let (store, next_seq, damaged) = match &config.storage {
            Storage::Memory => (Store::Memory(Queue::default()), 0, 0),
            Storage::FileSystem { dir } => {
                let (fs, next_seq, damaged) =
                    FileStore::open(dir, segment_bytes, config.durability)?;
                (Store::File(Box::new(fs)), next_seq, damaged)
            }
        };
        let mut inner = Inner {
            max_bytes: config.max_size_bytes,
            next_seq,
            dropped: 0,
            refused: 0,
            damaged,
            store,
        };
        let mut over = Vec::new();
        inner.make_room(&mut over);
        if !over.is_empty() {
            tracing::warn!(
                dropped = over.len(),
                max_bytes = inner.max_bytes,
                "spool recovered more than its bound holds; dropped the oldest messages"
            );
            inner.dropped += over.len() as u64;
        }
        inner.after_op();
        Ok(Self {
            inner: Mutex::new(inner),
        })
    }

    /// Append a message; drops the oldest messages not in flight if it would not fit.
    pub fn push(&self, topic: &TopicName, payload: &[u8], qos: Qos) -> Result<Pushed, SpoolError> {
        self.inner.lock().push(topic, payload, qos)
    }

    /// Up to `max` of the oldest messages not in flight, in order, now in flight.
    pub fn next_batch(&self, max: usize) -> Result<Vec<Spooled>, SpoolError> {
        self.inner.lock().next_batch(max)
    }

    /// Remove a message (its PUBACK arrived). False if the spool does not hold it (already
    /// acked, or dropped).
    pub fn ack(&self, seq: Seq) -> bool {
        self.inner.lock().ack(seq)
    }

    /// Put every message in flight back in the queue, at its place (after a disconnect).
    /// Returns how many.
    pub fn requeue_in_flight(&self) -> usize {
        match &mut self.inner.lock().store {
            Store::Memory(q) => q.requeue(),
            Store::File(f) => f.queue.requeue(),
        }
    }

    /// Write and fsync everything pushed and acked so far. Cheap when nothing is pending.
    pub fn sync(&self) -> Result<(), SpoolError> {
        match &mut self.inner.lock().store {
            Store::Memory(_) => Ok(()),
            Store::File(f) => f.sync(),
        }
    }

    pub fn stats(&self) -> SpoolStats {
        self.inner.lock().stats()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Inner {
    max_bytes: u64,
    next_seq: u64,
    dropped: u64,
    refused: u64,
    damaged: u64,
    store: Store,
}

enum Store {
    Memory(Queue<MemMsg>),
    File(Box<FileStore>),
}

impl Store {
    fn len(&self) -> usize {
        match self {
            Store::Memory(q) => q.map.len(),
            Store::File(f) => f.queue.map.len(),
        }
    }

    fn bytes(&self) -> (u64, u64) {
        match self {
            Store::Memory(q) => (q.bytes, q.in_flight_bytes),
            Store::File(f) => (f.queue.bytes, f.queue.in_flight_bytes),
        }
    }

    fn oldest_queued(&self) -> Option<u64> {
        match self {
            Store::Memory(q) => q.oldest_queued(),
            Store::File(f) => f.queue.oldest_queued(),
        }
    }

    fn remove(&mut self, seq: u64) -> bool {
        match self {
            Store::Memory(q) => q.remove(seq).is_some(),
            Store::File(f) => f.remove(seq).is_some(),
        }
    }
}

fn charge(topic_len: usize, payload_len: usize) -> u64 {
    (topic_len + payload_len) as u64 + MESSAGE_OVERHEAD_BYTES
}

impl Inner {
    fn push(&mut self, topic: &TopicName, payload: &[u8], qos: Qos) -> Result<Pushed, SpoolError> {
        let size = charge(topic.as_str().len(), payload.len());
        let record_len = RECORD_FIXED + topic.as_str().len() + payload.len();
        if size > self.max_bytes || u32::try_from(record_len).is_err() {
            self.refused += 1;
            return Err(SpoolError::TooLarge {
                size,
                max: self.max_bytes,
            });
        }
        let (_, in_flight_bytes) = self.store.bytes();
        if size > self.max_bytes - in_flight_bytes {
            self.refused += 1;
            return Err(SpoolError::Full {
                size,
                in_flight_bytes,
                max: self.max_bytes,
            });
        }
        let seq = self.next_seq;
        match &mut self.store {
            Store::Memory(q) => q.insert(
                seq,
                MemMsg {
                    topic: topic.clone(),
                    payload: Bytes::copy_from_slice(payload),
                    qos,
                },
            ),
            Store::File(f) => f.append(seq, topic.as_str().as_bytes(), payload, qos)?,
        }
        self.next_seq += 1;
        let mut dropped = Vec::new();
        self.make_room(&mut dropped);
        self.dropped += dropped.len() as u64;
        self.after_op();
        Ok(Pushed {
            seq: Seq(seq),
            dropped,
        })
    }

    /// Drop the oldest messages not in flight until the spool is within its bound.
    fn make_room(&mut self, dropped: &mut Vec<Seq>) {
        while self.store.bytes().0 > self.max_bytes {
            // `push` checked that the queued messages are enough.
            let Some(seq) = self.store.oldest_queued() else {
                break;
            };
            self.store.remove(seq);
            dropped.push(Seq(seq));
        }
    }

    fn next_batch(&mut self, max: usize) -> Result<Vec<Spooled>, SpoolError> {
        let out = match &mut self.store {
            Store::Memory(q) => {
                let out: Vec<Spooled> = q
                    .window(max)
                    .map(|(seq, m)| Spooled {
                        seq: Seq(*seq),
                        topic: m.topic.clone(),
                        payload: m.payload.clone(),
                        qos: m.qos,
                    })
                    .collect();
                if let Some(last) = out.last() {
                    q.advance_through(last.seq.0);
                }
                out
            }
            Store::File(f) => f.window(max, &mut self.damaged)?,
        };
        self.after_op();
        Ok(out)
    }

    fn ack(&mut self, seq: Seq) -> bool {
        let removed = self.store.remove(seq.0);
        if removed {
            self.after_op();
        }
        removed
    }

    fn after_op(&mut self) {
        if let Store::File(f) = &mut self.store {
            f.after_op(self.next_seq);
        }
    }

    fn stats(&self) -> SpoolStats {
        let (messages, bytes, in_flight) = match &self.store {
            Store::Memory(q) => (q.map.len(), q.bytes, q.in_flight),
            Store::File(f) => (f.queue.map.len(), f.queue.bytes, f.queue.in_flight),
        };
        let (unsynced, segments, disk_bytes) = match &self.store {
            Store::Memory(_) => (0, 0, 0),
            Store::File(f) => (
                f.unsynced,
                f.segments.len(),
                f.segments.values().map(|s| s.len).sum::<u64>()
                    + f.wbuf.len() as u64
                    + f.acks.len
                    + f.acks.pending.len() as u64,
            ),
        };
        SpoolStats {
            messages,
            bytes,
            max_bytes: self.max_bytes,
            in_flight,
            dropped: self.dropped,
            refused: self.refused,
            damaged: self.damaged,
            unsynced,
            segments,
            disk_bytes,
            next_seq: self.next_seq,
        }
    }
}

trait Charged {
    fn charge(&self) -> u64;
}

/// The messages in order; those below `cursor` are in flight.
struct Queue<T> {
    map: BTreeMap<u64, T>,
    cursor: u64,
    bytes: u64,
    in_flight: usize,
    in_flight_bytes: u64,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self {
            map: BTreeMap::new(),
            cursor: 0,
            bytes: 0,
            in_flight: 0,
            in_flight_bytes: 0,
        }
    }
}

impl<T: Charged> Queue<T> {
    /// `seq` is above every key, so the message is queued (not in flight).
    fn insert(&mut self, seq: u64, item: T) {
        self.bytes += item.charge();
        self.map.insert(seq, item);
    }

    fn remove(&mut self, seq: u64) -> Option<T> {
        let item = self.map.remove(&seq)?;
        let c = item.charge();
        self.bytes -= c;
        if seq < self.cursor {
            self.in_flight -= 1;
            self.in_flight_bytes -= c;
        }
        Some(item)
    }

    fn oldest_queued(&self) -> Option<u64> {
        self.map.range(self.cursor..).next().map(|(k, _)| *k)
    }

    fn window(&self, max: usize) -> impl Iterator<Item = (&u64, &T)> {
        self.map.range(self.cursor..).take(max)
    }

    /// Everything up to `seq` is now in flight.
    fn advance_through(&mut self, seq: u64) {
        for (_, item) in self.map.range(self.cursor..=seq) {
            self.in_flight += 1;
            self.in_flight_bytes += item.charge();
        }
        self.cursor = seq + 1;
    }

    fn requeue(&mut self) -> usize {
        let n = self.in_flight;
        self.cursor = 0;
        self.in_flight = 0;
        self.in_flight_bytes = 0;
        n
    }
}

struct MemMsg {
    topic: TopicName,
    payload: Bytes,
    qos: Qos,
}

impl Charged for MemMsg {
    fn charge(&self) -> u64 {
        charge(self.topic.as_str().len(), self.payload.len())
    }
}

/// Where a record is: its segment (by first seq), its offset there, its whole length.
#[derive(Debug, Clone, Copy)]
struct DiskLoc {
    seg: u64,
    offset: u64,
    len: u32,
}

impl Charged for DiskLoc {
    fn charge(&self) -> u64 {
        self.len as u64 - RECORD_FIXED as u64 + MESSAGE_OVERHEAD_BYTES
    }
}

fn qos_byte(qos: Qos) -> u8 {
    match qos {
        Qos::AtMostOnce => 0,
        Qos::AtLeastOnce => 1,
        Qos::ExactlyOnce => 2,
    }
}

fn qos_from(b: u8) -> Option<Qos> {
    match b {
        0 => Some(Qos::AtMostOnce),
        1 => Some(Qos::AtLeastOnce),
        2 => Some(Qos::ExactlyOnce),
        _ => None,
    }
}

fn encode_record(buf: &mut Vec<u8>, seq: u64, qos: Qos, topic: &[u8], payload: &[u8]) {
    let body_len = BODY_FIXED + topic.len() + payload.len();
    let start = buf.len();
    buf.reserve(RECORD_HEADER + body_len);
    buf.extend_from_slice(&(body_len as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.push(qos_byte(qos));
    buf.extend_from_slice(&(topic.len() as u16).to_le_bytes());
    buf.extend_from_slice(topic);
    buf.extend_from_slice(payload);
    let crc = crc32(&buf[start + RECORD_HEADER..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A record body whose CRC matched: `(seq, qos, topic range, payload range)` within `body`.
fn decode_body(body: &[u8]) -> Result<(u64, Qos, std::ops::Range<usize>), &'static str> {
    if body.len() < BODY_FIXED {
        return Err("record too short");
    }
    let seq = u64::from_le_bytes(body[0..8].try_into().unwrap_or_default());
    let qos = qos_from(body[8]).ok_or("bad QoS")?;
    let topic_len = u16::from_le_bytes([body[9], body[10]]) as usize;
    if BODY_FIXED + topic_len > body.len() {
        return Err("topic longer than its record");
    }
    Ok((seq, qos, BODY_FIXED..BODY_FIXED + topic_len))
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap_or_default())
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32 (IEEE 802.3, as zlib and `crc32fast`).
fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC_TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

fn ack_record(start: u64, end: u64) -> [u8; ACK_RECORD] {
    let mut r = [0u8; ACK_RECORD];
    r[0..8].copy_from_slice(&start.to_le_bytes());
    r[8..16].copy_from_slice(&end.to_le_bytes());
    let crc = crc32(&r[0..16]);
    r[16..20].copy_from_slice(&crc.to_le_bytes());
    r
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}{SEGMENT_SUFFIX}"))
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

struct Segment {
    path: PathBuf,
    file: File,
    /// Bytes in the file (the active segment's write buffer not included).
    len: u64,
    /// Messages of this segment still in the spool.
    live: usize,
    /// One past the last seq written to it.
    end_seq: u64,
    /// Written since the last fsync.
    dirty: bool,
}

/// The removal log.
struct AckLog {
    path: PathBuf,
    file: File,
    len: u64,
    pending: Vec<u8>,
    /// Written since the last fsync.
    dirty: bool,
    compact_at: u64,
    /// The least `compact_at` (the segment size).
    compact_min: u64,
    /// A write has failed and not succeeded since (to log the failure once).
    failing: bool,
}

impl AckLog {
    fn record(&mut self, seq: u64) {
        let n = self.pending.len();
        if n >= ACK_RECORD {
            let last = &self.pending[n - ACK_RECORD..];
            let (start, end) = (le_u64(&last[0..8]), le_u64(&last[8..16]));
            if end == seq {
                self.pending[n - ACK_RECORD..].copy_from_slice(&ack_record(start, seq + 1));
                return;
            }
        }
        self.pending.extend_from_slice(&ack_record(seq, seq + 1));
    }

    fn flush(&mut self) -> Result<(), SpoolError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        match self.file.write_all_at(&self.pending, self.len) {
            Ok(()) => {
                self.len += self.pending.len() as u64;
                self.pending.clear();
                self.dirty = true;
                self.failing = false;
                Ok(())
            }
            Err(e) => {
                // Keep the log free of a torn record; the pending acks are tried again later.
                let _ = self.file.set_len(self.len);
                Err(io_err(&self.path)(e))
            }
        }
    }

    /// Flush, logging a failure once; an ack that is not written only risks a resend.
    fn flush_or_warn(&mut self) {
        if let Err(error) = self.flush()
            && !std::mem::replace(&mut self.failing, true)
        {
            tracing::warn!(%error, "spool: cannot record acks; they are kept and tried again");
        }
    }
}

/// The removal log as read at open: the seq floor and the removed ranges, sorted and merged.
fn read_ack_log(path: &Path) -> Result<(u64, Vec<(u64, u64)>), SpoolError> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, Vec::new())),
        Err(e) => return Err(io_err(path)(e)),
    };
    if data.len() < 8 + ACK_RECORD
        || &data[0..8] != ACKS_MAGIC
        || crc32(&data[8..16]) != le_u32(&data[16..20])
    {
        // It is only ever replaced whole, so this is damage; the cost of ignoring it is that
        // acked messages are sent again.
        tracing::warn!(path = %path.display(), "spool: removal log unreadable; acked messages may be sent again");
        return Ok((0, Vec::new()));
    }
    let floor = le_u64(&data[8..16]);
    let mut ranges = Vec::new();
    for r in data[8 + ACK_RECORD..].chunks(ACK_RECORD) {
        if r.len() < ACK_RECORD || crc32(&r[0..16]) != le_u32(&r[16..20]) {
            break; // a torn tail
        }
        let (start, end) = (le_u64(&r[0..8]), le_u64(&r[8..16]));
        if start < end {
            ranges.push((start, end));
        }
    }
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (s, e) in ranges {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    Ok((floor, merged))
}

fn is_removed(ranges: &[(u64, u64)], seq: u64) -> bool {
    let i = ranges.partition_point(|r| r.1 <= seq);
    i < ranges.len() && ranges[i].0 <= seq
}

struct FileStore {
    dir: PathBuf,
    /// Held for the spool's life: the directory's lock.
    _lock: File,
    queue: Queue<DiskLoc>,
    segments: BTreeMap<u64, Segment>,
    /// The segment pushes go to (the last one); `None` until the first push after open.
    active: Option<u64>,
    segment_bytes: u64,
    /// Records for the active segment not yet written.
    wbuf: Vec<u8>,
    acks: AckLog,
    durability: Durability,
    unsynced: u64,
    last_sync: Instant,
    /// Segments created since the last directory fsync.
    dir_dirty: bool,
}

impl FileStore {
    /// Returns the store, the next seq and how many damaged records were discarded.
    fn open(
        dir: &Path,
        segment_bytes: u64,
        durability: Durability,
    ) -> Result<(Self, u64, u64), SpoolError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(SpoolError::Locked {
                    path: dir.to_path_buf(),
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        let _ = fs::remove_file(dir.join(ACKS_TMP));
        let acks_path = dir.join(ACKS_FILE);
        let (floor, removed) = read_ack_log(&acks_path)?;

        let mut firsts = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SEGMENT_SUFFIX)) else {
                continue;
            };
            if let Ok(first) = stem.parse::<u64>() {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();

        let mut queue = Queue::default();
        let mut segments = BTreeMap::new();
        let mut damaged = 0;
        let mut next_seq = floor.max(removed.last().map_or(0, |r| r.1));
        let mut dir_dirty = false;
        let mut scanned_last = None;
        for first in firsts {
            let path = segment_path(dir, first);
            let file = File::options()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            let file_len = file.metadata().map_err(io_err(&path))?.len();
            let mut seg = Segment {
                path,
                file,
                len: file_len,
                live: 0,
                end_seq: first,
                dirty: false,
            };
            let scan = scan_segment(&seg, first, scanned_last, |seq, loc| {
                seg_note(&mut queue, &removed, seq, loc)
            })?;
            seg.live = scan.live;
            if let Some(last) = scan.last {
                seg.end_seq = last + 1;
                next_seq = next_seq.max(last + 1);
                scanned_last = Some(last);
            }
            damaged += scan.damaged;
            if let Some((offset, reason)) = scan.cut {
                tracing::warn!(
                    path = %seg.path.display(),
                    offset,
                    discarded_bytes = file_len - offset,
                    reason,
                    "spool: damaged or torn record; the segment is cut there"
                );
                seg.file.set_len(offset).map_err(io_err(&seg.path))?;
                seg.file.sync_all().map_err(io_err(&seg.path))?;
                seg.len = offset;
            }
            if seg.live == 0 {
                drop(seg.file);
                fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
                dir_dirty = true;
            } else {
                segments.insert(first, seg);
            }
        }
        if !queue.map.is_empty() {
            tracing::info!(
                dir = %dir.display(),
                messages = queue.map.len(),
                segments = segments.len(),
                "spool: recovered"
            );
        }
        let acks_file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&acks_path)
            .map_err(io_err(&acks_path))?;
        let mut store = FileStore {
            dir: dir.to_path_buf(),
            _lock: lock,
            queue,
            segments,
            active: None,
            segment_bytes,
            wbuf: Vec::new(),
            acks: AckLog {
                path: acks_path,
                file: acks_file,
                len: 0,
                pending: Vec::new(),
                dirty: false,
                compact_at: 0,
                compact_min: segment_bytes,
                failing: false,
            },
            durability,
            unsynced: 0,
            last_sync: Instant::now(),
            dir_dirty,
        };
        store.compact(next_seq)?;
        Ok((store, next_seq, damaged))
    }

    fn append(
        &mut self,
        seq: u64,
        topic: &[u8],
        payload: &[u8],
        qos: Qos,
    ) -> Result<(), SpoolError> {
        let record_len = (RECORD_FIXED + topic.len() + payload.len()) as u64;
        let roll = match self.active.and_then(|a| self.segments.get(&a)) {
            None => true,
            Some(seg) => {
                let used = seg.len + self.wbuf.len() as u64;
                used > SEGMENT_MAGIC.len() as u64 && used + record_len > self.segment_bytes
            }
        };
        if roll {
            self.roll(seq)?;
        }
        let Some(active) = self.active else {
            unreachable!("roll sets the active segment")
        };
        let seg_len = self.segments.get(&active).map_or(0, |s| s.len);
        let offset = seg_len + self.wbuf.len() as u64;
        let before = self.wbuf.len();
        encode_record(&mut self.wbuf, seq, qos, topic, payload);
        if self.wbuf.len() > self.durability.write_buffer_bytes
            && let Err(e) = self.flush_segment()
        {
            self.wbuf.truncate(before);
            return Err(e);
        }
        if let Some(seg) = self.segments.get_mut(&active) {
            seg.live += 1;
            seg.end_seq = seq + 1;
        }
        self.queue.insert(
            seq,
            DiskLoc {
                seg: active,
                offset,
                len: record_len as u32,
            },
        );
        self.unsynced += 1;
        Ok(())
    }

    /// Close the active segment and start one whose first message is `seq`.
    fn roll(&mut self, seq: u64) -> Result<(), SpoolError> {
        if let Some(old) = self.active {
            self.flush_segment()?;
            self.active = None;
            if self.segments.get(&old).is_some_and(|s| s.live == 0) {
                self.delete_segment(old);
            }
        }
        let path = segment_path(&self.dir, seq);
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(&path))?;
        if let Err(e) = file.write_all_at(SEGMENT_MAGIC, 0) {
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(io_err(&path)(e));
        }
        self.segments.insert(
            seq,
            Segment {
                path,
                file,
                len: SEGMENT_MAGIC.len() as u64,
                live: 0,
                end_seq: seq,
                dirty: true,
            },
        );
        self.active = Some(seq);
        self.dir_dirty = true;
        Ok(())
    }

    fn flush_segment(&mut self) -> Result<(), SpoolError> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let Some(seg) = self.active.and_then(|a| self.segments.get_mut(&a)) else {
            unreachable!("buffered records belong to the active segment")
        };
        match seg.file.write_all_at(&self.wbuf, seg.len) {
            Ok(()) => {
                seg.len += self.wbuf.len() as u64;
                seg.dirty = true;
                self.wbuf.clear();
                Ok(())
            }
            Err(e) => {
                // Nothing half-written may stay: the next records would follow a torn one.
                let _ = seg.file.set_len(seg.len);
                Err(io_err(&seg.path)(e))
            }
        }
    }

    fn remove(&mut self, seq: u64) -> Option<DiskLoc> {
        let loc = self.queue.remove(seq)?;
        self.acks.record(seq);
        if let Some(seg) = self.segments.get_mut(&loc.seg) {
            seg.live -= 1;
            if seg.live == 0 && self.active != Some(loc.seg) {
                self.delete_segment(loc.seg);
            }
        }
        Some(loc)
    }

    fn delete_segment(&mut self, first: u64) {
        // The removals of its messages go first, so that the seq floor stays right.
        self.acks.flush_or_warn();
        if let Some(seg) = self.segments.remove(&first) {
            drop(seg.file);
            if let Err(error) = fs::remove_file(&seg.path) {
                tracing::warn!(path = %seg.path.display(), %error, "spool: cannot delete a drained segment");
            }
            // No directory fsync for this: a deletion undone by a power loss brings back only
            // removed messages, which the removal log covers (at worst they are sent again, as
            // after an ack lost in a crash); a compaction, which forgets their removals, fsyncs
            // the directory along with its rename.
        }
    }

    fn window(&mut self, max: usize, damaged: &mut u64) -> Result<Vec<Spooled>, SpoolError> {
        let locs: Vec<(u64, DiskLoc)> = self.queue.window(max).map(|(k, v)| (*k, *v)).collect();
        let Some(&(last, _)) = locs.last() else {
            return Ok(Vec::new());
        };
        if let Some(active) = self.active {
            let written = self.segments.get(&active).map_or(0, |s| s.len);
            if locs
                .iter()
                .any(|(_, l)| l.seg == active && l.offset + l.len as u64 > written)
            {
                self.flush_segment()?;
            }
        }
        let mut out = Vec::with_capacity(locs.len());
        let mut bad = Vec::new();
        let mut i = 0;
        while i < locs.len() {
            // One read for each run of adjacent records.
            let (seg_id, start) = (locs[i].1.seg, locs[i].1.offset);
            let mut end = start + locs[i].1.len as u64;
            let mut j = i + 1;
            while j < locs.len() && locs[j].1.seg == seg_id && locs[j].1.offset == end {
                end += locs[j].1.len as u64;
                j += 1;
            }
            let Some(seg) = self.segments.get(&seg_id) else {
                unreachable!("a live record's segment is open")
            };
            let mut buf = vec![0u8; (end - start) as usize];
            seg.file
                .read_exact_at(&mut buf, start)
                .map_err(io_err(&seg.path))?;
            let buf = Bytes::from(buf);
            for &(seq, loc) in &locs[i..j] {
                let at = (loc.offset - start) as usize;
                match parse_record(&buf, at, loc.len as usize, seq) {
                    Ok(m) => out.push(m),
                    Err(reason) => bad.push((seq, reason, seg.path.clone())),
                }
            }
            i = j;
        }
        for (seq, reason, path) in bad {
            tracing::warn!(path = %path.display(), seq, reason, "spool: damaged record discarded");
            *damaged += 1;
            self.remove(seq);
        }
        self.queue.advance_through(last);
        Ok(out)
    }

    fn after_op(&mut self, next_seq: u64) {
        if self.acks.pending.len() > self.durability.write_buffer_bytes {
            self.acks.flush_or_warn();
        }
        if self.acks.len + self.acks.pending.len() as u64 > self.acks.compact_at
            && let Err(error) = self.compact(next_seq)
        {
            tracing::warn!(%error, "spool: cannot compact the removal log");
            self.acks.compact_at = self.acks.len + self.acks.compact_min;
        }
        let d = self.durability;
        let due = (d.sync_every_messages > 0 && self.unsynced >= d.sync_every_messages)
            || d.sync_interval.is_some_and(|every| {
                (self.unsynced > 0 || self.acks.dirty || !self.acks.pending.is_empty())
                    && self.last_sync.elapsed() >= every
            });
        if due && let Err(error) = self.sync() {
            tracing::error!(%error, "spool: fsync failed");
        }
    }

    fn sync(&mut self) -> Result<(), SpoolError> {
        self.flush_segment()?;
        self.acks.flush()?;
        for seg in self.segments.values_mut().filter(|s| s.dirty) {
            seg.file.sync_data().map_err(io_err(&seg.path))?;
            seg.dirty = false;
        }
        if self.acks.dirty {
            self.acks
                .file
                .sync_data()
                .map_err(io_err(&self.acks.path))?;
            self.acks.dirty = false;
        }
        if self.dir_dirty {
            sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        self.unsynced = 0;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Rewrite the removal log to hold only the removals inside live segments, and the floor.
    fn compact(&mut self, next_seq: u64) -> Result<(), SpoolError> {
        let mut out = Vec::with_capacity(8 + ACK_RECORD);
        out.extend_from_slice(ACKS_MAGIC);
        out.extend_from_slice(&next_seq.to_le_bytes());
        out.extend_from_slice(&crc32(&next_seq.to_le_bytes()).to_le_bytes());
        out.extend_from_slice(&[0; 8]); // the header is one record long
        for (&first, seg) in &self.segments {
            let mut expect = first;
            for &seq in self.queue.map.range(first..seg.end_seq).map(|(k, _)| k) {
                if seq > expect {
                    out.extend_from_slice(&ack_record(expect, seq));
                }
                expect = seq + 1;
            }
            if seg.end_seq > expect {
                out.extend_from_slice(&ack_record(expect, seg.end_seq));
            }
        }
        let tmp = self.dir.join(ACKS_TMP);
        let written = File::create(&tmp).and_then(|f| {
            f.write_all_at(&out, 0)?;
            f.sync_data()?;
            Ok(f)
        });
        let file = match written {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(io_err(&tmp)(e));
            }
        };
        fs::rename(&tmp, &self.acks.path).map_err(io_err(&self.acks.path))?;
        // From here the new file is the log, whatever the directory fsync says.
        self.acks.file = file;
        self.acks.len = out.len() as u64;
        self.acks.pending.clear();
        self.acks.dirty = false;
        self.acks.failing = false;
        self.acks.compact_at = self.acks.compact_min.max(2 * self.acks.len);
        self.dir_dirty = true;
        sync_dir(&self.dir)?;
        self.dir_dirty = false;
        Ok(())
    }
}

impl Drop for FileStore {
    fn drop(&mut self) {
        // A clean close writes what is buffered (without waiting for the disk).
        if let Err(error) = self.flush_segment() {
            tracing::warn!(%error, "spool: buffered messages lost at close");
        }
        self.acks.flush_or_warn();
    }
}

/// Note one good record found at open; returns whether it is live.
fn seg_note(queue: &mut Queue<DiskLoc>, removed: &[(u64, u64)], seq: u64, loc: DiskLoc) -> bool {
    if is_removed(removed, seq) {
        return false;
    }
    queue.insert(seq, loc);
    true
}

/// What a segment scan found.
struct Scan {
    live: usize,
    last: Option<u64>,
    damaged: u64,
    /// Where the segment must be cut (nothing good follows), and why.
    cut: Option<(u64, &'static str)>,
}

/// Read one segment's records in order, calling `note(seq, loc)` for each good one (which says
/// if it is live). A bad record whose length is plausible is skipped if a good one follows it
/// (damage inside a record costs that record only); otherwise the segment is cut at it (a torn
/// tail). `after` is the last seq of the segments before.
fn scan_segment(
    seg: &Segment,
    first: u64,
    after: Option<u64>,
    mut note: impl FnMut(u64, DiskLoc) -> bool,
) -> Result<Scan, SpoolError> {
    let path = &seg.path;
    let file_len = seg.len;
    let magic_len = SEGMENT_MAGIC.len() as u64;
    let mut scan = Scan {
        live: 0,
        last: None,
        damaged: 0,
        cut: None,
    };
    if file_len < magic_len {
        let mut head = Vec::new();
        (&seg.file).read_to_end(&mut head).map_err(io_err(path))?;
        if SEGMENT_MAGIC.starts_with(&head) {
            // Created, then the process died before its header was written: no records.
            scan.cut = Some((0, "segment header torn"));
            return Ok(scan);
        }
        return Err(SpoolError::Corrupt {
            path: path.clone(),
            reason: "no segment header",
        });
    }
    let mut r = BufReader::with_capacity(256 << 10, &seg.file);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(io_err(path))?;
    if &magic != SEGMENT_MAGIC {
        return Err(SpoolError::Corrupt {
            path: path.clone(),
            reason: "no segment header",
        });
    }
    let mut offset = magic_len;
    let mut body = Vec::new();
    let mut prev = after;
    // A bad record skipped, until a good one confirms the skip.
    let mut skipped: Option<(u64, &'static str)> = None;
    let cut = |scan: &mut Scan, offset: u64, reason, skipped: Option<(u64, &'static str)>| {
        if skipped.is_none() {
            scan.damaged += 1;
        }
        scan.cut = Some(skipped.unwrap_or((offset, reason)));
    };
    while offset < file_len {
        if file_len - offset < RECORD_FIXED as u64 {
            cut(&mut scan, offset, "short record", skipped);
            return Ok(scan);
        }
        let mut header = [0u8; RECORD_HEADER];
        r.read_exact(&mut header).map_err(io_err(path))?;
        let len = le_u32(&header[0..4]) as u64;
        if len < BODY_FIXED as u64 {
            cut(&mut scan, offset, "bad record length", skipped);
            return Ok(scan);
        }
        if len > file_len - offset - RECORD_HEADER as u64 {
            cut(&mut scan, offset, "short record", skipped);
            return Ok(scan);
        }
        body.resize(len as usize, 0);
        r.read_exact(&mut body).map_err(io_err(path))?;
        let verdict = if crc32(&body) != le_u32(&header[4..8]) {
            Err("CRC mismatch")
        } else {
            decode_body(&body).and_then(|(seq, _, _)| {
                if prev.is_some_and(|p| seq <= p) || seq < first {
                    Err("sequence out of order")
                } else {
                    Ok(seq)
                }
            })
        };
        match verdict {
            Ok(seq) => {
                let loc = DiskLoc {
                    seg: first,
                    offset,
                    len: (RECORD_HEADER as u64 + len) as u32,
                };
                if note(seq, loc) {
                    scan.live += 1;
                }
                prev = Some(seq);
                scan.last = Some(seq);
                if let Some((at, reason)) = skipped.take() {
                    tracing::warn!(path = %path.display(), offset = at, reason, "spool: damaged record skipped");
                }
            }
            Err(reason) => {
                if skipped.is_some() {
                    // Two bad in a row: the lengths cannot be trusted any more.
                    cut(&mut scan, offset, reason, skipped);
                    return Ok(scan);
                }
                skipped = Some((offset, reason));
                scan.damaged += 1;
            }
        }
        offset += RECORD_HEADER as u64 + len;
    }
    if skipped.is_some() {
        cut(&mut scan, offset, "", skipped);
    }
    Ok(scan)
}

/// Decode the record at `at` in `buf` and check it is `seq`'s.
fn parse_record(buf: &Bytes, at: usize, len: usize, seq: u64) -> Result<Spooled, &'static str> {
    let rec = buf.get(at..at + len).ok_or("short read")?;
    if len < RECORD_FIXED || le_u32(&rec[0..4]) as usize != len - RECORD_HEADER {
        return Err("bad record length");
    }
    let body = &rec[RECORD_HEADER..];
    if crc32(body) != le_u32(&rec[4..8]) {
        return Err("CRC mismatch");
    }
    let (found, qos, topic) = decode_body(body)?;
    if found != seq {
        return Err("record of another message");
    }
    let topic = TopicName::from_bytes(&body[topic.clone()]).map_err(|_| "invalid topic")?;
    let payload_at = at + RECORD_HEADER + BODY_FIXED + topic.as_str().len();
    Ok(Spooled {
        seq: Seq(seq),
        topic,
        payload: buf.slice(payload_at..at + len),
        qos,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::process::{Command, Stdio};

    use super::*;

    const MIN: u64 = MIN_MAX_SIZE_BYTES;

    fn t(s: &str) -> TopicName {
        TopicName::parse(s).unwrap()
    }

    fn push(spool: &Spool, topic: &str, payload: &[u8]) -> Pushed {
        spool.push(&t(topic), payload, Qos::AtLeastOnce).unwrap()
    }

    fn seqs(batch: &[Spooled]) -> Vec<u64> {
        batch.iter().map(|m| m.seq.0).collect()
    }

    fn fs_config(dir: &Path, max: u64) -> SpoolConfig {
        SpoolConfig::file_system(dir, max)
    }

    /// Run `f` on a Memory spool and on a FileSystem spool.
    fn both(max: u64, f: impl Fn(&Spool, &str)) {
        f(&Spool::open(SpoolConfig::memory(max)).unwrap(), "memory");
        let dir = tempfile::tempdir().unwrap();
        f(&Spool::open(fs_config(dir.path(), max)).unwrap(), "fs");
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(SEGMENT_SUFFIX))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn messages_come_out_in_order_with_their_content() {
        both(MIN, |spool, kind| {
            for i in 0..10u8 {
                let p = push(spool, &format!("site/{}", i % 3), &[i; 5]);
                assert_eq!(p.seq, Seq(i as u64), "{kind}");
                assert!(p.dropped.is_empty());
            }
            spool.push(&t("site/q0"), b"zero", Qos::AtMostOnce).unwrap();
            let batch = spool.next_batch(100).unwrap();
            assert_eq!(seqs(&batch), (0..11).collect::<Vec<_>>(), "{kind}");
            for m in &batch[..10] {
                let i = m.seq.0 as u8;
                assert_eq!(m.topic.as_str(), format!("site/{}", i % 3));
                assert_eq!(&m.payload[..], &[i; 5]);
                assert_eq!(m.qos, Qos::AtLeastOnce);
            }
            assert_eq!(batch[10].qos, Qos::AtMostOnce);
            assert_eq!(&batch[10].payload[..], b"zero");
            assert!(spool.next_batch(100).unwrap().is_empty(), "{kind}");
        });
    }

    #[test]
    fn window_with_acks_out_of_order() {
        both(MIN, |spool, kind| {
            for i in 0..10u8 {
                push(spool, "a/b", &[i]);
            }
            assert_eq!(seqs(&spool.next_batch(4).unwrap()), [0, 1, 2, 3], "{kind}");
            assert_eq!(spool.stats().in_flight, 4);
            assert!(spool.ack(Seq(2)));
            assert!(spool.ack(Seq(0)));
            assert!(spool.ack(Seq(3)));
            assert!(!spool.ack(Seq(3)), "a second PUBACK changes nothing");
            assert!(!spool.ack(Seq(99)));
            assert_eq!(spool.stats().in_flight, 1);
            assert_eq!(seqs(&spool.next_batch(3).unwrap()), [4, 5, 6]);
            assert!(spool.ack(Seq(5)));
            assert!(spool.ack(Seq(1)));
            let s = spool.stats();
            assert_eq!((s.messages, s.in_flight), (5, 2), "{kind}");
            assert_eq!(seqs(&spool.next_batch(10).unwrap()), [7, 8, 9]);
        });
    }

    #[test]
    fn requeue_puts_in_flight_messages_back_in_order() {
        both(MIN, |spool, kind| {
            for i in 0..6u8 {
                push(spool, if i % 2 == 0 { "t/a" } else { "t/b" }, &[i]);
            }
            assert_eq!(seqs(&spool.next_batch(4).unwrap()), [0, 1, 2, 3]);
            assert!(spool.ack(Seq(1)));
            assert_eq!(spool.requeue_in_flight(), 3, "{kind}");
            assert_eq!(spool.stats().in_flight, 0);
            push(spool, "t/a", &[6]);
            let again = spool.next_batch(10).unwrap();
            assert_eq!(seqs(&again), [0, 2, 3, 4, 5, 6], "{kind}");
            let a: Vec<u8> = again
                .iter()
                .filter(|m| m.topic.as_str() == "t/a")
                .map(|m| m.payload[0])
                .collect();
            assert_eq!(a, [0, 2, 4, 6]);
        });
    }

    #[test]
    fn drop_oldest_at_the_bound_keeps_in_flight_and_counts() {
        both(MIN, |spool, kind| {
            let payload = vec![7u8; 1000];
            let each = charge("x/y".len(), 1000);
            let fits = (MIN / each) as usize;
            for i in 0..fits {
                assert!(
                    push(spool, "x/y", &payload).dropped.is_empty(),
                    "{kind} {i}"
                );
            }
            // The first two are in flight: they must survive.
            assert_eq!(seqs(&spool.next_batch(2).unwrap()), [0, 1]);
            let p = push(spool, "x/y", &payload);
            assert_eq!(p.dropped, [Seq(2)], "{kind}");
            let p = push(spool, "x/y", &vec![1u8; 2500]);
            assert_eq!(p.dropped, [Seq(3), Seq(4)], "{kind}");
            let s = spool.stats();
            assert_eq!(s.dropped, 3);
            assert!(s.bytes <= MIN, "{kind}: {} > {MIN}", s.bytes);
            assert_eq!(s.in_flight, 2);
            spool.requeue_in_flight();
            let all = spool.next_batch(usize::MAX).unwrap();
            assert_eq!(&seqs(&all)[..3], [0, 1, 5]);
            assert_eq!(all.len(), s.messages);
        });
    }

    #[test]
    fn a_message_larger_than_the_bound_is_refused() {
        both(MIN, |spool, kind| {
            push(spool, "a", b"keep");
            let err = spool
                .push(&t("a"), &vec![0u8; MIN as usize], Qos::AtLeastOnce)
                .unwrap_err();
            assert!(matches!(err, SpoolError::TooLarge { .. }), "{kind}: {err}");
            let just = (MIN - charge(1, 0)) as usize;
            let err = spool
                .next_batch(1)
                .map(|_| ())
                .and_then(|()| spool.push(&t("a"), &vec![0u8; just], Qos::AtLeastOnce));
            // The one message in flight stands in the way of a message as big as the bound.
            assert!(
                matches!(err, Err(SpoolError::Full { .. })),
                "{kind}: {err:?}"
            );
            let s = spool.stats();
            assert_eq!((s.messages, s.refused, s.dropped), (1, 2, 0), "{kind}");
            assert!(spool.ack(Seq(0)));
            let p = spool
                .push(&t("a"), &vec![0u8; just], Qos::AtLeastOnce)
                .unwrap();
            assert_eq!(spool.stats().bytes, MIN, "{kind}: {p:?}");
        });
    }

    #[test]
    fn the_bound_is_enforced_in_charged_bytes() {
        both(MIN, |spool, kind| {
            let mut rng = 0x2545_f491_4f6c_dd1du64;
            for i in 0..3000 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let len = (rng % 4000) as usize;
                let topic = format!("bound/{}", rng % 7);
                push(spool, &topic, &vec![i as u8; len]);
                if i % 50 == 0 {
                    // Keep a few in flight and ack some.
                    spool.requeue_in_flight();
                    let b = spool.next_batch(3).unwrap();
                    if let Some(m) = b.first() {
                        spool.ack(m.seq);
                    }
                }
                let s = spool.stats();
                assert!(s.bytes <= MIN, "{kind}: {} > {MIN}", s.bytes);
            }
            spool.requeue_in_flight();
            let all = spool.next_batch(usize::MAX).unwrap();
            let sum: u64 = all
                .iter()
                .map(|m| charge(m.topic.as_str().len(), m.payload.len()))
                .sum();
            let s = spool.stats();
            assert_eq!(sum, s.bytes, "{kind}");
            assert!(s.dropped > 2000, "{kind}: {s:?}");
            assert!(
                MIN - s.bytes < 4100,
                "{kind}: a full spool stays nearly full"
            );
        });
    }

    #[test]
    fn memory_storage_is_lost_on_restart() {
        let spool = Spool::open(SpoolConfig::memory(MIN)).unwrap();
        push(&spool, "m", b"1");
        assert_eq!(spool.len(), 1);
        assert_eq!(spool.stats().disk_bytes, 0);
        drop(spool);
        let spool = Spool::open(SpoolConfig::memory(MIN)).unwrap();
        assert!(spool.is_empty());
        assert_eq!(spool.stats().next_seq, 0);
    }

    #[test]
    fn config_from_greengrass_env() {
        let dir = Path::new("/var/spool");
        let vars = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let c = SpoolConfig::from_greengrass_env(&vars(&[]), dir).unwrap();
        assert_eq!(c.storage, Storage::Memory);
        assert_eq!(c.max_size_bytes, 2_621_440);
        let c = SpoolConfig::from_greengrass_env(
            &vars(&[
                ("GG_CONFIG_STORAGE_TYPE", "FileSystem"),
                ("GG_CONFIG_MAX_SIZE_BYTES", "262144"),
            ]),
            dir,
        )
        .unwrap();
        assert_eq!(
            c.storage,
            Storage::FileSystem {
                dir: dir.to_path_buf()
            }
        );
        assert_eq!(c.max_size_bytes, 262_144);
        let err =
            SpoolConfig::from_greengrass_env(&vars(&[("GG_CONFIG_STORAGE_TYPE", "Disk")]), dir)
                .unwrap_err();
        assert!(err.to_string().contains("GG_CONFIG_STORAGE_TYPE"), "{err}");
        let small =
            SpoolConfig::from_greengrass_env(&vars(&[("GG_CONFIG_MAX_SIZE_BYTES", "1000")]), dir)
                .unwrap();
        let err = Spool::open(small).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Spool size should be at least 262144 bytes (got 1000)"
        );
    }

    #[test]
    fn pushed_but_unacked_messages_survive_reopen_and_acked_do_not() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(fs_config(dir.path(), MIN)).unwrap();
            for i in 0..100u8 {
                push(&spool, &format!("p/{}", i % 3), &[i; 20]);
            }
            assert_eq!(spool.next_batch(10).unwrap().len(), 10);
            for s in [0, 1, 2, 3, 4, 5, 50, 51] {
                assert!(spool.ack(Seq(s)));
            }
            // Dropped without sync: what was written survives a process exit.
        }
        let spool = Spool::open(fs_config(dir.path(), MIN)).unwrap();
        assert_eq!(spool.len(), 92);
        let all = spool.next_batch(usize::MAX).unwrap();
        let expect: Vec<u64> = (6..100).filter(|s| *s != 50 && *s != 51).collect();
        assert_eq!(
            seqs(&all),
            expect,
            "in flight before the restart, queued first"
        );
        for m in &all {
            let i = m.seq.0 as u8;
            assert_eq!(m.topic.as_str(), format!("p/{}", i % 3));
            assert_eq!(&m.payload[..], &[i; 20]);
        }
        assert_eq!(push(&spool, "p/0", b"new").seq, Seq(100));
        assert_eq!(spool.stats().damaged, 0);
    }

    #[test]
    fn drops_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let kept = {
            let spool = Spool::open(fs_config(dir.path(), MIN)).unwrap();
            for _ in 0..600 {
                push(&spool, "d", &[1u8; 1000]);
            }
            assert!(spool.stats().dropped > 300);
            spool.sync().unwrap();
            seqs(&spool.next_batch(usize::MAX).unwrap())
        };
        let spool = Spool::open(fs_config(dir.path(), MIN)).unwrap();
        assert_eq!(seqs(&spool.next_batch(usize::MAX).unwrap()), kept);
        assert_eq!(spool.stats().dropped, 0, "counted since open");
    }

    #[test]
    fn a_torn_tail_record_is_cut_at_recovery() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(fs_config(dir.path(), MIN)).unwrap();
            for i in 0..20u8 {
                push(&spool, "torn", &[i; 50]);
            }
        }
        let segs = segment_files(dir.path());
        let last = segs.last().unwrap();
        let len = fs::metadata(last).unwrap().len();
        // The last record is 19 + 4 + 50 bytes long: cut it in its middle.
        File::options()
            .write(true)
            .open(last)
            .unwrap()
            .set_len(len - 30)
            .unwrap();
        {
            let spool = Spool::open(fs_config(dir.path(), MIN)).unwrap();
            assert_eq!(spool.stats().damaged, 1);
            let all = spool.next_batch(usize::MAX).unwrap();
            assert_eq!(seqs(&all), (0..19).collect::<Vec<_>>());
            assert_eq!(&all[18].payload[..], &[18u8; 50]);
            spool.requeue_in_flight();
            assert_eq!(push(&spool, "torn", b"after").seq, Seq(19));
        }
        let spool = Spool::open(fs_config(dir.path(), MIN)).unwrap();
        assert_eq!(spool.stats().damaged, 0);
        let all = spool.next_batch(usize::MAX).unwrap();
        assert_eq!(seqs(&all), (0..20).collect::<Vec<_>>());
        assert_eq!(&all[19].payload[..], b"after");
    }

    #[test]
    fn a_damaged_record_is_skipped_at_recovery_and_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let record = (RECORD_FIXED + 3 + 10) as u64;
        let flip = |seg: &Path, at: u64| {
            let f = File::options().read(true).write(true).open(seg).unwrap();
            let mut b = [0u8];
            f.read_exact_at(&mut b, at).unwrap();
            f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
        };
        {
            let spool = Spool::open(fs_config(dir.path(), MIN)).unwrap();
            for i in 0..10u8 {
                push(&spool, "d/x", &[i; 10]);
            }
            // Damage the payload of message 3 under the running spool.
            let seg = &segment_files(dir.path())[0];
            flip(seg, 8 + 3 * record + record - 2);
            let batch = spool.next_batch(usize::MAX).unwrap();
            assert_eq!(seqs(&batch), [0, 1, 2, 4, 5, 6, 7, 8, 9]);
            assert_eq!(spool.stats().damaged, 1);
            assert_eq!(spool.len(), 9);
            // Now damage message 6, in flight.
            flip(seg, 8 + 6 * record + record - 2);
        }
        let spool = Spool::open(fs_config(dir.path(), MIN)).unwrap();
        // Both damaged records are skipped (3 was removed already); the rest survives.
        assert_eq!(spool.stats().damaged, 2);
        assert_eq!(
            seqs(&spool.next_batch(usize::MAX).unwrap()),
            [0, 1, 2, 4, 5, 7, 8, 9]
        );
    }

    #[test]
    fn segments_are_deleted_once_fully_acked() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = fs_config(dir.path(), MIN);
        config.segment_bytes = Some(MIN_SEGMENT_BYTES);
        let spool = Spool::open(config.clone()).unwrap();
        for i in 0..200u8 {
            push(&spool, "seg", &[i; 100]);
        }
        let many = segment_files(dir.path()).len();
        assert!(many >= 6, "{many} segments");
        assert_eq!(spool.stats().segments, many);
        let batch = spool.next_batch(usize::MAX).unwrap();
        // Acking the first half, out of order, deletes the segments holding only those.
        for m in batch[..100].iter().rev() {
            assert!(spool.ack(m.seq));
        }
        let half = segment_files(dir.path()).len();
        assert!(half < many && half > 1, "{half} of {many}");
        for m in &batch[100..] {
            assert!(spool.ack(m.seq));
        }
        assert_eq!(segment_files(dir.path()).len(), 1, "only the active one");
        assert_eq!(spool.stats().segments, 1);
        drop(spool);
        let spool = Spool::open(config).unwrap();
        assert!(spool.is_empty());
        assert!(segment_files(dir.path()).is_empty());
        assert_eq!(push(&spool, "seg", b"x").seq, Seq(200));
    }

    #[test]
    fn the_removal_log_is_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = fs_config(dir.path(), 64 << 20);
        config.segment_bytes = Some(64 << 10);
        config.durability.sync_every_messages = 0;
        let spool = Spool::open(config.clone()).unwrap();
        let n = 70_000u64;
        for i in 0..n {
            push(&spool, "c", &i.to_le_bytes());
            // Acks one at a time (not coalesced), all but every 1000th.
            if i >= 10 && (i - 10) % 1000 != 0 {
                assert!(spool.ack(Seq(i - 10)));
            }
        }
        let acks = fs::metadata(dir.path().join(ACKS_FILE)).unwrap().len();
        // 70 000 acks took 1.4 MB before compaction.
        assert!(acks <= 2 * (64 << 10) + 20, "{acks} bytes");
        let live = seqs(&spool.next_batch(usize::MAX).unwrap());
        drop(spool);
        let spool = Spool::open(config).unwrap();
        assert_eq!(seqs(&spool.next_batch(usize::MAX).unwrap()), live);
        assert_eq!(live.len(), 70 + 10);
        let acks = fs::metadata(dir.path().join(ACKS_FILE)).unwrap().len();
        // A range per gap between live messages, split at segment boundaries (about 30).
        assert!(acks <= 28 + 120 * 20, "compacted at open: {acks} bytes");
    }

    #[test]
    fn buffered_writes_are_readable_and_written_at_close() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = fs_config(dir.path(), MIN);
        config.durability = Durability {
            write_buffer_bytes: 64 << 10,
            sync_every_messages: 0,
            sync_interval: None,
        };
        {
            let spool = Spool::open(config.clone()).unwrap();
            for i in 0..50u8 {
                push(&spool, "buf", &[i; 30]);
            }
            assert_eq!(spool.stats().unsynced, 50);
            // Only the segment header is in the file yet.
            let seg = &segment_files(dir.path())[0];
            assert_eq!(fs::metadata(seg).unwrap().len(), 8);
            assert_eq!(spool.next_batch(5).unwrap()[4].payload[..], [4u8; 30]);
            assert!(spool.ack(Seq(1)));
            for i in 50..60u8 {
                push(&spool, "buf", &[i; 30]);
            }
        }
        let spool = Spool::open(config).unwrap();
        assert_eq!(spool.len(), 59);
    }

    #[test]
    fn syncs_by_count_and_on_demand() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = fs_config(dir.path(), MIN);
        config.durability = Durability {
            write_buffer_bytes: 0,
            sync_every_messages: 10,
            sync_interval: None,
        };
        let spool = Spool::open(config).unwrap();
        for _ in 0..9 {
            push(&spool, "s", b"x");
        }
        assert_eq!(spool.stats().unsynced, 9);
        push(&spool, "s", b"x");
        assert_eq!(spool.stats().unsynced, 0);
        push(&spool, "s", b"x");
        spool.sync().unwrap();
        assert_eq!(spool.stats().unsynced, 0);
    }

    #[test]
    fn a_directory_is_opened_by_one_spool_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(fs_config(dir.path(), MIN)).unwrap();
        let err = Spool::open(fs_config(dir.path(), MIN)).unwrap_err();
        assert!(matches!(err, SpoolError::Locked { .. }), "{err}");
        drop(spool);
        Spool::open(fs_config(dir.path(), MIN)).unwrap();
    }

    #[test]
    fn a_smaller_bound_at_reopen_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(fs_config(dir.path(), 4 * MIN)).unwrap();
            for _ in 0..800 {
                push(&spool, "b", &[0u8; 1000]);
            }
        }
        let spool = Spool::open(fs_config(dir.path(), MIN)).unwrap();
        let s = spool.stats();
        assert!(s.bytes <= MIN);
        assert_eq!(s.dropped, 800 - s.messages as u64);
        assert_eq!(spool.next_batch(1).unwrap()[0].seq.0, s.dropped);
    }

    const CRASH_DIR_ENV: &str = "COUPLER_SPOOL_CRASH_DIR";
    const CRASH_MODE_ENV: &str = "COUPLER_SPOOL_CRASH_MODE";

    fn crash_config(dir: &Path, buffered: bool) -> SpoolConfig {
        let mut c = fs_config(dir, 256 << 20);
        c.segment_bytes = Some(64 << 10);
        if buffered {
            c.durability = Durability {
                write_buffer_bytes: 64 << 10,
                sync_every_messages: 0,
                sync_interval: None,
            };
        }
        c
    }

    fn crash_message(i: u64) -> (String, Vec<u8>) {
        let payload = format!("{i:020}").repeat(5).into_bytes();
        (format!("crash/t{}", i % 3), payload)
    }

    /// The child of `kill_9_keeps_every_synced_message`: pushes until it is killed, acks every
    /// message 1000 behind except every 4th, and syncs every 500, appending the last seq synced
    /// to `progress`.
    #[test]
    fn crash_child() {
        let Ok(dir) = std::env::var(CRASH_DIR_ENV) else {
            return;
        };
        let dir = PathBuf::from(dir);
        let buffered = std::env::var(CRASH_MODE_ENV).is_ok_and(|m| m == "buffered");
        let spool = Spool::open(crash_config(&dir.join("spool"), buffered)).unwrap();
        let mut progress = File::options()
            .create(true)
            .append(true)
            .open(dir.join("progress"))
            .unwrap();
        // Killed long before this; the bound only keeps an orphan from running forever.
        let started = Instant::now();
        for i in 0u64.. {
            if started.elapsed() > Duration::from_secs(120) {
                break;
            }
            let (topic, payload) = crash_message(i);
            let p = spool.push(&t(&topic), &payload, Qos::AtLeastOnce).unwrap();
            assert_eq!(p.seq, Seq(i));
            if i >= 1000 && (i - 1000) % 4 != 0 {
                assert!(spool.ack(Seq(i - 1000)));
            }
            if i % 500 == 499 {
                spool.sync().unwrap();
                progress.write_all(format!("{i}\n").as_bytes()).unwrap();
            }
        }
    }

    /// Kills the child however the test ends.
    struct Killed(std::process::Child);

    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn kill_9_run(buffered: bool) {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "spool::tests::crash_child", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(CRASH_DIR_ENV, dir.path())
            .env(
                CRASH_MODE_ENV,
                if buffered { "buffered" } else { "through" },
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut child = Killed(child);
        let progress = dir.path().join("progress");
        let started = Instant::now();
        loop {
            let lines = fs::read_to_string(&progress).map_or(0, |s| s.lines().count());
            if lines >= 30 {
                break;
            }
            if let Some(status) = child.0.try_wait().unwrap() {
                panic!("the child exited: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "child too slow"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(23));
        child.0.kill().unwrap(); // SIGKILL
        let status = child.0.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "killed, not exited"
        );
        let text = fs::read_to_string(&progress).unwrap();
        let complete = &text[..text.rfind('\n').unwrap()];
        let synced: u64 = complete.lines().last().unwrap().parse().unwrap();

        let spool = Spool::open(crash_config(&dir.path().join("spool"), buffered)).unwrap();
        let all = spool.next_batch(usize::MAX).unwrap();
        let mut prev = None;
        for m in &all {
            assert!(prev < Some(m.seq.0), "in order");
            prev = Some(m.seq.0);
            let (topic, payload) = crash_message(m.seq.0);
            assert_eq!(m.topic.as_str(), topic);
            assert_eq!(&m.payload[..], &payload[..], "seq {}", m.seq);
        }
        // Through the last sync: every 4th message, and those the acks had not reached yet
        // (acks written after the sync may have removed some of the latter).
        let got: Vec<u64> = seqs(&all).into_iter().filter(|s| *s <= synced).collect();
        let must: Vec<u64> = (0..=synced)
            .filter(|s| s % 4 == 0 || *s > synced - 1000)
            .collect();
        let old: Vec<u64> = got
            .iter()
            .copied()
            .filter(|s| *s <= synced - 1000)
            .collect();
        let must_old: Vec<u64> = must
            .iter()
            .copied()
            .filter(|s| *s <= synced - 1000)
            .collect();
        assert_eq!(old, must_old, "synced through {synced}");
        let recent: Vec<u64> = (synced - 999..=synced).filter(|s| s % 4 == 0).collect();
        for s in recent {
            assert!(
                got.binary_search(&s).is_ok(),
                "{s} lost (synced through {synced})"
            );
        }
        assert!(got.len() <= must.len());
        let s = spool.stats();
        assert!(s.damaged <= 1, "{s:?}");
        // Writes continue after recovery.
        let last = prev.unwrap();
        spool.requeue_in_flight();
        assert!(push(&spool, "crash/t0", b"again").seq.0 > last);
        drop(spool);
        let spool = Spool::open(crash_config(&dir.path().join("spool"), buffered)).unwrap();
        assert_eq!(spool.len(), all.len() + 1);
    }

    #[test]
    fn kill_9_keeps_every_synced_message() {
        kill_9_run(false);
    }

    #[test]
    fn kill_9_keeps_every_synced_message_with_buffered_writes() {
        kill_9_run(true);
    }
}
