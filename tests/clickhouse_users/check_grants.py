"""deploy/clickhouse/grants.sql on current ClickHouse (26.x, in-process through chdb-core).

Usage: python3 tests/clickhouse_users/check_grants.py   (from the repository root; check.sh runs it)

What chdb can and cannot do, and so what this checks:
- chdb has no writable access storage (CREATE ROLE/USER fail with
  ACCESS_STORAGE_FOR_INSERTION_NOT_FOUND) and every connection authenticates as `default`
  without a password. So CREATE ROLE/USER, DEFAULT ROLE, passwords and HOST are only parsed here.
- Every statement of grants.sql is parsed by 26.x's own parser (formatQuery), which also rejects
  unknown privilege names.
- Enforcement: each role's GRANT/REVOKE statements, taken from grants.sql itself, become the
  `<grants>` of the `default` user in a users.xml, and one chdb process per role runs what the
  role must be able to do and what it must be refused (ACCESS_DENIED), against one shared data
  directory. That is 26.x's real privilege checking of exactly these grants; only the
  user-to-role indirection is not exercised.
"""

import hashlib
import os
import re
import subprocess
import sys
import tempfile
from xml.sax.saxutils import escape

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GRANTS_SQL = os.path.join(ROOT, "deploy", "clickhouse", "grants.sql")
SCHEMA_DIR = os.path.join(ROOT, "schema")
ROLES = {"ingest": "footfall_ingest_role", "analyst": "footfall_analyst_role", "admin": "footfall_admin_role"}
SCHEMA_MIGRATIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS footfall.schema_migrations "
    "(version UInt32, name String, applied_at DateTime) ENGINE = MergeTree ORDER BY version"
)

# What SHOW GRANTS must say for each role once its grants from grants.sql are applied (as `default`).
EXPECTED_GRANTS = {
    "ingest": [
        # 26.x prints INSERT and the column-level SELECT of one table as one line.
        "GRANT INSERT, SELECT(event_id, received_at, site, visitor_id) ON footfall.events TO default",
        "GRANT INSERT, SELECT(event_id, received_at, site, visitor_id) ON footfall.events_local TO default",
        "GRANT SELECT ON footfall.schema_migrations_local TO default",
        "GRANT SELECT ON footfall.subject_blocks_local TO default",
        "GRANT SELECT ON footfall.schema_migrations TO default",
        "GRANT SELECT ON footfall.subject_blocks TO default",
    ],
    "analyst": [
        "GRANT SELECT ON footfall.daily_stats TO default",
        "GRANT SELECT ON footfall.daily_summary TO default",
        "GRANT SELECT ON footfall.dimension_stats TO default",
        "GRANT SELECT ON footfall.events TO default",
        "GRANT SELECT ON footfall.navigation TO default",
        "GRANT SELECT ON footfall.outbound_links TO default",
        "GRANT SELECT ON footfall.page_stats TO default",
        "GRANT SELECT ON footfall.session_breakdown TO default",
        "GRANT SELECT ON footfall.session_states TO default",
    ] + [f"GRANT SELECT ON footfall.{t}_local TO default" for t in (
        "daily_stats", "daily_summary", "dimension_stats", "events", "navigation", "outbound_links",
        "page_stats", "session_breakdown", "session_states")],
    "admin": [
        "GRANT SELECT, INSERT, ALTER TABLE, CREATE DATABASE, CREATE TABLE, CREATE VIEW, DROP VIEW ON footfall.* TO default",
        "GRANT DROP TABLE ON footfall.sessions TO default",
        "GRANT DROP TABLE ON footfall.sessions_local TO default",
        "GRANT SELECT ON system.mutations TO default",
        "GRANT SELECT ON system.parts TO default",
        "GRANT CLUSTER ON *.* TO default",
    ] + [
        "REVOKE ALTER UPDATE, ALTER MODIFY COLUMN, ALTER DROP COLUMN, ALTER CLEAR COLUMN, "
        f"ALTER MATERIALIZE COLUMN, ALTER TTL, ALTER MATERIALIZE TTL ON footfall.{t} FROM default"
        for t in ("audit_log", "audit_log_local")
    ],
}


