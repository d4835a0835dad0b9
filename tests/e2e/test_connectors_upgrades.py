"""`coupler connectors upgrades` against a group made with boto3: the connectors tutorial group
(TwilioNotifications version 4, one behind the latest), the subscriptions that name it, the
report acted on with boto3, the deployed version of the active group, and the errors."""

from __future__ import annotations

import copy
import json
import subprocess

import payloads as P
from ggtest import TRANSCRIPT, _clip, coupler_bin, wait_deployment

RUN_TIMEOUT_S = 60.0


def upgrades(server, *args: str) -> subprocess.CompletedProcess:
    """`coupler connectors upgrades ARGS --endpoint URL --data-dir DIR`, with the server's
    environment (the key comes from DATA_DIR/credentials)."""
    argv = [str(coupler_bin()), "connectors", "upgrades", *args,
            "--endpoint", server.url, "--data-dir", str(server.data_dir)]
    p = subprocess.run(argv, env=server.env, capture_output=True, text=True,
                       timeout=RUN_TIMEOUT_S, stdin=subprocess.DEVNULL)
    TRANSCRIPT.add(f"$ coupler {' '.join(argv[1:])}\n[exit {p.returncode}]\n"
                   f"{_clip(p.stdout)}{_clip(p.stderr)}")
    return p


