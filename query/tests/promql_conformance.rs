//! Runs Prometheus's PromQL test scripts (`promql/promqltest`, format in the shared reference §3)
//! against the engine over the in-memory reader. Every file in `../shared/promql-tests` is run except
//! `native_histograms.test`; a failing case fails the test unless `promql-skip.txt` lists it with a
//! reason, and a listed case that passes fails it too, so the list only shrinks.
//!
//! As in Prometheus's runner, an instant `eval` is also checked in range mode (the middle step of a
//! three-step range query around the same time) unless it expects an ordered result.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use promql_parser::parser::{self, AtModifier, Expr};
use regex::Regex;
use strata_query::memory::MemoryReader;
use strata_query::{Engine, EngineOptions, QueryOutput, Value};
use strata_store::{stale_nan, Label, Labels, Sample, METRIC_NAME};

const EXCLUDED_FILES: &[&str] = &["native_histograms.test"];
/// Relative error allowed between expected and actual values (`defaultEpsilon` in promqltest).
const EPSILON: f64 = 1e-6;

/// The shared scripts, or another directory of scripts named by `PROMQL_TESTS_DIR`.
fn scripts_dir() -> PathBuf {
    match std::env::var_os("PROMQL_TESTS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/promql-tests"
        )),
    }
}

fn skip_file() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/promql-skip.txt"
    ))
}

#[derive(Debug, Clone, Copy)]
enum SeqValue {
    Omitted,
    Float(f64),
    /// A native histogram, which the float-only store cannot hold.
    Histogram,
}

#[derive(Debug, Clone)]
struct Expectation {
    kind: &'static str,
    /// `None` matches anything.
    matcher: Option<TextMatch>,
}

#[derive(Debug, Clone)]
enum TextMatch {
    Exact(String),
    Pattern(Regex),
}

impl TextMatch {
    fn matches(&self, s: &str) -> bool {
        match self {
            TextMatch::Exact(m) => m == s,
            TextMatch::Pattern(r) => r.is_match(s),
        }
    }
}

#[derive(Debug, Default)]
struct EvalCase {
    line: usize,
    expr: String,
    range: Option<(i64, i64, i64)>,
    at: i64,
    fail: bool,
    ordered: bool,
    legacy_warn: bool,
    legacy_info: bool,
    fail_match: Option<TextMatch>,
    expectations: Vec<Expectation>,
    scalar: Option<f64>,
    series: Vec<(Labels, Vec<SeqValue>)>,
    expect_string: Option<String>,
    /// `expect range vector from … to … step …` for an instant query returning a matrix.
    range_vector: Option<(i64, i64, i64)>,
    uses_histograms: bool,
}

enum Command {
    Load {
        interval: i64,
        series: Vec<(Labels, Vec<SeqValue>)>,
    },
    Clear,
    Eval(Box<EvalCase>),
}

/// Prometheus's `model.ParseDuration`: `1h30m`, `5m`, `0`, … in milliseconds.
fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(0);
    }
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let re = Regex::new(
        r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$",
    )
    .unwrap();
    let caps = re
        .captures(body)
        .ok_or_else(|| format!("invalid duration {s:?}"))?;
    let units = [
        365 * 24 * 3_600_000i64,
        7 * 24 * 3_600_000,
        24 * 3_600_000,
        3_600_000,
        60_000,
        1000,
        1,
    ];
    let mut total = 0i64;
    let mut any = false;
    for (i, unit) in units.iter().enumerate() {
        if let Some(m) = caps.get(i + 1) {
            any = true;
            total += m.as_str().parse::<i64>().map_err(|e| e.to_string())? * unit;
        }
    }
    if !any {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(if neg { -total } else { total })
}

fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    let (sign, body) = match t.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, t.strip_prefix('+').unwrap_or(t)),
    };
    if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        return i64::from_str_radix(hex, 16).ok().map(|v| sign * v as f64);
    }
    match body.to_ascii_lowercase().as_str() {
        "inf" => return Some(sign * f64::INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    body.parse::<f64>().ok().map(|v| sign * v)
}

/// Splits `metric{labels} v1 v2 …` into the metric part and value tokens, keeping `{{…}}` whole.
fn split_series_line(line: &str) -> (String, Vec<String>) {
    let chars: Vec<char> = line.chars().collect();
    let mut depth = 0i32;
    let mut in_quote = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if in_quote {
            if c == '\\' {
                i += 1;
            } else if c == '"' {
                in_quote = false;
            }
        } else if c == '"' {
            in_quote = true;
        } else if c == '{' {
            depth += 1;
        } else if c == '}' {
            depth -= 1;
        } else if c.is_whitespace() && depth == 0 {
            break;
        }
        i += 1;
    }
    let metric: String = chars[..i].iter().collect();
    let rest: String = chars[i..].iter().collect();
    let mut tokens = Vec::new();
    let mut cur = String::new();
    let mut hist_depth = 0;
    let rc: Vec<char> = rest.chars().collect();
    let mut j = 0;
    while j < rc.len() {
        let c = rc[j];
        if c == '{' && rc.get(j + 1) == Some(&'{') {
            hist_depth += 1;
            cur.push_str("{{");
            j += 2;
            continue;
        }
        if c == '}' && rc.get(j + 1) == Some(&'}') && hist_depth > 0 {
            hist_depth -= 1;
            cur.push_str("}}");
            j += 2;
            continue;
        }
        if c.is_whitespace() && hist_depth == 0 {
            if !cur.is_empty() {
                tokens.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
        j += 1;
    }
    if !cur.is_empty() {
        tokens.push(cur);
    }
    (metric, tokens)
}

fn parse_labels(metric: &str) -> Result<Labels, String> {
    let compact: String = metric.chars().filter(|c| !c.is_whitespace()).collect();
    if compact == "{}" {
        return Ok(Labels::default());
    }
    let expr = parser::parse(metric).map_err(|e| format!("bad series {metric:?}: {e}"))?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(format!("bad series {metric:?}"));
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(name) = vs.name {
        pairs.push((METRIC_NAME.to_string(), name));
    }
    for m in vs.matchers.matchers {
        pairs.push((m.name, m.value));
    }
    Ok(Labels::from_pairs(pairs))
}

fn parse_values(tokens: &[String]) -> Result<Vec<SeqValue>, String> {
    // No hex here: in series values `0x59` is "0 repeated 59 times", as Prometheus's lexer reads it.
    let num = r"[-+]?(?:Inf|inf|NaN|nan|[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)";
    let re = Regex::new(&format!(
        r"^({num})(?:([-+](?:Inf|inf|[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)))?(?:x([0-9]+))?$"
    ))
    .unwrap();
    let mut out = Vec::new();
    for t in tokens {
        if t == "_" {
            out.push(SeqValue::Omitted);
        } else if let Some(n) = t.strip_prefix("_x") {
            let n: usize = n.parse().map_err(|_| format!("bad value {t:?}"))?;
            out.extend(std::iter::repeat_n(SeqValue::Omitted, n));
        } else if t == "stale" {
            out.push(SeqValue::Float(stale_nan()));
        } else if t.starts_with("{{") {
            let times = t
                .rsplit_once("}}x")
                .and_then(|(_, n)| n.parse::<usize>().ok())
                .map_or(1, |n| n + 1);
            out.extend(std::iter::repeat_n(SeqValue::Histogram, times));
        } else if let Some(c) = re.captures(t) {
            let start = parse_number(&c[1]).ok_or_else(|| format!("bad value {t:?}"))?;
            match c.get(3) {
                None => out.push(SeqValue::Float(start)),
                Some(times) => {
                    let times: usize = times
                        .as_str()
                        .parse()
                        .map_err(|_| format!("bad value {t:?}"))?;
                    let step = match c.get(2) {
                        Some(s) => {
                            parse_number(s.as_str()).ok_or_else(|| format!("bad value {t:?}"))?
                        }
                        None => 0.0,
                    };
                    let mut v = start;
                    for _ in 0..=times {
                        out.push(SeqValue::Float(v));
                        v += step;
                    }
                }
            }
        } else {
            return Err(format!("bad value {t:?}"));
        }
    }
    Ok(out)
}

fn parse_expect(line: &str) -> Result<Expectation, String> {
    let re =
        Regex::new(r"^expect\s+(ordered|fail|warn|no_warn|info|no_info)(?:\s+(regex|msg):(.+))?$")
            .unwrap();
    let c = re
        .captures(line.trim())
        .ok_or_else(|| format!("bad expect line {line:?}"))?;
    let kind = match &c[1] {
        "ordered" => "ordered",
        "fail" => "fail",
        "warn" => "warn",
        "no_warn" => "no_warn",
        "info" => "info",
        _ => "no_info",
    };
    let matcher = match c.get(2).map(|m| m.as_str()) {
        Some("msg") => Some(TextMatch::Exact(c[3].trim().to_string())),
        Some(_) => Some(TextMatch::Pattern(
            Regex::new(c[3].trim()).map_err(|e| e.to_string())?,
        )),
        None => None,
    };
    Ok(Expectation { kind, matcher })
}

/// Go's `strconv.Unquote` for the double-quoted strings the scripts use.
fn unquote(s: &str) -> Result<String, String> {
    match parser::parse(s) {
        Ok(Expr::StringLiteral(l)) => Ok(l.val),
        _ => Err(format!("bad string {s:?}")),
    }
}

fn parse_script(text: &str) -> Result<Vec<Command>, String> {
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let t = l.trim();
            if t.starts_with('#') {
                String::new()
            } else {
                t.to_string()
            }
        })
        .collect();
    let eval_instant =
        Regex::new(r"^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$")
            .unwrap();
    let eval_range = Regex::new(
        r"^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$",
    )
    .unwrap();
    let load = Regex::new(r"^load(?:_(with_nhcb))?\s+(.+?)$").unwrap();
    let range_vector =
        Regex::new(r"^expect range vector\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+)$").unwrap();
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = &lines[i];
        if l.is_empty() {
            i += 1;
            continue;
        }
        let first = l
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if first == "clear" {
            cmds.push(Command::Clear);
            i += 1;
        } else if first.starts_with("load") {
            let c = load
                .captures(l)
                .ok_or_else(|| format!("line {}: bad load", i + 1))?;
            let interval = parse_duration(&c[2])?;
            let mut series = Vec::new();
            i += 1;
            while i < lines.len() && !lines[i].is_empty() {
                let (metric, tokens) = split_series_line(&lines[i]);
                series.push((parse_labels(&metric)?, parse_values(&tokens)?));
                i += 1;
            }
            cmds.push(Command::Load { interval, series });
        } else if first.starts_with("eval") {
            let mut case = EvalCase {
                line: i + 1,
                ..Default::default()
            };
            let modifier;
            if let Some(c) = eval_instant.captures(l) {
                modifier = c.get(1).map(|m| m.as_str().to_string());
                case.at = match c.get(2) {
                    Some(t) => parse_duration(t.as_str())?,
                    None => 0,
                };
                case.expr = c[3].to_string();
            } else if let Some(c) = eval_range.captures(l) {
                modifier = c.get(1).map(|m| m.as_str().to_string());
                case.range = Some((
                    parse_duration(&c[2])?,
                    parse_duration(&c[3])?,
                    parse_duration(&c[4])?,
                ));
                case.expr = c[5].to_string();
            } else {
                return Err(format!("line {}: bad eval {l:?}", i + 1));
            }
            match modifier.as_deref() {
                Some("fail") => case.fail = true,
                Some("warn") => case.legacy_warn = true,
                Some("info") => case.legacy_info = true,
                Some("ordered") => case.ordered = true,
                _ => {}
            }
            i += 1;
            while i < lines.len() && !lines[i].is_empty() {
                let d = &lines[i];
                i += 1;
                if case.fail && d.starts_with("expected_fail_message") {
                    case.fail_match = Some(TextMatch::Exact(
                        d["expected_fail_message".len()..].trim().to_string(),
                    ));
                    break;
                }
                if case.fail && d.starts_with("expected_fail_regexp") {
                    let p = d["expected_fail_regexp".len()..].trim();
                    case.fail_match = Some(TextMatch::Pattern(
                        Regex::new(p).map_err(|e| e.to_string())?,
                    ));
                    break;
                }
                if let Some(c) = range_vector.captures(d) {
                    case.range_vector = Some((
                        parse_duration(&c[1])?,
                        parse_duration(&c[2])?,
                        parse_duration(&c[3])?,
                    ));
                    continue;
                }
                if let Some(s) = d.strip_prefix("expect string") {
                    case.expect_string = Some(unquote(s.trim())?);
                    continue;
                }
                if d.split(' ').next() == Some("expect") {
                    let e = parse_expect(d)?;
                    match e.kind {
                        "fail" => {
                            case.fail = true;
                            case.fail_match = e.matcher;
                        }
                        "ordered" => case.ordered = true,
                        _ => case.expectations.push(e),
                    }
                    continue;
                }
                if let Some(n) = parse_scalar_line(d) {
                    case.scalar = Some(n);
                    break;
                }
                if d.contains("{{") {
                    case.uses_histograms = true;
                }
                let (metric, tokens) = split_series_line(d);
                case.series
                    .push((parse_labels(&metric)?, parse_values(&tokens)?));
            }
            cmds.push(Command::Eval(Box::new(case)));
        } else {
            return Err(format!("line {}: unknown command {l:?}", i + 1));
        }
    }
    Ok(cmds)
}

