//! The tracker script and the demo page, embedded in the binary at build time so `cargo run` serves them without Node.

use std::io::Write;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

use super::AppState;

const TRACKER_JS: &[u8] = include_bytes!("../../tracker-js/dist/footfall.js");
const PORTS_JS: &[u8] = include_bytes!("../../tracker-js/dist/footfall-ports.js");
const DEMO_HTML: &[u8] = include_bytes!("../../tracker-js/demo/index.html");
const DASHBOARD_HTML: &[u8] = include_bytes!("../../dashboard/dist/index.html");
const DASHBOARD_JS: &[u8] = include_bytes!("../../dashboard/dist/app.js");
const DASHBOARD_CSS: &[u8] = include_bytes!("../../dashboard/dist/app.css");

/// The dashboard loads only its own script and style and talks only to this origin.
const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// One embedded file with its validator and a gzip copy made once at start.
pub struct Asset {
    pub body: &'static [u8],
    pub gzip: Vec<u8>,
    pub etag: String,
}

impl Asset {
    fn new(body: &'static [u8]) -> Self {
        let digest = Sha256::digest(body);
        let etag = format!("\"{}\"", hex::encode(&digest[..12]));
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        // Writing to a Vec cannot fail; an empty gzip copy would only mean serving uncompressed.
        let gzip = enc
            .write_all(body)
            .and_then(|_| enc.finish())
            .unwrap_or_default();
        Self { body, gzip, etag }
    }
}

pub struct Assets {
    pub tracker: Asset,
    pub ports: Asset,
    pub demo: Asset,
    pub dashboard_html: Asset,
    pub dashboard_js: Asset,
    pub dashboard_css: Asset,
}

impl Default for Assets {
    fn default() -> Self {
        Self {
            tracker: Asset::new(TRACKER_JS),
            ports: Asset::new(PORTS_JS),
            demo: Asset::new(DEMO_HTML),
            dashboard_html: Asset::new(DASHBOARD_HTML),
            dashboard_js: Asset::new(DASHBOARD_JS),
            dashboard_css: Asset::new(DASHBOARD_CSS),
        }
    }
}

fn serve(
    req: &HttpRequest,
    asset: &Asset,
    content_type: &'static str,
    cache: &'static str,
) -> HttpResponse {
    let headers = req.headers();
    let etag_matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == asset.etag || t.trim() == "*")
        });
    let mut res = if etag_matches {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, asset.etag.as_str()))
        .insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::VARY, "Accept-Encoding"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if etag_matches {
        return res.finish();
    }
    res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(content_type)));
    let gzip_ok = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    if gzip_ok && !asset.gzip.is_empty() {
        res.insert_header((header::CONTENT_ENCODING, "gzip"))
            .body(asset.gzip.clone())
    } else {
        res.body(asset.body)
    }
}

fn script(req: &HttpRequest, asset: &Asset) -> HttpResponse {
    // Cross-origin pages load these scripts, and they may be cached for a while: the ETag revalidates.
    let mut res = serve(
        req,
        asset,
        "application/javascript; charset=utf-8",
        "public, max-age=3600",
    );
    res.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    res
}

pub async fn tracker(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    script(&req, &state.assets.tracker)
}

/// The separate, opt-in port check for registered users (see `tracker-js/PROTOCOL.md`).
pub async fn ports(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    script(&req, &state.assets.ports)
}

pub async fn demo(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    serve(
        &req,
        &state.assets.demo,
        "text/html; charset=utf-8",
        "no-cache",
    )
}

/// The dashboard page: a static shell with no data in it; its data comes from `/api/stats/*`,
/// which needs a token with the `stats` scope.
pub async fn dashboard(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let mut res = serve(
        &req,
        &state.assets.dashboard_html,
        "text/html; charset=utf-8",
        "no-cache",
    );
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DASHBOARD_CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

pub async fn dashboard_js(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    serve(
        &req,
        &state.assets.dashboard_js,
        "application/javascript; charset=utf-8",
        "no-cache",
    )
}

pub async fn dashboard_css(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    serve(
        &req,
        &state.assets.dashboard_css,
        "text/css; charset=utf-8",
        "no-cache",
    )
}
