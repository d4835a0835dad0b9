"""Greengrass Lambda functions on Coupler, written against the unmodified greengrasssdk 1.6.1
from PyPI: created, published and aliased with `aws lambda`, deployed with `aws greengrass`,
and driven by a paho-mqtt device."""

from __future__ import annotations

import io
import json
import subprocess
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from test_twilio import create_secret  # noqa: F401 (also used by other modules)
from ggtest import (CLI_TIMEOUT_S, MqttDevice, aws_command, coupler_bin, deploy_with_cli,
                    run_aws, start_server)

CERT_SUFFIX = "cert/" + "ab" * 32

ECHO = '''
import json
import greengrasssdk

iot = greengrasssdk.client("iot-data")
started = 0

def handler(event, context):
    global started
    started += 1
    subject = context.client_context.custom["subject"]
    iot.publish(topic="out/" + subject, payload=json.dumps({
        "got": event, "subject": subject, "arn": context.invoked_function_arn,
        "request_id": context.aws_request_id, "calls": started}))
'''

ADDER = '''
import os
def handler(event, context):
    return {"sum": event["a"] + event["b"], "version": context.function_version,
            "env": os.environ.get("GREETING")}
'''

RAISER = '''
def handler(event, context):
    raise ValueError("bad input: %r" % (event,))
'''

SLEEPER = '''
import time
def handler(event, context):
    time.sleep(event["sleep"])
    return {"slept": event["sleep"]}
'''

CALLER = '''
import base64
import json
import greengrasssdk

iot = greengrasssdk.client("iot-data")
lam = greengrasssdk.client("lambda")
secrets = greengrasssdk.client("secretsmanager")

def handler(event, context):
    op = event["op"]
    out = {"op": op}
    try:
        if op in ("invoke", "invoke_raw"):
            payload = event["payload"] if op == "invoke_raw" else json.dumps(event["payload"])
            r = lam.invoke(FunctionName=event["target"], InvocationType="RequestResponse",
                           Payload=payload)
            body = r["Payload"].read() if hasattr(r["Payload"], "read") else r["Payload"]
            body = body.decode() if op == "invoke_raw" else json.loads(body)
            out.update(error=r["FunctionError"], payload=body)
        elif op == "secret":
            v = secrets.get_secret_value(SecretId=event["id"])
            out.update(value=v["SecretString"], name=v["Name"])
    except Exception as e:
        out.update(exception=type(e).__name__, message=str(e))
    iot.publish(topic="result/" + op, payload=json.dumps(out))
'''

BINARY = '''
def handler(event, context):
    assert isinstance(event, bytes), type(event)
    return event[::-1]
'''

IDENT = '''
import os
import sys
def handler(event, context):
    print("ident called with", event)
    return {"uid": os.getuid(), "gid": os.getgid(), "argv": sys.argv[1:]}
'''

STUCK = '''
import json
import time
import greengrasssdk

iot = greengrasssdk.client("iot-data")
count = 0

def handler(event, context):
    global count
    if event.get("done"):
        iot.publish(topic="stuck/result", payload=json.dumps({"count": count}))
        count = 0
        return
    if event["seq"] == 0:
        time.sleep(4)
    count += 1
'''

BROKEN = '''
raise RuntimeError("boom at import")
'''

COUNTER = '''
import json
import greengrasssdk

iot = greengrasssdk.client("iot-data")
seen = []

def handler(event, context):
    if event.get("done"):
        iot.publish(topic="burst/result", payload=json.dumps({
            "count": len(seen), "in_order": seen == sorted(seen), "first": seen[:3]}))
        del seen[:]
    else:
        seen.append(event["seq"])
'''


