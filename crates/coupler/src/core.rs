//! The core half of Coupler: the router, the device MQTT server, connectors, functions,
//! the local shadow service and the deployment agent. `coupler up` wires it to the control
//! plane in the same process; `coupler core` to a remote one over its HTTP API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use coupler_api::client::Client;
use coupler_api::service::ServerCertificate;
use coupler_connectors::SecretSource;
use coupler_router::{Router, RouterConfig};
use coupler_runtime::cloud::CloudBridge;
use coupler_runtime::functions::{CodeSource, FunctionCode, FunctionHost, FunctionHostConfig};
use coupler_runtime::logs::SystemLog;
use coupler_runtime::shadow_service::ShadowService;
use coupler_runtime::{Agent, ControlPlane, Pending, PendingKind, Report};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::mqtt::{MqttArgs, ServerCerts};

/// The flags of a core, the same for `coupler up` and `coupler core`.
#[derive(Debug, Clone, clap::Args)]
pub struct CoreFlags {
    /// A YAML file of settings: the long flags without their dashes, as keys
    /// (`cloud: mqtts://…`, `cloud-window: 200`, `allow-uncontained: true`). Flags on the
    /// command line win over it, and it wins over COUPLER_* environment variables.
    #[arg(long, env = "COUPLER_CONFIG", value_name = "YAML")]
    pub config: Option<PathBuf>,
    /// Let deployed functions run as root (Greengrass `runtime.allowFunctionsToRunAsRoot`).
    #[arg(long)]
    pub allow_functions_to_run_as_root: bool,
    /// Run GreengrassContainer functions and connectors without isolation where this host
    /// cannot isolate them (it lacks namespaces or cgroups, or the core is not root; see
    /// `coupler doctor`). Without it, such deployments fail and say why. Where the host can
    /// isolate, units are always contained and this flag changes nothing.
    #[arg(long, visible_alias = "allow-uncontained-connectors")]
    pub allow_uncontained: bool,
    /// Address of the Lambda IPC that functions call (its port is their GG_DAEMON_PORT).
    /// Keep it on loopback: workers authenticate with tokens, but the calls are plain HTTP.
    #[arg(long, default_value = "127.0.0.1:8000", env = "COUPLER_IPC")]
    pub ipc: SocketAddr,
    /// The Python 3 interpreter that runs Python functions.
    #[arg(long, default_value = "python3", env = "COUPLER_PYTHON")]
    pub python: PathBuf,
    #[command(flatten)]
    pub mqtt: MqttArgs,
    #[command(flatten)]
    pub cloud: crate::cloud::CloudArgs,
}

/// Where a core gets what its control plane holds.
pub struct Backend {
    pub code: Arc<dyn CodeSource>,
    pub secrets: Arc<dyn SecretSource>,
    pub certs: Arc<dyn ServerCerts>,
}

/// A core, built and not yet serving.
pub struct Core {
    pub router: Arc<Router>,
    pub broker: Arc<coupler_mqtt::Broker>,
    pub mqtt: Arc<crate::mqtt::Core>,
    pub connectors: Arc<coupler_connectors::host::Host>,
    pub functions: Arc<FunctionHost>,
    pub shadows: Arc<ShadowService>,
    pub cloud: Arc<CloudBridge>,
    pub agent: Arc<Agent>,
    ipc: Option<TcpListener>,
    mqtt_tls: Option<TcpListener>,
    mqtt_plain: Option<TcpListener>,
}

/// Bind `addr`, naming the flag in the error.
async fn bind(addr: SocketAddr, flag: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} ({flag}): {e}"))
}

