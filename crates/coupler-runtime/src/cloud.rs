//! The cloud bridge: the group's `cloud` Source and Target, on an upstream MQTT broker (AWS
//! IoT Core, or any MQTT 3.1.1 broker).
//!
//! - Messages the router delivers to `cloud` go into the [`Spool`] first (Greengrass's
//!   `GGCloudSpooler` settings pick Memory or FileSystem storage and the bound), and leave it
//!   only when the broker's PUBACK arrives: QoS 1, at least once.
//! - Up to [`Upstream::window`] messages are in flight at once (Greengrass: one), sent in spool
//!   order over one connection, so order holds per topic and overall, also after a reconnect.
//! - Each subscription with `cloud` as Source is an upstream subscription to its Subject;
//!   what arrives enters the router with `cloud` as Source. `GG_CONFIG_SUBSCRIPTION_QUALITY`
//!   `AtLeastOncePersistent` makes that QoS 1 on a persistent session, acknowledged once the
//!   message is in the router's queues.
//! - Connection failures retry with backoff (0.5 s doubling to 30 s); every failure is kept
//!   for `coupler status`.
//!
//! One task owns the spool and the connection ([`CloudBridge::run`]), so a deployment that
//! changes the spool settings swaps the spool between two of its steps, with nothing in
//! flight on the old one.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use coupler_model::validate::ValidatedGroup;
use coupler_model::{Entity, TopicName};
use coupler_router::{Message, Qos, Router};
use parking_lot::Mutex;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, Outgoing, QoS};
use tokio::sync::{Notify, mpsc};

use crate::agent::{PreparedUnits, Units};
use crate::shadow::Op;
use crate::shadow_service::{ShadowService, ShadowSync};
use crate::spool::{Seq, Spool, SpoolConfig, SpoolStats, Storage};

/// The largest payload sent upstream: AWS IoT Core's message size limit.
pub const MAX_CLOUD_PAYLOAD: usize = 128 * 1024;
/// Packets up to this size pass the client in both directions (payload, topic and header).
const MAX_PACKET: usize = MAX_CLOUD_PAYLOAD + 4096;
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Messages taken from the router's queue per spool write.
const PUMP_BATCH: usize = 256;
/// How often unsynced spool writes are fsynced when the spool is quiet.
const SYNC_EVERY: Duration = Duration::from_millis(100);
/// Local shadow changes waiting to be spooled for the cloud.
const SHADOW_QUEUE: usize = 1024;

/// The upstream broker, from the core's flags.
#[derive(Clone)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    /// `None`: plain TCP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// `None`: the core's thing name.
    pub client_id: Option<String>,
    pub credentials: Option<(String, String)>,
    pub keep_alive: Duration,
    /// Messages published and not yet acknowledged, at most.
    pub window: u16,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("url", &self.url())
            .field("client_id", &self.client_id)
            .field("keep_alive", &self.keep_alive)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "mqtts" } else { "mqtt" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}

/// What the deployed group asks of the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Desired {
    client_id: String,
    spool: SpoolConfig,
    /// `AtLeastOncePersistent`.
    persistent: bool,
    /// The Subjects of the subscriptions with `cloud` as Source, and the shadow topics of
    /// the synced things.
    subjects: BTreeSet<String>,
    /// Things whose shadows are synced (`SyncShadow`).
    synced: BTreeSet<String>,
}

/// Counters for `/health`, `/metrics` and `coupler status`.
#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    acked: AtomicU64,
    received: AtomicU64,
    /// Inbound messages with a topic the router cannot take.
    received_invalid: AtomicU64,
    /// Outbound messages over [`MAX_CLOUD_PAYLOAD`], refused before the spool.
    too_large: AtomicU64,
    /// Messages the spool refused (larger than its bound, or it was unavailable).
    refused: AtomicU64,
    connects: AtomicU64,
    /// Local shadow changes sent up, and cloud shadow documents applied or found stale.
    shadow_up: AtomicU64,
    shadow_down: AtomicU64,
    shadow_stale: AtomicU64,
}

