"""The device MQTT server of `coupler up`, driven by real MQTT clients: mosquitto_pub and
mosquitto_sub (an implementation nobody here wrote), paho-mqtt for flags and reason codes, and
hand-built packets on a raw socket for what no well-behaved client sends.

One group is deployed for the module; only its devices may connect, and only its
subscriptions move their messages:

    sensor-1 -> display   sensors/#           sensor-2 -> display   sensors/+/temp
    sensor-1 -> display   big/payload         sensor-1 -> display   status/sensor-1 (will)
    sensor-1 -> display   retained/#          display  -> sensor-1  commands/sensor-1
    sensor-1 -> sensor-2  qos/#               sensor-1 -> keeper    queue/#
    sensor-2 -> sink      order/#             sensor-1 -> cloud     telemetry/#
    registered -> display certs/registered    sensor-1 -> display   $aws/things/sensor-1/custom

`lonely` is a device of the group that no subscription names; `registered` connects with a
self-signed certificate whose id is its CertificateArn in the device definition; `outsider`
has a certificate from the group CA but is not a device of the group.
"""

from __future__ import annotations

import hashlib
import queue
import re
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

import payloads as P
from ggtest import coupler_bin, metric, wait_deployment

HOST = "127.0.0.1"
THING = f"arn:aws:iot:{P.REGION}:{P.ACCOUNT}:thing/"
CERT = f"arn:aws:iot:{P.REGION}:{P.ACCOUNT}:cert/"
CLIENT_TIMEOUT_S = 10  # any one mosquitto_pub / mosquitto_sub run
QUIET_S = 0.5  # how long "nothing arrives" is watched for

# MQTT 3.1.1 CONNACK return codes; mosquitto_pub/sub exit with them (v5: the reason code).
V3_IDENTIFIER_REJECTED = 2
V3_NOT_AUTHORISED = 5
V5_CLIENT_ID_INVALID = 0x85
V5_NOT_AUTHORISED = 0x87


def thing(name: str) -> str:
    return THING + name


def dummy_cert(name: str) -> str:
    """A well-formed certificate ARN no real certificate has (the group CA's certificates are
    accepted by their common name, not by this id)."""
    return CERT + hashlib.sha256(f"dummy {name}".encode()).hexdigest()


DEVICES = ["sensor-1", "sensor-2", "display", "lonely", "keeper", "sink"]

ROUTES = [
    ("s1-sensors", "sensor-1", "sensors/#", "display"),
    ("s2-temp", "sensor-2", "sensors/+/temp", "display"),
    ("s1-big", "sensor-1", "big/payload", "display"),
    ("s1-status", "sensor-1", "status/sensor-1", "display"),
    ("s1-retained", "sensor-1", "retained/#", "display"),
    ("commands", "display", "commands/sensor-1", "sensor-1"),
    ("s1-qos", "sensor-1", "qos/#", "sensor-2"),
    ("s1-queue", "sensor-1", "queue/#", "keeper"),
    ("s2-order", "sensor-2", "order/#", "sink"),
    ("s1-cloud", "sensor-1", "telemetry/#", "cloud"),
    ("registered", "registered", "certs/registered", "display"),
    ("s1-dollar", "sensor-1", "$aws/things/sensor-1/custom", "display"),
]


def _arn(end: str) -> str:
    return end if end == "cloud" else thing(end)


# ---- certificates -----------------------------------------------------------------------------


def self_signed(out: Path, name: str, cn: str) -> tuple[Path, Path]:
    """An X.509 v3 client certificate signed by its own key (no group CA)."""
    cert, key = out / f"{name}.cert.pem", out / f"{name}.private.key"
    p = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "30", "-subj", f"/CN={cn}",
         "-addext", "basicConstraints=critical,CA:FALSE",
         "-addext", "keyUsage=critical,digitalSignature",
         "-addext", "extendedKeyUsage=clientAuth"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    return cert, key


def certificate_id(cert: Path) -> str:
    """The AWS IoT id of a certificate: SHA-256 of its DER, lower-case hex."""
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    return hashlib.sha256(der).hexdigest()


@dataclass
class Creds:
    cert: Path
    key: Path


@dataclass
class Group:
    group_id: str
    deployment_id: str
    ca: Path  # the group CA, as the core wrote it
    certs: dict[str, Creds]  # by name: sensor-1, display, outsider (group CA), registered, rogue
    issue_out: dict[str, str]  # what `coupler certs issue` printed, by thing


def issue_cert(server, out: Path, name: str) -> str:
    p = subprocess.run(
        [str(coupler_bin()), "certs", "issue", "--thing", name, "--out", str(out),
         "--endpoint", server.url, "--data-dir", str(server.data_dir)],
        env=server.env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, f"certs issue {name}: {p.stdout}\n{p.stderr}"
    return p.stdout


@pytest.fixture(scope="module")
def group(server, gg, tmp_path_factory) -> Group:
    """The module's group, deployed, with device certificates."""
    d = tmp_path_factory.mktemp("certs")
    reg_cert, reg_key = self_signed(d, "registered", "registered")
    rogue_cert, rogue_key = self_signed(d, "rogue", "display")
    devices = [{"Id": n, "ThingArn": thing(n), "CertificateArn": dummy_cert(n)} for n in DEVICES]
    devices.append({"Id": "registered", "ThingArn": thing("registered"),
                    "CertificateArn": CERT + certificate_id(reg_cert)})
    core = gg.create_core_definition(InitialVersion=P.CORES)
    devs = gg.create_device_definition(InitialVersion={"Devices": devices})
    subs = gg.create_subscription_definition(InitialVersion={"Subscriptions": [
        {"Id": i, "Source": _arn(s), "Subject": subject, "Target": _arn(t)}
        for i, s, subject, t in ROUTES]})
    g = gg.create_group(Name="mqtt-devices", InitialVersion={
        "CoreDefinitionVersionArn": core["LatestVersionArn"],
        "DeviceDefinitionVersionArn": devs["LatestVersionArn"],
        "SubscriptionDefinitionVersionArn": subs["LatestVersionArn"],
    })
    dep = gg.create_deployment(GroupId=g["Id"], DeploymentType="NewDeployment",
                               GroupVersionId=g["LatestVersion"])
    status = wait_deployment(gg, g["Id"], dep["DeploymentId"])
    assert status["DeploymentStatus"] == "Success", status
    ca = server.data_dir / "ggc/var/state/server/ca.pem"
    deadline = time.monotonic() + 5
    while not ca.is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ca.is_file(), f"no {ca} after the deployment; log:\n{server.log_tail()}"
    certs = {"registered": Creds(reg_cert, reg_key), "rogue": Creds(rogue_cert, rogue_key)}
    printed = {}
    for name in ("sensor-1", "display", "outsider"):
        printed[name] = issue_cert(server, d, name)
        certs[name] = Creds(d / f"{name}.cert.pem", d / f"{name}.private.key")
    return Group(g["Id"], dep["DeploymentId"], ca, certs, printed)


# ---- metrics -----------------------------------------------------------------------------------


def metrics(server) -> str:
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as r:
        assert r.status == 200
        return r.read().decode()


def closed(server, reason: str) -> float:
    return metric(server, f'coupler_mqtt_closed_total{{reason="{reason}"}}')


def wait_metric(server, name: str, pred, timeout: float = 3.0) -> float:
    deadline = time.monotonic() + timeout
    while True:
        v = metric(server, name)
        if pred(v) or time.monotonic() > deadline:
            return v
        time.sleep(0.05)


# ---- mosquitto clients -------------------------------------------------------------------------


def plain_args(server, client_id: str, version: str = "mqttv311") -> list[str]:
    return ["-h", HOST, "-p", str(server.mqtt_plain_port), "-i", client_id, "-V", version]


def tls_args(server, group: Group, client_id: str, creds: str | None, *, host: str = HOST,
             version: str = "mqttv311", cafile: Path | None = None) -> list[str]:
    args = ["-h", host, "-p", str(server.mqtt_tls_port), "-i", client_id, "-V", version,
            "--cafile", str(cafile or group.ca)]
    if creds is not None:
        c = group.certs[creds]
        args += ["--cert", str(c.cert), "--key", str(c.key)]
    return args


def mosquitto_pub(*args: str, timeout: float = CLIENT_TIMEOUT_S) -> subprocess.CompletedProcess:
    """One mosquitto_pub run, killed by `timeout` if it hangs."""
    try:
        return subprocess.run(["timeout", "-s", "KILL", str(timeout), "mosquitto_pub", *args],
                              capture_output=True, text=True, timeout=timeout + 5,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:  # pragma: no cover - `timeout` kills it first
        pytest.fail(f"mosquitto_pub {' '.join(args)} hung: {e}")


def mosquitto_sub_once(*args: str,
                       timeout: float = CLIENT_TIMEOUT_S) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["timeout", "-s", "KILL", str(timeout), "mosquitto_sub", *args],
                              capture_output=True, text=True, timeout=timeout + 5,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:  # pragma: no cover
        pytest.fail(f"mosquitto_sub {' '.join(args)} hung: {e}")


class MosquittoSub:
    """mosquitto_sub running in the background with -d, its output collected line by line.

    Not wrapped in `timeout`: a test may SIGKILL it to drop its connection without
    DISCONNECT. It is killed at `close()` (the `clients` fixture calls it) and limits itself
    with -W."""

    def __init__(self, *args: str, limit_s: int = 20):
        self.argv = ["mosquitto_sub", "-d", "-W", str(limit_s), *args]
        # stdbuf: line-buffered output through the pipe (stdbuf execs, so the pid is the client's)
        self.proc = subprocess.Popen(["stdbuf", "-oL", *self.argv], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     text=True, bufsize=1)
        self.lines: list[str] = []
        self._cv = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self.lines.append("<eof>")
            self._cv.notify_all()

    def wait_for(self, pattern: str, timeout: float = 5.0) -> re.Match:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for line in self.lines:
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or "<eof>" in self.lines:
                    raise AssertionError(
                        f"{' '.join(self.argv)}: no line matching {pattern!r} within "
                        f"{timeout}s; output:\n" + "\n".join(self.lines))
                self._cv.wait(left)

    def subscribed(self) -> "MosquittoSub":
        self.wait_for(r"received SUBACK")
        return self

    def finish(self, timeout: float = 5.0) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise AssertionError(f"{' '.join(self.argv)} did not exit within {timeout}s; "
                                 "output:\n" + "\n".join(self.lines))
        # Let the pump read the rest of the output.
        self.wait_for("<eof>", timeout=2)
        return rc

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    @property
    def output(self) -> str:
        with self._cv:
            return "\n".join(self.lines)


# ---- paho clients ------------------------------------------------------------------------------


class Dev:
    """A paho-mqtt client for one device, with what the server sent it collected."""

    def __init__(self, client_id: str, *, v5: bool = True, clean: bool = True,
                 will: tuple[str, bytes, int] | None = None, tls: tuple[Path, Creds] | None = None):
        self.client_id = client_id
        self.v5 = v5
        self.clean = clean
        self.c = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, clean_session=None if v5 else clean)
        # A connection the server closes is not re-opened behind the test's back.
        self.c.reconnect_delay_set(min_delay=60, max_delay=120)
        if will is not None:
            self.c.will_set(will[0], will[1], qos=will[2])
        if tls is not None:
            ca, creds = tls
            self.c.tls_set(ca_certs=str(ca), certfile=str(creds.cert), keyfile=str(creds.key))
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connacks: queue.Queue[tuple[ReasonCode, bool]] = queue.Queue()
        self.disconnects: queue.Queue[ReasonCode] = queue.Queue()
        self._lock = threading.Lock()
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._pubacks: dict[int, ReasonCode] = {}
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_publish = self._on_publish
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.started = False
        self.connected = False

    # callbacks (paho's network thread)
    def _on_connect(self, c, u, flags, rc, props):
        self.connected = not rc.is_failure
        self.connacks.put((rc, bool(flags.session_present)))

    def _on_disconnect(self, c, u, flags, rc, props):
        # (paho's is_connected() can stay true after the server closed the connection)
        self.connected = False
        # No reconnection: this ends paho's network thread now rather than after its
        # reconnect wait.
        c.disconnect()
        self.disconnects.put(rc)

    def _on_subscribe(self, c, u, mid, rcs, props):
        with self._lock:
            self._subacks[mid] = list(rcs)

    def _on_publish(self, c, u, mid, rc, props):
        with self._lock:
            self._pubacks[mid] = rc

    def connect(self, port: int, *, keepalive: int = 30, expiry: int | None = None,
                max_packet: int | None = None, expect_present: bool | None = None) -> bool:
        """Connect and wait for a successful CONNACK; returns its session-present flag."""
        kw = {}
        if self.v5:
            kw["clean_start"] = self.clean
            if expiry is not None or max_packet is not None:
                props = Properties(PacketTypes.CONNECT)
                if expiry is not None:
                    props.SessionExpiryInterval = expiry
                if max_packet is not None:
                    props.MaximumPacketSize = max_packet
                kw["properties"] = props
        self.c.connect(HOST, port, keepalive=keepalive, **kw)
        self.c.loop_start()
        self.started = True
        try:
            rc, present = self.connacks.get(timeout=5)
        except queue.Empty:
            raise AssertionError(f"{self.client_id}: no CONNACK within 5 s") from None
        assert not rc.is_failure, f"{self.client_id}: CONNACK refused: {rc} ({rc.value})"
        if expect_present is not None:
            assert present == expect_present, f"{self.client_id}: session present = {present}"
        return present

    def subscribe(self, *filters: tuple[str, int]) -> list[int]:
        """SUBSCRIBE and the SUBACK's codes (granted QoS, or 0x80 and up for a refusal)."""
        res, mid = self.c.subscribe(list(filters))
        assert res == mqtt.MQTT_ERR_SUCCESS, res
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with self._lock:
                if mid in self._subacks:
                    return [rc.value for rc in self._subacks.pop(mid)]
            time.sleep(0.01)
        raise AssertionError(f"{self.client_id}: no SUBACK for {filters} within 5 s")

    def unsubscribe(self, *filters: str) -> None:
        res, _ = self.c.unsubscribe(list(filters))
        assert res == mqtt.MQTT_ERR_SUCCESS, res

    def publish(self, topic: str, payload: bytes | str = b"", qos: int = 1,
                retain: bool = False, wait: bool = True) -> int | None:
        """PUBLISH; for QoS 1 and 2, wait for the exchange to end and return the reason code
        of the PUBACK/PUBREC (always 0 for MQTT 3.1.1)."""
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"publish {topic}: {info.rc}"
        if not wait or qos == 0:
            return None
        info.wait_for_publish(timeout=5)
        assert info.is_published(), f"{self.client_id}: {topic} not acknowledged within 5 s"
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            with self._lock:
                if info.mid in self._pubacks:
                    return self._pubacks.pop(info.mid).value
            time.sleep(0.01)
        raise AssertionError(f"{self.client_id}: no on_publish for {topic}")

    def expect(self, n: int = 1, timeout: float = 5.0) -> list[mqtt.MQTTMessage]:
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < n:
            left = deadline - time.monotonic()
            try:
                got.append(self.messages.get(timeout=max(left, 0.001)))
            except queue.Empty:
                raise AssertionError(
                    f"{self.client_id}: {len(got)} of {n} messages within {timeout}s: "
                    f"{[(m.topic, m.payload[:40]) for m in got]}") from None
        return got

    def collect(self, wait: float) -> list[mqtt.MQTTMessage]:
        """Every message that arrives within `wait` seconds."""
        got = []
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            try:
                got.append(self.messages.get(timeout=left))
            except queue.Empty:
                break
        return got

    def expect_none(self, wait: float = QUIET_S) -> None:
        try:
            m = self.messages.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(
            f"{self.client_id}: unexpected message on {m.topic}: {m.payload[:80]!r}")

    def wait_disconnect(self, timeout: float = 5.0) -> ReasonCode:
        try:
            return self.disconnects.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.client_id}: still connected after {timeout}s") from None

    def close(self) -> None:
        """DISCONNECT, and wait until paho has sent it and closed the socket: a socket left
        open would be taken over (and its will published) by the next test's client."""
        if not self.started:
            return
        self.started = False
        if self.connected:
            self.c.disconnect()
            try:
                self.disconnects.get(timeout=3)
            except queue.Empty:
                pass
        self.c.loop_stop()
        sock = self.c.socket()
        if sock is not None:
            sock.close()


