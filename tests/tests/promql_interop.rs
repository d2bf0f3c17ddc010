//! The same data in Prometheus 2.42 (Debian) and in Strata, the same PromQL corpus through both HTTP APIs:
//! every instant and range query must give the same series with values within 1e-9 relative, and
//! `promtool query instant|range` must print the same against both servers.
//!
//! One OpenMetrics file feeds both: `promtool tsdb create-blocks-from openmetrics` for Prometheus, `strata
//! import openmetrics` for Strata. Strata answers with Prometheus 3 semantics, which differ from 2.42 by
//! design at exact window edges (ranges are left-open; a sample exactly 5 m old has left the lookback
//! window). So samples sit 3 s past each 15 s step and every evaluation time 7 s past one: no range or
//! lookback boundary — including a subquery's inner steps at whole minutes — ever falls on a sample. Other
//! known differences, kept out of the corpus: where a `rate`/`increase` window reaches back past a
//! counter's first sample, 2.42 extrapolates to the counter's zero point when that is within 1.1 sample
//! intervals, while Prometheus 3 extrapolates by at most half an interval (so no window here starts
//! before the data); `holt_winters` is `double_exponential_smoothing` behind a
//! feature flag in Prometheus 3, and functions newer than 2.42 (`sort_by_label`, `limitk`, `limit_ratio`,
//! `day_of_year`, `info`) do not exist there.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use strata_tests::{free_port, http, require_tool, wait_for, Peer, Strata};

const BIN: &str = env!("CARGO_BIN_EXE_strata-e2e");

/// Two hours and a quarter of data at 15 s.
const STEPS: i64 = 540;
const STEP_S: i64 = 15;

