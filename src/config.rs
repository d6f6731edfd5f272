//! The one configuration struct: every setting, its default, its TOML key and its environment variable.
//!
//! `Config::load(path, env)` reads an optional TOML file and then applies `FOOTFALL_*` overrides
//! from the environment map it is given (the process environment in `main`, a literal map in
//! tests), so library code never reads globals.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use crate::privacy::{ConsentMode, SignalMode};
use crate::privacy::{Groups, Policies, SitePolicy};

pub use crate::spool::FsyncPolicy;

/// Everything footfall can be told. Each field documents its environment variable.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server binds. `FOOTFALL_LISTEN`.
    pub listen: SocketAddr,
    /// HTTP worker threads (each runs its own event loop). Unset: one per CPU the process may
    /// use. Fewer leave cores to a ClickHouse on the same host. `FOOTFALL_HTTP_WORKERS`.
    pub http_workers: Option<NonZeroUsize>,
    /// Directory for the secret, the daily salts and the managed ClickHouse. `FOOTFALL_DATA_DIR`.
    pub data_dir: PathBuf,
    /// Hashing key for fingerprint ids. Generated and persisted in the data dir when absent.
    /// `FOOTFALL_SECRET`.
    pub secret: Option<String>,
    /// CIDRs whose `X-Forwarded-For` / `X-Real-IP` headers are believed. `FOOTFALL_TRUSTED_PROXIES`
    /// (comma separated).
    pub trusted_proxies: Vec<IpNet>,
    /// Sites allowed to send beacons, each with its allowed origins. `FOOTFALL_SITES`
    /// (`demo=http://localhost:*,shop=https://shop.example`; an id may repeat).
    pub sites: Vec<SiteConfig>,
    pub clickhouse: ClickHouseConfig,
    pub spool: SpoolConfig,
    pub geoip: GeoIpConfig,
    pub limits: LimitsConfig,
    pub privacy: PrivacyConfig,
    pub retention: RetentionConfig,
    pub rollups: RollupConfig,
    pub salts: SaltConfig,
    pub admin: AdminConfig,
    /// Log filter in `tracing` syntax. `FOOTFALL_LOG`.
    pub log: String,
}

/// Where rows go.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// HTTP URL of the server. When absent, footfall starts a managed ClickHouse if one is
    /// installed. `FOOTFALL_CLICKHOUSE_URL`.
    pub url: Option<String>,
    /// The ClickHouse binary for the managed server (`clickhouse` or `clickhouse-server`); found
    /// on `PATH` and in the usual system directories when absent. `FOOTFALL_CLICKHOUSE_BINARY`.
    pub binary: Option<PathBuf>,
    /// `FOOTFALL_CLICKHOUSE_DATABASE`.
    pub database: String,
    /// `FOOTFALL_CLICKHOUSE_USER`.
    pub user: String,
    /// `FOOTFALL_CLICKHOUSE_PASSWORD`.
    pub password: String,
    /// The account for migrations, retention, subject requests and the audit log, when it differs
    /// from `user` (see `deploy/clickhouse/`). `FOOTFALL_CLICKHOUSE_ADMIN_USER`.
    pub admin_user: Option<String>,
    /// `FOOTFALL_CLICKHOUSE_ADMIN_PASSWORD`.
    pub admin_password: Option<String>,
    /// The account the dashboards and the stats API read with (the analyst role of
    /// `deploy/clickhouse/`: SELECT on the analytic tables only); unset: the admin account.
    /// `FOOTFALL_CLICKHOUSE_ANALYST_USER`.
    pub analyst_user: Option<String>,
    /// `FOOTFALL_CLICKHOUSE_ANALYST_PASSWORD`.
    pub analyst_password: Option<String>,
    /// A ClickHouse cluster (a `remote_servers` name): the schema becomes shard-local tables
    /// created `ON CLUSTER` with `Distributed` tables of the usual names over them (needs
    /// ZooKeeper or ClickHouse Keeper for the distributed DDL). Unset: one server.
    /// `FOOTFALL_CLICKHOUSE_CLUSTER`.
    pub cluster: Option<String>,
    /// With a cluster: `ReplicatedMergeTree` family engines (replicas per shard, ZooKeeper
    /// paths `/clickhouse/tables/{shard}/<database>/<table>`), else plain MergeTree on each shard.
    /// `FOOTFALL_CLICKHOUSE_REPLICATED`.
    pub replicated: bool,
    /// With a cluster: `distributed` (write through the `Distributed` table, synchronously) or
    /// `local` (write each row straight to its shard's table, with the same sharding function;
    /// needs `shard_urls`). `FOOTFALL_CLICKHOUSE_INSERT`.
    pub insert: InsertMode,
    /// With `insert = "local"`: an HTTP URL of each shard, in the cluster's shard order.
    /// `FOOTFALL_CLICKHOUSE_SHARD_URLS` (comma separated).
    pub shard_urls: Vec<String>,
    /// Rows per INSERT before it is ended. `FOOTFALL_BATCH_MAX_ROWS`.
    pub batch_max_rows: u64,
    /// Uncompressed bytes per INSERT before it is ended. `FOOTFALL_BATCH_MAX_BYTES`.
    pub batch_max_bytes: u64,
    /// Longest time an accepted event waits before its INSERT is ended. `FOOTFALL_BATCH_PERIOD_MS`.
    ///
    /// Two seconds, not one: ClickHouse's CPU per event is mostly writing and merging parts, and
    /// half as many parts cost it ~22 % less per event (benches/README.md, tenth session), which
    /// on a host shared with ClickHouse is throughput for footfall; dashboards lag by at most 2 s.
    pub batch_period_ms: u64,
    /// Apply migrations at start (or when ClickHouse first answers). `FOOTFALL_MIGRATE_ON_START`.
    pub migrate_on_start: bool,
    /// How long shutdown keeps trying to deliver the spool before leaving the rest for the next
    /// start. `FOOTFALL_SHUTDOWN_FLUSH_SECS`.
    pub shutdown_flush_secs: u64,
}

