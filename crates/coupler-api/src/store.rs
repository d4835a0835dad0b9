//! The control plane's storage: a small document store behind a trait.
//!
//! Records are JSON documents in named collections (`definitions/cores`,
//! `versions/cores/<id>`, `groups`, …), listed in insertion order. A write is a batch of
//! operations applied atomically, so "create a version and move the LatestVersion pointer"
//! never half happens. The embedded implementation is one SQLite file in WAL mode; a
//! PostgreSQL implementation for fleets can implement the same four methods.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An `Insert` found the key already present: records are never overwritten by inserts.
    #[error("{collection}/{key} already exists")]
    Exists { collection: String, key: String },
    #[error("storage: {0}")]
    Backend(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Backend(e.to_string())
    }
}

/// One change in a batch.
#[derive(Debug, Clone)]
pub enum Op {
    /// Add a record; fails the whole batch if the key exists.
    Insert {
        collection: String,
        key: String,
        value: Vec<u8>,
    },
    /// Add or replace a record (a replaced record keeps its place in the listing order).
    Put {
        collection: String,
        key: String,
        value: Vec<u8>,
    },
    Delete {
        collection: String,
        key: String,
    },
    /// Remove every record of a collection.
    DeleteCollection {
        collection: String,
    },
}

/// A listed record: its position (used as the page token), key and value.
#[derive(Debug, Clone)]
pub struct Item {
    pub seq: i64,
    pub key: String,
    pub value: Vec<u8>,
}

pub trait Store: Send + Sync + 'static {
    fn get(&self, collection: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Records after position `after` (exclusive), in insertion order, at most `limit`.
    fn list(
        &self,
        collection: &str,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError>;
    /// Apply every operation, or none.
    fn write(&self, ops: &[Op]) -> Result<(), StoreError>;
}

/// The embedded store: one SQLite file, one connection.
///
/// The connection holds the file's lock for as long as the store is open (exclusive locking
/// mode): no second process can open the same data dir and corrupt it, and no statement pays
/// for taking and releasing file locks. Every query is a few microseconds, so one connection
/// behind a mutex keeps up with the API.
///
/// Checkpoints (copying the write-ahead log into the database file, with its fsyncs) run on
/// a thread of their own once writes have been quiet for a second (`QUIET`), not inside a
/// request: the request that crossed SQLite's threshold used to pay for the whole checkpoint,
/// and so did every request queued behind it. Under a stream of writes that never goes quiet,
/// SQLite's own checkpoint still runs inline when the log reaches 64 MiB (`WAL_PAGES_MAX`).
#[derive(Debug)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// Absent for a store in memory.
    checkpoints: Option<Checkpoints>,
}

/// What a write tells the checkpoint thread.
#[derive(Debug)]
struct Checkpoints {
    /// Wakes the thread at the first write after a checkpoint; dropping it ends the thread.
    wake: SyncSender<()>,
    activity: Arc<Activity>,
}

#[derive(Debug, Default)]
struct Activity {
    /// Commits so far: the thread sees whether they went on during a quiet period.
    commits: AtomicU64,
    /// Set by the first commit after a checkpoint, so that only that one wakes the thread.
    pending: AtomicBool,
}

/// How long writes must pause before the log is checkpointed. This is also how soon after a
/// burst of writes its commits are on disk for certain: with `synchronous=NORMAL`, the log is
/// synced at checkpoints (before, only every 1000 pages, however long that took).
const QUIET: Duration = Duration::from_millis(1000);

/// The log's size (in 4 KiB pages, 64 MiB) at which a commit checkpoints inline, with two
/// fsyncs, and every request behind it waits. Measured with 16 KiB records: at 16 MiB, a
/// 35 ms stall every 420 commits; at 64 MiB, 100-120 ms every 1 700, and the stream as a whole
/// 25 % faster (a page rewritten many times is copied once per checkpoint). Bursts of up to
/// 64 MiB never stall; the price is the log's disk space while one lasts.
const WAL_PAGES_MAX: u32 = 16_384;

