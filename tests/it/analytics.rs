//! The analyst model: sessions, navigation and rollups kept from `events` by materialised views and
//! the rollup job, and every named query answering known questions about seeded visits, through
//! the real pipeline (beacon -> spool -> ClickHouse -> views -> rollups -> `/api/stats`).

use std::sync::Arc;
use std::time::Duration;

use footfall::clock::{ManualClock, SharedClock};
use footfall::config::Config;
use serde_json::{json, Value};

use crate::harness::{db_name, test_config, TestCollector};
use crate::mmdb::{self, ALMATY, LONDON};

const TOKEN: &str = "stats-test-token-0123456789";
const ORIGIN: &str = "https://shop.example";
const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";
const FIREFOX: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0";
/// 2026-11-10 00:00:00 UTC, in ms.
const DAY1: i64 = 1_794_268_800_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// Who sends a beacon: address (behind the trusted loopback proxy) and browser.
#[derive(Clone, Copy)]
struct Visitor {
    ip: &'static str,
    ua: &'static str,
}

/// V1 and V3 are two people in Almaty on identical machines (same fingerprint); V2 in London.
const V1: Visitor = Visitor {
    ip: ALMATY.ip,
    ua: CHROME,
};
const V2: Visitor = Visitor {
    ip: LONDON.ip,
    ua: FIREFOX,
};
const V3: Visitor = Visitor {
    ip: "5.34.99.7",
    ua: CHROME,
};

fn almaty_device() -> Value {
    json!({
        "tz": "Asia/Almaty", "tzo": 300, "langs": ["kk-KZ", "ru"],
        "screen": {"w": 1920, "h": 1080, "aw": 1920, "ah": 1040, "cd": 24, "dpr": 1},
        "platform": "Linux x86_64", "arch": "x86", "bits": "64", "arch_src": "uach",
        "cores": 8, "mem": 8, "canvas": {"h": "aa11", "stable": true},
        "webgl": {"vendor": "Intel", "renderer": "Mesa Intel(R) UHD Graphics 620", "h": "bb22"},
        "fonts": {"h": "cc33", "n": 20}, "plugins": ["PDF Viewer"],
        "media": {"ai": 1, "vi": 1, "ao": 1},
        "auto": {"webdriver": false}
    })
}

/// London's Firefox is driven by WebDriver; its second session comes from a larger screen.
fn london_device(width: u32, height: u32) -> Value {
    json!({
        "tz": "Europe/London", "tzo": 0, "langs": ["en-GB"],
        "screen": {"w": width, "h": height, "aw": width, "ah": height - 40, "cd": 24, "dpr": 1},
        "platform": "Win32", "arch": "x86", "bits": "64", "arch_src": "platform",
        "cores": 4, "mem": 0, "canvas": {"h": "dd44", "stable": true},
        "fonts": {"h": "ee55", "n": 12}, "plugins": [],
        "auto": {"webdriver": true}
    })
}

/// One beacon's fields: kind, path, session, seq, seconds since the session's first event.
struct Ev {
    who: Visitor,
    kind: &'static str,
    url: &'static str,
    sid: &'static str,
    seq: u32,
    secs: i64,
    extra: Value,
}

fn ev(
    who: Visitor,
    kind: &'static str,
    url: &'static str,
    sid: &'static str,
    seq: u32,
    secs: i64,
    extra: Value,
) -> Ev {
    Ev {
        who,
        kind,
        url,
        sid,
        seq,
        secs,
        extra,
    }
}

/// Sends `e` as if at `session_start + e.secs`, both on the server clock and the client clock.
async fn send(c: &TestCollector, clock: &ManualClock, session_start: i64, e: &Ev) {
    let at = session_start + e.secs * 1000;
    clock.set(at);
    let mut b = json!({
        "v": 1, "site": "shop", "kind": e.kind, "url": format!("https://shop.example{}", e.url),
        "sid": e.sid, "seq": e.seq, "ts": at, "consent": "unset",
    });
    if let (Some(obj), Value::Object(more)) = (b.as_object_mut(), e.extra.clone()) {
        obj.extend(more);
    }
    let res = c
        .http
        .post(format!("{}/api/event", c.base))
        .header("content-type", "text/plain;charset=UTF-8")
        .header("origin", ORIGIN)
        .header("x-forwarded-for", e.who.ip)
        .header("user-agent", e.who.ua)
        .body(b.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        202,
        "{}",
        res.text().await.unwrap_or_default()
    );
}

