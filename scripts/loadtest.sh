#!/usr/bin/env bash
# Load test: footfall serve with a real ClickHouse, driven by wrk with a realistic beacon, next to
# the no-op actix ceiling measured in the same run, once before footfall's load and once after it
# (this VM's speed drifts within minutes; the ratio uses the mean of the two). Prints events/s
# answered, p50/p99 latency, footfall's RSS every 10 s, events landed in ClickHouse (counted
# there, after the spool has drained), the ratio to the ceiling, and what ClickHouse stored per
# event, table by table, and how much of the machine the VM's host took in each phase (steal).
#   scripts/loadtest.sh [seconds=60] [connections=64]
# A minute lets ClickHouse's background merges of what the run inserted happen inside the measured
# window; in a 20-second run most of them came after it (ClickHouse's CPU per event read
# 15-35 % lower than over a minute, more with longer batches). Where the run keeps its data, and
# why not in /tmp: see LOADTEST_DIR below.
# Each session comes from its own client address (X-Forwarded-For, from 127.0.0.1 as a trusted
# proxy) and footfall looks every one up in generated City and ISP databases of 475 136 networks
# (examples/loadtest_geoip.rs), so the run pays for the whole enrichment a real deployment does:
# geo and provider lookups, a visitor id and a rate-limiter cell per address.
# Environment: FOOTFALL_BIN (another footfall binary, e.g. an older build to compare with),
# LOADTEST_DIR, SKIP_CEILING=1, and any FOOTFALL_* setting (FOOTFALL_SPOOL_FSYNC=never, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
CONNS=${2:-64}
missing=()
for tool in wrk bc curl; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release --quiet --bin footfall --example noop --example loadtest_geoip
BIN=${FOOTFALL_BIN:-target/release/footfall}

