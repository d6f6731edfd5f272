//! The audit log: one record per action on personal data, in ClickHouse, or in a local file when
//! ClickHouse cannot take it (moved to ClickHouse by the next record or `footfall audit flush`).
//!
//! Records are appended only. Each carries an HMAC over its fields keyed with the footfall secret,
//! so `footfall audit verify` detects a record edited outside footfall. Identifiers appear only as
//! keyed hashes (`id_hash`).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};

use crate::clock::SharedClock;
use crate::privacy::blocklist::IdKind;
use crate::privacy::ids::{IdHasher, Purpose};

pub const AUDIT_TABLE: &str = "audit_log";
/// The local fallback file, under `<data_dir>/audit/`.
pub const PENDING_FILE: &str = "pending.jsonl";

/// One record as stored.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct AuditRow {
    /// Seconds since the epoch (UTC).
    pub at: u32,
    #[serde(with = "clickhouse::serde::uuid")]
    pub audit_id: uuid::Uuid,
    /// Which footfall process wrote it (host name and process id).
    pub instance: String,
    /// The token name, `cli:<user>` for the command line, or `footfall` for automatic runs.
    pub actor: String,
    /// `subject.export`, `subject.delete`, `subject.block`, `subject.unblock`, `subject.correct`,
    /// `retention.run`, `audit.read`, `audit.verify` (and `stats.query` from the dashboards).
    pub action: String,
    pub site: String,
    /// Which kind of identifier the action was about (empty when none).
    pub id_kind: String,
    /// Keyed hash of the identifier (never the identifier itself).
    pub id_hash: String,
    /// JSON: the action's parameters (no identifiers) and counts.
    pub detail: String,
    /// `ok`, or `error: ...`.
    pub result: String,
    pub mac: String,
}

/// What an action reports about itself.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: String,
    pub action: &'static str,
    pub site: String,
    /// The subject, as (kind, stored representation of the identifier).
    pub subject: Option<(IdKind, String)>,
    pub detail: serde_json::Value,
    pub result: Result<(), String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot write the audit record to ClickHouse ({clickhouse}) nor to {path}: {source}")]
    Unwritable {
        clickhouse: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the audit log: {0}")]
    Read(#[from] clickhouse::error::Error),
}

/// Where records go.
pub struct AuditLog {
    db: Option<Client>,
    dir: PathBuf,
    ids: IdHasher,
    instance: String,
    clock: SharedClock,
}

impl AuditLog {
    /// `db` is a client for footfall's database (None: file only); `data_dir` holds the fallback.
    pub fn new(db: Option<Client>, data_dir: &Path, ids: IdHasher, clock: SharedClock) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        Self {
            db,
            dir: data_dir.join("audit"),
            ids,
            instance: format!("{host}:{}", std::process::id()),
            clock,
        }
    }

    fn mac_of(&self, r: &AuditRow) -> String {
        self.ids.mac(&[
            &r.at.to_string(),
            &r.audit_id.to_string(),
            &r.instance,
            &r.actor,
            &r.action,
            &r.site,
            &r.id_kind,
            &r.id_hash,
            &r.detail,
            &r.result,
        ])
    }

    /// Whether a stored record is exactly what footfall wrote.
    pub fn verify(&self, r: &AuditRow) -> bool {
        let want = self.mac_of(r);
        subtle::ConstantTimeEq::ct_eq(want.as_bytes(), r.mac.as_bytes()).into()
    }

    /// The keyed hash recorded for a subject identifier.
    pub fn subject_hash(&self, site: &str, kind: IdKind, id: &str) -> String {
        self.ids
            .hash(Purpose::Audit, site, &format!("{}:{id}", kind.as_str()))
    }

    fn row(&self, e: AuditEntry) -> AuditRow {
        let now_ms = self.clock.now_ms().max(0);
        let (id_kind, id_hash) = match &e.subject {
            Some((kind, id)) => (
                kind.as_str().to_owned(),
                self.subject_hash(&e.site, *kind, id),
            ),
            None => (String::new(), String::new()),
        };
        let mut row = AuditRow {
            at: (now_ms / 1000) as u32,
            audit_id: uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
                uuid::NoContext,
                (now_ms / 1000) as u64,
                ((now_ms % 1000) * 1_000_000) as u32,
            )),
            instance: self.instance.clone(),
            actor: e.actor,
            action: e.action.to_owned(),
            site: e.site,
            id_kind,
            id_hash,
            detail: e.detail.to_string(),
            result: match e.result {
                Ok(()) => "ok".into(),
                Err(msg) => format!("error: {msg}"),
            },
            mac: String::new(),
        };
        row.mac = self.mac_of(&row);
        row
    }

    /// Writes one record: to ClickHouse (after any records left in the local file), or to the
    /// local file (fsynced) when ClickHouse does not take it.
    pub async fn record(&self, e: AuditEntry) -> Result<AuditRow, AuditError> {
        let row = self.row(e);
        let ch_error = match &self.db {
            Some(db) => match self.flush_pending_to(db).await {
                Ok(_) => match insert(db, std::slice::from_ref(&row)).await {
                    Ok(()) => return Ok(row),
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
            },
            None => "no ClickHouse".to_owned(),
        };
        tracing::warn!(error = %ch_error, "audit record kept in the local audit file until ClickHouse takes it");
        self.append_pending(&row)
            .map_err(|source| AuditError::Unwritable {
                clickhouse: ch_error,
                path: self.dir.join(PENDING_FILE),
                source,
            })?;
        Ok(row)
    }

    fn append_pending(&self, row: &AuditRow) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let _lock = self.lock()?;
        let mut line = serde_json::to_vec(row).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(PENDING_FILE))?;
        f.write_all(&line)?;
        f.sync_data()
    }

    fn lock(&self) -> std::io::Result<std::fs::File> {
        std::fs::create_dir_all(&self.dir)?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("lock"))?;
        f.lock()?;
        Ok(f)
    }

    /// Records waiting in the local file.
    pub fn pending(&self) -> std::io::Result<Vec<AuditRow>> {
        let path = self.dir.join(PENDING_FILE);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut rows = Vec::new();
        for line in std::io::BufReader::new(file).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(&line) {
                Ok(row) => rows.push(row),
                // A torn last line from a crash mid-write: the action it describes did not report
                // success, so nothing is lost by skipping it.
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable audit file line"),
            }
        }
        Ok(rows)
    }

    /// Moves records from the local file into ClickHouse; returns how many.
    pub async fn flush_pending(&self) -> Result<usize, String> {
        match &self.db {
            Some(db) => self.flush_pending_to(db).await,
            None => Ok(0),
        }
    }

    async fn flush_pending_to(&self, db: &Client) -> Result<usize, String> {
        let path = self.dir.join(PENDING_FILE);
        if !path.exists() {
            return Ok(0);
        }
        let _lock = self.lock().map_err(|e| e.to_string())?;
        let rows = self.pending().map_err(|e| e.to_string())?;
        if !rows.is_empty() {
            insert(db, &rows).await.map_err(|e| e.to_string())?;
        }
        std::fs::remove_file(&path).map_err(|e| e.to_string())?;
        Ok(rows.len())
    }

    /// The newest records, newest first.
    pub async fn list(&self, limit: u64) -> Result<Vec<AuditRow>, AuditError> {
        let Some(db) = &self.db else {
            return Ok(Vec::new());
        };
        Ok(db
            .query("SELECT ?fields FROM audit_log ORDER BY at DESC, audit_id DESC LIMIT ?")
            .bind(limit)
            .fetch_all::<AuditRow>()
            .await?)
    }

    /// Every stored record, oldest first.
    pub async fn all(&self) -> Result<Vec<AuditRow>, AuditError> {
        let Some(db) = &self.db else {
            return Ok(Vec::new());
        };
        let mut rows = db
            .query("SELECT ?fields FROM audit_log")
            .fetch_all::<AuditRow>()
            .await?;
        rows.sort_by_key(|r| (r.at, r.audit_id));
        Ok(rows)
    }
}

