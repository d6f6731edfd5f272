//! The daily visitor salts shared by every instance through ClickHouse (`salts.store =
//! "clickhouse"`): offering, agreeing on and destroying them.
//!
//! Several instances behind a load balancer must give one visitor one id, so they need the same
//! salt. Each instance offers a random salt for today and for tomorrow when the `salts` table has
//! none for that day yet, and every instance uses the earliest offer (smallest `created_ms`, then
//! the salt itself). Tomorrow's salt is agreed a day ahead, so the switch at midnight needs
//! ClickHouse to be reachable only at some point of the day before. Salts older than yesterday are
//! dropped from ClickHouse (and from each instance's `salts.json`), after which the visitor ids of
//! those days cannot be recomputed by anyone, key holder included.
//!
//! Why not derive the salt from the secret and the date: nothing would need storing, but whoever
//! holds the secret could recompute every past day's salt and so link a guessed address and user
//! agent to the visitor ids of every day ever stored, which the daily salt exists to prevent.
//!
//! While ClickHouse cannot be reached an instance keeps its own salt (visitor ids of instances
//! then differ, which splits visitors but never links them) and adopts the shared one as soon as
//! it can (`footfall_salt_shared` says which is in use).

use std::sync::Arc;
use std::time::Duration;

use clickhouse::Client;
use rand::RngCore;

use crate::clock::{civil_date, day_number, SharedClock};
use crate::keys::{parse_salt, DaySalt, Salts};
use crate::metrics::Metrics;
use crate::schema::Tables;

/// How often an instance checks the shared salts.
pub const SYNC_EVERY: Duration = Duration::from_secs(30);

/// How long an instance that offered today's salt waits before reading which offer won: an
/// instance starting at the same moment may have made its offer just before but not landed it.
pub const SETTLE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum SharedSaltError {
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("the salt stored for {day} is unusable: {reason}")]
    Corrupt { day: String, reason: String },
}

/// What one sync did (for logs and tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Days (YYYY-MM-DD) for which this instance's offer was stored.
    pub offered: Vec<String>,
    /// Days whose salt this instance changed to the agreed one.
    pub adopted: Vec<String>,
    /// Partitions (YYYYMMDD) of expired salts dropped.
    pub dropped: Vec<String>,
}

pub struct SharedSalts {
    db: Client,
    tables: Tables,
    salts: Arc<Salts>,
    clock: SharedClock,
    metrics: Metrics,
    /// Names this process's offers (random: it says nothing about the machine).
    instance: String,
}

