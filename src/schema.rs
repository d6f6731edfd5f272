//! Schema migrations (`schema/*.sql`, embedded), server-version gating, and the readiness check.
//!
//! Migrations are numbered and idempotent; the versions applied are recorded in
//! `schema_migrations`. The few version-specific bits are placeholders rendered from
//! `SELECT version()`: Debian's 18.16 and current ClickHouse run the same files.

use clickhouse::Client;
use serde::Serialize;

/// One migration: its number, a name, and its SQL template.
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "events",
        sql: include_str!("../schema/001_events.sql"),
    },
    Migration {
        version: 2,
        name: "privacy",
        sql: include_str!("../schema/002_privacy.sql"),
    },
    Migration {
        version: 3,
        name: "analytics",
        sql: include_str!("../schema/003_analytics.sql"),
    },
    Migration {
        version: 4,
        name: "salts",
        sql: include_str!("../schema/004_salts.sql"),
    },
    Migration {
        version: 5,
        name: "dimension_input",
        sql: include_str!("../schema/005_dimension_input.sql"),
    },
    Migration {
        version: 6,
        name: "session_states",
        sql: include_str!("../schema/006_session_states.sql"),
    },
    Migration {
        version: 7,
        name: "drop_sessions",
        sql: include_str!("../schema/007_drop_sessions.sql"),
    },
];

impl Migration {
    /// The error of one of this migration's statements.
    fn failed(&self) -> impl FnOnce(clickhouse::error::Error) -> SchemaError {
        let (version, name) = (self.version, self.name);
        move |source| SchemaError::Migration {
            version,
            name,
            source,
        }
    }
}

/// The table of per-session aggregate states, filled by a view from `events`: migration 006's
/// `session_states`, which replaced 003's `sessions`.
pub const SESSIONS: &str = "session_states";

/// Where applied migrations are recorded (created by `migrate` before the first migration).
pub const SCHEMA_MIGRATIONS_DDL: &str = "CREATE TABLE IF NOT EXISTS schema_migrations \
     (version UInt32, name String, applied_at DateTime) ENGINE = MergeTree ORDER BY version";

/// The newest schema version this binary knows.
pub fn latest_version() -> u32 {
    MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0)
}

/// A ClickHouse server version, as far as the schema cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ServerVersion {
    pub major: u32,
    pub minor: u32,
}

impl ServerVersion {
    /// Parses `18.16.1` or `26.1.2.3`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        Some(Self { major, minor })
    }

    /// LowCardinality is experimental before 19.x and must not be used there.
    pub fn low_cardinality(self) -> bool {
        self.major >= 20
    }

    /// `SQL SECURITY DEFINER` on materialised views (24.4 and later; older servers run a view
    /// with the inserting user's rights and do not know the clause).
    pub fn sql_security(self) -> bool {
        (self.major, self.minor) >= (24, 4)
    }

    /// Whether an INSERT that a materialised view makes triggers the views that read that view
    /// (before 19.14), rather than the views that read the table it writes to (since). A chain
    /// of views names its middle link accordingly: `{{DIMENSION_INPUT}}`.
    pub fn chains_through_views(self) -> bool {
        (self.major, self.minor) < (19, 14)
    }

    /// What `dimension_stats_mv` reads on this version (migration 005): the Null table
    /// `dimension_input`, or where view chains follow views, the view that fills it.
    pub fn dimension_input(self) -> &'static str {
        if self.chains_through_views() {
            "dimension_input_mv"
        } else {
            "dimension_input"
        }
    }

    /// Typed row validation needs `RowBinaryWithNamesAndTypes`, which old servers lack.
    pub fn supports_validation(self) -> bool {
        self.major >= 24
    }
}

impl std::fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Fills the placeholders of a migration template for `version`.
pub fn render(sql: &str, version: ServerVersion) -> String {
    let lc = if version.low_cardinality() {
        "LowCardinality(String)"
    } else {
        "String"
    };
    // A view runs as the user who ran the migration (the admin user), so the ingest user, whose
    // INSERT into events fires the views, needs no rights on the columns they read or the tables
    // they fill. Current servers default to this too; saying it keeps it true whatever a
    // server's `default_materialized_view_sql_security` is.
    let security = if version.sql_security() {
        "SQL SECURITY DEFINER"
    } else {
        ""
    };
    fill_select_of(sql)
        .replace("{{LC}}", lc)
        .replace(MV_SECURITY, security)
        .replace(DIMENSION_INPUT, version.dimension_input())
}

