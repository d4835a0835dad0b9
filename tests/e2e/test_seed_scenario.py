"""The seed scenario, end to end: a temperature sensor on a Modbus RTU bus, watched by a pinned
Greengrass Lambda function that texts an operator through Twilio when it gets too hot.

- The sensor is a real pymodbus RTU server (modbus_peer.py --commands) on the far end of a
  socat pty pair; the test changes its holding register as a sensor's reading would change.
- TempMonitor (examples/temp-monitor/temp_monitor.py, written with the unmodified
  greengrasssdk) is created with `aws lambda create-function --publish` and `create-alias`.
  At import it starts a thread that polls the Modbus-RTU connector on modbus/adapter/request;
  its handler gets the answers on modbus/adapter/response, publishes each reading on
  hall/temperature and, once per crossing of TEMPERATURE_LIMIT, a text request on twilio/txt.
- The Twilio Notifications connector sends it to a local Twilio-compatible server
  (twilio_server.py), with the auth token from `aws secretsmanager create-secret`.
- Everything is deployed with the AWS CLI on `coupler up --allow-uncontained` (the Modbus
  connector runs only in a container in Greengrass); the function and the Twilio connector
  are NoContainer by their own IsolationMode (a NoContainer group default would refuse the
  container-only Modbus connector, as in Greengrass).
- A paho-mqtt device, the hall display, reads hall/temperature. A second one, the probe, sees
  the Twilio statuses and sends a "barrier" text of its own: the connector handles requests one
  at a time in arrival order, and the function publishes its text before the reading that
  shows the crossing, so once the barrier has reached the Twilio server every text the
  function asked for before the readings seen so far has reached it too. That makes "exactly
  one text per crossing" a deterministic check, without sleeps.
"""

from __future__ import annotations

import io
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from pathlib import Path

import pytest

from ggtest import MqttDevice, deploy_with_cli, start_server
from test_functions import run_lambda
from test_twilio import create_secret
from twilio_server import TwilioServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "temp-monitor" / "temp_monitor.py"
PEER_SCRIPT = Path(__file__).with_name("modbus_peer.py")
PEER_START_S = 20.0  # python + pymodbus import, on a busy 2-core machine
WAIT_S = 15.0  # the longest any one step may take: generous, it bounds only a failing run

MODBUS = "arn:aws:greengrass:us-east-1::/connectors/ModbusRTUProtocolAdapter/versions/3"
TWILIO = "arn:aws:greengrass:us-east-1::/connectors/TwilioNotifications/versions/5"
SID = "AC" + uuid.uuid4().hex
TOKEN = "t0k3n" + uuid.uuid4().hex
FROM = "+19999999999"  # the connector's DefaultFromPhoneNumber
OPERATOR = "+15551230000"  # who TempMonitor texts
PROBE_NUMBER = "+15557770000"  # where the probe's barrier texts go
STATUS = "twilio/message/status"
READINGS = "hall/temperature"

UNIT, REGISTER = 1, 20  # the sensor: unit 1, holding register 20, in tenths of a degree C
LIMIT = 30
POLL_INTERVAL = 0.2  # seconds
READINGS_PER_STEP = 5  # consecutive polls that must show a new value the same way


def alert_text(celsius: float) -> str:
    return f"Temperature alert: {celsius:.1f} C in the hall, above the limit of {LIMIT} C"


# ---- the sensor on the bus -------------------------------------------------------------------


