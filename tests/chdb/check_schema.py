"""The schema and the collector's queries on current ClickHouse (26.x), in-process through chdb-core.

Usage: python3 tests/chdb/check_schema.py path/to/footfall
The SQL comes from `footfall schema --server-version <chdb's version>`, so this checks exactly what
`footfall migrate` would apply to a modern server.
"""

import calendar
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
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

    check_privacy(s, q)

    print(f"chdb: {passed} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


# --- Privacy (migration 002): the SQL of src/subjects.rs, src/retention.rs and src/audit.rs. ---
# footfall binds `?` client-side (the clickhouse crate): strings become quoted literals, integers
# plain numbers. bind() does the same, so each statement below is the text footfall sends.


def sql_string(v):
    out = "".join("\\" + c if c in "\\'`\t\n" else c for c in v)
    return "'" + out + "'"


def bind(sql, *values):
    parts = sql.split("?")
    assert len(parts) == len(values) + 1, (sql, values)
    out = parts[0]
    for v, rest in zip(values, parts[1:]):
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise TypeError(v)
        out += sql_string(v) if isinstance(v, str) else str(v)
        out += rest
    return out


def ts(text):
    """Seconds since the epoch of a UTC 'YYYY-MM-DD HH:MM:SS'."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S"))


def yyyymm(unix):
    t = time.gmtime(unix)
    return t.tm_year * 100 + t.tm_mon


# src/subjects.rs
TABLE_EXISTS = "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = ?"
COLUMNS = "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = ?"
PENDING_MUTATIONS = ("SELECT count() FROM system.mutations "
                     "WHERE database = currentDatabase() AND table = ? AND is_done = 0")
SET_BLOCKED = ("INSERT INTO subject_blocks (site, id_kind, id_hash, blocked, changed_at, changed_ms, actor) "
               "VALUES (?, ?, ?, ?, ?, ?, ?)")
LOAD_BLOCKS = ("SELECT site, id_kind, id_hash FROM subject_blocks "
               "GROUP BY site, id_kind, id_hash HAVING argMax(blocked, changed_ms) = 1")
# src/retention.rs
PARTITIONS = ("SELECT partition, sum(rows) FROM system.parts "
              "WHERE database = currentDatabase() AND table = ? AND active GROUP BY partition")
# src/audit.rs (AuditRow's fields, as the crate's ?fields and insert() spell them)
AUDIT_FIELDS = ["at", "audit_id", "instance", "actor", "action", "site", "id_kind", "id_hash", "detail", "result", "mac"]
AUDIT_COLUMNS = ",".join(f"`{f}`" for f in AUDIT_FIELDS)
AUDIT_INSERT = f"INSERT INTO audit_log({AUDIT_COLUMNS}) FORMAT RowBinary"
AUDIT_LIST = f"SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY at DESC, audit_id DESC LIMIT ?"

BINARY_KINDS = ("visitor_id", "fingerprint_id")


def condition(kind):
    """Subject::condition."""
    return f"site = ? AND {kind} = unhex(?)" if kind in BINARY_KINDS else f"site = ? AND {kind} = ?"


def check_privacy(s, q):
    def fetch(sql):
        """(types, rows) of a result: the types are what footfall's RowBinary structs must match."""
        lines = s.query(sql, "JSONCompactEachRowWithNamesAndTypes").data().splitlines()
        return json.loads(lines[1]), [json.loads(l) for l in lines[2:]]

    def one(sql):
        types, rows = fetch(sql)
        assert types == ["UInt64"], (sql, types)  # fetch_one::<u64>
        return int(rows[0][0])

    def wait_for_mutations(table, timeout=30.0):
        """subjects::wait_for_mutations: poll every 100 ms until nothing is pending."""
        deadline = time.monotonic() + timeout
        while True:
            pending = one(bind(PENDING_MUTATIONS, table))
            if pending == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def count(kind, site, sid):
        return one(bind(f"SELECT count() FROM events WHERE {condition(kind)}", site, sid))

    def select_list(table):
        types, cols = fetch(bind(COLUMNS, table))
        assert types == ["String", "String"], types
        return ", ".join(f"hex({n}) AS {n}" if t.startswith("FixedString") else n for n, t in cols)

    def fetch_text(kind, site, sid, fmt):
        sql = bind(f"SELECT {select_list('events')} FROM (SELECT * FROM events WHERE {condition(kind)}) ORDER BY received_at", site, sid)
        return s.query(sql, fmt).data()

    check("privacy: session database is footfall", q("SELECT currentDatabase()"), '"footfall"')
    for table in ("events", "audit_log", "subject_blocks"):
        check(f"privacy: table_exists({table})", one(bind(TABLE_EXISTS, table)), 1)
    check("privacy: table_exists(missing)", one(bind(TABLE_EXISTS, "no_such_table")), 0)

    # Seed: one site, three users, three visitors, months from 2024 to now; ids as footfall stores them
    # (user ids keyed-hash hex, visitor/fingerprint ids FixedString(16) written from hex).
    u1, u1_new, u2, u3 = ("11" * 16, "1e" * 16, "22" * 16, "33" * 16)
    v1, v2, v3 = ("a1" * 16, "b2" * 16, "c3" * 16)
    f1 = "f0" * 16
    odd_session = "s'\\x`?"  # quote, backslash, backtick and a '?' through bind()
    seed = [  # (received_at, user_id, session_id, visitor_id)
        ("2026-10-05 10:00:00", u1, "sA", v1),
        ("2026-11-20 10:00:00", u1, "sA", v1),
        ("2026-11-21 10:00:00", u2, odd_session, v2),
        ("2024-06-15 10:00:00", u2, "sC", v2),
        ("2025-10-10 10:00:00", u3, "sD", v3),
        ("2025-10-30 10:00:00", u3, "sD", v3),
        ("2025-03-15 10:00:00", u3, "sE", v3),
        ("2024-06-10 10:00:00", u3, "sF", v3),
    ]
    values = ",\n".join(
        bind("(generateUUIDv4(), 'priv', 'pageview', ?, ?, ?, unhex(?), unhex(?))", at, user, session, visitor, f1)
        for at, user, session, visitor in seed
    )
    s.query("INSERT INTO events (event_id, site, kind, received_at, user_id, session_id, visitor_id, fingerprint_id) VALUES " + values)
    check("privacy: seeded rows", one("SELECT count() FROM events WHERE site = 'priv'"), len(seed))

    # Export: select list with binary ids as hex, JSONEachRow and CSVWithNames.
    columns = [n for n, _ in fetch(bind(COLUMNS, "events"))[1]]
    lst = select_list("events")
    check("privacy: select list hexes exactly the fixed-width ids",
          [c for c in lst.split(", ") if c.startswith("hex(")],
          ["hex(visitor_id) AS visitor_id", "hex(fingerprint_id) AS fingerprint_id"])
    rows = [json.loads(l) for l in fetch_text("user_id", "priv", u1, "JSONEachRow").splitlines() if l]
    check("privacy: export by user_id (JSONEachRow) rows", len(rows), 2)
    check("privacy: export rows ordered by received_at", [r["received_at"] for r in rows], ["2026-10-05 10:00:00", "2026-11-20 10:00:00"])
    check("privacy: export keys are the table's columns", list(rows[0]) if rows else None, columns)
    check("privacy: export visitor_id is 32 hex", [r["visitor_id"].lower() for r in rows], [v1, v1])
    check("privacy: export fingerprint_id is 32 hex", [r["fingerprint_id"].lower() for r in rows], [f1, f1])
    csv_lines = fetch_text("user_id", "priv", u1, "CSVWithNames").splitlines()
    check("privacy: export by user_id (CSVWithNames) header + rows", len(csv_lines), 3)
    check("privacy: CSV header is the table's columns", csv_lines[0].replace('"', "").split(",") if csv_lines else None, columns)
    v2_given = v2.upper()  # as shown in exports; Subject::new lowercases it
    rows = [json.loads(l) for l in fetch_text("visitor_id", "priv", v2_given.lower(), "JSONEachRow").splitlines() if l]
    check("privacy: export by visitor_id via unhex", [(r["received_at"], r["visitor_id"].lower()) for r in rows],
          [("2024-06-15 10:00:00", v2), ("2026-11-21 10:00:00", v2)])
    check("privacy: export of a visitor_id read back from an export", count("visitor_id", "priv", rows[0]["visitor_id"].lower()) if rows else None, 2)
    csv_lines = fetch_text("visitor_id", "priv", v2, "CSVWithNames").splitlines()
    check("privacy: export by visitor_id (CSVWithNames) header + rows", len(csv_lines), 3)
    rows = [l for l in fetch_text("fingerprint_id", "priv", f1, "JSONEachRow").splitlines() if l]
    check("privacy: export by fingerprint_id via unhex", len(rows), len(seed))
    check("privacy: export by session_id with quote/backslash", count("session_id", "priv", odd_session), 1)
    check("privacy: subject of another site matches nothing", count("user_id", "shop", u1), 0)

    # Correct a user id: ALTER UPDATE, then wait as footfall does.
    before = count("user_id", "priv", u1)
    s.query(bind(f"ALTER TABLE events UPDATE user_id = ? WHERE {condition('user_id')}", u1_new, "priv", u1))
    check("privacy: correct: mutation finishes", wait_for_mutations("events"), True)
    check("privacy: correct: old id before/after", (before, count("user_id", "priv", u1)), (2, 0))
    check("privacy: correct: rows moved to the new id", count("user_id", "priv", u1_new), 2)
    check("privacy: correct: other users untouched", (count("user_id", "priv", u2), count("user_id", "priv", u3)), (2, 4))

    # Delete a visitor: ALTER DELETE with unhex, wait, count again.
    before = count("visitor_id", "priv", v2)
    s.query(bind(f"ALTER TABLE events DELETE WHERE {condition('visitor_id')}", "priv", v2))
    check("privacy: delete: mutation finishes", wait_for_mutations("events"), True)
    check("privacy: delete: visitor before/after", (before, count("visitor_id", "priv", v2)), (2, 0))
    check("privacy: delete: other rows kept", one("SELECT count() FROM events WHERE site = 'priv'"), len(seed) - 2)
    check("privacy: delete: other site kept", one("SELECT count() FROM events FINAL WHERE site = 'shop'"), 4)
    check("privacy: no mutation left pending", one(bind(PENDING_MUTATIONS, "events")), 0)

    # Block list: the latest change per identifier wins.
    t0 = ts("2026-11-25 09:00:00") * 1000
    for i, (kind, sid, blocked) in enumerate([
        ("visitor_id", v1, 1),
        ("user_id", u3, 1),
        ("visitor_id", v1, 0),  # unblocked later
        ("session_id", odd_session, 1),
    ]):
        ms = t0 + i * 1500
        s.query(bind(SET_BLOCKED, "priv", kind, sid, blocked, ms // 1000, ms, "cli:test"))
    types, rows = fetch(LOAD_BLOCKS)
    check("privacy: load_blocks types", types, ["String", "String", "String"])
    check("privacy: load_blocks returns the still-blocked ones",
          sorted(map(tuple, rows)), sorted([("priv", "session_id", odd_session), ("priv", "user_id", u3)]))
    s.query(bind(SET_BLOCKED, "priv", "user_id", u3, 0, (t0 + 9000) // 1000, t0 + 9000, "cli:test"))
    check("privacy: load_blocks after unblock", [tuple(r) for r in fetch(LOAD_BLOCKS)[1]], [("priv", "session_id", odd_session)])

    # Audit log: insert as the crate does (RowBinary, column list from ?fields) and list newest first.
    def rb_string(v):
        b, n, out = v.encode(), len(v.encode()), b""
        while True:
            out += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
            n >>= 7
            if not n:
                return out + b

    def audit_row(at, action, result="ok"):
        return {"at": ts(at), "audit_id": uuid.uuid4(), "instance": "host:1", "actor": "cli:test", "action": action,
                "site": "priv", "id_kind": "user_id", "id_hash": "ab" * 16, "detail": json.dumps({"rows": 2}),
                "result": result, "mac": "cd" * 32}

    def encode(r):
        u = r["audit_id"].int
        return (struct.pack("<I", r["at"]) + struct.pack("<QQ", u >> 64, u & (2**64 - 1))
                + b"".join(rb_string(r[f]) for f in AUDIT_FIELDS[2:]))

    audit = [
        audit_row("2021-05-01 08:00:00", "subject.export"),
        audit_row("2021-11-10 08:00:00", "subject.delete"),
        audit_row("2026-11-25 08:00:00", "subject.correct"),
        audit_row("2026-11-25 09:00:00", "retention.run", "error: x'y\\z"),
    ]
    fd, path = tempfile.mkstemp(suffix=".rowbinary")
    with os.fdopen(fd, "wb") as f:
        f.write(b"".join(encode(r) for r in audit))
    try:
        # The crate sends the rows as the request body; FROM INFILE is the in-process equivalent.
        s.query(AUDIT_INSERT.replace(" FORMAT RowBinary", f" FROM INFILE '{path}' FORMAT RowBinary"))
    finally:
        os.unlink(path)
    check("privacy: audit rows stored", one("SELECT count() FROM audit_log"), len(audit))
    types, _ = fetch(bind(AUDIT_LIST, 2))
    check("privacy: audit list types match AuditRow", types, ["DateTime", "UUID"] + ["String"] * 9)
    raw = s.query(bind(AUDIT_LIST, 2), "RowBinary").bytes()
    check("privacy: audit list newest first (RowBinary round trip)", raw, encode(audit[3]) + encode(audit[2]))

    # Retention (retention::run) at a fixed "now" with the default periods (events 395, audit 1825 days).
    now = ts("2026-11-25 12:00:00")

    def retention(table, column, days):
        cutoff = max(now - days * 86400, 0)
        boundary = yyyymm(cutoff)
        types, parts = fetch(bind(PARTITIONS, table))
        assert types == ["String", "UInt64"], types  # Vec<(String, u64)>
        dropped, removed = [], 0
        for partition, rows in parts:
            try:
                month = int(partition.strip("'"))
            except ValueError:
                continue
            if month < boundary:
                s.query(f"ALTER TABLE {table} DROP PARTITION {month}")
                dropped.append(month)
                removed += int(rows)
        old = one(bind(f"SELECT count() FROM {table} WHERE {column} < toDateTime(?)", cutoff))
        done = True
        if old > 0:
            s.query(bind(f"ALTER TABLE {table} DELETE WHERE {column} < toDateTime(?)", cutoff))
            done = wait_for_mutations(table)
            removed += old
        return sorted(dropped), old, removed, done

    parts = {p: int(n) for p, n in fetch(bind(PARTITIONS, "events"))[1]}
    check("privacy: events partitions are YYYYMM", sorted(parts), ["202406", "202503", "202510", "202610", "202611"])
    check("privacy: partition row sums", (parts.get("202406"), parts.get("202503"), parts.get("202510")), (1, 1, 2))
    check("privacy: retention events (dropped, boundary rows, removed, finished)", retention("events", "received_at", 395),
          ([202406, 202503], 1, 3, True))
    check("privacy: retention events: remaining priv rows",
          [r[0] for r in fetch("SELECT received_at FROM events WHERE site = 'priv' ORDER BY received_at")[1]],
          ["2025-10-30 10:00:00", "2026-10-05 10:00:00", "2026-11-20 10:00:00"])
    check("privacy: retention events: other site kept", one("SELECT count() FROM events FINAL WHERE site = 'shop'"), 4)
    check("privacy: retention audit_log (dropped, boundary rows, removed, finished)", retention("audit_log", "at", 1825),
          ([202105], 1, 2, True))
    check("privacy: retention audit_log: remaining", [r[0] for r in fetch("SELECT action FROM audit_log ORDER BY at")[1]],
          ["subject.correct", "retention.run"])
    check("privacy: retention twice removes nothing more", retention("events", "received_at", 395), ([], 0, 0, True))


if __name__ == "__main__":
    main()
