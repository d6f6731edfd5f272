//! The whole enrichment of one event: client address, geo, provider, cached user agent, both hashes, flags, row.

use std::net::IpAddr;
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

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (metrics, _registry) = Metrics::standalone();
    let clock = Arc::new(SystemClock);
    let enricher = Enricher::new(EnricherParts {
        trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
        city: MmdbFile::open(Some(&mmdb::city_db(dir.path()))).unwrap(),
        provider: MmdbFile::open(Some(&mmdb::isp_db(dir.path()))).unwrap(),
        ua_cache_size: 1024,
        secret: b"bench-secret".to_vec(),
        salts: Arc::new(Salts::open(dir.path(), clock.clone()).unwrap()),
        scrub_params: footfall::config::PrivacyConfig::default().scrub_params,
        clock,
        metrics,
    });
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
    g.bench_function("steps_cached_ua", |b| {
        b.iter(|| {
            let ip = enricher.client_ip(black_box(&meta));
            enricher.analyse(black_box(&meta), ip, black_box(&validated), Groups::all())
        })
    });
    g.bench_function("one_event_cached_ua", |b| {
        b.iter(|| {
            let ip = enricher.client_ip(black_box(&meta));
            enricher.enrich(black_box(&meta), ip, black_box(&validated), Groups::all())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