def report(server, *args: str) -> dict:
    p = upgrades(server, *args, "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def tutorial_parts(gg) -> dict[str, str]:
    """The tutorial's definitions (Twilio v4, its secret, TempMonitor, three subscriptions, a
    core): group version field -> definition version ARN."""
    made = {
        "CoreDefinitionVersionArn": gg.create_core_definition(InitialVersion=P.CORES),
        "ResourceDefinitionVersionArn": gg.create_resource_definition(InitialVersion=P.RESOURCES),
        "ConnectorDefinitionVersionArn":
            gg.create_connector_definition(InitialVersion=P.CONNECTORS),
        "FunctionDefinitionVersionArn": gg.create_function_definition(InitialVersion=P.FUNCTIONS),
        "SubscriptionDefinitionVersionArn":
            gg.create_subscription_definition(InitialVersion=P.SUBSCRIPTIONS),
    }
    return {field: d["LatestVersionArn"] for field, d in made.items()}


def test_nothing_deployed_and_no_group_id_exits_2(server):
    p = upgrades(server)
    assert p.returncode == 2, p
    assert "no group is deployed; pass --group-id" in p.stderr, p.stderr


def test_old_connector_its_subscriptions_and_the_upgrade_made_with_boto3(server, gg):
    parts = tutorial_parts(gg)
    group = gg.create_group(Name="upgrades-tutorial", InitialVersion=parts)
    gid, vid = group["Id"], group["LatestVersion"]

    r = report(server, "--group-id", gid)
    assert (r["groupId"], r["groupVersion"]) == (gid, vid), r
    assert r["connectors"] == [{
        "id": "MyTwilioNotificationsConnector",
        "name": "TwilioNotifications",
        "arn": P.TWILIO_V4,
        "version": 4,
        "latest": 5,
        "upgradable": True,
        "latestRunnable": True,
        "subscriptions": ["TriggerNotification", "OutputStatus"],
        "newArn": P.TWILIO_V5,
    }], r

    p = upgrades(server, "--group-id", gid)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == f"group {gid} (upgrades-tutorial) version {vid}, the latest", p.stdout
    assert lines[1:] == [
        "TwilioNotifications (Id MyTwilioNotificationsConnector): version 4 -> 5 available "
        "(this core runs it: yes)",
        f"  subscriptions to re-create with {P.TWILIO_V5}: TriggerNotification, OutputStatus",
    ], p.stdout

    # Do what it says with boto3: the connector and those subscriptions on the new ARN. The
    # API takes the new group version (it checks that subscriptions name the group's
    # connectors exactly), and the report then has nothing to upgrade.
    connectors = copy.deepcopy(P.CONNECTORS)
    connectors["Connectors"][0]["ConnectorArn"] = r["connectors"][0]["newArn"]
    subs = copy.deepcopy(P.SUBSCRIPTIONS)
    for s in subs["Subscriptions"]:
        if s["Id"] in r["connectors"][0]["subscriptions"]:
            for end in ("Source", "Target"):
                if s[end] == P.TWILIO_V4:
                    s[end] = P.TWILIO_V5
    assert P.TWILIO_V4 not in json.dumps(subs)
    parts["ConnectorDefinitionVersionArn"] = gg.create_connector_definition(
        InitialVersion=connectors)["LatestVersionArn"]
    parts["SubscriptionDefinitionVersionArn"] = gg.create_subscription_definition(
        InitialVersion=subs)["LatestVersionArn"]
    v2 = gg.create_group_version(GroupId=gid, **parts)["Version"]

    r = report(server, "--group-id", gid)
    assert r["groupVersion"] == v2, r
    c = r["connectors"][0]
    assert (c["version"], c["latest"], c["upgradable"], c["subscriptions"], c["newArn"]) == (
        5, 5, False, [], None), r
    p = upgrades(server, "--group-id", gid)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[1:] == [
        "TwilioNotifications (Id MyTwilioNotificationsConnector): version 5, the latest"], p.stdout


def test_a_group_without_connectors(server, gg):
    core = gg.create_core_definition(InitialVersion=P.CORES)
    gid = gg.create_group(Name="no-connectors", InitialVersion={
        "CoreDefinitionVersionArn": core["LatestVersionArn"]})["Id"]
    assert report(server, "--group-id", gid)["connectors"] == []
    p = upgrades(server, "--group-id", gid)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[1:] == ["the group has no connectors"], p.stdout


def test_an_unknown_group_exits_2_with_the_apis_message(server):
    p = upgrades(server, "--group-id", "00000000-0000-0000-0000-000000000000", "--json")
    assert p.returncode == 2, p
    assert p.stdout == "", p.stdout
    assert "IdNotFoundException" in p.stderr, p.stderr
    assert "That Group Definition does not exist." in p.stderr, p.stderr


def test_an_unreachable_api_exits_2(server):
    argv = [str(coupler_bin()), "connectors", "upgrades", "--group-id", "g",
            "--endpoint", "http://127.0.0.1:9", "--data-dir", str(server.data_dir)]
    p = subprocess.run(argv, env=server.env, capture_output=True, text=True,
                       timeout=RUN_TIMEOUT_S, stdin=subprocess.DEVNULL)
    assert p.returncode == 2, p
    assert p.stderr.startswith("error: "), p.stderr


def test_without_group_id_it_checks_the_version_the_core_runs(own_server):
    gg = own_server.client()
    # A group this core runs (a core and a device), deployed.
    core = gg.create_core_definition(InitialVersion=P.CORES)
    devices = gg.create_device_definition(InitialVersion=P.DEVICES)
    group = gg.create_group(Name="runs-here", InitialVersion={
        "CoreDefinitionVersionArn": core["LatestVersionArn"],
        "DeviceDefinitionVersionArn": devices["LatestVersionArn"]})
    gid, deployed = group["Id"], group["LatestVersion"]
    dep = gg.create_deployment(GroupId=gid, DeploymentType="NewDeployment",
                               GroupVersionId=deployed)
    status = wait_deployment(gg, gid, dep["DeploymentId"])
    assert status["DeploymentStatus"] == "Success", status

    # A newer version of it with Twilio v4, not deployed.
    latest = gg.create_group_version(GroupId=gid, **tutorial_parts(gg))["Version"]

    r = report(own_server)
    assert r == {"groupId": gid, "groupVersion": deployed, "connectors": []}, r
    p = upgrades(own_server)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        f"group {gid} (runs-here) version {deployed}, deployed "
        f"(the group's latest version is {latest})",
        "the group has no connectors",
    ], p.stdout

    # --group-id: the group's latest version.
    r = report(own_server, "--group-id", gid)
    assert r["groupVersion"] == latest, r
    assert [c["subscriptions"] for c in r["connectors"]] == [
        ["TriggerNotification", "OutputStatus"]], r
