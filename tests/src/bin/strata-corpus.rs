//! `strata-corpus`: deterministic metrics benchmark corpus built from real node_exporter scrapes.
//!
//! Reads a directory of real scrapes (`NNNN.prom`, written by `tests/bench/scrape-node-exporter.sh`)
//! and replays them across many simulated targets (`instance` label) at a fixed scrape interval:
//! counters advance by the real observed deltas (scaled per target and jittered per scrape, rounded
//! to the resolution the real series has), gauges follow the real values with a small per-target
//! factor at the same resolution, clocks follow the simulated time. Timestamps are what Prometheus
//! writes: aligned to the interval with a per-target offset, mostly exact (Prometheus snaps scrapes
//! within 2 ms), `--jitter-pct` of them 3..`--jitter-max-ms` ms late, `--late-per-mille` of them
//! 0.2–2.5 s late. Same inputs and seed, same output.
//!
//! Outputs (any subset):
//! - `--openmetrics FILE`: OpenMetrics text (timestamps in seconds, `# EOF`) for
//!   `promtool tsdb create-blocks-from openmetrics FILE DIR`;
//! - `--requests FILE`: pre-encoded remote-write 1.0 requests (snappy `WriteRequest`), grouped as
//!   Prometheus's queue manager sends them (series ref modulo shards, one sample per `TimeSeries`,
//!   at most `--batch` samples per request, flushed after 5 s of simulated time), for `strata-rw-load`;
//! - `--summary FILE`: JSON with the counts (series, samples, requests, time range).
//!
//! Request file layout (little endian): header `b"STRATARW"`, u32 version (1), u32 shard count;
//! then records of u32 body length, u32 shard, u32 sample count, body.
//!
//! Run:
//! ```text
//! cargo run --release -p strata-tests --bin strata-corpus -- --scrapes DIR --instances 100 \
//!     --steps 480 --seed 1 --openmetrics corpus.om --requests corpus.rw --summary corpus.json
//! ```

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use strata_store::{Label, Labels, Sample, SeriesWrite, WriteBatch};

const USAGE: &str = "usage: strata-corpus --scrapes DIR [--instances 100] [--steps 480] [--interval-ms 15000] \
[--start-ms 1767225600000] [--seed 1] [--shards 8] [--batch 2000] [--jitter-pct 7.5] [--jitter-max-ms 12] \
[--late-per-mille 2] [--openmetrics FILE] [--requests FILE] [--summary FILE]";

struct Args {
    scrapes: PathBuf,
    instances: usize,
    steps: usize,
    interval_ms: i64,
    start_ms: i64,
    seed: u64,
    shards: usize,
    batch: usize,
    jitter_pct: f64,
    jitter_max_ms: i64,
    late_per_mille: f64,
    openmetrics: Option<PathBuf>,
    requests: Option<PathBuf>,
    summary: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        scrapes: PathBuf::new(),
        instances: 100,
        steps: 480,
        interval_ms: 15_000,
        // 2026-01-01T00:00:00Z: aligned to 2 h blocks.
        start_ms: 1_767_225_600_000,
        seed: 1,
        shards: 8,
        batch: 2000,
        // Measured with tests/bench/measure-scrape-jitter.sh on a loaded 2-vCPU VM: 85% of gaps
        // between Prometheus 2.42 samples were exactly the interval, the rest 3–11 ms off (in pairs).
        jitter_pct: 7.5,
        jitter_max_ms: 12,
        late_per_mille: 2.0,
        openmetrics: None,
        requests: None,
        summary: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let val = it
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        let num = |v: &str| {
            v.parse::<i64>()
                .with_context(|| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "--scrapes" => a.scrapes = val.into(),
            "--instances" => a.instances = num(&val)? as usize,
            "--steps" => a.steps = num(&val)? as usize,
            "--interval-ms" => a.interval_ms = num(&val)?,
            "--start-ms" => a.start_ms = num(&val)?,
            "--seed" => a.seed = num(&val)? as u64,
            "--shards" => a.shards = num(&val)? as usize,
            "--batch" => a.batch = num(&val)? as usize,
            "--jitter-pct" => {
                a.jitter_pct = val.parse().with_context(|| format!("{flag}: {val}"))?
            }
            "--jitter-max-ms" => a.jitter_max_ms = num(&val)?.max(3),
            "--late-per-mille" => {
                a.late_per_mille = val.parse().with_context(|| format!("{flag}: {val}"))?
            }
            "--openmetrics" => a.openmetrics = Some(val.into()),
            "--requests" => a.requests = Some(val.into()),
            "--summary" => a.summary = Some(val.into()),
            _ => bail!("unknown flag {flag}\n{USAGE}"),
        }
    }
    if a.scrapes.as_os_str().is_empty() {
        bail!("--scrapes is required\n{USAGE}");
    }
    if a.instances == 0 || a.instances > 65_025 || a.steps == 0 || a.shards == 0 || a.batch == 0 {
        bail!("--instances must be 1..=65025; --steps, --shards, --batch must be positive");
    }
    if a.interval_ms < 5_000 {
        bail!("--interval-ms must be at least 5000");
    }
    Ok(a)
}

