//! The evaluator: walks the parsed expression and evaluates every node over a whole step grid, the way
//! Prometheus's range evaluation does. An instant query is a grid of one step. Sample budget, deadline
//! and cancellation are checked as evaluation goes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use promql_parser::parser::{AtModifier, Expr, Offset};
use strata_store::{Labels, MetricsReader, Sample};

use crate::annotations::Annotations;
use crate::error::{QueryError, Result};
use crate::value::{ByIdentity, Evaluated, IdentityMap, Series, StepSample};
use crate::{aggregation, binary, functions, selector};

/// The evaluation times of a node: `start, start + interval, …` up to and including `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grid {
    pub start: i64,
    pub end: i64,
    pub interval: i64,
}

impl Grid {
    pub fn steps(&self) -> usize {
        if self.end < self.start {
            return 0;
        }
        let steps =
            (i128::from(self.end) - i128::from(self.start)) / i128::from(self.interval.max(1)) + 1;
        usize::try_from(steps).unwrap_or(usize::MAX)
    }

    pub fn ts(&self, step: usize) -> i64 {
        // Computed wide so absurd grids (start near i64::MIN, huge steps) cannot overflow.
        let t = i128::from(self.start) + step as i128 * i128::from(self.interval);
        i64::try_from(t).unwrap_or(if t < 0 { i64::MIN } else { i64::MAX })
    }

    pub fn times(&self) -> impl Iterator<Item = i64> {
        let g = *self;
        (0..g.steps()).map(move |i| g.ts(i))
    }
}

/// Settings of one query run.
#[derive(Debug, Clone)]
pub(crate) struct RunSettings {
    pub lookback_ms: i64,
    pub max_samples: usize,
    pub deadline: Option<Instant>,
    pub cancel: Option<Arc<AtomicBool>>,
    pub no_step_subquery_interval_ms: i64,
    /// Start and end of the query, for `@ start()` and `@ end()`.
    pub query_start: i64,
    pub query_end: i64,
    /// String literals that are invalid UTF-8 in Prometheus (see `engine::invalid_utf8_literals`).
    pub invalid_utf8_literals: Vec<(String, String)>,
}

pub(crate) struct Evaluator<'a> {
    pub reader: &'a dyn MetricsReader,
    pub settings: RunSettings,
    pub annotations: Annotations,
    /// Samples currently held by evaluated nodes (Prometheus's `currentSamples`, approximated per node).
    held_samples: usize,
    checks: u32,
}

impl<'a> Evaluator<'a> {
    pub fn new(reader: &'a dyn MetricsReader, settings: RunSettings) -> Self {
        Evaluator {
            reader,
            settings,
            annotations: Annotations::default(),
            held_samples: 0,
            checks: 0,
        }
    }

    /// Fails once the deadline has passed or the query was canceled. Cheap enough to call per series.
    pub fn check_interrupt(&mut self) -> Result<()> {
        self.checks = self.checks.wrapping_add(1);
        if let Some(c) = &self.settings.cancel {
            if c.load(Ordering::Relaxed) {
                return Err(QueryError::Canceled("expression evaluation"));
            }
        }
        // Reading the clock on every call is measurable in tight loops; every 64th call is enough.
        if self.checks.is_multiple_of(64) {
            if let Some(d) = self.settings.deadline {
                if Instant::now() >= d {
                    return Err(QueryError::Timeout("expression evaluation"));
                }
            }
        }
        Ok(())
    }

    /// Accounts for `n` more samples held in memory, failing past the query's budget.
    pub fn hold(&mut self, n: usize) -> Result<()> {
        self.held_samples = self.held_samples.saturating_add(n);
        if self.held_samples > self.settings.max_samples {
            return Err(QueryError::TooManySamples);
        }
        Ok(())
    }

    pub fn release(&mut self, n: usize) {
        self.held_samples = self.held_samples.saturating_sub(n);
    }