class Clients:
    """What a test opened, closed at its end."""

    def __init__(self, server):
        self.server = server
        self.opened: list = []

    def dev(self, client_id: str, *, port: int | None = None, keepalive: int = 30,
            expiry: int | None = None, max_packet: int | None = None,
            expect_present: bool | None = None, **kw) -> Dev:
        d = Dev(client_id, **kw)
        self.opened.append(d)
        d.connect(port or self.server.mqtt_plain_port, keepalive=keepalive, expiry=expiry,
                  max_packet=max_packet, expect_present=expect_present)
        return d

    def sub(self, *args: str, limit_s: int = 20) -> MosquittoSub:
        s = MosquittoSub(*args, limit_s=limit_s)
        self.opened.append(s)
        return s

    def raw(self, port: int | None = None) -> "Raw":
        r = Raw(port or self.server.mqtt_plain_port)
        self.opened.append(r)
        return r

    def close(self) -> None:
        for o in reversed(self.opened):
            o.close()


@pytest.fixture
def clients(server, group):
    c = Clients(server)
    yield c
    c.close()


# ---- raw packets -------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return len(b).to_bytes(2, "big") + b


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def connect_packet(client_id: str, *, v5: bool = False, keepalive: int = 30, clean: bool = True,
                   will: tuple[str, bytes] | None = None, will_qos: int = 0,
                   props: bytes = b"", will_props: bytes = b"") -> bytes:
    """CONNECT; `props` and `will_props` are MQTT 5 properties, already encoded."""
    flags = 0x02 if clean else 0x00
    payload = _str(client_id)
    if will is not None:
        flags |= 0x04 | (will_qos << 3)
        if v5:
            payload += _varint(len(will_props)) + will_props
        payload += _str(will[0]) + _str(will[1])
    vh = _str("MQTT") + bytes([5 if v5 else 4, flags]) + keepalive.to_bytes(2, "big")
    if v5:
        vh += _varint(len(props)) + props
    return packet(0x10, vh + payload)


def session_expiry_prop(secs: int) -> bytes:
    return b"\x11" + secs.to_bytes(4, "big")


def will_delay_prop(secs: int) -> bytes:
    return b"\x18" + secs.to_bytes(4, "big")


def publish_packet(topic: str, payload: bytes, *, v5: bool = False, qos: int = 0,
                   packet_id: int | None = None, dup: bool = False, props: bytes = b"") -> bytes:
    body = _str(topic)
    if qos:
        body += (packet_id or 1).to_bytes(2, "big")
    if v5:
        body += _varint(len(props)) + props
    return packet(0x30 | (0x08 if dup else 0) | (qos << 1), body + payload)


def parse_publish(first: int, body: bytes, *, v5: bool = False) -> dict:
    """The fields of a PUBLISH the server sent."""
    assert first & 0xF0 == 0x30, f"expected PUBLISH, got 0x{first:02x} {body!r}"
    qos = (first >> 1) & 3
    n = int.from_bytes(body[:2], "big")
    topic, i = body[2:2 + n].decode(), 2 + n
    packet_id = None
    if qos:
        packet_id, i = int.from_bytes(body[i:i + 2], "big"), i + 2
    if v5:
        plen, i = _read_varint(body, i)
        i += plen
    return {"dup": bool(first & 0x08), "qos": qos, "retain": bool(first & 1), "topic": topic,
            "packet_id": packet_id, "payload": body[i:]}


def ack_packet(kind: int, packet_id: int) -> bytes:
    """PUBACK (0x40), PUBREC (0x50), PUBREL (0x62), PUBCOMP (0x70)."""
    return packet(kind, packet_id.to_bytes(2, "big"))


def subscribe_packet(packet_id: int, filters: list[tuple[str, int]], *, v5: bool = False) -> bytes:
    body = packet_id.to_bytes(2, "big") + (b"\x00" if v5 else b"")
    for f, qos in filters:
        body += _str(f) + bytes([qos])
    return packet(0x82, body)


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    n, mult = 0, 1
    while True:
        b = data[i]
        n += (b & 0x7F) * mult
        mult *= 128
        i += 1
        if not b & 0x80:
            return n, i


def suback(r: "Raw", *, v5: bool = False) -> tuple[int, list[int]]:
    """(packet id, return/reason codes) of the next packet, a SUBACK."""
    p = r.packet(3)
    assert p is not None, "closed instead of SUBACK"
    first, body = p
    assert first == 0x90, f"expected SUBACK, got 0x{first:02x} {body!r}"
    i = 2
    if v5:
        n, i = _read_varint(body, i)
        i += n
    return int.from_bytes(body[:2], "big"), list(body[i:])


PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"


