"""The embedded core applies deployments: Success for a group it can run, Failure with the
reasons for one it cannot (and the previous group keeps serving), resets, /health and
/metrics, and the active group surviving a restart."""

from __future__ import annotations

import json
import urllib.request

import payloads as P
from ggtest import wait_deployment


def get(server, path: str) -> tuple[int, str]:
    with urllib.request.urlopen(server.url + path, timeout=10) as r:
        return r.status, r.read().decode()


def health(server) -> dict:
    status, body = get(server, "/health")
    assert status == 200, body
    return json.loads(body)


def deployable_group(gg, name: str) -> tuple[str, str]:
    """A core, a device and its subscriptions: a group this build runs."""
    core = gg.create_core_definition(InitialVersion=P.CORES)
    devices = gg.create_device_definition(InitialVersion={"Devices": [{
        "Id": "sensor", "ThingArn": P.DEVICE_THING_ARN, "CertificateArn": P.DEVICE_CERT_ARN}]})
    subs = gg.create_subscription_definition(InitialVersion={"Subscriptions": [
        {"Id": "up", "Source": P.DEVICE_THING_ARN, "Subject": "sensors/#", "Target": "cloud"},
        {"Id": "down", "Source": "cloud", "Subject": "commands/sensor",
         "Target": P.DEVICE_THING_ARN},
    ]})
    group = gg.create_group(Name=name, InitialVersion={
        "CoreDefinitionVersionArn": core["LatestVersionArn"],
        "DeviceDefinitionVersionArn": devices["LatestVersionArn"],
        "SubscriptionDefinitionVersionArn": subs["LatestVersionArn"],
    })
    return group["Id"], group["LatestVersion"]


def test_deploy_fail_reset_and_restart(own_server):
    core = own_server
    gg = core.client()
    assert health(core)["activeGroup"] is None

    gid, vid = deployable_group(gg, "runs-here")
    dep = gg.create_deployment(GroupId=gid, DeploymentType="NewDeployment", GroupVersionId=vid)
    status = wait_deployment(gg, gid, dep["DeploymentId"])
    assert status["DeploymentStatus"] == "Success", status
    h = health(core)
    assert (h["activeGroup"], h["activeDeployment"]) == (gid, dep["DeploymentId"]), h
    _, metrics = get(core, "/metrics")
    assert "coupler_subscriptions 2" in metrics, metrics
    assert f'deployment="{dep["DeploymentId"]}"' in metrics, metrics

    # A group whose function's code this control plane does not hold cannot run: Failure,
    # named, and the old group still serves.
    functions = gg.create_function_definition(InitialVersion=P.FUNCTIONS)
    v2 = gg.create_group_version(
        GroupId=gid, **{k: v for k, v in gg.get_group_version(
            GroupId=gid, GroupVersionId=vid)["Definition"].items()},
        FunctionDefinitionVersionArn=functions["LatestVersionArn"])
    bad = gg.create_deployment(GroupId=gid, DeploymentType="NewDeployment",
                               GroupVersionId=v2["Version"])
    status = wait_deployment(gg, gid, bad["DeploymentId"])
    assert status["DeploymentStatus"] == "Failure", status
    assert "TempMonitor" in status["ErrorMessage"], status
    assert status["ErrorDetails"][0]["DetailedErrorCode"] == "FunctionCodeUnavailable", status
    assert health(core)["activeDeployment"] == dep["DeploymentId"]

    # A restart brings the active group back.
    core.restart()
    gg = core.client()
    assert health(core)["activeDeployment"] == dep["DeploymentId"]

    # A reset stops it.
    reset = gg.reset_deployments(GroupId=gid)
    status = wait_deployment(gg, gid, reset["DeploymentId"])
    assert (status["DeploymentType"], status["DeploymentStatus"]) == ("ResetDeployment", "Success")
    assert health(core)["activeGroup"] is None


def test_forced_reset_also_cleans_the_core(own_server):
    core = own_server
    gg = core.client()
    gid, vid = deployable_group(gg, "forced")
    dep = gg.create_deployment(GroupId=gid, DeploymentType="NewDeployment", GroupVersionId=vid)
    assert wait_deployment(gg, gid, dep["DeploymentId"])["DeploymentStatus"] == "Success"
    gg.reset_deployments(GroupId=gid, Force=True)
    import time
    for _ in range(200):
        if health(core)["activeGroup"] is None:
            break
        time.sleep(0.05)
    assert health(core)["activeGroup"] is None


def test_health_and_metrics_need_no_signature(own_server):
    core = own_server
    status, _ = get(core, "/health")
    assert status == 200
    status, body = get(core, "/metrics")
    assert status == 200 and "# TYPE coupler_router_routed_total counter" in body, body


def test_coupler_deploy_and_status(own_server):
    """The CLI's own client: `coupler deploy` creates and deploys a bundle and follows it,
    `coupler status` shows the active group; boto3 sees the same deployment."""
    import subprocess
    from pathlib import Path

    core = own_server
    from ggtest import coupler_bin

    repo = Path(__file__).resolve().parents[2]
    env = {**core.env, "COUPLER_ENDPOINT": core.url, "COUPLER_DATA_DIR": str(core.data_dir)}
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(k, None)

    def run(*args):
        return subprocess.run([str(coupler_bin()), *args], env=env, capture_output=True,
                              text=True, timeout=60)

    ok = run("deploy", str(repo / "examples/sensor-to-cloud.yaml"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Success" in ok.stdout, ok.stdout
    gg = core.client()
    groups = {g["Name"]: g["Id"] for g in gg.list_groups()["Groups"]}
    assert "sensor-to-cloud" in groups, groups
    assert health(core)["activeGroup"] == groups["sensor-to-cloud"]

    status = run("status")
    assert status.returncode == 0, status.stderr
    assert groups["sensor-to-cloud"] in status.stdout, status.stdout
    assert "subscriptions: 2" in status.stdout, status.stdout

    # The seed example's TempMonitor asks for a container, and its code is not on this control
    # plane: exit 1, with the reasons.
    bad = run("deploy", str(repo / "examples/modbus-twilio.yaml"))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "Failure" in bad.stdout and "TempMonitor" in bad.stdout, bad.stdout
    assert health(core)["activeGroup"] == groups["sensor-to-cloud"]

    # The core's log, in Greengrass's line format, has both outcomes.
    logs = run("logs")
    assert logs.returncode == 0, logs.stderr
    assert "][INFO]-deployment succeeded\t{" in logs.stdout, logs.stdout
    assert "of type NewDeployment for group" in logs.stdout, logs.stdout
    assert "failed error: connector TwilioAlerts" in logs.stdout, logs.stdout

    # Deploying the same name again adds a version to the same group.
    again = run("deploy", str(repo / "examples/sensor-to-cloud.yaml"))
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(gg.list_group_versions(GroupId=groups["sensor-to-cloud"])["Versions"]) == 2
