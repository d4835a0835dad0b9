"""The AWS service connectors (SNS, Kinesis Firehose, CloudWatch Metrics) against moto_server,
deployed with the AWS CLI; paho-mqtt talks to them as a device, and boto3 reads back from moto
what they sent: the SNS message from an SQS queue subscribed to the topic, the Firehose records
from the S3 bucket the delivery stream writes to, the metrics from CloudWatch.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import time

import pytest

import ggtest
from ggtest import MqttDevice, deploy_with_cli, free_port, start_server

ACCOUNT = "123456789012"
REGION = "us-east-1"
CERT = f"arn:aws:iot:{REGION}:{ACCOUNT}:cert/" + "ab" * 32
SNS = f"arn:aws:greengrass:{REGION}::/connectors/SNS/versions/4"
FIREHOSE = f"arn:aws:greengrass:{REGION}::/connectors/KinesisFirehose/versions/5"
FIREHOSE_V1 = f"arn:aws:greengrass:{REGION}::/connectors/KinesisFirehose/versions/1"
CLOUDWATCH = f"arn:aws:greengrass:{REGION}::/connectors/CloudWatchMetrics/versions/5"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:coupler-alerts"
STREAM = "coupler-stream"
STREAM_ARN = f"arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/{STREAM}"
BUCKET = "coupler-firehose-bucket"
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def thing(name: str) -> str:
    return f"arn:aws:iot:{REGION}:{ACCOUNT}:thing/{name}"


def metric(server, prefix: str) -> float:
    """A value from the core's /metrics (0 when the line is not there yet)."""
    return ggtest.metric(server, prefix, 0.0)


def group_parts(connectors: list[dict]) -> dict:
    subs = [{"Id": "dev-in", "Source": thing("tester"), "Subject": "sns/message", "Target": SNS},
            {"Id": "sns-out", "Source": SNS, "Subject": "sns/message/status",
             "Target": thing("tester")}]
    for fh in (FIREHOSE, FIREHOSE_V1):
        if any(c["ConnectorArn"] == fh for c in connectors):
            subs += [{"Id": "fh-in", "Source": thing("tester"),
                      "Subject": "kinesisfirehose/message", "Target": fh},
                     {"Id": "fh-bin", "Source": thing("tester"),
                      "Subject": "kinesisfirehose/message/binary/#", "Target": fh},
                     {"Id": "fh-out", "Source": fh, "Subject": "kinesisfirehose/message/status",
                      "Target": thing("tester")}]
    if any(c["ConnectorArn"] == CLOUDWATCH for c in connectors):
        subs += [{"Id": "cw-in", "Source": thing("tester"), "Subject": "cloudwatch/metric/put",
                  "Target": CLOUDWATCH},
                 {"Id": "cw-out", "Source": CLOUDWATCH, "Subject": "cloudwatch/metric/put/status",
                  "Target": thing("tester")}]
    return {
        "core": {"Cores": [{"Id": "core", "ThingArn": thing("core"), "CertificateArn": CERT}]},
        "devices": {"Devices": [{"Id": "tester", "ThingArn": thing("tester"),
                                 "CertificateArn": CERT}]},
        "resources": {"Resources": []},
        "connectors": {"Connectors": connectors},
        "subscriptions": {"Subscriptions": subs},
    }


SNS_CONNECTOR = {"Id": "sns", "ConnectorArn": SNS,
                 "Parameters": {"DefaultSNSArn": TOPIC_ARN, "IsolationMode": "NoContainer"}}
FIREHOSE_CONNECTOR = {"Id": "firehose", "ConnectorArn": FIREHOSE,
                      "Parameters": {"DefaultDeliveryStreamArn": STREAM_ARN,
                                     "DeliveryStreamQueueSize": "5000", "MemorySize": "65535",
                                     "PublishInterval": "1", "IsolationMode": "NoContainer"}}
CLOUDWATCH_CONNECTOR = {"Id": "cloudwatch", "ConnectorArn": CLOUDWATCH,
                        "Parameters": {"PublishInterval": "1", "MemorySize": "16",
                                       "MaxMetricsToRetain": "2500",
                                       "IsolationMode": "NoContainer"}}


