//! The `footfall` command line: `serve` (the default), `migrate`, `schema`, and the operator's
//! commands for data-subject requests, retention, the audit log and API tokens.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use footfall::admin::{Admin, SubjectRequest};
use footfall::clock::SystemClock;
use footfall::config::Config;
use footfall::privacy::blocklist::IdKind;
use footfall::schema::{self, ServerVersion};
use footfall::serve;

/// Enrichment builds one owned row per event from dozens of short strings: mimalloc serves these
/// small allocations markedly faster than the system allocator (see `benches/README.md`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `print!` for the commands' answers. A reader that stops early (`footfall schema | head`) ends
/// the command quietly, as it would any Unix tool, instead of the panic `print!` gives; any other
/// failure to write is reported and ends it with an error. Either way the process exits there: a
/// managed ClickHouse a command started is stopped by its watchdog within a second.
macro_rules! out {
    ($($arg:tt)*) => { write_stdout(format_args!($($arg)*)) };
}

/// `println!` for the commands' answers; see [`out!`].
macro_rules! outln {
    () => { out!("\n") };
    ($($arg:tt)*) => { out!("{}\n", format_args!($($arg)*)) };
}

fn write_stdout(args: std::fmt::Arguments) {
    use std::io::Write;
    exit_on_error(std::io::stdout().lock().write_fmt(args));
}

/// Raw bytes for the commands' answers, with [`out!`]'s handling of a closed or failing output.
fn write_stdout_bytes(bytes: &[u8]) {
    use std::io::Write;
    exit_on_error(std::io::stdout().lock().write_all(bytes));
}

fn exit_on_error(written: std::io::Result<()>) {
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("footfall: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

#[derive(Parser)]
#[command(
    name = "footfall",
    version,
    about = "Self-hosted, privacy-aware visitor statistics"
)]
struct Cli {
    /// TOML configuration file (every setting can also come from FOOTFALL_* variables).
    #[arg(long, global = true, env = "FOOTFALL_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the collector (the default).
    Serve,
    /// Apply the schema to the configured ClickHouse, idempotently, and print what was done.
    Migrate {
        /// Stop after this migration (its number, e.g. 4): upgrade in stages, checking between
        /// them. Later migrations are left for a run without --to.
        #[arg(long)]
        to: Option<u32>,
    },
    /// Print the schema as it would be applied to a server of the given version.
    Schema {
        /// e.g. 18.16 or 26.1
        #[arg(long)]
        server_version: String,
        /// Print the cluster variant (shard-local tables ON CLUSTER, Distributed tables over them).
        #[arg(long)]
        cluster: Option<String>,
        /// With --cluster: plain MergeTree on each shard instead of ReplicatedMergeTree.
        #[arg(long)]
        not_replicated: bool,
        /// The database the Distributed tables point into (with --cluster).
        #[arg(long, default_value = "footfall")]
        database: String,
    },
    /// Data-subject requests: export, delete, block, unblock or correct what is held for one
    /// identifier (every action is audit-logged as `cli:<user>`).
    Subject {
        #[command(subcommand)]
        action: SubjectCmd,
    },
    /// Apply the retention periods now (serve also does this every retention.interval_secs).
    Retention {
        #[command(subcommand)]
        action: RetentionCmd,
    },
    /// Recompute the daily summaries of the days that changed (serve does this every
    /// rollups.interval_secs).
    Rollup {
        #[command(subcommand)]
        action: RollupCmd,
    },
    /// Run a named dashboard query (`schema/queries/`) and print its rows as JSON lines (audited).
    Stats {
        /// The query's name; `footfall stats list` lists them.
        name: String,
        #[arg(long)]
        site: Option<String>,
        /// First day, YYYY-MM-DD (default: 29 days before --to).
        #[arg(long)]
        from: Option<String>,
        /// Last day, YYYY-MM-DD (default: today, UTC).
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        limit: Option<String>,
    },
    /// Read and check the audit log.
    Audit {
        #[command(subcommand)]
        action: AuditCmd,
    },
    /// Ask the running collector whether it is up (`/healthz`) or ready (`/readyz`, with --ready):
    /// exits 0 on 200, 1 otherwise. For container health checks: it needs no curl, takes no lock
    /// and starts nothing.
    Health {
        /// Check readiness (accepting events) instead of liveness.
        #[arg(long)]
        ready: bool,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3)]
        timeout_secs: u64,
    },
    /// API tokens for the admin and stats APIs.
    Token {
        #[command(subcommand)]
        action: TokenCmd,
    },
}

