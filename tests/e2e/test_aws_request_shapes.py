"""Every AWS request the core builds by hand (the SNS, Kinesis Firehose and CloudWatch Metrics
connectors, and GetSecretValue of `--secrets-manager aws`), checked against the service model
shipped with botocore.

moto_server records what reaches it (its request recorder); each recorded request is mapped
back to its operation (JSON 1.1: X-Amz-Target; Query: Action and Version), its body turned
back into the parameters boto3 would have been given (a Query body is un-flattened, driven by
the operation's input shape), and botocore's ParamValidator checks them: required members,
types, enums, ranges, and no unknown members. The protocol's Content-Type, target prefix, API
version and the SigV4 credential scope are checked against the model's metadata too.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import re
import subprocess
import time
import urllib.parse
import urllib.request
from datetime import datetime, timezone

import boto3
import botocore.session
import pytest
from botocore.serialize import create_serializer
from botocore.validate import ParamValidator

from ggtest import MqttDevice, deploy_with_cli, start_server
from test_aws_connectors import (CLOUDWATCH_CONNECTOR, CREDS, FIREHOSE_CONNECTOR, FIREHOSE_V1,
                                 SNS_CONNECTOR, STREAM, STREAM_ARN, TOPIC_ARN, aws_resources,
                                 free_port, next_on)
from test_aws_connectors import group_parts as aws_group_parts
from test_twilio import group_parts as twilio_group_parts

assert aws_resources  # a fixture used here, through the `moto` of this module

BOTOCORE = botocore.session.get_session()
# What the core is expected to send, by (botocore service name, operation).
EXPECTED = {("sns", "Publish"), ("firehose", "PutRecordBatch"), ("firehose", "PutRecord"),
            ("cloudwatch", "PutMetricData"), ("secretsmanager", "GetSecretValue")}
# Which botocore service a JSON X-Amz-Target prefix or a Query Version belongs to.
SERVICES = ("sns", "firehose", "cloudwatch", "secretsmanager")


# ---- from a recorded request to validated parameters -------------------------------------------


def _leaf(value: str, shape, path: str, errors: list[str]):
    """A Query scalar, typed per `shape`; left a string when it does not convert, for the
    validator to report as an invalid type."""
    t = shape.type_name
    try:
        if t in ("integer", "long"):
            return int(value)
        if t in ("float", "double"):
            return float(value)
        if t == "boolean":
            return {"true": True, "false": False}[value]
        if t == "timestamp":  # the Query protocol's ISO 8601, its zone explicit
            if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value):
                raise ValueError("not ISO 8601 with a zone")
            return datetime.fromisoformat(value)
        if t == "blob":
            return base64.b64decode(value, validate=True)
    except (ValueError, KeyError, binascii.Error) as e:
        errors.append(f"{path}: {value!r} is not a {t} ({e})")
        return value
    return value


def _numbered(node: dict, path: str, errors: list[str]) -> list:
    """The values of `node` keyed 1..N, in order; anything else is an error."""
    keys = sorted(node, key=lambda k: int(k) if k.isdigit() else -1)
    if keys != [str(i) for i in range(1, len(keys) + 1)]:
        errors.append(f"{path}: indices {sorted(node)} are not 1..N")
    return [node[k] for k in keys]


def _convert(node, shape, path: str, errors: list[str]):
    t = shape.type_name
    if t == "structure":
        if not isinstance(node, dict):
            errors.append(f"{path}: a value where structure {shape.name} was expected")
            return node
        by_wire = {m.serialization.get("name", name): (name, m)
                   for name, m in shape.members.items()}
        out = {}
        for key, sub in node.items():
            name, member = by_wire.get(key, (key, None))
            # An unknown member is kept as sent: the validator reports it.
            out[name] = sub if member is None else _convert(sub, member, f"{path}.{key}", errors)
        return out
    if t == "list":
        if not isinstance(node, dict):
            errors.append(f"{path}: a value where list {shape.name} was expected")
            return node
        member = shape.member
        if not shape.serialization.get("flattened"):
            wrapper = member.serialization.get("name", "member")
            if set(node) != {wrapper}:
                errors.append(f"{path}: list not in the {wrapper}.N form: {sorted(node)}")
                return []
            node = node[wrapper]
        return [_convert(v, member, f"{path}[{i}]", errors)
                for i, v in enumerate(_numbered(node, path, errors))]
    if t == "map":
        if not isinstance(node, dict):
            errors.append(f"{path}: a value where map {shape.name} was expected")
            return node
        if not shape.serialization.get("flattened"):
            if set(node) != {"entry"}:
                errors.append(f"{path}: map not in the entry.N form: {sorted(node)}")
                return {}
            node = node["entry"]
        kname = shape.key.serialization.get("name", "key")
        vname = shape.value.serialization.get("name", "value")
        out = {}
        for entry in _numbered(node, path, errors):
            if not isinstance(entry, dict) or set(entry) != {kname, vname}:
                errors.append(f"{path}: entry is not {{{kname}, {vname}}}: {entry!r}")
                continue
            key = _convert(entry[kname], shape.key, f"{path}.{kname}", errors)
            out[key] = _convert(entry[vname], shape.value, f"{path}[{key!r}]", errors)
        return out
    if isinstance(node, dict):
        errors.append(f"{path}: nested keys {sorted(node)} where {t} was expected")
        return node
    return _leaf(node, shape, path, errors)


def unflatten_query(pairs: list[tuple[str, str]], input_shape) -> tuple[dict, list[str]]:
    """The parameters a Query body stands for (Action and Version taken out), and whatever
    in it is not well formed."""
    errors: list[str] = []
    tree: dict = {}
    for key, value in pairs:
        if key in ("Action", "Version"):
            continue
        *parents, last = key.split(".")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                errors.append(f"{key}: {p} is both a value and a prefix")
                break
        else:
            if last in node:
                errors.append(f"{key}: given twice (or both a value and a prefix)")
            node[last] = value
    return _convert(tree, input_shape, "", errors), errors


def decode_json(value, shape, path: str, errors: list[str]):
    """A JSON body's blobs decoded (strict Base64) and timestamps (epoch seconds) made
    datetimes; everything else as parsed, for the validator."""
    t = shape.type_name
    if t == "structure" and isinstance(value, dict):
        return {k: decode_json(v, shape.members[k], f"{path}.{k}", errors)
                if k in shape.members else v for k, v in value.items()}
    if t == "list" and isinstance(value, list):
        return [decode_json(v, shape.member, f"{path}[{i}]", errors) for i, v in enumerate(value)]
    if t == "map" and isinstance(value, dict):
        return {k: decode_json(v, shape.value, f"{path}[{k!r}]", errors) for k, v in value.items()}
    if t == "blob" and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error as e:
            errors.append(f"{path}: not Base64 ({e})")
    if t == "timestamp" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    return value


def beyond_botocore(value, shape, path: str) -> list[str]:
    """What the model says that ParamValidator does not check (it checks required members,
    types and minimums): enums, maximums and patterns."""
    t, md, out = shape.type_name, shape.metadata, []
    if t == "structure" and isinstance(value, dict):
        for k, v in value.items():
            if k in shape.members:
                out += beyond_botocore(v, shape.members[k], f"{path}.{k}")
    elif t == "list" and isinstance(value, list):
        for i, v in enumerate(value):
            out += beyond_botocore(v, shape.member, f"{path}[{i}]")
    elif t == "map" and isinstance(value, dict):
        for k, v in value.items():
            out += beyond_botocore(k, shape.key, f"{path} key")
            out += beyond_botocore(v, shape.value, f"{path}[{k!r}]")
    if t == "string" and isinstance(value, str):
        if shape.enum and value not in shape.enum:
            out.append(f"{path}: {value!r} is not one of the enum {shape.enum}")
        if "pattern" in md and not re.fullmatch(md["pattern"], value, re.S):
            out.append(f"{path}: {value!r} does not match the pattern {md['pattern']!r}")
    size = len(value) if isinstance(value, (str, bytes, list, dict)) else value
    if "max" in md and isinstance(size, (int, float)) and size > md["max"]:
        out.append(f"{path}: {size} is more than the maximum {md['max']}")
    return out


def validate(params: dict, shape) -> str:
    """botocore's report on `params`, and the model's enums, maximums and patterns ('' when
    valid)."""
    report = ParamValidator().validate(params, shape)
    lines = [report.generate_report()] if report.has_errors() else []
    return "\n".join(lines + beyond_botocore(params, shape, "input"))


def header(req: dict, name: str) -> str | None:
    return next((v for k, v in req["headers"].items() if k.lower() == name.lower()), None)


def body_bytes(req: dict) -> bytes:
    body = req.get("body") or ""
    return base64.b64decode(body) if req.get("body_encoded") else body.encode()


def check_request(req: dict) -> tuple[str, str, dict, list[str]]:
    """The service and operation of a recorded request, its parameters, and every way it
    departs from botocore's model."""
    problems = []
    ctype = header(req, "Content-Type") or ""
    target = header(req, "X-Amz-Target")
    body = body_bytes(req)
    if req["method"] != "POST" or urllib.parse.urlparse(req["url"]).path != "/":
        problems.append(f"{req['method']} {req['url']}: not a POST to /")
    if target is not None:
        prefix, _, op = target.partition(".")
        matches = [s for s in SERVICES
                   if BOTOCORE.get_service_model(s).metadata.get("targetPrefix") == prefix]
        assert len(matches) == 1, f"no botocore service has the target prefix {prefix!r}"
        model = BOTOCORE.get_service_model(matches[0])
        assert "json" in model.metadata.get("protocols", [model.protocol]), model.metadata
        want = f"application/x-amz-json-{model.metadata['jsonVersion']}"
        if ctype != want:
            problems.append(f"Content-Type {ctype!r}, the model wants {want!r}")
        assert op in model.operation_names, f"{target}: no such operation in {model.service_name}"
        shape = model.operation_model(op).input_shape
        try:
            raw = json.loads(body)
        except ValueError as e:
            return model.service_name, op, {}, [*problems, f"the body is not JSON: {e}"]
        params = decode_json(raw, shape, "", problems)
    else:
        pairs = urllib.parse.parse_qsl(body.decode(), keep_blank_values=True,
                                       strict_parsing=True)
        fields = dict(pairs)
        op, version = fields.get("Action"), fields.get("Version")
        matches = [s for s in SERVICES
                   if BOTOCORE.get_service_model(s).api_version == version
                   and "query" in BOTOCORE.get_service_model(s).metadata.get("protocols", [])]
        assert len(matches) == 1, f"Action={op} Version={version}: no Query service has it"
        model = BOTOCORE.get_service_model(matches[0])
        if not ctype.startswith("application/x-www-form-urlencoded"):
            problems.append(f"Content-Type {ctype!r}, the Query protocol wants a form")
        assert op in model.operation_names, f"Action={op}: not in {model.service_name}"
        params, errors = unflatten_query(pairs, model.operation_model(op).input_shape)
        problems += errors
        shape = model.operation_model(op).input_shape
    scope = re.search(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request",
                      header(req, "Authorization") or "")
    signing = model.metadata.get("signingName", model.endpoint_prefix)
    if not scope or scope.groups() != ("us-east-1", signing):
        problems.append(f"SigV4 scope {scope and scope.groups()}, want ('us-east-1', {signing!r})")
    report = validate(params, shape)
    if report:
        problems.append(report)
    return model.service_name, op, params, problems


