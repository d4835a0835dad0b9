//! Greengrass-shaped log files: the core's own log at
//! `<data>/ggc/var/log/system/runtime.log`, one line per event in Greengrass's format
//! `[2019-08-15T20:51:21.259Z][INFO]-message\t{"field": "value"}`, with the level and the space
//! the group's logger definition gives the `GreengrassSystem` component.
//!
//! When the file reaches half its space it becomes `runtime.log.1` (replacing the previous
//! one), so the two files together stay within the space.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use coupler_model::api::{Logger, LoggerComponent, LoggerLevel, LoggerType};
use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;

/// Greengrass's default when no logger definition is deployed: INFO, 128 KB.
pub const DEFAULT_SPACE_KB: u64 = 128;

/// The core's log file (written through [`LogLayer`]).
#[derive(Debug)]
pub struct SystemLog {
    path: PathBuf,
    /// The most verbose level written (a `tracing::Level` as 1 = ERROR … 4 = DEBUG).
    level: AtomicU8,
    space_bytes: AtomicU64,
    file: Mutex<Option<(File, u64)>>,
    /// Lines go to stderr as `[LEVEL]-message`, for the parent to [`pump`] into the file.
    to_stderr: bool,
}

fn rank(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

fn greengrass_level(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

impl SystemLog {
    /// The log of a data dir: `<data>/ggc/var/log/system/runtime.log`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: Self::path_in(data_dir),
            level: AtomicU8::new(rank(&Level::INFO)),
            space_bytes: AtomicU64::new(DEFAULT_SPACE_KB * 1024),
            file: Mutex::new(None),
            to_stderr: false,
        }
    }

    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join("ggc/var/log/system/runtime.log")
    }

    /// A log at `path` (a connector's or function's own), INFO and 128 KB until configured.
    pub fn at(path: PathBuf) -> Self {
        Self {
            path,
            level: AtomicU8::new(rank(&Level::INFO)),
            space_bytes: AtomicU64::new(DEFAULT_SPACE_KB * 1024),
            file: Mutex::new(None),
            to_stderr: false,
        }
    }

    /// The log of a contained unit: every line goes to stderr as `[LEVEL]-message`, and
    /// the core [`pump`]s it into the unit's file with that file's level and space.
    pub fn to_stderr() -> Self {
        Self {
            path: PathBuf::new(),
            level: AtomicU8::new(rank(&Level::DEBUG)),
            space_bytes: AtomicU64::new(0),
            file: Mutex::new(None),
            to_stderr: true,
        }
    }

    /// Write one line at `level`, if the configured level lets it through.
    pub fn log(&self, level: Level, message: &str) {
        if self.to_stderr {
            let text = format!("[{}]-{message}\n", greengrass_level(&level));
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        } else if rank(&level) <= self.level.load(Ordering::Relaxed) {
            self.write_line(&line(&level, message, serde_json::Map::new()));
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Take level and space from a group's loggers (the `FileSystem`/`GreengrassSystem`
    /// one), or the defaults when it has none.
    pub fn configure(&self, loggers: &[Logger]) {
        self.configure_for(loggers, LoggerComponent::GreengrassSystem);
    }

    /// Take level and space from the group's `FileSystem` logger of `component`
    /// (`Lambda` for functions and connectors), or the defaults when it has none.
    pub fn configure_for(&self, loggers: &[Logger], component: LoggerComponent) {
        let system = loggers
            .iter()
            .find(|l| l.kind == LoggerType::FileSystem && l.component == component);
        let (level, space) = match system {
            Some(l) => (
                match l.level {
                    // FATAL has no tracing level; ERROR is the closest that still writes.
                    LoggerLevel::Fatal | LoggerLevel::Error => Level::ERROR,
                    LoggerLevel::Warn => Level::WARN,
                    LoggerLevel::Info => Level::INFO,
                    LoggerLevel::Debug => Level::DEBUG,
                },
                l.space.map_or(DEFAULT_SPACE_KB, |s| s.max(1) as u64),
            ),
            None => (Level::INFO, DEFAULT_SPACE_KB),
        };
        self.level.store(rank(&level), Ordering::Relaxed);
        self.space_bytes.store(space * 1024, Ordering::Relaxed);
    }

    fn write_line(&self, line: &str) {
        let mut guard = self.file.lock();
        let limit = self.space_bytes.load(Ordering::Relaxed) / 2;
        if guard
            .as_ref()
            .is_some_and(|(_, size)| size + line.len() as u64 > limit)
        {
            *guard = None;
            let _ = std::fs::rename(&self.path, self.path.with_extension("log.1"));
        }
        if guard.is_none() {
            if let Some(dir) = self.path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            if let Ok(f) = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
            {
                let size = f.metadata().map(|m| m.len()).unwrap_or(0);
                *guard = Some((f, size));
            }
        }
        if let Some((f, size)) = guard.as_mut()
            && f.write_all(line.as_bytes()).is_ok()
        {
            *size += line.len() as u64;
        }
    }
}

/// Write what a child process prints into `log`, a line at a time: `[LEVEL]-message` at
/// that level (how contained units and the Python runtime write), anything else at
/// `default`. Ends with the stream.
pub async fn pump(stream: impl tokio::io::AsyncRead + Unpin, log: Arc<SystemLog>, default: Level) {
    use tokio::io::AsyncBufReadExt as _;
    let mut lines = tokio::io::BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let (level, text) = match line.split_once("]-") {
            Some((tag, rest)) if tag.starts_with('[') => match &tag[1..] {
                "DEBUG" => (Level::DEBUG, rest),
                "INFO" => (Level::INFO, rest),
                "WARN" => (Level::WARN, rest),
                "ERROR" | "FATAL" => (Level::ERROR, rest),
                _ => (default, line.as_str()),
            },
            _ => (default, line.as_str()),
        };
        log.log(level, text);
    }
}

/// Collects an event's message and fields.
#[derive(Default)]
struct Fields {
    message: String,
    rest: serde_json::Map<String, serde_json::Value>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.rest.insert(field.name().to_owned(), value.into());
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.rest.insert(field.name().to_owned(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.rest.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.rest.insert(field.name().to_owned(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.rest.insert(field.name().to_owned(), text.into());
        }
    }
}

/// The `tracing` layer that writes to a shared [`SystemLog`].
#[derive(Debug, Clone)]
pub struct LogLayer(pub Arc<SystemLog>);

impl<S: Subscriber> tracing_subscriber::Layer<S> for LogLayer {
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        self.0.on_event(event, ctx);
    }
}

impl SystemLog {
    fn on_event<S: Subscriber>(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = event.metadata().level();
        if rank(level) > self.level.load(Ordering::Relaxed) {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.write_line(&line(level, &fields.message, fields.rest));
    }
}

/// One line in Greengrass's format: `[2026-11-26T13:50:00.123Z][INFO]-message\t{fields}`.
fn line(level: &Level, message: &str, rest: serde_json::Map<String, serde_json::Value>) -> String {
    let now = time::OffsetDateTime::now_utc();
    let mut line = format!(
        "[{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z][{}]-{}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond(),
        greengrass_level(level),
        message
    );
    if !rest.is_empty() {
        let _ = write!(line, "\t{}", serde_json::Value::Object(rest));
    }
    line.push('\n');
    line
}
