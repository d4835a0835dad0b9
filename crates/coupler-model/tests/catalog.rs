//! Checks of the connector catalog data (`catalog/connectors.yaml`) against the reference
//! catalog (`connectors-catalog.md`): every connector and version is there, resource ties are
//! consistent, defaults are valid, and spot checks of documented facts.

use std::collections::BTreeSet;

use coupler_model::api::IsolationMode;
use coupler_model::catalog::{
    Catalog, ConnectorVersion, ParamType, Parameter, ResourceKind, check_value,
};

/// Connector ARN names of the summary table (§1), with their latest version.
const SUMMARY: &[(&str, u32)] = &[
    ("TwilioNotifications", 5),
    ("ModbusRTUProtocolAdapter", 3),
    ("ModbusTCPConnector", 3),
    ("SerialStream", 3),
    ("DeviceDefender", 3),
    ("SNS", 4),
    ("KinesisFirehose", 5),
    ("CloudWatchMetrics", 5),
    ("SplunkIntegration", 4),
    ("ServiceNowMetricBaseIntegration", 4),
    ("IoTAnalytics", 4),
    ("IoTSiteWise", 12),
    ("RaspberryPiGPIO", 3),
    ("DockerApplicationDeployment", 7),
    ("IoTEIPProtocolAdaptor", 2),
    ("MLFeedback", 1),
    ("ImageClassificationAarch64JTX2", 2),
    ("ImageClassificationx86-64", 2),
    ("ImageClassificationARMv7", 2),
    ("ObjectDetectionAarch64JTX2", 1),
    ("ObjectDetectionx86-64", 1),
    ("ObjectDetectionARMv7", 1),
];

fn catalog() -> &'static Catalog {
    Catalog::builtin()
}

fn version(name: &str, v: u32) -> &'static ConnectorVersion {
    catalog()
        .get(name, v)
        .unwrap_or_else(|| panic!("{name} v{v} is not in the catalog"))
}

fn param<'a>(cv: &'a ConnectorVersion, name: &str) -> &'a Parameter {
    cv.parameter(name)
        .unwrap_or_else(|| panic!("{} v{} has no parameter {name}", cv.name, cv.version))
}

fn accepts(cv: &ConnectorVersion, name: &str, value: &str) -> bool {
    check_value(param(cv, name), value).is_ok()
}

fn param_names(cv: &ConnectorVersion) -> BTreeSet<&str> {
    cv.parameters.iter().map(|p| p.spec.name.as_str()).collect()
}

fn topics(list: &[coupler_model::TopicFilter]) -> Vec<&str> {
    list.iter().map(|t| t.as_str()).collect()
}

/// Every parameter of `cv` is given a valid value by `params`, and every required one is there.
fn assert_example_valid(cv: &ConnectorVersion, params: &[(&str, &str)]) {
    for (name, value) in params {
        let p = param(cv, name);
        if let Err(e) = check_value(p, value) {
            panic!("{} v{}: {name}={value:?}: {e}", cv.name, cv.version);
        }
    }
    for p in &cv.parameters {
        if p.spec.required {
            assert!(
                params.iter().any(|(n, _)| *n == p.spec.name),
                "{} v{}: required parameter {} is missing from the example",
                cv.name,
                cv.version,
                p.spec.name
            );
        }
    }
}

#[test]
fn builtin_catalog_loads() {
    let text = include_str!("../catalog/connectors.yaml");
    if let Err(e) = Catalog::from_yaml(text) {
        panic!("the catalog does not load: {e}");
    }
    assert_eq!(catalog().file.connectors.len(), SUMMARY.len());
}

#[test]
fn every_summary_connector_has_every_version() {
    for &(name, latest) in SUMMARY {
        let expected: Vec<u32> = (1..=latest).collect();
        assert_eq!(catalog().versions_of(name), expected, "{name}");
        let cv = version(name, latest);
        assert_eq!(cv.name, name);
        assert!(catalog().get(name, latest + 1).is_none(), "{name}");
        assert!(catalog().get(name, 0).is_none(), "{name}");
    }
    let listed: BTreeSet<&str> = SUMMARY.iter().map(|(n, _)| *n).collect();
    let in_file: BTreeSet<&str> = catalog()
        .file
        .connectors
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(listed, in_file);
}

#[test]
fn names_are_unique_and_case_sensitive() {
    let mut seen = BTreeSet::new();
    for c in &catalog().file.connectors {
        for name in std::iter::once(&c.name).chain(&c.aliases) {
            assert!(seen.insert(name.as_str()), "{name} is used twice");
        }
    }
    assert!(catalog().get("twilionotifications", 5).is_none());
    assert!(catalog().get("Sns", 4).is_none());
}

