//! User functions (Greengrass "Lambda" functions): their code unpacked at deployment, their
//! worker processes started, supervised and stopped, and their work handed out over the
//! Lambda IPC ([`ipc`]).
//!
//! Work reaches a function two ways: messages the router puts in its inbox (subscriptions,
//! `Event` invocations) and direct invocations through the IPC (`lambda.invoke`). One
//! dispatcher task per function takes the next item and hands it to a worker that is waiting
//! in `GET …/work`: a pinned function has one worker, so its items run one at a time in
//! order; an on-demand function starts workers while items wait, up to the core's limit.

pub mod code;
pub mod ipc;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use coupler_model::Entity;
use coupler_model::api::{self, EncodingType, IsolationMode};
use coupler_model::arn::SecretArn;
use coupler_model::validate::{FunctionSpec, ValidatedGroup};
use coupler_router::{Inbox, Message, Router};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tracing::Level;

pub use code::{CodeSource, FunctionCode};

use crate::isolation::{Bind, SandboxSpec};
use crate::logs::SystemLog;
use crate::secrets::{FetchedSecret, SecretSource};
use crate::{PreparedUnits, Units};

/// Greengrass's `runtime.maxConcurrentLimit`: workers of on-demand functions at once.
pub const DEFAULT_MAX_ON_DEMAND_WORKERS: usize = 25;
/// Direct invocations waiting for one function; more are refused with "queue full".
const DIRECT_QUEUE: usize = 1024;
/// Backoff before starting a worker again after workers that died before they were ready
/// (an import error, a missing interpreter): doubling from the first, up to the max.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A worker that died after it was ready (a timeout, a crash in a handler) is replaced after
/// this pause, so that even a function that kills itself at once cannot spin.
const REPLACE_AFTER: Duration = Duration::from_millis(100);
/// An on-demand invocation fails (`Unhandled`) after this many workers in a row died
/// before they were ready.
const MAX_FAILED_STARTS: u32 = 3;

/// Settings of the function host.
#[derive(Clone)]
pub struct FunctionHostConfig {
    /// The core's data dir: code goes to `<data>/ggc/deployment/lambda`, the Python runtime
    /// to `<data>/ggc/runtime/python`, logs to `<data>/ggc/var/log/user/<region>/<account>`.
    pub data_dir: PathBuf,
    pub region: String,
    /// Where the Lambda IPC listens (`GG_DAEMON_PORT` is its port).
    pub ipc_addr: SocketAddr,
    /// The Python 3 interpreter.
    pub python: PathBuf,
    pub max_on_demand_workers: usize,
    /// Run functions whose mode is GreengrassContainer without isolation when this host
    /// cannot isolate them (operator's choice).
    pub allow_uncontained: bool,
    /// The `coupler` binary that runs `sandbox-exec`, when this host can isolate units;
    /// otherwise why it cannot ([`crate::isolation::probe`]).
    pub isolation: Result<PathBuf, String>,
    /// Allow RunAs uid or gid 0 (`allowFunctionsToRunAsRoot`).
    pub allow_root: bool,
    pub secrets: Option<Arc<dyn SecretSource>>,
    pub code: Arc<dyn CodeSource>,
    /// The local shadow service the SDK's shadow calls reach.
    pub shadows: Option<Arc<crate::shadow_service::ShadowService>>,
}

impl std::fmt::Debug for FunctionHostConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionHostConfig")
            .field("data_dir", &self.data_dir)
            .field("region", &self.region)
            .field("ipc_addr", &self.ipc_addr)
            .field("python", &self.python)
            .field("max_on_demand_workers", &self.max_on_demand_workers)
            .field("allow_uncontained", &self.allow_uncontained)
            .finish_non_exhaustive()
    }
}

/// How an invocation ended, as the invoker reads it (`X-Amz-Function-Error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionError {
    None,
    /// Reported by the function's handler.
    Handled,
    /// Detected by the core: timeout, crash, a payload that could not be delivered.
    Unhandled,
}

impl FunctionError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Handled => "Handled",
            Self::Unhandled => "Unhandled",
        }
    }
}

/// A finished invocation.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub payload: Bytes,
    pub error: FunctionError,
}

impl Outcome {
    fn unhandled(message: &str) -> Self {
        Self {
            payload: Bytes::from(serde_json::json!({ "errorMessage": message }).to_string()),
            error: FunctionError::Unhandled,
        }
    }
}

/// One unit of work for a function.
#[derive(Debug)]
struct WorkItem {
    id: String,
    payload: Bytes,
    /// Base64 JSON, passed to the handler as `context.client_context`.
    client_context: String,
    /// Where the result goes, for a `RequestResponse` invocation.
    reply: Option<oneshot::Sender<Outcome>>,
}

/// Worker states, as the health API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    Starting,
    Waiting,
    Working,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "Starting",
            Self::Waiting => "Waiting",
            Self::Working => "Working",
        }
    }
}

/// An invocation a worker is running.
struct InFlight {
    id: String,
    reply: Option<oneshot::Sender<Outcome>>,
    timer: tokio::task::JoinHandle<()>,
}

