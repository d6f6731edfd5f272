//! Beacons captured from real headless Chromium (`tests/fixtures/beacons.jsonl`), replayed through the collector.

use footfall::config::SiteConfig;

use crate::harness::TestCollector;
use crate::mmdb::ALMATY;

const HEADLESS_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_chromium_beacons_are_all_accepted_and_stored() {
    let fixtures = include_str!("../fixtures/beacons.jsonl");
    let beacons: Vec<serde_json::Value> = fixtures
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(beacons.len() >= 10, "the fixture file holds a real session");
    let mut c = TestCollector::start_with("fixtures", |c| {
        c.sites.push(SiteConfig {
            id: "shop".into(),
            origins: vec!["http://127.0.0.1:*".into()],
        });
    })
    .await;
    for (i, b) in beacons.iter().enumerate() {
        let url = b["url"].as_str().unwrap();
        let origin = footfall::http::origin::origin_of_url(url).unwrap();
        let res = c
            .http
            .post(format!("{}/api/event", c.base))
            .header("content-type", "text/plain;charset=UTF-8")
            .header("origin", origin)
            .header("x-forwarded-for", ALMATY.ip)
            .header("user-agent", HEADLESS_UA)
            .header("accept-language", "kk-KZ")
            .body(b.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            202,
            "beacon {i}: {}",
            res.text().await.unwrap_or_default()
        );
    }
    let rows = c.rows(beacons.len()).await;
    let pageviews: Vec<_> = rows
        .iter()
        .filter(|r| r.kind == "pageview" && !r.timezone.is_empty())
        .collect();
    assert!(!pageviews.is_empty());
    let first_session = beacons[0]["sid"].as_str().unwrap();
    for r in pageviews.iter().filter(|r| r.session_id == first_session) {
        // The capture set a 1280x720 viewport for its first scenario.
        assert_eq!(
            (r.screen_w, r.screen_h, r.viewport_w, r.viewport_h),
            (1280, 720, 1280, 720)
        );
    }
    for r in pageviews {
        assert_eq!((r.timezone.as_str(), r.tz_offset), ("Asia/Almaty", 300));
        assert_eq!(r.languages, vec!["kk-KZ"]);
        assert!(r.screen_w > 0 && r.viewport_w > 0 && r.viewport_w <= r.screen_w);
        assert_eq!(r.webdriver, 1);
        assert_eq!(r.automated, 1);
        assert_eq!(r.browser, "HeadlessChrome");
        assert!(
            r.server_flags.iter().any(|f| f == "headless_ua"),
            "{:?}",
            r.server_flags
        );
        assert!(
            r.server_flags.iter().any(|f| f == "software_webgl"),
            "{:?}",
            r.server_flags
        );
        assert_eq!(r.canvas_hash.len(), 16);
        assert_ne!(r.fingerprint_id, [0; 16]);
        assert!(r.truncated_fields.is_empty(), "{:?}", r.truncated_fields);
    }
    // Navigation: every page view after the first of a session names its previous page.
    let kinds: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["custom", "engagement", "outbound", "pageview"]
            .into_iter()
            .collect()
    );
    assert!(rows
        .iter()
        .filter(|r| r.kind == "pageview" && r.seq > 1)
        .all(|r| !r.prev_path.is_empty()));
    assert!(rows
        .iter()
        .filter(|r| r.kind == "outbound")
        .all(|r| !r.target_host.is_empty()));
    c.shutdown().await;
}
