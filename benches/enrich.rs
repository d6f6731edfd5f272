//! The whole enrichment of one event: client address, geo, provider, cached user agent, both hashes, flags, row.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use footfall::beacon;
use footfall::clock::SystemClock;
use footfall::enrich::consistency::HintHeaders;
use footfall::enrich::geo::MmdbFile;
use footfall::enrich::{Enricher, EnricherParts, RequestMeta};
use footfall::keys::Salts;
use footfall::metrics::Metrics;
use footfall::privacy::Groups;

mod common;
#[path = "../tests/support/mmdb.rs"]
mod mmdb;

/// An enricher over the given City and ISP databases, with its salts in `dir`.
fn enricher_over(dir: &Path, city: &Path, isp: &Path) -> Enricher {
    let (metrics, _registry) = Metrics::standalone();
    let clock = Arc::new(SystemClock);
    Enricher::new(EnricherParts {
        trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
        city: MmdbFile::open(Some(city)).unwrap(),
        provider: MmdbFile::open(Some(isp)).unwrap(),
        ua_cache_size: 1024,
        secret: b"bench-secret".to_vec(),
        salts: Arc::new(Salts::open(dir, clock.clone()).unwrap()),
        scrub_params: footfall::config::PrivacyConfig::default().scrub_params,
        clock,
        metrics,
    })
}

/// The enrichment steps alone and with the owned row built, for the request `meta_at(i)` gives
/// at iteration `i`, as `steps_cached_ua<suffix>` and `one_event_cached_ua<suffix>`.
fn bench_pair<'a>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    suffix: &str,
    enricher: &Enricher,
    validated: &beacon::Validated<'_>,
    meta_at: impl Fn(usize) -> RequestMeta<'a>,
) {
    let mut i = 0;
    g.bench_function(format!("steps_cached_ua{suffix}"), |b| {
        b.iter(|| {
            i += 1;
            let meta = meta_at(i);
            let ip = enricher.client_ip(black_box(&meta));
            enricher.analyse(black_box(&meta), ip, black_box(validated), Groups::all())
        })
    });
    g.bench_function(format!("one_event_cached_ua{suffix}"), |b| {
        b.iter(|| {
            i += 1;
            let meta = meta_at(i);
            let ip = enricher.client_ip(black_box(&meta));
            enricher.enrich(black_box(&meta), ip, black_box(validated), Groups::all())
        })
    });
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let enricher = enricher_over(
        dir.path(),
        &mmdb::city_db(dir.path()),
        &mmdb::isp_db(dir.path()),
    );
    let body = common::realistic_beacon();
    let validated = beacon::parse(body.as_bytes()).unwrap();
    let meta = RequestMeta {
        peer: "10.1.2.3".parse::<IpAddr>().unwrap(),
        forwarded_for: Some(mmdb::ALMATY.ip),
        real_ip: None,
        user_agent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36",
        hints: HintHeaders {
            sec_ch_ua: Some(r#""Chromium";v="156", "Google Chrome";v="156", "Not?A_Brand";v="24""#),
            sec_ch_ua_mobile: Some("?0"),
            sec_ch_ua_platform: Some("\"Windows\""),
            accept_language: Some("kk-KZ,kk;q=0.9,ru;q=0.8"),
        },
    };
    let row = enricher.enrich(&meta, enricher.client_ip(&meta), &validated, Groups::all());
    assert_eq!(row.country, "KZ", "the bench must exercise a geo hit");

    let mut g = c.benchmark_group("enrich");
    g.throughput(Throughput::Elements(1));
    bench_pair(&mut g, "", &enricher, &validated, |_| meta);

    // The same with databases as deep as real ones and client addresses as visits bring them:
    // ten events from each address in a row (a session of the load test), then a new one, out of
    // 200 000 scattered over what the databases cover. The geo cache (65 536 addresses) then
    // answers nine events in ten and the tenth walks two large trees from memory, as in a real
    // deployment, where two networks and one address would always be a cached hit.
    let (city, isp) = mmdb::wide_world(dir.path());
    let wide = enricher_over(dir.path(), &city, &isp);
    let addresses: Vec<String> = (0..200_000u32)
        .map(|i| {
            let h = i.wrapping_mul(2_654_435_761);
            let (lo, hi) = (
                *mmdb::WIDE_FIRST_OCTETS.start(),
                *mmdb::WIDE_FIRST_OCTETS.end(),
            );
            let first = u32::from(lo) + h % u32::from(hi - lo + 1);
            format!(
                "{first}.{}.{}.{}",
                (h >> 8) & 255,
                (h >> 16) & 255,
                1 + (h >> 24) % 254
            )
        })
        .collect();
    let at = |i: usize| RequestMeta {
        forwarded_for: Some(&addresses[(i / 10) % addresses.len()]),
        ..meta
    };
    let row = wide.enrich(&at(0), wide.client_ip(&at(0)), &validated, Groups::all());
    assert!(
        !row.country.is_empty() && row.asn != 0,
        "every address is a hit"
    );
    bench_pair(&mut g, "_wide_geoip", &wide, &validated, at);

    // Two steps alone, to see where an event's time goes: the consistency flags of this beacon
    // (a headless capture with a desktop user agent, so several flags hold) and the geo step
    // over the same stream of addresses as the wide benches (address cache, then the records).
    let agent = footfall::enrich::agent::AgentParser::new(16).parse(meta.user_agent);
    let device = validated.beacon.device.as_deref();
    g.bench_function("step_consistency_flags", |b| {
        b.iter(|| {
            footfall::enrich::consistency::server_flags(
                black_box(&agent),
                black_box(meta.hints),
                black_box(device),
            )
        })
    });
    let ips: Vec<IpAddr> = addresses.iter().map(|a| a.parse().unwrap()).collect();
    let geo = footfall::enrich::geo::Geo::new(
        MmdbFile::open(Some(&city)).unwrap(),
        MmdbFile::open(Some(&isp)).unwrap(),
        65_536,
    );
    let mut i = 0;
    g.bench_function("step_geo_wide_geoip", |b| {
        b.iter(|| {
            i += 1;
            geo.place(black_box(ips[(i / 10) % ips.len()]))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