class Raw:
    """A TCP connection speaking hand-built MQTT."""

    def __init__(self, port: int):
        self.s = socket.create_connection((HOST, port), timeout=5)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.s.sendall(data)

    def _fill(self, deadline: float) -> bool:
        """Read more; False at end of stream (or reset)."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.s.settimeout(left)
        try:
            data = self.s.recv(65536)
        except socket.timeout:
            raise TimeoutError from None
        except (ConnectionResetError, BrokenPipeError):
            return False
        if not data:
            return False
        self.buf += data
        return True

    def packet(self, timeout: float = 5.0) -> tuple[int, bytes] | None:
        """The next packet (first byte, body), or None if the server closed the connection.
        TimeoutError if neither happens in time."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                n, mult, i = 0, 1, 1
                while i < len(self.buf) and i <= 4:
                    b = self.buf[i]
                    n += (b & 0x7F) * mult
                    mult *= 128
                    i += 1
                    if not b & 0x80:
                        if len(self.buf) >= i + n:
                            first, body = self.buf[0], self.buf[i:i + n]
                            self.buf = self.buf[i + n:]
                            return first, body
                        break
            if not self._fill(deadline):
                return None

    def connack(self, timeout: float = 5.0) -> tuple[bool, int]:
        """(session present, return/reason code) of the CONNACK."""
        p = self.packet(timeout)
        assert p is not None, "closed instead of CONNACK"
        first, body = p
        assert first == 0x20, f"expected CONNACK, got packet 0x{first:02x} {body!r}"
        return bool(body[0] & 1), body[1]

    def closed_within(self, timeout: float) -> list[tuple[int, bytes]]:
        """The packets the server sent before closing the connection; fails if it is still
        open after `timeout`."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                p = self.packet(max(deadline - time.monotonic(), 0.001))
            except TimeoutError:
                raise AssertionError(f"still open after {timeout}s (packets: {seen})") from None
            if p is None:
                return seen
            seen.append(p)

    def close(self) -> None:
        try:
            self.s.close()
        except OSError:
            pass


def disconnect_reason(packets: list[tuple[int, bytes]]) -> int | None:
    """The reason code of an MQTT 5 DISCONNECT among the packets, if there is one."""
    for first, body in packets:
        if first == 0xE0:
            return body[0] if body else 0
    return None


# ---- the tests ---------------------------------------------------------------------------------


def test_group_ca_and_device_certificates(server, group):
    """The core writes the group CA after the deployment; `coupler certs issue` writes a key and
    a certificate with the thing as common name, the same CA, and prints the certificate's
    AWS IoT ARN (SHA-256 of its DER)."""
    assert "BEGIN CERTIFICATE" in group.ca.read_text()
    out = group.certs["sensor-1"].cert.parent
    assert (out / "root.ca.pem").read_text().strip() == group.ca.read_text().strip()
    for name in ("sensor-1", "display", "outsider"):
        m = re.search(r"CertificateArn:\s+(arn:aws:iot:\S+:cert/([0-9a-f]{64}))",
                      group.issue_out[name])
        assert m, group.issue_out[name]
        assert m.group(2) == certificate_id(group.certs[name].cert), group.issue_out[name]
        text = subprocess.run(["openssl", "x509", "-noout", "-subject", "-in",
                               str(group.certs[name].cert)],
                              capture_output=True, text=True, timeout=10).stdout
        assert f"CN = {name}" in text or f"CN={name}" in text, text
        v = subprocess.run(["openssl", "verify", "-CAfile", str(group.ca),
                            str(group.certs[name].cert)],
                           capture_output=True, text=True, timeout=10)
        assert v.returncode == 0, v.stdout + v.stderr


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mosquitto_round_trip_plain(server, group, clients, version, qos):
    """mosquitto_pub from sensor-1 reaches mosquitto_sub of display along `sensors/#`, at the
    QoS asked for, over plain TCP, in MQTT 3.1.1 and 5."""
    sub = clients.sub(*plain_args(server, "display", version), "-t", "sensors/#",
                      "-q", str(qos), "-v", "-C", "1").subscribed()
    payload = f"21.5 {version} q{qos}"
    p = mosquitto_pub(*plain_args(server, "sensor-1", version), "-t", "sensors/room1/temp",
                      "-q", str(qos), "-m", payload)
    assert p.returncode == 0, p.stdout + p.stderr
    assert sub.finish() == 0, sub.output
    assert f"sensors/room1/temp {payload}" in sub.lines, sub.output
    m = sub.wait_for(r"received PUBLISH \(d0, q(\d), r(\d)")
    assert (int(m.group(1)), m.group(2)) == (qos, "0"), sub.output


@pytest.mark.parametrize("version,code", [("mqttv311", V3_NOT_AUTHORISED),
                                          ("mqttv5", V5_NOT_AUTHORISED)])
def test_only_devices_of_the_group_connect(server, group, version, code):
    """A client id that is no device of the deployed group (a stranger, the core itself, a
    thing name in another case) is refused at CONNACK: not authorised."""
    for client_id in ("stranger", "MyCore", "Sensor-1", "sensor-1 "):
        p = mosquitto_pub(*plain_args(server, client_id, version), "-t", "sensors/x", "-m", "x")
        assert p.returncode == code, (client_id, p.returncode, p.stdout + p.stderr)
    # A device of the group without any subscription may still connect.
    p = mosquitto_pub(*plain_args(server, "lonely", version), "-t", "sensors/x", "-m", "x")
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize("v5,code", [(False, V3_IDENTIFIER_REJECTED), (True, V5_CLIENT_ID_INVALID)])
def test_empty_client_id_is_rejected(server, group, clients, v5, code):
    """A device names itself with its client id: an empty one is rejected."""
    r = clients.raw()
    r.send(connect_packet("", v5=v5))
    present, rc = r.connack()
    assert (present, rc) == (False, code)
    r.closed_within(3)


# -- TLS --


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_tls_round_trip_with_group_ca_certificates(server, group, clients, host):
    """Over TLS, devices present certificates the group CA issued and verify the server with
    the group CA, by host name or address; messages flow as over plain TCP."""
    sub = clients.sub(*tls_args(server, group, "display", "display", host=host),
                      "-t", "sensors/#", "-q", "1", "-v", "-C", "1").subscribed()
    p = mosquitto_pub(*tls_args(server, group, "sensor-1", "sensor-1", host=host),
                      "-t", "sensors/tls", "-q", "1", "-m", f"over tls via {host}")
    assert p.returncode == 0, p.stdout + p.stderr
    assert sub.finish() == 0, sub.output
    assert f"sensors/tls over tls via {host}" in sub.lines, sub.output


def test_tls_paho_round_trip_mqtt5(server, group, clients):
    display = clients.dev("display", port=server.mqtt_tls_port,
                          tls=(group.ca, group.certs["display"]))
    assert display.subscribe(("sensors/#", 1)) == [1]
    s1 = clients.dev("sensor-1", port=server.mqtt_tls_port,
                     tls=(group.ca, group.certs["sensor-1"]))
    assert s1.publish("sensors/paho", b"tls5", qos=1) == 0
    (m,) = display.expect(1)
    assert (m.topic, m.payload, m.qos) == ("sensors/paho", b"tls5", 1)


def test_tls_server_certificate(server, group):
    """The server's certificate chains to the group CA and names localhost and 127.0.0.1."""
    creds = group.certs["display"]
    for host in ("localhost", "127.0.0.1"):
        ctx = ssl.create_default_context(cafile=str(group.ca))
        ctx.load_cert_chain(str(creds.cert), str(creds.key))
        with socket.create_connection((HOST, server.mqtt_tls_port), timeout=5) as tcp:
            with ctx.wrap_socket(tcp, server_hostname=host) as tls:
                cert = tls.getpeercert()
        names = {v for _, v in cert.get("subjectAltName", ())}
        assert {"localhost", "127.0.0.1"} <= names, cert
    # A client trusting another CA refuses the server.
    p = mosquitto_pub(*tls_args(server, group, "sensor-1", "sensor-1",
                                cafile=group.certs["rogue"].cert), "-t", "sensors/x", "-m", "x")
    assert p.returncode != 0, p.stdout + p.stderr


def test_tls_without_client_certificate_is_refused(server, group):
    before = closed(server, "tls_failed")
    p = mosquitto_pub(*tls_args(server, group, "sensor-1", None), "-t", "sensors/x",
                      "-q", "1", "-m", "no cert")
    assert p.returncode != 0, p.stdout + p.stderr
    assert wait_metric(server, 'coupler_mqtt_closed_total{reason="tls_failed"}',
                       lambda v: v > before) > before, server.log_tail()


def test_tls_certificate_of_another_ca_is_refused(server, group):
    """A self-signed certificate naming a device of the group, but neither issued by the group
    CA nor registered, fails the handshake."""
    before = closed(server, "tls_failed")
    p = mosquitto_pub(*tls_args(server, group, "display", "rogue"), "-t", "sensors/x",
                      "-q", "1", "-m", "rogue")
    assert p.returncode != 0, p.stdout + p.stderr
    assert wait_metric(server, 'coupler_mqtt_closed_total{reason="tls_failed"}',
                       lambda v: v > before) > before, server.log_tail()


def test_tls_server_certificate_is_no_client_certificate(server, group):
    """The core's own certificate, from the group CA but for server authentication only, does
    not authenticate a client."""
    before = closed(server, "tls_failed")
    state = server.data_dir / "ggc/var/state/server"
    group.certs["core-server"] = Creds(state / "server.crt", state / "server.key")
    p = mosquitto_pub(*tls_args(server, group, "localhost", "core-server"), "-t", "sensors/x",
                      "-q", "1", "-m", "server cert")
    assert p.returncode != 0, p.stdout + p.stderr
    assert wait_metric(server, 'coupler_mqtt_closed_total{reason="tls_failed"}',
                       lambda v: v > before) > before, server.log_tail()


@pytest.mark.parametrize("version,code", [("mqttv311", V3_NOT_AUTHORISED),
                                          ("mqttv5", V5_NOT_AUTHORISED)])
def test_tls_client_id_must_be_the_certificate_thing(server, group, version, code):
    # sensor-1's certificate, but the client id of another device of the group
    p = mosquitto_pub(*tls_args(server, group, "display", "sensor-1", version=version),
                      "-t", "sensors/x", "-m", "x")
    assert p.returncode == code, p.stdout + p.stderr
    # a certificate from the group CA for a thing that is not a device of the group
    p = mosquitto_pub(*tls_args(server, group, "outsider", "outsider", version=version),
                      "-t", "sensors/x", "-m", "x")
    assert p.returncode == code, p.stdout + p.stderr
    # and the right pairing connects
    p = mosquitto_pub(*tls_args(server, group, "sensor-1", "sensor-1", version=version),
                      "-t", "sensors/x", "-m", "x")
    assert p.returncode == 0, p.stdout + p.stderr


def test_tls_registered_certificate(server, group, clients):
    """A certificate whose id is the device's CertificateArn is accepted for that device only,
    though no CA of the group issued it."""
    sub = clients.sub(*tls_args(server, group, "display", "display"),
                      "-t", "certs/registered", "-q", "1", "-v", "-C", "1").subscribed()
    p = mosquitto_pub(*tls_args(server, group, "registered", "registered"),
                      "-t", "certs/registered", "-q", "1", "-m", "self-signed but registered")
    assert p.returncode == 0, p.stdout + p.stderr
    assert sub.finish() == 0, sub.output
    assert "certs/registered self-signed but registered" in sub.lines, sub.output
    p = mosquitto_pub(*tls_args(server, group, "display", "registered"),
                      "-t", "sensors/x", "-m", "x")
    assert p.returncode == V3_NOT_AUTHORISED, p.stdout + p.stderr


# -- authorisation by the group's subscriptions --


@pytest.mark.parametrize("v5", [False, True], ids=["mqttv311", "mqttv5"])
def test_subscribe_is_granted_only_along_group_subscriptions(server, group, clients, v5):
    display = clients.dev("display", v5=v5)
    codes = display.subscribe(("sensors/#", 1), ("sensors/+/temp", 2), ("#", 0),
                              ("commands/#", 1), ("status/sensor-1", 1), ("big/+", 0),
                              ("other/topic", 1), ("queue/#", 1))
    assert codes == [1, 2, 0, 0x80, 1, 0, 0x80, 0x80]
    s1 = clients.dev("sensor-1", v5=v5)
    assert s1.subscribe(("commands/sensor-1", 1), ("commands/+", 1), ("commands/sensor-2", 1),
                        ("sensors/#", 1)) == [1, 1, 0x80, 0x80]
    lonely = clients.dev("lonely", v5=v5)
    assert lonely.subscribe(("#", 1)) == [0x80]


