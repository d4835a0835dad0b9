//! State shared by every connection: who may connect, the sessions, the retained messages
//! and the counters.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use coupler_model::validate::DeviceSpec;
use coupler_model::{Entity, TopicFilter};
use coupler_router::{Message, Router};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::session::Session;

/// Limits of the server. Every bound is enforced, counted and logged.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest PUBLISH payload from a device: 128 KiB, as in Greengrass.
    pub max_payload: usize,
    /// QoS 1/2 messages in flight to one client, at most (also bounded by the client's own
    /// MQTT 5 receive maximum).
    pub max_inflight: u16,
    /// QoS 2 messages from one client awaiting PUBREL, at most (the receive maximum the
    /// server advertises).
    pub receive_max: u16,
    /// Subscriptions in one session, at most.
    pub max_subscriptions: usize,
    /// Retained messages kept, at most, and their total payload bytes.
    pub max_retained: usize,
    pub max_retained_bytes: usize,
    /// Open connections, at most; more are closed at once.
    pub max_connections: usize,
    /// Time a new connection has to send CONNECT (and finish TLS).
    pub connect_timeout: Duration,
    /// Time a write to a client may take before the connection is given up as stalled.
    pub write_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_payload: 128 * 1024,
            max_inflight: 32,
            receive_max: 64,
            max_subscriptions: 100,
            max_retained: 10_000,
            max_retained_bytes: 64 * 1024 * 1024,
            max_connections: 10_000,
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
        }
    }
}

impl Config {
    /// The largest packet accepted: the payload bound plus room for the topic (256 bytes
    /// at most), the packet id and MQTT 5 properties.
    pub fn max_packet(&self) -> u32 {
        u32::try_from(self.max_payload + 8 * 1024).unwrap_or(u32::MAX)
    }
}

/// The inbox of a device: its session's queue. While the device is connected, at most 128
/// messages wait and a sender waits (up to 2 s) for room rather than losing messages, so a
/// fast publisher is slowed to the subscriber's pace; while it is offline, the 1 024 newest
/// messages are kept.
pub fn device_inbox() -> coupler_router::InboxConfig {
    coupler_router::InboxConfig {
        capacity: 1024,
        when_full: coupler_router::WhenFull::BlockWhileAttached {
            deadline: Duration::from_secs(2),
            attached_depth: 128,
        },
    }
}

/// The devices of the deployed group: the only MQTT clients the server accepts.
#[derive(Debug, Default)]
pub struct Devices {
    things: HashSet<Arc<str>>,
    /// Certificate id (the SHA-256 of its DER, lower-case hex, as AWS IoT names
    /// certificates) to thing name.
    by_certificate: HashMap<String, Arc<str>>,
}

impl Devices {
    pub fn from_group(devices: &[DeviceSpec]) -> Self {
        let mut out = Self::default();
        for d in devices {
            let thing: Arc<str> = d.thing.thing_name().into();
            out.things.insert(thing.clone());
            out.by_certificate
                .insert(d.certificate.certificate_id().to_ascii_lowercase(), thing);
        }
        out
    }

    pub fn contains(&self, thing: &str) -> bool {
        self.things.contains(thing)
    }

    /// The thing whose registered certificate has this id.
    pub fn by_certificate(&self, id: &str) -> Option<&Arc<str>> {
        self.by_certificate.get(id)
    }

    pub fn len(&self) -> usize {
        self.things.len()
    }

    pub fn is_empty(&self) -> bool {
        self.things.is_empty()
    }
}

/// Why a connection ended (or never started), for the counters and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// DISCONNECT from the client.
    ClientDisconnect,
    /// The client closed the socket without DISCONNECT.
    ClientGone,
    ConnectTimeout,
    TlsFailed,
    /// CONNACK refused the client (identity or group membership).
    Refused,
    TooManyConnections,
    Malformed,
    ProtocolError,
    PacketTooLarge,
    TopicInvalid,
    KeepAliveTimeout,
    WriteStalled,
    /// Another connection with the same client id took the session over.
    TakenOver,
    /// The device left the group.
    RemovedFromGroup,
    Io,
    ServerShutdown,
}

impl CloseReason {
    pub const ALL: [CloseReason; 16] = [
        Self::ClientDisconnect,
        Self::ClientGone,
        Self::ConnectTimeout,
        Self::TlsFailed,
        Self::Refused,
        Self::TooManyConnections,
        Self::Malformed,
        Self::ProtocolError,
        Self::PacketTooLarge,
        Self::TopicInvalid,
        Self::KeepAliveTimeout,
        Self::WriteStalled,
        Self::TakenOver,
        Self::RemovedFromGroup,
        Self::Io,
        Self::ServerShutdown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientDisconnect => "client_disconnect",
            Self::ClientGone => "client_gone",
            Self::ConnectTimeout => "connect_timeout",
            Self::TlsFailed => "tls_failed",
            Self::Refused => "refused",
            Self::TooManyConnections => "too_many_connections",
            Self::Malformed => "malformed_packet",
            Self::ProtocolError => "protocol_error",
            Self::PacketTooLarge => "packet_too_large",
            Self::TopicInvalid => "topic_invalid",
            Self::KeepAliveTimeout => "keepalive_timeout",
            Self::WriteStalled => "write_stalled",
            Self::TakenOver => "taken_over",
            Self::RemovedFromGroup => "removed_from_group",
            Self::Io => "io_error",
            Self::ServerShutdown => "server_shutdown",
        }
    }

    /// Whether the client did something wrong (logged as a warning).
    pub fn is_fault(self) -> bool {
        !matches!(
            self,
            Self::ClientDisconnect | Self::ClientGone | Self::TakenOver | Self::ServerShutdown
        )
    }
}