class Sensor:
    """A socat pty pair with unique names under /dev (the connector opens `port`) and the
    Modbus peer on its far end, taking `set` commands on stdin."""

    def __init__(self, workdir: Path):
        tag = uuid.uuid4().hex[:8]
        self.port, self.far = f"/dev/ttyCPL{tag}a", f"/dev/ttyCPL{tag}b"
        self.log = workdir / "peer.log"
        self.socat: subprocess.Popen | None = None
        self.peer: subprocess.Popen | None = None
        self.lines: queue.Queue = queue.Queue()

    def start(self) -> None:
        self.socat = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={self.port}", f"pty,raw,echo=0,link={self.far}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while not (os.path.exists(self.port) and os.path.exists(self.far)):
            assert self.socat.poll() is None, f"socat exited with {self.socat.returncode}"
            assert time.monotonic() < deadline, "socat made no ptys"
            time.sleep(0.02)
        with open(self.log, "ab") as log:
            self.peer = subprocess.Popen(
                [sys.executable, str(PEER_SCRIPT), self.far, "--commands"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)

        def pump() -> None:
            for line in self.peer.stdout:
                self.lines.put(line.strip())
            self.lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        line = self._line(PEER_START_S)
        if line != f"ready {self.far}":
            pytest.fail(f"modbus_peer.py did not get ready ({line!r}); its log:\n"
                        f"{self.log.read_text()}")

    def _line(self, timeout: float) -> str | None:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def set(self, raw: int) -> None:
        """Make the register hold `raw`; every read decoded from now on answers it."""
        self.peer.stdin.write(f"set {UNIT} {REGISTER} {raw}\n")
        self.peer.stdin.flush()
        line = self._line(10)
        assert line == f"ok set {UNIT} {REGISTER}", f"the peer answered {line!r}"

    def stop(self) -> None:
        if self.peer is not None and self.peer.stdin is not None:
            self.peer.stdin.close()
        for proc in (self.peer, self.socat):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)


# ---- the group -------------------------------------------------------------------------------


def zip_example(tmp: Path) -> Path:
    """The deployment package, as the example's README makes it: the module alone (the core
    has greengrasssdk installed)."""
    path = tmp / "temp_monitor.zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(EXAMPLE, "temp_monitor.py")
    path.write_bytes(buf.getvalue())
    return path


def create_temp_monitor(server, tmp: Path) -> str:
    """`aws lambda create-function --publish` and `create-alias prod`; the alias ARN."""
    out = run_lambda(server, "create-function", "--function-name", "TempMonitor", "--runtime",
                     "python3.8", "--role", "arn:aws:iam::123456789012:role/gg-lambda",
                     "--handler", "temp_monitor.function_handler",
                     "--zip-file", f"fileb://{zip_example(tmp)}", "--publish")
    return run_lambda(server, "create-alias", "--function-name", "TempMonitor", "--name",
                      "prod", "--function-version", out["Version"])["AliasArn"]


def group_parts(function_arn: str, secret_arn: str, port: str) -> dict:
    account = function_arn.split(":")[4]
    cert = f"arn:aws:iot:us-east-1:{account}:cert/" + "5e" * 32

    def thing(name: str) -> str:
        return f"arn:aws:iot:us-east-1:{account}:thing/{name}"

    subs = [
        ("poll", function_arn, "modbus/adapter/request", MODBUS),
        ("readings", MODBUS, "modbus/adapter/response", function_arn),
        ("alert", function_arn, "twilio/txt", TWILIO),
        ("show", function_arn, READINGS, thing("hall-display")),
        ("barrier", thing("probe"), "twilio/txt", TWILIO),
        ("status", TWILIO, STATUS, thing("probe")),
    ]
    return {
        "core": {"Cores": [{"Id": "core", "ThingArn": thing("gateway-core"),
                            "CertificateArn": cert}]},
        "devices": {"Devices": [
            {"Id": name, "ThingArn": thing(name), "CertificateArn": cert}
            for name in ("hall-display", "probe")]},
        "resources": {"Resources": [
            {"Id": "ModbusSerialPort", "Name": "ModbusSerialPort", "ResourceDataContainer": {
                "LocalDeviceResourceData": {"SourcePath": port, "GroupOwnerSetting": {
                    "AutoAddGroupOwner": True}}}},
            {"Id": "TwilioAuthToken", "Name": "TwilioAuthToken", "ResourceDataContainer": {
                "SecretsManagerSecretResourceData": {"ARN": secret_arn}}}]},
        "connectors": {"Connectors": [
            {"Id": "ModbusAdapter", "ConnectorArn": MODBUS, "Parameters": {
                "ModbusSerialPort-ResourceId": "ModbusSerialPort", "ModbusSerialPort": port}},
            {"Id": "TwilioAlerts", "ConnectorArn": TWILIO, "Parameters": {
                "TWILIO_ACCOUNT_SID": SID, "TwilioAuthTokenSecretArn": secret_arn,
                "TwilioAuthTokenSecretArn-ResourceId": "TwilioAuthToken",
                "DefaultFromPhoneNumber": FROM, "IsolationMode": "NoContainer"}}]},
        # The group's default isolation stays GreengrassContainer: a NoContainer default
        # would refuse the container-only Modbus connector (as Greengrass does). The function
        # itself runs NoContainer.
        "functions": {"Functions": [{
            "Id": "TempMonitor", "FunctionArn": function_arn, "FunctionConfiguration": {
                "Executable": "temp_monitor.function_handler", "Pinned": True, "Timeout": 5,
                "EncodingType": "json", "Environment": {
                    "Execution": {"IsolationMode": "NoContainer"},
                    "Variables": {
                        "TEMPERATURE_LIMIT": str(LIMIT), "MODBUS_DEVICE": str(UNIT),
                        "MODBUS_ADDRESS": str(REGISTER), "POLL_INTERVAL": str(POLL_INTERVAL),
                        "ALERT_NAME": "Hall operator", "ALERT_PHONE_NUMBER": OPERATOR}}}}]},
        "subscriptions": {"Subscriptions": [
            {"Id": i, "Source": s, "Subject": t, "Target": d} for i, s, t, d in subs]},
    }