@pytest.mark.parametrize("v5", [False, True], ids=["mqttv311", "mqttv5"])
def test_subscribe_refusal_reason_codes(server, group, clients, v5):
    """What paho will not even send: a malformed filter (MQTT 5: 0x8F) and a shared
    subscription (0x9E, not supported); 3.1.1 has only 0x80. The connection stays usable."""
    r = clients.raw()
    r.send(connect_packet("display", v5=v5))
    assert r.connack()[1] == 0
    r.send(subscribe_packet(7, [("sensors/#/x", 1), ("$share/g/sensors/#", 1), ("sensors/+", 1),
                                ("commands/#", 2), ("sensors/a+", 0)], v5=v5))
    pid, codes = suback(r, v5=v5)
    assert pid == 7
    assert codes == ([0x8F, 0x9E, 1, 0x80, 0x8F] if v5 else [0x80, 0x80, 1, 0x80, 0x80]), codes
    r.send(PINGREQ)
    assert r.packet(2) == (0xD0, b"")


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
def test_mosquitto_sub_denied(server, group, version):
    p = mosquitto_sub_once(*plain_args(server, "display", version), "-t", "commands/#", "-E")
    # (mosquitto_sub 2.0.11 exits 0 here; it says so on stderr)
    assert "All subscription requests were denied" in p.stdout + p.stderr, p.stdout + p.stderr


def test_publish_reaches_devices_only_along_subscriptions(server, group, clients):
    display = clients.dev("display")
    assert display.subscribe(("#", 1)) == [1]
    s1, s2 = clients.dev("sensor-1"), clients.dev("sensor-2")
    lonely = clients.dev("lonely")
    s1.publish("sensors/a", b"s1 sensors")  # sensors/#: delivered
    s1.publish("commands/sensor-1", b"s1 commands")  # display -> sensor-1 only: not
    s1.publish("nowhere/x", b"s1 nowhere")  # no route
    s1.publish("queue/x", b"s1 queue")  # to keeper, not display
    s2.publish("sensors/r/temp", b"s2 temp")  # sensors/+/temp: delivered
    s2.publish("sensors/r/humidity", b"s2 humidity")  # sensor-2 has only +/temp
    s2.publish("sensors/a", b"s2 sensors")  # not sensor-2's route
    lonely.publish("sensors/a", b"lonely")  # lonely is the source of nothing
    # Every message above was routed before its PUBACK; this one comes after all of them.
    s1.publish("sensors/end", b"end")
    got = [(m.topic, m.payload) for m in display.expect(3)]
    assert sorted(got) == sorted([("sensors/a", b"s1 sensors"), ("sensors/r/temp", b"s2 temp"),
                                  ("sensors/end", b"end")]), got
    display.expect_none(0.3)


def test_puback_reason_codes_mqtt5(server, group, clients):
    """QoS 1 PUBACK: success along a subscription, 0x10 no matching subscribers for a device
    that is the source of other subscriptions, 0x87 not authorised for one that is the source
    of none."""
    s1 = clients.dev("sensor-1")
    lonely = clients.dev("lonely")
    assert s1.publish("sensors/x", b"ok", qos=1) == 0x00
    assert s1.publish("telemetry/cpu", b"to the cloud", qos=1) == 0x00
    assert s1.publish("nowhere/x", b"no route", qos=1) == 0x10
    assert lonely.publish("sensors/x", b"no route", qos=1) == 0x87


@pytest.mark.parametrize("v5", [False, True], ids=["mqttv311", "mqttv5"])
def test_qos_is_the_lower_of_published_and_granted(server, group, clients, v5):
    s2 = clients.dev("sensor-2", v5=v5)
    assert s2.subscribe(("qos/s0/#", 0), ("qos/s1/#", 1), ("qos/s2/#", 2)) == [0, 1, 2]
    s1 = clients.dev("sensor-1", v5=v5)
    sent = {}
    for s in range(3):
        for p in range(3):
            topic = f"qos/s{s}/p{p}"
            sent[topic] = (min(s, p), f"granted {s} published {p}".encode())
            s1.publish(topic, sent[topic][1], qos=p)
    got = {m.topic: (m.qos, m.payload) for m in s2.expect(9)}
    assert got == sent
    s2.expect_none(0.3)


def test_wildcards_in_group_and_device_subscriptions(server, group, clients):
    display = clients.dev("display")
    assert display.subscribe(("sensors/+/temp", 1)) == [1]
    s1, s2 = clients.dev("sensor-1"), clients.dev("sensor-2")
    s1.publish("sensors/k/temp", b"1")  # group # and device +: delivered
    s1.publish("sensors/k/hum", b"2")  # routed, but display did not subscribe to it
    s1.publish("sensors/k/l/temp", b"3")  # + is one level
    s2.publish("sensors/k/temp", b"4")  # group +: delivered
    s2.publish("sensors/k/l/temp", b"5")  # not along sensor-2's sensors/+/temp
    s1.publish("sensors/z/temp", b"end")
    got = sorted((m.topic, m.payload) for m in display.expect(3))
    assert got == [("sensors/k/temp", b"1"), ("sensors/k/temp", b"4"),
                   ("sensors/z/temp", b"end")], got
    display.expect_none(0.3)
    # `sensors/#` matches `sensors` itself, in the group's subscription and the device's.
    assert display.subscribe(("sensors/#", 1)) == [1]
    s1.publish("sensors", b"parent")
    (m,) = display.expect(1)
    assert (m.topic, m.payload) == ("sensors", b"parent")
    # Overlapping subscriptions: one copy, at the best QoS they grant.
    assert display.subscribe(("sensors/#", 0), ("sensors/+/temp", 2)) == [0, 2]
    s1.publish("sensors/o/temp", b"overlap", qos=2)
    (m,) = display.expect(1)
    assert (m.payload, m.qos) == (b"overlap", 2)
    display.expect_none(0.3)


def test_dollar_topics_and_leading_wildcards(server, group, clients):
    """A filter starting with a wildcard does not match topics starting with `$`, in the
    device's subscription as in the group's."""
    display = clients.dev("display")
    assert display.subscribe(("#", 1), ("+/things/#", 1)) == [1, 1]
    s1 = clients.dev("sensor-1")
    assert s1.publish("$aws/things/sensor-1/custom", b"dollar") == 0  # routed to display
    s1.publish("sensors/marker", b"marker")
    assert [m.payload for m in display.expect(1)] == [b"marker"]
    display.expect_none(0.3)
    assert display.subscribe(("$aws/things/+/custom", 1)) == [1]
    s1.publish("$aws/things/sensor-1/custom", b"dollar 2")
    (m,) = display.expect(1)
    assert (m.topic, m.payload) == ("$aws/things/sensor-1/custom", b"dollar 2")


def test_unsubscribe_stops_delivery(server, group, clients):
    display = clients.dev("display")
    assert display.subscribe(("sensors/#", 1)) == [1]
    s1 = clients.dev("sensor-1")
    s1.publish("sensors/u", b"before")
    assert display.expect(1)[0].payload == b"before"
    display.unsubscribe("sensors/#")
    time.sleep(0.2)
    s1.publish("sensors/u", b"after")
    display.expect_none()


def test_unsuback_reason_codes_mqtt5(server, group, clients):
    r = clients.raw()
    r.send(connect_packet("display", v5=True))
    assert r.connack()[1] == 0
    r.send(subscribe_packet(1, [("sensors/#", 1)], v5=True))
    assert suback(r, v5=True) == (1, [1])
    r.send(packet(0xA2, b"\x00\x02\x00" + _str("sensors/#") + _str("never/subscribed")))
    first, body = r.packet(3)
    assert first == 0xB0 and body[:2] == b"\x00\x02", (first, body)
    plen, i = _read_varint(body, 2)
    assert list(body[i + plen:]) == [0x00, 0x11]


# -- retained messages --


def test_retained_messages(server, group, clients):
    s1 = clients.dev("sensor-1")
    assert s1.publish("retained/r1", b"v1", qos=1, retain=True) == 0
    assert s1.publish("retained/r1", b"v2", qos=1, retain=True) == 0  # replaces v1
    assert s1.publish("retained/r2", b"other", qos=0, retain=True) is None
    time.sleep(0.2)
    # A later subscriber gets the latest retained message of each topic, flagged retained.
    display = clients.dev("display")
    assert display.subscribe(("retained/#", 1)) == [1]
    got = {m.topic: (m.payload, m.retain, m.qos) for m in display.expect(2)}
    assert got == {"retained/r1": (b"v2", True, 1), "retained/r2": (b"other", True, 0)}, got
    display.expect_none(0.3)
    # Retained messages reach only devices the group routes them to.
    keeper = clients.dev("keeper")
    assert keeper.subscribe(("#", 1)) == [1]
    keeper.expect_none(0.3)
    # mosquitto_sub (3.1.1) sees the retain flag too.
    sub = clients.sub(*plain_args(server, "display"), "-t", "retained/r1", "-q", "1",
                      "-v", "-C", "1")
    assert sub.finish() == 0, sub.output
    assert "retained/r1 v2" in sub.lines, sub.output
    assert sub.wait_for(r"received PUBLISH \(d0, q1, r1"), sub.output
    # An empty retained payload clears it.
    p = mosquitto_pub(*plain_args(server, "sensor-1"), "-t", "retained/r1", "-r", "-n", "-q", "1")
    assert p.returncode == 0, p.stdout + p.stderr
    p = mosquitto_pub(*plain_args(server, "sensor-1"), "-t", "retained/r2", "-r", "-n", "-q", "1")
    assert p.returncode == 0, p.stdout + p.stderr
    display.close()
    later = clients.dev("display")
    assert later.subscribe(("retained/#", 1)) == [1]
    later.expect_none()


def test_retain_options_mqtt5(server, group, clients):
    """Retain as published keeps the flag on live delivery; retain handling 1 sends retained
    messages only for a new subscription, 2 never."""
    from paho.mqtt.subscribeoptions import SubscribeOptions

    s1 = clients.dev("sensor-1")
    assert s1.publish("retained/opt", b"kept", qos=1, retain=True) == 0
    try:
        display = clients.dev("display")
        assert display.subscribe(("retained/opt", SubscribeOptions(qos=1, retainHandling=2))) == [1]
        display.expect_none(0.3)
        assert display.subscribe(("retained/+", SubscribeOptions(qos=1, retainHandling=1))) == [1]
        (m,) = display.expect(1)
        assert (m.payload, m.retain) == (b"kept", True)
        assert display.subscribe(("retained/+", SubscribeOptions(qos=1, retainHandling=1))) == [1]
        display.expect_none(0.3)  # not new: nothing sent again
        assert display.subscribe(("retained/#", SubscribeOptions(
            qos=1, retainAsPublished=True, retainHandling=2))) == [1]
        display.unsubscribe("retained/opt")
        display.unsubscribe("retained/+")
        time.sleep(0.1)
        s1.publish("retained/live", b"live", qos=1, retain=True)
        (m,) = display.expect(1)
        assert (m.payload, m.retain) == (b"live", True)
    finally:
        s1.publish("retained/opt", b"", qos=1, retain=True)
        s1.publish("retained/live", b"", qos=1, retain=True)