# ---- the self-checks: the un-flattener is not vacuous ------------------------------------------


def shape_of(service: str, op: str):
    return BOTOCORE.get_service_model(service).operation_model(op).input_shape


def wire(service: str, op: str, params: dict) -> list[tuple[str, str]]:
    """`params` as boto3 puts them on the wire (the Query protocol), parsed back into pairs."""
    model = BOTOCORE.get_service_model(service).operation_model(op)
    body = create_serializer("query").serialize_to_request(params, model)["body"]
    return urllib.parse.parse_qsl(urllib.parse.urlencode(body), keep_blank_values=True)


def test_the_unflattener_round_trips_what_botocore_serializes():
    metrics = {"Namespace": "Coupler/Test", "MetricData": [
        {"MetricName": "latency", "Value": 1.5, "Unit": "Seconds",
         "Timestamp": datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc),
         "Dimensions": [{"Name": "a", "Value": "b"}, {"Name": "c", "Value": "d"}],
         "StorageResolution": 1},
        {"MetricName": "m2", "Values": [1.0, 2.5], "Counts": [3.0, 4.0]}],
        "StrictEntityValidation": False}
    publish = {"TopicArn": TOPIC_ARN, "Message": "m", "Subject": "s", "MessageStructure": "json",
               "MessageAttributes": {"k": {"DataType": "Binary", "BinaryValue": b"\x00\xff"},
                                     "j": {"DataType": "String", "StringValue": "v"}}}
    for service, op, params in (("cloudwatch", "PutMetricData", metrics),
                                ("sns", "Publish", publish)):
        got, errors = unflatten_query(wire(service, op, params), shape_of(service, op))
        assert errors == [] and got == params, (got, errors)
        assert validate(got, shape_of(service, op)) == ""


