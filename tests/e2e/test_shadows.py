"""The local shadow service (GGShadowService): a paho device and a function written with the
unmodified greengrasssdk update, get and delete shadows through the group's subscriptions and
the SDK; documents persist across restarts and a reset removes them."""

from __future__ import annotations

import json
import time

import pytest

from ggtest import MqttDevice, deploy_with_cli, run_aws, start_server
from test_functions import create_function, fn, thing

CERT_SUFFIX = "cert/" + "ab" * 32
SHADOW = "GGShadowService"

SHADOW_USER = '''
import json
import greengrasssdk

iot = greengrasssdk.client("iot-data")

def handler(event, context):
    out = {"op": event["op"]}
    try:
        if event["op"] == "update":
            r = iot.update_thing_shadow(thingName=event["thing"], payload=json.dumps(event["doc"]))
        elif event["op"] == "get":
            r = iot.get_thing_shadow(thingName=event["thing"])
        else:
            r = iot.delete_thing_shadow(thingName=event["thing"])
        out["reply"] = json.loads(r["payload"])
    except Exception as e:
        out.update(exception=type(e).__name__, message=str(e))
    iot.publish(topic="fn/result", payload=json.dumps(out))
'''


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shadows")
    server = start_server(tmp)
    arn = create_function(server, tmp, "ShadowUser", SHADOW_USER)
    account = arn.split(":")[4]
    lamp, watcher = thing(account, "lamp"), thing(account, "watcher")
    cert = f"arn:aws:iot:us-east-1:{account}:{CERT_SUFFIX}"
    prefix = "$aws/things/lamp/shadow"
    subs = [(f"req-{op}", lamp, f"{prefix}/{op}", SHADOW) for op in ("update", "get", "delete")]
    subs += [(f"rep-{i}", SHADOW, f"{prefix}/{t}", lamp) for i, t in enumerate(
        ["update/accepted", "update/rejected", "update/delta", "update/documents",
         "get/accepted", "get/rejected", "delete/accepted", "delete/rejected"])]
    subs += [("watch-delta", SHADOW, f"{prefix}/update/delta", watcher),
             ("call", watcher, "fn/call", arn), ("result", arn, "fn/result", watcher)]
    parts = {
        "core": {"Cores": [{"Id": "core", "ThingArn": thing(account, "core"),
                            "CertificateArn": cert}]},
        "devices": {"Devices": [{"Id": n, "ThingArn": thing(account, n), "CertificateArn": cert}
                                for n in ("lamp", "watcher")]},
        "functions": {"DefaultConfig": {"Execution": {"IsolationMode": "NoContainer"}},
                      "Functions": [fn(arn, pinned=True, timeout=10)]},
        "subscriptions": {"Subscriptions": [
            {"Id": i, "Source": s, "Subject": t, "Target": d} for i, s, t, d in subs]},
    }
    group_id, status = deploy_with_cli(server, parts, name="shadows")
    assert status["DeploymentStatus"] == "Success", status
    lamp_dev = MqttDevice(server.mqtt_plain_port, "lamp", f"{prefix}/#")
    watch_dev = MqttDevice(server.mqtt_plain_port, "watcher", "#")
    # `#` does not match topics that start with `$` (MQTT 3.1.1 §4.7.2).
    watch_dev.c.subscribe(f"{prefix}/update/delta", qos=1)
    yield {"server": server, "lamp": lamp_dev, "watcher": watch_dev, "group": group_id,
           "prefix": prefix}
    lamp_dev.close()
    watch_dev.close()
    server.stop()


def wait_for(device: MqttDevice, topic: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        t, body = device.next(timeout=max(0.1, deadline - time.monotonic()))
        if t == topic:
            return body


def test_device_update_delta_and_get(core):
    lamp, p = core["lamp"], core["prefix"]
    lamp.request(f"{p}/update", {"state": {"desired": {"color": "red", "level": 3}},
                                 "clientToken": "t1"})
    accepted = wait_for(lamp, f"{p}/update/accepted")
    assert accepted["state"] == {"desired": {"color": "red", "level": 3}}
    assert accepted["version"] == 1 and accepted["clientToken"] == "t1"
    assert "timestamp" in accepted["metadata"]["desired"]["color"]
    delta = wait_for(lamp, f"{p}/update/delta")
    assert delta["state"] == {"color": "red", "level": 3} and delta["version"] == 1
    # Another target of the delta gets it too, by its own subscription.
    assert wait_for(core["watcher"], f"{p}/update/delta")["version"] == 1

    lamp.request(f"{p}/update", {"state": {"reported": {"color": "red", "level": 1}}})
    assert wait_for(lamp, f"{p}/update/accepted")["version"] == 2
    delta = wait_for(lamp, f"{p}/update/delta")
    assert delta["state"] == {"level": 3}

    lamp.request(f"{p}/get", "")
    doc = wait_for(lamp, f"{p}/get/accepted")
    assert doc["state"] == {"desired": {"color": "red", "level": 3},
                            "reported": {"color": "red", "level": 1}, "delta": {"level": 3}}
    assert doc["version"] == 2


def test_version_conflict_and_bad_documents(core):
    lamp, p = core["lamp"], core["prefix"]
    lamp.request(f"{p}/update", {"state": {"desired": {"x": 1}}, "version": 1})
    rejected = wait_for(lamp, f"{p}/update/rejected")
    assert (rejected["code"], rejected["message"]) == (409, "Version conflict")
    lamp.request(f"{p}/update", b"{not json")
    assert wait_for(lamp, f"{p}/update/rejected")["code"] == 400
    lamp.request(f"{p}/update", {"state": {"desired": {"blob": "x" * 9000}}})
    rejected = wait_for(lamp, f"{p}/update/rejected")
    assert rejected["code"] == 413, rejected


def test_function_uses_the_sdk(core):
    watcher, p = core["watcher"], core["prefix"]
    watcher.request("fn/call", {"op": "update", "thing": "lamp",
                                "doc": {"state": {"reported": {"level": 3}}}})
    out = wait_for(watcher, "fn/result")
    assert out["reply"]["state"] == {"reported": {"level": 3}}, out
    version = out["reply"]["version"]
    watcher.request("fn/call", {"op": "get", "thing": "lamp"})
    out = wait_for(watcher, "fn/result")
    assert out["reply"]["version"] == version and "delta" not in out["reply"]["state"], out
    watcher.request("fn/call", {"op": "get", "thing": "nobody"})
    out = wait_for(watcher, "fn/result")
    assert out["exception"] == "ShadowError" and "404" in out["message"], out


def test_shadows_persist_across_restart_and_reset_removes_them(core):
    server, p = core["server"], core["prefix"]
    lamp = core["lamp"]
    lamp.request(f"{p}/get", "")
    before = wait_for(lamp, f"{p}/get/accepted")
    lamp.close()
    server.restart()
    lamp = core["lamp"] = MqttDevice(server.mqtt_plain_port, "lamp", f"{p}/#")
    lamp.request(f"{p}/get", "")
    after = wait_for(lamp, f"{p}/get/accepted")
    assert (after["state"], after["version"]) == (before["state"], before["version"])

    run_aws(server, "reset-deployments", "--group-id", core["group"], "--force")
    deadline = time.monotonic() + 10
    shadows = server.data_dir / "ggc/var/state/shadows"
    while any(shadows.glob("*.json")):
        assert time.monotonic() < deadline, list(shadows.iterdir())
        time.sleep(0.1)