/// The placeholder between a view's target and its query (SQL SECURITY, see `render`).
pub const MV_SECURITY: &str = "{{MV_SECURITY}}";

/// `{{SELECT_OF <view>}}`: the query of a view the same migration creates. A migration that fills
/// a new view's table from what `events` already holds (006) runs exactly the view's query.
pub const SELECT_OF: &str = "{{SELECT_OF ";

/// Replaces each `{{SELECT_OF <view>}}` with that view's query; an unknown view's placeholder is
/// left in place (and the statement fails).
fn fill_select_of(sql: &str) -> String {
    let mut out = sql.to_owned();
    if !sql.contains(SELECT_OF) {
        return out;
    }
    let stmts = statements(sql);
    let mut from = 0;
    while let Some(at) = out[from..].find(SELECT_OF).map(|i| from + i) {
        let start = at + SELECT_OF.len();
        let Some(len) = out[start..].find("}}") else {
            break;
        };
        let view = &out[start..start + len];
        let query = stmts.iter().find_map(|s| {
            view_parts(s)
                .filter(|(name, _, _)| *name == view)
                .map(|(_, _, query)| query.to_owned())
        });
        match query {
            Some(query) => {
                out.replace_range(at..start + len + 2, &query);
                from = at + query.len();
            }
            None => from = start,
        }
    }
    out
}

/// The view, target table and query of a `CREATE MATERIALIZED VIEW IF NOT EXISTS v TO t AS ...`
/// statement, rendered or not.
pub(crate) fn view_parts(stmt: &str) -> Option<(&str, &str, &str)> {
    let rest = stmt.strip_prefix("CREATE MATERIALIZED VIEW IF NOT EXISTS ")?;
    let mut words = rest.splitn(4, char::is_whitespace);
    let (name, to, table, body) = (words.next()?, words.next()?, words.next()?, words.next()?);
    if to != "TO" {
        return None;
    }
    let body = body.trim_start();
    let body = body
        .strip_prefix(MV_SECURITY)
        .or_else(|| body.strip_prefix("SQL SECURITY DEFINER"))
        .unwrap_or(body)
        .trim_start();
    Some((name, table, body.strip_prefix("AS")?.trim()))
}

/// The placeholder for what `dimension_stats_mv` reads (`ServerVersion::dimension_input`).
pub const DIMENSION_INPUT: &str = "{{DIMENSION_INPUT}}";

/// The view a `CREATE MATERIALIZED VIEW IF NOT EXISTS` statement creates.
pub(crate) fn created_view(stmt: &str) -> Option<&str> {
    stmt.strip_prefix("CREATE MATERIALIZED VIEW IF NOT EXISTS ")?
        .split_whitespace()
        .next()
}

/// The table or view a `DROP TABLE IF EXISTS` statement drops.
pub(crate) fn dropped(stmt: &str) -> Option<&str> {
    stmt.strip_prefix("DROP TABLE IF EXISTS ")?
        .split_whitespace()
        .next()
}

/// The table a `CREATE TABLE IF NOT EXISTS` statement creates.
pub(crate) fn created_table(stmt: &str) -> Option<&str> {
    let rest = stmt.strip_prefix("CREATE TABLE IF NOT EXISTS ")?;
    let len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    Some(&rest[..len])
}

/// Whether a migration creates `name` as a table (not a view).
fn is_table(name: &str) -> bool {
    MIGRATIONS.iter().any(|m| {
        statements(m.sql)
            .iter()
            .any(|s| created_table(s) == Some(name))
    })
}

/// The statements of a rendered migration: split on `;` at line ends, comments dropped.
pub fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") || trimmed.is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            let stmt = current.trim().trim_end_matches(';').trim().to_owned();
            if !stmt.is_empty() {
                out.push(stmt);
            }
            current.clear();
        }
    }
    let rest = current.trim();
    if !rest.is_empty() {
        out.push(rest.to_owned());
    }
    out
}

/// Where footfall's tables live: one server, or a cluster of shards.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Layout {
    #[default]
    Single,
    /// Each table `t` is `t_local` on every shard (created `ON CLUSTER`, Replicated engines when
    /// `replicated`), and `t` is a `Distributed` table over them, so every query reads `t` as on
    /// one server. Materialised views run on each shard over its `events_local`.
    Cluster { name: String, replicated: bool },
}

