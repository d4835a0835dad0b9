"""Coupler's Python runtime for Greengrass Lambda functions.

The core starts this script once per worker with the function's environment (see
docs/functions.md). It loads the handler named by COUPLER_FUNCTION_HANDLER (`module.function`)
from the deployed code, then takes work items from the core over the Lambda IPC, calls
`handler(event, context)` one at a time, and posts each result or error back.
"""
import base64
import json
import logging
import os
import sys
import time
import traceback
from importlib import import_module

from greengrass_common.env_vars import MY_FUNCTION_ARN, ENCODING_TYPE
from greengrass_ipc_python_sdk.ipc_client import IPCClient, IPCException


class _LevelMarkerFormatter(logging.Formatter):
    """`[LEVEL]-file.py:line,message`: the core adds the timestamp and parses the level."""

    LEVELS = {"WARNING": "WARN", "CRITICAL": "FATAL"}

    def format(self, record):
        record.gglevel = self.LEVELS.get(record.levelname, record.levelname)
        return super().format(record)


def _configure_logging():
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LevelMarkerFormatter("[%(gglevel)s]-%(filename)s:%(lineno)d,%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    root.setLevel(getattr(logging, level, logging.INFO))


log = logging.getLogger("lambda_runtime")


class ClientContext(object):
    def __init__(self, raw):
        doc = {}
        if raw:
            try:
                doc = json.loads(base64.b64decode(raw).decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                doc = {}
        self.custom = doc.get("custom") or {}
        self.client = doc.get("client")
        self.env = doc.get("env")


class Context(object):
    def __init__(self, function_arn, invocation_id, client_context, timeout_ms):
        parts = function_arn.split(":")
        self.invoked_function_arn = function_arn
        self.function_name = parts[6] if len(parts) > 6 else function_arn
        self.function_version = parts[7] if len(parts) > 7 else "$LATEST"
        self.aws_request_id = invocation_id
        self.client_context = ClientContext(client_context)
        self.identity = None
        self.memory_limit_in_mb = None
        self._deadline = time.monotonic() + timeout_ms / 1000.0

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _load_handler(name):
    module_name, _, function_name = name.rpartition(".")
    if not module_name or not function_name:
        raise ValueError("handler {!r} is not of the form module.function".format(name))
    module = import_module(module_name)
    handler = getattr(module, function_name, None)
    if handler is None:
        raise AttributeError("module {!r} has no function {!r}".format(module_name, function_name))
    return handler


def _event(payload):
    if ENCODING_TYPE == "binary":
        return payload
    # The core delivers only valid JSON to a json function; an empty payload is an empty event.
    return json.loads(payload.decode("utf-8")) if payload else {}


def _result_bytes(result):
    if ENCODING_TYPE == "binary":
        if result is None:
            return b""
        if isinstance(result, (bytes, bytearray)):
            return bytes(result)
        if isinstance(result, str):
            return result.encode("utf-8")
    return json.dumps(result).encode("utf-8")


def _error_body(exc):
    return json.dumps({
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "stackTrace": traceback.format_exception(type(exc), exc, exc.__traceback__),
    }).encode("utf-8")


def main():
    _configure_logging()
    if not MY_FUNCTION_ARN:
        log.critical("MY_FUNCTION_ARN is not set: this runtime runs under a Coupler core")
        return 2
    code_dir = os.environ.get("COUPLER_FUNCTION_DIR", os.getcwd())
    sys.path.insert(0, code_dir)
    sys.argv = [os.path.join(code_dir, "lambda")] + sys.argv[1:]
    timeout_ms = int(os.environ.get("COUPLER_FUNCTION_TIMEOUT_MS", "3000"))
    ipc = IPCClient()
    try:
        handler = _load_handler(os.environ.get("COUPLER_FUNCTION_HANDLER", ""))
    except BaseException as e:  # a handler module may even call sys.exit at import
        message = "Failed to initialize Lambda runtime due to exception: {}".format(e)
        log.critical(message + "\n" + traceback.format_exc())
        try:
            ipc.put_initialized(MY_FUNCTION_ARN, False, message)
        except IPCException:
            pass
        return 1
    ipc.put_initialized(MY_FUNCTION_ARN, True, "")
    while True:
        item = ipc.get_work(MY_FUNCTION_ARN)
        context = Context(MY_FUNCTION_ARN, item.invocation_id, item.client_context, timeout_ms)
        try:
            result = handler(_event(item.payload), context)
            body = _result_bytes(result)
        except Exception as e:
            log.exception("Handler %s raised an exception", handler.__name__)
            ipc.post_result(MY_FUNCTION_ARN, item.invocation_id, _error_body(e), "Handled")
            continue
        ipc.post_result(MY_FUNCTION_ARN, item.invocation_id, body)


if __name__ == "__main__":
    sys.exit(main())