impl Core {
    /// Build every part of a core keeping its state in `dir`, and bind its listeners.
    pub async fn build(
        flags: &CoreFlags,
        dir: &Path,
        region: &str,
        system_log: Arc<SystemLog>,
        backend: Backend,
    ) -> Result<Self, String> {
        let mut router_config = RouterConfig::default();
        router_config.per_kind.insert(
            coupler_model::EntityKind::Device,
            coupler_mqtt::device_inbox(),
        );
        router_config.per_kind.insert(
            coupler_model::EntityKind::Connector,
            coupler_connectors::connector_inbox(),
        );
        // A function's queue slows a fast local sender rather than dropping, like a
        // connector's; its bound is Greengrass's maxWorkItemCount.
        router_config.per_kind.insert(
            coupler_model::EntityKind::Function,
            coupler_connectors::connector_inbox(),
        );
        // Messages for the cloud only wait here on their way into the spool.
        router_config.per_kind.insert(
            coupler_model::EntityKind::Cloud,
            coupler_connectors::connector_inbox(),
        );
        let router = Arc::new(Router::new(router_config));
        let cloud = Arc::new(CloudBridge::new(
            router.clone(),
            flags.cloud.upstream()?,
            dir.join("ggc/var/state/spool"),
        ));
        let broker = coupler_mqtt::Broker::new(
            router.clone(),
            coupler_mqtt::Config {
                max_payload: flags.mqtt.mqtt_max_payload,
                ..coupler_mqtt::Config::default()
            },
        );
        let mqtt = Arc::new(crate::mqtt::Core::new(broker.clone(), backend.certs, dir));
        let isolation = coupler_runtime::isolation::probe().and_then(|()| {
            std::env::current_exe().map_err(|e| format!("cannot find the coupler binary: {e}"))
        });
        match &isolation {
            Ok(_) => coupler_runtime::isolation::sweep_stale_cgroups(),
            Err(why) => {
                tracing::info!(%why, "GreengrassContainer units cannot run isolated here")
            }
        }
        let connectors = Arc::new(coupler_connectors::host::Host::new(
            router.clone(),
            coupler_connectors::host::HostConfig {
                log_dir: dir.join(format!("ggc/var/log/user/{region}/aws")),
                region: region.to_owned(),
                allow_uncontained: flags.allow_uncontained,
                isolation: isolation.clone(),
                secrets: Some(backend.secrets.clone()),
            },
        ));
        let shadows = {
            let path = dir.join("ggc/var/state/shadows");
            let store = coupler_runtime::shadow::Shadows::open(
                &path,
                coupler_runtime::shadow::DEFAULT_MAX_DOCUMENT_BYTES,
            )
            .map_err(|e| format!("the local shadows in {}: {e}", path.display()))?;
            Arc::new(ShadowService::new(store, router.clone()))
        };
        cloud.sync_shadows(shadows.clone());
        // Bound now so that functions restored at start can connect; served by `start`.
        let ipc = bind(flags.ipc, "--ipc").await?;
        let functions = Arc::new(FunctionHost::new(
            router.clone(),
            FunctionHostConfig {
                data_dir: dir.to_owned(),
                region: region.to_owned(),
                ipc_addr: ipc.local_addr().map_err(|e| e.to_string())?,
                python: flags.python.clone(),
                max_on_demand_workers: coupler_runtime::functions::DEFAULT_MAX_ON_DEMAND_WORKERS,
                allow_uncontained: flags.allow_uncontained,
                isolation: isolation.clone(),
                allow_root: flags.allow_functions_to_run_as_root,
                secrets: Some(backend.secrets),
                code: backend.code,
                shadows: Some(shadows.clone()),
            },
        )?);
        let agent = Arc::new(
            Agent::new(
                router.clone(),
                dir,
                coupler_model::Options {
                    allow_functions_to_run_as_root: flags.allow_functions_to_run_as_root,
                },
                Box::new(crate::connectors::is_runnable),
            )
            .with_system_log(system_log)
            .on_activate({
                let (mqtt, shadows) = (mqtt.clone(), shadows.clone());
                Box::new(move |group| {
                    // A reset removes the local shadows, as in Greengrass.
                    if group.is_none() {
                        shadows.clear();
                    }
                    mqtt.activate(group);
                    crate::malloc::trim();
                })
            })
            .with_units(connectors.clone())
            .with_units(functions.clone())
            .with_units(cloud.clone()),
        );
        let mqtt_tls = match flags.mqtt.tls_addr()? {
            Some(a) => Some(bind(a, "--mqtt").await?),
            None => None,
        };
        let mqtt_plain = match flags.mqtt.mqtt_plain {
            Some(a) => Some(bind(a, "--mqtt-plain").await?),
            None => None,
        };
        Ok(Self {
            router,
            broker,
            mqtt,
            connectors,
            functions,
            shadows,
            cloud,
            agent,
            ipc: Some(ipc),
            mqtt_tls,
            mqtt_plain,
        })
    }

    /// The startup lines about the core's listeners.
    pub fn describe(&self, dir: &Path) -> Vec<String> {
        let addr = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
        let mut lines = Vec::new();
        if let Some(a) = addr(&self.mqtt_tls) {
            lines.push(format!(
                "device MQTT (TLS)  mqtts://{a}  (group CA: {})",
                dir.join("ggc/var/state/server/ca.pem").display()
            ));
        }
        if let Some(a) = addr(&self.mqtt_plain) {
            lines.push(format!(
                "device MQTT plain  mqtt://{a}  (no certificates: development only)"
            ));
        }
        if let Some(a) = addr(&self.ipc) {
            lines.push(format!(
                "Lambda IPC         http://{a}  (GG_DAEMON_PORT for functions)"
            ));
        }
        lines.push(match self.cloud.status().url {
            Some(url) => format!("cloud              {url}  (spool: {})", dir.join("ggc/var/state/spool").display()),
            None => "cloud              not configured (--cloud): messages for the cloud wait in the spool".to_owned(),
        });
        lines
    }

