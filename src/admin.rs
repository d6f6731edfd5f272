//! Operator actions on personal data (subject requests, retention, reading the audit log), each
//! writing exactly one audit record, shared by the admin HTTP API and the command line.

use std::sync::Arc;
use std::time::Duration;

use clickhouse::Client;
use serde::Serialize;

use crate::audit::{AuditEntry, AuditLog, AuditRow};
use crate::clock::SharedClock;
use crate::config::{Config, RetentionConfig};
use crate::privacy::blocklist::{BlockList, IdKind};
use crate::privacy::ids::IdHasher;
use crate::privacy::Policies;
use crate::retention::{self, TableReport};
use crate::rollup::{self, RollupReport};
use crate::stats::{self, Args, NamedQuery, Table};
use crate::subjects::{self, Export, ExportContext, Subject, SubjectError, TableCount};

/// Why an admin action failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    BadRequest(String),
    #[error("ClickHouse is not available: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Failed(String),
    #[error("the action succeeded but its audit record could not be written: {0}")]
    Audit(#[from] crate::audit::AuditError),
}

impl From<SubjectError> for AdminError {
    fn from(e: SubjectError) -> Self {
        match e {
            SubjectError::BadRequest(m) => AdminError::BadRequest(m),
            SubjectError::ClickHouse(e) if is_connection(&e) => {
                AdminError::Unavailable(e.to_string())
            }
            other => AdminError::Failed(other.to_string()),
        }
    }
}

fn is_connection(e: &clickhouse::error::Error) -> bool {
    matches!(
        e,
        clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut
    )
}

/// A subject request as named by an operator.
#[derive(Debug, Clone)]
pub struct SubjectRequest {
    pub site: String,
    pub kind: IdKind,
    /// The identifier as given (the clear user id, a hex visitor id, ...).
    pub id: String,
}

/// The outcome of a delete, block, unblock or correct.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeReport {
    pub action: &'static str,
    pub site: String,
    pub id_kind: &'static str,
    pub tables: Vec<TableCount>,
    pub audit_id: String,
}

pub struct Admin {
    db: Option<Client>,
    /// How footfall's tables are laid out (one server or a cluster).
    tables: crate::schema::Tables,
    /// Reads for the dashboards and the stats API (the analyst account when configured).
    stats_db: Option<Client>,
    pub audit: AuditLog,
    ids: IdHasher,
    pub blocks: Arc<BlockList>,
    retention: RetentionConfig,
    policies: Policies,
    geo_databases: (String, String),
    clock: SharedClock,
    mutation_timeout: Duration,
}

/// The parts an [`Admin`] is made of.
pub struct AdminParts {
    /// A client for footfall's database with the admin account (None: no ClickHouse).
    pub db: Option<Client>,
    /// A client for the stats API's reads (the analyst account, or the admin one).
    pub stats_db: Option<Client>,
    pub config: Config,
    pub secret: Vec<u8>,
    pub blocks: Arc<BlockList>,
    pub geo_databases: (String, String),
    pub clock: SharedClock,
}

impl Admin {
    pub fn new(p: AdminParts) -> Result<Self, String> {
        let ids = IdHasher::new(&p.secret);
        Ok(Self {
            audit: AuditLog::new(
                p.db.clone(),
                &p.config.data_dir,
                ids.clone(),
                p.clock.clone(),
            ),
            db: p.db,
            tables: crate::schema::Tables::from_config(&p.config.clickhouse),
            stats_db: p.stats_db,
            ids,
            blocks: p.blocks,
            retention: p.config.retention.clone(),
            policies: p.config.privacy.policies()?,
            geo_databases: p.geo_databases,
            clock: p.clock,
            mutation_timeout: Duration::from_secs(60),
        })
    }

    fn db(&self) -> Result<&Client, AdminError> {
        self.db
            .as_ref()
            .ok_or_else(|| AdminError::Unavailable("no ClickHouse is configured".into()))
    }

    fn subject(&self, r: &SubjectRequest) -> Result<Subject, AdminError> {
        Ok(Subject::new(&r.site, r.kind, &r.id, &self.ids)?)
    }

    /// The audit record of an action about `subject` (or none), before its outcome is known.
    fn entry(
        actor: &str,
        action: &'static str,
        site: &str,
        subject: Option<&Subject>,
        detail: serde_json::Value,
    ) -> AuditEntry {
        AuditEntry {
            actor: actor.to_owned(),
            action,
            site: site.to_owned(),
            subject: subject.map(|s| (s.kind, s.id.clone())),
            detail,
            result: Ok(()),
        }
    }