struct Lcg(u64);
impl Lcg {
    fn unit(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The corpus data as OpenMetrics text, samples at `base + 3 s + k·15 s` (seconds).
fn openmetrics(base: i64) -> String {
    let mut rng = Lcg(42);
    let ts = |k: i64| base + 3 + k * STEP_S;
    let mut o = String::new();
    o.push_str("# HELP http_requests_total Requests served.\n# TYPE http_requests_total counter\n");
    for job in ["api", "web"] {
        for instance in ["10.0.0.1:80", "10.0.0.2:80"] {
            for method in ["GET", "POST"] {
                for status in ["200", "500"] {
                    let rate = if status == "500" { 0.3 } else { 7.0 } * (1.0 + rng.unit());
                    let mut v = 0.0f64;
                    for k in 0..STEPS {
                        // A restart in one series: the counter resets.
                        if job == "web" && method == "POST" && status == "200" && k == 300 {
                            v = 0.0;
                        }
                        v += (rate * STEP_S as f64 * (0.5 + rng.unit())).round();
                        let _ = writeln!(
                            o,
                            "http_requests_total{{job=\"{job}\",instance=\"{instance}\",method=\"{method}\",status=\"{status}\"}} {v} {}",
                            ts(k)
                        );
                    }
                }
            }
        }
    }
    o.push_str("# HELP http_request_duration_seconds Request latency.\n# TYPE http_request_duration_seconds histogram\n");
    let bounds = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"];
    for job in ["api", "web"] {
        for instance in ["10.0.0.1:80", "10.0.0.2:80"] {
            let mut counts = [0.0f64; 7];
            let mut sum = 0.0f64;
            let mut lines: Vec<String> = Vec::new();
            for k in 0..STEPS {
                let n = 20 + (rng.unit() * 40.0) as usize;
                for _ in 0..n {
                    let lat = rng.unit().powi(3) * if job == "api" { 2.0 } else { 0.6 };
                    sum += lat;
                    for (i, b) in bounds.iter().enumerate() {
                        if *b == "+Inf" || lat <= b.parse::<f64>().unwrap() {
                            counts[i] += 1.0;
                        }
                    }
                }
                for (i, b) in bounds.iter().enumerate() {
                    lines.push(format!("http_request_duration_seconds_bucket{{job=\"{job}\",instance=\"{instance}\",le=\"{b}\"}} {} {}", counts[i], ts(k)));
                }
                lines.push(format!("http_request_duration_seconds_sum{{job=\"{job}\",instance=\"{instance}\"}} {sum} {}", ts(k)));
                lines.push(format!("http_request_duration_seconds_count{{job=\"{job}\",instance=\"{instance}\"}} {} {}", counts[6], ts(k)));
            }
            for l in lines {
                o.push_str(&l);
                o.push('\n');
            }
        }
    }
    o.push_str("# HELP node_memory_free_bytes Free memory.\n# TYPE node_memory_free_bytes gauge\n");
    for instance in ["10.0.0.1:9100", "10.0.0.2:9100", "10.0.0.3:9100"] {
        let mut v = 4e9 * (1.0 + rng.unit());
        for k in 0..STEPS {
            v = (v + (rng.unit() - 0.5) * 5e7).max(1e8);
            let _ = writeln!(
                o,
                "node_memory_free_bytes{{instance=\"{instance}\"}} {} {}",
                v.round(),
                ts(k)
            );
        }
    }
    o.push_str(
        "# HELP room_temperature_celsius Temperature.\n# TYPE room_temperature_celsius gauge\n",
    );
    for room in ["cellar", "attic", "lab"] {
        let mut v = if room == "cellar" { -4.0 } else { 20.0 };
        for k in 0..STEPS {
            v += ((rng.unit() - 0.5) * 40.0).round() / 100.0;
            let _ = writeln!(
                o,
                "room_temperature_celsius{{room=\"{room}\"}} {v:.2} {}",
                ts(k)
            );
        }
    }
    o.push_str("# HELP queue_depth Items waiting.\n# TYPE queue_depth gauge\n");
    for queue in ["email", "sms", "push"] {
        // `push` stops half-way: its series goes stale by the lookback rule.
        let last = if queue == "push" { STEPS / 2 } else { STEPS };
        for k in 0..last {
            let v = (rng.unit() * 50.0).floor();
            let _ = writeln!(o, "queue_depth{{queue=\"{queue}\"}} {v} {}", ts(k));
        }
    }
    o.push_str("# HELP up Target health.\n# TYPE up gauge\n");
    for (job, instance) in [
        ("api", "10.0.0.1:80"),
        ("api", "10.0.0.2:80"),
        ("web", "10.0.0.1:80"),
        ("web", "10.0.0.2:80"),
    ] {
        for k in 0..STEPS {
            let down = instance == "10.0.0.2:80" && job == "web" && (200..230).contains(&k);
            let _ = writeln!(
                o,
                "up{{job=\"{job}\",instance=\"{instance}\"}} {} {}",
                if down { 0 } else { 1 },
                ts(k)
            );
        }
    }
    o.push_str("# HELP build_info Build.\n# TYPE build_info gauge\n");
    for (job, version) in [("api", "1.2.3"), ("web", "2.0.0")] {
        for k in 0..STEPS {
            let _ = writeln!(
                o,
                "build_info{{job=\"{job}\",version=\"{version}\"}} 1 {}",
                ts(k)
            );
        }
    }
    o.push_str("# EOF\n");
    o
}

/// Every function and operator family that Prometheus 2.42 and 3 evaluate alike on float samples.
const CORPUS: &[&str] = &[
    // Selectors and matchers.
    "http_requests_total",
    "http_requests_total{job=\"api\"}",
    "http_requests_total{job!=\"api\"}",
    "http_requests_total{status=~\"5..\"}",
    "http_requests_total{status!~\"2..\",method=\"GET\"}",
    "{__name__=~\"http_requests_.*\",job=\"web\"}",
    "{__name__=\"up\"}",
    "queue_depth",
    "http_requests_total offset 10m",
    "http_requests_total offset -5m",
    "http_requests_total @ start()",
    "http_requests_total @ end()",
    "rate(http_requests_total[5m] @ end())",
    "rate(http_requests_total[5m] offset 30m)",
    "nonexistent_metric",
    // Rates and counters.
    "rate(http_requests_total[5m])",
    "rate(http_requests_total[1m])",
    "irate(http_requests_total[5m])",
    "increase(http_requests_total[10m])",
    "increase(http_requests_total[1h])",
    "resets(http_requests_total[1h])",
    "changes(up[1h])",
    "changes(queue_depth[10m])",
    "delta(room_temperature_celsius[10m])",
    "idelta(room_temperature_celsius[5m])",
    "deriv(node_memory_free_bytes[10m])",
    "predict_linear(node_memory_free_bytes[30m], 3600)",
    "predict_linear(room_temperature_celsius[10m], 600)",
    // Over time.
    "avg_over_time(room_temperature_celsius[10m])",
    "sum_over_time(queue_depth[5m])",
    "count_over_time(queue_depth[5m])",
    "min_over_time(room_temperature_celsius[30m])",
    "max_over_time(room_temperature_celsius[30m])",
    "last_over_time(queue_depth[10m])",
    "stddev_over_time(node_memory_free_bytes[10m])",
    "stdvar_over_time(room_temperature_celsius[10m])",
    "present_over_time(queue_depth[10m])",
    "quantile_over_time(0.9, queue_depth[30m])",
    "quantile_over_time(0.5, room_temperature_celsius[10m])",
    "absent_over_time(queue_depth{queue=\"push\"}[5m])",
    "absent_over_time(nonexistent_metric[5m])",
    // Subqueries.
    "max_over_time(rate(http_requests_total[1m])[10m:1m])",
    "avg_over_time(sum by (job) (rate(http_requests_total[5m]))[30m:2m])",
    "min_over_time(queue_depth[20m:30s])",
    "max_over_time(deriv(node_memory_free_bytes[5m])[15m:1m] offset 5m)",
    "rate(http_requests_total[5m:1m])",
    // Instant-vector math.
    "abs(room_temperature_celsius)",
    "ceil(room_temperature_celsius)",
    "floor(room_temperature_celsius)",
    "round(room_temperature_celsius)",
    "round(room_temperature_celsius, 0.5)",
    "sqrt(queue_depth)",
    "exp(room_temperature_celsius / 10)",
    "ln(queue_depth)",
    "log2(node_memory_free_bytes)",
    "log10(node_memory_free_bytes)",
    "sgn(room_temperature_celsius)",
    "clamp(room_temperature_celsius, 0, 20)",
    "clamp_min(queue_depth, 10)",
    "clamp_max(queue_depth, 10)",
    "sin(room_temperature_celsius)",
    "cos(room_temperature_celsius)",
    "tan(room_temperature_celsius)",
    "asin(room_temperature_celsius / 30)",
    "acos(room_temperature_celsius / 30)",
    "atan(room_temperature_celsius)",
    "sinh(room_temperature_celsius / 10)",
    "cosh(room_temperature_celsius / 10)",
    "tanh(room_temperature_celsius)",
    "asinh(room_temperature_celsius)",
    "acosh(queue_depth + 1)",
    "atanh(room_temperature_celsius / 30)",
    "deg(room_temperature_celsius)",
    "rad(room_temperature_celsius)",
    "pi() * 2",
    "timestamp(queue_depth)",
    "timestamp(queue_depth offset 1m)",
    // Time and scalars.
    "time()",
    "vector(time())",
    "minute()",
    "hour(vector(time()))",
    "day_of_week()",
    "day_of_month(vector(time()))",
    "days_in_month()",
    "month()",
    "year(vector(time()))",
    "scalar(sum(up))",
    "scalar(up)",
    "vector(1) + 2",
    "2 ^ 10 % 7",
    "-queue_depth",
    // Absent, labels, sorting.
    "absent(nonexistent_metric{job=\"x\"})",
    "absent(up)",
    "label_replace(up, \"host\", \"$1\", \"instance\", \"(.*):.*\")",
    "label_replace(up, \"job\", \"renamed\", \"job\", \"api\")",
    "label_join(up, \"both\", \"/\", \"job\", \"instance\")",
    "sort(queue_depth)",
    "sort_desc(rate(http_requests_total[5m]))",
    // Histograms.
    "histogram_quantile(0.9, rate(http_request_duration_seconds_bucket[5m]))",
    "histogram_quantile(0.5, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.99, sum by (job, le) (rate(http_request_duration_seconds_bucket[10m])))",
    "histogram_quantile(0, sum by (le) (http_request_duration_seconds_bucket))",
    "histogram_quantile(1.5, sum by (le) (http_request_duration_seconds_bucket))",
    "rate(http_request_duration_seconds_sum[5m]) / rate(http_request_duration_seconds_count[5m])",
    // Aggregations.
    "sum(rate(http_requests_total[5m]))",
    "sum by (job) (rate(http_requests_total[5m]))",
    "sum by (job, status) (rate(http_requests_total[5m]))",
    "sum without (instance, method) (rate(http_requests_total[5m]))",
    "avg by (job) (rate(http_requests_total[5m]))",
    "min by (status) (http_requests_total)",
    "max without (method) (http_requests_total)",
    "count by (job) (http_requests_total)",
    "count(up == 1)",
    "stddev by (job) (rate(http_requests_total[5m]))",
    "stdvar(room_temperature_celsius)",
    "group by (job) (http_requests_total)",
    "topk(3, rate(http_requests_total[5m]))",
    "topk by (job) (1, rate(http_requests_total[5m]))",
    "bottomk(2, queue_depth)",
    "bottomk without (instance) (1, http_requests_total)",
    "quantile(0.75, rate(http_requests_total[5m]))",
    "quantile by (job) (0.5, rate(http_requests_total[5m]))",
    "count_values(\"depth\", queue_depth)",
    "count_values by (job) (\"value\", up)",
    "sum(sum by (job, instance) (rate(http_requests_total[5m])))",
    "avg(avg_over_time(room_temperature_celsius[10m]))",
    // Arithmetic and comparison.
    "rate(http_requests_total[5m]) * 60",
    "http_requests_total / 1000 + 1",
    "node_memory_free_bytes / 1024 / 1024",
    "room_temperature_celsius % 3",
    "queue_depth ^ 2",
    "atan2(room_temperature_celsius, 10)",
    "queue_depth > 25",
    "queue_depth >= 25",
    "queue_depth < 10",
    "queue_depth <= 10",
    "queue_depth == 0",
    "queue_depth != 0",
    "queue_depth > bool 25",
    "room_temperature_celsius < bool 0",
    "1 > bool 2",
    "up == 0",
    // Vector matching.
    "sum by (job) (rate(http_requests_total{status=\"500\"}[5m])) / sum by (job) (rate(http_requests_total[5m]))",
    "rate(http_requests_total{status=\"500\"}[5m]) / ignoring (status) rate(http_requests_total{status=\"200\"}[5m])",
    "rate(http_requests_total{status=\"500\"}[5m]) / on (job, instance, method) rate(http_requests_total{status=\"200\"}[5m])",
    "rate(http_requests_total[5m]) / on (job, instance) group_left up",
    "up * on (job) group_left (version) build_info",
    "build_info * on (job) group_right (version) up",
    "sum by (job, instance) (rate(http_requests_total[5m])) * on (job, instance) group_left up",
    "http_requests_total and on (job) up",
    "http_requests_total{status=\"500\"} or http_requests_total{method=\"POST\"}",
    "http_requests_total unless on (status) http_requests_total{status=\"500\"}",
    "up unless up == 0",
    "queue_depth > 10 and queue_depth < 40",
    "queue_depth or vector(0)",
    "sum(rate(http_requests_total[5m])) by (job) > bool 10",
    "rate(http_requests_total[5m]) > on (job, instance, method, status) group_left rate(http_requests_total[5m] offset 5m)",
    // Dashboard panels.
    "sum by (job) (rate(http_requests_total{status=~\"5..\"}[5m])) / ignoring (status) sum by (job) (rate(http_requests_total[5m])) * 100",
    "topk(5, sum by (job, instance) (rate(http_requests_total[5m])))",
    "sum by (instance) (increase(http_requests_total[30m]))",
    "avg_over_time(up[1h]) * 100",
    "1 - avg by (job) (up)",
    "histogram_quantile(0.95, sum by (job, le) (rate(http_request_duration_seconds_bucket[5m]))) * 1000",
    "max(node_memory_free_bytes) - min(node_memory_free_bytes)",
    "sum(rate(http_requests_total[5m])) / count(up)",
    "predict_linear(node_memory_free_bytes[1h], 4 * 3600) < 1e9",
    "sort_desc(sum by (job) (increase(http_requests_total[1h])))",
    "count(count by (job) (up))",
    "quantile_over_time(0.99, rate(http_requests_total[5m])[30m:1m])",
];

/// A query's answer reduced to what must agree: series by label set, each with its points.
#[derive(Debug)]
enum Answer {
    Error(String),
    Scalar(i64, f64),
    Series(String, BTreeMap<String, Vec<(i64, f64)>>),
}

fn point(p: &serde_json::Value) -> (i64, f64) {
    let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
    let v = match p[1].as_str().unwrap() {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s.parse().unwrap(),
    };
    (t, v)
}

fn answer(v: &serde_json::Value) -> Answer {
    if v["status"] != "success" {
        return Answer::Error(v["errorType"].as_str().unwrap_or("?").to_owned());
    }
    let data = &v["data"];
    let kind = data["resultType"].as_str().unwrap().to_owned();
    if kind == "scalar" {
        let (t, x) = point(&data["result"]);
        return Answer::Scalar(t, x);
    }
    let mut series = BTreeMap::new();
    for s in data["result"].as_array().unwrap() {
        let labels: BTreeMap<String, String> = serde_json::from_value(s["metric"].clone()).unwrap();
        let key = format!("{labels:?}");
        let points = if let Some(vs) = s["values"].as_array() {
            vs.iter().map(point).collect()
        } else {
            vec![point(&s["value"])]
        };
        assert!(
            series.insert(key, points).is_none(),
            "duplicate series in {v}"
        );
    }
    Answer::Series(kind, series)
}

fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    // Relative 1e-9; sums that cancel to ~0 may differ in their last bits (Kahan vs naive summation).
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) || (a - b).abs() < 1e-12
}