    /// Serve devices, functions and shadows until `stop` (a fresh future for each task).
    /// Await the returned [`Serving`] before exiting so that devices hear the shutdown.
    pub fn start<F, S>(&mut self, stop: F) -> Serving
    where
        F: Fn() -> S,
        S: Future<Output = ()> + Send + 'static,
    {
        let mqtt_stop = tokio_util::sync::CancellationToken::new();
        let mut listeners = Vec::new();
        for (listener, transport) in [
            (
                self.mqtt_tls.take(),
                coupler_mqtt::Transport::Tls(self.mqtt.tls.clone()),
            ),
            (self.mqtt_plain.take(), coupler_mqtt::Transport::Plain),
        ] {
            if let Some(l) = listener {
                listeners.push(tokio::spawn(coupler_mqtt::serve(
                    l,
                    transport,
                    self.broker.clone(),
                    mqtt_stop.clone(),
                )));
            }
        }
        {
            let s = stop();
            tokio::spawn(async move {
                s.await;
                mqtt_stop.cancel();
            });
        }
        tokio::spawn(self.mqtt.clone().keep_fresh(stop()));
        tokio::spawn(self.shadows.clone().run());
        listeners.push(tokio::spawn(self.cloud.clone().run(stop())));
        if let Some(ipc) = self.ipc.take() {
            let (functions, s) = (self.functions.clone(), stop());
            tokio::spawn(async move {
                if let Err(e) = functions.serve_ipc(ipc, s).await {
                    tracing::error!(error = %e, "the Lambda IPC stopped");
                }
            });
        }
        Serving { listeners }
    }
}

/// The device listeners and the cloud bridge of a started core.
#[must_use = "await `finished` so that devices are told about the shutdown"]
pub struct Serving {
    listeners: Vec<tokio::task::JoinHandle<()>>,
}

impl Serving {
    /// Wait until the listeners have closed their connections and the cloud spool is synced
    /// (after `stop`).
    pub async fn finished(self) {
        for l in self.listeners {
            let _ = l.await;
        }
    }
}

// ---- `coupler core`: a core attached to a remote control plane --------------------------

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The control plane's API (a `coupler up` or `coupler control-plane`).
    #[arg(long, env = "COUPLER_CONTROL_PLANE")]
    control_plane: String,
    /// This core's thing name: it applies the deployments of groups whose core definition
    /// names this thing.
    #[arg(long, env = "COUPLER_THING_NAME")]
    thing_name: String,
    /// Where this core keeps its state (active deployment, function code, shadows, logs).
    #[arg(long, default_value = "coupler-core", env = "COUPLER_DATA_DIR")]
    data_dir: PathBuf,
    /// The region of the control plane's ARNs.
    #[arg(long, default_value = "us-east-1", env = "COUPLER_REGION")]
    region: String,
    /// The shared-credentials file with the key to sign with, used when
    /// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not set (the control plane's
    /// DATA_DIR/credentials, or any file in that format).
    #[arg(long, env = "COUPLER_CREDENTIALS")]
    credentials: Option<PathBuf>,
    /// Where this core serves /health and /metrics.
    #[arg(long, default_value = "127.0.0.1:7071", env = "COUPLER_LISTEN")]
    listen: SocketAddr,
    /// How often to ask the control plane for a deployment, in seconds.
    #[arg(long, default_value_t = 2)]
    poll_secs: u64,
    #[command(flatten)]
    flags: CoreFlags,
}

pub fn run(args: &Args) -> ExitCode {
    let system_log = crate::up::init_logging(&args.data_dir);
    crate::up::block_on(serve(args, system_log))
}