struct Worker {
    id: u64,
    pid: AtomicU64,
    state: Mutex<WorkerState>,
    current: Mutex<Option<InFlight>>,
    kill: Notify,
    /// What the worker reported when it could not initialize.
    init_error: Mutex<Option<String>>,
}

/// A worker waiting in `GET …/work` for its next item.
struct Idle {
    tx: oneshot::Sender<WorkItem>,
}

/// Everything a function instance was built from. A deployment that leaves it unchanged
/// keeps the instance running: no restart, no lost queue.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Setup {
    spec: FunctionSpec,
    code_sha256: String,
    handler: String,
    secrets: Vec<FetchedSecret>,
    core_thing: String,
    loggers: Vec<api::Logger>,
}

/// Counters of one function, for `/metrics` and `coupler status`.
#[derive(Debug, Default)]
struct Counters {
    invocations: AtomicU64,
    handled_errors: AtomicU64,
    unhandled_errors: AtomicU64,
    timeouts: AtomicU64,
    queue_full: AtomicU64,
    not_json: AtomicU64,
    restarts: AtomicU64,
}

/// One running function's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionStats {
    pub arn: String,
    pub pinned: bool,
    pub workers: usize,
    pub queued: usize,
    pub invocations: u64,
    pub handled_errors: u64,
    pub unhandled_errors: u64,
    pub timeouts: u64,
    /// Direct invocations refused because the function's queue was full.
    pub queue_full: u64,
    /// Messages not delivered to a `json` function because they were not JSON.
    pub not_json: u64,
    pub restarts: u64,
}

/// A deployed function.
pub(crate) struct Function {
    setup: Setup,
    arn: Arc<str>,
    name: String,
    timeout: Duration,
    json: bool,
    code_dir: PathBuf,
    env: Vec<(String, String)>,
    exec_args: Vec<String>,
    run_as: Option<(u32, u32)>,
    /// GreengrassContainer: how the worker is contained (it runs as `run_as` inside).
    sandbox: Option<SandboxSpec>,
    log: Arc<SystemLog>,
    inbox: Arc<Inbox>,
    direct_tx: mpsc::Sender<WorkItem>,
    direct_rx: Mutex<Option<mpsc::Receiver<WorkItem>>>,
    idle: Mutex<VecDeque<Idle>>,
    idle_changed: Notify,
    workers: Mutex<HashMap<u64, Arc<Worker>>>,
    starting: AtomicUsize,
    /// Workers in a row that died before they were ready, and why the last one did.
    failed_starts: AtomicU32,
    last_failure: Mutex<String>,
    stop: watch::Sender<bool>,
    counters: Counters,
}

impl Function {
    fn pinned(&self) -> bool {
        self.setup.spec.pinned
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// How long to wait before starting the next worker.
    fn start_backoff(&self) -> Duration {
        match self.failed_starts.load(Ordering::Acquire) {
            0 => Duration::ZERO,
            n => (FIRST_BACKOFF * 2u32.pow((n - 1).min(7))).min(MAX_BACKOFF),
        }
    }

    /// Whether `target` (as an invoker wrote it) names this function: its exact ARN, or
    /// `NAME:QUALIFIER` as the SDK builds it from a bare name and a qualifier.
    fn answers_to(&self, target: &str) -> bool {
        if *self.arn == *target {
            return true;
        }
        let qualifier = self.arn.rsplit(':').next().unwrap_or_default();
        target.split_once(':') == Some((self.name.as_str(), qualifier))
    }

    /// A message from the router as a work item; `None` (counted, logged) when a `json`
    /// function would receive something that is not JSON.
    fn item_from_message(&self, msg: Message) -> Option<WorkItem> {
        if self.json && !msg.payload.is_empty() && !is_json(&msg.payload) {
            self.counters.not_json.fetch_add(1, Ordering::Relaxed);
            self.log.log(
                Level::WARN,
                &format!(
                    "message on topic {} from {} not delivered: the function's EncodingType is json and the payload is not JSON",
                    msg.topic, msg.source
                ),
            );
            return None;
        }
        let context = serde_json::json!({ "custom": { "subject": msg.topic.as_str() } });
        Some(WorkItem {
            id: uuid::Uuid::new_v4().to_string(),
            payload: msg.payload,
            client_context: base64::engine::general_purpose::STANDARD.encode(context.to_string()),
            reply: None,
        })
    }

    fn stats(&self) -> FunctionStats {
        let c = &self.counters;
        FunctionStats {
            arn: self.arn.to_string(),
            pinned: self.pinned(),
            workers: self.workers.lock().len(),
            queued: self.inbox.len() + (DIRECT_QUEUE - self.direct_tx.capacity()),
            invocations: c.invocations.load(Ordering::Relaxed),
            handled_errors: c.handled_errors.load(Ordering::Relaxed),
            unhandled_errors: c.unhandled_errors.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
            queue_full: c.queue_full.load(Ordering::Relaxed),
            not_json: c.not_json.load(Ordering::Relaxed),
            restarts: c.restarts.load(Ordering::Relaxed),
        }
    }
}

fn is_json(payload: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok()
}

/// The function and worker a token belongs to.
type Caller = (Arc<Function>, Arc<Worker>);

/// State shared by the host and the IPC server.
pub(crate) struct Shared {
    router: Arc<Router>,
    config: FunctionHostConfig,
    runtime_dir: PathBuf,
    handle: tokio::runtime::Handle,
    functions: RwLock<Vec<Arc<Function>>>,
    /// Worker tokens (`AWS_CONTAINER_AUTHORIZATION_TOKEN`) → function and worker.
    tokens: RwLock<HashMap<String, Caller>>,
    results: Mutex<HashMap<String, Slot>>,
    on_demand_workers: AtomicUsize,
    next_worker: AtomicU64,
    python_install: std::sync::OnceLock<Result<PythonInstall, String>>,
}

/// A `RequestResponse` invocation's result, kept until the invoker fetches it.
enum Slot {
    Done(Outcome, Instant),
    Waiting {
        rx: oneshot::Receiver<Outcome>,
        wait: Duration,
        since: Instant,
    },
}

/// Results nobody fetched are forgotten after this long.
const RESULT_TTL: Duration = Duration::from_secs(15 * 60);
/// At most this many results wait to be fetched; more invocations are refused.
const MAX_RESULTS: usize = 16 * 1024;

impl Shared {
    fn function(&self, target: &str) -> Option<Arc<Function>> {
        self.functions
            .read()
            .iter()
            .find(|f| f.answers_to(target))
            .cloned()
    }

