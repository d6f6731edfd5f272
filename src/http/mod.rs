//! The HTTP surface: routes, the shared state, and the ingest handler that runs a beacon through parse, checks and enrichment.
//!
//! `POST /api/event` is the only write path. `GET /healthz`, `/readyz` and `/metrics` are for
//! operators; `GET /footfall.js` and `/` serve the tracker and the demo page embedded at build time.

pub mod admin;
pub mod assets;
pub mod error;
pub mod origin;
pub mod stats;

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use crate::beacon;
use crate::clock::SharedClock;
use crate::config::LimitsConfig;
use crate::enrich::consistency::HintHeaders;
use crate::enrich::{DropReason, Enricher, RequestMeta};
use crate::health::Readiness;
use crate::metrics::{FieldLabel, KindLabel, Metrics, ReasonLabel, RejectLabel};
use crate::privacy::blocklist::BlockList;
use crate::privacy::{self, Policies, Signals};
use crate::spool::{AppendError, Appender, Relay};
use actix_web::http::header::{self, AsHeaderName, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use futures_util::StreamExt;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use prometheus_client::registry::Registry;

pub use error::ApiError;
use origin::Sites;

/// How long a client may take to send a body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// What a 503 asks the client to wait: long enough for the writer to make room.
const RETRY_AFTER_UNAVAILABLE_SECS: u64 = 30;

/// Everything the handlers share.
pub struct AppState {
    pub limits: LimitsConfig,
    pub sites: Sites,
    pub enricher: Enricher,
    pub limiter: DefaultKeyedRateLimiter<IpAddr>,
    pub spool: Arc<Appender>,
    pub metrics: Metrics,
    pub registry: Arc<Registry>,
    pub readiness: Readiness,
    pub clock: SharedClock,
    pub assets: assets::Assets,
    /// Per-site minimisation and consent.
    pub policies: Policies,
    /// Subjects whose events are dropped.
    pub blocks: Arc<BlockList>,
    pub admin: admin::AdminState,
}

impl AppState {
    /// A keyed rate limiter for `limits`.
    pub fn limiter(limits: &LimitsConfig) -> DefaultKeyedRateLimiter<IpAddr> {
        let per_second = NonZeroU32::new(limits.rate_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.rate_burst).unwrap_or(NonZeroU32::MIN);
        RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
    }
}

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.configure(admin::routes)
        .configure(stats::routes)
        .route("/dashboard", get_or_head().to(assets::dashboard))
        .route("/dashboard/", get_or_head().to(assets::dashboard))
        .route("/dashboard/app.js", get_or_head().to(assets::dashboard_js))
        .route(
            "/dashboard/app.css",
            get_or_head().to(assets::dashboard_css),
        )
        .service(
            web::resource("/api/event")
                .route(web::post().to(ingest))
                .route(web::method(Method::OPTIONS).to(preflight))
                .default_service(web::to(|| async {
                    ApiError::MethodNotAllowed.error_response()
                })),
        )
        .route("/healthz", get_or_head().to(healthz))
        .route("/readyz", get_or_head().to(readyz))
        .route("/metrics", get_or_head().to(metrics))
        .route("/footfall.js", get_or_head().to(assets::tracker))
        .route("/footfall-ports.js", get_or_head().to(assets::ports))
        .route("/", get_or_head().to(assets::demo))
        .default_service(web::to(|| async { ApiError::NotFound.error_response() }));
}

/// GET, and HEAD for monitors and caches (actix sends HEAD answers without their body).
fn get_or_head() -> actix_web::Route {
    web::route().guard(actix_web::guard::Any(actix_web::guard::Get()).or(actix_web::guard::Head()))
}

/// The result of a request that was not refused; only given once its origin was checked.
enum Outcome {
    Accepted,
    Dropped(DropReason),
}

// Header names are constants: a `&str` name is parsed and classified on every lookup, and a
// beacon request looks up about fifteen.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const SEC_CH_UA: HeaderName = HeaderName::from_static("sec-ch-ua");
const SEC_CH_UA_MOBILE: HeaderName = HeaderName::from_static("sec-ch-ua-mobile");
const SEC_CH_UA_PLATFORM: HeaderName = HeaderName::from_static("sec-ch-ua-platform");
const SEC_PURPOSE: HeaderName = HeaderName::from_static("sec-purpose");
const PURPOSE: HeaderName = HeaderName::from_static("purpose");
const SEC_GPC: HeaderName = HeaderName::from_static("sec-gpc");

