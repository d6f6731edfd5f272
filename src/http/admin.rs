//! The admin API (`/api/admin/...`): token authentication, its failure handling, and the routes for
//! subject requests, retention and the audit log, with one error enum and one HTTP mapping.
//!
//! Identifiers travel in POST bodies, never in URLs, so they do not end up in access logs.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::Deserialize;

use crate::admin::{Admin, AdminError, SubjectRequest};
use crate::auth::{AuthFailure, FailureGuard, Principal, Scope, Tokens};
use crate::metrics::ReasonLabel;
use crate::privacy::blocklist::IdKind;
use crate::privacy::ids::{IdHasher, Purpose};

use super::AppState;

/// What the admin API needs besides the ingest state.
pub struct AdminState {
    pub admin: Arc<Admin>,
    pub tokens: Tokens,
    pub failures: FailureGuard,
    /// Hashes client addresses for the failure log (addresses are never logged in the clear).
    pub ids: IdHasher,
}

impl AdminState {
    pub fn new(
        admin: Arc<Admin>,
        config: &crate::config::AdminConfig,
        secret: &[u8],
    ) -> Result<Self, String> {
        Ok(Self {
            admin,
            tokens: Tokens::from_config(config)?,
            failures: FailureGuard::new(config.failures_per_minute, config.alert_threshold),
            ids: IdHasher::new(secret),
        })
    }
}

/// Every way an admin request can fail.
#[derive(Debug, thiserror::Error)]
pub enum AdminApiError {
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("this token may not {0}")]
    Forbidden(&'static str),
    #[error("too many failed authentications from this address; retry after {0} s")]
    LockedOut(u64),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Failed(String),
    #[error("no such admin endpoint")]
    NotFound,
}

impl From<AdminError> for AdminApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::BadRequest(m) => AdminApiError::BadRequest(m),
            AdminError::Unavailable(m) => AdminApiError::Unavailable(m),
            e @ (AdminError::Failed(_) | AdminError::Audit(_)) => {
                AdminApiError::Failed(e.to_string())
            }
        }
    }
}

impl ResponseError for AdminApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            AdminApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            AdminApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            AdminApiError::LockedOut(_) => StatusCode::TOO_MANY_REQUESTS,
            AdminApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AdminApiError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            AdminApiError::NotFound => StatusCode::NOT_FOUND,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        match self {
            AdminApiError::Unauthorized => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"footfall\""));
            }
            AdminApiError::LockedOut(secs) => {
                res.insert_header((header::RETRY_AFTER, secs.to_string()));
            }
            AdminApiError::Unavailable(_) => {
                res.insert_header((header::RETRY_AFTER, "30"));
            }
            _ => {}
        }
        res.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        res.json(serde_json::json!({ "error": self.to_string() }))
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/admin")
            .route("/whoami", web::get().to(whoami))
            .route("/subjects/export", web::post().to(export))
            .route("/subjects/{action}", web::post().to(change))
            .route("/retention/run", web::post().to(retention))
            .route("/rollups/run", web::post().to(rollups))
            .route("/audit", web::get().to(audit))
            .default_service(web::to(unknown)),
    );
}

fn client(req: &HttpRequest, state: &AppState) -> IpAddr {
    let peer = req
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let h = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
    crate::enrich::client_ip::client_ip(
        peer,
        h("x-forwarded-for"),
        h("x-real-ip"),
        state.enricher.trusted_proxies(),
    )
}

/// The principal behind the request, if it may act in `scope`. Every refusal is counted and
/// logged (with a keyed hash of the address); repeated failures lock the address out.
pub fn authorize(
    req: &HttpRequest,
    state: &AppState,
    scope: Scope,
) -> Result<Principal, AdminApiError> {
    let a = &state.admin;
    let ip = client(req, state);
    let count = |reason: &'static str| {
        state
            .metrics
            .auth_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    };
    if let Some(secs) = a.failures.locked_for(ip) {
        count("locked_out");
        return Err(AdminApiError::LockedOut(secs));
    }
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let failure = match a.tokens.authenticate(auth) {
        Ok(p) if p.may(scope) => return Ok(p),
        Ok(p) => {
            count(AuthFailure::Forbidden.as_str());
            tracing::warn!(token = %p.name, scope = scope.as_str(), path = req.path(), "admin request outside the token's scopes");
            return Err(AdminApiError::Forbidden(match scope {
                Scope::Stats => "read statistics",
                Scope::Subjects => "act on data-subject requests",
                Scope::Admin => "administer footfall",
            }));
        }
        Err(f) => f,
    };
    count(failure.as_str());
    let locked = a.failures.failed(ip);
    state
        .metrics
        .unauthorised_access_alert
        .set(a.failures.alerting() as i64);
    let client_hash = &a.ids.hash(Purpose::Audit, "auth", &ip.to_string())[..12];
    tracing::warn!(
        client = client_hash,
        reason = failure.as_str(),
        path = req.path(),
        locked_out = locked,
        "admin authentication failed"
    );
    Err(AdminApiError::Unauthorized)
}