/// How much of the log's file is kept, in bytes, once a checkpoint has emptied it. Writing
/// over a kept file costs about a quarter less than growing a new one (no block allocation),
/// so bursts up to this size get that; the price is the disk it keeps.
const WAL_KEPT_BYTES: i64 = 16 << 20;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS docs (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    collection TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      BLOB NOT NULL,
    UNIQUE (collection, key)
);
CREATE INDEX IF NOT EXISTS docs_by_collection ON docs (collection, seq);
";

impl SqliteStore {
    /// Open (or create) the store file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        // WAL lets readers proceed during a write; NORMAL syncs at checkpoints, which in WAL
        // mode still never corrupts the database on power loss (only the last commits can be
        // lost), and keeps a write to one fsync-free append.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_PAGES_MAX)?;
        conn.pragma_update(None, "journal_size_limit", WAL_KEPT_BYTES)?;
        conn.execute_batch(SCHEMA)?;
        let conn = Arc::new(Mutex::new(conn));
        let (wake, woken) = std::sync::mpsc::sync_channel(1);
        let activity = Arc::new(Activity::default());
        let (weak, seen) = (Arc::downgrade(&conn), activity.clone());
        std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || checkpoint_when_quiet(&weak, &woken, &seen))
            .map_err(|e| StoreError::Backend(format!("starting the checkpoint thread: {e}")))?;
        Ok(Self {
            conn,
            checkpoints: Some(Checkpoints { wake, activity }),
        })
    }

    /// A store that lives in memory only, for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            checkpoints: None,
        })
    }
}

/// The checkpoint thread: after each burst of writes, once they pause for [`QUIET`], move
/// the log into the database and start it over (its file cut to [`WAL_KEPT_BYTES`]). It ends
/// with the store.
fn checkpoint_when_quiet(conn: &Weak<Mutex<Connection>>, woken: &Receiver<()>, seen: &Activity) {
    while woken.recv().is_ok() {
        let mut commits = seen.commits.load(Ordering::Acquire);
        loop {
            std::thread::sleep(QUIET);
            let now = seen.commits.load(Ordering::Acquire);
            if now == commits {
                break;
            }
            commits = now;
        }
        // Cleared before the checkpoint: a commit from here on wakes the thread again.
        seen.pending.store(false, Ordering::Release);
        let Some(conn) = conn.upgrade() else { return };
        let done = conn
            .lock()
            .query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()));
        if let Err(e) = done {
            // The log keeps the commits; the next quiet spell or SQLite's inline checkpoint
            // tries again.
            tracing::warn!(error = %e, "store checkpoint failed");
        }
    }
}

impl Store for SqliteStore {
    fn get(&self, collection: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt =
            conn.prepare_cached("SELECT value FROM docs WHERE collection = ?1 AND key = ?2")?;
        Ok(stmt
            .query_row(params![collection, key], |row| row.get(0))
            .optional()?)
    }