    /// Keep `slot` for invocation `id`; false when too many results wait.
    fn keep_result(&self, id: &str, slot: Slot) -> bool {
        let mut results = self.results.lock();
        if results.len() >= MAX_RESULTS {
            results.retain(|_, s| match s {
                Slot::Done(_, since) | Slot::Waiting { since, .. } => since.elapsed() < RESULT_TTL,
            });
            if results.len() >= MAX_RESULTS {
                return false;
            }
        }
        results.insert(id.to_owned(), slot);
        true
    }

    /// Start one worker of `f`.
    fn spawn_worker(self: &Arc<Self>, f: &Arc<Function>) {
        let worker = Arc::new(Worker {
            id: self.next_worker.fetch_add(1, Ordering::Relaxed),
            pid: AtomicU64::new(0),
            state: Mutex::new(WorkerState::Starting),
            current: Mutex::new(None),
            kill: Notify::new(),
            init_error: Mutex::new(None),
        });
        f.starting.fetch_add(1, Ordering::AcqRel);
        if !f.pinned() {
            self.on_demand_workers.fetch_add(1, Ordering::AcqRel);
        }
        f.workers.lock().insert(worker.id, worker.clone());
        let shared = self.clone();
        let f = f.clone();
        self.handle.spawn(async move {
            let status = shared.run_worker(&f, &worker).await;
            shared.worker_gone(&f, &worker, &status);
            if f.pinned() && !f.stopping() {
                f.counters.restarts.fetch_add(1, Ordering::Relaxed);
                let backoff = f.start_backoff().max(REPLACE_AFTER);
                f.log.log(
                    Level::INFO,
                    &format!("restarting the worker in {} ms", backoff.as_millis()),
                );
                tokio::select! {
                    () = tokio::time::sleep(backoff) => shared.spawn_worker(&f),
                    () = f.stopped() => {}
                }
            }
        });
    }

    /// Run one worker process to its end; the reason it ended.
    async fn run_worker(self: &Arc<Self>, f: &Arc<Function>, worker: &Arc<Worker>) -> String {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut cmd = match (&f.sandbox, &self.config.isolation) {
            (Some(spec), Ok(exe)) => {
                let python = match self.python_install() {
                    Ok(p) => p,
                    Err(why) => {
                        f.log.log(Level::ERROR, &why);
                        return why;
                    }
                };
                let mut spec = spec.clone();
                spec.binds.extend(python.dirs.iter().map(Bind::ro));
                let mut c = tokio::process::Command::new(exe);
                c.arg("sandbox-exec")
                    .arg("--spec")
                    .arg(serde_json::to_string(&spec).unwrap_or_default())
                    .arg("--")
                    .arg(&python.executable);
                c
            }
            _ => {
                let mut c = tokio::process::Command::new(&self.config.python);
                if let Some((uid, gid)) = f.run_as {
                    c.uid(uid).gid(gid);
                }
                c
            }
        };
        cmd.arg("-u")
            .arg(self.runtime_dir.join(code::RUNTIME_MAIN))
            .args(&f.exec_args)
            .current_dir(&f.code_dir)
            .env_clear()
            .envs(
                ["PATH", "LANG", "LC_ALL", "HOME", "TZ"]
                    .iter()
                    .filter_map(|k| std::env::var(k).ok().map(|v| (*k, v))),
            )
            .envs(f.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PYTHONPATH", &self.runtime_dir)
            .env(
                "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                format!("Basic {token}"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let why = format!(
                    "cannot start a worker with {}: {e}",
                    self.config.python.display()
                );
                f.log.log(Level::ERROR, &why);
                return why;
            }
        };
        let pid = child.id().unwrap_or_default();
        worker.pid.store(u64::from(pid), Ordering::Relaxed);
        self.tokens
            .write()
            .insert(format!("Basic {token}"), (f.clone(), worker.clone()));
        f.log.log(
            Level::INFO,
            &format!("worker {} started (pid {pid})", worker.id),
        );
        let out = child.stdout.take().map(|o| {
            self.handle
                .spawn(crate::logs::pump(o, f.log.clone(), Level::INFO))
        });
        let err = child.stderr.take().map(|e| {
            self.handle
                .spawn(crate::logs::pump(e, f.log.clone(), Level::ERROR))
        });
        let status = tokio::select! {
            s = child.wait() => s,
            () = worker.kill.notified() => {
                // A contained worker's `sandbox-exec` ends its unit and removes its
                // cgroups on SIGTERM; SIGKILL is the fallback.
                if f.sandbox.is_some() {
                    crate::isolation::terminate(&mut child).await
                } else {
                    let _ = child.start_kill();
                    child.wait().await
                }
            }
        };
        self.tokens.write().remove(&format!("Basic {token}"));
        // The pipes end with the process; their last lines are in the log before the exit.
        for pump in [out, err].into_iter().flatten() {
            let _ = pump.await;
        }
        match status {
            Ok(s) => format!("worker {} exited: {s}", worker.id),
            Err(e) => format!("worker {}: {e}", worker.id),
        }
    }

