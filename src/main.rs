//! The `footfall` command line: `serve` (the default), `migrate`, and `schema`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use footfall::clock::SystemClock;
use footfall::config::Config;
use footfall::schema::{self, ServerVersion};
use footfall::serve;

/// Enrichment builds one owned row per event from dozens of short strings: mimalloc serves these
/// small allocations markedly faster than the system allocator (see `benches/README.md`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    Migrate,
    /// Print the schema as it would be applied to a server of the given version.
    Schema {
        /// e.g. 18.16 or 26.1
        #[arg(long)]
        server_version: String,
    },
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
            Cmd::Migrate => run_migrate(config, &env).await,
            Cmd::Schema { server_version } => print_schema(&server_version),
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
        Some(url) => println!(
            "footfall is listening on http://{}/ (ClickHouse at {url})",
            running.addr
        ),
        None => println!(
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

async fn run_migrate(config: Config, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let (url, managed) = serve::clickhouse_url(&config, env)?;
    let client = serve::server_client(&config, &url);
    let report = schema::migrate(&client, &config.clickhouse.database).await?;
    print!("{report}");
    drop(managed);
    Ok(())
}

fn print_schema(version: &str) -> anyhow::Result<()> {
    let v = ServerVersion::parse(version)
        .ok_or_else(|| anyhow::anyhow!("cannot read version {version:?}"))?;
    println!("-- 000_schema_migrations");
    println!("{};", schema::SCHEMA_MIGRATIONS_DDL);
    for m in schema::MIGRATIONS {
        println!("-- {:03}_{}", m.version, m.name);
        for stmt in schema::statements(&schema::render(m.sql, v)) {
            println!("{stmt};");
        }
    }
    Ok(())
}