@pytest.mark.parametrize("mutate,message", [
    (lambda p: [(k.replace("MetricName", "MetricNam"), v) for k, v in p],
     'Unknown parameter in MetricData[0]: "MetricNam", must be one of:'),
    (lambda p: [(k, v) for k, v in p if k != "Namespace"],
     'Missing required parameter in input: "Namespace"'),
    (lambda p: [(k, "Parsecs" if k.endswith(".Unit") else v) for k, v in p],
     "input.MetricData[0].Unit: 'Parsecs' is not one of the enum"),
    (lambda p: [(k, "x" * 256 if k.endswith(".MetricName") else v) for k, v in p],
     "input.MetricData[0].MetricName: 256 is more than the maximum 255"),
    (lambda p: [(k, ":N" if k == "Namespace" else v) for k, v in p],
     "input.Namespace: ':N' does not match the pattern"),
    (lambda p: [(k, "lots" if k.endswith(".Value") and "Dimensions" not in k else v)
                for k, v in p],
     "Invalid type for parameter MetricData[0].Value, value: lots"),
    (lambda p: [(k.replace(".member.", ".", 1), v) for k, v in p],
     "MetricData: list not in the member.N form"),
    (lambda p: [(k.replace("member.1.", "member.2.", 1), v) for k, v in p],
     "indices ['2'] are not 1..N"),
    (lambda p: [(k, "yesterday" if k.endswith("Timestamp") else v) for k, v in p],
     "'yesterday' is not a timestamp"),
    (lambda p: [(k, v[:19] if k.endswith("Timestamp") else v) for k, v in p],
     "is not a timestamp (not ISO 8601 with a zone)"),
])
def test_a_wrong_query_request_is_caught(mutate, message):
    """The test cannot pass vacuously: a misspelt, missing, mistyped or malformed member of a
    PutMetricData is reported."""
    good = {"Namespace": "N", "MetricData": [{"MetricName": "m", "Value": 1.0, "Unit": "Count",
                                               "Timestamp": datetime.now(timezone.utc)}]}
    shape = shape_of("cloudwatch", "PutMetricData")
    params, errors = unflatten_query(mutate(wire("cloudwatch", "PutMetricData", good)), shape)
    found = "\n".join(errors + [validate(params, shape)])
    assert message in found, found