    /// Writes the one audit record of an action that has run (also when it failed), with what
    /// `describe` says of its outcome merged into the detail.
    async fn audited<T>(
        &self,
        mut entry: AuditEntry,
        result: Result<T, AdminError>,
        describe: impl FnOnce(&T) -> serde_json::Value,
    ) -> Result<(T, AuditRow), AdminError> {
        entry.result = match &result {
            Ok(v) => {
                if let (Some(obj), serde_json::Value::Object(more)) =
                    (entry.detail.as_object_mut(), describe(v))
                {
                    obj.extend(more);
                }
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        };
        let row = self.audit.record(entry).await?;
        result.map(|v| (v, row))
    }

    /// Everything held for a subject. `csv` gives the events rows as CSV instead of JSON.
    pub async fn export(
        &self,
        actor: &str,
        r: &SubjectRequest,
        csv: bool,
    ) -> Result<(Vec<u8>, AuditRow), AdminError> {
        let s = self.subject(r)?;
        let result = async {
            let db = self.db()?;
            if csv {
                let bytes = subjects::export_csv(db, &s).await?;
                let rows = bytes
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count()
                    .saturating_sub(1);
                Ok((bytes, rows))
            } else {
                let ctx = ExportContext {
                    retention: &self.retention,
                    policy: self.policies.for_site(&s.site),
                    geo_databases: self.geo_databases.clone(),
                    clock: self.clock.clone(),
                };
                let blocked = self.blocks.snapshot().contains(&s.block_key());
                let export: Export = subjects::export(db, &s, &ctx, blocked).await?;
                let rows = export.tables.iter().map(|t| t.row_count).sum();
                let bytes = serde_json::to_vec_pretty(&export)
                    .map_err(|e| AdminError::Failed(e.to_string()))?;
                Ok((bytes, rows))
            }
        }
        .await;
        let ((bytes, _), row) = self
            .audited(
                Self::entry(
                    actor,
                    "subject.export",
                    &s.site,
                    Some(&s),
                    serde_json::json!({"format": if csv { "csv" } else { "json" }}),
                ),
                result,
                |(_, rows)| serde_json::json!({"rows": rows}),
            )
            .await?;
        Ok((bytes, row))
    }

    /// Deletes everything held for a subject and confirms it is gone.
    pub async fn delete(
        &self,
        actor: &str,
        r: &SubjectRequest,
    ) -> Result<ChangeReport, AdminError> {
        let s = self.subject(r)?;
        let result = async {
            Ok(subjects::delete(
                self.db()?,
                &self.tables,
                &s,
                self.mutation_timeout,
                &self.clock,
            )
            .await?)
        }
        .await;
        let (tables, row) = self
            .audited(
                Self::entry(
                    actor,
                    "subject.delete",
                    &s.site,
                    Some(&s),
                    serde_json::json!({}),
                ),
                result,
                |t| serde_json::json!({"tables": t}),
            )
            .await?;
        Ok(self.report("delete", &s, tables, &row))
    }

    /// Blocks (or unblocks) collection for a subject, here at once and on every instance at its
    /// next block-list refresh.
    pub async fn set_blocked(
        &self,
        actor: &str,
        r: &SubjectRequest,
        blocked: bool,
    ) -> Result<ChangeReport, AdminError> {
        let s = self.subject(r)?;
        let result = async {
            subjects::set_blocked(self.db()?, &s, blocked, actor, &self.clock).await?;
            self.blocks.set(s.block_key(), blocked);
            Ok(())
        }
        .await;
        let action = if blocked {
            "subject.block"
        } else {
            "subject.unblock"
        };
        let ((), row) = self
            .audited(
                Self::entry(actor, action, &s.site, Some(&s), serde_json::json!({})),
                result,
                |_| serde_json::json!({}),
            )
            .await?;
        Ok(self.report(
            if blocked { "block" } else { "unblock" },
            &s,
            Vec::new(),
            &row,
        ))
    }

    /// Re-assigns a subject's user id (`to` as the site knows it; empty removes it).
    pub async fn correct(
        &self,
        actor: &str,
        r: &SubjectRequest,
        to: &str,
    ) -> Result<ChangeReport, AdminError> {
        let s = self.subject(r)?;
        let result = async {
            Ok(subjects::correct_user_id(
                self.db()?,
                &self.tables,
                &s,
                to,
                &self.ids,
                self.mutation_timeout,
                &self.clock,
            )
            .await?)
        }
        .await;
        let (tables, row) = self
            .audited(
                Self::entry(
                    actor,
                    "subject.correct",
                    &s.site,
                    Some(&s),
                    serde_json::json!({"field": "user_id", "cleared": to.trim().is_empty()}),
                ),
                result,
                |t| serde_json::json!({"tables": t}),
            )
            .await?;
        Ok(self.report("correct", &s, tables, &row))
    }

    fn report(
        &self,
        action: &'static str,
        s: &Subject,
        tables: Vec<TableCount>,
        row: &AuditRow,
    ) -> ChangeReport {
        ChangeReport {
            action,
            site: s.site.clone(),
            id_kind: s.kind.as_str(),
            tables,
            audit_id: row.audit_id.to_string(),
        }
    }

    /// Applies the retention periods now.
    pub async fn retention_run(&self, actor: &str) -> Result<Vec<TableReport>, AdminError> {
        let result = async {
            let now = self.clock.now_ms() / 1000;
            Ok(retention::run(
                self.db()?,
                &self.tables,
                &retention::rules(&self.retention),
                now,
                self.mutation_timeout,
            )
            .await?)
        }
        .await;
        let (reports, _) = self
            .audited(
                Self::entry(actor, "retention.run", "", None, serde_json::json!({})),
                result,
                |r| serde_json::json!({"tables": r}),
            )
            .await?;
        Ok(reports)
    }

    /// The newest audit records (reading them is itself audited).
    pub async fn audit_list(&self, actor: &str, limit: u64) -> Result<Vec<AuditRow>, AdminError> {
        let result = async {
            self.db()?;
            self.audit
                .list(limit)
                .await
                .map_err(|e| AdminError::Failed(e.to_string()))
        }
        .await;
        let (rows, _) = self
            .audited(
                Self::entry(
                    actor,
                    "audit.read",
                    "",
                    None,
                    serde_json::json!({"limit": limit}),
                ),
                result,
                |r| serde_json::json!({"rows": r.len()}),
            )
            .await?;
        Ok(rows)
    }

    /// Checks every audit record's HMAC; returns how many there are and those that were changed
    /// outside footfall (the check is itself audited).
    pub async fn audit_verify(&self, actor: &str) -> Result<(usize, Vec<AuditRow>), AdminError> {
        let result = async {
            self.db()?;
            self.audit
                .flush_pending()
                .await
                .map_err(AdminError::Unavailable)?;
            let rows = self
                .audit
                .all()
                .await
                .map_err(|e| AdminError::Failed(e.to_string()))?;
            let total = rows.len();
            let changed: Vec<AuditRow> =
                rows.into_iter().filter(|r| !self.audit.verify(r)).collect();
            Ok((total, changed))
        }
        .await;
        let (out, _) = self
            .audited(
                Self::entry(actor, "audit.verify", "", None, serde_json::json!({})),
                result,
                |(total, changed)| serde_json::json!({"records": total, "changed": changed.len()}),
            )
            .await?;
        Ok(out)
    }

    /// Runs a named dashboard query (the reading of statistics is audited like any other action
    /// on the data: one record with the query, its arguments and the number of rows).
    pub async fn stats_query(
        &self,
        actor: &str,
        q: &NamedQuery,
        args: &Args,
    ) -> Result<(Table, AuditRow), AdminError> {
        let result = async {
            let db = self
                .stats_db
                .as_ref()
                .ok_or_else(|| AdminError::Unavailable("no ClickHouse is configured".into()))?;
            stats::run(db, q, &args.values())
                .await
                .map_err(|e| match e {
                    stats::RunError::Stats(e) => AdminError::BadRequest(e.to_string()),
                    stats::RunError::ClickHouse(e) if is_connection(&e) => {
                        AdminError::Unavailable(e.to_string())
                    }
                    other => AdminError::Failed(other.to_string()),
                })
        }
        .await;
        self.audited(
            Self::entry(
                actor,
                "stats.query",
                &args.site,
                None,
                serde_json::json!({
                    "query": q.name,
                    "from": stats::format_date(args.from),
                    "to": stats::format_date(args.to),
                    "limit": args.limit,
                }),
            ),
            result,
            |t| serde_json::json!({"rows": t.rows.len()}),
        )
        .await
    }

    /// Recomputes the daily summaries of every day that changed (no audit: it derives aggregates
    /// from data already held, and acts on no subject).
    pub async fn rollups_run(&self) -> Result<RollupReport, AdminError> {
        rollup::run_once(self.db()?, &self.clock)
            .await
            .map_err(|e| match e {
                stats::RunError::ClickHouse(e) if is_connection(&e) => {
                    AdminError::Unavailable(e.to_string())
                }
                other => AdminError::Failed(other.to_string()),
            })
    }

    /// Re-reads the block list from ClickHouse (no audit: it changes nothing).
    pub async fn refresh_blocks(&self) -> Result<usize, clickhouse::error::Error> {
        let Some(db) = &self.db else {
            return Ok(self.blocks.len());
        };
        let keys = subjects::load_blocks(db).await?;
        let n = keys.len();
        self.blocks.replace(keys);
        Ok(n)
    }
}