def statements(sql):
    """Statements split on `;` at line ends, `--` comment lines dropped (as footfall's migrations)."""
    out, cur = [], []
    for line in sql.splitlines():
        if line.strip().startswith("--"):
            continue
        cur.append(line)
        if line.rstrip().endswith(";"):
            body = "\n".join(cur).strip().rstrip(";").strip()
            if body:
                out.append(body)
            cur = []
    body = "\n".join(cur).strip()
    if body:
        out.append(body)
    return out


def role_grants(stmts, role):
    """The role's GRANT/REVOKE statements as `<grants>` queries of a user (no TO/FROM clause)."""
    out = []
    for s in stmts:
        flat = " ".join(s.split())
        m = re.fullmatch(r"(GRANT|REVOKE) (.+ ON \S+) (TO|FROM) (\w+)", flat)
        if not m or m.group(4) != role:
            continue
        if m.group(1) == "REVOKE" and m.group(2) == "ALL ON *.*":
            continue  # the reset at the top: nothing to reset in a fresh users.xml
        out.append(f"{m.group(1)} {m.group(2)}")
    return out


def grants_xml(grants):
    if grants is None:
        return ""  # a users.xml user without <grants> has every privilege
    return "<grants>" + "".join(f"<query>{escape(g)}</query>" for g in grants) + "</grants>"


def users_xml(grants, admin_grants, access_management=False):
    """`default` (who runs the phase) with `grants`, and `footfall_admin` with the admin role's
    grants: in production the admin user runs the migrations, so it is the DEFINER of the
    materialised views, and inserts into events run the views with its rights."""
    am = "<access_management>1</access_management>" if access_management else ""
    user = (
        "<{name}><password></password><networks><ip>::/0</ip></networks>"
        "<profile>default</profile><quota>default</quota>{extra}</{name}>"
    )
    return (
        "<clickhouse><profiles><default/></profiles><users>"
        + user.format(name="default", extra=am + grants_xml(grants))
        + user.format(name="footfall_admin", extra=grants_xml(admin_grants))
        + "</users><quotas><default/></quotas></clickhouse>"
    )


def rendered_schema(lc="LowCardinality(String)"):
    out = []
    for name in sorted(os.listdir(SCHEMA_DIR)):
        if name.endswith(".sql"):
            with open(os.path.join(SCHEMA_DIR, name)) as f:
                # 18.x (String for LowCardinality) has no SQL SECURITY; 26.x gets what footfall renders.
                security = "" if lc == "String" else "SQL SECURITY DEFINER"
                # 18.x chains views through the view in the middle, 26.x through its table.
                middle = "dimension_input_mv" if lc == "String" else "dimension_input"
                out += statements(select_of(f.read()).replace("{{LC}}", lc).replace("{{MV_SECURITY}}", security)
                                  .replace("{{DIMENSION_INPUT}}", middle))
    return out


def select_of(sql):
    """`{{SELECT_OF <view>}}` as footfall renders it: the query of that view of the same migration."""
    def query(m):
        view = re.search(r"CREATE MATERIALIZED VIEW IF NOT EXISTS " + re.escape(m.group(1)) +
                         r" TO \w+ (?:\{\{MV_SECURITY\}\} )?AS\n(.*?);\n", sql, re.S)
        return view.group(1) if view else m.group(0)
    return re.sub(r"\{\{SELECT_OF (\w+)\}\}", query, sql)


def in_footfall(st):
    """footfall runs its migrations with the database set; here the table names are qualified."""
    st = re.sub(r"^CREATE TABLE IF NOT EXISTS (\w+)", r"CREATE TABLE IF NOT EXISTS footfall.\1", st, count=1)
    st = re.sub(r"^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+) TO (\w+)",
                r"CREATE MATERIALIZED VIEW IF NOT EXISTS footfall.\1 TO footfall.\2", st, count=1)
    st = re.sub(r"^DROP TABLE IF EXISTS (\w+)", r"DROP TABLE IF EXISTS footfall.\1", st, count=1)
    st = re.sub(r"^INSERT INTO (\w+)", r"INSERT INTO footfall.\1", st, count=1)
    return re.sub(r"\bFROM (events|dimension_input|dimension_input_mv|sessions)\b", r"FROM footfall.\1", st)