def test_many_retained_messages_beyond_the_inflight_window(server, group, clients):
    """More retained messages match a new subscription than fit in flight: all arrive."""
    s1 = clients.dev("sensor-1")
    n = 80
    try:
        for i in range(n):
            s1.publish(f"retained/many/{i}", f"r{i}".encode(), qos=1, retain=True)
        for v5 in (False, True):
            display = clients.dev("display", v5=v5)
            assert display.subscribe(("retained/many/#", 1)) == [1]
            got = {m.topic: (m.payload, m.retain) for m in display.expect(n)}
            assert got == {f"retained/many/{i}": (f"r{i}".encode(), True) for i in range(n)}
            display.expect_none(0.3)
            display.close()
    finally:
        for i in range(n):
            s1.publish(f"retained/many/{i}", b"", qos=1, retain=True)


def test_retained_flag_on_live_delivery_mqtt311(server, group, clients):
    """MQTT 3.1.1: a retained message sent to an existing subscription has retain 0."""
    display = clients.dev("display", v5=False)
    assert display.subscribe(("retained/live", 1)) == [1]
    s1 = clients.dev("sensor-1", v5=False)
    s1.publish("retained/live", b"now", qos=1, retain=True)
    (m,) = display.expect(1)
    assert (m.payload, m.retain) == (b"now", False)
    s1.publish("retained/live", b"", qos=1, retain=True)  # clear it for other tests


# -- wills --


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
def test_will_on_abnormal_close(server, group, clients, version):
    """A device killed without DISCONNECT: its will goes out along the group's subscriptions."""
    display = clients.dev("display")
    assert display.subscribe(("status/sensor-1", 1)) == [1]
    dying = clients.sub(*plain_args(server, "sensor-1", version), "-t", "commands/sensor-1",
                        "--will-topic", "status/sensor-1", "--will-payload", f"gone {version}",
                        "--will-qos", "1").subscribed()
    dying.close()  # SIGKILL: the kernel closes the socket, no DISCONNECT
    (m,) = display.expect(1)
    assert (m.topic, m.payload) == ("status/sensor-1", f"gone {version}".encode())


def test_will_goes_only_along_subscriptions(server, group, clients):
    """A will is a message from its device: sensor-2 has no route on status/sensor-1."""
    display = clients.dev("display")
    assert display.subscribe(("status/sensor-1", 1), ("sensors/#", 1)) == [1, 1]
    r = clients.raw()
    r.send(connect_packet("sensor-2", will=("status/sensor-1", b"not sensor-2's to send")))
    assert r.connack()[1] == 0
    r.close()
    display.expect_none()


def test_will_on_raw_socket_close(server, group, clients):
    display = clients.dev("display")
    assert display.subscribe(("status/sensor-1", 1)) == [1]
    r = clients.raw()
    r.send(connect_packet("sensor-1", v5=True, will=("status/sensor-1", b"socket closed")))
    assert r.connack() == (False, 0)
    r.close()
    (m,) = display.expect(1)
    assert m.payload == b"socket closed"


def test_no_will_on_disconnect(server, group, clients):
    display = clients.dev("display")
    assert display.subscribe(("status/sensor-1", 1)) == [1]
    p = mosquitto_pub(*plain_args(server, "sensor-1"), "-t", "sensors/x", "-m", "bye",
                      "--will-topic", "status/sensor-1", "--will-payload", "should not be sent")
    assert p.returncode == 0, p.stdout + p.stderr
    s1 = clients.dev("sensor-1", will=("status/sensor-1", b"not sent either", 1))
    s1.close()
    display.expect_none(1.0)


def test_will_on_mqtt5_disconnect_with_will(server, group, clients):
    display = clients.dev("display")
    assert display.subscribe(("status/sensor-1", 1)) == [1]
    s1 = clients.dev("sensor-1", will=("status/sensor-1", b"asked for", 1))
    s1.c.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))
    (m,) = display.expect(1)
    assert m.payload == b"asked for"


def test_will_on_takeover(server, group, clients):
    """A connection ended by another with the same client id did not DISCONNECT: its will
    goes out."""
    display = clients.dev("display")
    assert display.subscribe(("status/sensor-1", 1)) == [1]
    first = clients.raw()
    first.send(connect_packet("sensor-1", will=("status/sensor-1", b"taken over")))
    assert first.connack()[1] == 0
    clients.dev("sensor-1")
    first.closed_within(3)
    (m,) = display.expect(1)
    assert m.payload == b"taken over"


def test_will_on_keepalive_timeout(server, group, clients):
    display = clients.dev("display")
    assert display.subscribe(("status/sensor-1", 1)) == [1]
    r = clients.raw()
    r.send(connect_packet("sensor-1", keepalive=1, will=("status/sensor-1", b"went quiet")))
    assert r.connack()[1] == 0
    r.closed_within(4)
    (m,) = display.expect(1, timeout=3)
    assert m.payload == b"went quiet"


def test_mqtt5_will_delay(server, group, clients):
    """MQTT 5: a will with a delay goes out after the delay, and not at all if the device is
    back within it."""
    display = clients.dev("display")
    assert display.subscribe(("status/sensor-1", 1)) == [1]
    r = clients.raw()
    r.send(connect_packet("sensor-1", v5=True, clean=True, props=session_expiry_prop(30),
                          will=("status/sensor-1", b"late"), will_props=will_delay_prop(1)))
    assert r.connack()[1] == 0
    r.close()
    t0 = time.monotonic()
    (m,) = display.expect(1, timeout=4)
    waited = time.monotonic() - t0
    assert m.payload == b"late"
    assert waited >= 0.8, f"the will came after {waited:.2f}s, before its 1 s delay"
    # Back within the delay: no will.
    r = clients.raw()
    r.send(connect_packet("sensor-1", v5=True, clean=True, props=session_expiry_prop(30),
                          will=("status/sensor-1", b"never"), will_props=will_delay_prop(1)))
    assert r.connack()[1] == 0
    r.close()
    time.sleep(0.2)
    back = clients.raw()
    back.send(connect_packet("sensor-1", v5=True, clean=False))
    assert back.connack() == (True, 0)
    display.expect_none(1.5)
    back.send(DISCONNECT)
    back.closed_within(3)


def test_mqtt5_will_delay_cancelled_by_a_resumed_session(server, group, clients):
    """MQTT 5 [MQTT-3.1.3-9]: if a new connection to the session is made before the will delay
    has passed, the will is not sent, even if that connection has ended again since."""
    display = clients.dev("display")
    assert display.subscribe(("status/sensor-1", 1)) == [1]
    r = clients.raw()
    r.send(connect_packet("sensor-1", v5=True, clean=True, props=session_expiry_prop(30),
                          will=("status/sensor-1", b"stale will"), will_props=will_delay_prop(1)))
    assert r.connack()[1] == 0
    r.close()
    time.sleep(0.3)
    back = clients.raw()
    back.send(connect_packet("sensor-1", v5=True, clean=False, props=session_expiry_prop(30)))
    assert back.connack() == (True, 0)  # the same session, resumed within the delay
    back.send(DISCONNECT)  # and left normally, without a will of its own
    back.closed_within(3)
    display.expect_none(1.5)


# -- QoS 1 and 2 exchanges on the wire --


def test_qos2_exactly_once_on_the_wire(server, group, clients):
    """A QoS 2 PUBLISH sent again before PUBREL is acknowledged again but delivered once; once
    PUBCOMP ends the exchange, the packet id is free for a new message."""
    display = clients.dev("display")
    assert display.subscribe(("sensors/#", 2)) == [2]
    r = clients.raw()
    r.send(connect_packet("sensor-1"))
    assert r.connack()[1] == 0
    r.send(publish_packet("sensors/q2", b"once", qos=2, packet_id=5))
    assert r.packet(3) == (0x50, b"\x00\x05")  # PUBREC
    r.send(publish_packet("sensors/q2", b"once", qos=2, packet_id=5, dup=True))
    assert r.packet(3) == (0x50, b"\x00\x05")
    r.send(ack_packet(0x62, 5))  # PUBREL
    assert r.packet(3) == (0x70, b"\x00\x05")  # PUBCOMP
    (m,) = display.expect(1)
    assert (m.payload, m.qos) == (b"once", 2)
    display.expect_none(0.5)
    r.send(publish_packet("sensors/q2", b"again", qos=2, packet_id=5))
    assert r.packet(3) == (0x50, b"\x00\x05")
    r.send(ack_packet(0x62, 5))
    assert r.packet(3) == (0x70, b"\x00\x05")
    assert display.expect(1)[0].payload == b"again"


def test_unacknowledged_qos1_is_resent_on_reconnect(server, group, clients):
    """A persistent session resends a QoS 1 message the device never acknowledged, flagged
    as a duplicate, with the same packet id."""
    r = clients.raw()
    r.send(connect_packet("keeper", clean=False))
    assert r.connack()[1] == 0
    r.send(subscribe_packet(1, [("queue/#", 1)]))
    assert suback(r) == (1, [1])
    s1 = clients.dev("sensor-1")
    s1.publish("queue/unacked", b"ack me", qos=1)
    first = parse_publish(*r.packet(3))
    assert (first["topic"], first["payload"], first["qos"], first["dup"]) == (
        "queue/unacked", b"ack me", 1, False)
    r.close()  # gone without PUBACK
    time.sleep(0.2)
    r2 = clients.raw()
    r2.send(connect_packet("keeper", clean=False))
    assert r2.connack() == (True, 0)
    again = parse_publish(*r2.packet(3))
    assert (again["topic"], again["payload"], again["dup"], again["packet_id"]) == (
        "queue/unacked", b"ack me", True, first["packet_id"])
    r2.send(ack_packet(0x40, again["packet_id"]))
    r2.send(DISCONNECT)
    r2.closed_within(3)
    r3 = clients.raw()
    r3.send(connect_packet("keeper", clean=False))
    assert r3.connack() == (True, 0)
    with pytest.raises(TimeoutError):
        r3.packet(0.5)  # acknowledged: not sent again
    r3.close()
    clean = clients.raw()
    clean.send(connect_packet("keeper", clean=True))
    assert clean.connack() == (False, 0)
    clean.send(DISCONNECT)
    clean.closed_within(3)


def _end_session(clients, client_id: str) -> None:
    """Connect with a clean session and leave: whatever the client id had stored is gone."""
    r = clients.raw()
    r.send(connect_packet(client_id, clean=True))
    assert r.connack()[1] == 0
    r.send(DISCONNECT)
    r.closed_within(3)


