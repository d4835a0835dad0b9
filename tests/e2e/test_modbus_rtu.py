"""The Modbus-RTU Protocol Adapter connector against a real Modbus RTU device: a pymodbus RTU
server (modbus_peer.py) on the far end of a socat pseudo-terminal pair. A device thing sends
requests over MQTT on modbus/adapter/request and reads the answers on modbus/adapter/response,
as a Greengrass user's device or Lambda does.

One server and one group serve the module; a test that needs other connector parameters
deploys them (with boto3, which is quicker than the CLI) and the tests are ordered so that few
deployments are needed. The peer prints every request frame it decodes, so a test can tell what
reached the bus.
"""

from __future__ import annotations

import json
import os
import queue
import select
import shutil
import subprocess
import sys
import termios
import threading
import time
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

import modbus_peer as peer_data
from ggtest import MqttDevice, assert_connector_isolation, deploy_with_cli, metric, start_server

ACCOUNT = "123456789012"
CERT = f"arn:aws:iot:us-east-1:{ACCOUNT}:cert/" + "cd" * 32
REQUEST, RESPONSE = "modbus/adapter/request", "modbus/adapter/response"
CONNECTOR_ID = "modbus"
NO_RESPONSE = "[Input/Output] No Response received from the remote unit"
PEER_SCRIPT = Path(__file__).with_name("modbus_peer.py")
PEER_START_S = 20.0  # python + pymodbus import, on a busy 2-core machine
COILS, DISCRETE, HOLDING, INPUT = (peer_data.COILS, peer_data.DISCRETE, peer_data.HOLDING,
                                   peer_data.INPUT)
LOG = "ggc/var/log/user/us-east-1/aws/ModbusRTUProtocolAdapter.log"


def connector_arn(version: int = 3) -> str:
    return f"arn:aws:greengrass:us-east-1::/connectors/ModbusRTUProtocolAdapter/versions/{version}"


def thing(name: str) -> str:
    return f"arn:aws:iot:us-east-1:{ACCOUNT}:thing/{name}"


REJECTED = f'coupler_connector_rejected_total{{connector="{CONNECTOR_ID}"'


# ---- the line and the device on it -------------------------------------------------------------


