//! Several instances, one visitor id: the daily salts shared through ClickHouse.

use std::sync::Arc;
use std::time::Duration;

use footfall::clock::{ManualClock, SystemClock};
use footfall::config::SaltStore;
use footfall::keys::Salts;
use footfall::metrics::Metrics;
use footfall::schema::{Layout, Tables};
use footfall::shared_salts::{iso_day, SharedSalts};
use serde_json::json;

use crate::harness::{db_name, server_client, test_config, TestCollector};

const DAY: i64 = 86_400_000;

fn pageview(sid: &str) -> String {
    json!({
        "v": 1, "site": "demo", "kind": "pageview", "url": "http://localhost:3000/pricing",
        "sid": sid, "seq": 1, "consent": "granted",
        "device": {
            "tz": "Asia/Almaty", "tzo": 300, "langs": ["kk-KZ", "ru-RU"],
            "screen": {"w": 1920, "h": 1080, "aw": 1920, "ah": 1040, "cd": 24, "dpr": 1.25},
            "platform": "Linux x86_64", "cores": 8, "mem": 8,
            "canvas": {"h": "9f2c11aa00bb33cc", "stable": true},
            "webgl": {"vendor": "Google Inc. (Intel)", "renderer": "ANGLE (Intel)", "h": "ab12cd34ef560789"},
            "fonts": {"h": "77aa88bb99cc00dd", "n": 23},
            "media": {"ai": 1, "vi": 1, "ao": 2}
        }
    })
    .to_string()
}

async fn instance(db: &str, store: SaltStore) -> TestCollector {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(db, dir.path());
    config.secret = Some("one secret for every instance".into());
    config.salts.store = store;
    TestCollector::start_config(config, dir, Arc::new(SystemClock)).await
}

async fn migrated(test: &str) -> (String, clickhouse::Client) {
    let db = db_name(test);
    footfall::schema::migrate(&server_client(), &db, &Layout::Single)
        .await
        .unwrap();
    let client = server_client().with_database(&db);
    (db, client)
}