@pytest.fixture(scope="module")
def aws_resources(moto):
    """The SNS topic with an SQS queue subscribed, the delivery stream and its bucket."""
    _, client = moto
    sns, sqs = client("sns"), client("sqs")
    assert sns.create_topic(Name="coupler-alerts")["TopicArn"] == TOPIC_ARN
    queue_url = sqs.create_queue(QueueName="coupler-alerts-q")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=TOPIC_ARN, Protocol="sqs", Endpoint=queue_arn,
                  Attributes={"RawMessageDelivery": "false"})
    s3, firehose = client("s3"), client("firehose")
    s3.create_bucket(Bucket=BUCKET)
    firehose.create_delivery_stream(
        DeliveryStreamName=STREAM,
        ExtendedS3DestinationConfiguration={"RoleARN": f"arn:aws:iam::{ACCOUNT}:role/firehose",
                                            "BucketARN": f"arn:aws:s3:::{BUCKET}"})
    return {"queue_url": queue_url}


@pytest.fixture(scope="module")
def core(tmp_path_factory, moto, aws_resources):
    url, _ = moto
    server = start_server(tmp_path_factory.mktemp("aws"), "--allow-uncontained",
                          env={"AWS_ENDPOINT_URL": url, **CREDS})
    connectors = [SNS_CONNECTOR, FIREHOSE_CONNECTOR, CLOUDWATCH_CONNECTOR]
    group_id, status = deploy_with_cli(server, group_parts(connectors))
    assert status["DeploymentStatus"] == "Success", status
    dev = MqttDevice(server.mqtt_plain_port, "tester", "#")
    yield server, dev
    dev.close()
    server.stop()


def next_on(dev, topic: str, timeout: float = 10.0) -> dict:
    """The next message on `topic`, skipping others."""
    deadline = time.monotonic() + timeout
    while True:
        got, body = dev.next(timeout=max(0.1, deadline - time.monotonic()))
        if got == topic:
            return body


def receive_sqs(sqs, queue_url: str, want: int, timeout: float = 10.0) -> list[dict]:
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        r = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for m in r.get("Messages", []):
            got.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return got


# ---- SNS --------------------------------------------------------------------------------------


def test_sns_publishes_and_the_message_reaches_sqs(core, moto, aws_resources):
    _, dev = core
    _, client = moto
    sqs = client("sqs")
    dev.request("sns/message", {"request": {"subject": "Boiler", "message": "pressure high"},
                                "id": "request123"})
    status = next_on(dev, "sns/message/status")
    assert status["id"] == "request123", status
    assert status["response"]["status"] == "success", status
    message_id = status["response"]["sns_message_id"]
    assert message_id
    [note] = receive_sqs(sqs, aws_resources["queue_url"], 1)
    assert note["MessageId"] == message_id
    assert (note["Subject"], note["Message"], note["TopicArn"]) == \
        ("Boiler", "pressure high", TOPIC_ARN)


def test_sns_json_message_structure(core, moto, aws_resources):
    _, dev = core
    _, client = moto
    dev.request("sns/message", {"request": {"message": json.dumps({"default": "for all",
                                                                   "sqs": "for sqs"}),
                                            "message_structure": "json"}})
    status = next_on(dev, "sns/message/status")
    assert "id" not in status and status["response"]["status"] == "success", status
    [note] = receive_sqs(client("sqs"), aws_resources["queue_url"], 1)
    assert note["Message"] == "for sqs"


def test_sns_unknown_topic_override_fails_with_the_aws_error(core):
    _, dev = core
    dev.request("sns/message", {"request": {"message": "x", "sns_topic_arn":
                                            f"arn:aws:sns:{REGION}:{ACCOUNT}:nope"}, "id": "nf"})
    status = next_on(dev, "sns/message/status")
    assert status["id"] == "nf" and status["response"]["status"] == "fail", status
    assert status["response"]["error"] == "NotFound", status