/// Which subject: a site and exactly one identifier.
#[derive(clap::Args)]
#[group(skip)]
#[command(group(clap::ArgGroup::new("identifier").required(true).multiple(false)))]
struct SubjectArgs {
    /// The site id.
    #[arg(long)]
    site: String,
    /// The user id as the site assigned it (footfall stores only its keyed hash).
    #[arg(long, group = "identifier")]
    user_id: Option<String>,
    /// The tracker's client id from the browser's storage (`localStorage.ff_id`).
    #[arg(long, group = "identifier")]
    client_id: Option<String>,
    /// The cookieless visitor id (32 hex digits, as in exports and dashboards).
    #[arg(long, group = "identifier")]
    visitor_id: Option<String>,
    /// The fingerprint id (32 hex digits).
    #[arg(long, group = "identifier")]
    fingerprint_id: Option<String>,
    /// The tracker's session id (`sessionStorage.ff_s`).
    #[arg(long, group = "identifier")]
    session_id: Option<String>,
}

impl SubjectArgs {
    fn request(&self) -> SubjectRequest {
        let (kind, id) = [
            (IdKind::UserId, &self.user_id),
            (IdKind::ClientId, &self.client_id),
            (IdKind::VisitorId, &self.visitor_id),
            (IdKind::FingerprintId, &self.fingerprint_id),
            (IdKind::SessionId, &self.session_id),
        ]
        .into_iter()
        .find_map(|(k, v)| v.clone().map(|v| (k, v)))
        .unwrap_or((IdKind::UserId, String::new()));
        SubjectRequest {
            site: self.site.clone(),
            kind,
            id,
        }
    }
}

