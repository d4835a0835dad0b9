#!/usr/bin/env python3
"""Sign Greengrass-shaped requests with botocore and report them as the server sees them.

Used by `tests/sigv4_botocore.rs`. botocore is the signer inside the AWS CLI and boto3,
so every case here is a request exactly as those clients would send it:

* "client" cases go through a real botocore `greengrass` client (the same code path as
  `aws greengrass ...` and boto3) pointed at a local capture server;
* "raw" cases sign an `AWSRequest` directly with `botocore.auth.SigV4Auth` (to reach
  headers the client never sets, e.g. `X-Amz-Content-SHA256: UNSIGNED-PAYLOAD` or
  `Date`) and send it with botocore's own HTTP session;
* "cli" cases run the AWS CLI itself (`python -m awscli greengrass ...`), on its own
  clock, so their timestamp is the X-Amz-Date they carry.

Either way the capture server records the raw request line, header lines and body bytes,
so the path and query are exactly what travels on the wire (after botocore's serializer
and urllib3 have encoded them), not what the signer was handed.

For "client" and "raw" cases the signing clock is frozen (botocore.auth.get_current_datetime
is replaced), and `signed_headers` holds the headers exactly as botocore had them when it
signed (headers added afterwards, like amz-sdk-invocation-id or Content-Length, are not
signed), so a second signer given those headers must produce the same Authorization.
Prints one JSON document on stdout; exits 3 when botocore is missing, 4 when the CLI is.
"""

import datetime
import hashlib
import json
import os
import socketserver
import subprocess
import sys
import threading

# A stray profile or config file on the machine must not change what is signed.
for var in list(os.environ):
    if var.startswith("AWS_"):
        del os.environ[var]
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull

try:
    import botocore
    import botocore.auth
    import botocore.awsrequest
    import botocore.config
    import botocore.credentials
    import botocore.httpsession
    import botocore.session
except ImportError as exc:  # pragma: no cover - reported by the Rust test
    sys.stderr.write(f"botocore is not importable ({exc}); install it with: pip install awscli\n")
    sys.exit(3)

ACCESS_KEY = "AKIDCOUPLERTEST00001"
SECRET_KEY = "cOUPLER/secret+key/0123456789abcdefEXAMPLE"
REGION = "us-east-1"
SERVICE = "greengrass"
FROZEN = datetime.datetime(2026, 5, 9, 23, 58, 31)  # naive UTC, as botocore uses it

botocore.auth.get_current_datetime = lambda remove_tzinfo=True: FROZEN

GROUP_ID = "4ad66e5d-3808-446b-940a-b1a788898382"
GROUP_ARN = f"arn:aws:greengrass:us-east-1:123456789012:/greengrass/groups/{GROUP_ID}"


