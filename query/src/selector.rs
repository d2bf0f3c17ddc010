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
    let raw = fetch(
        ev,
        vs,
        first_ref.saturating_sub(lookback).saturating_add(1),
        last_ref,
    )?;
    let mut out = Vec::with_capacity(raw.len());
    for s in raw {
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
    }
    Ok(out)
}

/// Samples of a range-vector argument plus how to cut the window for each evaluation time.
pub(crate) struct RangeSource {
    pub series: Vec<Series>,
    pub range: i64,
    pub offset: i64,
    pub at: Option<i64>,
}

impl RangeSource {
    /// The end of the window at evaluation time `ts` (the window is `(end - range, end]`).
    pub fn window_end(&self, ts: i64) -> i64 {
        self.at.unwrap_or(ts).saturating_sub(self.offset)
    }

    /// Samples of one series inside the window ending at `end`.
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
        let start = end.saturating_sub(range);
        while self.lo < points.len() && points[self.lo].t <= start {
            self.lo += 1;
        }
        self.hi = self.hi.max(self.lo);
        while self.hi < points.len() && points[self.hi].t <= end {
            self.hi += 1;
        }
        &points[self.lo..self.hi]
    }
}

/// Evaluates a matrix selector or a subquery into its samples for the whole grid.
pub(crate) fn eval_range_source(
    ev: &mut Evaluator<'_>,
    expr: &Expr,
    grid: Grid,
) -> Result<RangeSource> {
    match expr {
        Expr::Paren(p) => eval_range_source(ev, &p.expr, grid),
        Expr::MatrixSelector(ms) => {
            let offset = offset_ms(&ms.vs.offset);
            let at = ev.at_ms(&ms.vs.at);
            let range = duration_ms(&ms.range);
            let (first_end, last_end) = match at {
                Some(a) => (a.saturating_sub(offset), a.saturating_sub(offset)),
                None => (
                    grid.start.saturating_sub(offset),
                    grid.end.saturating_sub(offset),
                ),
            };
            let raw = fetch(
                ev,
                &ms.vs,
                first_end.saturating_sub(range).saturating_add(1),
                last_end,
            )?;
            let mut series = Vec::with_capacity(raw.len());
            for s in raw {
                // Range selections ignore staleness markers: they only end instant-vector lookback.
                let points: Vec<Sample> = s
                    .samples
                    .into_iter()
                    .filter(|p| !is_stale_nan(p.v))
                    .collect();
                if !points.is_empty() {
                    ev.hold(points.len())?;
                    series.push(Series {
                        labels: Arc::new(s.labels),
                        points,
                        drop_name: false,
                    });
                }
            }
            Ok(RangeSource {
                series,
                range,
                offset,
                at,
            })
        }
        Expr::Subquery(sq) => {
            let offset = offset_ms(&sq.offset);
            let at = ev.at_ms(&sq.at);
            let range = duration_ms(&sq.range);
            let step = match &sq.step {
                Some(s) => duration_ms(s),
                None => ev.settings.no_step_subquery_interval_ms,
            };
            if step <= 0 {
                return Err(QueryError::exec("subquery step must be positive"));
            }
            let (outer_start, outer_end) = match at {
                Some(a) => (a, a),
                None => (grid.start, grid.end),
            };
            // The first step-aligned time after `start - offset - range`, as Prometheus aligns
            // subquery steps to absolute multiples of the step.
            let base = outer_start.saturating_sub(offset).saturating_sub(range);
            let mut start = base.div_euclid(step).saturating_mul(step);
            if start <= base {
                start = start.saturating_add(step);
            }
            let inner = Grid {
                start,
                end: outer_end.saturating_sub(offset),
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
            Ok(RangeSource {
                series,
                range,
                offset,
                at,
            })
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
                        RangeSource::window(&points, end, range),
                        "range {range} end {end}"
                    );
                }
            }
        }
    }
}
