//! Data-subject requests: export, delete, block, unblock and correct everything held for one
//! identifier, in every table that holds subject data. Shared by `footfall subject` and the admin API.
//!
//! Identifiers are bound as query parameters (client-side escaping: 18.16 has no server-side
//! parameters); column names come from [`IdKind`], never from input.

use std::time::Duration;

use clickhouse::Client;
use serde::Serialize;

use crate::clock::SharedClock;
use crate::config::RetentionConfig;
use crate::privacy::blocklist::{BlockKey, IdKind};
use crate::privacy::ids::{IdHasher, Purpose};
use crate::privacy::{Group, SitePolicy};
use crate::schema::SESSIONS;

/// Tables that hold data about subjects, each with the setting that bounds its retention.
pub const SUBJECT_TABLES: &[SubjectTable] = &[SubjectTable {
    table: "events",
    retention: RetentionOf::Events,
}];

/// One table holding subject data. Every [`IdKind`] has a column of its name in it.
#[derive(Debug, Clone, Copy)]
pub struct SubjectTable {
    pub table: &'static str,
    pub retention: RetentionOf,
}

#[derive(Debug, Clone, Copy)]
pub enum RetentionOf {
    Events,
}

impl RetentionOf {
    pub fn days(self, r: &RetentionConfig) -> u32 {
        match self {
            RetentionOf::Events => r.events_days,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubjectError {
    #[error("{0}")]
    BadRequest(String),
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("the {table} mutation did not finish within {secs} s; it continues in ClickHouse, re-run to confirm")]
    MutationTimeout { table: String, secs: u64 },
    #[error("{remaining} rows of {table} still match after the mutation")]
    NotRemoved { table: String, remaining: u64 },
}

/// One identifier of one site, in the representation stored in the tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub site: String,
    pub kind: IdKind,
    /// Keyed hash (user and client ids), hex (visitor and fingerprint ids) or the session id.
    pub id: String,
}

impl Subject {
    /// From what an operator was given: the user id as the site knows it, the client id from
    /// the browser's storage, or the visitor/fingerprint id as shown in exports and dashboards.
    pub fn new(
        site: &str,
        kind: IdKind,
        given: &str,
        ids: &IdHasher,
    ) -> Result<Self, SubjectError> {
        let given = given.trim();
        if site.is_empty() || given.is_empty() {
            return Err(SubjectError::BadRequest(
                "a site and a non-empty identifier are required".into(),
            ));
        }
        let id = match kind {
            IdKind::UserId => ids.hash(Purpose::UserId, site, given),
            IdKind::ClientId => ids.hash(Purpose::ClientId, site, given),
            IdKind::VisitorId | IdKind::FingerprintId => {
                let lower = given.to_ascii_lowercase();
                if lower.len() != 32 || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(SubjectError::BadRequest(format!(
                        "{} must be 32 hex digits",
                        kind.as_str()
                    )));
                }
                lower
            }
            IdKind::SessionId => given.to_owned(),
        };
        Ok(Self {
            site: site.to_owned(),
            kind,
            id,
        })
    }

    /// The identifier as a block-list key.
    pub fn block_key(&self) -> BlockKey {
        BlockKey {
            site: self.site.clone(),
            kind: self.kind,
            id: self.id.clone(),
        }
    }

    /// `site = ? AND <column> = ?` (the column compared as hex for binary ids).
    fn condition(&self) -> String {
        let col = self.kind.column();
        if self.kind.is_binary() {
            format!("site = ? AND {col} = unhex(?)")
        } else {
            format!("site = ? AND {col} = ?")
        }
    }

    fn bind(&self, q: clickhouse::query::Query) -> clickhouse::query::Query {
        q.bind(self.site.as_str()).bind(self.id.as_str())
    }
}

/// Row counts for one table before and after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableCount {
    pub table: String,
    pub before: u64,
    pub after: u64,
}

/// What an export says about one field group.
#[derive(Debug, Clone, Serialize)]
pub struct FieldGroupInfo {
    pub group: &'static str,
    pub policy_items: &'static [u8],
    pub columns: &'static [&'static str],
    pub source: String,
    pub collected_for_site: bool,
    pub stored_in: Vec<&'static str>,
    pub retention_days: u32,
}

