"""The Twilio Notifications connector, deployed with the AWS CLI (the auth token a Secrets
Manager secret made with `aws secretsmanager create-secret`, the group's secret resource naming
it), driven by a paho-mqtt device, and sending to a local Twilio-compatible server
(twilio_server.py; Twilio itself cannot be reached from here) through
COUPLER_TWILIO_BASE_URL."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from ggtest import (CLI_TIMEOUT_S, TRANSCRIPT, MqttDevice, _clip, aws_command,
                    deploy_with_cli, start_server)
from twilio_server import INVALID_NUMBER, TwilioServer

CONNECTOR = "arn:aws:greengrass:us-east-1::/connectors/TwilioNotifications/versions/5"
ACCOUNT = "123456789012"
CERT = f"arn:aws:iot:us-east-1:{ACCOUNT}:cert/" + "ab" * 32
SID = "AC" + uuid.uuid4().hex
TOKEN = "t0k3n" + uuid.uuid4().hex
DEFAULT_FROM = "+15005550006"
STATUS = "twilio/message/status"


def thing(name: str) -> str:
    return f"arn:aws:iot:us-east-1:{ACCOUNT}:thing/{name}"


def create_secret(server, name: str, value: str) -> str:
    argv = [*aws_command(), "--endpoint-url", server.url, "secretsmanager", "create-secret",
            "--name", name, "--secret-string", value, "--output", "json"]
    p = subprocess.run(argv, env=server.env, capture_output=True, text=True,
                       timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL)
    # The value is not recorded.
    TRANSCRIPT.add(f"$ aws secretsmanager create-secret --name {name} --secret-string ***\n"
                   f"[exit {p.returncode}]\n{_clip(p.stdout)}{_clip(p.stderr)}")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["ARN"]


def group_parts(secret_arn: str, default_from: str | None = DEFAULT_FROM,
                connector: str = CONNECTOR) -> dict:
    params = {"TWILIO_ACCOUNT_SID": SID, "TwilioAuthTokenSecretArn": secret_arn,
              "TwilioAuthTokenSecretArn-ResourceId": "twilio-token"}
    if default_from is not None:
        params["DefaultFromPhoneNumber"] = default_from
    return {
        "core": {"Cores": [{"Id": "core", "ThingArn": thing("core"), "CertificateArn": CERT}]},
        "devices": {"Devices": [{"Id": "tester", "ThingArn": thing("tester"),
                                 "CertificateArn": CERT}]},
        "resources": {"Resources": [{
            "Id": "twilio-token", "Name": "TwilioAuthToken",
            "ResourceDataContainer": {"SecretsManagerSecretResourceData": {"ARN": secret_arn}}}]},
        "connectors": {"Connectors": [{"Id": "twilio", "ConnectorArn": connector,
                                       "Parameters": params}]},
        "subscriptions": {"Subscriptions": [
            {"Id": "txt", "Source": thing("tester"), "Subject": "twilio/txt",
             "Target": connector},
            {"Id": "call", "Source": thing("tester"), "Subject": "twilio/call",
             "Target": connector},
            {"Id": "status", "Source": connector, "Subject": STATUS, "Target": thing("tester")},
        ]},
    }


@pytest.fixture(scope="module")
def twilio():
    s = TwilioServer(SID, TOKEN)
    yield s
    s.close()


@pytest.fixture(scope="module")
def core(tmp_path_factory, twilio):
    server = start_server(tmp_path_factory.mktemp("twilio"), "--allow-uncontained",
                          env={"COUPLER_TWILIO_BASE_URL": twilio.url})
    arn = create_secret(server, "greengrass-TwilioAuthToken", TOKEN)
    group_id, status = deploy_with_cli(server, group_parts(arn))
    assert status["DeploymentStatus"] == "Success", status
    dev = MqttDevice(server.mqtt_plain_port, "tester", STATUS)
    yield server, group_id, dev, arn
    dev.close()
    if server.proc is not None:
        server.stop()


def sms(to: str = "+12345000000", **request) -> dict:
    recipient = {"name": "Darla", "phone_number": to, "message": "Hello from the edge"}
    return {"request": {"recipient": recipient, **request}, "id": "request123"}


def test_a_text_reaches_twilio_once_and_reports_success(core, twilio):
    _, _, dev, _ = core
    twilio.take()
    dev.request("twilio/txt", sms(from_number="+19999999999", retries=3))
    assert dev.next() == (STATUS, {"response": {"status": "success", "payload": {
        "from_number": "+19999999999",
        "messages": {"message_status": "queued", "to_number": "+12345000000", "name": "Darla"}}},
        "id": "request123"})
    [req] = twilio.take()
    assert req.method == "POST"
    assert req.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert req.auth == (SID, TOKEN)
    assert req.content_type == "application/x-www-form-urlencoded"
    assert req.form == {"To": ["+12345000000"], "From": ["+19999999999"],
                        "Body": ["Hello from the edge"]}


def test_the_default_from_number_and_text_encoding(core, twilio):
    _, _, dev, _ = core
    twilio.take()
    body = sms()
    body["request"]["recipient"]["message"] = "Tank 3 at 95% & rising = alarm ✓"
    dev.request("twilio/txt", body)
    topic, status = dev.next()
    assert status["response"]["status"] == "success", status
    assert status["response"]["payload"]["from_number"] == DEFAULT_FROM
    [req] = twilio.take()
    assert req.form == {"To": ["+12345000000"], "From": [DEFAULT_FROM],
                        "Body": ["Tank 3 at 95% & rising = alarm ✓"]}


def test_a_call_with_a_twiml_url(core, twilio):
    _, _, dev, _ = core
    twilio.take()
    dev.request("twilio/call", {"request": {"recipient": {
        "name": "Darla", "phone_number": "+12345000000",
        "voice_message_location": "https://example.com/twiml/alarm.xml"},
        "from_number": "+19999999999"}, "id": "call1"})
    assert dev.next() == (STATUS, {"response": {"status": "success", "payload": {
        "from_number": "+19999999999",
        "messages": {"message_status": "queued", "to_number": "+12345000000", "name": "Darla"}}},
        "id": "call1"})
    [req] = twilio.take()
    assert req.path == f"/2010-04-01/Accounts/{SID}/Calls.json"
    assert req.auth == (SID, TOKEN)
    assert req.form == {"To": ["+12345000000"], "From": ["+19999999999"],
                        "Url": ["https://example.com/twiml/alarm.xml"]}


def test_a_twilio_error_gives_the_error_status(core, twilio):
    _, _, dev, _ = core
    twilio.take()
    dev.request("twilio/txt", sms(to=INVALID_NUMBER, retries=3))
    topic, status = dev.next()
    assert topic == STATUS and status["id"] == "request123"
    r = status["response"]
    assert (r["status"], r["error"], r["payload"]) == ("fail", "TwilioRestException", None), r
    assert "21211" in r["error_message"] and INVALID_NUMBER in r["error_message"], r
    # A 400 is not retried: the same request would fail again.
    assert len(twilio.take()) == 1


def test_transient_failures_are_retried(core, twilio):
    _, _, dev, _ = core
    twilio.take()
    twilio.fail_next(2, 503)
    dev.request("twilio/txt", sms(retries=2))
    topic, status = dev.next(timeout=10)
    assert status["response"]["status"] == "success", status
    assert len(twilio.take()) == 3
    # Without retries the first 500 is the answer.
    twilio.fail_next(1, 500)
    dev.request("twilio/txt", sms())
    _, status = dev.next()
    r = status["response"]
    assert (r["status"], r["error"]) == ("fail", "TwilioRestException"), r
    assert "HTTP 500" in r["error_message"], r
    assert len(twilio.take()) == 1


BAD = [
    ("twilio/txt", "not json", None, "the payload is not JSON"),
    ("twilio/txt", [1, 2], None, "the payload must be a JSON object"),
    ("twilio/txt", {"request": sms()["request"]}, None, "id cannot be None"),
    ("twilio/txt", {"id": "b1"}, "b1", "request cannot be None"),
    ("twilio/txt", {"request": {"recipient": {"phone_number": "+12345000000", "message": "x"}},
                    "id": "b2"}, "b2", "Recipient name cannot be None"),
    ("twilio/txt", {"request": {"recipient": {"name": "D", "message": "x"}}, "id": "b3"}, "b3",
     "Recipient phone_number cannot be None"),
    ("twilio/txt", {"request": {"recipient": {"name": "D", "phone_number": "12345"}},
                    "id": "b4"}, "b4", "Invalid phone_number field"),
    ("twilio/txt", {"request": {"recipient": {"name": "D", "phone_number": "+12345000000"}},
                    "id": "b5"}, "b5", "Recipient message cannot be None"),
    ("twilio/txt", {"request": {"recipient": {
        "name": "D", "phone_number": "+12345000000", "message": "x",
        "voice_message_location": "https://x"}}, "id": "b6"}, "b6",
     "Recipient message and voice_message_location cannot both be given"),
    ("twilio/call", {"request": {"recipient": {
        "name": "D", "phone_number": "+12345000000", "message": "x",
        "voice_message_location": "https://x"}}, "id": "b7"}, "b7",
     "Recipient message and voice_message_location cannot both be given"),
    ("twilio/call", {"request": {"recipient": {"name": "", "phone_number": "+12345000000",
                                               "voice_message_location": "https://x"}},
                     "id": "b8"}, "b8", "Recipient name must not be empty"),
    ("twilio/txt", {**sms(), "id": "b9", "request": {**sms()["request"], "from_number": "9"}},
     "b9", "Invalid from_number field"),
    ("twilio/txt", {**sms(), "id": "b10", "request": {**sms()["request"], "retries": "3"}},
     "b10", "Invalid retries field"),
]


def test_bad_payloads_get_the_error_status_and_never_reach_twilio(core, twilio):
    _, _, dev, _ = core
    twilio.take()
    for topic, body, id_, message in BAD:
        dev.request(topic, body)
        got_topic, status = dev.next()
        assert got_topic == STATUS
        assert status.get("id") == id_, (body, status)
        r = status["response"]
        assert (r["status"], r["error"], r["payload"]) == ("fail", "InvalidParameter", None), r
        assert r["error_message"].startswith(message), (body, r)
    assert twilio.take() == []


def test_version_1_without_a_default_number(core, twilio):
    server, group_id, dev, arn = core
    v1 = CONNECTOR.replace("/versions/5", "/versions/1")
    _, status = deploy_with_cli(server, group_parts(arn, None, v1), group_id=group_id)
    assert status["DeploymentStatus"] == "Success", status
    twilio.take()
    dev.request("twilio/txt", sms())
    _, status = dev.next()
    assert status["response"]["error_message"] == \
        "from_number cannot be None when DefaultFromPhoneNumber is not configured", status
    assert twilio.take() == []
    dev.request("twilio/txt", sms(from_number="+19999999999"))
    _, status = dev.next()
    assert status["response"]["status"] == "success", status
    [req] = twilio.take()
    assert req.auth == (SID, TOKEN) and req.form["From"] == ["+19999999999"]


def test_a_secret_missing_at_deployment_fails_the_deployment(core, twilio):
    server, group_id, _, _ = core
    missing = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:greengrass-NoSuchToken-AbC123"
    _, status = deploy_with_cli(server, group_parts(missing), group_id=group_id)
    assert status["DeploymentStatus"] == "Failure", status
    text = json.dumps(status)
    assert "greengrass-NoSuchToken" in text and "twilio" in text.lower(), status


def test_the_token_is_in_no_log_file_or_output(core, twilio):
    """Last: the token must be absent from every file under the data dir (the connector's
    and the core's logs under ggc/var/log, the database), and from the core's stdout and
    stderr."""
    server, _, _, _ = core
    logs = list((Path(server.data_dir) / "ggc" / "var" / "log").rglob("*.log"))
    assert any(p.name == "TwilioNotifications.log" for p in logs), logs
    stdout = "\n".join(server.stdout_lines)
    assert server.stop() == 0
    files = [server.log_path] + [p for p in Path(server.data_dir).rglob("*") if p.is_file()]
    for p in files:
        assert TOKEN.encode() not in p.read_bytes(), f"the Twilio auth token is in {p}"
    assert TOKEN not in stdout, "the Twilio auth token is in coupler up's output"


def test_the_token_can_come_from_an_external_secrets_manager(tmp_path, twilio, moto):
    """`coupler up --secrets-manager aws`: the secret lives in AWS Secrets Manager (moto here),
    not in the control plane; the core fetches it at deployment with its AWS credentials."""
    url, client = moto
    token = "ext" + uuid.uuid4().hex
    arn = client("secretsmanager").create_secret(
        Name="greengrass-ExternalTwilioToken", SecretString=token)["ARN"]
    ext = TwilioServer(SID, token)
    server = start_server(tmp_path / "ext", "--allow-uncontained",
                          "--secrets-manager", "aws",
                          env={"COUPLER_TWILIO_BASE_URL": ext.url,
                               "AWS_ENDPOINT_URL_SECRETS_MANAGER": url,
                               "AWS_ACCESS_KEY_ID": "testing",
                               "AWS_SECRET_ACCESS_KEY": "testing"})
    dev = None
    try:
        group_id, status = deploy_with_cli(server, group_parts(arn), name="external-secret")
        assert status["DeploymentStatus"] == "Success", status
        dev = MqttDevice(server.mqtt_plain_port, "tester", STATUS)
        dev.request("twilio/txt", sms())
        topic, body = dev.next()
        assert body["response"]["status"] == "success", body
        [req] = ext.take()
        assert req.auth == (SID, token)
        # Not in moto: the deployment fails and names it; the local store is not consulted.
        missing = arn.replace("ExternalTwilioToken", "NoSuchToken")
        _, status = deploy_with_cli(server, group_parts(missing), group_id=group_id)
        assert status["DeploymentStatus"] == "Failure", status
        assert "greengrass-NoSuchToken" in json.dumps(status), status
    finally:
        if dev is not None:
            dev.close()
        stdout = "\n".join(server.stdout_lines)
        server.stop()
        ext.close()
    for p in [server.log_path] + [p for p in Path(server.data_dir).rglob("*") if p.is_file()]:
        assert token.encode() not in p.read_bytes(), f"the token is in {p}"
    assert token not in stdout
