//! The test harness: a real ClickHouse for the whole run, a fresh database and collector per test.
//!
//! The server is `FOOTFALL_TEST_CLICKHOUSE_URL` when set, else one started with footfall's own
//! managed-server code (its watchdog stops it when this test process exits).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use clickhouse::Client;
use footfall::clock::{SharedClock, SystemClock};
use footfall::config::{Config, SiteConfig};
use footfall::managed::{Binary, ManagedClickHouse};
use footfall::row::EventRow;
use footfall::serve::{self, Running};

struct Server {
    url: String,
    _managed: Option<ManagedClickHouse>,
    _dir: Option<tempfile::TempDir>,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The ClickHouse URL for this run.
pub fn clickhouse_url() -> &'static str {
    &SERVER
        .get_or_init(|| {
            if let Ok(url) = std::env::var("FOOTFALL_TEST_CLICKHOUSE_URL") {
                return Server {
                    url,
                    _managed: None,
                    _dir: None,
                };
            }
            let binary = Binary::find(std::env::var("PATH").ok().as_deref()).expect(
                "no ClickHouse binary: run scripts/test.sh, which installs clickhouse-server",
            );
            let dir = tempfile::tempdir().expect("tempdir");
            let managed = ManagedClickHouse::start(&binary, dir.path()).expect("start ClickHouse");
            Server {
                url: managed.url.clone(),
                _managed: Some(managed),
                _dir: Some(dir),
            }
        })
        .url
}

/// A database name unique to this test and run.
pub fn db_name(test: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let clean: String = test
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("t_{}_{}_{}", clean, std::process::id(), n)
}

/// A client on the test server with no database, as old servers need it (no validation).
pub fn server_client() -> Client {
    Client::default()
        .with_url(clickhouse_url())
        .with_validation(false)
}

/// A config for a collector on a free loopback port writing to `db`, with fast batches.
pub fn test_config(db: &str, data_dir: &std::path::Path) -> Config {
    let mut c = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_owned(),
        ..Config::default()
    };
    c.clickhouse.url = Some(clickhouse_url().to_owned());
    c.clickhouse.database = db.to_owned();
    c.clickhouse.batch_period_ms = 100;
    c.limits.rate_burst = 10_000;
    c.limits.rate_per_second = 10_000;
    c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    c.sites = vec![
        SiteConfig {
            id: "demo".into(),
            origins: vec!["http://localhost:*".into(), "http://127.0.0.1:*".into()],
        },
        SiteConfig {
            id: "shop".into(),
            origins: vec!["https://shop.example".into()],
        },
    ];
    c
}

/// A running collector with its own database and data directory.
pub struct TestCollector {
    pub base: String,
    pub db: Client,
    /// The test's own database.
    pub database: String,
    /// Kept so the directory lives as long as the collector.
    data_dir: tempfile::TempDir,
    pub running: Option<Running>,
    pub http: reqwest::Client,
}

impl TestCollector {
    pub async fn start(test: &str) -> Self {
        Self::start_with(test, |_| {}).await
    }

    pub async fn start_with(test: &str, adjust: impl FnOnce(&mut Config)) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let db_name = db_name(test);
        let mut config = test_config(&db_name, data_dir.path());
        adjust(&mut config);
        Self::start_config(config, data_dir, Arc::new(SystemClock)).await
    }

    pub async fn start_config(
        config: Config,
        data_dir: tempfile::TempDir,
        clock: SharedClock,
    ) -> Self {
        let db_name = config.clickhouse.database.clone();
        let running = serve::start(config, &HashMap::new(), clock)
            .await
            .expect("collector starts");
        let base = format!("http://{}", running.addr);
        Self {
            base,
            db: server_client().with_database(&db_name),
            database: db_name,
            data_dir,
            running: Some(running),
            http: reqwest::Client::new(),
        }
    }

    /// The collector's data directory (unless the config pointed elsewhere).
    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    /// POSTs a beacon as the tracker does, from `client_ip` behind our trusted loopback proxy.
    pub async fn post(&self, body: &str, origin: &str, client_ip: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/api/event", self.base))
            .header("content-type", "text/plain;charset=UTF-8")
            .header("origin", origin)
            .header("x-forwarded-for", client_ip)
            .header("user-agent", CHROME_UA)
            .body(body.to_owned())
            .send()
            .await
            .expect("request")
    }

    /// POSTs a beacon as a browser would, with exactly `headers` besides `Content-Type`.
    pub async fn post_with(&self, body: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}/api/event", self.base))
            .header("content-type", "text/plain");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.body(body.to_owned()).send().await.expect("request")
    }

    /// GETs `path` from the collector.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request")
    }

    /// Waits until `n` rows are in `events`, then returns them ordered by site, session and seq.
    pub async fn rows(&self, n: usize) -> Vec<EventRow> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            // The table may not exist yet when the writer applies the schema itself.
            let rows: Vec<EventRow> = self
                .db
                .query("SELECT ?fields FROM events ORDER BY site, session_id, seq")
                .fetch_all()
                .await
                .unwrap_or_default();
            if rows.len() >= n || tokio::time::Instant::now() > deadline {
                assert_eq!(rows.len(), n, "rows in ClickHouse");
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn count(&self) -> u64 {
        self.db
            .query("SELECT count() FROM events")
            .fetch_one()
            .await
            .expect("count")
    }

    pub async fn shutdown(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await.expect("clean shutdown");
        }
    }
}

pub const CHROME_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";

/// A free loopback port (bound and released; good enough on a test machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Resident memory of a process, in bytes (0 when it is gone).
pub fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

/// The `footfall` binary as a user runs it: a clean environment (no PATH, so no managed
/// ClickHouse unless asked for), generous rate limits, fast batches, plus `env`.
pub struct FootfallProcess {
    child: std::process::Child,
    pub addr: std::net::SocketAddr,
    pub base: String,
    stderr: std::path::PathBuf,
}

impl FootfallProcess {
    /// Starts it on a free port and waits for its "listening" line; stderr goes to `log_dir`.
    pub fn spawn(
        data_dir: &std::path::Path,
        log_dir: &std::path::Path,
        env: &[(&str, &str)],
    ) -> Self {
        use std::io::BufRead;
        let port = free_port();
        let stderr = log_dir.join(format!("stderr-{port}.log"));
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_footfall"));
        cmd.env_clear()
            .env("PATH", "/nonexistent")
            .env("FOOTFALL_DATA_DIR", data_dir)
            .env("FOOTFALL_LISTEN", format!("127.0.0.1:{port}"))
            .env("FOOTFALL_RATE_PER_SECOND", "1000000")
            .env("FOOTFALL_RATE_BURST", "1000000")
            .env("FOOTFALL_BATCH_PERIOD_MS", "100")
            .env("FOOTFALL_SHUTDOWN_FLUSH_SECS", "2");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        // Keep draining stdout, so a later line never meets a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let me = Self {
            child,
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            base: format!("http://127.0.0.1:{port}"),
            stderr,
        };
        assert!(
            first.starts_with(&format!(
                "footfall is listening on http://127.0.0.1:{port}/"
            )),
            "{first:?}\n{}",
            me.stderr()
        );
        me
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn rss(&self) -> u64 {
        rss_of(self.pid())
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Stops it as an operator does, and returns how it exited.
    pub fn sigterm(&mut self) -> std::process::ExitStatus {
        std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }

    /// SIGKILL: no destructor, no flush.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for FootfallProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