class _Capture(socketserver.StreamRequestHandler):
    """Reads one HTTP/1.1 request byte for byte and answers `200 {}`."""

    def handle(self):
        line = self.rfile.readline(65537)
        if not line:
            return
        method, target, _version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        headers = []
        while True:
            h = self.rfile.readline(65537)
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").rstrip("\r\n").partition(":")
            # What an HTTP server hands over: the value without surrounding whitespace.
            headers.append([name, value.strip(" \t")])
        length = 0
        for name, value in headers:
            if name.lower() == "transfer-encoding":
                raise RuntimeError("chunked request bodies are not expected here")
            if name.lower() == "content-length":
                length = int(value)
        body = self.rfile.read(length) if length else b""
        path, sep, query = target.partition("?")
        self.server.captured.append(
            {
                "method": method,
                "path": path,
                "query": query if sep else None,
                "headers": headers,
                "body_hex": body.hex(),
            }
        )
        reply = b"{}"
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(reply), reply)
        )


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    server = _Server(("127.0.0.1", 0), _Capture)
    server.captured = []
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{port}"

    cases = []
    signed_at = {}

    def remember_signed(request, **_kwargs):
        # The request exactly as botocore signed it: later handlers add unsigned headers
        # (amz-sdk-invocation-id, amz-sdk-request) and preparing it adds Content-Length.
        signed_at["url"] = request.url
        signed_at["headers"] = [
            [k, v if isinstance(v, str) else v.decode("latin-1")] for k, v in request.headers.items()
        ]

    session = botocore.session.get_session()
    client = session.create_client(
        "greengrass",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )
    # The signer is a `request-created.greengrass` handler; registered last there, this
    # runs right after it (and after the User-Agent rebuild, an unsigned header).
    client.meta.events.register_last("request-created.greengrass", remember_signed)

    def record(name, kind, *, payload="body", expect="accept", compare_sign=True, timestamp=None):
        wire = server.captured.pop()
        assert not server.captured, "one request per call"
        cases.append(
            dict(
                wire,
                name=name,
                kind=kind,
                signed_url=signed_at.pop("url", None),
                signed_headers=signed_at.pop("headers", None),
                timestamp=timestamp or FROZEN.strftime("%Y%m%dT%H%M%SZ"),
                access_key_id=ACCESS_KEY,
                secret_access_key=SECRET_KEY,
                region=REGION,
                service=SERVICE,
                # what covers the body: "body" (its SHA-256), "unsigned" (a signed
                # UNSIGNED-PAYLOAD) or "header-hash" (a signed X-Amz-Content-SHA256 hash)
                payload=payload,
                # "accept", or the error type verify must answer with
                expect=expect,
                compare_sign=compare_sign,
            )
        )

    # --- the AWS CLI's / boto3's own calls ---------------------------------------------
    client.create_connector_definition(
        AmznClientToken="token-1",
        Name="twilio",
        InitialVersion={
            "Connectors": [
                {
                    "ConnectorArn": "arn:aws:greengrass:us-east-1::/connectors/TwilioNotifications/versions/5",
                    "Id": "twilio",
                    "Parameters": {"TWILIO_ACCOUNT_SID": "abc", "DefaultFromPhoneNumber": "+19999999999"},
                }
            ]
        },
        tags={"env": "test"},
    )
    record("create-connector-definition", "client")

    client.list_groups(MaxResults="10", NextToken="abc+/=def ghi~*")
    record("list-groups-paged", "client")

    client.list_group_versions(GroupId=GROUP_ID, MaxResults="2", NextToken="\u00e9t\u00e9/2")
    record("list-group-versions-utf8-token", "client")

    client.reset_deployments(GroupId=GROUP_ID, Force=True)
    record("reset-deployments-dollar-path", "client")

    client.list_tags_for_resource(ResourceArn=GROUP_ARN)
    record("list-tags-encoded-arn", "client")

    client.tag_resource(ResourceArn=GROUP_ARN, tags={"k\u00fc": "v\u00e4lue \u2603", "b": "2"})
    record("tag-resource-unicode-body", "client")

    client.untag_resource(ResourceArn=GROUP_ARN, TagKeys=["zeta", "alpha", "a b", "a+b"])
    record("untag-resource-repeated-query", "client")

    client.delete_group(GroupId=GROUP_ID)
    record("delete-group-empty-body", "client")

    client.create_group(Name="Gr\u00fc\u00dfe \U0001F30D \u65e5\u672c")
    record("create-group-unicode-body", "client")

    client.get_group_version(GroupId=GROUP_ID, GroupVersionId="v:1/2")
    record("get-group-version-reserved-chars", "client")

    # --- SigV4Auth on a bare AWSRequest -------------------------------------------------
    http = botocore.httpsession.URLLib3Session()
    creds = botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY)

    def raw(name, method, path, *, params=None, headers=None, body=b"", **flags):
        req = botocore.awsrequest.AWSRequest(
            method=method, url=endpoint + path, params=params, headers=headers or {}, data=body
        )
        botocore.auth.SigV4Auth(creds, SERVICE, REGION).add_auth(req)
        remember_signed(req)
        http.send(req.prepare())
        record(name, "raw", **flags)

    body = b'{"ConnectivityInfo":[{"HostAddress":"10.0.0.1","PortNumber":8883}]}'
    raw(
        "unsigned-payload-header",
        "PUT",
        "/greengrass/things/core-1/connectivityInfo",
        headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD", "Content-Type": "application/json"},
        body=body,
        payload="unsigned",
    )
    body = '{"Name":"gr\u00fcn"}'.encode()
    raw(
        "signed-content-sha256",
        "POST",
        "/greengrass/groups",
        headers={"X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest(), "Content-Type": "application/json"},
        body=body,
        payload="header-hash",
    )
    raw(
        "signed-content-sha256-of-another-body",
        "POST",
        "/greengrass/groups",
        headers={"X-Amz-Content-SHA256": hashlib.sha256(b"{}").hexdigest(), "Content-Type": "application/json"},
        body=b'{"Name":"x"}',
        payload="header-hash",
        expect="XAmzContentSHA256Mismatch",
    )
    raw(
        "header-whitespace",
        "GET",
        "/greengrass/groups",
        headers={"X-Custom": "  a   b \t c  ", "Content-Type": "application/json"},
    )
    raw(
        "date-header-instead-of-x-amz-date",
        "GET",
        "/greengrass/groups",
        headers={"Date": "Thu, 01 Jan 1970 00:00:00 GMT"},  # botocore rewrites it from its clock
        compare_sign=False,  # sign() always uses X-Amz-Date
    )
    raw(
        "params-with-empty-value-and-unicode",
        "GET",
        "/greengrass/groups",
        params=[("flag", ""), ("\u00fcber", "\u2603"), ("b", "2"), ("a", "1")],
    )

    # --- the AWS CLI itself, with its own clock -----------------------------------------
    cli_env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION=REGION,
        AWS_MAX_ATTEMPTS="1",
    )
    for name, args in [
        ("cli-reset-deployments", ["reset-deployments", "--group-id", GROUP_ID, "--force"]),
        ("cli-list-tags-for-resource", ["list-tags-for-resource", "--resource-arn", GROUP_ARN]),
        ("cli-create-group-unicode", ["create-group", "--name", "caf\u00e9 \u2615"]),
    ]:
        run = subprocess.run(
            [sys.executable, "-m", "awscli", "greengrass", *args, "--endpoint-url", endpoint],
            env=cli_env,
            capture_output=True,
            timeout=120,
        )
        if run.returncode != 0:
            sys.stderr.write(
                f"`aws greengrass {args[0]}` failed ({run.returncode}): {run.stderr.decode(errors='replace')}\n"
                "the AWS CLI is needed: pip install awscli\n"
            )
            sys.exit(4)
        sent = dict((k.lower(), v) for k, v in server.captured[-1]["headers"])
        record(name, "cli", compare_sign=False, timestamp=sent["x-amz-date"])

    server.shutdown()
    json.dump({"botocore_version": botocore.__version__, "cases": cases}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