async fn insert(db: &Client, rows: &[AuditRow]) -> Result<(), clickhouse::error::Error> {
    let mut insert = db.insert::<AuditRow>(AUDIT_TABLE).await?;
    for row in rows {
        insert.write(row).await?;
    }
    insert.end().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn log(dir: &Path) -> AuditLog {
        AuditLog::new(
            None,
            dir,
            IdHasher::new(b"secret"),
            std::sync::Arc::new(ManualClock::new(1_700_000_000_000)),
        )
    }

    fn entry() -> AuditEntry {
        AuditEntry {
            actor: "alice".into(),
            action: "subject.export",
            site: "shop".into(),
            subject: Some((IdKind::UserId, "0123abcd".into())),
            detail: serde_json::json!({"rows": 3}),
            result: Ok(()),
        }
    }

    #[tokio::test]
    async fn without_clickhouse_records_go_to_the_local_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path());
        let row = log.record(entry()).await.unwrap();
        assert_eq!(row.result, "ok");
        assert_eq!(row.id_kind, "user_id");
        assert!(!row.id_hash.contains("0123abcd"));
        assert_eq!(log.pending().unwrap(), vec![row.clone()]);
        assert!(log.verify(&row));
    }

    #[tokio::test]
    async fn an_edited_record_fails_verification() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path());
        let row = log.record(entry()).await.unwrap();
        for edit in [
            AuditRow {
                result: "error: x".into(),
                ..row.clone()
            },
            AuditRow {
                actor: "mallory".into(),
                ..row.clone()
            },
            AuditRow {
                at: row.at + 1,
                ..row.clone()
            },
        ] {
            assert!(!log.verify(&edit), "{edit:?}");
        }
    }

    #[tokio::test]
    async fn the_local_file_is_flushed_into_clickhouse_before_the_next_record() {
        let dir = tempfile::tempdir().unwrap();
        let first = log(dir.path()).record(entry()).await.unwrap();
        let mock = clickhouse::test::Mock::new();
        let rec = mock.add(clickhouse::test::handlers::record::<AuditRow>());
        let second_rec = mock.add(clickhouse::test::handlers::record::<AuditRow>());
        let with_db = AuditLog {
            db: Some(Client::default().with_mock(&mock)),
            ..log(dir.path())
        };
        let second = with_db.record(entry()).await.unwrap();
        assert_eq!(rec.collect::<Vec<AuditRow>>().await, vec![first]);
        assert_eq!(second_rec.collect::<Vec<AuditRow>>().await, vec![second]);
        assert!(with_db.pending().unwrap().is_empty());
    }
}
