//! The stats API (`/api/stats/...`) behind the dashboard: the configured sites, the named queries
//! and their answers. Every route needs a token with the `stats` scope; every answer is audited.
//!
//! Parameters come from the query string and are checked and typed before they reach the
//! client-side binder (`src/stats.rs`); no input becomes SQL text.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::auth::Scope;
use crate::stats::{self, Args, StatsError};

use super::admin::{authorize, AdminApiError};
use super::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/stats")
            .route("/sites", web::get().to(sites))
            .route("/queries", web::get().to(queries))
            .route("/{name}", web::get().to(run))
            .default_service(web::to(unknown)),
    );
}

async fn unknown(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AdminApiError> {
    authorize(&req, &state, Scope::Stats)?;
    Err(AdminApiError::NotFound)
}

fn no_store(mut res: HttpResponse) -> HttpResponse {
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    res
}

async fn sites(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AdminApiError> {
    authorize(&req, &state, Scope::Stats)?;
    Ok(no_store(
        HttpResponse::Ok().json(serde_json::json!({ "sites": state.sites.ids() })),
    ))
}

async fn queries(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AdminApiError> {
    authorize(&req, &state, Scope::Stats)?;
    Ok(no_store(
        HttpResponse::Ok().json(serde_json::json!({ "queries": stats::queries() })),
    ))
}

#[derive(Deserialize)]
struct RunParams {
    site: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
}

async fn run(
    req: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AdminApiError> {
    let principal = authorize(&req, &state, Scope::Stats)?;
    let q = stats::find(&name).map_err(|_| AdminApiError::NotFound)?;
    let params = web::Query::<RunParams>::from_query(req.query_string())
        .map_err(|e| AdminApiError::BadRequest(format!("invalid query string: {e}")))?;
    let today = stats::date_of_ms(state.clock.now_ms());
    let args = Args::parse(
        params.site.as_deref(),
        params.from.as_deref(),
        params.to.as_deref(),
        params.limit.as_deref(),
        today,
    )
    .map_err(|e: StatsError| AdminApiError::BadRequest(e.to_string()))?;
    if !state.sites.contains(&args.site) {
        return Err(AdminApiError::BadRequest(format!(
            "site {:?} is not configured",
            args.site
        )));
    }
    let started = std::time::Instant::now();
    let (table, row) = state
        .admin
        .admin
        .stats_query(&principal.name, q, &args)
        .await?;
    Ok(no_store(
        HttpResponse::Ok()
            .insert_header(("X-Footfall-Audit-Id", row.audit_id.to_string()))
            .json(serde_json::json!({
                "query": q.name,
                "site": args.site,
                "from": stats::format_date(args.from),
                "to": stats::format_date(args.to),
                "columns": table.columns,
                "rows": table.rows,
                "elapsed_ms": started.elapsed().as_millis() as u64,
            })),
    ))
}
