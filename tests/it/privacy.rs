//! What the privacy policy promises, checked end to end against the real ClickHouse: minimisation
//! and consent decided on the server, scrubbed URLs, no raw IP anywhere, data-subject requests
//! over HTTP and the command line, token authentication and its failure handling, the audit log,
//! retention, and a restore that keeps ids stable.

use std::process::Command;
use std::time::Duration;

use footfall::audit::{AuditLog, AuditRow};
use footfall::config::{ConsentMode, SitePrivacyConfig, TokenConfig};
use footfall::privacy::ids::{IdHasher, Purpose};
use serde_json::{json, Value};

use crate::harness::{db_name, test_config, FootfallProcess, TestCollector, CHROME_UA};

const BIN: &str = env!("CARGO_BIN_EXE_footfall");
const ROOT_TOKEN: &str = "root-token-for-tests";
const ANALYST_TOKEN: &str = "analyst-token-for-tests";

fn pageview(site: &str, uid: &str, extra: Value) -> String {
    let mut b = json!({
        "v": 1, "site": site, "kind": "pageview",
        "url": format!("https://{site}.example/p"), "sid": format!("s-{uid}"), "seq": 1,
        "uid": uid, "cid": format!("c-{uid}"), "consent": "unset",
        "device": {
            "tz": "Asia/Almaty", "tzo": 300, "langs": ["kk-KZ"],
            "screen": {"w": 1920, "h": 1080, "aw": 1920, "ah": 1040, "cd": 24, "dpr": 1},
            "canvas": {"h": "9f2c11aa00bb33cc", "stable": true},
            "fonts": {"h": "77aa88bb99cc00dd", "n": 2, "list": ["Arial", "DejaVu Sans"]},
            "auto": {"webdriver": false, "headless": [], "globals": [], "flags": []}
        }
    });
    if let (Some(obj), Value::Object(more)) = (b.as_object_mut(), extra) {
        obj.extend(more);
    }
    b.to_string()
}

/// A collector with an admin token and an analyst (stats-only) token.
async fn admin_collector(
    test: &str,
    adjust: impl FnOnce(&mut footfall::config::Config),
) -> TestCollector {
    TestCollector::start_with(test, |c| {
        c.admin.bootstrap_token = Some(ROOT_TOKEN.into());
        c.admin.tokens = vec![TokenConfig {
            name: "analyst".into(),
            sha256: footfall::auth::token_hash(ANALYST_TOKEN),
            scopes: vec!["stats".into()],
        }];
        adjust(c);
    })
    .await
}

