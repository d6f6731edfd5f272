//! The ClickHouse writer: finished rows in, acknowledged INSERTs out. Mechanism only.
//!
//! Rows are streamed into the `clickhouse` crate's `Inserter`, which ends an INSERT on its row,
//! byte or time limit. Every row of the INSERT in progress is also kept until ClickHouse
//! acknowledges it, so a failed INSERT can be sent again whole. Errors are classified:
//! bad data (ClickHouse refuses the rows themselves) is written to a dead-letter file and
//! counted, never retried; everything else is retried with backoff until it succeeds.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clickhouse::inserter::Inserter;
use clickhouse::Client;
use tokio::sync::mpsc;

use crate::metrics::{Metrics, ReasonLabel};
use crate::row::EventRow;

pub const EVENTS_TABLE: &str = "events";

/// Limits of one INSERT.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub max_rows: u64,
    pub max_bytes: u64,
    pub period: Duration,
    /// Where refused rows go, one JSON object per line.
    pub dead_letter_dir: PathBuf,
    /// First retry delay; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

/// How a ClickHouse error is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The rows themselves are bad: set them aside, never retry.
    BadData,
    /// The server or the network: retry the same rows later.
    Retryable,
}

impl ErrorClass {
    pub fn label(self) -> &'static str {
        match self {
            ErrorClass::BadData => "bad_data",
            ErrorClass::Retryable => "retryable",
        }
    }
}

/// ClickHouse exception codes that mean the data cannot be inserted as it is.
const BAD_DATA_CODES: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    33,  // CANNOT_READ_ALL_DATA
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    53,  // TYPE_MISMATCH
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    131, // TOO_LARGE_STRING_SIZE
];

