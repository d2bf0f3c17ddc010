//! Dashboard-style PromQL range queries over the in-memory reader: `rate`, `sum by (…)`,
//! `histogram_quantile`, `topk` and a one-to-one binary operation, each over 1,000 series of 6 h at
//! 15 s (1.44 M samples) evaluated at a 1 m step. Throughput is input samples per second, so the
//! figures compare across query shapes and with Prometheus's engine on the same data.
//!
//! Run with `cargo bench -p strata-query --bench promql`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata_query::memory::MemoryReader;
use strata_query::{Engine, EngineOptions};
use strata_store::{Labels, Sample};

const SERIES: i64 = 1_000;
const SAMPLES_PER_SERIES: i64 = 1_440;
const SCRAPE_MS: i64 = 15_000;

fn corpus() -> MemoryReader {
    let reader = MemoryReader::new();
    for i in 0..SERIES {
        let labels = Labels::from_pairs([
            (
                "__name__",
                "http_request_duration_seconds_bucket".to_string(),
            ),
            ("job", format!("job{}", i % 10)),
            ("instance", format!("instance{i}")),
            (
                "le",
                ["0.1", "0.5", "1", "5", "+Inf"][(i % 5) as usize].to_string(),
            ),
        ]);
        let slope = (i % 7 + 1) as f64;
        reader.append(
            labels,
            (0..SAMPLES_PER_SERIES).map(|j| Sample::new(j * SCRAPE_MS, j as f64 * slope)),
        );
    }
    reader
}

fn range_queries(c: &mut Criterion) {
    let reader = corpus();
    let engine = Engine::new(EngineOptions::default());
    let end = SAMPLES_PER_SERIES * SCRAPE_MS;
    let mut group = c.benchmark_group("range_query_6h_1m_step");
    group.throughput(Throughput::Elements((SERIES * SAMPLES_PER_SERIES) as u64));
    group.sample_size(10);
    for query in [
        "rate(http_request_duration_seconds_bucket[5m])",
        "sum by (job) (rate(http_request_duration_seconds_bucket[5m]))",
        "histogram_quantile(0.9, sum by (job, le) (rate(http_request_duration_seconds_bucket[5m])))",
        "topk(5, rate(http_request_duration_seconds_bucket[5m]))",
        "http_request_duration_seconds_bucket / on(instance, le) http_request_duration_seconds_bucket",
    ] {
        group.bench_function(query, |b| {
            b.iter(|| engine.range_query(&reader, query, 0, end, 60_000).expect("query evaluates"));
        });
    }
    group.finish();
}

criterion_group!(benches, range_queries);
criterion_main!(benches);
