//! Beacon in, enriched row in a real ClickHouse out: every column checked.

use std::sync::Arc;

use footfall::clock::SystemClock;
use footfall::row::EventRow;
use serde_json::json;

use crate::harness::{db_name, test_config, TestCollector, CHROME_UA};
use crate::mmdb::{self, ALMATY, LONDON};

fn full_pageview() -> serde_json::Value {
    json!({
        "v": 1, "site": "shop", "kind": "pageview",
        "url": "https://shop.example/catalog/shoes?utm_source=newsletter&utm_medium=email&utm_campaign=spring%20sale&utm_term=red&utm_content=hero&page=2",
        "title": "Shoes — Shop", "ref": "https://www.google.com/search?q=shoes",
        "prev": "https://shop.example/",
        "sid": "s-1234567890abcdef", "seq": 2, "ts": 1_764_032_000_123_i64,
        "uid": "user-42", "cid": "c-0123456789",
        "consent": "granted", "gpc": false, "dnt": true,
        "device": {
            "tz": "Asia/Almaty", "tzo": 300, "langs": ["kk-KZ", "ru-RU", "en"],
            "screen": {"w": 1920, "h": 1080, "aw": 1920, "ah": 1040, "cd": 24, "dpr": 1.25},
            "vp": {"w": 1536, "h": 730}, "win": {"x": -8, "y": 12, "ow": 1552, "oh": 840},
            "platform": "Linux x86_64", "arch": "x86", "bits": "64", "arch_src": "uach",
            "uach": {"brands": ["Chromium/156", "Google Chrome/156"], "mobile": false, "platform": "Linux", "pv": "6.1.0", "model": ""},
            "cores": 8, "mem": 8, "touch": 0,
            "canvas": {"h": "9f2c11aa00bb33cc", "stable": false},
            "webgl": {"vendor": "Google Inc. (Intel)", "renderer": "ANGLE (Intel, Mesa Intel(R) UHD Graphics 620)", "h": "ab12cd34ef560789"},
            "fonts": {"h": "77aa88bb99cc00dd", "n": 23, "list": ["Arial", "DejaVu Sans"]},
            "plugins": ["PDF Viewer", "Chrome PDF Viewer"],
            "media": {"ai": 1, "vi": 2, "ao": 3},
            "activex": false,
            "auto": {"webdriver": true, "headless": ["no_chrome_obj"], "globals": ["__playwright__binding__"], "flags": ["zero_outer"]}
        }
    })
}

