//! The `footfall` binary as a user runs it: managed ClickHouse, clear errors, `migrate`, `schema`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{clickhouse_url, db_name, free_port, server_client};

const BIN: &str = env!("CARGO_BIN_EXE_footfall");

/// Starts the binary with `args`, its data in `dir` and listening on `port`, with `env` added
/// (`FOOTFALL_CLICKHOUSE_URL` unset unless `env` sets it: a managed server then), and returns it
/// with the first line it printed.
fn start(
    args: &[&str],
    dir: &std::path::Path,
    port: u16,
    env: &[(&str, &str)],
) -> (std::process::Child, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("FOOTFALL_DATA_DIR", dir)
        .env("FOOTFALL_LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("FOOTFALL_CLICKHOUSE_URL")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next()
        .expect("a line")
        .unwrap();
    (child, line)
}

/// Posts the smallest beacon of the default `demo` site to the collector on `port`.
async fn post_demo_event(http: &reqwest::Client, port: u16) -> reqwest::StatusCode {
    http.post(format!("http://127.0.0.1:{port}/api/event"))
        .header("content-type", "text/plain")
        .header("origin", "http://localhost:8080")
        .body(r#"{"v":1,"site":"demo","url":"http://localhost:8080/"}"#)
        .send()
        .await
        .unwrap()
        .status()
}

/// The managed ClickHouse's URL, from the line `serve` prints when it is listening.
fn managed_url(line: &str) -> String {
    line.rsplit("ClickHouse at ")
        .next()
        .unwrap()
        .trim_end_matches(')')
        .to_owned()
}

#[test]
fn bad_configuration_is_reported_with_the_setting() {
    let out = Command::new(BIN)
        .env("FOOTFALL_SITES", "demo")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("FOOTFALL_SITES"));
}

#[test]
fn serve_starts_a_managed_clickhouse_and_stops_it_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut child, line) = start(
        &["serve"],
        dir.path(),
        port,
        &[("FOOTFALL_BATCH_PERIOD_MS", "100")],
    );
    assert!(
        line.starts_with(&format!(
            "footfall is listening on http://127.0.0.1:{port}/"
        )),
        "{line}"
    );
    let ch_url = managed_url(&line);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let ready = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
        assert_eq!(post_demo_event(&http, port).await, 202);
        let ch = clickhouse::Client::default()
            .with_url(&ch_url)
            .with_validation(false);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let n: u64 = ch
                .query("SELECT count() FROM footfall.events")
                .fetch_one()
                .await
                .unwrap();
            if n == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "the event did not land");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert!(
        dir.path().join("clickhouse/data").is_dir(),
        "ClickHouse data lives under the data dir"
    );
    assert!(dir.path().join("secret").is_file());
    assert!(dir.path().join("salts.json").is_file());

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    // The managed server is gone with it.
    let ch_addr = ch_url.trim_start_matches("http://").to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&ch_addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "managed ClickHouse still running"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_killed_collector_leaves_no_orphan_clickhouse() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // No subcommand: `serve` is the default.
    let (mut child, line) = start(&[], dir.path(), port, &[]);
    let ch_url = managed_url(&line);
    let ch_addr = ch_url.trim_start_matches("http://");
    assert!(std::net::TcpStream::connect(ch_addr).is_ok());
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(ch_addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "orphaned ClickHouse still running"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Threads of a process whose name starts with `prefix` (`comm` is cut to 15 bytes).
fn threads_named(pid: u32, prefix: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

#[test]
fn http_workers_sets_how_many_threads_serve_requests() {
    let db = db_name("http_workers");
    // One more than actix would start by itself, so the count can only come from the setting.
    let n = std::thread::available_parallelism().map_or(1, |n| n.get()) + 1;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut child, line) = start(
        &["serve"],
        dir.path(),
        port,
        &[
            ("FOOTFALL_CLICKHOUSE_URL", clickhouse_url()),
            ("FOOTFALL_CLICKHOUSE_DATABASE", &db),
            ("FOOTFALL_HTTP_WORKERS", &n.to_string()),
        ],
    );
    assert!(line.contains("listening"), "{line}");
    // actix names its worker threads `actix-server worker <i>` and starts them as it begins to
    // accept, so they are counted once they have had time to appear.
    let deadline = Instant::now() + Duration::from_secs(10);
    while threads_named(child.id(), "actix-server w") < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let accepted = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(post_demo_event(&reqwest::Client::new(), port));
    let workers = threads_named(child.id(), "actix-server w");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(workers, n);
    assert_eq!(accepted, 202);
}

/// `footfall migrate <args>` on the test server's database `db`, as it ended.
fn run_migrate(db: &str, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("migrate")
        .args(args)
        .env("FOOTFALL_CLICKHOUSE_URL", clickhouse_url())
        .env("FOOTFALL_CLICKHOUSE_DATABASE", db)
        .output()
        .unwrap()
}

/// What a `footfall migrate` printed, after it succeeded.
fn succeeded(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `footfall migrate` on `db`: what it printed.
fn migrate(db: &str) -> String {
    succeeded(run_migrate(db, &[]))
}

/// `footfall migrate --to <version>`: a database as footfall left it at that version.
fn migrate_to(db: &str, version: u32) -> String {
    succeeded(run_migrate(db, &["--to", &version.to_string()]))
}

#[test]
fn migrate_is_idempotent_and_says_what_it_did() {
    let db = db_name("migrate");
    let run = || migrate(&db);
    let first = run();
    assert!(
        first.contains(&format!("created database `{db}`")),
        "{first}"
    );
    assert!(first.contains("applied: 001_events"), "{first}");
    let second = run();
    assert!(second.contains("already applied: 001_events"), "{second}");
    assert!(second.contains("schema is current"), "{second}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let versions: Vec<u32> = rt.block_on(async {
        server_client()
            .with_database(&db)
            .query("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all()
            .await
            .unwrap()
    });
    let all: Vec<u32> = footfall::schema::MIGRATIONS
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(versions, all, "each migration is recorded once");
}

#[test]
fn migrate_to_stops_after_the_version_asked_for_and_says_what_is_left() {
    let db = db_name("migrate_to");
    let first = migrate_to(&db, 4);
    assert!(first.contains("applied: 004_salts"), "{first}");
    assert!(
        first.contains("left for a later run (after --to): 005_dimension_input"),
        "{first}"
    );
    assert!(!first.contains("applied: 005"), "{first}");
    assert!(!first.contains("schema is current"), "{first}");
    let again = migrate_to(&db, 4);
    assert!(again.contains("already applied: 004_salts"), "{again}");
    assert!(!again.contains("schema is current"), "{again}");
    let rest = migrate(&db);
    assert!(rest.contains("already applied: 004_salts"), "{rest}");
    assert!(rest.contains("applied: 005_dimension_input"), "{rest}");
    assert!(!rest.contains("left for a later run"), "{rest}");
    // A version that is not a migration is refused before anything is touched.
    let untouched = db_name("migrate_to_none");
    let out = run_migrate(&untouched, &["--to", "99"]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("there is no migration 99"), "{said}");
    let created: u64 = tokio::runtime::Runtime::new().unwrap().block_on(async {
        server_client()
            .query("SELECT count() FROM system.databases WHERE name = ?")
            .bind(&untouched)
            .fetch_one()
            .await
            .unwrap()
    });
    assert_eq!(created, 0);
}

#[test]
fn an_upgrade_to_the_narrow_dimension_feed_counts_every_event_once() {
    let db = db_name("upgrade_005");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = server_client().with_database(&db);
    // Events of one browser, inserted as footfall's writer does: one INSERT into `events`.
    let insert = |browser: &'static str, n: u32| {
        let c = c.clone();
        async move {
            c.query(
                "INSERT INTO events (event_id, site, kind, received_at, browser) \
                 SELECT generateUUIDv4(), 'shop', 'pageview', now(), ? FROM system.numbers LIMIT ?",
            )
            .bind(browser)
            .bind(n)
            .execute()
            .await
            .unwrap()
        }
    };
    // A database as footfall left it at version 4, with events counted by 003's view.
    migrate_to(&db, 4);
    rt.block_on(insert("Firefox", 3));
    let said = migrate(&db);
    assert!(said.contains("already applied: 004_salts"), "{said}");
    assert!(said.contains("applied: 005_dimension_input"), "{said}");
    rt.block_on(async {
        insert("Chrome", 2).await;
        let browsers: Vec<(String, u64, u64)> = c
            .query(
                "SELECT value, sumMerge(events), sumMerge(pageviews) FROM dimension_stats \
                 WHERE dimension = 'browser' GROUP BY value ORDER BY value",
            )
            .fetch_all()
            .await
            .unwrap();
        assert_eq!(
            browsers,
            vec![("Chrome".into(), 2, 2), ("Firefox".into(), 3, 3)],
            "once each: neither lost nor counted by both views"
        );
        let tables: Vec<String> = c
            .query(
                "SELECT name FROM system.tables WHERE database = currentDatabase() \
                 AND name LIKE 'dimension%' ORDER BY name",
            )
            .fetch_all()
            .await
            .unwrap();
        assert_eq!(
            tables,
            [
                "dimension_input",
                "dimension_input_mv",
                "dimension_stats",
                "dimension_stats_mv"
            ]
        );
        let rows: u64 = c
            .query("SELECT count() FROM dimension_input")
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(rows, 0, "the Null table keeps nothing");
    });
}

/// Each session of `table` (003's `sessions` or 006's `session_states`) as one line: entry and
/// exit page, page views, events, engaged ms, first country and visitor, first and last time.
async fn sessions_in(c: &clickhouse::Client, table: &str) -> Vec<String> {
    c.query(&format!(
        "SELECT arrayStringConcat([session_id, argMinIfMerge(entry_path), \
         argMaxIfMerge(exit_path), toString(uniqExactIfMerge(pageviews)), \
         toString(uniqExactMerge(events)), \
         toString(arraySum(arrayMap(x -> toUInt64(x.2), groupUniqArrayIfMerge(engaged)))), \
         argMinMerge(country), toString(argMinMerge(visitor_id)), toString(minMerge(start)), \
         toString(maxMerge(end)), toString(min(day))], ' ') \
         FROM {table} GROUP BY session_id ORDER BY session_id"
    ))
    .fetch_all()
    .await
    .unwrap()
}

#[test]
fn an_upgrade_to_numbered_session_keys_keeps_every_session_as_it_was() {
    let db = db_name("upgrade_006");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = server_client().with_database(&db);
    let event =
        |session: &str, seq: u32, at: &str, ms: i64, kind: &str, path: &str, country: &str| {
            format!(
                "('{id}', 'shop', '{kind}', '{at}', {ms}, '{session}', {seq}, '{path}', \
             '{country}', 'visitor-{session:_<5}-{seq:02}', {engaged})",
                id = uuid::Uuid::now_v7(),
                engaged = if kind == "engagement" { 700 } else { 0 }
            )
        };
    let insert = |rows: Vec<String>| {
        let c = c.clone();
        async move {
            c.query(&format!(
                "INSERT INTO events (event_id, site, kind, received_at, client_ts, session_id, \
                 seq, path, country, visitor_id, engaged_ms) VALUES {}",
                rows.join(", ")
            ))
            .execute()
            .await
            .unwrap()
        }
    };
    migrate_to(&db, 5);
    let before = rt.block_on(async {
        insert(vec![
            // Only in `sessions` once October's events are gone (a shorter events retention).
            event(
                "old",
                1,
                "2026-10-30 10:00:00",
                1_000,
                "pageview",
                "/o1",
                "KZ",
            ),
            event(
                "old",
                2,
                "2026-10-30 10:01:00",
                2_000,
                "pageview",
                "/o2",
                "RU",
            ),
            // Across midnight and a month: its first day is only in `sessions`, its second also
            // in `events`.
            event(
                "span",
                1,
                "2026-10-31 23:59:00",
                5_000,
                "pageview",
                "/s1",
                "KZ",
            ),
            event(
                "span",
                2,
                "2026-11-01 00:01:00",
                6_000,
                "pageview",
                "/s2",
                "RU",
            ),
            event(
                "span",
                3,
                "2026-11-01 00:02:00",
                7_000,
                "engagement",
                "/s2",
                "RU",
            ),
            // Two events with one seq (duplicated tabs): the later client time is the last.
            event(
                "dup",
                1,
                "2026-11-02 09:00:00",
                1_000,
                "pageview",
                "/d1",
                "DE",
            ),
            event(
                "dup",
                2,
                "2026-11-02 09:01:00",
                2_000,
                "pageview",
                "/d2",
                "DE",
            ),
            event(
                "dup",
                2,
                "2026-11-02 09:02:00",
                1_500,
                "pageview",
                "/d3",
                "FR",
            ),
            event(
                "dup",
                3,
                "2026-11-02 09:03:00",
                2_500,
                "engagement",
                "/d2",
                "DE",
            ),
        ])
        .await;
        c.query("ALTER TABLE events DROP PARTITION 202610")
            .execute()
            .await
            .unwrap();
        sessions_in(&c, "sessions").await
    });
    assert_eq!(
        before,
        [
            "dup /d1 /d2 3 4 700 DE visitor-dup__-01 2026-11-02 09:00:00 2026-11-02 09:03:00 2026-11-02",
            "old /o1 /o2 2 2 0 KZ visitor-old__-01 2026-10-30 10:00:00 2026-10-30 10:01:00 2026-10-30",
            "span /s1 /s2 2 3 700 KZ visitor-span_-01 2026-10-31 23:59:00 2026-11-01 00:02:00 2026-10-31",
        ],
        "what 003's table says"
    );
    let said = migrate(&db);
    assert!(said.contains("applied: 006_session_states"), "{said}");
    assert!(said.contains("applied: 007_drop_sessions"), "{said}");
    rt.block_on(async {
        assert_eq!(sessions_in(&c, "session_states").await, before, "carried over as it was");
        let tables: Vec<String> = c
            .query(
                "SELECT name FROM system.tables WHERE database = currentDatabase() \
                 AND name IN ('sessions', 'sessions_mv', 'session_states', 'session_states_mv') \
                 ORDER BY name",
            )
            .fetch_all()
            .await
            .unwrap();
        assert_eq!(tables, ["session_states", "session_states_mv"], "003's are gone");
        // The new view goes on from there: a later page of `dup`, and an earlier one of `span`
        // that arrives late (its key sorts it first, as (seq, client_ts) did).
        insert(vec![
            event("dup", 4, "2026-11-02 09:10:00", 9_000, "pageview", "/d4", "US"),
            event("new", 2, "2026-11-03 08:00:05", 8_000, "pageview", "/n2", "US"),
            event("new", 1, "2026-11-03 08:00:09", 7_000, "pageview", "/n1", "GB"),
        ])
        .await;
        let after = sessions_in(&c, "session_states").await;
        assert_eq!(
            after,
            [
                "dup /d1 /d4 4 5 700 DE visitor-dup__-01 2026-11-02 09:00:00 2026-11-02 09:10:00 2026-11-02",
                "new /n1 /n2 2 2 0 GB visitor-new__-01 2026-11-03 08:00:05 2026-11-03 08:00:09 2026-11-03",
                "old /o1 /o2 2 2 0 KZ visitor-old__-01 2026-10-30 10:00:00 2026-10-30 10:01:00 2026-10-30",
                "span /s1 /s2 2 3 700 KZ visitor-span_-01 2026-10-31 23:59:00 2026-11-01 00:02:00 2026-10-31",
            ]
        );
    });
    let again = migrate(&db);
    assert!(again.contains("schema is current"), "{again}");
}

#[test]
fn migrate_relinks_a_view_chain_left_as_another_server_version_needs_it() {
    use footfall::schema;
    let db = db_name("relink");
    let first = migrate(&db);
    assert!(!first.contains("re-created"), "{first}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = server_client().with_database(&db);
    let breakdown = || {
        let c = c.clone();
        async move {
            c.query(
                "INSERT INTO events (event_id, site, kind, received_at, browser) \
                 SELECT generateUUIDv4(), 'shop', 'pageview', now(), 'Firefox' FROM system.numbers LIMIT 2",
            )
            .execute()
            .await
            .unwrap();
            c.query("SELECT sumMerge(events) FROM dimension_stats WHERE dimension = 'browser'")
                .fetch_one::<u64>()
                .await
                .unwrap()
        }
    };
    rt.block_on(async {
        assert_eq!(breakdown().await, 2);
        // The chain as a server of 19.14 or later reads it (from the Null table), which this
        // 18.16 server never triggers: as if the data had come from a newer server.
        let newer = schema::render(
            schema::MIGRATIONS[4].sql,
            schema::ServerVersion {
                major: 19,
                minor: 14,
            },
        );
        for stmt in schema::statements(&newer)
            .into_iter()
            .filter(|s| s.contains("dimension_stats_mv") && !s.starts_with("CREATE TABLE"))
        {
            c.query(&stmt).execute().await.unwrap();
        }
        assert_eq!(breakdown().await, 2, "the unlinked view counts nothing");
    });
    let second = migrate(&db);
    assert!(
        second.contains("re-created: dimension_stats_mv"),
        "{second}"
    );
    rt.block_on(async {
        assert_eq!(breakdown().await, 4, "counted again once relinked");
    });
    let third = migrate(&db);
    assert!(!third.contains("re-created"), "{third}");
}

#[test]
fn schema_is_rendered_per_server_version() {
    let render = |v: &str| {
        let out = Command::new(BIN)
            .args(["schema", "--server-version", v])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let old = render("18.16");
    let new = render("26.1");
    assert!(!old.contains("LowCardinality") && old.contains("CREATE TABLE IF NOT EXISTS events"));
    assert!(new.contains("site LowCardinality(String)"));
}

#[test]
fn a_reader_that_stops_early_ends_a_command_quietly() {
    // `footfall schema | head -1`: the reading end closes before everything is written.
    let mut child = Command::new(BIN)
        .args(["schema", "--server-version", "18.16"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