#[test]
fn versions_ascend_and_are_described() {
    for c in &catalog().file.connectors {
        let numbers: Vec<u32> = c.versions.iter().map(|v| v.version).collect();
        let expected: Vec<u32> = (1..=numbers.len() as u32).collect();
        assert_eq!(numbers, expected, "{}", c.name);
        for v in &c.versions {
            assert!(!v.isolation.is_empty(), "{} v{}", c.name, v.version);
            let distinct: BTreeSet<&str> = v.isolation.iter().map(|m| m.as_str()).collect();
            assert_eq!(
                distinct.len(),
                v.isolation.len(),
                "{} v{}",
                c.name,
                v.version
            );
            assert!(!v.changes.is_empty() && !v.runtime.is_empty());
            assert!(
                ["python2.7", "python3.7", "java8"].contains(&v.runtime.as_str()),
                "{} v{}: runtime {}",
                c.name,
                v.version,
                v.runtime
            );
            assert!(
                v.min_core.starts_with("1.")
                    && v.min_core.split('.').all(|n| n.parse::<u32>().is_ok()),
                "{} v{}: min_core {}",
                c.name,
                v.version,
                v.min_core
            );
        }
        assert!(!c.title.is_empty() && !c.summary.is_empty(), "{}", c.name);
    }
}

#[test]
fn since_until_ranges_name_existing_versions() {
    for c in &catalog().file.connectors {
        let known: BTreeSet<u32> = c.versions.iter().map(|v| v.version).collect();
        let ranges = c
            .parameters
            .iter()
            .map(|p| (format!("parameter {}", p.name), p.since, p.until))
            .chain(
                c.inputs
                    .iter()
                    .chain(&c.outputs)
                    .map(|t| (format!("topic {}", t.topic), t.since, t.until)),
            );
        for (what, since, until) in ranges {
            for v in since.iter().chain(until.iter()) {
                assert!(
                    known.contains(v),
                    "{}: {what}: version {v} does not exist",
                    c.name
                );
            }
            if let (Some(s), Some(u)) = (since, until) {
                assert!(s <= u, "{}: {what}: empty range", c.name);
            }
        }
    }
}

#[test]
fn parameter_specs_are_well_formed() {
    for c in &catalog().file.connectors {
        let mut names = BTreeSet::new();
        for p in &c.parameters {
            assert!(
                names.insert(p.name.as_str()),
                "{}: {} twice",
                c.name,
                p.name
            );
            assert!(!p.description.is_empty(), "{}: {}", c.name, p.name);
            assert_eq!(
                p.kind == ParamType::Enum,
                !p.values.is_empty(),
                "{}: {}: values go with type enum",
                c.name,
                p.name
            );
            if p.min.is_some() || p.max.is_some() {
                assert_eq!(p.kind, ParamType::Integer, "{}: {}", c.name, p.name);
            }
        }
    }
}

#[test]
fn resource_id_parameters_have_consistent_resources() {
    for c in &catalog().file.connectors {
        for p in &c.parameters {
            if p.name.ends_with("-ResourceId") || p.name == "MLModelResourceId" {
                assert!(
                    p.resource.is_some(),
                    "{}: {} has no resource",
                    c.name,
                    p.name
                );
            }
            let Some(r) = &p.resource else { continue };
            let tied = [
                &r.arn_parameter,
                &r.source_path_parameter,
                &r.destination_path_parameter,
            ];
            for other in tied.into_iter().flatten() {
                let o = c
                    .parameters
                    .iter()
                    .find(|q| &q.name == other)
                    .unwrap_or_else(|| panic!("{}: {} ties to unknown {other}", c.name, p.name));
                assert_eq!(
                    (o.since, o.until),
                    (p.since, p.until),
                    "{}: {} and {other} exist in different versions",
                    c.name,
                    p.name
                );
            }
            match r.kind {
                ResourceKind::Secret => assert!(r.arn_parameter.is_some(), "{}", p.name),
                ResourceKind::LocalVolume => {
                    assert!(r.destination_path_parameter.is_some(), "{}", p.name);
                }
                ResourceKind::LocalDevice | ResourceKind::MachineLearning => {}
            }
        }
    }
}

#[test]
fn defaults_pass_their_own_checks() {
    for c in &catalog().file.connectors {
        for v in &c.versions {
            let cv = version(&c.name, v.version);
            for p in &cv.parameters {
                if let Some(d) = &p.spec.default
                    && let Err(e) = check_value(p, d)
                {
                    panic!("{} v{}: default of {}: {e}", c.name, v.version, p.spec.name);
                }
            }
        }
    }
}

