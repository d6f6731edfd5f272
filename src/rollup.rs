//! The rollup job: recomputes `daily_summary`, `session_breakdown` and `daily_breakdown` for every
//! (site, day) whose events changed since the job last looked, from the tables the materialised
//! views keep.
//!
//! Session metrics (sessions started, bounces, median length, entry and exit pages, channels) need
//! whole sessions, which no per-INSERT view can see. Distinct visitors per page and per dimension
//! value are kept by the views as sets of ids, which are costly to merge at query time over many
//! days; the job turns each day's sets into plain numbers once, so the dashboards read numbers.
//! `day_changes` records when each day last received events (by the server's clock), and a day is
//! recomputed until a summary was computed more than a few seconds after that. A day also depends on the next one
//! (sessions running past midnight), so a change in the first hours of a day recomputes the day
//! before as well. Late events replayed from a spool after an outage mark their own days changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use clickhouse::Client;
use serde::Serialize;

use crate::clock::SharedClock;
use crate::stats::{self, Value};

/// A change this many seconds into a day can still belong to a session of the day before.
const PREVIOUS_DAY_WINDOW_SECS: u32 = 6 * 3600;
/// `day_changes` is written by one view of an INSERT and the tables a summary reads by others,
/// which may finish a little later: a day counts as summarised only by a run this long after its
/// last change, and every run before that recomputes it again.
const SETTLE_SECS: u32 = 10;

/// The tables the job writes; each day's rows carry the version of the run that wrote them.
pub const SUMMARY_TABLES: [&str; 3] = ["daily_summary", "session_breakdown", "daily_breakdown"];

/// A version higher than every one this process handed out and than the clock's microseconds:
/// later runs win even when the clock stands still (tests) or two runs share a millisecond.
pub fn next_version(clock: &SharedClock) -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = (clock.now_ms().max(0) as u64).saturating_mul(1000);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// What one run recomputed.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RollupReport {
    /// (site, day) pairs recomputed.
    pub days: Vec<(String, String)>,
}

/// Recomputes the summaries of every changed day.
pub async fn run_once(db: &Client, clock: &SharedClock) -> Result<RollupReport, stats::RunError> {
    let changed: Vec<(String, String, u32)> = db
        .query(
            "SELECT site, toString(day), toUInt32(maxMerge(changed)) FROM day_changes GROUP BY site, day",
        )
        .fetch_all()
        .await?;
    let computed: Vec<(String, String, u32)> = db
        .query(
            "SELECT site, toString(day), toUInt32(max(computed_at)) FROM daily_summary GROUP BY site, day",
        )
        .fetch_all()
        .await?;
    let computed: HashMap<(String, String), u32> = computed
        .into_iter()
        .map(|(s, d, at)| ((s, d), at))
        .collect();
    let known: BTreeSet<(String, String)> = changed
        .iter()
        .map(|(s, d, _)| (s.clone(), d.clone()))
        .collect();
    let mut due: BTreeMap<(String, String), ()> = BTreeMap::new();
    for (site, day, at) in &changed {
        let key = (site.clone(), day.clone());
        if computed
            .get(&key)
            .is_some_and(|done| *done > at.saturating_add(SETTLE_SECS))
        {
            continue;
        }
        if let Some(date) = stats::parse_date(day) {
            let midnight = (date.to_julian_day() as i64 - 2_440_588) * 86_400;
            if (*at as i64) < midnight + PREVIOUS_DAY_WINDOW_SECS as i64 {
                if let Some(prev) = date.previous_day() {
                    let prev_key = (site.clone(), stats::format_date(prev));
                    if known.contains(&prev_key) {
                        due.insert(prev_key, ());
                    }
                }
            }
        }
        due.insert(key, ());
    }
    let mut report = RollupReport::default();
    for ((site, day), ()) in due {
        recompute_day(db, &site, &day, clock).await?;
        report.days.push((site, day));
    }
    Ok(report)
}

/// Writes a new version of one day's summary and breakdown.
pub async fn recompute_day(
    db: &Client,
    site: &str,
    day: &str,
    clock: &SharedClock,
) -> Result<(), stats::RunError> {
    let date = stats::parse_date(day)
        .ok_or_else(|| stats::StatsError::BadParameter(format!("not a date: {day}")))?;
    // Versions only need to grow; time does, across instances sharing the tables too.
    let version = next_version(clock);
    let values = HashMap::from([
        ("site", Value::String(site.to_owned())),
        ("day", Value::Date(date)),
        ("version", Value::UInt(version)),
    ]);
    for sql in [
        stats::DAILY_SUMMARY_SQL,
        stats::SESSION_BREAKDOWN_SQL,
        stats::DAILY_BREAKDOWN_SQL,
    ] {
        stats::query(db, sql, &values)?.execute().await?;
    }
    Ok(())
}
