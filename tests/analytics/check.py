"""The analyst model on real ClickHouse: Debian's 18.16 server and current ClickHouse (26.x, chdb).

Usage: python3 tests/analytics/check.py path/to/footfall

On each engine: apply the schema footfall would apply to that version (`footfall schema`), load the
events of the known-answer scenario (`tests/fixtures/analytics/events.jsonl`, written by
tests/it/analytics.rs with UPDATE_FIXTURES=1) so the materialised views fill the rollups, run the
rollup job's statements (`schema/rollups/`), then check that
  * every named query (`schema/queries/`) gives the answers recorded in `answers.json`, and
  * every panel of the Grafana dashboard (`deploy/grafana/dashboards/footfall.json`), its SQL
    taken from the JSON with Grafana's variables and macros filled in, gives the same answers.
The 18.16 server is started here on free loopback ports and stopped at the end.
"""

import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "analytics")
PLACEHOLDER = re.compile(r"\{(\w+):(\w+)\}")

failures = []
passed = 0


def check(name, got, want):
    global passed
    if got == want:
        passed += 1
        print(f"ok   {name}", flush=True)
    else:
        failures.append(name)
        print(f"FAIL {name}:\n     got  {got!r}\n     want {want!r}", flush=True)


def whole(v):
    """Whole floats as integers, as tests/it/analytics.rs records them."""
    if isinstance(v, list):
        return [whole(x) for x in v]
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return int(v)
    return v