/// A line holding only a number is an expected scalar (`strconv.ParseInt(s, 0, 64)` then `ParseFloat`).
fn parse_scalar_line(s: &str) -> Option<f64> {
    if s.contains(char::is_whitespace) || s.contains('{') {
        return None;
    }
    if s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && !matches!(s, "Inf" | "NaN" | "inf" | "nan")
    {
        return None;
    }
    parse_number(s)
}

/// `almost.Equal` from Prometheus: relative comparison, NaN equal to NaN.
fn almost_equal(a: f64, b: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let min_normal = f64::from_bits(0x0010_0000_0000_0000);
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < min_normal {
        return diff < EPSILON * min_normal;
    }
    diff / abs_sum.min(f64::MAX) < EPSILON
}

fn check_annotations(case: &EvalCase, out: &QueryOutput) -> Result<(), String> {
    if case.legacy_warn && out.warnings.is_empty() {
        return Err("expected warnings but got none".into());
    }
    if case.legacy_info && out.infos.is_empty() {
        return Err("expected info annotations but got none".into());
    }
    for (kind, none_kind, actual) in [
        ("warn", "no_warn", &out.warnings),
        ("info", "no_info", &out.infos),
    ] {
        let expected: Vec<&Expectation> = case
            .expectations
            .iter()
            .filter(|e| e.kind == kind)
            .collect();
        if !expected.is_empty() {
            if actual.is_empty() {
                return Err(format!("expected {kind} annotations but none were found"));
            }
            for e in &expected {
                if !actual
                    .iter()
                    .any(|a| e.matcher.as_ref().is_none_or(|m| m.matches(a)))
                {
                    return Err(format!(
                        "expected {kind} annotation {:?} not found in {actual:?}",
                        e.matcher
                    ));
                }
            }
            for a in actual.iter() {
                if !expected
                    .iter()
                    .any(|e| e.matcher.as_ref().is_none_or(|m| m.matches(a)))
                {
                    return Err(format!("unexpected {kind} annotation {a:?}"));
                }
            }
        }
        if case.expectations.iter().any(|e| e.kind == none_kind) && !actual.is_empty() {
            return Err(format!("unexpected {kind} annotations: {actual:?}"));
        }
    }
    Ok(())
}

