//! The router: the installed routing table, the inboxes, and the counters.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use coupler_model::{Entity, EntityKind, TopicFilter, TopicName};

use crate::Message;
use crate::inbox::{Inbox, InboxConfig, Push};
use crate::table::{RoutingTable, TargetId};

/// Inbox settings per target kind, and how often a repeated drop is logged.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub default_inbox: InboxConfig,
    /// Overrides of `default_inbox` for one kind of target.
    pub per_kind: BTreeMap<EntityKind, InboxConfig>,
    /// At most one WARN line per (source, target, reason) in this interval.
    pub warn_interval: Duration,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            default_inbox: InboxConfig::default(),
            per_kind: BTreeMap::new(),
            warn_interval: Duration::from_secs(10),
        }
    }
}

impl RouterConfig {
    pub fn inbox_for(&self, kind: EntityKind) -> InboxConfig {
        self.per_kind
            .get(&kind)
            .copied()
            .unwrap_or(self.default_inbox)
    }
}

/// Why a message did not reach a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// No subscription from the source matches the topic.
    NoRoute,
    /// The target's inbox was full; the oldest queued message was dropped for this one.
    QueueFullDroppedOldest,
    /// The target's inbox was full and drops new messages.
    QueueFullDroppedNewest,
    /// The target's inbox stayed full past the blocking deadline.
    BlockDeadline,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoRoute => "no_route",
            Self::QueueFullDroppedOldest => "queue_full_drop_oldest",
            Self::QueueFullDroppedNewest => "queue_full_drop_newest",
            Self::BlockDeadline => "block_deadline",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to one routed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouteReport {
    /// Targets whose subscriptions matched.
    pub matched: usize,
    /// Targets whose inbox took the message.
    pub delivered: usize,
    /// Messages dropped because of this one: the message itself for targets that refused
    /// it, or an older message pushed out of a full drop-oldest inbox.
    pub dropped: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct DropKey {
    source: Entity,
    target: Option<Entity>,
    reason: DropReason,
}

#[derive(Debug, Default)]
struct DropStat {
    count: u64,
    last_warn: Option<Instant>,
    since_warn: u64,
}

/// One line of the drop counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropCount {
    pub source: Entity,
    /// `None` for [`DropReason::NoRoute`].
    pub target: Option<Entity>,
    pub reason: DropReason,
    pub count: u64,
}

/// One target's inbox counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxStats {
    pub entity: Entity,
    pub delivered: u64,
    pub depth: usize,
    pub capacity: usize,
}

/// A snapshot of the router's counters, ready for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouterStats {
    /// Increments on every table installed; 0 before the first.
    pub table_version: u64,
    pub subscriptions: usize,
    /// Messages handed to [`Router::route`].
    pub routed: u64,
    pub dropped: Vec<DropCount>,
    pub inboxes: Vec<InboxStats>,
}

impl RouterStats {
    /// Total drops for a reason.
    pub fn dropped_total(&self, reason: DropReason) -> u64 {
        self.dropped
            .iter()
            .filter(|d| d.reason == reason)
            .map(|d| d.count)
            .sum()
    }
}

/// A table and the inboxes of its targets, in target-id order.
#[derive(Debug)]
struct Installed {
    table: RoutingTable,
    inboxes: Vec<Arc<Inbox>>,
    version: u64,
}

thread_local! {
    /// Reused per thread so that a lookup never allocates.
    static SCRATCH: RefCell<Vec<TargetId>> = const { RefCell::new(Vec::new()) };
}