def test_qos2_pubrel_is_resent_on_reconnect(server, group, clients):
    """An outgoing QoS 2 exchange left after PUBREC resumes with PUBREL, not a new PUBLISH."""
    try:
        r = clients.raw()
        r.send(connect_packet("keeper", clean=False))
        assert r.connack()[1] == 0
        r.send(subscribe_packet(1, [("queue/#", 2)]))
        assert suback(r) == (1, [2])
        clients.dev("sensor-1").publish("queue/q2", b"two", qos=2)
        p = parse_publish(*r.packet(3))
        assert (p["topic"], p["qos"], p["payload"]) == ("queue/q2", 2, b"two")
        pid = p["packet_id"].to_bytes(2, "big")
        r.send(ack_packet(0x50, p["packet_id"]))  # PUBREC
        assert r.packet(3) == (0x62, pid)  # PUBREL
        r.close()  # gone before PUBCOMP
        time.sleep(0.2)
        r = clients.raw()
        r.send(connect_packet("keeper", clean=False))
        assert r.connack() == (True, 0)
        assert r.packet(3) == (0x62, pid)
        r.send(ack_packet(0x70, p["packet_id"]))  # PUBCOMP
        with pytest.raises(TimeoutError):
            r.packet(0.5)
        r.send(DISCONNECT)
        r.closed_within(3)
    finally:
        _end_session(clients, "keeper")


def test_incoming_qos2_exactly_once_across_reconnect(server, group, clients):
    """A device that resends its QoS 2 PUBLISH after reconnecting (the PUBREC was lost) gets
    PUBREC again; the message is delivered once."""
    display = clients.dev("display")
    assert display.subscribe(("sensors/#", 2)) == [2]
    try:
        w = clients.raw()
        w.send(connect_packet("sensor-1", clean=False))
        assert w.connack()[1] == 0
        w.send(publish_packet("sensors/x2", b"exactly once", qos=2, packet_id=77))
        assert w.packet(3) == (0x50, b"\x00\x4d")
        w.close()
        time.sleep(0.2)
        w = clients.raw()
        w.send(connect_packet("sensor-1", clean=False))
        assert w.connack() == (True, 0)
        w.send(publish_packet("sensors/x2", b"exactly once", qos=2, packet_id=77, dup=True))
        assert w.packet(3) == (0x50, b"\x00\x4d")
        w.send(ack_packet(0x62, 77))
        assert w.packet(3) == (0x70, b"\x00\x4d")
        assert [m.payload for m in display.collect(1.0)] == [b"exactly once"]
        w.send(DISCONNECT)
        w.closed_within(3)
    finally:
        _end_session(clients, "sensor-1")


def test_mqtt5_client_maximum_packet_size(server, group, clients):
    """A message larger than the device's MQTT 5 maximum packet size is not sent to it."""
    display = clients.dev("display", max_packet=1024)
    assert display.subscribe(("sensors/#", 1)) == [1]
    s1 = clients.dev("sensor-1")
    s1.publish("sensors/large", b"L" * 2000)
    s1.publish("sensors/small", b"S" * 100)
    (m,) = display.expect(1)
    assert (m.topic, len(m.payload)) == ("sensors/small", 100)
    display.expect_none(0.3)


def test_qos2_pubrec_reason_codes_mqtt5(server, group, clients):
    """MQTT 5 PUBREC: 0x87 ends the exchange for a device that may publish nothing; 0x10 (a
    success) for an unrouted topic continues to PUBREL/PUBCOMP."""
    r = clients.raw()
    r.send(connect_packet("lonely", v5=True))
    assert r.connack()[1] == 0
    r.send(publish_packet("sensors/x", b"refused", v5=True, qos=2, packet_id=9))
    first, body = r.packet(3)
    assert (first, body[:3]) == (0x50, b"\x00\x09\x87"), (first, body)
    r2 = clients.raw()
    r2.send(connect_packet("sensor-1", v5=True))
    assert r2.connack()[1] == 0
    r2.send(publish_packet("nowhere/x", b"unrouted", v5=True, qos=2, packet_id=10))
    first, body = r2.packet(3)
    assert (first, body[:3]) == (0x50, b"\x00\x0a\x10"), (first, body)
    r2.send(ack_packet(0x62, 10))
    first, body = r2.packet(3)
    assert first == 0x70 and body[:2] == b"\x00\x0a" and body[2:3] in (b"", b"\x00"), body


def test_mqtt5_receive_maximum_of_the_client(server, group, clients):
    """The server sends a device no more unacknowledged QoS 1 messages than the receive
    maximum it asked for."""
    r = clients.raw()
    r.send(connect_packet("display", v5=True, props=b"\x21\x00\x02"))
    assert r.connack()[1] == 0
    r.send(subscribe_packet(1, [("sensors/#", 1)], v5=True))
    assert suback(r, v5=True) == (1, [1])
    s1 = clients.dev("sensor-1")
    for i in range(5):
        s1.publish(f"sensors/rm/{i}", str(i).encode())
    got = [parse_publish(*r.packet(3), v5=True) for _ in range(2)]
    with pytest.raises(TimeoutError):
        r.packet(0.5)
    for i in range(2, 5):
        r.send(ack_packet(0x40, got[0]["packet_id"]))
        got.pop(0)
        got.append(parse_publish(*r.packet(3), v5=True))
        assert got[-1]["payload"] == str(i).encode()
    for g in got:
        r.send(ack_packet(0x40, g["packet_id"]))


def test_receive_maximum_of_the_server_mqtt5(server, group, clients):
    """More QoS 2 messages awaiting PUBREL than the receive maximum the server advertised:
    DISCONNECT 0x93."""
    r = clients.raw()
    r.send(connect_packet("sensor-1", v5=True))
    first, body = r.packet(3)
    assert first == 0x20 and body[1] == 0
    # CONNACK properties: receive maximum (0x21)
    i = 2
    plen, i = _read_varint(body, i)
    props, receive_max = body[i:i + plen], None
    j = 0
    while j < len(props):
        pid = props[j]
        if pid == 0x21:
            receive_max = int.from_bytes(props[j + 1:j + 3], "big")
            break
        j += 1 + {0x24: 1, 0x25: 1, 0x27: 4, 0x22: 2, 0x28: 1, 0x29: 1, 0x2A: 1, 0x11: 4,
                  0x13: 2}.get(pid, 0)
    assert receive_max, f"no receive maximum in CONNACK properties {props!r}"
    for n in range(1, receive_max + 1):
        r.send(publish_packet("sensors/rm", b"q2", v5=True, qos=2, packet_id=n))
        first, body = r.packet(3)
        assert first == 0x50, (n, first, body)
    r.send(publish_packet("sensors/rm", b"q2", v5=True, qos=2, packet_id=receive_max + 1))
    assert disconnect_reason(r.closed_within(3)) == 0x93


def test_mqtt5_session_expiry_at_disconnect(server, group, clients):
    """MQTT 5: DISCONNECT may shorten the session expiry (0 ends the session), but not set one
    on a session that was to end at close (protocol error 0x82)."""
    r = clients.raw()
    r.send(connect_packet("keeper", v5=True, clean=True, props=session_expiry_prop(60)))
    assert r.connack()[1] == 0
    r.send(packet(0xE0, b"\x00" + _varint(5) + session_expiry_prop(0)))
    r.closed_within(3)
    r = clients.raw()
    r.send(connect_packet("keeper", v5=True, clean=False))
    assert r.connack() == (False, 0)
    r.send(packet(0xE0, b"\x00" + _varint(5) + session_expiry_prop(60)))
    assert disconnect_reason(r.closed_within(3)) == 0x82
    r = clients.raw()
    r.send(connect_packet("keeper", v5=True, clean=False))
    assert r.connack() == (False, 0)
    r.send(DISCONNECT)
    r.closed_within(3)


# -- MQTT 5 properties and options --


def test_mqtt5_connack_properties(server, group, clients):
    d = Dev("display")
    clients.opened.append(d)
    props = {}
    d.c.on_connect = lambda c, u, f, rc, p: (props.update(p.json()) if p else None,
                                             d._on_connect(c, u, f, rc, p))
    d.connect(server.mqtt_plain_port)
    assert props.get("MaximumPacketSize") == 128 * 1024 + 8 * 1024, props
    assert props.get("ReceiveMaximum", 65535) >= 1, props
    assert props.get("TopicAliasMaximum", 0) == 0, props
    assert props.get("SharedSubscriptionAvailable") == 0, props
    assert props.get("SubscriptionIdentifierAvailable") == 0, props
    assert props.get("RetainAvailable", 1) == 1, props


def test_mqtt5_publish_properties_are_forwarded(server, group, clients):
    display = clients.dev("display")
    assert display.subscribe(("sensors/#", 1)) == [1]
    s1 = clients.dev("sensor-1")
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("unit", "celsius"), ("unit", "kelvin")]
    props.ResponseTopic = "commands/sensor-1"
    props.CorrelationData = b"req-42"
    props.ContentType = "text/plain"
    props.PayloadFormatIndicator = 1
    info = s1.c.publish("sensors/props", b"21.5", qos=1, properties=props)
    info.wait_for_publish(timeout=5)
    (m,) = display.expect(1)
    got = {k: getattr(m.properties, k, None) for k in (
        "UserProperty", "ResponseTopic", "CorrelationData", "ContentType",
        "PayloadFormatIndicator")}
    assert got == {"UserProperty": [("unit", "celsius"), ("unit", "kelvin")],
                   "ResponseTopic": "commands/sensor-1", "CorrelationData": b"req-42",
                   "ContentType": "text/plain", "PayloadFormatIndicator": 1}, got


def test_mqtt5_message_expiry(server, group, clients):
    keeper = clients.dev("keeper", clean=False, expiry=60)
    try:
        assert keeper.subscribe(("queue/#", 1)) == [1]
        keeper.close()
        s1 = clients.dev("sensor-1")
        for topic, secs in (("queue/expiring", 1), ("queue/lasting", 600)):
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = secs
            s1.c.publish(topic, topic.encode(), qos=1, properties=props).wait_for_publish(5)
        time.sleep(1.5)
        back = clients.dev("keeper", clean=False, expiry=0, expect_present=True)
        msgs = back.collect(0.5)
        assert [m.topic for m in msgs] == ["queue/lasting"], [m.topic for m in msgs]
        left = getattr(msgs[0].properties, "MessageExpiryInterval", None)
        assert left is not None and left <= 598, left
    finally:
        clean = clients.raw()
        clean.send(connect_packet("keeper", clean=True))
        assert clean.connack()[1] == 0
        clean.send(DISCONNECT)
        clean.closed_within(3)


def test_mqtt5_unsupported_authentication_method(server, group, clients):
    r = clients.raw()
    r.send(connect_packet("display", v5=True, props=b"\x15" + _str("SCRAM-SHA-1")))
    packets = r.closed_within(1.5)
    for first, body in packets:
        if first == 0x20:
            assert body[1] in (0x8C, 0x87), f"CONNACK accepted: {body!r}"


# -- sessions --


