//! The `coupler` binary as a user runs it: exit codes, output, and --help.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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
    // The connectors are valid, but this build cannot run them: it says so.
    assert!(text(&out.stderr).contains("cannot run it yet"));
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
