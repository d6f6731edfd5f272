//! The HTTP surface around ingest: health, readiness, metrics, CORS, the tracker script, sites and limits.

use serde_json::{json, Value};

use crate::harness::TestCollector;
use crate::mmdb::LONDON;

fn pageview(site: &str) -> String {
    json!({"v": 1, "site": site, "url": "http://localhost:3000/", "sid": "s"}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let mut c = TestCollector::start("health").await;
    let health = c.get("/healthz").await;
    assert_eq!(health.status(), 200);
    let ready = c.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["clickhouse"], "up");
    assert_eq!(ready["schema_version"], ready["expected_schema_version"]);

    assert_eq!(
        c.post(&pageview("demo"), "http://localhost:3000", LONDON.ip)
            .await
            .status(),
        202
    );
    assert_eq!(
        c.post(&pageview("nope"), "http://localhost:3000", LONDON.ip)
            .await
            .status(),
        403
    );
    c.rows(1).await;
    // The writer acknowledges after ClickHouse answers; give the counters a moment.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let m = c.get("/metrics").await;
    assert!(m.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let m = m.text().await.unwrap();
    for line in [
        "footfall_events_received_total 2",
        r#"footfall_events_accepted_total{kind="pageview"} 1"#,
        r#"footfall_events_rejected_total{status="403",reason="forbidden"} 1"#,
        "footfall_rows_inserted_total 1",
        "footfall_inserts_total 1",
        "footfall_batch_rows_count 1",
        r#"footfall_enrich_step_seconds_count{step="fingerprint"} 1"#,
        r#"footfall_enrich_step_seconds_count{step="geo"} 1"#,
        "footfall_clickhouse_up 1",
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
    }
    assert!(m.contains("footfall_insert_errors"), "{m}");
    assert!(m.contains("footfall_events_dropped"), "{m}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_sites_and_foreign_origins_are_403_and_reveal_nothing() {
    let mut c = TestCollector::start("forbidden").await;
    let unknown = c
        .post(&pageview("nope"), "http://localhost:3000", LONDON.ip)
        .await;
    assert_eq!(unknown.status(), 403);
    let unknown: Value = unknown.json().await.unwrap();
    let wrong_origin = c
        .post(&pageview("shop"), "http://localhost:3000", LONDON.ip)
        .await;
    assert_eq!(wrong_origin.status(), 403);
    // A foreign page cannot read the answer at all.
    let evil = c
        .post(&pageview("shop"), "https://evil.example", LONDON.ip)
        .await;
    assert_eq!(evil.status(), 403);
    assert!(evil.headers().get("access-control-allow-origin").is_none());
    let wrong_origin: Value = wrong_origin.json().await.unwrap();
    // The same sentence whether the site exists or not.
    assert_eq!(
        unknown["error"].as_str().unwrap().replace("nope", "X"),
        wrong_origin["error"].as_str().unwrap().replace("shop", "X")
    );
    // No Origin and no Referer: refused too.
    let bare = c.post_with(&pageview("demo"), &[]).await;
    assert_eq!(bare.status(), 403);
    // A Referer is enough when a browser sends no Origin.
    let referer = c
        .post_with(
            &pageview("demo"),
            &[("referer", "http://localhost:3000/page")],
        )
        .await;
    assert_eq!(referer.status(), 202);
    // A page whose origin is opaque (a sandboxed frame sends `Origin: null`) is judged by its
    // Referer, and the answer is never opened to the opaque origin.
    let opaque = c
        .post_with(
            &pageview("demo"),
            &[
                ("origin", "null"),
                ("referer", "http://localhost:3000/page"),
            ],
        )
        .await;
    assert_eq!(opaque.status(), 202);
    assert!(opaque
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    assert_eq!(c.rows(2).await.len(), 2);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_for_json_bodies() {
    let mut c = TestCollector::start("cors").await;
    let pre = c
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/api/event", c.base))
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    assert!(pre.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("Content-Type"));
    let foreign = c
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/api/event", c.base))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(foreign
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    let json_body = c
        .http
        .post(format!("{}/api/event", c.base))
        .header("content-type", "application/json")
        .header("origin", "http://localhost:5173")
        .body(pageview("demo"))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body.status(), 202);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_retry_after() {
    let mut c = TestCollector::start_with("ratelimit", |c| {
        c.limits.rate_per_second = 1;
        c.limits.rate_burst = 3;
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            c.post(&pageview("demo"), "http://localhost:3000", LONDON.ip)
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, vec![202, 202, 202, 429, 429]);
    let limited = c
        .post(&pageview("demo"), "http://localhost:3000", LONDON.ip)
        .await;
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry));
    let body: Value = limited.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("too many"));
    // Another address is not affected.
    assert_eq!(
        c.post(&pageview("demo"), "http://localhost:3000", "5.34.1.1")
            .await
            .status(),
        202
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tracker_is_served_with_caching_headers() {
    let mut c = TestCollector::start("tracker_js").await;
    let url = format!("{}/footfall.js", c.base);
    let plain = reqwest::Client::builder().no_gzip().build().unwrap();
    let res = plain.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/javascript"));
    assert!(res.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age"));
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let body = res.bytes().await.unwrap();
    assert_eq!(
        &body[..],
        include_bytes!("../../tracker-js/dist/footfall.js")
    );

    let again = plain
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());

    let gz = plain
        .get(&url)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    let gz_len = gz.bytes().await.unwrap().len();
    assert!(gz_len <= 4096, "tracker is {gz_len} bytes gzipped");

    let ports = plain
        .get(format!("{}/footfall-ports.js", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ports.status(), 200);
    assert_eq!(
        &ports.bytes().await.unwrap()[..],
        include_bytes!("../../tracker-js/dist/footfall-ports.js")
    );

    let demo = plain.get(format!("{}/", c.base)).send().await.unwrap();
    assert_eq!(demo.status(), 200);
    let html = demo.text().await.unwrap();
    assert!(html.contains(r#"data-site="demo""#), "{html}");

    let head = plain.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["etag"].to_str().unwrap(), etag);

    let missing = plain
        .get(format!("{}/nothing-here", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let missing: Value = missing.json().await.unwrap();
    assert!(missing["error"].is_string());
    let get_event = plain
        .get(format!("{}/api/event", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(get_event.status(), 405);
    c.shutdown().await;
}