/// How rows of each table are spread over shards (the `Distributed` sharding key).
fn sharding_key(table: &str) -> &'static str {
    match table {
        // A visitor's events stay together, so each shard's views see whole sessions. footfall's
        // `insert = "local"` computes the same: the first 4 bytes of the id, little-endian.
        "events" => "reinterpretAsUInt32(visitor_id)",
        // Read with FINAL or "newest version": every version of a key must be on one shard.
        "daily_summary" | "session_breakdown" | "daily_breakdown" | "subject_blocks" => {
            "cityHash64(site)"
        }
        "salts" => "toUInt32(day)",
        _ => "rand()",
    }
}

impl Layout {
    pub fn from_config(c: &crate::config::ClickHouseConfig) -> Self {
        match &c.cluster {
            Some(name) => Layout::Cluster {
                name: name.clone(),
                replicated: c.replicated,
            },
            None => Layout::Single,
        }
    }

    /// ` ON CLUSTER <name>` for DDL and mutations on a cluster, nothing on one server.
    pub fn on_cluster(&self) -> String {
        match self {
            Layout::Single => String::new(),
            Layout::Cluster { name, .. } => format!(" ON CLUSTER {name}"),
        }
    }

    /// The table that holds the rows of `table` (what mutations and partitions act on).
    pub fn local(&self, table: &str) -> String {
        match self {
            Layout::Single => table.to_owned(),
            Layout::Cluster { .. } => format!("{table}_local"),
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Layout::Cluster { .. })
    }

    /// The statements of one rendered migration for this layout (`database` is footfall's).
    pub fn statements(&self, sql: &str, database: &str) -> Vec<String> {
        let plain = statements(sql);
        let Layout::Cluster { name, replicated } = self else {
            return plain;
        };
        // A view that reads another view reads it by its own name; one that reads a table reads
        // the shard's `_local` table.
        let views: Vec<&str> = plain.iter().filter_map(|s| created_view(s)).collect();
        let mut out = Vec::new();
        for stmt in &plain {
            if let Some(table) = created_table(stmt) {
                let body = &stmt["CREATE TABLE IF NOT EXISTS ".len() + table.len()..];
                // A Null table only passes an INSERT on to the views over it, on the shard where
                // it happens: nothing to replicate, nothing to read through a Distributed table.
                let passes_through = body.contains("ENGINE = Null");
                let body = if *replicated && !passes_through {
                    replicated_engine(body, database, table)
                } else {
                    body.to_owned()
                };
                // Names are qualified: each shard runs the DDL from the distributed queue, where
                // the initiator's current database does not apply.
                out.push(format!(
                    "CREATE TABLE IF NOT EXISTS {database}.{table}_local ON CLUSTER {name}{body}"
                ));
                if passes_through {
                    continue;
                }
                out.push(format!(
                    "CREATE TABLE IF NOT EXISTS {database}.{table} ON CLUSTER {name} \
                     AS {database}.{table}_local \
                     ENGINE = Distributed({name}, {database}, {table}_local, {})",
                    sharding_key(table)
                ));
            } else if let Some(rest) = stmt.strip_prefix("CREATE MATERIALIZED VIEW IF NOT EXISTS ")
            {
                // `v TO t AS SELECT ... FROM s`: on every shard, from its own rows of `s`.
                let mut words = rest.splitn(4, ' ');
                let (view, _to, target, select) = (
                    words.next().unwrap_or(""),
                    words.next(),
                    words.next().unwrap_or(""),
                    words.next().unwrap_or(""),
                );
                let select = match source_of(select) {
                    Some((at, source)) => {
                        let local = if views.contains(&source) {
                            ""
                        } else {
                            "_local"
                        };
                        format!(
                            "{}{database}.{source}{local}{}",
                            &select[..at],
                            &select[at + source.len()..]
                        )
                    }
                    None => select.to_owned(),
                };
                out.push(format!(
                    "CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.{view} ON CLUSTER {name} \
                     TO {database}.{target}_local {select}"
                ));
            } else if let Some(dropped) = dropped(stmt) {
                out.push(format!(
                    "DROP TABLE IF EXISTS {database}.{dropped} ON CLUSTER {name}"
                ));
                // A table is the Distributed one over `_local` tables, which hold its rows.
                if is_table(dropped) {
                    out.push(format!(
                        "DROP TABLE IF EXISTS {database}.{dropped}_local ON CLUSTER {name}"
                    ));
                }
            } else {
                out.push(stmt.clone());
            }
        }
        out
    }
}