/// How rows reach a cluster's shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InsertMode {
    #[default]
    Distributed,
    Local,
}

impl std::str::FromStr for InsertMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "distributed" => Ok(Self::Distributed),
            "local" => Ok(Self::Local),
            other => Err(format!("{other:?} is not distributed or local")),
        }
    }
}

/// Where the daily visitor salts live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SaltStore {
    /// `salts.json` in the data directory: one instance.
    #[default]
    Local,
    /// The `salts` table in ClickHouse, shared by every instance (see `src/shared_salts.rs`).
    Clickhouse,
}

impl std::str::FromStr for SaltStore {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "local" => Ok(Self::Local),
            "clickhouse" => Ok(Self::Clickhouse),
            other => Err(format!("{other:?} is not local or clickhouse")),
        }
    }
}

/// The daily visitor salts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SaltConfig {
    /// `local` (one instance) or `clickhouse` (several instances computing the same visitor ids).
    /// `FOOTFALL_SALT_STORE`.
    pub store: SaltStore,
}

/// The durable spool between the handlers and the writer (in `<data_dir>/spool`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolConfig {
    /// Bytes of undelivered events kept on disk; beyond it `/api/event` answers 503.
    /// `FOOTFALL_SPOOL_MAX_BYTES`.
    pub max_bytes: u64,
    /// Size at which a segment file is closed and a new one started. `FOOTFALL_SPOOL_SEGMENT_BYTES`.
    pub segment_bytes: u64,
    /// `group` (many requests share one fdatasync, each answered after it), `always` (one
    /// fdatasync per request) or `never` (survives a crash of footfall, not of the machine).
    /// `FOOTFALL_SPOOL_FSYNC`.
    pub fsync: FsyncPolicy,
    /// How long, in microseconds, the committer gathers events to share one fsync before writing
    /// them (0: only those already queued). Under load a window about halves the fsyncs and
    /// lowers footfall's CPU per event and its p99; alone, an event waits that much longer for its
    /// 202. 200 µs landed 14 % more than 300 in alternating runs with a 0.35 ms fsync; 100 and
    /// 1 000 µs landed less than 300 (benches/README.md, twelfth and eighteenth sessions).
    /// `FOOTFALL_SPOOL_GROUP_COMMIT_WAIT_US`.
    pub group_commit_wait_us: u64,
    /// Events waiting for the disk; beyond it the handler answers 503 at once.
    /// `FOOTFALL_QUEUE_CAPACITY`.
    pub queue_capacity: usize,
}

/// GeoIP databases (MaxMind GeoIP2/GeoLite2 or DB-IP `.mmdb` layouts).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GeoIpConfig {
    /// A City or Country database. `FOOTFALL_GEOIP_CITY`.
    pub city: Option<PathBuf>,
    /// An ASN or ISP database. `FOOTFALL_GEOIP_ASN`.
    pub asn: Option<PathBuf>,
}

/// Input limits and rate limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body accepted on the wire (413 above). `FOOTFALL_MAX_BODY_BYTES`.
    pub max_body_bytes: usize,
    /// Largest body after gzip decompression (413 above). `FOOTFALL_MAX_DECOMPRESSED_BYTES`.
    pub max_decompressed_bytes: usize,
    /// Sustained events per second per client address (429 above). `FOOTFALL_RATE_PER_SECOND`.
    pub rate_per_second: u32,
    /// Burst allowed per client address. `FOOTFALL_RATE_BURST`.
    pub rate_burst: u32,
    /// User-agent parses kept in the cache. `FOOTFALL_UA_CACHE_SIZE`.
    pub ua_cache_size: usize,
}