    fn list(
        &self,
        collection: &str,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, key, value FROM docs WHERE collection = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![
                collection,
                after.unwrap_or(0),
                limit.min(i64::MAX as usize) as i64
            ],
            |row| {
                Ok(Item {
                    seq: row.get(0)?,
                    key: row.get(1)?,
                    value: row.get(2)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn write(&self, ops: &[Op]) -> Result<(), StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        for op in ops {
            match op {
                Op::Insert {
                    collection,
                    key,
                    value,
                } => {
                    let n = tx
                        .prepare_cached(
                            "INSERT INTO docs (collection, key, value) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                        )?
                        .execute(params![collection, key, value])?;
                    if n == 0 {
                        return Err(StoreError::Exists {
                            collection: collection.clone(),
                            key: key.clone(),
                        });
                    }
                }
                Op::Put {
                    collection,
                    key,
                    value,
                } => {
                    tx.prepare_cached(
                        "INSERT INTO docs (collection, key, value) VALUES (?1, ?2, ?3)
                         ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value",
                    )?
                    .execute(params![collection, key, value])?;
                }
                Op::Delete { collection, key } => {
                    tx.prepare_cached("DELETE FROM docs WHERE collection = ?1 AND key = ?2")?
                        .execute(params![collection, key])?;
                }
                Op::DeleteCollection { collection } => {
                    tx.prepare_cached("DELETE FROM docs WHERE collection = ?1")?
                        .execute(params![collection])?;
                }
            }
        }
        tx.commit()?;
        drop(conn);
        if let Some(c) = &self.checkpoints {
            c.activity.commits.fetch_add(1, Ordering::Release);
            if !c.activity.pending.swap(true, Ordering::AcqRel)
                && let Err(TrySendError::Disconnected(())) = c.wake.try_send(())
            {
                tracing::warn!("the store's checkpoint thread has ended");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(c: &str, k: &str, v: &str) -> Op {
        Op::Put {
            collection: c.into(),
            key: k.into(),
            value: v.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_log_is_checkpointed_once_writes_pause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let wal = dir.path().join("store.db-wal");
        let size = |p: &Path| std::fs::metadata(p).unwrap().len();
        let s = SqliteStore::open(&path).unwrap();
        s.write(&[put("a", "1", &"x".repeat(10_000))]).unwrap();
        assert!(size(&wal) > 10_000, "the commit is in the log");
        assert!(size(&path) < 10_000, "and not yet in the database");
        let deadline = std::time::Instant::now() + QUIET * 10;
        while size(&path) < 10_000 {
            assert!(std::time::Instant::now() < deadline, "no checkpoint");
            std::thread::sleep(QUIET / 10);
        }
        // The log starts over: the next commit is written over the kept file.
        let log = size(&wal);
        s.write(&[put("a", "2", &"y".repeat(10_000))]).unwrap();
        assert_eq!(size(&wal), log, "the log's file did not grow");
        assert_eq!(s.get("a", "1").unwrap().unwrap().len(), 10_000);
        drop(s);
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.get("a", "1").unwrap().unwrap().len(), 10_000);
        assert_eq!(s.get("a", "2").unwrap().unwrap().len(), 10_000);
    }

    #[test]
    fn batches_are_atomic_and_inserts_never_overwrite() {
        let s = SqliteStore::in_memory().unwrap();
        s.write(&[put("a", "1", "x"), put("a", "2", "y")]).unwrap();
        let dup = s.write(&[
            put("a", "3", "z"),
            Op::Insert {
                collection: "a".into(),
                key: "1".into(),
                value: b"w".to_vec(),
            },
        ]);
        assert!(matches!(dup, Err(StoreError::Exists { .. })));
        assert_eq!(
            s.get("a", "3").unwrap(),
            None,
            "the failed batch left nothing"
        );
        assert_eq!(s.get("a", "1").unwrap().unwrap(), b"x");
    }

    #[test]
    fn listing_pages_in_insertion_order() {
        let s = SqliteStore::in_memory().unwrap();
        for i in 0..5 {
            s.write(&[put("c", &format!("k{i}"), "v")]).unwrap();
        }
        s.write(&[put("c", "k0", "changed")]).unwrap();
        let first = s.list("c", None, 2).unwrap();
        assert_eq!(
            first.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(),
            ["k0", "k1"]
        );
        assert_eq!(first[0].value, b"changed");
        let rest = s.list("c", Some(first[1].seq), 10).unwrap();
        assert_eq!(rest.len(), 3);
        s.write(&[Op::DeleteCollection {
            collection: "c".into(),
        }])
        .unwrap();
        assert!(s.list("c", None, 10).unwrap().is_empty());
    }

    #[test]
    fn survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        SqliteStore::open(&path)
            .unwrap()
            .write(&[put("g", "1", "kept")])
            .unwrap();
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.get("g", "1").unwrap().unwrap(), b"kept");
    }
}
