//! A connector tested alone through `Context::detached`: Device Defender on this machine's
//! `/proc`, with its first report published at start.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use coupler_connectors::context::{LocalResource, Parts};
use coupler_connectors::{Context, Output, registry};
use coupler_model::Entity;
use coupler_router::InboxConfig;
use coupler_runtime::logs::SystemLog;
use tokio_util::sync::CancellationToken;

fn parts(resource: LocalResource, dir: &std::path::Path) -> Parts {
    Parts {
        id: "defender".into(),
        name: "DeviceDefender",
        version: 3,
        entity: Entity::connector(
            "arn:aws:greengrass:us-east-1::/connectors/DeviceDefender/versions/3",
        ),
        parameters: BTreeMap::from([
            ("SampleIntervalSeconds".to_owned(), "300".to_owned()),
            ("ProcDestinationPath".to_owned(), "/host_proc".to_owned()),
            (
                "ProcDestinationPath-ResourceId".to_owned(),
                "proc".to_owned(),
            ),
        ]),
        resources: BTreeMap::from([("ProcDestinationPath-ResourceId".to_owned(), resource)]),
        core_thing: "gateway".into(),
        region: "us-east-1".into(),
        log: Arc::new(SystemLog::at(dir.join("DeviceDefender.log"))),
        cancel: CancellationToken::new(),
        inside_container: false,
    }
}

#[tokio::test]
async fn device_defender_reports_through_a_test_context() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, mut handle) = Context::detached(
        parts(
            LocalResource::Volume {
                source_path: "/proc".into(),
                destination_path: "/host_proc".into(),
            },
            dir.path(),
        ),
        InboxConfig::default(),
    );
    let kind = registry::kind("DeviceDefender", 3).unwrap();
    let connector = (kind.build)(&ctx).unwrap();
    let task = tokio::spawn(connector.run(ctx));
    let msg = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match handle.output.recv().await.unwrap() {
                Output::Published(m) => return m,
                Output::Wanted => {}
                o => panic!("{o:?}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(
        msg.topic.as_str(),
        "$aws/things/gateway/defender/metrics/json"
    );
    let doc: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(doc["header"]["version"], "1.0");
    assert!(doc["metrics"]["network_stats"]["bytes_in"].is_u64());
    handle.cancel.cancel();
    task.await.unwrap().unwrap();
}

#[test]
fn a_volume_with_another_destination_is_refused_at_build() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, _handle) = Context::detached(
        parts(
            LocalResource::Volume {
                source_path: "/proc".into(),
                destination_path: "/elsewhere".into(),
            },
            dir.path(),
        ),
        InboxConfig::default(),
    );
    let kind = registry::kind("DeviceDefender", 3).unwrap();
    let err = (kind.build)(&ctx).err().unwrap();
    assert!(err.contains("/host_proc"), "{err}");
}