/// Routes messages along the installed subscriptions into bounded inboxes.
///
/// Any number of tasks route concurrently: each [`route`](Router::route) reads the current
/// table through an `ArcSwap`, which never blocks, and [`install`](Router::install) replaces
/// it atomically. A message is routed by exactly one table, old or new; inboxes outlive table
/// swaps, so nothing already queued is lost.
#[derive(Debug)]
pub struct Router {
    current: ArcSwap<Installed>,
    registry: Mutex<HashMap<Entity, Arc<Inbox>>>,
    routed: AtomicU64,
    drops: Mutex<HashMap<DropKey, DropStat>>,
    config: RouterConfig,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Counters and the registry stay consistent even if a holder panicked.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Router {
    /// A router with an empty table: every message is a no-route drop until a table is
    /// installed.
    pub fn new(config: RouterConfig) -> Self {
        Self {
            current: ArcSwap::from_pointee(Installed {
                table: RoutingTable::default(),
                inboxes: Vec::new(),
                version: 0,
            }),
            registry: Mutex::new(HashMap::new()),
            routed: AtomicU64::new(0),
            drops: Mutex::new(HashMap::new()),
            config,
        }
    }

    /// Replace the routing table. Inboxes of targets that stay are kept with their messages;
    /// inboxes nobody uses any more are released once empty. Returns the new table version.
    pub fn install(&self, table: RoutingTable) -> u64 {
        let mut registry = lock(&self.registry);
        let inboxes: Vec<Arc<Inbox>> = table
            .targets()
            .iter()
            .map(|e| {
                registry
                    .entry(e.clone())
                    .or_insert_with(|| Inbox::new(e.clone(), self.config.inbox_for(e.kind())))
                    .clone()
            })
            .collect();
        let version = self.current.load().version + 1;
        self.current.store(Arc::new(Installed {
            table,
            inboxes,
            version,
        }));
        // Only the registry and the old table may still hold these; once the old table is
        // gone (no route() is using it) an empty, untargeted inbox can go.
        registry.retain(|_, inbox| Arc::strong_count(inbox) > 1 || !inbox.is_empty());
        version
    }

    /// The inbox of an entity, created if needed, so a consumer can attach before or after
    /// a table names it as a target.
    pub fn inbox(&self, entity: &Entity) -> Arc<Inbox> {
        lock(&self.registry)
            .entry(entity.clone())
            .or_insert_with(|| Inbox::new(entity.clone(), self.config.inbox_for(entity.kind())))
            .clone()
    }

    /// Whether a source may publish at all (some subscription names it as Source).
    pub fn has_source(&self, source: &Entity) -> bool {
        self.current.load().table.has_source(source)
    }

    /// Whether a message from `source` on `topic` would be routed to `target`.
    pub fn delivers_to(&self, source: &Entity, topic: &TopicName, target: &Entity) -> bool {
        let installed = self.current.load();
        let Some(id) = installed.table.target_id(target) else {
            return false;
        };
        SCRATCH.with(|scratch| {
            let mut ids = scratch.borrow_mut();
            installed.table.lookup(source, topic, &mut ids);
            ids.binary_search(&id).is_ok()
        })
    }

    /// Whether some subscription targeting `target` could deliver a message that `filter`
    /// matches: the test for granting an MQTT SUBSCRIBE.
    pub fn may_subscribe(&self, target: &Entity, filter: &TopicFilter) -> bool {
        let installed = self.current.load();
        installed.table.target_id(target).is_some_and(|id| {
            installed
                .table
                .subjects_to(id)
                .iter()
                .any(|s| s.intersects(filter))
        })
    }

    /// Route one message to every target whose subscription from the message's source
    /// matches its topic, once per target.
    ///
    /// Returns without waiting unless a matched inbox is full and its policy is
    /// [`WhenFull::Block`](crate::WhenFull::Block).
    pub async fn route(&self, msg: Message) -> RouteReport {
        self.routed.fetch_add(1, Ordering::Relaxed);
        let mut report = RouteReport::default();
        let mut waiting: Vec<(Arc<Inbox>, Message)> = Vec::new();
        {
            let installed = self.current.load();
            SCRATCH.with(|scratch| {
                let mut ids = scratch.borrow_mut();
                installed.table.lookup(&msg.source, &msg.topic, &mut ids);
                report.matched = ids.len();
                let Some((&last, rest)) = ids.split_last() else {
                    self.count_drop(&msg, None, DropReason::NoRoute);
                    return;
                };
                for &id in rest {
                    self.deliver(
                        &installed.inboxes[id as usize],
                        msg.clone(),
                        &mut report,
                        &mut waiting,
                    );
                }
                // The last target takes the message itself: no clone for a single target.
                self.deliver(
                    &installed.inboxes[last as usize],
                    msg,
                    &mut report,
                    &mut waiting,
                );
            });
        }
        for (inbox, m) in waiting {
            let outcome = inbox.push_waiting(m).await;
            if let Some(m) = self.record(&inbox, outcome, &mut report) {
                report.dropped += 1;
                self.count_drop(&m, Some(inbox.entity()), DropReason::BlockDeadline);
            }
        }
        report
    }

    fn deliver(
        &self,
        inbox: &Arc<Inbox>,
        msg: Message,
        report: &mut RouteReport,
        waiting: &mut Vec<(Arc<Inbox>, Message)>,
    ) {
        if let Some(m) = self.record(inbox, inbox.push(msg), report) {
            waiting.push((inbox.clone(), m));
        }
    }

    /// Count what a push did; gives back a message that must (still) wait for room.
    fn record(&self, inbox: &Inbox, outcome: Push, report: &mut RouteReport) -> Option<Message> {
        match outcome {
            Push::Queued => report.delivered += 1,
            Push::DisplacedOldest(old) => {
                report.delivered += 1;
                report.dropped += 1;
                self.count_drop(
                    &old,
                    Some(inbox.entity()),
                    DropReason::QueueFullDroppedOldest,
                );
            }
            Push::Rejected(m) => {
                report.dropped += 1;
                self.count_drop(&m, Some(inbox.entity()), DropReason::QueueFullDroppedNewest);
            }
            Push::MustWait(m) => return Some(m),
        }
        None
    }

    fn count_drop(&self, msg: &Message, target: Option<&Entity>, reason: DropReason) {
        let key = DropKey {
            source: msg.source.clone(),
            target: target.cloned(),
            reason,
        };
        let mut drops = lock(&self.drops);
        let stat = drops.entry(key).or_default();
        stat.count += 1;
        stat.since_warn += 1;
        let now = Instant::now();
        if stat
            .last_warn
            .is_none_or(|t| now.duration_since(t) >= self.config.warn_interval)
        {
            let target = target.map_or_else(|| "-".to_owned(), ToString::to_string);
            tracing::warn!(
                source = %msg.source,
                target = %target,
                topic = %msg.topic,
                reason = %reason,
                count = stat.since_warn,
                total = stat.count,
                "message dropped"
            );
            stat.last_warn = Some(now);
            stat.since_warn = 0;
        }
    }

    /// A snapshot of every counter.
    pub fn stats(&self) -> RouterStats {
        let installed = self.current.load();
        let mut dropped: Vec<DropCount> = lock(&self.drops)
            .iter()
            .map(|(k, v)| DropCount {
                source: k.source.clone(),
                target: k.target.clone(),
                reason: k.reason,
                count: v.count,
            })
            .collect();
        dropped.sort_by(|a, b| {
            (&a.source, &a.target, a.reason).cmp(&(&b.source, &b.target, b.reason))
        });
        let mut inboxes: Vec<InboxStats> = lock(&self.registry)
            .values()
            .map(|i| InboxStats {
                entity: i.entity().clone(),
                delivered: i.delivered(),
                depth: i.len(),
                capacity: i.config().capacity,
            })
            .collect();
        inboxes.sort_by(|a, b| a.entity.cmp(&b.entity));
        RouterStats {
            table_version: installed.version,
            subscriptions: installed.table.subscription_count(),
            routed: self.routed.load(Ordering::Relaxed),
            dropped,
            inboxes,
        }
    }
}
