#!/usr/bin/env python3
"""Re-derive every vector of aws_suite_vectors.json with botocore's own signer.

A vector only belongs in the fixture if botocore (the signer of the AWS CLI and boto3)
produces exactly the published signature for it. Exits non-zero on any disagreement.
"""

import datetime
import json
import os
import sys

import botocore.auth
import botocore.awsrequest
import botocore.credentials

doc = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "aws_suite_vectors.json"), encoding="utf-8"))
stamp = datetime.datetime.strptime(doc["timestamp"], "%Y%m%dT%H%M%SZ")
botocore.auth.get_current_datetime = lambda remove_tzinfo=True: stamp
creds = botocore.credentials.Credentials(doc["access_key_id"], doc["secret_access_key"])

bad = 0
for vec in doc["vectors"]:
    url = "https://example.amazonaws.com" + vec["path"] + ("?" + vec["query"] if vec["query"] is not None else "")
    req = botocore.awsrequest.AWSRequest(method=vec["method"], url=url, data=vec["body"].encode())
    for name, value in vec["headers"]:
        if name.lower() != "x-amz-date":  # add_auth sets it from the clock
            req.headers[name] = value  # HTTPHeaders appends: repeated names stay repeated
    botocore.auth.SigV4Auth(creds, doc["service"], doc["region"]).add_auth(req)
    want = (
        f"AWS4-HMAC-SHA256 Credential={doc['access_key_id']}/{doc['timestamp'][:8]}/{doc['region']}/{doc['service']}/aws4_request, "
        f"SignedHeaders={vec['signed_headers']}, Signature={vec['signature']}"
    )
    got = req.headers["Authorization"]
    ok = got == want
    bad += not ok
    print(("ok  " if ok else "BAD ") + vec["name"] + ("" if ok else f"\n    botocore: {got}\n    fixture:  {want}"))
sys.exit(1 if bad else 0)
