//! Differential test against Prometheus 2.42's engine through `promtool test rules`: 800 seeded
//! random queries (range functions, aggregations, binary operators, subqueries, offsets,
//! `histogram_quantile`) are evaluated here, written as a rules unit test with our results as the
//! expectations, and checked by promtool. Values must agree within 1e-9 relative (Go's and Rust's
//! `ln`/`exp` differ in the last bit); label sets exactly.
//!
//! Prometheus 3 differs from 2.42 by design at window edges (left-open ranges, a sample exactly
//! `lookback` old is gone) and in delayed `__name__` removal, so evaluation times sit 7s off the 15s
//! sample grid and selectors never mix metric names under name-dropping functions.
//!
//! Needs `promtool` on PATH (Debian's `prometheus` package): without it the test skips loudly, and
//! fails under `STRATA_REQUIRE_ALL=1` (as in CI, which installs it).

use std::collections::BTreeMap;
use std::process::Command;

use strata_query::memory::MemoryReader;
use strata_query::{Engine, Value};
use strata_store::{Labels, Sample};

struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.next(xs.len())]
    }
}

const SEL: &[&str] = &[
    "req_total",
    "req_total{job=\"a\"}",
    "lat_bucket",
    "g",
    "g{job=~\"a|b\"}",
    "s",
];
const RF: &[&str] = &[
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
    "stddev_over_time",
    "stdvar_over_time",
    "present_over_time",
];
const DUR: &[&str] = &["1m", "2m", "5m", "10m"];
const AGG: &[&str] = &[
    "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar",
];

fn range(g: &mut Lcg, d: u32) -> String {
    if d > 0 && g.next(4) == 0 {
        format!(
            "({})[{}:{}]",
            plain(g, d - 1),
            g.pick(DUR),
            g.pick(&["30s", "1m"])
        )
    } else {
        let o = if g.next(3) == 0 {
            format!(" offset {}", g.pick(&["1m", "3m"]))
        } else {
            String::new()
        };
        format!("{}[{}]{o}", g.pick(SEL), g.pick(DUR))
    }
}

/// Expressions without range functions, so subqueries over them sit on sample times only through
/// lookback (where Prometheus 2 and 3 agree).
fn plain(g: &mut Lcg, d: u32) -> String {
    if d == 0 {
        return g.pick(SEL).to_string();
    }
    match g.next(3) {
        0 => format!("{} by (job) ({})", g.pick(AGG), plain(g, d - 1)),
        1 => format!("({}) * 2", plain(g, d - 1)),
        _ => g.pick(SEL).to_string(),
    }
}

fn vector(g: &mut Lcg, d: u32) -> String {
    if d == 0 {
        return g.pick(SEL).to_string();
    }
    match g.next(15) {
        9 => format!(
            "predict_linear({}, {})",
            range(g, d - 1),
            g.pick(&["60", "-30", "600"])
        ),
        10 => format!(
            "quantile_over_time({}, {})",
            g.pick(&["0", "0.5", "0.75", "1"]),
            range(g, d - 1)
        ),
        11 => format!(
            "{}({}, \"job\", \"$1-x\", \"job\", \"(.*)\")",
            "label_replace",
            vector(g, d - 1)
        ),
        12 => format!(
            "({}) * on(job) group_left sum by (job) (g)",
            vector(g, d - 1)
        ),
        13 => format!(
            "{}({}, {})",
            g.pick(&["clamp_min", "clamp_max"]),
            vector(g, d - 1),
            g.pick(&["1", "5", "-2"])
        ),
        14 => format!(
            "count_values without (le) (\"value\", round({}))",
            vector(g, d - 1)
        ),
        0 | 1 => format!("{}({})", g.pick(RF), range(g, d - 1)),
        2 => format!("{} by (job) ({})", g.pick(AGG), vector(g, d - 1)),
        3 => format!("{} without (le) ({})", g.pick(AGG), vector(g, d - 1)),
        4 => format!(
            "quantile({}, {})",
            g.pick(&["0.5", "0.9", "0"]),
            vector(g, d - 1)
        ),
        5 => format!(
            "({}) {} ({})",
            vector(g, d - 1),
            g.pick(&["+", "-", "*", ">", "<=", "and", "or", "unless", "> bool"]),
            vector(g, d - 1)
        ),
        6 => format!(
            "({}) {} {}",
            vector(g, d - 1),
            g.pick(&["+", "*", ">", "== bool", "/"]),
            g.pick(&["2", "0.5", "10"])
        ),
        7 => format!(
            "histogram_quantile({}, sum by (le, job) (rate(lat_bucket[5m])))",
            g.pick(&["0.5", "0.9", "0.99"])
        ),
        _ => format!(
            "{}({})",
            g.pick(&[
                "abs",
                "ceil",
                "floor",
                "sqrt",
                "exp",
                "ln",
                "-",
                "sgn",
                "timestamp",
                "round"
            ]),
            vector(g, d - 1)
        ),
    }
}

