"""The Greengrass Lambda IPC client: HTTP/1.1 on loopback, one keep-alive connection per thread.

Calls (API version 2016-11-01), each with `Authorization: $AWS_CONTAINER_AUTHORIZATION_TOKEN`:
  POST /functions/<arn>           post work (invoke, publish, shadow, secret) -> X-Amz-InvocationId
  GET  /functions/<arn>           get a work result by X-Amz-InvocationId -> body, X-Amz-Function-Error
  GET  /functions/<arn>/work      a worker takes its next work item
  POST /functions/<arn>/work      a worker posts a result (or, with X-Amz-Function-Error, an error)
  PUT  /functions/<arn>/initialized
"""
import base64
import json
import os
import socket
import threading
from urllib.parse import quote

API_VERSION = "2016-11-01"
HEADER_INVOCATION_ID = "X-Amz-InvocationId"
HEADER_CLIENT_CONTEXT = "X-Amz-Client-Context"
HEADER_INVOCATION_TYPE = "X-Amz-Invocation-Type"
HEADER_FUNCTION_ERROR = "X-Amz-Function-Error"
HEADER_AUTH_TOKEN = "Authorization"


class IPCException(Exception):
    pass


class WorkItem(object):
    def __init__(self, invocation_id, payload, client_context):
        self.invocation_id = invocation_id
        self.payload = payload
        self.client_context = client_context


class GetWorkResultOutput(object):
    def __init__(self, payload, func_err):
        self.payload = payload
        self.func_err = func_err


def wrap_urllib_exceptions(func):
    """Kept for code that imports it: errors already surface as IPCException."""
    return func


def _text(value):
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("ascii")
    return value


def _body(value):
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


class _Response(object):
    def __init__(self, status, headers):
        self.status = status
        self._headers = headers

    def getheader(self, name, default=None):
        return self._headers.get(name.lower(), default)


class _Connection(object):
    """HTTP/1.1 on one keep-alive socket, as small as the IPC needs: the core always answers
    with Content-Length (or chunked), and every call is a request and its response.

    http.client parses headers with the email package, which costs more than the rest of an
    invocation; this keeps the runtime's per-call cost to a few tens of microseconds."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.host = "{}:{}".format(host, port).encode("ascii")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the core closed the IPC connection")
        self.buf += data

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out, self.buf = self.buf[:i], self.buf[i + 2:]
                return out
            self._fill()

    def request(self, method, url, body, headers):
        head = [b"%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n"
                % (method.encode("ascii"), url.encode("ascii"), self.host, len(body))]
        for k, v in headers.items():
            head.append(b"%s: %s\r\n" % (k.encode("ascii"), v.encode("latin-1")))
        head.append(b"\r\n")
        self.sock.sendall(b"".join(head) + body)
        while True:
            while self.buf.find(b"\r\n\r\n") < 0:
                self._fill()
            status_line = self._line()
            status = int(status_line.split(b" ", 2)[1])
            response_headers = {}
            while True:
                line = self._line()
                if not line:
                    break
                k, _, v = line.partition(b":")
                response_headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
            if status != 100:
                break
        if response_headers.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                data += self._take(size)
                self._line()
        else:
            data = self._take(int(response_headers.get("content-length", "0")))
        return _Response(status, response_headers), data


class IPCClient(object):
    def __init__(self, endpoint="localhost", port=None):
        self.endpoint = "127.0.0.1" if endpoint == "localhost" else endpoint
        self.port = int(port or os.environ.get("GG_DAEMON_PORT", "8000"))
        self.auth_token = os.environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN", "")
        self._local = threading.local()

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _Connection(self.endpoint, self.port)
            self._local.conn = conn
        return conn

    def _request(self, method, path, body=b"", headers=None):
        all_headers = {HEADER_AUTH_TOKEN: self.auth_token}
        if headers:
            all_headers.update(headers)
        url = "/{}/{}".format(API_VERSION, path)
        # A keep-alive connection the core closed while idle is retried once on a new one.
        for attempt in (0, 1):
            try:
                conn = self._connection()
                response, data = conn.request(method, url, body, all_headers)
            except (OSError, ValueError, IndexError) as e:
                conn = getattr(self._local, "conn", None)
                if conn is not None:
                    conn.close()
                self._local.conn = None
                if attempt == 1:
                    raise IPCException("IPC call {} {} failed: {}".format(method, url, e))
                continue
            if response.status >= 400:
                raise IPCException(_error_message(response.status, data))
            return response, data

    @staticmethod
    def _url(function_arn, suffix=""):
        return "functions/" + quote(function_arn, safe=":$") + suffix

    def post_work(self, function_arn, payload, client_context, invocation_type="RequestResponse"):
        response, _ = self._request("POST", self._url(function_arn), _body(payload), {
            HEADER_CLIENT_CONTEXT: _text(client_context),
            HEADER_INVOCATION_TYPE: invocation_type,
        })
        return response.getheader(HEADER_INVOCATION_ID)

    def get_work_result(self, function_arn, invocation_id):
        response, data = self._request("GET", self._url(function_arn), b"", {
            HEADER_INVOCATION_ID: invocation_id,
        })
        return GetWorkResultOutput(data, response.getheader(HEADER_FUNCTION_ERROR, ""))

    def get_work(self, function_arn):
        response, data = self._request("GET", self._url(function_arn, "/work"))
        return WorkItem(
            response.getheader(HEADER_INVOCATION_ID),
            data,
            response.getheader(HEADER_CLIENT_CONTEXT, ""),
        )

    def post_result(self, function_arn, invocation_id, body, function_error=""):
        """A worker's answer to one work item; `function_error` "Handled" marks an error."""
        headers = {HEADER_INVOCATION_ID: invocation_id}
        if function_error:
            headers[HEADER_FUNCTION_ERROR] = function_error
        self._request("POST", self._url(function_arn, "/work"), _body(body), headers)

    def post_work_result(self, function_arn, work_item):
        self.post_result(function_arn, work_item.invocation_id, work_item.payload)

    def post_handler_err(self, function_arn, invocation_id, handler_err):
        body = json.dumps({"errorMessage": handler_err}).encode("utf-8")
        self.post_result(function_arn, invocation_id, body, "Handled")

    def put_initialized(self, function_arn, success=True, message=""):
        body = json.dumps({"Success": bool(success), "Response": message}).encode("utf-8")
        self._request("PUT", self._url(function_arn, "/initialized"), body)


def _error_message(status, data):
    try:
        doc = json.loads(data.decode("utf-8"))
        message = doc.get("message") or doc.get("errorMessage") or data.decode("utf-8")
    except (ValueError, UnicodeDecodeError, AttributeError):
        message = repr(data)
    return "IPC error {}: {}".format(status, message)


def decode_client_context(value):
    """The client context a work item carries (base64 JSON), as a dict."""
    if not value:
        return {}
    try:
        return json.loads(base64.b64decode(value).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return {}