@pytest.mark.parametrize("payload,expect_id,words", [
    ("not json", None, "not JSON"),
    (json.dumps({"id": "b1"}), "b1", "request"),
    (json.dumps({"request": {"message": 7}, "id": "b2"}), "b2", "request.message"),
    (json.dumps({"request": {"message": "x", "subject": "two\nlines"}, "id": "b3"}), "b3",
     "subject"),
    (json.dumps({"request": {"message": "x", "sns_topic_arn": "arn:aws:sqs:x"}, "id": "b4"}),
     "b4", "SNS Topic Arn is invalid"),
    (json.dumps({"request": {"message": "{}", "message_structure": "json"}, "id": "b5"}), "b5",
     "default"),
])
def test_sns_bad_payloads_are_refused_and_not_sent(core, moto, aws_resources, payload,
                                                   expect_id, words):
    server, dev = core
    _, client = moto
    before = metric(server, 'coupler_connector_rejected_total{connector="sns"')
    dev.request("sns/message", payload)
    status = next_on(dev, "sns/message/status")
    assert status.get("id") == expect_id, status
    assert status["response"]["status"] == "fail", status
    assert status["response"]["error"] == "InvalidInputException", status
    assert words in status["response"]["error_message"], status
    assert metric(server, 'coupler_connector_rejected_total{connector="sns"') == before + 1
    assert receive_sqs(client("sqs"), aws_resources["queue_url"], 1, timeout=1.5) == []


# ---- Kinesis Firehose -------------------------------------------------------------------------


def s3_objects(s3) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}


def firehose_entries(dev, want: int, timeout: float = 10.0) -> list[dict]:
    """Entries of the batch statuses until `want` have come."""
    entries = []
    deadline = time.monotonic() + timeout
    while len(entries) < want:
        body = next_on(dev, "kinesisfirehose/message/status", max(0.1, deadline - time.monotonic()))
        assert isinstance(body["response"], list), body
        entries += body["response"]
    return entries


def test_firehose_batches_reach_the_bucket(core, moto):
    _, dev = core
    _, client = moto
    s3 = client("s3")
    before = s3_objects(s3)
    dev.request("kinesisfirehose/message", {"request": {"data": "json record;"}, "id": "j1"})
    dev.request("kinesisfirehose/message/binary/b1", b"\x00\xffbinary;")
    dev.request("kinesisfirehose/message/binary/", b"anonymous;")
    entries = firehose_entries(dev, 3)
    assert all(e["status"] == "success" and e["firehose_record_id"] for e in entries), entries
    assert sorted(e.get("id", "") for e in entries) == ["", "b1", "j1"]
    new = {k: v for k, v in s3_objects(s3).items() if k not in before}
    assert new, "nothing reached the bucket"
    data = b"".join(new.values())
    for part in (b"json record;", b"\x00\xffbinary;", b"anonymous;"):
        assert part in data, data
    assert all(STREAM in k for k in new)


def test_firehose_unknown_stream_fails_with_the_aws_error(core):
    _, dev = core
    other = f"arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/absent"
    dev.request("kinesisfirehose/message", {"request": {"data": "x",
                                                        "delivery_stream_arn": other}, "id": "nf"})
    [e] = firehose_entries(dev, 1)
    assert (e["id"], e["status"], e["ErrorCode"]) == ("nf", "fail", "ResourceNotFoundException"), e
    assert "absent" in e["ErrorMessage"]


@pytest.mark.parametrize("payload,expect_id,words", [
    ("not json", None, "not JSON"),
    (json.dumps({"request": {"data": 1}, "id": "f1"}), "f1", "request.data"),
    (json.dumps({"request": {}, "id": "f2"}), "f2", "request.data"),
    (json.dumps({"request": {"data": "x", "delivery_stream_arn": "arn:aws:s3:::b"}, "id": "f3"}),
     "f3", "Delivery stream ARN is invalid"),
])
def test_firehose_bad_payloads_are_refused_and_not_sent(core, moto, payload, expect_id, words):
    server, dev = core
    _, client = moto
    s3 = client("s3")
    before = s3_objects(s3)
    rejected = metric(server, 'coupler_connector_rejected_total{connector="firehose"')
    dev.request("kinesisfirehose/message", payload)
    body = next_on(dev, "kinesisfirehose/message/status")
    [e] = body["response"]
    assert e.get("id") == expect_id and e["status"] == "fail", e
    assert e["ErrorCode"] == "InvalidInputException" and words in e["ErrorMessage"], e
    assert metric(server, 'coupler_connector_rejected_total{connector="firehose"') == rejected + 1
    time.sleep(1.5)  # a publish interval
    assert s3_objects(s3) == before


