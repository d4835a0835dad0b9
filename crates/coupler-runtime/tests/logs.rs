//! The core's runtime.log: Greengrass's line format, the logger definition's level and space.

use std::sync::Arc;

use coupler_model::api::{Logger, LoggerComponent, LoggerLevel, LoggerType};
use coupler_runtime::logs::{LogLayer, SystemLog};
use tracing_subscriber::layer::SubscriberExt;

fn logger(level: LoggerLevel, space_kb: i64) -> Logger {
    Logger {
        component: LoggerComponent::GreengrassSystem,
        id: "system".into(),
        level,
        space: Some(space_kb),
        kind: LoggerType::FileSystem,
    }
}

#[test]
fn lines_follow_greengrass_and_the_logger_definition() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SystemLog::new(dir.path()));
    let subscriber = tracing_subscriber::registry().with(LogLayer(log.clone()));
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(group = "g1", count = 3u64, "deployment succeeded");
        tracing::debug!("not at INFO");
        log.configure(&[logger(LoggerLevel::Warn, 64)]);
        tracing::info!("not at WARN");
        tracing::warn!("kept");
        log.configure(&[logger(LoggerLevel::Debug, 64)]);
        tracing::debug!("now DEBUG is kept");
    });
    let text = std::fs::read_to_string(log.path()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let re = regex::Regex::new(
        r"^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\]\[INFO\]-deployment succeeded\t\{",
    )
    .unwrap();
    assert!(re.is_match(lines[0]), "{}", lines[0]);
    let fields: serde_json::Value =
        serde_json::from_str(lines[0].split('\t').nth(1).unwrap()).unwrap();
    assert_eq!(fields, serde_json::json!({"group": "g1", "count": 3}));
    assert!(lines[1].contains("][WARN]-kept"));
    assert!(lines[2].contains("][DEBUG]-now DEBUG is kept"));
}

#[test]
fn the_space_bounds_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SystemLog::new(dir.path()));
    log.configure(&[logger(LoggerLevel::Info, 8)]);
    let subscriber = tracing_subscriber::registry().with(LogLayer(log.clone()));
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..500 {
            tracing::info!(i, "a line long enough to fill eight kilobytes before long");
        }
    });
    let current = std::fs::metadata(log.path()).unwrap().len();
    let rotated = std::fs::metadata(log.path().with_extension("log.1"))
        .unwrap()
        .len();
    assert!(current + rotated <= 8 * 1024, "{current} + {rotated}");
    let last = std::fs::read_to_string(log.path()).unwrap();
    assert!(last.trim_end().ends_with(r#"{"i":499}"#), "{last}");
}

#[test]
fn a_component_log_takes_the_lambda_logger() {
    let dir = tempfile::tempdir().unwrap();
    let log = SystemLog::at(dir.path().join("user/us-east-1/aws/SerialStream.log"));
    let lambda = Logger {
        component: LoggerComponent::Lambda,
        ..logger(LoggerLevel::Warn, 32)
    };
    // The system logger says DEBUG; a connector's log follows the Lambda one.
    log.configure_for(
        &[logger(LoggerLevel::Debug, 64), lambda],
        LoggerComponent::Lambda,
    );
    log.log(tracing::Level::INFO, "not at WARN");
    log.log(tracing::Level::WARN, "request refused: kept");
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("[WARN]-request refused: kept"), "{text}");
}
