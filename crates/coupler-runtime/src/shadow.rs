//! The local shadow service's document engine (`GGShadowService`): AWS IoT's classic (unnamed)
//! Device Shadow semantics, with no networking. The caller hands in a request (thing, operation,
//! payload) and publishes the replies it gets back.
//!
//! What it follows, from the AWS IoT Device Shadow documentation:
//! - `state.desired` / `state.reported` merge into the stored sections: objects merge
//!   recursively, `null` deletes a key, arrays and other values replace; a section set to
//!   `null` (or left empty) is removed, and `state: null` clears both without deleting the shadow.
//! - `version` increments on every accepted update; a request `version` must equal the current
//!   one (optimistic locking). A deleted shadow's version lives on for 48 hours, so a shadow
//!   re-created in that time continues from it.
//! - `metadata` mirrors the state with `{"timestamp": …}` on every leaf (per element for arrays),
//!   and only the leaves an update touched get the new time.
//! - The delta is every desired key whose value differs from the reported one (recursively into
//!   objects, arrays compared whole), with the desired metadata; an update publishes it whenever
//!   the shadow has one.
//! - Errors are the service's `{code, message, timestamp, clientToken?}` documents.
//!
//! Each thing's shadow is one JSON file in the store's directory, replaced atomically (temporary
//! file, fsync, rename, directory fsync) as the active deployment is, so a crash leaves the old or
//! the new document. The cache changes only after the file has: a failed write (a full disk)
//! rejects the request and leaves both as they were.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// AWS IoT's limit on a shadow's state (desired plus reported, metadata excluded).
pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 8192;

/// AWS IoT rejects longer client tokens.
const MAX_CLIENT_TOKEN_BYTES: usize = 64;
/// Levels of nesting allowed in `desired` and `reported`, the section itself being the first.
const MAX_DEPTH: usize = 6;
/// How long a deleted shadow's version is remembered, as in AWS IoT.
const DELETED_VERSION_KEPT_SECS: u64 = 48 * 3600;
/// Longest file name stem: leaves room for the `.json.tmp` of the temporary file under the usual
/// 255-byte limit.
const MAX_FILE_STEM: usize = 240;

const INVALID_JSON: &str = "Invalid JSON";
const PAYLOAD_TOO_LARGE: &str = "The payload exceeds the maximum size allowed";
const INVALID_NODE: &str = "State contains an invalid node";
const TOO_DEEP: &str = "JSON contains too many levels of nesting; maximum is 6";

/// A shadow request, from the last level of its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Get,
    Update,
    Delete,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }
}

/// One reply to publish: the full topic (e.g. `$aws/things/T/shadow/update/accepted`) and its
/// JSON payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub topic: String,
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ShadowError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("shadow of {thing:?} cannot be encoded: {source}")]
    Encode {
        thing: String,
        source: serde_json::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ShadowError + '_ {
    move |source| ShadowError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The shadows of all things, persisted under one directory.
#[derive(Debug)]
pub struct Shadows {
    dir: PathBuf,
    max_document_bytes: usize,
    /// Every thing with a file, keyed by thing name. One lock for all: an update is a
    /// read-check-write that must not interleave with another on the same shadow, and the
    /// local service's load does not call for finer locking.
    cache: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug, Clone)]
enum Entry {
    Live(Doc),
    /// Deleted at `at` (epoch seconds) when its version was `version`.
    Deleted {
        version: u64,
        at: u64,
    },
}

/// A shadow document: state, metadata mirroring it, version.
#[derive(Debug, Clone, Default, PartialEq)]
struct Doc {
    state: Sections,
    metadata: Sections,
    version: u64,
}

/// The `desired` and `reported` sections of a state or of its metadata. An empty section is
/// absent, as AWS IoT leaves it out of the document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sections {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    desired: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reported: Option<Map<String, Value>>,
}

impl Sections {
    fn to_json(&self) -> Value {
        let mut out = Map::new();
        if let Some(d) = &self.desired {
            out.insert("desired".into(), Value::Object(d.clone()));
        }
        if let Some(r) = &self.reported {
            out.insert("reported".into(), Value::Object(r.clone()));
        }
        Value::Object(out)
    }
}

/// A shadow file's content. The thing name is kept inside because the file name is an escaped
/// form of it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    thing: String,
    version: u64,
    /// Set on a deleted shadow, whose file remains only to carry its version on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deleted_at: Option<u64>,
    #[serde(default)]
    state: Sections,
    #[serde(default)]
    metadata: Sections,
}

impl Record {
    fn into_entry(self) -> Entry {
        match self.deleted_at {
            Some(at) => Entry::Deleted {
                version: self.version,
                at,
            },
            None => Entry::Live(Doc {
                state: self.state,
                metadata: self.metadata,
                version: self.version,
            }),
        }
    }
}

/// A request the service turns down: the error document of the `rejected` topic.
#[derive(Debug)]
struct Rejection {
    code: u16,
    message: String,
    client_token: Option<String>,
}

impl Rejection {
    fn new(code: u16, message: impl Into<String>, client_token: &Option<String>) -> Self {
        Self {
            code,
            message: message.into(),
            client_token: client_token.clone(),
        }
    }

    fn not_found(thing: &str, client_token: &Option<String>) -> Self {
        Self::new(
            404,
            format!("No shadow exists with name: '{thing}'"),
            client_token,
        )
    }

    fn to_json(&self, now: u64) -> Value {
        let mut doc = json!({"code": self.code, "message": self.message, "timestamp": now});
        with_token(&mut doc, &self.client_token);
        doc
    }
}

