//! Runs a group's connectors: builds them at deployment (a failure fails the deployment and
//! names the connector), supervises them (a crash is restarted with backoff) and stops them
//! gracefully within a deadline.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use coupler_model::api::IsolationMode;
use coupler_model::validate::{ConnectorSpec, ValidatedGroup};
use coupler_model::{Entity, api};
use coupler_router::Router;
use coupler_runtime::logs::SystemLog;
use coupler_runtime::{PreparedUnits, Units};
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Level;

use crate::contained::Containment;
use crate::context::{Context, LocalResource, Parts, SecretSource};
use crate::{Connector, Kind, registry};

/// How long a connector has to stop before it is aborted.
pub const STOP_DEADLINE: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Settings of the connector host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where connector logs go: `<data>/ggc/var/log/user/<region>/aws/`.
    pub log_dir: PathBuf,
    pub region: String,
    /// Run GreengrassContainer connectors without isolation where this host cannot isolate
    /// them. Only by the operator's explicit choice.
    pub allow_uncontained: bool,
    /// The `coupler` binary that contains GreengrassContainer connectors
    /// (`sandbox-exec` and `connector-exec`), or why this host cannot contain them.
    pub isolation: Result<PathBuf, String>,
    /// Where secret resources get their values; without one, a connector that names a
    /// secret resource fails its deployment.
    pub secrets: Option<Arc<dyn SecretSource>>,
}

struct Running {
    ctx: Context,
    contained: bool,
    task: JoinHandle<()>,
    setup: Setup,
}

/// Everything a connector instance was built from. A deployment that leaves it unchanged
/// keeps the instance running: no restart, no reopened port, no lost queue.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Setup {
    spec: ConnectorSpec,
    resources: BTreeMap<String, LocalResource>,
    core_thing: String,
    loggers: Vec<api::Logger>,
    /// Its container (identity, groups, binds, memory), if it runs in one.
    containment: Option<Containment>,
}

/// One running connector's counters, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorStats {
    pub id: String,
    pub name: &'static str,
    pub version: u32,
    /// Runs in a container of its own (GreengrassContainer).
    pub contained: bool,
    /// Messages refused with an error reply.
    pub rejected: u64,
    /// Restarts after a crash.
    pub restarts: u64,
}

