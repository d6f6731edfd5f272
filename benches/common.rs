//! Shared inputs for the benches: a realistic beacon captured from Chromium and generated GeoIP databases.

#![allow(dead_code)]

/// The same allocator as the `footfall` binary, so the numbers are the production ones.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The first captured pageview (with its full device block), padded to a realistic desktop
/// Chrome: more plugins and languages than headless reports, about 1.7 KiB of JSON.
pub fn realistic_beacon() -> String {
    let line = include_str!("../tests/fixtures/beacons.jsonl")
        .lines()
        .next()
        .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["device"]["langs"] = serde_json::json!(["kk-KZ", "kk", "ru-RU", "ru", "en-US", "en"]);
    v["device"]["fonts"]["list"] = serde_json::json!([
        "Arial",
        "Calibri",
        "Cambria",
        "Consolas",
        "Courier New",
        "Georgia",
        "Segoe UI",
        "Tahoma",
        "Times New Roman",
        "Verdana"
    ]);
    v["device"]["media"] = serde_json::json!({"ai": 1, "vi": 1, "ao": 2});
    v["title"] = serde_json::json!("Оплата услуг — платежи онлайн");
    v["url"] = serde_json::json!("https://pay.example.kz/services/mobile?utm_source=google&utm_medium=cpc&utm_campaign=winter");
    v["ref"] = serde_json::json!("https://www.google.com/");
    v.to_string()
}