/// The table a query reads first (its first `FROM`), and where that name starts in it.
pub(crate) fn source_of(select: &str) -> Option<(usize, &str)> {
    let (at, word) = select.match_indices("FROM ").find(|(at, _)| {
        select[..*at]
            .chars()
            .next_back()
            .is_none_or(char::is_whitespace)
    })?;
    let start = at + word.len();
    let rest = &select[start..];
    let len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    Some((start, &rest[..len]))
}

/// footfall's tables on a server or a cluster, as the admin side addresses them: reads and
/// inserts use the plain names (the `Distributed` tables on a cluster), mutations and
/// partitions the tables that hold the rows, and system tables of every shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub database: String,
    pub layout: Layout,
}

impl Tables {
    pub fn from_config(c: &crate::config::ClickHouseConfig) -> Self {
        Self {
            database: c.database.clone(),
            layout: Layout::from_config(c),
        }
    }

    /// One server with footfall's database (tests, single-node tools).
    pub fn single(database: &str) -> Self {
        Self {
            database: database.to_owned(),
            layout: Layout::Single,
        }
    }

    /// `ALTER TABLE <this> ...`: the table holding `table`'s rows, `ON CLUSTER` (and qualified:
    /// shards run it outside this session) when needed.
    pub fn alter(&self, table: &str) -> String {
        match &self.layout {
            Layout::Single => table.to_owned(),
            Layout::Cluster { .. } => format!(
                "{}.{}{}",
                self.database,
                self.layout.local(table),
                self.layout.on_cluster()
            ),
        }
    }

    /// A system table (`mutations`, `parts`) of this server, or of every shard of the cluster.
    pub fn system(&self, name: &str) -> String {
        match &self.layout {
            Layout::Single => format!("system.{name}"),
            Layout::Cluster { name: cluster, .. } => {
                format!("cluster('{cluster}', system, {name})")
            }
        }
    }

    /// The table name as system tables know it (`t_local` on a cluster).
    pub fn stored(&self, table: &str) -> String {
        self.layout.local(table)
    }
}

/// `ENGINE = XMergeTree[(args)]` as `ReplicatedXMergeTree('<zk path>', '{replica}'[, args])`.
fn replicated_engine(body: &str, database: &str, table: &str) -> String {
    let Some(at) = body.find("ENGINE = ") else {
        return body.to_owned();
    };
    let start = at + "ENGINE = ".len();
    let name_len = body[start..]
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(body.len() - start);
    let engine = &body[start..start + name_len];
    let after = &body[start + name_len..];
    let (args, rest) = match after.strip_prefix('(') {
        Some(inner) => match inner.find(')') {
            Some(close) => (inner[..close].trim(), &inner[close + 1..]),
            None => ("", after),
        },
        None => ("", after),
    };
    let path = format!("'/clickhouse/tables/{{shard}}/{database}/{table}_local', '{{replica}}'");
    let args = if args.is_empty() {
        path
    } else {
        format!("{path}, {args}")
    };
    format!("{}ENGINE = Replicated{engine}({args}){rest}", &body[..at])
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot reach ClickHouse: {0}")]
    Unreachable(clickhouse::error::Error),
    #[error("ClickHouse reported version {0:?}, which footfall cannot read")]
    Version(String),
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: u32,
        name: &'static str,
        source: clickhouse::error::Error,
    },
    #[error("{what} failed: {source}")]
    Query {
        what: &'static str,
        source: clickhouse::error::Error,
    },
    #[error("ClickHouse does not match footfall's configuration: {0}")]
    Config(String),
}

/// Asks the server for its version. Works on every version (plain RowBinary, no validation).
pub async fn server_version(client: &Client) -> Result<ServerVersion, SchemaError> {
    let v: String = client
        .clone()
        .with_validation(false)
        .query("SELECT version()")
        .fetch_one()
        .await
        .map_err(SchemaError::Unreachable)?;
    ServerVersion::parse(&v).ok_or(SchemaError::Version(v))
}