# ---------------------------------------------------------------- one phase, in its own process

def phase(name, data_dir, conf_dir):
    import chdb  # noqa: F401  (imported here: the parent process must not start the engine)
    from chdb import session

    conn = f"file:{data_dir}?config-file={os.path.join(conf_dir, 'config.xml')}"
    s = session.Session(conn)
    failures = []

    def run(sql):
        return s.query(sql, "TSV").data()

    def ok(label, sql):
        try:
            run(sql)
            print(f"ok   26.x {label}")
        except Exception as e:  # noqa: BLE001
            failures.append(label)
            print(f"FAIL 26.x {label}: {first_line(e)}")

    def denied(label, sql):
        try:
            run(sql)
            failures.append(label)
            print(f"FAIL 26.x {label}: was allowed")
        except Exception as e:  # noqa: BLE001
            msg = first_line(e)
            if "ACCESS_DENIED" in msg or "Not enough privileges" in msg:
                print(f"ok   26.x {label} (refused)")
            else:
                failures.append(label)
                print(f"FAIL 26.x {label}: failed, but not for lack of privileges: {msg}")

    def equal(label, got, want):
        if got == want:
            print(f"ok   26.x {label}")
        else:
            failures.append(label)
            print(f"FAIL 26.x {label}: got {got!r}, want {want!r}")

    if name == "parse":
        stmts = statements(open(GRANTS_SQL).read())
        bad = []
        for st in stmts:
            # A real hash where the placeholders are, as an operator would run it.
            st = re.sub(r"'CHANGE_ME[^']*'", "'" + hashlib.sha256(b"pw").hexdigest() + "'", st)
            try:
                run("SELECT formatQuery({q:String})".replace("{q:String}", quote(st)))
            except Exception as e:  # noqa: BLE001
                bad.append(f"{st[:60]}...: {first_line(e)}")
        version = run("SELECT version()").strip()
        if bad:
            failures.append("grants.sql parses")
            print(f"FAIL 26.x grants.sql parses on ClickHouse {version}: " + " | ".join(bad))
        else:
            print(f"ok   26.x grants.sql: all {len(stmts)} statements parse on ClickHouse {version} (privilege names valid)")
        creates = [st for st in stmts if st.upper().startswith("CREATE")]
        equal("grants.sql is re-runnable (every CREATE has IF NOT EXISTS)",
              [st for st in creates if "IF NOT EXISTS" not in st.upper()], [])
        # Executing the file needs a writable access storage, which chdb does not have.
        try:
            run("CREATE ROLE IF NOT EXISTS footfall_probe_role")
            failures.append("chdb unexpectedly supports CREATE ROLE")
            print("FAIL 26.x chdb now supports CREATE ROLE: extend check_grants.py to run grants.sql itself")
        except Exception as e:  # noqa: BLE001
            if "ACCESS_STORAGE_FOR_INSERTION_NOT_FOUND" in str(e) or "no writeable access storage" in str(e):
                print("skip 26.x running grants.sql itself (CREATE ROLE/USER, DEFAULT ROLE, passwords, HOST): "
                      "chdb has no writable access storage and always runs as `default`; "
                      "each role's GRANT/REVOKE lines are enforced below instead")
                print("skip 26.x system tables closed to ingest/analyst: select_from_system_db_requires_grant is a "
                      "server setting that chdb does not apply (every user reads system.* here)")
            else:
                failures.append("CREATE ROLE probe")
                print(f"FAIL 26.x CREATE ROLE probe: unexpected error: {first_line(e)}")
        return failures

    if name == "fixtures":
        # A database footfall's users must not reach, made by an unrestricted user.
        run("CREATE DATABASE IF NOT EXISTS other")
        run("CREATE TABLE IF NOT EXISTS other.canary (a UInt8) ENGINE = MergeTree ORDER BY a")
        run("INSERT INTO other.canary VALUES (1)")
        return failures

    if name == "definers":
        # The admin phase ran the migrations as `default`, so the views' DEFINER is `default`; in
        # production it is the admin user that ran them. Made so here (as an unrestricted user,
        # because naming another definer needs SET DEFINER), so that the ingest phase checks what
        # production does: inserting into events runs the views with the admin's rights.
        views = run("SELECT name FROM system.tables WHERE database = 'footfall' AND engine = 'MaterializedView' ORDER BY name").split()
        before = [run(f"SHOW CREATE TABLE footfall.{v}") for v in views]
        equal("schema: the migrations made every materialised view SQL SECURITY DEFINER",
              [("SQL SECURITY DEFINER" in s) for s in before], [True] * len(views))
        for v in views:
            run(f"ALTER TABLE footfall.{v} MODIFY DEFINER = footfall_admin SQL SECURITY DEFINER")
        shown = [run(f"SHOW CREATE TABLE footfall.{v}") for v in views]
        equal("schema: every materialised view runs as its definer (the admin user)",
              [("DEFINER = footfall_admin SQL SECURITY DEFINER" in s) for s in shown], [True] * len(views))
        return failures

    equal(f"{name}: SHOW GRANTS", sorted(run("SHOW GRANTS").splitlines()), sorted(EXPECTED_GRANTS[name]))

    if name == "admin":
        ok("admin: CREATE DATABASE footfall", "CREATE DATABASE IF NOT EXISTS footfall")
        ok("admin: CREATE TABLE schema_migrations", SCHEMA_MIGRATIONS_DDL)
        for i, st in enumerate(rendered_schema(), 1):
            ok(f"admin: schema statement {i} ({schema_name(st)})", in_footfall(st))
        ok("admin: INSERT INTO schema_migrations", "INSERT INTO footfall.schema_migrations (version, name, applied_at) SELECT 1, 'events', now()")
        ok("admin: reads system.databases", "SELECT count() > 0 FROM system.databases WHERE name = 'footfall'")
        ok("admin: INSERT INTO events (two months)",
           "INSERT INTO footfall.events (event_id, site, kind, received_at) VALUES "
           "(generateUUIDv4(), 'shop', 'pageview', '2019-01-15 10:00:00'), (generateUUIDv4(), 'shop', 'pageview', '2019-02-15 10:00:00')")
        ok("admin: ALTER TABLE events DELETE (subject deletion)", "ALTER TABLE footfall.events DELETE WHERE user_id = 'subject-1'")
        ok("admin: ALTER TABLE events UPDATE (subject correction)", "ALTER TABLE footfall.events UPDATE user_id = '' WHERE user_id = 'subject-2'")
        ok("admin: ALTER TABLE events DROP PARTITION (retention)", "ALTER TABLE footfall.events DROP PARTITION 201901")
        ok("admin: INSERT INTO audit_log",
           "INSERT INTO footfall.audit_log (at, audit_id, action) VALUES ('2019-01-15 10:00:00', generateUUIDv4(), 'erase'), ('2019-02-15 10:00:00', generateUUIDv4(), 'erase')")
        ok("admin: INSERT INTO subject_blocks", "INSERT INTO footfall.subject_blocks (site, id_kind, id_hash, blocked) VALUES ('shop', 'user', 'h', 1)")
        ok("admin: ALTER TABLE audit_log DROP PARTITION (retention)", "ALTER TABLE footfall.audit_log DROP PARTITION 201901")
        ok("admin: ALTER TABLE audit_log DELETE WHERE at < cutoff (retention, boundary month)",
           "ALTER TABLE footfall.audit_log DELETE WHERE at < toDateTime('2019-02-01 00:00:00')")
        ok("admin: ALTER TABLE events DELETE WHERE received_at < cutoff (retention, boundary month)",
           "ALTER TABLE footfall.events DELETE WHERE received_at < toDateTime('2019-02-01 00:00:00')")
        ok("admin: INSERT INTO salts (shared visitor salts)",
           "INSERT INTO footfall.salts (day, salt, created_ms, instance) VALUES ('2019-01-15', 'ab', 1, 'i')")
        ok("admin: SELECT salts", "SELECT salt FROM footfall.salts WHERE day = toDate('2019-01-15') ORDER BY created_ms, salt LIMIT 1")
        ok("admin: ALTER TABLE salts DROP PARTITION (expired salts)", "ALTER TABLE footfall.salts DROP PARTITION 20190115")
        ok("admin: reads system.tables", "SELECT count() FROM system.tables WHERE database = 'footfall' AND name = 'events'")
        ok("admin: reads system.columns", "SELECT name, type FROM system.columns WHERE database = 'footfall' AND table = 'events' ORDER BY position")
        ok("admin: reads system.mutations", "SELECT command, is_done FROM system.mutations WHERE database = 'footfall'")
        ok("admin: reads system.parts", "SELECT partition, rows FROM system.parts WHERE database = 'footfall' AND active")
        ok("admin: ALTER TABLE ADD COLUMN (a later migration)", "ALTER TABLE footfall.subject_blocks ADD COLUMN IF NOT EXISTS note String")
        ok("admin: CREATE TABLE (a future migration's table)",
           "CREATE TABLE IF NOT EXISTS footfall.future_rollup (day Date, site String, views UInt64) ENGINE = MergeTree ORDER BY (site, day)")
        denied("admin: ALTER TABLE audit_log UPDATE", "ALTER TABLE footfall.audit_log UPDATE actor = 'x' WHERE 1")
        denied("admin: UPDATE audit_log (lightweight)", "UPDATE footfall.audit_log SET actor = 'x' WHERE 1")
        denied("admin: TRUNCATE audit_log", "TRUNCATE TABLE footfall.audit_log")
        denied("admin: ALTER TABLE audit_log DROP COLUMN", "ALTER TABLE footfall.audit_log DROP COLUMN mac")
        denied("admin: ALTER TABLE audit_log CLEAR COLUMN", "ALTER TABLE footfall.audit_log CLEAR COLUMN mac IN PARTITION 201902")
        denied("admin: ALTER TABLE audit_log MODIFY TTL", "ALTER TABLE footfall.audit_log MODIFY TTL at + INTERVAL 1 DAY")
        denied("admin: DROP TABLE audit_log", "DROP TABLE footfall.audit_log")
        denied("admin: DROP TABLE events", "DROP TABLE footfall.events")
        denied("admin: DROP TABLE dimension_stats (a rollup; DROP VIEW drops views only)", "DROP TABLE footfall.dimension_stats")
        denied("admin: DROP TABLE session_states (DROP TABLE is for the retired sessions only)", "DROP TABLE footfall.session_states")
        equal("admin: migration 007 dropped the retired sessions table",
              run("SELECT count() FROM system.tables WHERE database = 'footfall' AND name IN ('sessions', 'sessions_mv')").strip(), "0")
        denied("admin: DROP DATABASE footfall", "DROP DATABASE footfall")
        denied("admin: reads another database", "SELECT count() FROM other.canary")
        denied("admin: CREATE TABLE in another database", "CREATE TABLE other.x (a UInt8) ENGINE = Memory")
        denied("admin: table function remote() (REMOTE is not granted)", "SELECT * FROM remote('127.0.0.1:9', system.one)")
        denied("admin: table function url()", "SELECT * FROM url('http://127.0.0.1:9/', 'CSV', 'a String')")
        print("skip 26.x admin: deleting recent audit_log rows (ALTER DELETE, DELETE FROM, DETACH/MOVE/REPLACE PARTITION) "
              "stays allowed: retention needs the ALTER DELETE privilege (DROP PARTITION, boundary-month DELETE)")

    if name == "ingest":
        ok("ingest: INSERT INTO events",
           "INSERT INTO footfall.events (event_id, site, kind, received_at) VALUES (generateUUIDv4(), 'shop', 'pageview', now())")
        ok("ingest: reads schema_migrations (readiness)", "SELECT toUInt32(max(version)) FROM footfall.schema_migrations")
        ok("ingest: reads subject_blocks",
           "SELECT site, id_kind, id_hash, argMax(blocked, changed_ms) FROM footfall.subject_blocks GROUP BY site, id_kind, id_hash")
        ok("ingest: SELECT version()", "SELECT version()")
        ok("ingest: DESCRIBE TABLE events (the client's insert validation)",
           "DESCRIBE TABLE footfall.events SETTINGS describe_include_subcolumns = 0")
        denied("ingest: CREATE TABLE IF NOT EXISTS schema_migrations (migrations need the admin user)",
               SCHEMA_MIGRATIONS_DDL)
        ok("ingest: the writer's already-landed lookup (key columns only)",
           "SELECT count() FROM footfall.events WHERE site = 'shop' AND toDate(received_at) = toDate(toDateTime(1)) "
           "AND received_at = toDateTime(1) AND visitor_id = unhex('00') AND event_id = toUUID('00000000-0000-0000-0000-000000000000')")
        denied("ingest: SELECT url FROM events", "SELECT url FROM footfall.events")
        denied("ingest: SELECT * FROM events", "SELECT * FROM footfall.events")
        denied("ingest: SELECT session_states", "SELECT count() FROM footfall.session_states")
        denied("ingest: SELECT audit_log", "SELECT count() FROM footfall.audit_log")
        denied("ingest: INSERT INTO audit_log", "INSERT INTO footfall.audit_log (action) VALUES ('forged')")
        denied("ingest: INSERT INTO subject_blocks", "INSERT INTO footfall.subject_blocks (site, id_kind, id_hash, blocked) VALUES ('shop', 'user', 'h', 0)")
        denied("ingest: INSERT INTO schema_migrations", "INSERT INTO footfall.schema_migrations (version, name) VALUES (99, 'x')")
        denied("ingest: ALTER TABLE events DELETE", "ALTER TABLE footfall.events DELETE WHERE 1")
        denied("ingest: ALTER TABLE events UPDATE", "ALTER TABLE footfall.events UPDATE user_id = '' WHERE 1")
        denied("ingest: DELETE FROM events", "DELETE FROM footfall.events WHERE 1")
        denied("ingest: ALTER TABLE events DROP PARTITION", "ALTER TABLE footfall.events DROP PARTITION 201902")
        denied("ingest: TRUNCATE events", "TRUNCATE TABLE footfall.events")
        denied("ingest: DROP TABLE events", "DROP TABLE footfall.events")
        denied("ingest: CREATE TABLE", "CREATE TABLE footfall.x (a UInt8) ENGINE = Memory")
        denied("ingest: CREATE DATABASE", "CREATE DATABASE x")
        denied("ingest: ALTER TABLE events ADD COLUMN", "ALTER TABLE footfall.events ADD COLUMN x UInt8")
        denied("ingest: reads another database", "SELECT count() FROM other.canary")
        denied("ingest: SELECT salts", "SELECT salt FROM footfall.salts")
        denied("ingest: SELECT daily_stats", "SELECT count() FROM footfall.daily_stats")
        denied("ingest: table function file()", "SELECT * FROM file('x.csv', 'CSV', 'a String')")
        denied("ingest: table function url()", "SELECT * FROM url('http://127.0.0.1:9/', 'CSV', 'a String')")

    if name == "analyst":
        ok("analyst: SELECT count() FROM events", "SELECT count() FROM footfall.events")
        ok("analyst: SELECT daily_stats (table made after the grant)", "SELECT count() FROM footfall.daily_stats")
        for t in ("session_states", "navigation", "outbound_links", "page_stats", "dimension_stats", "daily_summary", "session_breakdown"):
            ok(f"analyst: SELECT {t}", f"SELECT count() FROM footfall.{t}")
        denied("analyst: SELECT day_changes (bookkeeping)", "SELECT count() FROM footfall.day_changes")
        denied("analyst: INSERT INTO daily_summary", "INSERT INTO footfall.daily_summary (site, day) VALUES ('shop', '2019-01-01')")
        denied("analyst: SELECT audit_log", "SELECT count() FROM footfall.audit_log")
        denied("analyst: SELECT salts (visitor salts)", "SELECT count() FROM footfall.salts")
        denied("analyst: SELECT subject_blocks", "SELECT count() FROM footfall.subject_blocks")
        denied("analyst: SELECT schema_migrations", "SELECT count() FROM footfall.schema_migrations")
        denied("analyst: INSERT INTO events",
               "INSERT INTO footfall.events (event_id, site, kind, received_at) VALUES (generateUUIDv4(), 'shop', 'pageview', now())")
        denied("analyst: INSERT INTO daily_stats", "INSERT INTO footfall.daily_stats (site, day) VALUES ('shop', '2019-01-01')")
        denied("analyst: ALTER TABLE events DELETE", "ALTER TABLE footfall.events DELETE WHERE 1")
        denied("analyst: ALTER TABLE events UPDATE", "ALTER TABLE footfall.events UPDATE user_id = '' WHERE 1")
        denied("analyst: ALTER TABLE events DROP PARTITION", "ALTER TABLE footfall.events DROP PARTITION 201902")
        denied("analyst: TRUNCATE events", "TRUNCATE TABLE footfall.events")
        denied("analyst: DROP TABLE events", "DROP TABLE footfall.events")
        denied("analyst: CREATE TABLE", "CREATE TABLE footfall.x (a UInt8) ENGINE = Memory")
        denied("analyst: OPTIMIZE events", "OPTIMIZE TABLE footfall.events")
        denied("analyst: reads another database", "SELECT count() FROM other.canary")
        denied("analyst: table function url()", "SELECT * FROM url('http://127.0.0.1:9/', 'CSV', 'a String')")
    return failures