async fn unknown(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AdminApiError> {
    authorize(&req, &state, Scope::Stats)?;
    Err(AdminApiError::NotFound)
}

async fn whoami(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AdminApiError> {
    let p = authorize(&req, &state, Scope::Stats).or_else(|e| match e {
        AdminApiError::Forbidden(_) => authorize(&req, &state, Scope::Subjects),
        e => Err(e),
    })?;
    let scopes: Vec<&str> = ["stats", "subjects", "admin"]
        .into_iter()
        .filter(|s| Scope::parse(s).is_some_and(|s| p.may(s)))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "name": p.name, "scopes": scopes })))
}

/// A subject request body: the site and exactly one identifier.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubjectBody {
    site: String,
    user_id: Option<String>,
    client_id: Option<String>,
    visitor_id: Option<String>,
    fingerprint_id: Option<String>,
    session_id: Option<String>,
    /// Export only: `json` (default) or `csv`.
    format: Option<String>,
    /// Correct only: the right user id (empty removes it).
    to_user_id: Option<String>,
}

fn parse_body(body: &[u8]) -> Result<(SubjectRequest, SubjectBody), AdminApiError> {
    let b: SubjectBody = serde_json::from_slice(body)
        .map_err(|e| AdminApiError::BadRequest(format!("invalid request body: {e}")))?;
    let given: Vec<(IdKind, &String)> = [
        (IdKind::UserId, &b.user_id),
        (IdKind::ClientId, &b.client_id),
        (IdKind::VisitorId, &b.visitor_id),
        (IdKind::FingerprintId, &b.fingerprint_id),
        (IdKind::SessionId, &b.session_id),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    .collect();
    let [(kind, id)] = given[..] else {
        return Err(AdminApiError::BadRequest(
            "name exactly one of user_id, client_id, visitor_id, fingerprint_id, session_id".into(),
        ));
    };
    let req = SubjectRequest {
        site: b.site.clone(),
        kind,
        id: id.clone(),
    };
    Ok((req, b))
}

async fn export(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AdminApiError> {
    let p = authorize(&req, &state, Scope::Subjects)?;
    let (r, b) = parse_body(&body)?;
    let csv = match b.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(AdminApiError::BadRequest(format!(
                "format must be json or csv, not {other:?}"
            )))
        }
    };
    let (bytes, row) = state.admin.admin.export(&p.name, &r, csv).await?;
    Ok(HttpResponse::Ok()
        .content_type(if csv {
            "text/csv; charset=utf-8"
        } else {
            "application/json"
        })
        .insert_header(("X-Footfall-Audit-Id", row.audit_id.to_string()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(bytes))
}

/// delete, block, unblock and correct: the changes to what is held for a subject.
async fn change(
    req: HttpRequest,
    action: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AdminApiError> {
    let p = authorize(&req, &state, Scope::Subjects)?;
    let (r, b) = parse_body(&body)?;
    let admin = &state.admin.admin;
    let report = match action.as_str() {
        "delete" => admin.delete(&p.name, &r).await?,
        "block" => admin.set_blocked(&p.name, &r, true).await?,
        "unblock" => admin.set_blocked(&p.name, &r, false).await?,
        "correct" => {
            let Some(to) = b.to_user_id else {
                return Err(AdminApiError::BadRequest(
                    "to_user_id is required (empty removes the user id)".into(),
                ));
            };
            admin.correct(&p.name, &r, &to).await?
        }
        _ => return Err(AdminApiError::NotFound),
    };
    Ok(HttpResponse::Ok().json(report))
}

async fn retention(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AdminApiError> {
    let p = authorize(&req, &state, Scope::Admin)?;
    let reports = state.admin.admin.retention_run(&p.name).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "tables": reports })))
}

async fn rollups(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AdminApiError> {
    authorize(&req, &state, Scope::Admin)?;
    let report = state.admin.admin.rollups_run().await?;
    Ok(HttpResponse::Ok().json(report))
}

#[derive(Deserialize)]
struct AuditQuery {
    limit: Option<u64>,
}

async fn audit(
    req: HttpRequest,
    q: web::Query<AuditQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AdminApiError> {
    let p = authorize(&req, &state, Scope::Admin)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let rows = state.admin.admin.audit_list(&p.name, limit).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "records": rows })))
}
