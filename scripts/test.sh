#!/usr/bin/env bash
# Every test of footfall, from a fresh Debian/Ubuntu machine: installs what is missing, then runs
# the Rust unit and integration tests (real ClickHouse 18.16, fault tests included), a bounded
# fuzzing run, the schema, named queries and Grafana dashboard on ClickHouse 18.16 and 26.x
# (chdb-core), footfall on a ClickHouse cluster with ZooKeeper, the deployment files, a short run of
# the load test, and the tracker's and dashboard's Node and real-Chromium
# tests (through the collector into ClickHouse).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
need_apt=()
command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/sbin/clickhouse-server ] || command -v clickhouse >/dev/null 2>&1 || need_apt+=(clickhouse-server)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
[ -f /usr/share/java/zookeeper.jar ] && command -v java >/dev/null 2>&1 || need_apt+=(zookeeper)
for tool in wrk bc curl; do command -v "$tool" >/dev/null 2>&1 || need_apt+=("$tool"); done
command -v pip3 >/dev/null 2>&1 || python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! python3 -c 'import chdb' >/dev/null 2>&1; then
  echo "== installing chdb-core (ClickHouse 26.x in-process)"
  python3 -m pip install -q chdb-core 2>/dev/null || python3 -m pip install -q --break-system-packages chdb-core
fi

echo "== Rust: unit and integration tests against a real ClickHouse"
cargo test --release

echo "== Fuzzing the beacon parser and the bounded gunzip (bounded time; cargo-fuzz on stable)"
scripts/fuzz.sh "${FOOTFALL_FUZZ_SECONDS:-60}"

echo "== Least-privilege ClickHouse users (18.16 server and 26.x chdb)"
bash tests/clickhouse_users/check.sh

echo "== Schema and queries on current ClickHouse (chdb-core)"
python3 tests/chdb/check_schema.py target/release/footfall

echo "== Named queries, rollups and the Grafana dashboard on 18.16 and 26.x (known answers)"
python3 scripts/grafana-dashboard.py --check
python3 tests/analytics/check.py target/release/footfall

echo "== A real cluster: ZooKeeper and 2 shards x 2 replicas of ClickHouse 18.16, two footfall instances"
python3 tests/cluster/check.py target/release/footfall

echo "== Deployment files (compose, Kubernetes, systemd, Dockerfile; ClickHouse configs on a real server)"
bash tests/deploy/check.sh

echo "== The load test, for a few seconds: the script runs end to end (every answered event lands, every"
echo "   event gets a country and a provider); its numbers are measured by hand, see benches/README.md"
SKIP_CEILING=1 scripts/loadtest.sh 5 16

echo "== tracker-js: build check, unit tests, real Chromium"
cd tracker-js
npm ci --no-audit --no-fund --loglevel=error
npm run check
npm test
FOOTFALL_BIN="$PWD/../target/release/footfall" npm run test:e2e

echo "== dashboard: build check, unit tests, real Chromium (mock API and the real collector)"
cd ../dashboard
npm ci --no-audit --no-fund --loglevel=error
npm run check
npm test
FOOTFALL_BIN="$PWD/../target/release/footfall" npm run test:e2e
