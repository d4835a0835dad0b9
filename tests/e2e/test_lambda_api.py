"""The Lambda subset on the control-plane endpoint (REST, API version 2015-03-31), driven by the
real AWS CLI (`aws lambda ... --endpoint-url`) and boto3: functions with zip code, published
versions, aliases, the ARN forms of FunctionName, pagination, the code download of
GetFunction, and every error as the clients show it (status, code and message)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import subprocess
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from ggtest import (CLI_TIMEOUT_S, run_aws, REGION, TRANSCRIPT, CliError, RawResponse, _clip,
                    aws_command, client_error, expect_error)

ROLE_TEMPLATE = "arn:aws:iam::{account}:role/greengrass-lambda"
LAST_MODIFIED_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$")
UNZIP = "Could not unzip uploaded file. Please check your file, then try to upload again."


# ---- helpers ------------------------------------------------------------------------------


def make_zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, text)
    return buf.getvalue()


def handler_zip(tag: str) -> bytes:
    return make_zip({"app.py": f"TAG = {tag!r}\n\ndef handler(event, context):\n    return TAG\n"})


def damaged_zip() -> bytes:
    """A zip whose central directory reads (so the AWS CLI's own check passes) but whose
    file's local header is garbage."""
    z = bytearray(handler_zip("damaged"))
    z[0:4] = b"XXXX"
    return bytes(z)


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def lambda_cli(server, *args: str, check: bool = True, env: dict[str, str] | None = None):
    """`aws --endpoint-url URL lambda ARGS --output json`."""
    return run_aws(server, *args, check=check, service="lambda", env=env)


def cli_fails(server, code: str, message: str | re.Pattern, *args: str, env=None) -> CliError:
    err = lambda_cli(server, *args, check=False, env=env)
    assert err.code == code, err
    if isinstance(message, str):
        assert err.message == message, err
    else:
        assert message.search(err.message), err
    return err


def lambda_client(server, secret_key: str | None = None, access_key: str | None = None,
                  validate: bool = True):
    ak, sk = server.keys()
    c = boto3.session.Session().client(
        "lambda", endpoint_url=server.url, region_name=REGION,
        aws_access_key_id=access_key or ak, aws_secret_access_key=secret_key or sk,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"},
                      parameter_validation=validate, read_timeout=60),
    )
    c.meta.events.register("before-send.lambda", lambda request, **_: TRANSCRIPT.request(
        request.method, request.url, request.body))
    c.meta.events.register("after-call.lambda", lambda http_response, model, **_: (
        TRANSCRIPT.response(http_response.status_code, http_response.headers,
                            http_response.content), TRANSCRIPT.add(f"    ({model.name})")))
    return c


def with_body(client, operation: str, body: bytes):
    """Make the client's next `operation` send `body` instead of what it serialised; it is
    signed as sent, so the server sees a well-signed request with a body no SDK would send."""
    event = f"before-sign.lambda.{operation}"

    def swap(request, **_):
        request.data = body
        client.meta.events.unregister(event, swap)

    client.meta.events.register(event, swap)
    return client


def signed_get(server, url: str, service: str = "lambda") -> RawResponse:
    """A GET of an absolute URL on the server, SigV4-signed as any AWS client signs."""
    ak, sk = server.keys()
    req = AWSRequest(method="GET", url=url, data=b"", headers={})
    SigV4Auth(Credentials(ak, sk), service, REGION).add_auth(req)
    prepared = req.prepare()
    TRANSCRIPT.request("GET", prepared.url, None)
    r = urllib.request.Request(prepared.url, method="GET", headers=dict(prepared.headers.items()))
    try:
        with urllib.request.urlopen(r, timeout=30) as resp:
            out = RawResponse(resp.status, dict(resp.headers.items()), resp.read())
    except urllib.error.HTTPError as e:
        out = RawResponse(e.code, dict(e.headers.items()), e.read())
    TRANSCRIPT.response(out.status, out.headers, b"<zip>" if out.status == 200 else out.body)
    return out


def account(server) -> str:
    return re.search(r"region / account\s+\S+ / (\d{12})", "\n".join(server.stdout_lines)).group(1)


@pytest.fixture(scope="module")
def lam(server):
    return lambda_client(server)


@pytest.fixture(scope="module")
def role(server):
    return ROLE_TEMPLATE.format(account=account(server))