/// SplitMix64: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

fn mix(a: u64, b: u64) -> u64 {
    Rng::new(a ^ b.wrapping_mul(0xA24B_AED4_963E_E407)).next_u64()
}

// ---------------------------------------------------------------------------------------------
// Parsing real scrapes (Prometheus text exposition format 0.0.4, as node_exporter serves it).

struct Scrape {
    time_ms: i64,
    /// Series key (name + label text as served) → value.
    values: HashMap<String, f64>,
    /// Series keys in exposition order, with parsed labels.
    order: Vec<(String, Vec<(String, String)>)>,
    types: HashMap<String, String>,
}

fn parse_labels(s: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i] == b' ') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let eq = s[i..].find('=').context("label without '='")? + i;
        let name = s[i..eq].trim().to_string();
        i = eq + 1;
        if b.get(i) != Some(&b'"') {
            bail!("label value not quoted in {s}");
        }
        i += 1;
        let mut val = String::new();
        loop {
            let c = *b.get(i).context("unterminated label value")?;
            match c {
                b'\\' => {
                    let e = *b.get(i + 1).context("dangling escape")?;
                    val.push(match e {
                        b'n' => '\n',
                        b'\\' => '\\',
                        b'"' => '"',
                        other => other as char,
                    });
                    i += 2;
                }
                b'"' => {
                    i += 1;
                    break;
                }
                _ => {
                    // Copy one UTF-8 character.
                    let ch = s[i..].chars().next().context("bad utf-8")?;
                    val.push(ch);
                    i += ch.len_utf8();
                }
            }
        }
        out.push((name, val));
    }
    Ok(out)
}

fn parse_value(s: &str) -> Result<f64> {
    Ok(match s {
        "NaN" => f64::NAN,
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s.parse::<f64>().with_context(|| format!("bad value {s}"))?,
    })
}

/// Exponent of the last significant decimal digit of a value as written (`12.34` → -2,
/// `7.2706e-05` → -9, `1.5e+09` → 8, `0` → none).
fn decimal_quantum(s: &str) -> Option<i32> {
    let s = s.trim_start_matches(['+', '-']);
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(p) => (&s[..p], s[p + 1..].parse::<i32>().ok()?),
        None => (s, 0),
    };
    if !mant.bytes().all(|c| c.is_ascii_digit() || c == b'.')
        || !mant.bytes().any(|c| c != b'0' && c != b'.')
    {
        return None;
    }
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    let frac = frac.trim_end_matches('0');
    if !frac.is_empty() {
        return Some(exp - frac.len() as i32);
    }
    let tz = int.len() - int.trim_end_matches('0').len();
    Some(exp + tz as i32)
}

fn read_scrape(path: &Path) -> Result<(Scrape, HashMap<String, i32>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut sc = Scrape {
        time_ms: 0,
        values: HashMap::new(),
        order: Vec::new(),
        types: HashMap::new(),
    };
    let mut quanta = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# strata-scrape-time-ms ") {
            sc.time_ms = rest.trim().parse()?;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut p = rest.split_whitespace();
            if let (Some(n), Some(t)) = (p.next(), p.next()) {
                sc.types.insert(n.to_string(), t.to_string());
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (key, rest) = match line.find('{') {
            Some(_) => {
                // The closing brace is the last '}' before the value.
                let close = line.rfind('}').context("unbalanced braces")?;
                (&line[..=close], line[close + 1..].trim())
            }
            None => {
                let sp = line.find(' ').context("sample without value")?;
                (&line[..sp], line[sp + 1..].trim())
            }
        };
        let vtext = rest
            .split_whitespace()
            .next()
            .context("sample without value")?;
        let value = parse_value(vtext)?;
        let (name, labels) = match key.find('{') {
            Some(open) => (&key[..open], parse_labels(&key[open + 1..key.len() - 1])?),
            None => (key, Vec::new()),
        };
        let mut all = vec![("__name__".to_string(), name.to_string())];
        all.extend(labels);
        if let Some(q) = decimal_quantum(vtext) {
            quanta.insert(key.to_string(), q);
        }
        if sc.values.insert(key.to_string(), value).is_none() {
            sc.order.push((key.to_string(), all));
        }
    }
    if sc.time_ms == 0 {
        bail!("{}: no `# strata-scrape-time-ms` line", path.display());
    }
    Ok((sc, quanta))
}

