//! Quote throughput: a flat rule (per output) and the steps × resolution table rule, each through the fast
//! path (`quote_amount`, no explanation) and the full path (`quote`, with explanation lines).
// A benchmark that cannot set up must fail loudly rather than report nothing.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use genroute_core::{ImageJobSpec, Job, ModelId, ModelRef, ProviderId};
use genroute_pricing::PriceBook;

fn target(p: &str, m: &str) -> ModelRef {
    ModelRef::new(
        ProviderId::new(p).expect("provider id"),
        ModelId::new(m).expect("model id"),
    )
}

fn bench(c: &mut Criterion) {
    let book = PriceBook::with_builtin().expect("builtin catalogs");
    let legacy = PriceBook::builtin_builder()
        .expect("builtin catalogs")
        .select_catalog(ProviderId::new("scenario").expect("id"), "legacy_usd")
        .build()
        .expect("legacy book");
    let job: Job = ImageJobSpec::new("a lighthouse at dusk")
        .size(1024, 1408)
        .steps(50)
        .count(2)
        .build()
        .expect("job")
        .into();
    let flat = target("replicate", "black-forest-labs/flux-1.1-pro");
    let table = target("scenario", "sdxl");
    let mut g = c.benchmark_group("quote");
    g.throughput(Throughput::Elements(1));
    g.bench_function("flat/quote_amount", |b| {
        b.iter(|| book.quote_amount(black_box(&flat), black_box(&job)))
    });
    g.bench_function("flat/quote_explained", |b| {
        b.iter(|| book.quote(black_box(&flat), black_box(&job)))
    });
    g.bench_function("table_usd/quote_amount", |b| {
        b.iter(|| legacy.quote_amount(black_box(&table), black_box(&job)))
    });
    g.bench_function("table_usd/quote_explained", |b| {
        b.iter(|| legacy.quote(black_box(&table), black_box(&job)))
    });
    g.bench_function("table_cu/quote_amount", |b| {
        b.iter(|| book.quote_amount(black_box(&table), black_box(&job)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