    /// Forget a worker that ended; its invocation, if any, fails as `Unhandled`.
    fn worker_gone(&self, f: &Function, worker: &Worker, why: &str) {
        f.workers.lock().remove(&worker.id);
        if *worker.state.lock() == WorkerState::Starting {
            f.starting.fetch_sub(1, Ordering::AcqRel);
            f.failed_starts.fetch_add(1, Ordering::AcqRel);
            *f.last_failure.lock() = worker
                .init_error
                .lock()
                .take()
                .unwrap_or_else(|| why.to_owned());
        }
        if !f.pinned() {
            self.on_demand_workers.fetch_sub(1, Ordering::AcqRel);
        }
        let level = if f.stopping() {
            Level::INFO
        } else {
            Level::ERROR
        };
        f.log.log(level, why);
        if let Some(inflight) = worker.current.lock().take() {
            inflight.timer.abort();
            f.counters.unhandled_errors.fetch_add(1, Ordering::Relaxed);
            if let Some(reply) = inflight.reply {
                let _ = reply.send(Outcome::unhandled(&format!(
                    "the function's worker ended during the invocation ({why})"
                )));
            }
        }
        // A waiting on-demand item may need a new worker now.
        f.idle_changed.notify_one();
    }

    /// Hand `item` to a waiting worker, starting one if the function may; false when the
    /// function stops first.
    async fn deliver(self: &Arc<Self>, f: &Arc<Function>, mut item: WorkItem) -> bool {
        loop {
            let idle = f.idle.lock().pop_front();
            if let Some(idle) = idle {
                match idle.tx.send(item) {
                    Ok(()) => return true,
                    // That worker went away while waiting: try the next.
                    Err(back) => {
                        item = back;
                        continue;
                    }
                }
            }
            let changed = f.idle_changed.notified();
            if !f.idle.lock().is_empty() {
                continue;
            }
            if !f.pinned()
                && f.starting.load(Ordering::Acquire) == 0
                && self.on_demand_workers.load(Ordering::Acquire)
                    < self.config.max_on_demand_workers
            {
                if f.failed_starts.load(Ordering::Acquire) >= MAX_FAILED_STARTS {
                    // Workers cannot start: the invocation fails rather than wait forever,
                    // and the next one tries again.
                    f.failed_starts.store(0, Ordering::Release);
                    let why = f.last_failure.lock().clone();
                    f.counters.unhandled_errors.fetch_add(1, Ordering::Relaxed);
                    f.log.log(
                        Level::ERROR,
                        &format!(
                            "invocation {} failed: no worker could start ({why})",
                            item.id
                        ),
                    );
                    if let Some(reply) = item.reply {
                        let _ = reply.send(Outcome::unhandled(&format!(
                            "the function's worker could not start: {why}; see the function's log"
                        )));
                    }
                    return true;
                }
                let backoff = f.start_backoff();
                if !backoff.is_zero() {
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = f.stopped() => return false,
                    }
                }
                self.spawn_worker(f);
            }
            tokio::select! {
                () = changed => {}
                () = f.stopped() => return false,
            }
        }
    }

    /// The dispatcher of one function: the next item from its inbox or its direct queue,
    /// handed to a worker, until the function stops.
    async fn dispatch(self: Arc<Self>, f: Arc<Function>, mut direct: mpsc::Receiver<WorkItem>) {
        // Attached, a full inbox slows its senders instead of dropping (see WhenFull).
        let _attached = f.inbox.attach();
        loop {
            let item = tokio::select! {
                biased;
                () = f.stopped() => return,
                Some(item) = direct.recv() => item,
                msg = f.inbox.recv() => match f.item_from_message(msg) {
                    Some(item) => item,
                    None => continue,
                },
            };
            if !self.deliver(&f, item).await {
                return;
            }
        }
    }

    /// A worker took `item`: it runs until its result arrives or the timeout ends it.
    fn begin(self: &Arc<Self>, f: &Arc<Function>, worker: &Arc<Worker>, item: &mut WorkItem) {
        *worker.state.lock() = WorkerState::Working;
        let timer = {
            let (f, worker, id) = (f.clone(), worker.clone(), item.id.clone());
            self.handle.spawn(async move {
                tokio::time::sleep(f.timeout).await;
                let timed_out = {
                    let mut current = worker.current.lock();
                    match current.as_ref() {
                        Some(c) if c.id == id => current.take(),
                        _ => None,
                    }
                };
                if let Some(inflight) = timed_out {
                    f.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                    f.counters.unhandled_errors.fetch_add(1, Ordering::Relaxed);
                    let message = format!(
                        "Task timed out after {:.2} seconds",
                        f.timeout.as_secs_f64()
                    );
                    f.log.log(
                        Level::ERROR,
                        &format!(
                            "{message} (invocation {id}); worker {} is replaced",
                            worker.id
                        ),
                    );
                    if let Some(reply) = inflight.reply {
                        let _ = reply.send(Outcome::unhandled(&message));
                    }
                    worker.kill.notify_one();
                }
            })
        };
        *worker.current.lock() = Some(InFlight {
            id: item.id.clone(),
            reply: item.reply.take(),
            timer,
        });
    }

    /// A worker's result for invocation `id`; false when it runs no such invocation (it
    /// timed out already).
    fn finish(&self, f: &Function, worker: &Worker, id: &str, outcome: Outcome) -> bool {
        let inflight = {
            let mut current = worker.current.lock();
            match current.as_ref() {
                Some(c) if c.id == id => current.take(),
                _ => None,
            }
        };
        let Some(inflight) = inflight else {
            return false;
        };
        inflight.timer.abort();
        f.counters.invocations.fetch_add(1, Ordering::Relaxed);
        if outcome.error == FunctionError::Handled {
            f.counters.handled_errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(reply) = inflight.reply {
            let _ = reply.send(outcome);
        }
        true
    }

    fn stop_function(&self, f: &Function) {
        let _ = f.stop.send(true);
        f.idle.lock().clear();
        for w in f.workers.lock().values() {
            w.kill.notify_one();
        }
        f.log.log(Level::INFO, "function stopped");
    }
}

