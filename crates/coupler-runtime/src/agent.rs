//! The deployment agent: pending deployment → validated group → routing table swapped →
//! active group persisted → outcome reported. On any failure the previous group keeps
//! serving and the deployment is reported as `Failure` with its reasons.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use coupler_model::{GroupBundle, Options, ValidatedGroup};
use coupler_router::{Router, RoutingTable};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::active::{Active, ActiveError, ActiveStore};
use crate::logs::SystemLog;

/// A deployment the control plane wants applied.
#[derive(Debug, Clone)]
pub struct Pending {
    pub group_id: String,
    pub deployment_id: String,
    /// `NewDeployment`, `Redeployment`, `ResetDeployment`, `ForceResetDeployment`.
    pub deployment_type: String,
    pub kind: PendingKind,
}

#[derive(Debug, Clone)]
pub enum PendingKind {
    /// Apply this group version.
    Deploy {
        group_version_id: String,
        group: GroupBundle,
    },
    /// Stop everything and forget the active group.
    Reset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    Failure,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "Success",
            Self::Failure => "Failure",
        }
    }
}

/// The outcome of a deployment, as `GetDeploymentStatus` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub status: Status,
    pub error_message: Option<String>,
    /// `(DetailedErrorCode, DetailedErrorMessage)`.
    pub error_details: Vec<(String, String)>,
}

impl Report {
    fn success() -> Self {
        Self {
            status: Status::Success,
            error_message: None,
            error_details: Vec::new(),
        }
    }

