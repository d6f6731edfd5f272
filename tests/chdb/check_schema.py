"""The schema and the collector's queries on current ClickHouse (26.x), in-process through chdb-core.

Usage: python3 tests/chdb/check_schema.py path/to/footfall
The SQL comes from `footfall schema --server-version <chdb's version>`, so this checks exactly what
`footfall migrate` would apply to a modern server.
"""

import json
import subprocess
import sys
import uuid

import chdb
from chdb import session

failures = []
passed = 0


def check(name, got, want):
    global passed
    if got == want:
        passed += 1
        print(f"ok   {name}")
    else:
        failures.append(name)
        print(f"FAIL {name}: got {got!r}, want {want!r}")


def main():
    binary = sys.argv[1]
    version = chdb.query("SELECT version()", "CSV").data().strip().strip('"')
    major_minor = ".".join(version.split(".")[:2])
    print(f"chdb ClickHouse {version}")
    sql = subprocess.run([binary, "schema", "--server-version", major_minor], check=True, capture_output=True, text=True).stdout
    statements = []
    for chunk in sql.split(";\n"):
        body = "\n".join(l for l in chunk.splitlines() if not l.strip().startswith("--")).strip().rstrip(";")
        if body:
            statements.append(body)

    s = session.Session()
    s.query("CREATE DATABASE IF NOT EXISTS footfall")
    s.query("USE footfall")
    for stmt in statements:
        s.query(stmt)
        s.query(stmt)  # idempotent: every statement may run twice
    check("events table exists", s.query("EXISTS TABLE footfall.events", "CSV").data().strip(), "1")
    types = dict(
        line.split(",", 1)
        for line in s.query("SELECT name, type FROM system.columns WHERE database='footfall' AND table='events'", "CSV").data().replace('"', "").splitlines()
    )
    check("site is LowCardinality on 26.x", types["site"], "LowCardinality(String)")
    check("visitor_id is fixed width", types["visitor_id"], "FixedString(16)")
    check("no IP column", [c for c in types if "ip" in c.split("_")], [])

    # Rows as the collector writes them, one event replayed (same event_id) to prove it collapses.
    base = {
        "site": "shop", "kind": "pageview", "received_at": "2026-11-25 10:00:00", "session_id": "s1",
        "url": "https://shop.example/", "host": "shop.example", "path": "/", "languages": ["kk-KZ", "ru"],
        "visitor_id": "a" * 16, "fingerprint_id": "b" * 16, "country": "KZ", "browser": "Chrome",
        "server_flags": ["headless_ua"], "automated": 1, "screen_w": 1920, "pixel_ratio": 1.25,
    }
    rows = []
    replayed = str(uuid.uuid4())
    for i, (kind, path) in enumerate([("pageview", "/"), ("pageview", "/a"), ("engagement", "/a"), ("outbound", "/a")]):
        r = dict(base, event_id=replayed if i == 0 else str(uuid.uuid4()), kind=kind, path=path, seq=i + 1)
        rows.append(r)
    s.query("INSERT INTO footfall.events FORMAT JSONEachRow " + "\n".join(json.dumps(r) for r in rows))
    # The replay arrives in an INSERT of its own, as a retried batch does.
    s.query("INSERT INTO footfall.events FORMAT JSONEachRow " + json.dumps(rows[0]))
    s.query("INSERT INTO footfall.schema_migrations (version, name, applied_at) VALUES (1, 'events', now())")

    q = lambda sql: s.query(sql, "CSV").data().strip()
    check("raw rows include the replay", q("SELECT count() FROM footfall.events"), "5")
    check("FINAL collapses the replayed event", q("SELECT count() FROM footfall.events FINAL"), "4")
    check("distinct events", q("SELECT uniqExact(event_id) FROM footfall.events"), "4")
    check("pageviews per path", q("SELECT path, count() FROM footfall.events FINAL WHERE kind='pageview' GROUP BY path ORDER BY path"), '"/",1\n"/a",1')
    check("visitors", q("SELECT uniqExact(visitor_id) FROM footfall.events WHERE site = 'shop' AND toDate(received_at) BETWEEN '2026-11-01' AND '2026-11-30'"), "1")
    check("fixed-width ids read as hex", q("SELECT DISTINCT lower(hex(fingerprint_id)) FROM footfall.events"), '"' + "62" * 16 + '"')
    check("array columns", q("SELECT DISTINCT arrayStringConcat(languages, ',') FROM footfall.events"), '"kk-KZ,ru"')
    # The collector's own queries (migrate and /readyz).
    check("readiness query", q("SELECT toUInt32(max(version)) FROM footfall.schema_migrations"), "1")
    check("migrate: database lookup", q("SELECT count() > 0 FROM system.databases WHERE name = 'footfall'"), "1")
    check("migrate: applied versions", q("SELECT DISTINCT version FROM footfall.schema_migrations"), "1")

    print(f"chdb: {passed} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