#[derive(Subcommand)]
enum SubjectCmd {
    /// Print everything held for the subject (JSON with sources and retention, or CSV rows).
    Export {
        #[command(flatten)]
        who: SubjectArgs,
        /// json or csv
        #[arg(long, default_value = "json")]
        format: String,
        /// Write to this file instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Delete the subject's rows from every table and confirm by counting again.
    Delete {
        #[command(flatten)]
        who: SubjectArgs,
    },
    /// Drop the subject's events at ingest from now on (all instances, within the refresh interval).
    Block {
        #[command(flatten)]
        who: SubjectArgs,
    },
    /// Undo a block.
    Unblock {
        #[command(flatten)]
        who: SubjectArgs,
    },
    /// Re-assign a wrong user id (only user ids are assigned, so only they can be corrected).
    Correct {
        #[command(flatten)]
        who: SubjectArgs,
        /// The right user id; an empty string removes the user id from the rows.
        #[arg(long)]
        to_user_id: String,
    },
}

#[derive(Subcommand)]
enum RetentionCmd {
    /// Drop expired months and delete expired rows now.
    Run,
}

#[derive(Subcommand)]
enum RollupCmd {
    /// Recompute now.
    Run,
}

#[derive(Subcommand)]
enum AuditCmd {
    /// The newest records, newest first (reading is itself audited).
    List {
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Check every record's HMAC: exits non-zero if any record was changed outside footfall.
    Verify,
    /// Move records kept in the local audit file (written while ClickHouse was down) into ClickHouse.
    Flush,
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Make a new random token and print it with the configuration lines that hold its hash.
    New {
        /// Who holds it (recorded in the audit log).
        #[arg(long)]
        name: String,
        /// Comma-separated: stats, subjects, admin.
        #[arg(long, default_value = "stats")]
        scopes: String,
    },
    /// Print the SHA-256 of a token given on stdin (to put an existing token in the configuration).
    Hash,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = match Config::load(cli.config.as_deref(), &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("footfall: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr; stdout carries only the one line saying where footfall listens.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("footfall: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Cmd::Serve) {
            Cmd::Serve => run_serve(config, &env).await,
            Cmd::Migrate { to } => run_migrate(config, &env, to).await,
            Cmd::Schema {
                server_version,
                cluster,
                not_replicated,
                database,
            } => {
                let layout = match cluster {
                    Some(name) => schema::Layout::Cluster {
                        name,
                        replicated: !not_replicated,
                    },
                    None => schema::Layout::Single,
                };
                print_schema(&server_version, &layout, &database)
            }
            Cmd::Subject { action } => run_subject(config, &env, action).await,
            Cmd::Retention {
                action: RetentionCmd::Run,
            } => {
                let (admin, _managed) = operator(&config, &env)?;
                let reports = admin.retention_run(&actor(&env)).await?;
                outln!("{}", serde_json::to_string_pretty(&reports)?);
                Ok(())
            }
            Cmd::Rollup {
                action: RollupCmd::Run,
            } => {
                let (admin, _managed) = operator(&config, &env)?;
                let report = admin.rollups_run().await?;
                outln!("{}", serde_json::to_string_pretty(&report)?);
                Ok(())
            }
            Cmd::Stats {
                name,
                site,
                from,
                to,
                limit,
            } => run_stats(config, &env, &name, site, from, to, limit).await,
            Cmd::Audit { action } => run_audit(config, &env, action).await,
            Cmd::Token { action } => run_token(action),
            Cmd::Health {
                ready,
                timeout_secs,
            } => {
                let path = if ready { "/readyz" } else { "/healthz" };
                let status = tokio::time::timeout(
                    std::time::Duration::from_secs(timeout_secs.max(1)),
                    probe(config.listen, path),
                )
                .await
                .map_err(|_| {
                    anyhow::anyhow!("no answer from {} within {timeout_secs} s", config.listen)
                })??;
                if status != 200 {
                    anyhow::bail!("{path} answered {status}");
                }
                outln!("{path}: 200");
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("footfall: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_serve(config: Config, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let running = serve::start(config, env, Arc::new(SystemClock)).await?;
    match &running.clickhouse_url {
        Some(url) => outln!(
            "footfall is listening on http://{}/ (ClickHouse at {url})",
            running.addr
        ),
        None => outln!(
            "footfall is listening on http://{}/ (no ClickHouse: events are kept in the spool)",
            running.addr
        ),
    }
    wait_for_signal().await;
    tracing::info!("shutting down: no new events, delivering the spool");
    running.shutdown().await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Who runs an operator command, for the audit log.
fn actor(env: &HashMap<String, String>) -> String {
    let user = env
        .get("SUDO_USER")
        .or_else(|| env.get("USER"))
        .or_else(|| env.get("LOGNAME"))
        .map(String::as_str)
        .unwrap_or("unknown");
    format!("cli:{user}")
}

/// The operator side for a command: ClickHouse (configured, a running serve's managed server, or
/// a managed one started for the command) and the data directory's keys and block list.
fn operator(
    config: &Config,
    env: &HashMap<String, String>,
) -> anyhow::Result<(Admin, Option<footfall::managed::ManagedClickHouse>)> {
    let secret = footfall::keys::load_or_create_secret(config.secret.as_deref(), &config.data_dir)?;
    let (url, managed) = serve::clickhouse_url(config, env)?;
    let city = footfall::enrich::geo::MmdbFile::open(config.geoip.city.as_deref())?;
    let asn = footfall::enrich::geo::MmdbFile::open(config.geoip.asn.as_deref())?;
    let admin = serve::admin(
        config,
        Some(&url),
        &secret,
        (city.describe(), asn.describe()),
        Arc::new(SystemClock),
    )?;
    Ok((admin, managed))
}

async fn run_subject(
    config: Config,
    env: &HashMap<String, String>,
    action: SubjectCmd,
) -> anyhow::Result<()> {
    let (admin, _managed) = operator(&config, env)?;
    let me = actor(env);
    let report = match action {
        SubjectCmd::Export {
            who,
            format,
            output,
        } => {
            let csv = match format.as_str() {
                "json" => false,
                "csv" => true,
                other => anyhow::bail!("--format must be json or csv, not {other:?}"),
            };
            let (bytes, row) = admin.export(&me, &who.request(), csv).await?;
            match output {
                Some(path) => {
                    std::fs::write(&path, &bytes)?;
                    eprintln!(
                        "written to {} (audit record {})",
                        path.display(),
                        row.audit_id
                    );
                }
                None => {
                    write_stdout_bytes(&bytes);
                    outln!();
                }
            }
            return Ok(());
        }
        SubjectCmd::Delete { who } => admin.delete(&me, &who.request()).await?,
        SubjectCmd::Block { who } => admin.set_blocked(&me, &who.request(), true).await?,
        SubjectCmd::Unblock { who } => admin.set_blocked(&me, &who.request(), false).await?,
        SubjectCmd::Correct { who, to_user_id } => {
            admin.correct(&me, &who.request(), &to_user_id).await?
        }
    };
    outln!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn run_stats(
    config: Config,
    env: &HashMap<String, String>,
    name: &str,
    site: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
) -> anyhow::Result<()> {
    use footfall::stats;
    if name == "list" {
        for q in stats::queries() {
            outln!("{:<28} {}", q.name, q.description);
        }
        return Ok(());
    }
    let q = stats::find(name)?;
    let today = stats::date_of_ms(footfall::clock::Clock::now_ms(&SystemClock));
    let args = stats::Args::parse(
        site.as_deref(),
        from.as_deref(),
        to.as_deref(),
        limit.as_deref(),
        today,
    )?;
    let (admin, _managed) = operator(&config, env)?;
    let (table, _) = admin.stats_query(&actor(env), q, &args).await?;
    outln!("{}", serde_json::to_string(&table.columns)?);
    for row in &table.rows {
        outln!("{}", serde_json::to_string(row)?);
    }
    Ok(())
}

async fn run_audit(
    config: Config,
    env: &HashMap<String, String>,
    action: AuditCmd,
) -> anyhow::Result<()> {
    let (admin, _managed) = operator(&config, env)?;
    match action {
        AuditCmd::List { limit } => {
            for row in admin.audit_list(&actor(env), limit).await? {
                outln!("{}", serde_json::to_string(&row)?);
            }
        }
        AuditCmd::Verify => {
            let (total, bad) = admin.audit_verify(&actor(env)).await?;
            for r in &bad {
                outln!(
                    "CHANGED {} at {} ({} by {})",
                    r.audit_id,
                    r.at,
                    r.action,
                    r.actor
                );
            }
            outln!(
                "{total} records, {} intact, {} changed",
                total - bad.len(),
                bad.len()
            );
            if !bad.is_empty() {
                anyhow::bail!("{} audit records were changed outside footfall", bad.len());
            }
        }
        AuditCmd::Flush => {
            let n = admin
                .audit
                .flush_pending()
                .await
                .map_err(anyhow::Error::msg)?;
            outln!("{n} records moved into ClickHouse");
        }
    }
    Ok(())
}

/// GETs `path` from the collector listening on `listen` and returns the status code. A wildcard
/// listen address (0.0.0.0, ::) is probed on loopback.
async fn probe(listen: std::net::SocketAddr, path: &str) -> anyhow::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {addr}: {e}"))?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let read = stream.read(&mut head[n..]).await?;
        if read == 0 {
            break;
        }
        n += read;
    }
    // "HTTP/1.1 200 OK"
    std::str::from_utf8(&head[..n])
        .ok()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("{addr} did not answer HTTP"))
}

fn run_token(action: TokenCmd) -> anyhow::Result<()> {
    match action {
        TokenCmd::New { name, scopes } => {
            let scopes: Vec<&str> = scopes
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            for s in &scopes {
                if footfall::auth::Scope::parse(s).is_none() {
                    anyhow::bail!("unknown scope {s:?} (stats, subjects, admin)");
                }
            }
            let token = footfall::auth::new_token();
            outln!("token (give it to {name}; it is not stored anywhere): {token}");
            outln!();
            outln!("[[admin.tokens]]");
            outln!("name = {name:?}");
            outln!("sha256 = {:?}", footfall::auth::token_hash(&token));
            outln!("scopes = {scopes:?}");
        }
        TokenCmd::Hash => {
            let mut token = String::new();
            std::io::stdin().read_line(&mut token)?;
            outln!("{}", footfall::auth::token_hash(token.trim()));
        }
    }
    Ok(())
}

async fn run_migrate(
    config: Config,
    env: &HashMap<String, String>,
    to: Option<u32>,
) -> anyhow::Result<()> {
    let last = to.unwrap_or_else(schema::latest_version);
    if !schema::MIGRATIONS.iter().any(|m| m.version == last) {
        anyhow::bail!(
            "--to {last}: there is no migration {last} (they are numbered 1 to {})",
            schema::latest_version()
        );
    }
    let (url, managed) = serve::clickhouse_url(&config, env)?;
    let client = serve::admin_server_client(&config, &url);
    let report = schema::migrate_to(
        &client,
        &config.clickhouse.database,
        &schema::Layout::from_config(&config.clickhouse),
        last,
    )
    .await?;
    // Stopped before the report is written, which may end the process (see `out!`).
    drop(managed);
    out!("{report}");
    Ok(())
}

fn print_schema(version: &str, layout: &schema::Layout, database: &str) -> anyhow::Result<()> {
    let v = ServerVersion::parse(version)
        .ok_or_else(|| anyhow::anyhow!("cannot read version {version:?}"))?;
    outln!("-- 000_schema_migrations");
    for stmt in layout.statements(schema::SCHEMA_MIGRATIONS_DDL, database) {
        outln!("{stmt};");
    }
    for m in schema::MIGRATIONS {
        outln!("-- {:03}_{}", m.version, m.name);
        for stmt in layout.statements(&schema::render(m.sql, v), database) {
            outln!("{stmt};");
        }
    }
    Ok(())
}
