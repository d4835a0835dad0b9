//! The deployment agent against a router, a state directory and a scripted control plane.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use coupler_model::ValidatedGroup;
use coupler_model::{Entity, GroupBundle, Options, TopicName};
use coupler_router::{Message, Router, RouterConfig};
use coupler_runtime::{
    Agent, ControlPlane, Pending, PendingKind, PreparedUnits, Report, Status, Units,
};
use parking_lot::Mutex;
use tokio::sync::Notify;

const CORE: &str = "arn:aws:iot:us-east-1:123456789012:thing/core";
const SENSOR: &str = "arn:aws:iot:us-east-1:123456789012:thing/sensor";

fn group(extra: &str) -> GroupBundle {
    let yaml = format!(
        r#"
CoreDefinitionVersion:
  Cores: [{{Id: core, ThingArn: "{CORE}", CertificateArn: "arn:aws:iot:us-east-1:123456789012:cert/abc"}}]
DeviceDefinitionVersion:
  Devices: [{{Id: sensor, ThingArn: "{SENSOR}", CertificateArn: "arn:aws:iot:us-east-1:123456789012:cert/def"}}]
SubscriptionDefinitionVersion:
  Subscriptions:
    - {{Id: up, Source: "{SENSOR}", Subject: "sensors/#", Target: cloud}}
{extra}"#
    );
    GroupBundle::from_slice(yaml.as_bytes()).expect("a valid bundle")
}

fn with_function() -> GroupBundle {
    group(
        "FunctionDefinitionVersion:\n  Functions: [{Id: f, FunctionArn: \"arn:aws:lambda:us-east-1:123456789012:function:F:1\", FunctionConfiguration: {Executable: f.handler, MemorySize: 16384}}]\n",
    )
}

fn with_connector() -> GroupBundle {
    group(
        "ConnectorDefinitionVersion:\n  Connectors: [{Id: sns, ConnectorArn: \"arn:aws:greengrass:us-east-1::/connectors/SNS/versions/4\", Parameters: {DefaultSNSArn: \"arn:aws:sns:us-east-1:123456789012:t\"}}]\n",
    )
}

fn deploy(id: &str, group: GroupBundle) -> Pending {
    Pending {
        group_id: "g1".into(),
        deployment_id: id.into(),
        deployment_type: "NewDeployment".into(),
        kind: PendingKind::Deploy {
            group_version_id: format!("v-{id}"),
            group,
        },
    }
}

fn agent(dir: &std::path::Path, router: &Arc<Router>, can_run: bool) -> Agent {
    Agent::new(
        router.clone(),
        dir,
        Options::default(),
        Box::new(move |_, _| can_run),
    )
}

/// Units that cannot run any function, as a core without a function host.
struct NoFunctions;

struct Nothing;

impl PreparedUnits for Nothing {
    fn commit(self: Box<Self>) {}
}

impl Units for NoFunctions {
    fn prepare(
        &self,
        _group_id: &str,
        group: &ValidatedGroup,
    ) -> Result<Box<dyn PreparedUnits>, Vec<(String, String)>> {
        if group.functions.is_empty() {
            Ok(Box::new(Nothing))
        } else {
            Err(group
                .functions
                .iter()
                .map(|f| {
                    (
                        "UnsupportedFunction".to_owned(),
                        format!("function {} cannot run here", f.id),
                    )
                })
                .collect())
        }
    }

    fn stop_all(&self) {}
}

fn routes_sensor(router: &Router) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let msg = Message::new(
        Entity::device("sensor"),
        TopicName::parse("sensors/t").unwrap(),
        &b"1"[..],
    );
    rt.block_on(router.route(msg)).delivered == 1
}

#[test]
fn a_good_group_is_applied_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let router = Arc::new(Router::new(RouterConfig::default()));
    let a = agent(dir.path(), &router, false);
    let report = a.apply(&deploy("d1", group("")));
    assert_eq!(report.status, Status::Success, "{report:?}");
    assert!(routes_sensor(&router));
    assert!(dir.path().join("ggc/deployment/group/group.json").exists());

    // A new process: a fresh router, the same data dir.
    let router2 = Arc::new(Router::new(RouterConfig::default()));
    let b = agent(dir.path(), &router2, false);
    assert!(!routes_sensor(&router2));
    let restored = b.restore().unwrap().expect("an active deployment");
    assert_eq!(restored.deployment_id, "d1");
    assert!(routes_sensor(&router2));
}