// ---------------------------------------------------------------------------------------------
// Series model.

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    /// Monotonic: advances by real observed deltas.
    Counter,
    /// Varying gauge: follows the real values times a per-target factor.
    Gauge,
    /// Constant, kept verbatim (flags, info metrics, small configuration values).
    Verbatim,
    /// Constant large value (sizes, totals): a per-target value, constant in time.
    ConstScaled,
    /// Constant timestamp (boot time, start time): shifted per target by whole seconds.
    ConstTime,
    /// A clock (`node_time_seconds`): the sample time plus the observed offset.
    Clock,
}

struct Series {
    labels: Vec<(String, String)>,
    /// Base name used to share a jitter between the buckets/sum/count of one family.
    family: String,
    kind: Kind,
    /// Values are multiples of this (a power of ten, or of two for integers); 0 = no rounding.
    quantum: f64,
    /// One value per real scrape.
    values: Vec<f64>,
    /// Counter deltas over windows of about one simulated interval.
    windows: Vec<f64>,
    /// For clocks and constant timestamps: value minus scrape time in seconds.
    clock_offset: f64,
}

fn quantize(v: f64, q: f64) -> f64 {
    if q == 0.0 || !v.is_finite() {
        return v;
    }
    if q < 1.0 {
        let p = (1.0 / q).round();
        let u = (v * p).round();
        if u.abs() >= 9.0e15 {
            return v;
        }
        u / p
    } else {
        let u = (v / q).round();
        if u.abs() >= 9.0e15 {
            return v;
        }
        u * q
    }
}

fn family_base(name: &str) -> String {
    for suf in ["_bucket", "_count", "_sum", "_total"] {
        if let Some(b) = name.strip_suffix(suf) {
            return b.to_string();
        }
    }
    name.to_string()
}