def first_line(e):
    return str(e).strip().splitlines()[0][:300] if str(e).strip() else repr(e)


def quote(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def schema_name(st):
    m = re.search(r"CREATE (?:TABLE|MATERIALIZED VIEW) IF NOT EXISTS (?:footfall\.)?(\w+)", st)
    return m.group(1) if m else st[:30]


# ---------------------------------------------------------------- orchestration

def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--schema":
        # For check.sh: schema_migrations and schema/*.sql rendered with {{LC}} = argv[2], in the
        # database footfall, NUL-separated.
        ddl = [SCHEMA_MIGRATIONS_DDL] + [in_footfall(st) for st in rendered_schema(sys.argv[2])]
        sys.stdout.write("".join(st + "\0" for st in ddl))
        return
    if len(sys.argv) == 4 and sys.argv[1] == "--phase":
        _, _, name, dirs = sys.argv
        data_dir, conf_dir = dirs.split(os.pathsep)
        sys.exit(1 if phase(name, data_dir, conf_dir) else 0)

    stmts = statements(open(GRANTS_SQL).read())
    work = tempfile.mkdtemp(prefix="footfall-grants-")
    data_dir = os.path.join(work, "data")
    admin_grants = role_grants(stmts, ROLES["admin"])
    plan = [
        ("parse", None, True),
        ("fixtures", None, False),
        ("admin", admin_grants, False),
        ("definers", None, False),
        ("ingest", role_grants(stmts, ROLES["ingest"]), False),
        ("analyst", role_grants(stmts, ROLES["analyst"]), False),
    ]
    failed = False
    try:
        for name, grants, am in plan:
            conf_dir = os.path.join(work, name)
            os.makedirs(conf_dir)
            with open(os.path.join(conf_dir, "users.xml"), "w") as f:
                f.write(users_xml(grants, admin_grants, access_management=am))
            with open(os.path.join(conf_dir, "config.xml"), "w") as f:
                f.write(f"<clickhouse><users_config>{os.path.join(conf_dir, 'users.xml')}</users_config></clickhouse>")
            # One process per role: chdb's engine reads its users only once per process.
            r = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--phase", name, data_dir + os.pathsep + conf_dir],
                cwd=conf_dir, capture_output=True, text=True, timeout=120,
            )
            sys.stdout.write(r.stdout)
            if r.returncode != 0:
                failed = True
                if not any(l.startswith("FAIL") for l in r.stdout.splitlines()):
                    print(f"FAIL 26.x {name} phase exited {r.returncode}: {r.stderr.strip()[-800:]}")
    finally:
        subprocess.run(["rm", "-rf", work], check=False)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
