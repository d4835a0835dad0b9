//! What a running connector is given: its parameters, its inbox, a way to publish, the
//! group resources its parameters name, its log, and a cancellation token.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use coupler_model::topic::TopicError;
use coupler_model::{Entity, SecretValue, TopicName};
use coupler_router::{Inbox, InboxConfig, Message, RouteReport, Router};
use coupler_runtime::logs::SystemLog;
pub use coupler_runtime::secrets::{FetchedSecret, SecretSource};
use tokio_util::sync::CancellationToken;
use tracing::Level;

/// A local resource of the group, as a connector's `*-ResourceId` parameter names it.
/// Serialized only into a contained connector's setup (see `contained`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalResource {
    /// A device file (`LocalDeviceResourceData`).
    Device { source_path: PathBuf },
    /// A directory (`LocalVolumeResourceData`).
    Volume {
        source_path: PathBuf,
        destination_path: PathBuf,
    },
    /// A secret (`SecretsManagerSecretResourceData`), resolved at deployment: its
    /// `AWSCURRENT` value and those of its `AdditionalStagingLabelsToDownload`.
    Secret(#[serde(with = "crate::contained::secret_wire")] FetchedSecret),
}

/// Where a connector's messages go: the router, or the channel of a detached context.
#[derive(Debug, Clone)]
enum Outlet {
    Router(Arc<Router>),
    Channel(tokio::sync::mpsc::Sender<Output>),
}

/// What a detached connector gives out.
#[derive(Debug)]
pub enum Output {
    /// A message it published.
    Published(Message),
    /// It refused a message (with an error reply, published separately).
    Rejected,
    /// It waits for its next message (see [`Context::received`]).
    Wanted,
    /// It took the message it asked for.
    Took,
}

#[derive(Debug)]
struct Inner {
    id: String,
    name: &'static str,
    version: u32,
    entity: Entity,
    parameters: BTreeMap<String, String>,
    resources: BTreeMap<String, LocalResource>,
    core_thing: String,
    region: String,
    inbox: Arc<Inbox>,
    outlet: Outlet,
    inside_container: bool,
    log: Arc<SystemLog>,
    cancel: CancellationToken,
    /// Messages refused with an error reply.
    rejected: AtomicU64,
    /// Times the supervisor started it again.
    restarts: AtomicU64,
    /// Detached: it asked for a message that has not come yet.
    wanting: std::sync::atomic::AtomicBool,
    /// A message its contained process never took (it died first): the next one gets it.
    put_back: parking_lot::Mutex<Option<Message>>,
}

/// A running connector's view of the core. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

/// Everything a [`Context`] is made of.
#[derive(Debug)]
pub struct Parts {
    pub id: String,
    pub name: &'static str,
    pub version: u32,
    /// The connector's versioned ARN, its Source and Target in subscriptions.
    pub entity: Entity,
    /// Validated, with documented defaults filled in.
    pub parameters: BTreeMap<String, String>,
    /// Only the resources that its `*-ResourceId` parameters name, keyed by parameter.
    pub resources: BTreeMap<String, LocalResource>,
    pub core_thing: String,
    pub region: String,
    pub log: Arc<SystemLog>,
    pub cancel: CancellationToken,
    /// This process is the connector's container: its volumes are at their destination
    /// paths. (The core builds a contained connector too, to check it, and sees the host.)
    pub inside_container: bool,
}

/// The other end of a [`Context::detached`]: put messages in, see what it gives out.
#[derive(Debug)]
pub struct Handle {
    pub inbox: Arc<Inbox>,
    pub output: tokio::sync::mpsc::Receiver<Output>,
    pub cancel: CancellationToken,
}

impl Context {
    /// A context on the core's router.
    pub fn new(parts: Parts, router: Arc<Router>) -> Self {
        let inbox = router.inbox(&parts.entity);
        Self::build(parts, inbox, Outlet::Router(router))
    }

    /// A context outside any router, for a connector alone (in a container, or under
    /// test): messages are put into `inbox`, and what it gives out comes out of `output`.
    pub fn detached(parts: Parts, inbox: InboxConfig) -> (Self, Handle) {
        let inbox = Inbox::new(parts.entity.clone(), inbox);
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let cancel = parts.cancel.clone();
        let ctx = Self::build(parts, inbox.clone(), Outlet::Channel(tx));
        (
            ctx,
            Handle {
                inbox,
                output: rx,
                cancel,
            },
        )
    }

    fn build(p: Parts, inbox: Arc<Inbox>, outlet: Outlet) -> Self {
        Self {
            inner: Arc::new(Inner {
                id: p.id,
                name: p.name,
                version: p.version,
                entity: p.entity,
                parameters: p.parameters,
                resources: p.resources,
                core_thing: p.core_thing,
                region: p.region,
                inbox,
                outlet,
                inside_container: p.inside_container,
                log: p.log,
                cancel: p.cancel,
                rejected: AtomicU64::new(0),
                restarts: AtomicU64::new(0),
                wanting: std::sync::atomic::AtomicBool::new(false),
                put_back: parking_lot::Mutex::new(None),
            }),
        }
    }

