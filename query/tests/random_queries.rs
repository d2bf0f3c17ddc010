//! Evaluates a few hundred pseudo-random queries (fixed seed) built from PromQL's grammar over
//! odd data (NaN, ±Inf, staleness, gaps) as instant and range queries: every one must answer with a
//! result or an error, never a panic; and an instant query must equal the same step of a range query.

use strata_query::memory::MemoryReader;
use strata_query::{Engine, EngineOptions, Value};
use strata_store::{stale_nan, Labels, Sample};

/// A tiny deterministic generator (64-bit LCG), so failures reproduce.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % n
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.next(xs.len())]
    }
}

const SELECTORS: &[&str] = &[
    "m",
    "m{le=\"0.1\"}",
    "n",
    "m{job=~\".+\"}",
    "{__name__=~\"m|n\"}",
    "missing",
];
const DURATIONS: &[&str] = &["1s", "30s", "1m", "5m", "1h", "0s", "1ms"];
const NUMBERS: &[&str] = &["0", "1", "-1", "0.5", "NaN", "Inf", "-Inf", "1e308", "3"];
const RANGE_FUNCS: &[&str] = &[
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "resets",
    "changes",
    "avg_over_time",
    "sum_over_time",
    "count_over_time",
    "min_over_time",
    "max_over_time",
    "last_over_time",
    "first_over_time",
    "present_over_time",
    "absent_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "mad_over_time",
    "ts_of_max_over_time",
];
const FUNCS: &[&str] = &[
    "abs",
    "ceil",
    "floor",
    "exp",
    "sqrt",
    "ln",
    "sgn",
    "round",
    "timestamp",
    "sort",
    "sort_desc",
    "-",
];
const AGGS: &[&str] = &[
    "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar",
];
const BINOPS: &[&str] = &[
    "+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<=", "and", "or", "unless", "atan2",
];
const MODIFIERS: &[&str] = &[
    "",
    " bool",
    " on(job)",
    " ignoring(le)",
    " on(job) group_left",
    " ignoring(le) group_right",
];

fn range(g: &mut Lcg, depth: u32) -> String {
    let d = g.pick(DURATIONS);
    if depth > 0 && g.next(3) == 0 {
        format!(
            "({})[{d}:{}]",
            vector(g, depth - 1),
            g.pick(&["", "10s", "1m"])
        )
    } else {
        let sel = g.pick(SELECTORS);
        match g.next(4) {
            0 => format!("{sel}[{d}] offset {}", g.pick(DURATIONS)),
            1 => format!("{sel}[{d}] @ {}", g.pick(&["0", "100", "start()", "end()"])),
            _ => format!("{sel}[{d}]"),
        }
    }
}

fn vector(g: &mut Lcg, depth: u32) -> String {
    if depth == 0 {
        return g.pick(SELECTORS).to_string();
    }
    match g.next(8) {
        0 => format!("{}({})", g.pick(RANGE_FUNCS), range(g, depth - 1)),
        1 => {
            let f = g.pick(FUNCS);
            if f == "-" {
                format!("-{}", vector(g, depth - 1))
            } else {
                format!("{f}({})", vector(g, depth - 1))
            }
        }
        2 => format!("{} by (job) ({})", g.pick(AGGS), vector(g, depth - 1)),
        3 => format!(
            "{}({}, {})",
            g.pick(&["topk", "bottomk", "limitk", "quantile", "limit_ratio"]),
            g.pick(NUMBERS),
            vector(g, depth - 1)
        ),
        4 => {
            let op = g.pick(BINOPS);
            let modifier = if matches!(op, "and" | "or" | "unless") {
                ""
            } else {
                g.pick(MODIFIERS)
            };
            format!(
                "({}) {op}{modifier} ({})",
                vector(g, depth - 1),
                vector(g, depth - 1)
            )
        }
        5 => format!(
            "({}) {} {}",
            vector(g, depth - 1),
            g.pick(&["+", "*", ">", "== bool"]),
            g.pick(NUMBERS)
        ),
        6 => format!(
            "histogram_quantile({}, {})",
            g.pick(NUMBERS),
            vector(g, depth - 1)
        ),
        _ => format!(
            "label_replace({}, \"x\", \"$1\", \"job\", \"(.*)\")",
            vector(g, depth - 1)
        ),
    }
}