async fn collector_with_geo(test: &str) -> TestCollector {
    let data_dir = tempfile::tempdir().unwrap();
    let geo = data_dir.path().join("geo");
    std::fs::create_dir_all(&geo).unwrap();
    let city = mmdb::city_db(&geo);
    let isp = mmdb::isp_db(&geo);
    let mut config = test_config(&db_name(test), data_dir.path());
    // These tests check every column, so every group is collected (city included) and the
    // beacon's DNT flag is only recorded; tests/it/privacy.rs covers the defaults.
    config.privacy.collect = vec!["all".into()];
    config.privacy.dnt = footfall::config::SignalMode::Ignore;
    config.geoip.city = Some(city);
    config.geoip.asn = Some(isp);
    TestCollector::start_config(config, data_dir, Arc::new(SystemClock)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pageview_lands_with_every_column() {
    let mut c = collector_with_geo("full_pageview").await;
    let res = c
        .http
        .post(format!("{}/api/event", c.base))
        .header("content-type", "text/plain;charset=UTF-8")
        .header("origin", "https://shop.example")
        .header("x-forwarded-for", ALMATY.ip)
        .header("user-agent", CHROME_UA)
        .header(
            "sec-ch-ua",
            r#""Chromium";v="156", "Google Chrome";v="156", "Not?A_Brand";v="24""#,
        )
        .header("sec-ch-ua-mobile", "?0")
        .header("sec-ch-ua-platform", "\"Linux\"")
        .header("accept-language", "kk-KZ,kk;q=0.9,ru;q=0.8")
        .body(full_pageview().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://shop.example"
    );

    let rows = c.rows(1).await;
    let r = &rows[0];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    assert!(!r.event_id.is_nil());
    assert_eq!(r.event_id.get_version_num(), 7);
    assert_eq!((r.site.as_str(), r.kind.as_str()), ("shop", "pageview"));
    assert!(now - r.received_at < 60, "received_at {}", r.received_at);
    assert_eq!(r.client_ts, 1_764_032_000_123);
    assert_eq!((r.session_id.as_str(), r.seq), ("s-1234567890abcdef", 2));
    assert!(r
        .url
        .starts_with("https://shop.example/catalog/shoes?utm_source"));
    assert_eq!(
        (r.host.as_str(), r.path.as_str()),
        ("shop.example", "/catalog/shoes")
    );
    assert_eq!(r.title, "Shoes — Shop");
    assert_eq!(
        (r.referrer_host.as_str(), r.referrer.as_str()),
        ("www.google.com", "https://www.google.com/search?q=shoes")
    );
    assert_eq!(
        (r.prev_url.as_str(), r.prev_path.as_str()),
        ("https://shop.example/", "/")
    );
    assert_eq!(
        (
            r.utm_source.as_str(),
            r.utm_medium.as_str(),
            r.utm_campaign.as_str(),
            r.utm_term.as_str(),
            r.utm_content.as_str()
        ),
        ("newsletter", "email", "spring sale", "red", "hero")
    );
    assert_eq!((r.engaged_ms, r.wall_ms), (0, 0));
    assert_eq!(
        (
            r.target_url.as_str(),
            r.event_name.as_str(),
            r.event_props.as_str()
        ),
        ("", "", "")
    );
    // Stored as keyed hashes of what the site sent, never in the clear.
    let secret = footfall::keys::load_or_create_secret(None, c.data_dir()).unwrap();
    let ids = footfall::privacy::ids::IdHasher::new(&secret);
    use footfall::privacy::ids::Purpose;
    assert_eq!(
        (r.user_id.as_str(), r.client_id.as_str()),
        (
            ids.hash(Purpose::UserId, "shop", "user-42").as_str(),
            ids.hash(Purpose::ClientId, "shop", "c-0123456789").as_str()
        )
    );
    assert_ne!(r.visitor_id, [0; 16]);
    assert_ne!(r.fingerprint_id, [0; 16]);
    assert_eq!(
        r.fingerprint_version,
        footfall::enrich::fingerprint::FINGERPRINT_VERSION
    );
    assert_eq!((r.consent.as_str(), r.gpc, r.dnt), ("granted", 0, 1));

    assert_eq!(r.country, ALMATY.country);
    assert_eq!(
        r.region_code,
        format!("{}-{}", ALMATY.country, ALMATY.region_iso)
    );
    assert_eq!(
        (r.region_name.as_str(), r.city.as_str()),
        (ALMATY.region_name, ALMATY.city)
    );
    assert_eq!(
        (r.asn, r.as_org.as_str(), r.isp.as_str()),
        (ALMATY.asn, ALMATY.as_org, ALMATY.isp)
    );

    assert_eq!(
        (r.browser.as_str(), r.browser_version.as_str()),
        ("Chrome", "156.0.0.0")
    );
    assert_eq!(
        (r.os.as_str(), r.device.as_str(), r.vendor.as_str()),
        ("Linux", "desktop", "Google")
    );

    assert_eq!((r.timezone.as_str(), r.tz_offset), ("Asia/Almaty", 300));
    assert_eq!(r.languages, vec!["kk-KZ", "ru-RU", "en"]);
    assert_eq!(
        (r.screen_w, r.screen_h, r.avail_w, r.avail_h, r.color_depth),
        (1920, 1080, 1920, 1040, 24)
    );
    assert_eq!(r.pixel_ratio, 1.25);
    assert_eq!((r.viewport_w, r.viewport_h), (1536, 730));
    assert_eq!(
        (r.window_x, r.window_y, r.outer_w, r.outer_h),
        (-8, 12, 1552, 840)
    );
    assert_eq!(
        (
            r.platform.as_str(),
            r.arch.as_str(),
            r.bitness.as_str(),
            r.arch_source.as_str()
        ),
        ("Linux x86_64", "x86", "64", "uach")
    );
    assert_eq!((r.cores, r.memory_gb, r.touch_points), (8, 8.0, 0));
    assert_eq!(
        (r.canvas_hash.as_str(), r.canvas_stable),
        ("9f2c11aa00bb33cc", 0)
    );
    assert_eq!(r.webgl_vendor, "Google Inc. (Intel)");
    assert_eq!(
        r.webgl_renderer,
        "ANGLE (Intel, Mesa Intel(R) UHD Graphics 620)"
    );
    assert_eq!(r.webgl_hash, "ab12cd34ef560789");
    assert_eq!(
        (r.fonts_hash.as_str(), r.fonts_count),
        ("77aa88bb99cc00dd", 23)
    );
    assert_eq!(r.fonts, vec!["Arial", "DejaVu Sans"]);
    assert_eq!(r.plugins, vec!["PDF Viewer", "Chrome PDF Viewer"]);
    assert_eq!(
        (
            r.media_known,
            r.media_audioinput,
            r.media_videoinput,
            r.media_audiooutput
        ),
        (1, 1, 2, 3)
    );
    assert_eq!(r.activex, 0);
    assert_eq!(r.webdriver, 1);
    assert_eq!(r.automation_headless, vec!["no_chrome_obj"]);
    assert_eq!(r.automation_globals, vec!["__playwright__binding__"]);
    assert_eq!(r.automation_flags, vec!["zero_outer"]);
    assert!(r.server_flags.is_empty(), "{:?}", r.server_flags);
    assert_eq!(r.automated, 1);
    assert!(r.truncated_fields.is_empty());

    // The same device and address give the same ids; nothing holds the address itself.
    let json = serde_json::to_string(r).unwrap();
    assert!(!json.contains(ALMATY.ip));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_kind_lands() {
    let mut c = collector_with_geo("kinds").await;
    let base = json!({"v": 1, "site": "demo", "url": "http://localhost:3000/a", "sid": "s1"});
    let with = |extra: serde_json::Value| {
        let mut b = base.clone();
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b.to_string()
    };
    let bodies = [
        with(json!({"kind": "pageview", "seq": 1})),
        with(json!({"kind": "engagement", "seq": 2, "engaged_ms": 1500, "wall_ms": 4000})),
        with(json!({"kind": "outbound", "seq": 3, "target": "https://bank.example/pay?x=1"})),
        with(
            json!({"kind": "custom", "seq": 4, "name": "signup", "props": {"plan": "pro", "n": 2, "ok": true}}),
        ),
    ];
    for body in &bodies {
        assert_eq!(
            c.post(body, "http://localhost:3000", LONDON.ip)
                .await
                .status(),
            202
        );
    }
    let rows = c.rows(4).await;
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, vec!["pageview", "engagement", "outbound", "custom"]);
    assert_eq!((rows[1].engaged_ms, rows[1].wall_ms), (1500, 4000));
    assert_eq!(
        (rows[2].target_host.as_str(), rows[2].target_url.as_str()),
        ("bank.example", "https://bank.example/pay?x=1")
    );
    assert_eq!(rows[3].event_name, "signup");
    let props: serde_json::Value = serde_json::from_str(&rows[3].event_props).unwrap();
    assert_eq!(props, json!({"n": 2.0, "ok": true, "plan": "pro"}));
    // One visitor: same address and agent, same day.
    assert!(rows.iter().all(|r| r.visitor_id == rows[0].visitor_id));
    assert!(rows
        .iter()
        .all(|r| r.country == "GB" && r.city == "London" && r.asn == LONDON.asn));
    // No device block: no fingerprint.
    assert!(rows
        .iter()
        .all(|r| r.fingerprint_id == [0; 16] && r.fingerprint_version == 0));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_the_secret_agree_on_ids() {
    let mut a = TestCollector::start_with("ids_a", |c| {
        c.secret = Some("shared-secret".into());
        c.privacy.dnt = footfall::config::SignalMode::Ignore;
    })
    .await;
    let mut b = TestCollector::start_with("ids_b", |c| {
        c.secret = Some("shared-secret".into());
        c.privacy.dnt = footfall::config::SignalMode::Ignore;
    })
    .await;
    let mut other = TestCollector::start_with("ids_c", |c| {
        c.secret = Some("other-secret".into());
        c.privacy.dnt = footfall::config::SignalMode::Ignore;
    })
    .await;
    let body = full_pageview().to_string();
    for c in [&a, &b, &other] {
        assert_eq!(
            c.post(&body, "https://shop.example", ALMATY.ip)
                .await
                .status(),
            202
        );
    }
    let (ra, rb, rc) = (a.rows(1).await, b.rows(1).await, other.rows(1).await);
    assert_eq!(ra[0].fingerprint_id, rb[0].fingerprint_id);
    assert_ne!(ra[0].fingerprint_id, rc[0].fingerprint_id);
    for c in [&mut a, &mut b, &mut other] {
        c.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_device_component_changes_the_fingerprint() {
    let mut c = TestCollector::start_with("fp_change", |c| {
        c.privacy.dnt = footfall::config::SignalMode::Ignore
    })
    .await;
    let mut changed = full_pageview();
    changed["device"]["canvas"]["h"] = json!("ffffffffffffffff");
    changed["seq"] = json!(3);
    assert_eq!(
        c.post(
            &full_pageview().to_string(),
            "https://shop.example",
            ALMATY.ip
        )
        .await
        .status(),
        202
    );
    assert_eq!(
        c.post(&changed.to_string(), "https://shop.example", ALMATY.ip)
            .await
            .status(),
        202
    );
    let rows = c.rows(2).await;
    assert_ne!(rows[0].fingerprint_id, rows[1].fingerprint_id);
    assert_eq!(rows[0].visitor_id, rows[1].visitor_id);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_every_accepted_event() {
    // A long batch period: only the shutdown can end the INSERT.
    let mut c =
        TestCollector::start_with("flush", |c| c.clickhouse.batch_period_ms = 600_000).await;
    let body = json!({"v": 1, "site": "demo", "url": "http://localhost/x", "sid": "s"}).to_string();
    for _ in 0..250 {
        assert_eq!(
            c.post(&body, "http://localhost", LONDON.ip).await.status(),
            202
        );
    }
    assert_eq!(
        c.count().await,
        0,
        "nothing is inserted before the period or the shutdown"
    );
    c.shutdown().await;
    assert_eq!(c.count().await, 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_answers_each_worker_once_per_commit_not_once_per_event() {
    // A long gathering window, so the concurrent requests share commits.
    let mut c = TestCollector::start_with("relay", |c| c.spool.group_commit_wait_us = 50_000).await;
    let body = json!({"v": 1, "site": "demo", "url": "http://localhost/x", "sid": "s"}).to_string();
    let posts = (0..40).map(|_| c.post(&body, "http://localhost", LONDON.ip));
    for res in futures_util::future::join_all(posts).await {
        assert_eq!(res.status(), 202);
    }
    let metrics = c.running.as_ref().unwrap().metrics.clone();
    let (fsyncs, wakeups) = (
        metrics.spool_fsyncs.get(),
        metrics.spool_answer_wakeups.get(),
    );
    assert!(fsyncs < 40, "{fsyncs} fsyncs for 40 concurrent events");
    // Each commit wakes at most one relay per HTTP worker, whatever its number of events.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    assert!(
        wakeups <= fsyncs * workers,
        "{wakeups} wake-ups for {fsyncs} commits and {workers} workers"
    );
    assert_eq!(c.rows(40).await.len(), 40);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_fields_are_cut_and_recorded() {
    let mut c = TestCollector::start("truncation").await;
    let body =
        json!({"v": 1, "site": "demo", "url": "http://localhost/x", "title": "t".repeat(5000)})
            .to_string();
    assert_eq!(
        c.post(&body, "http://localhost", LONDON.ip).await.status(),
        202
    );
    let rows = c.rows(1).await;
    assert_eq!(rows[0].title.len(), 512);
    assert_eq!(rows[0].truncated_fields, vec!["title"]);
    let metrics = c.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"footfall_fields_truncated_total{field="title"} 1"#),
        "{metrics}"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbip_and_geolite_asn_layouts_are_read() {
    let data_dir = tempfile::tempdir().unwrap();
    let city = mmdb::dbip_city_db(data_dir.path());
    let asn = mmdb::asn_db(data_dir.path());
    let mut config = test_config(&db_name("dbip"), data_dir.path());
    config.privacy.collect = vec!["all".into()];
    config.geoip.city = Some(city);
    config.geoip.asn = Some(asn);
    let mut c = TestCollector::start_config(config, data_dir, Arc::new(SystemClock)).await;
    let body = json!({"v": 1, "site": "demo", "url": "http://localhost/x"}).to_string();
    assert_eq!(
        c.post(&body, "http://localhost", LONDON.ip).await.status(),
        202
    );
    let r: Vec<EventRow> = c.rows(1).await;
    assert_eq!(
        (
            r[0].country.as_str(),
            r[0].region_name.as_str(),
            r[0].city.as_str()
        ),
        ("GB", "England", "London")
    );
    assert_eq!(r[0].region_code, "", "DB-IP has no subdivision codes");
    assert_eq!(
        (r[0].asn, r[0].as_org.as_str(), r[0].isp.as_str()),
        (LONDON.asn, LONDON.as_org, "")
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_address_gets_empty_geo_columns() {
    let mut c = collector_with_geo("unknown_geo").await;
    let body = json!({"v": 1, "site": "demo", "url": "http://localhost/x"}).to_string();
    assert_eq!(
        c.post(&body, "http://localhost", "9.9.9.9").await.status(),
        202
    );
    let r = c.rows(1).await;
    assert_eq!(
        (r[0].country.as_str(), r[0].city.as_str(), r[0].asn),
        ("", "", 0)
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_peers_cannot_choose_their_address() {
    let mut c = TestCollector::start_with("untrusted", |c| c.trusted_proxies.clear()).await;
    let body = json!({"v": 1, "site": "demo", "url": "http://localhost/x"}).to_string();
    // Both claim different addresses, but the peer is the same: same visitor id.
    assert_eq!(
        c.post(&body, "http://localhost", ALMATY.ip).await.status(),
        202
    );
    assert_eq!(
        c.post(&body, "http://localhost", LONDON.ip).await.status(),
        202
    );
    let rows = c.rows(2).await;
    assert_eq!(rows[0].visitor_id, rows[1].visitor_id);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_hints_fill_what_the_user_agent_does_not_say() {
    let mut c = TestCollector::start("client_hints").await;
    let body = json!({"v": 1, "site": "demo", "url": "http://localhost/x", "device": {
        "uach": {"brands": ["Not_A Brand/8.0.0.0", "Chromium/156.0.8078.79", "Brave/156.0.0.0"], "mobile": false, "platform": "Windows", "pv": "15.0.0", "model": ""}
    }})
    .to_string();
    let res = c
        .post_with(
            &body,
            &[
                ("origin", "http://localhost"),
                ("user-agent", "SomeEmbeddedBrowser"),
                ("sec-ch-ua-platform", "\"Windows\""),
            ],
        )
        .await;
    assert_eq!(res.status(), 202);
    let r = c.rows(1).await;
    assert_eq!(
        (r[0].browser.as_str(), r[0].browser_version.as_str()),
        ("Brave", "156")
    );
    assert_eq!(
        (r[0].os.as_str(), r[0].os_version.as_str()),
        ("Windows", "15.0.0")
    );
    c.shutdown().await;
}
