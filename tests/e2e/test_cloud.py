"""The cloud bridge against mosquitto playing the cloud: device -> core -> cloud and
cloud -> core -> device and function flows through deployed subscriptions; a FileSystem spool
that survives `kill -9` while the cloud is unreachable; a Memory spool that drops the oldest
when full and loses its messages on a kill, as documented; TLS with client certificates, and
a broken TLS setup reported by `coupler status`."""

from __future__ import annotations

import json
import queue
import subprocess
import time

import pytest

from cloud_peer import CloudClient, Mosquitto, Proxy, make_tls
from ggtest import MqttDevice, coupler_bin, deploy_with_cli, health, start_server
from test_functions import create_function, fn, thing

CERT = "arn:aws:iot:us-east-1:{account}:cert/" + "cd" * 32
SPOOLER = "arn:aws:lambda:::function:GGCloudSpooler:1"

ECHO = '''
import json
import greengrasssdk

iot = greengrasssdk.client("iot-data")

def handler(event, context):
    topic = context.client_context.custom["subject"]
    iot.publish(topic="fn/out", payload=json.dumps({"heard": event, "on": topic}))
'''


def spooler(**variables: str) -> dict:
    return {"Id": "spooler", "FunctionArn": SPOOLER,
            "FunctionConfiguration": {"Executable": "spooler", "Pinned": True,
                                      "MemorySize": 32768, "Timeout": 3,
                                      "Environment": {"Variables": variables}}}


def deploy(server, account: str, subs: list[tuple[str, str, str]], functions: list[dict],
           group_id: str | None = None, devices: dict[str, bool] | None = None) -> str:
    """A group with core thing `core`, the `devices` (name: SyncShadow; default `sensor`) and
    the subscriptions (source, subject, target), where device names, `cloud` and
    `GGShadowService` name those entities."""
    devices = devices or {"sensor": False}

    def entity(name: str) -> str:
        return thing(account, name) if name in devices else name
    cert = CERT.format(account=account)
    parts = {
        "core": {"Cores": [{"Id": "core", "ThingArn": thing(account, "core"),
                            "CertificateArn": cert}]},
        "devices": {"Devices": [{"Id": n, "ThingArn": thing(account, n), "CertificateArn": cert,
                                 "SyncShadow": sync} for n, sync in devices.items()]},
        "subscriptions": {"Subscriptions": [
            {"Id": f"s{i}", "Source": entity(s), "Subject": subj, "Target": entity(t)}
            for i, (s, subj, t) in enumerate(subs)]},
    }
    if functions:
        parts["functions"] = {"DefaultConfig": {"Execution": {"IsolationMode": "NoContainer"}},
                              "Functions": functions}
    gid, status = deploy_with_cli(server, parts, group_id=group_id, name="cloud")
    assert status["DeploymentStatus"] == "Success", status
    return gid


def _account(server) -> str:
    gg = server.client()
    arn = gg.create_group(Name="probe")["Arn"]
    gg.delete_group(GroupId=arn.rsplit("/", 1)[1])
    return arn.split(":")[4]