@pytest.fixture(scope="module")
def arn_prefix(server):
    return f"arn:aws:lambda:{REGION}:{account(server)}:function:"


def create(lam, role, name: str, zip_bytes: bytes, **kw):
    return lam.create_function(FunctionName=name, Runtime="python3.12", Role=role,
                               Handler="app.handler", Code={"ZipFile": zip_bytes}, **kw)


# ---- the AWS CLI ----------------------------------------------------------------------------


def test_cli_function_lifecycle(server, role, arn_prefix, tmp_path):
    v1_zip, v2_zip = handler_zip("one"), handler_zip("two")
    (tmp_path / "one.zip").write_bytes(v1_zip)
    (tmp_path / "two.zip").write_bytes(v2_zip)
    arn = arn_prefix + "CliTemp"

    c = lambda_cli(server, "create-function", "--function-name", "CliTemp",
                   "--runtime", "python3.12", "--role", role, "--handler", "app.handler",
                   "--zip-file", f"fileb://{tmp_path / 'one.zip'}", "--timeout", "10",
                   "--memory-size", "256", "--description", "made by the CLI",
                   "--environment", "Variables={LEVEL=debug,UNIT=C}")
    assert c["FunctionName"] == "CliTemp" and c["FunctionArn"] == arn
    assert c["Version"] == "$LATEST"
    assert (c["Runtime"], c["Role"], c["Handler"]) == ("python3.12", role, "app.handler")
    assert (c["Timeout"], c["MemorySize"], c["Description"]) == (10, 256, "made by the CLI")
    assert c["Environment"] == {"Variables": {"LEVEL": "debug", "UNIT": "C"}}
    assert c["CodeSha256"] == sha256_b64(v1_zip) and c["CodeSize"] == len(v1_zip)
    assert (c["State"], c["LastUpdateStatus"]) == ("Active", "Successful")
    assert LAST_MODIFIED_RE.match(c["LastModified"]), c["LastModified"]
    assert re.fullmatch(r"[0-9a-f-]{36}", c["RevisionId"])

    got = lambda_cli(server, "get-function", "--function-name", "CliTemp")
    assert got["Configuration"]["FunctionArn"] == arn, "unqualified, as AWS answers"
    assert got["Configuration"]["CodeSha256"] == c["CodeSha256"]
    assert got["Code"]["RepositoryType"] == "S3"
    location = got["Code"]["Location"]
    assert location.startswith(server.url + "/2015-03-31/functions/CliTemp/"), location
    zip_back = signed_get(server, location)
    assert zip_back.status == 200 and zip_back.body == v1_zip
    assert {k.lower(): v for k, v in zip_back.headers.items()}["content-type"] == \
        "application/zip"

    conf = lambda_cli(server, "get-function-configuration", "--function-name", "CliTemp",
                      "--qualifier", "$LATEST")
    assert conf["FunctionArn"] == arn + ":$LATEST" and conf["Version"] == "$LATEST"

    v1 = lambda_cli(server, "publish-version", "--function-name", "CliTemp",
                    "--description", "first")
    assert (v1["Version"], v1["FunctionArn"], v1["Description"]) == ("1", arn + ":1", "first")
    again = lambda_cli(server, "publish-version", "--function-name", arn)
    assert again["Version"] == "1", "the code did not change: the same version"

    v2 = lambda_cli(server, "update-function-code", "--function-name", "CliTemp",
                    "--zip-file", f"fileb://{tmp_path / 'two.zip'}", "--publish")
    assert (v2["Version"], v2["FunctionArn"]) == ("2", arn + ":2")
    assert v2["CodeSha256"] == sha256_b64(v2_zip)

    alias = lambda_cli(server, "create-alias", "--function-name", "CliTemp", "--name", "live",
                       "--function-version", "1", "--description", "production")
    assert alias["AliasArn"] == arn + ":live"
    assert (alias["Name"], alias["FunctionVersion"], alias["Description"]) == \
        ("live", "1", "production")
    got = lambda_cli(server, "get-function", "--function-name", "CliTemp:live")
    assert got["Configuration"]["FunctionArn"] == arn + ":live"
    assert got["Configuration"]["Version"] == "1"
    assert signed_get(server, got["Code"]["Location"]).body == v1_zip

    moved = lambda_cli(server, "update-alias", "--function-name", "CliTemp", "--name", "live",
                       "--function-version", "2", "--revision-id", alias["RevisionId"])
    assert moved["FunctionVersion"] == "2" and moved["RevisionId"] != alias["RevisionId"]
    assert moved["Description"] == "production"
    assert lambda_cli(server, "get-alias", "--function-name", "CliTemp",
                      "--name", "live")["FunctionVersion"] == "2"
    cli_fails(server, "PreconditionFailedException", re.compile("Revision Id"),
              "update-alias", "--function-name", "CliTemp", "--name", "live",
              "--function-version", "1", "--revision-id", alias["RevisionId"])
    lambda_cli(server, "create-alias", "--function-name", "CliTemp", "--name", "dev",
               "--function-version", "$LATEST")
    aliases = lambda_cli(server, "list-aliases", "--function-name", "CliTemp")["Aliases"]
    assert [(a["Name"], a["FunctionVersion"]) for a in aliases] == [("live", "2"),
                                                                     ("dev", "$LATEST")]
    only = lambda_cli(server, "list-aliases", "--function-name", "CliTemp",
                      "--function-version", "2")["Aliases"]
    assert [a["Name"] for a in only] == ["live"]

    versions = lambda_cli(server, "list-versions-by-function", "--function-name", "CliTemp")
    assert [(v["Version"], v["FunctionArn"]) for v in versions["Versions"]] == [
        ("$LATEST", arn + ":$LATEST"), ("1", arn + ":1"), ("2", arn + ":2")]

    cli_fails(server, "ResourceConflictException",
              "Unable to delete version because the following aliases reference it: [live]",
              "delete-function", "--function-name", "CliTemp", "--qualifier", "2")
    lambda_cli(server, "delete-alias", "--function-name", "CliTemp", "--name", "live")
    lambda_cli(server, "delete-function", "--function-name", "CliTemp", "--qualifier", "2")
    versions = lambda_cli(server, "list-versions-by-function", "--function-name", "CliTemp")
    assert [v["Version"] for v in versions["Versions"]] == ["$LATEST", "1"]

    lambda_cli(server, "delete-function", "--function-name", arn)
    cli_fails(server, "ResourceNotFoundException", f"Function not found: {arn}",
              "get-function", "--function-name", "CliTemp")
    cli_fails(server, "ResourceNotFoundException", f"Function not found: {arn}",
              "list-aliases", "--function-name", "CliTemp")
    assert signed_get(server, location).status == 404, "its code went with it"