/// What `migrate` did.
#[derive(Debug, Default, Serialize)]
pub struct MigrationReport {
    pub server_version: Option<ServerVersion>,
    pub database: String,
    pub created_database: bool,
    pub applied: Vec<String>,
    pub already_applied: Vec<String>,
    /// Views re-created as this server's version must have them (`relink_chain`).
    pub relinked: Vec<String>,
    /// Migrations after the last one asked for (`footfall migrate --to`), left for a later run.
    pub left: Vec<String>,
}

impl std::fmt::Display for MigrationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(v) = self.server_version {
            writeln!(f, "ClickHouse {v}, database `{}`", self.database)?;
        }
        if self.created_database {
            writeln!(f, "created database `{}`", self.database)?;
        }
        for m in &self.already_applied {
            writeln!(f, "already applied: {m}")?;
        }
        for m in &self.applied {
            writeln!(f, "applied: {m}")?;
        }
        for v in &self.relinked {
            writeln!(
                f,
                "re-created: {v} (the server's version triggers views differently from the one it was created on)"
            )?;
        }
        for m in &self.left {
            writeln!(f, "left for a later run (after --to): {m}")?;
        }
        if self.applied.is_empty() && self.left.is_empty() {
            writeln!(f, "schema is current (version {})", latest_version())?;
        }
        Ok(())
    }
}

/// Applies every migration not yet recorded in `database`, creating the database if needed.
///
/// `server` must not have a database set; `database` has been validated as a plain identifier.
pub async fn migrate(
    server: &Client,
    database: &str,
    layout: &Layout,
) -> Result<MigrationReport, SchemaError> {
    migrate_to(server, database, layout, latest_version()).await
}

/// [`migrate`], stopping after migration `last`: an operator upgrading in stages applies up to a
/// version, checks, and runs again for the rest. Later migrations are listed as left.
pub async fn migrate_to(
    server: &Client,
    database: &str,
    layout: &Layout,
    last: u32,
) -> Result<MigrationReport, SchemaError> {
    let version = server_version(server).await?;
    let server = server.clone().with_validation(false);
    let mut report = MigrationReport {
        server_version: Some(version),
        database: database.to_owned(),
        ..MigrationReport::default()
    };
    let exists: u8 = server
        .query("SELECT count() > 0 FROM system.databases WHERE name = ?")
        .bind(database)
        .fetch_one()
        .await
        .map_err(|source| SchemaError::Query {
            what: "looking up the database",
            source,
        })?;
    // On a cluster the database must exist on every shard, whatever this one has.
    if exists == 0 || layout.is_cluster() {
        server
            .query(&format!(
                "CREATE DATABASE IF NOT EXISTS ?{}",
                layout.on_cluster()
            ))
            .bind(clickhouse::sql::Identifier(database))
            .execute()
            .await
            .map_err(|source| SchemaError::Query {
                what: "creating the database",
                source,
            })?;
        report.created_database = exists == 0;
    }
    let mut db = server.with_database(database);
    if layout.is_cluster() {
        // Rows written through a Distributed table are on their shard when the INSERT returns.
        db = db.with_setting("insert_distributed_sync", "1");
    }
    for stmt in layout.statements(SCHEMA_MIGRATIONS_DDL, database) {
        db.query(&stmt)
            .execute()
            .await
            .map_err(|source| SchemaError::Query {
                what: "creating schema_migrations",
                source,
            })?;
    }
    let applied: Vec<u32> = db
        .query("SELECT DISTINCT version FROM schema_migrations")
        .fetch_all()
        .await
        .map_err(|source| SchemaError::Query {
            what: "reading schema_migrations",
            source,
        })?;
    for m in MIGRATIONS {
        let label = format!("{:03}_{}", m.version, m.name);
        if applied.contains(&m.version) {
            report.already_applied.push(label);
            continue;
        }
        if m.version > last {
            report.left.push(label);
            continue;
        }
        run(&db, m, layout.statements(&render(m.sql, version), database)).await?;
        db.query("INSERT INTO schema_migrations (version, name, applied_at) SELECT ?, ?, now()")
            .bind(m.version)
            .bind(m.name)
            .execute()
            .await
            .map_err(m.failed())?;
        report.applied.push(label);
    }
    if relink_chain(&db, database, layout, version).await? {
        report.relinked.push(CHAIN_END.to_owned());
    }
    Ok(report)
}