fn compare_vector(case: &EvalCase, got: &[(Labels, i64, f64)]) -> Result<(), String> {
    if case.scalar.is_some() {
        return Err(format!("expected scalar, got vector {got:?}"));
    }
    let mut seen = BTreeSet::new();
    for (pos, (labels, _, v)) in got.iter().enumerate() {
        let Some(exp_pos) = case.series.iter().position(|(l, _)| l == labels) else {
            return Err(format!(
                "unexpected metric {labels} in result, has value {v}"
            ));
        };
        if case.ordered && exp_pos != pos {
            return Err(format!(
                "expected metric {labels} at position {} but was at {}",
                exp_pos + 1,
                pos + 1
            ));
        }
        match case.series[exp_pos].1.first() {
            Some(SeqValue::Float(e)) if almost_equal(*e, *v) => {}
            other => return Err(format!("expected {other:?} for {labels} but got {v}")),
        }
        seen.insert(exp_pos);
    }
    for (i, (labels, _)) in case.series.iter().enumerate() {
        if !seen.contains(&i) {
            return Err(format!("expected metric {labels} not found"));
        }
    }
    Ok(())
}

fn compare_matrix(
    case: &EvalCase,
    got: &[(Labels, Vec<Sample>)],
    start: i64,
    end: i64,
    step: i64,
) -> Result<(), String> {
    if case.scalar.is_some() {
        return Err("expected scalar, got matrix".into());
    }
    if got.windows(2).any(|w| w[0].0 > w[1].0) {
        return Err("matrix results should always be sorted by labels".into());
    }
    for (labels, points) in got {
        let Some((_, vals)) = case.series.iter().find(|(l, _)| l == labels) else {
            return Err(format!(
                "unexpected metric {labels} in result, has {points:?}"
            ));
        };
        let mut expected = Vec::new();
        for (i, v) in vals.iter().enumerate() {
            let t = start + i as i64 * step;
            if t > end {
                return Err(format!(
                    "expected {} points for {labels}, more than the range holds",
                    vals.len()
                ));
            }
            match v {
                SeqValue::Float(f) => expected.push((t, *f)),
                SeqValue::Omitted => {}
                SeqValue::Histogram => return Err("expected a native histogram".into()),
            }
        }
        if expected.len() != points.len() {
            return Err(format!(
                "expected {} points for {labels}, got {points:?}",
                expected.len()
            ));
        }
        for ((t, f), p) in expected.iter().zip(points) {
            if *t != p.t || !almost_equal(*f, p.v) {
                return Err(format!(
                    "expected {f}@{t} for {labels}, got {}@{} (all: {points:?})",
                    p.v, p.t
                ));
            }
        }
    }
    for (labels, _) in &case.series {
        if !got.iter().any(|(l, _)| l == labels) {
            return Err(format!("expected metric {labels} not found"));
        }
    }
    Ok(())
}

