//! PromQL functions (`prometheus/promql/functions.go`): per-sample math, date functions, label
//! manipulation, sorting, and the functions over range vectors (`rate`, `*_over_time`, …).

use std::sync::Arc;

use chrono::{DateTime, Datelike, Timelike, Utc};
use promql_parser::parser::{Call, Expr};
use strata_store::{Label, Labels, Sample, METRIC_NAME};

use crate::annotations;
use crate::error::{QueryError, Result};
use crate::evaluator::{Evaluator, Grid};
use crate::histogram;
use crate::selector::{self, RangeWindow, WindowCursor};
use crate::value::{merge_same_label_sets, Evaluated, Series};

/// Strips redundant parentheses, as Prometheus does for function arguments before evaluating.
pub(crate) fn unwrap_parens(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

fn string_arg(e: &Expr) -> Result<String> {
    match unwrap_parens(e) {
        Expr::StringLiteral(s) => Ok(s.val.clone()),
        _ => Err(QueryError::exec("expected string literal argument")),
    }
}

pub(crate) fn eval_call(ev: &mut Evaluator<'_>, call: &Call, grid: Grid) -> Result<Evaluated> {
    let name = call.func.name;
    let args: Vec<&Expr> = call.args.args.iter().map(|a| unwrap_parens(a)).collect();
    // The parser checks arity; checking again here keeps argument indexing below panic-free even
    // for a call built some other way.
    let declared = call.func.arg_types.len();
    let arity_ok = if call.func.variadic == 0 {
        args.len() == declared
    } else {
        args.len() + 1 >= declared
    };
    if !arity_ok {
        return Err(QueryError::Parse(format!(
            "wrong number of arguments in call to '{name}'"
        )));
    }
    match name {
        "time" => Ok(Evaluated::Scalar(
            grid.times().map(|t| t as f64 / 1000.0).collect(),
        )),
        "pi" => Ok(Evaluated::Scalar(vec![std::f64::consts::PI; grid.steps()])),
        "vector" => {
            let xs = ev.eval_scalar(args[0], grid)?;
            let points = grid
                .times()
                .zip(xs)
                .map(|(t, v)| Sample::new(t, v))
                .collect();
            Ok(Evaluated::Vector(vec![Series {
                labels: Arc::new(Labels::default()),
                points,
                drop_name: false,
            }]))
        }
        "scalar" => {
            let v = ev.eval(args[0], grid)?;
            let series = expect_vector(v)?;
            let mut out = vec![f64::NAN; grid.steps()];
            let mut counts = vec![0u32; grid.steps()];
            for s in &series {
                for p in &s.points {
                    let i = ((p.t - grid.start) / grid.interval) as usize;
                    counts[i] += 1;
                    out[i] = p.v;
                }
            }
            for (v, c) in out.iter_mut().zip(counts) {
                if c != 1 {
                    *v = f64::NAN;
                }
            }
            Ok(Evaluated::Scalar(out))
        }
        "absent" => {
            let v = ev.eval(args[0], grid)?;
            let series = expect_vector(v)?;
            let labels = Arc::new(absent_labels(args[0]));
            let mut present = vec![false; grid.steps()];
            for s in &series {
                for p in &s.points {
                    present[((p.t - grid.start) / grid.interval) as usize] = true;
                }
            }
            let points: Vec<Sample> = grid
                .times()
                .zip(present)
                .filter(|(_, p)| !p)
                .map(|(t, _)| Sample::new(t, 1.0))
                .collect();
            Ok(Evaluated::Vector(if points.is_empty() {
                Vec::new()
            } else {
                vec![Series {
                    labels,
                    points,
                    drop_name: false,
                }]
            }))
        }
        "label_replace" => label_replace(ev, &args, grid),
        "label_join" => label_join(ev, &args, grid),
        "timestamp" => {
            if let Expr::VectorSelector(vs) = args[0] {
                let mut series = selector::eval_instant_timestamps(ev, vs, grid)?;
                series.iter_mut().for_each(|s| s.drop_name = true);
                return Ok(Evaluated::Vector(series));
            }
            let mut series = expect_vector(ev.eval(args[0], grid)?)?;
            for s in &mut series {
                s.drop_name = true;
                s.points.iter_mut().for_each(|p| p.v = p.t as f64 / 1000.0);
            }
            Ok(Evaluated::Vector(series))
        }
        "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" => {
            sort_function(ev, name, &args, grid)
        }
        "histogram_quantile" => histogram::eval_quantile(ev, &args, grid),
        "histogram_fraction" => histogram::eval_fraction(ev, &args, grid),
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => {
            // These read only native histogram samples, which the store does not hold; an error
            // says so instead of an empty result that looks like missing data.
            Err(QueryError::exec(format!(
                "native histograms are not supported: {name}() needs native histogram samples"
            )))
        }
        // Experimental in Prometheus and off by default there, where the parser rejects it: the
        // same `bad_data` answer here.
        "info" => Err(QueryError::Parse("function \"info\" is not enabled".into())),
        "round" => {
            let to_nearest = match args.get(1) {
                Some(a) => Some(ev.eval_scalar(a, grid)?),
                None => None,
            };
            map_samples(ev, args[0], grid, |step, v| {
                let n = to_nearest.as_ref().map_or(1.0, |xs| xs[step]);
                // Prometheus rounds half up via the inverse, so `round(x, 0.1)` avoids 0.1's binary error.
                let inverse = 1.0 / n;
                Some((v * inverse + 0.5).floor() / inverse)
            })
        }
        "clamp" => {
            let lo = ev.eval_scalar(args[1], grid)?;
            let hi = ev.eval_scalar(args[2], grid)?;
            map_samples(ev, args[0], grid, |step, v| {
                if hi[step] < lo[step] {
                    None
                } else {
                    Some(go_max(lo[step], go_min(hi[step], v)))
                }
            })
        }
        "clamp_min" => {
            let lo = ev.eval_scalar(args[1], grid)?;
            map_samples(ev, args[0], grid, |step, v| Some(go_max(lo[step], v)))
        }
        "clamp_max" => {
            let hi = ev.eval_scalar(args[1], grid)?;
            map_samples(ev, args[0], grid, |step, v| Some(go_min(hi[step], v)))
        }
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute"
        | "month" | "year" => date_function(ev, name, &args, grid),
        _ => {
            if let Some(f) = math_function(name) {
                return map_samples(ev, args[0], grid, |_, v| Some(f(v)));
            }
            if let Some(f) = RangeFn::parse(name) {
                return eval_range_function(ev, name, f, &args, grid);
            }
            // Functions the parser knows from newer Prometheus releases than the one we follow.
            Err(QueryError::Parse(format!(
                "unknown function with name {name:?}"
            )))
        }
    }
}

pub(crate) fn expect_vector(v: Evaluated) -> Result<Vec<Series>> {
    match v {
        Evaluated::Vector(s) => Ok(s),
        _ => Err(QueryError::exec("expected instant vector")),
    }
}

/// Go's `math.Max`: NaN wins, unlike Rust's `f64::max`.
pub(crate) fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Go's `math.Min`: NaN wins.
pub(crate) fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn math_function(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => |v| v * 180.0 / std::f64::consts::PI,
        "rad" => |v| v * std::f64::consts::PI / 180.0,
        "sgn" => |v: f64| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                v
            }
        },
        _ => return None,
    })
}

