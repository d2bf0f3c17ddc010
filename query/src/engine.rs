//! The public entry points: parse a query, evaluate it over a step grid, and shape the result as
//! Prometheus's engine does (delayed `__name__` removal, sorting of range results).

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use promql_parser::parser::{self, Expr};
use strata_store::{Label, Labels, MetricsReader, Sample, METRIC_NAME};

use crate::error::{QueryError, Result};
use crate::evaluator::{Evaluator, Grid, RunSettings};
use crate::value::{Evaluated, QueryOutput, Series, Value};

/// Engine settings; defaults are Prometheus's.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant-vector selector looks for a sample (`--query.lookback-delta`).
    pub lookback_delta: Duration,
    /// Most samples a query may hold in memory at once (`--query.max-samples`).
    pub max_samples: usize,
    /// Longest a query may run (`--query.timeout`).
    pub timeout: Duration,
    /// Step of subqueries written without one (`expr[5m:]`); Prometheus uses the global evaluation
    /// interval, 1m by default.
    pub default_subquery_step: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta: Duration::from_secs(5 * 60),
            max_samples: 50_000_000,
            timeout: Duration::from_secs(2 * 60),
            default_subquery_step: Duration::from_secs(60),
        }
    }
}

/// Per-query overrides and controls.
#[derive(Debug, Clone, Default)]
pub struct QueryControls {
    /// Overrides [`EngineOptions::lookback_delta`] for this query (the API's `lookback_delta`).
    pub lookback_delta: Option<Duration>,
    /// Set to true from another thread to cancel the query (it then fails with `canceled`).
    pub cancel: Option<Arc<AtomicBool>>,
}

#[derive(Debug, Clone, Default)]
pub struct Engine {
    options: EngineOptions,
}