#[test]
fn random_queries_never_panic() {
    let reader = MemoryReader::new();
    let values = [
        1.0,
        f64::NAN,
        2.0,
        stale_nan(),
        f64::INFINITY,
        -3.0,
        0.0,
        5.0,
    ];
    for (i, le) in ["0.1", "1", "+Inf"].iter().enumerate() {
        let labels = Labels::from_pairs([
            ("__name__", "m"),
            ("job", if i % 2 == 0 { "a" } else { "b" }),
            ("le", le),
        ]);
        reader.append(
            labels,
            values
                .iter()
                .enumerate()
                .map(|(j, v)| Sample::new(j as i64 * 15_000, *v * (i + 1) as f64)),
        );
    }
    reader.append(
        Labels::from_pairs([("__name__", "n"), ("job", "a")]),
        (0..40).map(|j| Sample::new(j * 7_000, j as f64)),
    );
    let engine = Engine::new(EngineOptions {
        max_samples: 200_000,
        ..EngineOptions::default()
    });
    let mut g = Lcg(0x5eed);
    for _ in 0..400 {
        let q = vector(&mut g, 3);
        let _ = engine.instant_query(&reader, &q, 60_000);
        let _ = engine.range_query(&reader, &q, 0, 120_000, 15_000);
    }
}

/// Step invariance: an instant query at `t` equals the point at `t` of a range query over the same
/// data (Prometheus's engine guarantees this; its test runner checks it on every instant `eval`).
#[test]
fn instant_results_equal_the_matching_step_of_range_results() {
    let reader = MemoryReader::new();
    for (i, job) in ["a", "b", "c"].iter().enumerate() {
        let labels = Labels::from_pairs([
            ("__name__", "m"),
            ("job", job),
            ("le", ["0.1", "1", "+Inf"][i]),
        ]);
        reader.append(
            labels,
            (0..30).map(|j| Sample::new(j * 10_000, ((j * (i as i64 + 1)) % 17) as f64)),
        );
    }
    reader.append(
        Labels::from_pairs([("__name__", "n"), ("job", "a")]),
        (0..40).map(|j| Sample::new(j * 7_000, j as f64)),
    );
    let engine = Engine::default();
    let mut g = Lcg(0xfeed);
    let mut compared = 0;
    for _ in 0..300 {
        let q = vector(&mut g, 3);
        if q.contains("start()") || q.contains("end()") || q.contains("limit") {
            continue;
        }
        let t = 150_000;
        let (Ok(instant), Ok(range)) = (
            engine.instant_query(&reader, &q, t),
            engine.range_query(&reader, &q, t - 30_000, t + 30_000, 15_000),
        ) else {
            continue;
        };
        let Value::Vector(mut inst) = instant.value else {
            continue;
        };
        let Value::Matrix(mat) = range.value else {
            panic!("range query must return a matrix: {q}")
        };
        let mut at_t: Vec<(Labels, f64)> = mat
            .iter()
            .filter_map(|(l, pts)| pts.iter().find(|p| p.t == t).map(|p| (l.clone(), p.v)))
            .collect();
        inst.sort_by(|a, b| a.0.cmp(&b.0));
        at_t.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            inst.len(),
            at_t.len(),
            "{q}: instant {inst:?} vs range {at_t:?}"
        );
        for ((li, _, vi), (lr, vr)) in inst.iter().zip(&at_t) {
            assert_eq!(li, lr, "{q}");
            let same = (vi.is_nan() && vr.is_nan())
                || vi == vr
                || (vi - vr).abs() <= 1e-9 * vi.abs().max(vr.abs());
            assert!(same, "{q}: {li} instant {vi} vs range {vr}");
        }
        compared += 1;
    }
    assert!(compared > 100, "only {compared} queries compared");
}