#[test]
fn isolation_mode_parameter_matches_isolation_modes() {
    let both = [
        IsolationMode::GreengrassContainer,
        IsolationMode::NoContainer,
    ];
    for c in &catalog().file.connectors {
        for v in &c.versions {
            let cv = version(&c.name, v.version);
            match cv.parameter("IsolationMode") {
                Some(p) => {
                    assert_eq!(cv.info.isolation, both, "{} v{}", c.name, v.version);
                    assert_eq!(p.spec.default.as_deref(), Some("GreengrassContainer"));
                    assert!(!p.spec.required);
                    assert!(check_value(p, "NoContainer").is_ok());
                    assert!(check_value(p, "GreengrassContainer").is_ok());
                    assert!(check_value(p, "nocontainer").is_err());
                    assert!(check_value(p, "").is_err());
                }
                None => assert_eq!(cv.info.isolation.len(), 1, "{} v{}", c.name, v.version),
            }
        }
    }
}

#[test]
fn isolation_and_lifecycle_per_summary_table() {
    let native_nc = [
        "ModbusTCPConnector",
        "IoTSiteWise",
        "DockerApplicationDeployment",
        "IoTEIPProtocolAdaptor",
    ];
    let container_only = [
        "ModbusRTUProtocolAdapter",
        "SerialStream",
        "DeviceDefender",
        "RaspberryPiGPIO",
        "MLFeedback",
        "ImageClassificationAarch64JTX2",
        "ImageClassificationx86-64",
        "ImageClassificationARMv7",
        "ObjectDetectionAarch64JTX2",
        "ObjectDetectionx86-64",
        "ObjectDetectionARMv7",
    ];
    let not_long_lived = [
        "CloudWatchMetrics",
        "KinesisFirehose",
        "MLFeedback",
        "SerialStream",
        "SNS",
        "TwilioNotifications",
    ];
    for &(name, latest) in SUMMARY {
        for v in 1..=latest {
            let cv = version(name, v);
            if native_nc.contains(&name) {
                assert_eq!(
                    cv.info.isolation,
                    [IsolationMode::NoContainer],
                    "{name} v{v}"
                );
                assert_eq!(cv.default_isolation(), IsolationMode::NoContainer);
            } else {
                assert_eq!(
                    cv.default_isolation(),
                    IsolationMode::GreengrassContainer,
                    "{name} v{v}"
                );
            }
            if container_only.contains(&name) {
                assert_eq!(cv.info.isolation, [IsolationMode::GreengrassContainer]);
            }
            assert_eq!(
                cv.info.long_lived,
                !not_long_lived.contains(&name),
                "{name} v{v}"
            );
        }
    }
    // IsolationMode arrived in these versions.
    for (name, first) in [
        ("CloudWatchMetrics", 4),
        ("SNS", 4),
        ("TwilioNotifications", 5),
        ("SplunkIntegration", 4),
        ("ServiceNowMetricBaseIntegration", 4),
        ("KinesisFirehose", 5),
        ("IoTAnalytics", 4),
    ] {
        assert!(version(name, first).parameter("IsolationMode").is_some());
        assert!(
            version(name, first - 1)
                .parameter("IsolationMode")
                .is_none()
        );
    }
}

#[test]
fn runtimes_and_core_versions() {
    for (name, v, runtime, core) in [
        ("TwilioNotifications", 3, "python2.7", "1.7"),
        ("TwilioNotifications", 4, "python3.7", "1.9.3"),
        ("KinesisFirehose", 3, "python2.7", "1.7"),
        ("KinesisFirehose", 4, "python3.7", "1.9.3"),
        ("ModbusTCPConnector", 3, "java8", "1.10.2"),
        ("IoTEIPProtocolAdaptor", 2, "java8", "1.10.2"),
        ("IoTSiteWise", 1, "java8", "1.9.4"),
        ("IoTSiteWise", 4, "java8", "1.10.0"),
        ("IoTSiteWise", 5, "java8", "1.9.4"),
        ("IoTSiteWise", 12, "java8", "1.10.2"),
        ("DockerApplicationDeployment", 1, "python3.7", "1.10"),
        ("ImageClassificationARMv7", 1, "python2.7", "1.7"),
        ("ImageClassificationARMv7", 2, "python3.7", "1.9.3"),
        ("ObjectDetectionx86-64", 1, "python3.7", "1.9.3"),
        ("MLFeedback", 1, "python3.7", "1.9.3"),
    ] {
        let cv = version(name, v);
        assert_eq!(cv.info.runtime, runtime, "{name} v{v}");
        assert_eq!(cv.info.min_core, core, "{name} v{v}");
    }
}

