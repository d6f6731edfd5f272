//! Malformed, oversized and hostile requests: each gets the right 4xx with a JSON error, nothing panics.

use std::io::Write;
use std::sync::Arc;

use actix_web::{test, web, App};
use footfall::clock::SystemClock;
use footfall::config::LimitsConfig;
use footfall::enrich::geo::MmdbFile;
use footfall::enrich::{Enricher, EnricherParts};
use footfall::http::{self, origin::Sites, AppState};
use footfall::keys::Salts;
use footfall::metrics::Metrics;
use footfall::row::EventRow;
use footfall::schema::Readiness;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::harness::TestCollector;
use crate::mmdb::LONDON;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

struct Case {
    name: &'static str,
    content_type: Option<&'static str>,
    encoding: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    error_contains: &'static str,
}

fn case(
    name: &'static str,
    body: impl Into<Vec<u8>>,
    status: u16,
    error_contains: &'static str,
) -> Case {
    Case {
        name,
        content_type: Some("text/plain"),
        encoding: None,
        body: body.into(),
        status,
        error_contains,
    }
}

fn cases() -> Vec<Case> {
    let valid = r#"{"v":1,"site":"demo","url":"http://localhost/x"}"#;
    let mut invalid_utf8 = valid.as_bytes().to_vec();
    invalid_utf8[28] = 0xC3; // a lone lead byte inside the url string
    let deep = format!(
        r#"{{"v":1,"site":"demo","url":"http://localhost/x","device":{{"langs":{}{}}}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    vec![
        case("empty body", "", 400, "empty"),
        case("whitespace body", "   \n", 400, "empty"),
        case("truncated JSON", &valid[..30], 400, "invalid beacon JSON"),
        case("not JSON", "hello", 400, "invalid beacon JSON"),
        case("JSON array", "[1,2]", 400, "invalid beacon JSON"),
        case(
            "wrong type: v",
            r#"{"v":"1","site":"demo","url":"http://localhost/x"}"#,
            400,
            "invalid beacon JSON",
        ),
        case(
            "wrong type: seq",
            r#"{"v":1,"site":"demo","url":"http://localhost/x","seq":"3"}"#,
            400,
            "invalid beacon JSON",
        ),
        case(
            "wrong type: screen",
            r#"{"v":1,"site":"demo","url":"http://localhost/x","device":{"screen":{"w":"big"}}}"#,
            400,
            "invalid beacon JSON",
        ),
        case(
            "negative number",
            r#"{"v":1,"site":"demo","url":"http://localhost/x","engaged_ms":-5}"#,
            400,
            "invalid beacon JSON",
        ),
        case(
            "unknown kind",
            r#"{"v":1,"site":"demo","url":"http://localhost/x","kind":"x"}"#,
            400,
            "invalid beacon JSON",
        ),
        case(
            "missing site",
            r#"{"v":1,"url":"http://localhost/x"}"#,
            400,
            "site",
        ),
        case("missing url", r#"{"v":1,"site":"demo"}"#, 400, "url"),
        case(
            "javascript url",
            r#"{"v":1,"site":"demo","url":"javascript:alert(1)"}"#,
            400,
            "url",
        ),
        case(
            "future version",
            r#"{"v":9,"site":"demo","url":"http://localhost/x"}"#,
            400,
            "version",
        ),
        case(
            "outbound without target",
            r#"{"v":1,"site":"demo","url":"http://localhost/x","kind":"outbound"}"#,
            400,
            "target",
        ),
        case(
            "custom without name",
            r#"{"v":1,"site":"demo","url":"http://localhost/x","kind":"custom"}"#,
            400,
            "name",
        ),
        case("invalid UTF-8", invalid_utf8, 400, "UTF-8"),
        case("deep nesting", deep, 400, "invalid beacon JSON"),
        case(
            "huge body",
            format!(
                r#"{{"v":1,"site":"demo","url":"http://localhost/{}"}}"#,
                "a".repeat(40_000)
            ),
            413,
            "larger than",
        ),
        case("NUL bytes", "\0\0\0\0", 400, "invalid beacon JSON"),
        Case {
            name: "form content type",
            content_type: Some("application/x-www-form-urlencoded"),
            encoding: None,
            body: valid.into(),
            status: 415,
            error_contains: "Content-Type",
        },
        Case {
            name: "no content type",
            content_type: None,
            encoding: None,
            body: valid.into(),
            status: 415,
            error_contains: "Content-Type",
        },
        Case {
            name: "brotli encoding",
            content_type: Some("text/plain"),
            encoding: Some("br"),
            body: valid.into(),
            status: 415,
            error_contains: "Content-Encoding",
        },
        Case {
            name: "gzip ok",
            content_type: Some("text/plain"),
            encoding: Some("gzip"),
            body: gzip(valid.as_bytes()),
            status: 202,
            error_contains: "",
        },
        Case {
            name: "bad gzip",
            content_type: Some("text/plain"),
            encoding: Some("gzip"),
            body: b"not gzip at all".to_vec(),
            status: 400,
            error_contains: "gzip",
        },
        Case {
            name: "gzip bomb",
            content_type: Some("application/json"),
            encoding: Some("gzip"),
            body: gzip(&vec![b' '; 10_000_000]),
            status: 413,
            error_contains: "decompresses",
        },
        Case {
            name: "gzip of garbage",
            content_type: Some("text/plain"),
            encoding: Some("gzip"),
            body: gzip(b"\xff\xfe{{{"),
            status: 400,
            error_contains: "",
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_body_gets_its_4xx_and_a_json_error() {
    let mut c = TestCollector::start("bad_input").await;
    let mut accepted = 0;
    for case in cases() {
        let mut req = c
            .http
            .post(format!("{}/api/event", c.base))
            .header("origin", "http://localhost")
            .header("x-forwarded-for", LONDON.ip)
            .body(case.body.clone());
        if let Some(ct) = case.content_type {
            req = req.header("content-type", ct);
        }
        if let Some(enc) = case.encoding {
            req = req.header("content-encoding", enc);
        }
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(res.status().as_u16(), case.status, "{}", case.name);
        if case.status == 202 {
            accepted += 1;
            continue;
        }
        assert_eq!(
            res.headers()["content-type"],
            "application/json",
            "{}",
            case.name
        );
        let body: Value = res.json().await.unwrap();
        let msg = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no error string", case.name));
        assert!(msg.contains(case.error_contains), "{}: {msg}", case.name);
    }
    // The server is fine and stored exactly the valid ones.
    let health = c.get("/healthz").await;
    assert_eq!(health.status(), 200);
    assert_eq!(c.rows(accepted).await.len(), accepted);
    c.shutdown().await;
}

/// An app with the real handlers and state but a writer that never drains, and no ClickHouse.
async fn stalled_app(
    queue: usize,
) -> (
    web::Data<AppState>,
    mpsc::Receiver<EventRow>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let (metrics, registry) = Metrics::standalone();
    let clock = Arc::new(SystemClock);
    let (tx, rx) = mpsc::channel(queue);
    let limits = LimitsConfig::default();
    let state = AppState {
        limiter: AppState::limiter(&limits),
        limits,
        sites: Sites::new(&[("demo".into(), vec!["http://localhost:*".into()])]).unwrap(),
        enricher: Enricher::new(EnricherParts {
            trusted_proxies: vec![],
            city: MmdbFile::empty(),
            provider: MmdbFile::empty(),
            ua_cache_size: 16,
            secret: b"k".to_vec(),
            salts: Arc::new(Salts::open(dir.path(), clock.clone()).unwrap()),
            clock,
            metrics: metrics.clone(),
        }),
        sink: tx,
        metrics,
        registry: Arc::new(registry),
        // Port 9 (discard) on loopback: nothing listens there.
        readiness: Readiness::new(clickhouse::Client::default().with_url("http://127.0.0.1:9")),
        assets: http::assets::Assets::default(),
    };
    (web::Data::new(state), rx, dir)
}

#[actix_web::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let (state, _rx, _dir) = stalled_app(2).await;
    let app = test::init_service(App::new().app_data(state.clone()).configure(http::routes)).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let req = test::TestRequest::post()
            .uri("/api/event")
            .insert_header(("content-type", "text/plain"))
            .insert_header(("origin", "http://localhost:8080"))
            .peer_addr("198.51.100.1:5555".parse().unwrap())
            .set_payload(r#"{"v":1,"site":"demo","url":"http://localhost/x"}"#)
            .to_request();
        let res = test::call_service(&app, req).await;
        statuses.push(res.status().as_u16());
        if res.status() == 503 {
            assert_eq!(res.headers().get("retry-after").unwrap(), "5");
            let body: Value = test::read_body_json(res).await;
            assert!(body["error"].as_str().unwrap().contains("retry"));
        }
    }
    assert_eq!(statuses, vec![202, 202, 503]);
}

#[actix_web::test]
async fn readiness_says_when_clickhouse_is_down() {
    let (state, _rx, _dir) = stalled_app(2).await;
    let app = test::init_service(App::new().app_data(state.clone()).configure(http::routes)).await;
    let res = test::call_service(&app, test::TestRequest::get().uri("/readyz").to_request()).await;
    assert_eq!(res.status(), 503);
    let body: Value = test::read_body_json(res).await;
    assert_eq!(body["clickhouse"], "down");
    assert_eq!(body["ready"], false);
    let res = test::call_service(&app, test::TestRequest::get().uri("/healthz").to_request()).await;
    assert_eq!(res.status(), 200);
}

#[actix_web::test]
async fn prefetches_are_dropped_with_a_reason_not_an_error() {
    let (state, mut rx, _dir) = stalled_app(8).await;
    let app = test::init_service(App::new().app_data(state.clone()).configure(http::routes)).await;
    let req = test::TestRequest::post()
        .uri("/api/event")
        .insert_header(("content-type", "text/plain"))
        .insert_header(("origin", "http://localhost:8080"))
        .insert_header(("sec-purpose", "prefetch;prerender"))
        .peer_addr("198.51.100.1:5555".parse().unwrap())
        .set_payload(r#"{"v":1,"site":"demo","url":"http://localhost/x"}"#)
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), 202);
    assert_eq!(res.headers().get("x-footfall-dropped").unwrap(), "prefetch");
    assert!(rx.try_recv().is_err(), "a dropped event is not stored");
    let m = footfall::metrics::render(&state.registry);
    assert!(
        m.contains(r#"footfall_events_dropped_total{reason="prefetch"} 1"#),
        "{m}"
    );
}

#[actix_web::test]
async fn random_bytes_never_panic_the_handler() {
    let (state, _rx, _dir) = stalled_app(100_000).await;
    let app = test::init_service(App::new().app_data(state.clone()).configure(http::routes)).await;
    // A deterministic generator: truncations and byte flips of a real beacon, and pure noise.
    let seed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/beacons.jsonl"
    ))
    .unwrap();
    let seed = seed
        .lines()
        .next()
        .unwrap()
        .replace("\"site\":\"shop\"", "\"site\":\"demo\"")
        .into_bytes();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut seen = std::collections::BTreeMap::new();
    for i in 0..2000 {
        let mut body = seed.clone();
        match i % 3 {
            0 => body.truncate((next() as usize) % seed.len()),
            1 => {
                for _ in 0..1 + next() % 4 {
                    let at = (next() as usize) % body.len();
                    body[at] = next() as u8;
                }
            }
            _ => body = (0..next() % 300).map(|_| next() as u8).collect(),
        }
        let req = test::TestRequest::post()
            .uri("/api/event")
            .insert_header(("content-type", "text/plain"))
            .insert_header(("origin", "http://localhost:8080"))
            .peer_addr(
                format!("198.51.{}.{}:5555", i % 200, i % 250)
                    .parse()
                    .unwrap(),
            )
            .set_payload(body)
            .to_request();
        let res = test::call_service(&app, req).await;
        let status = res.status().as_u16();
        assert!(
            status == 202 || (400..500).contains(&status),
            "case {i}: {status}"
        );
        if status != 202 {
            let body: Value = test::read_body_json(res).await;
            assert!(body["error"].is_string(), "case {i}");
        }
        *seen.entry(status).or_insert(0) += 1;
    }
    assert!(
        seen.contains_key(&400) && seen.contains_key(&202),
        "{seen:?}"
    );
}
