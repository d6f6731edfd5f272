//! Wiring for `footfall serve`: keys, GeoIP, ClickHouse (configured or managed), schema, writer and HTTP server.
//!
//! This is the only place that knows every concrete type. The HTTP side holds the sending end of
//! one bounded channel; the writer owns the receiving end. Shutdown stops the server first, which
//! drops the senders, so the writer drains the queue and ends its INSERT before `shutdown` returns.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use anyhow::{bail, Context};
use clickhouse::Client;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::enrich::geo::MmdbFile;
use crate::enrich::{Enricher, EnricherParts};
use crate::http::{self, origin::Sites, AppState};
use crate::keys::{self, Salts};
use crate::managed::{Binary, ManagedClickHouse, ManagedError};
use crate::metrics::Metrics;
use crate::schema::{self, Readiness};
use crate::writer::{self, WriterConfig};

/// A running collector.
pub struct Running {
    pub addr: SocketAddr,
    pub clickhouse_url: String,
    pub metrics: Metrics,
    handle: actix_web::dev::ServerHandle,
    server: JoinHandle<std::io::Result<()>>,
    writer: JoinHandle<()>,
    janitor: JoinHandle<()>,
    managed: Option<ManagedClickHouse>,
}

/// The ClickHouse client for `url` with the configured credentials and no database.
pub fn server_client(config: &Config, url: &str) -> Client {
    let mut client = Client::default()
        .with_url(url)
        .with_user(&config.clickhouse.user);
    if !config.clickhouse.password.is_empty() {
        client = client.with_password(&config.clickhouse.password);
    }
    client
}

/// The configured server, or a managed one started under the data directory.
pub fn clickhouse_url(
    config: &Config,
    env: &HashMap<String, String>,
) -> anyhow::Result<(String, Option<ManagedClickHouse>)> {
    if let Some(url) = &config.clickhouse.url {
        return Ok((url.clone(), None));
    }
    let binary = match &config.clickhouse.binary {
        Some(path) => Binary::at(path),
        None => Binary::find(env.get("PATH").map(String::as_str)),
    }
    .ok_or(ManagedError::NotInstalled)?;
    tracing::info!(
        ?binary,
        "no ClickHouse URL configured; starting a managed ClickHouse"
    );
    let managed = ManagedClickHouse::start(&binary, &config.data_dir.join("clickhouse"))?;
    Ok((managed.url.clone(), Some(managed)))
}

/// Waits for the server to answer, for up to `limit`.
async fn wait_for_clickhouse(
    client: &Client,
    limit: Duration,
) -> anyhow::Result<schema::ServerVersion> {
    let start = std::time::Instant::now();
    loop {
        match schema::server_version(client).await {
            Ok(v) => return Ok(v),
            Err(e) if start.elapsed() >= limit => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Starts everything and returns once the HTTP server is listening.
pub async fn start(
    config: Config,
    env: &HashMap<String, String>,
    clock: SharedClock,
) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let secret = keys::load_or_create_secret(config.secret.as_deref(), &config.data_dir)?;
    let salts = Arc::new(Salts::open(&config.data_dir, clock.clone())?);
    let city = MmdbFile::open(config.geoip.city.as_deref())?;
    let provider = MmdbFile::open(config.geoip.asn.as_deref())?;
    let sites = Sites::new(&config.merged_sites()).map_err(anyhow::Error::msg)?;

    let (url, managed) = clickhouse_url(&config, env)?;
    let server = server_client(&config, &url);
    let version = wait_for_clickhouse(&server, Duration::from_secs(10))
        .await
        .with_context(|| format!("ClickHouse at {url} is not reachable"))?;
    tracing::info!(%version, %url, "connected to ClickHouse");
    if config.clickhouse.migrate_on_start {
        let report = schema::migrate(&server, &config.clickhouse.database).await?;
        for m in &report.applied {
            tracing::info!(migration = %m, "applied schema migration");
        }
    }
    let db = server
        .with_database(&config.clickhouse.database)
        .with_validation(version.supports_validation());

    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let enricher = Enricher::new(EnricherParts {
        trusted_proxies: config.trusted_proxies.clone(),
        city,
        provider,
        ua_cache_size: config.limits.ua_cache_size,
        secret,
        salts,
        clock: clock.clone(),
        metrics: metrics.clone(),
    });

    let (tx, rx) = mpsc::channel(config.clickhouse.queue_capacity);
    let writer = tokio::spawn(writer::run(
        db.clone(),
        rx,
        WriterConfig {
            max_rows: config.clickhouse.batch_max_rows,
            max_bytes: config.clickhouse.batch_max_bytes,
            period: Duration::from_millis(config.clickhouse.batch_period_ms.max(1)),
            dead_letter_dir: config.data_dir.join("dead-letter"),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        },
        metrics.clone(),
    ));

    let state = web::Data::new(AppState {
        limiter: AppState::limiter(&config.limits),
        limits: config.limits.clone(),
        sites,
        enricher,
        sink: tx,
        metrics: metrics.clone(),
        registry: Arc::new(registry),
        readiness: Readiness::new(db),
        assets: http::assets::Assets::default(),
    });
    let janitor_state = state.clone().into_inner();
    let server_state = state.clone();
    drop(state);

    let http_server = HttpServer::new(move || {
        App::new()
            .app_data(server_state.clone())
            .configure(http::routes)
    })
    .disable_signals()
    .shutdown_timeout(30)
    .bind(config.listen)
    .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = http_server
        .addrs()
        .first()
        .copied()
        .context("the server is bound to no address")?;
    let server = http_server.run();
    let handle = server.handle();
    let server = tokio::spawn(server);

    // The rate limiter keeps a cell per client address: forget idle ones every minute.
    let weak = Arc::downgrade(&janitor_state);
    drop(janitor_state);
    let janitor = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let Some(state) = weak.upgrade() else { break };
            state.limiter.retain_recent();
            state.limiter.shrink_to_fit();
        }
    });

    tracing::info!(%addr, "footfall is listening");
    Ok(Running {
        addr,
        clickhouse_url: url,
        metrics,
        handle,
        server,
        writer,
        janitor,
        managed,
    })
}

impl Running {
    /// Stops accepting, lets in-flight requests finish, flushes the writer, stops a managed ClickHouse.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.handle.stop(true).await;
        let served = self.server.await;
        self.janitor.abort();
        let _ = self.janitor.await;
        self.writer.await.context("the writer task failed")?;
        if let Some(mut managed) = self.managed.take() {
            tokio::task::spawn_blocking(move || managed.stop()).await?;
        }
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => bail!("the HTTP server failed: {e}"),
            Err(e) => bail!("the HTTP server task failed: {e}"),
        }
    }
}