@pytest.fixture(scope="module")
def v1_core(tmp_path_factory, moto, aws_resources):
    """Firehose version 1: a PutRecord and a status per message."""
    url, _ = moto
    server = start_server(tmp_path_factory.mktemp("aws-v1"), "--allow-uncontained",
                          env={"AWS_ENDPOINT_URL_FIREHOSE": url, **CREDS})
    connectors = [SNS_CONNECTOR, {"Id": "firehose1", "ConnectorArn": FIREHOSE_V1,
                                  "Parameters": {"DefaultDeliveryStreamArn": STREAM_ARN}}]
    group_id, status = deploy_with_cli(server, group_parts(connectors), name="v1")
    assert status["DeploymentStatus"] == "Success", status
    dev = MqttDevice(server.mqtt_plain_port, "tester", "#")
    yield server, dev
    dev.close()
    server.stop()


def test_firehose_v1_one_record_one_status(v1_core, moto):
    _, dev = v1_core
    _, client = moto
    s3 = client("s3")
    before = s3_objects(s3)
    dev.request("kinesisfirehose/message/binary/one", b"version one;")
    body = next_on(dev, "kinesisfirehose/message/status")
    assert body["id"] == "one" and body["response"]["status"] == "success", body
    assert body["response"]["firehose_record_id"]
    new = {k: v for k, v in s3_objects(s3).items() if k not in before}
    assert list(new.values()) == [b"version one;"]
    dev.request("kinesisfirehose/message", {"request": {"data": 3}, "id": "bad"})
    body = next_on(dev, "kinesisfirehose/message/status")
    assert body["id"] == "bad", body
    assert (body["response"]["status"], body["response"]["error"]) == \
        ("fail", "InvalidInputException"), body


# ---- CloudWatch Metrics -----------------------------------------------------------------------


