#!/usr/bin/env bash
# Install what the tests need, then run every check CI runs: format, lints, tests, docs, and
# the benchmarks in short mode (so they cannot rot).
#
#   scripts/test.sh            everything
#   SKIP_BENCH=1 scripts/test.sh   everything but the benchmarks
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

log "prerequisites"
scripts/install-test-deps.sh

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "cargo test"
cargo test --workspace --locked

log "end-to-end: the AWS CLI and boto3 against coupler up"
cargo build --locked -p coupler
COUPLER_BIN="$PWD/target/debug/coupler" python3 -m pytest tests/e2e -q

log "fuzz: the MQTT packet decoder, bounded to ${FUZZ_SECONDS:-30} s"
# cargo fuzz needs nightly flags; RUSTC_BOOTSTRAP lets this stable toolchain take them.
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz@0.13.2
corpus=$(mktemp -d)
(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run mqtt_decode "$corpus" seeds/mqtt_decode -- \
  -max_total_time="${FUZZ_SECONDS:-30}" -rss_limit_mb=2048 2>&1 | tail -3)
rm -rf "$corpus"

log "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

log "coupler validate on the example bundle"
cargo run --quiet --locked -p coupler -- validate examples/modbus-twilio.yaml

if [ -z "${SKIP_BENCH:-}" ]; then
  log "benchmarks (short mode)"
  cargo bench --locked -p coupler-router --bench route -- --quick
  cargo bench --locked -p coupler-api --bench api -- --quick
  cargo bench --locked -p coupler --bench core
  cargo bench --locked -p coupler --bench mqtt
  cargo bench --locked -p coupler --bench modbus
  cargo bench --locked -p coupler --bench firehose
  cargo bench --locked -p coupler --bench functions
  cargo bench --locked -p coupler --bench cloud
  cargo bench --locked -p coupler --bench isolation
  cargo bench --locked -p coupler-runtime --bench spool
  cargo bench --locked -p coupler-connectors --bench connectors
fi

log "all checks passed"
