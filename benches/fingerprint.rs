//! Fingerprint hashing (the hot path): canonical encoding + keyed SHA-256, next to raw SHA-256 over as many bytes.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use footfall::beacon;
use footfall::enrich::fingerprint::FingerprintHasher;
use sha2::{Digest, Sha256};

mod common;

fn bench(c: &mut Criterion) {
    let body = common::realistic_beacon();
    let parsed = beacon::parse(body.as_bytes()).unwrap();
    let mut device = parsed.beacon.device.unwrap();
    // Pad to the ~1.5 KiB component set of a desktop browser with many plugins.
    device.plugins = (0..24)
        .map(|i| format!("Plugin number {i} with a realistic length name").into())
        .collect();
    let canonical = FingerprintHasher::canonical_bytes(&device);
    let hasher = FingerprintHasher::new(b"bench-secret-of-a-realistic-length-32b");
    println!("canonical component bytes: {}", canonical.len());

    let mut g = c.benchmark_group("fingerprint");
    g.throughput(Throughput::Bytes(canonical.len() as u64));
    g.bench_function("canonical_keyed_sha256", |b| {
        b.iter(|| hasher.fingerprint(black_box(&device)))
    });
    g.bench_function("keyed_sha256_of_encoded_bytes", |b| {
        b.iter(|| hasher.hash_bytes(black_box(&canonical)))
    });
    g.bench_function("raw_sha256_same_bytes", |b| {
        b.iter(|| Sha256::digest(black_box(&canonical)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
