//! Wiring for `footfall serve`: keys, GeoIP, ClickHouse (configured, managed or none), spool, writer and HTTP server.
//!
//! This is the only place that knows every concrete type. The HTTP handlers append to the spool;
//! the writer reads it. Shutdown stops the server first (in-flight requests finish), then closes
//! the spool (its last group is made durable), then lets the writer deliver what is left for up
//! to `shutdown_flush_secs`; whatever ClickHouse has not taken by then stays in the spool for the
//! next start.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use anyhow::{bail, Context};
use clickhouse::Client;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{Admin, AdminParts};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::enrich::geo::MmdbFile;
use crate::enrich::{Enricher, EnricherParts};
use crate::health::Readiness;
use crate::http::{self, origin::Sites, AppState};
use crate::keys::{self, Salts};
use crate::managed::{Binary, ManagedClickHouse, ManagedError};
use crate::metrics::Metrics;
use crate::privacy::blocklist::BlockList;
use crate::schema;
use crate::shared_salts::SharedSalts;
use crate::spool::{self, Appender, SpoolOptions};
use crate::writer::{self, DeliveryState, Destination, WriterConfig};

/// A running collector.
pub struct Running {
    pub addr: SocketAddr,
    /// `None` when no ClickHouse is configured or installed: events wait in the spool.
    pub clickhouse_url: Option<String>,
    pub metrics: Metrics,
    handle: actix_web::dev::ServerHandle,
    server: JoinHandle<std::io::Result<()>>,
    spool: Arc<Appender>,
    shutdown: watch::Sender<bool>,
    writer: Option<JoinHandle<()>>,
    janitor: JoinHandle<()>,
    housekeeping: JoinHandle<()>,
    rollups: JoinHandle<()>,
    salt_sync: Option<JoinHandle<()>>,
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

/// The client for footfall's own database with the admin account (migrations, retention,
/// subject requests, audit log), which is the ingest account unless one is configured.
pub fn admin_client(config: &Config, url: &str) -> Client {
    let client = admin_server_client(config, url)
        .with_database(&config.clickhouse.database)
        // Admin rows are few; 18.16 cannot validate, and current servers do not need to.
        .with_validation(false);
    if config.clickhouse.cluster.is_some() {
        // Audit records, blocks and summaries written through Distributed tables are on their
        // shard when the INSERT returns, so the next read sees them.
        client.with_setting("insert_distributed_sync", "1")
    } else {
        client
    }
}

/// The client the stats API reads with: the analyst account when one is configured (SELECT on
/// the analytic tables only), else the admin account.
pub fn analyst_client(config: &Config, url: &str) -> Client {
    let c = &config.clickhouse;
    match &c.analyst_user {
        Some(user) => {
            let mut client = Client::default()
                .with_url(url)
                .with_user(user)
                .with_database(&c.database)
                .with_validation(false);
            if let Some(p) = c.analyst_password.as_deref().filter(|p| !p.is_empty()) {
                client = client.with_password(p);
            }
            client
        }
        None => admin_client(config, url),
    }
}

/// The admin account without a database (for migrations, which may create it).
pub fn admin_server_client(config: &Config, url: &str) -> Client {
    let c = &config.clickhouse;
    let mut client = Client::default()
        .with_url(url)
        .with_user(c.admin_user.as_deref().unwrap_or(&c.user));
    let password = match &c.admin_user {
        Some(_) => c.admin_password.as_deref().unwrap_or(""),
        None => &c.password,
    };
    if !password.is_empty() {
        client = client.with_password(password);
    }
    client
}

/// The operator side: audit log, block list, subject requests, retention.
pub fn admin(
    config: &Config,
    url: Option<&str>,
    secret: &[u8],
    geo_databases: (String, String),
    clock: SharedClock,
) -> anyhow::Result<Admin> {
    let blocks = Arc::new(BlockList::load(&config.data_dir.join("blocks.json")));
    Admin::new(AdminParts {
        db: url.map(|u| admin_client(config, u)),
        stats_db: url.map(|u| analyst_client(config, u)),
        config: config.clone(),
        secret: secret.to_vec(),
        blocks,
        geo_databases,
        clock,
    })
    .map_err(anyhow::Error::msg)
}

/// The configured server, or a managed one started under the data directory.
pub fn clickhouse_url(
    config: &Config,
    env: &HashMap<String, String>,
) -> anyhow::Result<(String, Option<ManagedClickHouse>)> {
    if let Some(url) = &config.clickhouse.url {
        return Ok((url.clone(), None));
    }
    if let Some(url) = ManagedClickHouse::running_in(&config.data_dir.join("clickhouse")) {
        return Ok((url, None));
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

    let (url, managed) = match clickhouse_url(&config, env) {
        Ok((url, managed)) => (Some(url), managed),
        Err(e) if matches!(e.downcast_ref(), Some(ManagedError::NotInstalled)) => {
            tracing::warn!(
                "no ClickHouse is configured or installed: accepting events into the spool only, \
                 until footfall is restarted with one. {}",
                crate::managed::INSTALL_HINT
            );
            (None, None)
        }
        Err(e) => return Err(e),
    };

    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let enricher = Enricher::new(EnricherParts {
        trusted_proxies: config.trusted_proxies.clone(),
        city,
        provider,
        ua_cache_size: config.limits.ua_cache_size,
        secret: secret.clone(),
        salts: salts.clone(),
        scrub_params: config.privacy.scrub_params.clone(),
        clock: clock.clone(),
        metrics: metrics.clone(),
    });
    let admin = Arc::new(admin(
        &config,
        url.as_deref(),
        &secret,
        enricher.geo_databases(),
        clock.clone(),
    )?);
    let blocks = admin.blocks.clone();

    let spool_dir = config.data_dir.join("spool");
    let (appender, reader) = spool::open(
        SpoolOptions::new(spool_dir.clone(), &config.spool),
        metrics.clone(),
        clock.clone(),
    )
    .with_context(|| format!("cannot open the spool in {}", spool_dir.display()))?;
    let spool = Arc::new(appender);
    let spool_stats = spool.stats().clone();

    let delivery = Arc::new(DeliveryState::default());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let server = url.as_deref().map(|url| server_client(&config, url));
    // Migrations need DDL: with a separate admin account, it applies them (the ingest account
    // may only insert), and the writer does not try.
    let separate_admin = config.clickhouse.admin_user.is_some();
    let migrator = url.as_deref().map(|url| {
        let mut c = admin_client(&config, url);
        c = c.with_database("default");
        if separate_admin {
            c
        } else {
            server_client(&config, url)
        }
    });
    let layout = schema::Layout::from_config(&config.clickhouse);
    if let (Some(server), true) = (&migrator, config.clickhouse.migrate_on_start) {
        // When ClickHouse is already up, the schema is in place before the first request; when it
        // is not, the writer applies it once ClickHouse answers.
        let database = &config.clickhouse.database;
        // DDL on a cluster goes through ZooKeeper, statement by statement: give it longer.
        let wait = Duration::from_secs(if layout.is_cluster() { 120 } else { 5 });
        match tokio::time::timeout(wait, schema::migrate(server, database, &layout)).await {
            Ok(Ok(report)) => {
                for m in &report.applied {
                    tracing::info!(migration = %m, "applied schema migration");
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "ClickHouse is not ready; events are kept in the spool until it is")
            }
            Err(_) => tracing::warn!(
                wait_secs = wait.as_secs(),
                "ClickHouse did not answer in time; events are kept in the spool until it does"
            ),
        }
    }
    // Shared visitor salts: agreed before the first request when ClickHouse answers.
    let salt_sync = match (&url, config.salts.store) {
        (Some(url), crate::config::SaltStore::Clickhouse) => {
            let shared = SharedSalts::new(
                admin_client(&config, url),
                schema::Tables::from_config(&config.clickhouse),
                salts.clone(),
                clock.clone(),
                metrics.clone(),
            );
            shared.first_sync(Duration::from_secs(5)).await;
            Some(tokio::spawn(shared.run()))
        }
        (None, crate::config::SaltStore::Clickhouse) => {
            tracing::warn!("salts.store = \"clickhouse\" without a ClickHouse: using this instance's own visitor salt");
            None
        }
        (_, crate::config::SaltStore::Local) => None,
    };
    let writer = server.clone().map(|server| {
        tokio::spawn(writer::run(
            Destination::Server {
                server,
                database: config.clickhouse.database.clone(),
                migrate: config.clickhouse.migrate_on_start && !separate_admin,
                layout: layout.clone(),
                shards: match config.clickhouse.insert {
                    crate::config::InsertMode::Local => config
                        .clickhouse
                        .shard_urls
                        .iter()
                        .map(|u| {
                            server_client(&config, u).with_database(&config.clickhouse.database)
                        })
                        .collect(),
                    crate::config::InsertMode::Distributed => Vec::new(),
                },
            },
            reader,
            WriterConfig {
                max_rows: config.clickhouse.batch_max_rows,
                max_bytes: config.clickhouse.batch_max_bytes,
                period: Duration::from_millis(config.clickhouse.batch_period_ms.max(1)),
                dead_letter_dir: config.data_dir.join("dead-letter"),
                min_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(10),
                flush_timeout: Duration::from_secs(config.clickhouse.shutdown_flush_secs),
            },
            metrics.clone(),
            delivery.clone(),
            shutdown_rx,
        ))
    });
    // Readiness reads the schema version without row validation, so no version check is needed.
    let readiness_db = server.map(|s| s.with_database(&config.clickhouse.database));

    let state = web::Data::new(AppState {
        limiter: AppState::limiter(&config.limits),
        limits: config.limits.clone(),
        sites,
        enricher,
        spool: spool.clone(),
        metrics: metrics.clone(),
        registry: Arc::new(registry),
        readiness: Readiness::new(readiness_db, spool_stats, delivery),
        clock: clock.clone(),
        assets: http::assets::Assets::default(),
        policies: config.privacy.policies().map_err(anyhow::Error::msg)?,
        blocks,
        admin: http::admin::AdminState::new(admin.clone(), &config.admin, &secret)
            .map_err(anyhow::Error::msg)?,
    });
    let janitor_state = state.clone().into_inner();
    let server_state = state.clone();
    drop(state);

    // The factory runs once per worker, on the worker's own event loop: each gets its own relay
    // for the spool's answers.
    let mut http_server = HttpServer::new(move || {
        App::new()
            .app_data(server_state.clone())
            .app_data(server_state.spool.relay())
            .configure(http::routes)
    });
    if let Some(n) = config.http_workers {
        http_server = http_server.workers(n.get());
    }
    let http_server = http_server
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

    let admin_for_rollups = admin.clone();
    let housekeeping = tokio::spawn(housekeeping(
        admin,
        migrator.filter(|_| separate_admin && config.clickhouse.migrate_on_start),
        config.clickhouse.database.clone(),
        layout.clone(),
        Duration::from_secs(config.privacy.blocklist_refresh_secs.max(1)),
        Duration::from_secs(config.retention.interval_secs),
    ));
    let rollups = tokio::spawn(rollups(
        admin_for_rollups,
        Duration::from_secs(config.rollups.interval_secs),
    ));

    tracing::info!(%addr, "footfall is listening");
    Ok(Running {
        addr,
        clickhouse_url: url,
        metrics,
        handle,
        server,
        spool,
        shutdown,
        writer,
        janitor,
        housekeeping,
        rollups,
        salt_sync,
        managed,
    })
}

/// The operator side's background work: applying migrations with the admin account when
/// ClickHouse first answers, refreshing the block list, moving audit records from the local file
/// into ClickHouse, and retention runs.
async fn housekeeping(
    admin: Arc<Admin>,
    mut migrator: Option<Client>,
    database: String,
    layout: schema::Layout,
    refresh: Duration,
    retention_every: Duration,
) {
    let mut tick = tokio::time::interval(refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first retention run comes one refresh after start (the schema is in place by then).
    let mut next_retention = tokio::time::Instant::now() + refresh;
    loop {
        tick.tick().await;
        if let Some(server) = &migrator {
            match schema::migrate(server, &database, &layout).await {
                Ok(report) => {
                    for m in &report.applied {
                        tracing::info!(migration = %m, "applied schema migration");
                    }
                    migrator = None;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "migrations not applied yet");
                    continue;
                }
            }
        }
        if let Err(e) = admin.refresh_blocks().await {
            tracing::debug!(error = %e, "block list not refreshed; keeping the last one");
        }
        if let Err(e) = admin.audit.flush_pending().await {
            tracing::debug!(error = %e, "local audit records not moved to ClickHouse yet");
        }
        if !retention_every.is_zero() && tokio::time::Instant::now() >= next_retention {
            match admin.retention_run("footfall").await {
                Ok(r) => {
                    next_retention = tokio::time::Instant::now() + retention_every;
                    let removed: u64 = r.iter().map(|t| t.rows_removed).sum();
                    tracing::info!(rows_removed = removed, "retention run");
                }
                Err(e) => {
                    // Retried sooner than the interval, but not every tick: each run is audited.
                    next_retention =
                        tokio::time::Instant::now() + retention_every.min(Duration::from_secs(300));
                    tracing::warn!(error = %e, "retention run failed; will retry");
                }
            }
        }
    }
}

/// Keeps the daily summaries current: every `every`, recomputes the days whose events changed
/// (see `src/rollup.rs`). A failed run (ClickHouse down, schema not applied yet) waits for the next.
async fn rollups(admin: Arc<Admin>, every: Duration) {
    if every.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match admin.rollups_run().await {
            Ok(r) if !r.days.is_empty() => {
                tracing::debug!(days = r.days.len(), "daily summaries recomputed")
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "daily summaries not recomputed this time"),
        }
    }
}

impl Running {
    /// Stops accepting, lets in-flight requests finish, closes the spool, lets the writer deliver
    /// what it can within the flush timeout, stops a managed ClickHouse.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.handle.stop(true).await;
        let served = self.server.await;
        self.janitor.abort();
        let _ = self.janitor.await;
        self.housekeeping.abort();
        let _ = self.housekeeping.await;
        self.rollups.abort();
        let _ = self.rollups.await;
        if let Some(sync) = self.salt_sync.take() {
            sync.abort();
            let _ = sync.await;
        }
        let spool = self.spool.clone();
        tokio::task::spawn_blocking(move || spool.close()).await?;
        let _ = self.shutdown.send(true);
        if let Some(writer) = self.writer.take() {
            writer.await.context("the writer task failed")?;
        }
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