@pytest.fixture(scope="module")
def twilio():
    s = TwilioServer(SID, TOKEN)
    yield s
    s.close()


@pytest.fixture(scope="module")
def sensor(tmp_path_factory):
    if shutil.which("socat") is None:
        pytest.fail("socat is not installed (scripts/install-test-deps.sh installs it)")
    s = Sensor(tmp_path_factory.mktemp("modbus-line"))
    try:
        s.start()
        s.set(215)  # 21.5 C, before the function's first poll
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, twilio, sensor):
    tmp = tmp_path_factory.mktemp("seed")
    server = start_server(tmp, "--allow-uncontained",
                          env={"COUPLER_TWILIO_BASE_URL": twilio.url})
    devices = []
    try:
        secret = create_secret(server, "greengrass-TwilioAuthToken", TOKEN)
        arn = create_temp_monitor(server, tmp)
        _, status = deploy_with_cli(server, group_parts(arn, secret, sensor.port),
                                    name="seed-scenario")
        assert status["DeploymentStatus"] == "Success", status
        display = MqttDevice(server.mqtt_plain_port, "hall-display", READINGS)
        devices.append(display)
        probe = MqttDevice(server.mqtt_plain_port, "probe", STATUS)
        devices.append(probe)
        yield Scenario(server, sensor, twilio, display, probe)
    finally:
        for d in devices:
            d.close()
        server.stop()


# ---- what the test watches -------------------------------------------------------------------