#[test]
fn twilio() {
    let v4 = version("TwilioNotifications", 4);
    let v5 = version("TwilioNotifications", 5);
    assert!(v4.parameter("IsolationMode").is_none());
    assert!(v5.parameter("IsolationMode").is_some());
    assert!(!accepts(v5, "DefaultFromPhoneNumber", "123"));
    assert!(accepts(v5, "DefaultFromPhoneNumber", "+19999999999"));
    assert!(accepts(v5, "DefaultFromPhoneNumber", ""));
    assert!(!param(v5, "DefaultFromPhoneNumber").spec.required);
    assert!(accepts(
        v5,
        "TwilioAuthTokenSecretArn",
        "arn:aws:secretsmanager:us-west-2:123456789012:secret:greengrass-TwilioAuthToken-ntSlp6"
    ));
    assert!(!accepts(v5, "TwilioAuthTokenSecretArn", "secret-arn"));
    let r = param(v5, "TwilioAuthTokenSecretArn-ResourceId")
        .spec
        .resource
        .as_ref()
        .expect("resource");
    assert_eq!(r.kind, ResourceKind::Secret);
    assert_eq!(r.arn_parameter.as_deref(), Some("TwilioAuthTokenSecretArn"));
    assert_eq!(topics(&v5.inputs), ["twilio/txt", "twilio/call"]);
    assert_eq!(topics(&v5.outputs), ["twilio/message/status"]);
    assert_eq!(
        topics(&version("TwilioNotifications", 1).inputs),
        ["twilio/txt", "twilio/call"]
    );
    assert_example_valid(
        v5,
        &[
            ("TWILIO_ACCOUNT_SID", "account-sid"),
            (
                "TwilioAuthTokenSecretArn",
                "arn:aws:secretsmanager:us-west-2:123456789012:secret:greengrass-Twilio-abc123",
            ),
            ("TwilioAuthTokenSecretArn-ResourceId", "TwilioAuthToken"),
            ("DefaultFromPhoneNumber", "+19999999999"),
            ("IsolationMode", "NoContainer"),
        ],
    );
}

#[test]
fn modbus_rtu() {
    let v3 = version("ModbusRTUProtocolAdapter", 3);
    assert_eq!(v3.info.isolation, [IsolationMode::GreengrassContainer]);
    assert!(v3.info.long_lived);
    assert_eq!(topics(&v3.inputs), ["modbus/adapter/request"]);
    assert_eq!(topics(&v3.outputs), ["modbus/adapter/response"]);
    let r = param(v3, "ModbusSerialPort-ResourceId")
        .spec
        .resource
        .as_ref()
        .expect("resource");
    assert_eq!(r.kind, ResourceKind::LocalDevice);
    assert_eq!(r.access.map(|a| a.as_str()), Some("rw"));
    assert_eq!(r.source_path_parameter.as_deref(), Some("ModbusSerialPort"));
    assert_example_valid(
        v3,
        &[
            ("ModbusSerialPort-ResourceId", "MyLocalModbusSerialPort"),
            ("ModbusSerialPort", "/path-to-port"),
        ],
    );
}

