"""Mosquitto playing the cloud, and a TCP proxy in front of it that the tests open and close
(the upstream "down" and "back") or slow down (a round-trip delay)."""

from __future__ import annotations

import os
import queue
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from ggtest import free_port


class Mosquitto:
    """A mosquitto broker on a free port of 127.0.0.1; with `tls_dir`, TLS only, and every
    client must present a certificate from the CA in it (see `make_tls`)."""

    def __init__(self, tmp: Path, tls_dir: Path | None = None):
        self.port = free_port()
        conf = tmp / f"mosquitto-{self.port}.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false",
                 "max_inflight_messages 0", "max_queued_messages 100000"]
        if os.geteuid() == 0:
            # Started as root, mosquitto becomes user `mosquitto`, who cannot read the
            # test's private temporary directory.
            lines.append("user root")
        if tls_dir:
            lines += [f"cafile {tls_dir / 'ca.pem'}", f"certfile {tls_dir / 'server.pem'}",
                      f"keyfile {tls_dir / 'server.key'}", "require_certificate true"]
        conf.write_text("\n".join(lines) + "\n")
        self.log = tmp / f"mosquitto-{self.port}.log"
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=open(self.log, "wb"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"mosquitto did not start:\n{self.log.read_text()}")
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class CloudClient:
    """A paho client on the cloud broker: what the cloud side of an application would be."""

    def __init__(self, port: int, filters: list[str], tls_dir: Path | None = None,
                 client_id: str = "cloud-app"):
        self.messages: queue.Queue = queue.Queue()
        self.c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                             client_id=client_id, protocol=mqtt.MQTTv311)
        if tls_dir:
            self.c.tls_set(ca_certs=str(tls_dir / "ca.pem"), certfile=str(tls_dir / "app.pem"),
                           keyfile=str(tls_dir / "app.key"))
        subscribed: queue.Queue = queue.Queue()
        self.c.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        self.c.on_subscribe = lambda c, u, mid, rc, p: subscribed.put(rc)
        self.c.connect("localhost" if tls_dir else "127.0.0.1", port)
        self.c.loop_start()
        for f in filters:
            self.c.subscribe(f, qos=1)
            assert not subscribed.get(timeout=10)[0].is_failure

    def publish(self, topic: str, payload: bytes | str) -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(timeout=5)

    def next(self, timeout: float = 10.0) -> tuple[str, bytes]:
        return self.messages.get(timeout=timeout)

    def collect(self, n: int, timeout: float = 30.0) -> list[tuple[str, bytes]]:
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                out.append(self.messages.get(timeout=left))
            except queue.Empty:
                break
        return out

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


class Proxy:
    """A TCP proxy on a free port to `target_port`. While `down`, it accepts and closes at
    once (the cloud unreachable); `delay_s` holds every chunk that long in each direction
    (half the round trip it adds)."""

    def __init__(self, target_port: int, delay_s: float = 0.0):
        self.target_port = target_port
        self.delay_s = delay_s
        self.down = False
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.down:
                c.close()
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                c.close()
                continue
            self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        # A second thread sends each chunk once its delay is over, so a delay adds latency
        # without limiting throughput.
        q: queue.Queue = queue.Queue()

        def sender() -> None:
            while True:
                due, data = q.get()
                if data is None:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    dst.sendall(data)
                except OSError:
                    break
        t = threading.Thread(target=sender, daemon=True)
        t.start()
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            q.put((time.monotonic() + self.delay_s, data))
        q.put((0, None))
        t.join(timeout=5)
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """Close every open connection and refuse new ones."""
        self.down = True
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass
        self.conns = []

    def restore(self) -> None:
        self.down = False

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.sock.close()


def make_tls(d: Path) -> Path:
    """A CA, a server certificate for localhost/127.0.0.1, and client certificates `core` and
    `app`, all X.509 v3 (rustls refuses v1), with the openssl CLI."""
    d.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=Coupler test cloud CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    for name, ext in [("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                      ("core", "extendedKeyUsage=clientAuth"), ("app", "extendedKeyUsage=clientAuth")]:
        (d / f"{name}.ext").write_text(f"basicConstraints=CA:FALSE\n{ext}\n")
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
    return d
