#!/usr/bin/env python3
"""The boto3 side of the Kinesis Firehose benchmark (`benches/firehose.rs`), against moto_server.

    firehose_boto3.py setup URL              the bucket and the delivery streams
    firehose_boto3.py put URL STREAM N MODE  N records, MODE `record` (one PutRecord each, what a
                                             Greengrass Lambda without the connector does) or
                                             `batch` (PutRecordBatch of 500); prints JSON
    firehose_boto3.py count URL STREAM       the objects the stream wrote to the bucket and the
                                             records in them (one per line); prints JSON

Every stream writes to the bucket under its own prefix `STREAM/`. Record `i` is `record(i)`, the
same bytes the Rust side sends through Coupler.
"""

from __future__ import annotations

import json
import sys
import time

import boto3
from botocore.config import Config

ACCOUNT = "123456789012"
REGION = "us-east-1"
BUCKET = "coupler-bench-firehose"
STREAMS = ["boto3-put-record", "boto3-put-record-batch", "coupler", "coupler-stall"]
BATCH = 500


def record(i: int) -> bytes:
    return f"bench-record {i:08d} temperature=21.5 humidity=40.25\n".encode()


def client(url: str, service: str):
    return boto3.client(service, endpoint_url=url, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(retries={"max_attempts": 3, "mode": "standard"}))


def setup(url: str) -> dict:
    s3, fh = client(url, "s3"), client(url, "firehose")
    s3.create_bucket(Bucket=BUCKET)
    for name in STREAMS:
        fh.create_delivery_stream(
            DeliveryStreamName=name,
            ExtendedS3DestinationConfiguration={
                "RoleARN": f"arn:aws:iam::{ACCOUNT}:role/firehose",
                "BucketARN": f"arn:aws:s3:::{BUCKET}",
                "Prefix": f"{name}/"})
    return {"streams": STREAMS}


def put(url: str, stream: str, n: int, mode: str) -> dict:
    fh = client(url, "firehose")
    # Outside the timing: load the service model and open the connection.
    fh.describe_delivery_stream(DeliveryStreamName=stream)
    failed = 0
    start = time.perf_counter()
    if mode == "record":
        for i in range(n):
            r = fh.put_record(DeliveryStreamName=stream, Record={"Data": record(i)})
            failed += not r.get("RecordId")
    elif mode == "batch":
        for first in range(0, n, BATCH):
            r = fh.put_record_batch(
                DeliveryStreamName=stream,
                Records=[{"Data": record(i)} for i in range(first, min(n, first + BATCH))])
            failed += r["FailedPutCount"]
    else:
        raise SystemExit(f"no mode {mode!r}")
    seconds = time.perf_counter() - start
    return {"n": n, "failed": failed, "seconds": seconds, "msg_s": n / seconds}


def count(url: str, stream: str) -> dict:
    s3 = client(url, "s3")
    objects, records, seqs = 0, 0, set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{stream}/"):
        for o in page.get("Contents", []):
            objects += 1
            body = s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
            for line in body.splitlines():
                records += 1
                seqs.add(line.split()[1])
    return {"objects": objects, "records": records, "distinct": len(seqs)}


def main() -> None:
    cmd, url, *rest = sys.argv[1:]
    if cmd == "setup":
        out = setup(url)
    elif cmd == "put":
        out = put(url, rest[0], int(rest[1]), rest[2])
    elif cmd == "count":
        out = count(url, rest[0])
    else:
        raise SystemExit(f"no command {cmd!r}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
