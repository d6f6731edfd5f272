"""How long the overview and top-pages queries take on many events, before and after the rollups.

Usage: python3 benches/queries/run.py path/to/footfall [events=10000000] [runs=5]

Starts Debian's ClickHouse 18.16 on free loopback ports (as tests/analytics/check.py does), applies
footfall's schema, inserts the synthetic events of seed_events.sql through the materialised views
(100 000 rows per block, like a busy writer), runs the rollup job for every day, then times, over a
30-day range:
  * raw_overview.sql / raw_top_pages.sql: computed from `events` alone (the "before"),
  * schema/queries/overview.sql / top_pages.sql: what footfall runs, on the rollup tables.
Each query runs once to warm the caches, then `runs` times; the median wall time is reported.
Both versions must give the same answer (checked). Prints a Markdown table for benches/README.md.
"""

import os
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "analytics"))

from check import Server18, bind, statements, table  # noqa: E402

RANGE = {"site": "shop", "from": "2026-11-01", "to": "2026-11-30", "limit": 20}


def read(*parts):
    return open(os.path.join(*parts), encoding="utf-8").read()


def timed(server, sql, runs):
    table(server, sql)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        rows = table(server, sql)
        times.append(time.perf_counter() - t)
        if isinstance(rows, str):
            sys.exit(rows)
    return statistics.median(times), rows


def main():
    binary = sys.argv[1]
    events = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000_000
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    server = Server18()
    try:
        print(f"{server.name}; {events:,} events")
        schema = subprocess.run([binary, "schema", "--server-version", "18.16"], check=True, capture_output=True, text=True).stdout
        server.query("CREATE DATABASE IF NOT EXISTS footfall", db="default")
        for stmt in statements(schema):
            server.query(stmt)
        seed = bind(read(HERE, "seed_events.sql"), {"rows": events})
        t = time.perf_counter()
        # Blocks of 100 000 rows, as a busy writer sends them (one huge block would need GiBs of
        # memory in the views' GROUP BYs).
        params = {"database": "footfall", "max_insert_block_size": "100000", "max_block_size": "100000",
                  "min_insert_block_size_rows": "100000", "min_insert_block_size_bytes": "0"}
        url = f"http://127.0.0.1:{server.http}/?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=seed.encode(), method="POST"), timeout=3600) as r:
                r.read()
        except urllib.error.HTTPError as e:
            sys.exit(f"seeding failed: {e.read().decode()[:2000]}")
        insert_s = time.perf_counter() - t
        print(f"insert through the views: {insert_s:.1f} s ({events / insert_s:,.0f} events/s)")

        days = server.query("SELECT DISTINCT toString(toDate(received_at)) FROM events ORDER BY 1").split()
        t = time.perf_counter()
        for day in days:
            for f in ("daily_summary", "session_breakdown", "daily_breakdown"):
                server.query(bind(read(ROOT, "schema", "rollups", f + ".sql"), {"site": "shop", "day": day, "version": 1}))
        rollup_s = time.perf_counter() - t
        print(f"rollup job, all {len(days)} days: {rollup_s:.1f} s ({rollup_s / len(days):.2f} s per day)")
        sizes = server.query(
            "SELECT table, sum(rows), formatReadableSize(sum(bytes)) FROM system.parts "
            "WHERE database = 'footfall' AND active GROUP BY table ORDER BY table")
        print(sizes)

        rows_out = []
        for label, raw, named in [
            ("overview", read(HERE, "raw_overview.sql"), read(ROOT, "schema", "queries", "overview.sql")),
            ("top pages", read(HERE, "raw_top_pages.sql"), read(ROOT, "schema", "queries", "top_pages.sql")),
        ]:
            before, a = timed(server, bind(raw, RANGE), runs)
            after, b = timed(server, bind(named, RANGE), runs)
            if a != b:
                sys.exit(f"{label}: raw and rollup answers differ:\n{a}\n{b}")
            rows_out.append((label, before, after))
            print(f"{label}: raw {before * 1000:.0f} ms, rollups {after * 1000:.0f} ms, {before / after:.1f}x; answer {b[:2]}")
        # The dashboard's whole page: every named query once (warm), as /dashboard loads them.
        import re
        names = re.findall(r'query_file!\("(\w+)"\)', read(ROOT, "src", "stats.rs"))
        each = []
        for name in names:
            t, _ = timed(server, bind(read(ROOT, "schema", "queries", name + ".sql"), RANGE), 1)
            each.append((t, name))
        total = sum(t for t, _ in each)
        slowest = ", ".join(f"{n} {t * 1000:.0f} ms" for t, n in sorted(each, reverse=True)[:4])
        print(f"all {len(names)} named queries once: {total * 1000:.0f} ms (slowest: {slowest})")
        print()
        print("| query (30 days, site shop) | raw scan of `events` | with rollups | speed-up |")
        print("|---|---|---|---|")
        for label, before, after in rows_out:
            print(f"| {label} | {before * 1000:.0f} ms | {after * 1000:.1f} ms | {before / after:.0f}x |")
    finally:
        server.close()


if __name__ == "__main__":
    main()