#[test]
fn a_failed_deployment_leaves_the_previous_group_serving() {
    let dir = tempfile::tempdir().unwrap();
    let router = Arc::new(Router::new(RouterConfig::default()));
    let a = agent(dir.path(), &router, false).with_units(Arc::new(NoFunctions));
    assert_eq!(a.apply(&deploy("d1", group(""))).status, Status::Success);

    let report = a.apply(&deploy("d2", with_function()));
    assert_eq!(report.status, Status::Failure);
    let message = report.error_message.unwrap();
    assert!(message.contains("function f"), "{message}");
    assert_eq!(report.error_details[0].0, "UnsupportedFunction");

    let report = a.apply(&deploy("d3", with_connector()));
    assert_eq!(report.status, Status::Failure);
    assert!(
        report
            .error_message
            .unwrap()
            .contains("connector sns (SNS version 4) cannot run on this core yet")
    );

    assert_eq!(a.active().unwrap().deployment_id, "d1");
    assert!(routes_sensor(&router), "the old routes still serve");
    let b = agent(
        dir.path(),
        &Arc::new(Router::new(RouterConfig::default())),
        false,
    );
    assert_eq!(b.restore().unwrap().unwrap().deployment_id, "d1");
}

#[test]
fn connectors_this_core_runs_deploy() {
    let dir = tempfile::tempdir().unwrap();
    let router = Arc::new(Router::new(RouterConfig::default()));
    let a = agent(dir.path(), &router, true);
    assert_eq!(
        a.apply(&deploy("d1", with_connector())).status,
        Status::Success
    );
}

#[test]
fn a_reset_stops_routing_and_forgets_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let router = Arc::new(Router::new(RouterConfig::default()));
    let a = agent(dir.path(), &router, false);
    a.apply(&deploy("d1", group("")));
    let reset = Pending {
        group_id: "g1".into(),
        deployment_id: "r1".into(),
        deployment_type: "ResetDeployment".into(),
        kind: PendingKind::Reset,
    };
    assert_eq!(a.apply(&reset).status, Status::Success);
    assert!(!routes_sensor(&router));
    assert!(a.active().is_none());
    let b = agent(
        dir.path(),
        &Arc::new(Router::new(RouterConfig::default())),
        false,
    );
    assert!(b.restore().unwrap().is_none());
}

#[test]
fn a_corrupt_state_file_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ggc/deployment/group");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("group.json"), b"{not json").unwrap();
    let a = agent(
        dir.path(),
        &Arc::new(Router::new(RouterConfig::default())),
        false,
    );
    let err = a.restore().unwrap_err().to_string();
    assert!(err.contains("group.json"), "{err}");
}

/// A control plane that hands out a script of deployments and records the reports.
#[derive(Default)]
struct Scripted {
    queue: Mutex<VecDeque<Pending>>,
    reports: Mutex<Vec<(String, Report)>>,
}

impl ControlPlane for Scripted {
    fn next_deployment(&self) -> Result<Option<Pending>, String> {
        Ok(self.queue.lock().pop_front())
    }
    fn report(&self, pending: &Pending, report: &Report) -> Result<(), String> {
        self.reports
            .lock()
            .push((pending.deployment_id.clone(), report.clone()));
        Ok(())
    }
}

#[test]
fn the_loop_applies_what_the_control_plane_hands_out() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let router = Arc::new(Router::new(RouterConfig::default()));
    let a = Arc::new(agent(dir.path(), &router, false).with_units(Arc::new(NoFunctions)));
    let cp = Arc::new(Scripted::default());
    cp.queue.lock().push_back(deploy("d1", group("")));
    let wake = Arc::new(Notify::new());
    let stop = Arc::new(Notify::new());
    let handle = {
        let (cp, wake, stop) = (cp.clone(), wake.clone(), stop.clone());
        rt.spawn(async move {
            a.run(cp, wake, Duration::from_secs(60), async move {
                stop.notified().await
            })
            .await
        })
    };
    rt.block_on(async {
        for _ in 0..100 {
            if cp.reports.lock().len() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A second deployment arrives and the agent is woken (the poll is a minute away).
        cp.queue.lock().push_back(deploy("d2", with_function()));
        wake.notify_one();
        for _ in 0..100 {
            if cp.reports.lock().len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.notify_one();
        handle.await.unwrap();
    });
    let reports = cp.reports.lock();
    assert_eq!(reports.len(), 2);
    assert_eq!(
        (reports[0].0.as_str(), reports[0].1.status),
        ("d1", Status::Success)
    );
    assert_eq!(
        (reports[1].0.as_str(), reports[1].1.status),
        ("d2", Status::Failure)
    );
}