/// Minimisation and consent (see `privacy`), with per-site overrides.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyConfig {
    /// Field groups collected with consent, or when consent is not needed: group names
    /// (pages, location, city, provider, software, locale, screen, hardware, fingerprint,
    /// automation, identity) or the presets `statistics` and `all`. `FOOTFALL_COLLECT`.
    pub collect: Vec<String>,
    /// Field groups collected before consent, after a refusal, or under an honoured GPC/DNT
    /// signal. Empty: such events are dropped. `FOOTFALL_BEFORE_CONSENT`.
    pub before_consent: Vec<String>,
    /// `optional` (full set unless refused) or `required` (full set only after consent).
    /// `FOOTFALL_CONSENT`.
    pub consent: ConsentMode,
    /// Global Privacy Control (`Sec-GPC: 1` or the beacon flag): `honor` or `ignore`. `FOOTFALL_GPC`.
    pub gpc: SignalMode,
    /// Do Not Track (`DNT: 1` or the beacon flag): `honor` or `ignore`. `FOOTFALL_DNT`.
    pub dnt: SignalMode,
    /// URL query/fragment parameter names removed before storage (case-insensitive; names
    /// containing token, password, secret or email always are). `FOOTFALL_SCRUB_PARAMS`.
    pub scrub_params: Vec<String>,
    /// How often the block list is re-read from ClickHouse. `FOOTFALL_BLOCKLIST_REFRESH_SECS`.
    pub blocklist_refresh_secs: u64,
    /// Per-site overrides (TOML only): `[privacy.sites.shop]` with any of collect, before_consent,
    /// consent, gpc, dnt.
    pub sites: BTreeMap<String, SitePrivacyConfig>,
}

/// A site's own minimisation and consent settings; unset ones follow `[privacy]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SitePrivacyConfig {
    pub collect: Option<Vec<String>>,
    pub before_consent: Option<Vec<String>>,
    pub consent: Option<ConsentMode>,
    pub gpc: Option<SignalMode>,
    pub dnt: Option<SignalMode>,
}

/// How long each table keeps data, in days (0 keeps it forever). Enforced by `serve` every
/// `interval_secs` and by `footfall retention run`; every run is audited.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// `events`. `FOOTFALL_RETENTION_EVENTS_DAYS`.
    pub events_days: u32,
    /// `audit_log`. `FOOTFALL_RETENTION_AUDIT_DAYS`.
    pub audit_days: u32,
    /// `sessions` (per-session aggregates with pseudonymous ids). `FOOTFALL_RETENTION_SESSIONS_DAYS`.
    pub sessions_days: u32,
    /// The daily rollups (`daily_stats`, `page_stats`, `dimension_stats`, `navigation`,
    /// `outbound_links`, `day_changes`, `daily_summary`, `session_breakdown`): aggregates, no ids
    /// in the clear. `FOOTFALL_RETENTION_ROLLUPS_DAYS`.
    pub rollups_days: u32,
    /// Seconds between runs in `serve`; 0 disables the automatic runs.
    /// `FOOTFALL_RETENTION_INTERVAL_SECS`.
    pub interval_secs: u64,
}

/// The rollup job that keeps the daily summaries behind the dashboards' overview, time series,
/// entry and exit pages and channels current (`src/rollup.rs`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RollupConfig {
    /// Seconds between runs in `serve`; 0 disables them (then run `footfall rollup run`).
    /// `FOOTFALL_ROLLUP_INTERVAL_SECS`.
    pub interval_secs: u64,
}

impl Default for RollupConfig {
    fn default() -> Self {
        Self { interval_secs: 60 }
    }
}

/// Access to the admin and stats APIs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// API tokens, stored as SHA-256 hashes (`footfall token new` prints one).
    pub tokens: Vec<TokenConfig>,
    /// A token with every scope, named `bootstrap`, from the environment only.
    /// `FOOTFALL_ADMIN_TOKEN`.
    #[serde(skip)]
    pub bootstrap_token: Option<String>,
    /// Failed authentications allowed per client address per minute; beyond it the address gets
    /// 429 on every admin route for a minute. `FOOTFALL_AUTH_FAILURES_PER_MINUTE`.
    pub failures_per_minute: u32,
    /// Failed authentications within 5 minutes (from anywhere) that raise the
    /// `footfall_unauthorised_access_alert` metric to 1. `FOOTFALL_AUTH_ALERT_THRESHOLD`.
    pub alert_threshold: u32,
}

/// One API token: who it is (for the audit log), its hash, what it may do.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    /// Any of `stats` (dashboards), `subjects` (data-subject requests), `admin` (everything).
    pub scopes: Vec<String>,
}