/// Why two answers differ, if they do.
fn diff(ours: &Answer, theirs: &Answer) -> Option<String> {
    match (ours, theirs) {
        (Answer::Error(a), Answer::Error(b)) if a == b => None,
        (Answer::Scalar(ta, a), Answer::Scalar(tb, b)) if ta == tb && close(*a, *b) => None,
        (Answer::Series(ka, a), Answer::Series(kb, b)) => {
            if ka != kb {
                return Some(format!("result type {ka} vs {kb}"));
            }
            let ak: Vec<_> = a.keys().collect();
            let bk: Vec<_> = b.keys().collect();
            if ak != bk {
                return Some(format!("series differ:\n  ours   {ak:?}\n  theirs {bk:?}"));
            }
            for (k, pa) in a {
                let pb = &b[k];
                let same = pa.len() == pb.len()
                    && pa
                        .iter()
                        .zip(pb)
                        .all(|(x, y)| x.0 == y.0 && close(x.1, y.1));
                if !same {
                    let first = pa
                        .iter()
                        .zip(pb)
                        .find(|(x, y)| x.0 != y.0 || !close(x.1, y.1));
                    return Some(format!(
                        "{k}: {} vs {} points, first difference {first:?}",
                        pa.len(),
                        pb.len()
                    ));
                }
            }
            None
        }
        _ => Some(format!("{ours:?} vs {theirs:?}")),
    }
}

