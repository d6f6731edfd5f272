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
];

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
    sql.replace("{{LC}}", lc)
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
        if self.applied.is_empty() {
            writeln!(f, "schema is current (version {})", latest_version())?;
        }
        Ok(())
    }
}

/// Applies every migration not yet recorded in `database`, creating the database if needed.
///
/// `server` must not have a database set; `database` has been validated as a plain identifier.
pub async fn migrate(server: &Client, database: &str) -> Result<MigrationReport, SchemaError> {
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
    if exists == 0 {
        server
            .query("CREATE DATABASE IF NOT EXISTS ?")
            .bind(clickhouse::sql::Identifier(database))
            .execute()
            .await
            .map_err(|source| SchemaError::Query {
                what: "creating the database",
                source,
            })?;
        report.created_database = true;
    }
    let db = server.with_database(database);
    db.query(SCHEMA_MIGRATIONS_DDL)
        .execute()
        .await
        .map_err(|source| SchemaError::Query {
            what: "creating schema_migrations",
            source,
        })?;
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
        for stmt in statements(&render(m.sql, version)) {
            db.query(&stmt)
                .execute()
                .await
                .map_err(|source| SchemaError::Migration {
                    version: m.version,
                    name: m.name,
                    source,
                })?;
        }
        db.query("INSERT INTO schema_migrations (version, name, applied_at) SELECT ?, ?, now()")
            .bind(m.version)
            .bind(m.name)
            .execute()
            .await
            .map_err(|source| SchemaError::Migration {
                version: m.version,
                name: m.name,
                source,
            })?;
        report.applied.push(label);
    }
    Ok(report)
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
}