def test_a_wrong_json_request_is_caught():
    shape = shape_of("firehose", "PutRecordBatch")
    errors: list[str] = []
    params = decode_json({"DeliveryStreamName": STREAM, "Record": {"Data": "eA=="},
                          "Records": [{"Data": "not base64!"}]}, shape, "", errors)
    assert errors and "Records[0].Data: not Base64" in errors[0], errors
    assert 'Unknown parameter in input: "Record"' in validate(params, shape)
    assert validate({"DeliveryStreamName": STREAM, "Records": []}, shape) != ""  # min 1


# ---- the core's requests, recorded by moto_server ----------------------------------------------


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    """This module's own moto_server (instead of conftest's), its recording kept in a
    temporary directory rather than the working directory."""
    base = tmp_path_factory.mktemp("moto-rec")
    url = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "MOTO_RECORDER_FILEPATH": str(base / "recording.jsonl")}
    with open(base / "moto.log", "wb") as log:
        proc = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", url.rsplit(":", 1)[1]],
                                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=base)
    for _ in range(200):
        assert proc.poll() is None, "moto_server exited"
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    else:
        pytest.fail("moto_server did not start")

    yield url, functools.partial(boto3.client, endpoint_url=url, region_name="us-east-1",
                                 aws_access_key_id=CREDS["AWS_ACCESS_KEY_ID"],
                                 aws_secret_access_key=CREDS["AWS_SECRET_ACCESS_KEY"])
    proc.terminate()
    proc.wait(timeout=10)


