//! What `/readyz` reports: whether footfall can take events now, and whether they are reaching ClickHouse.
//!
//! Ready means "accepting": the spool has room and its disk works. ClickHouse being down does
//! not make footfall unready, because accepted events wait safely in the spool; taking the
//! instance out of a load balancer then would turn an outage into lost visits. The report says
//! `degraded` instead, with the reason, and how much is waiting.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clickhouse::Client;
use serde::Serialize;

use crate::schema::{current_version, latest_version};
use crate::spool::SpoolStats;
use crate::writer::DeliveryState;

pub struct Readiness {
    /// `None` when no ClickHouse is configured or installed.
    db: Option<Client>,
    spool: Arc<SpoolStats>,
    delivery: Arc<DeliveryState>,
}

#[derive(Debug, Serialize)]
pub struct ReadinessReport {
    /// Events are being accepted (the HTTP status is 200 exactly when this is true).
    pub ready: bool,
    /// `ok`, `degraded` (accepting, but not delivering) or `unavailable` (not accepting).
    pub status: &'static str,
    /// `up`, `down` or `none` (no ClickHouse configured or installed).
    pub clickhouse: &'static str,
    /// The writer's view: `up`, `down` or `connecting`.
    pub delivery: &'static str,
    pub schema_version: u32,
    pub expected_schema_version: u32,
    pub spool: SpoolReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SpoolReport {
    pub accepting: bool,
    pub pending_records: u64,
    pub pending_bytes: u64,
    pub max_bytes: u64,
    pub oldest_pending_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Readiness {
    pub fn new(db: Option<Client>, spool: Arc<SpoolStats>, delivery: Arc<DeliveryState>) -> Self {
        Self {
            db,
            spool,
            delivery,
        }
    }

    pub async fn check(&self, now_ms: i64) -> ReadinessReport {
        let expected = latest_version();
        let pending_bytes = self.spool.pending_bytes();
        let spool_error = self.spool.error(now_ms);
        // Within one small event of the cap counts as full: the next append would be refused.
        let full = pending_bytes + 64 * 1024 > self.spool.max_bytes;
        let accepting = spool_error.is_none() && !full;
        let spool = SpoolReport {
            accepting,
            pending_records: self.spool.pending_records.load(Ordering::Relaxed),
            pending_bytes,
            max_bytes: self.spool.max_bytes,
            oldest_pending_seconds: self.spool.oldest_pending_secs(now_ms),
            error: spool_error.or_else(|| full.then(|| "the spool is full".to_owned())),
        };
        let (clickhouse, schema_version, ch_error) = match &self.db {
            None => (
                "none",
                0,
                Some(format!(
                    "no ClickHouse is configured or installed; events are kept in the spool. {}",
                    crate::managed::INSTALL_HINT
                )),
            ),
            Some(db) => {
                match tokio::time::timeout(Duration::from_secs(3), current_version(db)).await {
                    Ok(Ok(v)) => (
                        "up",
                        v,
                        (v < expected).then(|| {
                            "schema is behind: run `footfall migrate` (events are kept in the spool)"
                                .to_owned()
                        }),
                    ),
                    Ok(Err(e)) => ("down", 0, Some(format!("{e}; events are kept in the spool"))),
                    Err(_) => (
                        "down",
                        0,
                        Some("ClickHouse did not answer within 3 s; events are kept in the spool".into()),
                    ),
                }
            }
        };
        let delivering = clickhouse == "up" && schema_version >= expected;
        ReadinessReport {
            ready: accepting,
            status: match (accepting, delivering) {
                (false, _) => "unavailable",
                (true, true) => "ok",
                (true, false) => "degraded",
            },
            clickhouse,
            delivery: self.delivery.label(),
            schema_version,
            expected_schema_version: expected,
            spool,
            error: ch_error,
        }
    }
}
