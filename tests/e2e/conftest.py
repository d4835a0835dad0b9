"""Fixtures of the real-client suite; the machinery is in ggtest.py."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request

import pytest

from ggtest import _LEAKY_PREFIXES, _SERVERS, TRANSCRIPT, Server, free_port, start_server


@pytest.fixture(scope="session", autouse=True)
def _isolated_aws_config():
    """Keep the host's AWS configuration out of boto3 in this process too (the AWS CLI
    children get their own clean environment from Server.env)."""
    mp = pytest.MonkeyPatch()
    for k in list(os.environ):
        if k.startswith(_LEAKY_PREFIXES):
            mp.delenv(k)
    mp.setenv("AWS_CONFIG_FILE", "/dev/null")
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _transcript():
    TRANSCRIPT.clear()
    yield TRANSCRIPT


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        text = TRANSCRIPT.text()
        if text:
            report.sections.append(("requests and responses (latest last)", text))
        for s in _SERVERS:
            if s.proc is not None:
                report.sections.append((f"coupler up log ({s.data_dir})", s.log_tail()))


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    """One `coupler up` per test module, on its own temporary data dir."""
    s = start_server(tmp_path_factory.mktemp("coupler"))
    yield s
    if s.proc is not None:
        s.stop()
    if s in _SERVERS:
        _SERVERS.remove(s)


@pytest.fixture
def own_server(tmp_path) -> Server:
    """A `coupler up` of the test's own, on a fresh data dir (for restarts and deployments)."""
    s = start_server(tmp_path / "own")
    yield s
    if s.proc is not None:
        s.stop()
    if s in _SERVERS:
        _SERVERS.remove(s)


@pytest.fixture(scope="module")
def gg(server):
    """A boto3 Greengrass client for the module's server."""
    return server.client()


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    """moto_server on a free port, and boto3 clients of it."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    proc = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            break
        except Exception:
            assert proc.poll() is None, "moto_server exited"
            assert time.monotonic() < deadline, "moto_server did not start"
            time.sleep(0.1)

    def client(name):
        import boto3

        return boto3.client(name, endpoint_url=url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    yield url, client
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


