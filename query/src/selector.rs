//! Selecting data: instant-vector selectors with lookback and staleness, range-vector selectors and
//! subqueries as left-open windows `(t - range, t]` (Prometheus 3), with `offset` and `@`.

use std::sync::Arc;

use promql_parser::label::MatchOp as ParserMatchOp;
use promql_parser::parser::{Expr, VectorSelector};
use strata_store::{is_stale_nan, Labels, MatchOp, Matcher, Sample, SeriesSamples, METRIC_NAME};

use crate::error::{QueryError, Result};
use crate::evaluator::{duration_ms, offset_ms, Evaluator, Grid};
use crate::value::{Evaluated, Series};

/// The store matchers of a selector: one conjunction per `or` branch.
pub(crate) fn matcher_sets(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>> {
    let convert = |m: &promql_parser::label::Matcher| -> Result<Matcher> {
        let op = match m.op {
            ParserMatchOp::Equal => MatchOp::Equal,
            ParserMatchOp::NotEqual => MatchOp::NotEqual,
            ParserMatchOp::Re(_) => MatchOp::Regex,
            ParserMatchOp::NotRe(_) => MatchOp::NotRegex,
        };
        Matcher::new(op, m.name.clone(), m.value.clone()).or_else(|e| {
            // Go's RE2 takes a `{` that starts no repetition (`a{b}`) literally; Rust's regex
            // rejects it. The parser has already rewritten such patterns, so use its version.
            let rewritten = match &m.op {
                ParserMatchOp::Re(re) | ParserMatchOp::NotRe(re) => re
                    .as_str()
                    .strip_prefix("^(?:")
                    .and_then(|p| p.strip_suffix(")$"))
                    .map(str::to_string),
                _ => None,
            };
            match rewritten {
                Some(p) if p != m.value => Matcher::new(op, m.name.clone(), p),
                _ => Err(e),
            }
            .map_err(|e| QueryError::Parse(e.to_string()))
        })
    };
    let name = vs
        .name
        .as_ref()
        .map(|n| Matcher::equal(METRIC_NAME, n.clone()));
    let branches: Vec<&[promql_parser::label::Matcher]> = if vs.matchers.or_matchers.is_empty() {
        vec![vs.matchers.matchers.as_slice()]
    } else {
        vs.matchers
            .or_matchers
            .iter()
            .map(|b| b.as_slice())
            .collect()
    };
    branches
        .into_iter()
        .map(|branch| {
            let mut set: Vec<Matcher> = name.iter().cloned().collect();
            for m in branch {
                set.push(convert(m)?);
            }
            Ok(set)
        })
        .collect()
}

/// Parses a series selector as the HTTP API's `match[]` takes it (`up{job="api"}`), into one
/// conjunction of matchers per `or` branch. Anything but a plain instant-vector selector is a
/// `bad_data` error, as with Prometheus's `parser.ParseMetricSelector`.
pub fn parse_metric_selector(input: &str) -> Result<Vec<Vec<Matcher>>> {
    let expr = promql_parser::parser::parse(input).map_err(QueryError::Parse)?;
    match expr {
        Expr::VectorSelector(vs) if vs.offset.is_none() && vs.at.is_none() => matcher_sets(&vs),
        _ => Err(QueryError::Parse(format!(
            "invalid series selector {input:?}: expected a vector selector"
        ))),
    }
}

/// Reads the series of a selector with samples in `[mint, maxt]`, sorted by labels.
fn fetch(
    ev: &mut Evaluator<'_>,
    vs: &VectorSelector,
    mint: i64,
    maxt: i64,
) -> Result<Vec<SeriesSamples>> {
    ev.check_interrupt()?;
    if maxt < mint {
        return Ok(Vec::new());
    }
    let sets = matcher_sets(vs)?;
    let mut all: Vec<SeriesSamples> = Vec::new();
    for set in &sets {
        all.extend(ev.reader.select(set, mint, maxt)?);
    }
    if sets.len() > 1 {
        all.sort_by(|a, b| a.labels.cmp(&b.labels));
        all.dedup_by(|a, b| a.labels == b.labels);
    }
    let loaded: usize = all.iter().map(|s| s.samples.len()).sum();
    ev.hold(loaded)?;
    ev.release(loaded);
    Ok(all)
}

/// Evaluates an instant-vector selector at every step: the newest sample in `(t - lookback, t]`
/// unless it is a staleness marker.
pub(crate) fn eval_instant(
    ev: &mut Evaluator<'_>,
    vs: &VectorSelector,
    grid: Grid,
) -> Result<Vec<Series>> {
    select_instant(ev, vs, grid, false)
}

/// As [`eval_instant`], but each point's value is the selected sample's own timestamp in seconds
/// (what `timestamp()` of a selector reports).
pub(crate) fn eval_instant_timestamps(
    ev: &mut Evaluator<'_>,
    vs: &VectorSelector,
    grid: Grid,
) -> Result<Vec<Series>> {
    select_instant(ev, vs, grid, true)
}

fn select_instant(
    ev: &mut Evaluator<'_>,
    vs: &VectorSelector,
    grid: Grid,
    sample_time: bool,
) -> Result<Vec<Series>> {
    let offset = offset_ms(&vs.offset);
    let at = ev.at_ms(&vs.at);
    let lookback = ev.settings.lookback_ms;
    let (first_ref, last_ref) = match at {
        Some(a) => (a.saturating_sub(offset), a.saturating_sub(offset)),
        None => (
            grid.start.saturating_sub(offset),
            grid.end.saturating_sub(offset),
        ),
    };
    let mut out = Vec::new();
    let mint = first_ref.saturating_sub(lookback).saturating_add(1);
    // Series by series: only one series' raw samples are held at a time, then its step points.
    fetch_each(ev, vs, mint, last_ref, &mut |ev, s| {
        ev.check_interrupt()?;
        let mut points = Vec::new();
        let mut cursor = 0usize;
        for (step, ts) in grid.times().enumerate() {
            // Long grids over few series must still notice a deadline.
            if step % 1024 == 1023 {
                ev.check_interrupt()?;
            }
            let reference = at.unwrap_or(ts).saturating_sub(offset);
            while cursor < s.samples.len() && s.samples[cursor].t <= reference {
                cursor += 1;
            }
            if cursor == 0 {
                continue;
            }
            let sample = s.samples[cursor - 1];
            if sample.t <= reference.saturating_sub(lookback) || is_stale_nan(sample.v) {
                continue;
            }
            points.push(Sample::new(
                ts,
                if sample_time {
                    sample.t as f64 / 1000.0
                } else {
                    sample.v
                },
            ));
        }
        if !points.is_empty() {
            ev.hold(points.len())?;
            out.push(Series {
                labels: Arc::new(s.labels),
                points,
                drop_name: false,
            });
        }
        Ok(())
    })?;
    Ok(out)
}

/// Hands the series of a selector with samples in `[mint, maxt]` to `f` one at a time, in label order,
/// accounting each series' raw samples against the query's budget only while `f` runs.
fn fetch_each(
    ev: &mut Evaluator<'_>,
    vs: &VectorSelector,
    mint: i64,
    maxt: i64,
    f: &mut dyn FnMut(&mut Evaluator<'_>, SeriesSamples) -> Result<()>,
) -> Result<()> {
    ev.check_interrupt()?;
    if maxt < mint {
        return Ok(());
    }
    let sets = matcher_sets(vs)?;
    if sets.len() > 1 {
        // `or` branches may select a series twice: merge them first.
        for s in fetch(ev, vs, mint, maxt)? {
            f(ev, s)?;
        }
        return Ok(());
    }
    let reader = ev.reader;
    let mut failed: Option<QueryError> = None;
    let walk = reader.select_each(&sets[0], mint, maxt, &mut |s| {
        let n = s.samples.len();
        let r = ev.hold(n).and_then(|()| f(ev, s));
        ev.release(n);
        r.map_err(|e| {
            failed = Some(e);
            strata_store::Error::LimitExceeded("query stopped".into())
        })
    });
    match (walk, failed) {
        (_, Some(e)) => Err(e),
        (Err(e), None) => Err(e.into()),
        (Ok(()), None) => Ok(()),
    }
}

/// How a range-vector argument cuts its window at each evaluation time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RangeWindow {
    pub range: i64,
    pub offset: i64,
    pub at: Option<i64>,
}

impl RangeWindow {
    /// The end of the window at evaluation time `ts` (the window is `(end - range, end]`).
    pub fn window_end(&self, ts: i64) -> i64 {
        self.at.unwrap_or(ts).saturating_sub(self.offset)
    }

    /// Samples of one series inside the window ending at `end`.
    #[cfg(test)]
    pub fn window(points: &[Sample], end: i64, range: i64) -> &[Sample] {
        let start = end.saturating_sub(range);
        let lo = points.partition_point(|p| p.t <= start);
        let hi = points.partition_point(|p| p.t <= end);
        if lo >= hi {
            &[]
        } else {
            &points[lo..hi]
        }
    }
}

/// The window of one series at successive, non-decreasing window ends: both bounds only move forward,
/// so walking a whole grid costs one pass over the samples instead of two binary searches per step.
#[derive(Debug, Default)]
pub(crate) struct WindowCursor {
    lo: usize,
    hi: usize,
}

impl WindowCursor {
    /// Samples in `(end - range, end]`; `end` must not be below the previous call's.
    pub fn window<'p>(&mut self, points: &'p [Sample], end: i64, range: i64) -> &'p [Sample] {
        &points[self.bounds(points, end, range)]
    }

    /// The indices of [`WindowCursor::window`]'s samples.
    pub fn bounds(&mut self, points: &[Sample], end: i64, range: i64) -> std::ops::Range<usize> {
        let start = end.saturating_sub(range);
        while self.lo < points.len() && points[self.lo].t <= start {
            self.lo += 1;
        }
        self.hi = self.hi.max(self.lo);
        while self.hi < points.len() && points[self.hi].t <= end {
            self.hi += 1;
        }
        self.lo..self.hi
    }
}