/// The bridge's state, as `coupler status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CloudStatus {
    /// `not configured`, `waiting for a deployment`, `connecting`, `connected` or
    /// `disconnected`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The last connection failure, until a connection succeeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub published: u64,
    pub acked: u64,
    pub received: u64,
    pub received_invalid: u64,
    pub too_large: u64,
    pub refused: u64,
    pub connects: u64,
    pub shadow_up: u64,
    pub shadow_down: u64,
    pub shadow_stale: u64,
    pub subscriptions: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spool: Option<SpoolStatus>,
}

/// The spool in [`CloudStatus`]: its storage and its figures.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct SpoolStatus {
    pub storage: &'static str,
    #[serde(flatten)]
    pub stats: SpoolStats,
}

#[derive(Debug, Default)]
struct Shown {
    state: &'static str,
    client_id: Option<String>,
    last_error: Option<String>,
    subscriptions: usize,
    spool: Option<SpoolStatus>,
}

/// The cloud bridge. Register it with the agent ([`Units`]) and run [`CloudBridge::run`].
#[derive(Debug)]
pub struct CloudBridge {
    router: Arc<Router>,
    upstream: Option<Upstream>,
    spool_dir: PathBuf,
    desired: Arc<DesiredSlot>,
    counters: Counters,
    shown: Mutex<Shown>,
    shadows: OnceLock<Arc<ShadowService>>,
    /// Local changes of synced shadows, on their way to the spool.
    shadow_tx: mpsc::Sender<Message>,
    shadow_rx: Mutex<Option<mpsc::Receiver<Message>>>,
    /// The last cloud shadow version applied, per thing: older documents are stale.
    cloud_versions: Mutex<HashMap<String, u64>>,
}

impl CloudBridge {
    /// `spool_dir` holds a FileSystem spool.
    pub fn new(router: Arc<Router>, upstream: Option<Upstream>, spool_dir: PathBuf) -> Self {
        let state = if upstream.is_some() {
            "waiting for a deployment"
        } else {
            "not configured"
        };
        let (shadow_tx, shadow_rx) = mpsc::channel(SHADOW_QUEUE);
        Self {
            shadows: OnceLock::new(),
            shadow_tx,
            shadow_rx: Mutex::new(Some(shadow_rx)),
            cloud_versions: Mutex::default(),
            router,
            upstream,
            spool_dir,
            desired: Arc::default(),
            counters: Counters::default(),
            shown: Mutex::new(Shown {
                state,
                ..Shown::default()
            }),
        }
    }

    /// Mirror the synced things' shadows (`SyncShadow`) between `shadows` and the cloud.
    pub fn sync_shadows(self: &Arc<Self>, shadows: Arc<ShadowService>) {
        shadows.set_sync(self.clone());
        let _ = self.shadows.set(shadows);
    }

    pub fn status(&self) -> CloudStatus {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let shown = self.shown.lock();
        CloudStatus {
            state: shown.state,
            url: self.upstream.as_ref().map(Upstream::url),
            client_id: shown.client_id.clone(),
            last_error: shown.last_error.clone(),
            published: get(&c.published),
            acked: get(&c.acked),
            received: get(&c.received),
            received_invalid: get(&c.received_invalid),
            too_large: get(&c.too_large),
            refused: get(&c.refused),
            connects: get(&c.connects),
            shadow_up: get(&c.shadow_up),
            shadow_down: get(&c.shadow_down),
            shadow_stale: get(&c.shadow_stale),
            subscriptions: shown.subscriptions,
            spool: shown.spool,
        }
    }

    fn show(&self, f: impl FnOnce(&mut Shown)) {
        f(&mut self.shown.lock());
    }

