//! The `footfall` binary as a user runs it: managed ClickHouse, clear errors, `migrate`, `schema`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{clickhouse_url, db_name, free_port, server_client};

const BIN: &str = env!("CARGO_BIN_EXE_footfall");

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
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("FOOTFALL_DATA_DIR", dir.path())
        .env("FOOTFALL_LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("FOOTFALL_CLICKHOUSE_URL")
        .env("FOOTFALL_BATCH_PERIOD_MS", "100")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().expect("a line").unwrap();
    assert!(
        line.starts_with(&format!(
            "footfall is listening on http://127.0.0.1:{port}/"
        )),
        "{line}"
    );
    let ch_url = line
        .rsplit("ClickHouse at ")
        .next()
        .unwrap()
        .trim_end_matches(')')
        .to_owned();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let ready = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
        let res = http
            .post(format!("http://127.0.0.1:{port}/api/event"))
            .header("content-type", "text/plain")
            .header("origin", "http://localhost:8080")
            .body(r#"{"v":1,"site":"demo","url":"http://localhost:8080/"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
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
    let mut child = Command::new(BIN)
        .env("FOOTFALL_DATA_DIR", dir.path())
        .env("FOOTFALL_LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("FOOTFALL_CLICKHOUSE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let ch_addr = line
        .rsplit("ClickHouse at http://")
        .next()
        .unwrap()
        .trim_end_matches(')')
        .to_owned();
    assert!(std::net::TcpStream::connect(&ch_addr).is_ok());
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&ch_addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "orphaned ClickHouse still running"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn migrate_is_idempotent_and_says_what_it_did() {
    let db = db_name("migrate");
    let run = || {
        let out = Command::new(BIN)
            .arg("migrate")
            .env("FOOTFALL_CLICKHOUSE_URL", clickhouse_url())
            .env("FOOTFALL_CLICKHOUSE_DATABASE", &db)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
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
    assert_eq!(
        versions,
        vec![1, 2, 3, 4],
        "each migration is recorded once"
    );
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
