"""The Device Defender connector, deployed with the AWS CLI: its metrics documents arrive at a
device along the group's subscriptions, and agree with what the test reads itself from /proc
and `ss`. The reporting interval is shortened with the test-only
COUPLER_TEST_DEFENDER_INTERVAL_MS; the parameter itself keeps its documented minimum (300 s).
"""

from __future__ import annotations

import shutil
import socket
import subprocess

import pytest

from ggtest import MqttDevice, assert_connector_isolation, deploy_with_cli, run_aws, start_server

CONNECTOR = "arn:aws:greengrass:us-east-1::/connectors/DeviceDefender/versions/3"
ACCOUNT = "123456789012"
CERT = f"arn:aws:iot:us-east-1:{ACCOUNT}:cert/" + "cd" * 32
TOPIC = "$aws/things/gateway/defender/metrics/json"


def thing(name: str) -> str:
    return f"arn:aws:iot:us-east-1:{ACCOUNT}:thing/{name}"


def parts(interval: str = "300") -> dict:
    return {
        "core": {"Cores": [{"Id": "core", "ThingArn": thing("gateway"), "CertificateArn": CERT}]},
        "devices": {"Devices": [{"Id": "watcher", "ThingArn": thing("watcher"),
                                 "CertificateArn": CERT}]},
        "resources": {"Resources": [{"Id": "proc", "Name": "proc", "ResourceDataContainer": {
            "LocalVolumeResourceData": {"SourcePath": "/proc", "DestinationPath": "/host_proc",
                                        "GroupOwnerSetting": {"AutoAddGroupOwner": True}}}}]},
        "connectors": {"Connectors": [{"Id": "defender", "ConnectorArn": CONNECTOR, "Parameters": {
            "SampleIntervalSeconds": interval, "ProcDestinationPath": "/host_proc",
            "ProcDestinationPath-ResourceId": "proc"}}]},
        "subscriptions": {"Subscriptions": [
            {"Id": "metrics", "Source": CONNECTOR, "Subject": "$aws/things/+/defender/metrics/json",
             "Target": thing("watcher")}]},
    }


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("defender"), "--allow-uncontained",
                          env={"COUPLER_TEST_DEFENDER_INTERVAL_MS": "300"})
    _, status = deploy_with_cli(server, parts(), name="defender")
    assert status["DeploymentStatus"] == "Success", status
    # Device Defender is container-only: where the host can isolate, it runs contained.
    assert_connector_isolation(server, "defender", "DeviceDefender")
    dev = MqttDevice(server.mqtt_plain_port, "watcher", TOPIC)
    yield server, dev
    dev.close()
    server.stop()


def listening(kind: str) -> set[int]:
    out = subprocess.run(["ss", "-H", f"-{kind}ln"], capture_output=True, text=True,
                         check=True).stdout
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines() if line.strip()}


def test_reports_arrive_with_increasing_ids(core):
    _, dev = core
    reports = [dev.next(timeout=5) for _ in range(3)]
    assert all(topic == TOPIC for topic, _ in reports)
    ids = [body["header"]["report_id"] for _, body in reports]
    assert ids == sorted(set(ids)), ids
    assert all(body["header"]["version"] == "1.0" for _, body in reports)
    m = reports[-1][1]["metrics"]
    assert set(m) == {"listening_tcp_ports", "listening_udp_ports", "network_stats",
                      "tcp_connections"}
    for key in ("listening_tcp_ports", "listening_udp_ports"):
        assert m[key]["total"] == len(m[key]["ports"])
    est = m["tcp_connections"]["established_connections"]
    assert est["total"] == len(est["connections"])


def test_metrics_agree_with_proc_and_ss(core):
    server, dev = core
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed")
    # A listener of the test's own, and the core's API and MQTT ports, must be reported.
    extra = socket.socket()
    extra.bind(("127.0.0.1", 0))
    extra.listen()
    mine = extra.getsockname()[1]
    try:
        while not dev.messages.empty():
            dev.messages.get_nowait()
        before = listening("t")
        _, body = dev.next(timeout=5)
        _, body = dev.next(timeout=5)  # one gathered after the listener surely existed
        after = listening("t")
    finally:
        extra.close()
    m = body["metrics"]
    reported = {p["port"] for p in m["listening_tcp_ports"]["ports"]}
    api_port = int(server.url.rsplit(":", 1)[1])
    assert {mine, api_port, server.mqtt_plain_port, server.mqtt_tls_port} <= reported
    assert before & after <= reported <= before | after
    assert {"interface": "lo", "port": mine} in m["listening_tcp_ports"]["ports"]
    # The watcher's own MQTT connection to the core is an established one.
    conns = m["tcp_connections"]["established_connections"]["connections"]
    assert any(c["remote_addr"].endswith(f":{server.mqtt_plain_port}") or
               c["local_port"] == server.mqtt_plain_port for c in conns), conns
    # Network counters: every interface but lo, from /proc/net/dev.
    rows = [line.split() for line in open("/proc/net/dev").read().splitlines()[2:]]
    rx = sum(int(r[1]) for r in rows if r[0].rstrip(":") != "lo")
    stats = m["network_stats"]
    assert 0 <= stats["bytes_in"] <= rx
    assert set(stats) == {"bytes_in", "bytes_out", "packets_in", "packets_out"}


def test_an_interval_under_the_minimum_is_refused_by_the_api(core):
    server, _ = core
    err = run_aws(server, "create-connector-definition", "--initial-version",
                  '{"Connectors": [{"Id": "d", "ConnectorArn": "%s", "Parameters": '
                  '{"SampleIntervalSeconds": "299", "ProcDestinationPath": "/host_proc", '
                  '"ProcDestinationPath-ResourceId": "proc"}}]}' % CONNECTOR, check=False)
    assert err.code == "BadRequestException", err
    assert "SampleIntervalSeconds" in err.message