def test_cli_errors(server, role, arn_prefix, tmp_path):
    good, bad = tmp_path / "good.zip", tmp_path / "bad.zip"
    good.write_bytes(handler_zip("e"))
    bad.write_bytes(damaged_zip())

    def create_cli(name: str, zip_path: Path = good, *extra: str):
        return ("create-function", "--function-name", name, "--runtime", "python3.12",
                "--role", role, "--handler", "app.handler", "--zip-file", f"fileb://{zip_path}",
                *extra)

    lambda_cli(server, *create_cli("CliErr"))
    cli_fails(server, "ResourceConflictException", "Function already exist: CliErr",
              *create_cli("CliErr"))
    cli_fails(server, "InvalidParameterValueException", UNZIP, *create_cli("CliBadZip", bad))
    cli_fails(server, "InvalidParameterValueException", UNZIP, "update-function-code",
              "--function-name", "CliErr", "--zip-file", f"fileb://{bad}")
    cli_fails(server, "InvalidParameterValueException",
              re.compile(r"^Code\.S3Bucket: .*only as ZipFile"),
              "create-function", "--function-name", "CliS3", "--runtime", "python3.12",
              "--role", role, "--handler", "app.handler",
              "--code", "S3Bucket=my-bucket,S3Key=fn.zip")
    cli_fails(server, "InvalidParameterValueException", re.compile(r"^FunctionName: 'bad name'"),
              *create_cli("bad name"))
    cli_fails(server, "InvalidParameterValueException", re.compile(r"^FunctionName: .*1 to 64"),
              *create_cli("x" * 65))
    cli_fails(server, "InvalidParameterValueException", re.compile(r"^Role: "),
              "create-function", "--function-name", "CliRole", "--runtime", "python3.12",
              "--role", "admin", "--handler", "app.handler", "--zip-file", f"fileb://{good}")
    cli_fails(server, "InvalidParameterValueException", re.compile(r"^Timeout: 901 seconds"),
              *create_cli("CliTimeout", good, "--timeout", "901"))
    cli_fails(server, "ResourceNotFoundException", f"Function not found: {arn_prefix}CliErr:9",
              "create-alias", "--function-name", "CliErr", "--name", "x",
              "--function-version", "9")
    cli_fails(server, "ResourceNotFoundException", f"Alias not found: {arn_prefix}CliErr:nope",
              "get-alias", "--function-name", "CliErr", "--name", "nope")
    cli_fails(server, "InvalidParameterValueException",
              "$LATEST version cannot be deleted without deleting the function.",
              "delete-function", "--function-name", "CliErr", "--qualifier", "$LATEST")
    cli_fails(server, "InvalidParameterValueException",
              "The derived qualifier from the function name does not match the specified "
              "qualifier.", "get-function", "--function-name", "CliErr:1", "--qualifier", "2")
    cli_fails(server, "InvalidParameterValueException", re.compile(r"^FunctionName: region"),
              "get-function", "--function-name",
              arn_prefix.replace(REGION, "eu-west-1") + "CliErr")
    cli_fails(server, "UnknownOperationException", re.compile(r"^Invoke is not supported"),
              "invoke", "--function-name", "CliErr", str(tmp_path / "out.json"))

    # A wrong secret, an unknown access key.
    ak, _ = server.keys()
    cli_fails(server, "InvalidSignatureException",
              re.compile(r"^The request signature we calculated does not match"),
              "list-functions", env={"AWS_ACCESS_KEY_ID": ak, "AWS_SECRET_ACCESS_KEY": "x" * 40})
    cli_fails(server, "UnrecognizedClientException",
              "The security token included in the request is invalid.",
              "list-functions",
              env={"AWS_ACCESS_KEY_ID": "AKIANOTAKEY000000000", "AWS_SECRET_ACCESS_KEY": "x"})
    lambda_cli(server, "delete-function", "--function-name", "CliErr")