/// Replies of an accepted request: the last topic level(s) and the payload.
type Accepted = Vec<(&'static str, Value)>;

impl Shadows {
    /// Shadows persisted under `dir` (created if missing), each state limited to
    /// `max_document_bytes` ([`DEFAULT_MAX_DOCUMENT_BYTES`] in AWS IoT).
    ///
    /// A file that does not parse is logged and left alone rather than failing the core; the
    /// thing then has no shadow until it is updated.
    pub fn open(dir: &Path, max_document_bytes: usize) -> Result<Self, ShadowError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let mut cache = HashMap::new();
        for entry in fs::read_dir(dir).map_err(io_error(dir))? {
            let entry = entry.map_err(io_error(dir))?;
            let path = entry.path();
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') && name.ends_with(".tmp") {
                // A write cut short by a crash: the document it was replacing is intact.
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            let bytes = fs::read(&path).map_err(io_error(&path))?;
            let record = match serde_json::from_slice::<Record>(&bytes) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable shadow file");
                    continue;
                }
            };
            if file_stem(&record.thing).as_deref() != Some(stem) {
                tracing::warn!(path = %path.display(), thing = %record.thing, "ignoring shadow file named for another thing");
                continue;
            }
            cache.insert(record.thing.clone(), record.into_entry());
        }
        Ok(Self {
            dir: dir.to_owned(),
            max_document_bytes,
            cache: Mutex::new(cache),
        })
    }

    /// Parse a request topic: `$aws/things/{thing}/shadow/{get|update|delete}` → (thing, op);
    /// `None` for anything else (reply topics and named shadows included).
    pub fn request_topic(topic: &str) -> Option<(String, Op)> {
        let rest = topic.strip_prefix("$aws/things/")?;
        let (thing, action) = rest.split_once('/')?;
        let op = match action {
            "shadow/get" => Op::Get,
            "shadow/update" => Op::Update,
            "shadow/delete" => Op::Delete,
            _ => return None,
        };
        (!thing.is_empty()).then(|| (thing.to_owned(), op))
    }

    /// Apply one request and return every reply AWS IoT would publish, in order: for an update
    /// `…/update/accepted`, `…/update/documents`, then `…/update/delta` when the shadow has a
    /// delta, or `…/update/rejected`; for a get `…/get/accepted|rejected`; for a delete
    /// `…/delete/accepted|rejected`. `now` (epoch seconds) stamps the replies and the metadata.
    pub fn handle(&self, thing: &str, op: Op, payload: &[u8], now: u64) -> Vec<Reply> {
        let prefix = format!("$aws/things/{thing}/shadow/{}", op.as_str());
        let outcome = match file_stem(thing) {
            None => Err(Rejection::new(400, "Invalid thing name", &None)),
            Some(stem) => match op {
                Op::Get => self.get(thing, payload, now),
                Op::Update => self.update(thing, &stem, payload, now),
                Op::Delete => self.delete(thing, &stem, payload, now),
            },
        };
        let reply = |suffix: &str, doc: &Value| Reply {
            topic: format!("{prefix}/{suffix}"),
            // Serializing a `Value` cannot fail.
            payload: serde_json::to_vec(doc).unwrap_or_default(),
        };
        match outcome {
            Ok(accepted) => accepted
                .iter()
                .map(|(suffix, doc)| reply(suffix, doc))
                .collect(),
            Err(rejection) => vec![reply("rejected", &rejection.to_json(now))],
        }
    }

    /// Every thing with a shadow, sorted.
    pub fn things(&self) -> Vec<String> {
        let mut things: Vec<String> = self
            .cache
            .lock()
            .iter()
            .filter(|(_, entry)| matches!(entry, Entry::Live(_)))
            .map(|(thing, _)| thing.clone())
            .collect();
        things.sort();
        things
    }

    /// Remove every shadow, deleted versions included (a reset of the core).
    pub fn clear(&self) -> Result<(), ShadowError> {
        let mut cache = self.cache.lock();
        let things: Vec<String> = cache.keys().cloned().collect();
        for thing in things {
            if let Some(stem) = file_stem(&thing) {
                let path = self.dir.join(format!("{stem}.json"));
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error(&path)(e)),
                }
            }
            // The cache follows the disk file by file, so a failure leaves them agreeing.
            cache.remove(&thing);
        }
        // Files the cache does not hold (unreadable ones, leftovers) go too.
        for entry in fs::read_dir(&self.dir).map_err(io_error(&self.dir))? {
            let entry = entry.map_err(io_error(&self.dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".json") || (name.starts_with('.') && name.ends_with(".tmp")) {
                let path = entry.path();
                fs::remove_file(&path).map_err(io_error(&path))?;
            }
        }
        sync_dir(&self.dir);
        Ok(())
    }

    fn get(&self, thing: &str, payload: &[u8], now: u64) -> Result<Accepted, Rejection> {
        let token = token_of_ignored_payload(payload)?;
        let cache = self.cache.lock();
        let Some(Entry::Live(doc)) = cache.get(thing) else {
            return Err(Rejection::not_found(thing, &token));
        };
        let mut state = doc.state.to_json();
        if let (Some(delta), Value::Object(state)) = (doc.delta(), &mut state) {
            state.insert("delta".into(), Value::Object(delta));
        }
        let mut reply = json!({
            "state": state,
            "metadata": doc.metadata.to_json(),
            "version": doc.version,
            "timestamp": now,
        });
        with_token(&mut reply, &token);
        Ok(vec![("accepted", reply)])
    }

    fn delete(
        &self,
        thing: &str,
        stem: &str,
        payload: &[u8],
        now: u64,
    ) -> Result<Accepted, Rejection> {
        let token = token_of_ignored_payload(payload)?;
        let mut cache = self.cache.lock();
        let Some(Entry::Live(doc)) = cache.get(thing) else {
            return Err(Rejection::not_found(thing, &token));
        };
        let version = doc.version;
        let record = Record {
            thing: thing.to_owned(),
            version,
            deleted_at: Some(now),
            state: Sections::default(),
            metadata: Sections::default(),
        };
        self.write(stem, &record).map_err(|e| {
            tracing::error!(thing, error = %e, "shadow delete not persisted");
            Rejection::new(500, "Internal service failure", &token)
        })?;
        cache.insert(thing.to_owned(), Entry::Deleted { version, at: now });
        let mut reply = json!({"version": version, "timestamp": now});
        with_token(&mut reply, &token);
        Ok(vec![("accepted", reply)])
    }

    fn update(
        &self,
        thing: &str,
        stem: &str,
        payload: &[u8],
        now: u64,
    ) -> Result<Accepted, Rejection> {
        let no_token = None;
        if std::str::from_utf8(payload).is_err() {
            return Err(Rejection::new(
                415,
                "Unsupported documented encoding; supported encoding is UTF-8",
                &no_token,
            ));
        }
        let too_large = payload.len() > self.max_document_bytes;
        // Parsed even when too large, so that the rejection can carry the client token.
        let request = match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(request)) => request,
            Ok(_) => return Err(Rejection::new(400, INVALID_JSON, &no_token)),
            Err(_) if too_large => return Err(Rejection::new(413, PAYLOAD_TOO_LARGE, &no_token)),
            Err(_) => return Err(Rejection::new(400, INVALID_JSON, &no_token)),
        };
        let token = client_token(&request)?;
        let reject = |code, message: &str| Rejection::new(code, message, &token);
        if too_large {
            return Err(reject(413, PAYLOAD_TOO_LARGE));
        }
        let expected_version = match request.get("version") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| reject(400, "Invalid version"))?),
        };
        let state = request
            .get("state")
            .ok_or_else(|| reject(400, "Missing required node: state"))?;
        let patch = Patch::of(state).map_err(|message| reject(400, message))?;

        let mut cache = self.cache.lock();
        let (previous, version) = match cache.get(thing) {
            Some(Entry::Live(doc)) => (Some(doc), doc.version),
            Some(Entry::Deleted { version, at })
                if now.saturating_sub(*at) < DELETED_VERSION_KEPT_SECS =>
            {
                (None, *version)
            }
            _ => (None, 0),
        };
        if expected_version.is_some_and(|v| v != version) {
            return Err(reject(409, "Version conflict"));
        }
        let mut current = previous.cloned().unwrap_or_default();
        current.apply(&patch, now);
        current.version = version.saturating_add(1);
        if current.state_bytes() > self.max_document_bytes {
            return Err(reject(413, PAYLOAD_TOO_LARGE));
        }
        let record = Record {
            thing: thing.to_owned(),
            version: current.version,
            deleted_at: None,
            state: current.state.clone(),
            metadata: current.metadata.clone(),
        };
        self.write(stem, &record).map_err(|e| {
            tracing::error!(thing, error = %e, "shadow update not persisted");
            reject(500, "Internal service failure")
        })?;
        let previous = previous.map_or(Value::Null, Doc::to_json);
        let delta = current.delta().map(|delta| {
            let metadata = delta_metadata(&delta, current.metadata.desired.as_ref(), now);
            (delta, metadata)
        });
        let mut replies = Vec::with_capacity(3);
        // The accepted document echoes the request's state, nulls included, with metadata for
        // what it touched.
        replies.push((
            "accepted",
            json!({
                "state": state,
                "metadata": fresh_metadata(state, now),
                "version": current.version,
                "timestamp": now,
            }),
        ));
        replies.push((
            "documents",
            json!({"previous": previous, "current": current.to_json(), "timestamp": now}),
        ));
        cache.insert(thing.to_owned(), Entry::Live(current));
        drop(cache);
        if let Some((delta, metadata)) = delta {
            replies.push((
                "delta",
                json!({
                    "state": delta,
                    "metadata": metadata,
                    "version": record.version,
                    "timestamp": now,
                }),
            ));
        }
        for (_, reply) in &mut replies {
            with_token(reply, &token);
        }
        Ok(replies)
    }

    /// Replace `stem`'s file atomically.
    fn write(&self, stem: &str, record: &Record) -> Result<(), ShadowError> {
        let data = serde_json::to_vec(record).map_err(|source| ShadowError::Encode {
            thing: record.thing.clone(),
            source,
        })?;
        let path = self.dir.join(format!("{stem}.json"));
        let tmp = self.dir.join(format!(".{stem}.json.tmp"));
        let written = fs::File::create(&tmp).and_then(|mut f| {
            f.write_all(&data)?;
            f.sync_all()
        });
        if let Err(e) = written {
            // A partial copy must not keep holding the space of a full disk.
            let _ = fs::remove_file(&tmp);
            return Err(io_error(&tmp)(e));
        }
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(io_error(&path)(e));
        }
        // The new document is in place: a failure to make the rename durable is reported but
        // does not fail the request, or the cache would disagree with the disk.
        sync_dir(&self.dir);
        Ok(())
    }
}

