//! The `coupler` binary as a user runs it: exit codes, output, and --help.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

#[path = "support/up.rs"]
mod up;

fn coupler(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coupler"))
        .args(args)
        .output()
        .expect("coupler runs")
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/modbus-twilio.yaml")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write_temp(contents: &[u8], suffix: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(suffix).tempfile().unwrap();
    f.write_all(contents).unwrap();
    f
}

#[test]
fn valid_example_exits_0_with_a_summary() {
    let out = coupler(&["validate", example().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("valid: core gateway-core:"), "{stdout}");
    assert_eq!(stdout.lines().count(), 1);
    // This build runs both of its connectors, so there is nothing to warn about.
    assert!(
        !text(&out.stderr).contains("cannot run it yet"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn invalid_bundle_exits_1_with_every_problem_and_its_path() {
    let example = std::fs::read_to_string(example()).unwrap();
    let broken = example
        .replace(
            "DefaultFromPhoneNumber: \"+19999999999\"",
            "DefaultFromPhoneNumber: \"123\"",
        )
        .replace("Subject: twilio/txt", "Subject: twilio/#/txt");
    let f = write_temp(broken.as_bytes(), ".yaml");
    let out = coupler(&["validate", f.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(
            "ConnectorDefinitionVersion.Connectors[1].Parameters.DefaultFromPhoneNumber: \"123\" does not match ^$|\\+[0-9]+"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("SubscriptionDefinitionVersion.Subscriptions[2].Subject"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 2, "{stdout}");

    let out = coupler(&["validate", "--json", f.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["problems"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["problems"][0]["path"],
        "ConnectorDefinitionVersion.Connectors[1].Parameters.DefaultFromPhoneNumber"
    );
}

#[test]
fn wrong_shape_exits_1_naming_the_field() {
    let f = write_temp(
        b"CoreDefinitionVersion:\n  Cores:\n    - Id: c\n      ThingArn: x\n      CertificateArn: y\n      Colour: blue\n",
        ".yaml",
    );
    let out = coupler(&["validate", f.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("CoreDefinitionVersion.Cores[0].Colour: unknown field `Colour`"),
        "{stdout}"
    );
}

#[test]
fn unreadable_input_exits_2() {
    let out = coupler(&["validate", "/nonexistent/bundle.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("No such file"));

    let f = write_temp(b"{\"CoreDefinitionVersion\": [", ".json");
    let out = coupler(&["validate", f.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not valid JSON"),
        "{}",
        text(&out.stderr)
    );

    let f = write_temp(b"\xff\xfe\x00garbage", ".yaml");
    assert_eq!(
        coupler(&["validate", f.path().to_str().unwrap()])
            .status
            .code(),
        Some(2)
    );

    // Deep nesting: refused with a clear message (JSON at the first unexpected field, YAML at
    // the parser's depth limit), never a stack overflow.
    for (deep, suffix) in [
        (
            format!("{}{}", "{\"a\":".repeat(100_000), "}".repeat(100_000)),
            ".json",
        ),
        (
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
            ".yaml",
        ),
    ] {
        let f = write_temp(deep.as_bytes(), suffix);
        let out = coupler(&["validate", f.path().to_str().unwrap()]);
        assert!(
            matches!(out.status.code(), Some(1 | 2)),
            "{suffix}: {:?}",
            out.status
        );
        assert!(!out.stdout.is_empty() || !out.stderr.is_empty());
    }

    let big = vec![b' '; coupler_limit() + 1];
    let f = write_temp(&big, ".yaml");
    let out = coupler(&["validate", "--json", f.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["error"].as_str().unwrap().contains("the limit is"));
}

fn coupler_limit() -> usize {
    16 * 1024 * 1024
}

#[test]
fn reads_the_bundle_from_stdin() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coupler"))
        .args(["validate", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(example()).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn connectors_list_shows_every_connector_and_what_runs() {
    let out = coupler(&["connectors", "list"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    for name in [
        "TwilioNotifications",
        "ModbusRTUProtocolAdapter",
        "SerialStream",
        "KinesisFirehose",
    ] {
        assert!(stdout.contains(name), "{name} missing from\n{stdout}");
    }
    assert!(stdout.contains("catalog only"));

    let out = coupler(&["connectors", "list", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 22);
    let twilio = rows
        .iter()
        .find(|r| r["name"] == "TwilioNotifications")
        .unwrap();
    assert_eq!(twilio["latest"], 5);
}

#[test]
fn connectors_describe_one_version() {
    let out = coupler(&[
        "connectors",
        "describe",
        "TwilioNotifications",
        "--version",
        "4",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], 4);
    let params: Vec<&str> = v["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(params.contains(&"TwilioAuthTokenSecretArn-ResourceId"));
    assert!(
        !params.contains(&"IsolationMode"),
        "IsolationMode came in version 5"
    );
    assert_eq!(
        v["inputs"],
        serde_json::json!(["twilio/txt", "twilio/call"])
    );

    let out = coupler(&["connectors", "describe", "SerialStream"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("serial/+/read/#"));

    assert_eq!(
        coupler(&["connectors", "describe", "NoSuchThing"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        coupler(&[
            "connectors",
            "describe",
            "TwilioNotifications",
            "--version",
            "9"
        ])
        .status
        .code(),
        Some(2)
    );
}

#[test]
fn version_and_help_for_every_subcommand() {
    let out = coupler(&["--version"]);
    assert!(text(&out.stdout).starts_with("coupler "));
    for args in [
        vec!["--help"],
        vec!["validate", "--help"],
        vec!["connectors", "--help"],
        vec!["connectors", "list", "--help"],
        vec!["connectors", "describe", "--help"],
        vec!["connectors", "upgrades", "--help"],
        vec!["up", "--help"],
        vec!["deploy", "--help"],
        vec!["status", "--help"],
        vec!["logs", "--help"],
    ] {
        let out = coupler(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(text(&out.stdout).contains("Usage:"), "{args:?}");
    }
}

// ---- `coupler connectors upgrades` against a running `coupler up` ---------------------------

/// A `coupler up` on a temporary data dir, with a generated key in DATA_DIR/credentials;
/// killed when dropped.
struct Up {
    child: std::process::Child,
    url: String,
    dir: tempfile::TempDir,
    key: (String, String),
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_up() -> Up {
    let dir = tempfile::tempdir().unwrap();
    let up::Up {
        child, api: url, ..
    } = up::start(dir.path(), &[], &[("RUST_LOG", "warn")]);
    let creds = std::fs::read_to_string(dir.path().join("credentials")).unwrap();
    let field = |name: &str| {
        creds
            .lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap()
    };
    let key = (field("aws_access_key_id"), field("aws_secret_access_key"));
    Up {
        child,
        url,
        dir,
        key,
    }
}

impl Up {
    fn call(
        &self,
        method: axum::http::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let client =
            coupler_api::client::Client::new(&self.url, &self.key.0, &self.key.1, "us-east-1")
                .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(client.call(method.clone(), path, body.as_ref()))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// `POST /greengrass/definition/KIND` with an initial version; its LatestVersionArn.
    fn definition(&self, kind: &str, version: serde_json::Value) -> String {
        self.call(
            axum::http::Method::POST,
            &format!("/greengrass/definition/{kind}"),
            Some(serde_json::json!({ "InitialVersion": version })),
        )["LatestVersionArn"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `coupler connectors upgrades ARGS --endpoint URL --data-dir DIR`.
    fn upgrades(&self, args: &[&str]) -> Output {
        up::clean(&mut Command::new(env!("CARGO_BIN_EXE_coupler")))
            .args(["connectors", "upgrades"])
            .args(args)
            .args(["--endpoint", &self.url, "--data-dir"])
            .arg(self.dir.path())
            .output()
            .expect("coupler runs")
    }
}

const TWILIO_4: &str = "arn:aws:greengrass:us-east-1::/connectors/TwilioNotifications/versions/4";
const TWILIO_5: &str = "arn:aws:greengrass:us-east-1::/connectors/TwilioNotifications/versions/5";
const SERIAL_3: &str = "arn:aws:greengrass:us-east-1::/connectors/SerialStream/versions/3";
const SECRET: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-TwilioAuthToken-ntSlp6";
const DEVICE: &str = "arn:aws:iot:us-east-1:123456789012:thing/sensor";
const CERT: &str = "arn:aws:iot:us-east-1:123456789012:cert/2b1b3e5c7a6f4f0e";

/// The definition versions of a group with TwilioNotifications version 4 (one version behind)
/// and SerialStream version 3 (the latest), and subscriptions naming them: the group version
/// fields and their ARNs.
fn connector_group_parts(up: &Up) -> Vec<(&'static str, String)> {
    use serde_json::json;
    let core = up.definition(
        "cores",
        json!({"Cores": [{"Id": "core", "ThingArn": "arn:aws:iot:us-east-1:123456789012:thing/core", "CertificateArn": CERT}]}),
    );
    let devices = up.definition(
        "devices",
        json!({"Devices": [{"Id": "sensor", "ThingArn": DEVICE, "CertificateArn": CERT}]}),
    );
    let resources = up.definition(
        "resources",
        json!({"Resources": [
            {"Id": "TwilioAuthToken", "Name": "TwilioAuthToken", "ResourceDataContainer": {
                "SecretsManagerSecretResourceData": {"ARN": SECRET}}},
            {"Id": "serial-port", "Name": "serial", "ResourceDataContainer": {
                "LocalDeviceResourceData": {"SourcePath": "/dev/ttyS0",
                    "GroupOwnerSetting": {"AutoAddGroupOwner": true}}}},
        ]}),
    );
    let connectors = up.definition(
        "connectors",
        json!({"Connectors": [
            {"Id": "twilio", "ConnectorArn": TWILIO_4, "Parameters": {
                "TWILIO_ACCOUNT_SID": "ACa1b2c3d4e5f60718293a4b5c6d7e8f90",
                "TwilioAuthTokenSecretArn": SECRET,
                "TwilioAuthTokenSecretArn-ResourceId": "TwilioAuthToken",
                "DefaultFromPhoneNumber": "+19999999999"}},
            {"Id": "serial", "ConnectorArn": SERIAL_3, "Parameters": {
                "BaudRate": "115200", "Timeout": "1", "SerialPort": "/dev/ttyS0",
                "SerialPort-ResourceId": "serial-port", "PollingRead": "false"}},
        ]}),
    );
    let subscriptions = up.definition(
        "subscriptions",
        json!({"Subscriptions": [
            {"Id": "sub-1", "Source": "cloud", "Subject": "twilio/txt", "Target": TWILIO_4},
            {"Id": "readings", "Source": DEVICE, "Subject": "sensors/#", "Target": "cloud"},
            {"Id": "sub-2", "Source": TWILIO_4, "Subject": "twilio/message/status", "Target": "cloud"},
            {"Id": "serial-read", "Source": DEVICE, "Subject": "serial/core/read/dev/ttyS0", "Target": SERIAL_3},
        ]}),
    );
    vec![
        ("CoreDefinitionVersionArn", core),
        ("DeviceDefinitionVersionArn", devices),
        ("ResourceDefinitionVersionArn", resources),
        ("ConnectorDefinitionVersionArn", connectors),
        ("SubscriptionDefinitionVersionArn", subscriptions),
    ]
}

fn group_version(parts: &[(&'static str, String)]) -> serde_json::Value {
    serde_json::Value::Object(
        parts
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(v.as_str())))
            .collect(),
    )
}

#[test]
fn connectors_upgrades_reports_old_connectors_and_their_subscriptions() {
    use axum::http::Method;
    let up = start_up();

    // Nothing deployed and no --group-id: said, exit 2.
    let out = up.upgrades(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no group is deployed; pass --group-id"),
        "{}",
        text(&out.stderr)
    );

    let parts = connector_group_parts(&up);
    let group = up.call(
        Method::POST,
        "/greengrass/groups",
        Some(serde_json::json!({"Name": "alerts", "InitialVersion": group_version(&parts)})),
    );
    let gid = group["Id"].as_str().unwrap().to_owned();
    let vid = group["LatestVersion"].as_str().unwrap().to_owned();

    let out = up.upgrades(&["--group-id", &gid, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["groupId"], gid.as_str());
    assert_eq!(v["groupVersion"], vid.as_str());
    let connectors = v["connectors"].as_array().unwrap();
    assert_eq!(connectors.len(), 2, "{v}");
    let twilio = &connectors[0];
    assert_eq!(twilio["id"], "twilio");
    assert_eq!(twilio["name"], "TwilioNotifications");
    assert_eq!(twilio["version"], 4);
    assert_eq!(twilio["latest"], 5);
    assert_eq!(twilio["upgradable"], true);
    assert_eq!(
        twilio["latestRunnable"], true,
        "this build runs TwilioNotifications 5"
    );
    assert_eq!(
        twilio["subscriptions"],
        serde_json::json!(["sub-1", "sub-2"])
    );
    assert_eq!(twilio["newArn"], TWILIO_5);
    let serial = &connectors[1];
    assert_eq!(
        (
            &serial["id"],
            &serial["version"],
            &serial["latest"],
            &serial["upgradable"]
        ),
        (
            &serde_json::json!("serial"),
            &serde_json::json!(3),
            &serde_json::json!(3),
            &serde_json::json!(false)
        )
    );
    assert_eq!(
        serial["latestRunnable"], true,
        "this build runs SerialStream 3"
    );
    assert_eq!(serial["subscriptions"], serde_json::json!([]));
    assert_eq!(serial["newArn"], serde_json::Value::Null);

    let out = up.upgrades(&["--group-id", &gid]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(
            "TwilioNotifications (Id twilio): version 4 -> 5 available (this core runs it: yes)\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "  subscriptions to re-create with {TWILIO_5}: sub-1, sub-2\n"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("SerialStream (Id serial): version 3, the latest\n"),
        "{stdout}"
    );

    // A group that does not exist: the API's message, exit 2.
    let out = up.upgrades(&["--group-id", "00000000-0000-0000-0000-000000000000"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("That Group Definition does not exist."),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn connectors_upgrades_checks_the_deployed_version_of_the_active_group() {
    use axum::http::Method;
    let up = start_up();

    // A group this core runs (a core only), deployed.
    let core = up.definition(
        "cores",
        serde_json::json!({"Cores": [{"Id": "core", "ThingArn": "arn:aws:iot:us-east-1:123456789012:thing/core", "CertificateArn": CERT}]}),
    );
    let group = up.call(
        Method::POST,
        "/greengrass/groups",
        Some(
            serde_json::json!({"Name": "gw", "InitialVersion": {"CoreDefinitionVersionArn": core}}),
        ),
    );
    let gid = group["Id"].as_str().unwrap().to_owned();
    let deployed = group["LatestVersion"].as_str().unwrap().to_owned();
    let d = up.call(
        Method::POST,
        &format!("/greengrass/groups/{gid}/deployments"),
        Some(serde_json::json!({"DeploymentType": "NewDeployment", "GroupVersionId": deployed})),
    );
    let did = d["DeploymentId"].as_str().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let s = up.call(
            Method::GET,
            &format!("/greengrass/groups/{gid}/deployments/{did}/status"),
            None,
        );
        match s["DeploymentStatus"].as_str() {
            Some("Success") => break,
            Some("InProgress" | "Building") if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            _ => panic!("deployment: {s}"),
        }
    }

    // A newer version with an old connector, not deployed.
    let latest = up.call(
        Method::POST,
        &format!("/greengrass/groups/{gid}/versions"),
        Some(group_version(&connector_group_parts(&up))),
    )["Version"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(latest, deployed);

    // Without --group-id: what runs.
    let out = up.upgrades(&["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"groupId": gid, "groupVersion": deployed, "connectors": []})
    );
    let out = up.upgrades(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("the group has no connectors"), "{stdout}");
    assert!(stdout.contains("deployed"), "{stdout}");

    // With it: the group's latest version.
    let out = up.upgrades(&["--group-id", &gid, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["groupVersion"], latest.as_str());
    assert_eq!(v["connectors"][0]["latest"], 5);
    assert_eq!(
        v["connectors"][0]["subscriptions"],
        serde_json::json!(["sub-1", "sub-2"])
    );
}

#[test]
fn connectors_upgrades_exits_2_when_the_api_is_unreachable() {
    // A port nothing listens on: bind one and let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("credentials"),
        "[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = secret\n",
    )
    .unwrap();
    for args in [vec![], vec!["--group-id", "g-1"]] {
        let out = up::clean(&mut Command::new(env!("CARGO_BIN_EXE_coupler")))
            .args(["connectors", "upgrades"])
            .args(&args)
            .args(["--endpoint", &url, "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).starts_with("error: "),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn connectors_upgrades_help_says_what_it_reads_and_reports() {
    let out = coupler(&["connectors", "upgrades", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for words in [
        "Usage: coupler connectors upgrades [OPTIONS]",
        "--group-id <ID>",
        "--json",
        "--endpoint <ENDPOINT>",
        "--data-dir <DATA_DIR>",
        "re-created with the new",
        "Exit status",
    ] {
        assert!(help.contains(words), "{words:?} missing from\n{help}");
    }
    let out = coupler(&["connectors", "--help"]);
    assert!(text(&out.stdout).contains("upgrades"));
}