def test_cli_pagination(server, role, tmp_path):
    z = tmp_path / "p.zip"
    z.write_bytes(handler_zip("p"))
    names = [f"CliPage{i}" for i in range(5)]
    for n in names:
        lambda_cli(server, "create-function", "--function-name", n, "--runtime", "python3.12",
                   "--role", role, "--handler", "app.handler", "--zip-file", f"fileb://{z}")
    # --page-size makes the CLI ask for pages of 2 and follow NextMarker.
    listed = lambda_cli(server, "list-functions", "--page-size", "2")["Functions"]
    assert [f["FunctionName"] for f in listed if f["FunctionName"].startswith("CliPage")] == names
    first = lambda_cli(server, "list-functions", "--max-items", "3")
    assert len(first["Functions"]) == 3 and first["NextToken"]
    for n in names:
        lambda_cli(server, "delete-function", "--function-name", n)


# ---- boto3 ----------------------------------------------------------------------------------


def test_boto3_publish_alias_and_arn_forms(lam, role, arn_prefix, server):
    one, two = handler_zip("b1"), handler_zip("b2")
    arn = arn_prefix + "BotoTemp"
    c = create(lam, role, "BotoTemp", one, Publish=True, Timeout=30, MemorySize=512,
               Environment={"Variables": {"A1": "x"}}, Tags={"team": "edge"},
               Architectures=["arm64"])
    assert c["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert (c["Version"], c["FunctionArn"]) == ("1", arn + ":1"), "Publish: version 1 at once"
    assert c["Architectures"] == ["arm64"] and c["PackageType"] == "Zip"
    assert c["ResponseMetadata"]["RequestId"]

    account_id = account(server)
    for name, qualifier, version, answered in [
        ("BotoTemp", None, "$LATEST", arn),
        (arn, None, "$LATEST", arn),
        (arn + ":1", None, "1", arn + ":1"),
        (f"{account_id}:function:BotoTemp", "1", "1", arn + ":1"),
        ("BotoTemp:$LATEST", None, "$LATEST", arn + ":$LATEST"),
    ]:
        kw = {"Qualifier": qualifier} if qualifier else {}
        got = lam.get_function(FunctionName=name, **kw)
        assert got["Configuration"]["Version"] == version, name
        assert got["Configuration"]["FunctionArn"] == answered, name
    assert lam.get_function(FunctionName="BotoTemp")["Tags"] == {"team": "edge"}

    up = lam.update_function_code(FunctionName="BotoTemp", ZipFile=two)
    assert up["Version"] == "$LATEST" and up["CodeSha256"] == sha256_b64(two)
    expect_error(412, "PreconditionFailedException", lam.publish_version,
                 FunctionName="BotoTemp", RevisionId=c["RevisionId"])
    e = expect_error(400, "InvalidParameterValueException", lam.publish_version,
                     FunctionName="BotoTemp", CodeSha256=sha256_b64(one))
    assert client_error(e)[2].startswith(f"CodeSHA256 ({sha256_b64(one)}) is different")
    v2 = lam.publish_version(FunctionName="BotoTemp", CodeSha256=sha256_b64(two),
                             RevisionId=up["RevisionId"])
    assert v2["ResponseMetadata"]["HTTPStatusCode"] == 201 and v2["Version"] == "2"
    assert lam.publish_version(FunctionName="BotoTemp")["Version"] == "2"

    a = lam.create_alias(FunctionName="BotoTemp", Name="prod", FunctionVersion="1")
    assert a["ResponseMetadata"]["HTTPStatusCode"] == 201 and a["AliasArn"] == arn + ":prod"
    e = expect_error(409, "ResourceConflictException", lam.create_alias,
                     FunctionName="BotoTemp", Name="prod", FunctionVersion="2")
    assert client_error(e)[2] == f"Alias already exists: {arn}:prod"
    got = lam.get_function_configuration(FunctionName="BotoTemp", Qualifier="prod")
    assert (got["Version"], got["CodeSha256"]) == ("1", sha256_b64(one))
    lam.update_alias(FunctionName="BotoTemp", Name="prod", FunctionVersion="2")
    got = lam.get_function(FunctionName=arn + ":prod")
    assert got["Configuration"]["Version"] == "2"
    assert signed_get(server, got["Code"]["Location"]).body == two
    deleted = lam.delete_alias(FunctionName="BotoTemp", Name="prod")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    lam.delete_alias(FunctionName="BotoTemp", Name="prod")  # already gone: still 204

    d = lam.delete_function(FunctionName="BotoTemp", Qualifier="1")
    assert d["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert [v["Version"] for v in lam.list_versions_by_function(
        FunctionName="BotoTemp")["Versions"]] == ["$LATEST", "2"]
    lam.delete_function(FunctionName="BotoTemp")
    e = expect_error(404, "ResourceNotFoundException", lam.get_function_configuration,
                     FunctionName="BotoTemp")
    assert client_error(e)[2] == f"Function not found: {arn}"
    # The modeled exception class, as scripts catch it.
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName="BotoTemp")