def recorder(url: str, what: str) -> str:
    method = "GET" if what == "download-recording" else "POST"
    req = urllib.request.Request(f"{url}/moto-api/recorder/{what}", method=method)
    return urllib.request.urlopen(req, timeout=10).read().decode()


def drive(tmp_path_factory, url: str, secret_arn: str) -> None:
    """One core with the three connectors and a secret of Secrets Manager (fetched at
    deployment), each connector sent a representative message; then one with Firehose
    version 1 (PutRecord)."""
    server = start_server(tmp_path_factory.mktemp("shapes"), "--allow-uncontained",
                          "--secrets-manager", "aws", env={"AWS_ENDPOINT_URL": url, **CREDS})
    try:
        parts = aws_group_parts([SNS_CONNECTOR, FIREHOSE_CONNECTOR, CLOUDWATCH_CONNECTOR])
        twilio = twilio_group_parts(secret_arn)
        parts["resources"] = twilio["resources"]
        parts["connectors"]["Connectors"] += twilio["connectors"]["Connectors"]
        parts["subscriptions"]["Subscriptions"] += twilio["subscriptions"]["Subscriptions"]
        _, status = deploy_with_cli(server, parts, name="shapes")
        assert status["DeploymentStatus"] == "Success", status
        dev = MqttDevice(server.mqtt_plain_port, "tester", "#")
        try:
            dev.request("sns/message", {"id": "s1", "request": {
                "subject": "Boiler", "message_structure": "json",
                "message": json.dumps({"default": "for all", "sqs": "for sqs"})}})
            assert next_on(dev, "sns/message/status")["response"]["status"] == "success"
            dev.request("kinesisfirehose/message", {"request": {"data": "json;"}, "id": "j1"})
            dev.request("kinesisfirehose/message/binary/b1", b"\x00\xffbinary;")
            dev.request("cloudwatch/metric/put", {"request": {
                "namespace": "Coupler/Shapes",
                "metricData": {"metricName": "latency", "value": 12.5, "unit": "Seconds",
                               "timestamp": int(time.time()),
                               "dimensions": [{"name": "hostname", "value": "h1"}]}}})
            entries = []
            while len(entries) < 2:
                entries += next_on(dev, "kinesisfirehose/message/status")["response"]
            assert all(e["status"] == "success" for e in entries), entries
            r = next_on(dev, "cloudwatch/metric/put/status")["response"]
            assert r["status"] == "success", r
        finally:
            dev.close()
    finally:
        server.stop()
    server = start_server(tmp_path_factory.mktemp("shapes-v1"), "--allow-uncontained",
                          env={"AWS_ENDPOINT_URL": url, **CREDS})
    try:
        v1 = {"Id": "firehose1", "ConnectorArn": FIREHOSE_V1,
              "Parameters": {"DefaultDeliveryStreamArn": STREAM_ARN}}
        _, status = deploy_with_cli(server, aws_group_parts([SNS_CONNECTOR, v1]), name="v1")
        assert status["DeploymentStatus"] == "Success", status
        dev = MqttDevice(server.mqtt_plain_port, "tester", "#")
        try:
            dev.request("kinesisfirehose/message/binary/one", b"version one;")
            body = next_on(dev, "kinesisfirehose/message/status")
            assert body["response"]["status"] == "success", body
        finally:
            dev.close()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, moto, aws_resources):
    """The core's requests to moto_server, each checked: (service, operation, params,
    problems). Recording starts after boto3's setup; boto3's requests are left out anyway."""
    url, client = moto
    secret_arn = client("secretsmanager").create_secret(
        Name="greengrass-ShapesToken", SecretString="shapes-token")["ARN"]
    recorder(url, "reset-recording")
    recorder(url, "start-recording")
    try:
        drive(tmp_path_factory, url, secret_arn)
    finally:
        recorder(url, "stop-recording")
    lines = recorder(url, "download-recording").splitlines()
    reqs = [json.loads(line) for line in lines if line.strip()]
    ours = [r for r in reqs if not re.search(r"Boto3|Botocore|aws-cli",
                                             header(r, "User-Agent") or "", re.I)]
    return [(r, *check_request(r)) for r in ours]


