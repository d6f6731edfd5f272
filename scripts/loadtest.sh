#!/usr/bin/env bash
# Load test: footfall serve with a real ClickHouse, driven by wrk with a realistic beacon, next to
# the no-op actix ceiling measured in the same run. Prints events/s answered, events/s landed in
# ClickHouse (counted there), and the ratio to the ceiling.
#   scripts/loadtest.sh [seconds=20] [connections=64]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}
CONNS=${2:-64}
command -v wrk >/dev/null || { sudo apt-get install -y wrk 2>/dev/null || apt-get install -y wrk; }
cargo build --release --quiet --bin footfall --example noop

work=$(mktemp -d)
cleanup() { kill "$FF_PID" "$NOOP_PID" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

head -n 1 tests/fixtures/beacons.jsonl | sed 's/"site":"shop"/"site":"demo"/' > "$work/beacon.json"
cat > "$work/post.lua" <<LUA
local f = assert(io.open("$work/beacon.json"))
wrk.method = "POST"
wrk.body = f:read("*a")
wrk.headers["Content-Type"] = "text/plain;charset=UTF-8"
wrk.headers["Origin"] = "http://localhost:8080"
wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"
LUA

# 1. The ceiling: a no-op actix POST handler.
NOOP_PORT=$(free_port)
target/release/examples/noop "127.0.0.1:$NOOP_PORT" & NOOP_PID=$!
sleep 1
ceiling=$(wrk -t2 -c"$CONNS" -d"${SECS}s" -s "$work/post.lua" "http://127.0.0.1:$NOOP_PORT/api/event" | awk '/Requests\/sec/ {print $2}')
kill "$NOOP_PID"; wait "$NOOP_PID" 2>/dev/null || true

# 2. footfall with a managed ClickHouse (or FOOTFALL_CLICKHOUSE_URL if set).
FF_PORT=$(free_port)
FOOTFALL_DATA_DIR="$work/data" FOOTFALL_LISTEN="127.0.0.1:$FF_PORT" FOOTFALL_LOG=warn \
FOOTFALL_RATE_PER_SECOND=10000000 FOOTFALL_RATE_BURST=10000000 \
  target/release/footfall serve > "$work/ff.out" 2> "$work/ff.err" & FF_PID=$!
for _ in $(seq 1 100); do grep -q "listening" "$work/ff.out" 2>/dev/null && break; sleep 0.2; done
CH_URL=$(sed -n 's/.*ClickHouse at \(http[^)]*\)).*/\1/p' "$work/ff.out")
ch() { curl -sS "$CH_URL/" --data-binary "$1"; }
db=${FOOTFALL_CLICKHOUSE_DATABASE:-footfall}
before=$(ch "SELECT count() FROM $db.events")
start=$(date +%s.%N)
wrk_out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s "$work/post.lua" "http://127.0.0.1:$FF_PORT/api/event")
rss_kb=$(ps -o rss= -p "$FF_PID")
cpu=$(ps -o %cpu= -p "$FF_PID")
answered=$(echo "$wrk_out" | awk '/Requests\/sec/ {print $2}')
non2xx=$(echo "$wrk_out" | awk '/Non-2xx/ {print $5}')
completed=$(echo "$wrk_out" | awk '/requests in/ {print $1}')
kill -TERM "$FF_PID"; wait "$FF_PID" || true   # graceful: flushes the queue
end=$(date +%s.%N)
# The managed ClickHouse stopped with footfall; read the count from its data with a fresh start.
if [ -z "${FOOTFALL_CLICKHOUSE_URL:-}" ]; then
  FOOTFALL_DATA_DIR="$work/data" FOOTFALL_LISTEN="127.0.0.1:$(free_port)" FOOTFALL_LOG=warn \
    target/release/footfall serve > "$work/ff2.out" 2>/dev/null & FF_PID=$!
  for _ in $(seq 1 100); do grep -q "listening" "$work/ff2.out" 2>/dev/null && break; sleep 0.2; done
  CH_URL=$(sed -n 's/.*ClickHouse at \(http[^)]*\)).*/\1/p' "$work/ff2.out")
fi
after=$(ch "SELECT count() FROM $db.events")
landed=$((after - before))
elapsed=$(echo "$end - $start" | bc -l)
landed_rate=$(echo "$landed / $elapsed" | bc -l)
echo "$wrk_out" | sed -n '/Latency Distribution/,/99%/p'
printf 'no-op actix ceiling:       %10.0f req/s\n' "$ceiling"
printf 'footfall answered:         %10.0f req/s (non-2xx: %s)\n' "$answered" "${non2xx:-0}"
printf 'landed in ClickHouse:      %10d events in %.1f s = %.0f events/s\n' "$landed" "$elapsed" "$landed_rate"
printf 'ratio landed / ceiling:    %10.2f\n' "$(echo "$landed_rate / $ceiling" | bc -l)"
# wrk counts the responses it read; requests in flight when it stops may be accepted without being
# counted, so landed may exceed completed by at most the number of connections.
if [ "$landed" -ge "$completed" ] && [ $((landed - completed)) -le "$CONNS" ]; then
  echo "every answered event landed: $completed answered by wrk's count, $landed in ClickHouse"
else
  echo "MISMATCH: $completed answered by wrk's count, $landed in ClickHouse"; exit 1
fi
printf 'footfall RSS at end of load: %d MiB, CPU %s%%\n' "$((rss_kb / 1024))" "$cpu"
