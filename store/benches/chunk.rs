//! Sample codec throughput: Prometheus-compatible XOR chunks (head, 120 samples a chunk) against the
//! dense block encoding (480 samples, a 2 h block segment at 15 s), encode and decode, on three series
//! shapes: a counter scraped every 15 s with a few ms of jitter, a two-decimal gauge, and a constant.
//! Throughput is in samples (criterion's "elements"/s).
//!
//! Before the benchmarks it prints bytes/sample of XOR, dense, and dense + zstd level 3 on a synthetic
//! node_exporter-like block (the shapes and weights are in `node_exporter_like_block`), and decode
//! throughput per core measured in on-CPU time (`/proc/thread-self/schedstat`), which stays meaningful
//! on a machine shared with other work where criterion's wall-clock figures do not.
//!
//! Run: `cargo bench -p strata-store --bench chunk` (add `-- xor/decode` to filter, `-- none` for the
//! printed figures only).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput};
use strata_store::chunk::{
    decode_dense, decode_timestamps, decode_values, encode_dense, encode_timestamps, encode_values,
    XorEncoder, XorIter,
};

/// Deterministic SplitMix64, so figures are reproducible without a `rand` dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Scrape timestamps every 15 s; one in ten lands 1-3 ms off the grid, as Prometheus scrapes do.
fn scrape_times(rng: &mut Rng, n: usize) -> Vec<i64> {
    let start = 1_700_000_000_000i64;
    (0..n as i64)
        .map(|i| {
            let jitter = if rng.chance(10) {
                rng.below(7) as i64 - 3
            } else {
                0
            };
            start + i * 15_000 + jitter
        })
        .collect()
}

/// Values parsed from text, as remote write delivers them: `cents / 100` is the float nearest to the
/// decimal string.
fn two_decimals(cents: i64) -> f64 {
    cents as f64 / 100.0
}

fn counter(rng: &mut Rng, n: usize) -> Vec<f64> {
    let mut c = 1_000_000_000 + rng.below(1 << 30) as i64;
    (0..n)
        .map(|_| {
            c += 40_000 + rng.below(20_000) as i64;
            c as f64
        })
        .collect()
}

fn gauge_2dec(rng: &mut Rng, n: usize) -> Vec<f64> {
    let mut g = 5_000i64;
    (0..n)
        .map(|_| {
            g = (g + rng.below(41) as i64 - 20).max(0);
            two_decimals(g)
        })
        .collect()
}

fn shapes(n: usize) -> Vec<(&'static str, Vec<(i64, f64)>)> {
    let mut rng = Rng(42);
    let ts = scrape_times(&mut rng, n);
    let zip = |vs: Vec<f64>| ts.iter().copied().zip(vs).collect::<Vec<_>>();
    vec![
        ("counter_15s_jitter", zip(counter(&mut rng, n))),
        ("gauge_2_decimals", zip(gauge_2dec(&mut rng, n))),
        ("constant", zip(vec![1.0; n])),
    ]
}

fn xor_chunk(samples: &[(i64, f64)]) -> Vec<u8> {
    let mut enc = XorEncoder::new();
    for &(t, v) in samples {
        enc.append(t, v);
    }
    enc.into_bytes()
}

fn bench_xor(c: &mut Criterion) {
    let mut group = c.benchmark_group("xor");
    for (name, samples) in shapes(120) {
        group.throughput(Throughput::Elements(samples.len() as u64));
        group.bench_with_input(BenchmarkId::new("encode", name), &samples, |b, s| {
            b.iter(|| xor_chunk(black_box(s)))
        });
        let chunk = xor_chunk(&samples);
        group.bench_with_input(BenchmarkId::new("decode", name), &chunk, |b, chunk| {
            b.iter(|| {
                let mut acc = 0.0;
                let mut last_t = 0;
                for (t, v) in XorIter::new(black_box(chunk)) {
                    acc += v;
                    last_t = t;
                }
                (acc, last_t)
            })
        });
    }
    group.finish();
}

fn bench_dense(c: &mut Criterion) {
    let mut group = c.benchmark_group("dense");
    for (name, samples) in shapes(480) {
        group.throughput(Throughput::Elements(samples.len() as u64));
        group.bench_with_input(BenchmarkId::new("encode", name), &samples, |b, s| {
            b.iter(|| encode_dense(black_box(s)))
        });
        let bytes = encode_dense(&samples);
        let mut out = Vec::with_capacity(samples.len());
        group.bench_with_input(BenchmarkId::new("decode", name), &bytes, |b, bytes| {
            b.iter(|| {
                out.clear();
                decode_dense(black_box(bytes), &mut out).map(|()| out.len())
            })
        });
    }
    group.finish();
}