/// Counters of the server, read by `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    pub(crate) open: AtomicU64,
    pub(crate) accepted: AtomicU64,
    closed: [AtomicU64; CloseReason::ALL.len()],
    pub(crate) publish_in: AtomicU64,
    pub(crate) publish_out: AtomicU64,
    /// Messages routed to a device that no MQTT subscription of its session matched.
    pub(crate) unsubscribed_drops: AtomicU64,
    /// Messages too large for the client's MQTT 5 maximum packet size.
    pub(crate) oversize_drops: AtomicU64,
    /// Messages waiting for a clean-session device that was offline, discarded at connect.
    pub(crate) offline_discards: AtomicU64,
    /// Messages whose MQTT 5 expiry interval passed before they could be sent.
    pub(crate) expired_drops: AtomicU64,
    pub(crate) retained_refused: AtomicU64,
    pub(crate) subscribe_refused: AtomicU64,
}

/// A snapshot of the server's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub open: u64,
    pub accepted: u64,
    pub closed: Vec<(CloseReason, u64)>,
    pub publish_in: u64,
    pub publish_out: u64,
    pub unsubscribed_drops: u64,
    pub oversize_drops: u64,
    pub offline_discards: u64,
    pub expired_drops: u64,
    pub retained: u64,
    pub retained_refused: u64,
    pub subscribe_refused: u64,
    pub sessions: u64,
}

