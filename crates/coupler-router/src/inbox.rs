//! Bounded inboxes, one per target entity, each with an explicit when-full policy.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::{Mutex, MutexGuard};
use std::time::Duration;

use coupler_model::Entity;
use tokio::sync::Notify;

use crate::Message;

/// What an inbox does with a new message when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Drop the oldest queued message to make room (Greengrass's behaviour).
    DropOldest,
    /// Drop the new message.
    DropNewest,
    /// Wait up to `deadline` for room, then drop the new message.
    Block { deadline: Duration },
    /// While a consumer is attached (a connected device), hold at most `attached_depth`
    /// messages and wait up to `deadline` for room, so that a fast sender is slowed to the
    /// consumer's pace instead of losing messages (a deep queue in front of a live consumer
    /// only adds latency and memory); then drop the new message. With no consumer (an
    /// offline device's persistent session), keep up to the capacity, dropping the oldest.
    BlockWhileAttached {
        deadline: Duration,
        attached_depth: usize,
    },
}

impl WhenFull {
    fn deadline(self) -> Option<Duration> {
        match self {
            Self::Block { deadline } | Self::BlockWhileAttached { deadline, .. } => Some(deadline),
            Self::DropOldest | Self::DropNewest => None,
        }
    }
}

/// Capacity and policy of an inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxConfig {
    pub capacity: usize,
    pub when_full: WhenFull,
}

impl Default for InboxConfig {
    /// 1024 messages (Greengrass's `maxWorkItemCount` default), dropping the oldest.
    fn default() -> Self {
        Self {
            capacity: 1024,
            when_full: WhenFull::DropOldest,
        }
    }
}

/// The outcome of putting one message into an inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Push {
    Queued,
    /// Queued, and this older message was dropped to make room.
    DisplacedOldest(Message),
    /// Not queued: the inbox is full and drops new messages.
    Rejected(Message),
    /// Not queued yet: the inbox is full and the policy says wait.
    MustWait(Message),
}

/// Room allocated at first; queues grow to their capacity as needed.
const INITIAL_CAPACITY: usize = 16;
/// A queue that drains empty with more room than this gives the memory back.
const SHRINK_ABOVE: usize = 256;

/// A bounded queue of messages for one target.
#[derive(Debug)]
pub struct Inbox {
    entity: Entity,
    config: InboxConfig,
    queue: Mutex<Queue>,
    readable: Notify,
    writable: Notify,
    /// Consumers attached with [`Inbox::attach`].
    attached: AtomicUsize,
}

/// Marks a consumer as attached to an inbox until dropped.
#[derive(Debug)]
pub struct Attached(Arc<Inbox>);

impl Drop for Attached {
    fn drop(&mut self) {
        self.0.attached.fetch_sub(1, Ordering::AcqRel);
        // Senders waiting for this consumer re-check: without it they drop the oldest.
        self.0.writable.notify_waiters();
    }
}

#[derive(Debug)]
struct Queue {
    messages: VecDeque<Message>,
    /// Messages accepted so far; kept under the lock the push already holds.
    delivered: u64,
}

impl Inbox {
    /// An inbox of its own, outside any router (a contained connector's, fed over its pipe).
    pub fn new(entity: Entity, config: InboxConfig) -> Arc<Self> {
        let capacity = config.capacity.max(1);
        Arc::new(Self {
            entity,
            config: InboxConfig { capacity, ..config },
            // Grown on demand (most inboxes stay shallow) and kept once grown, so a push
            // allocates only when the queue is deeper than it has ever been; see `pop` for
            // when it shrinks.
            queue: Mutex::new(Queue {
                messages: VecDeque::with_capacity(capacity.min(INITIAL_CAPACITY)),
                delivered: 0,
            }),
            readable: Notify::new(),
            writable: Notify::new(),
            attached: AtomicUsize::new(0),
        })
    }

    /// Attach a consumer for as long as the guard lives (see
    /// [`WhenFull::BlockWhileAttached`]).
    pub fn attach(self: &Arc<Self>) -> Attached {
        self.attached.fetch_add(1, Ordering::AcqRel);
        Attached(self.clone())
    }

    fn is_attached(&self) -> bool {
        self.attached.load(Ordering::Acquire) > 0
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock()
    }