fn shared(
    db: &clickhouse::Client,
    name: &str,
    salts: Arc<Salts>,
    clock: Arc<ManualClock>,
) -> SharedSalts {
    let mut registry = prometheus_client::registry::Registry::default();
    SharedSalts::new(
        db.clone(),
        Tables::single(name),
        salts,
        clock,
        Metrics::new(&mut registry),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_give_one_visitor_the_same_ids_and_count_each_event_once() {
    let db = db_name("salts_two_instances");
    let mut a = instance(&db, SaltStore::Clickhouse).await;
    let mut b = instance(&db, SaltStore::Clickhouse).await;
    // An instance keeping its own salt is the control: same input, another visitor id.
    let mut own = instance(&db, SaltStore::Local).await;

    for (c, sid) in [(&a, "s-a"), (&b, "s-b"), (&own, "s-own")] {
        let res = c
            .post(&pageview(sid), "http://localhost:3000", "203.0.113.9")
            .await;
        assert_eq!(res.status(), 202);
    }
    let rows = a.rows(3).await;
    let by_sid = |sid: &str| rows.iter().find(|r| r.session_id == sid).unwrap();
    let (ra, rb, rown) = (by_sid("s-a"), by_sid("s-b"), by_sid("s-own"));
    assert_eq!(
        ra.visitor_id, rb.visitor_id,
        "one visitor id on both instances"
    );
    assert_ne!(
        ra.visitor_id, rown.visitor_id,
        "a salt of its own gives another id"
    );
    assert_ne!(ra.fingerprint_id, [0; 16]);
    assert_eq!(
        ra.fingerprint_id, rb.fingerprint_id,
        "one fingerprint id (one secret)"
    );
    assert_eq!(ra.fingerprint_id, rown.fingerprint_id);

    // The second instance used the first one's offer rather than making its own.
    let offers: Vec<(String, u64)> =
        a.db.query("SELECT toString(day), count() FROM salts GROUP BY day ORDER BY day")
            .fetch_all()
            .await
            .unwrap();
    let today = footfall::clock::day_number(footfall::clock::Clock::now_ms(&SystemClock));
    assert_eq!(
        offers,
        vec![(iso_day(today), 1), (iso_day(today + 1), 1)],
        "one offer for today and one for tomorrow"
    );
    let shared: i64 = metric(&b, "footfall_salt_shared").await;
    assert_eq!(shared, 1);

    for c in [&mut a, &mut b, &mut own] {
        c.shutdown().await;
    }
}

async fn metric(c: &TestCollector, name: &str) -> i64 {
    let text = c.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_agree_on_one_salt() {
    let (name, db) = migrated("salts_race").await;
    let clock = Arc::new(ManualClock::new(20_000 * DAY + 5 * 3_600_000));
    let mut instances = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..4 {
        let dir = tempfile::tempdir().unwrap();
        let salts = Arc::new(Salts::open(dir.path(), clock.clone()).unwrap());
        dirs.push(dir);
        instances.push((salts.clone(), shared(&db, &name, salts, clock.clone())));
    }
    let before: Vec<_> = instances.iter().map(|(s, _)| s.current().0).collect();
    assert!(
        before.windows(2).all(|w| w[0] != w[1]),
        "each starts with its own"
    );
    // All offer at once. An offer whose INSERT is still in flight when another instance reads
    // can be missed by that read (a slow server); the next periodic sync then adopts the
    // earliest offer, so after one more round every instance holds the same salt, for good.
    let syncs = instances
        .iter()
        .map(|(_, s)| s.sync(Duration::from_millis(300)));
    for r in futures_util::future::join_all(syncs).await {
        r.unwrap();
    }
    for (_, s) in &instances {
        s.sync(Duration::ZERO).await.unwrap();
    }
    let after: Vec<_> = instances.iter().map(|(s, _)| s.current().0).collect();
    assert!(after.windows(2).all(|w| w[0] == w[1]), "all use one salt");
    let offers: u64 = db
        .query("SELECT count() FROM salts WHERE day = toDate(?)")
        .bind(iso_day(20_000))
        .fetch_one()
        .await
        .unwrap();
    assert!((1..=4).contains(&offers), "{offers} offers for the day");
    for (_, s) in &instances {
        let r = s.sync(Duration::ZERO).await.unwrap();
        assert!(r.adopted.is_empty(), "stable: {r:?}");
    }
    drop(dirs);
}

async fn stored_days(db: &clickhouse::Client) -> Vec<String> {
    db.query("SELECT DISTINCT toString(day) FROM salts ORDER BY day")
        .fetch_all()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn midnight_switches_to_the_salt_agreed_the_day_before_and_old_salts_are_destroyed() {
    let (name, db) = migrated("salts_midnight").await;
    let clock = Arc::new(ManualClock::new(20_000 * DAY + 23 * 3_600_000));
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let salts_a = Arc::new(Salts::open(dir_a.path(), clock.clone()).unwrap());
    let salts_b = Arc::new(Salts::open(dir_b.path(), clock.clone()).unwrap());
    let (a, b) = (
        shared(&db, &name, salts_a.clone(), clock.clone()),
        shared(&db, &name, salts_b.clone(), clock.clone()),
    );
    // Salts of long-gone days, as a crashed instance could have left them.
    for day in [19_990, 19_998] {
        db.query(
            "INSERT INTO salts (day, salt, created_ms, instance) VALUES (toDate(?), ?, 1, 'old')",
        )
        .bind(iso_day(day))
        .bind("00".repeat(32))
        .execute()
        .await
        .unwrap();
    }
    a.sync(Duration::ZERO).await.unwrap();
    let report = b.sync(Duration::ZERO).await.unwrap();
    assert!(report.offered.is_empty(), "b found a's offers: {report:?}");

    // ClickHouse is not needed at midnight: tomorrow's salt was agreed a day ahead.
    let yesterday = salts_a.current().0;
    clock.advance(2 * 3_600_000);
    let (ta, ya) = salts_a.current();
    let (tb, yb) = salts_b.current();
    assert_eq!(ta.day, 20_001);
    assert_eq!(ta, tb, "both switched to the agreed salt");
    assert_eq!((ya, yb), (Some(yesterday), Some(yesterday)));

    let days = stored_days(&db).await;
    assert_eq!(
        days,
        vec![iso_day(20_000), iso_day(20_001)],
        "expired salts dropped"
    );

    // The day after, yesterday's salt is still there for visits across midnight, and the day
    // before it is gone.
    a.sync(Duration::ZERO).await.unwrap();
    let days = stored_days(&db).await;
    assert_eq!(
        days,
        vec![iso_day(20_000), iso_day(20_001), iso_day(20_002)]
    );
    clock.advance(DAY);
    a.sync(Duration::ZERO).await.unwrap();
    let days = stored_days(&db).await;
    assert_eq!(
        days,
        vec![iso_day(20_001), iso_day(20_002), iso_day(20_003)]
    );
    let file = std::fs::read_to_string(dir_a.path().join(footfall::keys::SALTS_FILE)).unwrap();
    assert!(
        !file.contains(&hex::encode(yesterday.salt)),
        "and from the data directory"
    );
}
