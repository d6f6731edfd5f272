//! Beacon bytes to a validated struct.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use footfall::beacon;

mod common;

fn bench(c: &mut Criterion) {
    let body = common::realistic_beacon();
    println!("beacon bytes: {}", body.len());
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("beacon_to_validated", |b| {
        b.iter(|| beacon::parse(black_box(body.as_bytes())).map(|v| v.truncated.len()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