class Scenario:
    def __init__(self, server, sensor: Sensor, twilio: TwilioServer, display: MqttDevice,
                 probe: MqttDevice):
        self.server, self.sensor, self.twilio = server, sensor, twilio
        self.display, self.probe = display, probe
        self.celsius: float | None = None  # what the display showed last
        self.barriers = 0
        self.statuses: list[dict] = []  # Twilio statuses of TempMonitor's texts

    def readings(self, celsius: float, above: bool, alerts: int) -> None:
        """Wait for the display to show `celsius`, then for READINGS_PER_STEP readings in a
        row that all show it, with this alarm state and count of texts. Readings before the
        first one must show the previous value (a poll that was answered before the change)."""
        deadline = time.monotonic() + WAIT_S
        want = {"temperature": celsius, "unit": "C", "limit": float(LIMIT),
                "above_limit": above, "alerts_sent": alerts}
        seen = 0
        while seen < READINGS_PER_STEP:
            left = deadline - time.monotonic()
            assert left > 0, (f"{seen} readings of {celsius} C within {WAIT_S}s; the log of "
                              f"TempMonitor:\n{self.function_log()}")
            try:
                topic, body = self.display.next(timeout=left)
            except queue.Empty:
                continue
            assert topic == READINGS, (topic, body)
            if seen == 0 and body["temperature"] != celsius:
                assert body["temperature"] == self.celsius, (
                    f"waiting for {celsius} C after {self.celsius} C, the display showed {body}")
                continue
            assert body == want, f"reading {seen + 1} after the change to {celsius} C: {body}"
            seen += 1
        self.celsius = celsius

    def texts_so_far(self) -> list:
        """The requests TempMonitor's texts made on the Twilio server since the last call:
        the probe sends a barrier text and waits for it to arrive; the connector handles
        requests in order, so every text the function asked for before the readings seen so
        far has arrived before it."""
        self.barriers += 1
        body = f"barrier {self.barriers}"
        self.probe.request("twilio/txt", {"request": {"recipient": {
            "name": "probe", "phone_number": PROBE_NUMBER, "message": body}},
            "id": f"barrier-{self.barriers}"})
        deadline = time.monotonic() + WAIT_S
        got = []
        while not any(r.form.get("Body") == [body] for r in got):
            assert time.monotonic() < deadline, (
                f"the barrier text did not reach the Twilio server within {WAIT_S}s; "
                f"it got: {[r.form for r in got]}")
            got += self.twilio.take()
            time.sleep(0.02)
        texts = [r for r in got if r.form.get("To") != [PROBE_NUMBER]]
        assert [r.form["Body"] for r in got if r not in texts] == [[body]], got
        # The statuses of the texts (the barrier's last): every one a success.
        while True:
            topic, status = self.probe.next(timeout=WAIT_S)
            assert topic == STATUS and status["response"]["status"] == "success", status
            if status["id"] == f"barrier-{self.barriers}":
                break
            self.statuses.append(status)
        return texts

    def function_log(self) -> str:
        logs = list(Path(self.server.data_dir).glob(
            "ggc/var/log/user/us-east-1/*/TempMonitor.log"))
        return logs[0].read_text() if logs else "<no TempMonitor.log>"


def assert_one_text(texts: list, celsius: float) -> None:
    assert len(texts) == 1, f"expected one text for the crossing, got {[r.form for r in texts]}"
    [req] = texts
    assert req.method == "POST"
    assert req.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert req.auth == (SID, TOKEN)
    assert req.form == {"To": [OPERATOR], "From": [FROM], "Body": [alert_text(celsius)]}


# ---- the scenario ----------------------------------------------------------------------------


def test_one_text_per_crossing_of_the_limit(scenario):
    s = scenario

    # Below the limit: readings reach the display, nobody is texted.
    s.readings(21.5, above=False, alerts=0)
    assert s.texts_so_far() == []

    # Above it: one text, however many polls (and changes) stay above.
    s.sensor.set(352)
    s.readings(35.2, above=True, alerts=1)
    s.sensor.set(368)
    s.readings(36.8, above=True, alerts=1)
    assert_one_text(s.texts_so_far(), 35.2)
    assert [st["id"] for st in s.statuses] == ["temp-alert-1"]
    assert s.statuses[0]["response"]["payload"]["messages"] == {
        "message_status": "queued", "to_number": OPERATOR, "name": "Hall operator"}

    # Back to the limit (not above it) and below: no text.
    s.sensor.set(300)
    s.readings(30.0, above=False, alerts=1)
    s.sensor.set(250)
    s.readings(25.0, above=False, alerts=1)
    assert s.texts_so_far() == []

    # Above again: the second text.
    s.sensor.set(401)
    s.readings(40.1, above=True, alerts=2)
    assert_one_text(s.texts_so_far(), 40.1)
    assert [st["id"] for st in s.statuses] == ["temp-alert-1", "temp-alert-2"]


def test_the_function_log_tells_the_story(scenario):
    text = scenario.function_log()
    assert "35.2 C is above 30 C: texted Hall operator (alert 1)" in text, text
    assert "30.0 C: back to the limit of 30 C or below" in text, text
    assert "40.1 C is above 30 C: texted Hall operator (alert 2)" in text, text
    assert "Traceback" not in text, text