fn sync_dir(dir: &Path) {
    if let Err(e) = fs::File::open(dir).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %dir.display(), error = %e, "shadow directory not synced");
    }
}

/// The file name stem for `thing`: AWS IoT's thing-name characters as they are, every other
/// byte as `%XX` (so no `/`, `.` or `..` reaches the file system and distinct names stay
/// distinct). `None` when the thing name is empty or the stem would be too long.
fn file_stem(thing: &str) -> Option<String> {
    if thing.is_empty() {
        return None;
    }
    let mut stem = String::with_capacity(thing.len());
    for b in thing.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':') {
            stem.push(char::from(b));
        } else {
            stem.push_str(&format!("%{b:02X}"));
        }
    }
    (stem.len() <= MAX_FILE_STEM).then_some(stem)
}

/// Add `clientToken` to a reply when the request had one.
fn with_token(doc: &mut Value, token: &Option<String>) {
    if let (Some(token), Value::Object(doc)) = (token, doc) {
        doc.insert("clientToken".into(), Value::String(token.clone()));
    }
}

/// The request's client token, checked as AWS IoT checks it.
fn client_token(request: &Map<String, Value>) -> Result<Option<String>, Rejection> {
    match request.get("clientToken") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) if t.len() <= MAX_CLIENT_TOKEN_BYTES => Ok(Some(t.clone())),
        Some(_) => Err(Rejection::new(400, "Invalid clientToken", &None)),
    }
}

/// The client token of a get or delete, whose payload is otherwise ignored (empty, or a JSON
/// object with only a `clientToken` as the AWS SDKs send).
fn token_of_ignored_payload(payload: &[u8]) -> Result<Option<String>, Rejection> {
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(request)) => client_token(&request),
        _ => Ok(None),
    }
}

/// What an update does to each section: `None` leaves it, `Some(Null)` removes it,
/// `Some(object)` merges into it.
struct Patch<'a> {
    desired: Option<&'a Value>,
    reported: Option<&'a Value>,
}

static NULL: Value = Value::Null;

impl<'a> Patch<'a> {
    /// Validate a request's `state` node.
    fn of(state: &'a Value) -> Result<Self, &'static str> {
        let state = match state {
            // Clears the shadow's state; the shadow itself remains.
            Value::Null => {
                return Ok(Patch {
                    desired: Some(&NULL),
                    reported: Some(&NULL),
                });
            }
            Value::Object(state) => state,
            _ => return Err("State node must be an object"),
        };
        let mut patch = Patch {
            desired: None,
            reported: None,
        };
        for (key, section) in state {
            let (slot, not_object) = match key.as_str() {
                "desired" => (&mut patch.desired, "Desired node must be an object"),
                "reported" => (&mut patch.reported, "Reported node must be an object"),
                _ => return Err(INVALID_NODE),
            };
            match section {
                Value::Null => {}
                Value::Object(section) => check_section(section)?,
                _ => return Err(not_object),
            }
            *slot = Some(section);
        }
        Ok(patch)
    }
}

/// AWS IoT's limits on a section's content: six levels of nesting counting the section itself
/// (an empty object or array adds none), and no null in an array.
fn check_section(section: &Map<String, Value>) -> Result<(), &'static str> {
    fn check(value: &Value, level: usize) -> Result<(), &'static str> {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Object(o) if !o.is_empty() => Box::new(o.values()),
            Value::Array(a) if !a.is_empty() => {
                if a.iter().any(Value::is_null) {
                    return Err(INVALID_NODE);
                }
                Box::new(a.iter())
            }
            _ => return Ok(()),
        };
        if level > MAX_DEPTH {
            return Err(TOO_DEEP);
        }
        for child in children {
            check(child, level + 1)?;
        }
        Ok(())
    }
    for value in section.values() {
        check(value, 2)?;
    }
    Ok(())
}

impl Doc {
    fn apply(&mut self, patch: &Patch<'_>, now: u64) {
        if let Some(p) = patch.desired {
            apply_section(&mut self.state.desired, &mut self.metadata.desired, p, now);
        }
        if let Some(p) = patch.reported {
            apply_section(
                &mut self.state.reported,
                &mut self.metadata.reported,
                p,
                now,
            );
        }
    }

    /// The state's size as AWS IoT limits it: desired plus reported, metadata excluded.
    fn state_bytes(&self) -> usize {
        [&self.state.desired, &self.state.reported]
            .into_iter()
            .flatten()
            .map(|section| serde_json::to_vec(section).map_or(usize::MAX, |v| v.len()))
            .fold(0, usize::saturating_add)
    }

    fn delta(&self) -> Option<Map<String, Value>> {
        let desired = self.state.desired.as_ref()?;
        let delta = delta(desired, self.state.reported.as_ref());
        (!delta.is_empty()).then_some(delta)
    }

    /// The `previous` / `current` form of the documents message.
    fn to_json(&self) -> Value {
        json!({
            "state": self.state.to_json(),
            "metadata": self.metadata.to_json(),
            "version": self.version,
        })
    }
}

fn apply_section(
    state: &mut Option<Map<String, Value>>,
    metadata: &mut Option<Map<String, Value>>,
    patch: &Value,
    now: u64,
) {
    let Value::Object(patch) = patch else {
        // `null`: the section goes (`Patch::of` lets nothing else through).
        *state = None;
        *metadata = None;
        return;
    };
    let mut merged = state.take().unwrap_or_default();
    merge(&mut merged, patch);
    if merged.is_empty() {
        *metadata = None;
    } else {
        *metadata = Some(merge_metadata(&merged, metadata.as_ref(), patch, now));
        *state = Some(merged);
    }
}

/// Merge `patch` into `target`: objects recursively, `null` deletes, anything else replaces.
fn merge(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(p) => match target.get_mut(key) {
                Some(Value::Object(t)) => merge(t, p),
                Some(other) => *other = Value::Object(without_nulls(p).unwrap_or_default()),
                None => {
                    if let Some(o) = without_nulls(p) {
                        target.insert(key.clone(), Value::Object(o));
                    }
                }
            },
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

/// `object` without its nulls, recursively (a new object has nothing for them to delete);
/// `None` when nulls were all it held, so that such an object is not added.
fn without_nulls(object: &Map<String, Value>) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    let mut dropped = false;
    for (key, value) in object {
        match value {
            Value::Null => dropped = true,
            Value::Object(o) => match without_nulls(o) {
                Some(o) => {
                    out.insert(key.clone(), Value::Object(o));
                }
                None => dropped = true,
            },
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    (!dropped || !out.is_empty()).then_some(out)
}

/// Metadata of a merged section: fresh timestamps where `patch` wrote, the old metadata
/// elsewhere. Walked along the state's shape, so user keys named `timestamp` cannot be mistaken
/// for metadata.
fn merge_metadata(
    state: &Map<String, Value>,
    old: Option<&Map<String, Value>>,
    patch: &Map<String, Value>,
    now: u64,
) -> Map<String, Value> {
    state
        .iter()
        .map(|(key, value)| {
            let old = old.and_then(|o| o.get(key));
            let metadata = match (value, patch.get(key)) {
                (_, None) => old.cloned().unwrap_or_else(|| fresh_metadata(value, now)),
                (Value::Object(value), Some(Value::Object(patch))) => Value::Object(
                    merge_metadata(value, old.and_then(Value::as_object), patch, now),
                ),
                _ => fresh_metadata(value, now),
            };
            (key.clone(), metadata)
        })
        .collect()
}

/// Metadata of a value written at `now`: objects mirrored, arrays per element, a timestamp on
/// every other value (a `null` of a request included).
fn fresh_metadata(value: &Value, now: u64) -> Value {
    match value {
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), fresh_metadata(v, now)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| fresh_metadata(v, now)).collect()),
        _ => json!({"timestamp": now}),
    }
}