def test_boto3_pagination(lam, role):
    names = [f"BotoPage{i}" for i in range(7)]
    for i, n in enumerate(names):
        create(lam, role, n, handler_zip(n), Publish=i % 2 == 0)
    lam.update_function_code(FunctionName="BotoPage0", ZipFile=handler_zip("again"),
                             Publish=True)

    pages = list(lam.get_paginator("list_functions").paginate(
        PaginationConfig={"PageSize": 2}))
    assert all(len(p["Functions"]) <= 2 for p in pages)
    assert all("NextMarker" in p for p in pages[:-1]) and "NextMarker" not in pages[-1]
    seen = [f["FunctionName"] for p in pages for f in p["Functions"]]
    assert [n for n in seen if n.startswith("BotoPage")] == names

    every = [(f["FunctionName"], f["Version"])
             for p in lam.get_paginator("list_functions").paginate(
                 FunctionVersion="ALL", PaginationConfig={"PageSize": 3})
             for f in p["Functions"] if f["FunctionName"].startswith("BotoPage")]
    expected = []
    for i, n in enumerate(names):
        expected.append((n, "$LATEST"))
        if i % 2 == 0:
            expected.append((n, "1"))
        if i == 0:
            expected.append((n, "2"))
    assert every == expected

    versions = [v["Version"] for p in lam.get_paginator("list_versions_by_function").paginate(
        FunctionName="BotoPage0", PaginationConfig={"PageSize": 1}) for v in p["Versions"]]
    assert versions == ["$LATEST", "1", "2"]
    for a in ("a", "b", "c"):
        lam.create_alias(FunctionName="BotoPage0", Name=a, FunctionVersion="1")
    aliases = [a["Name"] for p in lam.get_paginator("list_aliases").paginate(
        FunctionName="BotoPage0", PaginationConfig={"PageSize": 2}) for a in p["Aliases"]]
    assert aliases == ["a", "b", "c"]

    # AWS answers at most 50 items whatever MaxItems says; bad markers and sizes are 400s.
    assert len(lam.list_functions(MaxItems=10000)["Functions"]) <= 50
    expect_error(400, "InvalidParameterValueException", lam.list_functions, Marker="nope")
    for n in names:
        lam.delete_function(FunctionName=n)


