"""A local stand-in for Twilio's REST API, for the Twilio Notifications connector's tests
(Twilio itself cannot be reached from the test machines).

It implements the two resources the connector uses, as Twilio documents them:

- `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (form fields To, From, Body)
- `POST /2010-04-01/Accounts/{AccountSid}/Calls.json` (form fields To, From, and Url or Twiml)

with HTTP Basic auth (username the account SID, password the auth token), `201 Created` and
the new resource's JSON (`sid` "SM…" or "CA…", `status` "queued", …), and Twilio's error body
`{"code", "message", "more_info", "status"}`: 401/20003 on bad credentials, 400/21211 for an
invalid 'To' number (Twilio's magic test number +15005550001 is one), 400/2160x for a missing
field, 404/20404 for anything else. `fail_next(n, status)` makes the next n requests fail
with 500 or 503, to exercise retries. Every request is recorded (method, path, auth, form).

Run alone: `python3 tests/e2e/twilio_server.py SID TOKEN [PORT]`.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

PATH_RE = re.compile(r"^/2010-04-01/Accounts/([^/]+)/(Messages|Calls)\.json$")
E164_RE = re.compile(r"^\+[1-9]\d{1,14}$")
# Twilio's test credentials treat this number as invalid (error 21211).
INVALID_NUMBER = "+15005550001"


def error_body(code: int, message: str, status: int) -> dict:
    return {"code": code, "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}


@dataclass
class Received:
    method: str
    path: str
    # (username, password) from the Basic auth header, or None without one.
    auth: tuple[str, str] | None
    content_type: str
    form: dict[str, list[str]]
    body: bytes


class TwilioServer:
    def __init__(self, sid: str, token: str, port: int = 0):
        self.sid, self.token = sid, token
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._failures: list[int] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_):  # quiet: the test reads .requests instead
                pass

            def do_GET(self):
                outer._handle(self)

            def do_POST(self):
                outer._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def fail_next(self, n: int, status: int = 503) -> None:
        with self._lock:
            self._failures = [status] * n

    def take(self) -> list[Received]:
        """The requests received since the last take."""
        with self._lock:
            out, self.requests = self.requests, []
        return out

    # -- the API --

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        ctype = h.headers.get("Content-Type", "")
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True) \
            if ctype.split(";")[0].strip() == "application/x-www-form-urlencoded" else {}
        auth = None
        header = h.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                auth = (user, password)
            except ValueError:
                pass
        with self._lock:
            self.requests.append(Received(h.command, h.path, auth, ctype, form, body))
            failure = self._failures.pop(0) if self._failures else None
        status, doc = self._answer(h.command, h.path, auth, form, failure)
        data = json.dumps(doc).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _answer(self, method, path, auth, form, failure) -> tuple[int, dict]:
        m = PATH_RE.match(path)
        if method != "POST" or not m:
            return 404, error_body(20404, f"The requested resource {path} was not found", 404)
        if failure is not None:
            code, text = {500: (20500, "Internal Server Error"),
                          503: (20503, "Service Unavailable")}[failure]
            return failure, error_body(code, text, failure)
        sid, resource = m.groups()
        if auth != (self.sid, self.token) or sid != self.sid:
            return 401, error_body(20003, "Authenticate", 401)
        one = {k: v[0] for k, v in form.items()}
        to, from_ = one.get("To"), one.get("From")
        if not to:
            return 400, error_body(21604, "A 'To' phone number is required.", 400)
        if not from_:
            return 400, error_body(21603, "A 'From' phone number is required.", 400)
        if to == INVALID_NUMBER or not E164_RE.match(to):
            return 400, error_body(21211, f"The 'To' number {to} is not a valid phone number.",
                                   400)
        now = datetime.now(timezone.utc).strftime("%a, %d %b %Y %H:%M:%S +0000")
        if resource == "Messages":
            if not one.get("Body"):
                return 400, error_body(21602, "Message body is required.", 400)
            msg_sid = "SM" + uuid.uuid4().hex
            return 201, {
                "account_sid": sid, "api_version": "2010-04-01", "body": one["Body"],
                "date_created": now, "date_sent": None, "date_updated": now,
                "direction": "outbound-api", "error_code": None, "error_message": None,
                "from": from_, "messaging_service_sid": None, "num_media": "0",
                "num_segments": "1", "price": None, "price_unit": "USD", "sid": msg_sid,
                "status": "queued", "to": to,
                "uri": f"/2010-04-01/Accounts/{sid}/Messages/{msg_sid}.json",
            }
        if not one.get("Url") and not one.get("Twiml"):
            return 400, error_body(21205, "Url parameter is required.", 400)
        call_sid = "CA" + uuid.uuid4().hex
        return 201, {
            "account_sid": sid, "api_version": "2010-04-01", "date_created": now,
            "date_updated": now, "direction": "outbound-api", "from": from_,
            "from_formatted": from_, "parent_call_sid": None, "price": None,
            "sid": call_sid, "status": "queued", "to": to, "to_formatted": to,
            "uri": f"/2010-04-01/Accounts/{sid}/Calls/{call_sid}.json",
        }


if __name__ == "__main__":
    server = TwilioServer(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    print(f"Twilio-compatible API on {server.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.close()