@pytest.mark.parametrize("v5", [False, True], ids=["mqttv311", "mqttv5"])
def test_persistent_session_keeps_messages(server, group, clients, v5):
    expiry = 300 if v5 else None
    keeper = clients.dev("keeper", v5=v5, clean=False, expiry=expiry, expect_present=False)
    try:
        assert keeper.subscribe(("queue/#", 1)) == [1]
        keeper.close()
        time.sleep(0.2)
        for i in range(5):
            p = mosquitto_pub(*plain_args(server, "sensor-1"), "-t", f"queue/{i}", "-q", "1",
                              "-m", f"queued {i}")
            assert p.returncode == 0, p.stdout + p.stderr
        back = clients.dev("keeper", v5=v5, clean=False, expiry=expiry, expect_present=True)
        got = [(m.topic, m.payload, m.qos) for m in back.expect(5)]
        assert got == [(f"queue/{i}", f"queued {i}".encode(), 1) for i in range(5)]
        # The subscription was kept too.
        s1 = clients.dev("sensor-1")
        s1.publish("queue/live", b"live")
        assert back.expect(1)[0].payload == b"live"
        back.close()
    finally:
        # A clean session drops the stored one, and with it anything still queued.
        s1 = Dev("sensor-1")
        clients.opened.append(s1)
        s1.connect(server.mqtt_plain_port)
        s1.publish("queue/stale", b"stale")
        fresh = clients.dev("keeper", v5=v5, clean=True, expect_present=False)
        assert fresh.subscribe(("queue/#", 1)) == [1]
        fresh.expect_none(0.5)
        fresh.close()


def test_persistent_session_many_messages_in_order(server, group, clients):
    """More messages wait for an offline session than fit in flight: all come, in order."""
    keeper = clients.dev("keeper", v5=False, clean=False)
    try:
        assert keeper.subscribe(("queue/#", 1)) == [1]
        keeper.close()
        s1 = clients.dev("sensor-1")
        for i in range(200):
            s1.c.publish("queue/many", str(i).encode(), qos=1)
        s1.publish("queue/many", b"200")
        back = clients.dev("keeper", v5=False, clean=False, expect_present=True)
        got = [int(m.payload) for m in back.expect(201)]
        assert got == list(range(201)), got[:20]
        back.close()
    finally:
        _end_session(clients, "keeper")


def test_mosquitto_persistent_session(server, group, clients):
    """mosquitto_sub -c (clean session off) picks up what was sent while it was away."""
    args = [*plain_args(server, "keeper"), "-c", "-t", "queue/#", "-q", "1", "-v"]
    first = clients.sub(*args, "-E")
    assert first.finish() == 0, first.output
    for i in range(3):
        p = mosquitto_pub(*plain_args(server, "sensor-1"), "-t", f"queue/m{i}", "-q", "1",
                          "-m", f"while away {i}")
        assert p.returncode == 0, p.stdout + p.stderr
    again = clients.sub(*args, "-C", "3")
    assert again.finish() == 0, again.output
    assert [ln for ln in again.lines if ln.startswith("queue/")] == [
        f"queue/m{i} while away {i}" for i in range(3)], again.output
    assert again.wait_for(r"received CONNACK \(0\)")
    # clean up: a clean session ends the stored one
    p = mosquitto_sub_once(*plain_args(server, "keeper"), "-t", "queue/#", "-E")
    assert p.returncode == 0, p.stdout + p.stderr


def test_session_present_flag_raw(server, group, clients):
    r = clients.raw()
    r.send(connect_packet("keeper", clean=False))
    assert r.connack()[1] == 0
    r.send(DISCONNECT)
    r.closed_within(3)
    r2 = clients.raw()
    r2.send(connect_packet("keeper", clean=False))
    assert r2.connack() == (True, 0)
    r2.send(DISCONNECT)
    r2.closed_within(3)
    r3 = clients.raw()
    r3.send(connect_packet("keeper", clean=True))
    assert r3.connack() == (False, 0)
    r3.send(DISCONNECT)
    r3.closed_within(3)


def test_mqtt5_session_expiry(server, group, clients):
    keeper = clients.dev("keeper", clean=False, expiry=1, expect_present=False)
    assert keeper.subscribe(("queue/#", 1)) == [1]
    keeper.close()
    time.sleep(1.5)
    again = clients.dev("keeper", clean=False, expiry=0, expect_present=False)
    again.close()


# -- connection lifecycle --


@pytest.mark.parametrize("v5", [False, True], ids=["mqttv311", "mqttv5"])
def test_keepalive_timeout(server, group, clients, v5):
    r = clients.raw()
    r.send(connect_packet("display", v5=v5, keepalive=1))
    assert r.connack()[1] == 0
    t0 = time.monotonic()
    packets = r.closed_within(4.0)
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.9, f"closed after {elapsed:.2f}s, before the keepalive ran out"
    if v5:
        assert disconnect_reason(packets) == 0x8D, packets


def test_pings_keep_the_connection(server, group, clients):
    r = clients.raw()
    r.send(connect_packet("display", keepalive=1))
    assert r.connack()[1] == 0
    for _ in range(4):  # 2 s, more than the 1.5 s a silent client has
        time.sleep(0.5)
        r.send(PINGREQ)
        assert r.packet(2) == (0xD0, b"")
    r.send(DISCONNECT)
    r.closed_within(3)


@pytest.mark.parametrize("v5", [False, True], ids=["mqttv311", "mqttv5"])
def test_client_id_takeover(server, group, clients, v5):
    first = clients.raw()
    first.send(connect_packet("display", v5=v5))
    assert first.connack()[1] == 0
    second = clients.dev("display", v5=v5)
    packets = first.closed_within(3)
    if v5:
        assert disconnect_reason(packets) == 0x8E, packets
    assert second.subscribe(("sensors/#", 1)) == [1]
    s1 = clients.dev("sensor-1")
    s1.publish("sensors/takeover", b"to the second")
    assert second.expect(1)[0].payload == b"to the second"


def test_takeover_keeps_a_persistent_session(server, group, clients):
    first = clients.raw()
    first.send(connect_packet("keeper", clean=False))
    assert first.connack()[1] == 0
    first.send(subscribe_packet(1, [("queue/#", 1)]))
    assert suback(first) == (1, [1])
    second = clients.dev("keeper", v5=False, clean=False, expect_present=True)
    first.closed_within(3)
    s1 = clients.dev("sensor-1")
    s1.publish("queue/takeover", b"kept subscription")
    assert second.expect(1)[0].payload == b"kept subscription"
    second.close()
    clean = clients.raw()
    clean.send(connect_packet("keeper", clean=True))
    assert clean.connack() == (False, 0)
    clean.send(DISCONNECT)
    clean.closed_within(3)


def test_takeover_of_a_paho_client(server, group, clients):
    first = clients.dev("display")
    clients.dev("display")
    rc = first.wait_disconnect(3)
    assert rc.value == 0x8E, rc


def test_thousand_qos1_messages_in_order(server, group, clients):
    sink = clients.dev("sink")
    assert sink.subscribe(("order/#", 1)) == [1]
    s2 = clients.dev("sensor-2")
    n = 1000
    infos = [s2.c.publish("order/stream", str(i).encode(), qos=1) for i in range(n)]
    got = [int(m.payload) for m in sink.expect(n, timeout=30)]
    for info in infos:
        info.wait_for_publish(timeout=5)
    assert got == list(range(n)), [x for i, x in enumerate(got) if x != i][:10]
    sink.expect_none(0.3)


# -- bounds and bad input --


def test_payload_bound_mqtt5(server, group, clients):
    display = clients.dev("display")
    assert display.subscribe(("big/payload", 1)) == [1]
    s1 = clients.dev("sensor-1")
    ok = bytes(range(256)) * 512  # 128 KiB
    assert len(ok) == 131072
    assert s1.publish("big/payload", ok, qos=1) == 0
    (m,) = display.expect(1)
    assert m.payload == ok
    before = closed(server, "packet_too_large")
    s1.publish("big/payload", b"x" * 132096, qos=1, wait=False)
    rc = s1.wait_disconnect(5)
    assert rc.value == 0x95, rc
    display.expect_none(1.0)
    assert wait_metric(server, 'coupler_mqtt_closed_total{reason="packet_too_large"}',
                       lambda v: v > before) > before
    # One byte over the bound is too much already.
    r = clients.raw()
    r.send(connect_packet("sensor-1", v5=True))
    assert r.connack()[1] == 0
    r.send(publish_packet("big/payload", b"o" * 131073, v5=True, qos=1, packet_id=1))
    assert disconnect_reason(r.closed_within(3)) == 0x95
    display.expect_none(0.3)


@pytest.mark.parametrize("v5", [False, True], ids=["mqttv311", "mqttv5"])
def test_announced_oversize_publish_is_refused_at_once(server, group, clients, v5):
    """A PUBLISH whose header announces 200 MB is refused before its payload arrives."""
    r = clients.raw()
    r.send(connect_packet("sensor-1", v5=v5))
    assert r.connack()[1] == 0
    r.send(b"\x30" + _varint(200_000_000) + _str("big/payload") + b"x" * 1000)
    packets = r.closed_within(3)
    if v5:
        assert disconnect_reason(packets) == 0x95, packets


def test_payload_bound_mosquitto_mqtt311(server, group, clients, tmp_path):
    sub = clients.sub(*plain_args(server, "display"), "-t", "big/payload", "-q", "1",
                      "-v", "-C", "1").subscribed()
    big = tmp_path / "big"
    big.write_bytes(b"y" * 132096)
    p = mosquitto_pub(*plain_args(server, "sensor-1"), "-t", "big/payload", "-q", "1",
                      "-f", str(big), timeout=5)
    assert p.returncode != 0, p.stdout + p.stderr
    time.sleep(0.5)
    assert not any(ln.startswith("big/payload") for ln in sub.lines), sub.output
    ok = tmp_path / "ok"
    ok.write_bytes(b"z" * 131072)
    p = mosquitto_pub(*plain_args(server, "sensor-1"), "-t", "big/payload", "-q", "1",
                      "-f", str(ok))
    assert p.returncode == 0, p.stdout + p.stderr
    assert sub.finish() == 0, sub.output
    assert any(ln == "big/payload " + "z" * 131072 for ln in sub.lines), sub.output[:500]