async fn collector(test: &str, clock: SharedClock) -> TestCollector {
    let data_dir = tempfile::tempdir().unwrap();
    let geo = data_dir.path().join("geo");
    std::fs::create_dir_all(&geo).unwrap();
    let mut config: Config = test_config(&db_name(test), data_dir.path());
    config.geoip.city = Some(mmdb::city_db(&geo));
    config.geoip.asn = Some(mmdb::isp_db(&geo));
    config.admin.bootstrap_token = Some(TOKEN.into());
    // The test runs the rollup job itself, at the moments it chooses.
    config.rollups.interval_secs = 0;
    TestCollector::start_config(config, data_dir, clock).await
}

/// Waits until ClickHouse acknowledged the INSERTs of `n` events (so every materialised view has
/// them too: rows show in `events` before the views are written), then runs the rollup job
/// through the admin API.
async fn landed_and_rolled_up(c: &TestCollector, n: u64) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let metrics = c.running.as_ref().unwrap().metrics.clone();
    while metrics.rows_inserted.get() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "events did not land"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(c.count().await, n);
    let res = c
        .http
        .post(format!("{}/api/admin/rollups/run", c.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// `GET /api/stats/{name}` for site `shop` over `from..=to`: the rows, as JSON arrays.
async fn stats(c: &TestCollector, name: &str, from: &str, to: &str) -> Vec<Value> {
    let res = c
        .http
        .get(format!(
            "{}/api/stats/{name}?site=shop&from={from}&to={to}&limit=50",
            c.base
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{name}: {}", res.text().await.unwrap());
    let body: Value = res.json().await.unwrap();
    let q = footfall::stats::find(name).unwrap();
    let columns: Vec<&str> = body["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        columns, q.columns,
        "{name}: the header's columns are the result's"
    );
    body["rows"].as_array().unwrap().iter().map(whole).collect()
}

/// Whole floats as integers (ClickHouse prints a Float64 1.0 as `1`), so rows compare with `json!`.
fn whole(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(whole).collect()),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => json!(f as i64),
            _ => v.clone(),
        },
        _ => v.clone(),
    }
}

/// The seeded visits of 2026-11-10 (five sessions, three visitors) and one of 2026-11-11.
fn day_one() -> Vec<(i64, Vec<Ev>)> {
    let dev = || json!({ "device": almaty_device() });
    vec![
        // V1 from Google: /, /pricing (5 s engaged), a click to the docs, /signup. 30 s.
        (
            DAY1 + 9 * HOUR,
            vec![
                ev(V1, "pageview", "/", "s1", 1, 0, {
                    let mut d = dev();
                    d["ref"] = json!("https://www.google.com/");
                    d
                }),
                ev(
                    V1,
                    "pageview",
                    "/pricing",
                    "s1",
                    2,
                    10,
                    json!({"prev": "https://shop.example/"}),
                ),
                ev(
                    V1,
                    "engagement",
                    "/pricing",
                    "s1",
                    3,
                    20,
                    json!({"engaged_ms": 5000, "wall_ms": 9000}),
                ),
                ev(
                    V1,
                    "outbound",
                    "/pricing",
                    "s1",
                    4,
                    25,
                    json!({"target": "https://docs.example.com/start"}),
                ),
                ev(
                    V1,
                    "pageview",
                    "/signup",
                    "s1",
                    5,
                    30,
                    json!({"prev": "https://shop.example/pricing"}),
                ),
            ],
        ),
        // V2 from a news site: /pricing only (a bounce), 2 s engaged, 12 s.
        (
            DAY1 + 10 * HOUR,
            vec![
                ev(
                    V2,
                    "pageview",
                    "/pricing",
                    "s2",
                    1,
                    0,
                    json!({"ref": "https://news.example.org/a", "device": london_device(1366, 768)}),
                ),
                ev(
                    V2,
                    "engagement",
                    "/pricing",
                    "s2",
                    2,
                    12,
                    json!({"engaged_ms": 2000, "wall_ms": 12000}),
                ),
            ],
        ),
        // V3, identified as u-1: one page (a bounce).
        (
            DAY1 + 11 * HOUR,
            vec![ev(V3, "pageview", "/", "s3", 1, 0, {
                let mut d = dev();
                d["uid"] = json!("u-1");
                d
            })],
        ),
        // V3 again from the newsletter: /, then /pricing 50 s later.
        (
            DAY1 + 13 * HOUR,
            vec![
                ev(
                    V3,
                    "pageview",
                    "/?utm_source=newsletter&utm_medium=email",
                    "s4",
                    1,
                    0,
                    {
                        let mut d = dev();
                        d["uid"] = json!("u-1");
                        d
                    },
                ),
                ev(
                    V3,
                    "pageview",
                    "/pricing",
                    "s4",
                    2,
                    50,
                    json!({"uid": "u-1", "prev": "https://shop.example/?utm_source=newsletter&utm_medium=email"}),
                ),
            ],
        ),
        // V2 again, direct, from a larger screen: /signup only, 8 s.
        (
            DAY1 + 15 * HOUR,
            vec![
                ev(
                    V2,
                    "pageview",
                    "/signup",
                    "s6",
                    1,
                    0,
                    json!({"device": london_device(1440, 900)}),
                ),
                ev(
                    V2,
                    "engagement",
                    "/signup",
                    "s6",
                    2,
                    8,
                    json!({"engaged_ms": 1000, "wall_ms": 8000}),
                ),
            ],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_queries_answer_known_questions_about_seeded_visits() {
    let clock = Arc::new(ManualClock::new(DAY1 + 9 * HOUR));
    let mut c = collector("analytics_known", clock.clone()).await;
    let sessions = day_one();
    // Sessions split over several INSERTs, and events arriving out of order: s4's second page
    // view and s1's last three events come in a later batch than the rest of their sessions.
    let mut late = Vec::new();
    for (start, evs) in &sessions {
        for e in evs {
            if (e.sid == "s4" && e.seq == 2) || (e.sid == "s1" && e.seq >= 3) {
                late.push((*start, e));
            } else {
                send(&c, &clock, *start, e).await;
            }
        }
    }
    landed_and_rolled_up(&c, 8).await;
    for (start, e) in late.iter().rev() {
        send(&c, &clock, *start, e).await;
    }
    // The next day: V1 once more (a new visitor id: the salt changed).
    let day2 = DAY1 + DAY + 9 * HOUR;
    send(
        &c,
        &clock,
        day2,
        &ev(
            V1,
            "pageview",
            "/",
            "s5",
            1,
            0,
            json!({"device": almaty_device()}),
        ),
    )
    .await;
    let report = landed_and_rolled_up(&c, 13).await;
    assert!(
        report["days"]
            .as_array()
            .unwrap()
            .contains(&json!(["shop", "2026-11-10"])),
        "the day that received late events is recomputed: {report}"
    );

    let d1 = "2026-11-10";
    let d2 = "2026-11-11";
    // Overview of day one: 3 visitors, 1 user, 5 sessions, 8 page views, 3 bounces (s2, s3, s6),
    // durations 30, 12, 0, 50, 8 s (median 12), 8 s engaged in all, 2 of 12 events automated.
    assert_eq!(
        stats(&c, "overview", d1, d1).await,
        vec![json!([3, 1, 5, 8, 1.6, 0.6, 12, 1.6, 0.1667])]
    );
    let both = &stats(&c, "overview", d1, d2).await[0];
    assert_eq!(both[0], 4, "visitors: per day, summed (ids change daily)");
    assert_eq!(both[1], 1, "users: distinct over the range");
    assert_eq!(both[2], 6);
    assert_eq!(both[3], 9);
    assert_eq!(both[5], 0.6667);
    assert_eq!(
        stats(&c, "timeseries", d1, d2).await,
        vec![json!([d1, 3, 5, 8]), json!([d2, 1, 1, 1])]
    );
    assert_eq!(
        stats(&c, "top_pages", d1, d1).await,
        vec![
            json!(["/", 3, 2]),
            json!(["/pricing", 3, 3]),
            json!(["/signup", 2, 2])
        ]
    );
    assert_eq!(
        stats(&c, "entry_pages", d1, d1).await,
        vec![
            json!(["/", 3, 0.3333]),
            json!(["/pricing", 1, 1]),
            json!(["/signup", 1, 1])
        ]
    );
    assert_eq!(
        stats(&c, "exit_pages", d1, d1).await,
        vec![
            json!(["/pricing", 2]),
            json!(["/signup", 2]),
            json!(["/", 1])
        ]
    );
    assert_eq!(
        stats(&c, "outbound_links", d1, d2).await,
        vec![json!([
            "/pricing",
            "docs.example.com",
            "https://docs.example.com/start",
            1
        ])]
    );
    assert_eq!(
        stats(&c, "navigation", d1, d1).await,
        vec![
            json!(["/", "/pricing", 2]),
            json!(["/pricing", "/signup", 1])
        ]
    );
    assert_eq!(
        stats(&c, "referrers", d1, d1).await,
        vec![
            json!(["", "Direct", 2]),
            json!(["", "Email", 1]),
            json!(["news.example.org", "Referral", 1]),
            json!(["www.google.com", "Search", 1])
        ]
    );
    assert_eq!(
        stats(&c, "channels", d1, d1).await,
        vec![
            json!(["Direct", 2]),
            json!(["Email", 1]),
            json!(["Referral", 1]),
            json!(["Search", 1])
        ]
    );
    assert_eq!(
        stats(&c, "countries", d1, d1).await,
        vec![json!(["KZ", 2]), json!(["GB", 1])]
    );
    assert_eq!(
        stats(&c, "regions", d1, d1).await,
        vec![
            json!([
                "KZ",
                format!("KZ-{}", ALMATY.region_iso),
                ALMATY.region_name,
                2
            ]),
            json!([
                "GB",
                format!("GB-{}", LONDON.region_iso),
                LONDON.region_name,
                1
            ])
        ]
    );
    assert_eq!(
        stats(&c, "providers", d1, d1).await,
        vec![
            json!([ALMATY.asn, ALMATY.as_org, ALMATY.isp, 2]),
            json!([LONDON.asn, LONDON.as_org, LONDON.isp, 1])
        ]
    );
    assert_eq!(
        stats(&c, "browsers", d1, d1).await,
        vec![json!(["Chrome", 2]), json!(["Firefox", 1])]
    );
    assert_eq!(
        stats(&c, "os", d1, d1).await,
        vec![json!(["Linux", 2]), json!(["Windows 10", 1])]
    );
    assert_eq!(
        stats(&c, "devices", d1, d1).await,
        vec![json!(["desktop", 3])]
    );
    assert_eq!(
        stats(&c, "screens", d1, d1).await,
        vec![
            json!(["1920x1080", 2]),
            json!(["1366x768", 1]),
            json!(["1440x900", 1])
        ]
    );
    assert_eq!(
        stats(&c, "languages", d1, d1).await,
        vec![json!(["kk-KZ", 2]), json!(["ru", 2]), json!(["en-GB", 1])]
    );
    assert_eq!(
        stats(&c, "timezones", d1, d1).await,
        vec![json!(["Asia/Almaty", 2]), json!(["Europe/London", 1])]
    );
    assert_eq!(
        stats(&c, "cpu_architectures", d1, d1).await,
        vec![json!(["x86", "64", 3])]
    );
    let automation = stats(&c, "automation", d1, d1).await;
    assert_eq!(automation[0], json!(["any", 2, 0.1667]), "{automation:?}");
    assert!(
        automation.contains(&json!(["webdriver", 2, 0.1667])),
        "{automation:?}"
    );

    // The two Almaty machines share a fingerprint: seen under V1 and V3 on day one, and under V1's
    // new id on day two as well. London's visitor came from two devices.
    let fp: Vec<(String, String)> = c
        .db
        .query("SELECT DISTINCT lower(hex(fingerprint_id)), lower(hex(visitor_id)) FROM events WHERE fingerprint_version != 0 AND toDate(received_at) = '2026-11-10'")
        .fetch_all()
        .await
        .unwrap();
    let almaty_fp = fp
        .iter()
        .map(|(f, _)| f)
        .find(|f| fp.iter().filter(|(g, _)| g == *f).count() == 2)
        .unwrap()
        .clone();
    assert_eq!(
        stats(&c, "fingerprints_multi_visitor", d1, d1).await,
        vec![json!([almaty_fp, 2, 3])]
    );
    assert_eq!(
        stats(&c, "fingerprints_multi_visitor", d1, d2).await,
        vec![json!([almaty_fp, 3, 4])]
    );
    let london = stats(&c, "visitors_multi_fingerprint", d1, d1).await;
    assert_eq!(london.len(), 1, "{london:?}");
    assert_eq!(london[0][1], 2);
    assert_eq!(london[0][2], 2);
    let user: String =
        c.db.query("SELECT any(user_id) FROM events WHERE user_id != ''")
            .fetch_one()
            .await
            .unwrap();
    assert_eq!(
        stats(&c, "sessions_per_user", d1, d2).await,
        vec![json!([user, 2, 3])]
    );

    // Nothing for a range without data, and every query still answers with its columns.
    for q in footfall::stats::queries() {
        let rows = stats(&c, &q.name, "2026-10-01", "2026-10-31").await;
        if q.name == "overview" {
            assert_eq!(rows, vec![json!([0, 0, 0, 0, 0, 0, 0, 0, 0])]);
        } else {
            assert!(rows.is_empty(), "{}: {rows:?}", q.name);
        }
    }
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        write_fixture(&c).await;
    }
    c.shutdown().await;
}

/// `tests/fixtures/analytics/`: these events as stored, and every query's answers on them, for
/// `tests/analytics/check.py` to replay on ClickHouse 26.x and through the Grafana dashboard.
async fn write_fixture(c: &TestCollector) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/analytics");
    std::fs::create_dir_all(&dir).unwrap();
    let cols: Vec<(String, String)> = c
        .db
        .query("SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = 'events'")
        .fetch_all()
        .await
        .unwrap();
    let list = cols
        .iter()
        .map(|(n, t)| {
            if t.starts_with("FixedString") {
                format!("lower(hex({n})) AS {n}")
            } else if t.starts_with("DateTime") {
                // As a number: text would be in the server's time zone.
                format!("toUInt32({n}) AS {n}")
            } else {
                n.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut cursor =
        c.db.query(&format!(
            "SELECT {list} FROM (SELECT * FROM events) ORDER BY received_at, session_id, seq"
        ))
        .fetch_bytes("JSONEachRow")
        .unwrap();
    let events = cursor.collect().await.unwrap();
    std::fs::write(dir.join("events.jsonl"), &events).unwrap();
    let mut answers = Vec::new();
    for (from, to) in [
        ("2026-11-10", "2026-11-10"),
        ("2026-11-10", "2026-11-11"),
        ("2026-10-01", "2026-10-31"),
    ] {
        for q in footfall::stats::queries() {
            let rows = stats(c, &q.name, from, to).await;
            answers.push(json!({"query": q.name, "site": "shop", "from": from, "to": to, "limit": 50, "rows": rows}));
        }
    }
    std::fs::write(
        dir.join("answers.json"),
        serde_json::to_string_pretty(&answers).unwrap() + "\n",
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_across_midnight_counts_once_on_the_day_it_began() {
    let start = DAY1 + DAY - 10 * 60_000; // 23:50
    let clock = Arc::new(ManualClock::new(start));
    let mut c = collector("analytics_midnight", clock.clone()).await;
    for e in [
        ev(V1, "pageview", "/pricing", "s7", 1, 0, json!({})),
        // 00:10 the next day: same visit (the visitor id continues across midnight).
        ev(
            V1,
            "pageview",
            "/signup",
            "s7",
            2,
            20 * 60,
            json!({"prev": "https://shop.example/pricing"}),
        ),
    ] {
        send(&c, &clock, start, &e).await;
    }
    landed_and_rolled_up(&c, 2).await;
    let visitors: u64 =
        c.db.query("SELECT uniqExact(visitor_id) FROM events")
            .fetch_one()
            .await
            .unwrap();
    assert_eq!(visitors, 1);
    let (d1, d2) = ("2026-11-10", "2026-11-11");
    let o1 = &stats(&c, "overview", d1, d1).await[0];
    assert_eq!(
        (&o1[2], &o1[3], &o1[5], &o1[6]),
        (&json!(1), &json!(1), &json!(0), &json!(1200))
    );
    let o2 = &stats(&c, "overview", d2, d2).await[0];
    assert_eq!(
        (&o2[2], &o2[3]),
        (&json!(0), &json!(1)),
        "no session begins on day two"
    );
    assert_eq!(
        stats(&c, "entry_pages", d1, d2).await,
        vec![json!(["/pricing", 1, 0])]
    );
    assert_eq!(
        stats(&c, "exit_pages", d1, d2).await,
        vec![json!(["/signup", 1])]
    );
    assert_eq!(
        stats(&c, "navigation", d1, d2).await,
        vec![json!(["/pricing", "/signup", 1])]
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stats_api_checks_tokens_and_parameters_and_audits_every_answer() {
    let clock = Arc::new(ManualClock::new(DAY1));
    let mut c = collector("analytics_api", clock.clone()).await;
    let get = |path: &str, token: Option<&str>| {
        let mut r = c.http.get(format!("{}{path}", c.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    for path in [
        "/api/stats/sites",
        "/api/stats/queries",
        "/api/stats/overview?site=shop",
    ] {
        let res = get(path, None).await.unwrap();
        assert_eq!(res.status(), 401, "{path}");
        let body: Value = res.json().await.unwrap();
        assert!(body["error"].is_string());
        assert_eq!(get(path, Some("wrong")).await.unwrap().status(), 401);
    }
    let sites: Value = get("/api/stats/sites", Some(TOKEN))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sites, json!({"sites": ["demo", "shop"]}));
    let list: Value = get("/api/stats/queries", Some(TOKEN))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["queries"].as_array().unwrap().len(),
        footfall::stats::queries().len()
    );
    assert_eq!(list["queries"][0]["name"], "overview");
    for (path, status) in [
        ("/api/stats/nope?site=shop", 404),
        ("/api/stats/overview", 400),
        ("/api/stats/overview?site=elsewhere", 400),
        ("/api/stats/overview?site=shop&from=2026-02-30", 400),
        (
            "/api/stats/overview?site=shop&from=2026-11-02&to=2026-11-01",
            400,
        ),
        ("/api/stats/top_pages?site=shop&limit=0", 400),
        ("/api/stats/top_pages?site=shop&limit=5000", 400),
        ("/api/stats/top_pages?site=shop'--", 400),
        (
            "/api/stats/top_pages?site=shop&from=2026-11-01%27%20OR%201=1",
            400,
        ),
    ] {
        let res = get(path, Some(TOKEN)).await.unwrap();
        assert_eq!(res.status(), status, "{path}");
        let body: Value = res.json().await.unwrap();
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    // Each answered query writes one audit record naming the query and its arguments.
    let before: u64 =
        c.db.query("SELECT count() FROM audit_log WHERE action = 'stats.query'")
            .fetch_one()
            .await
            .unwrap();
    let res = get(
        "/api/stats/top_pages?site=shop&from=2026-11-01&to=2026-11-10&limit=7",
        Some(TOKEN),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let audit_id = res.headers()["x-footfall-audit-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let (action, actor, detail): (String, String, String) =
        c.db.query("SELECT action, actor, detail FROM audit_log WHERE toString(audit_id) = ?")
            .bind(&audit_id)
            .fetch_one()
            .await
            .unwrap();
    assert_eq!(
        (action.as_str(), actor.as_str()),
        ("stats.query", "bootstrap")
    );
    let detail: Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(
        detail,
        json!({"query": "top_pages", "from": "2026-11-01", "to": "2026-11-10", "limit": 7, "rows": 0})
    );
    let after: u64 =
        c.db.query("SELECT count() FROM audit_log WHERE action = 'stats.query'")
            .fetch_one()
            .await
            .unwrap();
    assert_eq!(after, before + 1);

    // The dashboard page is a static shell, locked down to its own origin.
    let page = get("/dashboard", None).await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
    let html = page.text().await.unwrap();
    assert!(html.contains("/dashboard/app.js"));
    for (path, ty) in [
        ("/dashboard/app.js", "application/javascript"),
        ("/dashboard/app.css", "text/css"),
    ] {
        let res = get(path, None).await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(ty));
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_subject_leaves_no_trace_in_sessions_or_rollups() {
    let clock = Arc::new(ManualClock::new(DAY1 + 9 * HOUR));
    let mut c = collector("analytics_subject", clock.clone()).await;
    for (start, evs) in &day_one() {
        for e in evs {
            send(&c, &clock, *start, e).await;
        }
    }
    landed_and_rolled_up(&c, 12).await;
    let d1 = "2026-11-10";
    assert_eq!(stats(&c, "sessions_per_user", d1, d1).await.len(), 1);
    let admin = |action: &str, body: Value| {
        c.http
            .post(format!("{}/api/admin/subjects/{action}", c.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
    };
    // The export lists the user's two sessions, merged, beside their events.
    let export: Value = admin("export", json!({"site": "shop", "user_id": "u-1"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sessions = export["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "session_states")
        .expect("sessions in the export");
    assert_eq!(sessions["row_count"], 2, "{sessions}");
    let ids: Vec<&str> = sessions["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["s3", "s4"]);
    assert_eq!(sessions["rows"][1]["pageviews"], 2);
    assert_eq!(sessions["rows"][1]["entry_path"], "/");

    // Delete user u-1 (V3's two sessions): the events go, and so do its sessions and its share of
    // every rollup, at once (the rollup job does not need to run again).
    let res = admin("delete", json!({"site": "shop", "user_id": "u-1"}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let report: Value = res.json().await.unwrap();
    let tables = report["tables"].as_array().unwrap();
    assert!(
        tables.contains(&json!({"table": "events", "before": 3, "after": 0})),
        "{report}"
    );
    assert!(
        tables.contains(&json!({"table": "session_states", "before": 2, "after": 0})),
        "{report}"
    );
    assert!(stats(&c, "sessions_per_user", d1, d1).await.is_empty());
    // Left: V1's s1 (30 s, 3 pages), V2's s2 (12 s, bounce) and s6 (8 s, bounce).
    assert_eq!(
        stats(&c, "overview", d1, d1).await,
        vec![json!([2, 0, 3, 5, 1.67, 0.6667, 12, 2.7, 0.2222])]
    );
    assert_eq!(
        stats(&c, "top_pages", d1, d1).await,
        vec![
            json!(["/pricing", 2, 2]),
            json!(["/signup", 2, 2]),
            json!(["/", 1, 1])
        ]
    );
    assert_eq!(
        stats(&c, "navigation", d1, d1).await,
        vec![
            json!(["/", "/pricing", 1]),
            json!(["/pricing", "/signup", 1])
        ]
    );
    assert_eq!(
        stats(&c, "countries", d1, d1).await,
        vec![json!(["GB", 1]), json!(["KZ", 1])]
    );
    let sessions_left: u64 = c
        .db
        .query("SELECT count() FROM (SELECT session_id FROM session_states GROUP BY session_id)")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(sessions_left, 3);
    // Older versions of the day's summaries, which counted the user, are gone too.
    for table in footfall::rollup::SUMMARY_TABLES {
        let versions: u64 =
            c.db.query(&format!(
                "SELECT uniqExact(version) FROM {table} WHERE day = '2026-11-10'"
            ))
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(versions, 1, "{table}");
    }
    c.shutdown().await;
}