impl Stats {
    pub(crate) fn closed(&self, reason: CloseReason) {
        let i = CloseReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.closed[i].fetch_add(1, Ordering::Relaxed);
    }
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A client id's session and the connection that holds it, if any.
#[derive(Debug)]
struct Slot {
    session: Arc<tokio::sync::Mutex<Session>>,
    /// The live connection: its id and the token that ends it.
    owner: Option<(u64, CancellationToken)>,
    /// The id of the connection that attached last, so that a stale expiry or will timer
    /// sees that the session was resumed since.
    generation: u64,
}

#[derive(Debug, Default)]
struct Retained {
    by_topic: HashMap<Box<str>, Message>,
    bytes: usize,
}

/// The server's shared state. One per core; every listener serves the same broker.
#[derive(Debug)]
pub struct Broker {
    pub(crate) router: Arc<Router>,
    pub(crate) config: Config,
    devices: Arc<ArcSwap<Devices>>,
    slots: Mutex<HashMap<Arc<str>, Slot>>,
    retained: Mutex<Retained>,
    pub(crate) stats: Stats,
    next_conn: AtomicU64,
}

/// A session handed to a connection by [`Broker::attach`].
pub(crate) struct Attached {
    pub session: tokio::sync::OwnedMutexGuard<Session>,
    pub present: bool,
    pub conn_id: u64,
    pub kicked: CancellationToken,
}

impl Broker {
    pub fn new(router: Arc<Router>, config: Config) -> Arc<Self> {
        Arc::new(Self {
            router,
            config,
            devices: Arc::new(ArcSwap::from_pointee(Devices::default())),
            slots: Mutex::new(HashMap::new()),
            retained: Mutex::new(Retained::default()),
            stats: Stats::default(),
            next_conn: AtomicU64::new(1),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The devices, shared with the TLS client verifier.
    pub fn devices(&self) -> Arc<ArcSwap<Devices>> {
        self.devices.clone()
    }

    /// Install the devices of a newly deployed group. Connections and sessions of devices
    /// that left the group end.
    pub fn set_devices(&self, devices: Devices) {
        self.devices.store(Arc::new(devices));
        let devices = self.devices.load();
        let mut slots = self.slots.lock();
        slots.retain(|thing, slot| {
            if devices.contains(thing) {
                return true;
            }
            if let Some((_, token)) = slot.owner.take() {
                token.cancel();
            }
            false
        });
    }

    pub(crate) fn device_known(&self, thing: &str) -> bool {
        self.devices.load().contains(thing)
    }

    /// Take over the session of `client` for a new connection, ending any connection that
    /// holds it. A clean start replaces the session with an empty one.
    pub(crate) async fn attach(
        &self,
        client: &Arc<str>,
        entity: &Entity,
        clean_start: bool,
    ) -> Option<Attached> {
        let conn_id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let kicked = CancellationToken::new();
        let session = {
            let mut slots = self.slots.lock();
            let slot = slots.entry(client.clone()).or_insert_with(|| Slot {
                session: Arc::new(tokio::sync::Mutex::new(Session::default())),
                owner: None,
                generation: 0,
            });
            if let Some((_, old)) = slot.owner.replace((conn_id, kicked.clone())) {
                old.cancel();
            }
            slot.generation = conn_id;
            slot.session.clone()
        };
        // The old connection releases the session as it ends.
        let mut session = tokio::time::timeout(Duration::from_secs(5), session.lock_owned())
            .await
            .ok()?;
        let present = !clean_start && session.exists;
        if !present {
            *session = Session::default();
            let stale = self.router.inbox(entity).drain().len() as u64;
            self.stats
                .offline_discards
                .fetch_add(stale, Ordering::Relaxed);
        }
        session.exists = true;
        Some(Attached {
            session,
            present,
            conn_id,
            kicked,
        })
    }

    /// Give a session back as its connection ends. It is kept for `expiry` if the
    /// connection still owns it, and dropped (with the messages queued for it) otherwise.
    pub(crate) fn detach(
        self: &Arc<Self>,
        client: &Arc<str>,
        entity: &Entity,
        conn_id: u64,
        expiry: Option<Duration>,
    ) {
        let mut slots = self.slots.lock();
        let Some(slot) = slots.get_mut(client) else {
            return;
        };
        if slot.owner.as_ref().is_none_or(|(id, _)| *id != conn_id) {
            return; // taken over: the new connection has it now
        }
        slot.owner = None;
        match expiry {
            Some(d) if !d.is_zero() => {
                if d < Duration::from_secs(u64::from(u32::MAX)) {
                    let generation = slot.generation;
                    let broker = Arc::clone(self);
                    let (client, entity) = (client.clone(), entity.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(d).await;
                        broker.expire(&client, &entity, generation);
                    });
                }
            }
            _ => {
                slots.remove(client);
                self.router.inbox(entity).drain();
            }
        }
    }

    fn expire(&self, client: &Arc<str>, entity: &Entity, generation: u64) {
        let mut slots = self.slots.lock();
        if slots
            .get(client)
            .is_some_and(|s| s.owner.is_none() && s.generation == generation)
        {
            slots.remove(client);
            self.router.inbox(entity).drain();
            tracing::debug!(client = %client, "MQTT session expired");
        }
    }

    /// Whether a connection other than `conn_id` has attached to `client`'s session since
    /// `conn_id` did.
    pub(crate) fn resumed_since(&self, client: &Arc<str>, conn_id: u64) -> bool {
        self.slots
            .lock()
            .get(client)
            .is_some_and(|s| s.generation != conn_id)
    }

    /// Keep (or, with an empty payload, clear) the retained message of a topic.
    pub(crate) fn retain(&self, msg: &Message) {
        let mut r = self.retained.lock();
        let old = if msg.payload.is_empty() {
            r.by_topic.remove(msg.topic.as_str())
        } else {
            let grows = !r.by_topic.contains_key(msg.topic.as_str());
            let old_len = r
                .by_topic
                .get(msg.topic.as_str())
                .map_or(0, |m| m.payload.len());
            if (grows && r.by_topic.len() >= self.config.max_retained)
                || r.bytes - old_len + msg.payload.len() > self.config.max_retained_bytes
            {
                bump(&self.stats.retained_refused);
                tracing::warn!(
                    topic = %msg.topic,
                    limit = self.config.max_retained,
                    bytes = self.config.max_retained_bytes,
                    "retained message not kept: the retained store is full"
                );
                return;
            }
            r.bytes += msg.payload.len();
            r.by_topic.insert(msg.topic.as_str().into(), msg.clone())
        };
        if let Some(old) = old {
            r.bytes -= old.payload.len();
        }
    }

    /// Retained messages on topics that `filter` matches.
    pub(crate) fn retained_matching(&self, filter: &TopicFilter) -> Vec<Message> {
        self.retained
            .lock()
            .by_topic
            .values()
            .filter(|m| filter.matches(&m.topic))
            .cloned()
            .collect()
    }

    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.stats;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            open: load(&s.open),
            accepted: load(&s.accepted),
            closed: CloseReason::ALL
                .iter()
                .zip(&s.closed)
                .map(|(r, c)| (*r, load(c)))
                .collect(),
            publish_in: load(&s.publish_in),
            publish_out: load(&s.publish_out),
            unsubscribed_drops: load(&s.unsubscribed_drops),
            oversize_drops: load(&s.oversize_drops),
            offline_discards: load(&s.offline_discards),
            expired_drops: load(&s.expired_drops),
            retained: self.retained.lock().by_topic.len() as u64,
            retained_refused: load(&s.retained_refused),
            subscribe_refused: load(&s.subscribe_refused),
            sessions: self.slots.lock().len() as u64,
        }
    }
}
