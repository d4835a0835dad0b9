"""GreengrassContainer functions on Coupler: their own namespaces and read-only root, only the
volumes and devices their ResourceAccessPolicies grant (with the permission granted), RunAs,
a memory limit that kills and is reported as Unhandled, and a process limit that stops a
fork bomb. These need root (namespaces, mounts, cgroups), as the CI machine has."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

from ggtest import MqttDevice, deploy_with_cli, health, start_server
from test_functions import CALLER, create_function, fn, result, thing

CERT_SUFFIX = "cert/" + "ef" * 32
DEFAULT_PIDS_MAX = 256  # processes and threads of one contained unit (docs/isolation.md)

PROBE = '''
import errno
import os
import sys

def handler(event, context):
    op = event["op"]
    try:
        if op == "ident":
            return {"uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid(),
                    "root": sorted(os.listdir("/")), "hostname": os.uname().nodename,
                    "procs": len([p for p in os.listdir("/proc") if p.isdigit()])}
        if op == "read":
            with open(event["path"]) as f:
                return {"ok": f.read()}
        if op == "write":
            with open(event["path"], "w") as f:
                f.write("written from the container")
            return {"ok": True}
        if op == "device":
            fd = os.open(event["path"], os.O_WRONLY | os.O_NOCTTY)
            os.write(fd, b"hello device\\n")
            os.close(fd)
            return {"ok": True}
        if op == "alloc":
            block = bytearray(event["mb"] * 1024 * 1024)
            for i in range(0, len(block), 4096):
                block[i] = 1
            return {"ok": len(block)}
        if op == "fork":
            n = 0
            try:
                for _ in range(5000):
                    if os.fork() == 0:  # a small child: exec at once
                        os.execv("/bin/sleep", ["sleep", "3"])
                    n += 1
            except OSError as e:
                return {"forked": n, "errno": errno.errorcode.get(e.errno)}
            return {"forked": n}
    except OSError as e:
        return {"error": errno.errorcode.get(e.errno, str(e.errno)), "message": str(e)}
'''


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("container mode needs root (namespaces, mounts, cgroups), as CI has")
    tmp = tmp_path_factory.mktemp("isolation")
    ro, rw = tmp / "ro-volume", tmp / "rw-volume"
    ro.mkdir()
    rw.mkdir()
    (ro / "config.txt").write_text("read me")
    os.chown(rw, 1000, 1000)  # the function's RunAs identity owns what it may write
    (tmp / "host-secret.txt").write_text("not for containers")
    master, slave = os.openpty()
    pty = os.ttyname(slave)
    os.chown(pty, 0, 5)  # group tty, which AutoAddGroupOwner gives the function
    os.chmod(pty, 0o660)
    server = start_server(tmp)
    probe = create_function(server, tmp, "Probe", PROBE)
    forker = create_function(server, tmp, "Forker", PROBE)
    caller = create_function(server, tmp, "Caller", CALLER)
    account = probe.split(":")[4]
    dev = thing(account, "tester")
    cert = f"arn:aws:iot:us-east-1:{account}:{CERT_SUFFIX}"
    boxed = fn(probe, pinned=False, timeout=20, resources=["ro", "rw", "tty"])
    boxed["FunctionConfiguration"]["MemorySize"] = 32768
    boxed["FunctionConfiguration"]["Environment"]["ResourceAccessPolicies"] = [
        {"ResourceId": "ro", "Permission": "ro"}, {"ResourceId": "rw", "Permission": "rw"},
        {"ResourceId": "tty", "Permission": "rw"}]
    boxed["FunctionConfiguration"]["Environment"]["Execution"] = {
        "IsolationMode": "GreengrassContainer", "RunAs": {"Uid": 1000, "Gid": 1000}}
    # Room for many processes, so that the process limit is what stops a fork bomb.
    forks = fn(forker, pinned=False, timeout=20)
    forks["FunctionConfiguration"]["MemorySize"] = 262144
    forks["FunctionConfiguration"]["Environment"]["Execution"] = {
        "IsolationMode": "GreengrassContainer", "RunAs": {"Uid": 1000, "Gid": 1000}}
    plain = fn(caller, pinned=True, timeout=30)
    plain["FunctionConfiguration"]["Environment"]["Execution"] = {"IsolationMode": "NoContainer"}
    parts = {
        "core": {"Cores": [{"Id": "core", "ThingArn": thing(account, "core"),
                            "CertificateArn": cert}]},
        "devices": {"Devices": [{"Id": "tester", "ThingArn": dev, "CertificateArn": cert}]},
        "resources": {"Resources": [
            {"Id": "ro", "Name": "RoVolume", "ResourceDataContainer": {"LocalVolumeResourceData": {
                "SourcePath": str(ro), "DestinationPath": "/data/ro",
                "GroupOwnerSetting": {"AutoAddGroupOwner": False}}}},
            {"Id": "rw", "Name": "RwVolume", "ResourceDataContainer": {"LocalVolumeResourceData": {
                "SourcePath": str(rw), "DestinationPath": "/data/rw",
                "GroupOwnerSetting": {"AutoAddGroupOwner": False}}}},
            {"Id": "tty", "Name": "Tty", "ResourceDataContainer": {"LocalDeviceResourceData": {
                "SourcePath": pty, "GroupOwnerSetting": {"AutoAddGroupOwner": True}}}}]},
        "functions": {"DefaultConfig": {"Execution": {"IsolationMode": "GreengrassContainer"}},
                      "Functions": [boxed, forks, plain]},
        "subscriptions": {"Subscriptions": [
            {"Id": "call", "Source": dev, "Subject": "call", "Target": caller},
            {"Id": "result", "Source": caller, "Subject": "result/#", "Target": dev}]},
    }
    _, status = deploy_with_cli(server, parts, name="isolation")
    assert status["DeploymentStatus"] == "Success", status
    device = MqttDevice(server.mqtt_plain_port, "tester", "result/#")
    yield {"server": server, "tmp": tmp, "device": device, "probe": probe, "forker": forker,
           "pty": pty,
           "master": master, "rw": rw}
    device.close()
    os.close(master)
    os.close(slave)
    server.stop()


def probe(box, target: str = "probe", **event) -> dict:
    box["device"].request("call", {"op": "invoke", "target": box[target], "payload": event})
    return result(box["device"], "result/invoke", timeout=30)


def test_contained_function_sees_only_what_it_is_granted(box):
    r = probe(box, op="ident")
    assert r["error"] == "", r
    ident = r["payload"]
    assert (ident["uid"], ident["gid"]) == (1000, 1000), ident  # RunAs
    assert ident["pid"] <= 3 and ident["procs"] <= 3, ident  # its own PID namespace
    assert "work" not in ident["root"] and "home" not in ident["root"], ident
    assert {"usr", "tmp", "proc", "dev", "data"} <= set(ident["root"]), ident

    host_file = str(box["tmp"] / "host-secret.txt")
    assert probe(box, op="read", path=host_file)["payload"]["error"] == "ENOENT"
    assert probe(box, op="read", path="/data/ro/config.txt")["payload"] == {"ok": "read me"}
    assert probe(box, op="write", path="/data/ro/new.txt")["payload"]["error"] == "EROFS"
    assert probe(box, op="write", path="/etc/evil")["payload"]["error"] in ("EROFS", "EACCES")
    assert probe(box, op="write", path="/data/rw/out.txt")["payload"] == {"ok": True}
    assert (box["rw"] / "out.txt").read_text() == "written from the container"
    assert probe(box, op="device", path=box["pty"])["payload"] == {"ok": True}
    assert os.read(box["master"], 100).startswith(b"hello device")
    assert probe(box, op="device", path="/dev/sda")["payload"]["error"] == "ENOENT"


def test_memory_limit_kills_reports_unhandled_and_the_core_carries_on(box):
    r = probe(box, op="alloc", mb=100)
    assert r["error"] == "Unhandled", r
    log = next(box["server"].data_dir.glob("ggc/var/log/user/*/*/Probe.log")).read_text()
    assert "out of memory" in log and "MemorySize of 32768 KB" in log, log[-2000:]
    assert probe(box, op="alloc", mb=4)["payload"] == {"ok": 4 * 1024 * 1024}
    assert health(box["server"])["status"] == "ok"


def test_fork_bomb_is_stopped_by_the_pids_limit(box):
    started = time.monotonic()
    r = probe(box, "forker", op="fork")
    assert r["error"] == "", r
    assert r["payload"]["errno"] == "EAGAIN", r
    assert r["payload"]["forked"] < DEFAULT_PIDS_MAX, r
    assert time.monotonic() - started < 20
    assert probe(box, op="ident")["payload"]["uid"] == 1000


def test_no_container_function_cannot_have_a_device(box):
    server, tmp = box["server"], box["tmp"]
    arn = create_function(server, tmp, "Loose", PROBE)
    account = arn.split(":")[4]
    cert = f"arn:aws:iot:us-east-1:{account}:{CERT_SUFFIX}"
    f = fn(arn, pinned=False, resources=["tty"])
    f["FunctionConfiguration"]["Environment"]["ResourceAccessPolicies"] = [
        {"ResourceId": "tty", "Permission": "rw"}]
    parts = {
        "core": {"Cores": [{"Id": "core", "ThingArn": thing(account, "core"),
                            "CertificateArn": cert}]},
        "resources": {"Resources": [
            {"Id": "tty", "Name": "Tty", "ResourceDataContainer": {"LocalDeviceResourceData": {
                "SourcePath": box["pty"], "GroupOwnerSetting": {"AutoAddGroupOwner": False}}}}]},
        "functions": {"DefaultConfig": {"Execution": {"IsolationMode": "NoContainer"}},
                      "Functions": [f]},
    }
    try:
        _, status = deploy_with_cli(server, parts, name="loose")
        failure = status["DeploymentStatus"] == "Failure" and status["ErrorMessage"]
    except AssertionError as e:  # refused when the group version is created
        failure = str(e)
    assert failure and "NoContainer" in failure and "Local.Device" in failure, failure


def test_container_mode_fails_clearly_where_the_host_cannot_isolate():
    """A core that is not root cannot isolate: a GreengrassContainer function fails the
    deployment, says why and how to run it instead; it is never run uncontained quietly."""
    if os.geteuid() != 0:
        pytest.skip("runs the core as `nobody` through setpriv, which needs root")
    base = Path(tempfile.mkdtemp(prefix="coupler-nobody-", dir="/tmp"))
    base.chmod(0o777)
    server = start_server(base, wrapper=["setpriv", "--reuid", "65534", "--regid", "65534",
                                         "--clear-groups"])
    try:
        arn = create_function(server, base, "Boxed", PROBE)
        account = arn.split(":")[4]
        cert = f"arn:aws:iot:us-east-1:{account}:{CERT_SUFFIX}"
        f = fn(arn, pinned=False)
        f["FunctionConfiguration"]["MemorySize"] = 16384
        f["FunctionConfiguration"]["Environment"]["Execution"] = {
            "IsolationMode": "GreengrassContainer"}
        parts = {
            "core": {"Cores": [{"Id": "core", "ThingArn": thing(account, "core"),
                                "CertificateArn": cert}]},
            "functions": {"Functions": [f]},
        }
        _, status = deploy_with_cli(server, parts, name="boxed")
        assert status["DeploymentStatus"] == "Failure", status
        message = status["ErrorMessage"]
        assert "needs the core to run as root" in message and "NoContainer" in message, message
        assert "--allow-uncontained" in message, message
    finally:
        server.stop()