    /// Checks a grid before allocating per-step buffers: a step count beyond the sample budget could
    /// never produce a result anyway.
    pub fn check_grid(&self, grid: Grid) -> Result<()> {
        if grid.interval <= 0 {
            return Err(QueryError::InvalidParameter(
                "zero or negative query resolution step widths are not accepted".into(),
            ));
        }
        if grid.steps() > self.settings.max_samples {
            return Err(QueryError::TooManySamples);
        }
        Ok(())
    }

    /// Prometheus accepts any non-empty UTF-8 label name; names Go would see as invalid UTF-8 fail.
    pub fn is_valid_label_name(&self, name: &str) -> bool {
        !name.is_empty()
            && !self
                .settings
                .invalid_utf8_literals
                .iter()
                .any(|(s, _)| s == name)
    }

    /// A string as Go's `%q` prints it, with the original bytes of literals Go saw as invalid UTF-8.
    pub fn go_quoted(&self, s: &str) -> String {
        match self
            .settings
            .invalid_utf8_literals
            .iter()
            .find(|(d, _)| d == s)
        {
            Some((_, quoted)) => quoted.clone(),
            None => format!("{s:?}"),
        }
    }

    /// Resolves an `@` modifier to milliseconds.
    pub fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.settings.query_start),
            Some(AtModifier::End) => Some(self.settings.query_end),
            Some(AtModifier::At(t)) => Some(match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
                Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
            }),
        }
    }

    /// Evaluates a node. While it runs, its inputs count against the sample budget; once it is done,
    /// only its result does (the inputs are dropped), as Prometheus accounts `currentSamples`.
    pub fn eval(&mut self, expr: &Expr, grid: Grid) -> Result<Evaluated> {
        self.check_interrupt()?;
        self.check_grid(grid)?;
        let held_before = self.held_samples;
        let result = self.eval_node(expr, grid)?;
        self.held_samples = held_before;
        self.hold(result.point_count())?;
        Ok(result)
    }

    fn eval_node(&mut self, expr: &Expr, grid: Grid) -> Result<Evaluated> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Evaluated::Scalar(vec![n.val; grid.steps()])),
            Expr::StringLiteral(s) => Ok(Evaluated::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, grid),
            Expr::Unary(u) => match self.eval(&u.expr, grid)? {
                Evaluated::Scalar(mut xs) => {
                    xs.iter_mut().for_each(|x| *x = -*x);
                    Ok(Evaluated::Scalar(xs))
                }
                Evaluated::Vector(mut series) => {
                    for s in &mut series {
                        s.drop_name = true;
                        s.points.iter_mut().for_each(|p| p.v = -p.v);
                    }
                    Ok(Evaluated::Vector(series))
                }
                _ => Err(QueryError::exec(
                    "unary expression only allowed on expressions of type scalar or vector",
                )),
            },
            Expr::VectorSelector(vs) => {
                Ok(Evaluated::Vector(selector::eval_instant(self, vs, grid)?))
            }
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                if grid.steps() != 1 {
                    return Err(QueryError::exec(
                        "cannot do range evaluation of matrix selector",
                    ));
                }
                Ok(Evaluated::Matrix(selector::eval_range_source(
                    self, expr, grid,
                )?))
            }
            Expr::Call(call) => functions::eval_call(self, call, grid),
            Expr::Aggregate(agg) => aggregation::eval(self, agg, grid),
            Expr::Binary(bin) => binary::eval(self, bin, grid),
            Expr::Extension(_) => Err(QueryError::exec("extension expressions are not supported")),
        }
    }

    /// Takes evaluated instant vectors, then calls `op` at every step with the inputs' values at that step and
    /// assembles its outputs into series. Two outputs with one label set at one step are an error,
    /// as in Prometheus.
    pub fn step_eval(
        &mut self,
        grid: Grid,
        inputs: &[Evaluated],
        mut op: impl FnMut(&mut Self, i64, Vec<Vec<StepSample>>) -> Result<Vec<StepSample>>,
    ) -> Result<Vec<Series>> {
        let mut cursors: Vec<Vec<usize>> = inputs
            .iter()
            .map(|e| match e {
                Evaluated::Vector(s) => vec![0; s.len()],
                _ => Vec::new(),
            })
            .collect();
        let mut out: Vec<Series> = Vec::new();
        let mut index: HashMap<Arc<Labels>, usize> = HashMap::new();
        let mut index_by_identity: IdentityMap<usize> = IdentityMap::default();
        let steps = grid.steps();
        let mut produced = 0usize;
        for step in 0..steps {
            self.check_interrupt()?;
            let ts = grid.ts(step);
            let mut args = Vec::with_capacity(inputs.len());
            for (i, input) in inputs.iter().enumerate() {
                args.push(match input {
                    Evaluated::Vector(series) => Evaluated::vector_at(series, &mut cursors[i], ts),
                    _ => return Err(QueryError::exec("expected instant vector")),
                });
            }
            let result = op(self, ts, args)?;
            produced += result.len();
            self.hold(result.len())?;
            for s in result {
                let key = ByIdentity(s.labels.clone());
                let found = match index_by_identity.get(&key) {
                    Some(&i) => Some(i),
                    None => {
                        let i = index.get(&s.labels).copied();
                        if let Some(i) = i {
                            index_by_identity.insert(key.clone(), i);
                        }
                        i
                    }
                };
                match found {
                    Some(i) => {
                        let series = &mut out[i];
                        if series.points.last().is_some_and(|p| p.t == ts) {
                            return Err(QueryError::exec(
                                "vector cannot contain metrics with the same labelset",
                            ));
                        }
                        series.points.push(Sample::new(ts, s.f));
                        series.drop_name |= s.drop_name;
                    }
                    None => {
                        index.insert(s.labels.clone(), out.len());
                        index_by_identity.insert(key, out.len());
                        out.push(Series {
                            labels: s.labels,
                            points: vec![Sample::new(ts, s.f)],
                            drop_name: s.drop_name,
                        });
                    }
                }
            }
        }
        self.release(produced);
        Ok(out)
    }

    /// Evaluates an expression that must give a scalar at every step.
    pub fn eval_scalar(&mut self, expr: &Expr, grid: Grid) -> Result<Vec<f64>> {
        match self.eval(expr, grid)? {
            Evaluated::Scalar(xs) => Ok(xs),
            _ => Err(QueryError::exec("expected scalar expression")),
        }
    }
}