/// Applies a per-sample function to every point of an instant vector; the name is dropped.
fn map_samples(
    ev: &mut Evaluator<'_>,
    arg: &Expr,
    grid: Grid,
    f: impl Fn(usize, f64) -> Option<f64>,
) -> Result<Evaluated> {
    let series = expect_vector(ev.eval(arg, grid)?)?;
    let mut out = Vec::with_capacity(series.len());
    for mut s in series {
        s.points.retain_mut(|p| {
            let step = ((p.t - grid.start) / grid.interval) as usize;
            match f(step, p.v) {
                Some(v) => {
                    p.v = v;
                    true
                }
                None => false,
            }
        });
        if !s.points.is_empty() {
            s.drop_name = true;
            out.push(s);
        }
    }
    Ok(Evaluated::Vector(out))
}

fn date_function(
    ev: &mut Evaluator<'_>,
    name: &str,
    args: &[&Expr],
    grid: Grid,
) -> Result<Evaluated> {
    let part = |secs: i64| -> f64 {
        let Some(t) = DateTime::<Utc>::from_timestamp(secs, 0) else {
            return f64::NAN;
        };
        match name {
            "day_of_month" => t.day() as f64,
            "day_of_week" => t.weekday().num_days_from_sunday() as f64,
            "day_of_year" => t.ordinal() as f64,
            "days_in_month" => days_in_month(t.year(), t.month()) as f64,
            "hour" => t.hour() as f64,
            "minute" => t.minute() as f64,
            "month" => t.month() as f64,
            _ => t.year() as f64,
        }
    };
    match args.first() {
        None => {
            let points = grid
                .times()
                .map(|t| Sample::new(t, part(t.div_euclid(1000))))
                .collect();
            Ok(Evaluated::Vector(vec![Series {
                labels: Arc::new(Labels::default()),
                points,
                drop_name: false,
            }]))
        }
        Some(arg) => map_samples(ev, arg, grid, |_, v| {
            if v.is_nan() || v.is_infinite() {
                // Go converts these to an arbitrary time; a NaN result is the honest answer.
                Some(f64::NAN)
            } else {
                Some(part(v as i64))
            }
        }),
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Labels `absent()` reports: the equality matchers of a plain selector argument.
fn absent_labels(arg: &Expr) -> Labels {
    let vs = match arg {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::default(),
    };
    // Prometheus's historic rule: the first equality matcher of a name sets it; any later matcher
    // of that name, or a non-equality one, removes it.
    let mut set: Vec<(String, String)> = Vec::new();
    let mut has: Vec<&str> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        let is_equal = matches!(m.op, promql_parser::label::MatchOp::Equal);
        if is_equal && !has.contains(&m.name.as_str()) {
            set.retain(|(n, _)| *n != m.name);
            set.push((m.name.clone(), m.value.clone()));
            has.push(&m.name);
        } else {
            set.retain(|(n, _)| *n != m.name);
        }
    }
    Labels::from_pairs(set)
}

fn set_label(labels: &Labels, name: &str, value: &str) -> Labels {
    let mut v: Vec<Label> = labels.iter().filter(|l| l.name != name).cloned().collect();
    if !value.is_empty() {
        v.push(Label::new(name, value));
        v.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Labels::from_sorted(v)
}

/// Compiles an RE2 pattern fully anchored, as Go's `regexp` would accept it: a `{` that starts no
/// repetition (`a{b}`) is a literal there, an error in Rust's `regex`, so it is escaped.
pub(crate) fn go_regex(pattern: &str) -> std::result::Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?s:{pattern})$")).or_else(|e| {
        let repetition = regex::Regex::new(r"^\{[0-9]+(,[0-9]*)?\}").map_err(|_| e.clone())?;
        let mut escaped = String::with_capacity(pattern.len() + 8);
        let mut prev_backslash = false;
        for (i, c) in pattern.char_indices() {
            if c == '{' && !prev_backslash && !repetition.is_match(&pattern[i..]) {
                escaped.push('\\');
            }
            prev_backslash = c == '\\' && !prev_backslash;
            escaped.push(c);
        }
        regex::Regex::new(&format!("^(?s:{escaped})$")).map_err(|_| e)
    })
}