def zip_of(source: str, module: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{module}.py", source)
    return buf.getvalue()


def create_function(server, tmp: Path, name: str, source: str, alias: str = "live") -> str:
    """`aws lambda create-function --publish` and `create-alias`; the alias ARN."""
    path = tmp / f"{name}.zip"
    path.write_bytes(zip_of(source, name.lower()))
    out = run_lambda(server, "create-function", "--function-name", name, "--runtime",
                     "python3.8", "--role", "arn:aws:iam::123456789012:role/gg-lambda",
                     "--handler", f"{name.lower()}.handler", "--zip-file", f"fileb://{path}",
                     "--publish")
    alias_out = run_lambda(server, "create-alias", "--function-name", name, "--name", alias,
                           "--function-version", out["Version"])
    return alias_out["AliasArn"]


def run_lambda(server, *args: str) -> dict:
    """`aws lambda ARGS` against the server; its JSON output."""
    return run_aws(server, *args, service="lambda")


def fn(arn: str, *, pinned: bool, timeout: int = 3, variables: dict | None = None,
       resources: list | None = None, encoding: str = "json", run_as: dict | None = None,
       exec_args: str | None = None) -> dict:
    env: dict = {}
    if run_as:
        env["Execution"] = {"RunAs": run_as}
    if variables:
        env["Variables"] = variables
    if resources:
        env["ResourceAccessPolicies"] = [{"ResourceId": r, "Permission": "ro"} for r in resources]
    name = arn.split(":")[6]
    config = {"Executable": f"{name.lower()}.handler", "Pinned": pinned, "Timeout": timeout,
              "EncodingType": encoding, "Environment": env}
    if exec_args:
        config["ExecArgs"] = exec_args
    return {"Id": name, "FunctionArn": arn, "FunctionConfiguration": config}


def thing(account: str, name: str) -> str:
    return f"arn:aws:iot:us-east-1:{account}:thing/{name}"


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("functions")
    # Root only for the RunAs test, which sets a group id under uid 0 (the CI machine's
    # Python lives in root's home, out of other users' reach).
    server = start_server(tmp, "--allow-functions-to-run-as-root")
    yield server, tmp
    server.stop()


@pytest.fixture(scope="module")
def group(core):
    """One group with every function of these tests, deployed once."""
    server, tmp = core
    arns = {name: create_function(server, tmp, name, src) for name, src in [
        ("Echo", ECHO), ("Adder", ADDER), ("Raiser", RAISER), ("Sleeper", SLEEPER),
        ("Caller", CALLER), ("Counter", COUNTER), ("Binary", BINARY), ("Ident", IDENT),
        ("Broken", BROKEN), ("Stuck", STUCK)]}
    account = arns["Echo"].split(":")[4]
    granted = create_secret(server, "greengrass-granted", "open sesame")
    create_secret(server, "greengrass-other", "not for you")
    dev = thing(account, "tester")
    cert = f"arn:aws:iot:us-east-1:{account}:{CERT_SUFFIX}"
    subs = [
        ("in", dev, "in/#", arns["Echo"]), ("out", arns["Echo"], "out/#", dev),
        ("call", dev, "call", arns["Caller"]), ("result", arns["Caller"], "result/#", dev),
        ("burst", dev, "burst", arns["Counter"]),
        ("burst-out", arns["Counter"], "burst/result", dev),
        ("stuck", dev, "stuck", arns["Stuck"]),
        ("stuck-out", arns["Stuck"], "stuck/result", dev),
    ]
    parts = {
        "core": {"Cores": [{"Id": "core", "ThingArn": thing(account, "core"),
                            "CertificateArn": cert}]},
        "devices": {"Devices": [{"Id": "tester", "ThingArn": dev, "CertificateArn": cert}]},
        "resources": {"Resources": [{
            "Id": "granted", "Name": "Granted",
            "ResourceDataContainer": {"SecretsManagerSecretResourceData": {"ARN": granted}}}]},
        "functions": {
            "DefaultConfig": {"Execution": {"IsolationMode": "NoContainer"}},
            "Functions": [
                fn(arns["Echo"], pinned=True),
                fn(arns["Adder"], pinned=False, variables={"GREETING": "hello"}),
                fn(arns["Raiser"], pinned=False),
                fn(arns["Sleeper"], pinned=True, timeout=1),
                fn(arns["Caller"], pinned=True, timeout=10, resources=["granted"]),
                fn(arns["Counter"], pinned=True),
                fn(arns["Binary"], pinned=False, encoding="binary"),
                fn(arns["Ident"], pinned=False, run_as={"Uid": 0, "Gid": 100},
                   exec_args="--mode fast"),
                fn(arns["Broken"], pinned=False),
                fn(arns["Stuck"], pinned=True, timeout=10),
            ]},
        "subscriptions": {"Subscriptions": [
            {"Id": i, "Source": s, "Subject": t, "Target": d} for i, s, t, d in subs]},
    }
    group_id, status = deploy_with_cli(server, parts, name="functions")
    assert status["DeploymentStatus"] == "Success", status
    device = MqttDevice(server.mqtt_plain_port, "tester", "#")
    yield {"arns": arns, "device": device, "server": server, "tmp": tmp}
    device.close()


def result(device: MqttDevice, topic: str, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        t, body = device.next(timeout=max(0.1, deadline - time.monotonic()))
        if t == topic:
            return body


def test_device_to_pinned_function_and_back(group):
    device = group["device"]
    device.request("in/kitchen/temp", {"celsius": 21.5})
    body = result(device, "out/in/kitchen/temp")
    assert body["got"] == {"celsius": 21.5}
    assert body["subject"] == "in/kitchen/temp"
    assert body["arn"] == group["arns"]["Echo"]
    assert body["request_id"]
    # A pinned function keeps its state between invocations: one process, in order.
    device.request("in/kitchen/temp", {"celsius": 22})
    assert result(device, "out/in/kitchen/temp")["calls"] == body["calls"] + 1


def test_invoke_on_demand_function_request_response(group):
    device = group["device"]
    device.request("call", {"op": "invoke", "target": group["arns"]["Adder"],
                            "payload": {"a": 2, "b": 40}})
    body = result(device, "result/invoke")
    assert body.get("error") == "", body
    assert body["payload"] == {"sum": 42, "version": "live", "env": "hello"}


def test_handler_exception_is_handled_error(group):
    device = group["device"]
    device.request("call", {"op": "invoke", "target": group["arns"]["Raiser"],
                            "payload": {"x": 1}})
    body = result(device, "result/invoke")
    assert body["error"] == "Handled", body
    assert "bad input" in body["payload"]["errorMessage"]
    assert body["payload"]["errorType"] == "ValueError"


def test_timeout_is_unhandled_and_worker_recovers(group):
    device = group["device"]
    device.request("call", {"op": "invoke", "target": group["arns"]["Sleeper"],
                            "payload": {"sleep": 5}})
    body = result(device, "result/invoke")
    assert body["error"] == "Unhandled", body
    assert "timed out" in body["payload"]["errorMessage"]
    device.request("call", {"op": "invoke", "target": group["arns"]["Sleeper"],
                            "payload": {"sleep": 0}})
    body = result(device, "result/invoke", timeout=20)
    assert body == {"op": "invoke", "error": "", "payload": {"slept": 0}}


def test_secret_granted_and_refused(group):
    device = group["device"]
    device.request("call", {"op": "secret", "id": "greengrass-granted"})
    assert result(device, "result/secret") == {"op": "secret", "value": "open sesame",
                                               "name": "greengrass-granted"}
    device.request("call", {"op": "secret", "id": "greengrass-other"})
    body = result(device, "result/secret")
    assert body["exception"] == "SecretsManagerError", body
    assert "not for you" not in json.dumps(body)


def test_binary_encoding_passes_bytes(group):
    device = group["device"]
    device.request("call", {"op": "invoke_raw", "target": group["arns"]["Binary"],
                            "payload": "not json at all"})
    body = result(device, "result/invoke_raw")
    assert body == {"op": "invoke_raw", "error": "", "payload": "lla ta nosj ton"}, body


def test_json_function_refuses_non_json_payload(group):
    device = group["device"]
    device.request("call", {"op": "invoke_raw", "target": group["arns"]["Adder"],
                            "payload": "not json"})
    body = result(device, "result/invoke_raw")
    assert body["error"] == "Unhandled", body
    assert "could not parse the payload as JSON" in body["payload"], body


def test_run_as_exec_args_and_stdout(group):
    device = group["device"]
    device.request("call", {"op": "invoke", "target": group["arns"]["Ident"],
                            "payload": {"who": "me"}})
    body = result(device, "result/invoke")
    assert body["payload"] == {"uid": 0, "gid": 100, "argv": ["--mode", "fast"]}, body
    logs = list(Path(group["server"].data_dir).glob("ggc/var/log/user/us-east-1/*/Ident.log"))
    deadline = time.monotonic() + 5
    while "[INFO]-ident called with {'who': 'me'}" not in logs[0].read_text():
        assert time.monotonic() < deadline, logs[0].read_text()
        time.sleep(0.05)


def test_worker_that_cannot_start_fails_the_invocation(group):
    device = group["device"]
    device.request("call", {"op": "invoke", "target": group["arns"]["Broken"],
                            "payload": {}})
    body = result(device, "result/invoke", timeout=30)
    assert body["error"] == "Unhandled", body
    assert "could not start" in body["payload"]["errorMessage"], body
    assert "boom at import" in body["payload"]["errorMessage"], body
    log = next(Path(group["server"].data_dir).glob(
        "ggc/var/log/user/us-east-1/*/Broken.log")).read_text()
    assert "Failed to initialize Lambda runtime due to exception: boom at import" in log, log


def test_health_api_lists_workers(group):
    server = group["server"]
    port = next(int(l.split("127.0.0.1:")[1].split()[0]) for l in server.stdout_lines
                if "Lambda IPC" in l)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/2016-11-01/health/workers") as r:
        workers = json.load(r)
    echo = [w for w in workers if w["FuncArn"] == group["arns"]["Echo"]]
    assert len(echo) == 1 and echo[0]["WorkerState"] in ("Waiting", "Working"), workers
    assert echo[0]["ProcessId"] > 0


def test_units_in_health_and_status(group):
    server = group["server"]
    health = json.load(urllib.request.urlopen(server.url + "/health", timeout=10))
    units = {u["name"]: u for u in health["units"]}
    assert units["Echo"]["kind"] == "function" and units["Echo"]["state"] == "running", units
    assert units["Echo"]["invocations"] >= 1, units
    assert units["Adder"]["state"] in ("idle", "running"), units
    p = subprocess.run([str(coupler_bin()), "status", "--endpoint", server.url],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert "function  Echo" in p.stdout, p.stdout


def test_burst_of_1000_in_order(group):
    device = group["device"]
    for seq in range(1000):
        device.c.publish("burst", json.dumps({"seq": seq}), qos=0)
    device.request("burst", {"done": True})
    body = result(device, "burst/result", timeout=60)
    assert body == {"count": 1000, "in_order": True, "first": [0, 1, 2]}


def test_function_log_file(group):
    server = group["server"]
    logs = list(Path(server.data_dir).glob("ggc/var/log/user/us-east-1/*/Echo.log"))
    assert logs, "no Echo.log"
    text = logs[0].read_text()
    assert "[INFO]-worker" in text


def test_missing_function_fails_deployment(core):
    server, tmp = core
    account = "123456789012"
    ghost = f"arn:aws:lambda:us-east-1:{account}:function:Ghost:live"
    cert = f"arn:aws:iot:us-east-1:{account}:{CERT_SUFFIX}"
    parts = {
        "core": {"Cores": [{"Id": "core", "ThingArn": thing(account, "core"),
                            "CertificateArn": cert}]},
        "functions": {"DefaultConfig": {"Execution": {"IsolationMode": "NoContainer"}},
                      "Functions": [fn(ghost, pinned=True)]},
    }
    _, status = deploy_with_cli(server, parts, name="ghost")
    assert status["DeploymentStatus"] == "Failure", status
    assert "Ghost" in status["ErrorMessage"], status


def test_overflow_slows_then_drops_and_counts(group):
    """A function stuck for 4 s: 1024 messages wait in its inbox, the sender is held up to
    2 s for each one more, then that one is dropped and counted. Nothing else is lost."""
    device, server = group["device"], group["server"]
    sent = 1100
    for seq in range(sent):
        device.c.publish("stuck", json.dumps({"seq": seq}), qos=0)
    device.request("stuck", {"done": True})
    ran = result(device, "stuck/result", timeout=60)["count"]
    text = urllib.request.urlopen(server.url + "/metrics", timeout=10).read().decode()
    dropped = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith("coupler_router_dropped_total{")
                  and f'target="{group["arns"]["Stuck"]}"' in line
                  and 'reason="block_deadline"' in line)
    assert dropped >= 1, (ran, dropped)
    assert ran + dropped == sent, (ran, dropped)
    assert ran >= 1024, (ran, dropped)