def test_boto3_errors(server, lam, role, arn_prefix):
    create(lam, role, "BotoErr", handler_zip("e"))
    loose = lambda_client(server, validate=False)

    def invalid(fn, needle: str, **kw):
        e = expect_error(400, "InvalidParameterValueException", fn, **kw)
        assert needle in client_error(e)[2], client_error(e)
        return e

    def create_kw(**kw):
        base = dict(FunctionName="BotoNew", Runtime="python3.12", Role=role,
                    Handler="app.handler", Code={"ZipFile": handler_zip("n")})
        base.update(kw)
        return base

    e = expect_error(409, "ResourceConflictException", create, lam, role, "BotoErr",
                     handler_zip("e"))
    assert client_error(e)[2] == "Function already exist: BotoErr"
    invalid(lam.create_function, UNZIP, **create_kw(Code={"ZipFile": b"PK\x03\x04 not a zip"}))
    invalid(lam.create_function, UNZIP, **create_kw(Code={"ZipFile": damaged_zip()}))
    invalid(lam.create_function, "Uploaded file must be a non-empty zip",
            **create_kw(Code={"ZipFile": make_zip({})}))
    invalid(lam.update_function_code, UNZIP, FunctionName="BotoErr", ZipFile=b"garbage")
    invalid(lam.update_function_code, "S3Bucket", FunctionName="BotoErr", S3Bucket="my-bucket",
            S3Key="k")
    invalid(lam.create_function, "only as ZipFile",
            **create_kw(Code={"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1"}))
    invalid(lam.create_function, "PackageType: Image is not supported",
            **create_kw(PackageType="Image"))
    invalid(lam.create_function, "Runtime and Handler are mandatory",
            **{k: v for k, v in create_kw().items() if k != "Handler"})
    invalid(lam.create_function, "Runtime: 'cobol85'", **create_kw(Runtime="cobol85"))
    invalid(lam.create_function, "VpcConfig is not supported",
            **create_kw(VpcConfig={"SubnetIds": ["subnet-1"]}))
    invalid(lam.create_function, "Environment.Variables: '_X'",
            **create_kw(Environment={"Variables": {"_X": "1"}}))
    invalid(lam.create_function, "FunctionName: 'has.dot'", **create_kw(FunctionName="has.dot"))
    invalid(lam.create_function, "FunctionName", **create_kw(FunctionName="BotoNew:1"))
    # Values botocore itself refuses, sent by a client that does not validate.
    invalid(loose.create_function, "Timeout: 0 seconds", **create_kw(Timeout=0))
    invalid(loose.create_function, "MemorySize: 64 MB", **create_kw(MemorySize=64))
    invalid(loose.create_function, "Role is required.",
            **{k: v for k, v in create_kw().items() if k != "Role"})
    invalid(loose.create_function, "Code is required.",
            **{k: v for k, v in create_kw().items() if k != "Code"})
    invalid(loose.list_functions, "MaxItems: '0'", MaxItems=0)
    invalid(lam.create_alias, "Name: '42'", FunctionName="BotoErr", Name="42",
            FunctionVersion="$LATEST")
    invalid(lam.create_alias, "RoutingConfig is not supported", FunctionName="BotoErr",
            Name="w", FunctionVersion="$LATEST",
            RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}})
    invalid(lam.get_function, "Qualifier", FunctionName="BotoErr", Qualifier="no way")
    invalid(lam.delete_function, "DeleteAlias", FunctionName="BotoErr", Qualifier="live")
    e = expect_error(404, "ResourceNotFoundException", lam.get_function,
                     FunctionName="BotoErr", Qualifier="7")
    assert client_error(e)[2] == f"Function not found: {arn_prefix}BotoErr:7"
    expect_error(404, "ResourceNotFoundException", lam.update_function_code,
                 FunctionName="Nope", ZipFile=handler_zip("x"))
    expect_error(404, "ResourceNotFoundException", lam.publish_version, FunctionName="Nope")
    expect_error(404, "ResourceNotFoundException", lam.list_versions_by_function,
                 FunctionName="Nope")
    expect_error(404, "ResourceNotFoundException", lam.delete_function, FunctionName="Nope")
    expect_error(404, "ResourceNotFoundException", lam.get_alias, FunctionName="BotoErr",
                 Name="nope")
    expect_error(404, "ResourceNotFoundException", lam.update_alias, FunctionName="BotoErr",
                 Name="nope", FunctionVersion="$LATEST")
    assert "BotoNew" not in [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    lam.delete_function(FunctionName="BotoErr")


def test_bodies_no_sdk_sends(server, role):
    """Malformed JSON, wrong types and unknown members: 400 InvalidRequestContentException
    naming the member, never a 500."""
    zip_b64 = base64.b64encode(handler_zip("raw")).decode()
    good = {"FunctionName": "RawFn", "Runtime": "python3.12", "Role": role,
            "Handler": "app.handler", "Code": {"ZipFile": zip_b64}}
    for body, needle in [
        (b"{not json", "Could not parse request body into json"),
        (b"[1, 2]", "must be a JSON object"),
        (json.dumps({**good, "Timeout": "ten"}).encode(), "Timeout: invalid type"),
        (json.dumps({**good, "Bogus": 1}).encode(), "unknown field `Bogus`"),
        (json.dumps({**good, "Code": {"ZipFile": "%%%"}}).encode(),
         "Code.ZipFile is not valid base64"),
        (json.dumps({**good, "Environment": {"Variables": {"K": 123456789}}}).encode(),
         "Environment"),
    ]:
        c = with_body(lambda_client(server), "CreateFunction", body)
        e = expect_error(400, "InvalidRequestContentException", c.create_function,
                         **{**good, "Code": {"ZipFile": b"placeholder"}})
        assert needle in client_error(e)[2], (body, client_error(e))
        assert "123456789" not in client_error(e)[2], "environment values are not echoed"


def test_signatures_and_limits(server, lam, role):
    ak, _ = server.keys()
    wrong = lambda_client(server, secret_key="x" * 40)
    e = expect_error(403, "InvalidSignatureException", wrong.list_functions)
    assert client_error(e)[2].startswith("The request signature we calculated does not match")
    expect_error(403, "UnrecognizedClientException",
                 lambda_client(server, access_key="AKIANOTAKEY000000000").list_functions)

    # Signed for Greengrass (ggtest's raw helper): the scope must name lambda.
    r = server.raw("GET", "/2015-03-31/functions")
    assert r.status == 403 and r.error_type == "InvalidSignatureException", r
    assert r.json()["message"] == "Credential should be scoped to correct service: 'lambda'.", r
    r = server.raw("GET", "/2015-03-31/functions", sign=False)
    assert r.status == 403 and r.error_type == "MissingAuthenticationTokenException", r
    # The code download needs a Lambda signature too.
    create(lam, role, "SigFn", handler_zip("s"))
    location = lam.get_function(FunctionName="SigFn")["Code"]["Location"]
    assert signed_get(server, location, service="greengrass").status == 403
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(location, timeout=10)
    assert unsigned.value.code == 403
    # Greengrass operations are untouched by Lambda's rules.
    assert server.raw("GET", "/greengrass/groups").status == 200

    # The request body bound (16 MiB) answers 413 on Lambda paths.
    e = expect_error(413, "RequestEntityTooLargeException", create, lam, role, "TooBig",
                     os.urandom(13 * 1024 * 1024))
    assert "16777216 bytes" in client_error(e)[2]
    assert lam.get_function(FunctionName="SigFn")["Configuration"]["FunctionName"] == "SigFn"
    lam.delete_function(FunctionName="SigFn")

    # Raw-shape check: the header carries the code, the body Lambda's Type and message.
    r = signed_get(server, server.url + "/2015-03-31/functions/Missing")
    assert r.status == 404 and r.error_type == "ResourceNotFoundException", r
    assert r.json()["Type"] == "User" and r.json()["Message"].startswith("Function not found: ")
    assert "x-amzn-requestid" in {k.lower() for k in r.headers}, r.headers