impl Evaluated {
    /// The samples of an instant-vector result at `ts`, advancing per-series cursors (steps are
    /// visited in increasing order).
    pub(crate) fn point_count(&self) -> usize {
        match self {
            Evaluated::Vector(s) | Evaluated::Matrix(s) => s.iter().map(|s| s.points.len()).sum(),
            Evaluated::Scalar(xs) => xs.len(),
            Evaluated::String(_) => 1,
        }
    }

    pub(crate) fn vector_at(series: &[Series], cursors: &mut [usize], ts: i64) -> Vec<StepSample> {
        let mut v = Vec::new();
        for (s, c) in series.iter().zip(cursors.iter_mut()) {
            while *c < s.points.len() && s.points[*c].t < ts {
                *c += 1;
            }
            if let Some(p) = s.points.get(*c) {
                if p.t == ts {
                    v.push(StepSample {
                        labels: s.labels.clone(),
                        f: p.v,
                        drop_name: s.drop_name,
                    });
                }
            }
        }
        v
    }
}

/// An offset in signed milliseconds (saturating: absurd offsets then select nothing instead of
/// overflowing).
pub(crate) fn offset_ms(offset: &Option<Offset>) -> i64 {
    match offset {
        None => 0,
        Some(Offset::Pos(d)) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4),
        Some(Offset::Neg(d)) => -i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4),
    }
}

/// A duration in milliseconds, saturating.
pub(crate) fn duration_ms(d: &std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}
