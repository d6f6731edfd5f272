//! Recomputing what the materialised views keep, from what `events` holds now: after a subject's
//! rows were deleted or corrected, the rollups must not go on counting (or holding the ids of)
//! rows that are gone.
//!
//! The statements are the views' own SELECTs, taken from the migrations, with `events` narrowed to
//! the affected sessions (for `sessions`) or days (for every per-day table). The rows of those
//! sessions or days are deleted with a mutation and inserted again from the remaining events, and
//! the rollup job's summaries of those days are recomputed at once. Events that land for those
//! days while this runs may be counted twice in that day's rollups (the views add them, and so
//! does the re-insert); block the subject first and run subject requests for past days, as the
//! README says, and this does not happen.

use std::time::Duration;

use clickhouse::Client;

use crate::clock::SharedClock;
use crate::schema;
use crate::subjects::{wait_for_mutations, SubjectError};

/// One materialised view: the table it fills and its SELECT over `events`.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub table: String,
    pub select: String,
}

/// Every materialised view of the migrations that fills a table, in creation order, each as one
/// SELECT over `events`: a view dropped by a later migration is left out, and a view that reads a
/// Null table (which only passes rows on) reads, in its place, the view that fills that table.
pub fn views() -> Vec<View> {
    // (name, target, select) of the views that exist after every migration.
    let mut created: Vec<(String, String, String)> = Vec::new();
    let mut pass_through: Vec<String> = Vec::new();
    for m in schema::MIGRATIONS {
        // The views' text does not depend on the server version, except for the middle link of
        // a chain, which a rebuild reads as the table it is.
        let sql = m.sql.replace(schema::DIMENSION_INPUT, "dimension_input");
        for stmt in schema::statements(&sql) {
            if let Some(table) = schema::created_table(&stmt) {
                if stmt.contains("ENGINE = Null") {
                    pass_through.push(table.to_owned());
                }
                continue;
            }
            if let Some(dropped) = schema::dropped(&stmt) {
                created.retain(|(name, _, _)| name != dropped);
                continue;
            }
            let Some((name, table, select)) = schema::view_parts(&stmt) else {
                continue;
            };
            created.push((name.to_owned(), table.to_owned(), select.to_owned()));
        }
    }
    let feeding = |table: &str| {
        created
            .iter()
            .find(|(_, target, _)| target == table)
            .map(|(_, _, select)| select.clone())
    };
    created
        .iter()
        .filter(|(_, table, _)| !pass_through.contains(table))
        .map(|(_, table, select)| {
            let inlined = schema::source_of(select)
                .filter(|(_, source)| pass_through.iter().any(|t| t == source))
                .and_then(|(at, source)| {
                    let inner = feeding(source)?;
                    Some(format!(
                        "{}({inner}) AS {source}{}",
                        &select[..at],
                        &select[at + source.len()..]
                    ))
                });
            View {
                table: table.clone(),
                select: inlined.unwrap_or_else(|| select.clone()),
            }
        })
        .collect()
}

/// What to recompute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub site: String,
    /// Client session ids whose `session_states` rows are recomputed.
    pub sessions: Vec<String>,
    /// `YYYY-MM-DD` days whose per-day rollups are recomputed.
    pub days: Vec<String>,
}

/// The affected sessions and days of the events matching `condition` (bound by `bind`).
pub async fn scope_of(
    db: &Client,
    site: &str,
    condition: &str,
    bind: impl Fn(clickhouse::query::Query) -> clickhouse::query::Query,
) -> Result<Scope, clickhouse::error::Error> {
    let sessions: Vec<String> = bind(db.query(&format!(
        "SELECT DISTINCT session_id FROM events WHERE {condition} AND session_id != ''"
    )))
    .fetch_all()
    .await?;
    let days: Vec<String> = bind(db.query(&format!(
        "SELECT DISTINCT toString(toDate(received_at)) FROM events WHERE {condition}"
    )))
    .fetch_all()
    .await?;
    Ok(Scope {
        site: site.to_owned(),
        sessions,
        days,
    })
}

