"""The Serial Stream connector on a real pseudo-terminal pair from socat, deployed with the AWS
CLI; paho-mqtt talks to it as a device, and Python reads and writes the other end of the line.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import select
import shutil
import subprocess
import time
import uuid

import pytest

import tempfile
from pathlib import Path

import signal

from ggtest import (MqttDevice, assert_connector_isolation, contained_pid, deploy_with_cli,
                    host_isolates, metric, start_server)

CONNECTOR = "arn:aws:greengrass:us-east-1::/connectors/SerialStream/versions/3"
ACCOUNT = "123456789012"
CERT = f"arn:aws:iot:us-east-1:{ACCOUNT}:cert/" + "ab" * 32


def thing(name: str) -> str:
    return f"arn:aws:iot:us-east-1:{ACCOUNT}:thing/{name}"


@pytest.fixture(scope="module")
def line():
    """Two linked ptys: the connector opens `port`, the test holds `peer`."""
    if shutil.which("socat") is None:
        pytest.fail("socat is not installed (scripts/install-test-deps.sh installs it)")
    tag = uuid.uuid4().hex[:8]
    port, peer = f"/dev/ttyCPL{tag}a", f"/dev/ttyCPL{tag}b"
    proc = subprocess.Popen(
        ["socat", f"pty,raw,echo=0,link={port}", f"pty,raw,echo=0,link={peer}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while not (os.path.exists(port) and os.path.exists(peer)):
        assert time.monotonic() < deadline, "socat made no ptys"
        time.sleep(0.02)
    fd = os.open(peer, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    yield port, fd
    os.close(fd)
    proc.terminate()
    proc.wait(timeout=5)


def drain(fd: int) -> None:
    while select.select([fd], [], [], 0)[0]:
        try:
            if not os.read(fd, 4096):
                return
        except BlockingIOError:
            return


def read_peer(fd: int, n: int, timeout: float = 5.0) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < n and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.05)[0]:
            try:
                data += os.read(fd, n - len(data))
            except BlockingIOError:
                pass
    return data


def group_parts(port: str, polling: bool = False) -> dict:
    params = {"BaudRate": "115200", "Timeout": "1", "SerialPort": port,
              "SerialPort-ResourceId": "serial-port", "PollingRead": "false"}
    if polling:
        params.update(PollingRead="true", PollingReadLength="5", PollingReadInterval="1",
                      PollingReadType="ascii")
    suffix = port.lstrip("/")
    return {
        "core": {"Cores": [{"Id": "core", "ThingArn": thing("core"), "CertificateArn": CERT}]},
        "devices": {"Devices": [{"Id": "tester", "ThingArn": thing("tester"),
                                 "CertificateArn": CERT}]},
        "resources": {"Resources": [{"Id": "serial-port", "Name": "serial", "ResourceDataContainer": {
            "LocalDeviceResourceData": {"SourcePath": port,
                                        "GroupOwnerSetting": {"AutoAddGroupOwner": True}}}}]},
        "connectors": {"Connectors": [{"Id": "serial", "ConnectorArn": CONNECTOR,
                                       "Parameters": params}]},
        "subscriptions": {"Subscriptions": [
            {"Id": "read", "Source": thing("tester"), "Subject": f"serial/core/read/{suffix}",
             "Target": CONNECTOR},
            {"Id": "write", "Source": thing("tester"), "Subject": f"serial/core/write/{suffix}",
             "Target": CONNECTOR},
            {"Id": "answers", "Source": CONNECTOR, "Subject": "serial/core/#",
             "Target": thing("tester")},
        ]},
    }


@pytest.fixture(scope="module")
def core(tmp_path_factory, line):
    port, _ = line
    server = start_server(tmp_path_factory.mktemp("serial"), "--allow-uncontained")
    group_id, status = deploy_with_cli(server, group_parts(port))
    assert status["DeploymentStatus"] == "Success", status
    # Serial Stream is container-only: where the host can isolate, it runs contained.
    # Only its own device: not the other end of the line, not the host's other devices.
    assert_connector_isolation(server, "serial", "SerialStream", granted=(port,),
                               hidden=(port[:-1] + "b", "/dev/sda", "/dev/mem"))
    dev = MqttDevice(server.mqtt_plain_port, "tester", "serial/core/#")
    suffix = port.lstrip("/")
    topics = {k: f"serial/core/{k}/{suffix}" for k in ("read", "write", "status", "read_response")}
    yield server, group_id, dev, topics
    dev.close()
    server.stop()


def test_write_ascii_and_hex(core, line):
    _, fd = line
    _, _, dev, t = core
    drain(fd)
    dev.request(t["write"], {"data": "hello serial", "type": "ascii", "id": "w1"})
    assert dev.next() == (t["status"], {"response": {"status": "success"}, "id": "w1"})
    assert read_peer(fd, 12) == b"hello serial"
    raw = bytes([0, 1, 0x7F, 0x80, 0xFF])
    dev.request(t["write"], {"data": base64.b64encode(raw).decode(), "type": "HEX", "id": "w2"})
    assert dev.next() == (t["status"], {"response": {"status": "success"}, "id": "w2"})
    assert read_peer(fd, 5) == raw
    # Without an id the status has none.
    dev.request(t["write"], {"data": "x", "type": "ascii"})
    assert dev.next() == (t["status"], {"response": {"status": "success"}})
    assert read_peer(fd, 1) == b"x"


def test_read_on_demand(core, line):
    _, fd = line
    _, _, dev, t = core
    os.write(fd, b"from the line")
    dev.request(t["read"], {"readLength": "13", "type": "ascii", "id": "r1"})
    assert dev.next() == (t["read_response"], {"data": "from the line", "id": "r1"})
    os.write(fd, bytes([0, 255, 16]))
    dev.request(t["read"], {"readLength": "3", "type": "hex", "id": "r2"})
    assert dev.next() == (t["read_response"], {"data": base64.b64encode(bytes([0, 255, 16])).decode(),
                                               "id": "r2"})


def test_read_times_out_with_a_fail_status(core):
    _, _, dev, t = core
    started = time.monotonic()
    dev.request(t["read"], {"readLength": "4", "type": "ascii", "id": "quiet"})
    topic, body = dev.next(timeout=5)
    assert topic == t["status"] and body["id"] == "quiet"
    assert body["response"]["status"] == "fail"
    assert "Could not read from port" in body["response"]["error_message"]
    assert 0.8 < time.monotonic() - started < 4  # the Timeout parameter is 1 s


@pytest.mark.parametrize("topic,payload,expect_id,words", [
    ("write", "not json", None, "not JSON"),
    ("write", json.dumps([1, 2]), None, "JSON object"),
    ("write", json.dumps({"data": "x", "id": "w"}), "w", "type"),
    ("write", json.dumps({"type": "ascii", "id": "w"}), "w", "data"),
    ("write", json.dumps({"data": "***", "type": "hex", "id": "w"}), "w", "Base64"),
    ("write", json.dumps({"data": "x", "type": "binary", "id": "w"}), "w", "type"),
    ("write", json.dumps({"data": "x", "type": "ascii", "id": 7}), None, "id"),
    ("read", json.dumps({"type": "ascii", "id": "r"}), "r", "readLength"),
    ("read", json.dumps({"readLength": "0", "type": "ascii", "id": "r"}), "r", "readLength"),
    ("read", json.dumps({"readLength": "63995", "type": "ascii", "id": "r"}), "r", "readLength"),
    ("read", json.dumps({"readLength": "abc", "type": "ascii", "id": "r"}), "r", "readLength"),
])
def test_bad_payloads_get_a_fail_status(core, line, topic, payload, expect_id, words):
    _, fd = line
    _, _, dev, t = core
    drain(fd)
    dev.request(t[topic], payload)
    got_topic, body = dev.next()
    assert got_topic == t["status"], body
    assert body["response"]["status"] == "fail", body
    assert words in body["response"]["error_message"], body
    assert body.get("id") == expect_id, body
    dev.nothing(0.3)
    assert read_peer(fd, 1, timeout=0.2) == b""  # nothing reached the line


def test_a_write_over_the_limit_is_refused(core, line):
    _, fd = line
    _, _, dev, t = core
    # In ASCII, since the Base64 of that much would pass the 128 KiB MQTT payload bound.
    dev.request(t["write"], {"data": "a" * 128_001, "type": "ascii", "id": "big"})
    _, body = dev.next()
    assert body["response"]["status"] == "fail" and body["id"] == "big"
    assert "128000" in body["response"]["error_message"]
    assert read_peer(fd, 1, timeout=0.2) == b""


def test_the_connector_keeps_serving_after_bad_input(core, line):
    _, fd = line
    server, _, dev, t = core
    for _ in range(20):
        dev.request(t["write"], b"\xff\xfe garbage")
    for _ in range(20):
        assert dev.next()[1]["response"]["status"] == "fail"
    dev.request(t["write"], {"data": "still here", "type": "ascii", "id": "ok"})
    assert dev.next() == (t["status"], {"response": {"status": "success"}, "id": "ok"})
    assert read_peer(fd, 10) == b"still here"
    log = server.data_dir / "ggc/var/log/user/us-east-1/aws/SerialStream.log"
    assert "request refused" in log.read_text()
    assert metric(server, 'coupler_connector_rejected_total{connector="serial"') >= 20


def test_a_killed_container_is_started_again_and_loses_nothing(core, line):
    """The contained process is killed (as the OOM killer would): the supervisor counts a
    crash and starts a new container; requests sent meanwhile wait in the core and are served."""
    if not host_isolates():
        pytest.skip("contained only where the host can isolate (root)")
    _, fd = line
    server, _, dev, t = core
    restarts = metric(server, 'coupler_connector_restarts_total{connector="serial"')
    old = contained_pid(server, "SerialStream")
    drain(fd)
    os.kill(old, signal.SIGKILL)
    for i in range(3):
        dev.request(t["write"], {"data": f"w{i}", "type": "ascii", "id": f"w{i}"})
    for i in range(3):
        assert dev.next(timeout=15) == (t["status"], {"response": {"status": "success"},
                                                      "id": f"w{i}"})
    assert read_peer(fd, 6) == b"w0w1w2"
    new = contained_pid(server, "SerialStream", after=old)
    assert new != old
    log = (server.data_dir / "ggc/var/log/user/us-east-1/aws/SerialStream.log").read_text()
    assert "crashed: the contained process ended" in log, log[-2000:]
    assert metric(server, 'coupler_connector_restarts_total{connector="serial"') == restarts + 1


def test_a_contained_connector_runs_as_the_groups_default_identity(tmp_path):
    """Greengrass runs connectors as the group's default RunAs. The port belongs to root and
    a group the identity is not in; its GroupOwnerSetting (AutoAddGroupOwner) adds that group
    inside the container, and nothing else of the core's identity comes along."""
    if not host_isolates():
        pytest.skip("contained only where the host can isolate (root)")
    tag = uuid.uuid4().hex[:8]
    port, peer = f"/dev/ttyCPL{tag}a", f"/dev/ttyCPL{tag}b"
    proc = subprocess.Popen(
        ["socat", f"pty,raw,echo=0,link={port},user=0,group=2345,mode=660",
         f"pty,raw,echo=0,link={peer}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = dev = None
    try:
        deadline = time.monotonic() + 5
        while not (os.path.exists(port) and os.path.exists(peer)):
            assert time.monotonic() < deadline, "socat made no ptys"
            time.sleep(0.02)
        fd = os.open(peer, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        parts = group_parts(port)
        parts["functions"] = {"DefaultConfig": {"Execution": {
            "IsolationMode": "GreengrassContainer", "RunAs": {"Uid": 1000, "Gid": 1000}}},
            "Functions": []}
        server = start_server(tmp_path / "runas")
        _, status = deploy_with_cli(server, parts, name="serial-runas")
        assert status["DeploymentStatus"] == "Success", status
        unit = assert_connector_isolation(server, "serial", "SerialStream", granted=(port,))
        fields = dict(line.split(":", 1) for line in
                      Path(f"/proc/{unit}/status").read_text().splitlines())
        assert fields["Uid"].split() == ["1000"] * 4, fields["Uid"]
        assert fields["Gid"].split() == ["1000"] * 4, fields["Gid"]
        assert fields["Groups"].split() == ["2345"], fields["Groups"]
        dev = MqttDevice(server.mqtt_plain_port, "tester", "serial/core/#")
        write = f"serial/core/write/{port.lstrip('/')}"
        dev.request(write, {"data": "as 1000", "type": "ascii", "id": "u"})
        assert dev.next(timeout=10)[1] == {"response": {"status": "success"}, "id": "u"}
        assert read_peer(fd, 7) == b"as 1000"
        os.close(fd)
    finally:
        if dev is not None:
            dev.close()
        if server is not None:
            server.stop()
        proc.terminate()
        proc.wait(timeout=5)


def test_container_mode_is_refused_without_the_operators_opt_in(tmp_path, line):
    """Where the host cannot isolate (here: a core that is not root), the container-only
    connector is refused, never run uncontained quietly."""
    port, _ = line
    if host_isolates():
        base = Path(tempfile.mkdtemp(prefix="coupler-nobody-", dir="/tmp"))
        base.chmod(0o777)
        server = start_server(base, wrapper=["setpriv", "--reuid", "65534", "--regid", "65534",
                                             "--clear-groups"])
    else:
        server = start_server(tmp_path / "strict")
    try:
        _, status = deploy_with_cli(server, group_parts(port))
        assert status["DeploymentStatus"] == "Failure", status
        assert "GreengrassContainer" in status["ErrorMessage"]
        assert "--allow-uncontained" in status["ErrorMessage"]
        assert status["ErrorDetails"][0]["DetailedErrorCode"] == "IsolationUnavailable"
    finally:
        server.stop()


def test_a_missing_port_fails_the_deployment_by_name(core):
    server, group_id, _, _ = core
    _, status = deploy_with_cli(server, group_parts("/dev/ttyCPLmissing"), group_id)
    assert status["DeploymentStatus"] == "Failure", status
    assert "connector serial" in status["ErrorMessage"]
    assert "/dev/ttyCPLmissing" in status["ErrorMessage"]


def test_polling_reads_the_line_by_itself(core, line):
    """Last: it redeploys the group with PollingRead on."""
    port, fd = line
    server, group_id, dev, t = core
    _, status = deploy_with_cli(server, group_parts(port, polling=True), group_id)
    assert status["DeploymentStatus"] == "Success", status
    time.sleep(0.5)  # the old instance stops and the new one opens the port
    drain(fd)
    os.write(fd, b"12345")
    topic, body = dev.next(timeout=5)
    assert (topic, body) == (t["read_response"], {"data": "12345"})


def test_a_broken_line_is_reopened_by_the_supervisor(tmp_path):
    """The pty pair disappears under the running connector: its next request fails, the
    connector crashes and is restarted with backoff, and once the line is back it serves
    again, without a new deployment."""
    tag = uuid.uuid4().hex[:8]
    port, peer = f"/dev/ttyCPL{tag}a", f"/dev/ttyCPL{tag}b"

    def socat():
        p = subprocess.Popen(["socat", f"pty,raw,echo=0,link={port}", f"pty,raw,echo=0,link={peer}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while not (os.path.exists(port) and os.path.exists(peer)):
            assert time.monotonic() < deadline, "socat made no ptys"
            time.sleep(0.02)
        return p, os.open(peer, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)

    proc, fd = socat()
    server = start_server(tmp_path / "broken", "--allow-uncontained")
    dev = None
    try:
        _, status = deploy_with_cli(server, group_parts(port), name="broken-line")
        assert status["DeploymentStatus"] == "Success", status
        dev = MqttDevice(server.mqtt_plain_port, "tester", "serial/core/#")
        write = f"serial/core/write/{port.lstrip('/')}"
        dev.request(write, {"data": "one", "type": "ascii", "id": "1"})
        assert dev.next()[1] == {"response": {"status": "success"}, "id": "1"}
        assert read_peer(fd, 3) == b"one"
        # The line goes away.
        os.close(fd)
        proc.terminate()
        proc.wait(timeout=5)
        time.sleep(0.3)
        dev.request(write, {"data": "two", "type": "ascii", "id": "2"})
        _, body = dev.next()
        assert body["response"]["status"] == "fail" and body["id"] == "2", body
        # It comes back at the same path; the restarted connector opens it.
        proc, fd = socat()
        deadline = time.monotonic() + 20
        while True:
            dev.request(write, {"data": "three", "type": "ascii", "id": "3"})
            try:
                _, body = dev.next(timeout=2)
            except queue.Empty:
                body = None  # not running at this moment: the supervisor is backing off
            if body == {"response": {"status": "success"}, "id": "3"}:
                break
            assert time.monotonic() < deadline, f"the connector did not come back: {body}"
            time.sleep(0.5)
        assert read_peer(fd, 5).endswith(b"three")
        log = (server.data_dir / "ggc/var/log/user/us-east-1/aws/SerialStream.log").read_text()
        if host_isolates():
            # Contained, the old node stays bound in its container: the core sees the new
            # node on the host and starts the container again with it (not a crash).
            assert "is another device node now; the container starts again" in log, log
        else:
            assert "restarting in" in log, log
            assert metric(server, 'coupler_connector_restarts_total{connector="serial"') >= 1
    finally:
        if dev is not None:
            dev.close()
        server.stop()
        os.close(fd)
        proc.terminate()
        proc.wait(timeout=5)