/// The connectors of the active group.
pub struct Host {
    router: Arc<Router>,
    config: HostConfig,
    running: Arc<Mutex<Vec<Running>>>,
    /// The stop-then-start of the last commit, so that commits apply in order.
    switching: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Host {
    pub fn new(router: Arc<Router>, config: HostConfig) -> Self {
        Self {
            router,
            config,
            running: Arc::new(Mutex::new(Vec::new())),
            switching: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The connectors running now and their counters.
    pub fn stats(&self) -> Vec<ConnectorStats> {
        self.running
            .lock()
            .iter()
            .map(|r| ConnectorStats {
                id: r.ctx.id().to_owned(),
                name: r.ctx.name(),
                version: r.ctx.version(),
                contained: r.contained,
                rejected: r.ctx.rejected_count(),
                restarts: r.ctx.restarts(),
            })
            .collect()
    }

    fn resources(
        &self,
        c: &ConnectorSpec,
        group: &ValidatedGroup,
    ) -> Result<BTreeMap<String, LocalResource>, String> {
        let mut out = BTreeMap::new();
        for (param, value) in &c.parameters {
            if !param.ends_with("-ResourceId") {
                continue;
            }
            let Some(r) = group.resources.iter().find(|r| &r.id == value) else {
                return Err(format!("{param}: resource {value:?} is not in the group"));
            };
            let data = &r.resource_data_container;
            let resource = if let Some(api::LocalDeviceResourceData {
                source_path: Some(s),
                ..
            }) = &data.local_device_resource_data
            {
                LocalResource::Device {
                    source_path: s.into(),
                }
            } else if let Some(api::LocalVolumeResourceData {
                source_path: Some(s),
                destination_path: Some(d),
                ..
            }) = &data.local_volume_resource_data
            {
                LocalResource::Volume {
                    source_path: s.into(),
                    destination_path: d.into(),
                }
            } else if let Some(api::SecretsManagerSecretResourceData {
                arn: Some(arn),
                additional_staging_labels_to_download: labels,
            }) = &data.secrets_manager_secret_resource_data
            {
                self.secret(&r.id, arn, labels.as_deref().unwrap_or_default())?
            } else {
                // Machine-learning models arrive with their issue.
                continue;
            };
            out.insert(param.clone(), resource);
        }
        Ok(out)
    }

    /// A secret resource with its values, fetched now.
    fn secret(&self, id: &str, arn: &str, labels: &[String]) -> Result<LocalResource, String> {
        coupler_runtime::secrets::fetch(self.config.secrets.as_deref(), id, arn, labels)
            .map(LocalResource::Secret)
    }

    fn build(
        &self,
        c: &ConnectorSpec,
        group: &ValidatedGroup,
        cancel: CancellationToken,
    ) -> Result<Unit, (String, String)> {
        let (name, version) = (c.arn.connector_name(), c.arn.version());
        let Some(kind) = registry::kind(name, version) else {
            return Err((
                "UnsupportedConnector".into(),
                format!(
                    "connector {} ({name} version {version}) cannot run on this core yet",
                    c.id
                ),
            ));
        };
        let exe = match (c.isolation, &self.config.isolation) {
            (IsolationMode::NoContainer, _) => None,
            (IsolationMode::GreengrassContainer, Ok(exe)) => Some(exe),
            (IsolationMode::GreengrassContainer, Err(_)) if self.config.allow_uncontained => None,
            (IsolationMode::GreengrassContainer, Err(why)) => {
                return Err((
                    "IsolationUnavailable".into(),
                    format!(
                        "connector {} ({name} version {version}) runs in GreengrassContainer mode, and this host cannot isolate it: {why}. Set its IsolationMode parameter to NoContainer where the connector has one, or start the core with --allow-uncontained to run it without isolation",
                        c.id
                    ),
                ));
            }
        };
        let resources = self.resources(c, group).map_err(|m| {
            (
                "ConnectorStartFailed".into(),
                format!("connector {}: {m}", c.id),
            )
        })?;
        let log = Arc::new(SystemLog::at(
            self.config.log_dir.join(format!("{}.log", kind.name)),
        ));
        // Connectors are Lambda functions to Greengrass's logger definition.
        log.configure_for(&group.loggers, api::LoggerComponent::Lambda);
        let containment = exe
            .map(|exe| containment(exe, kind.name, c, group, &resources))
            .transpose()
            .map_err(|m| {
                (
                    "ConnectorStartFailed".into(),
                    format!("connector {}: {m}", c.id),
                )
            })?;
        let parts = Parts {
            id: c.id.clone(),
            name: kind.name,
            version,
            entity: Entity::connector(c.arn.as_str()),
            parameters: c.parameters.clone(),
            resources,
            core_thing: group.core.thing.thing_name().to_owned(),
            region: self.config.region.clone(),
            log,
            cancel,
            inside_container: false,
        };
        let ctx = Context::new(parts, self.router.clone());
        let connector = (kind.build)(&ctx).map_err(|m| {
            (
                "ConnectorStartFailed".into(),
                format!("connector {} ({name} version {version}): {m}", c.id),
            )
        })?;
        let setup = Setup {
            spec: c.clone(),
            resources: ctx.resources().clone(),
            core_thing: group.core.thing.thing_name().to_owned(),
            loggers: group.loggers.clone(),
            containment: containment.clone(),
        };
        Ok(Unit {
            kind,
            ctx,
            connector,
            containment,
            setup,
        })
    }
}

/// How connector `c` is contained: as the group's default identity (RunAs of its function
/// definition's DefaultConfig, checked by validation; the core's user without one), with
/// the groups its resources' GroupOwnerSetting add, and its MemorySize parameter.
fn containment(
    exe: &std::path::Path,
    name: &str,
    c: &ConnectorSpec,
    group: &ValidatedGroup,
    resources: &BTreeMap<String, LocalResource>,
) -> Result<Containment, String> {
    let run_as = match group.default_run_as {
        None => None,
        Some(r) => {
            let id = |v: Option<i64>| {
                u32::try_from(v.unwrap_or(0)).map_err(|_| format!("the group's RunAs id {v:?}"))
            };
            Some((id(r.uid)?, id(r.gid)?))
        }
    };
    let mut groups = Vec::new();
    for (param, value) in &c.parameters {
        if !param.ends_with("-ResourceId") {
            continue;
        }
        let Some(r) = group.resources.iter().find(|r| &r.id == value) else {
            continue;
        };
        let data = &r.resource_data_container;
        let (source, owner) = if let Some(d) = &data.local_device_resource_data {
            (&d.source_path, &d.group_owner_setting)
        } else if let Some(v) = &data.local_volume_resource_data {
            (&v.source_path, &v.group_owner_setting)
        } else {
            continue;
        };
        if let Some(source) = source
            && let Some(gid) = coupler_runtime::isolation::group_owner(
                owner.as_ref(),
                std::path::Path::new(source),
            )?
        {
            groups.push(gid);
        }
    }
    groups.sort_unstable();
    groups.dedup();
    let memory_kb = c.parameters.get("MemorySize").and_then(|m| m.parse().ok());
    Ok(Containment::new(
        exe, name, resources, memory_kb, run_as, groups,
    ))
}

/// A built connector: its kind (to build it again after a crash), context, instance, and
/// what it was built from.
struct Unit {
    kind: &'static Kind,
    ctx: Context,
    connector: Box<dyn Connector>,
    /// GreengrassContainer: how its process is contained.
    containment: Option<Containment>,
    setup: Setup,
}

struct Prepared {
    units: Vec<Unit>,
    running: Arc<Mutex<Vec<Running>>>,
    switching: Arc<tokio::sync::Mutex<()>>,
}

impl Units for Host {
    fn prepare(
        &self,
        _group_id: &str,
        group: &ValidatedGroup,
    ) -> Result<Box<dyn PreparedUnits>, Vec<(String, String)>> {
        let mut units = Vec::new();
        let mut problems = Vec::new();
        for c in &group.connectors {
            match self.build(c, group, CancellationToken::new()) {
                Ok(u) => units.push(u),
                Err(p) => problems.push(p),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Box::new(Prepared {
            units,
            running: self.running.clone(),
            switching: self.switching.clone(),
        }))
    }

    fn stop_all(&self) {
        Prepared {
            units: Vec::new(),
            running: self.running.clone(),
            switching: self.switching.clone(),
        }
        .switch();
    }
}

impl PreparedUnits for Prepared {
    fn commit(self: Box<Self>) {
        self.switch();
    }
}

impl Prepared {
    /// Keep the running connectors whose setup is unchanged; stop the others (each within
    /// the deadline), then start the new ones, in a task: a port an old instance holds is
    /// free before its successor opens it. Switches run one after another, each taking what
    /// the one before started.
    fn switch(self) {
        let Prepared {
            units,
            running,
            switching,
        } = self;
        tokio::spawn(async move {
            let _order = switching.lock().await;
            let (kept, old): (Vec<_>, Vec<_>) = std::mem::take(&mut *running.lock())
                .into_iter()
                .partition(|r| units.iter().any(|u| u.setup == r.setup));
            for r in &old {
                r.ctx.cancel().cancel();
            }
            for r in old {
                stop(r).await;
            }
            let mut list = running.lock();
            for u in units {
                if let Some(r) = kept.iter().find(|r| r.setup == u.setup) {
                    r.ctx
                        .log(Level::INFO, "unchanged by the deployment; keeps running");
                    continue;
                }
                list.push(Running {
                    ctx: u.ctx.clone(),
                    contained: u.containment.is_some(),
                    task: tokio::spawn(supervise(u.kind, u.ctx, u.connector, u.containment)),
                    setup: u.setup,
                });
            }
            list.extend(kept);
        });
    }
}

async fn stop(r: Running) {
    let mut task = r.task;
    if tokio::time::timeout(STOP_DEADLINE, &mut task)
        .await
        .is_err()
    {
        tracing::warn!(connector = %r.ctx.id(), "connector did not stop within {STOP_DEADLINE:?}; aborted");
        task.abort();
    }
}

/// Run a connector (in its container, if it has one); restart it with backoff when it
/// crashes or ends, until cancelled. A contained connector is still built here first: its
/// parameters and resources are checked before its process starts.
async fn supervise(
    kind: &'static Kind,
    ctx: Context,
    first: Box<dyn Connector>,
    containment: Option<Containment>,
) {
    let mut next = Some(first);
    let mut backoff = FIRST_BACKOFF;
    ctx.log(
        Level::INFO,
        &format!("{} version {} starting", kind.name, ctx.version()),
    );
    loop {
        let connector = match next.take() {
            Some(c) => c,
            None => match (kind.build)(&ctx) {
                Ok(c) => c,
                Err(e) => {
                    ctx.log(Level::ERROR, &format!("cannot start again: {e}"));
                    tracing::error!(connector = %ctx.id(), error = %e, "connector cannot start again");
                    if !pause(&ctx, &mut backoff).await {
                        return;
                    }
                    continue;
                }
            },
        };
        let started = tokio::time::Instant::now();
        // Its own task, so that a panic is caught here and not in the core.
        let attached = ctx.attach();
        let outcome = match &containment {
            Some(how) => {
                drop(connector);
                Ok(crate::contained::run(&ctx, how).await)
            }
            None => tokio::spawn(connector.run(ctx.clone())).await,
        };
        drop(attached);
        if ctx.cancel().is_cancelled() {
            ctx.log(Level::INFO, "stopped");
            return;
        }
        let why = match outcome {
            Ok(Ok(())) => "ended".to_owned(),
            Ok(Err(e)) => format!("crashed: {e}"),
            Err(e) => format!("panicked: {e}"),
        };
        ctx.log(Level::ERROR, &format!("{why}; restarting in {backoff:?}"));
        ctx.count_restart();
        tracing::error!(connector = %ctx.id(), "connector {why}; restarting in {backoff:?}");
        if started.elapsed() > MAX_BACKOFF {
            backoff = FIRST_BACKOFF;
        }
        if !pause(&ctx, &mut backoff).await {
            return;
        }
    }
}

/// Wait out the backoff (doubling it); false if cancelled meanwhile.
async fn pause(ctx: &Context, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    tokio::select! {
        () = ctx.cancel().cancelled() => false,
        () = tokio::time::sleep(wait) => true,
    }
}