fn start_prometheus(prom: &Path, dir: &Path) -> (Peer, String) {
    let port = free_port();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(&cfg, "global:\n  scrape_interval: 1h\n").unwrap();
    let peer = Peer(
        Command::new(prom)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prom").display()
            ))
            .arg("--storage.tsdb.retention.time=3650d")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_for(Duration::from_secs(60), || {
        http()
            .get(format!("{base}/-/ready"))
            .send()
            .ok()
            .filter(|r| r.status().is_success())
    })
    .expect("prometheus did not start");
    (peer, base)
}

/// A promtool output line with its value (`… 1.25 @[t]`) rounded to 10 significant digits.
fn round_value(line: &str) -> String {
    let Some((head, time)) = line.rsplit_once(" @[") else {
        return line.to_owned();
    };
    let (prefix, value) = head.rsplit_once(' ').unwrap_or(("", head));
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() => format!("{prefix} {v:.9e} @[{time}"),
        _ => line.to_owned(),
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn promql_corpus_matches_prometheus_over_http() {
    let why = "PromQL interop with Prometheus 2.42 (apt-get install prometheus)";
    let (Some(prom), Some(promtool)) = (
        require_tool("prometheus", why),
        require_tool("promtool", why),
    ) else {
        return;
    };
    assert!(
        CORPUS.len() >= 150,
        "the corpus has {} queries",
        CORPUS.len()
    );
    let dir = tempfile::tempdir().unwrap();
    // Recent, whole-hour aligned data, so both servers keep it under any retention.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let base = (now - 4 * 3600) / 3600 * 3600;
    let file = dir.path().join("corpus.om");
    std::fs::write(&file, openmetrics(base)).unwrap();

    run(Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&file)
        .arg(dir.path().join("prom")));
    let data = dir.path().join("strata");
    run(Command::new(BIN)
        .args(["import", "openmetrics"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&data)
        .arg("--quiet"));
    let strata = Strata::start(BIN, &data, &[]);
    let (_prom, prom_base) = start_prometheus(&prom, dir.path());
    let ours_base = strata.url("/prometheus");

    let client = http();
    let ask = |url: &str, params: &[(&str, String)]| -> Answer {
        let v: serde_json::Value = client
            .post(url)
            .form(params)
            .send()
            .unwrap()
            .json()
            .unwrap();
        answer(&v)
    };
    // Instant queries at three times 7 s off the sample grid; range queries over 70 minutes. No window
    // (at most 1 h, plus offsets) reaches back past the first sample (see the module comment).
    let instants = [base + 3_907, base + 5_407, base + 7_822];
    let (start, end) = (base + 3_667, base + 7_807);
    let mut failures = Vec::new();
    let mut compared = 0;
    for q in CORPUS {
        for t in instants {
            let params = [("query", q.to_string()), ("time", t.to_string())];
            let ours = ask(&format!("{ours_base}/api/v1/query"), &params);
            let theirs = ask(&format!("{prom_base}/api/v1/query"), &params);
            compared += 1;
            if let Some(d) = diff(&ours, &theirs) {
                failures.push(format!("instant {q} @ {t}: {d}"));
            }
        }
        let params = [
            ("query", q.to_string()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("step", "60".to_string()),
        ];
        let ours = ask(&format!("{ours_base}/api/v1/query_range"), &params);
        let theirs = ask(&format!("{prom_base}/api/v1/query_range"), &params);
        compared += 1;
        if let Some(d) = diff(&ours, &theirs) {
            failures.push(format!("range {q}: {d}"));
        }
    }
    // Both sides must actually have data: a corpus of empty answers would agree trivially.
    let Answer::Series(_, s) = ask(
        &format!("{ours_base}/api/v1/query"),
        &[
            ("query", "count(http_requests_total)".into()),
            ("time", instants[1].to_string()),
        ],
    ) else {
        panic!("count failed");
    };
    assert_eq!(s.values().next().map(|p| p[0].1), Some(16.0));
    assert!(
        failures.is_empty(),
        "{} of {compared} answers differ from Prometheus 2.42:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // promtool, as an operator would use it, prints the same against both servers.
    // `promtool query <kind> [flags] <server> <expr>`; series order is not part of the answer, and values
    // are compared to 10 significant digits (Prometheus 3 sums with Kahan compensation, 2.42 does not).
    let promtool_out = |kind: &str, flags: &[String], server: &str, expr: &str| -> Vec<String> {
        let mut lines: Vec<String> = run(Command::new(&promtool)
            .args(["query", kind])
            .args(flags)
            .arg(server)
            .arg(expr))
        .lines()
        .map(round_value)
        .collect();
        lines.sort();
        lines
    };
    for q in [
        "sum by (job) (rate(http_requests_total[5m]))",
        "queue_depth > 25",
        "topk(2, queue_depth)",
        "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    ] {
        let instant = ("instant", vec![format!("--time={}", instants[1])]);
        let range = (
            "range",
            vec![
                format!("--start={start}"),
                format!("--end={end}"),
                "--step=5m".to_string(),
            ],
        );
        for (kind, flags) in [instant, range] {
            let ours = promtool_out(kind, &flags, &ours_base, q);
            let theirs = promtool_out(kind, &flags, &prom_base, q);
            assert!(
                !theirs.is_empty(),
                "promtool printed nothing for {kind} {q}"
            );
            assert_eq!(ours, theirs, "promtool query {kind} {q}");
        }
    }
}