/// The `Code: N` of a ClickHouse exception message, if any.
pub fn exception_code(message: &str) -> Option<u32> {
    let rest = &message[message.find("Code: ")? + 6..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Bad data or retry, for any error the crate returns.
pub fn classify(err: &clickhouse::error::Error) -> ErrorClass {
    use clickhouse::error::Error as E;
    match err {
        E::BadResponse(msg) => match exception_code(msg) {
            Some(code) if BAD_DATA_CODES.contains(&code) => ErrorClass::BadData,
            _ => ErrorClass::Retryable,
        },
        // Our own row could not be serialised: retrying cannot help.
        E::Custom(_) | E::SequenceMustHaveLength | E::InvalidUtf8Encoding(_) => ErrorClass::BadData,
        _ => ErrorClass::Retryable,
    }
}

/// Receives rows until every sender is gone, then ends the last INSERT and returns.
pub async fn run(
    client: Client,
    mut rx: mpsc::Receiver<EventRow>,
    cfg: WriterConfig,
    metrics: Metrics,
) {
    let mut w = Writer {
        client,
        cfg,
        metrics,
        inserter: None,
        pending: Vec::new(),
    };
    loop {
        let next = match w.inserter.as_mut().and_then(|i| i.time_left()) {
            Some(left) if !w.pending.is_empty() => {
                match tokio::time::timeout(left, rx.recv()).await {
                    Ok(next) => next.map(Some),
                    Err(_) => Some(None), // period over: commit what we have
                }
            }
            _ => rx.recv().await.map(Some),
        };
        match next {
            Some(Some(row)) => {
                w.metrics.queue_depth.set(rx.len() as i64);
                w.write(row).await;
            }
            Some(None) => w.commit(false).await,
            None => break,
        }
    }
    w.commit(true).await;
    tracing::info!("writer stopped: every accepted row was acknowledged or set aside");
}

struct Writer {
    client: Client,
    cfg: WriterConfig,
    metrics: Metrics,
    inserter: Option<Inserter<EventRow>>,
    /// Rows of the INSERT in progress, kept until it is acknowledged.
    pending: Vec<EventRow>,
}

impl Writer {
    fn new_inserter(&self) -> Inserter<EventRow> {
        self.client
            .inserter::<EventRow>(EVENTS_TABLE)
            .with_max_rows(self.cfg.max_rows)
            .with_max_bytes(self.cfg.max_bytes)
            .with_period(Some(self.cfg.period))
    }

    async fn write(&mut self, row: EventRow) {
        if self.inserter.is_none() {
            self.inserter = Some(self.new_inserter());
        }
        let result = match self.inserter.as_mut() {
            Some(ins) => ins.write(&row).await,
            None => Ok(()),
        };
        self.pending.push(row);
        match result {
            Ok(()) => self.commit(false).await,
            Err(e) => self.recover(e).await,
        }
    }

    /// Ends the INSERT if a limit is reached (or always, when `force`).
    async fn commit(&mut self, force: bool) {
        if self.pending.is_empty() {
            return;
        }
        let Some(ins) = self.inserter.as_mut() else {
            return self.resend().await;
        };
        let result = if force {
            ins.force_commit().await
        } else {
            ins.commit().await
        };
        match result {
            Ok(q) if q.rows > 0 || force => self.acknowledged(),
            Ok(_) => {}
            Err(e) => self.recover(e).await,
        }
    }

    fn acknowledged(&mut self) {
        let n = self.pending.len() as u64;
        self.metrics.rows_inserted.inc_by(n);
        self.metrics.inserts.inc();
        self.metrics.batch_rows.observe(n as f64);
        self.metrics.clickhouse_up.set(1);
        self.pending.clear();
    }

    /// Handles a failed INSERT: set the rows aside or send them again until ClickHouse takes them.
    async fn recover(&mut self, mut err: clickhouse::error::Error) {
        // The crate's inserter must not be used after an error.
        self.inserter = None;
        let mut backoff = self.cfg.min_backoff;
        loop {
            let class = classify(&err);
            self.metrics
                .insert_errors
                .get_or_create(&ReasonLabel {
                    reason: class.label(),
                })
                .inc();
            match class {
                ErrorClass::BadData => {
                    tracing::error!(rows = self.pending.len(), error = %err, "ClickHouse refused the rows as bad data; writing them to the dead-letter file");
                    self.dead_letter(&err.to_string());
                    return;
                }
                ErrorClass::Retryable => {
                    self.metrics.clickhouse_up.set(0);
                    tracing::warn!(rows = self.pending.len(), error = %err, retry_in_ms = backoff.as_millis() as u64, "INSERT failed; will retry");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.cfg.max_backoff);
                    match self.send_pending().await {
                        Ok(()) => return self.acknowledged(),
                        Err(e) => err = e,
                    }
                }
            }
        }
    }

    async fn resend(&mut self) {
        if let Err(e) = self.send_pending().await {
            self.recover(e).await;
        } else {
            self.acknowledged();
        }
    }

    /// Sends every pending row in one INSERT of its own.
    async fn send_pending(&mut self) -> Result<(), clickhouse::error::Error> {
        let mut insert = self.client.insert::<EventRow>(EVENTS_TABLE).await?;
        for row in &self.pending {
            insert.write(row).await?;
        }
        insert.end().await
    }

    fn dead_letter(&mut self, reason: &str) {
        let rows = std::mem::take(&mut self.pending);
        self.metrics.rows_set_aside.inc_by(rows.len() as u64);
        if let Err(e) = write_dead_letters(&self.cfg.dead_letter_dir, reason, &rows) {
            tracing::error!(error = %e, rows = rows.len(), "cannot write the dead-letter file");
        }
    }
}

/// Appends `rows` with `reason` to today's dead-letter file.
pub fn write_dead_letters(
    dir: &std::path::Path,
    reason: &str,
    rows: &[EventRow],
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("events.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut buf = Vec::new();
    for row in rows {
        let line = serde_json::json!({ "reason": reason, "row": row });
        serde_json::to_writer(&mut buf, &line)?;
        buf.push(b'\n');
    }
    f.write_all(&buf)?;
    f.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clickhouse::error::Error;
    use clickhouse::test::{handlers, Mock};

    #[test]
    fn exception_codes_are_read_from_messages() {
        assert_eq!(exception_code("Code: 117. DB::Exception: bad"), Some(117));
        assert_eq!(
            exception_code("Code: 60, e.displayText() = DB::Exception: Table x doesn't exist"),
            Some(60)
        );
        assert_eq!(exception_code("nothing"), None);
    }

    #[test]
    fn classification() {
        let bad = Error::BadResponse("Code: 117. DB::Exception: Incorrect data".into());
        assert_eq!(classify(&bad), ErrorClass::BadData);
        let mismatch = Error::BadResponse("Code: 53. DB::Exception: Type mismatch".into());
        assert_eq!(classify(&mismatch), ErrorClass::BadData);
        let parts = Error::BadResponse("Code: 252. DB::Exception: Too many parts".into());
        assert_eq!(classify(&parts), ErrorClass::Retryable);
        let unknown_table = Error::BadResponse(
            "Code: 60. DB::Exception: Table footfall.events doesn't exist".into(),
        );
        assert_eq!(classify(&unknown_table), ErrorClass::Retryable);
        assert_eq!(classify(&Error::TimedOut), ErrorClass::Retryable);
        assert_eq!(
            classify(&Error::Network("refused".into())),
            ErrorClass::Retryable
        );
    }

    fn cfg(dir: &std::path::Path) -> WriterConfig {
        WriterConfig {
            max_rows: 2,
            max_bytes: 1 << 20,
            period: Duration::from_millis(50),
            dead_letter_dir: dir.to_owned(),
            min_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
        }
    }

    fn row(n: u32) -> EventRow {
        EventRow {
            site: "demo".into(),
            seq: n,
            ..EventRow::default()
        }
    }

    #[tokio::test]
    async fn a_refused_batch_is_set_aside_and_the_next_one_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let mock = Mock::new();
        let client = Client::default().with_mock(&mock);
        mock.add(handlers::exception(117));
        let recording = mock.add(handlers::record());
        let (m, _r) = Metrics::standalone();
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(run(client, rx, cfg(dir.path()), m.clone()));
        for n in 0..4 {
            tx.send(row(n)).await.unwrap();
        }
        drop(tx);
        task.await.unwrap();
        let delivered: Vec<EventRow> = recording.collect().await;
        assert_eq!(
            delivered.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(m.rows_set_aside.get(), 2);
        assert_eq!(m.rows_inserted.get(), 2);
        let dead = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
        assert_eq!(dead.lines().count(), 2);
        assert!(dead.contains("117"), "{dead}");
    }

    #[tokio::test]
    async fn a_server_error_is_retried_with_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mock = Mock::new();
        let client = Client::default().with_mock(&mock);
        mock.add(handlers::failure(http::StatusCode::SERVICE_UNAVAILABLE));
        let recording = mock.add(handlers::record());
        let (m, _r) = Metrics::standalone();
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(run(client, rx, cfg(dir.path()), m.clone()));
        tx.send(row(7)).await.unwrap();
        tx.send(row(8)).await.unwrap();
        drop(tx);
        task.await.unwrap();
        let delivered: Vec<EventRow> = recording.collect().await;
        assert_eq!(
            delivered.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![7, 8]
        );
        assert_eq!(m.rows_set_aside.get(), 0);
        assert!(!dir.path().join("events.jsonl").exists());
    }
}