    /// Take messages for `cloud` from the router into the spool, and the spool to the
    /// upstream broker, until `stop`.
    pub async fn run(self: Arc<Self>, stop: impl Future<Output = ()>) {
        let inbox = self.router.inbox(&Entity::Cloud);
        let _attached = inbox.attach();
        let Some(mut shadow_rx) = self.shadow_rx.lock().take() else {
            tracing::error!("the cloud bridge runs once");
            return;
        };
        let mut seen = 0;
        let mut desired: Option<Desired> = None;
        let mut spool: Option<Arc<Spool>> = None;
        let mut link: Option<Link> = None;
        let mut backoff = BACKOFF_FIRST;
        let mut next_attempt = Instant::now();
        let mut sync = tokio::time::interval(SYNC_EVERY);
        sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            // A deployment changed what the group asks for.
            let (generation, now_desired) = self.desired.state.lock().clone();
            if generation != seen {
                seen = generation;
                let old = desired.take();
                let spool_changed =
                    old.as_ref().map(|d| &d.spool) != now_desired.as_ref().map(|d| &d.spool);
                let session_changed = old.as_ref().map(|d| (&d.client_id, d.persistent))
                    != now_desired.as_ref().map(|d| (&d.client_id, d.persistent));
                if spool_changed || session_changed || now_desired.is_none() {
                    link = None;
                }
                if spool_changed {
                    let old = spool.take().zip(old.map(|d| d.spool));
                    spool = self.reopen(old, now_desired.as_ref()).await;
                }
                if let (Some(l), Some(d)) = (&mut link, &now_desired) {
                    l.resubscribe(&d.subjects, d.persistent);
                }
                self.show(|s| {
                    s.client_id = now_desired.as_ref().map(|d| d.client_id.clone());
                    s.subscriptions = now_desired.as_ref().map_or(0, |d| d.subjects.len());
                });
                desired = now_desired;
                backoff = BACKOFF_FIRST;
                next_attempt = Instant::now();
            }
            // Connect when there is somewhere to connect to and something to do it for.
            if link.is_none()
                && let (Some(up), Some(d), Some(sp)) = (&self.upstream, &desired, &spool)
                && Instant::now() >= next_attempt
            {
                sp.requeue_in_flight();
                link = Some(Link::start(up, d));
                self.show(|s| s.state = "connecting");
            }
            let state = self.shown.lock().state;
            let want_state = match (&self.upstream, &desired, &link) {
                (None, _, _) => "not configured",
                (_, None, _) => "waiting for a deployment",
                (_, _, Some(l)) if l.connected => "connected",
                (_, _, Some(_)) => "connecting",
                (_, _, None) => "disconnected",
            };
            if state != want_state {
                self.show(|s| s.state = want_state);
            }
            if let Some(sp) = &spool {
                let storage = match sp_storage(desired.as_ref()) {
                    Storage::Memory => "Memory",
                    Storage::FileSystem { .. } => "FileSystem",
                };
                let stats = sp.stats();
                self.show(|s| s.spool = Some(SpoolStatus { storage, stats }));
            }
            // The sync timer runs only while writes wait for an fsync: an idle core sleeps.
            let unsynced = self
                .shown
                .lock()
                .spool
                .is_some_and(|s| s.stats.unsynced > 0);

            let retry_at = tokio::time::Instant::from_std(next_attempt);
            let can_retry = link.is_none() && self.upstream.is_some() && desired.is_some();
            tokio::select! {
                biased;
                () = &mut stop => break,
                () = self.desired.changed.notified() => {}
                events = recv_events(&mut link) => {
                    let Some(l) = link.as_mut() else { continue };
                    let sp = spool.clone();
                    match self.handle_events(l, events, sp.as_deref(), desired.as_ref()).await {
                        Ok(()) => {}
                        Err(e) => {
                            tracing::warn!(url = %self.upstream.as_ref().map(Upstream::url).unwrap_or_default(), error = %e, retry_in = ?backoff, "cloud connection lost");
                            self.show(|s| s.last_error = Some(e));
                            link = None;
                            next_attempt = Instant::now() + backoff;
                            backoff = (backoff * 2).min(BACKOFF_MAX);
                        }
                    }
                    if link.as_ref().is_some_and(|l| l.connected) {
                        backoff = BACKOFF_FIRST;
                    }
                }
                msg = inbox.recv() => {
                    let mut batch = vec![msg];
                    while batch.len() < PUMP_BATCH {
                        match inbox.try_recv() {
                            Some(m) => batch.push(m),
                            None => break,
                        }
                    }
                    self.spool_messages(spool.as_ref(), batch).await;
                }
                Some(m) = shadow_rx.recv() => {
                    let mut batch = vec![m];
                    while batch.len() < PUMP_BATCH {
                        match shadow_rx.try_recv() {
                            Ok(m) => batch.push(m),
                            Err(_) => break,
                        }
                    }
                    self.spool_messages(spool.as_ref(), batch).await;
                }
                () = tokio::time::sleep_until(retry_at), if can_retry => {}
                _ = sync.tick(), if unsynced => {
                    if let Some(sp) = spool.clone()
                        && let Ok(Err(e)) = tokio::task::spawn_blocking(move || sp.sync()).await
                    {
                        tracing::error!(error = %e, "cloud spool sync failed");
                    }
                }
            }
            // Fill the window.
            if let (Some(l), Some(sp)) = (&mut link, &spool)
                && l.connected
            {
                l.refill(sp, &self.counters).await;
            }
        }
        drop(link);
        if let Some(sp) = spool {
            let _ = tokio::task::spawn_blocking(move || sp.sync()).await;
        }
    }

    /// Open the spool `desired` asks for, moving what `old` holds into it.
    async fn reopen(
        &self,
        old: Option<(Arc<Spool>, SpoolConfig)>,
        desired: Option<&Desired>,
    ) -> Option<Arc<Spool>> {
        let Some(d) = desired else {
            // A reset: the group is gone. A FileSystem spool keeps its files for the next one.
            if let Some((old, _)) = old {
                let _ = tokio::task::spawn_blocking(move || old.sync()).await;
            }
            return None;
        };
        let config = d.spool.clone();
        let opened = tokio::task::spawn_blocking(move || reopen_blocking(old, config))
            .await
            .ok()?;
        Some(Arc::new(opened))
    }

    async fn spool_messages(&self, spool: Option<&Arc<Spool>>, batch: Vec<Message>) {
        let Some(sp) = spool.cloned() else {
            self.counters
                .refused
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            tracing::warn!(
                count = batch.len(),
                "messages for the cloud dropped: no spool (no group deployed)"
            );
            return;
        };
        let mut kept = Vec::with_capacity(batch.len());
        for m in batch {
            if m.payload.len() > MAX_CLOUD_PAYLOAD {
                self.counters.too_large.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(topic = %m.topic, source = %m.source, bytes = m.payload.len(), limit = MAX_CLOUD_PAYLOAD, "message for the cloud dropped: larger than AWS IoT's message size limit");
            } else {
                kept.push(m);
            }
        }
        let refused = tokio::task::spawn_blocking(move || {
            let mut dropped = 0usize;
            let mut refused = Vec::new();
            for m in &kept {
                match sp.push(&m.topic, &m.payload, Qos::AtLeastOnce) {
                    Ok(p) => dropped += p.dropped.len(),
                    Err(e) => refused.push((m.topic.to_string(), e.to_string())),
                }
            }
            if dropped > 0 {
                let s = sp.stats();
                tracing::warn!(
                    dropped,
                    total_dropped = s.dropped,
                    max_bytes = s.max_bytes,
                    "cloud spool full: dropped the oldest messages"
                );
            }
            refused
        })
        .await
        .unwrap_or_default();
        for (topic, e) in &refused {
            tracing::warn!(%topic, error = %e, "message for the cloud refused by the spool");
        }
        self.counters
            .refused
            .fetch_add(refused.len() as u64, Ordering::Relaxed);
    }

    async fn handle_events(
        &self,
        link: &mut Link,
        events: Vec<Result<Event, rumqttc::ConnectionError>>,
        spool: Option<&Spool>,
        desired: Option<&Desired>,
    ) -> Result<(), String> {
        for ev in events {
            match ev.map_err(|e| e.to_string())? {
                Event::Incoming(Incoming::ConnAck(_)) => {
                    link.connected = true;
                    self.counters.connects.fetch_add(1, Ordering::Relaxed);
                    self.show(|s| s.last_error = None);
                    tracing::info!(url = %self.upstream.as_ref().map(Upstream::url).unwrap_or_default(), "cloud connected");
                    if let Some(d) = desired {
                        link.subscribed.clear();
                        link.resubscribe(&d.subjects, d.persistent);
                    }
                }
                Event::Outgoing(Outgoing::Publish(pkid)) => {
                    if let Some(seq) = link.sent.pop_front() {
                        link.by_pkid.insert(pkid, seq);
                    }
                }
                Event::Incoming(Incoming::PubAck(a)) => {
                    if let Some(seq) = link.by_pkid.remove(&a.pkid) {
                        link.acks.push(seq);
                    }
                }
                Event::Incoming(Incoming::Publish(p)) => {
                    self.counters.received.fetch_add(1, Ordering::Relaxed);
                    if let Some(thing) = synced_documents(&p.topic, desired) {
                        self.shadow_from_cloud(thing, &p.payload).await;
                        let _ = link.client.try_ack(&p);
                        continue;
                    }
                    match TopicName::parse(&p.topic) {
                        Ok(topic) => {
                            let msg = Message::new(Entity::Cloud, topic, p.payload.clone());
                            self.router.route(msg).await;
                        }
                        Err(e) => {
                            self.counters
                                .received_invalid
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(topic = %p.topic, error = %e, "message from the cloud dropped: invalid topic");
                        }
                    }
                    // Acknowledged once it is in the router's queues (QoS 1 only).
                    let _ = link.client.try_ack(&p);
                }
                Event::Incoming(Incoming::SubAck(s))
                    if s.return_codes
                        .iter()
                        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)) =>
                {
                    tracing::warn!(pkid = s.pkid, "the cloud refused a subscription");
                }
                _ => {}
            }
        }
        if !link.acks.is_empty()
            && let Some(sp) = spool
        {
            let n = link.acks.len() as u64;
            for seq in link.acks.drain(..) {
                sp.ack(seq);
            }
            self.counters.acked.fetch_add(n, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl CloudBridge {
    /// Apply the cloud's `update/documents` for a synced thing, unless it is older than the
    /// last one applied (the cloud's version numbers only grow).
    async fn shadow_from_cloud(&self, thing: &str, payload: &[u8]) {
        let version = serde_json::from_slice::<serde_json::Value>(payload)
            .ok()
            .and_then(|d| d["current"]["version"].as_u64());
        if let Some(v) = version {
            let mut seen = self.cloud_versions.lock();
            match seen.get(thing) {
                Some(&last) if v <= last => {
                    drop(seen);
                    self.counters.shadow_stale.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%thing, version = v, last, "stale shadow document from the cloud ignored");
                    return;
                }
                _ => {
                    seen.insert(thing.to_owned(), v);
                }
            }
        }
        if let Some(shadows) = self.shadows.get() {
            self.counters.shadow_down.fetch_add(1, Ordering::Relaxed);
            shadows.apply_from_cloud(thing, payload).await;
        }
    }
}

impl ShadowSync for CloudBridge {
    fn local_change(&self, thing: &str, op: Op, request: &[u8]) {
        let synced = self
            .desired
            .state
            .lock()
            .1
            .as_ref()
            .is_some_and(|d| d.synced.contains(thing));
        if !synced {
            return;
        }
        // The local version means nothing in the cloud: only the state goes up.
        let (topic, payload) = match op {
            Op::Update => {
                let Ok(doc) = serde_json::from_slice::<serde_json::Value>(request) else {
                    return;
                };
                let up = serde_json::json!({ "state": doc["state"] }).to_string();
                (format!("$aws/things/{thing}/shadow/update"), up)
            }
            Op::Delete => (
                format!("$aws/things/{thing}/shadow/delete"),
                "{}".to_owned(),
            ),
            Op::Get => return,
        };
        let Ok(topic) = TopicName::parse(&topic) else {
            return;
        };
        let msg = Message::new(Entity::ShadowService, topic, payload);
        if self.shadow_tx.try_send(msg).is_ok() {
            self.counters.shadow_up.fetch_add(1, Ordering::Relaxed);
        } else {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%thing, "shadow change not sent to the cloud: its queue is full");
        }
    }
}