fn label_replace(ev: &mut Evaluator<'_>, args: &[&Expr], grid: Grid) -> Result<Evaluated> {
    let dst = string_arg(args[1])?;
    let replacement = string_arg(args[2])?;
    let src = string_arg(args[3])?;
    let pattern = string_arg(args[4])?;
    let re = go_regex(&pattern).map_err(|_| {
        QueryError::exec(format!(
            "invalid regular expression in label_replace(): {pattern}"
        ))
    })?;
    if !ev.is_valid_label_name(&dst) {
        return Err(QueryError::exec(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let mut series = expect_vector(ev.eval(args[0], grid)?)?;
    for s in &mut series {
        let value = s.labels.get(&src).unwrap_or("");
        if let Some(caps) = re.captures(value) {
            let mut expanded = String::new();
            caps.expand(&replacement, &mut expanded);
            s.labels = Arc::new(set_label(&s.labels, &dst, &expanded));
            if dst == METRIC_NAME {
                s.drop_name = false;
            }
        }
    }
    Ok(Evaluated::Vector(merge_same_label_sets(series)?))
}

fn label_join(ev: &mut Evaluator<'_>, args: &[&Expr], grid: Grid) -> Result<Evaluated> {
    let dst = string_arg(args[1])?;
    let separator = string_arg(args[2])?;
    let sources: Vec<String> = args[3..]
        .iter()
        .map(|a| string_arg(a))
        .collect::<Result<_>>()?;
    if !ev.is_valid_label_name(&dst) {
        return Err(QueryError::exec(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    if let Some(bad) = sources.iter().find(|s| !ev.is_valid_label_name(s)) {
        return Err(QueryError::exec(format!(
            "invalid source label name in label_join(): {bad}"
        )));
    }
    let mut series = expect_vector(ev.eval(args[0], grid)?)?;
    for s in &mut series {
        let joined = sources
            .iter()
            .map(|n| s.labels.get(n).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(&separator);
        s.labels = Arc::new(set_label(&s.labels, &dst, &joined));
        if dst == METRIC_NAME {
            s.drop_name = false;
        }
    }
    Ok(Evaluated::Vector(merge_same_label_sets(series)?))
}

/// Natural order of label values (`facette/natsort`): runs of digits compare as numbers.
pub(crate) fn natural_less(a: &str, b: &str) -> bool {
    fn chunks(s: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[i - 1].is_ascii_digit() {
                out.push(&s[start..i]);
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (i, x) in ca.iter().enumerate() {
        let Some(y) = cb.get(i) else { return false };
        let last_a = i == ca.len() - 1;
        let last_b = i == cb.len() - 1;
        match (x.parse::<i64>(), y.parse::<i64>()) {
            (Ok(nx), Ok(ny)) if nx != ny => return nx < ny,
            (Ok(_), Ok(_)) => {}
            _ if x != y => return x < y,
            _ => {}
        }
        if last_a {
            return true;
        }
        if last_b {
            return false;
        }
    }
    false
}

fn sort_function(
    ev: &mut Evaluator<'_>,
    name: &str,
    args: &[&Expr],
    grid: Grid,
) -> Result<Evaluated> {
    let label_names: Vec<String> = args[1..]
        .iter()
        .map(|a| string_arg(a))
        .collect::<Result<_>>()?;
    let input = [ev.eval(args[0], grid)?];
    let series = ev.step_eval(grid, &input, |_, _, mut step_args| {
        let mut v = step_args.swap_remove(0);
        match name {
            // NaN sorts last in both directions.
            "sort" => v.sort_by(|a, b| nan_last(a.f, b.f, false)),
            "sort_desc" => v.sort_by(|a, b| nan_last(a.f, b.f, true)),
            _ => {
                let desc = name == "sort_by_label_desc";
                v.sort_by(|a, b| {
                    let ord = compare_by_labels(&a.labels, &b.labels, &label_names);
                    if desc {
                        ord.reverse()
                    } else {
                        ord
                    }
                });
            }
        }
        Ok(v)
    })?;
    Ok(Evaluated::Vector(series))
}

fn nan_last(a: f64, b: f64, desc: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ if desc => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

fn compare_by_labels(a: &Labels, b: &Labels, names: &[String]) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    for n in names {
        let (va, vb) = (a.get(n).unwrap_or(""), b.get(n).unwrap_or(""));
        if va == vb {
            continue;
        }
        return if natural_less(va, vb) {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    a.cmp(b)
}

/// A function over a range vector, resolved once per call rather than per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeFn {
    Rate,
    Irate,
    Increase,
    Delta,
    Idelta,
    Deriv,
    PredictLinear,
    Resets,
    Changes,
    DoubleExponentialSmoothing,
    AvgOverTime,
    SumOverTime,
    CountOverTime,
    MinOverTime,
    MaxOverTime,
    LastOverTime,
    FirstOverTime,
    PresentOverTime,
    AbsentOverTime,
    QuantileOverTime,
    StddevOverTime,
    StdvarOverTime,
    MadOverTime,
    TsOfMinOverTime,
    TsOfMaxOverTime,
    TsOfFirstOverTime,
    TsOfLastOverTime,
}

impl RangeFn {
    fn parse(name: &str) -> Option<RangeFn> {
        Some(match name {
            "rate" => RangeFn::Rate,
            "irate" => RangeFn::Irate,
            "increase" => RangeFn::Increase,
            "delta" => RangeFn::Delta,
            "idelta" => RangeFn::Idelta,
            "deriv" => RangeFn::Deriv,
            "predict_linear" => RangeFn::PredictLinear,
            "resets" => RangeFn::Resets,
            "changes" => RangeFn::Changes,
            "holt_winters" => RangeFn::DoubleExponentialSmoothing,
            "double_exponential_smoothing" => RangeFn::DoubleExponentialSmoothing,
            "avg_over_time" => RangeFn::AvgOverTime,
            "sum_over_time" => RangeFn::SumOverTime,
            "count_over_time" => RangeFn::CountOverTime,
            "min_over_time" => RangeFn::MinOverTime,
            "max_over_time" => RangeFn::MaxOverTime,
            "last_over_time" => RangeFn::LastOverTime,
            "first_over_time" => RangeFn::FirstOverTime,
            "present_over_time" => RangeFn::PresentOverTime,
            "absent_over_time" => RangeFn::AbsentOverTime,
            "quantile_over_time" => RangeFn::QuantileOverTime,
            "stddev_over_time" => RangeFn::StddevOverTime,
            "stdvar_over_time" => RangeFn::StdvarOverTime,
            "mad_over_time" => RangeFn::MadOverTime,
            "ts_of_min_over_time" => RangeFn::TsOfMinOverTime,
            "ts_of_max_over_time" => RangeFn::TsOfMaxOverTime,
            "ts_of_first_over_time" => RangeFn::TsOfFirstOverTime,
            "ts_of_last_over_time" => RangeFn::TsOfLastOverTime,
            _ => return None,
        })
    }
}

/// Evaluates a function over a range-vector argument, one window per series and step.
fn eval_range_function(
    ev: &mut Evaluator<'_>,
    name: &str,
    func: RangeFn,
    args: &[&Expr],
    grid: Grid,
) -> Result<Evaluated> {
    let matrix_index = args
        .iter()
        .position(|a| matches!(a, Expr::MatrixSelector(_) | Expr::Subquery(_)))
        .ok_or_else(|| QueryError::exec(format!("expected range vector argument to {name}()")))?;
    let mut scalars: Vec<Vec<f64>> = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i != matrix_index {
            scalars.push(ev.eval_scalar(a, grid)?);
        }
    }
    let keeps_name = matches!(func, RangeFn::LastOverTime | RangeFn::FirstOverTime);
    if let Some(sf) = scalars
        .first()
        .filter(|_| func == RangeFn::DoubleExponentialSmoothing)
    {
        for (&sf, &tf) in sf.iter().zip(&scalars[1]) {
            if !(sf > 0.0 && sf < 1.0) {
                return Err(QueryError::exec(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
                )));
            }
            if !(tf > 0.0 && tf < 1.0) {
                return Err(QueryError::exec(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
                )));
            }
        }
    }
    if func == RangeFn::QuantileOverTime {
        for &q in &scalars[0] {
            if q.is_nan() || !(0.0..=1.0).contains(&q) {
                ev.annotations.warn(annotations::invalid_quantile(q));
            }
        }
    }
    if func == RangeFn::AbsentOverTime {
        return absent_over_time(ev, args[matrix_index], grid).map(Evaluated::Vector);
    }

    // With `@` the window is the same at every step; unless the function or its parameters depend
    // on the evaluation time, compute once and repeat (Prometheus's step-invariant evaluation).
    let window = selector::range_window(ev, args[matrix_index])?;
    let step_invariant = window.at.is_some()
        && func != RangeFn::PredictLinear
        && scalars
            .iter()
            .all(|xs| xs.windows(2).all(|w| w[0].to_bits() == w[1].to_bits()));
    let mut out = Vec::new();
    let mut values = Vec::new();
    // Series by series, as the selection streams in: one series' samples are held at a time.
    selector::each_range_series(ev, args[matrix_index], grid, &mut |ev, s| {
        ev.check_interrupt()?;
        let points = range_points(
            ev,
            func,
            &s.points,
            window,
            grid,
            &scalars,
            step_invariant,
            &mut values,
        )?;
        if points.is_empty() {
            return Ok(());
        }
        if matches!(func, RangeFn::Rate | RangeFn::Increase) {
            if let Some(metric) = s.labels.metric_name() {
                if !["_total", "_sum", "_count", "_bucket"]
                    .iter()
                    .any(|suffix| metric.ends_with(suffix))
                {
                    ev.annotations
                        .info(annotations::possible_non_counter(metric));
                }
            }
        }
        ev.hold(points.len())?;
        out.push(Series {
            labels: s.labels,
            points,
            drop_name: if keeps_name { s.drop_name } else { true },
        });
        Ok(())
    })?;
    Ok(Evaluated::Vector(out))
}

/// The points of one range function over one series' samples, at every step of the grid.
#[allow(clippy::too_many_arguments)]
fn range_points(
    ev: &mut Evaluator<'_>,
    func: RangeFn,
    samples: &[Sample],
    cut: RangeWindow,
    grid: Grid,
    scalars: &[Vec<f64>],
    step_invariant: bool,
    values: &mut Vec<f64>,
) -> Result<Vec<Sample>> {
    let mut points: Vec<Sample> = Vec::with_capacity(grid.steps().min(samples.len() + 1));
    let mut cursor = WindowCursor::default();
    let mut extreme = SlidingExtreme::default();
    // Most counters never reset within a query's range; then no window needs to look for resets.
    let resets = matches!(func, RangeFn::Rate | RangeFn::Increase)
        && samples.windows(2).any(|w| w[1].v < w[0].v);
    for (step, ts) in grid.times().enumerate() {
        if step % 1024 == 1023 {
            ev.check_interrupt()?;
        }
        if step_invariant && step > 0 {
            if let Some(first) = points.first().copied() {
                points.push(Sample::new(ts, first.v));
            }
            continue;
        }
        let end = cut.window_end(ts);
        let bounds = cursor.bounds(samples, end, cut.range);
        let window = &samples[bounds.clone()];
        if window.is_empty() {
            continue;
        }
        let range_start = end.saturating_sub(cut.range);
        let v = match func {
            RangeFn::Rate => extrapolated_rate(window, range_start, end, true, true, resets),
            RangeFn::Increase => extrapolated_rate(window, range_start, end, true, false, resets),
            RangeFn::Delta => extrapolated_rate(window, range_start, end, false, false, false),
            RangeFn::Irate => instant_value(window, true),
            RangeFn::Idelta => instant_value(window, false),
            RangeFn::Deriv => (window.len() >= 2).then(|| linear_regression(window, window[0].t).0),
            RangeFn::PredictLinear => (window.len() >= 2).then(|| {
                let (slope, intercept) = linear_regression(window, ts);
                slope * scalars[0][step] + intercept
            }),
            RangeFn::Resets => Some(window.windows(2).filter(|w| w[1].v < w[0].v).count() as f64),
            RangeFn::Changes => Some(
                window
                    .windows(2)
                    .filter(|w| w[1].v != w[0].v && !(w[1].v.is_nan() && w[0].v.is_nan()))
                    .count() as f64,
            ),
            RangeFn::DoubleExponentialSmoothing => {
                double_exponential_smoothing(window, scalars[0][step], scalars[1][step])
            }
            RangeFn::AvgOverTime => Some(average(window.iter().map(|p| p.v))),
            RangeFn::SumOverTime => {
                let (sum, c) = window
                    .iter()
                    .fold((0.0, 0.0), |(s, c), p| kahan_sum_inc(p.v, s, c));
                Some(if sum.is_infinite() { sum } else { sum + c })
            }
            RangeFn::CountOverTime => Some(window.len() as f64),
            RangeFn::MinOverTime => Some(extreme.extreme(samples, bounds, |a, b| a < b)),
            RangeFn::MaxOverTime => Some(extreme.extreme(samples, bounds, |a, b| a > b)),
            RangeFn::LastOverTime => window.last().map(|p| p.v),
            RangeFn::FirstOverTime => window.first().map(|p| p.v),
            RangeFn::TsOfLastOverTime => window.last().map(|p| p.t as f64 / 1000.0),
            RangeFn::TsOfFirstOverTime => window.first().map(|p| p.t as f64 / 1000.0),
            RangeFn::TsOfMinOverTime => extreme_timestamp(window, |a, b| a <= b),
            RangeFn::TsOfMaxOverTime => extreme_timestamp(window, |a, b| a >= b),
            RangeFn::PresentOverTime => Some(1.0),
            RangeFn::QuantileOverTime => {
                values.clear();
                values.extend(window.iter().map(|p| p.v));
                Some(quantile(scalars[0][step], values))
            }
            RangeFn::StddevOverTime => Some(variance(window).sqrt()),
            RangeFn::StdvarOverTime => Some(variance(window)),
            RangeFn::MadOverTime => {
                values.clear();
                values.extend(window.iter().map(|p| p.v));
                let median = quantile(0.5, values);
                values.clear();
                values.extend(window.iter().map(|p| (p.v - median).abs()));
                Some(quantile(0.5, values))
            }
            RangeFn::AbsentOverTime => None,
        };
        if let Some(v) = v {
            points.push(Sample::new(ts, v));
        }
    }
    Ok(points)
}

/// `absent_over_time`: 1 at the steps where no selected series has a sample in the window.
fn absent_over_time(ev: &mut Evaluator<'_>, arg: &Expr, grid: Grid) -> Result<Vec<Series>> {
    let window = selector::range_window(ev, arg)?;
    let mut present = vec![false; grid.steps()];
    selector::each_range_series(ev, arg, grid, &mut |_, s| {
        let mut cursor = WindowCursor::default();
        for (step, ts) in grid.times().enumerate() {
            if !present[step] {
                present[step] = !cursor
                    .window(&s.points, window.window_end(ts), window.range)
                    .is_empty();
            }
        }
        Ok(())
    })?;
    let points: Vec<Sample> = grid
        .times()
        .zip(present)
        .filter(|&(_, present)| !present)
        .map(|(ts, _)| Sample::new(ts, 1.0))
        .collect();
    if points.is_empty() {
        return Ok(Vec::new());
    }
    let labels = match arg {
        Expr::MatrixSelector(_) => absent_labels(arg),
        _ => Labels::default(),
    };
    Ok(vec![Series {
        labels: Arc::new(labels),
        points,
        drop_name: true,
    }])
}

/// `min_over_time` and `max_over_time` over windows that only move forward: a monotonic queue of
/// the window's candidates, so each sample is looked at a constant number of times however long
/// the window. Gives what Prometheus's scan gives: the first of the best non-NaN values, NaN when
/// every value is NaN.
#[derive(Debug, Default)]
struct SlidingExtreme {
    /// Indices of non-NaN samples, each strictly better than every later one.
    queue: std::collections::VecDeque<usize>,
    /// The next sample not yet offered to the queue.
    next: usize,
}

impl SlidingExtreme {
    /// The extreme of `samples[bounds]`; `better(a, b)` is true when `a` beats `b`. Bounds must not
    /// move backwards between calls, and `better` must be the same in every call.
    fn extreme(
        &mut self,
        samples: &[Sample],
        bounds: std::ops::Range<usize>,
        better: impl Fn(f64, f64) -> bool,
    ) -> f64 {
        self.next = self.next.max(bounds.start);
        while self.next < bounds.end {
            let v = samples[self.next].v;
            if !v.is_nan() {
                while self.queue.back().is_some_and(|&i| better(v, samples[i].v)) {
                    self.queue.pop_back();
                }
                self.queue.push_back(self.next);
            }
            self.next += 1;
        }
        while self.queue.front().is_some_and(|&i| i < bounds.start) {
            self.queue.pop_front();
        }
        self.queue.front().map_or(f64::NAN, |&i| samples[i].v)
    }
}

fn extreme_timestamp(window: &[Sample], better: impl Fn(f64, f64) -> bool) -> Option<f64> {
    let mut best = window.first()?;
    for p in window {
        if better(p.v, best.v) || best.v.is_nan() {
            best = p;
        }
    }
    Some(best.t as f64 / 1000.0)
}

/// Kahan–Neumaier summation step, as Prometheus's `kahanSumInc`.
pub(crate) fn kahan_sum_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// The mean with Kahan summation, switching to an incremental mean if the plain sum would overflow.
pub(crate) fn average(mut values: impl Iterator<Item = f64>) -> f64 {
    let Some(first) = values.next() else {
        return f64::NAN;
    };
    let (mut sum, mut count, mut mean, mut c) = (first, 1.0f64, 0.0f64, 0.0f64);
    let mut incremental = false;
    for v in values {
        count += 1.0;
        if !incremental {
            let (new_sum, new_c) = kahan_sum_inc(v, sum, c);
            if !new_sum.is_infinite() {
                sum = new_sum;
                c = new_c;
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        let (m, nc) = kahan_sum_inc(v / count, q * mean, q * c);
        mean = m;
        c = nc;
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

fn variance(window: &[Sample]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for p in window {
        count += 1.0;
        let delta = p.v - (mean + c_mean);
        (mean, c_mean) = kahan_sum_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_sum_inc(delta * (p.v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// The φ-quantile of values by linear interpolation between closest ranks (Prometheus `quantile`).
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // NaN sorts first, as in Prometheus's value heap ordering.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// `rate`, `increase` and `delta`: the change over the window, corrected for counter resets and
/// extrapolated towards the window's edges (`extrapolatedRate` in Prometheus). `may_reset` false says the
/// caller knows the samples hold no counter reset.
pub(crate) fn extrapolated_rate(
    window: &[Sample],
    range_start: i64,
    range_end: i64,
    is_counter: bool,
    is_rate: bool,
    may_reset: bool,
) -> Option<f64> {
    if window.len() < 2 {
        return None;
    }
    let first = window[0];
    let last = window[window.len() - 1];
    let mut result = last.v - first.v;
    if is_counter && may_reset {
        for w in window.windows(2) {
            if w[1].v < w[0].v {
                result += w[0].v;
            }
        }
    }
    let mut duration_to_start = (first.t - range_start) as f64 / 1000.0;
    let mut duration_to_end = (range_end - last.t) as f64 / 1000.0;
    let sampled_interval = (last.t - first.t) as f64 / 1000.0;
    let average_between = sampled_interval / (window.len() - 1) as f64;
    // Extrapolate to a window edge only when a sample is about where one is expected; otherwise
    // assume the series starts or ends within the window, half an interval out.
    let threshold = average_between * 1.1;
    if duration_to_start >= threshold {
        duration_to_start = average_between / 2.0;
    }
    if is_counter && result > 0.0 && first.v >= 0.0 {
        // A counter cannot go below zero: don't extrapolate past the point where it would.
        let duration_to_zero = sampled_interval * (first.v / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    if duration_to_end >= threshold {
        duration_to_end = average_between / 2.0;
    }
    let mut factor = (sampled_interval + duration_to_start + duration_to_end) / sampled_interval;
    if is_rate {
        factor /= (range_end - range_start) as f64 / 1000.0;
    }
    Some(result * factor)
}

/// `irate` and `idelta`: from the last two samples.
fn instant_value(window: &[Sample], is_rate: bool) -> Option<f64> {
    if window.len() < 2 {
        return None;
    }
    let prev = window[window.len() - 2];
    let last = window[window.len() - 1];
    let interval = last.t - prev.t;
    if interval == 0 {
        return None;
    }
    let mut v = last.v;
    if !is_rate || last.v >= prev.v || last.v.is_nan() || prev.v.is_nan() {
        v = last.v - prev.v;
    }
    if is_rate {
        v /= interval as f64 / 1000.0;
    }
    Some(v)
}

/// Least-squares fit with x in seconds relative to `intercept_time` (Prometheus `linearRegression`).
pub(crate) fn linear_regression(window: &[Sample], intercept_time: i64) -> (f64, f64) {
    let (mut n, mut sum_x, mut cx, mut sum_y, mut cy, mut sum_xy, mut cxy, mut sum_x2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init_y = window[0].v;
    let mut const_y = true;
    for (i, p) in window.iter().enumerate() {
        if const_y && i > 0 && p.v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (p.t - intercept_time) as f64 / 1e3;
        (sum_x, cx) = kahan_sum_inc(x, sum_x, cx);
        (sum_y, cy) = kahan_sum_inc(p.v, sum_y, cy);
        (sum_xy, cxy) = kahan_sum_inc(x * p.v, sum_xy, cxy);
        (sum_x2, cx2) = kahan_sum_inc(x * x, sum_x2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sum_x += cx;
    sum_y += cy;
    sum_xy += cxy;
    sum_x2 += cx2;
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

fn double_exponential_smoothing(window: &[Sample], sf: f64, tf: f64) -> Option<f64> {
    if window.len() < 2 {
        return None;
    }
    let mut s0 = 0.0;
    let mut s1 = window[0].v;
    let mut b = window[1].v - window[0].v;
    for (i, p) in window.iter().enumerate().skip(1) {
        let x = sf * p.v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(points: &[(i64, f64)]) -> Vec<Sample> {
        points.iter().map(|&(t, v)| Sample::new(t, v)).collect()
    }

    #[test]
    fn sliding_extremes_agree_with_a_scan_of_each_window() {
        // Values with NaNs, ties and both zeros; windows of several lengths over uneven steps.
        let pool = [
            3.0,
            f64::NAN,
            -1.0,
            3.0,
            0.0,
            -0.0,
            7.5,
            f64::NAN,
            2.0,
            7.5,
            -4.0,
            0.0,
        ];
        let points: Vec<Sample> = (0..200)
            .map(|i| Sample::new(i * 10, pool[(i * 7 + i / 3) as usize % pool.len()]))
            .collect();
        let scan = |w: &[Sample], better: fn(f64, f64) -> bool| {
            w.iter().fold(
                w[0].v,
                |m, p| if better(p.v, m) || m.is_nan() { p.v } else { m },
            )
        };
        for better in [(|a, b| a < b) as fn(f64, f64) -> bool, |a, b| a > b] {
            for (range, step) in [(5, 10), (30, 10), (45, 25), (120, 7), (2000, 40)] {
                let (mut cursor, mut sliding) =
                    (WindowCursor::default(), SlidingExtreme::default());
                for end in (0..2100).step_by(step) {
                    let bounds = cursor.bounds(&points, end, range);
                    if bounds.is_empty() {
                        continue;
                    }
                    let want = scan(&points[bounds.clone()], better);
                    let got = sliding.extreme(&points, bounds, better);
                    assert_eq!(got.to_bits(), want.to_bits(), "range {range} end {end}");
                }
            }
        }
        // A window of NaNs only gives NaN.
        let nans = samples(&[(1, f64::NAN), (2, f64::NAN)]);
        assert!(SlidingExtreme::default()
            .extreme(&nans, 0..2, |a, b| a > b)
            .is_nan());
    }

    #[test]
    fn rate_extrapolates_to_window_edges() {
        // Samples every 10s from 10s to 50s, window (0s, 60s]: 40s sampled, extrapolated by 10s on
        // each side (within 1.1 × the 10s interval) → 60s worth of increase.
        let w = samples(&[
            (10_000, 10.0),
            (20_000, 20.0),
            (30_000, 30.0),
            (40_000, 40.0),
            (50_000, 50.0),
        ]);
        let inc = extrapolated_rate(&w, 0, 60_000, true, false, true).unwrap();
        // The counter would reach zero exactly at 0s, so the start extrapolation is capped there.
        assert!((inc - 60.0).abs() < 1e-9, "{inc}");
        let rate = extrapolated_rate(&w, 0, 60_000, true, true, true).unwrap();
        assert!((rate - 1.0).abs() < 1e-9);
    }

    #[test]
    fn rate_handles_counter_resets_and_far_edges() {
        // Reset from 30 to 5: the increase is 30 + 5 − 10 = 25 over 20s sampled.
        let w = samples(&[(100_000, 10.0), (110_000, 30.0), (120_000, 5.0)]);
        // Window (0, 200s]: both edges are far, so extrapolate half an interval (5s) each side.
        let inc = extrapolated_rate(&w, 0, 200_000, true, false, true).unwrap();
        assert!((inc - 25.0 * 30.0 / 20.0).abs() < 1e-9, "{inc}");
        assert_eq!(
            extrapolated_rate(&w[..1], 0, 200_000, true, false, true),
            None
        );
    }

    #[test]
    fn irate_uses_last_two_samples() {
        let w = samples(&[(0, 1.0), (10_000, 5.0), (20_000, 2.0)]);
        assert_eq!(instant_value(&w, true), Some(0.2)); // reset: last value over 10s
        assert_eq!(instant_value(&w, false), Some(-3.0));
    }

    #[test]
    fn quantile_interpolates_and_bounds() {
        let mut v = vec![4.0, 1.0, 2.0, 3.0];
        assert_eq!(quantile(0.5, &mut v), 2.5);
        assert_eq!(quantile(-1.0, &mut v), f64::NEG_INFINITY);
        assert!(quantile(f64::NAN, &mut v).is_nan());
    }

    #[test]
    fn natural_sort_compares_digit_runs_as_numbers() {
        assert!(natural_less("a2", "a10"));
        assert!(!natural_less("a10", "a2"));
        assert!(natural_less("abc", "abd"));
    }

    #[test]
    fn regexes_take_non_repetition_braces_literally() {
        assert!(go_regex("a{b}").unwrap().is_match("a{b}"));
        assert!(go_regex("a{2}").unwrap().is_match("aa"));
        assert!(go_regex("(").is_err());
    }

    #[test]
    fn go_min_max_propagate_nan() {
        assert!(go_max(1.0, f64::NAN).is_nan());
        assert!(go_min(f64::NAN, 1.0).is_nan());
        assert_eq!(go_max(1.0, 2.0), 2.0);
    }
}