fn build_series(
    scrapes: &[Scrape],
    quanta: &[HashMap<String, i32>],
    interval_ms: i64,
) -> Vec<Series> {
    let first = &scrapes[0];
    let n = scrapes.len();
    let mean_gap_ms = if n > 1 {
        (scrapes[n - 1].time_ms - scrapes[0].time_ms) as f64 / (n - 1) as f64
    } else {
        interval_ms as f64
    };
    // Each window spans `m` real scrape gaps, about one simulated interval.
    let m =
        ((interval_ms as f64 / mean_gap_ms).round() as usize).clamp(1, n.saturating_sub(1).max(1));
    let mut types: HashMap<&str, &str> = HashMap::new();
    for s in scrapes {
        for (k, v) in &s.types {
            types.insert(k, v);
        }
    }
    let mut out = Vec::new();
    for (key, labels) in &first.order {
        let name = labels[0].1.as_str();
        let base = family_base(name);
        let typ = types
            .get(name)
            .copied()
            .or_else(|| types.get(base.as_str()).copied())
            .unwrap_or("untyped");
        let cumulative = typ == "counter"
            || ((typ == "histogram" || typ == "summary")
                && (name.ends_with("_sum")
                    || name.ends_with("_count")
                    || name.ends_with("_bucket")));
        let mut values = Vec::with_capacity(n);
        let mut last = first.values[key];
        for s in scrapes {
            if let Some(v) = s.values.get(key) {
                last = *v;
            }
            values.push(last);
        }
        let finest = quanta.iter().filter_map(|q| q.get(key)).min().copied();
        let all_int = values.iter().all(|v| v.fract() == 0.0);
        let mut quantum = match finest {
            Some(e) if e >= -15 => 10f64.powi(e),
            _ => 0.0,
        };
        if all_int {
            // Integers that are all multiples of a power of two (pages, sectors, kB) keep it.
            let mut p2 = 1.0f64;
            while p2 < 1_048_576.0
                && values.iter().any(|v| *v != 0.0)
                && values.iter().all(|v| (v / (p2 * 2.0)).fract() == 0.0)
            {
                p2 *= 2.0;
            }
            quantum = p2;
        }
        let varying = values.iter().any(|v| v.to_bits() != values[0].to_bits());
        // Unix timestamps in seconds (boot time, start time, last GC, the clock itself).
        let near_now =
            |j: usize| (values[j] - scrapes[j].time_ms as f64 / 1000.0).abs() < 366.0 * 86400.0;
        let timelike = name.contains("time") && name.ends_with("seconds") && (0..n).any(near_now);
        let clock_offset = (0..n)
            .filter(|&j| near_now(j))
            .map(|j| values[j] - scrapes[j].time_ms as f64 / 1000.0)
            .next_back()
            .unwrap_or(0.0);
        let kind = if cumulative {
            Kind::Counter
        } else if timelike && varying {
            Kind::Clock
        } else if !varying {
            let v = values[0];
            if timelike {
                Kind::ConstTime
            } else if !v.is_finite() || v.abs() <= 1e4 {
                Kind::Verbatim
            } else {
                Kind::ConstScaled
            }
        } else {
            Kind::Gauge
        };
        let mut windows = Vec::new();
        if kind == Kind::Counter {
            for j in 0..n.saturating_sub(m) {
                let dt = (scrapes[j + m].time_ms - scrapes[j].time_ms).max(1) as f64;
                let d = (values[j + m] - values[j]).max(0.0) * interval_ms as f64 / dt;
                windows.push(d);
            }
            if windows.is_empty() {
                windows.push(0.0);
            }
        }
        out.push(Series {
            labels: labels.clone(),
            family: base,
            kind,
            quantum,
            clock_offset,
            values,
            windows,
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Per-target simulation.

struct Target {
    instance: String,
    offset_ms: i64,
    phase: usize,
    load: f64,
    boot_shift_s: f64,
}

fn format_value(v: f64, out: &mut String) {
    use std::fmt::Write as _;
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v}");
    }
}

fn escape_label_value(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
}

struct RequestWriter {
    out: BufWriter<File>,
    shards: Vec<Vec<(u32, Sample)>>,
    batch: usize,
    requests: u64,
    bytes: u64,
    samples: u64,
}

impl RequestWriter {
    fn flush_shard(&mut self, shard: usize, labels: &[Labels]) -> Result<()> {
        let pending = std::mem::take(&mut self.shards[shard]);
        if pending.is_empty() {
            return Ok(());
        }
        let batch = WriteBatch {
            series: pending
                .iter()
                .map(|(id, s)| SeriesWrite {
                    labels: labels[*id as usize].clone(),
                    samples: vec![*s],
                    exemplars: vec![],
                })
                .collect(),
            metadata: Vec::new(),
        };
        let body = encode_request(&batch)?;
        self.out.write_all(&(body.len() as u32).to_le_bytes())?;
        self.out.write_all(&(shard as u32).to_le_bytes())?;
        self.out.write_all(&(pending.len() as u32).to_le_bytes())?;
        self.out.write_all(&body)?;
        self.requests += 1;
        self.bytes += body.len() as u64 + 12;
        self.samples += pending.len() as u64;
        Ok(())
    }
}

fn encode_request(batch: &WriteBatch) -> Result<Vec<u8>> {
    strata_api::remote::encode_write_v1(batch)
        .map_err(|e| anyhow::anyhow!("encoding a write request: {e}"))
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let started = std::time::Instant::now();

    // Real scrapes, in file-name order.
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.scrapes)
        .with_context(|| format!("reading {}", args.scrapes.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "prom"))
        .collect();
    files.sort();
    if files.len() < 2 {
        bail!("need at least 2 scrapes in {}", args.scrapes.display());
    }
    let mut scrapes = Vec::new();
    let mut quanta = Vec::new();
    for f in &files {
        let (s, q) = read_scrape(f)?;
        scrapes.push(s);
        quanta.push(q);
    }
    let series = build_series(&scrapes, &quanta, args.interval_ms);
    let per_target = series.len();
    let total_series = per_target * args.instances;
    eprintln!(
        "{} real scrapes, {} series each: {} counters, {} gauges, {} constant, {} clocks; {} targets → {} series",
        scrapes.len(),
        per_target,
        series.iter().filter(|s| s.kind == Kind::Counter).count(),
        series.iter().filter(|s| s.kind == Kind::Gauge).count(),
        series
            .iter()
            .filter(|s| matches!(s.kind, Kind::Verbatim | Kind::ConstScaled | Kind::ConstTime))
            .count(),
        series.iter().filter(|s| s.kind == Kind::Clock).count(),
        args.instances,
        total_series
    );

    // Targets.
    let max_late_ms = 2_500i64;
    let mut targets = Vec::with_capacity(args.instances);
    let mut trng = Rng::new(mix(args.seed, 1));
    for i in 0..args.instances {
        targets.push(Target {
            instance: format!(
                "10.{}.{}.{}:9100",
                20 + i / 65_025,
                (i / 255) % 255,
                i % 255 + 1
            ),
            offset_ms: trng.below((args.interval_ms - max_late_ms - 100) as u64) as i64,
            phase: trng.below(1 << 20) as usize,
            load: (trng.range(0.5f64.ln(), 2.0f64.ln())).exp(),
            boot_shift_s: trng.below(30 * 86_400) as f64,
        });
    }

    // Label sets, series refs in creation order (target by target, exposition order).
    let labels: Vec<Labels> = targets
        .iter()
        .flat_map(|t| {
            series.iter().map(move |s| {
                let mut v: Vec<Label> = s
                    .labels
                    .iter()
                    .map(|(n, v)| Label::new(n.clone(), v.clone()))
                    .collect();
                v.push(Label::new("instance", t.instance.clone()));
                v.push(Label::new("job", "node"));
                let pairs: Vec<(String, String)> =
                    v.into_iter().map(|l| (l.name, l.value)).collect();
                Labels::from_pairs(pairs)
            })
        })
        .collect();

    // Per target × series state.
    let start_s = args.start_ms as f64 / 1000.0;
    let mut current = vec![0f64; total_series];
    let mut factor = vec![1f64; total_series];
    let family_ids: Vec<u64> = series
        .iter()
        .map(|s| {
            s.family.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
            })
        })
        .collect();
    for (ti, t) in targets.iter().enumerate() {
        for (si, s) in series.iter().enumerate() {
            let idx = ti * per_target + si;
            let mut r = Rng::new(mix(mix(args.seed, ti as u64 + 7), family_ids[si]));
            factor[idx] = match s.kind {
                Kind::Counter => t.load * r.range(0.8, 1.25),
                _ => r.range(0.95, 1.05),
            };
            current[idx] = match s.kind {
                Kind::Counter => quantize(s.values[0] * factor[idx], s.quantum),
                Kind::ConstScaled => quantize(s.values[0] * factor[idx], s.quantum),
                Kind::ConstTime => quantize(start_s + s.clock_offset - t.boot_shift_s, s.quantum),
                _ => s.values[0],
            };
        }
    }

    let mut om = match &args.openmetrics {
        Some(p) => Some(BufWriter::with_capacity(
            1 << 20,
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    let mut rw = match &args.requests {
        Some(p) => {
            let mut out = BufWriter::with_capacity(
                1 << 20,
                File::create(p).with_context(|| format!("creating {}", p.display()))?,
            );
            out.write_all(b"STRATARW")?;
            out.write_all(&1u32.to_le_bytes())?;
            out.write_all(&(args.shards as u32).to_le_bytes())?;
            Some(RequestWriter {
                out,
                shards: vec![Vec::new(); args.shards],
                batch: args.batch,
                requests: 0,
                bytes: 16,
                samples: 0,
            })
        }
        None => None,
    };

    let n_real = scrapes.len();
    let pingpong = |k: usize| -> usize {
        if n_real == 1 {
            return 0;
        }
        let p = 2 * (n_real - 1);
        let x = k % p;
        if x < n_real {
            x
        } else {
            p - x
        }
    };
    let deadline_ms = 5_000i64;
    let mut line = String::with_capacity(512);
    let mut samples_total = 0u64;
    let (mut late, mut jittered) = (0u64, 0u64);
    let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
    let mut events: Vec<(i64, usize)> = Vec::with_capacity(args.instances);
    for k in 0..args.steps {
        // Scrape times of this round, then scrapes in time order (as the queue manager sees them).
        events.clear();
        for (ti, t) in targets.iter().enumerate() {
            let mut r = Rng::new(mix(mix(args.seed, 0x5eed_0000 + ti as u64), k as u64));
            let aligned = args.start_ms + k as i64 * args.interval_ms + t.offset_ms;
            let u = r.f64();
            let late_p = args.late_per_mille / 1000.0;
            let ts = if u < late_p {
                late += 1;
                aligned + 200 + r.below((max_late_ms - 200) as u64) as i64
            } else if u < late_p + args.jitter_pct / 100.0 {
                // Beyond Prometheus's 2 ms snapping tolerance, so the timestamp is kept as is.
                jittered += 1;
                aligned + 3 + r.below((args.jitter_max_ms - 2) as u64) as i64
            } else {
                aligned
            };
            events.push((ts, ti));
        }
        events.sort_unstable();
        for &(ts, ti) in &events {
            min_t = min_t.min(ts);
            max_t = max_t.max(ts);
            let t = &targets[ti];
            let mut r = Rng::new(mix(mix(args.seed, 0x51e9_0000 + ti as u64), k as u64));
            let step_jitter = r.range(0.95, 1.05);
            if let Some(w) = rw.as_mut() {
                for shard in 0..w.shards.len() {
                    if w.shards[shard]
                        .first()
                        .is_some_and(|(_, s)| s.t <= ts - deadline_ms)
                    {
                        w.flush_shard(shard, &labels)?;
                    }
                }
            }
            for (si, s) in series.iter().enumerate() {
                let idx = ti * per_target + si;
                let v = match s.kind {
                    Kind::Counter => {
                        if k > 0 {
                            let wv = s.windows[(t.phase + k) % s.windows.len()];
                            let d = quantize(wv * factor[idx] * step_jitter, s.quantum).max(0.0);
                            current[idx] = quantize(current[idx] + d, s.quantum);
                        }
                        current[idx]
                    }
                    Kind::Gauge => {
                        quantize(s.values[pingpong(t.phase + k)] * factor[idx], s.quantum)
                    }
                    Kind::Clock => quantize(ts as f64 / 1000.0 + s.clock_offset, s.quantum),
                    Kind::Verbatim | Kind::ConstScaled | Kind::ConstTime => current[idx],
                };
                samples_total += 1;
                if let Some(o) = om.as_mut() {
                    line.clear();
                    let l = &labels[idx];
                    line.push_str(l.metric_name().unwrap_or(""));
                    line.push('{');
                    let mut first = true;
                    for lab in l.iter().filter(|x| x.name != "__name__") {
                        if !first {
                            line.push(',');
                        }
                        first = false;
                        line.push_str(&lab.name);
                        line.push_str("=\"");
                        escape_label_value(&lab.value, &mut line);
                        line.push('"');
                    }
                    line.push_str("} ");
                    format_value(v, &mut line);
                    use std::fmt::Write as _;
                    let _ = writeln!(line, " {}.{:03}", ts.div_euclid(1000), ts.rem_euclid(1000));
                    o.write_all(line.as_bytes())?;
                }
                if let Some(w) = rw.as_mut() {
                    let shard = idx % w.shards.len();
                    w.shards[shard].push((idx as u32, Sample::new(ts, v)));
                    if w.shards[shard].len() >= w.batch {
                        w.flush_shard(shard, &labels)?;
                    }
                }
            }
        }
        if k % 20 == 19 || k + 1 == args.steps {
            eprintln!(
                "step {}/{}: {} samples, {:.1}s",
                k + 1,
                args.steps,
                samples_total,
                started.elapsed().as_secs_f64()
            );
        }
    }
    if let Some(mut o) = om {
        o.write_all(b"# EOF\n")?;
        o.flush()?;
    }
    let (requests, request_bytes) = match rw {
        Some(mut w) => {
            for shard in 0..w.shards.len() {
                w.flush_shard(shard, &labels)?;
            }
            w.out.flush()?;
            assert_eq!(w.samples, samples_total);
            (w.requests, w.bytes)
        }
        None => (0, 0),
    };
    let summary = serde_json::json!({
        "seed": args.seed,
        "real_scrapes": scrapes.len(),
        "series_per_target": per_target,
        "targets": args.instances,
        "series": total_series,
        "steps": args.steps,
        "interval_ms": args.interval_ms,
        "samples": samples_total,
        "min_t_ms": min_t,
        "max_t_ms": max_t,
        "late_scrapes": late,
        "jittered_scrapes": jittered,
        "shards": args.shards,
        "batch": args.batch,
        "jitter_pct": args.jitter_pct,
        "jitter_max_ms": args.jitter_max_ms,
        "late_per_mille": args.late_per_mille,
        "requests": requests,
        "request_file_bytes": request_bytes,
    });
    eprintln!("{summary}");
    if let Some(p) = &args.summary {
        std::fs::write(p, format!("{summary:#}\n"))?;
    }
    Ok(())
}