/// The view at the end of migration 005's chain.
const CHAIN_END: &str = "dimension_stats_mv";

/// Re-creates the chain's last view when this server would not trigger it: a server upgraded
/// across 19.14 keeps the view as the old version needed it (see `chains_through_views`), and
/// `dimension_stats` would silently stop growing. Returns whether it did.
async fn relink_chain(
    db: &Client,
    database: &str,
    layout: &Layout,
    version: ServerVersion,
) -> Result<bool, SchemaError> {
    let middle = version.dimension_input();
    // A view is known by its name on a shard too; the Null table is the shard's `_local` one.
    let source = if version.chains_through_views() {
        middle.to_owned()
    } else {
        layout.local(middle)
    };
    // Empty before migration 005; 1 when the source triggers the view.
    let linked: Vec<u8> = db
        .query(
            "SELECT has(dependencies_table, ?) FROM system.tables WHERE database = ? AND name = ?",
        )
        .bind(CHAIN_END)
        .bind(database)
        .bind(&source)
        .fetch_all()
        .await
        .map_err(|source| SchemaError::Query {
            what: "checking what dimension_stats_mv reads",
            source,
        })?;
    if linked != [0] {
        return Ok(false);
    }
    let Some(m) = MIGRATIONS.iter().find(|m| m.version == 5) else {
        return Ok(false);
    };
    let relink = layout
        .statements(&render(m.sql, version), database)
        .into_iter()
        .filter(|s| {
            dropped(s)
                .or_else(|| created_view(s))
                .is_some_and(|n| n.rsplit('.').next() == Some(CHAIN_END))
        });
    run(db, m, relink).await?;
    Ok(true)
}

/// Runs statements of migration `m`, in order.
async fn run(
    db: &Client,
    m: &Migration,
    statements: impl IntoIterator<Item = String>,
) -> Result<(), SchemaError> {
    for stmt in statements {
        db.query(&stmt).execute().await.map_err(m.failed())?;
    }
    Ok(())
}