def wait_cloud(server, pred, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        c = health(server)["cloud"]
        if pred(c) or time.monotonic() > deadline:
            return c
        time.sleep(0.1)


def status_text(server) -> str:
    p = subprocess.run([str(coupler_bin()), "status", "--endpoint", server.url],
                       capture_output=True, text=True, timeout=30)
    return p.stdout + p.stderr


@pytest.fixture
def cloud(tmp_path):
    broker = Mosquitto(tmp_path)
    yield broker
    broker.stop()


def test_flows_both_ways_through_subscriptions(tmp_path, cloud):
    server = start_server(tmp_path, "--cloud", f"mqtt://127.0.0.1:{cloud.port}")
    app = CloudClient(cloud.port, ["telemetry/#", "fn/out"])
    sensor = None
    try:
        account = _account(server)
        arn = create_function(server, tmp_path, "Echo", ECHO)
        deploy(server, account, [("sensor", "telemetry/#", "cloud"),
                                 ("cloud", "commands/+", "sensor"),
                                 ("cloud", "fn/in", arn), (arn, "fn/out", "cloud")],
               [fn(arn, pinned=False)])
        c = wait_cloud(server, lambda c: c["state"] == "connected")
        assert c["state"] == "connected" and c["client_id"] == "core", c
        assert c["subscriptions"] == 2, c
        assert "cloud: connected (mqtt://127.0.0.1" in status_text(server)
        sensor = MqttDevice(server.mqtt_plain_port, "sensor", "commands/#")

        # device -> core -> cloud, in order.
        for i in range(20):
            sensor.request(f"telemetry/t{i % 2}", {"n": i})
        got = app.collect(20)
        assert [json.loads(p)["n"] for _, p in got] == list(range(20)), got
        assert {t for t, _ in got} == {"telemetry/t0", "telemetry/t1"}

        # cloud -> core -> device; a topic outside the Subject goes nowhere.
        app.publish("commands/reboot", json.dumps({"go": 1}))
        app.publish("commands/a/b", json.dumps({"go": 2}))
        assert sensor.next(timeout=10) == ("commands/reboot", {"go": 1})
        sensor.nothing(0.5)

        # cloud -> function -> cloud.
        app.publish("fn/in", json.dumps({"x": 1}))
        topic, payload = app.next(timeout=20)
        assert topic == "fn/out" and json.loads(payload) == {"heard": {"x": 1}, "on": "fn/in"}

        c = wait_cloud(server, lambda c: c["acked"] >= 21)
        assert c["acked"] >= 21 and c["spool"]["messages"] == 0, c
        assert c["spool"]["storage"] == "Memory", c
    finally:
        if sensor:
            sensor.close()
        app.close()
        server.stop()


def test_file_system_spool_survives_kill_9_while_the_cloud_is_down(tmp_path, cloud):
    """Upstream unreachable; N messages spooled; kill -9; restart (still unreachable: the
    spool recovered them all); the cloud comes back: all N arrive, in order, duplicates
    counted."""
    proxy = Proxy(cloud.port)
    proxy.cut()
    server = start_server(tmp_path, "--cloud", f"mqtt://127.0.0.1:{proxy.port}")
    sensor = None
    n = 300
    try:
        account = _account(server)
        deploy(server, account, [("sensor", "telemetry/#", "cloud"),
                                 ("cloud", "commands/#", "sensor")],
               [spooler(GG_CONFIG_STORAGE_TYPE="FileSystem",
                        GG_CONFIG_MAX_SIZE_BYTES="1048576")])
        sensor = MqttDevice(server.mqtt_plain_port, "sensor", "commands/#")
        for i in range(n):
            sensor.request(f"telemetry/t{i % 3}", {"n": i})
        c = wait_cloud(server, lambda c: (c.get("spool") or {}).get("messages") == n)
        assert c["spool"]["messages"] == n and c["spool"]["storage"] == "FileSystem", c
        assert c["state"] in ("connecting", "disconnected") and c.get("last_error"), c
        sensor.close()
        sensor = None

        server.kill()  # SIGKILL
        server.start()
        c = wait_cloud(server, lambda c: (c.get("spool") or {}).get("messages") == n)
        assert c["spool"]["messages"] == n, c
        assert c["spool"]["dropped"] == 0 and c["spool"]["damaged"] == 0, c

        app = CloudClient(cloud.port, ["telemetry/#"])
        proxy.restore()
        got = app.collect(n, timeout=60)
        app.close()
        numbers = [json.loads(p)["n"] for _, p in got]
        distinct = sorted(set(numbers))
        duplicates = len(numbers) - len(distinct)
        print(f"kill -9 test: {len(numbers)} received, {duplicates} duplicates")
        assert distinct == list(range(n)), f"missing: {set(range(n)) - set(distinct)}"
        for t in range(3):  # order per topic (a resend may repeat a run, never reorder)
            per = [json.loads(p)["n"] for topic, p in got if topic == f"telemetry/t{t}"]
            firsts = [x for i, x in enumerate(per) if x not in per[:i]]
            assert firsts == sorted(firsts), per
        c = wait_cloud(server, lambda c: c["spool"]["messages"] == 0)
        assert c["spool"]["messages"] == 0 and c["state"] == "connected", c
    finally:
        if sensor:
            sensor.close()
        proxy.close()
        server.stop()


def test_memory_spool_drops_oldest_when_full_and_loses_all_on_kill(tmp_path, cloud):
    proxy = Proxy(cloud.port)
    proxy.cut()
    server = start_server(tmp_path, "--cloud", f"mqtt://127.0.0.1:{proxy.port}")
    sensor = None
    try:
        account = _account(server)
        deploy(server, account, [("sensor", "telemetry/#", "cloud"),
                                 ("cloud", "commands/#", "sensor")],
               [spooler(GG_CONFIG_STORAGE_TYPE="Memory", GG_CONFIG_MAX_SIZE_BYTES="262144")])
        sensor = MqttDevice(server.mqtt_plain_port, "sensor", "commands/#")
        body = "x" * 8000
        for i in range(60):  # ~480 KB into a 256 KiB spool
            sensor.request("telemetry/big", {"n": i, "pad": body})
        c = wait_cloud(server, lambda c: c["spool"]["messages"] + c["spool"]["dropped"] >= 60)
        kept, dropped = c["spool"]["messages"], c["spool"]["dropped"]
        assert kept + dropped == 60 and dropped > 0 and c["spool"]["bytes"] <= 262144, c
        assert "dropped the oldest" in server.log_path.read_text()

        app = CloudClient(cloud.port, ["telemetry/#"])
        proxy.restore()
        got = app.collect(kept, timeout=30)
        assert [json.loads(p)["n"] for _, p in got] == list(range(dropped, 60))

        # Memory storage: a kill loses what waits, as in Greengrass.
        proxy.cut()
        time.sleep(0.5)
        for i in range(5):
            sensor.request("telemetry/big", {"n": 100 + i, "pad": ""})
        wait_cloud(server, lambda c: c["spool"]["messages"] == 5)
        sensor.close()
        sensor = None
        server.kill()
        server.start()
        c = wait_cloud(server, lambda c: c.get("spool") is not None)
        assert c["spool"]["messages"] == 0, c
        app.close()
    finally:
        if sensor:
            sensor.close()
        proxy.close()
        server.stop()


@pytest.fixture
def tls_cloud(tmp_path):
    """Mosquitto with TLS only and client certificates required, and its certificates."""
    tls = make_tls(tmp_path / "tls")
    broker = Mosquitto(tmp_path, tls_dir=tls)
    yield broker, tls
    broker.stop()


def test_tls_with_client_certificates_and_a_broken_tls_setup(tmp_path, tls_cloud):
    broker, tls = tls_cloud
    # The settings from a config file, as a service would keep them.
    config = tmp_path / "coupler.yaml"
    config.write_text(f"cloud: mqtts://localhost:{broker.port}\ncloud-ca: {tls / 'ca.pem'}\n"
                      f"cloud-cert: {tls / 'core.pem'}\ncloud-key: {tls / 'core.key'}\n"
                      "cloud-keepalive: 20\n")
    server = start_server(tmp_path / "good", "--config", str(config))
    app = CloudClient(broker.port, ["telemetry/#"], tls_dir=tls)
    sensor = None
    try:
        account = _account(server)
        deploy(server, account, [("sensor", "telemetry/#", "cloud"),
                                 ("cloud", "commands/#", "sensor")], [])
        c = wait_cloud(server, lambda c: c["state"] == "connected")
        assert c["state"] == "connected" and c["url"].startswith("mqtts://localhost:"), c
        sensor = MqttDevice(server.mqtt_plain_port, "sensor", "commands/#")
        sensor.request("telemetry/x", {"tls": True})
        assert app.next() == ("telemetry/x", b'{"tls": true}')
        app.publish("commands/y", '{"back": 1}')
        assert sensor.next() == ("commands/y", {"back": 1})
    finally:
        if sensor:
            sensor.close()
        server.stop()

    # The broker's certificate does not chain to the CA given: a clear status, no crash.
    other = make_tls(tmp_path / "other")
    bad = start_server(tmp_path / "bad", "--cloud", f"mqtts://localhost:{broker.port}",
                       "--cloud-ca", str(other / "ca.pem"), "--cloud-cert",
                       str(other / "core.pem"), "--cloud-key", str(other / "core.key"))
    try:
        account = _account(bad)
        deploy(bad, account, [("sensor", "telemetry/#", "cloud")], [])
        c = wait_cloud(bad, lambda c: c.get("last_error") is not None)
        assert c["state"] != "connected" and "certificate" in c["last_error"].lower(), c
        text = status_text(bad)
        assert "last error:" in text and "certificate" in text.lower(), text
    finally:
        bad.stop()
        app.close()

    # Files that are not what the flags say stop `coupler up` with the flag named.
    p = subprocess.run([str(coupler_bin()), "up", "--data-dir", str(tmp_path / "x"),
                        "--api", "127.0.0.1:0", "--cloud", "mqtts://localhost:1",
                        "--cloud-ca", str(tls / "core.key")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "--cloud-ca" in p.stderr, p.stderr
    p = subprocess.run([str(coupler_bin()), "up", "--data-dir", str(tmp_path / "y"),
                        "--api", "127.0.0.1:0", "--cloud", "ftp://h"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "--cloud" in p.stderr, p.stderr


def test_synced_shadows_mirror_the_cloud(tmp_path, cloud):
    """`lamp` has SyncShadow, `sensor` not: lamp's accepted local changes go to the cloud's
    shadow topics (state only), the cloud's update/documents come back into the local shadow
    (a delta reaches the device) without an echo, and an older cloud version is ignored."""
    server = start_server(tmp_path, "--cloud", f"mqtt://127.0.0.1:{cloud.port}")
    app = CloudClient(cloud.port, ["$aws/things/+/shadow/update", "$aws/things/+/shadow/delete"])
    opened = []
    try:
        account = _account(server)
        shadow = "GGShadowService"
        subs = [("lamp", "$aws/things/lamp/shadow/update", shadow),
                ("lamp", "$aws/things/lamp/shadow/delete", shadow),
                (shadow, "$aws/things/lamp/shadow/update/delta", "lamp"),
                ("sensor", "$aws/things/sensor/shadow/update", shadow),
                (shadow, "$aws/things/sensor/shadow/update/accepted", "sensor")]
        deploy(server, account, subs, [], devices={"lamp": True, "sensor": False})
        c = wait_cloud(server, lambda c: c["state"] == "connected")
        assert c["state"] == "connected" and c["subscriptions"] == 1, c  # lamp's documents
        lamp = MqttDevice(server.mqtt_plain_port, "lamp", "$aws/things/lamp/shadow/update/delta")
        sensor = MqttDevice(server.mqtt_plain_port, "sensor",
                            "$aws/things/sensor/shadow/update/accepted")
        opened += [lamp, sensor]

        lamp.request("$aws/things/lamp/shadow/update",
                     {"state": {"reported": {"on": False}}, "clientToken": "t1"})
        topic, payload = app.next()
        assert topic == "$aws/things/lamp/shadow/update"
        assert json.loads(payload) == {"state": {"reported": {"on": False}}}

        sensor.request("$aws/things/sensor/shadow/update", {"state": {"reported": {"t": 1}}})
        assert sensor.next()[0] == "$aws/things/sensor/shadow/update/accepted"
        with pytest.raises(queue.Empty):  # not synced
            app.next(timeout=1)

        # The cloud's shadow changes: the local one follows, the device gets the delta, and
        # nothing is echoed back up.
        doc = {"previous": None, "timestamp": 1, "current": {
            "state": {"desired": {"on": True}, "reported": {"on": False}}, "version": 5}}
        app.publish("$aws/things/lamp/shadow/update/documents", json.dumps(doc))
        topic, delta = lamp.next(timeout=10)
        assert topic == "$aws/things/lamp/shadow/update/delta" and delta["state"] == {"on": True}
        with pytest.raises(queue.Empty):
            app.next(timeout=1)

        stale = {"previous": None, "timestamp": 2, "current": {
            "state": {"desired": {"on": "stale"}}, "version": 4}}
        app.publish("$aws/things/lamp/shadow/update/documents", json.dumps(stale))
        lamp.nothing(1.0)
        c = wait_cloud(server, lambda c: c["shadow_stale"] == 1)
        assert (c["shadow_up"], c["shadow_down"], c["shadow_stale"]) == (1, 1, 1), c

        lamp.request("$aws/things/lamp/shadow/delete", {})
        assert app.next() == ("$aws/things/lamp/shadow/delete", b"{}")
    finally:
        for d in opened:
            d.close()
        app.close()
        server.stop()


def test_at_least_once_persistent_keeps_cloud_messages_across_a_disconnect(tmp_path, cloud):
    """GG_CONFIG_SUBSCRIPTION_QUALITY=AtLeastOncePersistent: QoS 1 subscriptions on a
    persistent session, so what the cloud sends while the core is cut off arrives after."""
    proxy = Proxy(cloud.port)
    server = start_server(tmp_path, "--cloud", f"mqtt://127.0.0.1:{proxy.port}")
    app = CloudClient(cloud.port, [])
    sensor = None
    try:
        account = _account(server)
        deploy(server, account, [("cloud", "commands/#", "sensor")],
               [spooler(GG_CONFIG_SUBSCRIPTION_QUALITY="AtLeastOncePersistent")])
        wait_cloud(server, lambda c: c["state"] == "connected")
        sensor = MqttDevice(server.mqtt_plain_port, "sensor", "commands/#")
        app.publish("commands/first", '{"n": 0}')
        assert sensor.next(timeout=10) == ("commands/first", {"n": 0})

        proxy.cut()
        wait_cloud(server, lambda c: c["state"] != "connected")
        time.sleep(0.5)  # mosquitto notices the session is offline
        for i in range(1, 6):
            app.publish("commands/later", json.dumps({"n": i}))
        proxy.restore()
        # At least once: a message whose PUBACK the cut lost may come again (counted).
        got: list[int] = []
        deadline = time.monotonic() + 30
        while not {1, 2, 3, 4, 5} <= set(got) and time.monotonic() < deadline:
            got.append(sensor.next(timeout=30)[1]["n"])
        firsts = [n for i, n in enumerate(got) if n not in got[:i] and n != 0]
        assert firsts == [1, 2, 3, 4, 5], got
        print(f"persistent session: {len(got) - len(set(got))} duplicates in {got}")
    finally:
        if sensor:
            sensor.close()
        app.close()
        proxy.close()
        server.stop()
