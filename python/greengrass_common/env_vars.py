"""The environment a Coupler core gives a function, read once at import as the SDK expects.

Outside a core every name is None: the SDK then mocks its calls.
"""
import os

MY_FUNCTION_ARN = os.environ.get("MY_FUNCTION_ARN")
ROUTER_FUNCTION_ARN = os.environ.get("ROUTER_FUNCTION_ARN")
SHADOW_FUNCTION_ARN = os.environ.get("SHADOW_FUNCTION_ARN")
SECRETS_MANAGER_FUNCTION_ARN = os.environ.get("SECRETS_MANAGER_FUNCTION_ARN")
AUTH_TOKEN = os.environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
GG_DAEMON_PORT = os.environ.get("GG_DAEMON_PORT", "8000")
ENCODING_TYPE = os.environ.get("ENCODING_TYPE", "json")