/// One site and one of its allowed origins. Several entries may share an id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub id: String,
    /// `scheme://host[:port]`; the port may be `*`.
    pub origins: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            http_workers: None,
            data_dir: PathBuf::from("footfall-data"),
            secret: None,
            trusted_proxies: Vec::new(),
            sites: vec![SiteConfig {
                id: "demo".into(),
                origins: vec!["http://localhost:*".into(), "http://127.0.0.1:*".into()],
            }],
            clickhouse: ClickHouseConfig::default(),
            spool: SpoolConfig::default(),
            geoip: GeoIpConfig::default(),
            limits: LimitsConfig::default(),
            privacy: PrivacyConfig::default(),
            retention: RetentionConfig::default(),
            rollups: RollupConfig::default(),
            salts: SaltConfig::default(),
            admin: AdminConfig::default(),
            log: "info".into(),
        }
    }
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            url: None,
            binary: None,
            database: "footfall".into(),
            user: "default".into(),
            password: String::new(),
            admin_user: None,
            admin_password: None,
            analyst_user: None,
            analyst_password: None,
            cluster: None,
            replicated: true,
            insert: InsertMode::Distributed,
            shard_urls: Vec::new(),
            batch_max_rows: 50_000,
            // Room for two seconds of a busy core's events (under 1 KiB each) before the period
            // ends.
            batch_max_bytes: 32 * 1024 * 1024,
            batch_period_ms: 2_000,
            migrate_on_start: true,
            shutdown_flush_secs: 10,
        }
    }
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 30,
            segment_bytes: 16 << 20,
            fsync: FsyncPolicy::Group,
            group_commit_wait_us: 200,
            queue_capacity: 65_536,
        }
    }
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Self {
            collect: strings(&crate::privacy::DEFAULT_COLLECT),
            before_consent: strings(&crate::privacy::DEFAULT_BEFORE_CONSENT),
            consent: ConsentMode::Optional,
            gpc: SignalMode::Honor,
            dnt: SignalMode::Honor,
            scrub_params: strings(&crate::privacy::scrub::DEFAULT_SCRUB_PARAMS),
            blocklist_refresh_secs: 10,
            sites: BTreeMap::new(),
        }
    }
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            events_days: 395,
            audit_days: 1825,
            sessions_days: 395,
            rollups_days: 1095,
            interval_secs: 3600,
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            bootstrap_token: None,
            failures_per_minute: 10,
            alert_threshold: 20,
        }
    }
}

impl PrivacyConfig {
    /// The decided policy of every configured site (and the default).
    pub fn policies(&self) -> Result<Policies, String> {
        let base = SitePolicy {
            collect: Groups::parse(&self.collect).map_err(|e| format!("privacy.collect: {e}"))?,
            before_consent: Groups::parse(&self.before_consent)
                .map_err(|e| format!("privacy.before_consent: {e}"))?,
            consent: self.consent,
            gpc: self.gpc,
            dnt: self.dnt,
        };
        let mut sites = BTreeMap::new();
        for (id, s) in &self.sites {
            let groups = |v: &Option<Vec<String>>, default: Groups, what: &str| match v {
                Some(v) => Groups::parse(v).map_err(|e| format!("privacy.sites.{id}.{what}: {e}")),
                None => Ok(default),
            };
            sites.insert(
                id.clone(),
                SitePolicy {
                    collect: groups(&s.collect, base.collect, "collect")?,
                    before_consent: groups(
                        &s.before_consent,
                        base.before_consent,
                        "before_consent",
                    )?,
                    consent: s.consent.unwrap_or(base.consent),
                    gpc: s.gpc.unwrap_or(base.gpc),
                    dnt: s.dnt.unwrap_or(base.dnt),
                },
            );
        }
        Ok(Policies::new(base, sites))
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 * 1024,
            max_decompressed_bytes: 64 * 1024,
            rate_per_second: 20,
            rate_burst: 200,
            ua_cache_size: 16_384,
        }
    }
}

