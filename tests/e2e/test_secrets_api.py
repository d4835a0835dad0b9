"""The Secrets Manager subset on the control-plane endpoint, driven by the real AWS CLI
(`aws secretsmanager ... --endpoint-url`) and boto3: create, put, get, describe, list and
delete; version stages; secrets named by name, ARN and partial ARN; the JSON 1.1 errors; and
that no secret value reaches the server's logs, output or database file in plaintext."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from ggtest import (CLI_TIMEOUT_S, run_aws, REGION, TRANSCRIPT, CliError, _clip, aws_command,
                    expect_error)

# Every value stored by this module: none may appear anywhere on disk or in the output.
STRING_VALUE = "s3cr3t-" + uuid.uuid4().hex
NEXT_VALUE = "n3xt-" + uuid.uuid4().hex
PENDING_VALUE = "p3nd1ng-" + uuid.uuid4().hex
CLI_VALUE = "cl1-" + uuid.uuid4().hex
OTHER_VALUE = "0th3r-" + uuid.uuid4().hex
BINARY_VALUE = b"\x00\x01b1nary-" + uuid.uuid4().hex.encode() + b"\xff"
ALL_VALUES = [STRING_VALUE, NEXT_VALUE, PENDING_VALUE, CLI_VALUE, OTHER_VALUE]

ARN_RE = re.compile(r"^arn:aws:secretsmanager:us-east-1:\d{12}:secret:(.+)-([A-Za-z0-9]{6})$")


def sm_cli(server, *args: str, check: bool = True):
    """`aws --endpoint-url URL secretsmanager ARGS --output json`."""
    return run_aws(server, *args, check=check, service="secretsmanager")


@pytest.fixture(scope="module")
def sm(server):
    ak, sk = server.keys()
    c = boto3.session.Session().client(
        "secretsmanager", endpoint_url=server.url, region_name=REGION,
        aws_access_key_id=ak, aws_secret_access_key=sk,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )
    # Answers are recorded for failures only: a successful one may hold a value.
    c.meta.events.register(
        "after-call.secrets-manager",
        lambda http_response, model, **_: TRANSCRIPT.response(
            http_response.status_code, http_response.headers,
            http_response.content if http_response.status_code >= 400 else b"<not recorded>"),
    )
    return c


def test_create_get_put_describe_with_the_cli(server):
    created = sm_cli(server, "create-secret", "--name", "greengrass-cli",
                     "--secret-string", CLI_VALUE, "--description", "made by the CLI",
                     "--tags", "Key=team,Value=edge")
    m = ARN_RE.match(created["ARN"])
    assert m and m.group(1) == "greengrass-cli", created
    assert created["Name"] == "greengrass-cli" and created["VersionId"]

    got = sm_cli(server, "get-secret-value", "--secret-id", "greengrass-cli")
    assert got["SecretString"] == CLI_VALUE
    assert got["VersionStages"] == ["AWSCURRENT"]
    assert got["ARN"] == created["ARN"] and got["VersionId"] == created["VersionId"]

    put = sm_cli(server, "put-secret-value", "--secret-id", created["ARN"],
                 "--secret-string", NEXT_VALUE)
    assert put["VersionStages"] == ["AWSCURRENT"]
    desc = sm_cli(server, "describe-secret", "--secret-id", "greengrass-cli")
    assert desc["Description"] == "made by the CLI"
    assert desc["Tags"] == [{"Key": "team", "Value": "edge"}]
    assert desc["VersionIdsToStages"] == {created["VersionId"]: ["AWSPREVIOUS"],
                                          put["VersionId"]: ["AWSCURRENT"]}
    assert "SecretString" not in json.dumps(desc)

    listed = sm_cli(server, "list-secrets")
    names = [s["Name"] for s in listed["SecretList"]]
    assert "greengrass-cli" in names

    err = sm_cli(server, "get-secret-value", "--secret-id", "nope", check=False)
    assert err.code == "ResourceNotFoundException", err
    err = sm_cli(server, "create-secret", "--name", "greengrass-cli",
                 "--secret-string", "x", check=False)
    assert err.code == "ResourceExistsException", err

    deleted = sm_cli(server, "delete-secret", "--secret-id", "greengrass-cli",
                     "--force-delete-without-recovery")
    assert deleted["Name"] == "greengrass-cli"
    err = sm_cli(server, "describe-secret", "--secret-id", "greengrass-cli", check=False)
    assert err.code == "ResourceNotFoundException", err


def test_ids_stages_and_timestamps_with_boto3(sm):
    created = sm.create_secret(Name="greengrass-db", SecretString=STRING_VALUE,
                               KmsKeyId="alias/aws/secretsmanager")
    arn, v1 = created["ARN"], created["VersionId"]
    partial = arn[:-7]
    for sid in ("greengrass-db", arn, partial):
        got = sm.get_secret_value(SecretId=sid)
        assert got["SecretString"] == STRING_VALUE, sid
        assert got["ARN"] == arn
    # boto3 parses JSON 1.1 timestamps (epoch seconds) into datetimes.
    assert got["CreatedDate"].year >= 2024

    v2 = sm.put_secret_value(SecretId=arn, SecretString=NEXT_VALUE)["VersionId"]
    pending = sm.put_secret_value(SecretId="greengrass-db", SecretString=PENDING_VALUE,
                                  VersionStages=["AWSPENDING", "canary"])
    assert pending["VersionStages"] == ["AWSPENDING", "canary"]
    v3 = pending["VersionId"]
    desc = sm.describe_secret(SecretId=partial)
    stages = {k: sorted(v) for k, v in desc["VersionIdsToStages"].items()}
    assert stages == {v1: ["AWSPREVIOUS"], v2: ["AWSCURRENT"], v3: ["AWSPENDING", "canary"]}
    assert desc["KmsKeyId"] == "alias/aws/secretsmanager"
    assert desc["LastAccessedDate"] and desc["LastChangedDate"] and desc["CreatedDate"]

    assert sm.get_secret_value(SecretId=arn)["SecretString"] == NEXT_VALUE
    assert sm.get_secret_value(SecretId=arn, VersionStage="AWSPREVIOUS")["SecretString"] \
        == STRING_VALUE
    assert sm.get_secret_value(SecretId=arn, VersionStage="canary")["VersionId"] == v3
    assert sm.get_secret_value(SecretId=arn, VersionId=v3)["SecretString"] == PENDING_VALUE

    # Promote the pending version: AWSCURRENT moves, the old current becomes previous.
    sm.put_secret_value(SecretId=arn, SecretString=PENDING_VALUE, ClientRequestToken=v3)
    desc = sm.describe_secret(SecretId=arn)
    assert sorted(desc["VersionIdsToStages"][v3]) == ["AWSPENDING", "canary"], \
        "a retry with the same token and value changes nothing"

    e = expect_error(400, "ResourceExistsException", sm.put_secret_value, SecretId=arn,
                     SecretString=OTHER_VALUE, ClientRequestToken=v3)
    assert OTHER_VALUE not in str(e.response)
    expect_error(400, "ResourceNotFoundException", sm.get_secret_value, SecretId=arn,
                 VersionStage="nothing-here")
    expect_error(400, "ResourceNotFoundException", sm.get_secret_value,
                 SecretId=arn[:-6] + "ZZZZZZ")
    expect_error(400, "InvalidParameterException", sm.create_secret, Name="both",
                 SecretString="a", SecretBinary=b"b")
    expect_error(400, "InvalidRequestException", sm.put_secret_value, SecretId=arn)


def test_binary_values(sm):
    created = sm.create_secret(Name="greengrass-cert", SecretBinary=BINARY_VALUE)
    got = sm.get_secret_value(SecretId=created["ARN"])
    assert got["SecretBinary"] == BINARY_VALUE and "SecretString" not in got


def test_list_pages_and_filters(sm):
    for i in range(5):
        sm.create_secret(Name=f"listing/{i}", Tags=[{"Key": "n", "Value": str(i % 2)}])
    seen = []
    for page in sm.get_paginator("list_secrets").paginate(
            Filters=[{"Key": "name", "Values": ["listing/"]}],
            PaginationConfig={"PageSize": 2}):
        assert len(page["SecretList"]) <= 2
        seen += [s["Name"] for s in page["SecretList"]]
    assert seen == [f"listing/{i}" for i in range(5)]
    odd = sm.list_secrets(Filters=[{"Key": "tag-value", "Values": ["1"]},
                                   {"Key": "name", "Values": ["listing/"]}])["SecretList"]
    assert [s["Name"] for s in odd] == ["listing/1", "listing/3"]
    expect_error(400, "InvalidParameterException", sm.list_secrets, MaxResults=101)


def test_delete_with_a_recovery_window(sm):
    arn = sm.create_secret(Name="greengrass-old", SecretString=STRING_VALUE)["ARN"]
    d = sm.delete_secret(SecretId=arn, RecoveryWindowInDays=7)
    assert d["ARN"] == arn and d["DeletionDate"]
    expect_error(400, "InvalidRequestException", sm.get_secret_value, SecretId=arn)
    expect_error(400, "InvalidRequestException", sm.put_secret_value, SecretId=arn,
                 SecretString="x")
    assert sm.describe_secret(SecretId=arn)["DeletedDate"]
    assert "greengrass-old" not in [s["Name"] for s in sm.list_secrets()["SecretList"]]
    listed = sm.list_secrets(IncludePlannedDeletion=True)["SecretList"]
    assert "greengrass-old" in [s["Name"] for s in listed]
    expect_error(400, "InvalidRequestException", sm.create_secret, Name="greengrass-old")
    expect_error(400, "InvalidParameterException", sm.delete_secret, SecretId=arn,
                 RecoveryWindowInDays=7, ForceDeleteWithoutRecovery=True)
    sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    expect_error(400, "ResourceNotFoundException", sm.describe_secret, SecretId=arn)


def test_wire_form_of_errors_and_auth(server):
    r = server.raw("POST", "/", json.dumps({"SecretId": "missing"}), headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "secretsmanager.DescribeSecret"})
    # Signed for service "greengrass" by the raw helper: AWS refuses the scope.
    assert r.status == 403 and r.json()["__type"] == "InvalidSignatureException", r
    r = server.raw("POST", "/", "{}", sign=False, headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "secretsmanager.ListSecrets"})
    assert r.status == 403 and r.json()["__type"] == "MissingAuthenticationTokenException", r


def test_unsigned_operations_with_a_wrong_key_are_refused(server):
    ak, _ = server.keys()
    c = boto3.session.Session().client(
        "secretsmanager", endpoint_url=server.url, region_name=REGION,
        aws_access_key_id=ak, aws_secret_access_key="wrong" * 8,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))
    with pytest.raises(ClientError) as e:
        c.list_secrets()
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"


def test_no_value_leaks_to_disk_or_output(server, sm):
    """Last in the module: every value used above must be absent from the server's stdout,
    its log (stderr), every file of its data dir, and the database in plaintext."""
    # Make sure the server has flushed what it writes: stop it (SIGTERM) first.
    stdout = "\n".join(server.stdout_lines)
    assert server.stop() == 0
    needles = [v.encode() for v in ALL_VALUES] + [
        BINARY_VALUE, base64.b64encode(BINARY_VALUE)]
    files = [server.log_path] + [p for p in Path(server.data_dir).rglob("*") if p.is_file()]
    assert any(p.name == "control-plane.db" for p in files), files
    key = Path(server.data_dir) / "secrets.key"
    assert key.stat().st_mode & 0o777 == 0o600
    for p in files:
        data = p.read_bytes()
        for n in needles:
            assert n not in data, f"a secret value is in {p}"
    for n in needles:
        assert n.decode("latin-1") not in stdout, "a secret value is in coupler up's output"
    server.start()