/// One series of the synthetic block.
struct Series {
    target: usize,
    values: Vec<f64>,
}

/// A 2 h block of node_exporter-like data: `targets` hosts × 500 series × 480 samples at 15 s. The mix
/// imitates node_exporter 1.x output: about a quarter constant (info metrics, sizes, limits), counters
/// that rarely move (errors, drops), byte and packet counters, CPU-seconds counters with two decimals,
/// page-sized memory gauges, two-decimal gauges (load, temperatures), and a few full-precision floats
/// (scrape durations, `node_time_seconds`). Synthetic: real node_exporter data would be the better
/// yardstick when a recorded corpus is available.
fn node_exporter_like_block(targets: usize) -> (Vec<Vec<i64>>, Vec<Series>) {
    const N: usize = 480;
    let mut rng = Rng(7);
    let mut times = Vec::new();
    let mut series = Vec::new();
    for target in 0..targets {
        let ts = scrape_times(&mut rng, N);
        for s in 0..500 {
            let kind = s % 100;
            let values: Vec<f64> = match kind {
                0..=24 => vec![[1.0, 0.0, 8.0, 4.0e9, 1.6e10][s % 5] * (1 + s % 7) as f64; N],
                25..=34 => {
                    let mut c = rng.below(5) as f64;
                    (0..N)
                        .map(|_| {
                            if rng.chance(1) {
                                c += 1.0;
                                c
                            } else {
                                c
                            }
                        })
                        .collect()
                }
                35..=59 => {
                    let rate = 1 + rng.below(if kind % 2 == 0 { 1_000_000 } else { 1_000 });
                    let mut c = rng.below(1 << 40);
                    (0..N)
                        .map(|_| {
                            c += rate / 2 + rng.below(rate);
                            c as f64
                        })
                        .collect()
                }
                60..=71 => {
                    // node_cpu_seconds_total: idle gains ~15 s a scrape, other modes little.
                    let per_scrape = if kind == 60 {
                        1_490
                    } else {
                        1 + rng.below(150)
                    };
                    let mut cents = rng.below(1 << 30) as i64;
                    (0..N)
                        .map(|_| {
                            cents += (per_scrape / 2 + rng.below(per_scrape)) as i64;
                            two_decimals(cents)
                        })
                        .collect()
                }
                72..=81 => {
                    let mut pages = 1_000_000 + rng.below(1_000_000) as i64;
                    (0..N)
                        .map(|_| {
                            pages += rng.below(201) as i64 - 100;
                            (pages * 4096) as f64
                        })
                        .collect()
                }
                82..=89 => gauge_2dec(&mut rng, N),
                // Durations as Go's `Duration.Seconds()` makes them: nanoseconds / 1e9.
                90..=94 => (0..N)
                    .map(|_| (1 + rng.below(5_000_000)) as f64 / 1e9)
                    .collect(),
                _ => ts
                    .iter()
                    .map(|&t| (t * 1_000 + rng.below(1_000) as i64) as f64 / 1e6)
                    .collect(),
            };
            series.push(Series { target, values });
        }
        times.push(ts);
    }
    (times, series)
}

fn print_bytes_per_sample() {
    let (times, series) = node_exporter_like_block(20);
    let samples: usize = series.iter().map(|s| s.values.len()).sum();

    let mut xor = Vec::new();
    let mut dense = Vec::new();
    let mut columns = Vec::new();
    for ts in &times {
        columns.extend_from_slice(&encode_timestamps(ts));
    }
    for s in &series {
        let ts = &times[s.target];
        let pairs: Vec<(i64, f64)> = ts.iter().copied().zip(s.values.iter().copied()).collect();
        for chunk in pairs.chunks(120) {
            xor.extend_from_slice(&xor_chunk(chunk));
        }
        dense.extend_from_slice(&encode_dense(&pairs));
        let values = encode_values(&s.values);
        let mut check = Vec::new();
        if decode_values(&values, &mut check).is_err() || check.len() != s.values.len() {
            panic!("value column does not round-trip");
        }
        columns.extend_from_slice(&values);
    }
    let zstd3 = |b: &[u8]| {
        zstd::bulk::compress(b, 3)
            .map(|c| c.len())
            .unwrap_or(usize::MAX)
    };
    let per = |bytes: usize| bytes as f64 / samples as f64;
    println!(
        "bytes/sample on {} series x 480 samples ({samples} samples), synthetic node_exporter mix:",
        series.len()
    );
    println!(
        "  XOR chunks (120 samples, Prometheus format)      {:.3}",
        per(xor.len())
    );
    println!(
        "  XOR chunks + zstd 3                              {:.3}",
        per(zstd3(&xor))
    );
    println!(
        "  dense chunks (480 samples, own timestamps)       {:.3}",
        per(dense.len())
    );
    println!(
        "  dense chunks + zstd 3                            {:.3}",
        per(zstd3(&dense))
    );
    println!(
        "  dense, timestamps shared per target              {:.3}",
        per(columns.len())
    );
    println!(
        "  dense, timestamps shared per target + zstd 3     {:.3}",
        per(zstd3(&columns))
    );
}