/// The desired keys whose value differs from the reported one: objects compared key by key
/// (the delta keeps the path to each difference), anything else whole.
fn delta(
    desired: &Map<String, Value>,
    reported: Option<&Map<String, Value>>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, want) in desired {
        let have = reported.and_then(|r| r.get(key));
        match (want, have) {
            (Value::Object(want), Some(Value::Object(have))) => {
                let nested = delta(want, Some(have));
                if !nested.is_empty() {
                    out.insert(key.clone(), Value::Object(nested));
                }
            }
            (_, Some(have)) if same(want, have) => {}
            _ => {
                out.insert(key.clone(), want.clone());
            }
        }
    }
    out
}

/// JSON equality with numbers compared by value (`1` is `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// The delta's metadata: the desired metadata of each delta entry.
fn delta_metadata(
    delta: &Map<String, Value>,
    desired: Option<&Map<String, Value>>,
    now: u64,
) -> Map<String, Value> {
    delta
        .iter()
        .map(|(key, value)| {
            let metadata = desired.and_then(|d| d.get(key));
            let metadata = match (value, metadata) {
                (Value::Object(value), Some(Value::Object(metadata))) => {
                    Value::Object(delta_metadata(value, Some(metadata), now))
                }
                (_, Some(metadata)) => metadata.clone(),
                // Metadata always mirrors the state; this only guards against a hand-edited file.
                (_, None) => fresh_metadata(value, now),
            };
            (key.clone(), metadata)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_000;
    const T1: u64 = 2_000;
    const T2: u64 = 3_000;

    fn open(dir: &Path) -> Shadows {
        Shadows::open(dir, DEFAULT_MAX_DOCUMENT_BYTES).unwrap()
    }

    /// `(last topic levels after the operation, payload)` of each reply, checking the topic
    /// prefix.
    fn run(s: &Shadows, thing: &str, op: Op, payload: Value, now: u64) -> Vec<(String, Value)> {
        let bytes = match payload {
            Value::Null => Vec::new(),
            Value::String(raw) => raw.into_bytes(),
            doc => serde_json::to_vec(&doc).unwrap(),
        };
        run_raw(s, thing, op, &bytes, now)
    }

    fn run_raw(s: &Shadows, thing: &str, op: Op, payload: &[u8], now: u64) -> Vec<(String, Value)> {
        let prefix = format!("$aws/things/{thing}/shadow/{}/", op.as_str());
        s.handle(thing, op, payload, now)
            .into_iter()
            .map(|r| {
                let suffix = r.topic.strip_prefix(&prefix).unwrap_or_else(|| {
                    panic!("reply topic {} outside {prefix}", r.topic);
                });
                (
                    suffix.to_owned(),
                    serde_json::from_slice(&r.payload).unwrap(),
                )
            })
            .collect()
    }

    fn update(s: &Shadows, thing: &str, request: Value, now: u64) -> Vec<(String, Value)> {
        run(s, thing, Op::Update, request, now)
    }

    /// The single reply of a request that must produce exactly one, on `suffix`.
    fn only(replies: Vec<(String, Value)>, suffix: &str) -> Value {
        assert_eq!(replies.len(), 1, "{replies:#?}");
        let (topic, doc) = replies.into_iter().next().unwrap();
        assert_eq!(topic, suffix, "{doc}");
        doc
    }

    fn get(s: &Shadows, thing: &str, now: u64) -> Value {
        only(run(s, thing, Op::Get, Value::Null, now), "accepted")
    }

    fn topics(replies: &[(String, Value)]) -> Vec<&str> {
        replies.iter().map(|(t, _)| t.as_str()).collect()
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn request_topics() {
        let cases: &[(&str, Option<(&str, Op)>)] = &[
            ("$aws/things/T/shadow/get", Some(("T", Op::Get))),
            ("$aws/things/T/shadow/update", Some(("T", Op::Update))),
            ("$aws/things/T/shadow/delete", Some(("T", Op::Delete))),
            (
                "$aws/things/my:thing-1_x/shadow/update",
                Some(("my:thing-1_x", Op::Update)),
            ),
            ("$aws/things/T/shadow/update/accepted", None),
            ("$aws/things/T/shadow/update/delta", None),
            ("$aws/things/T/shadow/get/rejected", None),
            ("$aws/things/T/shadow/name/N/update", None),
            ("$aws/things/T/shadow/name/N/get", None),
            ("$aws/things//shadow/get", None),
            ("$aws/things/T/shadow", None),
            ("$aws/things/T/shadow/", None),
            ("$aws/things/T/shadow/get/", None),
            ("$aws/things/T/shadow/GET", None),
            ("$aws/things/T/Shadow/get", None),
            ("aws/things/T/shadow/get", None),
            ("$aws/things/a/b/shadow/get", None),
            ("$aws/things/T/jobs/get", None),
            ("", None),
        ];
        for (topic, want) in cases {
            let want = want.map(|(t, op)| (t.to_owned(), op));
            assert_eq!(Shadows::request_topic(topic), want, "{topic}");
        }
    }

    #[test]
    fn first_update_replies() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let replies = update(
            &s,
            "T",
            json!({"state": {"desired": {"color": "RED", "power": {"on": true}}}, "clientToken": "c1"}),
            T0,
        );
        assert_eq!(topics(&replies), ["accepted", "documents", "delta"]);
        assert_eq!(
            replies[0].1,
            json!({
                "state": {"desired": {"color": "RED", "power": {"on": true}}},
                "metadata": {"desired": {"color": {"timestamp": T0}, "power": {"on": {"timestamp": T0}}}},
                "version": 1,
                "timestamp": T0,
                "clientToken": "c1",
            })
        );
        assert_eq!(
            replies[1].1,
            json!({
                "previous": null,
                "current": {
                    "state": {"desired": {"color": "RED", "power": {"on": true}}},
                    "metadata": {"desired": {"color": {"timestamp": T0}, "power": {"on": {"timestamp": T0}}}},
                    "version": 1,
                },
                "timestamp": T0,
                "clientToken": "c1",
            })
        );
        assert_eq!(
            replies[2].1,
            json!({
                "state": {"color": "RED", "power": {"on": true}},
                "metadata": {"color": {"timestamp": T0}, "power": {"on": {"timestamp": T0}}},
                "version": 1,
                "timestamp": T0,
                "clientToken": "c1",
            })
        );
    }

    #[test]
    fn reported_catching_up_ends_the_delta() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        update(
            &s,
            "T",
            json!({"state": {"reported": {"color": "GREEN"}}}),
            T0,
        );
        let replies = update(&s, "T", json!({"state": {"desired": {"color": "RED"}}}), T1);
        assert_eq!(topics(&replies), ["accepted", "documents", "delta"]);
        assert_eq!(
            replies[2].1,
            json!({"state": {"color": "RED"}, "metadata": {"color": {"timestamp": T1}}, "version": 2, "timestamp": T1})
        );

        // The device reports the desired colour: no delta is left, so none is published.
        let replies = update(
            &s,
            "T",
            json!({"state": {"reported": {"color": "RED"}}}),
            T2,
        );
        assert_eq!(topics(&replies), ["accepted", "documents"]);
        assert_eq!(
            replies[0].1,
            json!({
                "state": {"reported": {"color": "RED"}},
                "metadata": {"reported": {"color": {"timestamp": T2}}},
                "version": 3,
                "timestamp": T2,
            })
        );
        assert_eq!(
            replies[1].1,
            json!({
                "previous": {
                    "state": {"desired": {"color": "RED"}, "reported": {"color": "GREEN"}},
                    "metadata": {"desired": {"color": {"timestamp": T1}}, "reported": {"color": {"timestamp": T0}}},
                    "version": 2,
                },
                "current": {
                    "state": {"desired": {"color": "RED"}, "reported": {"color": "RED"}},
                    "metadata": {"desired": {"color": {"timestamp": T1}}, "reported": {"color": {"timestamp": T2}}},
                    "version": 3,
                },
                "timestamp": T2,
            })
        );
    }

    #[test]
    fn delta_lists_every_difference_not_only_this_updates() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        update(
            &s,
            "T",
            json!({"state": {"desired": {"a": 1, "b": 2, "c": 3}}}),
            T0,
        );
        update(
            &s,
            "T",
            json!({"state": {"reported": {"a": 1, "b": 0}}}),
            T1,
        );
        // A reported-only update still publishes the shadow's whole delta, with the desired
        // timestamps.
        let replies = update(&s, "T", json!({"state": {"reported": {"x": true}}}), T2);
        assert_eq!(topics(&replies), ["accepted", "documents", "delta"]);
        assert_eq!(
            replies[2].1,
            json!({
                "state": {"b": 2, "c": 3},
                "metadata": {"b": {"timestamp": T0}, "c": {"timestamp": T0}},
                "version": 3,
                "timestamp": T2,
            })
        );
    }

    #[test]
    fn get_returns_state_delta_metadata_and_token() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        update(
            &s,
            "T",
            json!({"state": {"desired": {"color": "RED", "state": "STOP"}}}),
            T0,
        );
        update(
            &s,
            "T",
            json!({"state": {"reported": {"color": "GREEN", "engine": "ON"}}}),
            T1,
        );
        let doc = only(
            run(&s, "T", Op::Get, json!({"clientToken": "g"}), T2),
            "accepted",
        );
        assert_eq!(
            doc,
            json!({
                "state": {
                    "desired": {"color": "RED", "state": "STOP"},
                    "reported": {"color": "GREEN", "engine": "ON"},
                    "delta": {"color": "RED", "state": "STOP"},
                },
                "metadata": {
                    "desired": {"color": {"timestamp": T0}, "state": {"timestamp": T0}},
                    "reported": {"color": {"timestamp": T1}, "engine": {"timestamp": T1}},
                },
                "version": 2,
                "timestamp": T2,
                "clientToken": "g",
            })
        );
        // No delta once in sync, and an empty payload has no token to echo.
        update(
            &s,
            "T",
            json!({"state": {"reported": {"color": "RED", "state": "STOP"}}}),
            T2,
        );
        let doc = get(&s, "T", T2);
        assert_eq!(doc["state"].get("delta"), None);
        assert_eq!(doc.get("clientToken"), None);
        assert_eq!(doc["version"], 3);
    }

    #[test]
    fn get_and_delete_of_a_missing_shadow() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        for op in [Op::Get, Op::Delete] {
            let doc = only(run(&s, "Lamp", op, Value::Null, T0), "rejected");
            assert_eq!(
                doc,
                json!({"code": 404, "message": "No shadow exists with name: 'Lamp'", "timestamp": T0})
            );
            let doc = only(
                run(&s, "Lamp", op, json!({"clientToken": "k"}), T0),
                "rejected",
            );
            assert_eq!(
                doc,
                json!({"code": 404, "message": "No shadow exists with name: 'Lamp'", "timestamp": T0, "clientToken": "k"})
            );
        }
    }

    #[test]
    fn get_and_delete_ignore_their_payload_but_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        update(&s, "T", json!({"state": {"reported": {"a": 1}}}), T0);
        for payload in [&b"not json"[..], b"[1]", b"{}", b"", b"\xff\xfe"] {
            let doc = only(run_raw(&s, "T", Op::Get, payload, T1), "accepted");
            assert_eq!(doc.get("clientToken"), None);
        }
        let long = "x".repeat(65);
        let doc = only(
            run(&s, "T", Op::Get, json!({"clientToken": long}), T1),
            "rejected",
        );
        assert_eq!(
            doc,
            json!({"code": 400, "message": "Invalid clientToken", "timestamp": T1})
        );
    }

    #[test]
    fn delete_then_recreate_continues_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        update(&s, "T", json!({"state": {"reported": {"a": 1}}}), T0);
        update(&s, "T", json!({"state": {"reported": {"a": 2}}}), T0);
        let doc = only(
            run(&s, "T", Op::Delete, json!({"clientToken": "d"}), T1),
            "accepted",
        );
        assert_eq!(
            doc,
            json!({"version": 2, "timestamp": T1, "clientToken": "d"})
        );
        assert_eq!(
            only(run(&s, "T", Op::Get, Value::Null, T1), "rejected")["code"],
            404
        );
        assert_eq!(
            only(run(&s, "T", Op::Delete, Value::Null, T1), "rejected")["code"],
            404
        );
        assert!(s.things().is_empty());

        // Re-created within 48 hours: the version follows the deleted one, the state does not.
        let replies = update(&s, "T", json!({"state": {"desired": {"b": 1}}}), T2);
        assert_eq!(replies[0].1["version"], 3);
        assert_eq!(replies[1].1["previous"], Value::Null);
        assert_eq!(
            get(&s, "T", T2)["state"],
            json!({"desired": {"b": 1}, "delta": {"b": 1}})
        );

        // Deleted for longer than that: a new shadow starts over.
        run(&s, "T", Op::Delete, Value::Null, T2);
        let later = T2 + DELETED_VERSION_KEPT_SECS;
        let replies = update(&s, "T", json!({"state": {"desired": {"b": 1}}}), later);
        assert_eq!(replies[0].1["version"], 1);
    }

    #[test]
    fn merge_and_null_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        update(
            &s,
            "T",
            json!({"state": {"reported": {
                "a": 1,
                "nested": {"x": 1, "y": {"z": 2}},
                "list": [1, 2, 3],
                "gone": "soon",
            }}}),
            T0,
        );
        let replies = update(
            &s,
            "T",
            json!({"state": {"reported": {
                "nested": {"y": {"z": null, "w": 3}, "v": 4},
                "list": [9],
                "gone": null,
                "fresh": {"only": null},
                "a": {"now": "object", "nil": null},
                "new": {"k": 1, "drop": null},
            }}}),
            T1,
        );
        // The accepted document echoes the request, nulls included, each with a timestamp.
        assert_eq!(
            replies[0].1["metadata"],
            json!({"reported": {
                "nested": {"y": {"z": {"timestamp": T1}, "w": {"timestamp": T1}}, "v": {"timestamp": T1}},
                "list": [{"timestamp": T1}],
                "gone": {"timestamp": T1},
                "fresh": {"only": {"timestamp": T1}},
                "a": {"now": {"timestamp": T1}, "nil": {"timestamp": T1}},
                "new": {"k": {"timestamp": T1}, "drop": {"timestamp": T1}},
            }})
        );
        assert_eq!(replies[0].1["state"]["reported"]["gone"], Value::Null);
        let doc = get(&s, "T", T2);
        assert_eq!(
            doc["state"],
            json!({"reported": {
                "a": {"now": "object"},
                "nested": {"x": 1, "y": {"w": 3}, "v": 4},
                "list": [9],
                "new": {"k": 1},
            }})
        );
        // Untouched leaves keep their time; written ones get the new one.
        assert_eq!(
            doc["metadata"],
            json!({"reported": {
                "a": {"now": {"timestamp": T1}},
                "nested": {"x": {"timestamp": T0}, "y": {"w": {"timestamp": T1}}, "v": {"timestamp": T1}},
                "list": [{"timestamp": T1}],
                "new": {"k": {"timestamp": T1}},
            }})
        );
        assert_eq!(doc["version"], 2);
    }

    #[test]
    fn array_metadata_is_per_element() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        update(
            &s,
            "T",
            json!({"state": {"desired": {"l": [1, {"a": "b"}, [2]]}}}),
            T0,
        );
        assert_eq!(
            get(&s, "T", T0)["metadata"],
            json!({"desired": {"l": [{"timestamp": T0}, {"a": {"timestamp": T0}}, [{"timestamp": T0}]]}})
        );
    }

    #[test]
    fn user_keys_named_timestamp_are_state() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        update(
            &s,
            "T",
            json!({"state": {"desired": {"timestamp": 5, "t": {"timestamp": 6}}}}),
            T0,
        );
        update(
            &s,
            "T",
            json!({"state": {"desired": {"t": {"other": 1}}}}),
            T1,
        );
        let doc = get(&s, "T", T1);
        assert_eq!(
            doc["metadata"],
            json!({"desired": {
                "timestamp": {"timestamp": T0},
                "t": {"timestamp": {"timestamp": T0}, "other": {"timestamp": T1}},
            }})
        );
        assert_eq!(
            doc["state"]["delta"],
            json!({"timestamp": 5, "t": {"timestamp": 6, "other": 1}})
        );
    }

    #[test]
    fn sections_and_state_set_to_null() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        update(
            &s,
            "T",
            json!({"state": {"desired": {"a": 1}, "reported": {"a": 2}}}),
            T0,
        );
        let replies = update(
            &s,
            "T",
            json!({"state": {"reported": {"a": 1}, "desired": null}}),
            T1,
        );
        assert_eq!(topics(&replies), ["accepted", "documents"]);
        assert_eq!(
            replies[0].1,
            json!({
                "state": {"reported": {"a": 1}, "desired": null},
                "metadata": {"reported": {"a": {"timestamp": T1}}, "desired": {"timestamp": T1}},
                "version": 2,
                "timestamp": T1,
            })
        );
        assert_eq!(
            get(&s, "T", T1),
            json!({
                "state": {"reported": {"a": 1}},
                "metadata": {"reported": {"a": {"timestamp": T1}}},
                "version": 2,
                "timestamp": T1,
            })
        );

        // Deleting the last key empties the section, which then goes.
        update(&s, "T", json!({"state": {"reported": {"a": null}}}), T1);
        assert_eq!(get(&s, "T", T1)["state"], json!({}));

        // `state: null` clears the state but keeps the shadow and its version count.
        update(
            &s,
            "T",
            json!({"state": {"desired": {"b": 1}, "reported": {"c": 1}}}),
            T1,
        );
        let replies = update(&s, "T", json!({"state": null, "clientToken": "n"}), T2);
        assert_eq!(topics(&replies), ["accepted", "documents"]);
        assert_eq!(
            replies[0].1,
            json!({"state": null, "metadata": {"timestamp": T2}, "version": 5, "timestamp": T2, "clientToken": "n"})
        );
        assert_eq!(
            replies[1].1["current"],
            json!({"state": {}, "metadata": {}, "version": 5})
        );
        assert_eq!(
            get(&s, "T", T2),
            json!({"state": {}, "metadata": {}, "version": 5, "timestamp": T2})
        );
        assert_eq!(s.things(), ["T"]);
    }

    #[test]
    fn nested_delta() {
        let cases = [
            // AWS's example: the delta keeps the path down to the difference.
            (
                json!({"lights": {"color": {"r": 255, "g": 255, "b": 255}}}),
                json!({"lights": {"color": {"r": 255, "g": 0, "b": 255}}}),
                json!({"lights": {"color": {"g": 255}}}),
            ),
            // Reported-only keys never appear; desired-only keys always do.
            (json!({"a": 1}), json!({"a": 1, "b": 2}), json!({})),
            (json!({"a": {"x": 1}}), json!({}), json!({"a": {"x": 1}})),
            // Arrays are values: any difference copies the whole desired array.
            (
                json!({"l": [1, 2, 3]}),
                json!({"l": [1, 2]}),
                json!({"l": [1, 2, 3]}),
            ),
            (
                json!({"l": [1, {"a": 1}]}),
                json!({"l": [1, {"a": 1}]}),
                json!({}),
            ),
            // Numbers compare by value.
            (json!({"n": 1}), json!({"n": 1.0}), json!({})),
            (json!({"n": 1.5}), json!({"n": 1}), json!({"n": 1.5})),
            (json!({"l": [1.0]}), json!({"l": [1]}), json!({})),
            // A type change is a difference, whole.
            (
                json!({"a": {"x": 1}}),
                json!({"a": 1}),
                json!({"a": {"x": 1}}),
            ),
            (json!({"a": 1}), json!({"a": {"x": 1}}), json!({"a": 1})),
            (json!({"a": "1"}), json!({"a": 1}), json!({"a": "1"})),
            (json!({"a": false}), json!({"a": 0}), json!({"a": false})),
        ];
        for (desired, reported, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            let s = open(dir.path());
            update(&s, "T", json!({"state": {"reported": reported}}), T0);
            let replies = update(&s, "T", json!({"state": {"desired": desired}}), T1);
            let doc = get(&s, "T", T1);
            if want == json!({}) {
                assert_eq!(
                    topics(&replies),
                    ["accepted", "documents"],
                    "{desired} / {reported}"
                );
                assert_eq!(doc["state"].get("delta"), None, "{desired} / {reported}");
            } else {
                assert_eq!(replies.len(), 3, "{desired} / {reported}");
                assert_eq!(replies[2].1["state"], want, "{desired} / {reported}");
                assert_eq!(doc["state"]["delta"], want, "{desired} / {reported}");
            }
        }
    }

    #[test]
    fn nested_delta_metadata_follows_the_desired_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        update(
            &s,
            "T",
            json!({"state": {"desired": {"l": {"r": 1, "g": 2}, "arr": [1, 2]}}}),
            T0,
        );
        update(&s, "T", json!({"state": {"desired": {"l": {"g": 3}}}}), T1);
        let replies = update(
            &s,
            "T",
            json!({"state": {"reported": {"l": {"r": 1, "g": 0}}}}),
            T2,
        );
        assert_eq!(
            replies[2].1,
            json!({
                "state": {"l": {"g": 3}, "arr": [1, 2]},
                "metadata": {"l": {"g": {"timestamp": T1}}, "arr": [{"timestamp": T0}, {"timestamp": T0}]},
                "version": 3,
                "timestamp": T2,
            })
        );
    }

    #[test]
    fn versions_and_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        // A shadow that does not exist is at version 0.
        let doc = only(
            update(
                &s,
                "T",
                json!({"state": {"desired": {"a": 1}}, "version": 3, "clientToken": "v"}),
                T0,
            ),
            "rejected",
        );
        assert_eq!(
            doc,
            json!({"code": 409, "message": "Version conflict", "timestamp": T0, "clientToken": "v"})
        );
        assert_eq!(
            update(
                &s,
                "T",
                json!({"state": {"desired": {"a": 1}}, "version": 0}),
                T0
            )[0]
            .1["version"],
            1
        );
        for n in 2..=4 {
            // Every accepted update counts, even one that changes nothing.
            let replies = update(&s, "T", json!({"state": {"desired": {"a": 1}}}), T0);
            assert_eq!(replies[0].1["version"], n);
        }
        for stale in [0, 1, 3, 5] {
            let doc = only(
                update(
                    &s,
                    "T",
                    json!({"state": {"desired": {"a": 2}}, "version": stale}),
                    T1,
                ),
                "rejected",
            );
            assert_eq!(doc["code"], 409, "version {stale}");
        }
        assert_eq!(get(&s, "T", T1)["state"]["desired"], json!({"a": 1}));
        let replies = update(
            &s,
            "T",
            json!({"state": {"desired": {"a": 2}}, "version": 4}),
            T1,
        );
        assert_eq!(replies[0].1["version"], 5);
        assert_eq!(get(&s, "T", T1)["state"]["desired"], json!({"a": 2}));
    }

    #[test]
    fn client_token_is_echoed_on_every_reply() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let token = "t".repeat(MAX_CLIENT_TOKEN_BYTES);
        let replies = update(
            &s,
            "T",
            json!({"state": {"desired": {"a": 1}}, "clientToken": token}),
            T0,
        );
        assert_eq!(replies.len(), 3);
        for (topic, doc) in &replies {
            assert_eq!(doc["clientToken"], json!(token), "{topic}");
        }
        let doc = only(
            update(&s, "T", json!({"state": 1, "clientToken": "bad-state"}), T0),
            "rejected",
        );
        assert_eq!(doc["clientToken"], "bad-state");
        // Without a token in the request there is none in the replies.
        for (topic, doc) in update(&s, "T", json!({"state": {"desired": {"a": 2}}}), T0) {
            assert_eq!(doc.get("clientToken"), None, "{topic}");
        }
    }

    #[test]
    fn invalid_update_requests() {
        let cases: &[(&str, u16, &str)] = &[
            ("", 400, INVALID_JSON),
            ("{", 400, INVALID_JSON),
            ("{\"state\": {\"desired\": {}},}", 400, INVALID_JSON),
            ("[]", 400, INVALID_JSON),
            ("\"state\"", 400, INVALID_JSON),
            ("null", 400, INVALID_JSON),
            ("{}", 400, "Missing required node: state"),
            (
                r#"{"desired": {"a": 1}}"#,
                400,
                "Missing required node: state",
            ),
            (r#"{"state": 1}"#, 400, "State node must be an object"),
            (r#"{"state": "x"}"#, 400, "State node must be an object"),
            (
                r#"{"state": [{"desired": {}}]}"#,
                400,
                "State node must be an object",
            ),
            (
                r#"{"state": {"desired": 1}}"#,
                400,
                "Desired node must be an object",
            ),
            (
                r#"{"state": {"desired": [1]}}"#,
                400,
                "Desired node must be an object",
            ),
            (
                r#"{"state": {"reported": "on"}}"#,
                400,
                "Reported node must be an object",
            ),
            (
                r#"{"state": {"reported": true}}"#,
                400,
                "Reported node must be an object",
            ),
            (r#"{"state": {"delta": {"a": 1}}}"#, 400, INVALID_NODE),
            (
                r#"{"state": {"desired": {}, "color": 1}}"#,
                400,
                INVALID_NODE,
            ),
            (
                r#"{"state": {"desired": {"l": [null, 1]}}}"#,
                400,
                INVALID_NODE,
            ),
            (
                r#"{"state": {"reported": {"a": {"l": [[1, null]]}}}}"#,
                400,
                INVALID_NODE,
            ),
            (
                r#"{"state": {"desired": {}}, "version": "1"}"#,
                400,
                "Invalid version",
            ),
            (
                r#"{"state": {"desired": {}}, "version": -1}"#,
                400,
                "Invalid version",
            ),
            (
                r#"{"state": {"desired": {}}, "version": 1.5}"#,
                400,
                "Invalid version",
            ),
            (
                r#"{"state": {"desired": {}}, "version": {}}"#,
                400,
                "Invalid version",
            ),
            (
                r#"{"state": {"desired": {}}, "clientToken": 7}"#,
                400,
                "Invalid clientToken",
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        update(&s, "T", json!({"state": {"desired": {"keep": 1}}}), T0);
        for (payload, code, message) in cases {
            let doc = only(
                run_raw(&s, "T", Op::Update, payload.as_bytes(), T1),
                "rejected",
            );
            assert_eq!(
                doc,
                json!({"code": code, "message": message, "timestamp": T1}),
                "{payload}"
            );
        }
        let long = json!({"state": {"desired": {}}, "clientToken": "x".repeat(65)});
        let doc = only(update(&s, "T", long, T1), "rejected");
        assert_eq!(
            doc,
            json!({"code": 400, "message": "Invalid clientToken", "timestamp": T1})
        );

        let doc = only(
            run_raw(&s, "T", Op::Update, b"{\"state\": \"\xff\"}", T1),
            "rejected",
        );
        assert_eq!(doc["code"], 415);
        assert_eq!(
            doc["message"],
            "Unsupported documented encoding; supported encoding is UTF-8"
        );

        // None of it touched the shadow.
        assert_eq!(
            get(&s, "T", T1),
            json!({
                "state": {"desired": {"keep": 1}, "delta": {"keep": 1}},
                "metadata": {"desired": {"keep": {"timestamp": T0}}},
                "version": 1,
                "timestamp": T1,
            })
        );
    }

    #[test]
    fn accepted_oddities() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        // Other top-level nodes are ignored, as AWS IoT ignores them; empty sections are no-ops
        // that still count as an update; `version: null` is no version.
        let replies = update(
            &s,
            "T",
            json!({"state": {"desired": {}}, "metadata": {"x": 1}, "other": true, "version": null}),
            T0,
        );
        assert_eq!(topics(&replies), ["accepted", "documents"]);
        assert_eq!(
            replies[0].1,
            json!({"state": {"desired": {}}, "metadata": {"desired": {}}, "version": 1, "timestamp": T0})
        );
        let replies = update(&s, "T", json!({"state": {}}), T0);
        assert_eq!(replies[0].1["version"], 2);
        assert_eq!(get(&s, "T", T0)["state"], json!({}));
        // An object of nulls alone adds nothing; empty objects are kept as values.
        update(
            &s,
            "T",
            json!({"state": {"reported": {"n": {"a": null}, "e": {}}}}),
            T0,
        );
        assert_eq!(get(&s, "T", T0)["state"], json!({"reported": {"e": {}}}));
    }

    #[test]
    fn size_limits() {
        let dir = tempfile::tempdir().unwrap();
        let s = Shadows::open(dir.path(), 64).unwrap();
        // {"a":"xxxxxxxxxx"} is 18 bytes of state.
        update(
            &s,
            "T",
            json!({"state": {"desired": {"a": "x".repeat(10)}}}),
            T0,
        );

        // The request itself is too large (parsed anyway to echo the token).
        let request = json!({"state": {"desired": {"b": "y".repeat(60)}}, "clientToken": "big"});
        let doc = only(update(&s, "T", request, T1), "rejected");
        assert_eq!(
            doc,
            json!({"code": 413, "message": PAYLOAD_TOO_LARGE, "timestamp": T1, "clientToken": "big"})
        );
        let doc = only(
            run_raw(&s, "T", Op::Update, "{".repeat(100).as_bytes(), T1),
            "rejected",
        );
        assert_eq!(doc["code"], 413);

        // Each request fits; the merged state would not (40 bytes desired, 30 reported).
        update(
            &s,
            "T",
            json!({"state": {"reported": {"b": "y".repeat(22)}}}),
            T1,
        );
        let doc = only(
            update(
                &s,
                "T",
                json!({"state": {"desired": {"c": "z".repeat(15)}}}),
                T1,
            ),
            "rejected",
        );
        assert_eq!(
            doc,
            json!({"code": 413, "message": PAYLOAD_TOO_LARGE, "timestamp": T1})
        );
        let doc = get(&s, "T", T2);
        assert_eq!(doc["version"], 2);
        assert_eq!(doc["state"]["desired"], json!({"a": "x".repeat(10)}));

        // Metadata does not count: deleting makes room.
        let replies = update(
            &s,
            "T",
            json!({"state": {"desired": {"a": null, "c": "z".repeat(15)}}}),
            T2,
        );
        assert_eq!(replies[0].1["version"], 3);
    }

    #[test]
    fn nesting_limit() {
        // A section `levels` deep: a path of `levels` keys down to a value, the section itself
        // holding the first.
        fn nested(levels: usize) -> Value {
            let mut v = json!(1);
            for i in (1..=levels).rev() {
                v = json!({ format!("l{i}"): v });
            }
            v
        }
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        for section in ["desired", "reported"] {
            let ok = update(&s, "T", json!({"state": {section: nested(6)}}), T0);
            assert_eq!(ok[0].0, "accepted", "{section}");
            let doc = only(
                update(&s, "T", json!({"state": {section: nested(7)}}), T0),
                "rejected",
            );
            assert_eq!(
                doc,
                json!({"code": 400, "message": TOO_DEEP, "timestamp": T0})
            );
        }
        // Arrays are levels too; empty containers add none.
        let cases = [
            (json!({"a": {"b": {"c": {"d": {"e": [1]}}}}}), true),
            (json!({"a": {"b": {"c": {"d": {"e": [[1]]}}}}}), false),
            (json!({"a": {"b": {"c": {"d": {"e": {"f": {}}}}}}}), true),
            (json!({"a": {"b": {"c": {"d": {"e": {"f": []}}}}}}), true),
            (json!({"a": {"b": {"c": {"d": {"e": {"f": [{}]}}}}}}), false),
        ];
        for (desired, ok) in cases {
            let replies = update(&s, "T", json!({"state": {"desired": desired}}), T0);
            assert_eq!(replies[0].0 == "accepted", ok, "{desired}");
        }
    }

    #[test]
    fn persists_across_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path());
            update(
                &s,
                "A",
                json!({"state": {"desired": {"x": [1, 2]}, "reported": {"x": [1]}}}),
                T0,
            );
            update(
                &s,
                "A",
                json!({"state": {"reported": {"y": {"z": true}}}}),
                T1,
            );
            update(&s, "B", json!({"state": {"reported": {"k": "v"}}}), T0);
            update(&s, "C", json!({"state": {"reported": {"k": "v"}}}), T0);
            run(&s, "C", Op::Delete, Value::Null, T1);
        }
        let before = {
            let s = open(dir.path());
            get(&s, "A", T2)
        };
        let s = open(dir.path());
        assert_eq!(s.things(), ["A", "B"]);
        let after = get(&s, "A", T2);
        assert_eq!(before, after);
        assert_eq!(
            after,
            json!({
                "state": {
                    "desired": {"x": [1, 2]},
                    "reported": {"x": [1], "y": {"z": true}},
                    "delta": {"x": [1, 2]},
                },
                "metadata": {
                    "desired": {"x": [{"timestamp": T0}, {"timestamp": T0}]},
                    "reported": {"x": [{"timestamp": T0}], "y": {"z": {"timestamp": T1}}},
                },
                "version": 2,
                "timestamp": T2,
            })
        );
        // The deleted shadow stays deleted, and its version carries on.
        assert_eq!(
            only(run(&s, "C", Op::Get, Value::Null, T2), "rejected")["code"],
            404
        );
        assert_eq!(
            update(&s, "C", json!({"state": {"desired": {}}}), T2)[0].1["version"],
            2
        );
        assert_eq!(files(dir.path()), ["A.json", "B.json", "C.json"]);
    }

    #[test]
    fn odd_thing_names_stay_inside_the_directory() {
        let names = [
            "..",
            ".",
            "a/../../escape",
            "with space & %25 ü",
            "CON",
            "name.json",
            "thing:1_a-b",
        ];
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("shadows");
        {
            let s = open(&store);
            for (i, name) in names.iter().enumerate() {
                let replies = update(&s, name, json!({"state": {"reported": {"i": i}}}), T0);
                assert_eq!(replies[0].0, "accepted", "{name}");
            }
        }
        // Only the store's own files, one per thing, nothing outside it.
        assert_eq!(files(dir.path()), ["shadows"]);
        assert_eq!(files(&store).len(), names.len());
        assert!(
            files(&store)
                .iter()
                .all(|f| f.ends_with(".json") && !f.starts_with('.'))
        );
        assert!(files(&store).contains(&"thing:1_a-b.json".to_owned()));

        let s = open(&store);
        let mut sorted: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        sorted.sort();
        assert_eq!(s.things(), sorted);
        for (i, name) in names.iter().enumerate() {
            assert_eq!(get(&s, name, T1)["state"]["reported"]["i"], i, "{name}");
        }
    }

    #[test]
    fn thing_names_that_cannot_be_stored() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let long = "é".repeat(60);
        for name in ["", long.as_str()] {
            for op in [Op::Get, Op::Update, Op::Delete] {
                let replies = s.handle(name, op, br#"{"state": {"desired": {"a": 1}}}"#, T0);
                assert_eq!(replies.len(), 1);
                assert!(
                    replies[0].topic.ends_with("/rejected"),
                    "{}",
                    replies[0].topic
                );
                let doc: Value = serde_json::from_slice(&replies[0].payload).unwrap();
                assert_eq!(doc["code"], 400);
            }
        }
        assert!(files(dir.path()).is_empty());
        // 128 bytes of AWS thing-name characters fit as they are.
        let aws_max = "a:".repeat(64);
        assert_eq!(
            update(&s, &aws_max, json!({"state": {"desired": {}}}), T0)[0].0,
            "accepted"
        );
    }

    #[test]
    fn failed_write_leaves_the_shadow_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("shadows");
        let s = open(&store);
        update(&s, "T", json!({"state": {"desired": {"a": 1}}}), T0);
        let before = get(&s, "T", T1);

        // The temporary file cannot be created (a directory is in its way, which stops root too).
        fs::create_dir(store.join(".T.json.tmp")).unwrap();
        let doc = only(
            update(
                &s,
                "T",
                json!({"state": {"desired": {"a": 2}}, "clientToken": "w"}),
                T1,
            ),
            "rejected",
        );
        assert_eq!(
            doc,
            json!({"code": 500, "message": "Internal service failure", "timestamp": T1, "clientToken": "w"})
        );
        let doc = only(run(&s, "T", Op::Delete, Value::Null, T1), "rejected");
        assert_eq!(doc["code"], 500);
        assert_eq!(get(&s, "T", T1), before);
        // A version-checked retry still sees the old version.
        fs::remove_dir(store.join(".T.json.tmp")).unwrap();
        let replies = update(
            &s,
            "T",
            json!({"state": {"desired": {"a": 2}}, "version": 1}),
            T2,
        );
        assert_eq!(replies[0].1["version"], 2);

        // The rename cannot replace the target (a directory in its place): a new shadow is not
        // created, in the cache or on disk.
        fs::create_dir(store.join("N.json")).unwrap();
        fs::write(store.join("N.json").join("keep"), b"x").unwrap();
        let doc = only(
            update(&s, "N", json!({"state": {"desired": {"a": 1}}}), T2),
            "rejected",
        );
        assert_eq!(doc["code"], 500);
        assert_eq!(s.things(), ["T"]);
        assert_eq!(
            only(run(&s, "N", Op::Get, Value::Null, T2), "rejected")["code"],
            404
        );
        assert!(!files(&store).iter().any(|f| f.ends_with(".tmp")));
    }

    #[test]
    fn store_path_turned_into_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("shadows");
        let s = open(&store);
        update(&s, "T", json!({"state": {"reported": {"a": 1}}}), T0);
        let before = get(&s, "T", T1);
        fs::remove_dir_all(&store).unwrap();
        fs::write(&store, b"not a directory").unwrap();
        let doc = only(
            update(&s, "T", json!({"state": {"reported": {"a": 2}}}), T1),
            "rejected",
        );
        assert_eq!(doc["code"], 500);
        assert_eq!(get(&s, "T", T1), before);
        assert!(Shadows::open(&store, DEFAULT_MAX_DOCUMENT_BYTES).is_err());
    }

    #[test]
    fn unreadable_files_are_skipped_and_leftovers_removed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path());
            update(&s, "good", json!({"state": {"reported": {"a": 1}}}), T0);
        }
        fs::write(dir.path().join("bad.json"), b"{ torn").unwrap();
        fs::write(
            dir.path().join("other.json"),
            br#"{"thing": "elsewhere", "version": 1}"#,
        )
        .unwrap();
        fs::write(dir.path().join(".good.json.tmp"), b"{ half").unwrap();
        fs::write(dir.path().join("README"), b"not a shadow").unwrap();
        let s = open(dir.path());
        assert_eq!(s.things(), ["good"]);
        assert_eq!(
            files(dir.path()),
            ["README", "bad.json", "good.json", "other.json"]
        );
        assert_eq!(get(&s, "good", T1)["state"]["reported"], json!({"a": 1}));
    }

    #[test]
    fn clear_removes_every_shadow() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        for thing in ["b", "a", "c"] {
            update(&s, thing, json!({"state": {"reported": {"x": 1}}}), T0);
        }
        run(&s, "c", Op::Delete, Value::Null, T0);
        fs::write(dir.path().join("stray.json"), b"?").unwrap();
        assert_eq!(s.things(), ["a", "b"]);
        s.clear().unwrap();
        assert!(s.things().is_empty());
        assert!(files(dir.path()).is_empty());
        assert_eq!(
            only(run(&s, "a", Op::Get, Value::Null, T1), "rejected")["code"],
            404
        );
        // Deleted versions are forgotten too.
        assert_eq!(
            update(&s, "c", json!({"state": {"desired": {}}}), T1)[0].1["version"],
            1
        );
        assert_eq!(open(dir.path()).things(), ["c"]);
    }

    #[test]
    fn concurrent_updates_are_serialized() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        std::thread::scope(|scope| {
            for t in 0..4 {
                let s = &s;
                scope.spawn(move || {
                    for i in 0..10 {
                        let request = json!({"state": {"reported": {format!("t{t}"): i}}});
                        assert_eq!(update(s, "T", request, T0)[0].0, "accepted");
                    }
                });
            }
        });
        let doc = get(&s, "T", T1);
        assert_eq!(doc["version"], 40);
        assert_eq!(
            doc["state"]["reported"],
            json!({"t0": 9, "t1": 9, "t2": 9, "t3": 9})
        );
    }
}