/// Pretty-prints a query as Prometheus's `/api/v1/format_query` does.
pub fn format_query(query: &str) -> Result<String> {
    let expr = parser::parse(query).map_err(QueryError::Parse)?;
    Ok(expr.prettify())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl Engine {
    pub fn new(options: EngineOptions) -> Self {
        Engine { options }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Evaluates `query` at `time_ms`.
    pub fn instant_query(
        &self,
        reader: &dyn MetricsReader,
        query: &str,
        time_ms: i64,
    ) -> Result<QueryOutput> {
        self.instant_query_with(reader, query, time_ms, &QueryControls::default())
    }

    pub fn instant_query_with(
        &self,
        reader: &dyn MetricsReader,
        query: &str,
        time_ms: i64,
        controls: &QueryControls,
    ) -> Result<QueryOutput> {
        let expr = parser::parse(query).map_err(QueryError::Parse)?;
        let grid = Grid {
            start: time_ms,
            end: time_ms,
            interval: 1,
        };
        let (evaluated, mut ev) = self.run(reader, &expr, grid, controls)?;
        let value = match evaluated {
            Evaluated::Scalar(xs) => {
                Value::Scalar(time_ms, xs.first().copied().unwrap_or(f64::NAN))
            }
            Evaluated::String(s) => Value::String(time_ms, s),
            Evaluated::Vector(series) => {
                let series = finish_series(series)?;
                Value::Vector(
                    series
                        .into_iter()
                        .filter_map(|s| {
                            s.points
                                .first()
                                .map(|p| (unwrap_labels(s.labels), time_ms, p.v))
                        })
                        .collect(),
                )
            }
            Evaluated::Matrix(series) => {
                let mut series = finish_series(series)?;
                series.sort_by(|a, b| a.labels.cmp(&b.labels));
                Value::Matrix(
                    series
                        .into_iter()
                        .map(|s| (unwrap_labels(s.labels), s.points))
                        .collect(),
                )
            }
        };
        let annotations = std::mem::take(&mut ev.annotations);
        Ok(QueryOutput {
            value,
            warnings: annotations.warnings,
            infos: annotations.infos,
        })
    }

    /// Evaluates `query` at `start_ms, start_ms + step_ms, …` up to `end_ms`; the result is always a
    /// matrix sorted by labels.
    pub fn range_query(
        &self,
        reader: &dyn MetricsReader,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryOutput> {
        self.range_query_with(
            reader,
            query,
            start_ms,
            end_ms,
            step_ms,
            &QueryControls::default(),
        )
    }

    pub fn range_query_with(
        &self,
        reader: &dyn MetricsReader,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        controls: &QueryControls,
    ) -> Result<QueryOutput> {
        if step_ms <= 0 {
            return Err(QueryError::InvalidParameter(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end_ms < start_ms {
            return Err(QueryError::InvalidParameter(
                "end timestamp must not be before start time".into(),
            ));
        }
        let expr = parser::parse(query).map_err(QueryError::Parse)?;
        match expr.value_type() {
            parser::value::ValueType::Scalar | parser::value::ValueType::Vector => {}
            other => {
                return Err(QueryError::Parse(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                match other {
                    parser::value::ValueType::Matrix => "range vector",
                    _ => "string",
                }
            )))
            }
        }
        let grid = Grid {
            start: start_ms,
            end: end_ms,
            interval: step_ms,
        };
        let (evaluated, mut ev) = self.run(reader, &expr, grid, controls)?;
        let series = match evaluated {
            Evaluated::Scalar(xs) => {
                let points = grid
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
            Evaluated::Vector(series) => series,
            _ => {
                return Err(QueryError::exec(
                    "range query must evaluate to a scalar or instant vector",
                ))
            }
        };
        let mut series = finish_series(series)?;
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        let annotations = std::mem::take(&mut ev.annotations);
        Ok(QueryOutput {
            value: Value::Matrix(
                series
                    .into_iter()
                    .map(|s| (unwrap_labels(s.labels), s.points))
                    .collect(),
            ),
            warnings: annotations.warnings,
            infos: annotations.infos,
        })
    }

    fn run<'r>(
        &self,
        reader: &'r dyn MetricsReader,
        expr: &Expr,
        grid: Grid,
        controls: &QueryControls,
    ) -> Result<(Evaluated, Evaluator<'r>)> {
        let settings = RunSettings {
            lookback_ms: millis(
                controls
                    .lookback_delta
                    .unwrap_or(self.options.lookback_delta),
            ),
            max_samples: self.options.max_samples,
            deadline: Instant::now().checked_add(self.options.timeout),
            cancel: controls.cancel.clone(),
            no_step_subquery_interval_ms: millis(self.options.default_subquery_step).max(1),
            query_start: grid.start,
            query_end: grid.end,
        };
        let mut ev = Evaluator::new(reader, settings);
        let evaluated = ev.eval(expr, grid)?;
        Ok((evaluated, ev))
    }
}

fn unwrap_labels(l: Arc<Labels>) -> Labels {
    Arc::try_unwrap(l).unwrap_or_else(|a| (*a).clone())
}

/// Drops the metric name where evaluation marked it for removal, then merges series that became
/// identical; overlapping points are Prometheus's "same labelset" error.
pub(crate) fn finish_series(series: Vec<Series>) -> Result<Vec<Series>> {
    let mut out: Vec<Series> = Vec::with_capacity(series.len());
    let mut index: HashMap<Arc<Labels>, usize> = HashMap::with_capacity(series.len());
    let mut merged_any = false;
    for mut s in series {
        if s.drop_name && s.labels.get(METRIC_NAME).is_some() {
            let kept: Vec<Label> = s
                .labels
                .iter()
                .filter(|l| l.name != METRIC_NAME)
                .cloned()
                .collect();
            s.labels = Arc::new(Labels::from_sorted(kept));
        }
        s.drop_name = false;
        match index.get(&s.labels) {
            Some(&i) => {
                out[i].points.extend(s.points);
                merged_any = true;
            }
            None => {
                index.insert(s.labels.clone(), out.len());
                out.push(s);
            }
        }
    }
    if merged_any {
        for s in &mut out {
            s.points.sort_by_key(|p| p.t);
            if s.points.windows(2).any(|w| w[0].t == w[1].t) {
                return Err(QueryError::exec(
                    "vector cannot contain metrics with the same labelset",
                ));
            }
        }
    }
    Ok(out)
}