fn check_failure(case: &EvalCase, err: &strata_query::QueryError) -> Result<(), String> {
    if !case.fail {
        return Err(format!("error evaluating query: {err}"));
    }
    match &case.fail_match {
        Some(m) if !m.matches(&err.to_string()) => {
            Err(format!("expected error matching {m:?}, got: {err}"))
        }
        _ => Ok(()),
    }
}

fn run_case(engine: &Engine, reader: &MemoryReader, case: &EvalCase) -> Result<(), String> {
    if let Some((start, end, step)) = case.range {
        let out = match engine.range_query(reader, &case.expr, start, end, step) {
            Ok(out) => out,
            Err(e) => return check_failure(case, &e),
        };
        if case.fail {
            return Err("expected error but got none".into());
        }
        check_annotations(case, &out)?;
        let Value::Matrix(m) = &out.value else {
            return Err(format!("range query returned {:?}", out.value));
        };
        return compare_matrix(case, m, start, end, step);
    }
    run_instant(engine, reader, case, &case.expr, case.at)?;
    if case.range_vector.is_none() && case.expect_string.is_none() {
        for (expr, at) in at_modifier_variants(&case.expr, case.at) {
            run_instant(engine, reader, case, &expr, at)
                .map_err(|e| format!("with @ as `{expr}` at {at}ms: {e}"))?;
        }
    }
    Ok(())
}

