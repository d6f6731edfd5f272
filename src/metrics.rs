//! Every metric footfall exports, named in one place, rendered at `GET /metrics` in Prometheus text format.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::enrich::Step;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FieldLabel {
    pub field: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabel {
    pub status: u16,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum StepName {
    client_ip,
    geo,
    agent,
    fingerprint,
    visitor,
    consistency,
    row,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabel {
    pub step: StepName,
}

/// Handles to every metric. Cloning shares the underlying values.
#[derive(Clone)]
pub struct Metrics {
    pub events_received: Counter,
    pub events_accepted: Family<KindLabel, Counter>,
    pub events_dropped: Family<ReasonLabel, Counter>,
    pub events_rejected: Family<RejectLabel, Counter>,
    pub fields_truncated: Family<FieldLabel, Counter>,
    pub rows_inserted: Counter,
    pub inserts: Counter,
    pub insert_errors: Family<ReasonLabel, Counter>,
    pub rows_dead_lettered: Counter,
    pub rows_already_delivered: Counter,
    pub batch_rows: Histogram,
    pub clickhouse_up: Gauge,
    pub spool_appended: Counter,
    pub spool_fsyncs: Counter,
    pub spool_group_records: Histogram,
    pub spool_commit_seconds: Histogram,
    pub spool_answer_wakeups: Counter,
    pub spool_replayed: Counter,
    pub spool_corrupt_records: Counter,
    pub spool_corrupt_bytes: Counter,
    pub spool_pending_records: Gauge,
    pub spool_pending_bytes: Gauge,
    pub spool_disk_bytes: Gauge,
    pub spool_oldest_pending_seconds: Gauge<f64, AtomicU64>,
    pub auth_failures: Family<ReasonLabel, Counter>,
    pub unauthorised_access_alert: Gauge,
    pub blocklist_size: Gauge,
    pub salt_shared: Gauge,
    pub salt_switches: Counter,
    step_seconds: Family<StepLabel, Histogram>,
    steps: [Histogram; Step::COUNT],
}

fn step_histogram() -> Histogram {
    // 50 ns .. ~3 ms
    Histogram::new(exponential_buckets(5e-8, 3.0, 11))
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let step_seconds = Family::<StepLabel, Histogram>::new_with_constructor(
            step_histogram as fn() -> Histogram,
        );
        let steps = Step::ALL.map(|s| {
            step_seconds
                .get_or_create(&StepLabel { step: s.label() })
                .clone()
        });
        let m = Self {
            events_received: Counter::default(),
            events_accepted: Family::default(),
            events_dropped: Family::default(),
            events_rejected: Family::default(),
            fields_truncated: Family::default(),
            rows_inserted: Counter::default(),
            inserts: Counter::default(),
            insert_errors: Family::default(),
            rows_dead_lettered: Counter::default(),
            rows_already_delivered: Counter::default(),
            batch_rows: Histogram::new(exponential_buckets(1.0, 4.0, 10)),
            clickhouse_up: Gauge::default(),
            spool_appended: Counter::default(),
            spool_fsyncs: Counter::default(),
            spool_group_records: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            // 25 µs (a write to a disk cache) up to 0.2 s (a disk in trouble).
            spool_commit_seconds: Histogram::new(exponential_buckets(25e-6, 2.0, 14)),
            spool_answer_wakeups: Counter::default(),
            spool_replayed: Counter::default(),
            spool_corrupt_records: Counter::default(),
            spool_corrupt_bytes: Counter::default(),
            spool_pending_records: Gauge::default(),
            spool_pending_bytes: Gauge::default(),
            spool_disk_bytes: Gauge::default(),
            spool_oldest_pending_seconds: Gauge::default(),
            auth_failures: Family::default(),
            unauthorised_access_alert: Gauge::default(),
            blocklist_size: Gauge::default(),
            salt_shared: Gauge::default(),
            salt_switches: Counter::default(),
            step_seconds,
            steps,
        };
        for reason in ["missing", "invalid", "forbidden", "locked_out"] {
            drop(m.auth_failures.get_or_create(&ReasonLabel { reason }));
        }
        // Zero-valued series exist from the start, so alerts and dashboards see them before the first event.
        for reason in crate::enrich::DropReason::ALL {
            drop(m.events_dropped.get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            }));
        }
        for class in [
            crate::writer::ErrorClass::BadData,
            crate::writer::ErrorClass::Retryable,
        ] {
            drop(m.insert_errors.get_or_create(&ReasonLabel {
                reason: class.label(),
            }));
        }
        let r = registry;
        r.register(
            "footfall_events_received",
            "Beacons received on /api/event",
            m.events_received.clone(),
        );
        r.register(
            "footfall_events_accepted",
            "Events accepted for storage, by kind",
            m.events_accepted.clone(),
        );
        r.register(
            "footfall_events_dropped",
            "Events deliberately not stored (answered 202), by reason",
            m.events_dropped.clone(),
        );
        r.register(
            "footfall_events_rejected",
            "Requests refused with an error status, by status and reason",
            m.events_rejected.clone(),
        );
        r.register(
            "footfall_fields_truncated",
            "String or list fields cut to their documented limit, by field",
            m.fields_truncated.clone(),
        );
        r.register(
            "footfall_rows_inserted",
            "Rows whose INSERT ClickHouse acknowledged",
            m.rows_inserted.clone(),
        );
        r.register(
            "footfall_inserts",
            "INSERT statements ClickHouse acknowledged",
            m.inserts.clone(),
        );
        r.register(
            "footfall_insert_errors",
            "Failed INSERTs, by error kind",
            m.insert_errors.clone(),
        );
        r.register(
            "footfall_rows_dead_lettered",
            "Rows ClickHouse refused as bad data (or unreadable spool records), written to the dead-letter file",
            m.rows_dead_lettered.clone(),
        );
        r.register(
            "footfall_rows_already_delivered",
            "Rows found already in ClickHouse when re-sending after a failure or a restart, and not sent again",
            m.rows_already_delivered.clone(),
        );
        r.register(
            "footfall_salt_shared",
            "1 when today's visitor salt is the one agreed with the other instances in ClickHouse (salts.store = \"clickhouse\"), 0 while an instance uses a salt of its own",
            m.salt_shared.clone(),
        );
        r.register(
            "footfall_salt_switches",
            "Times today's visitor salt was replaced by the shared one (visitor ids of that day split, never linked)",
            m.salt_switches.clone(),
        );
        r.register(
            "footfall_batch_rows",
            "Rows per acknowledged INSERT",
            m.batch_rows.clone(),
        );
        r.register(
            "footfall_admin_auth_failures",
            "Refused requests to the admin and stats APIs, by reason",
            m.auth_failures.clone(),
        );
        r.register(
            "footfall_unauthorised_access_alert",
            "1 while failed admin authentications in the last 5 minutes reach admin.alert_threshold",
            m.unauthorised_access_alert.clone(),
        );
        r.register(
            "footfall_blocklist_size",
            "Identifiers on the subject block list",
            m.blocklist_size.clone(),
        );
        r.register(
            "footfall_spool_appended",
            "Events made durable in the spool",
            m.spool_appended.clone(),
        );
        r.register(
            "footfall_spool_fsyncs",
            "fdatasync calls on spool segments",
            m.spool_fsyncs.clone(),
        );
        r.register(
            "footfall_spool_group_records",
            "Events sharing one spool commit (group commit size)",
            m.spool_group_records.clone(),
        );
        r.register(
            "footfall_spool_commit_seconds",
            "Time to write one group to the spool and fdatasync it (what every 202 waits for)",
            m.spool_commit_seconds.clone(),
        );
        r.register(
            "footfall_spool_answer_wakeups",
            "Messages from the spool committer that woke HTTP workers to answer (one per worker per commit, or one per request without a relay)",
            m.spool_answer_wakeups.clone(),
        );
        r.register(
            "footfall_spool_replayed",
            "Events read back from the spool that an earlier run had accepted",
            m.spool_replayed.clone(),
        );
        r.register(
            "footfall_spool_corrupt_records",
            "Damaged or torn spool regions skipped (each region counted once)",
            m.spool_corrupt_records.clone(),
        );
        r.register(
            "footfall_spool_corrupt_bytes",
            "Bytes of damaged spool regions skipped",
            m.spool_corrupt_bytes.clone(),
        );
        r.register(
            "footfall_spool_pending_records",
            "Events in the spool not yet acknowledged by ClickHouse",
            m.spool_pending_records.clone(),
        );
        r.register(
            "footfall_spool_pending_bytes",
            "Bytes in the spool not yet acknowledged by ClickHouse",
            m.spool_pending_bytes.clone(),
        );
        r.register(
            "footfall_spool_disk_bytes",
            "Bytes of spool segment files on disk (not counting the up to 1 MiB of zeros written ahead in the live segment)",
            m.spool_disk_bytes.clone(),
        );
        r.register(
            "footfall_spool_oldest_pending_seconds",
            "Age of the oldest event read from the spool and not yet acknowledged",
            m.spool_oldest_pending_seconds.clone(),
        );
        r.register(
            "footfall_clickhouse_up",
            "1 when the last ClickHouse operation succeeded",
            m.clickhouse_up.clone(),
        );
        r.register(
            "footfall_enrich_step_seconds",
            "Time spent in each enrichment step",
            m.step_seconds.clone(),
        );
        m
    }

    /// A registry with fresh metrics, for tests and benches.
    pub fn standalone() -> (Self, Registry) {
        let mut registry = Registry::default();
        let m = Self::new(&mut registry);
        (m, registry)
    }

    #[inline]
    pub fn step(&self, step: Step) -> &Histogram {
        &self.steps[step as usize]
    }
}

/// Renders `registry` in Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}