/// Hand-picked queries covering functions and operator forms the random grammar leaves out.
const FIXED: &[&str] = &[
    "topk(2, req_total)",
    "bottomk(1, rate(req_total[5m]))",
    "absent(nonexistent{job=\"x\"})",
    "absent(req_total)",
    "scalar(sum(req_total)) + g",
    "vector(time())",
    "time()",
    "hour()",
    "minute(vector(1e9))",
    "day_of_week()",
    "days_in_month(vector(1.7e9))",
    "year(vector(1.7e9))",
    "day_of_year(vector(1.7e9))",
    "label_join(req_total, \"k\", \"/\", \"job\", \"__name__\")",
    "sort_desc(req_total)",
    "count(req_total) by (job)",
    "increase(req_total[10m])",
    "req_total offset 5m",
    "irate(req_total[1m] offset 30s)",
    "delta(g[5m])",
    "histogram_quantile(0.5, rate(lat_bucket[5m]))",
    "histogram_quantile(0.99, sum without (job) (rate(lat_bucket[5m])))",
    "sum by (job) (rate(req_total[5m])) / on(job) group_left sum by (job) (rate(lat_bucket{le=\"+Inf\"}[5m]))",
    "lat_bucket * on(job) group_left g",
    "g / on(job) group_right lat_bucket",
    "quantile(0.3, g)",
    "avg without (job) (g)",
    "group by (job) (g)",
    "count_values(\"v\", g)",
    "1 - g",
    "2 ^ g",
    "g % 3",
    // `atan2` drops the metric name only since Prometheus 3, hence no name here.
    "sum by (job) (g) atan2 2",
    "-g",
    "ln(abs(g) + 1)",
    "log2(abs(g) + 1)",
    "log10(abs(g) + 1)",
    "round(g / 3, 0.5)",
    "clamp(g, -1, 2)",
    "sin(g) + cos(g) + tan(g)",
    "asin(g / 10) + acos(g / 10) + atan(g)",
    "sinh(g) + cosh(g) + tanh(g)",
    "asinh(g) + acosh(abs(g) + 1) + atanh(g / 10)",
    "deg(g) + rad(g)",
    "pi() * g",
    "timestamp(g offset 1m)",
    "min_over_time(g[5m:30s])",
    "max_over_time(sum by (job) (g)[10m:1m] offset 2m)",
    "g == bool 2",
    "g != 2",
    "g >= on(job) g",
    "req_total and on(job) g > 2",
    "req_total unless ignoring(le) lat_bucket",
    "req_total or lat_bucket",
];