fn run_instant(
    engine: &Engine,
    reader: &MemoryReader,
    case: &EvalCase,
    expr: &str,
    at: i64,
) -> Result<(), String> {
    let out = match engine.instant_query(reader, expr, at) {
        Ok(out) => out,
        Err(e) => return check_failure(case, &e),
    };
    if case.fail {
        return Err("expected error but got none".into());
    }
    check_annotations(case, &out)?;
    match &out.value {
        Value::Scalar(_, v) => match case.scalar {
            Some(e) if almost_equal(e, *v) => {}
            _ => return Err(format!("expected {:?}, got scalar {v}", case.scalar)),
        },
        Value::String(_, s) => {
            if case.expect_string.as_deref() != Some(s.as_str()) {
                return Err(format!(
                    "expected string {:?}, got {s:?}",
                    case.expect_string
                ));
            }
            return Ok(());
        }
        Value::Vector(v) => compare_vector(case, v)?,
        Value::Matrix(m) => {
            let Some((start, end, step)) = case.range_vector else {
                return Err(
                    "instant query returned a range vector without `expect range vector`".into(),
                );
            };
            return compare_matrix(case, m, start, end, step);
        }
    }
    if case.ordered || case.range_vector.is_some() || case.expect_string.is_some() {
        return Ok(());
    }
    let context_funcs = Regex::new(r"(start|end|range|step)\(\)").unwrap();
    if context_funcs.is_match(&case.expr) {
        return Ok(());
    }
    // Range mode: the same result at the middle of a three-step range query.
    let out = engine
        .range_query(
            reader,
            &case.expr,
            case.at - 60_000,
            case.at + 60_000,
            60_000,
        )
        .map_err(|e| format!("error in range mode: {e}"))?;
    let Value::Matrix(m) = &out.value else {
        return Err("range mode did not return a matrix".into());
    };
    if m.windows(2).any(|w| w[0].0 > w[1].0) {
        return Err("range mode: matrix results should always be sorted by labels".into());
    }
    let at_step: Vec<(Labels, i64, f64)> = m
        .iter()
        .filter_map(|(l, pts)| {
            pts.iter()
                .find(|p| p.t == case.at)
                .map(|p| (l.clone(), p.t, p.v))
        })
        .collect();
    match (&out.value, case.scalar) {
        (_, Some(e)) => {
            let v = at_step.first().map(|x| x.2).unwrap_or(f64::NAN);
            if !almost_equal(e, v) {
                return Err(format!("range mode: expected scalar {e}, got {v}"));
            }
            Ok(())
        }
        _ => compare_vector(case, &at_step).map_err(|e| format!("range mode: {e}")),
    }
}

/// Functions whose result depends on the evaluation time even with step-invariant arguments
/// (Prometheus `AtModifierUnsafeFunctions`).
const AT_UNSAFE_FUNCTIONS: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "time",
    "timestamp",
];