/// Nanoseconds this thread has spent on a CPU, or `None` where the kernel does not say.
fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// Samples per on-CPU second of `f` (which handles `samples` samples): the best of 20 slices of
/// 25 ms, because a sibling hyperthread busy with other work slows some slices down.
fn per_cpu_second(samples: usize, mut f: impl FnMut() -> usize) -> Option<f64> {
    let mut best = 0f64;
    let mut sink = 0usize;
    for _ in 0..20 {
        let start = thread_cpu_ns()?;
        let mut done = 0usize;
        loop {
            for _ in 0..100 {
                sink = sink.wrapping_add(f());
            }
            done += 100 * samples;
            let spent = thread_cpu_ns()? - start;
            if spent > 25_000_000 {
                best = best.max(done as f64 / (spent as f64 / 1e9));
                break;
            }
        }
    }
    black_box(sink);
    Some(best)
}

fn print_decode_per_core() {
    println!("decode throughput per core (on-CPU time, best of 20 slices), M samples/s:");
    for (name, samples) in shapes(120) {
        let chunk = xor_chunk(&samples);
        let xor = per_cpu_second(samples.len(), || {
            let mut acc = 0.0;
            let mut n = 0;
            for (t, v) in XorIter::new(black_box(&chunk)) {
                acc += v;
                n += t as usize;
            }
            n.wrapping_add(acc as usize)
        });
        let long: Vec<(i64, f64)> = shapes(480)
            .into_iter()
            .find(|s| s.0 == name)
            .map(|s| s.1)
            .unwrap_or_default();
        let dense = encode_dense(&long);
        let mut out = Vec::with_capacity(long.len());
        let dense = per_cpu_second(long.len(), || {
            out.clear();
            decode_dense(black_box(&dense), &mut out).map_or(0, |()| out.len())
        });
        let m = |x: Option<f64>| x.map_or("n/a".to_string(), |x| format!("{:.1}", x / 1e6));
        println!("  {name:<20} XOR {:>7}   dense {:>7}", m(xor), m(dense));
    }
}

/// Decode throughput over a whole node_exporter-like block (4 targets × 500 series × 480 samples): XOR
/// chunks of 120 samples as the head holds them, and the block's columns (one shared timestamp column
/// per target, a value column per series) as queries over persisted data read them.
fn print_decode_block_mix() {
    let (times, series) = node_exporter_like_block(4);
    let samples: usize = series.iter().map(|s| s.values.len()).sum();
    let chunks: Vec<Vec<u8>> = series
        .iter()
        .flat_map(|s| {
            let pairs: Vec<(i64, f64)> = times[s.target]
                .iter()
                .copied()
                .zip(s.values.iter().copied())
                .collect();
            pairs.chunks(120).map(xor_chunk).collect::<Vec<_>>()
        })
        .collect();
    let xor = per_cpu_second(samples, || {
        let mut n = 0usize;
        for c in &chunks {
            for (t, v) in XorIter::new(black_box(c)) {
                n = n.wrapping_add(t as usize ^ v.to_bits() as usize);
            }
        }
        n
    });
    let ts_cols: Vec<Vec<u8>> = times.iter().map(|t| encode_timestamps(t)).collect();
    let val_cols: Vec<(usize, Vec<u8>)> = series
        .iter()
        .map(|s| (s.target, encode_values(&s.values)))
        .collect();
    let (mut ts, mut vs) = (Vec::new(), Vec::new());
    let columns = per_cpu_second(samples, || {
        let mut n = 0usize;
        for (target, col) in &val_cols {
            ts.clear();
            vs.clear();
            let ok = decode_timestamps(black_box(&ts_cols[*target]), &mut ts).is_ok()
                && decode_values(black_box(col), &mut vs).is_ok();
            n = n.wrapping_add(usize::from(ok) + ts.len() + vs.len());
        }
        n
    });
    let m = |x: Option<f64>| x.map_or("n/a".to_string(), |x| format!("{:.1}", x / 1e6));
    println!(
        "  node_exporter-like block ({samples} samples): XOR {:>7}   block columns {:>7}",
        m(xor),
        m(columns)
    );
}

fn main() {
    print_bytes_per_sample();
    print_decode_per_core();
    print_decode_block_mix();
    let mut c = Criterion::default().configure_from_args();
    bench_xor(&mut c);
    bench_dense(&mut c);
    c.final_summary();
}