fn header(headers: &HeaderMap, name: impl AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The page origin: `Origin`, or the origin of `Referer` when a browser sent no `Origin`.
fn request_origin(req: &HttpRequest) -> Option<&str> {
    let headers = req.headers();
    header(headers, header::ORIGIN)
        .filter(|o| *o != "null")
        .or_else(|| header(headers, header::REFERER).and_then(origin::origin_of_url))
}

/// Rate-limit key: the address, or its /64 for IPv6 (one subscriber usually holds a whole /64).
fn limiter_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

async fn ingest(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    state.metrics.events_received.inc();
    let result = handle(&req, payload, &state).await;
    // An event taken or dropped on purpose came from an origin its site allows (`handle` checks
    // it before any outcome); only a refusal has to ask every site.
    let allowed = match result {
        Ok(_) => Allowed::Checked,
        Err(_) => Allowed::Unknown,
    };
    let mut res = match result {
        Ok(Outcome::Accepted) => HttpResponse::Accepted().finish(),
        Ok(Outcome::Dropped(reason)) => {
            state
                .metrics
                .events_dropped
                .get_or_create(&ReasonLabel {
                    reason: reason.as_str(),
                })
                .inc();
            HttpResponse::Accepted()
                .insert_header(("X-Footfall-Dropped", reason.as_str()))
                .finish()
        }
        Err(err) => {
            state
                .metrics
                .events_rejected
                .get_or_create(&RejectLabel {
                    status: err.status_code().as_u16(),
                    reason: err.reason(),
                })
                .inc();
            err.error_response()
        }
    };
    cors(&req, &state, &mut res, allowed);
    res
}

/// What the caller of [`cors`] already knows of the request's origin.
#[derive(Clone, Copy)]
enum Allowed {
    /// A site allows the origin [`request_origin`] read: the `Origin` header, unless it was
    /// missing, unreadable or `null` and the `Referer` stood in for it.
    Checked,
    /// Not checked yet.
    Unknown,
}

/// Lets the tracker read our answer, for origins some site allows; others learn nothing.
fn cors(req: &HttpRequest, state: &AppState, res: &mut HttpResponse, allowed: Allowed) {
    let headers = res.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    let Some(value) = req.headers().get(header::ORIGIN) else {
        return;
    };
    let allowed = match (allowed, value.to_str()) {
        (_, Err(_)) => false,
        (Allowed::Checked, Ok(origin)) => origin != "null",
        (Allowed::Unknown, Ok(origin)) => state.sites.any_allows(origin),
    };
    if allowed {
        // The request's own header value, shared rather than parsed and copied again.
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value.clone());
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Retry-After, X-Footfall-Dropped"),
        );
    }
}

async fn preflight(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let mut res = HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "POST"))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "Content-Type, Content-Encoding",
        ))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"))
        .finish();
    cors(&req, &state, &mut res, Allowed::Unknown);
    res
}

/// Reads a body of at most `limit` bytes. A beacon nearly always arrives in one chunk, which is
/// returned as it came; only a body in several chunks is copied together.
async fn read_body<S>(chunks: &mut S, limit: usize) -> Result<web::Bytes, ApiError>
where
    S: futures_util::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>> + Unpin,
{
    let mut first = web::Bytes::new();
    let mut joined: Option<web::BytesMut> = None;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| ApiError::BodyRead(e.to_string()))?;
        let have = joined.as_ref().map_or(first.len(), |j| j.len());
        if have + chunk.len() > limit {
            return Err(ApiError::TooLarge { limit });
        }
        match &mut joined {
            Some(j) => j.extend_from_slice(&chunk),
            None if first.is_empty() => first = chunk,
            None => {
                let mut j = web::BytesMut::with_capacity(have + chunk.len());
                j.extend_from_slice(&first);
                j.extend_from_slice(&chunk);
                joined = Some(j);
            }
        }
    }
    Ok(joined.map_or(first, web::BytesMut::freeze))
}

/// Bytes reserved for an encoded row: a captured Chromium page view encodes to ~0.6 KiB; a row
/// with long URLs grows the buffer once.
const RECORD_CAPACITY: usize = 1024;