/// One table's part of an export.
#[derive(Debug, Clone, Serialize)]
pub struct TableExport {
    pub table: &'static str,
    /// 0 means kept until deleted.
    pub retention_days: u32,
    pub row_count: usize,
    pub rows: Vec<serde_json::Value>,
}

/// Everything held for a subject.
#[derive(Debug, Clone, Serialize)]
pub struct Export {
    pub site: String,
    pub id_kind: &'static str,
    /// The identifier as stored (a keyed hash for user and client ids).
    pub stored_as: String,
    pub generated_at: u32,
    pub blocked: bool,
    pub tables: Vec<TableExport>,
    pub fields: Vec<FieldGroupInfo>,
}

/// What an export needs to describe sources and periods.
pub struct ExportContext<'a> {
    pub retention: &'a RetentionConfig,
    pub policy: &'a SitePolicy,
    /// Descriptions of the GeoIP databases in use: (city/country, ASN/ISP).
    pub geo_databases: (String, String),
    pub clock: SharedClock,
}

async fn table_exists(db: &Client, table: &str) -> Result<bool, clickhouse::error::Error> {
    let n: u64 = db
        .query("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = ?")
        .bind(table)
        .fetch_one()
        .await?;
    Ok(n > 0)
}

/// The select list for `table` with binary columns as hex, so every value reads as text.
async fn select_list(db: &Client, table: &str) -> Result<String, clickhouse::error::Error> {
    let cols: Vec<(String, String)> = db
        .query(
            // In table order (18.16's system.columns has no `position` to sort by).
            "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = ?",
        )
        .bind(table)
        .fetch_all()
        .await?;
    Ok(cols
        .iter()
        .map(|(name, ty)| {
            if ty.starts_with("FixedString") {
                format!("hex({name}) AS {name}")
            } else {
                name.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", "))
}

async fn count(db: &Client, table: &str, s: &Subject) -> Result<u64, clickhouse::error::Error> {
    s.bind(db.query(&format!(
        "SELECT count() FROM {table} WHERE {}",
        s.condition()
    )))
    .fetch_one()
    .await
}

async fn fetch_text(
    db: &Client,
    table: &str,
    s: &Subject,
    format: &str,
) -> Result<Vec<u8>, SubjectError> {
    let list = select_list(db, table).await?;
    // Filtered in a subquery: in the outer select `hex(visitor_id) AS visitor_id` would shadow
    // the column, and the condition would compare hex text with the bytes.
    let mut cursor = s
        .bind(db.query(&format!(
            "SELECT {list} FROM (SELECT * FROM {table} WHERE {}) ORDER BY received_at",
            s.condition()
        )))
        .fetch_bytes(format)?;
    Ok(cursor.collect().await?.to_vec())
}

/// Everything held for `s`, as JSON-ready structures.
pub async fn export(
    db: &Client,
    s: &Subject,
    ctx: &ExportContext<'_>,
    blocked: bool,
) -> Result<Export, SubjectError> {
    let mut tables = Vec::new();
    for t in SUBJECT_TABLES {
        if !table_exists(db, t.table).await? {
            continue;
        }
        let bytes = fetch_text(db, t.table, s, "JSONEachRow").await?;
        let rows: Vec<serde_json::Value> = bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(serde_json::from_slice)
            .collect::<Result<_, _>>()
            .map_err(|e| SubjectError::BadRequest(format!("unreadable export row: {e}")))?;
        tables.push(TableExport {
            table: t.table,
            retention_days: t.retention.days(ctx.retention),
            row_count: rows.len(),
            rows,
        });
    }
    if table_exists(db, SESSIONS).await? {
        let rows = export_sessions(db, s).await?;
        tables.push(TableExport {
            table: SESSIONS,
            retention_days: ctx.retention.sessions_days,
            row_count: rows.len(),
            rows,
        });
    }
    let fields = Group::ALL
        .into_iter()
        .map(|g| {
            let mut source = g.source().to_owned();
            let db_name = match g {
                Group::Location | Group::City => Some(&ctx.geo_databases.0),
                Group::Provider => Some(&ctx.geo_databases.1),
                _ => None,
            };
            if let Some(name) = db_name {
                source.push_str(&format!(
                    " (database: {})",
                    if name.is_empty() {
                        "none configured"
                    } else {
                        name
                    }
                ));
            }
            FieldGroupInfo {
                group: g.name(),
                policy_items: g.policy_items(),
                columns: g.columns(),
                source,
                collected_for_site: ctx.policy.collect.contains(g),
                stored_in: stored_in(g),
                retention_days: ctx.retention.events_days,
            }
        })
        .collect();
    Ok(Export {
        site: s.site.clone(),
        id_kind: s.kind.as_str(),
        stored_as: s.id.clone(),
        generated_at: (ctx.clock.now_ms().max(0) / 1000) as u32,
        blocked,
        tables,
        fields,
    })
}

/// Where a field group's values about a subject are kept: every group in `events`, some also per
/// session in `session_states`; the daily rollups count a subject among others but keep no row of it.
fn stored_in(g: Group) -> Vec<&'static str> {
    let mut tables: Vec<&'static str> = SUBJECT_TABLES.iter().map(|t| t.table).collect();
    if matches!(
        g,
        Group::Pages
            | Group::Location
            | Group::Provider
            | Group::Software
            | Group::Identity
            | Group::Fingerprint
            | Group::Automation
    ) {
        tables.push(SESSIONS);
    }
    tables
}

/// The subject's `events` rows as CSV with a header line.
pub async fn export_csv(db: &Client, s: &Subject) -> Result<Vec<u8>, SubjectError> {
    fetch_text(db, "events", s, "CSVWithNames").await
}

/// The subject's sessions as one row each, merged from the `session_states` table.
async fn export_sessions(db: &Client, s: &Subject) -> Result<Vec<serde_json::Value>, SubjectError> {
    let mut cursor = s
        .bind(db.query(&format!(
            "SELECT session_id, toString(min(day)) AS day, toString(minMerge(start)) AS start, \
             toString(maxMerge(end)) AS end, uniqExactIfMerge(pageviews) AS pageviews, \
             arraySum(arrayMap(x -> toUInt64(x.2), groupUniqArrayIfMerge(engaged))) AS engaged_ms, \
             argMinIfMerge(entry_path) AS entry_path, argMaxIfMerge(exit_path) AS exit_path, \
             argMinIfMerge(entry_referrer_host) AS entry_referrer_host, \
             argMinIfMerge(entry_utm_source) AS entry_utm_source, \
             argMinIfMerge(entry_utm_medium) AS entry_utm_medium, \
             argMinIfMerge(entry_utm_campaign) AS entry_utm_campaign, \
             lower(hex(argMinMerge(visitor_id))) AS visitor_id, maxMerge(user_id) AS user_id, \
             lower(hex(maxMerge(fingerprint_id))) AS fingerprint_id, argMinMerge(country) AS country, \
             argMinMerge(region_code) AS region_code, argMinMerge(region_name) AS region_name, \
             argMinMerge(asn) AS asn, argMinMerge(as_org) AS as_org, argMinMerge(isp) AS isp, \
             argMinMerge(browser) AS browser, argMinMerge(os) AS os, argMinMerge(device) AS device, \
             maxMerge(automated) AS automated \
             FROM {SESSIONS} WHERE site = ? AND session_id IN \
             (SELECT session_id FROM events WHERE {} AND session_id != '') \
             GROUP BY session_id ORDER BY start",
            s.condition()
        )).bind(s.site.as_str()))
        .with_setting("output_format_json_quote_64bit_integers", "0")
        .fetch_bytes("JSONEachRow")?;
    let bytes = cursor.collect().await?;
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l)
                .map_err(|e| SubjectError::BadRequest(format!("unreadable session row: {e}")))
        })
        .collect()
}