fn documents_topic(thing: &str) -> String {
    format!("$aws/things/{thing}/shadow/update/documents")
}

/// The synced thing whose cloud `update/documents` topic this is.
fn synced_documents<'a>(topic: &'a str, desired: Option<&Desired>) -> Option<&'a str> {
    let thing = topic
        .strip_prefix("$aws/things/")?
        .strip_suffix("/shadow/update/documents")?;
    desired?.synced.contains(thing).then_some(thing)
}

fn sp_storage(d: Option<&Desired>) -> Storage {
    d.map_or(Storage::Memory, |d| d.spool.storage.clone())
}

/// Open a spool from `config`; what `old` holds moves into it, unless both are the same
/// directory (then the files carry it). A FileSystem spool that cannot open falls back to
/// Memory with the same bound, and says so.
fn reopen_blocking(old: Option<(Arc<Spool>, SpoolConfig)>, config: SpoolConfig) -> Spool {
    let old = match old {
        Some((spool, c))
            if matches!(c.storage, Storage::FileSystem { .. }) && c.storage == config.storage =>
        {
            // The files carry the messages. The bridge holds the only reference: dropping
            // it unlocks the directory for the open below.
            drop(spool);
            None
        }
        other => other.map(|(s, _)| s),
    };
    let new = match Spool::open(config.clone()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the cloud spool; using a Memory spool of the same size");
            let mut mem = config;
            mem.storage = Storage::Memory;
            match Spool::open(mem) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot open a Memory spool either; using the smallest");
                    Spool::open(SpoolConfig::memory(crate::spool::MIN_MAX_SIZE_BYTES))
                        .expect("the smallest Memory spool always opens")
                }
            }
        }
    };
    if let Some(old) = old {
        old.requeue_in_flight();
        let mut moved = 0usize;
        loop {
            let batch = match old.next_batch(1024) {
                Ok(b) if !b.is_empty() => b,
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the old cloud spool; its other messages stay in it");
                    break;
                }
            };
            for m in batch {
                if new.push(&m.topic, &m.payload, m.qos).is_ok() {
                    moved += 1;
                }
                old.ack(m.seq);
            }
        }
        let _ = old.sync();
        if moved > 0 {
            tracing::info!(
                moved,
                "cloud spool settings changed: queued messages moved to the new spool"
            );
        }
    }
    new
}