async fn serve(args: &Args, system_log: Arc<SystemLog>) -> Result<(), String> {
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (key_id, secret) = crate::client::credentials(args.credentials.as_deref())?;
    let client = Arc::new(Client::new(
        &args.control_plane,
        &key_id,
        &secret,
        &args.region,
    )?);
    let backend = Backend {
        code: Arc::new(RemoteCode(client.clone())),
        secrets: Arc::new(RemoteSecrets(client.clone())),
        certs: Arc::new(RemoteCerts(client.clone())),
    };
    let mut core = Core::build(&args.flags, dir, &args.region, system_log.clone(), backend).await?;
    let active = core.agent.restore().map_err(|e| e.to_string())?;
    let listener = bind(args.listen, "--listen").await?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    crate::up::say(&format!("Coupler {} core", env!("CARGO_PKG_VERSION")));
    crate::up::say(&format!("  thing name         {}", args.thing_name));
    crate::up::say(&format!("  control plane      {}", args.control_plane));
    crate::up::say(&format!("  data dir           {}", dir.display()));
    crate::up::say(&format!(
        "  active group       {}",
        active.as_ref().map_or("none".to_owned(), |a| format!(
            "{} (deployment {})",
            a.group_id, a.deployment_id
        ))
    ));
    for line in core.describe(dir) {
        crate::up::say(&format!("  {line}"));
    }
    crate::up::say(&format!(
        "  health / metrics   http://{addr}/health  http://{addr}/metrics"
    ));
    crate::up::say(&format!(
        "  core log           {}",
        system_log.path().display()
    ));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let agent_task = tokio::spawn(core.agent.clone().run(
        Arc::new(Remote {
            client,
            thing: args.thing_name.clone(),
            agent: core.agent.clone(),
        }),
        Arc::new(tokio::sync::Notify::new()),
        Duration::from_secs(args.poll_secs.max(1)),
        stopped(),
    ));
    let serving = core.start(&stopped);
    tokio::spawn(async move {
        crate::up::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let routes = crate::up::status_routes(&core);
    tracing::info!(%addr, thing = %args.thing_name, "core serving");
    axum::serve(listener, routes)
        .with_graceful_shutdown(stopped())
        .await
        .map_err(|e| e.to_string())?;
    let _ = agent_task.await;
    serving.finished().await;
    tracing::info!("stopped");
    Ok(())
}

/// Run `f` to completion from synchronous code, whatever thread this is: on a thread and
/// runtime of its own (the deployment's work is synchronous and may run on a runtime thread).
fn blocking<T: Send>(f: impl Future<Output = T> + Send) -> Result<T, String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(f))
                .map_err(|e| format!("runtime: {e}"))
        })
        .join()
        .unwrap_or_else(|_| Err("the control-plane call panicked".into()))
    })
}

/// The remote control plane's deployments for this core.
struct Remote {
    client: Arc<Client>,
    thing: String,
    agent: Arc<Agent>,
}

impl Remote {
    /// A ForceResetDeployment of the group this core runs: the control plane reported it
    /// Success at once; the core still has to clean up.
    fn forced_reset(&self) -> Result<Option<Pending>, String> {
        let Some(active) = self.agent.active() else {
            return Ok(None);
        };
        let path = format!("/greengrass/groups/{}/deployments", active.group_id);
        let list = blocking(self.client.call(Method::GET, &path, None))??;
        let newest = list["Deployments"]
            .as_array()
            .into_iter()
            .flatten()
            .max_by(|a, b| {
                a["CreatedAt"]
                    .as_str()
                    .unwrap_or_default()
                    .cmp(b["CreatedAt"].as_str().unwrap_or_default())
            });
        Ok(newest
            .filter(|d| d["DeploymentType"] == "ForceResetDeployment")
            .and_then(|d| d["DeploymentId"].as_str())
            .filter(|id| *id != active.deployment_id)
            .map(|id| Pending {
                group_id: active.group_id.clone(),
                deployment_id: id.to_owned(),
                deployment_type: "ForceResetDeployment".into(),
                kind: PendingKind::Reset,
            }))
    }
}

impl ControlPlane for Remote {
    fn next_deployment(&self) -> Result<Option<Pending>, String> {
        let path = format!("/coupler/cores/{}/pending-deployment", self.thing);
        let p = blocking(self.client.call(Method::GET, &path, None))??;
        if p.is_null() {
            return self.forced_reset();
        }
        let text = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
        let kind = match (p["GroupVersionId"].as_str(), p.get("Group")) {
            (Some(vid), Some(group)) if !group.is_null() => PendingKind::Deploy {
                group_version_id: vid.to_owned(),
                group: serde_json::from_value(group.clone())
                    .map_err(|e| format!("the pending group: {e}"))?,
            },
            _ => PendingKind::Reset,
        };
        Ok(Some(Pending {
            group_id: text("GroupId"),
            deployment_id: text("DeploymentId"),
            deployment_type: text("DeploymentType"),
            kind,
        }))
    }