/// Copy a worker's output into the function's log, a line at a time. A line the Python
/// runtime's logging wrote starts with its level (`[INFO]-…`); other lines take `default`.
/// The functions of the active group.
pub struct FunctionHost {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FunctionHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionHost")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl FunctionHost {
    /// A host whose workers reach the IPC at `config.ipc_addr`. Call inside a Tokio runtime.
    pub fn new(router: Arc<Router>, config: FunctionHostConfig) -> Result<Self, String> {
        let runtime_dir = config.data_dir.join("ggc/runtime/python");
        code::write_python_runtime(&runtime_dir)?;
        Ok(Self {
            shared: Arc::new(Shared {
                router,
                config,
                runtime_dir,
                handle: tokio::runtime::Handle::current(),
                functions: RwLock::new(Vec::new()),
                tokens: RwLock::new(HashMap::new()),
                results: Mutex::new(HashMap::new()),
                on_demand_workers: AtomicUsize::new(0),
                next_worker: AtomicU64::new(1),
                python_install: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Serve the Lambda IPC on `listener` until `shutdown` completes.
    pub async fn serve_ipc(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, ipc::router(self.shared.clone()))
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// The functions running now and their figures.
    pub fn stats(&self) -> Vec<FunctionStats> {
        self.shared
            .functions
            .read()
            .iter()
            .map(|f| f.stats())
            .collect()
    }

    /// Check and build one function of `group`; the error names it.
    fn build(
        &self,
        spec: &FunctionSpec,
        group: &ValidatedGroup,
        existing: &[Arc<Function>],
    ) -> Result<Arc<Function>, (String, String)> {
        let arn = spec.arn.as_str();
        let fail = |code: &str, why: String| (code.to_owned(), format!("function {arn}: {why}"));
        let config = &self.shared.config;
        let contained = match (&spec.isolation, &config.isolation) {
            (IsolationMode::NoContainer, _) => false,
            (IsolationMode::GreengrassContainer, Ok(_)) => true,
            (IsolationMode::GreengrassContainer, Err(_)) if config.allow_uncontained => false,
            (IsolationMode::GreengrassContainer, Err(why)) => {
                return Err(fail(
                    "IsolationUnavailable",
                    format!(
                        "IsolationMode is GreengrassContainer, and this host cannot isolate it: {why}. Set the function's (or the group default's) IsolationMode to NoContainer, or start the core with --allow-uncontained to run it without isolation"
                    ),
                ));
            }
        };
        let run_as = match spec.run_as {
            None => None,
            Some(r) => {
                let uid = r.uid.unwrap_or(0);
                let gid = r.gid.unwrap_or(0);
                if (uid == 0 || gid == 0) && !config.allow_root {
                    return Err(fail(
                        "RunAsRootNotAllowed",
                        "RunAs is root, which this core allows only with --allow-functions-to-run-as-root".into(),
                    ));
                }
                let (uid, gid) = (
                    u32::try_from(uid).map_err(|_| fail("InvalidRunAs", format!("uid {uid}")))?,
                    u32::try_from(gid).map_err(|_| fail("InvalidRunAs", format!("gid {gid}")))?,
                );
                Some((uid, gid))
            }
        };
        let code = config
            .code
            .code(arn)
            .map_err(|e| fail("FunctionCodeUnavailable", e))?;
        if code::interpreter(&code.runtime).is_none() {
            return Err(fail(
                "UnsupportedRuntime",
                format!(
                    "runtime {} cannot run on this core; it runs python3.7 and later Python 3 runtimes",
                    code.runtime
                ),
            ));
        }
        let handler = spec
            .config
            .executable
            .clone()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| code.handler.clone());
        let resources = &group.resources;
        let mut secrets = Vec::new();
        for policy in spec
            .config
            .environment
            .as_ref()
            .and_then(|e| e.resource_access_policies.as_ref())
            .into_iter()
            .flatten()
        {
            let Some(r) = resources.iter().find(|r| r.id == policy.resource_id) else {
                continue;
            };
            if let Some(api::SecretsManagerSecretResourceData {
                arn: Some(secret_arn),
                additional_staging_labels_to_download: labels,
            }) = &r
                .resource_data_container
                .secrets_manager_secret_resource_data
            {
                secrets.push(
                    crate::secrets::fetch(
                        config.secrets.as_deref(),
                        &r.id,
                        secret_arn,
                        labels.as_deref().unwrap_or_default(),
                    )
                    .map_err(|e| fail("SecretUnavailable", e))?,
                );
            }
        }
        let setup = Setup {
            spec: spec.clone(),
            code_sha256: code.code_sha256.clone(),
            handler: handler.clone(),
            secrets,
            core_thing: group.core.thing.thing_name().to_owned(),
            loggers: group.loggers.clone(),
        };
        if let Some(f) = existing.iter().find(|f| f.setup == setup) {
            return Ok(f.clone());
        }
        let name = spec.arn.function_name().to_owned();
        let account = arn.split(':').nth(4).unwrap_or("aws").to_owned();
        let code_dir = code::unpack(
            &config.data_dir.join("ggc/deployment/lambda").join(&account),
            &name,
            &code,
        )
        .map_err(|e| fail("FunctionCodeUnavailable", e))?;
        let log = Arc::new(SystemLog::at(config.data_dir.join(format!(
            "ggc/var/log/user/{}/{account}/{name}.log",
            config.region
        ))));
        log.configure_for(&group.loggers, api::LoggerComponent::Lambda);
        let timeout = Duration::from_secs(spec.timeout_secs.max(1) as u64);
        let json = spec.encoding == EncodingType::Json;
        let mut env = vec![
            ("MY_FUNCTION_ARN".to_owned(), arn.to_owned()),
            (
                "ROUTER_FUNCTION_ARN".into(),
                "arn:aws:lambda:::function:GGRouter".into(),
            ),
            (
                "SHADOW_FUNCTION_ARN".into(),
                "arn:aws:lambda:::function:GGShadowService".into(),
            ),
            (
                "SECRETS_MANAGER_FUNCTION_ARN".into(),
                "arn:aws:lambda:::function:GGSecretManager:1".into(),
            ),
            ("GG_DAEMON_PORT".into(), config.ipc_addr.port().to_string()),
            ("GGC_MAX_INTERFACE_VERSION".into(), "1.5".into()),
            (
                "ENCODING_TYPE".into(),
                if json { "json" } else { "binary" }.into(),
            ),
            ("AWS_IOT_THING_NAME".into(), setup.core_thing.clone()),
            ("AWS_REGION".into(), config.region.clone()),
            ("AWS_DEFAULT_REGION".into(), config.region.clone()),
            (
                "AWS_GG_RESOURCE_PREFIX".into(),
                code_dir.display().to_string(),
            ),
            ("LOG_LEVEL".into(), lambda_log_level(&group.loggers).into()),
            ("COUPLER_FUNCTION_HANDLER".into(), handler),
            (
                "COUPLER_FUNCTION_DIR".into(),
                code_dir.display().to_string(),
            ),
            (
                "COUPLER_FUNCTION_TIMEOUT_MS".into(),
                timeout.as_millis().to_string(),
            ),
        ];
        // The user's variables come last, so that they win (as the proxy settings do in
        // Greengrass).
        if let Some(vars) = spec
            .config
            .environment
            .as_ref()
            .and_then(|e| e.variables.as_ref())
        {
            env.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let exec_args = spec
            .config
            .exec_args
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let sandbox = contained
            .then(|| sandbox_spec(spec, group, &code_dir, &self.shared.runtime_dir, run_as))
            .transpose()
            .map_err(|e| fail("ResourceUnavailable", e))?;
        let (direct_tx, direct_rx) = mpsc::channel(DIRECT_QUEUE);
        let entity = Entity::function(arn);
        Ok(Arc::new(Function {
            setup,
            arn: Arc::from(arn),
            name,
            timeout,
            json,
            code_dir,
            env,
            exec_args,
            run_as,
            sandbox,
            log,
            inbox: self.shared.router.inbox(&entity),
            direct_tx,
            direct_rx: Mutex::new(Some(direct_rx)),
            idle: Mutex::new(VecDeque::new()),
            idle_changed: Notify::new(),
            workers: Mutex::new(HashMap::new()),
            starting: AtomicUsize::new(0),
            failed_starts: AtomicU32::new(0),
            last_failure: Mutex::new(String::new()),
            stop: watch::Sender::new(false),
            counters: Counters::default(),
        }))
    }

    /// Start a function built by [`Self::build`]: its dispatcher, and its worker if pinned.
    fn start(&self, f: &Arc<Function>) {
        let Some(direct) = f.direct_rx.lock().take() else {
            return; // already running: kept across the deployment
        };
        f.log.log(
            Level::INFO,
            &format!(
                "function {} deployed ({}, timeout {} s)",
                f.arn,
                if f.pinned() { "pinned" } else { "on-demand" },
                f.timeout.as_secs()
            ),
        );
        let shared = self.shared.clone();
        self.shared.handle.spawn(shared.dispatch(f.clone(), direct));
        if f.pinned() {
            self.shared.spawn_worker(f);
        }
    }
}

/// How a GreengrassContainer function's worker is contained: its code, the Python runtime
/// and the volume and device resources its ResourceAccessPolicies grant (with their
/// permission), its MemorySize, and its RunAs identity.
fn sandbox_spec(
    spec: &FunctionSpec,
    group: &ValidatedGroup,
    code_dir: &Path,
    runtime_dir: &Path,
    run_as: Option<(u32, u32)>,
) -> Result<SandboxSpec, String> {
    let env = spec.config.environment.as_ref();
    let mut binds = vec![Bind::ro(code_dir), Bind::ro(runtime_dir)];
    let mut groups = Vec::new();
    for policy in env
        .and_then(|e| e.resource_access_policies.as_ref())
        .into_iter()
        .flatten()
    {
        let Some(r) = group.resources.iter().find(|r| r.id == policy.resource_id) else {
            continue;
        };
        let writable = policy.permission == Some(api::Permission::Rw);
        let data = &r.resource_data_container;
        let (source, target, owner) = if let Some(v) = &data.local_volume_resource_data {
            (
                v.source_path.clone(),
                v.destination_path.clone(),
                &v.group_owner_setting,
            )
        } else if let Some(d) = &data.local_device_resource_data {
            (
                d.source_path.clone(),
                d.source_path.clone(),
                &d.group_owner_setting,
            )
        } else {
            continue;
        };
        let (Some(source), Some(target)) = (source, target) else {
            continue;
        };
        if !Path::new(&source).exists() {
            return Err(format!(
                "resource {:?}: {source} does not exist on this core",
                r.id
            ));
        }
        if let Some(gid) = crate::isolation::group_owner(owner.as_ref(), Path::new(&source))? {
            groups.push(gid);
        }
        binds.push(Bind {
            source: source.into(),
            target: target.into(),
            writable,
        });
    }
    groups.sort_unstable();
    groups.dedup();
    Ok(SandboxSpec {
        unit: spec.arn.function_name().to_owned(),
        memory_bytes: spec
            .memory_kb
            .filter(|kb| *kb > 0)
            .map(|kb| kb as u64 * 1024),
        pids_max: crate::isolation::DEFAULT_PIDS_MAX,
        run_as,
        groups,
        binds,
        sysfs: env.and_then(|e| e.access_sysfs).unwrap_or(false),
        workdir: code_dir.to_owned(),
    })
}

/// The Python installation that runs contained workers: its real executable (not a shim),
/// and the directories it needs to see.
struct PythonInstall {
    executable: PathBuf,
    dirs: Vec<PathBuf>,
}

impl Shared {
    /// Asked of the interpreter once (`sys.executable`, `sys.prefix`, `sys.base_prefix`).
    fn python_install(&self) -> Result<&PythonInstall, String> {
        self.python_install
            .get_or_init(|| {
                let out = std::process::Command::new(&self.config.python)
                    .args(["-c", "import sys; print(sys.executable); print(sys.prefix); print(sys.base_prefix)"])
                    .output()
                    .map_err(|e| format!("cannot run {}: {e}", self.config.python.display()))?;
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let mut lines = text.lines().map(PathBuf::from);
                let executable = lines
                    .next()
                    .filter(|p| p.is_absolute())
                    .ok_or_else(|| format!("{} did not say where it is", self.config.python.display()))?;
                let mut dirs: Vec<PathBuf> = lines.filter(|p| p.is_absolute()).collect();
                if let Some(bin) = executable.parent() {
                    dirs.push(bin.to_owned());
                }
                // What the system paths already show needs no bind of its own.
                dirs.retain(|d| !["/usr", "/bin", "/lib"].iter().any(|s| d.starts_with(s)) && d != Path::new("/"));
                dirs.sort();
                dirs.dedup();
                Ok(PythonInstall { executable, dirs })
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// The level the group's `Lambda` logger sets, for the runtime's own logging.
fn lambda_log_level(loggers: &[api::Logger]) -> &'static str {
    loggers
        .iter()
        .find(|l| {
            l.kind == api::LoggerType::FileSystem && l.component == api::LoggerComponent::Lambda
        })
        .map_or("INFO", |l| match l.level {
            api::LoggerLevel::Debug => "DEBUG",
            api::LoggerLevel::Info => "INFO",
            api::LoggerLevel::Warn => "WARNING",
            api::LoggerLevel::Error => "ERROR",
            api::LoggerLevel::Fatal => "CRITICAL",
        })
}

struct Prepared {
    host: Arc<Shared>,
    next: Vec<Arc<Function>>,
    starter: FunctionHost,
}

impl PreparedUnits for Prepared {
    fn commit(self: Box<Self>) {
        let old = std::mem::replace(&mut *self.host.functions.write(), self.next.clone());
        for f in &old {
            if !self.next.iter().any(|n| Arc::ptr_eq(n, f)) {
                self.host.stop_function(f);
            }
        }
        for f in &self.next {
            self.starter.start(f);
        }
    }
}

impl Units for FunctionHost {
    fn prepare(
        &self,
        _group_id: &str,
        group: &ValidatedGroup,
    ) -> Result<Box<dyn PreparedUnits>, Vec<(String, String)>> {
        let existing = self.shared.functions.read().clone();
        let mut next = Vec::new();
        let mut problems = Vec::new();
        for spec in group.functions.iter().filter(|f| !f.arn.is_system()) {
            match self.build(spec, group, &existing) {
                Ok(f) => next.push(f),
                Err(p) => problems.push(p),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Box::new(Prepared {
            host: self.shared.clone(),
            next,
            starter: FunctionHost {
                shared: self.shared.clone(),
            },
        }))
    }

    fn stop_all(&self) {
        let old = std::mem::take(&mut *self.shared.functions.write());
        for f in &old {
            self.shared.stop_function(f);
        }
    }
}

/// The answer of `GGSecretManager` to `{"SecretId", "VersionStage"?}` from function `f`:
/// only the secrets its resource access policies grant.
fn secret_reply(f: &Function, request: &[u8]) -> Outcome {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Request {
        secret_id: String,
        #[serde(default)]
        version_stage: Option<String>,
        #[serde(default)]
        version_id: Option<String>,
    }
    let error = |status: u16, message: String| Outcome {
        payload: Bytes::from(
            serde_json::json!({ "Status": status, "Message": message }).to_string(),
        ),
        error: FunctionError::None,
    };
    let req: Request = match serde_json::from_slice(request) {
        Ok(r) => r,
        Err(e) => return error(400, format!("invalid request: {e}")),
    };
    if req.version_id.as_deref().is_some_and(|v| !v.is_empty()) {
        return error(400, "Query by VersionId is not supported".into());
    }
    let stage = req.version_stage.as_deref().unwrap_or("AWSCURRENT");
    let found = f.setup.secrets.iter().find(|s| {
        s.arn == req.secret_id
            || SecretArn::parse(&s.arn).is_ok_and(|a| {
                let name = a.secret_name();
                // A full name with its random suffix, or the name alone.
                name == req.secret_id
                    || name
                        .rsplit_once('-')
                        .is_some_and(|(n, sfx)| sfx.len() == 6 && n == req.secret_id)
            })
    });
    let Some(secret) = found else {
        f.log.log(
            Level::WARN,
            &format!(
                "get_secret_value({}) refused: no secret resource of the function's matches",
                req.secret_id
            ),
        );
        return error(
            404,
            format!(
                "Secret {} is not available to this function: grant it through a secret resource in its ResourceAccessPolicies",
                req.secret_id
            ),
        );
    };
    let Some(value) = secret.at(stage) else {
        return error(
            404,
            format!(
                "Secret {} has no version with stage {stage} on this core: add it to the resource's AdditionalStagingLabelsToDownload",
                req.secret_id
            ),
        );
    };
    let name = SecretArn::parse(&secret.arn)
        .map(|a| a.secret_name().to_owned())
        .unwrap_or_default();
    let mut doc = serde_json::json!({
        "ARN": secret.arn,
        "Name": name,
        "VersionStages": [stage],
        "CreatedDate": 0,
    });
    match value {
        coupler_model::SecretValue::String(s) => doc["SecretString"] = s.clone().into(),
        coupler_model::SecretValue::Binary(b) => {
            doc["SecretBinary"] = base64::engine::general_purpose::STANDARD.encode(b).into();
        }
    }
    Outcome {
        payload: Bytes::from(doc.to_string()),
        error: FunctionError::None,
    }
}