/// Recomputes the views' tables for `scope` and the rollup job's summaries of its days. Returns
/// the tables rewritten.
pub async fn rebuild(
    db: &Client,
    tables: &crate::schema::Tables,
    scope: &Scope,
    clock: &SharedClock,
    timeout: Duration,
) -> Result<Vec<String>, SubjectError> {
    let mut rewritten = Vec::new();
    if scope.days.is_empty() && scope.sessions.is_empty() {
        return Ok(rewritten);
    }
    for view in views() {
        let by_session = view.table == crate::schema::SESSIONS;
        if by_session && scope.sessions.is_empty() {
            continue;
        }
        // The rows of the affected sessions or days, in this table and in `events`.
        let (table_filter, events_filter) = if by_session {
            (
                "site = ? AND has(?, session_id)",
                "site = ? AND has(?, session_id)",
            )
        } else {
            (
                "site = ? AND has(arrayMap(d -> toDate(d), ?), day)",
                "site = ? AND has(arrayMap(d -> toDate(d), ?), toDate(received_at))",
            )
        };
        let keys = if by_session {
            &scope.sessions
        } else {
            &scope.days
        };
        db.query(&format!(
            "ALTER TABLE {} DELETE WHERE {table_filter}",
            tables.alter(&view.table)
        ))
        .bind(scope.site.as_str())
        .bind(keys)
        .execute()
        .await?;
        wait_for_mutations(db, tables, &view.table, timeout).await?;
        let select = view.select.replacen(
            "FROM events",
            &format!("FROM (SELECT * FROM events WHERE {events_filter}) AS events"),
            1,
        );
        // The view text may contain `?` nowhere; a literal one would be read as a placeholder.
        db.query(&format!("INSERT INTO {} {select}", view.table))
            .bind(scope.site.as_str())
            .bind(keys)
            .execute()
            .await?;
        rewritten.push(view.table);
    }
    // The summaries of those days, now (a day's sessions can begin the day before).
    let mut days: Vec<String> = scope.days.clone();
    for d in &scope.days {
        if let Some(prev) = crate::stats::parse_date(d).and_then(|d| d.previous_day()) {
            days.push(crate::stats::format_date(prev));
        }
    }
    days.sort();
    days.dedup();
    let before = crate::rollup::next_version(clock);
    for day in &days {
        crate::rollup::recompute_day(db, &scope.site, day, clock)
            .await
            .map_err(|e| SubjectError::BadRequest(e.to_string()))?;
    }
    // Older versions of those days may still hold what was removed until a merge drops them.
    for table in crate::rollup::SUMMARY_TABLES {
        db.query(&format!(
            "ALTER TABLE {} DELETE WHERE site = ? AND has(arrayMap(d -> toDate(d), ?), day) AND version < ?",
            tables.alter(table)
        ))
        .bind(scope.site.as_str())
        .bind(&days)
        .bind(before)
        .execute()
        .await?;
        wait_for_mutations(db, tables, table, timeout).await?;
        rewritten.push(table.to_string());
    }
    Ok(rewritten)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_view_is_found_with_its_table_and_select() {
        let v = views();
        let tables: Vec<&str> = v.iter().map(|v| v.table.as_str()).collect();
        assert_eq!(
            tables,
            vec![
                "day_changes",
                "navigation",
                "outbound_links",
                "daily_stats",
                "page_stats",
                "dimension_stats",
                "session_states"
            ]
        );
        for view in &v {
            // A view may name an expression first (006's order key): `WITH ... AS k SELECT`.
            assert!(
                view.select.starts_with("SELECT") || view.select.starts_with("WITH "),
                "{}",
                view.table
            );
            assert_eq!(
                view.select.matches("FROM events").count(),
                1,
                "{}: one read of events to narrow",
                view.table
            );
            assert!(!view.select.contains('?'), "{}", view.table);
        }
        // dimension_stats' view reads the Null table that another view fills from events: the
        // rebuild runs both as one query, and the view that 005 replaced is gone.
        let dims = &v[5].select;
        assert!(
            dims.contains("FROM (SELECT site, toDate(received_at) AS day"),
            "{dims}"
        );
        assert!(
            dims.contains(") AS dimension_input\nARRAY JOIN dimensions AS dimension"),
            "{dims}"
        );
        assert!(
            !dims.contains("sumState(toUInt64(kind = 'pageview'))"),
            "{dims}"
        );
        // 003's sessions view, dropped by 006, is not rebuilt; its successor is, keyed by number.
        let sessions = &v[6].select;
        assert!(
            sessions.contains("argMinIfState(path, order_key, kind = 'pageview')"),
            "{sessions}"
        );
        assert!(!v.iter().any(|v| v.select.contains("(seq, client_ts)")));
    }
}