# The run's data (footfall's spool, the managed ClickHouse's parts) goes on the disk, in a fresh
# directory under target/loadtest (LOADTEST_DIR to choose another): not /tmp, which is tmpfs on
# many systems, where the spool's fsync would cost nothing. target/loadtest is marked as the top
# of a directory tree for ext4's allocator (chattr +T), so each run's directory starts in a block
# group of its own. On ext4 without a journal (this kind of VM), creating a file in a group where
# many files were deleted in the last minutes scans past every such inode: 115-340 us of CPU per
# file in /tmp here, against 14-20 us in a fresh group, and a run's ClickHouse creates hundreds of
# files a second (17 % of its CPU went to that scan). A journaled filesystem has no such scan.
LOADTEST_DIR=${LOADTEST_DIR:-target/loadtest}
mkdir -p "$LOADTEST_DIR"
chattr +T "$LOADTEST_DIR" 2>/dev/null || true
work=$(mktemp -d -p "$(cd "$LOADTEST_DIR" && pwd)")
# The no-op server is started inside a command substitution, so its pid is kept in a file for this
# trap to find when the run is interrupted.
cleanup() {
  kill "${FF_PID:-}" $(cat "$work/noop.pid" 2>/dev/null) 2>/dev/null || true
  wait 2>/dev/null || true; rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mkdir "$work/geo"
{ read -r GEO_CITY; read -r GEO_ISP; } < <(target/release/examples/loadtest_geoip "$work/geo" 2>/dev/null)
head -n 1 tests/fixtures/beacons.jsonl | sed 's/"site":"shop"/"site":"demo"/' > "$work/beacon.json"
# Traffic shaped like real visits, for footfall and for the no-op ceiling alike: each wrk thread
# walks sessions of ten page views (/p/1 ... /p/10, each naming the one before), a new session id
# every ten requests. One fixed request would make a whole run one session, and each ClickHouse
# insert fold hundreds of thousands of events into that session's aggregate states (merged again
# on every merge), a cost no real traffic has. Each page view's request is built once; only the
# session id and the client address change, so wrk sends these as fast as one fixed request.
cat > "$work/visits.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "text/plain;charset=UTF-8"
wrk.headers["Origin"] = "http://localhost:8080"
wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"
local per_session = 10
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tag", string.format("lt%d%02d", os.time(), threads))
  thread:set("index", threads)
end
-- Every session id has the same length, so the Content-Length built here stays right; the
-- address is in a header, which may vary in length.
local ip_hole = "@@@@@@@@@@@@@@@"
wrk.headers["X-Forwarded-For"] = ip_hole
local head, middle, tail = {}, {}, {}
function init(args)
  local f = assert(io.open(args[1]))
  local template = f:read("*a")
  f:close()
  local hole = string.rep("#", #tag + 20)
  local origin = template:match('"url":"(https?://[^/"]+)')
  local function field(body, name, pattern, value)
    return (body:gsub('"' .. name .. '":' .. pattern, function() return '"' .. name .. '":' .. value end, 1))
  end
  for seq = 1, per_session do
    local prev = seq > 1 and (origin .. "/p/" .. (seq - 1)) or ""
    local body = field(template, "url", '"[^"]*"', '"' .. origin .. "/p/" .. seq .. '"')
    body = field(body, "sid", '"[^"]*"', '"' .. hole .. '"')
    body = field(body, "seq", "%d+", tostring(seq))
    body = field(body, "prev", '"[^"]*"', '"' .. prev .. '"')
    local req = wrk.format(nil, nil, nil, body)
    local at_ip, at = req:find(ip_hole, 1, true), req:find(hole, 1, true)
    head[seq], middle[seq] = req:sub(1, at_ip - 1), req:sub(at_ip + #ip_hole, at - 1)
    tail[seq] = req:sub(at + #hole)
  end
end
-- A session's address: 11.0.0.0 to 126.255.255.255 (what the generated databases cover),
-- scattered by a multiplicative hash of the session number and the thread.
local function address(session)
  local h = bit.tobit((session * 2 + index) * 2654435761)
  return string.format("%d.%d.%d.%d", 11 + bit.rshift(h, 1) % 116, bit.band(bit.rshift(h, 8), 255),
    bit.band(bit.rshift(h, 16), 255), 1 + bit.band(bit.rshift(h, 24), 127))
end
local n, ip = 0, ""
function request()
  local seq = n % per_session + 1
  local session = math.floor(n / per_session)
  if seq == 1 then ip = address(session) end
  local sid = string.format("%s%020d", tag, session)
  n = n + 1
  return head[seq] .. ip .. middle[seq] .. sid .. tail[seq]
end
LUA

# Writeback left by an earlier run (a deleted ClickHouse data directory, say) keeps a kernel
# flusher busy for seconds on this kind of disk: let it finish so it is not measured as ours.
settle() { sync; sleep 2; }

# The whole machine's CPU time so far (/proc/stat, all CPUs): total, stolen by the host, idle
# (with I/O wait). On a VM the host takes a share that moves from minute to minute (0 to a third
# of it here); the run prints each phase's share, since the ceiling and footfall's load are
# measured minutes apart and may not have had the same machine.
machine_cpu() { awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8+$9, $9, $5+$6; exit}' /proc/stat; }
# Percent of the machine's time between two samples that was stolen, and that was idle, on one line.
shares() {
  local t0 s0 i0 t1 s1 i1; read -r t0 s0 i0 <<< "$1"; read -r t1 s1 i1 <<< "$2"
  awk -v t="$((t1 - t0))" -v s="$((s1 - s0))" -v i="$((i1 - i0))" 'BEGIN { print 100 * s / t, 100 * i / t }'
}

# 1. The ceiling: a no-op actix POST handler, with the same wrk settings. Prints its req/s and
# the shares of the machine stolen and idle meanwhile.
measure_ceiling() {
  settle
  local port; port=$(free_port)
  target/release/examples/noop "127.0.0.1:$port" &
  local pid=$!; echo "$pid" > "$work/noop.pid"
  sleep 1
  local m0 rate; m0=$(machine_cpu)
  rate=$(wrk -t2 -c"$CONNS" -d"$((SECS < 20 ? SECS : 20))s" -s "$work/visits.lua" "http://127.0.0.1:$port/api/event" -- "$work/beacon.json" | awk '/Requests\/sec/ {print $2}')
  echo "$rate $(shares "$m0" "$(machine_cpu)")"
  kill "$pid"; wait "$pid" 2>/dev/null || true; rm -f "$work/noop.pid"
}
ceiling=0
[ -n "${SKIP_CEILING:-}" ] || read -r ceiling_before steal_before _ <<< "$(measure_ceiling)"

# 2. footfall with a managed ClickHouse (or FOOTFALL_CLICKHOUSE_URL if set).
FF_PORT=$(free_port)
FOOTFALL_DATA_DIR="$work/data" FOOTFALL_LISTEN="127.0.0.1:$FF_PORT" FOOTFALL_LOG=warn \
FOOTFALL_RATE_PER_SECOND=10000000 FOOTFALL_RATE_BURST=10000000 \
FOOTFALL_TRUSTED_PROXIES=${FOOTFALL_TRUSTED_PROXIES:-127.0.0.1/32} \
FOOTFALL_GEOIP_CITY=${FOOTFALL_GEOIP_CITY:-$GEO_CITY} FOOTFALL_GEOIP_ASN=${FOOTFALL_GEOIP_ASN:-$GEO_ISP} \
  "$BIN" serve > "$work/ff.out" 2> "$work/ff.err" & FF_PID=$!
for _ in $(seq 1 100); do grep -q "listening" "$work/ff.out" 2>/dev/null && break; sleep 0.2; done
CH_URL=$(sed -n 's/.*ClickHouse at \(http[^)]*\)).*/\1/p' "$work/ff.out")
ch() { curl -sS "$CH_URL/" --data-binary "$1"; }
db=${FOOTFALL_CLICKHOUSE_DATABASE:-footfall}
settle
before=$(ch "SELECT count() FROM $db.events")
start=$(date +%s.%N)
# footfall's CPU time (user + system, clock ticks) so far: what the load adds is its cost.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cpu_before=$(cpu_ticks "$FF_PID")
# The managed ClickHouse (footfall -> its watchdog shell -> the server): its CPU per event is the
# other large part of the cost on this machine.
CH_PID=$(for p in $(pgrep -P "$FF_PID"); do pgrep -P "$p" '^clickhouse'; done | head -n 1 || true)
[ -z "$CH_PID" ] || ch_cpu_before=$(cpu_ticks "$CH_PID")
( t=0; while kill -0 "$FF_PID" 2>/dev/null; do
    echo "$t $(ps -o rss= -p "$FF_PID" | tr -d ' ')" >> "$work/rss"; sleep 10; t=$((t + 10)); done ) &
RSS_PID=$!
# The count in ClickHouse once a second during the load: its slope is the rate at which events
# land while the load runs, apart from the last batches' drain after it (below).
( while kill -0 "$FF_PID" 2>/dev/null; do
    n=$(ch "SELECT count() FROM $db.events" 2>/dev/null) && echo "$(date +%s.%N) $n" >> "$work/counts"
    sleep 1; done ) &
COUNT_PID=$!
load_m0=$(machine_cpu)
wrk_out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s "$work/visits.lua" "http://127.0.0.1:$FF_PORT/api/event" -- "$work/beacon.json")
load_end=$(date +%s.%N)
kill "$COUNT_PID" 2>/dev/null || true
read -r steal_load idle_load <<< "$(shares "$load_m0" "$(machine_cpu)")"
rss_kb=$(ps -o rss= -p "$FF_PID")
cpu=$(ps -o %cpu= -p "$FF_PID")
answered=$(echo "$wrk_out" | awk '/Requests\/sec/ {print $2}')
non2xx=$(echo "$wrk_out" | awk '/Non-2xx/ {print $5}')
completed=$(echo "$wrk_out" | awk '/requests in/ {print $1}')
# With a spool, wait until it has drained into ClickHouse before stopping.
if curl -s "http://127.0.0.1:$FF_PORT/metrics" | grep -q '^footfall_spool_pending_records'; then
  for _ in $(seq 1 3000); do
    pending=$(curl -s "http://127.0.0.1:$FF_PORT/metrics" | awk '/^footfall_spool_pending_records / {print $2}')
    [ "${pending:-1}" = "0" ] && break; sleep 0.1
  done
fi
end=$(date +%s.%N)
cpu_after=$(cpu_ticks "$FF_PID")
[ -z "$CH_PID" ] || ch_cpu_after=$(cpu_ticks "$CH_PID")
spool_stats=$(curl -s "http://127.0.0.1:$FF_PORT/metrics" | awk '
  /^footfall_spool_(appended|fsyncs|answer_wakeups)_total / {printf "%s=%s ", $1, $2}
  /^footfall_spool_commit_seconds_(sum|count) / {c[$1]=$2}
  END {if (c["footfall_spool_commit_seconds_count"] > 0) printf "mean write+fdatasync=%.3f ms", 1000 * c["footfall_spool_commit_seconds_sum"] / c["footfall_spool_commit_seconds_count"]}')
kill "$RSS_PID" 2>/dev/null || true
kill -TERM "$FF_PID"; wait "$FF_PID" || true   # graceful: delivers what is left
# The managed ClickHouse stopped with footfall; read the count from its data with a fresh start.
if [ -z "${FOOTFALL_CLICKHOUSE_URL:-}" ]; then
  FOOTFALL_DATA_DIR="$work/data" FOOTFALL_LISTEN="127.0.0.1:$(free_port)" FOOTFALL_LOG=warn \
    "$BIN" serve > "$work/ff2.out" 2>/dev/null & FF_PID=$!
  for _ in $(seq 1 100); do grep -q "listening" "$work/ff2.out" 2>/dev/null && break; sleep 0.2; done
  CH_URL=$(sed -n 's/.*ClickHouse at \(http[^)]*\)).*/\1/p' "$work/ff2.out")
fi
after=$(ch "SELECT count() FROM $db.events")
# What the enrichment made of the run: every address is in the generated databases, and each
# session's own address makes its own visitor id.
enriched=$(ch "SELECT round(100 * countIf(country != '') / count(), 2), round(100 * countIf(asn != 0) / count(), 2), uniqExact(visitor_id), uniqExact(session_id) FROM $db.events FORMAT TSV")
# What the run stored, table by table: the disk an operator plans per event, and which tables
# (the events themselves, or the rollups' visitor sets) ClickHouse's merges keep rewriting.
stored=$(ch "SELECT table, sum(bytes_on_disk) FROM system.parts WHERE database = '$db' AND active GROUP BY table HAVING sum(bytes_on_disk) > 0 ORDER BY sum(bytes_on_disk) DESC FORMAT TSV")
landed=$((after - before))
# 3. The ceiling again, with footfall and its ClickHouse stopped.
kill -TERM "$FF_PID" 2>/dev/null || true; wait "$FF_PID" 2>/dev/null || true
if [ -z "${SKIP_CEILING:-}" ]; then
  read -r ceiling_after steal_after _ <<< "$(measure_ceiling)"
  ceiling=$(echo "($ceiling_before + $ceiling_after) / 2" | bc -l)
fi
elapsed=$(echo "$end - $start" | bc -l)
landed_rate=$(echo "$landed / $elapsed" | bc -l)
# Landed while the load ran: the least-squares slope of the count over time, from a quarter of
# the run (at most 10 s, when the first batches and ClickHouse's first merges have settled) to the
# end of the load. "Landed" above divides every event by the time until the spool had drained,
# so it also holds the last batch's wait (the 2 s batch period and its insert) after the load:
# up to 7 % of a minute-long run. The slope is the rate a longer run would approach; it is read from
# inserts of up to 50 000 rows every ~2 s, so it is fitted over all the samples, not two of them.
warm=$(( SECS / 4 < 10 ? SECS / 4 : 10 ))
# Prints the slope (0 with fewer than three samples) and the number of samples it was fitted over.
read -r steady_rate steady_samples <<< "$(awk -v s="$start" -v w="$warm" -v e="$load_end" '
  $1 >= s + w && $1 <= e { t = $1 - s; n++; sx += t; sy += $2; sxx += t * t; sxy += t * $2 }
  END { d = n * sxx - sx * sx; printf "%.1f %d\n", (n >= 3 && d > 0) ? (n * sxy - sx * sy) / d : 0, n }' \
  "$work/counts" 2>/dev/null || echo 0 0)"
# The host's CPU model: sessions of this kind of VM have landed on different ones.
printf 'machine: %s, %s CPUs\n' "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" "$(nproc)"
echo "$wrk_out" | sed -n '/Latency Distribution/,/99%/p'
[ "$ceiling" = 0 ] || printf 'no-op actix ceiling:       %10.0f req/s (mean of %.0f before and %.0f after)\n' "$ceiling" "$ceiling_before" "$ceiling_after"
printf 'footfall answered:         %10.0f req/s (non-2xx: %s)\n' "$answered" "${non2xx:-0}"
printf 'landed in ClickHouse:      %10d events in %.1f s = %.0f events/s\n' "$landed" "$elapsed" "$landed_rate"
[ "$ceiling" = 0 ] || printf 'ratio landed / ceiling:    %10.3f\n' "$(echo "$landed_rate / $ceiling" | bc -l)"
printf 'landed during the load:    %10.0f events/s (slope of the count in ClickHouse over %d samples from %d s to the end)\n' "$steady_rate" "$steady_samples" "$warm"
[ "$ceiling" = 0 ] || printf 'ratio during the load:     %10.3f\n' "$(echo "$steady_rate / $ceiling" | bc -l)"
printf 'machine during the load:   %10.1f %% stolen by the host, %.1f %% idle\n' "$steal_load" "$idle_load"
# footfall's answers wait on other threads and on the disk, so a host that deschedules this VM
# slows its load about twice as much as the no-op server's (see benches/README.md, 2026-12-03).
awk -v s="$steal_load" 'BEGIN { exit !(s >= 10) }' \
  && echo "note: the host took 10 % or more of the machine during the load; this run measures the host as much as footfall"
if [ "$ceiling" != 0 ]; then
  # The same ratio per CPU-second the host left to this VM in each phase: each rate divided by
  # the share of the machine that was not stolen while it was measured. The ratio above is the
  # one the target is judged on; this one says how much of its movement was the host.
  printf 'stolen during the ceilings: %9.1f %% before, %.1f %% after; ratio per unstolen CPU-second: %.3f\n' \
    "$steal_before" "$steal_after" "$(echo "($landed_rate / (100 - $steal_load)) / ((($ceiling_before / (100 - $steal_before)) + ($ceiling_after / (100 - $steal_after))) / 2)" | bc -l)"
fi
# wrk counts the responses it read; requests in flight when it stops may be accepted without being
# counted, so landed may exceed completed by at most the number of connections.
if [ "$landed" -ge "$completed" ] && [ $((landed - completed)) -le "$CONNS" ]; then
  echo "every answered event landed: $completed answered by wrk's count, $landed in ClickHouse"
else
  echo "MISMATCH: $completed answered by wrk's count, $landed in ClickHouse"; exit 1
fi
read -r with_country with_provider visitors sessions <<< "$enriched"
echo "enriched: $with_country % of events with a country, $with_provider % with a provider; $visitors visitor ids for $sessions sessions"
awk -v c="$with_country" -v p="$with_provider" 'BEGIN { exit !(c >= 99 && p >= 99) }' \
  || { echo "ENRICHMENT MISSING: the run did not pay for geo and provider lookups"; exit 1; }
printf 'footfall RSS at end of load: %d MiB, CPU %s%% (average over its life)\n' "$((rss_kb / 1024))" "$cpu"
hz=$(getconf CLK_TCK)
cpu_secs=$(echo "($cpu_after - $cpu_before) / $hz" | bc -l)
printf 'footfall CPU for the load: %.1f core-seconds for %d events = %.3f cores per 1000 events/s\n' \
  "$cpu_secs" "$landed" "$(echo "$cpu_secs / $landed * 1000" | bc -l)"
if [ -n "$CH_PID" ]; then
  ch_secs=$(echo "($ch_cpu_after - $ch_cpu_before) / $hz" | bc -l)
  printf 'ClickHouse CPU for the load: %.1f core-seconds = %.3f cores per 1000 events/s\n' \
    "$ch_secs" "$(echo "$ch_secs / $landed * 1000" | bc -l)"
fi
[ -z "$spool_stats" ] || echo "spool: $spool_stats"
echo "$stored" | awk -v n="$after" 'NF == 2 { total += $2; line = line sprintf("%s %.0f, ", $1, $2 / n) }
  END { if (n > 0 && line != "") printf "stored in ClickHouse per event (bytes on disk, all %d events): %stotal %.0f\n", n, line, total / n }'
echo "footfall RSS over time (s: MiB):" $(awk '{printf "%s:%d ", $1, $2/1024}' "$work/rss")
