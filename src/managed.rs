//! A ClickHouse server footfall starts itself, as a child process on free loopback ports, when no URL is configured.
//!
//! Works with the official single binary (`clickhouse server`) and with Debian's
//! `clickhouse-server` (18.16). The server's data lives under `<data_dir>/clickhouse`; it is
//! stopped (SIGTERM, then SIGKILL after a grace period) when this handle is dropped. The test
//! harness uses the same code to run one server per test run.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to install a server, printed when none is found.
pub const INSTALL_HINT: &str = "\
footfall needs ClickHouse and found none. Either point it at a server with FOOTFALL_CLICKHOUSE_URL=http://host:8123, or install one:
  Debian/Ubuntu:      sudo apt-get install -y clickhouse-server
  Official binary:    curl https://clickhouse.com/ | sh && sudo ./clickhouse install";

/// A ClickHouse binary and how it is invoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binary {
    /// The single `clickhouse` binary: `clickhouse server --config-file=...`.
    Single(PathBuf),
    /// A dedicated `clickhouse-server` binary (Debian's package).
    Server(PathBuf),
}

impl Binary {
    /// Finds a ClickHouse binary on `path_var` (a `PATH`-style list), then in the usual system places.
    pub fn find(path_var: Option<&str>) -> Option<Self> {
        let mut dirs: Vec<PathBuf> = path_var
            .map(|p| std::env::split_paths(p).collect())
            .unwrap_or_default();
        // Debian installs clickhouse-server in /usr/sbin, which is not on a normal user's PATH.
        for extra in ["/usr/local/bin", "/usr/bin", "/usr/sbin", "/usr/local/sbin"] {
            dirs.push(PathBuf::from(extra));
        }
        for dir in &dirs {
            let single = dir.join("clickhouse");
            if is_executable(&single) {
                return Some(Binary::Single(single));
            }
            let server = dir.join("clickhouse-server");
            if is_executable(&server) {
                return Some(Binary::Server(server));
            }
        }
        None
    }

    fn argv(&self, config: &Path) -> Vec<String> {
        let config_arg = format!("--config-file={}", config.display());
        match self {
            Binary::Single(p) => vec![p.display().to_string(), "server".into(), config_arg],
            Binary::Server(p) => vec![p.display().to_string(), config_arg],
        }
    }

    /// The server wrapped in a small shell watchdog: if footfall dies without stopping it
    /// (`kill -9`, a crash), the watchdog stops the server within a second, so no orphan is left.
    fn command(&self, config: &Path) -> Command {
        let server: Vec<String> = self.argv(config).iter().map(|a| shell_quote(a)).collect();
        // The server's jemalloc gets the settings ClickHouse's own builds compile in, unless the
        // environment already names some: Debian's 18.16 links the system jemalloc with its
        // defaults, where a freed block over 8 MiB (a column of a batch) is handed back to the
        // kernel at once and faulted in again by the next insert.
        let script = format!(
            "MALLOC_CONF=\"${{MALLOC_CONF-{JEMALLOC_CONF}}}\" {} & ch=$!; \
             trap 'kill -TERM $ch 2>/dev/null' TERM INT; \
             while kill -0 {parent} 2>/dev/null && kill -0 $ch 2>/dev/null; do sleep 1; done; \
             kill -TERM $ch 2>/dev/null; wait $ch",
            server.join(" "),
            parent = std::process::id()
        );
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        // The shell and the server in a process group of their own, so `stop` can signal the
        // server itself, and kill it if it outlives the grace period: signalling the shell alone
        // left it running.
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        c
    }

    /// The path of the binary.
    pub fn path(&self) -> &Path {
        match self {
            Binary::Single(p) | Binary::Server(p) => p,
        }
    }