def literal(v):
    """A SQL string literal, escaped as the clickhouse crate escapes bound strings."""
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def bind(sql, values):
    """The named query with its placeholders replaced by literals (what footfall sends)."""

    def repl(m):
        name, ty = m.group(1), m.group(2)
        v = values[name]
        if ty == "String":
            return literal(v)
        if ty == "Date":
            return f"toDate({literal(v)})"
        return str(int(v))

    return PLACEHOLDER.sub(repl, sql)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server18:
    """Debian's clickhouse-server, as a local process."""

    def __init__(self):
        binary = shutil.which("clickhouse-server") or "/usr/sbin/clickhouse-server"
        if not os.path.exists(binary):
            sys.exit("clickhouse-server is not installed (scripts/test.sh installs it)")
        self.dir = tempfile.mkdtemp(prefix="footfall-analytics-")
        self.http = free_port()
        tcp = free_port()
        d = self.dir
        with open(os.path.join(d, "users.xml"), "w") as f:
            f.write("""<yandex><profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
<users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
<quotas><default></default></quotas></yandex>""")
        with open(os.path.join(d, "config.xml"), "w") as f:
            f.write(f"""<yandex>
<logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/server.err.log</errorlog></logger>
<http_port>{self.http}</http_port><tcp_port>{tcp}</tcp_port><listen_host>127.0.0.1</listen_host>
<timezone>UTC</timezone>
<path>{d}/data/</path><tmp_path>{d}/tmp/</tmp_path><user_files_path>{d}/uf/</user_files_path>
<users_config>{d}/users.xml</users_config><default_profile>default</default_profile>
<default_database>default</default_database><mark_cache_size>268435456</mark_cache_size>
</yandex>""")
        self.proc = subprocess.Popen([binary, f"--config-file={d}/config.xml"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while True:
            try:
                self.version = self.query("SELECT version()", db="default").strip()
                break
            except Exception:
                if time.time() > deadline or self.proc.poll() is not None:
                    sys.exit(f"clickhouse-server did not start; see {d}/server.err.log")
                time.sleep(0.2)
        self.name = f"ClickHouse {self.version} (server)"

    def query(self, sql, fmt=None, db="footfall"):
        if fmt:
            sql = f"{sql}\nFORMAT {fmt}"
        params = {"database": db, "output_format_json_quote_64bit_integers": "0"}
        url = f"http://127.0.0.1:{self.http}/?" + urllib.parse.urlencode(params)
        req = urllib.request.Request(url, data=sql.encode(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.read().decode()
        except urllib.error.HTTPError as e:
            raise RuntimeError(e.read().decode()) from None

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class Chdb:
    """Current ClickHouse in-process."""

    def __init__(self):
        import chdb
        from chdb import session

        self.version = chdb.query("SELECT version()", "CSV").data().strip().strip('"')
        self.name = f"ClickHouse {self.version} (chdb)"
        self.s = session.Session()
        self.s.query("SET output_format_json_quote_64bit_integers = 0")

    def query(self, sql, fmt=None, db="footfall"):
        if db != "default":
            self.s.query(f"USE {db}")
        res = self.s.query(sql, fmt or "TabSeparated")
        return res.data()

    def close(self):
        self.s.close()


def statements(sql):
    out = []
    for chunk in sql.split(";\n"):
        body = "\n".join(l for l in chunk.splitlines() if not l.strip().startswith("--")).strip().rstrip(";")
        if body:
            out.append(body)
    return out


def table(engine, sql):
    """Rows of a SELECT as Python values (an error's message when it fails, so it is reported)."""
    try:
        text = engine.query(sql, "JSONCompact")
    except Exception as e:
        return f"error: {str(e)[:800]}"
    return [whole(r) for r in json.loads(text)["data"]]


def named(name):
    text = open(os.path.join(ROOT, "schema", "queries", name + ".sql"), encoding="utf-8").read()
    return text


def import_columns(cols):
    """For the fixture's JSON rows (ids as hex, times as Unix seconds): the columns of a staging
    table, and the expressions that turn them into `events`' (name, type) columns."""
    staged, converted = [], []
    for name, ty in cols:
        if ty.startswith("FixedString"):
            staged.append(f"{name} String")
            converted.append(f"toFixedString(unhex({name}), 16)")
        elif ty.startswith("DateTime"):
            staged.append(f"{name} UInt32")
            converted.append(f"toDateTime({name})")
        else:
            staged.append(f"{name} {ty}")
            converted.append(name)
    return staged, converted


def run_engine(engine, binary):
    print(f"== {engine.name}")
    major_minor = ".".join(engine.version.split(".")[:2])
    schema = subprocess.run([binary, "schema", "--server-version", major_minor], check=True, capture_output=True, text=True).stdout
    engine.query("CREATE DATABASE IF NOT EXISTS footfall", db="default")
    for stmt in statements(schema):
        engine.query(stmt)

    # The scenario's events, as stored (ids as hex, times as Unix seconds in the fixture).
    cols = [tuple(line.split("\t")) for line in engine.query(
        "SELECT name, type FROM system.columns WHERE database = 'footfall' AND table = 'events'").splitlines()]
    staged, converted = import_columns(cols)
    engine.query("CREATE TABLE events_import (" + ", ".join(staged) + ") ENGINE = Memory")
    with open(os.path.join(FIXTURES, "events.jsonl"), encoding="utf-8") as f:
        events = f.read()
    engine.query("INSERT INTO events_import FORMAT JSONEachRow\n" + events)
    engine.query("INSERT INTO events SELECT " + ", ".join(converted) + " FROM events_import")
    n = int(engine.query("SELECT count() FROM events").strip())
    check(f"{engine.name}: fixture events loaded", n, events.count("\n"))

    # The rollup job: each (site, day) once.
    days = [tuple(l.split("\t")) for l in engine.query("SELECT DISTINCT site, toString(toDate(received_at)) FROM events ORDER BY 1, 2").splitlines()]
    for site, day in days:
        for f in ("daily_summary", "session_breakdown", "daily_breakdown"):
            sql = open(os.path.join(ROOT, "schema", "rollups", f + ".sql"), encoding="utf-8").read()
            engine.query(bind(sql, {"site": site, "day": day, "version": 1}))

    answers = json.load(open(os.path.join(FIXTURES, "answers.json"), encoding="utf-8"))
    for a in answers:
        values = {"site": a["site"], "from": a["from"], "to": a["to"], "limit": a["limit"]}
        got = table(engine, bind(named(a["query"]), values))
        check(f"{engine.name}: {a['query']} {a['from']}..{a['to']}", got, a["rows"])

    # The Grafana dashboard's SQL, with what Grafana would put in for its variables and macros.
    dash = json.load(open(os.path.join(ROOT, "deploy", "grafana", "dashboards", "footfall.json"), encoding="utf-8"))
    by_query = {}
    for p in dash["panels"]:
        for t in p["targets"]:
            by_query[t["footfallQuery"]] = (p["type"], t["rawSql"])
    check(f"{engine.name}: the dashboard has a panel for every named query", sorted(by_query), sorted({a["query"] for a in answers}))
    for a in answers:
        kind, raw = by_query[a["query"]]
        start = int(datetime.datetime.strptime(a["from"], "%Y-%m-%d").replace(tzinfo=datetime.timezone.utc).timestamp())
        end = int(datetime.datetime.strptime(a["to"], "%Y-%m-%d").replace(tzinfo=datetime.timezone.utc).timestamp()) + 86399
        sql = (raw.replace("${site:sqlstring}", "'" + a["site"].replace("'", "''") + "'")
               .replace("$__fromTime", f"toDateTime({start})")
               .replace("$__toTime", f"toDateTime({end})")
               .replace("${limit:raw}", str(a["limit"])))
        rows = table(engine, sql)
        if kind == "timeseries":
            rows = [[r[0][:10]] + r[1:] for r in rows]
        check(f"{engine.name}: Grafana panel {a['query']} {a['from']}..{a['to']}", rows, a["rows"])


def main():
    binary = sys.argv[1]
    server = Server18()
    try:
        run_engine(server, binary)
    finally:
        server.close()
    engine = Chdb()
    try:
        run_engine(engine, binary)
    finally:
        engine.close()
    print(f"analytics: {passed} passed, {len(failures)} failed")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
