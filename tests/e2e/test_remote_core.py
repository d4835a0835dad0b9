"""`coupler core`: a core on its own, attached to a control plane (`coupler up --no-core`)
over its HTTP API. Groups are made and deployed with the AWS CLI on the control plane; the
remote core applies those whose core is its thing, fetches the function code, the secret
values and its MQTT server certificate from the control plane, and reports the outcome."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from ggtest import (MqttDevice, _clean_env, coupler_bin, deploy_with_cli, run_aws,
                    start_server)
from test_functions import create_function, create_secret, fn, thing

CERT_SUFFIX = "cert/" + "ab" * 32

ECHO = '''
import json
import greengrasssdk

iot = greengrasssdk.client("iot-data")
secrets = greengrasssdk.client("secretsmanager")

def handler(event, context):
    value = secrets.get_secret_value(SecretId="greengrass-remote")["SecretString"]
    iot.publish(topic="out", payload=json.dumps({"got": event, "secret": value}))
'''


class RemoteCore:
    """One `coupler core` process and the addresses it printed."""

    def __init__(self, base: Path, control_plane, thing_name: str):
        self.data_dir = base / "core-data"
        self.log_path = base / "core.log"
        argv = [str(coupler_bin()), "core", "--control-plane", control_plane.url,
                "--thing-name", thing_name, "--data-dir", str(self.data_dir),
                "--credentials", str(control_plane.data_dir / "credentials"),
                "--listen", "127.0.0.1:0", "--mqtt", "127.0.0.1:0",
                "--mqtt-plain", "127.0.0.1:0", "--ipc", "127.0.0.1:0", "--poll-secs", "1"]
        env = _clean_env()
        env.setdefault("RUST_LOG", "info")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log,
                                         stdin=subprocess.DEVNULL, env=env)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l.decode()) for l in self.proc.stdout],
                         daemon=True).start()
        self.status_url = ""
        self.mqtt_plain_port = 0
        deadline = time.monotonic() + 30
        while not self.status_url:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic())).strip()
            except queue.Empty:
                self.proc.kill()
                pytest.fail(f"coupler core printed no addresses:\n{self.log_path.read_text()}")
            if line.startswith("device MQTT plain"):
                self.mqtt_plain_port = int(line.split("127.0.0.1:")[1].split()[0])
            if line.startswith("health / metrics"):
                self.status_url = line.split()[3].rsplit("/health", 1)[0]

    def health(self) -> dict:
        return json.load(urllib.request.urlopen(self.status_url + "/health", timeout=10))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("remote")
    server = start_server(tmp, "--no-core")
    core = RemoteCore(tmp, server, "gateway-2")
    yield server, core, tmp
    core.stop()
    server.stop()


def parts(account: str, core_thing: str, function_arn: str, secret_arn: str | None) -> dict:
    cert = f"arn:aws:iot:us-east-1:{account}:{CERT_SUFFIX}"
    dev = thing(account, "sensor")
    out = {
        "core": {"Cores": [{"Id": "core", "ThingArn": thing(account, core_thing),
                            "CertificateArn": cert}]},
        "devices": {"Devices": [{"Id": "sensor", "ThingArn": dev, "CertificateArn": cert}]},
        "functions": {"DefaultConfig": {"Execution": {"IsolationMode": "NoContainer"}},
                      "Functions": [fn(function_arn, pinned=True,
                                       resources=["remote-secret"] if secret_arn else None)]},
        "subscriptions": {"Subscriptions": [
            {"Id": "in", "Source": dev, "Subject": "in", "Target": function_arn},
            {"Id": "out", "Source": function_arn, "Subject": "out", "Target": dev}]},
    }
    if secret_arn:
        out["resources"] = {"Resources": [{
            "Id": "remote-secret", "Name": "RemoteSecret",
            "ResourceDataContainer": {"SecretsManagerSecretResourceData": {"ARN": secret_arn}}}]}
    return out


def test_remote_core_applies_its_groups(plane):
    server, core, tmp = plane
    assert core.health()["activeGroup"] is None
    arn = create_function(server, tmp, "Remote", ECHO)
    account = arn.split(":")[4]
    secret = create_secret(server, "greengrass-remote", "from the control plane")
    group_id, status = deploy_with_cli(server, parts(account, "gateway-2", arn, secret),
                                       name="remote")
    assert status["DeploymentStatus"] == "Success", status
    assert core.health()["activeGroup"] == group_id

    device = MqttDevice(core.mqtt_plain_port, "sensor", "out")
    device.request("in", {"n": 1})
    topic, body = device.next(timeout=15)
    assert (topic, body) == ("out", {"got": {"n": 1}, "secret": "from the control plane"})
    device.close()
    # Its MQTT server certificate came from the group CA on the control plane.
    assert (core.data_dir / "ggc/var/state/server/server.crt").exists()


def test_other_cores_groups_are_left_alone(plane):
    server, core, tmp = plane
    before = core.health()["activeDeployment"]
    arn = create_function(server, tmp, "Elsewhere", ECHO)
    account = arn.split(":")[4]
    group_id = run_aws(server, "create-group", "--name", "elsewhere")["Id"]
    arns = {}
    for kind, body in parts(account, "gateway-3", arn, None).items():
        noun = {"core": "core", "devices": "device", "functions": "function",
                "subscriptions": "subscription"}[kind]
        arns[noun] = run_aws(server, f"create-{noun}-definition", "--initial-version",
                             json.dumps(body))["LatestVersionArn"]
    refs = [a for noun, v in arns.items() for a in (f"--{noun}-definition-version-arn", v)]
    gv = run_aws(server, "create-group-version", "--group-id", group_id, *refs)
    dep = run_aws(server, "create-deployment", "--group-id", group_id, "--group-version-id",
                  gv["Version"], "--deployment-type", "NewDeployment")
    time.sleep(3)  # three polls of the remote core
    status = run_aws(server, "get-deployment-status", "--group-id", group_id,
                     "--deployment-id", dep["DeploymentId"])
    assert status["DeploymentStatus"] == "InProgress", status
    assert core.health()["activeDeployment"] == before


def test_failure_is_reported_and_the_old_group_keeps_serving(plane):
    server, core, tmp = plane
    before = core.health()["activeDeployment"]
    account = run_aws(server, "list-groups")["Groups"][0]["Arn"].split(":")[4]
    ghost = f"arn:aws:lambda:us-east-1:{account}:function:Ghost:live"
    _, status = deploy_with_cli(server, parts(account, "gateway-2", ghost, None), name="ghost")
    assert status["DeploymentStatus"] == "Failure", status
    assert "Ghost" in status["ErrorMessage"], status
    assert core.health()["activeDeployment"] == before