/// One connection to the upstream broker.
struct Link {
    client: AsyncClient,
    events: mpsc::Receiver<Result<Event, rumqttc::ConnectionError>>,
    _poller: AbortOnDrop,
    connected: bool,
    window: usize,
    /// Published, waiting for the client to number them, in order.
    sent: VecDeque<Seq>,
    /// Numbered, waiting for PUBACK.
    by_pkid: HashMap<u16, Seq>,
    /// PUBACKs to apply to the spool.
    acks: Vec<Seq>,
    subscribed: BTreeSet<String>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = self.client.try_disconnect();
    }
}

impl Link {
    fn start(up: &Upstream, d: &Desired) -> Self {
        let client_id = up.client_id.clone().unwrap_or_else(|| d.client_id.clone());
        let mut opts = MqttOptions::new(client_id, up.host.clone(), up.port);
        opts.set_keep_alive(up.keep_alive)
            .set_clean_session(!d.persistent)
            .set_inflight(up.window.max(1))
            .set_max_packet_size(MAX_PACKET, MAX_PACKET)
            .set_manual_acks(true);
        if let Some((user, password)) = &up.credentials {
            opts.set_credentials(user.clone(), password.clone());
        }
        if let Some(tls) = &up.tls {
            opts.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls.clone()),
            ));
        }
        let window = usize::from(up.window.max(1));
        // Room for a full window of publishes plus the subscriptions and acks.
        let (client, mut eventloop) = AsyncClient::new(opts, window + 256);
        let mut net = eventloop.network_options();
        net.set_connection_timeout(10);
        eventloop.set_network_options(net);
        let (tx, events) = mpsc::channel(512);
        // The client's event loop runs on its own; the bridge reads its events from a queue.
        let poller = tokio::spawn(async move {
            loop {
                let ev = eventloop.poll().await;
                let end = ev.is_err();
                if tx.send(ev).await.is_err() || end {
                    break;
                }
            }
        });
        Self {
            client,
            events,
            _poller: AbortOnDrop(poller),
            connected: false,
            window,
            sent: VecDeque::new(),
            by_pkid: HashMap::new(),
            acks: Vec::new(),
            subscribed: BTreeSet::new(),
        }
    }

    fn in_flight(&self) -> usize {
        self.sent.len() + self.by_pkid.len()
    }

    /// Subscribe to the Subjects not yet subscribed, unsubscribe from those gone.
    fn resubscribe(&mut self, subjects: &BTreeSet<String>, persistent: bool) {
        if !self.connected {
            return;
        }
        let qos = if persistent {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        };
        for gone in self.subscribed.difference(subjects) {
            let _ = self.client.try_unsubscribe(gone.clone());
        }
        for new in subjects.difference(&self.subscribed) {
            if let Err(e) = self.client.try_subscribe(new.clone(), qos) {
                tracing::warn!(filter = %new, error = %e, "cloud subscription not sent");
            }
        }
        self.subscribed = subjects.clone();
    }

    /// Publish the oldest spooled messages not in flight, up to the window.
    async fn refill(&mut self, spool: &Arc<Spool>, counters: &Counters) {
        let room = self.window.saturating_sub(self.in_flight());
        if room == 0 {
            return;
        }
        let sp = spool.clone();
        let batch = match tokio::task::spawn_blocking(move || sp.next_batch(room)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the cloud spool");
                return;
            }
            Err(_) => return,
        };
        for m in batch {
            match self.client.try_publish(
                m.topic.as_str(),
                QoS::AtLeastOnce,
                false,
                m.payload.to_vec(),
            ) {
                Ok(()) => {
                    self.sent.push_back(m.seq);
                    counters.published.fetch_add(1, Ordering::Relaxed);
                }
                // The request queue is sized for the window; the message stays in flight in
                // the spool and goes again after the next reconnect.
                Err(e) => tracing::warn!(topic = %m.topic, error = %e, "cloud publish not queued"),
            }
        }
    }
}