/// Why a configuration could not be loaded. Each variant names the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Env {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads `path` (if given) and applies overrides from `env`.
    pub fn load(path: Option<&Path>, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_owned(),
                    source: Box::new(source),
                })?
            }
            None => Config::default(),
        };
        config.apply_env(env)?;
        config.validate()?;
        Ok(config)
    }

    fn apply_env(&mut self, env: &HashMap<String, String>) -> Result<(), ConfigError> {
        let get = |name: &str| env.get(name).map(|v| v.trim().to_owned());
        if let Some(v) = get("FOOTFALL_LISTEN") {
            self.listen = parse_env("FOOTFALL_LISTEN", &v)?;
        }
        if let Some(v) = get("FOOTFALL_HTTP_WORKERS") {
            self.http_workers = if v.is_empty() {
                None
            } else {
                Some(parse_env("FOOTFALL_HTTP_WORKERS", &v)?)
            };
        }
        if let Some(v) = get("FOOTFALL_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("FOOTFALL_SECRET") {
            self.secret = (!v.is_empty()).then_some(v);
        }
        if let Some(v) = get("FOOTFALL_TRUSTED_PROXIES") {
            self.trusted_proxies = split_list(&v)
                .map(|s| {
                    parse_cidr(s).map_err(|reason| env_err("FOOTFALL_TRUSTED_PROXIES", &v, reason))
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = get("FOOTFALL_SITES") {
            self.sites = parse_sites(&v).map_err(|reason| env_err("FOOTFALL_SITES", &v, reason))?;
        }
        if let Some(v) = get("FOOTFALL_CLICKHOUSE_URL") {
            self.clickhouse.url = (!v.is_empty()).then_some(v);
        }
        if let Some(v) = get("FOOTFALL_CLICKHOUSE_BINARY") {
            self.clickhouse.binary = (!v.is_empty()).then(|| PathBuf::from(v));
        }
        if let Some(v) = get("FOOTFALL_CLICKHOUSE_DATABASE") {
            self.clickhouse.database = v;
        }
        if let Some(v) = get("FOOTFALL_CLICKHOUSE_USER") {
            self.clickhouse.user = v;
        }
        if let Some(v) = env.get("FOOTFALL_CLICKHOUSE_PASSWORD") {
            self.clickhouse.password = v.clone();
        }
        if let Some(v) = get("FOOTFALL_CLICKHOUSE_ADMIN_USER") {
            self.clickhouse.admin_user = (!v.is_empty()).then_some(v);
        }
        if let Some(v) = env.get("FOOTFALL_CLICKHOUSE_ADMIN_PASSWORD") {
            self.clickhouse.admin_password = Some(v.clone());
        }
        if let Some(v) = get("FOOTFALL_CLICKHOUSE_ANALYST_USER") {
            self.clickhouse.analyst_user = (!v.is_empty()).then_some(v);
        }
        if let Some(v) = env.get("FOOTFALL_CLICKHOUSE_ANALYST_PASSWORD") {
            self.clickhouse.analyst_password = Some(v.clone());
        }
        if let Some(v) = get("FOOTFALL_CLICKHOUSE_CLUSTER") {
            self.clickhouse.cluster = (!v.is_empty()).then_some(v);
        }
        if let Some(v) = get("FOOTFALL_CLICKHOUSE_REPLICATED") {
            self.clickhouse.replicated = parse_env("FOOTFALL_CLICKHOUSE_REPLICATED", &v)?;
        }
        if let Some(v) = get("FOOTFALL_CLICKHOUSE_INSERT") {
            self.clickhouse.insert = parse_env("FOOTFALL_CLICKHOUSE_INSERT", &v)?;
        }
        if let Some(v) = get("FOOTFALL_CLICKHOUSE_SHARD_URLS") {
            self.clickhouse.shard_urls = split_list(&v).map(str::to_owned).collect();
        }
        if let Some(v) = get("FOOTFALL_SALT_STORE") {
            self.salts.store = parse_env("FOOTFALL_SALT_STORE", &v)?;
        }
        if let Some(v) = get("FOOTFALL_COLLECT") {
            self.privacy.collect = split_list(&v).map(str::to_owned).collect();
        }
        if let Some(v) = get("FOOTFALL_BEFORE_CONSENT") {
            self.privacy.before_consent = split_list(&v).map(str::to_owned).collect();
        }
        if let Some(v) = get("FOOTFALL_CONSENT") {
            self.privacy.consent = parse_env("FOOTFALL_CONSENT", &v)?;
        }
        if let Some(v) = get("FOOTFALL_GPC") {
            self.privacy.gpc = parse_env("FOOTFALL_GPC", &v)?;
        }
        if let Some(v) = get("FOOTFALL_DNT") {
            self.privacy.dnt = parse_env("FOOTFALL_DNT", &v)?;
        }
        if let Some(v) = get("FOOTFALL_SCRUB_PARAMS") {
            self.privacy.scrub_params = split_list(&v).map(str::to_owned).collect();
        }
        if let Some(v) = get("FOOTFALL_BLOCKLIST_REFRESH_SECS") {
            self.privacy.blocklist_refresh_secs = parse_env("FOOTFALL_BLOCKLIST_REFRESH_SECS", &v)?;
        }
        if let Some(v) = get("FOOTFALL_RETENTION_EVENTS_DAYS") {
            self.retention.events_days = parse_env("FOOTFALL_RETENTION_EVENTS_DAYS", &v)?;
        }
        if let Some(v) = get("FOOTFALL_RETENTION_AUDIT_DAYS") {
            self.retention.audit_days = parse_env("FOOTFALL_RETENTION_AUDIT_DAYS", &v)?;
        }
        if let Some(v) = get("FOOTFALL_RETENTION_SESSIONS_DAYS") {
            self.retention.sessions_days = parse_env("FOOTFALL_RETENTION_SESSIONS_DAYS", &v)?;
        }
        if let Some(v) = get("FOOTFALL_RETENTION_ROLLUPS_DAYS") {
            self.retention.rollups_days = parse_env("FOOTFALL_RETENTION_ROLLUPS_DAYS", &v)?;
        }
        if let Some(v) = get("FOOTFALL_ROLLUP_INTERVAL_SECS") {
            self.rollups.interval_secs = parse_env("FOOTFALL_ROLLUP_INTERVAL_SECS", &v)?;
        }
        if let Some(v) = get("FOOTFALL_RETENTION_INTERVAL_SECS") {
            self.retention.interval_secs = parse_env("FOOTFALL_RETENTION_INTERVAL_SECS", &v)?;
        }
        if let Some(v) = env.get("FOOTFALL_ADMIN_TOKEN") {
            self.admin.bootstrap_token = (!v.trim().is_empty()).then(|| v.trim().to_owned());
        }
        if let Some(v) = get("FOOTFALL_AUTH_FAILURES_PER_MINUTE") {
            self.admin.failures_per_minute = parse_env("FOOTFALL_AUTH_FAILURES_PER_MINUTE", &v)?;
        }
        if let Some(v) = get("FOOTFALL_AUTH_ALERT_THRESHOLD") {
            self.admin.alert_threshold = parse_env("FOOTFALL_AUTH_ALERT_THRESHOLD", &v)?;
        }
        if let Some(v) = get("FOOTFALL_BATCH_MAX_ROWS") {
            self.clickhouse.batch_max_rows = parse_env("FOOTFALL_BATCH_MAX_ROWS", &v)?;
        }
        if let Some(v) = get("FOOTFALL_BATCH_MAX_BYTES") {
            self.clickhouse.batch_max_bytes = parse_env("FOOTFALL_BATCH_MAX_BYTES", &v)?;
        }
        if let Some(v) = get("FOOTFALL_BATCH_PERIOD_MS") {
            self.clickhouse.batch_period_ms = parse_env("FOOTFALL_BATCH_PERIOD_MS", &v)?;
        }
        if let Some(v) = get("FOOTFALL_MIGRATE_ON_START") {
            self.clickhouse.migrate_on_start = parse_env("FOOTFALL_MIGRATE_ON_START", &v)?;
        }
        if let Some(v) = get("FOOTFALL_SHUTDOWN_FLUSH_SECS") {
            self.clickhouse.shutdown_flush_secs = parse_env("FOOTFALL_SHUTDOWN_FLUSH_SECS", &v)?;
        }
        if let Some(v) = get("FOOTFALL_SPOOL_MAX_BYTES") {
            self.spool.max_bytes = parse_env("FOOTFALL_SPOOL_MAX_BYTES", &v)?;
        }
        if let Some(v) = get("FOOTFALL_SPOOL_SEGMENT_BYTES") {
            self.spool.segment_bytes = parse_env("FOOTFALL_SPOOL_SEGMENT_BYTES", &v)?;
        }
        if let Some(v) = get("FOOTFALL_SPOOL_FSYNC") {
            self.spool.fsync = parse_env("FOOTFALL_SPOOL_FSYNC", &v)?;
        }
        if let Some(v) = get("FOOTFALL_SPOOL_GROUP_COMMIT_WAIT_US") {
            self.spool.group_commit_wait_us = parse_env("FOOTFALL_SPOOL_GROUP_COMMIT_WAIT_US", &v)?;
        }
        if let Some(v) = get("FOOTFALL_QUEUE_CAPACITY") {
            self.spool.queue_capacity = parse_env("FOOTFALL_QUEUE_CAPACITY", &v)?;
        }
        if let Some(v) = get("FOOTFALL_GEOIP_CITY") {
            self.geoip.city = (!v.is_empty()).then(|| PathBuf::from(v));
        }
        if let Some(v) = get("FOOTFALL_GEOIP_ASN") {
            self.geoip.asn = (!v.is_empty()).then(|| PathBuf::from(v));
        }
        if let Some(v) = get("FOOTFALL_MAX_BODY_BYTES") {
            self.limits.max_body_bytes = parse_env("FOOTFALL_MAX_BODY_BYTES", &v)?;
        }
        if let Some(v) = get("FOOTFALL_MAX_DECOMPRESSED_BYTES") {
            self.limits.max_decompressed_bytes = parse_env("FOOTFALL_MAX_DECOMPRESSED_BYTES", &v)?;
        }
        if let Some(v) = get("FOOTFALL_RATE_PER_SECOND") {
            self.limits.rate_per_second = parse_env("FOOTFALL_RATE_PER_SECOND", &v)?;
        }
        if let Some(v) = get("FOOTFALL_RATE_BURST") {
            self.limits.rate_burst = parse_env("FOOTFALL_RATE_BURST", &v)?;
        }
        if let Some(v) = get("FOOTFALL_UA_CACHE_SIZE") {
            self.limits.ua_cache_size = parse_env("FOOTFALL_UA_CACHE_SIZE", &v)?;
        }
        if let Some(v) = get("FOOTFALL_LOG") {
            self.log = v;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if self.sites.is_empty() {
            return invalid("at least one site must be configured (FOOTFALL_SITES)".into());
        }
        if let Some(n) = self.http_workers.filter(|n| n.get() > MAX_HTTP_WORKERS) {
            return invalid(format!(
                "http_workers = {n} is more than {MAX_HTTP_WORKERS} (FOOTFALL_HTTP_WORKERS)"
            ));
        }
        for site in &self.sites {
            if !valid_site_id(&site.id) {
                return invalid(format!(
                    "site id {:?} must be 1-64 characters of a-z, A-Z, 0-9, '-', '_', '.'",
                    site.id
                ));
            }
            for origin in &site.origins {
                crate::http::origin::OriginPattern::parse(origin)
                    .map_err(|e| ConfigError::Invalid(format!("site {}: {e}", site.id)))?;
            }
        }
        if !valid_database_name(&self.clickhouse.database) {
            return invalid(format!(
                "clickhouse database name {:?} must be 1-64 characters of a-z, A-Z, 0-9, '_'",
                self.clickhouse.database
            ));
        }
        if let Some(cluster) = &self.clickhouse.cluster {
            // It is written into DDL as an identifier.
            if !valid_database_name(cluster) {
                return invalid(format!(
                    "clickhouse cluster name {cluster:?} must be 1-64 characters of a-z, A-Z, 0-9, '_'"
                ));
            }
            if self.clickhouse.insert == InsertMode::Local && self.clickhouse.shard_urls.is_empty()
            {
                return invalid(
                    "clickhouse.insert = \"local\" needs clickhouse.shard_urls (FOOTFALL_CLICKHOUSE_SHARD_URLS)".into(),
                );
            }
        } else if self.clickhouse.insert == InsertMode::Local {
            return invalid(
                "clickhouse.insert = \"local\" needs a cluster (FOOTFALL_CLICKHOUSE_CLUSTER)"
                    .into(),
            );
        }
        if self.limits.rate_per_second == 0 || self.limits.rate_burst == 0 {
            return invalid("rate_per_second and rate_burst must be at least 1".into());
        }
        if self.spool.queue_capacity == 0 || self.clickhouse.batch_max_rows == 0 {
            return invalid("queue_capacity and batch_max_rows must be at least 1".into());
        }
        self.privacy.policies().map_err(ConfigError::Invalid)?;
        for id in self.privacy.sites.keys() {
            if !self.sites.iter().any(|s| s.id == *id) {
                return invalid(format!("privacy.sites.{id}: no such site in `sites`"));
            }
        }
        crate::auth::Tokens::from_config(&self.admin).map_err(ConfigError::Invalid)?;
        if self.admin.failures_per_minute == 0 {
            return invalid("admin.failures_per_minute must be at least 1".into());
        }
        if self.limits.max_decompressed_bytes < self.limits.max_body_bytes {
            return invalid("max_decompressed_bytes must be at least max_body_bytes".into());
        }
        Ok(())
    }

    /// The site ids with all their origins merged, in configuration order.
    pub fn merged_sites(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for site in &self.sites {
            match out.iter_mut().find(|(id, _)| *id == site.id) {
                Some((_, origins)) => origins.extend(site.origins.iter().cloned()),
                None => out.push((site.id.clone(), site.origins.clone())),
            }
        }
        out
    }
}

/// Site ids and database names share a conservative alphabet so they are safe in paths and SQL.
fn valid_site_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Database names are used as SQL identifiers, so only the plainest alphabet is allowed.
fn valid_database_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

fn env_err(name: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Env {
        name,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// A bound on `http_workers`: each is a thread with its own event loop and buffers, and a
/// mistyped value should be an error rather than thousands of threads.
const MAX_HTTP_WORKERS: usize = 256;

fn parse_env<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e: T::Err| env_err(name, value, e.to_string()))
}

fn split_list(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// A CIDR, or a bare address meaning a single host.
fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    s.parse::<std::net::IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{s:?} is not a CIDR or an IP address"))
}

/// Parses `id=origin,id=origin,...`.
pub fn parse_sites(v: &str) -> Result<Vec<SiteConfig>, String> {
    let mut sites: Vec<SiteConfig> = Vec::new();
    for item in split_list(v) {
        let (id, origin) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not of the form site=origin"))?;
        let (id, origin) = (id.trim(), origin.trim());
        match sites.iter_mut().find(|s| s.id == id) {
            Some(site) => site.origins.push(origin.to_owned()),
            None => sites.push(SiteConfig {
                id: id.to_owned(),
                origins: vec![origin.to_owned()],
            }),
        }
    }
    Ok(sites)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_work_out_of_the_box() {
        let c = Config::load(None, &HashMap::new()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.clickhouse.database, "footfall");
        assert_eq!(c.sites[0].id, "demo");
    }

    #[test]
    fn environment_overrides_every_named_setting() {
        let c = Config::load(
            None,
            &env(&[
                ("FOOTFALL_LISTEN", "0.0.0.0:9999"),
                ("FOOTFALL_DATA_DIR", "/var/lib/footfall"),
                ("FOOTFALL_CLICKHOUSE_URL", "http://ch:8123"),
                ("FOOTFALL_CLICKHOUSE_DATABASE", "stats"),
                ("FOOTFALL_CLICKHOUSE_USER", "ingest"),
                ("FOOTFALL_CLICKHOUSE_PASSWORD", "pw"),
                ("FOOTFALL_GEOIP_CITY", "/g/city.mmdb"),
                ("FOOTFALL_GEOIP_ASN", "/g/asn.mmdb"),
                ("FOOTFALL_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1"),
                ("FOOTFALL_SECRET", "s3cret"),
                (
                    "FOOTFALL_SITES",
                    "demo=http://localhost:*,demo=http://127.0.0.1:*,shop=https://shop.example",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/footfall"));
        assert_eq!(c.clickhouse.url.as_deref(), Some("http://ch:8123"));
        assert_eq!(c.clickhouse.database, "stats");
        assert_eq!(c.clickhouse.user, "ingest");
        assert_eq!(c.clickhouse.password, "pw");
        assert_eq!(c.geoip.city, Some(PathBuf::from("/g/city.mmdb")));
        assert_eq!(c.geoip.asn, Some(PathBuf::from("/g/asn.mmdb")));
        assert_eq!(c.trusted_proxies.len(), 2);
        assert_eq!(c.trusted_proxies[1].to_string(), "192.168.1.1/32");
        assert_eq!(c.secret.as_deref(), Some("s3cret"));
        assert_eq!(c.sites.len(), 2);
        assert_eq!(c.sites[0].origins.len(), 2);
        assert_eq!(c.sites[1].id, "shop");
    }

    #[test]
    fn http_workers_are_one_per_cpu_unless_set_and_bounded() {
        assert_eq!(Config::default().http_workers, None);
        let c = Config::load(None, &env(&[("FOOTFALL_HTTP_WORKERS", "3")])).unwrap();
        assert_eq!(c.http_workers.map(NonZeroUsize::get), Some(3));
        // Empty unsets it, as with the other optional settings.
        let c = Config::load(None, &env(&[("FOOTFALL_HTTP_WORKERS", "")])).unwrap();
        assert_eq!(c.http_workers, None);
        for bad in ["0", "-1", "two", "257"] {
            let err = Config::load(None, &env(&[("FOOTFALL_HTTP_WORKERS", bad)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("FOOTFALL_HTTP_WORKERS"), "{bad}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        std::fs::write(&path, "http_workers = 0\n").unwrap();
        assert!(Config::load(Some(&path), &HashMap::new()).is_err());
        std::fs::write(&path, "http_workers = 1\n").unwrap();
        let c = Config::load(Some(&path), &HashMap::new()).unwrap();
        assert_eq!(c.http_workers.map(NonZeroUsize::get), Some(1));
    }

    #[test]
    fn toml_file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("footfall.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:7000\"\n[clickhouse]\ndatabase = \"fromfile\"\n[[sites]]\nid = \"a\"\norigins = [\"https://a.example\"]\n",
        )
        .unwrap();
        let c = Config::load(Some(&path), &env(&[("FOOTFALL_LISTEN", "127.0.0.1:7001")])).unwrap();
        assert_eq!(c.listen.port(), 7001);
        assert_eq!(c.clickhouse.database, "fromfile");
        assert_eq!(c.sites[0].id, "a");
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = Config::load(None, &env(&[("FOOTFALL_TRUSTED_PROXIES", "nope")])).unwrap_err();
        assert!(e.to_string().contains("FOOTFALL_TRUSTED_PROXIES"), "{e}");
        let e = Config::load(None, &env(&[("FOOTFALL_SITES", "demo")])).unwrap_err();
        assert!(e.to_string().contains("FOOTFALL_SITES"), "{e}");
        let e = Config::load(None, &env(&[("FOOTFALL_SITES", "d=ftp://x")])).unwrap_err();
        assert!(e.to_string().contains("site d"), "{e}");
        let e =
            Config::load(None, &env(&[("FOOTFALL_CLICKHOUSE_DATABASE", "a;drop")])).unwrap_err();
        assert!(e.to_string().contains("database"), "{e}");
        let e = Config::load(None, &env(&[("FOOTFALL_LISTEN", "nowhere")])).unwrap_err();
        assert!(e.to_string().contains("FOOTFALL_LISTEN"), "{e}");
    }

    #[test]
    fn unknown_toml_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:1\"\n").unwrap();
        assert!(Config::load(Some(&path), &HashMap::new()).is_err());
    }

    #[test]
    fn the_documented_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("footfall.example.toml");
        let c = Config::load(Some(&path), &HashMap::new()).unwrap();
        assert_eq!(c, Config::default());
    }
}