    /// A binary given explicitly: `clickhouse` or `clickhouse-server` by its file name.
    pub fn at(path: &Path) -> Option<Self> {
        if !is_executable(path) {
            return None;
        }
        let name = path.file_name()?.to_string_lossy();
        Some(if name.contains("clickhouse-server") {
            Binary::Server(path.to_owned())
        } else {
            Binary::Single(path.to_owned())
        })
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManagedError {
    #[error("{INSTALL_HINT}")]
    NotInstalled,
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ClickHouse did not start within {secs} s; see {log}")]
    Timeout { secs: u64, log: PathBuf },
    #[error("ClickHouse exited at start ({status}); see {log}")]
    Exited { status: String, log: PathBuf },
}

/// A running child ClickHouse.
pub struct ManagedClickHouse {
    child: Option<Child>,
    pub url: String,
    pub http_port: u16,
    pub dir: PathBuf,
}

/// The jemalloc settings ClickHouse's own builds compile in: an arena per CPU, large blocks kept
/// in those arenas instead of one that returns them to the kernel on every free, and unused pages
/// returned after 5 s.
const JEMALLOC_CONF: &str =
    "percpu_arena:percpu,oversize_threshold:0,muzzy_decay_ms:5000,dirty_decay_ms:5000";

/// How long a stopping server gets to shut down cleanly before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// Where a managed server's URL is published while it runs.
const URL_FILE: &str = "url";

/// A free loopback port for the server, below the kernel's ephemeral range when it can be read.
///
/// [`restart`](ManagedClickHouse::restart) reuses the ports. A port from the ephemeral range (what
/// binding port 0 gives) can be taken while the server is down by an outgoing connection, even by
/// footfall's own retries connecting to itself on it, and the server then cannot bind it again.
/// The kernel never gives ports below the range to outgoing connections.
fn free_port() -> std::io::Result<u16> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .filter(|low| *low > 10_001);
    if let Some(low) = low {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        for _ in 0..200 {
            let port = rng.gen_range(10_000..low);
            if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
                return Ok(l.local_addr()?.port());
            }
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl ManagedClickHouse {
    /// Starts `binary` with its data in `dir` and waits until it answers.
    pub fn start(binary: &Binary, dir: &Path) -> Result<Self, ManagedError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ManagedError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let dir = dir.canonicalize().map_err(io(dir))?;
        for sub in ["data", "tmp", "user_files", "format_schemas", "log"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(io(&dir.join(sub)))?;
        }
        let http_port = free_port().map_err(io(&dir))?;
        let tcp_port = free_port().map_err(io(&dir))?;
        let config = dir.join("config.xml");
        std::fs::write(&config, config_xml(&dir, http_port, tcp_port)).map_err(io(&config))?;
        std::fs::write(dir.join("users.xml"), USERS_XML).map_err(io(&dir.join("users.xml")))?;
        let mut me = Self {
            child: None,
            url: format!("http://127.0.0.1:{http_port}"),
            http_port,
            dir: dir.clone(),
        };
        me.spawn(binary)?;
        // Other footfall commands on the same data directory (`footfall subject ...` while
        // `serve` runs) find the server here instead of starting a second one.
        std::fs::write(dir.join(URL_FILE), &me.url).map_err(io(&dir.join(URL_FILE)))?;
        tracing::info!(url = %me.url, dir = %dir.display(), "started a managed ClickHouse");
        Ok(me)
    }

    /// The URL of a managed server another footfall process runs in `dir`, if it answers.
    pub fn running_in(dir: &Path) -> Option<String> {
        let url = std::fs::read_to_string(dir.join(URL_FILE)).ok()?;
        let url = url.trim().to_owned();
        let addr = url.strip_prefix("http://")?;
        ping(addr).then_some(url)
    }

    /// Starts the server again after [`stop`](Self::stop), on the same ports and data.
    pub fn restart(&mut self, binary: &Binary) -> Result<(), ManagedError> {
        self.stop();
        self.spawn(binary)
    }

    fn spawn(&mut self, binary: &Binary) -> Result<(), ManagedError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ManagedError::Io { path, source }
        };
        let config = self.dir.join("config.xml");
        let log = self.dir.join("log").join("stdout.log");
        let out = std::fs::File::create(&log).map_err(io(&log))?;
        let err = out.try_clone().map_err(io(&log))?;
        let child = binary
            .command(&config)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(io(&config))?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(60), &log)
    }

    fn wait_ready(&mut self, limit: Duration, log: &Path) -> Result<(), ManagedError> {
        let start = Instant::now();
        let addr = format!("127.0.0.1:{}", self.http_port);
        while start.elapsed() < limit {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(ManagedError::Exited {
                        status: status.to_string(),
                        log: log.to_owned(),
                    });
                }
            }
            if ping(&addr) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.stop();
        Err(ManagedError::Timeout {
            secs: limit.as_secs(),
            log: log.to_owned(),
        })
    }

    /// Stops the server: SIGTERM, then SIGKILL after 15 s.
    pub fn stop(&mut self) {
        self.stop_within(STOP_GRACE);
    }

    /// Stops the server: SIGTERM to the server and its watchdog, then SIGKILL to both once `grace`
    /// is over. Returns once the server no longer answers.
    ///
    /// The SIGKILL is not a formality: after SIGTERM, ClickHouse 18.16 closes its listening
    /// sockets but keeps answering on connections clients hold open (a writer's keep-alive
    /// connection, busy with INSERTs, kept being served for 18 s), so a "stopped" server can go on
    /// taking rows for as long as someone keeps it busy.
    fn stop_within(&mut self, grace: Duration) {
        use rustix::process::{kill_process_group, Pid, Signal};
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = std::fs::remove_file(self.dir.join(URL_FILE));
        let group = Pid::from_child(&child);
        let _ = kill_process_group(group, Signal::TERM);
        let start = Instant::now();
        // The watchdog shell exits only after the server has: its exit means the server's.
        while start.elapsed() < grace {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The shell is not reaped yet, so the group id cannot have been reused.
        let _ = kill_process_group(group, Signal::KILL);
        let _ = child.wait();
        // The server is no longer the shell's child, so wait for what matters: its port closing.
        let addr = format!("127.0.0.1:{}", self.http_port);
        let start = Instant::now();
        while ping(&addr) && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ManagedClickHouse {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A plain HTTP `GET /ping` over a short-lived socket, so no client is needed before start-up.
fn ping(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &match addr.parse() {
            Ok(a) => a,
            Err(_) => return false,
        },
        Duration::from_millis(300),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET /ping HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    buf.starts_with(b"HTTP/1.") && buf.windows(4).any(|w| w == b" 200")
}

fn config_xml(dir: &Path, http_port: u16, tcp_port: u16) -> String {
    let d = dir.display();
    format!(
        r#"<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>{d}/log/server.log</log>
    <errorlog>{d}/log/server.err.log</errorlog>
    <size>10M</size>
    <count>3</count>
  </logger>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <!-- Days in the rollups and dashboards are UTC days, whatever the machine's zone. -->
  <timezone>UTC</timezone>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>200</max_concurrent_queries>
  <mlock_executable>false</mlock_executable>
</yandex>
"#
    )
}

const USERS_XML: &str = r#"<?xml version="1.0"?>
<yandex>
  <profiles>
    <default>
      <max_memory_usage>4000000000</max_memory_usage>
    </default>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas>
    <default>
      <interval>
        <duration>3600</duration>
        <queries>0</queries>
        <errors>0</errors>
        <result_rows>0</result_rows>
        <read_rows>0</read_rows>
        <execution_time>0</execution_time>
      </interval>
    </default>
  </quotas>
</yandex>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_binaries_on_the_given_path_first() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("clickhouse");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let found = Binary::find(Some(dir.path().to_str().unwrap()));
        assert_eq!(found, Some(Binary::Single(bin)));
    }

    #[test]
    fn server_ports_are_free_and_never_ones_an_outgoing_connection_could_take() {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
        let low: u16 = range.split_whitespace().next().unwrap().parse().unwrap();
        for _ in 0..20 {
            let port = free_port().unwrap();
            assert!(
                (10_000..low).contains(&port),
                "{port} vs ephemeral range from {low}"
            );
            TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }

    /// A stand-in for a server that will not go away on SIGTERM (as ClickHouse 18.16 keeps
    /// serving open connections): it answers `/ping` on the configured port and ignores SIGTERM.
    const STUBBORN_SERVER: &str = r#"#!/bin/sh
exec python3 -c '
import re, signal, sys, http.server
signal.signal(signal.SIGTERM, signal.SIG_IGN)
config = open(sys.argv[1].split("=", 1)[1]).read()
port = int(re.search(r"<http_port>(\d+)</http_port>", config).group(1))
class Ping(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"Ok.\n")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Ping).serve_forever()
' "$@"
"#;

    fn processes_mentioning(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                if cmd.contains(text) {
                    found.push(cmd);
                }
            }
        }
        found
    }

    #[test]
    fn stop_ends_a_server_that_ignores_sigterm_and_leaves_no_process() {
        let bin_dir = tempfile::tempdir().unwrap();
        let bin = bin_dir.path().join("clickhouse-server");
        std::fs::write(&bin, STUBBORN_SERVER).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let binary = Binary::at(&bin).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut server = ManagedClickHouse::start(&binary, dir.path()).unwrap();
        let addr = format!("127.0.0.1:{}", server.http_port);
        let config = server.dir.join("config.xml").display().to_string();
        assert!(ping(&addr));
        assert_eq!(
            processes_mentioning(&config).len(),
            2,
            "the watchdog and the server"
        );

        server.stop_within(Duration::from_millis(300));
        assert!(!ping(&addr), "the server still answers after stop");
        assert_eq!(processes_mentioning(&config), Vec::<String>::new());
        assert!(!server.dir.join(URL_FILE).exists());
    }

    #[test]
    fn the_server_gets_clickhouses_own_jemalloc_settings_unless_the_environment_names_others() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("clickhouse-server");
        let seen = dir.path().join("seen");
        let script = format!(
            "#!/bin/sh\nprintf '%s' \"$MALLOC_CONF\" > '{}'\n",
            seen.display()
        );
        std::fs::write(&bin, script).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let binary = Binary::at(&bin).unwrap();
        let config = dir.path().join("config.xml");
        let run = |malloc_conf: Option<&str>| {
            let mut command = binary.command(&config);
            match malloc_conf {
                Some(value) => command.env("MALLOC_CONF", value),
                None => command.env_remove("MALLOC_CONF"),
            };
            assert!(command.status().unwrap().success());
            std::fs::read_to_string(&seen).unwrap()
        };
        assert_eq!(run(None), JEMALLOC_CONF);
        assert!(JEMALLOC_CONF.contains("oversize_threshold:0"));
        assert_eq!(run(Some("narenas:1")), "narenas:1");
        assert_eq!(
            run(Some("")),
            "",
            "an empty setting is the operator's choice too"
        );
    }

    #[test]
    fn the_install_hint_names_both_ways() {
        assert!(INSTALL_HINT.contains("apt-get install -y clickhouse-server"));
        assert!(INSTALL_HINT.contains("clickhouse.com"));
    }
}
