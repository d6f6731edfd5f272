//! Retention: each table keeps rows for its configured number of days, enforced by footfall.
//!
//! Tables are partitioned by month, so whole expired months are dropped (cheap, no rewrite) and
//! only the rows of the boundary month older than the cutoff are removed with a mutation. This
//! works the same on 18.16 (which has no TTL) and on current ClickHouse. Every run is audited by
//! the caller with the report this returns.

use std::time::Duration;

use clickhouse::Client;
use serde::Serialize;

use crate::config::RetentionConfig;
use crate::subjects::{wait_for_mutations, SubjectError};

/// A table with a time column and a retention period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub table: &'static str,
    /// A `DateTime` or `Date` column; the table is `PARTITION BY toYYYYMM(column)`.
    pub column: &'static str,
    /// Whether `column` is a `Date` (rows of the cutoff's day are kept whole).
    pub date: bool,
    /// 0 keeps everything.
    pub days: u32,
}

/// The rollup tables (aggregates written by materialised views and the rollup job), by `day`.
pub const ROLLUP_TABLES: &[&str] = &[
    "daily_stats",
    "page_stats",
    "dimension_stats",
    "navigation",
    "outbound_links",
    "day_changes",
    "daily_summary",
    "session_breakdown",
    "daily_breakdown",
];

/// The rules of every table footfall keeps data in.
pub fn rules(c: &RetentionConfig) -> Vec<Rule> {
    let mut rules = vec![
        Rule {
            table: "events",
            column: "received_at",
            date: false,
            days: c.events_days,
        },
        Rule {
            table: crate::schema::SESSIONS,
            column: "day",
            date: true,
            days: c.sessions_days,
        },
        Rule {
            table: "audit_log",
            column: "at",
            date: false,
            days: c.audit_days,
        },
    ];
    rules.extend(ROLLUP_TABLES.iter().map(|table| Rule {
        table,
        column: "day",
        date: true,
        days: c.rollups_days,
    }));
    rules
}

/// What one run did to one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableReport {
    pub table: &'static str,
    pub days: u32,
    /// Rows older than this (seconds since the epoch) are gone; 0 when the table keeps everything.
    pub cutoff: u32,
    pub dropped_partitions: Vec<String>,
    /// Rows in dropped partitions plus rows removed from the boundary month.
    pub rows_removed: u64,
}

/// `YYYYMM` of a Unix time (UTC).
pub fn yyyymm(unix: i64) -> u32 {
    let (y, m, _) = crate::clock::civil_date(unix.div_euclid(86_400));
    (y * 100 + m as i64) as u32
}

/// Applies `rules` at time `now` (seconds since the epoch).
pub async fn run(
    db: &Client,
    tables: &crate::schema::Tables,
    rules: &[Rule],
    now: i64,
    mutation_timeout: Duration,
) -> Result<Vec<TableReport>, SubjectError> {
    let mut out = Vec::new();
    for rule in rules {
        if rule.days == 0 {
            continue;
        }
        let exists: u64 = db
            .query(
                "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = ?",
            )
            .bind(rule.table)
            .fetch_one()
            .await?;
        if exists == 0 {
            continue;
        }
        let cutoff = (now - rule.days as i64 * 86_400).max(0);
        let boundary = yyyymm(cutoff);
        let partitions: Vec<(String, u64)> = db
            .query(&format!(
                "SELECT partition, sum(rows) FROM {} \
                 WHERE database = ? AND table = ? AND active GROUP BY partition",
                tables.system("parts")
            ))
            .bind(tables.database.as_str())
            .bind(tables.stored(rule.table))
            .fetch_all()
            .await?;
        let mut report = TableReport {
            table: rule.table,
            days: rule.days,
            cutoff: cutoff as u32,
            dropped_partitions: Vec::new(),
            rows_removed: 0,
        };
        for (partition, rows) in partitions {
            // Partition ids are the YYYYMM number; anything else is not ours to drop.
            let Ok(month) = partition.trim_matches('\'').parse::<u32>() else {
                continue;
            };
            if month < boundary {
                db.query(&format!(
                    "ALTER TABLE {} DROP PARTITION {month}",
                    tables.alter(rule.table)
                ))
                .execute()
                .await?;
                report.dropped_partitions.push(month.to_string());
                report.rows_removed += rows;
            }
        }
        let bound = if rule.date {
            "toDate(toDateTime(?))"
        } else {
            "toDateTime(?)"
        };
        let old: u64 = db
            .query(&format!(
                "SELECT count() FROM {} WHERE {} < {bound}",
                rule.table, rule.column
            ))
            .bind(cutoff as u32)
            .fetch_one()
            .await?;
        if old > 0 {
            db.query(&format!(
                "ALTER TABLE {} DELETE WHERE {} < {bound}",
                tables.alter(rule.table),
                rule.column
            ))
            .bind(cutoff as u32)
            .execute()
            .await?;
            wait_for_mutations(db, tables, rule.table, mutation_timeout).await?;
            report.rows_removed += old;
        }
        out.push(report);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_of_unix_times() {
        assert_eq!(yyyymm(0), 197001);
        assert_eq!(yyyymm(951_782_400), 200002); // 2000-02-29
        assert_eq!(yyyymm(951_868_800), 200003); // 2000-03-01
        assert_eq!(yyyymm(1_798_761_599), 202612); // 2026-12-31 23:59:59
        assert_eq!(yyyymm(1_798_761_600), 202701);
    }

    #[test]
    fn every_table_with_personal_data_has_a_rule() {
        let r = rules(&RetentionConfig::default());
        for t in crate::subjects::SUBJECT_TABLES {
            assert!(r.iter().any(|x| x.table == t.table), "{}", t.table);
        }
        assert!(r.iter().any(|x| x.table == "audit_log"));
        // Every table the analytics migration creates has a period.
        let sql = crate::schema::MIGRATIONS
            .iter()
            .map(|m| m.sql)
            .collect::<Vec<_>>()
            .join("\n");
        let stmts = crate::schema::statements(&sql);
        // A table a later migration drops (003's sessions) keeps nothing.
        let dropped: Vec<&str> = stmts
            .iter()
            .filter_map(|s| crate::schema::dropped(s))
            .collect();
        for stmt in &stmts {
            if let Some(table) = crate::schema::created_table(stmt) {
                // subject_blocks is kept while a block stands; salts live two days at most
                // (src/shared_salts.rs drops them), far below any retention period;
                // dimension_input is a Null table, which keeps nothing.
                if table != "subject_blocks"
                    && table != "salts"
                    && table != "dimension_input"
                    && !dropped.contains(&table)
                {
                    assert!(
                        r.iter().any(|x| x.table == table),
                        "{table} has no retention rule"
                    );
                }
            }
        }
    }
}