    /// A failure for these reasons, each an (error code, message); the message joins them.
    fn failure(reasons: Vec<(String, String)>) -> Self {
        Self {
            status: Status::Failure,
            error_message: Some(
                reasons
                    .iter()
                    .map(|(_, m)| m.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            error_details: reasons,
        }
    }
}

/// How the agent reaches its control plane: in process for `coupler up`, over HTTP for a
/// core attached to a remote one.
pub trait ControlPlane: Send + Sync {
    /// The deployment to apply next, if any.
    fn next_deployment(&self) -> Result<Option<Pending>, String>;
    /// Record the outcome of a deployment.
    fn report(&self, pending: &Pending, report: &Report) -> Result<(), String>;
}

/// Whether this core can run a connector version (the build's list of implemented ones).
pub type CanRun = dyn Fn(&str, u32) -> bool + Send + Sync;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the active deployment: {0}")]
    Active(#[from] ActiveError),
    #[error("the active deployment {deployment} no longer validates: {problems}")]
    Invalid {
        deployment: String,
        problems: String,
    },
}

/// Applies deployments to this core.
pub struct Agent {
    router: Arc<Router>,
    store: ActiveStore,
    options: Options,
    can_run: Box<CanRun>,
    active: Mutex<Option<Active>>,
    /// The core's log, which takes its level and space from the deployed group.
    system_log: Option<Arc<SystemLog>>,
    on_activate: Option<Box<OnActivate>>,
    /// Connectors and functions: every kind prepares before any commits.
    units: Vec<Arc<dyn Units>>,
}

/// The units of a group (its connectors, its functions) as the agent starts and stops
/// them. Two phases, so that a group whose units cannot start leaves the running one alone.
pub trait Units: Send + Sync {
    /// Check and build every unit of `group` without starting any; the reasons, each with
    /// an error code, if some cannot start.
    fn prepare(
        &self,
        group_id: &str,
        group: &ValidatedGroup,
    ) -> Result<Box<dyn PreparedUnits>, Vec<(String, String)>>;

    /// Stop every unit (a reset deployment).
    fn stop_all(&self);
}

/// Units built by [`Units::prepare`], started by `commit` in place of the running ones.
pub trait PreparedUnits: Send {
    fn commit(self: Box<Self>);
}

/// Told of every group the agent makes active, and of a reset (`None`), after the routing
/// table is in place: the device MQTT server takes its devices and certificates from it.
pub type OnActivate = dyn Fn(Option<(&str, &ValidatedGroup)>) + Send + Sync;

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("store", &self.store)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Agent {
    pub fn new(
        router: Arc<Router>,
        data_dir: &Path,
        options: Options,
        can_run: Box<CanRun>,
    ) -> Self {
        Self {
            router,
            store: ActiveStore::new(data_dir),
            options,
            can_run,
            active: Mutex::new(None),
            system_log: None,
            on_activate: None,
            units: Vec::new(),
        }
    }

    /// Configure `log` from each group this agent makes active.
    #[must_use]
    pub fn with_system_log(mut self, log: Arc<SystemLog>) -> Self {
        self.system_log = Some(log);
        self
    }

    /// Call `f` with each group made active.
    #[must_use]
    pub fn on_activate(mut self, f: Box<OnActivate>) -> Self {
        self.on_activate = Some(f);
        self
    }

    /// Also start and stop the group's units with `units` (one call per kind of unit).
    #[must_use]
    pub fn with_units(mut self, units: Arc<dyn Units>) -> Self {
        self.units.push(units);
        self
    }

    /// Build the units of `group`, every kind of them, or list every reason some cannot.
    fn prepare_units(
        &self,
        group_id: &str,
        group: &ValidatedGroup,
    ) -> Result<Vec<Box<dyn PreparedUnits>>, Report> {
        let mut prepared = Vec::with_capacity(self.units.len());
        let mut reasons = Vec::new();
        for units in &self.units {
            match units.prepare(group_id, group) {
                Ok(p) => prepared.push(p),
                Err(r) => reasons.extend(r),
            }
        }
        if reasons.is_empty() {
            Ok(prepared)
        } else {
            Err(Report::failure(reasons))
        }
    }

    /// Everything beside the routing table that follows the active group.
    fn activated(&self, group: Option<(&str, &ValidatedGroup)>) {
        if let Some(log) = &self.system_log {
            log.configure(group.map_or(&[], |(_, g)| g.loggers.as_slice()));
        }
        if let Some(f) = &self.on_activate {
            f(group);
        }
    }

    /// The deployment active on this core.
    pub fn active(&self) -> Option<Active> {
        self.active.lock().clone()
    }

    /// Bring back the deployment that was active before a restart.
    pub fn restore(&self) -> Result<Option<Active>, AgentError> {
        let Some(active) = self.store.load()? else {
            return Ok(None);
        };
        let group = self.check(&active.group).map_err(|r| AgentError::Invalid {
            deployment: active.deployment_id.clone(),
            problems: r.error_message.unwrap_or_default(),
        })?;
        // A unit that cannot start now (a serial port gone after a reboot) must not keep the
        // core down: the group's routes serve, and the reason is logged.
        let prepared = match self.prepare_units(&active.group_id, &group) {
            Ok(p) => p,
            Err(r) => {
                tracing::error!(group = %active.group_id, reason = r.error_message.as_deref().unwrap_or(""), "the restored group's units cannot start");
                Vec::new()
            }
        };
        self.router.install(RoutingTable::compile(&group.routes));
        for p in prepared {
            p.commit();
        }
        self.activated(Some((&active.group_id, &group)));
        *self.active.lock() = Some(active.clone());
        tracing::info!(group = %active.group_id, deployment = %active.deployment_id, "active deployment restored");
        Ok(Some(active))
    }

    /// Validate a group for this core, and check that it can run every unit.
    fn check(&self, bundle: &GroupBundle) -> Result<ValidatedGroup, Report> {
        let group = coupler_model::validate(bundle, &self.options).map_err(|problems| Report {
            status: Status::Failure,
            error_message: Some(format!(
                "the group is invalid for this core: {}",
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
            error_details: problems
                .iter()
                .map(|p| ("InvalidGroupVersion".to_owned(), p.to_string()))
                .collect(),
        })?;
        let mut cannot: Vec<(String, String)> = Vec::new();
        for c in &group.connectors {
            if !(self.can_run)(c.arn.connector_name(), c.arn.version()) {
                cannot.push((
                    "UnsupportedConnector".into(),
                    format!(
                        "connector {} ({} version {}) cannot run on this core yet",
                        c.id,
                        c.arn.connector_name(),
                        c.arn.version()
                    ),
                ));
            }
        }
        if cannot.is_empty() {
            Ok(group)
        } else {
            Err(Report::failure(cannot))
        }
    }

    /// Apply one deployment and say how it went. The previous group keeps serving unless
    /// this one is applied completely.
    pub fn apply(&self, pending: &Pending) -> Report {
        let report = match &pending.kind {
            PendingKind::Reset => self.reset(),
            PendingKind::Deploy {
                group_version_id,
                group,
            } => self.deploy(pending, group_version_id, group),
        };
        match &report.error_message {
            None => tracing::info!(
                group = %pending.group_id,
                deployment = %pending.deployment_id,
                kind = %pending.deployment_type,
                "deployment succeeded"
            ),
            Some(m) => tracing::error!(
                "Deployment {} of type {} for group {} failed error: {m}",
                pending.deployment_id,
                pending.deployment_type,
                pending.group_id
            ),
        }
        report
    }

    fn deploy(&self, pending: &Pending, group_version_id: &str, bundle: &GroupBundle) -> Report {
        let group = match self.check(bundle) {
            Ok(g) => g,
            Err(report) => return report,
        };
        let prepared = match self.prepare_units(&pending.group_id, &group) {
            Ok(p) => p,
            Err(report) => return report,
        };
        let table = RoutingTable::compile(&group.routes);
        let active = Active {
            group_id: pending.group_id.clone(),
            group_version_id: group_version_id.to_owned(),
            deployment_id: pending.deployment_id.clone(),
            group: bundle.clone(),
        };
        // Persist first: if that fails, nothing has changed and the old group still serves.
        if let Err(e) = self.store.save(&active) {
            return Report {
                status: Status::Failure,
                error_message: Some(format!("cannot record the deployment: {e}")),
                error_details: vec![("StateWriteFailed".into(), e.to_string())],
            };
        }
        self.router.install(table);
        for p in prepared {
            p.commit();
        }
        self.activated(Some((&pending.group_id, &group)));
        *self.active.lock() = Some(active);
        Report::success()
    }

    fn reset(&self) -> Report {
        if let Err(e) = self.store.clear() {
            return Report {
                status: Status::Failure,
                error_message: Some(format!("cannot clear the deployment: {e}")),
                error_details: vec![("StateWriteFailed".into(), e.to_string())],
            };
        }
        self.router.install(RoutingTable::default());
        for units in &self.units {
            units.stop_all();
        }
        self.activated(None);
        *self.active.lock() = None;
        Report::success()
    }

    /// Apply pending deployments until `shutdown` completes: at once when `wake` is
    /// notified, and every `poll` otherwise (so nothing is missed across restarts).
    pub async fn run(
        self: Arc<Self>,
        control_plane: Arc<dyn ControlPlane>,
        wake: Arc<Notify>,
        poll: Duration,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            loop {
                let cp = control_plane.clone();
                let agent = self.clone();
                // The control plane and the state file are blocking work.
                let step = tokio::task::spawn_blocking(move || -> Result<bool, String> {
                    let Some(pending) = cp.next_deployment()? else {
                        return Ok(false);
                    };
                    let report = agent.apply(&pending);
                    cp.report(&pending, &report)?;
                    Ok(true)
                })
                .await;
                match step {
                    Ok(Ok(true)) => continue,
                    Ok(Ok(false)) => break,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot reach the control plane");
                        break;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "deployment step failed");
                        break;
                    }
                }
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = wake.notified() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }
}