/// The current schema version recorded in `db` (0 when none).
pub async fn current_version(db: &Client) -> Result<u32, clickhouse::error::Error> {
    db.clone()
        .with_validation(false)
        .query("SELECT toUInt32(max(version)) FROM schema_migrations")
        .fetch_one()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(
            ServerVersion::parse("18.16.1"),
            Some(ServerVersion {
                major: 18,
                minor: 16
            })
        );
        assert_eq!(
            ServerVersion::parse("26.1.2.3"),
            Some(ServerVersion {
                major: 26,
                minor: 1
            })
        );
        assert_eq!(ServerVersion::parse("x"), None);
    }

    #[test]
    fn low_cardinality_only_on_new_servers() {
        let old = render(
            "a {{LC}}",
            ServerVersion {
                major: 18,
                minor: 16,
            },
        );
        let new = render(
            "a {{LC}}",
            ServerVersion {
                major: 26,
                minor: 1,
            },
        );
        assert_eq!(old, "a String");
        assert_eq!(new, "a LowCardinality(String)");
    }

    #[test]
    fn every_migration_renders_without_placeholders() {
        for m in MIGRATIONS {
            for v in [
                ServerVersion {
                    major: 18,
                    minor: 16,
                },
                ServerVersion {
                    major: 26,
                    minor: 1,
                },
            ] {
                let sql = render(m.sql, v);
                assert!(!sql.contains("{{"), "{} on {v}", m.name);
                assert!(!statements(&sql).is_empty());
            }
        }
    }

    #[test]
    fn a_migration_fills_a_new_views_table_with_the_views_own_query() {
        let sql = "CREATE MATERIALIZED VIEW IF NOT EXISTS v_mv TO v {{MV_SECURITY}} AS\n\
                   SELECT site, count() AS n FROM events GROUP BY site;\n\
                   INSERT INTO v\n{{SELECT_OF v_mv}};\n\
                   INSERT INTO w\n{{SELECT_OF nothing}};\n";
        let new = ServerVersion {
            major: 26,
            minor: 9,
        };
        let stmts = statements(&render(sql, new));
        assert_eq!(
            stmts[0],
            "CREATE MATERIALIZED VIEW IF NOT EXISTS v_mv TO v SQL SECURITY DEFINER AS\n\
             SELECT site, count() AS n FROM events GROUP BY site"
        );
        assert_eq!(
            stmts[1],
            "INSERT INTO v\nSELECT site, count() AS n FROM events GROUP BY site"
        );
        assert_eq!(stmts[2], "INSERT INTO w\n{{SELECT_OF nothing}}");
        // 006 fills session_states with its view's query, key expression included.
        let m = MIGRATIONS.iter().find(|m| m.version == 6).expect("006");
        let stmts = statements(&render(m.sql, new));
        let (_, _, query) = stmts.iter().find_map(|s| view_parts(s)).expect("the view");
        assert!(
            query.starts_with("WITH bitOr(") && query.ends_with("GROUP BY site, day, session_id")
        );
        assert!(stmts.contains(&format!("INSERT INTO session_states\n{query}")));
    }

    #[test]
    fn no_column_can_hold_an_ip_address() {
        for m in MIGRATIONS {
            let lower = statements(&render(
                m.sql,
                ServerVersion {
                    major: 26,
                    minor: 1,
                },
            ))
            .join("\n")
            .to_ascii_lowercase();
            for word in [
                "ipv4",
                "ipv6",
                "ip ",
                "ip_address",
                "client_ip",
                "remote_addr",
                "x_forwarded",
            ] {
                assert!(
                    !lower.contains(word),
                    "migration {} mentions {word:?}",
                    m.name
                );
            }
        }
    }

    #[test]
    fn statements_split_on_line_end_semicolons() {
        let s = statements(
            "-- c\nCREATE TABLE a (x String DEFAULT ';');\n\nCREATE TABLE b (y UInt8)\n",
        );
        assert_eq!(
            s,
            vec![
                "CREATE TABLE a (x String DEFAULT ';')",
                "CREATE TABLE b (y UInt8)"
            ]
        );
    }

    #[test]
    fn the_source_of_a_query_is_the_name_after_its_first_from() {
        let q = "SELECT site, DATE_FROM x AS y\nFROM dimension_input\nARRAY JOIN a FROM b";
        let (at, source) = source_of(q).unwrap();
        assert_eq!(source, "dimension_input");
        assert_eq!(&q[at..at + source.len()], "dimension_input");
        assert_eq!(source_of("SELECT 1 FROM events"), Some((14, "events")));
        assert_eq!(source_of("SELECT 1"), None);
    }

    #[test]
    fn a_chain_of_views_reads_its_middle_link_as_the_server_triggers_it() {
        let v = |major, minor| ServerVersion { major, minor };
        let last = |version| {
            let sql = render(MIGRATIONS[4].sql, version);
            statements(&sql)
                .into_iter()
                .find(|s| s.contains("dimension_stats_mv TO"))
                .expect("dimension_stats_mv")
        };
        assert!(last(v(18, 16)).contains("FROM dimension_input_mv\n"));
        assert!(last(v(19, 13)).contains("FROM dimension_input_mv\n"));
        assert!(last(v(19, 14)).contains("FROM dimension_input\n"));
        assert!(last(v(26, 9)).contains("FROM dimension_input\n"));
        // The view it reads exists before it is created (18.16 checks).
        let sql = render(MIGRATIONS[4].sql, v(18, 16));
        let order: Vec<String> = statements(&sql);
        let feeder = order
            .iter()
            .position(|s| s.contains("dimension_input_mv TO"));
        let reader = order
            .iter()
            .position(|s| s.contains("dimension_stats_mv TO"));
        assert!(feeder < reader, "{order:?}");
    }

    #[test]
    fn views_run_as_their_definer_where_the_server_knows_the_clause() {
        let mv = "CREATE MATERIALIZED VIEW IF NOT EXISTS v TO t {{MV_SECURITY}} AS SELECT 1";
        let v = |major, minor| ServerVersion { major, minor };
        assert!(render(mv, v(26, 9)).contains("TO t SQL SECURITY DEFINER AS"));
        assert!(render(mv, v(24, 4)).contains("SQL SECURITY DEFINER"));
        assert!(!render(mv, v(24, 3)).contains("SECURITY"));
        assert!(!render(mv, v(18, 16)).contains("SECURITY"));
    }

    #[test]
    fn the_cluster_schema_is_made_from_the_same_migrations() {
        let layout = Layout::Cluster {
            name: "c1".into(),
            replicated: true,
        };
        let v = ServerVersion {
            major: 18,
            minor: 16,
        };
        let mut all = Vec::new();
        for m in MIGRATIONS {
            let single = statements(&render(m.sql, v));
            let cluster = layout.statements(&render(m.sql, v), "ff");
            let tables = single
                .iter()
                .filter(|s| s.starts_with("CREATE TABLE") && !s.contains("ENGINE = Null"))
                .count();
            let dropped_tables = single
                .iter()
                .filter(|s| dropped(s).is_some_and(is_table))
                .count();
            // Each table becomes a shard-local table and a Distributed table over it (a Null
            // table only the local one), and is dropped as both.
            assert_eq!(
                cluster.len(),
                single.len() + tables + dropped_tables,
                "{}",
                m.name
            );
            all.extend(cluster);
        }
        let events_local = all
            .iter()
            .find(|s| s.starts_with("CREATE TABLE IF NOT EXISTS ff.events_local ON CLUSTER c1"))
            .expect("events_local");
        assert!(events_local.contains(
            "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/ff/events_local', '{replica}')"
        ));
        assert!(all.iter().any(|s| s.starts_with(
            "CREATE TABLE IF NOT EXISTS ff.events ON CLUSTER c1 AS ff.events_local \
             ENGINE = Distributed(c1, ff, events_local, reinterpretAsUInt32(visitor_id))"
        )));
        // Engines with parameters keep them after the replication path.
        assert!(all.iter().any(|s| s.contains(
            "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/ff/subject_blocks_local', '{replica}', changed_ms)"
        )));
        for s in all.iter().filter(|s| s.contains("MATERIALIZED VIEW")) {
            assert!(s.contains(" ON CLUSTER c1 TO ff."), "{s}");
            assert!(s.contains("_local"), "{s}");
            assert!(
                s.contains("FROM ff.events_local") || s.contains("FROM ff.dimension_input_mv"),
                "{s}"
            );
            assert!(!s.contains("FROM events"), "{s}");
        }
        // The narrow feed of dimension_stats: a Null table on each shard, and the view it
        // replaced dropped on each shard.
        assert!(all.iter().any(|s| s
            .starts_with("CREATE TABLE IF NOT EXISTS ff.dimension_input_local ON CLUSTER c1")
            && s.ends_with("ENGINE = Null")));
        assert!(!all
            .iter()
            .any(|s| s.starts_with("CREATE TABLE IF NOT EXISTS ff.dimension_input ")));
        // 18.16 chains views through the view in the middle, so the last one reads it by name.
        assert!(all.iter().any(|s| s.starts_with(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS ff.dimension_stats_mv ON CLUSTER c1 \
             TO ff.dimension_stats_local"
        ) && s.contains("FROM ff.dimension_input_mv\nARRAY JOIN")));
        assert!(all.iter().any(|s| s.starts_with(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS ff.dimension_input_mv ON CLUSTER c1 \
             TO ff.dimension_input_local"
        ) && s.ends_with("FROM ff.events_local")));
        assert!(all
            .iter()
            .any(|s| s == "DROP TABLE IF EXISTS ff.dimension_stats_mv ON CLUSTER c1"));
        // 003's sessions, replaced by 006: its view, and the table on every shard.
        for gone in ["ff.sessions_mv", "ff.sessions", "ff.sessions_local"] {
            assert!(
                all.contains(&format!("DROP TABLE IF EXISTS {gone} ON CLUSTER c1")),
                "{gone}"
            );
        }
        assert!(!all.iter().any(|s| s.contains("ff.sessions_mv_local")));
        for s in &all {
            // An INSERT (a migration filling a new table) runs once, through the Distributed
            // tables; everything else is DDL for every shard.
            if s.starts_with("INSERT INTO ") {
                assert!(!s.contains("ON CLUSTER") && !s.contains("_local"), "{s}");
                continue;
            }
            assert!(
                s.contains("ON CLUSTER c1"),
                "every statement runs on every shard: {s}"
            );
            assert!(!s.contains("Replicated") || s.contains("{shard}"), "{s}");
        }
        let tables = Tables {
            database: "ff".into(),
            layout,
        };
        assert_eq!(tables.alter("events"), "ff.events_local ON CLUSTER c1");
        assert_eq!(tables.system("parts"), "cluster('c1', system, parts)");
        assert_eq!(Tables::single("ff").alter("events"), "events");
    }
}
