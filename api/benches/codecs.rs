//! Throughput of the ingest codecs: decoding remote write 1.0 and 2.0 requests of 2000 samples
//! (Prometheus's default `max_samples_per_send`) into a validated `WriteBatch`, and parsing OpenMetrics
//! backfill text shaped like node_exporter output. Reports samples per second.
//!
//! Run: `cargo bench -p strata-api --bench codecs` (add `-- --quick` for a short run).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata_api::openmetrics::{entries, Dialect};
use strata_api::remote::{
    decode_write, encode_write_v1, encode_write_v2, DecodeLimits, CONTENT_TYPE_V2,
};
use strata_store::{Labels, Sample, SeriesWrite, WriteBatch};

const SAMPLES_PER_REQUEST: usize = 2000;

/// One sample per series, as a Prometheus sender batches fresh scrapes.
fn node_like_batch() -> WriteBatch {
    let modes = [
        "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
    ];
    let series = (0..SAMPLES_PER_REQUEST)
        .map(|i| SeriesWrite {
            labels: Labels::from_pairs([
                ("__name__", "node_cpu_seconds_total".to_string()),
                ("cpu", (i / modes.len()).to_string()),
                ("instance", format!("node-{}.example.internal:9100", i % 50)),
                ("job", "node".to_string()),
                ("mode", modes[i % modes.len()].to_string()),
            ]),
            samples: vec![Sample::new(1_700_000_000_000 + i as i64, i as f64 * 1.5)],
            exemplars: vec![],
        })
        .collect();
    WriteBatch {
        series,
        metadata: vec![],
    }
}

fn remote_write(c: &mut Criterion) {
    let batch = node_like_batch();
    let limits = DecodeLimits::default();
    let v1 = encode_write_v1(&batch).expect("encode v1");
    let v2 = encode_write_v2(&batch).expect("encode v2");
    let mut group = c.benchmark_group("remote_write_decode");
    group.throughput(Throughput::Elements(SAMPLES_PER_REQUEST as u64));
    group.bench_function("v1_2000_samples", |b| {
        b.iter(|| {
            decode_write(
                black_box(&v1),
                Some("application/x-protobuf"),
                Some("snappy"),
                &limits,
            )
            .expect("v1")
        })
    });
    group.bench_function("v2_2000_samples", |b| {
        b.iter(|| {
            decode_write(
                black_box(&v2),
                Some(CONTENT_TYPE_V2),
                Some("snappy"),
                &limits,
            )
            .expect("v2")
        })
    });
    group.finish();
}

/// node_exporter-shaped OpenMetrics text with timestamps in seconds, as promtool backfills it.
fn backfill_text(samples: usize) -> String {
    let mut out =
        String::from("# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n");
    out.push_str("# TYPE node_cpu_seconds_total counter\n");
    let modes = [
        "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
    ];
    for i in 0..samples {
        out.push_str(&format!(
            "node_cpu_seconds_total{{cpu=\"{}\",instance=\"node-{}:9100\",job=\"node\",mode=\"{}\"}} {} {}.{:03}\n",
            i % 16,
            i % 50,
            modes[i % modes.len()],
            i as f64 * 0.25,
            1_700_000_000 + i / 800,
            i % 1000
        ));
    }
    out.push_str("# EOF\n");
    out
}

fn openmetrics(c: &mut Criterion) {
    const SAMPLES: usize = 100_000;
    let text = backfill_text(SAMPLES);
    let mut group = c.benchmark_group("openmetrics_parse");
    group.throughput(Throughput::Elements(SAMPLES as u64));
    group.bench_function("backfill_100k_samples", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for e in entries(black_box(&text), Dialect::OpenMetrics) {
                e.expect("valid text");
                n += 1;
            }
            n
        })
    });
    group.finish();
}

criterion_group!(benches, remote_write, openmetrics);
criterion_main!(benches);