/// Pins every selector and subquery not already pinned (and not inside a pinned subquery) to `at`;
/// returns false if the expression uses a function that makes this change the result.
fn pin_to(expr: &mut Expr, at: &AtModifier) -> bool {
    match expr {
        Expr::Aggregate(a) => {
            pin_to(&mut a.expr, at) && a.param.as_mut().is_none_or(|p| pin_to(p, at))
        }
        Expr::Unary(u) => pin_to(&mut u.expr, at),
        Expr::Binary(b) => pin_to(&mut b.lhs, at) & pin_to(&mut b.rhs, at),
        Expr::Paren(p) => pin_to(&mut p.expr, at),
        Expr::Subquery(sq) => {
            if sq.at.is_none() {
                sq.at = Some(at.clone());
            }
            safe_under_at(&sq.expr)
        }
        Expr::VectorSelector(vs) => {
            vs.at.get_or_insert_with(|| at.clone());
            true
        }
        Expr::MatrixSelector(ms) => {
            ms.vs.at.get_or_insert_with(|| at.clone());
            true
        }
        Expr::Call(c) => {
            let mut ok = !AT_UNSAFE_FUNCTIONS.contains(&c.func.name);
            for a in c.args.args.iter_mut() {
                ok &= pin_to(a, at);
            }
            ok
        }
        _ => true,
    }
}

fn safe_under_at(expr: &Expr) -> bool {
    match expr {
        Expr::Aggregate(a) => {
            safe_under_at(&a.expr) && a.param.as_deref().is_none_or(safe_under_at)
        }
        Expr::Unary(u) => safe_under_at(&u.expr),
        Expr::Binary(b) => safe_under_at(&b.lhs) && safe_under_at(&b.rhs),
        Expr::Paren(p) => safe_under_at(&p.expr),
        Expr::Subquery(sq) => safe_under_at(&sq.expr),
        Expr::Call(c) => {
            !AT_UNSAFE_FUNCTIONS.contains(&c.func.name)
                && c.args.args.iter().all(|a| safe_under_at(a))
        }
        _ => true,
    }
}

/// Prometheus's step-invariance check: the query with every selector pinned to the evaluation time
/// by `@` must give the same result at other evaluation times.
fn at_modifier_variants(expr: &str, at_ms: i64) -> Vec<(String, i64)> {
    // Printing the rewritten query would turn Go byte escapes (`"\xff"`) into characters, which
    // is a different query, so such queries get no variants.
    if expr.contains("\\x") {
        return Vec::new();
    }
    let Ok(mut parsed) = parser::parse(expr) else {
        return Vec::new();
    };
    if at_ms < 0 {
        return Vec::new();
    }
    let at = AtModifier::At(std::time::UNIX_EPOCH + Duration::from_millis(at_ms as u64));
    if !pin_to(&mut parsed, &at) {
        return Vec::new();
    }
    let pinned = parsed.to_string();
    let times = if at_ms == 0 {
        vec![-1000, 0, 1000]
    } else {
        vec![-10 * at_ms, 0, at_ms / 5, at_ms, 10 * at_ms]
    };
    times.into_iter().map(|t| (pinned.clone(), t)).collect()
}

fn load(reader: &MemoryReader, interval: i64, series: &[(Labels, Vec<SeqValue>)]) -> bool {
    let mut all_float = true;
    for (labels, values) in series {
        let mut samples = Vec::new();
        for (i, v) in values.iter().enumerate() {
            match v {
                SeqValue::Float(f) => samples.push(Sample::new(i as i64 * interval, *f)),
                SeqValue::Omitted => {}
                SeqValue::Histogram => all_float = false,
            }
        }
        reader.append(labels.clone(), samples);
    }
    all_float
}

struct FileResult {
    passed: usize,
    failures: Vec<(usize, String)>,
}

