#!/usr/bin/env bash
# Install the real peers the tests run against. Safe to run again: it installs only what is
# missing. Debian packages via apt-get, Python packages via pip (versions in
# scripts/requirements-test.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

# openssl verifies the group CA's certificates as an independent implementation;
# mosquitto_pub/mosquitto_sub are real MQTT clients for the device tests, and the mosquitto
# broker is the peer the MQTT benchmark measures against.
apt_missing=()
command -v openssl >/dev/null 2>&1 || apt_missing+=(openssl)
command -v mosquitto_pub >/dev/null 2>&1 || apt_missing+=(mosquitto-clients)
[ -x /usr/sbin/mosquitto ] || apt_missing+=(mosquitto)
# socat makes the pseudo-terminal pairs the serial connectors are tested on.
command -v socat >/dev/null 2>&1 || apt_missing+=(socat)
if [ "${#apt_missing[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_missing[@]}"
  # The package starts a system broker on port 1883; the tests start their own.
  systemctl stop mosquitto >/dev/null 2>&1 || service mosquitto stop >/dev/null 2>&1 || true
fi

need_pip=0
python3 - <<'PY' || need_pip=1
import importlib.util, shutil, sys
mods = ["botocore", "awscli", "boto3", "pytest", "moto", "flask", "flask_cors", "paho", "pymodbus", "serial"]
missing = [m for m in mods if importlib.util.find_spec(m) is None]
if shutil.which("moto_server") is None:
    missing.append("moto_server")
sys.exit(1 if missing else 0)
PY
if [ "$need_pip" = 1 ]; then
  python3 -m pip install --quiet -r scripts/requirements-test.txt
fi

# The botocore service model is what the API-shape test compares our types against.
python3 -c 'import botocore, os; p = os.path.join(os.path.dirname(botocore.__file__), "data/greengrass/2017-06-07/service-2.json.gz"); assert os.path.exists(p), p; print("botocore model:", p)'
command -v moto_server >/dev/null