    fn report(&self, pending: &Pending, report: &Report) -> Result<(), String> {
        if pending.deployment_type == "ForceResetDeployment" {
            // Already Success on the control plane.
            return Ok(());
        }
        let body = json!({
            "DeploymentStatus": report.status.as_str(),
            "ErrorMessage": report.error_message,
            "ErrorDetails": report.error_details.iter().map(|(code, message)| json!({
                "DetailedErrorCode": code, "DetailedErrorMessage": message,
            })).collect::<Vec<_>>(),
        });
        let path = format!(
            "/coupler/groups/{}/deployments/{}/status",
            pending.group_id, pending.deployment_id
        );
        blocking(self.client.call(Method::PUT, &path, Some(&body)))??;
        Ok(())
    }
}

/// Function code through the control plane's Lambda API: GetFunction, then its
/// `Code.Location`.
struct RemoteCode(Arc<Client>);

impl CodeSource for RemoteCode {
    fn code(&self, arn: &str) -> Result<FunctionCode, String> {
        let (unqualified, qualifier) = match arn.rsplit_once(':') {
            Some((u, q)) if u.matches(':').count() == 6 => (u, Some(q)),
            _ => (arn, None),
        };
        let encode = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let mut path = format!("/2015-03-31/functions/{}", encode(unqualified));
        if let Some(q) = qualifier {
            path.push_str(&format!("?Qualifier={}", encode(q)));
        }
        let f = blocking(self.0.call(Method::GET, &path, None))?
            .map_err(|e| format!("GetFunction {arn}: {e}"))?;
        let cfg = &f["Configuration"];
        let field = |k: &str| cfg[k].as_str().unwrap_or_default().to_owned();
        let location = f["Code"]["Location"]
            .as_str()
            .ok_or_else(|| format!("GetFunction {arn}: no Code.Location"))?;
        // The location is on the same endpoint: sign its path.
        let code_path = location
            .find("/2015-03-31/")
            .map(|i| &location[i..])
            .ok_or_else(|| format!("GetFunction {arn}: Code.Location {location} is elsewhere"))?;
        let (zip, _) = blocking(self.0.call_raw(Method::GET, code_path, Vec::new()))?
            .map_err(|e| format!("the code of {arn}: {e}"))?;
        Ok(FunctionCode {
            version_arn: field("FunctionArn"),
            runtime: field("Runtime"),
            handler: field("Handler"),
            code_sha256: field("CodeSha256"),
            zip: zip.to_vec(),
        })
    }
}

/// Secret values through the control plane's Secrets Manager API.
struct RemoteSecrets(Arc<Client>);

impl SecretSource for RemoteSecrets {
    fn value(
        &self,
        arn: &str,
        stage: &str,
    ) -> Result<Option<coupler_connectors::SecretValue>, String> {
        use base64::Engine as _;
        let body = json!({ "SecretId": arn, "VersionStage": stage });
        let reply = match blocking(self.0.call_target(
            "secretsmanager",
            "secretsmanager.GetSecretValue",
            &body,
        ))? {
            Ok(r) => r,
            Err(e) if e.starts_with("ResourceNotFoundException") => return Ok(None),
            Err(e) => return Err(format!("GetSecretValue: {e}")),
        };
        if let Some(s) = reply["SecretString"].as_str() {
            return Ok(Some(coupler_connectors::SecretValue::String(s.to_owned())));
        }
        match reply["SecretBinary"].as_str() {
            Some(b) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map(|b| Some(coupler_connectors::SecretValue::Binary(b)))
                .map_err(|_| "GetSecretValue: SecretBinary is not Base64".to_owned()),
            None => Err("GetSecretValue: the reply has no SecretString or SecretBinary".into()),
        }
    }
}

/// The MQTT server's certificate from the control plane's group CA.
struct RemoteCerts(Arc<Client>);

impl ServerCerts for RemoteCerts {
    fn connectivity(&self, thing: &str) -> Vec<String> {
        let path = format!("/greengrass/things/{thing}/connectivityInfo");
        match blocking(self.0.call(Method::GET, &path, None)) {
            Ok(Ok(v)) => hosts(&v),
            _ => Vec::new(),
        }
    }

    fn issue(&self, group_id: &str, names: Vec<String>) -> Result<ServerCertificate, String> {
        let path = format!("/coupler/groups/{group_id}/server-certificate");
        let v = blocking(
            self.0
                .call(Method::POST, &path, Some(&json!({ "Names": names }))),
        )??;
        serde_json::from_value(v).map_err(|e| format!("the server certificate: {e}"))
    }
}

/// The host addresses of a GetConnectivityInfo answer.
pub fn hosts(info: &Value) -> Vec<String> {
    info["ConnectivityInfo"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["HostAddress"].as_str().map(str::to_owned))
        .collect()
}