fn run_file(path: &Path) -> Result<FileResult, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let cmds = parse_script(&text)?;
    let engine = Engine::new(EngineOptions {
        lookback_delta: Duration::from_secs(300),
        max_samples: 50_000_000,
        timeout: Duration::from_secs(100),
        default_subquery_step: Duration::from_secs(60),
        max_concurrency: 1,
    });
    let reader = MemoryReader::new();
    let mut result = FileResult {
        passed: 0,
        failures: Vec::new(),
    };
    let mut histograms_loaded = false;
    for cmd in cmds {
        match cmd {
            Command::Clear => {
                reader.clear();
                histograms_loaded = false;
            }
            Command::Load { interval, series } => {
                histograms_loaded |= !load(&reader, interval, &series);
            }
            Command::Eval(case) => {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_case(&engine, &reader, &case)
                }))
                .unwrap_or_else(|_| Err("engine panicked".into()));
                match outcome {
                    Ok(()) => result.passed += 1,
                    Err(msg) => {
                        let mut msg = format!("{}: {msg}", case.expr);
                        if case.uses_histograms || histograms_loaded {
                            msg.push_str(" [native histograms in data or expectation]");
                        }
                        result.failures.push((case.line, msg));
                    }
                }
            }
        }
    }
    Ok(result)
}

fn read_skip_list() -> BTreeMap<String, String> {
    let Ok(text) = std::fs::read_to_string(skip_file()) else {
        return BTreeMap::new();
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once(char::is_whitespace) {
            Some((k, reason)) => (k.to_string(), reason.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

#[test]
fn prometheus_promql_test_scripts() {
    let dir = scripts_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read PromQL test scripts at {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .filter(|p| {
            !EXCLUDED_FILES
                .iter()
                .any(|x| p.file_name().is_some_and(|f| f == *x))
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no PromQL test scripts in {}",
        dir.display()
    );

    let skip = read_skip_list();
    let mut report = String::new();
    let mut unexpected = Vec::new();
    let mut skipped_failures = BTreeSet::new();
    let (mut total_passed, mut total_failed) = (0, 0);
    for path in &files {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let result = match run_file(path) {
            Ok(r) => r,
            Err(e) => {
                unexpected.push(format!("{name}: cannot run script: {e}"));
                continue;
            }
        };
        total_passed += result.passed;
        total_failed += result.failures.len();
        let _ = writeln!(
            report,
            "{name}: {} passed, {} failed",
            result.passed,
            result.failures.len()
        );
        for (line, msg) in &result.failures {
            let key = format!("{name}:{line}");
            let listed = skip.contains_key(&key);
            let _ = writeln!(
                report,
                "  {} {key} {msg}",
                if listed { "SKIP" } else { "FAIL" }
            );
            if listed {
                skipped_failures.insert(key);
            } else {
                unexpected.push(format!("{key} {msg}"));
            }
        }
    }
    let run_names: BTreeSet<String> = files
        .iter()
        .map(|p| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string()
        })
        .collect();
    for key in skip.keys() {
        let file = key.split(':').next().unwrap_or("");
        if run_names.contains(file) && !skipped_failures.contains(key) {
            unexpected.push(format!(
                "{key} is listed in promql-skip.txt but passes (or no longer exists): remove it"
            ));
        }
    }
    println!("{report}");
    println!(
        "conformance: {total_passed} passed, {total_failed} failed ({} listed in the skip file)",
        skipped_failures.len()
    );
    assert!(
        unexpected.is_empty(),
        "{} unexpected results:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
}

#[test]
fn series_values_expand_like_promqltest() {
    let v = parse_values(&[
        "1+2x2".to_string(),
        "_x2".to_string(),
        "stale".to_string(),
        "-1-1x1".to_string(),
    ])
    .unwrap();
    let floats: Vec<String> = v
        .iter()
        .map(|x| match x {
            SeqValue::Float(f) if f.is_nan() => "stale".to_string(),
            SeqValue::Float(f) => f.to_string(),
            SeqValue::Omitted => "_".to_string(),
            SeqValue::Histogram => "h".to_string(),
        })
        .collect();
    assert_eq!(floats, ["1", "3", "5", "_", "_", "stale", "-1", "-2"]);
    assert_eq!(parse_duration("1h5m").unwrap(), 3_900_000);
    let l = parse_labels(r#"foo{a="b"}"#).unwrap();
    assert_eq!(
        l.as_slice(),
        &[Label::new("__name__", "foo"), Label::new("a", "b")]
    );
}
