#!/usr/bin/env bash
# footfall's least-privilege ClickHouse users, tested on real servers:
#   1. deploy/clickhouse/users-18.xml on ClickHouse 18.x (Debian's clickhouse-server, started here
#      as the current user in a temp dir on free loopback ports), over the HTTP interface;
#   2. deploy/clickhouse/grants.sql on ClickHouse 26.x through chdb-core (check_grants.py).
# Prints `ok   <name>`, `FAIL <name>: <why>` and `skip <name>: <reason>` (a limit of the server or
# of the test, documented in deploy/clickhouse/README.md); exits non-zero on any FAIL.
# Run from anywhere: bash tests/clickhouse_users/check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

passed=0
failed=0
skipped=0
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
skip() { skipped=$((skipped + 1)); echo "skip $1"; }

# ------------------------------------------------------------------ the 18.x server
server=()
if command -v clickhouse-server >/dev/null 2>&1; then server=("$(command -v clickhouse-server)")
elif [ -x /usr/sbin/clickhouse-server ]; then server=(/usr/sbin/clickhouse-server)
elif command -v clickhouse >/dev/null 2>&1; then server=("$(command -v clickhouse)" server)
fi
if [ ${#server[@]} -eq 0 ]; then
  echo "FAIL no ClickHouse server found (clickhouse-server or clickhouse): install it with" \
       "'apt-get install -y clickhouse-server' (scripts/test.sh does)"
  exit 1
fi
for tool in curl python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "FAIL $tool is needed"; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/footfall-users.XXXXXX")
server_pid=""
stop_server() {
  [ -n "$server_pid" ] || return 0
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}
cleanup() {
  stop_server
  if [ "$failed" -gt 0 ] && [ -f "$work/log/server.err.log" ]; then
    echo "--- last lines of the 18.x server's error log"
    tail -n 20 "$work/log/server.err.log" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work"/{data,tmp,user_files,format_schemas,log,users.d}

# Known test passwords (random per run) put into a copy of the deployed file, nothing else changed.
declare -A PW
for u in ingest analyst admin fixtures; do PW[$u]=$(python3 -c 'import secrets; print(secrets.token_hex(12))'); done
python3 - "$work/users.xml" "${PW[ingest]}" "${PW[analyst]}" "${PW[admin]}" <<'EOF'
import hashlib, sys
out, pws = sys.argv[1], dict(zip(["ingest", "analyst", "admin"], sys.argv[2:5]))
src = open("deploy/clickhouse/users-18.xml").read()
for user, pw in pws.items():
    placeholder = f"SET_ME_sha256_of_the_footfall_{user}_password"
    if src.count(placeholder) != 1:
        sys.exit(f"FAIL users-18.xml: expected one {placeholder}")
    src = src.replace(placeholder, hashlib.sha256(pw.encode()).hexdigest())
open(out, "w").write(src)
EOF
# A fixtures-only superuser, merged from users.d/ (never part of the deployed file): it makes a
# database `other` with data that footfall's users must not reach.
cat >"$work/users.d/fixtures.xml" <<EOF
<?xml version="1.0"?>
<yandex><users><check_fixtures>
  <password>${PW[fixtures]}</password>
  <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
  <profile>default</profile><quota>default</quota>
</check_fixtures></users></yandex>
EOF

free_ports() {
  python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])'
}

start_server() {
  read -r http_port tcp_port < <(free_ports)
  cat >"$work/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>$work/log/server.log</log>
    <errorlog>$work/log/server.err.log</errorlog>
    <size>10M</size>
    <count>3</count>
  </logger>
  <http_port>$http_port</http_port>
  <tcp_port>$tcp_port</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>$work/data/</path>
  <tmp_path>$work/tmp/</tmp_path>
  <user_files_path>$work/user_files/</user_files_path>
  <format_schema_path>$work/format_schemas/</format_schema_path>
  <users_config>$work/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>200</max_concurrent_queries>
  <mlock_executable>false</mlock_executable>
</yandex>
EOF
  (cd "$work" && exec "${server[@]}" --config-file="$work/config.xml") >"$work/log/stdout.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 600); do
    if ! kill -0 "$server_pid" 2>/dev/null; then server_pid=""; return 1; fi
    curl -sf "http://127.0.0.1:$http_port/ping" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

started=""
for attempt in 1 2 3; do
  if start_server; then started=1; break; fi
  stop_server
  # A port taken between choosing and binding: choose again. Anything else is a real failure.
  grep -qs "Address already in use" "$work/log/server.err.log" "$work/log/stdout.log" || break
  : >"$work/log/server.err.log"
done
if [ -z "$started" ]; then
  fail "18.x: the server with users-18.xml did not start (${server[*]})"
  tail -n 20 "$work/log/stdout.log" "$work/log/server.err.log" 2>/dev/null || true
  exit 1
fi
url="http://127.0.0.1:$http_port/"

# q USER PASSWORD SQL: runs SQL over HTTP (POST, basic auth; no user = no credentials);
# sets $status and $body.
q() {
  local user=$1 pw=$2 sql=$3 auth=()
  [ -n "$user" ] && auth=(-u "$user:$pw")
  status=$(printf '%s' "$sql" | curl -sS -o "$work/body" -w '%{http_code}' "${auth[@]}" --data-binary @- "$url") || status=000
  body=$(cat "$work/body" 2>/dev/null || true)
}
expect_ok() {  # NAME USER PASSWORD SQL
  q "$2" "$3" "$4"
  if [ "$status" = 200 ]; then ok "$1"; else fail "$1: HTTP $status: $(head -c 300 <<<"$body")"; fi
}
expect_refused() {  # NAME USER PASSWORD SQL REGEX: must fail, with an access error matching REGEX
  q "$2" "$3" "$4"
  if [ "$status" = 200 ]; then fail "$1: was allowed"
  elif grep -Eq "$5" <<<"$body"; then ok "$1 (refused)"
  else fail "$1: failed, but not with /$5/: $(head -c 300 <<<"$body")"; fi
}

q check_fixtures "${PW[fixtures]}" "SELECT version()"
echo "== users-18.xml on ClickHouse $body (${server[*]})"

ADMIN=(footfall_admin "${PW[admin]}")
INGEST=(footfall_ingest "${PW[ingest]}")
ANALYST=(footfall_analyst "${PW[analyst]}")
READONLY='in readonly mode'
NODDL='DDL queries are prohibited'
NODB='Access denied to database'

expect_ok "18.x fixtures: database other with data" check_fixtures "${PW[fixtures]}" \
  "CREATE DATABASE IF NOT EXISTS other"
expect_ok "18.x fixtures: other.canary" check_fixtures "${PW[fixtures]}" \
  "CREATE TABLE IF NOT EXISTS other.canary (a UInt8) ENGINE = Memory"
expect_ok "18.x fixtures: a row in other.canary" check_fixtures "${PW[fixtures]}" "INSERT INTO other.canary VALUES (1)"

# --- footfall_admin: migrations, subject requests, retention
expect_ok "18.x admin: looks up the database (system.databases)" "${ADMIN[@]}" \
  "SELECT count() > 0 FROM system.databases WHERE name = 'footfall'"
expect_ok "18.x admin: CREATE DATABASE footfall" "${ADMIN[@]}" "CREATE DATABASE IF NOT EXISTS footfall"
n=0
while IFS= read -r -d '' stmt; do
  n=$((n + 1))
  name=$(grep -oE 'footfall\.[a-z_]+' <<<"$stmt" | head -n 1)
  expect_ok "18.x admin: migration statement $n ($name)" "${ADMIN[@]}" "$stmt"
  expect_ok "18.x admin: migration statement $n again (idempotent)" "${ADMIN[@]}" "$stmt"
done < <(python3 tests/clickhouse_users/check_grants.py --schema String)
[ "$n" -ge 4 ] || fail "18.x admin: expected schema_migrations and 3 schema tables, got $n statements"
expect_ok "18.x admin: INSERT INTO schema_migrations" "${ADMIN[@]}" \
  "INSERT INTO footfall.schema_migrations (version, name, applied_at) VALUES (1, 'events', now())"
expect_ok "18.x admin: INSERT INTO events (two months)" "${ADMIN[@]}" \
  "INSERT INTO footfall.events (event_id, site, kind, received_at, user_id) VALUES ('00000000-0000-4000-8000-000000000001', 'shop', 'pageview', '2019-01-15 10:00:00', 'subject-1'), ('00000000-0000-4000-8000-000000000002', 'shop', 'pageview', '2019-02-15 10:00:00', 'subject-2')"
expect_ok "18.x admin: ALTER TABLE events DELETE (subject deletion)" "${ADMIN[@]}" \
  "ALTER TABLE footfall.events DELETE WHERE user_id = 'subject-1'"
expect_ok "18.x admin: ALTER TABLE events UPDATE (subject correction)" "${ADMIN[@]}" \
  "ALTER TABLE footfall.events UPDATE user_id = '' WHERE user_id = 'subject-2'"
expect_ok "18.x admin: ALTER TABLE events DROP PARTITION (retention)" "${ADMIN[@]}" \
  "ALTER TABLE footfall.events DROP PARTITION 201901"
expect_ok "18.x admin: INSERT INTO audit_log (two months)" "${ADMIN[@]}" \
  "INSERT INTO footfall.audit_log (at, audit_id, action) VALUES ('2019-01-15 10:00:00', '00000000-0000-4000-8000-00000000000a', 'erase'), ('2019-02-15 10:00:00', '00000000-0000-4000-8000-00000000000b', 'erase')"
expect_ok "18.x admin: ALTER TABLE audit_log DROP PARTITION (retention)" "${ADMIN[@]}" \
  "ALTER TABLE footfall.audit_log DROP PARTITION 201901"
expect_ok "18.x admin: ALTER TABLE audit_log DELETE WHERE at < cutoff (retention, boundary month)" "${ADMIN[@]}" \
  "ALTER TABLE footfall.audit_log DELETE WHERE at < toDateTime('2019-02-01 00:00:00')"
expect_ok "18.x admin: reads system.tables" "${ADMIN[@]}" \
  "SELECT count() FROM system.tables WHERE database = 'footfall' AND name = 'events'"
expect_ok "18.x admin: reads system.columns" "${ADMIN[@]}" \
  "SELECT name, type FROM system.columns WHERE database = 'footfall' AND table = 'events'"
expect_ok "18.x admin: INSERT INTO subject_blocks" "${ADMIN[@]}" \
  "INSERT INTO footfall.subject_blocks (site, id_kind, id_hash, blocked, changed_at, changed_ms, actor) VALUES ('shop', 'user', 'h1', 1, now(), 1, 'test')"
expect_ok "18.x admin: reads system.mutations" "${ADMIN[@]}" \
  "SELECT command, is_done FROM system.mutations WHERE database = 'footfall'"
expect_ok "18.x admin: reads system.parts" "${ADMIN[@]}" \
  "SELECT partition, rows FROM system.parts WHERE database = 'footfall' AND active"
expect_refused "18.x admin: reads another database" "${ADMIN[@]}" "SELECT count() FROM other.canary" "$NODB"
expect_refused "18.x admin: CREATE TABLE in another database" "${ADMIN[@]}" \
  "CREATE TABLE other.x (a UInt8) ENGINE = Memory" "$NODB"
skip "18.x admin: audit_log append-only: 18.x cannot refuse ALTER UPDATE/DELETE, TRUNCATE or DROP on one table (no per-table rights); footfall audit verify detects edits"

# --- footfall_ingest: the collector's delivery path
expect_ok "18.x ingest: SELECT version()" "${INGEST[@]}" "SELECT version()"
expect_ok "18.x ingest: INSERT INTO events" "${INGEST[@]}" \
  "INSERT INTO footfall.events (event_id, site, kind, received_at) VALUES ('00000000-0000-4000-8000-000000000003', 'shop', 'pageview', now())"
expect_ok "18.x ingest: reads schema_migrations (readiness)" "${INGEST[@]}" \
  "SELECT toUInt32(max(version)) FROM footfall.schema_migrations"
expect_ok "18.x ingest: reads subject_blocks" "${INGEST[@]}" \
  "SELECT site, id_kind, id_hash, argMax(blocked, changed_ms) FROM footfall.subject_blocks GROUP BY site, id_kind, id_hash"
expect_refused "18.x ingest: CREATE TABLE" "${INGEST[@]}" "CREATE TABLE footfall.x (a UInt8) ENGINE = Memory" "$NODDL"
expect_refused "18.x ingest: CREATE TABLE IF NOT EXISTS schema_migrations (migrations need the admin user)" "${INGEST[@]}" \
  "CREATE TABLE IF NOT EXISTS footfall.schema_migrations (version UInt32, name String, applied_at DateTime) ENGINE = MergeTree ORDER BY version" "$NODDL"
expect_refused "18.x ingest: CREATE DATABASE" "${INGEST[@]}" "CREATE DATABASE footfall_x" "$NODDL|$NODB"
expect_refused "18.x ingest: DROP TABLE events" "${INGEST[@]}" "DROP TABLE footfall.events" "$NODDL"
expect_refused "18.x ingest: TRUNCATE events" "${INGEST[@]}" "TRUNCATE TABLE footfall.events" "$NODDL"
expect_refused "18.x ingest: RENAME TABLE events" "${INGEST[@]}" "RENAME TABLE footfall.events TO footfall.events2" "$NODDL"
expect_refused "18.x ingest: ALTER TABLE events DELETE" "${INGEST[@]}" "ALTER TABLE footfall.events DELETE WHERE 1" "$NODDL"
expect_refused "18.x ingest: ALTER TABLE events UPDATE" "${INGEST[@]}" "ALTER TABLE footfall.events UPDATE user_id = '' WHERE 1" "$NODDL"
expect_refused "18.x ingest: ALTER TABLE events DROP PARTITION" "${INGEST[@]}" "ALTER TABLE footfall.events DROP PARTITION 201902" "$NODDL"
expect_refused "18.x ingest: ALTER TABLE audit_log DELETE" "${INGEST[@]}" "ALTER TABLE footfall.audit_log DELETE WHERE 1" "$NODDL"
expect_refused "18.x ingest: ALTER TABLE events ADD COLUMN" "${INGEST[@]}" "ALTER TABLE footfall.events ADD COLUMN x UInt8" "$NODDL"
expect_refused "18.x ingest: OPTIMIZE events" "${INGEST[@]}" "OPTIMIZE TABLE footfall.events" "$NODDL"
expect_refused "18.x ingest: cannot switch allow_ddl back on" "${INGEST[@]}" "SET allow_ddl = 1" "Cannot modify 'allow_ddl'"
expect_refused "18.x ingest: reads another database" "${INGEST[@]}" "SELECT count() FROM other.canary" "$NODB"
expect_refused "18.x ingest: writes another database" "${INGEST[@]}" "INSERT INTO other.canary VALUES (2)" "$NODB"
skip "18.x ingest: can INSERT into audit_log, subject_blocks, schema_migrations and SELECT events, audit_log: no per-table rights before SQL access control (20.x)"
skip "18.x ingest: can use table functions (url, file, remote) and KILL QUERY of other users: it cannot be readonly, as INSERT needs readonly=0"

# --- footfall_analyst: reads only
expect_ok "18.x analyst: SELECT count() FROM events" "${ANALYST[@]}" "SELECT count() FROM footfall.events"
expect_refused "18.x analyst: INSERT INTO events" "${ANALYST[@]}" \
  "INSERT INTO footfall.events (event_id, site, kind, received_at) VALUES ('00000000-0000-4000-8000-000000000004', 'shop', 'pageview', now())" "$READONLY"
expect_refused "18.x analyst: INSERT INTO audit_log" "${ANALYST[@]}" "INSERT INTO footfall.audit_log (action) VALUES ('forged')" "$READONLY"
expect_refused "18.x analyst: ALTER TABLE events DELETE" "${ANALYST[@]}" "ALTER TABLE footfall.events DELETE WHERE 1" "$READONLY"
expect_refused "18.x analyst: ALTER TABLE events UPDATE" "${ANALYST[@]}" "ALTER TABLE footfall.events UPDATE user_id = '' WHERE 1" "$READONLY"
expect_refused "18.x analyst: ALTER TABLE events DROP PARTITION" "${ANALYST[@]}" "ALTER TABLE footfall.events DROP PARTITION 201902" "$READONLY"
expect_refused "18.x analyst: DROP TABLE events" "${ANALYST[@]}" "DROP TABLE footfall.events" "$READONLY"
expect_refused "18.x analyst: TRUNCATE events" "${ANALYST[@]}" "TRUNCATE TABLE footfall.events" "$READONLY"
expect_refused "18.x analyst: CREATE TABLE" "${ANALYST[@]}" "CREATE TABLE footfall.x (a UInt8) ENGINE = Memory" "$READONLY"
expect_refused "18.x analyst: OPTIMIZE events" "${ANALYST[@]}" "OPTIMIZE TABLE footfall.events" "$READONLY"
expect_refused "18.x analyst: table function url()" "${ANALYST[@]}" "SELECT * FROM url('$url', 'CSV', 'a String')" "Table functions are forbidden in readonly mode"
expect_refused "18.x analyst: cannot lower readonly" "${ANALYST[@]}" "SET readonly = 0" "$READONLY"
expect_refused "18.x analyst: reads another database" "${ANALYST[@]}" "SELECT count() FROM other.canary" "$NODB"
skip "18.x analyst: can SELECT audit_log, subject_blocks, salts and schema_migrations: no per-table rights before SQL access control (20.x)"
skip "18.x all users: can read the system database (system.processes, system.mutations, system.query_log): 18.x always allows it"

# --- nobody else
expect_refused "18.x no credentials (there is no default user)" "" "" "SELECT 1" "Unknown user default"
expect_refused "18.x user default with an empty password" default "" "SELECT 1" "Unknown user default"
expect_refused "18.x admin with a wrong password" footfall_admin wrong "SELECT 1" "Wrong password"
expect_refused "18.x admin with ingest's password" footfall_admin "${PW[ingest]}" "SELECT 1" "Wrong password"
expect_refused "18.x ingest with a wrong password" footfall_ingest "${PW[admin]}" "SELECT 1" "Wrong password"
expect_refused "18.x analyst with a wrong password" footfall_analyst wrong "SELECT 1" "Wrong password"
skip "18.x networks (loopback only): not testable from loopback itself"

stop_server

# ------------------------------------------------------------------ 26.x (chdb-core)
echo "== grants.sql on current ClickHouse (chdb-core)"
if ! python3 -c 'import chdb' >/dev/null 2>&1; then
  echo "== installing chdb-core"
  python3 -m pip install -q chdb-core >/dev/null 2>&1 \
    || python3 -m pip install -q --break-system-packages chdb-core >/dev/null 2>&1 || true
fi
if ! python3 -c 'import chdb' >/dev/null 2>&1; then
  fail "26.x: chdb-core is not installed and could not be installed (python3 -m pip install chdb-core)"
else
  set +e
  out=$(python3 tests/clickhouse_users/check_grants.py 2>&1)
  rc=$?
  set -e
  printf '%s\n' "$out"
  passed=$((passed + $(grep -c '^ok ' <<<"$out" || true)))
  failed=$((failed + $(grep -c '^FAIL' <<<"$out" || true)))
  skipped=$((skipped + $(grep -c '^skip' <<<"$out" || true)))
  if [ "$rc" -ne 0 ] && ! grep -q '^FAIL' <<<"$out"; then fail "26.x: check_grants.py exited $rc"; fi
fi

echo "clickhouse_users: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