async fn handle(
    req: &HttpRequest,
    mut payload: web::Payload,
    state: &AppState,
) -> Result<Outcome, ApiError> {
    let headers = req.headers();

    // Cheap checks on headers first.
    let content_type = header(headers, header::CONTENT_TYPE).unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("text/plain") && !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::ContentType(
            content_type.chars().take(64).collect(),
        ));
    }
    let gzip =
        match header(headers, header::CONTENT_ENCODING).map(|v| v.trim().to_ascii_lowercase()) {
            None => false,
            Some(e) if e.is_empty() || e == "identity" => false,
            Some(e) if e == "gzip" || e == "x-gzip" => true,
            Some(e) => return Err(ApiError::ContentEncoding(e.chars().take(32).collect())),
        };
    let limit = state.limits.max_body_bytes;
    if let Some(len) = header(headers, header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok()) {
        if len > limit as u64 {
            return Err(ApiError::TooLarge { limit });
        }
    }

    // The client address, then the rate limit, before any body is read.
    let peer = req
        .peer_addr()
        .map(|a: SocketAddr| a.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let meta = RequestMeta {
        peer,
        forwarded_for: header(headers, X_FORWARDED_FOR),
        real_ip: header(headers, X_REAL_IP),
        user_agent: header(headers, header::USER_AGENT).unwrap_or(""),
        hints: HintHeaders {
            sec_ch_ua: header(headers, SEC_CH_UA),
            sec_ch_ua_mobile: header(headers, SEC_CH_UA_MOBILE),
            sec_ch_ua_platform: header(headers, SEC_CH_UA_PLATFORM),
            accept_language: header(headers, header::ACCEPT_LANGUAGE),
        },
    };
    let ip = state.enricher.client_ip(&meta);
    if let Err(not_until) = state.limiter.check_key(&limiter_key(ip)) {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        return Err(ApiError::RateLimited {
            retry_after_secs: wait.as_secs().max(1),
        });
    }

    // The body, bounded in size and time.
    let read = read_body(&mut payload, limit);
    let body = tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .map_err(|_| ApiError::BodyTimeout)??;
    // Only a compressed body needs a new buffer; a plain one is parsed where it was received.
    let decompressed;
    let body: &[u8] = if gzip {
        decompressed = gunzip_bounded(&body, state.limits.max_decompressed_bytes)?;
        &decompressed
    } else {
        &body
    };

    let validated = beacon::parse(body)?;
    let site = validated.beacon.site.as_ref();
    match request_origin(req) {
        Some(origin) if state.sites.allows(site, origin) => {}
        _ => return Err(ApiError::Forbidden(site.chars().take(64).collect())),
    }

    let purpose = header(headers, SEC_PURPOSE).or_else(|| header(headers, PURPOSE));
    if purpose.is_some_and(|p| p.contains("prefetch")) {
        return Ok(Outcome::Dropped(DropReason::Prefetch));
    }

    // Minimisation and consent are decided here, on the server, whatever the tracker did.
    let b = &validated.beacon;
    let signals = Signals {
        consent: b.consent,
        gpc: b.gpc || header(headers, SEC_GPC).is_some_and(|v| v.trim() == "1"),
        dnt: b.dnt || header(headers, header::DNT).is_some_and(|v| v.trim() == "1"),
    };
    let groups = state.policies.for_site(site).groups(signals);
    if groups.is_empty() {
        return Ok(Outcome::Dropped(DropReason::NoConsent));
    }
    let mut row = state.enricher.enrich(&meta, ip, &validated, groups);
    row.gpc = signals.gpc as u8;
    row.dnt = signals.dnt as u8;
    privacy::minimise(&mut row, groups);
    if state.blocks.blocks(&row) {
        return Ok(Outcome::Dropped(DropReason::Blocked));
    }
    for field in &validated.truncated {
        state
            .metrics
            .fields_truncated
            .get_or_create(&FieldLabel { field })
            .inc();
    }
    let kind = validated.beacon.kind.as_str();
    let unavailable = |cause| ApiError::Unavailable {
        retry_after_secs: RETRY_AFTER_UNAVAILABLE_SECS,
        cause,
    };
    // Sized for a whole record at once: growing from empty cost eight reallocations per event.
    // Through `io::Write`, whose `Vec` writes each string with one copy: `postcard::to_extend`
    // went through an iterator byte by byte, ~8 400 instructions per event (`benches/README.md`,
    // 2026-12-03, sixteenth session).
    let record = postcard::to_io(&row, Vec::with_capacity(RECORD_CAPACITY))
        .map_err(|e| unavailable(AppendError::Io(format!("cannot encode the event: {e}"))))?;
    // The 202 is sent only once the event is durable in the spool. The answer comes through this
    // worker's relay when the server registered one (`serve`), one wake-up per commit.
    let relay = req.app_data::<Relay>().copied();
    state
        .spool
        .append_via(record, relay)
        .await
        .map_err(unavailable)?;
    state
        .metrics
        .events_accepted
        .get_or_create(&KindLabel { kind })
        .inc();
    Ok(Outcome::Accepted)
}