@pytest.mark.parametrize("junk", [
    pytest.param(b"\xff\xff\xff\xff\xff garbage", id="garbage"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http"),
    pytest.param(PINGREQ, id="pingreq-first"),
    pytest.param(publish_packet("sensors/x", b"no connect"), id="publish-first"),
    pytest.param(packet(0x82, b"\x00\x01" + _str("sensors/#") + b"\x01"), id="subscribe-first"),
    pytest.param(packet(0x10, _str("MQTT") + b"\x06\x02\x00\x1e" + _str("display")),
                 id="protocol-level-6"),
    pytest.param(packet(0x10, _str("MQTT") + b"\x04\x02\x00\x1e"), id="truncated-connect"),
    pytest.param(packet(0x10, _str("MQTT") + b"\x04\x03\x00\x1e" + _str("display")),
                 id="connect-reserved-flag"),
    pytest.param(packet(0x10, _str("MQTT") + b"\x04\x12\x00\x1e" + _str("display")),
                 id="connect-will-qos-without-will"),
    pytest.param(b"\x10" + _varint(200_000_000) + _str("MQTT") + b"\x04\x02\x00\x1e",
                 id="connect-of-200MB"),
    pytest.param(b"\x10" + _varint(200_000_000) + _str("MQTT") + b"\x05\x02\x00\x1e",
                 id="connect-of-200MB-mqtt5"),
])
def test_bad_input_closes_only_that_connection(server, group, clients, junk):
    display = clients.dev("display")
    assert display.subscribe(("sensors/#", 1)) == [1]
    r = clients.raw()
    r.send(junk)
    packets = r.closed_within(3)
    assert all(first != 0x20 or body[1] != 0 for first, body in packets), packets
    # The server still serves the connection it had, and new ones.
    s1 = clients.dev("sensor-1")
    s1.publish("sensors/after-junk", b"still here")
    assert display.expect(1)[0].payload == b"still here"


@pytest.mark.parametrize("v5", [False, True], ids=["mqttv311", "mqttv5"])
def test_protocol_errors_after_connect(server, group, clients, v5):
    display = clients.dev("display")
    assert display.subscribe(("sensors/#", 1)) == [1]
    # a second CONNECT
    r = clients.raw()
    r.send(connect_packet("sensor-1", v5=v5))
    assert r.connack()[1] == 0
    r.send(connect_packet("sensor-1", v5=v5))
    packets = r.closed_within(3)
    if v5:
        assert disconnect_reason(packets) == 0x82, packets
    # a wildcard in a published topic name: closed, not routed
    r = clients.raw()
    r.send(connect_packet("sensor-1", v5=v5))
    assert r.connack()[1] == 0
    r.send(publish_packet("sensors/#", b"wildcard", v5=v5))
    packets = r.closed_within(3)
    if v5:
        assert disconnect_reason(packets) == 0x90, packets
    display.expect_none(0.5)


@pytest.mark.parametrize("bad", [
    pytest.param(packet(0x36, _str("sensors/x") + b"\x00\x01" + b"qos3"), id="publish-qos3"),
    pytest.param(packet(0x32, _str("sensors/x") + b"\x00\x00" + b"id0"), id="publish-id0"),
    pytest.param(packet(0x82, b"\x00\x01"), id="subscribe-no-filter"),
    pytest.param(packet(0x80, b"\x00\x01" + _str("sensors/#") + b"\x01"),
                 id="subscribe-reserved-flags"),
    pytest.param(packet(0x82, b"\x00\x01" + _str("sensors/#") + b"\x03"),
                 id="subscribe-qos3"),
    pytest.param(b"\x00\x00", id="packet-type-0"),
    pytest.param(b"\x20\x02\x00\x00", id="connack-from-client"),
])
def test_malformed_packets_after_connect(server, group, clients, bad):
    """A malformed packet closes that connection (and, not being a DISCONNECT, publishes the
    will); nothing is routed."""
    display = clients.dev("display")
    assert display.subscribe(("sensors/#", 1), ("status/sensor-1", 1)) == [1, 1]
    r = clients.raw()
    r.send(connect_packet("sensor-1", will=("status/sensor-1", b"malformed")))
    assert r.connack()[1] == 0
    r.send(bad)
    r.closed_within(3)
    (m,) = display.expect(1)
    assert (m.topic, m.payload) == ("status/sensor-1", b"malformed")
    display.expect_none(0.3)


def test_topic_alias_is_refused_mqtt5(server, group, clients):
    """The server allows no topic alias (CONNACK: topic alias maximum 0); a PUBLISH using one
    ends the connection with 0x94."""
    display = clients.dev("display")
    assert display.subscribe(("sensors/#", 1)) == [1]
    r = clients.raw()
    r.send(connect_packet("sensor-1", v5=True))
    assert r.connack()[1] == 0
    r.send(publish_packet("sensors/alias", b"x", v5=True, props=b"\x23\x00\x01"))
    assert disconnect_reason(r.closed_within(3)) == 0x94
    display.expect_none(0.5)


def test_subscription_identifier_is_refused_mqtt5(server, group, clients):
    """CONNACK says subscription identifiers are not available; a SUBSCRIBE carrying one ends
    the connection with 0xA1 [MQTT-3.8.2-1] and grants nothing."""
    r = clients.raw()
    r.send(connect_packet("display", v5=True))
    assert r.connack()[1] == 0
    # Packet id 7; properties: subscription identifier 5; one filter at QoS 1.
    r.send(packet(0x82, b"\x00\x07" + b"\x02\x0b\x05" + _str("sensors/#") + b"\x01"))
    assert disconnect_reason(r.closed_within(3)) == 0xA1


@pytest.mark.parametrize("v5", [False, True], ids=["mqttv311", "mqttv5"])
def test_topic_limits(server, group, clients, v5):
    """Topics have at most 7 '/' and 256 bytes (the AWS IoT limits): a longer filter is
    refused at SUBSCRIBE, a longer name closes the publisher's connection."""
    r = clients.raw()
    r.send(connect_packet("display", v5=v5))
    assert r.connack()[1] == 0
    bad = 0x8F if v5 else 0x80
    r.send(subscribe_packet(3, [("sensors/1/2/3/4/5/6/#", 1), ("sensors/1/2/3/4/5/6/7/#", 1),
                                ("sensors/" + "x" * 249, 1), ("sensors/" + "x" * 248, 1)],
                            v5=v5))
    assert suback(r, v5=v5) == (3, [1, bad, bad, 1])
    for topic in ("sensors/1/2/3/4/5/6/7/8", "sensors/" + "x" * 249, "sensors/nul\0", ""):
        p = clients.raw()
        p.send(connect_packet("sensor-1", v5=v5))
        assert p.connack()[1] == 0
        p.send(publish_packet(topic, b"too long", v5=v5))
        packets = p.closed_within(3)
        if v5:
            assert disconnect_reason(packets) == 0x90, packets
    with pytest.raises(TimeoutError):
        r.packet(0.5)  # nothing delivered


def test_metrics(server, group, clients):
    before = closed(server, "refused")
    p = mosquitto_pub(*plain_args(server, "stranger"), "-t", "sensors/x", "-m", "x")
    assert p.returncode == V3_NOT_AUTHORISED, p.stdout + p.stderr
    text = metrics(server)
    assert "# TYPE coupler_mqtt_connections gauge" in text, text
    assert "# TYPE coupler_mqtt_closed_total counter" in text, text
    assert wait_metric(server, 'coupler_mqtt_closed_total{reason="refused"}',
                       lambda v: v > before) == before + 1
    baseline = wait_metric(server, "coupler_mqtt_connections", lambda v: v == 0)
    a, b = clients.dev("display"), clients.dev("sensor-1")
    assert metric(server, "coupler_mqtt_connections") == baseline + 2
    a.close()
    b.close()
    assert wait_metric(server, "coupler_mqtt_connections", lambda v: v == baseline) == baseline
    refused = metric(server, "coupler_mqtt_subscribe_refused_total")
    received = metric(server, "coupler_mqtt_publish_received_total")
    sent = metric(server, "coupler_mqtt_publish_sent_total")
    display = clients.dev("display")
    assert display.subscribe(("commands/#", 1), ("sensors/#", 1)) == [0x80, 1]
    s1 = clients.dev("sensor-1")
    s1.publish("sensors/metrics", b"m")
    display.expect(1)
    assert metric(server, "coupler_mqtt_subscribe_refused_total") == refused + 1
    assert metric(server, "coupler_mqtt_publish_received_total") == received + 1
    assert wait_metric(server, "coupler_mqtt_publish_sent_total",
                       lambda v: v >= sent + 1) == sent + 1
    assert metric(server, "coupler_mqtt_sessions") >= 2


# -- the group changes --


def _deploy(gg, name: str, devices: list[str], routes: list[tuple[str, str, str]],
            group_id: str | None = None) -> str:
    """Deploy these devices and routes (source, subject, target) as group `name` (a new
    version of `group_id` if given); returns the group id."""
    core = gg.create_core_definition(InitialVersion=P.CORES)
    devs = gg.create_device_definition(InitialVersion={"Devices": [
        {"Id": n, "ThingArn": thing(n), "CertificateArn": dummy_cert(n)} for n in devices]})
    subs = gg.create_subscription_definition(InitialVersion={"Subscriptions": [
        {"Id": f"r{i}", "Source": _arn(s), "Subject": subject, "Target": _arn(t)}
        for i, (s, subject, t) in enumerate(routes)]})
    arns = {"CoreDefinitionVersionArn": core["LatestVersionArn"],
            "DeviceDefinitionVersionArn": devs["LatestVersionArn"],
            "SubscriptionDefinitionVersionArn": subs["LatestVersionArn"]}
    if group_id is None:
        g = gg.create_group(Name=name, InitialVersion=arns)
        group_id, version = g["Id"], g["LatestVersion"]
    else:
        version = gg.create_group_version(GroupId=group_id, **arns)["Version"]
    dep = gg.create_deployment(GroupId=group_id, DeploymentType="NewDeployment",
                               GroupVersionId=version)
    status = wait_deployment(gg, group_id, dep["DeploymentId"])
    assert status["DeploymentStatus"] == "Success", status
    return group_id


def _tls_handshake_fails(port: int) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((HOST, port), timeout=5) as tcp:
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            with ctx.wrap_socket(tcp, server_hostname="localhost") as tls:
                tls.sendall(connect_packet("a"))
                if not tls.recv(16):
                    raise ConnectionResetError("closed")


def test_group_membership_changes_and_shutdown(own_server):
    """Before any deployment no device may connect (TLS has no certificate to offer); a
    device removed by a new deployment is disconnected (MQTT 5: 0x87) and refused, one still
    in the group keeps its connection; a reset disconnects everyone; shutdown says 0x8B."""
    core = own_server
    gg = core.client()
    opened = Clients(core)
    try:
        p = mosquitto_pub(*plain_args(core, "a"), "-t", "x/1", "-m", "x")
        assert p.returncode == V3_NOT_AUTHORISED, p.stdout + p.stderr
        _tls_handshake_fails(core.mqtt_tls_port)

        gid = _deploy(gg, "membership", ["a", "b"], [("a", "x/#", "b"), ("b", "y/#", "a")])
        a, b = opened.dev("a"), opened.dev("b")
        assert b.subscribe(("x/#", 1)) == [1]
        a.publish("x/1", b"from a")
        assert b.expect(1)[0].payload == b"from a"

        _deploy(gg, "membership", ["b", "c"], [("c", "x/#", "b")], group_id=gid)
        assert a.wait_disconnect(5).value == 0x87
        p = mosquitto_pub(*plain_args(core, "a"), "-t", "x/1", "-m", "x")
        assert p.returncode == V3_NOT_AUTHORISED, p.stdout + p.stderr
        c = opened.dev("c")
        assert c.publish("x/2", b"from c") == 0
        assert b.expect(1)[0].payload == b"from c"  # b kept its connection and session
        assert b.disconnects.empty()

        reset = gg.reset_deployments(GroupId=gid)
        assert wait_deployment(gg, gid, reset["DeploymentId"])["DeploymentStatus"] == "Success"
        assert b.wait_disconnect(5).value == 0x87
        assert c.wait_disconnect(5).value == 0x87
        p = mosquitto_pub(*plain_args(core, "b"), "-t", "x/1", "-m", "x")
        assert p.returncode == V3_NOT_AUTHORISED, p.stdout + p.stderr
        _tls_handshake_fails(core.mqtt_tls_port)

        _deploy(gg, "membership", ["b", "c"], [("c", "x/#", "b")], group_id=gid)
        r = opened.raw()
        r.send(connect_packet("b", v5=True))
        assert r.connack()[1] == 0
        assert core.stop() == 0
        assert disconnect_reason(r.closed_within(3)) == 0x8B
    finally:
        opened.close()