/// The next events of `link` (at least one, up to 256), or never without a link.
async fn recv_events(link: &mut Option<Link>) -> Vec<Result<Event, rumqttc::ConnectionError>> {
    let Some(l) = link else {
        return std::future::pending().await;
    };
    let mut out = Vec::new();
    match l.events.recv().await {
        Some(ev) => out.push(ev),
        None => {
            out.push(Err(rumqttc::ConnectionError::RequestsDone));
            return out;
        }
    }
    while out.len() < 256 {
        match l.events.try_recv() {
            Ok(ev) => out.push(ev),
            Err(_) => break,
        }
    }
    out
}

impl Units for CloudBridge {
    fn prepare(
        &self,
        _group_id: &str,
        group: &ValidatedGroup,
    ) -> Result<Box<dyn PreparedUnits>, Vec<(String, String)>> {
        let vars: BTreeMap<String, String> = group
            .functions
            .iter()
            .find(|f| f.arn.is_system() && f.arn.function_name() == "GGCloudSpooler")
            .and_then(|f| f.config.environment.as_ref())
            .and_then(|e| e.variables.clone())
            .unwrap_or_default();
        let spool = SpoolConfig::from_greengrass_env(&vars, self.spool_dir.clone())
            .map_err(|e| vec![("CloudSpoolerConfigInvalid".to_owned(), e.to_string())])?;
        let persistent = match vars
            .get("GG_CONFIG_SUBSCRIPTION_QUALITY")
            .map(String::as_str)
        {
            None | Some("AtMostOnce") => false,
            Some("AtLeastOncePersistent") => true,
            Some(other) => {
                return Err(vec![(
                    "CloudSpoolerConfigInvalid".to_owned(),
                    format!(
                        "GG_CONFIG_SUBSCRIPTION_QUALITY: {other:?} is not AtMostOnce or AtLeastOncePersistent"
                    ),
                )]);
            }
        };
        let synced: BTreeSet<String> = group
            .core
            .sync_shadow
            .then(|| group.core.thing.thing_name().to_owned())
            .into_iter()
            .chain(
                group
                    .devices
                    .iter()
                    .filter(|d| d.sync_shadow)
                    .map(|d| d.thing.thing_name().to_owned()),
            )
            .collect();
        let subjects = group
            .routes
            .iter()
            .filter(|r| r.source == Entity::Cloud)
            .map(|r| r.subject.as_str().to_owned())
            .chain(synced.iter().map(|t| documents_topic(t)))
            .collect();
        let desired = Desired {
            client_id: group.core.thing.thing_name().to_owned(),
            spool,
            persistent,
            subjects,
            synced,
        };
        Ok(Box::new(Prepared {
            slot: self.desired.clone(),
            desired,
        }))
    }