/// Decompresses at most `limit` bytes; a bomb stops at the limit instead of filling memory.
pub fn gunzip_bounded(body: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let decoder = flate2::read::MultiGzDecoder::new(body);
    decoder
        // One byte past the limit tells "exactly the limit" from "more"; saturating, so a limit
        // of usize::MAX (found by fuzzing) neither overflows nor wraps to zero.
        .take((limit as u64).saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|_| ApiError::BadGzip)?;
    if out.len() > limit {
        return Err(ApiError::DecompressedTooLarge { limit });
    }
    Ok(out)
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let report = state.readiness.check(state.clock.now_ms()).await;
    let mut res = if report.ready {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    res.insert_header((header::CACHE_CONTROL, "no-store"))
        .json(report)
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state
        .spool
        .stats()
        .export(&state.metrics, state.clock.now_ms());
    // The alert decays on its own: re-evaluate it at every scrape, not only on failures.
    state
        .metrics
        .unauthorised_access_alert
        .set(state.admin.failures.alerting() as i64);
    state.metrics.blocklist_size.set(state.blocks.len() as i64);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::render(&state.registry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn read(chunks: &[&'static [u8]], limit: usize) -> Result<web::Bytes, ApiError> {
        let mut stream = futures_util::stream::iter(
            chunks
                .iter()
                .map(|c| Ok(web::Bytes::from_static(c)))
                .collect::<Vec<_>>(),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(read_body(&mut stream, limit))
    }

    #[test]
    fn a_body_in_one_chunk_is_returned_without_a_copy() {
        static BODY: &[u8] = b"{\"v\":1}";
        let body = read(&[BODY], 100).unwrap();
        assert_eq!(body.as_ptr(), BODY.as_ptr());
        assert_eq!(&body[..], BODY);
    }

    #[test]
    fn a_body_in_several_chunks_is_joined_in_order() {
        assert_eq!(
            &read(&[b"ab", b"", b"c", b"def"], 100).unwrap()[..],
            b"abcdef"
        );
        assert_eq!(&read(&[b"", b"abc"], 100).unwrap()[..], b"abc");
        assert_eq!(&read(&[], 100).unwrap()[..], b"");
        // The limit holds for the whole body, whichever chunk crosses it.
        assert_eq!(&read(&[b"ab", b"cd"], 4).unwrap()[..], b"abcd");
        for chunks in [
            &[&b"abcde"[..]][..],
            &[b"ab", b"cde"],
            &[b"ab", b"cd", b"e"],
        ] {
            assert!(matches!(
                read(chunks, 4),
                Err(ApiError::TooLarge { limit: 4 })
            ));
        }
    }

    #[test]
    fn gzip_within_the_limit_is_decoded() {
        assert_eq!(gunzip_bounded(&gz(b"hello"), 10).unwrap(), b"hello");
    }

    #[test]
    fn gzip_bombs_stop_at_the_limit() {
        let bomb = gz(&vec![b'a'; 10_000_000]);
        assert!(bomb.len() < 20_000);
        assert!(matches!(
            gunzip_bounded(&bomb, 65_536),
            Err(ApiError::DecompressedTooLarge { limit: 65_536 })
        ));
    }

    #[test]
    fn the_largest_limit_does_not_overflow() {
        assert_eq!(gunzip_bounded(&gz(b"hello"), usize::MAX).unwrap(), b"hello");
        assert_eq!(gunzip_bounded(&gz(b""), usize::MAX).unwrap(), b"");
    }

    #[test]
    fn broken_gzip_is_a_client_error() {
        assert!(matches!(
            gunzip_bounded(b"not gzip", 100),
            Err(ApiError::BadGzip)
        ));
        let mut truncated = gz(b"hello world hello world");
        truncated.truncate(truncated.len() - 6);
        assert!(matches!(
            gunzip_bounded(&truncated, 100),
            Err(ApiError::BadGzip)
        ));
    }

    #[test]
    fn ipv6_clients_are_limited_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(limiter_key(a), limiter_key(b));
        let v4: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(limiter_key(v4), v4);
    }
}
