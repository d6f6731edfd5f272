//! Malformed, oversized and hostile requests: each gets the right 4xx with a JSON error, nothing panics.

use std::io::Write;
use std::sync::Arc;

use actix_web::{test, web, App};
use footfall::clock::SystemClock;
use footfall::config::LimitsConfig;
use footfall::config::SpoolConfig;
use footfall::enrich::geo::MmdbFile;
use footfall::enrich::{Enricher, EnricherParts};
use footfall::health::Readiness;
use footfall::http::{self, origin::Sites, AppState};
use footfall::keys::Salts;
use footfall::metrics::Metrics;
use footfall::spool::{self, Next, Reader, SpoolOptions};
use footfall::writer::DeliveryState;
use serde_json::Value;

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

/// An app with the real handlers, state and spool, but no writer and no reachable ClickHouse:
/// the test holds the spool's reader and decides when records count as delivered.
async fn stalled_app(spool_max_bytes: u64) -> (web::Data<AppState>, Reader, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (metrics, registry) = Metrics::standalone();
    let clock = Arc::new(SystemClock);
    let (appender, reader) = spool::open(
        SpoolOptions {
            max_bytes: spool_max_bytes,
            ..SpoolOptions::new(dir.path().join("spool"), &SpoolConfig::default())
        },
        metrics.clone(),
        clock.clone(),
    )
    .unwrap();
    let appender = Arc::new(appender);
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
            scrub_params: vec![],
            clock: clock.clone(),
            metrics: metrics.clone(),
        }),
        policies: footfall::config::PrivacyConfig::default()
            .policies()
            .unwrap(),
        blocks: Arc::new(footfall::privacy::blocklist::BlockList::in_memory()),
        admin: footfall::http::admin::AdminState::new(
            Arc::new(
                footfall::serve::admin(
                    &footfall::config::Config {
                        data_dir: dir.path().to_owned(),
                        ..Default::default()
                    },
                    None,
                    b"k",
                    Default::default(),
                    clock.clone(),
                )
                .unwrap(),
            ),
            &Default::default(),
            b"k",
        )
        .unwrap(),
        readiness: Readiness::new(
            // Port 9 (discard) on loopback: nothing listens there.
            Some(clickhouse::Client::default().with_url("http://127.0.0.1:9")),
            appender.stats().clone(),
            Arc::new(DeliveryState::default()),
        ),
        spool: appender,
        metrics,
        registry: Arc::new(registry),
        assets: http::assets::Assets::default(),
        clock,
    };
    (web::Data::new(state), reader, dir)
}

fn beacon_request(i: u32) -> test::TestRequest {
    test::TestRequest::post()
        .uri("/api/event")
        .insert_header(("content-type", "text/plain"))
        .insert_header(("origin", "http://localhost:8080"))
        .peer_addr("198.51.100.1:5555".parse().unwrap())
        .set_payload(format!(
            r#"{{"v":1,"site":"demo","url":"http://localhost/x","seq":{i}}}"#
        ))
}

#[actix_web::test]
async fn a_full_spool_answers_503_with_retry_after_and_recovers_when_delivered() {
    let (state, mut reader, _dir) = stalled_app(4096).await;
    let app = test::init_service(App::new().app_data(state.clone()).configure(http::routes)).await;
    let mut accepted = 0;
    let mut refused = None;
    for i in 0..100 {
        let res = test::call_service(&app, beacon_request(i).to_request()).await;
        if res.status() == 202 {
            accepted += 1;
            continue;
        }
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers().get("retry-after").unwrap(), "30");
        refused = Some(test::read_body_json::<Value, _>(res).await);
        break;
    }
    let refused = refused.expect("the spool filled up");
    assert!(
        accepted >= 2,
        "{accepted} accepted before the spool was full"
    );
    let msg = refused["error"].as_str().unwrap();
    assert!(
        msg.contains("spool is full") && msg.contains("retry"),
        "{msg}"
    );

    let ready =
        test::call_service(&app, test::TestRequest::get().uri("/readyz").to_request()).await;
    assert_eq!(
        ready.status(),
        503,
        "a full spool takes the instance out of rotation"
    );
    let ready: Value = test::read_body_json(ready).await;
    assert_eq!(ready["status"], "unavailable");
    assert_eq!(ready["spool"]["pending_records"], accepted);

    // The writer catches up: everything accepted is in the spool, and acknowledging it makes room.
    let mut end = None;
    let mut read = 0;
    while let Next::Record(rec) = reader
        .next(Some(
            tokio::time::Instant::now() + std::time::Duration::from_millis(100),
        ))
        .await
        .unwrap()
    {
        read += 1;
        end = Some(rec.end);
    }
    assert_eq!(read, accepted, "every 202 is in the spool, no 503 is");
    reader.ack(end.unwrap(), read as u64).unwrap();
    let res = test::call_service(&app, beacon_request(1000).to_request()).await;
    assert_eq!(res.status(), 202);
    let m = footfall::metrics::render(&state.registry);
    assert!(
        m.contains(r#"footfall_events_rejected_total{status="503",reason="spool_full"} 1"#),
        "{m}"
    );
}

#[actix_web::test]
async fn readiness_stays_up_while_clickhouse_is_down_because_the_spool_takes_events() {
    let (state, _reader, _dir) = stalled_app(1 << 20).await;
    let app = test::init_service(App::new().app_data(state.clone()).configure(http::routes)).await;
    assert_eq!(
        test::call_service(&app, beacon_request(1).to_request())
            .await
            .status(),
        202
    );
    let res = test::call_service(&app, test::TestRequest::get().uri("/readyz").to_request()).await;
    assert_eq!(res.status(), 200);
    let body: Value = test::read_body_json(res).await;
    assert_eq!(body["clickhouse"], "down");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["ready"], true);
    assert_eq!(body["spool"]["pending_records"], 1);
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("kept in the spool"));
    let res = test::call_service(&app, test::TestRequest::get().uri("/healthz").to_request()).await;
    assert_eq!(res.status(), 200);
}

#[actix_web::test]
async fn prefetches_are_dropped_with_a_reason_not_an_error() {
    let (state, mut reader, _dir) = stalled_app(1 << 20).await;
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
    let next = reader
        .next(Some(
            tokio::time::Instant::now() + std::time::Duration::from_millis(100),
        ))
        .await
        .unwrap();
    assert!(matches!(next, Next::Idle), "a dropped event is not stored");
    let m = footfall::metrics::render(&state.registry);
    assert!(
        m.contains(r#"footfall_events_dropped_total{reason="prefetch"} 1"#),
        "{m}"
    );
}

#[actix_web::test]
async fn random_bytes_never_panic_the_handler() {
    let (state, _reader, _dir) = stalled_app(1 << 30).await;
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