    pub fn entity(&self) -> &Entity {
        &self.entity
    }

    pub fn config(&self) -> InboxConfig {
        self.config
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.lock().messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages accepted into this inbox so far.
    pub fn delivered(&self) -> u64 {
        self.lock().delivered
    }

    pub(crate) fn push(&self, msg: Message) -> Push {
        let (outcome, was_empty) = {
            let mut q = self.lock();
            let was_empty = q.messages.is_empty();
            let limit = match self.config.when_full {
                WhenFull::BlockWhileAttached { attached_depth, .. } if self.is_attached() => {
                    attached_depth.clamp(1, self.config.capacity)
                }
                _ => self.config.capacity,
            };
            let outcome = if q.messages.len() < limit {
                q.messages.push_back(msg);
                Push::Queued
            } else {
                let when_full = match self.config.when_full {
                    WhenFull::BlockWhileAttached { .. } if !self.is_attached() => {
                        WhenFull::DropOldest
                    }
                    w => w,
                };
                match when_full {
                    WhenFull::DropOldest => {
                        let old = q.messages.pop_front();
                        q.messages.push_back(msg);
                        match old {
                            Some(old) => Push::DisplacedOldest(old),
                            None => Push::Queued,
                        }
                    }
                    WhenFull::DropNewest => return Push::Rejected(msg),
                    WhenFull::Block { .. } | WhenFull::BlockWhileAttached { .. } => {
                        return Push::MustWait(msg);
                    }
                }
            };
            q.delivered += 1;
            (outcome, was_empty)
        };
        // A consumer only waits on an empty inbox, and the push that made it non-empty woke
        // it, so later pushes need not.
        if was_empty {
            self.readable.notify_one();
        }
        outcome
    }

    /// Wait for room up to the policy's deadline, then queue. `MustWait` gives the message
    /// back: the deadline passed. (`DisplacedOldest` when the consumer detached meanwhile.)
    pub(crate) async fn push_waiting(&self, mut msg: Message) -> Push {
        let Some(deadline) = self.config.when_full.deadline() else {
            return self.push(msg);
        };
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let room = self.writable.notified();
            match self.push(msg) {
                Push::MustWait(m) => msg = m,
                done => return done,
            }
            if tokio::time::timeout_at(until, room).await.is_err() {
                return self.push(msg);
            }
        }
    }

    /// Queue `msg`, waiting for room as the policy says; the message back if it was not
    /// queued. For a producer outside the router.
    pub async fn put(&self, msg: Message) -> Result<(), Message> {
        match self.push_waiting(msg).await {
            Push::Queued | Push::DisplacedOldest(_) => Ok(()),
            Push::Rejected(m) | Push::MustWait(m) => Err(m),
        }
    }

    /// Take the oldest message, if any.
    pub fn try_recv(&self) -> Option<Message> {
        self.pop().map(|(m, _)| m)
    }

    /// The oldest message and whether more are waiting.
    fn pop(&self) -> Option<(Message, bool)> {
        let (m, more) = {
            let mut q = self.lock();
            let m = q.messages.pop_front()?;
            if q.messages.is_empty() && q.messages.capacity() > SHRINK_ABOVE {
                // A burst is over: give back what it needed.
                q.messages.shrink_to(INITIAL_CAPACITY);
            }
            (m, !q.messages.is_empty())
        };
        if self.blocks() {
            self.writable.notify_one();
        }
        Some((m, more))
    }

    /// Only a blocking inbox has producers waiting for room.
    fn blocks(&self) -> bool {
        self.config.when_full.deadline().is_some()
    }

    /// Wait for the next message.
    pub async fn recv(&self) -> Message {
        loop {
            let ready = self.readable.notified();
            if let Some((m, more)) = self.pop() {
                // Pushes only wake on empty -> non-empty; pass the wake on so that a second
                // consumer of the same inbox is not left waiting beside queued messages.
                if more {
                    self.readable.notify_one();
                }
                return m;
            }
            ready.await;
        }
    }

    /// Take every waiting message.
    pub fn drain(&self) -> Vec<Message> {
        let out: Vec<Message> = self.lock().messages.drain(..).collect();
        if !out.is_empty() && self.blocks() {
            self.writable.notify_waiters();
        }
        out
    }
}