    fn stop_all(&self) {
        self.desired.set(None);
    }
}

/// What the deployed group asks for, and a wake-up for the bridge's task when it changes.
#[derive(Debug, Default)]
struct DesiredSlot {
    /// A generation number, and the wish.
    state: Mutex<(u64, Option<Desired>)>,
    changed: Notify,
}

impl DesiredSlot {
    fn set(&self, d: Option<Desired>) {
        let mut g = self.state.lock();
        g.0 += 1;
        g.1 = d;
        drop(g);
        self.changed.notify_one();
    }
}

struct Prepared {
    slot: Arc<DesiredSlot>,
    desired: Desired,
}

impl PreparedUnits for Prepared {
    fn commit(self: Box<Self>) {
        self.slot.set(Some(self.desired));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(s: &str) -> TopicName {
        TopicName::parse(s).expect("topic")
    }

    fn desired_with(synced: &[&str]) -> Desired {
        Desired {
            client_id: "core".into(),
            spool: SpoolConfig::memory(crate::spool::MIN_MAX_SIZE_BYTES),
            persistent: false,
            subjects: BTreeSet::new(),
            synced: synced.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn documents_topics_of_synced_things_only() {
        let d = desired_with(&["lamp"]);
        assert_eq!(
            synced_documents("$aws/things/lamp/shadow/update/documents", Some(&d)),
            Some("lamp")
        );
        assert_eq!(
            synced_documents("$aws/things/fan/shadow/update/documents", Some(&d)),
            None
        );
        assert_eq!(
            synced_documents("$aws/things/lamp/shadow/update/delta", Some(&d)),
            None
        );
        assert_eq!(
            synced_documents("$aws/things/lamp/shadow/update/documents", None),
            None
        );
    }

    #[test]
    fn new_spool_settings_keep_the_queued_messages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let min = crate::spool::MIN_MAX_SIZE_BYTES;
        let mem = Arc::new(Spool::open(SpoolConfig::memory(min)).expect("memory"));
        for i in 0..5 {
            mem.push(&topic("t/a"), format!("m{i}").as_bytes(), Qos::AtLeastOnce)
                .expect("push");
        }
        // One of them in flight: it moves too, in its place.
        assert_eq!(mem.next_batch(1).expect("batch").len(), 1);
        let fs_config = SpoolConfig::file_system(dir.path(), min * 2);
        let fs = reopen_blocking(Some((mem, SpoolConfig::memory(min))), fs_config.clone());
        let got: Vec<_> = fs
            .next_batch(10)
            .expect("batch")
            .into_iter()
            .map(|m| m.payload)
            .collect();
        assert_eq!(got, ["m0", "m1", "m2", "m3", "m4"].map(bytes::Bytes::from));
        fs.requeue_in_flight();

        // FileSystem to FileSystem (another bound): the files carry the messages.
        let bigger = SpoolConfig::file_system(dir.path(), min * 4);
        let again = reopen_blocking(Some((Arc::new(fs), fs_config)), bigger);
        assert_eq!(again.len(), 5);
        assert_eq!(again.stats().max_bytes, min * 4);
    }
}