/// Builds the data and the rules-test YAML with our engine's answers as expectations.
fn rules_test_file() -> String {
    let r = MemoryReader::new();
    let mut yaml_series = Vec::new();
    let mut add = |labels: &[(&str, &str)], vals: Vec<f64>, yaml: String| {
        r.append(
            Labels::from_pairs(labels.iter().copied()),
            vals.iter()
                .enumerate()
                .map(|(i, v)| Sample::new(i as i64 * 15_000, *v)),
        );
        yaml_series.push(yaml);
    };
    for (job, slope) in [("a", 3.0), ("b", 5.0), ("c", 1.5)] {
        let vals: Vec<f64> = (0..80)
            .map(|i| {
                if i == 40 && job == "b" {
                    7.0
                } else if i > 40 && job == "b" {
                    7.0 + (i - 40) as f64 * slope
                } else {
                    i as f64 * slope
                }
            })
            .collect();
        let v: Vec<String> = vals.iter().map(|v| v.to_string()).collect();
        add(
            &[("__name__", "req_total"), ("job", job)],
            vals.clone(),
            format!(
                "      - series: 'req_total{{job=\"{job}\"}}'\n        values: '{}'",
                v.join(" ")
            ),
        );
        let gv: Vec<f64> = (0..80)
            .map(|i| ((i * 7 + job.len() * 3) % 11) as f64 - 3.0)
            .collect();
        let gs: Vec<String> = gv.iter().map(|v| v.to_string()).collect();
        add(
            &[("__name__", "g"), ("job", job)],
            gv,
            format!(
                "      - series: 'g{{job=\"{job}\"}}'\n        values: '{}'",
                gs.join(" ")
            ),
        );
        for (k, le) in ["0.1", "0.5", "1", "+Inf"].iter().enumerate() {
            let bv: Vec<f64> = (0..80).map(|i| (i * (k + 1)) as f64 * slope).collect();
            let bs: Vec<String> = bv.iter().map(|v| v.to_string()).collect();
            add(&[("__name__", "lat_bucket"), ("job", job), ("le", le)], bv, format!("      - series: 'lat_bucket{{job=\"{job}\", le=\"{le}\"}}'\n        values: '{}'", bs.join(" ")));
        }
    }
    // A series with gaps and staleness markers, for lookback and staleness.
    for job in ["a", "b"] {
        let mut yaml_values = Vec::new();
        let mut samples = Vec::new();
        for i in 0..80i64 {
            if i % 9 == 4 || i % 9 == 5 {
                yaml_values.push("_".to_string());
            } else if i % 17 == 8 {
                yaml_values.push("stale".to_string());
                samples.push(Sample::new(i * 15_000, strata_store::stale_nan()));
            } else {
                let v = (i * if job == "a" { 2 } else { 3 }) as f64;
                yaml_values.push(v.to_string());
                samples.push(Sample::new(i * 15_000, v));
            }
        }
        r.append(
            Labels::from_pairs([("__name__", "s"), ("job", job)]),
            samples,
        );
        yaml_series.push(format!(
            "      - series: 's{{job=\"{job}\"}}'\n        values: '{}'",
            yaml_values.join(" ")
        ));
    }
    let e = Engine::default();
    let mut g = Lcg(7);
    let mut tests = Vec::new();
    let mut n = 0;
    let mut fixed = FIXED.iter();
    while n < 800 + FIXED.len() {
        let q = match fixed.next() {
            Some(q) => q.to_string(),
            None => vector(&mut g, 3),
        };
        // Always 7s past the 15s sample grid, so no window edge falls on a sample (where
        // Prometheus 2's closed windows and Prometheus 3's left-open ones differ).
        let t = 12 * 60_000 + 7_000 + (g.next(20) as i64) * 15_000;
        let Ok(out) = e.instant_query(&r, &q, t) else {
            continue;
        };
        let Value::Vector(v) = out.value else {
            continue;
        };
        if v.iter().any(|(_, _, f)| !f.is_finite()) {
            continue;
        }
        let mut samples = String::new();
        for (l, _, f) in &v {
            samples.push_str(&format!(
                "          - labels: '{}'\n            value: {:e}\n",
                l.to_string().replace(", ", ","),
                f
            ));
        }
        let exp = if v.is_empty() {
            "        exp_samples: []\n".to_string()
        } else {
            format!("        exp_samples:\n{samples}")
        };
        tests.push(format!(
            "      - expr: '{}'\n        eval_time: {}ms\n{exp}",
            q.replace('\'', "''"),
            t
        ));
        n += 1;
    }
    format!(
        "evaluation_interval: 15s\ntests:\n  - interval: 15s\n    input_series:\n{}\n    promql_expr_test:\n{}",
        yaml_series.join("\n"),
        tests.join("")
    )
}

/// Parses `{a="b"} 1.5E+00, {…} 2E+00` as promtool prints samples.
fn parse_samples(s: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim();
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let labels = rest[open..open + close + 1].to_string();
        let after = rest[open + close + 1..].trim_start();
        let end = after.find(',').unwrap_or(after.len());
        if let Ok(v) = after[..end].trim().parse::<f64>() {
            out.insert(labels, v);
        }
        rest = &after[end..];
    }
    out
}

/// Is `promtool` runnable? When not: skip loudly, or fail under `STRATA_REQUIRE_ALL=1`.
fn promtool_available() -> bool {
    if Command::new("promtool").arg("--version").output().is_ok() {
        return true;
    }
    if std::env::var("STRATA_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!("STRATA_REQUIRE_ALL=1 and promtool is not installed (apt-get install prometheus)");
    }
    eprintln!("\n*** SKIPPED: promtool is not installed (apt-get install prometheus). ***\n");
    false
}

#[test]
fn results_match_prometheus_via_promtool() {
    if !promtool_available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("strata-promtool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("differential.yml");
    std::fs::write(&file, rules_test_file()).expect("write rules test");
    let output = Command::new("promtool")
        .arg("test")
        .arg("rules")
        .arg(&file)
        .output()
        .expect("run promtool");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    let mut mismatches = Vec::new();
    for block in text.split("\n\n") {
        let Some(expr_at) = block.find("expr:") else {
            continue;
        };
        let expr = block[expr_at..].lines().next().unwrap_or("");
        if block.contains("err:") {
            mismatches.push(format!("{expr} (Prometheus errors)"));
            continue;
        }
        let line = |key: &str| {
            block
                .lines()
                .find_map(|l| l.trim().strip_prefix(key))
                .map(parse_samples)
        };
        let (Some(exp), Some(got)) = (line("exp:"), line("got:")) else {
            mismatches.push(format!("unreadable promtool output: {block}"));
            continue;
        };
        let same = exp.len() == got.len()
            && exp.iter().all(|(l, e)| {
                got.get(l)
                    .is_some_and(|g| (e - g).abs() <= 1e-9 * e.abs().max(g.abs()))
            });
        if !same {
            mismatches.push(format!(
                "{expr}\n  ours:       {exp:?}\n  Prometheus: {got:?}"
            ));
        }
    }
    assert!(
        text.contains("Unit Testing:"),
        "promtool did not run the test file: {text}"
    );
    assert!(
        mismatches.is_empty(),
        "{} queries differ from Prometheus:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