/// `YYYY-MM-DD` of a day number.
pub fn iso_day(day: i64) -> String {
    let (y, m, d) = civil_date(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The `toYYYYMMDD` partition of a day number.
fn partition_of(day: i64) -> u32 {
    let (y, m, d) = civil_date(day);
    (y as u32) * 10_000 + m * 100 + d
}

impl SharedSalts {
    pub fn new(
        db: Client,
        tables: Tables,
        salts: Arc<Salts>,
        clock: SharedClock,
        metrics: Metrics,
    ) -> Self {
        let mut id = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut id);
        Self {
            db,
            tables,
            salts,
            clock,
            metrics,
            instance: hex::encode(id),
        }
    }

    /// The agreed salt of `day`, if any instance offered one.
    async fn agreed(&self, day: i64) -> Result<Option<DaySalt>, SharedSaltError> {
        let text: Option<String> = self
            .db
            .query("SELECT salt FROM salts WHERE day = toDate(?) ORDER BY created_ms, salt LIMIT 1")
            .bind(iso_day(day))
            .fetch_optional()
            .await?;
        text.map(|t| {
            parse_salt(&t)
                .map(|salt| DaySalt { day, salt })
                .map_err(|reason| SharedSaltError::Corrupt {
                    day: iso_day(day),
                    reason,
                })
        })
        .transpose()
    }

    async fn offer(&self, salt: DaySalt) -> Result<(), SharedSaltError> {
        self.db
            .query(
                "INSERT INTO salts (day, salt, created_ms, instance) VALUES (toDate(?), ?, ?, ?)",
            )
            .bind(iso_day(salt.day))
            .bind(hex::encode(salt.salt))
            .bind(self.clock.now_ms().max(0) as u64)
            .bind(self.instance.as_str())
            .execute()
            .await?;
        Ok(())
    }

    /// Agrees today's and tomorrow's salts with the other instances and drops expired ones.
    /// `settle` is how long to wait after offering today's salt before reading the winner.
    pub async fn sync(&self, settle: Duration) -> Result<SyncReport, SharedSaltError> {
        let mut report = SyncReport::default();
        let today = day_number(self.clock.now_ms());
        let mut shared_today = false;
        for day in [today, today + 1] {
            let agreed = match self.agreed(day).await? {
                Some(agreed) => agreed,
                None => {
                    let Some(mine) = self.salts.proposal(day) else {
                        continue; // the day turned meanwhile
                    };
                    self.offer(mine).await?;
                    report.offered.push(iso_day(day));
                    if day == today {
                        tokio::time::sleep(settle).await;
                    }
                    self.agreed(day).await?.unwrap_or(mine)
                }
            };
            if self.salts.adopt(agreed) {
                report.adopted.push(iso_day(day));
                if day == today {
                    self.metrics.salt_switches.inc();
                }
            }
            if day == today {
                shared_today = self.salts.current().0 == agreed;
            }
        }
        self.metrics.salt_shared.set(i64::from(shared_today));
        report.dropped = self.drop_expired(today).await?;
        Ok(report)
    }

    /// Drops the salts of days before yesterday.
    async fn drop_expired(&self, today: i64) -> Result<Vec<String>, SharedSaltError> {
        let keep_from = partition_of(today - 1);
        let partitions: Vec<String> = self
            .db
            .query(&format!(
                "SELECT DISTINCT partition FROM {} WHERE database = ? AND table = ? AND active",
                self.tables.system("parts")
            ))
            .bind(self.tables.database.as_str())
            .bind(self.tables.stored("salts"))
            .fetch_all()
            .await?;
        let mut dropped = Vec::new();
        for p in partitions {
            let Ok(day) = p.trim_matches('\'').parse::<u32>() else {
                continue;
            };
            if day >= keep_from {
                continue;
            }
            self.db
                .query(&format!(
                    "ALTER TABLE {} DROP PARTITION {day}",
                    self.tables.alter("salts")
                ))
                .execute()
                .await?;
            dropped.push(day.to_string());
        }
        Ok(dropped)
    }

    /// Syncs once, bounded by `wait` so that a ClickHouse that does not answer does not hold up
    /// the start: the instance then uses its own salt until a later sync succeeds.
    pub async fn first_sync(&self, wait: Duration) {
        match tokio::time::timeout(wait, self.sync(SETTLE)).await {
            Ok(Ok(r)) => tracing::info!(?r, "visitor salts agreed with the other instances"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "visitor salts not shared yet; using this instance's own until ClickHouse answers")
            }
            Err(_) => tracing::warn!(
                "ClickHouse did not answer in time; using this instance's own visitor salt until it does"
            ),
        }
    }

    /// Syncs every [`SYNC_EVERY`] until the task is aborted.
    pub async fn run(self) {
        let mut tick = tokio::time::interval(SYNC_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            match self.sync(SETTLE).await {
                Ok(r) if !r.adopted.is_empty() || !r.dropped.is_empty() => {
                    tracing::info!(?r, "visitor salts synced")
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "visitor salts not synced this time"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_partitions_are_named_as_clickhouse_names_them() {
        assert_eq!(iso_day(0), "1970-01-01");
        assert_eq!(iso_day(20_787), "2026-11-30");
        assert_eq!(partition_of(20_787), 20_261_130);
        assert_eq!(partition_of(20_788), 20_261_201);
    }
}