async fn admin_post(c: &TestCollector, path: &str, token: &str, body: Value) -> reqwest::Response {
    c.http
        .post(format!("{}{path}", c.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn ids_of(c: &TestCollector) -> IdHasher {
    IdHasher::new(&footfall::keys::load_or_create_secret(None, c.data_dir()).unwrap())
}

/// Audit records in the order they were written (UUIDv7 ids sort by time).
async fn audit_rows(c: &TestCollector) -> Vec<AuditRow> {
    let mut rows: Vec<AuditRow> =
        c.db.query("SELECT ?fields FROM audit_log")
            .fetch_all()
            .await
            .unwrap();
    rows.sort_by_key(|r| r.audit_id);
    rows
}

async fn count_where(c: &TestCollector, cond: &str) -> u64 {
    c.db.query(&format!("SELECT count() FROM events FINAL WHERE {cond}"))
        .fetch_one()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_groups_and_consent_are_enforced_on_the_server() {
    let mut c = TestCollector::start_with("minimise", |c| {
        // shop: statistics only, and nothing at all before consent.
        c.privacy.sites.insert(
            "shop".into(),
            SitePrivacyConfig {
                collect: Some(vec!["statistics".into()]),
                before_consent: Some(vec![]),
                consent: Some(ConsentMode::Required),
                ..Default::default()
            },
        );
    })
    .await;
    let shop = "https://shop.example";
    // No consent yet on a consent-required site: accepted, dropped, counted.
    let res = c
        .post(&pageview("shop", "u1", json!({})), shop, "198.51.100.7")
        .await;
    assert_eq!(res.status(), 202);
    assert_eq!(res.headers()["x-footfall-dropped"], "no_consent");
    // With consent: stored with the statistics groups only.
    let granted = pageview("shop", "u2", json!({"consent": "granted"}));
    assert_eq!(c.post(&granted, shop, "198.51.100.7").await.status(), 202);
    // demo keeps the defaults: everything but the city; GPC (header) means statistics only.
    let demo = "http://localhost:1234";
    assert_eq!(
        c.post(&pageview("demo", "u3", json!({})), demo, "198.51.100.8")
            .await
            .status(),
        202
    );
    let gpc = c
        .http
        .post(format!("{}/api/event", c.base))
        .header("content-type", "text/plain")
        .header("origin", demo)
        .header("sec-gpc", "1")
        .header("x-forwarded-for", "198.51.100.9")
        .header("user-agent", CHROME_UA)
        .body(pageview("demo", "u4", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(gpc.status(), 202);
    let denied = pageview("demo", "u5", json!({"consent": "denied"}));
    assert_eq!(c.post(&denied, demo, "198.51.100.10").await.status(), 202);

    let rows = c.rows(4).await;
    let by_sid = |sid: &str| rows.iter().find(|r| r.session_id == sid).unwrap();
    let ids = ids_of(&c);
    let shop_row = by_sid("s-u2");
    assert_eq!(
        shop_row.fingerprint_id, [0; 16],
        "fingerprint is not in statistics"
    );
    assert!(shop_row.canvas_hash.is_empty() && shop_row.fonts.is_empty());
    assert!(
        shop_row.user_id.is_empty() && shop_row.client_id.is_empty(),
        "identity is off"
    );
    assert_eq!(shop_row.timezone, "Asia/Almaty", "locale is in statistics");
    assert_eq!(shop_row.screen_w, 1920, "screen is in statistics");
    let full = by_sid("s-u3");
    assert_ne!(full.fingerprint_id, [0; 16]);
    assert_eq!(full.user_id, ids.hash(Purpose::UserId, "demo", "u3"));
    assert_eq!(full.fonts, ["Arial", "DejaVu Sans"]);
    for sid in ["s-u4", "s-u5"] {
        let r = by_sid(sid);
        assert_eq!(r.fingerprint_id, [0; 16], "{sid}");
        assert!(r.user_id.is_empty() && r.fonts.is_empty(), "{sid}");
        assert_eq!(r.screen_w, 1920, "{sid}");
    }
    assert_eq!(
        by_sid("s-u4").gpc,
        1,
        "the header is recorded as the signal"
    );
    let metrics = c.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"footfall_events_dropped_total{reason="no_consent"} 1"#),
        "{metrics}"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_in_urls_and_titles_is_scrubbed() {
    let mut c = TestCollector::start("scrub").await;
    let body = json!({
        "v": 1, "site": "demo", "kind": "pageview",
        "url": "http://localhost/account/alice@example.com?tab=2&email=alice%40example.com&token=abc&phone=%2B77011234567&utm_source=mail",
        "ref": "https://mail.example/reset/9f8e7d6c5b4a39281706f5e4d3c2b1a0?sid=1#access_token=eyJx.eyJy.zz",
        "title": "Inbox - alice@example.com", "sid": "s1", "seq": 1
    });
    assert_eq!(
        c.post(&body.to_string(), "http://localhost", "198.51.100.1")
            .await
            .status(),
        202
    );
    let r = &c.rows(1).await[0];
    assert_eq!(
        r.url,
        "http://localhost/account/[email]?tab=2&utm_source=mail"
    );
    assert_eq!(r.path, "/account/[email]");
    assert_eq!(r.utm_source, "mail");
    assert_eq!(r.referrer, "https://mail.example/reset/[token]?sid=1");
    assert_eq!(r.title, "Inbox - [email]");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_answers_do_not_reveal_which_sites_exist() {
    let mut c = TestCollector::start("no_reveal").await;
    let unknown = c
        .post(
            &pageview("nosuchsite", "u", json!({})),
            "https://evil.example",
            "198.51.100.1",
        )
        .await;
    let wrong_origin = c
        .post(
            &pageview("shop", "u", json!({})),
            "https://evil.example",
            "198.51.100.1",
        )
        .await;
    assert_eq!(
        (unknown.status().as_u16(), wrong_origin.status().as_u16()),
        (403, 403)
    );
    assert!(unknown
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    let a: Value = unknown.json().await.unwrap();
    let b: Value = wrong_origin.json().await.unwrap();
    assert_eq!(
        a["error"].as_str().unwrap().replace("nosuchsite", "X"),
        b["error"].as_str().unwrap().replace("shop", "X"),
        "an unknown site and a known one from a wrong origin get the same answer"
    );
    c.shutdown().await;
}

/// Renders an address the ways it could leak: text, and raw bytes.
fn forms(ip: &str) -> Vec<Vec<u8>> {
    let addr: std::net::IpAddr = ip.parse().unwrap();
    let mut v = vec![ip.as_bytes().to_vec()];
    match addr {
        std::net::IpAddr::V4(a) => v.push(a.octets().to_vec()),
        std::net::IpAddr::V6(a) => {
            v.push(a.octets().to_vec());
            v.push(a.to_string().as_bytes().to_vec());
        }
    }
    v
}

fn scan_dir(
    dir: &std::path::Path,
    needles: &[(String, Vec<u8>)],
    found: &mut Vec<String>,
    files: &mut usize,
) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            scan_dir(&path, needles, found, files);
        } else if let Ok(bytes) = std::fs::read(&path) {
            *files += 1;
            for (ip, n) in needles {
                if bytes.windows(n.len()).any(|w| w == n.as_slice()) {
                    found.push(format!("{ip} in {}", path.display()));
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_raw_ip_address_is_written_anywhere() {
    // Unusual addresses, so a match cannot be a coincidence.
    let ips = ["203.0.113.77", "198.51.100.213", "2001:db8:7e57::beef"];
    let data = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let db = db_name("no_raw_ip");
    let url = crate::harness::clickhouse_url();
    let mut p = FootfallProcess::spawn(
        data.path(),
        logs.path(),
        &[
            ("FOOTFALL_CLICKHOUSE_URL", url),
            ("FOOTFALL_CLICKHOUSE_DATABASE", &db),
            ("FOOTFALL_TRUSTED_PROXIES", "127.0.0.1"),
            ("FOOTFALL_LOG", "debug"),
            ("FOOTFALL_ADMIN_TOKEN", ROOT_TOKEN),
            ("FOOTFALL_SITES", "demo=http://localhost:*"),
        ],
    );
    let http = reqwest::Client::new();
    for (i, ip) in ips.iter().enumerate() {
        for kind in ["pageview", "engagement"] {
            let body = json!({"v": 1, "site": "demo", "kind": kind, "url": "http://localhost/",
                "sid": format!("s{i}"), "seq": 1, "uid": format!("user{i}"), "engaged_ms": 10, "wall_ms": 10});
            let res = http
                .post(format!("{}/api/event", p.base))
                .header("content-type", "text/plain")
                .header("origin", "http://localhost:3000")
                .header("x-forwarded-for", *ip)
                .header("user-agent", CHROME_UA)
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 202);
        }
        // Failed and successful admin requests from the same address (both are logged).
        let bad = http
            .post(format!("{}/api/admin/subjects/export", p.base))
            .header("x-forwarded-for", *ip)
            .bearer_auth("wrong")
            .json(&json!({"site": "demo", "user_id": format!("user{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 401);
        let good = http
            .post(format!("{}/api/admin/subjects/export", p.base))
            .header("x-forwarded-for", *ip)
            .bearer_auth(ROOT_TOKEN)
            .json(&json!({"site": "demo", "user_id": format!("user{i}")}))
            .send()
            .await
            .unwrap();
        assert!(
            good.status() == 200 || good.status() == 503,
            "{}",
            good.status()
        );
    }
    // Wait for delivery, then stop, so every file is final.
    let ch = crate::harness::server_client().with_database(&db);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let n: u64 = ch
            .query("SELECT count() FROM events")
            .fetch_one()
            .await
            .unwrap_or(0);
        if n >= 6 || tokio::time::Instant::now() > deadline {
            assert_eq!(n, 6);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(p.sigterm().success());

    let needles: Vec<(String, Vec<u8>)> = ips
        .iter()
        .flat_map(|ip| forms(ip).into_iter().map(move |f| (ip.to_string(), f)))
        .collect();
    let mut found = Vec::new();
    // Every table in footfall's database, every column as text.
    let tables: Vec<String> = ch
        .query("SELECT name FROM system.tables WHERE database = currentDatabase()")
        .fetch_all()
        .await
        .unwrap();
    assert!(tables.len() >= 4, "{tables:?}");
    for t in &tables {
        let dump = ch
            .query(&format!("SELECT * FROM {t} FORMAT TabSeparated"))
            .fetch_bytes("TabSeparated")
            .unwrap()
            .collect()
            .await
            .unwrap();
        for (ip, n) in &needles {
            if dump.windows(n.len()).any(|w| w == n.as_slice()) {
                found.push(format!("{ip} in table {t}"));
            }
        }
    }
    // Every file footfall wrote: spool segments, ack, keys, block list, audit file, dead letters.
    let mut files = 0;
    scan_dir(data.path(), &needles, &mut found, &mut files);
    assert!(
        files >= 3,
        "the data directory holds the spool and keys ({files} files)"
    );
    // And its logs, at debug level.
    let log = p.stderr();
    assert!(log.contains("admin authentication failed"), "{log}");
    for (ip, n) in &needles {
        if let Ok(text) = std::str::from_utf8(n) {
            if log.contains(text) {
                found.push(format!("{ip} in the log"));
            }
        }
    }
    assert!(found.is_empty(), "raw addresses written: {found:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_requests_over_http_each_write_exactly_one_audit_record() {
    let mut c = admin_collector("subjects_http", |_| {}).await;
    let shop = "https://shop.example";
    for (uid, ip) in [
        ("alice", "198.51.100.1"),
        ("alice", "198.51.100.1"),
        ("bob", "198.51.100.2"),
    ] {
        let body = pageview("shop", uid, json!({"seq": rand_seq()}));
        assert_eq!(c.post(&body, shop, ip).await.status(), 202);
    }
    c.rows(3).await;
    let ids = ids_of(&c);
    let alice = ids.hash(Purpose::UserId, "shop", "alice");

    // Without a token, with a wrong one, or with one lacking the scope: refused, nothing audited.
    let none = c
        .http
        .post(format!("{}/api/admin/subjects/export", c.base))
        .json(&json!({"site": "shop", "user_id": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    assert!(none.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let body: Value = none.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("token"), "{body}");
    let analyst = admin_post(
        &c,
        "/api/admin/subjects/export",
        ANALYST_TOKEN,
        json!({"site": "shop", "user_id": "alice"}),
    )
    .await;
    assert_eq!(analyst.status(), 403);
    assert_eq!(
        admin_post(&c, "/api/admin/retention/run", ANALYST_TOKEN, json!({}))
            .await
            .status(),
        403
    );
    assert_eq!(c.get("/api/admin/audit").await.status(), 401);
    assert_eq!(
        c.get("/api/admin/anything").await.status(),
        401,
        "unknown admin paths reveal nothing"
    );

    // Export: JSON with sources and retention, and CSV.
    let res = admin_post(
        &c,
        "/api/admin/subjects/export",
        ROOT_TOKEN,
        json!({"site": "shop", "user_id": "alice"}),
    )
    .await;
    let status = res.status();
    let export: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{export}");
    assert_eq!(export["stored_as"], alice.as_str());
    assert_eq!(export["tables"][0]["table"], "events");
    assert_eq!(export["tables"][0]["row_count"], 2);
    assert_eq!(export["tables"][0]["retention_days"], 395);
    let row0 = &export["tables"][0]["rows"][0];
    assert_eq!(row0["user_id"], alice.as_str());
    assert_eq!(
        row0["visitor_id"].as_str().unwrap().len(),
        32,
        "binary ids as hex"
    );
    let groups: Vec<&str> = export["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["group"].as_str().unwrap())
        .collect();
    assert!(
        groups.contains(&"location") && groups.contains(&"fingerprint"),
        "{groups:?}"
    );
    let location = export["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["group"] == "location")
        .unwrap();
    assert!(
        location["source"].as_str().unwrap().contains("GeoIP"),
        "{location}"
    );
    assert_eq!(location["policy_items"], json!([8, 9]));
    assert!(
        !export.to_string().contains("\"alice\""),
        "the clear user id is not stored"
    );
    // By the visitor id shown in the export (a binary column matched as hex).
    let visitor = row0["visitor_id"].as_str().unwrap().to_owned();
    let by_visitor: Value = admin_post(
        &c,
        "/api/admin/subjects/export",
        ROOT_TOKEN,
        json!({"site": "shop", "visitor_id": visitor}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(by_visitor["tables"][0]["row_count"], 2, "{by_visitor}");
    let csv = admin_post(
        &c,
        "/api/admin/subjects/export",
        ROOT_TOKEN,
        json!({"site": "shop", "user_id": "alice", "format": "csv"}),
    )
    .await;
    assert_eq!(csv.status(), 200);
    let csv = csv.text().await.unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.lines().next().unwrap().contains("visitor_id"));

    // Bad requests are clear JSON errors.
    let two_ids = admin_post(
        &c,
        "/api/admin/subjects/delete",
        ROOT_TOKEN,
        json!({"site": "shop", "user_id": "a", "session_id": "b"}),
    )
    .await;
    assert_eq!(two_ids.status(), 400);
    let bad_hex = admin_post(
        &c,
        "/api/admin/subjects/delete",
        ROOT_TOKEN,
        json!({"site": "shop", "visitor_id": "zz"}),
    )
    .await;
    assert_eq!(bad_hex.status(), 400);
    assert!(bad_hex.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("32 hex"));

    // Correct: alice's rows move to alice2.
    let res = admin_post(
        &c,
        "/api/admin/subjects/correct",
        ROOT_TOKEN,
        json!({"site": "shop", "user_id": "alice", "to_user_id": "alice2"}),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(count_where(&c, &format!("user_id = '{alice}'")).await, 0);
    let alice2 = ids.hash(Purpose::UserId, "shop", "alice2");
    assert_eq!(count_where(&c, &format!("user_id = '{alice2}'")).await, 2);

    // Block bob: his next event is dropped at ingest; unblock: collected again.
    assert_eq!(
        admin_post(
            &c,
            "/api/admin/subjects/block",
            ROOT_TOKEN,
            json!({"site": "shop", "user_id": "bob"})
        )
        .await
        .status(),
        200
    );
    let res = c
        .post(
            &pageview("shop", "bob", json!({"seq": 7})),
            shop,
            "198.51.100.2",
        )
        .await;
    assert_eq!(res.status(), 202);
    assert_eq!(res.headers()["x-footfall-dropped"], "blocked");
    let blocked: Value = admin_post(
        &c,
        "/api/admin/subjects/export",
        ROOT_TOKEN,
        json!({"site": "shop", "user_id": "bob"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(blocked["blocked"], true);
    assert_eq!(
        admin_post(
            &c,
            "/api/admin/subjects/unblock",
            ROOT_TOKEN,
            json!({"site": "shop", "user_id": "bob"})
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        c.post(
            &pageview("shop", "bob", json!({"seq": 8})),
            shop,
            "198.51.100.2"
        )
        .await
        .headers()
        .get("x-footfall-dropped"),
        None
    );
    c.rows(4).await;

    // Delete: counts before and after, confirmed by re-querying.
    let audit_before_delete = audit_rows(&c).await.len();
    let res = admin_post(
        &c,
        "/api/admin/subjects/delete",
        ROOT_TOKEN,
        json!({"site": "shop", "user_id": "alice2"}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let report: Value = res.json().await.unwrap();
    assert_eq!(
        report["tables"],
        json!([
            {"table": "events", "before": 2, "after": 0},
            // Her one session, no longer attributed to her (tests/it/analytics.rs checks the rollups).
            {"table": "session_states", "before": 1, "after": 0}
        ])
    );
    assert_eq!(count_where(&c, "1").await, 2, "bob's two events stay");
    assert_eq!(
        audit_rows(&c).await.len(),
        audit_before_delete + 1,
        "a delete never removes audit records"
    );

    // Reading the audit log is an admin action too.
    let res = c
        .http
        .get(format!("{}/api/admin/audit?limit=100", c.base))
        .bearer_auth(ROOT_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let listed: Value = res.json().await.unwrap();
    assert_eq!(
        listed["records"].as_array().unwrap().len(),
        audit_before_delete + 1
    );

    // Exactly one record per action, by the token's name, all intact; none for refused requests.
    let rows = audit_rows(&c).await;
    let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "subject.export",
            "subject.export",
            "subject.export",
            "subject.correct",
            "subject.block",
            "subject.export",
            "subject.unblock",
            "subject.delete",
            "audit.read"
        ],
        "{rows:#?}"
    );
    assert!(rows
        .iter()
        .all(|r| r.actor == "bootstrap" && r.result == "ok"));
    let log = AuditLog::new(
        None,
        c.data_dir(),
        ids.clone(),
        std::sync::Arc::new(footfall::clock::SystemClock),
    );
    assert!(rows.iter().all(|r| log.verify(r)));
    assert!(rows
        .iter()
        .filter(|r| r.action.starts_with("subject."))
        .all(|r| r.id_hash.len() == 32 && r.id_hash != alice));
    assert!(
        rows.iter().all(|r| !r.detail.contains("alice")),
        "no identifier in the details"
    );

    // The audit log cannot be changed through footfall: there is no route for it...
    for method in [
        reqwest::Method::DELETE,
        reqwest::Method::PUT,
        reqwest::Method::POST,
    ] {
        let res = c
            .http
            .request(method.clone(), format!("{}/api/admin/audit", c.base))
            .bearer_auth(ROOT_TOKEN)
            .send()
            .await
            .unwrap();
        assert!(
            res.status() == 404 || res.status() == 405,
            "{method} answered {}",
            res.status()
        );
    }
    // ...and an edit made directly in ClickHouse is detected.
    c.db.query("ALTER TABLE audit_log UPDATE result = 'ok', actor = 'someone' WHERE action = 'subject.delete'")
        .execute()
        .await
        .unwrap();
    footfall::subjects::wait_for_mutations(
        &c.db,
        &footfall::schema::Tables::single(&c.database),
        "audit_log",
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let tampered = audit_rows(&c).await;
    let bad: Vec<_> = tampered
        .iter()
        .filter(|r| !log.verify(r))
        .map(|r| r.action.as_str())
        .collect();
    assert_eq!(bad, ["subject.delete"]);
    c.shutdown().await;
}

fn rand_seq() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(1);
    N.fetch_add(1, Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentication_is_limited_counted_logged_and_alerts() {
    let mut c = admin_collector("auth_failures", |c| {
        c.admin.failures_per_minute = 3;
        c.admin.alert_threshold = 5;
    })
    .await;
    let attempt = |ip: &'static str, token: &'static str| {
        let http = c.http.clone();
        let url = format!("{}/api/admin/whoami", c.base);
        async move {
            http.get(url)
                .header("x-forwarded-for", ip)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    let metrics = c.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("footfall_unauthorised_access_alert 0"),
        "{metrics}"
    );
    for _ in 0..4 {
        assert_eq!(attempt("192.0.2.50", "guess").await.status(), 401);
    }
    // Locked out: even the right token from that address waits.
    let locked = attempt("192.0.2.50", ROOT_TOKEN).await;
    assert_eq!(locked.status(), 429);
    assert!(
        locked.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            <= 60
    );
    // Other addresses are not affected.
    let ok = attempt("192.0.2.51", ROOT_TOKEN).await;
    assert_eq!(ok.status(), 200);
    let me: Value = ok.json().await.unwrap();
    assert_eq!(
        me,
        json!({"name": "bootstrap", "scopes": ["stats", "subjects", "admin"]})
    );
    let analyst: Value = attempt("192.0.2.51", ANALYST_TOKEN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(analyst["scopes"], json!(["stats"]));
    assert_eq!(attempt("192.0.2.52", "guess").await.status(), 401);

    let metrics = c.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"footfall_admin_auth_failures_total{reason="invalid"} 5"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"footfall_admin_auth_failures_total{reason="locked_out"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("footfall_unauthorised_access_alert 1"),
        "{metrics}"
    );
    assert!(
        audit_rows(&c).await.is_empty(),
        "refused requests are not admin actions"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_is_enforced_automatically_on_every_table_and_audited() {
    let mut c = admin_collector("retention", |c| {
        c.retention.events_days = 30;
        c.retention.audit_days = 30;
        c.retention.interval_secs = 0; // first run is explicit, then automatic below
    })
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let day = 86_400;
    // Old and new rows, across several months; the schema is in place once the collector runs.
    let ages = [400, 200, 31, 29, 1];
    let mut insert =
        c.db.insert::<footfall::row::EventRow>("events")
            .await
            .unwrap();
    for (i, age) in ages.iter().enumerate() {
        insert
            .write(&footfall::row::EventRow {
                event_id: uuid::Uuid::from_u128(i as u128 + 1),
                site: "shop".into(),
                kind: "pageview".into(),
                received_at: now - age * day,
                session_id: format!("age{age}").into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    insert.end().await.unwrap();
    c.db.query("INSERT INTO audit_log (at, audit_id, actor, action) VALUES (?, toUUID('00000000-0000-4000-8000-000000000001'), 'old', 'subject.export')")
        .bind(now - 90 * day)
        .execute()
        .await
        .unwrap();

    let res = admin_post(&c, "/api/admin/retention/run", ROOT_TOKEN, json!({})).await;
    assert_eq!(res.status(), 200);
    let report: Value = res.json().await.unwrap();
    let events = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "events")
        .unwrap();
    assert_eq!(events["rows_removed"], 3, "{report}");
    assert!(
        !events["dropped_partitions"].as_array().unwrap().is_empty(),
        "{report}"
    );
    let left: Vec<String> =
        c.db.query("SELECT session_id FROM events ORDER BY received_at")
            .fetch_all()
            .await
            .unwrap();
    assert_eq!(left, ["age29", "age1"]);
    let audit = audit_rows(&c).await;
    assert_eq!(
        audit.len(),
        1,
        "the old audit record expired; the run itself is recorded: {audit:#?}"
    );
    assert_eq!(
        (audit[0].action.as_str(), audit[0].actor.as_str()),
        ("retention.run", "bootstrap")
    );
    c.shutdown().await;

    // Automatically, by serve itself, on the same database.
    let db = c.db.clone();
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config("unused", data.path());
    config.clickhouse.database = db_name("unused_retention_auto");
    let auto_db = config.clickhouse.database.clone();
    config.retention.events_days = 30;
    config.retention.interval_secs = 1;
    config.privacy.blocklist_refresh_secs = 1;
    let mut auto = TestCollector::start_config(
        config,
        data,
        std::sync::Arc::new(footfall::clock::SystemClock),
    )
    .await;
    let mut insert = auto
        .db
        .insert::<footfall::row::EventRow>("events")
        .await
        .unwrap();
    insert
        .write(&footfall::row::EventRow {
            event_id: uuid::Uuid::from_u128(9),
            site: "shop".into(),
            received_at: now - 100 * day,
            ..Default::default()
        })
        .await
        .unwrap();
    insert.end().await.unwrap();
    drop(db);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let runs: Vec<AuditRow> = auto
            .db
            .query("SELECT ?fields FROM audit_log WHERE action = 'retention.run'")
            .fetch_all()
            .await
            .unwrap_or_default();
        let left = auto.count().await;
        if (!runs.is_empty() && left == 0) || tokio::time::Instant::now() > deadline {
            assert_eq!(left, 0, "serve removed the expired row of {auto_db}");
            assert_eq!(runs[0].actor, "footfall");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    auto.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_serves_subject_requests_on_the_same_data() {
    let mut c = admin_collector("subjects_cli", |_| {}).await;
    for seq in 1..=3 {
        let body = pageview("shop", "carol", json!({"seq": seq}));
        assert_eq!(
            c.post(&body, "https://shop.example", "198.51.100.3")
                .await
                .status(),
            202
        );
    }
    c.rows(3).await;
    let db = c.db.clone();
    let dbname: String = db
        .query("SELECT currentDatabase()")
        .fetch_one()
        .await
        .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env_clear()
            .env("PATH", "/nonexistent")
            .env("USER", "dpo")
            .env("FOOTFALL_DATA_DIR", c.data_dir())
            .env("FOOTFALL_CLICKHOUSE_URL", crate::harness::clickhouse_url())
            .env("FOOTFALL_CLICKHOUSE_DATABASE", &dbname)
            .env("FOOTFALL_SITES", "shop=https://shop.example")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&["subject", "export", "--site", "shop", "--user-id", "carol"]);
    assert!(ok, "{err}");
    let export: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(export["tables"][0]["row_count"], 3);
    let (ok, out, err) = run(&[
        "subject",
        "export",
        "--site",
        "shop",
        "--user-id",
        "carol",
        "--format",
        "csv",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.trim_end().lines().count(), 4);
    let (ok, _, err) = run(&[
        "subject",
        "delete",
        "--site",
        "shop",
        "--user-id",
        "carol",
        "--session-id",
        "x",
    ]);
    assert!(!ok && err.contains("cannot be used with"), "{err}");
    let (ok, out, err) = run(&["subject", "delete", "--site", "shop", "--user-id", "carol"]);
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report["tables"][0],
        json!({"table": "events", "before": 3, "after": 0})
    );
    assert_eq!(c.count().await, 0);
    let (ok, out, err) = run(&["audit", "verify"]);
    assert!(ok, "{err}");
    assert!(out.contains("3 records, 3 intact, 0 changed"), "{out}");
    let rows = audit_rows(&c).await;
    assert!(rows.iter().all(|r| r.actor == "cli:dpo"), "{rows:#?}");
    let (ok, out, _) = run(&[
        "token",
        "new",
        "--name",
        "erin",
        "--scopes",
        "stats,subjects",
    ]);
    assert!(ok);
    assert!(
        out.contains("[[admin.tokens]]") && out.contains("scopes = [\"stats\", \"subjects\"]"),
        "{out}"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_records_wait_in_a_local_file_while_clickhouse_is_unreachable() {
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(&db_name("audit_file"), data.path());
    let real_url = config.clickhouse.url.clone().unwrap();
    config.clickhouse.url = Some("http://127.0.0.1:9".into());
    let clock: footfall::clock::SharedClock = std::sync::Arc::new(footfall::clock::SystemClock);
    let down = footfall::serve::admin(
        &config,
        Some("http://127.0.0.1:9"),
        &footfall::keys::load_or_create_secret(None, data.path()).unwrap(),
        Default::default(),
        clock.clone(),
    )
    .unwrap();
    let r = footfall::admin::SubjectRequest {
        site: "shop".into(),
        kind: footfall::privacy::blocklist::IdKind::UserId,
        id: "dave".into(),
    };
    let err = down.delete("cli:dpo", &r).await.unwrap_err();
    assert!(
        matches!(err, footfall::admin::AdminError::Unavailable(_)),
        "{err}"
    );
    assert_eq!(
        down.audit.pending().unwrap().len(),
        1,
        "the failed attempt is recorded locally"
    );
    assert!(down.audit.pending().unwrap()[0]
        .result
        .starts_with("error:"));

    // With ClickHouse back, the next record brings the waiting one along.
    config.clickhouse.url = Some(real_url.clone());
    footfall::schema::migrate(
        &crate::harness::server_client(),
        &config.clickhouse.database,
        &footfall::schema::Layout::Single,
    )
    .await
    .unwrap();
    let up = footfall::serve::admin(
        &config,
        Some(&real_url),
        &footfall::keys::load_or_create_secret(None, data.path()).unwrap(),
        Default::default(),
        clock,
    )
    .unwrap();
    up.delete("cli:dpo", &r).await.unwrap();
    assert!(up.audit.pending().unwrap().is_empty());
    let rows = up.audit.all().await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|row| up.audit.verify(row)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_data_directory_keeps_visitor_and_fingerprint_ids() {
    let body = pageview("demo", "erin", json!({"consent": "granted"}));
    let origin = "http://localhost:8080";
    let ip = "198.51.100.44";
    let mut original = TestCollector::start("backup_original").await;
    assert_eq!(original.post(&body, origin, ip).await.status(), 202);
    let before = original.rows(1).await.remove(0);
    original.shutdown().await;
    assert_ne!(before.fingerprint_id, [0; 16]);

    // The documented backup: the key material of the data directory (README, "Backup and restore").
    let restored_dir = tempfile::tempdir().unwrap();
    for f in ["secret", "salts.json"] {
        std::fs::copy(original.data_dir().join(f), restored_dir.path().join(f)).unwrap();
    }
    let mut restored = TestCollector::start_config(
        test_config(&db_name("backup_restored"), restored_dir.path()),
        restored_dir,
        std::sync::Arc::new(footfall::clock::SystemClock),
    )
    .await;
    assert_eq!(restored.post(&body, origin, ip).await.status(), 202);
    let after = restored.rows(1).await.remove(0);
    restored.shutdown().await;
    assert_eq!(after.visitor_id, before.visitor_id);
    assert_eq!(after.fingerprint_id, before.fingerprint_id);
    assert_eq!(after.user_id, before.user_id);

    // Without the backup, a new directory gives new ids (so the check above means something).
    let mut fresh = TestCollector::start("backup_fresh").await;
    assert_eq!(fresh.post(&body, origin, ip).await.status(), 202);
    let other = fresh.rows(1).await.remove(0);
    fresh.shutdown().await;
    assert_ne!(other.visitor_id, before.visitor_id);
    assert_ne!(other.fingerprint_id, before.fingerprint_id);
}