/// Evaluates a matrix selector or a subquery into its samples for the whole grid.
pub(crate) fn eval_range_source(
    ev: &mut Evaluator<'_>,
    expr: &Expr,
    grid: Grid,
) -> Result<Vec<Series>> {
    let mut series = Vec::new();
    each_range_series(ev, expr, grid, &mut |ev, s| {
        ev.hold(s.points.len())?;
        series.push(s);
        Ok(())
    })?;
    Ok(series)
}

/// How a matrix selector or a subquery cuts its windows.
pub(crate) fn range_window(ev: &Evaluator<'_>, expr: &Expr) -> Result<RangeWindow> {
    match expr {
        Expr::Paren(p) => range_window(ev, &p.expr),
        Expr::MatrixSelector(ms) => Ok(RangeWindow {
            range: duration_ms(&ms.range),
            offset: offset_ms(&ms.vs.offset),
            at: ev.at_ms(&ms.vs.at),
        }),
        Expr::Subquery(sq) => Ok(RangeWindow {
            range: duration_ms(&sq.range),
            offset: offset_ms(&sq.offset),
            at: ev.at_ms(&sq.at),
        }),
        _ => Err(QueryError::exec("expected a range vector")),
    }
}

/// Hands the series of a matrix selector or a subquery, with their samples for the whole grid (cut
/// by [`range_window`]), to `f` one at a time in label order. A matrix selector is streamed from
/// the store: only the series `f` is looking at is held in memory.
pub(crate) fn each_range_series(
    ev: &mut Evaluator<'_>,
    expr: &Expr,
    grid: Grid,
    f: &mut dyn FnMut(&mut Evaluator<'_>, Series) -> Result<()>,
) -> Result<()> {
    let window = range_window(ev, expr)?;
    match expr {
        Expr::Paren(p) => each_range_series(ev, &p.expr, grid, f),
        Expr::MatrixSelector(ms) => {
            let (first_end, last_end) = match window.at {
                Some(_) => (window.window_end(0), window.window_end(0)),
                None => (window.window_end(grid.start), window.window_end(grid.end)),
            };
            let mint = first_end.saturating_sub(window.range).saturating_add(1);
            fetch_each(ev, &ms.vs, mint, last_end, &mut |ev, s| {
                // Range selections ignore staleness markers: they only end instant-vector lookback.
                let mut points = s.samples;
                points.retain(|p| !is_stale_nan(p.v));
                if points.is_empty() {
                    return Ok(());
                }
                f(
                    ev,
                    Series {
                        labels: Arc::new(s.labels),
                        points,
                        drop_name: false,
                    },
                )
            })
        }
        Expr::Subquery(sq) => {
            let step = match &sq.step {
                Some(s) => duration_ms(s),
                None => ev.settings.no_step_subquery_interval_ms,
            };
            if step <= 0 {
                return Err(QueryError::exec("subquery step must be positive"));
            }
            let (outer_start, outer_end) = match window.at {
                Some(a) => (a, a),
                None => (grid.start, grid.end),
            };
            // The first step-aligned time after `start - offset - range`, as Prometheus aligns
            // subquery steps to absolute multiples of the step.
            let base = outer_start
                .saturating_sub(window.offset)
                .saturating_sub(window.range);
            let mut start = base.div_euclid(step).saturating_mul(step);
            if start <= base {
                start = start.saturating_add(step);
            }
            let inner = Grid {
                start,
                end: outer_end.saturating_sub(window.offset),
                interval: step,
            };
            let series = match ev.eval(&sq.expr, inner)? {
                Evaluated::Vector(s) => s,
                Evaluated::Scalar(xs) => {
                    let points = inner
                        .times()
                        .zip(xs)
                        .map(|(t, v)| Sample::new(t, v))
                        .collect();
                    vec![Series {
                        labels: Arc::new(Labels::default()),
                        points,
                        drop_name: false,
                    }]
                }
                _ => {
                    return Err(QueryError::exec(
                        "subquery is only allowed on instant vector",
                    ))
                }
            };
            for s in series {
                f(ev, s)?;
            }
            Ok(())
        }
        _ => Err(QueryError::exec("expected a range vector")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_selectors_parse_into_matcher_sets() {
        let sets = parse_metric_selector(r#"up{job=~"api|db", env!="dev"}"#).unwrap();
        assert_eq!(sets.len(), 1);
        let text: Vec<String> = sets[0].iter().map(|m| m.to_string()).collect();
        assert_eq!(
            text,
            [r#"__name__="up""#, r#"job=~"api|db""#, r#"env!="dev""#]
        );
        assert!(parse_metric_selector("up[5m]").is_err());
        assert!(parse_metric_selector("sum(up)").is_err());
        assert!(parse_metric_selector("up offset 5m").is_err());
        // A brace that starts no repetition is literal, as in Go's RE2.
        let sets = parse_metric_selector(r#"up{job=~"a{b}"}"#).unwrap();
        assert!(sets[0][1].matches("a{b}"));
    }

    #[test]
    fn window_cursor_agrees_with_binary_search() {
        // Irregular timestamps, windows shorter and longer than the gaps, ends on and off samples.
        let points: Vec<Sample> = [3i64, 4, 10, 25, 26, 27, 60, 61, 100]
            .iter()
            .map(|&t| Sample::new(t, t as f64))
            .collect();
        for range in [1, 5, 15, 40, 200] {
            for offset in [0, 1, 7] {
                let mut c = WindowCursor::default();
                for end in (-10..130).step_by(3).map(|e| e + offset) {
                    assert_eq!(
                        c.window(&points, end, range),
                        RangeWindow::window(&points, end, range),
                        "range {range} end {end}"
                    );
                }
            }
        }
    }
}