def test_cloudwatch_metrics_reach_cloudwatch(core, moto):
    _, dev = core
    _, client = moto
    cw = client("cloudwatch")
    now = int(time.time())
    for value in (10.0, 20.0, 30.0):
        dev.request("cloudwatch/metric/put", {"request": {
            "namespace": "Coupler/Test",
            "metricData": {"metricName": "latency", "value": value, "unit": "Seconds",
                           "timestamp": now,
                           "dimensions": [{"name": "hostname", "value": "test_hostname"}]}}})
    # Within one publish interval: one batch, or two if the interval ended between them.
    statuses = [next_on(dev, "cloudwatch/metric/put/status")]
    try:
        statuses.append(next_on(dev, "cloudwatch/metric/put/status", timeout=1.5))
    except queue.Empty:
        pass
    for st in statuses:
        r = st["response"]
        assert (r["status"], r["namespace"]) == ("success", "Coupler/Test"), st
        assert r["cloudwatch_rid"], st
    # Several timestamps equal (version 5 takes duplicates): all three values are there.
    deadline = time.monotonic() + 10
    while True:
        listed = cw.list_metrics(Namespace="Coupler/Test")["Metrics"]
        stats = cw.get_metric_statistics(
            Namespace="Coupler/Test", MetricName="latency",
            Dimensions=[{"Name": "hostname", "Value": "test_hostname"},
                        {"Name": "coreName", "Value": "core"}],
            StartTime=now - 60, EndTime=now + 60, Period=60,
            Statistics=["SampleCount", "Sum", "Maximum"])["Datapoints"]
        if stats and stats[0]["SampleCount"] == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    # moto lists a metric once per datum; the series is what counts.
    series = {(m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"])))
              for m in listed}
    assert series == {("latency", (("coreName", "core"), ("hostname", "test_hostname")))}, listed
    [point] = stats
    assert (point["SampleCount"], point["Sum"], point["Maximum"], point["Unit"]) == \
        (3.0, 60.0, 30.0, "Seconds"), point


@pytest.mark.parametrize("payload,namespace,words", [
    ("not json", None, "not JSON"),
    (json.dumps({"request": {"namespace": "AWS/EC2",
                             "metricData": {"metricName": "m", "value": 1}}}), "AWS/EC2", "AWS/"),
    (json.dumps({"request": {"namespace": "Coupler/Bad",
                             "metricData": {"metricName": "m", "value": "x"}}}), "Coupler/Bad",
     "value"),
    (json.dumps({"request": {"namespace": "Coupler/Bad",
                             "metricData": {"metricName": "m", "value": 1, "unit": "Parsecs"}}}),
     "Coupler/Bad", "unit"),
    (json.dumps({"request": {"namespace": "Coupler/Bad", "metricData": {
        "metricName": "m", "value": 1,
        "dimensions": [{"name": f"d{i}", "value": "v"} for i in range(11)]}}}),
     "Coupler/Bad", "at most 10"),
])
def test_cloudwatch_bad_metrics_are_refused_and_not_sent(core, moto, payload, namespace, words):
    server, dev = core
    _, client = moto
    rejected = metric(server, 'coupler_connector_rejected_total{connector="cloudwatch"')
    dev.request("cloudwatch/metric/put", payload)
    r = next_on(dev, "cloudwatch/metric/put/status")["response"]
    assert r.get("namespace") == namespace and r["status"] == "fail", r
    assert r["error"] == "InvalidInputException" and words in r["error_message"], r
    assert metric(server, 'coupler_connector_rejected_total{connector="cloudwatch"') == \
        rejected + 1
    time.sleep(1.2)  # a publish interval
    assert client("cloudwatch").list_metrics(Namespace="Coupler/Bad")["Metrics"] == []


# ---- the service down -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def down_core(tmp_path_factory):
    """A core whose AWS endpoint is a closed port."""
    closed = f"http://127.0.0.1:{free_port()}"
    server = start_server(tmp_path_factory.mktemp("aws-down"), "--allow-uncontained",
                          env={"AWS_ENDPOINT_URL": closed, **CREDS})
    connectors = [SNS_CONNECTOR, FIREHOSE_CONNECTOR, CLOUDWATCH_CONNECTOR]
    group_id, status = deploy_with_cli(server, group_parts(connectors), name="down")
    assert status["DeploymentStatus"] == "Success", status
    dev = MqttDevice(server.mqtt_plain_port, "tester", "#")
    yield server, dev
    dev.close()
    server.stop()


def connector_log(server, name: str) -> str:
    for root, _, files in os.walk(server.data_dir):
        if f"{name}.log" in files:
            return open(os.path.join(root, f"{name}.log")).read()
    return ""


def test_firehose_service_down_bounded_retries_then_fail(down_core):
    server, dev = down_core
    started = time.monotonic()
    dev.request("kinesisfirehose/message", {"request": {"data": "lost"}, "id": "fdown"})
    dev.request("kinesisfirehose/message/binary/fdown2", b"lost too")
    entries = firehose_entries(dev, 2, timeout=30)
    assert sorted(e["id"] for e in entries) == ["fdown", "fdown2"]
    assert all(e["status"] == "fail" and e["ErrorCode"] == "EndpointConnectionError"
               for e in entries), entries
    # Three sends, each of three attempts, with pauses of 1 s and 2 s between: bounded.
    assert 3 < time.monotonic() - started < 25
    assert metric(server, 'coupler_connector_rejected_total{connector="firehose"') >= 2
    assert "after 3 sends" in connector_log(server, "KinesisFirehose")


def test_cloudwatch_service_down_bounded_retries_then_fail(down_core):
    server, dev = down_core
    started = time.monotonic()
    dev.request("cloudwatch/metric/put", {"request": {
        "namespace": "Coupler/Down", "metricData": {"metricName": "m", "value": 1}}})
    r = next_on(dev, "cloudwatch/metric/put/status", timeout=30)["response"]
    assert (r["namespace"], r["status"], r["error"]) == \
        ("Coupler/Down", "fail", "EndpointConnectionError"), r
    assert 3 < time.monotonic() - started < 25
    assert metric(server, 'coupler_connector_rejected_total{connector="cloudwatch"') >= 1
    assert "not put after 3 sends" in connector_log(server, "CloudWatchMetrics")


def test_sns_service_down_retries_then_fails_and_counts(down_core):
    server, dev = down_core
    started = time.monotonic()
    dev.request("sns/message", {"request": {"message": "lost"}, "id": "down1"})
    status = next_on(dev, "sns/message/status", timeout=20)
    assert status["id"] == "down1" and status["response"]["status"] == "fail", status
    assert status["response"]["error"] == "EndpointConnectionError", status
    # Three attempts, 0.2 s and 0.4 s apart: bounded, and not given up at once.
    assert 0.5 < time.monotonic() - started < 15
    assert metric(server, 'coupler_connector_rejected_total{connector="sns"') >= 1
    assert "1 dropped since start" in connector_log(server, "SNS")