/// Waits until no mutation of `table` is pending (on every shard of a cluster).
pub async fn wait_for_mutations(
    db: &Client,
    tables: &crate::schema::Tables,
    table: &str,
    timeout: Duration,
) -> Result<(), SubjectError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let pending: u64 = db
            .query(&format!(
                "SELECT count() FROM {} WHERE database = ? AND table = ? AND is_done = 0",
                tables.system("mutations")
            ))
            .bind(tables.database.as_str())
            .bind(tables.stored(table))
            .fetch_one()
            .await?;
        if pending == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(SubjectError::MutationTimeout {
                table: table.to_owned(),
                secs: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A mutation that makes the subject's rows stop matching it.
enum Mutation<'a> {
    Delete,
    SetUserId(&'a str),
}

/// Applies `m` to the subject's rows in every subject table, waits for it, and confirms by
/// counting again that no row matches the subject any more.
async fn mutate(
    db: &Client,
    tables: &crate::schema::Tables,
    s: &Subject,
    m: Mutation<'_>,
    timeout: Duration,
) -> Result<Vec<TableCount>, SubjectError> {
    let mut out = Vec::new();
    for t in SUBJECT_TABLES {
        if !table_exists(db, t.table).await? {
            continue;
        }
        let before = count(db, t.table, s).await?;
        if before > 0 {
            let q = match m {
                Mutation::Delete => db.query(&format!(
                    "ALTER TABLE {} DELETE WHERE {}",
                    tables.alter(t.table),
                    s.condition()
                )),
                Mutation::SetUserId(to) => db
                    .query(&format!(
                        "ALTER TABLE {} UPDATE user_id = ? WHERE {}",
                        tables.alter(t.table),
                        s.condition()
                    ))
                    .bind(to),
            };
            s.bind(q).execute().await?;
            wait_for_mutations(db, tables, t.table, timeout).await?;
        }
        let after = count(db, t.table, s).await?;
        if after > 0 {
            return Err(SubjectError::NotRemoved {
                table: t.table.to_owned(),
                remaining: after,
            });
        }
        out.push(TableCount {
            table: t.table.to_owned(),
            before,
            after,
        });
    }
    Ok(out)
}

/// Removes every row of `s` from every subject table and confirms by counting again; then
/// recomputes the sessions and daily rollups that counted those rows (`src/rebuild.rs`), and
/// confirms that no session is attributed to the identifier any more.
pub async fn delete(
    db: &Client,
    tables: &crate::schema::Tables,
    s: &Subject,
    timeout: Duration,
    clock: &SharedClock,
) -> Result<Vec<TableCount>, SubjectError> {
    let scope = affected(db, s).await?;
    let mut counts = mutate(db, tables, s, Mutation::Delete, timeout).await?;
    counts.extend(rebuild_after(db, tables, s, &scope, timeout, clock).await?);
    Ok(counts)
}

/// Re-assigns a wrong user id: rows of `s` (a user id) get `to` (a user id as the site knows it;
/// empty removes the user id). Returns, per table, the rows that had the old id before and after.
pub async fn correct_user_id(
    db: &Client,
    tables: &crate::schema::Tables,
    s: &Subject,
    to: &str,
    ids: &IdHasher,
    timeout: Duration,
    clock: &SharedClock,
) -> Result<Vec<TableCount>, SubjectError> {
    if s.kind != IdKind::UserId {
        return Err(SubjectError::BadRequest(
            "only a user id can be corrected (other identifiers are derived, not assigned)".into(),
        ));
    }
    let new_hash = ids.hash(Purpose::UserId, &s.site, to.trim());
    if new_hash == s.id {
        return Err(SubjectError::BadRequest(
            "the new user id is the same as the old one".into(),
        ));
    }
    let scope = affected(db, s).await?;
    let mut counts = mutate(db, tables, s, Mutation::SetUserId(&new_hash), timeout).await?;
    counts.extend(rebuild_after(db, tables, s, &scope, timeout, clock).await?);
    Ok(counts)
}

/// The sessions and days holding the subject's events (read before they change).
async fn affected(db: &Client, s: &Subject) -> Result<crate::rebuild::Scope, SubjectError> {
    if !table_exists(db, SESSIONS).await? {
        return Ok(crate::rebuild::Scope::default());
    }
    Ok(crate::rebuild::scope_of(db, &s.site, &s.condition(), |q| s.bind(q)).await?)
}

/// Recomputes the derived tables of `scope` and checks that no session still carries the
/// identifier. Reports `session_states` (the subject's sessions before; still attributed after) and the
/// rollup tables rewritten (their rows of the affected days, before and after).
async fn rebuild_after(
    db: &Client,
    tables: &crate::schema::Tables,
    s: &Subject,
    scope: &crate::rebuild::Scope,
    timeout: Duration,
    clock: &SharedClock,
) -> Result<Vec<TableCount>, SubjectError> {
    if scope.days.is_empty() && scope.sessions.is_empty() {
        return Ok(Vec::new());
    }
    crate::rebuild::rebuild(db, tables, scope, clock, timeout).await?;
    let after = sessions_attributed(db, s, &scope.sessions).await?;
    if after > 0 {
        return Err(SubjectError::NotRemoved {
            table: SESSIONS.into(),
            remaining: after,
        });
    }
    Ok(vec![TableCount {
        table: SESSIONS.into(),
        before: scope.sessions.len() as u64,
        after,
    }])
}

/// How many of `sessions` are still attributed to the subject in the `session_states` table.
async fn sessions_attributed(
    db: &Client,
    s: &Subject,
    sessions: &[String],
) -> Result<u64, SubjectError> {
    if sessions.is_empty() {
        return Ok(0);
    }
    let value = match s.kind {
        IdKind::UserId => "maxMerge(user_id) = ?",
        IdKind::VisitorId => "argMinMerge(visitor_id) = unhex(?)",
        IdKind::FingerprintId => "maxMerge(fingerprint_id) = unhex(?)",
        IdKind::SessionId => "session_id = ?",
        // Sessions keep no client id: the subject's sessions are those of its events, all gone.
        IdKind::ClientId => return Ok(count(db, "events", s).await?),
    };
    Ok(db
        .query(&format!(
            "SELECT count() FROM (SELECT session_id FROM {SESSIONS} WHERE site = ? AND has(?, session_id) \
             GROUP BY session_id HAVING {value})"
        ))
        .bind(s.site.as_str())
        .bind(sessions)
        .bind(s.id.as_str())
        .fetch_one()
        .await?)
}

/// Records a block or unblock in `subject_blocks` (the latest change wins).
pub async fn set_blocked(
    db: &Client,
    s: &Subject,
    blocked: bool,
    actor: &str,
    clock: &SharedClock,
) -> Result<(), SubjectError> {
    let now = clock.now_ms().max(0);
    db.query(
        "INSERT INTO subject_blocks (site, id_kind, id_hash, blocked, changed_at, changed_ms, actor) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(s.site.as_str())
    .bind(s.kind.as_str())
    .bind(s.id.as_str())
    .bind(blocked as u8)
    .bind((now / 1000) as u32)
    .bind(now as u64)
    .bind(actor)
    .execute()
    .await?;
    Ok(())
}

/// The current block list.
pub async fn load_blocks(db: &Client) -> Result<Vec<BlockKey>, clickhouse::error::Error> {
    let rows: Vec<(String, String, String)> = db
        .query(
            "SELECT site, id_kind, id_hash FROM subject_blocks \
             GROUP BY site, id_kind, id_hash HAVING argMax(blocked, changed_ms) = 1",
        )
        .fetch_all()
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(site, kind, id)| IdKind::parse(&kind).map(|kind| BlockKey { site, kind, id }))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_turned_into_their_stored_form() {
        let ids = IdHasher::new(b"k");
        let u = Subject::new("shop", IdKind::UserId, " alice ", &ids).unwrap();
        assert_eq!(u.id, ids.hash(Purpose::UserId, "shop", "alice"));
        let v = Subject::new("shop", IdKind::VisitorId, &"AB".repeat(16), &ids).unwrap();
        assert_eq!(v.id, "ab".repeat(16));
        assert!(Subject::new("shop", IdKind::FingerprintId, "xyz", &ids).is_err());
        assert!(Subject::new("shop", IdKind::SessionId, "  ", &ids).is_err());
        assert!(Subject::new("", IdKind::SessionId, "s", &ids).is_err());
        assert_eq!(v.condition(), "site = ? AND visitor_id = unhex(?)");
        assert_eq!(u.condition(), "site = ? AND user_id = ?");
    }
}