def test_every_expected_operation_was_sent(recorded):
    seen = {(service, op) for _, service, op, _, _ in recorded}
    assert EXPECTED <= seen, f"missing {EXPECTED - seen}; seen {seen}"
    assert seen <= EXPECTED, f"unexpected requests: {seen - EXPECTED}"


def test_every_request_matches_the_botocore_model(recorded):
    bad = [f"{service}.{op}: {problems}\n  params: {params!r}"
           for _, service, op, params, problems in recorded if problems]
    assert not bad, "\n".join(bad)


def test_the_representative_members_reached_the_wire(recorded):
    """The payloads' optional members were sent, so the model checked them too."""
    by_op: dict = {}
    for _, service, op, params, _ in recorded:
        by_op.setdefault((service, op), []).append(params)
    [publish] = by_op[("sns", "Publish")]
    assert (publish["TopicArn"], publish["Subject"], publish["MessageStructure"]) == \
        (TOPIC_ARN, "Boiler", "json"), publish
    records = [r["Data"] for p in by_op[("firehose", "PutRecordBatch")] for r in p["Records"]]
    assert sorted(records) == [b"\x00\xffbinary;", b"json;"], records
    [one] = by_op[("firehose", "PutRecord")]
    assert one == {"DeliveryStreamName": STREAM, "Record": {"Data": b"version one;"}}, one
    datum = next(d for p in by_op[("cloudwatch", "PutMetricData")] for d in p["MetricData"])
    assert (datum["MetricName"], datum["Value"], datum["Unit"]) == ("latency", 12.5, "Seconds")
    assert {"Name": "hostname", "Value": "h1"} in datum["Dimensions"], datum
    assert isinstance(datum["Timestamp"], datetime), datum
    secrets = by_op[("secretsmanager", "GetSecretValue")]
    assert all(p["SecretId"].startswith("arn:aws:secretsmanager:") for p in secrets), secrets


@pytest.mark.parametrize("op,old,new,message", [
    ("PutMetricData", b"MetricName=", b"MetricNam=",
     'Unknown parameter in MetricData[0]: "MetricNam"'),
    ("Publish", b"&Subject=", b"&Subjct=", 'Unknown parameter in input: "Subjct"'),
    ("PutRecordBatch", b'"Records"', b'"Record"', 'Missing required parameter in input: "Records"'),
    ("GetSecretValue", b'"SecretId"', b'"SecretID"', 'Unknown parameter in input: "SecretID"'),
])
def test_a_recorded_request_tampered_with_fails_the_check(recorded, op, old, new, message):
    """The whole path (the recording, the body's decoding, the un-flattening) reports a
    misspelt member of a real request."""
    req = next(r for r, _, o, _, _ in recorded if o == op)
    body = body_bytes(req)
    assert old in body, body
    tampered = {**req, "body": base64.b64encode(body.replace(old, new)).decode(),
                "body_encoded": True}
    _, _, _, problems = check_request(tampered)
    assert any(message in p for p in problems), problems