#[test]
fn modbus_tcp() {
    let by_alias = catalog().get("ModbusTCP", 3).expect("alias ModbusTCP");
    assert_eq!(by_alias.name, "ModbusTCPConnector");
    assert_eq!(catalog().versions_of("ModbusTCP"), [1, 2, 3]);
    let v3 = version("ModbusTCPConnector", 3);
    assert!(v3.inputs.is_empty() && v3.outputs.is_empty());
    assert_eq!(
        param(v3, "LocalStoragePath").spec.default.as_deref(),
        Some("/var/sitewise")
    );
    assert!(accepts(v3, "LocalStoragePath", " "));
    assert!(!accepts(v3, "LocalStoragePath", "var/sitewise"));
    assert!(accepts(v3, "MaximumBufferSize", ""));
    assert!(!accepts(v3, "MaximumBufferSize", "ten"));
    assert!(accepts(v3, "CapabilityConfiguration", r#"{"sources":[]}"#));
    assert!(!accepts(v3, "CapabilityConfiguration", "{sources"));
    // The CLI example's spelling and envelope.
    assert!(accepts(
        v3,
        "capability_configuration",
        r#"{"version":1,"namespace":"iotsitewise:modbuscollector:1","configuration":"{\"sources\":[]}"}"#
    ));
}

#[test]
fn serial_stream() {
    let v3 = version("SerialStream", 3);
    assert_eq!(v3.info.isolation, [IsolationMode::GreengrassContainer]);
    assert_eq!(topics(&v3.inputs), ["serial/+/read/#", "serial/+/write/#"]);
    assert_eq!(
        topics(&v3.outputs),
        ["serial/+/status/#", "serial/+/read_response/#"]
    );
    let read = coupler_model::TopicName::parse("serial/MyCore/read/dev/serial1").expect("topic");
    assert!(v3.inputs[0].matches(&read));
    assert!(accepts(v3, "BaudRate", "9600"));
    assert!(!accepts(v3, "BaudRate", "9601"));
    assert!(accepts(v3, "Timeout", "59"));
    assert!(!accepts(v3, "Timeout", "60"));
    assert!(!accepts(v3, "Timeout", "0"));
    assert!(accepts(v3, "PollingRead", "TRUE"));
    assert!(!accepts(v3, "PollingRead", "yes"));
    assert!(accepts(v3, "PollingReadLength", "63994"));
    assert!(!accepts(v3, "PollingReadLength", "63995"));
    assert!(accepts(v3, "PollingReadLength", ""));
    assert!(accepts(v3, "PollingReadInterval", "999"));
    assert!(!accepts(v3, "PollingReadInterval", "1000"));
    assert!(accepts(v3, "PollingReadType", "HEX"));
    assert!(accepts(v3, "Parity", "e"));
    assert!(!accepts(v3, "Parity", "X"));
    assert!(v3.parameter("PollingInterval").is_none());
    let r = param(v3, "SerialPort-ResourceId")
        .spec
        .resource
        .as_ref()
        .expect("resource");
    assert_eq!(r.source_path_parameter.as_deref(), Some("SerialPort"));
    assert_example_valid(
        v3,
        &[
            ("BaudRate", "9600"),
            ("Timeout", "25"),
            ("SerialPort", "/dev/serial1"),
            ("SerialPort-ResourceId", "my-serial-port-resource"),
            ("PollingRead", "true"),
            ("PollingReadLength", "30"),
            ("PollingReadInterval", "30"),
            ("PollingReadType", "hex"),
        ],
    );
}

#[test]
fn device_defender() {
    let v3 = version("DeviceDefender", 3);
    assert!(v3.inputs.is_empty());
    assert_eq!(topics(&v3.outputs), ["$aws/things/+/defender/metrics/json"]);
    let report =
        coupler_model::TopicName::parse("$aws/things/MyCore/defender/metrics/json").expect("topic");
    assert!(v3.outputs[0].matches(&report));
    assert!(accepts(v3, "SampleIntervalSeconds", "300"));
    assert!(accepts(v3, "SampleIntervalSeconds", "600"));
    assert!(!accepts(v3, "SampleIntervalSeconds", "299"));
    assert!(!accepts(v3, "SampleIntervalSeconds", "60"));
    let r = param(v3, "ProcDestinationPath-ResourceId")
        .spec
        .resource
        .as_ref()
        .expect("resource");
    assert_eq!(r.kind, ResourceKind::LocalVolume);
    assert_eq!(r.access.map(|a| a.as_str()), Some("ro"));
    assert_eq!(
        r.destination_path_parameter.as_deref(),
        Some("ProcDestinationPath")
    );
    assert_example_valid(
        v3,
        &[
            ("SampleIntervalSeconds", "600"),
            ("ProcDestinationPath", "/host_proc"),
            ("ProcDestinationPath-ResourceId", "my-proc-resource"),
        ],
    );
}

#[test]
fn sns() {
    let v4 = version("SNS", 4);
    assert!(accepts(
        v4,
        "DefaultSNSArn",
        "arn:aws:sns:us-west-2:123456789012:my_topic-1"
    ));
    assert!(!accepts(
        v4,
        "DefaultSNSArn",
        "arn:aws:sns:us-west-2:1234:my-topic"
    ));
    assert!(!accepts(
        v4,
        "DefaultSNSArn",
        "arn:aws:sns:us-west-2:123456789012:a/b"
    ));
    assert_eq!(topics(&v4.inputs), ["sns/message"]);
    assert_eq!(topics(&v4.outputs), ["sns/message/status"]);
    assert!(version("SNS", 3).parameter("IsolationMode").is_none());
}

#[test]
fn kinesis_firehose() {
    let v1 = version("KinesisFirehose", 1);
    assert_eq!(
        param_names(v1),
        BTreeSet::from(["DefaultDeliveryStreamArn"])
    );
    let v2 = version("KinesisFirehose", 2);
    assert_eq!(
        param_names(v2),
        BTreeSet::from([
            "DefaultDeliveryStreamArn",
            "DeliveryStreamQueueSize",
            "MemorySize",
            "PublishInterval",
        ])
    );
    let v5 = version("KinesisFirehose", 5);
    assert!(accepts(v5, "DeliveryStreamQueueSize", "2000"));
    assert!(accepts(v5, "DeliveryStreamQueueSize", "12345"));
    assert!(!accepts(v5, "DeliveryStreamQueueSize", "1999"));
    assert!(accepts(v5, "PublishInterval", "0"));
    assert!(accepts(v5, "PublishInterval", "900"));
    assert!(!accepts(v5, "PublishInterval", "901"));
    assert_eq!(
        topics(&v5.inputs),
        [
            "kinesisfirehose/message",
            "kinesisfirehose/message/binary/#"
        ]
    );
    assert_eq!(topics(&v5.outputs), ["kinesisfirehose/message/status"]);
    assert_example_valid(
        v5,
        &[
            (
                "DefaultDeliveryStreamArn",
                "arn:aws:firehose:us-west-2:123456789012:deliverystream/stream-name",
            ),
            ("DeliveryStreamQueueSize", "5000"),
            ("MemorySize", "65535"),
            ("PublishInterval", "10"),
            ("IsolationMode", "GreengrassContainer"),
        ],
    );
}

#[test]
fn cloudwatch_metrics() {
    let v5 = version("CloudWatchMetrics", 5);
    assert!(accepts(v5, "PublishRegion", ""));
    assert!(accepts(v5, "PublishRegion", "us-west-2"));
    assert!(!accepts(v5, "PublishRegion", "mars"));
    assert!(!accepts(v5, "MaxMetricsToRetain", "1000"));
    assert_eq!(topics(&v5.inputs), ["cloudwatch/metric/put"]);
    assert_eq!(topics(&v5.outputs), ["cloudwatch/metric/put/status"]);
    assert_example_valid(
        version("CloudWatchMetrics", 4),
        &[
            ("PublishInterval", "600"),
            ("PublishRegion", "us-west-2"),
            ("MemorySize", "16"),
            ("MaxMetricsToRetain", "2500"),
            ("IsolationMode", "GreengrassContainer"),
        ],
    );
}

#[test]
fn splunk() {
    let v4 = version("SplunkIntegration", 4);
    assert!(v4.info.long_lived);
    assert!(accepts(
        v4,
        "SplunkEndpoint",
        "https://myinstance.cloud.splunk.com:8088"
    ));
    assert!(accepts(
        v4,
        "SplunkCustomCALocation",
        "/etc/ssl/certs/splunk.crt"
    ));
    assert!(!accepts(v4, "SplunkCustomCALocation", "splunk.crt"));
    assert_eq!(topics(&v4.inputs), ["splunk/logs/put"]);
    assert_eq!(
        topics(&v4.outputs),
        ["splunk/logs/put/status", "splunk/logs/put/error"]
    );
    assert_example_valid(
        v4,
        &[
            ("SplunkEndpoint", "https://myinstance.cloud.splunk.com:8088"),
            ("MemorySize", "200000"),
            ("SplunkQueueSize", "10000"),
            ("SplunkFlushIntervalSeconds", "5"),
            (
                "SplunkTokenSecretArn",
                "arn:aws:secretsmanager:us-west-2:123456789012:secret:greengrass-secret-hash",
            ),
            ("SplunkTokenSecretArn-ResourceId", "MySplunkResource"),
            ("IsolationMode", "GreengrassContainer"),
        ],
    );
}

#[test]
fn servicenow() {
    let v4 = version("ServiceNowMetricBaseIntegration", 4);
    assert!(!accepts(v4, "PublishInterval", "0"));
    assert!(accepts(v4, "PublishInterval", "1"));
    assert_eq!(topics(&v4.inputs), ["servicenow/metricbase/metric"]);
    assert_eq!(topics(&v4.outputs), ["servicenow/metricbase/metric/status"]);
    assert_example_valid(
        v4,
        &[
            ("PublishInterval", "10"),
            ("PublishBatchSize", "50"),
            ("InstanceName", "myinstance"),
            ("DefaultTableName", "u_greengrass_app"),
            ("MaxMetricsToRetain", "20000"),
            (
                "AuthSecretArn",
                "arn:aws:secretsmanager:us-west-2:123456789012:secret:greengrass-secret-hash",
            ),
            ("AuthSecretArn-ResourceId", "MySecretResource"),
            ("IsolationMode", "GreengrassContainer"),
        ],
    );
}

#[test]
fn iot_analytics() {
    let v4 = version("IoTAnalytics", 4);
    assert_eq!(
        topics(&v4.inputs),
        [
            "iotanalytics/channels/+/messages/put",
            "iotanalytics/channels/+/messages/binary/put",
            "#",
        ]
    );
    assert_eq!(topics(&v4.outputs), ["iotanalytics/messages/put/status"]);
    assert!(accepts(v4, "PublishRegion", "us-west-1"));
    assert!(accepts(v4, "IotAnalyticsQueueDropBehavior", "DROP_OLDEST"));
    assert!(!accepts(v4, "IotAnalyticsQueueDropBehavior", "DROP_ALL"));
    assert!(accepts(v4, "IotAnalyticsMaxActiveChannels", ""));
    assert!(!accepts(v4, "IotAnalyticsMaxActiveChannels", "0"));
    // The documented channel-name pattern is a doc bug (one character); it is kept and noted.
    assert!(
        param(v4, "IotAnalyticsDefaultChannelName")
            .spec
            .note
            .is_some()
    );
    assert_example_valid(
        version("IoTAnalytics", 3),
        &[
            ("MemorySize", "65535"),
            ("PublishRegion", "us-west-1"),
            ("PublishInterval", "2"),
            ("IotAnalyticsMaxActiveChannels", "25"),
            ("IotAnalyticsQueueDropBehavior", "DROP_OLDEST"),
            ("IotAnalyticsQueueSizePerChannel", "1028"),
            ("IotAnalyticsBatchSizePerChannel", "5"),
        ],
    );
}

#[test]
fn iot_sitewise() {
    let v1 = version("IoTSiteWise", 1);
    assert!(
        v1.parameter("SiteWiseOpcuaUserIdentityTokenSecretArn-ResourceId")
            .is_some()
    );
    assert!(v1.parameter("AWSSecretsArnList").is_none());
    let v12 = version("IoTSiteWise", 12);
    assert!(
        v12.parameter("SiteWiseOpcuaUserIdentityTokenSecretArn")
            .is_none()
    );
    assert!(v12.parameters.iter().all(|p| !p.spec.required));
    assert!(v12.inputs.is_empty() && v12.outputs.is_empty());
    assert!(accepts(
        v12,
        "AWSSecretsArnList",
        r#"["arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-opcua-AbC123","arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-other-xyz"]"#
    ));
    assert!(accepts(v12, "AWSSecretsArnList", "[]"));
    assert!(!accepts(v12, "AWSSecretsArnList", r#"["not-an-arn"]"#));
    assert!(accepts(
        v1,
        "SiteWiseOpcuaUserIdentityTokenSecretArn",
        "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:greengrass-opcua-AbC123"
    ));
    // The doc's CLI example creates the connector with no parameters at all.
    assert_example_valid(version("IoTSiteWise", 11), &[]);
}

#[test]
fn raspberry_pi_gpio() {
    let v3 = version("RaspberryPiGPIO", 3);
    assert_eq!(topics(&v3.inputs), ["gpio/+/+/read", "gpio/+/+/write"]);
    assert_eq!(topics(&v3.outputs), ["gpio/+/+/state", "gpio/+/error"]);
    assert!(accepts(v3, "InputGpios", "5,6U,7D"));
    assert!(!accepts(v3, "InputGpios", "5,6H"));
    assert!(accepts(v3, "OutputGpios", "8H,9,27L"));
    assert!(!accepts(v3, "InputPollPeriod", "0"));
    let r = param(v3, "GpioMem-ResourceId")
        .spec
        .resource
        .as_ref()
        .expect("resource");
    assert_eq!(r.kind, ResourceKind::LocalDevice);
    assert_example_valid(
        v3,
        &[
            ("GpioMem-ResourceId", "my-gpio-resource"),
            ("InputGpios", "5,6U,7D"),
            ("InputPollPeriod", "50"),
            ("OutputGpios", "8H,9,27L"),
        ],
    );
}

#[test]
fn docker_application_deployment() {
    let v1 = version("DockerApplicationDeployment", 1);
    assert!(v1.parameter("ForceDeploy").is_none());
    assert!(
        version("DockerApplicationDeployment", 2)
            .parameter("ForceDeploy")
            .is_some()
    );
    assert!(
        version("DockerApplicationDeployment", 5)
            .parameter("DockerPullBeforeUp")
            .is_some()
    );
    assert!(
        version("DockerApplicationDeployment", 5)
            .parameter("StopContainersOnNewDeployment")
            .is_none()
    );
    assert!(
        version("DockerApplicationDeployment", 6)
            .parameter("DockerOfflineMode")
            .is_none()
    );
    let v7 = version("DockerApplicationDeployment", 7);
    assert_eq!(v7.info.isolation, [IsolationMode::NoContainer]);
    assert!(v7.inputs.is_empty());
    assert_eq!(
        topics(&v7.outputs),
        ["dockerapplicationdeploymentconnector/message/status"]
    );
    assert!(accepts(
        v7,
        "DockerComposeFileS3Bucket",
        "my-bucket.example"
    ));
    assert!(!accepts(v7, "DockerComposeFileS3Bucket", "ab"));
    assert!(accepts(v7, "DockerUserId", "1000"));
    assert!(!accepts(v7, "DockerUserId", "ggc_user"));
    assert!(accepts(v7, "DockerOfflineMode", "true"));
    assert!(!accepts(v7, "DockerOfflineMode", "yes"));
    assert!(accepts(v7, "DockerContainerStatusLogFrequency", "30"));
    assert!(!accepts(v7, "DockerContainerStatusLogFrequency", "0"));
    assert_example_valid(
        version("DockerApplicationDeployment", 5),
        &[
            ("DockerComposeFileS3Bucket", "myS3Bucket"),
            ("DockerComposeFileS3Key", "production-docker-compose.yml"),
            ("DockerComposeFileS3Version", "123"),
            (
                "DockerComposeFileDestinationPath",
                "/home/username/myCompose",
            ),
            ("DockerUserId", "1000"),
            (
                "AWSSecretsArnList",
                r#"["arn:aws:secretsmanager:us-west-2:123456789012:secret:greengrass-secret1-hash"]"#,
            ),
            ("DockerContainerStatusLogFrequency", "30"),
            ("ForceDeploy", "true"),
            ("DockerPullBeforeUp", "true"),
        ],
    );
}

#[test]
fn iot_ethernet_ip() {
    let v2 = version("IoTEIPProtocolAdaptor", 2);
    assert_eq!(v2.info.isolation, [IsolationMode::NoContainer]);
    assert!(v2.inputs.is_empty() && v2.outputs.is_empty());
    assert!(param(v2, "ProtocolAdapterConfiguration").spec.required);
    assert!(accepts(
        v2,
        "ProtocolAdapterConfiguration",
        r#"{"sources":[]}"#
    ));
    assert!(!accepts(v2, "ProtocolAdapterConfiguration", "sources"));
    assert!(v2.parameter("ProtocolAdaptorConfiguration").is_some());
}

#[test]
fn ml_feedback() {
    let v1 = version("MLFeedback", 1);
    assert_eq!(v1.info.isolation, [IsolationMode::GreengrassContainer]);
    assert!(v1.inputs.is_empty());
    assert_eq!(
        topics(&v1.outputs),
        [
            "feedback/message/status",
            "feedback/message/prediction",
            "cloudwatch/metric/put",
        ]
    );
    assert!(accepts(v1, "RequestLimit", "999"));
    assert!(accepts(v1, "RequestLimit", ""));
    assert!(!accepts(v1, "RequestLimit", "1000"));
    assert!(accepts(
        v1,
        "FeedbackConfigurationMap",
        r#"{"ConfigID1":{"s3-bucket-name":"my-bucket","content-type":"image/png"}}"#
    ));
    assert!(!accepts(v1, "FeedbackConfigurationMap", "ConfigID1"));
}

#[test]
fn ml_inference_connectors() {
    for platform in ["Aarch64JTX2", "x86-64", "ARMv7"] {
        let ic1 = version(&format!("ImageClassification{platform}"), 1);
        let ic2 = version(&format!("ImageClassification{platform}"), 2);
        let od1 = version(&format!("ObjectDetection{platform}"), 1);
        assert!(ic1.parameter("MLFeedbackConnectorConfigId").is_none());
        assert!(ic2.parameter("MLFeedbackConnectorConfigId").is_some());
        assert!(od1.parameter("MLFeedbackConnectorConfigId").is_some());
        assert!(od1.parameter("MLModelSageMakerJobArn").is_none());
        let jtx2 = platform == "Aarch64JTX2";
        for cv in [ic1, ic2, od1] {
            assert_eq!(cv.info.isolation, [IsolationMode::GreengrassContainer]);
            assert!(cv.info.long_lived);
            assert!(cv.inputs.is_empty() && cv.outputs.is_empty());
            assert_eq!(
                cv.parameter("GPUAcceleration").is_some(),
                jtx2,
                "{}",
                cv.name
            );
            if jtx2 {
                assert!(accepts(cv, "GPUAcceleration", "GPU"));
                assert!(!accepts(cv, "GPUAcceleration", "TPU"));
            }
            let r = param(cv, "MLModelResourceId")
                .spec
                .resource
                .as_ref()
                .expect("resource");
            assert_eq!(r.kind, ResourceKind::MachineLearning);
            assert!(accepts(
                cv,
                "LocalInferenceServiceName",
                "imageClassification"
            ));
            assert!(!accepts(cv, "LocalInferenceServiceName", "-x"));
            assert!(!accepts(cv, "LocalInferenceServiceTimeoutSeconds", "0"));
        }
        assert!(accepts(
            ic2,
            "MLModelSageMakerJobArn",
            "arn:aws:sagemaker:us-west-2:123456789012:training-job/MyImageClassifier"
        ));
        assert!(accepts(ic2, "MLFeedbackConnectorConfigId", ""));
        assert_eq!(
            param(od1, "LocalInferenceServiceTimeoutSeconds")
                .spec
                .default
                .as_deref(),
            Some("10")
        );
    }
}

#[test]
fn patterns_match_from_the_start() {
    // `^(?:PATTERN)` like Python re.match: a prefix match, not a search.
    let v4 = version("SNS", 4);
    assert!(!accepts(
        v4,
        "DefaultSNSArn",
        "x arn:aws:sns:us-west-2:123456789012:t"
    ));
    let twilio = version("TwilioNotifications", 5);
    assert!(accepts(twilio, "TWILIO_ACCOUNT_SID", "AC123"));
    assert!(!accepts(twilio, "TWILIO_ACCOUNT_SID", ""));
}