class Bus:
    """A socat pty pair with unique names under /dev — the connector opens `port` — and the
    Modbus peer on the other end, `far`. Both can be stopped and started again at the same
    paths."""

    def __init__(self, workdir: Path):
        tag = uuid.uuid4().hex[:8]
        self.port, self.far = f"/dev/ttyCPL{tag}a", f"/dev/ttyCPL{tag}b"
        self.workdir = workdir
        self.socat: subprocess.Popen | None = None
        self.peer: subprocess.Popen | None = None
        self.peer_log = workdir / "peer.log"
        # (unit, function code) of every request frame a peer decoded.
        self.requests: queue.Queue = queue.Queue()

    def line_up(self) -> None:
        assert self.socat is None
        self.socat = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={self.port}", f"pty,raw,echo=0,link={self.far}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while not (os.path.exists(self.port) and os.path.exists(self.far)):
            assert self.socat.poll() is None, f"socat exited with {self.socat.returncode}"
            assert time.monotonic() < deadline, "socat made no ptys"
            time.sleep(0.02)

    def line_down(self) -> None:
        if self.socat is None:
            return
        proc, self.socat = self.socat, None
        _stop(proc)
        deadline = time.monotonic() + 5
        while os.path.lexists(self.port) or os.path.lexists(self.far):
            assert time.monotonic() < deadline, "socat left its links behind"
            time.sleep(0.02)

    def peer_up(self, *args: str) -> None:
        assert self.peer is None
        with open(self.peer_log, "ab") as log:
            log.write(f"--- modbus_peer.py {self.far} {' '.join(args)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                [sys.executable, str(PEER_SCRIPT), self.far, "--log-requests", *args],
                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True)
        ready: queue.Queue = queue.Queue()

        def pump() -> None:
            for line in proc.stdout:
                if line.startswith("ready"):
                    ready.put(True)
                elif line.startswith("request "):
                    _, unit, fc = line.split()
                    self.requests.put((int(unit), int(fc)))
            ready.put(False)

        threading.Thread(target=pump, daemon=True).start()
        try:
            ok = ready.get(timeout=PEER_START_S)
        except queue.Empty:
            ok = False
        if not ok:
            _stop(proc)
            pytest.fail(f"modbus_peer.py did not get ready; its log:\n{self.peer_log.read_text()}")
        self.peer = proc

    def peer_down(self) -> None:
        if self.peer is not None:
            proc, self.peer = self.peer, None
            _stop(proc)

    def seen(self, settle: float = 0.2) -> list[tuple[int, int]]:
        """The requests the peer decoded since the last call, after `settle` seconds. The
        peer prints each line before it answers, so once the pipe is empty and the reader
        has had a moment, every request answered so far is in the queue."""
        time.sleep(settle)
        if self.peer is not None and self.peer.stdout is not None:
            deadline = time.monotonic() + 2
            fd = self.peer.stdout.fileno()
            while select.select([fd], [], [], 0)[0] and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.02)
        out = []
        while True:
            try:
                out.append(self.requests.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        self.peer_down()
        self.line_down()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def pty_takes(setting: str) -> bool:
    """Whether this kernel's ptys keep a line setting, "parity" or "7 data bits". Some refuse
    them (tcsetattr: EINVAL) and drop them silently when set with TCSETS2, as serialport-rs
    does on Linux."""
    master, slave = os.openpty()
    try:
        attrs = termios.tcgetattr(slave)
        if setting == "parity":
            attrs[2] |= termios.PARENB
        else:
            attrs[2] = (attrs[2] & ~termios.CSIZE) | termios.CS7
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        now = termios.tcgetattr(slave)[2]
        return bool(now & termios.PARENB) if setting == "parity" else (
            now & termios.CSIZE == termios.CS7)
    except termios.error:
        return False
    finally:
        os.close(slave)
        os.close(master)


# ---- the group -----------------------------------------------------------------------------------


def group_parts(port: str, version: int = 3, **extra: str) -> dict:
    arn = connector_arn(version)
    params = {"ModbusSerialPort-ResourceId": "modbus-port", "ModbusSerialPort": port, **extra}
    return {
        "core": {"Cores": [{"Id": "core", "ThingArn": thing("core"), "CertificateArn": CERT}]},
        "devices": {"Devices": [{"Id": "plc-client", "ThingArn": thing("plc-client"),
                                 "CertificateArn": CERT}]},
        "resources": {"Resources": [{"Id": "modbus-port", "Name": "modbus", "ResourceDataContainer": {
            "LocalDeviceResourceData": {"SourcePath": port,
                                        "GroupOwnerSetting": {"AutoAddGroupOwner": True}}}}]},
        "connectors": {"Connectors": [{"Id": CONNECTOR_ID, "ConnectorArn": arn,
                                       "Parameters": params}]},
        "subscriptions": {"Subscriptions": [
            {"Id": "requests", "Source": thing("plc-client"), "Subject": REQUEST, "Target": arn},
            {"Id": "responses", "Source": arn, "Subject": RESPONSE, "Target": thing("plc-client")},
        ]},
    }


def deploy_boto(server, parts: dict, group_id: str) -> dict:
    """A new version of the group and its deployment, with boto3; the final status. A
    ClientError from any call goes to the caller."""
    gg = server.client()
    create = {"core": gg.create_core_definition, "devices": gg.create_device_definition,
              "resources": gg.create_resource_definition,
              "connectors": gg.create_connector_definition,
              "subscriptions": gg.create_subscription_definition}
    arns = {kind: create[kind](InitialVersion=body)["LatestVersionArn"]
            for kind, body in parts.items()}
    gv = gg.create_group_version(
        GroupId=group_id, CoreDefinitionVersionArn=arns["core"],
        DeviceDefinitionVersionArn=arns["devices"],
        ResourceDefinitionVersionArn=arns["resources"],
        ConnectorDefinitionVersionArn=arns["connectors"],
        SubscriptionDefinitionVersionArn=arns["subscriptions"])
    dep = gg.create_deployment(GroupId=group_id, GroupVersionId=gv["Version"],
                               DeploymentType="NewDeployment")
    deadline = time.monotonic() + 20
    while True:
        st = gg.get_deployment_status(GroupId=group_id, DeploymentId=dep["DeploymentId"])
        if st["DeploymentStatus"] not in ("InProgress", "Building") or time.monotonic() > deadline:
            return st
        time.sleep(0.05)


class Core:
    """The module's server, group and device, and the connector settings deployed now."""

    def __init__(self, server, group_id: str, dev: MqttDevice, bus: Bus):
        self.server, self.group_id, self.dev, self.bus = server, group_id, dev, bus
        self.config: tuple = (3, ())
        self.pings = 0

    def use(self, version: int = 3, **params: str) -> None:
        """Make the running connector this version with these extra parameters."""
        want = (version, tuple(sorted(params.items())))
        if want == self.config:
            return
        status = deploy_boto(self.server, group_parts(self.bus.port, version, **params),
                             self.group_id)
        assert status["DeploymentStatus"] == "Success", status
        self.config = want
        self.wait_served()

    def wait_served(self, within: float = 15.0) -> None:
        """Until a read of unit 1 succeeds (the connector has (re)opened the line and the peer
        answers); replies to earlier tries that come late are skipped by reply_to()."""
        deadline = time.monotonic() + within
        last = None
        while time.monotonic() < deadline:
            self.pings += 1
            rid = f"ping-{self.pings}"
            self.dev.request(REQUEST, {"request": read_hr(0, 2), "id": rid})
            try:
                body = self.reply_to(rid, timeout=5)
            except queue.Empty:
                continue  # the request came while the connector was being replaced
            last = body
            if body["response"]["status"] == "success":
                assert body["response"]["payload"] == {"function_code": 3,
                                                       "registers": HOLDING[:2]}, body
                return
            time.sleep(0.2)
        pytest.fail(f"the connector did not answer a good read within {within}s; last: {last}")

    def reply_to(self, rid: str | None, timeout: float = 5.0) -> dict:
        """The next response; late answers to wait_served()'s pings are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            topic, body = self.dev.next(timeout=max(0.01, deadline - time.monotonic()))
            assert topic == RESPONSE, (topic, body)
            got = body.get("id") if isinstance(body, dict) else None
            if isinstance(got, str) and got.startswith("ping-") and got != rid:
                continue
            return body

    def ask(self, request: dict, rid: str, timeout: float = 5.0) -> dict:
        """Send one request and return its response, checking that it echoes the id."""
        self.dev.request(REQUEST, {"request": request, "id": rid})
        body = self.reply_to(rid, timeout)
        assert body.get("id") == rid, f"asked {request} as {rid!r}, the next response was {body}"
        return body

    def ok(self, request: dict, rid: str) -> dict:
        """The payload of a request that must succeed, in the documented shape."""
        body = self.ask(request, rid)
        r = body["response"]
        assert r.get("status") == "success", f"{request} -> {body}"
        assert set(r) == {"status", "device", "operation", "payload"}, body
        assert (r["device"], r["operation"]) == (request["device"], request["operation"]), body
        assert set(body) == {"response", "id"}, body
        return r["payload"]

    def quiet(self, wait: float = 0.4) -> None:
        """No response is left over."""
        try:
            got = self.reply_to(None, timeout=wait)
        except queue.Empty:
            return
        pytest.fail(f"an unexpected response: {got}")


def read_coils(address: int, count: int, device: int = 1) -> dict:
    return {"operation": "ReadCoilsRequest", "device": device, "address": address, "count": count}


def read_hr(address: int, count: int, device: int = 1) -> dict:
    return {"operation": "ReadHoldingRegistersRequest", "device": device, "address": address,
            "count": count}


def no_response(request: dict, rid: str) -> dict:
    """The documented answer when the bus gives nothing back."""
    return {"response": {"status": "fail", "error": "No Response", "error_message": NO_RESPONSE,
                         "device": request["device"], "operation": request["operation"],
                         "payload": {"error": NO_RESPONSE}},
            "id": rid}


@pytest.fixture(scope="module")
def bus(tmp_path_factory):
    if shutil.which("socat") is None:
        pytest.fail("socat is not installed (scripts/install-test-deps.sh installs it)")
    b = Bus(tmp_path_factory.mktemp("modbus-line"))
    try:
        b.line_up()
        b.peer_up()
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def core(tmp_path_factory, bus):
    """The group with nothing but the two documented parameters: every Coupler extension at
    its default (9600 8N1, replies within 3000 ms, 100 requests may wait)."""
    server = start_server(tmp_path_factory.mktemp("modbus"), "--allow-uncontained")
    dev = None
    try:
        group_id, status = deploy_with_cli(server, group_parts(bus.port), name="modbus-rtu")
        assert status["DeploymentStatus"] == "Success", status
        # Modbus-RTU is container-only: where the host can isolate, it runs contained.
        assert_connector_isolation(server, CONNECTOR_ID, "ModbusRTUProtocolAdapter")
        dev = MqttDevice(server.mqtt_plain_port, "plc-client", RESPONSE)
        c = Core(server, group_id, dev, bus)
        c.wait_served()
        bus.seen(0)
        yield c
    finally:
        if dev is not None:
            dev.close()
        server.stop()


@pytest.fixture
def peer_back(bus, core):
    """For tests that stop or restart the peer or the line: both are up again afterwards,
    with the default settings."""
    yield
    if bus.socat is None:
        bus.line_up()
    if bus.peer is not None and bus.peer.args[3:] != ["--log-requests"]:
        bus.peer_down()
    if bus.peer is None:
        bus.peer_up()


# ---- 1. every operation, on the defaults -----------------------------------------------------------


@pytest.mark.parametrize("address,count", [(0, 8), (5, 19), (0, 128), (127, 1)])
def test_read_coils(core, address, count):
    payload = core.ok(read_coils(address, count), f"rc-{address}-{count}")
    assert payload == {"function_code": 1, "bits": COILS[address:address + count]}


@pytest.mark.parametrize("address,count", [(0, 16), (100, 28), (3, 1)])
def test_read_discrete_inputs(core, address, count):
    request = {"operation": "ReadDiscreteInputsRequest", "device": 1, "address": address,
               "count": count}
    payload = core.ok(request, f"rd-{address}-{count}")
    assert payload == {"function_code": 2, "bits": DISCRETE[address:address + count]}


@pytest.mark.parametrize("address,count", [(0, 10), (95, 5), (0, 100)])
def test_read_holding_registers(core, address, count):
    payload = core.ok(read_hr(address, count), f"rh-{address}-{count}")
    assert payload == {"function_code": 3, "registers": HOLDING[address:address + count]}


@pytest.mark.parametrize("address,count", [(0, 3), (50, 50)])
def test_read_input_registers(core, address, count):
    request = {"operation": "ReadInputRegistersRequest", "device": 1, "address": address,
               "count": count}
    payload = core.ok(request, f"ri-{address}-{count}")
    assert payload == {"function_code": 4, "registers": INPUT[address:address + count]}


def test_write_single_coil_and_read_it_back(core):
    op = "WriteSingleCoilRequest"
    for i, (value, as_bool) in enumerate([(True, True), (0, False), (1, True), (False, False)]):
        payload = core.ok({"operation": op, "device": 1, "address": 64, "value": value}, f"wc{i}")
        assert payload == {"function_code": 5, "address": 64, "value": as_bool}
        assert core.ok(read_coils(64, 1), f"wc{i}-read")["bits"] == [int(as_bool)]
    # Its neighbours are untouched.
    assert core.ok(read_coils(60, 8), "wc-neighbours")["bits"] == COILS[60:64] + [0] + COILS[65:68]


def test_write_single_register_and_read_it_back(core):
    op = "WriteSingleRegisterRequest"
    for i, value in enumerate([4242, 65535, 0]):
        payload = core.ok({"operation": op, "device": 1, "address": 60, "value": value}, f"wr{i}")
        assert payload == {"function_code": 6, "address": 60, "value": value}
        assert core.ok(read_hr(59, 3), f"wr{i}-read")["registers"] == [HOLDING[59], value,
                                                                       HOLDING[61]]


def test_write_multiple_coils_and_read_them_back(core):
    values = [1, 0, 1, 1, 0, True, False, 1, 1, 0, 0, 1]
    payload = core.ok({"operation": "WriteMultipleCoilsRequest", "device": 1, "address": 80,
                       "values": values}, "wmc")
    assert payload == {"function_code": 15, "address": 80, "count": len(values)}
    bits = core.ok(read_coils(78, 16), "wmc-read")["bits"]
    assert bits == COILS[78:80] + [int(v) for v in values] + COILS[92:94]


def test_write_multiple_registers_and_read_them_back(core):
    values = [1, 2, 3, 65535, 0, 777]
    payload = core.ok({"operation": "WriteMultipleRegistersRequest", "device": 1, "address": 70,
                       "values": values}, "wmr")
    assert payload == {"function_code": 16, "address": 70, "count": len(values)}
    assert core.ok(read_hr(69, 8), "wmr-read")["registers"] == [HOLDING[69], *values, HOLDING[76]]


def test_mask_write_register_and_read_it_back(core):
    core.ok({"operation": "WriteSingleRegisterRequest", "device": 1, "address": 62,
             "value": 0x1234}, "mask-set")
    and_mask, or_mask = 0xF0F0, 0x000F
    payload = core.ok({"operation": "MaskWriteRegisterRequest", "device": 1, "address": 62,
                       "and_mask": and_mask, "or_mask": or_mask}, "mask")
    assert payload == {"function_code": 22, "address": 62, "and_mask": and_mask,
                       "or_mask": or_mask}
    # Modbus: result = (current AND and_mask) OR (or_mask AND NOT and_mask).
    want = (0x1234 & and_mask) | (or_mask & ~and_mask & 0xFFFF)
    assert core.ok(read_hr(62, 1), "mask-read")["registers"] == [want]


def test_read_write_multiple_registers(core):
    op = "ReadWriteMultipleRegistersRequest"
    payload = core.ok({"operation": op, "device": 1, "read_address": 0, "read_count": 3,
                       "write_address": 90, "write_registers": [7, 8]}, "rw")
    assert payload == {"function_code": 23, "registers": HOLDING[0:3]}
    assert core.ok(read_hr(90, 2), "rw-read")["registers"] == [7, 8]
    # The device writes before it reads (Modbus application protocol, 0x17).
    payload = core.ok({"operation": op, "device": 1, "read_address": 89, "read_count": 4,
                       "write_address": 90, "write_registers": [9, 10]}, "rw-overlap")
    assert payload == {"function_code": 23, "registers": [HOLDING[89], 9, 10, HOLDING[92]]}


def test_unit_2_with_one_shared_memory(core):
    """The other device on the bus keeps one memory: its coils are the bits of its registers."""
    regs = list(peer_data.UNIT2_REGISTERS)
    assert core.ok(read_hr(0, 4, device=2), "u2-hr") == {"function_code": 3, "registers": regs[:4]}
    payload = core.ok({"operation": "ReadInputRegistersRequest", "device": 2, "address": 1,
                       "count": 3}, "u2-ir")
    assert payload == {"function_code": 4, "registers": regs[1:4]}
    assert core.ok(read_coils(0, 20, device=2), "u2-coils") == {
        "function_code": 1, "bits": peer_data.unit2_bits(0, 20)}
    payload = core.ok({"operation": "ReadDiscreteInputsRequest", "device": 2, "address": 16,
                       "count": 16}, "u2-di")
    assert payload == {"function_code": 2, "bits": peer_data.unit2_bits(16, 16)}
    # A register written is seen as coils, and a coil written as a register.
    core.ok({"operation": "WriteSingleRegisterRequest", "device": 2, "address": 3,
             "value": 0x8001}, "u2-wr")
    regs[3] = 0x8001
    assert core.ok(read_coils(48, 16, device=2), "u2-coils-3")["bits"] == [1] + [0] * 14 + [1]
    core.ok({"operation": "WriteSingleCoilRequest", "device": 2, "address": 49, "value": True},
            "u2-wc")
    regs[3] |= 0x0002
    assert core.ok(read_hr(3, 1, device=2), "u2-hr-3")["registers"] == [regs[3]]
    # And unit 1 was not touched by any of it.
    assert core.ok(read_hr(0, 4), "u1-hr") == {"function_code": 3, "registers": HOLDING[:4]}


def test_every_request_reached_the_bus_once(core, bus):
    """One request frame per request: the connector does not retry a request that succeeded."""
    bus.seen(0.1)  # answers to the test before may still be on their way from the peer
    core.ok(read_hr(0, 1), "once-1")
    core.ok(read_coils(0, 1, device=2), "once-2")
    assert bus.seen() == [(1, 3), (2, 1)]


# ---- 2. exception replies and silence ------------------------------------------------------------


def _rw(read_address: int, read_count: int, write_address: int, n: int) -> dict:
    # pymodbus performs the write before it checks the read: write what is there already.
    return {"operation": "ReadWriteMultipleRegistersRequest", "device": 1,
            "read_address": read_address, "read_count": read_count,
            "write_address": write_address,
            "write_registers": HOLDING[write_address:write_address + n] + [1] * max(
                0, write_address + n - len(HOLDING))}


@pytest.mark.parametrize("request_", [
    pytest.param(read_coils(128, 1), id="coil-128"),
    pytest.param(read_coils(120, 16), id="coils-past-the-end"),
    pytest.param(read_coils(2000, 5), id="coil-2000"),
    pytest.param({"operation": "ReadDiscreteInputsRequest", "device": 1, "address": 128,
                  "count": 1}, id="discrete-128"),
    pytest.param(read_hr(100, 1), id="holding-100"),
    pytest.param(read_hr(98, 3), id="holding-past-the-end"),
    pytest.param(read_hr(65535, 1), id="holding-65535"),
    pytest.param({"operation": "ReadInputRegistersRequest", "device": 1, "address": 99,
                  "count": 2}, id="input-past-the-end"),
    pytest.param({"operation": "WriteSingleCoilRequest", "device": 1, "address": 128,
                  "value": True}, id="write-coil-128"),
    pytest.param({"operation": "WriteSingleRegisterRequest", "device": 1, "address": 100,
                  "value": 1}, id="write-register-100"),
    pytest.param({"operation": "WriteMultipleCoilsRequest", "device": 1, "address": 126,
                  "values": [1, 1, 1]}, id="write-coils-past-the-end"),
    pytest.param({"operation": "WriteMultipleRegistersRequest", "device": 1, "address": 99,
                  "values": [1, 2]}, id="write-registers-past-the-end"),
    pytest.param({"operation": "MaskWriteRegisterRequest", "device": 1, "address": 100,
                  "and_mask": 0, "or_mask": 1}, id="mask-100"),
    pytest.param(_rw(0, 1, 99, 2), id="read-write-past-the-end"),
    pytest.param(read_hr(32, 1, device=2), id="unit-2-holding-32"),
    # The largest requests Modbus allows pass the connector's checks and reach the device,
    # which has fewer addresses.
    pytest.param(read_coils(0, 2000), id="coils-2000"),
    pytest.param({"operation": "ReadDiscreteInputsRequest", "device": 1, "address": 0,
                  "count": 2000}, id="discrete-2000"),
    pytest.param(read_hr(0, 125), id="holding-125"),
    pytest.param({"operation": "ReadInputRegistersRequest", "device": 1, "address": 0,
                  "count": 125}, id="input-125"),
    pytest.param({"operation": "WriteMultipleCoilsRequest", "device": 1, "address": 0,
                  "values": [0, 1] * 984}, id="write-coils-1968"),
    pytest.param({"operation": "WriteMultipleRegistersRequest", "device": 1, "address": 0,
                  "values": list(range(123))}, id="write-registers-123"),
    pytest.param(_rw(0, 125, 0, 1), id="read-write-read-125"),
    pytest.param(_rw(0, 1, 0, 121), id="read-write-write-121"),
])
def test_an_illegal_address_gets_exception_2(core, bus, request_):
    codes = {"ReadCoilsRequest": 1, "ReadDiscreteInputsRequest": 2,
             "ReadHoldingRegistersRequest": 3, "ReadInputRegistersRequest": 4,
             "WriteSingleCoilRequest": 5, "WriteSingleRegisterRequest": 6,
             "WriteMultipleCoilsRequest": 15, "WriteMultipleRegistersRequest": 16,
             "MaskWriteRegisterRequest": 22, "ReadWriteMultipleRegistersRequest": 23}
    fc = codes[request_["operation"]]
    bus.seen(0.1)  # answers to the test before may still be on their way from the peer
    body = core.ask(request_, "exc")
    assert body == {"response": {"status": "fail", "error": "Exception",
                                 "error_message": "Internal Error",
                                 "device": request_["device"], "operation": request_["operation"],
                                 "payload": {"function_code": fc + 128, "exception_code": 2}},
                    "id": "exc"}
    assert bus.seen() == [(request_["device"], fc)]


def test_a_failed_write_changed_nothing(core):
    # After the refused multiple writes above that started inside the tables.
    assert core.ok(read_coils(124, 4), "after-exc-c")["bits"] == COILS[124:128]
    assert core.ok(read_hr(99, 1), "after-exc-h")["registers"] == [HOLDING[99]]


def test_an_absent_unit_gets_no_response_after_the_default_timeout(core, bus):
    bus.seen(0.1)  # answers to the test before may still be on their way from the peer
    request = read_hr(0, 1, device=9)
    started = time.monotonic()
    body = core.ask(request, "absent", timeout=10)
    took = time.monotonic() - started
    assert body == no_response(request, "absent")
    assert 2.7 < took < 6, f"the default ResponseTimeoutMs is 3000; the answer took {took:.2f}s"
    assert bus.seen() == [(9, 3)]  # it was sent, once
    # The bus serves the next request at once.
    assert core.ok(read_hr(0, 2), "after-absent") == {"function_code": 3,
                                                      "registers": HOLDING[:2]}


# ---- 3. requests refused before the bus ------------------------------------------------------------


def _req(**fields) -> dict:
    return {"operation": "ReadHoldingRegistersRequest", "device": 1, "address": 0, "count": 1,
            **fields}


def _without(field: str, **fields) -> dict:
    r = _req(**fields)
    del r[field]
    return r


BAD = [
    # (test id, payload, the id the response must carry, words its error_message must hold,
    #  whether device and operation are echoed)
    ("missing-count", {"request": _without("count"), "id": "b1"}, "b1", ("count",), True),
    ("missing-address", {"request": _without("address"), "id": "b2"}, "b2", ("address",), True),
    ("missing-operation", {"request": _without("operation"), "id": "b3"}, "b3", ("operation",),
     False),
    ("missing-device", {"request": _without("device"), "id": "b4"}, "b4", ("device",), False),
    ("missing-request", {"id": "b5"}, "b5", ("request",), False),
    ("float-address", {"request": _req(address=1.5), "id": "b6"}, "b6", ("address",), True),
    ("negative-address", {"request": _req(address=-1), "id": "b7"}, "b7", ("address",), True),
    ("address-65536", {"request": _req(address=65536), "id": "b8"}, "b8", ("address",), True),
    ("count-0", {"request": _req(count=0), "id": "b9"}, "b9", ("count",), True),
    ("registers-126", {"request": _req(count=126), "id": "b10"}, "b10", ("count", "125"), True),
    ("coils-2001", {"request": read_coils(0, 2001), "id": "b11"}, "b11", ("count", "2000"), True),
    ("discrete-3000", {"request": {"operation": "ReadDiscreteInputsRequest", "device": 1,
                                   "address": 0, "count": 3000}, "id": "b12"},
     "b12", ("count", "2000"), True),
    ("input-registers-200", {"request": {"operation": "ReadInputRegistersRequest", "device": 1,
                                         "address": 0, "count": 200}, "id": "b13"},
     "b13", ("count", "125"), True),
    ("write-coils-1969", {"request": {"operation": "WriteMultipleCoilsRequest", "device": 1,
                                      "address": 0, "values": [1] * 1969}, "id": "b14"},
     "b14", ("values", "1968"), True),
    ("write-coils-none", {"request": {"operation": "WriteMultipleCoilsRequest", "device": 1,
                                      "address": 0, "values": []}, "id": "b15"},
     "b15", ("values",), True),
    ("write-coils-2", {"request": {"operation": "WriteMultipleCoilsRequest", "device": 1,
                                   "address": 0, "values": [1, 2]}, "id": "b16"},
     "b16", ("values",), True),
    ("write-registers-124", {"request": {"operation": "WriteMultipleRegistersRequest",
                                         "device": 1, "address": 0, "values": [1] * 124},
                             "id": "b17"}, "b17", ("values", "123"), True),
    ("write-register-65536", {"request": {"operation": "WriteMultipleRegistersRequest",
                                          "device": 1, "address": 0, "values": [1, 65536]},
                              "id": "b18"}, "b18", ("values",), True),
    ("single-register-65536", {"request": {"operation": "WriteSingleRegisterRequest",
                                           "device": 1, "address": 0, "value": 65536},
                               "id": "b19"}, "b19", ("value",), True),
    ("single-coil-7", {"request": {"operation": "WriteSingleCoilRequest", "device": 1,
                                   "address": 0, "value": 7}, "id": "b20"}, "b20", ("value",), True),
    ("single-coil-missing-value", {"request": {"operation": "WriteSingleCoilRequest",
                                               "device": 1, "address": 0}, "id": "b21"},
     "b21", ("value",), True),
    ("mask-missing-or", {"request": {"operation": "MaskWriteRegisterRequest", "device": 1,
                                     "address": 0, "and_mask": 1}, "id": "b22"},
     "b22", ("or_mask",), True),
    ("rw-read-count-126", {"request": {"operation": "ReadWriteMultipleRegistersRequest",
                                       "device": 1, "read_address": 0, "read_count": 126,
                                       "write_address": 0, "write_registers": [1]}, "id": "b23"},
     "b23", ("read_count", "125"), True),
    ("rw-write-122", {"request": {"operation": "ReadWriteMultipleRegistersRequest", "device": 1,
                                  "read_address": 0, "read_count": 1, "write_address": 0,
                                  "write_registers": [1] * 122}, "id": "b24"},
     "b24", ("write_registers", "121"), True),
    ("rw-missing-write-address", {"request": {"operation": "ReadWriteMultipleRegistersRequest",
                                              "device": 1, "read_address": 0, "read_count": 1,
                                              "write_registers": [1]}, "id": "b25"},
     "b25", ("write_address",), True),
    ("unknown-operation", {"request": _req(operation="ReadFifoQueueRequest"), "id": "b26"},
     "b26", ("operation",), False),
    ("device-248", {"request": _req(device=248), "id": "b27"}, "b27", ("device", "247"), False),
    ("device-negative", {"request": _req(device=-1), "id": "b28"}, "b28", ("device",), False),
    ("device-string", {"request": _req(device="1"), "id": "b29"}, "b29", ("device",), False),
    ("missing-id", {"request": _req()}, None, ("id",), True),
    ("not-json", b"\xff\xfe {not json", None, (), False),
    ("json-array", json.dumps([{"request": _req(), "id": "b30"}]), None, (), False),
]


@pytest.mark.parametrize("payload,rid,words,echoed", [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_a_bad_request_is_answered_and_never_reaches_the_bus(core, bus, payload, rid, words,
                                                             echoed):
    bus.seen(0.1)  # answers to the test before may still be on their way from the peer
    core.dev.request(REQUEST, payload)
    body = core.reply_to(rid)
    assert isinstance(body, dict) and set(body) <= {"response", "id"}, body
    assert body.get("id") == rid, body
    r = body["response"]
    assert r["status"] == "fail" and r["error"] == "No Response", body
    assert r["error_message"] and r["payload"] == {"error": r["error_message"]}, body
    for w in words:
        assert w in r["error_message"], f"{w!r} not in the message: {body}"
    if echoed:
        assert (r.get("device"), r.get("operation")) == (payload["request"]["device"],
                                                         payload["request"]["operation"]), body
    core.quiet(0.2)
    assert bus.seen(0.1) == [], "a refused request reached the bus"
    # The next good request gets its own answer.
    assert core.ok(read_hr(1, 1), "good-after") == {"function_code": 3, "registers": [HOLDING[1]]}


def test_a_string_address_gets_the_documented_message(core, bus):
    bus.seen(0.1)  # answers to the test before may still be on their way from the peer
    message = "Invalid address field. Expected <class 'int'>, got <class 'str'>"
    request = read_coils("1", 1)
    assert core.ask(request, "TestRequest") == {
        "response": {"status": "fail", "error_message": message, "error": "No Response",
                     "device": 1, "operation": "ReadCoilsRequest", "payload": {"error": message}},
        "id": "TestRequest"}
    assert bus.seen() == []


def test_the_same_bad_request_twice_gets_two_answers(core):
    """De-duplication is for requests waiting for the bus; a refusal is answered every time."""
    for _ in range(2):
        assert core.ask(read_hr(0, 500), "twice")["response"]["status"] == "fail"
    core.quiet(0.3)


def test_refusals_are_counted_in_the_metrics(core):
    before = metric(core.server, REJECTED)
    for i in range(5):
        core.dev.request(REQUEST, {"request": read_coils(0, 0), "id": f"count-{i}"})
    core.dev.request(REQUEST, b"garbage")
    for _ in range(6):
        assert core.reply_to(None)["response"]["status"] == "fail"
    # Exceptions and No Response are the devices' answers, not refusals.
    core.ask(read_hr(100, 1), "not-a-refusal")
    assert metric(core.server, REJECTED) - before == 6


# ---- 4-6. the peer and the line go away; the queue ----------------------------------------------------


def test_a_repeated_request_still_waiting_is_performed_once(core, bus):
    core.use(ResponseTimeoutMs="300")
    bus.seen(0.1)  # answers to the test before may still be on their way from the peer
    # The bus is busy for 300 ms with a request that nobody answers; meanwhile the same
    # request (same id, same request object) arrives twice, then variations of it.
    blocker = read_hr(0, 1, device=9)
    same = read_hr(10, 2)
    sends = [(blocker, "blocker"), (same, "dup"), (same, "dup"), (same, "dup-other-id"),
             (read_hr(10, 3), "dup")]
    for request, rid in sends:
        core.dev.c.publish(REQUEST, json.dumps({"request": request, "id": rid}), qos=1)
    got = [core.reply_to(None, timeout=5) for _ in range(4)]
    core.quiet(0.6)
    assert got[0] == no_response(blocker, "blocker")
    answers = [(b["id"], b["response"]["status"], b["response"]["payload"]) for b in got[1:]]
    assert sorted(answers, key=lambda a: (a[0], len(a[2]["registers"]))) == [
        ("dup", "success", {"function_code": 3, "registers": HOLDING[10:12]}),
        ("dup", "success", {"function_code": 3, "registers": HOLDING[10:13]}),
        ("dup-other-id", "success", {"function_code": 3, "registers": HOLDING[10:12]}),
    ]
    assert bus.seen() == [(9, 3), (1, 3), (1, 3), (1, 3)]
    # Once answered, the same request again is a new request.
    assert core.ok(same, "dup") == {"function_code": 3, "registers": HOLDING[10:12]}


def test_a_stopped_peer_gets_no_response_and_a_restarted_one_answers(core, bus, peer_back):
    core.use(ResponseTimeoutMs="300")
    assert core.ok(read_hr(0, 1), "before-stop")["registers"] == [HOLDING[0]]
    bus.peer_down()
    for i, request in enumerate([read_hr(0, 1), read_coils(0, 8)]):
        started = time.monotonic()
        assert core.ask(request, f"stopped-{i}") == no_response(request, f"stopped-{i}")
        assert time.monotonic() - started < 2.5, "ResponseTimeoutMs is 300"
    bus.peer_up()
    core.wait_served(within=10)
    assert core.ok(read_coils(0, 8), "restarted") == {"function_code": 1, "bits": COILS[:8]}
    core.quiet(0.3)


def test_the_line_comes_back_without_a_new_deployment(core, bus, peer_back):
    """The serial device disappears (a USB adapter unplugged) and comes back at the same
    path: the connector answers No Response meanwhile and opens it again by itself."""
    core.use(ResponseTimeoutMs="300")
    assert core.ok(read_hr(0, 1), "before-unplug")["registers"] == [HOLDING[0]]
    restarts = metric(core.server, f'coupler_connector_restarts_total{{connector="{CONNECTOR_ID}"')
    log_path = core.server.data_dir / LOG
    mentions = log_path.read_text().count(bus.port)
    bus.line_down()
    bus.peer_down()
    for i in range(3):
        request = read_hr(i, 1)
        assert core.ask(request, f"unplugged-{i}") == no_response(request, f"unplugged-{i}")
        time.sleep(0.2)
    bus.line_up()
    bus.peer_up()
    core.wait_served(within=10)
    assert core.ok(read_hr(0, 5), "replugged") == {"function_code": 3, "registers": HOLDING[:5]}
    log = log_path.read_text()
    assert log.count(bus.port) > mentions, f"the outage is not in the log:\n{log[-2000:]}"
    # Reopening the port is the connector's own business, not a crash and a restart.
    assert metric(core.server,
                  f'coupler_connector_restarts_total{{connector="{CONNECTOR_ID}"') == restarts
    core.quiet(0.3)


def test_a_full_queue_refuses_at_once_and_loses_nothing(core, bus):
    """RequestQueueSize 4: with a device that never answers, one request is on the bus and
    four wait; the rest are refused at once and never reach the bus; every request gets
    exactly one answer."""
    core.use(ResponseTimeoutMs="600", RequestQueueSize="4")
    bus.seen(0.1)  # answers to the test before may still be on their way from the peer
    rejected = metric(core.server, REJECTED)
    n = 14
    sent = [core.dev.c.publish(REQUEST, json.dumps({"request": read_hr(0, 1, device=9),
                                                    "id": f"q{i}"}), qos=1) for i in range(n)]
    for info in sent:
        info.wait_for_publish(timeout=5)
    burst_end = time.monotonic()
    answers: dict[str, list[tuple[float, dict]]] = {}
    deadline = time.monotonic() + 15
    while sum(map(len, answers.values())) < n and time.monotonic() < deadline:
        try:
            body = core.reply_to(None, timeout=deadline - time.monotonic())
        except queue.Empty:
            break
        answers.setdefault(body.get("id"), []).append((time.monotonic() - burst_end, body))
    core.quiet(0.8)
    assert sorted(answers) == sorted(f"q{i}" for i in range(n)), answers
    assert all(len(a) == 1 for a in answers.values()), f"an id answered twice: {answers}"
    full = {rid: a[0] for rid, a in answers.items()
            if a[0][1]["response"].get("error_message", "").startswith("Request queue full")}
    taken = {rid: a[0] for rid, a in answers.items() if rid not in full}
    assert 4 <= len(taken) <= 5, (
        f"at most one on the bus and 4 waiting; taken: {sorted(taken)}, refused: {sorted(full)}")
    for rid, (after, body) in full.items():
        r = body["response"]
        assert (r["status"], r["error"], r["device"], r["operation"]) == (
            "fail", "No Response", 9, "ReadHoldingRegistersRequest"), body
        assert r["payload"] == {"error": r["error_message"]}, body
        assert after < 0.5, f"{rid} was refused {after:.2f}s after the burst, not at once"
    for rid, (_, body) in taken.items():
        assert body == no_response(read_hr(0, 1, device=9), rid)
    # The first ones were taken, in order; what reached the bus is exactly those.
    assert sorted(taken, key=lambda r: int(r[1:])) == [f"q{i}" for i in range(len(taken))]
    assert bus.seen() == [(9, 3)] * len(taken)
    assert metric(core.server, REJECTED) - rejected == len(full)


# ---- 7. line settings --------------------------------------------------------------------------------


def test_line_settings_on_both_sides(core, bus, peer_back):
    """19200 baud with two stop bits and a long inter-frame delay (100 ms before each request):
    the settings reach the line and the requests are spaced out."""
    bus.peer_down()
    bus.peer_up("--baud", "19200", "--stopbits", "2")
    core.use(BaudRate="19200", StopBits="2", ByteSize="8", Parity="N",
             InterFrameDelay="100000", ResponseTimeoutMs="1000")
    bus.seen(0.1)  # answers to the test before may still be on their way from the peer
    for i in range(5):
        core.dev.c.publish(REQUEST, json.dumps({"request": read_hr(i, 1), "id": f"s{i}"}), qos=1)
    stamps = []
    for i in range(5):
        body = core.reply_to(None)
        stamps.append(time.monotonic())
        assert body["id"] == f"s{i}" and body["response"]["payload"] == {
            "function_code": 3, "registers": [HOLDING[i]]}, body
    assert stamps[-1] - stamps[0] >= 0.38, f"4 gaps of 100 ms took {stamps[-1] - stamps[0]:.3f}s"
    log = (core.server.data_dir / LOG).read_text()
    assert "19200" in log, log[-2000:]


def test_parity_even_on_both_sides(core, bus, peer_back):
    if not pty_takes("parity"):
        pytest.skip("this kernel's ptys do not keep parity (tcsetattr PARENB: EINVAL), so "
                    "neither end of a socat pair can be set to even parity")
    bus.peer_down()
    bus.peer_up("--baud", "19200", "--parity", "E")
    core.use(BaudRate="19200", Parity="E", ResponseTimeoutMs="1000")
    assert core.ok(read_hr(0, 3), "even") == {"function_code": 3, "registers": HOLDING[:3]}


@pytest.mark.parametrize("name,value,probe,hints", [
    ("Parity", "O", "parity", ("arity",)),
    ("Parity", "E", "parity", ("arity",)),
    ("ByteSize", "7", "7 data bits", ("ByteSize", "byte size", "data bits", "bits")),
])
def test_a_setting_the_port_does_not_keep_is_not_dropped_silently(core, bus, peer_back, name,
                                                                   value, probe, hints):
    """On a port that does not keep a configured line setting (here: a pty, which drops
    parity and 7 data bits), the connector must not run the bus with other settings than the
    group's: the deployment fails, or the requests get No Response, and either way the reason
    names the port and the setting. (pyserial, which the Greengrass connector used, fails to
    open such a port: EINVAL.)"""
    if pty_takes(probe):
        pytest.skip(f"this kernel's ptys keep {probe}")
    # The defaults first, so that the port is open with settings it took.
    core.use()
    params = {name: value, "ResponseTimeoutMs": "300"}
    status = deploy_boto(core.server, group_parts(bus.port, **params), core.group_id)
    if status["DeploymentStatus"] == "Failure":
        assert any(h in status["ErrorMessage"] for h in hints), status
        return
    core.config = (3, tuple(sorted(params.items())))
    assert status["DeploymentStatus"] == "Success", status
    time.sleep(0.5)
    request = read_hr(0, 1)
    for i in range(2):
        rid = f"{name}-{value}-{i}"
        assert core.ask(request, rid) == no_response(request, rid), (
            f"with {name}={value} configured, on a port that does not keep it")
    log = (core.server.data_dir / LOG).read_text()
    since_start = log[log.rindex("starting"):]
    assert any(bus.port in line and any(h in line for h in hints)
               for line in since_start.splitlines()[2:]), since_start


@pytest.mark.parametrize("name,value", [
    ("Parity", "X"), ("Parity", "even"), ("BaudRate", "fast"), ("BaudRate", "0"),
    ("StopBits", "3"), ("ByteSize", "9"), ("ResponseTimeoutMs", "5"),
    ("ResponseTimeoutMs", "60001"), ("RequestQueueSize", "0"), ("RequestQueueSize", "10001"),
    ("InterFrameDelay", "-1"), ("InterFrameDelay", "soon"),
])
def test_an_invalid_line_setting_is_refused_by_name(core, bus, name, value):
    """Refused by the API when the definition is created (as Greengrass checks connector
    parameters) or, failing that, by the deployment; either way the message names it."""
    try:
        status = deploy_boto(core.server, group_parts(bus.port, **{name: value}), core.group_id)
    except ClientError as e:
        err = e.response["Error"]
        assert err["Code"] == "BadRequestException", e.response
        assert name in err["Message"], e.response
        return
    assert status["DeploymentStatus"] == "Failure", status
    assert name in status["ErrorMessage"], status


# ---- 8. versions 1 and 2 ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
def test_versions_1_and_2_answer_in_their_own_words(core, bus, peer_back, version):
    core.use(version)
    assert core.ok(read_hr(0, 2), f"v{version}") == {"function_code": 3, "registers": HOLDING[:2]}
    assert core.ok(read_coils(0, 4), f"v{version}-c") == {"function_code": 1, "bits": COILS[:4]}
    # Python 2.7 named types <type 'int'>.
    message = "Invalid address field. Expected <type 'int'>, got <type 'str'>"
    body = core.ask(read_coils("1", 1), f"v{version}-bad")
    assert body["response"]["error_message"] == message, body
    assert body["response"]["payload"] == {"error": message}, body


# ---- 9. redeployments -------------------------------------------------------------------------------


def test_a_deployment_that_leaves_the_connector_unchanged_keeps_it_running(core, bus, peer_back):
    """A new group version that changes only a subscription does not restart the connector
    (its port stays open); one that changes a parameter does."""
    core.use(3)
    log = core.server.data_dir / LOG
    starts = log.read_text().count("starting")
    parts = group_parts(bus.port)
    parts["subscriptions"]["Subscriptions"].append(
        {"Id": "extra", "Source": thing("plc-client"), "Subject": "plc/extra",
         "Target": "cloud"})
    assert deploy_boto(core.server, parts, core.group_id)["DeploymentStatus"] == "Success"
    assert core.ok(read_hr(0, 2), "kept") == {"function_code": 3, "registers": HOLDING[:2]}
    deadline = time.monotonic() + 5
    while "keeps running" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    text = log.read_text()
    assert "keeps running" in text, text[-2000:]
    assert text.count("starting") == starts, text[-2000:]
    # A changed parameter is a new instance.
    core.use(3, ResponseTimeoutMs="2000")
    assert log.read_text().count("starting") == starts + 1
    core.use(3)