    /// The connector's id in its definition.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    pub fn version(&self) -> u32 {
        self.inner.version
    }

    pub fn entity(&self) -> &Entity {
        &self.inner.entity
    }

    /// A parameter's value (defaults filled in by validation).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.inner.parameters.get(name).map(String::as_str)
    }

    /// A numeric parameter within `range`; `None` when the group leaves it out and the
    /// catalog gives no default.
    pub fn number<T>(&self, name: &str, range: RangeInclusive<T>) -> Result<Option<T>, String>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display,
    {
        let Some(v) = self.param(name) else {
            return Ok(None);
        };
        v.trim()
            .parse::<T>()
            .ok()
            .filter(|n| range.contains(n))
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "{name}: {v:?} must be a number from {} to {}",
                    range.start(),
                    range.end()
                )
            })
    }

    /// The character device that `path_param` gives, checked to be the local device
    /// resource that `resource_param` names and to exist now.
    pub fn device_path(&self, path_param: &str, resource_param: &str) -> Result<PathBuf, String> {
        let path = self
            .param(path_param)
            .ok_or_else(|| format!("{path_param} is required"))?;
        match self.resource(resource_param) {
            Some(LocalResource::Device { source_path }) if source_path.as_os_str() == path => {}
            Some(_) => {
                return Err(format!(
                    "{resource_param} must name the local device resource whose source path is {path}"
                ));
            }
            None => {
                return Err(format!(
                    "{resource_param} must name a local device resource"
                ));
            }
        }
        let meta = std::fs::metadata(path).map_err(|e| format!("{path}: {e}"))?;
        if !std::os::unix::fs::FileTypeExt::is_char_device(&meta.file_type()) {
            return Err(format!("{path} is not a character device"));
        }
        Ok(PathBuf::from(path))
    }

    /// The current value of the secret resource that `resource_param` names.
    pub fn secret(&self, resource_param: &str) -> Option<&SecretValue> {
        match self.resource(resource_param)? {
            LocalResource::Secret(s) => Some(&s.current),
            _ => None,
        }
    }

    /// Every parameter (defaults filled in by validation).
    pub fn parameters(&self) -> &BTreeMap<String, String> {
        &self.inner.parameters
    }

    /// Every resource its `*-ResourceId` parameters name, by parameter.
    pub fn resources(&self) -> &BTreeMap<String, LocalResource> {
        &self.inner.resources
    }

    /// Its log file, for lines that come from elsewhere (its contained process).
    pub(crate) fn log_file(&self) -> Arc<SystemLog> {
        self.inner.log.clone()
    }

    /// The resource a `*-ResourceId` parameter names.
    pub fn resource(&self, parameter: &str) -> Option<&LocalResource> {
        self.inner.resources.get(parameter)
    }

    /// Whether this process is the connector's container (see [`Parts::inside_container`]).
    pub fn inside_container(&self) -> bool {
        self.inner.inside_container
    }

    pub fn core_thing(&self) -> &str {
        &self.inner.core_thing
    }

    pub fn region(&self) -> &str {
        &self.inner.region
    }

    pub fn cancel(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    /// The next message routed to this connector; `None` once it is being stopped.
    pub async fn recv(&self) -> Option<Message> {
        // Detached, it asks for each message when it has none: the other end (a contained
        // connector's core) sends one at a time, so that a stop loses none in between.
        if let Outlet::Channel(tx) = &self.inner.outlet
            && self.inner.inbox.is_empty()
            && !self.inner.wanting.swap(true, Ordering::AcqRel)
        {
            let _ = tx.send(Output::Wanted).await;
        }
        if self.inner.cancel.is_cancelled() {
            return None;
        }
        if let Some(m) = self.inner.put_back.lock().take() {
            return Some(m);
        }
        let m = tokio::select! {
            biased;
            () = self.inner.cancel.cancelled() => None,
            m = self.inner.inbox.recv() => Some(m),
        };
        if let (Some(_), Outlet::Channel(tx)) = (&m, &self.inner.outlet) {
            // Not awaited: the message is taken whatever becomes of this future.
            let _ = tx.try_send(Output::Took);
        }
        m
    }

    /// Give back a message its contained process was sent but never took: the next
    /// [`Self::recv`] returns it first.
    pub(crate) fn put_back(&self, msg: Message) {
        *self.inner.put_back.lock() = Some(msg);
    }

    /// Publish with this connector as Source: the message goes along the group's
    /// subscriptions.
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
    ) -> Result<RouteReport, TopicError> {
        let msg = Message::new(self.inner.entity.clone(), TopicName::parse(topic)?, payload);
        Ok(match &self.inner.outlet {
            Outlet::Router(r) => r.route(msg).await,
            Outlet::Channel(tx) => {
                let delivered = usize::from(tx.send(Output::Published(msg)).await.is_ok());
                RouteReport {
                    matched: 1,
                    delivered,
                    dropped: 1 - delivered,
                }
            }
        })
    }

    /// Count a message refused with an error reply, and log why.
    pub fn rejected(&self, why: &str) {
        self.count_rejected();
        self.log(Level::WARN, &format!("request refused: {why}"));
        if let Outlet::Channel(tx) = &self.inner.outlet {
            // Counted by the other end too (a contained connector's core); a full channel
            // loses only the count, never a message.
            let _ = tx.try_send(Output::Rejected);
        }
    }

    /// Detached: the message it asked for was put into its inbox.
    pub fn received(&self) {
        self.inner.wanting.store(false, Ordering::Release);
    }

    /// Count a refusal made elsewhere (by this connector's contained process).
    pub(crate) fn count_rejected(&self) {
        self.inner.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Messages refused so far.
    pub fn rejected_count(&self) -> u64 {
        self.inner.rejected.load(Ordering::Relaxed)
    }

    /// Times the supervisor has started it again after a crash.
    pub fn restarts(&self) -> u64 {
        self.inner.restarts.load(Ordering::Relaxed)
    }

    /// Mark the inbox as consumed for as long as the guard lives (while `run` runs).
    pub(crate) fn attach(&self) -> coupler_router::Attached {
        self.inner.inbox.attach()
    }

    pub(crate) fn count_restart(&self) {
        self.inner.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// Write to the connector's own log file (and the core's log at DEBUG).
    pub fn log(&self, level: Level, message: &str) {
        self.inner.log.log(level, message);
        tracing::debug!(connector = %self.inner.id, "{message}");
    }
}
