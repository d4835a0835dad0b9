"""Authentication: every request must carry a valid SigV4 signature by the key in
DATA_DIR/credentials; anything else is a 403 that botocore understands."""

from __future__ import annotations

import datetime
import subprocess
from unittest import mock

import pytest
from botocore.exceptions import ClientError

from ggtest import aws_command, client_error

AUTH_CODES = {"InvalidSignatureException", "SignatureDoesNotMatch", "UnrecognizedClientException"}


def _expect_403(fn, what: str, codes=AUTH_CODES, **kwargs) -> ClientError:
    with pytest.raises(ClientError) as ei:
        fn(**kwargs)
    status, code, message, _ = client_error(ei.value)
    assert status == 403, f"{what}: expected HTTP 403, got {status} {code}: {message}"
    assert code in codes, f"{what}: code {code!r} is not one of {sorted(codes)}"
    assert message, f"{what}: the 403 has no message: {ei.value.response}"
    return ei.value


def test_signed_requests_pass(server, gg):
    assert "Groups" in gg.list_groups()
    resp = server.raw("GET", "/greengrass/groups?MaxResults=5")
    assert resp.status == 200, resp
    assert "Groups" in resp.json(), resp


def test_wrong_secret(server):
    ak, sk = server.keys()
    wrong = "A" + sk[1:] if sk[0] != "A" else "B" + sk[1:]
    c = server.client(secret_key=wrong)
    _expect_403(c.list_groups, "wrong secret")
    _expect_403(c.create_group, "wrong secret (POST with a body)", Name="never-made")
    assert "never-made" not in [g["Name"] for g in server.client().list_groups()["Groups"]]


def test_unknown_access_key(server):
    _, sk = server.keys()
    c = server.client(access_key="AKIAUNKNOWNUNKNOWN00", secret_key=sk)
    _expect_403(c.list_groups, "unknown access key")


def test_unsigned_request(server):
    resp = server.raw("GET", "/greengrass/groups", sign=False)
    assert resp.status == 403, f"an unsigned request: {resp}"
    resp = server.raw("POST", "/greengrass/groups", '{"Name": "unsigned"}', sign=False)
    assert resp.status == 403, f"an unsigned POST: {resp}"
    assert "unsigned" not in [g["Name"] for g in server.client().list_groups()["Groups"]]


def test_body_changed_after_signing(server):
    resp = server.raw("POST", "/greengrass/groups", '{"Name": "signed-name"}',
                      tamper=b'{"Name": "other-nameX"}')
    assert resp.status == 403, f"a body changed after signing: {resp}"
    assert resp.error_type in AUTH_CODES, resp


def test_wrong_secret_in_raw_request(server):
    resp = server.raw("GET", "/greengrass/groups", secret_key="not-the-secret")
    assert resp.status == 403, resp
    assert resp.error_type in AUTH_CODES, resp


@pytest.mark.parametrize("minutes", [-15, 15], ids=["15min-ago", "15min-ahead"])
def test_signature_outside_the_clock_skew(server, minutes):
    """A request signed 15 minutes off is refused (AWS allows 5 minutes of skew)."""
    then = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=minutes)
    with mock.patch("botocore.auth.get_current_datetime", return_value=then):
        resp = server.raw("GET", "/greengrass/groups")
    assert resp.status == 403, f"a request signed {minutes} minutes off: {resp}"


def test_signature_within_the_clock_skew(server):
    then = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=3)
    with mock.patch("botocore.auth.get_current_datetime", return_value=then):
        resp = server.raw("GET", "/greengrass/groups")
    assert resp.status == 200, f"a request signed 3 minutes ago: {resp}"


def test_aws_cli_with_a_wrong_secret(server, tmp_path):
    ak, sk = server.keys()
    creds = tmp_path / "credentials"
    wrong = ("y" if sk[0] == "x" else "x") + sk[1:]
    creds.write_text(f"[default]\naws_access_key_id = {ak}\naws_secret_access_key = {wrong}\n")
    env = dict(server.env, AWS_SHARED_CREDENTIALS_FILE=str(creds))
    p = subprocess.run([*aws_command(), "--endpoint-url", server.url, "greengrass", "list-groups",
                        "--output", "json"], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0, p.stdout
    assert any(c in p.stderr for c in AUTH_CODES), p.stderr
