//! The public entry points: parse a query, evaluate it over a step grid, and shape the result as
//! Prometheus's engine does (delayed `__name__` removal, sorting of range results).

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use promql_parser::parser::{self, Expr};
use strata_store::{Label, Labels, MetricsReader, Sample, METRIC_NAME};

use crate::error::{QueryError, Result};
use crate::evaluator::{Evaluator, Grid, RunSettings};
use crate::value::{merge_same_label_sets, Evaluated, QueryOutput, Series, Value};

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
    /// Most queries evaluated at once (`--query.max-concurrency`); others wait for a slot, within
    /// their timeout.
    pub max_concurrency: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta: Duration::from_secs(5 * 60),
            max_samples: 50_000_000,
            timeout: Duration::from_secs(2 * 60),
            default_subquery_step: Duration::from_secs(60),
            max_concurrency: 20,
        }
    }
}

/// Admission of queries: at most `limit` evaluate at once; the rest wait on a condition variable
/// until a slot frees or their deadline passes (then they fail with `timeout`, as a queued query
/// does in Prometheus).
#[derive(Debug, Default)]
struct ConcurrencyGate {
    running: Mutex<usize>,
    freed: Condvar,
}

/// A held evaluation slot; dropping it frees the slot.
struct Slot<'a>(&'a ConcurrencyGate);

impl ConcurrencyGate {
    fn enter(&self, limit: usize, deadline: Option<Instant>) -> Result<Slot<'_>> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= limit.max(1) {
            let wait = match deadline {
                Some(d) => d
                    .checked_duration_since(Instant::now())
                    .ok_or(QueryError::Timeout("query queue"))?,
                None => Duration::from_secs(1),
            };
            running = self
                .freed
                .wait_timeout(running, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *running += 1;
        Ok(Slot(self))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut running = self.0.running.lock().unwrap_or_else(|e| e.into_inner());
        *running = running.saturating_sub(1);
        self.0.freed.notify_one();
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

/// Evaluates PromQL over a [`MetricsReader`]. Cheap to share between threads (`Arc<Engine>`).
///
/// ```
/// use strata_query::memory::MemoryReader;
/// use strata_query::{Engine, EngineOptions, Value};
/// use strata_store::{Labels, Sample};
///
/// let reader = MemoryReader::new();
/// let labels = Labels::from_pairs([("__name__", "requests_total"), ("job", "api")]);
/// reader.append(labels, (0..10).map(|i| Sample::new(i * 15_000, i as f64 * 3.0)));
///
/// let engine = Engine::new(EngineOptions::default());
/// let out = engine.instant_query(&reader, "rate(requests_total[1m])", 135_000).unwrap();
/// let Value::Vector(v) = out.value else { unreachable!() };
/// assert_eq!(v[0].0, Labels::from_pairs([("job", "api")]));
/// assert!((v[0].2 - 0.2).abs() < 1e-9);
///
/// let err = engine.instant_query(&reader, "rate(requests_total)", 0).unwrap_err();
/// assert_eq!(err.kind().as_str(), "bad_data");
/// ```
#[derive(Debug, Default)]
pub struct Engine {
    options: EngineOptions,
    gate: ConcurrencyGate,
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
        Engine {
            options,
            gate: ConcurrencyGate::default(),
        }
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
        let (evaluated, mut ev) = self.run(reader, query, &expr, grid, controls)?;
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
        let (evaluated, mut ev) = self.run(reader, query, &expr, grid, controls)?;
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
        query: &str,
        expr: &Expr,
        grid: Grid,
        controls: &QueryControls,
    ) -> Result<(Evaluated, Evaluator<'r>)> {
        let deadline = Instant::now().checked_add(self.options.timeout);
        let _slot = self.gate.enter(self.options.max_concurrency, deadline)?;
        let settings = RunSettings {
            // A zero override means the engine default, as Prometheus treats `lookback_delta=0`.
            lookback_ms: millis(
                controls
                    .lookback_delta
                    .filter(|d| !d.is_zero())
                    .unwrap_or(self.options.lookback_delta),
            ),
            max_samples: self.options.max_samples,
            deadline,
            cancel: controls.cancel.clone(),
            no_step_subquery_interval_ms: millis(self.options.default_subquery_step).max(1),
            query_start: grid.start,
            query_end: grid.end,
            invalid_utf8_literals: Vec::new(),
        };
        let mut settings = settings;
        settings.invalid_utf8_literals = invalid_utf8_literals(query);
        let mut ev = Evaluator::new(reader, settings);
        let evaluated = ev.eval(expr, grid)?;
        Ok((evaluated, ev))
    }
}

fn unwrap_labels(l: Arc<Labels>) -> Labels {
    Arc::try_unwrap(l).unwrap_or_else(|a| (*a).clone())
}

/// Drops the metric name where evaluation marked it for removal, then merges series that became
/// identical.
pub(crate) fn finish_series(series: Vec<Series>) -> Result<Vec<Series>> {
    let series = series
        .into_iter()
        .map(|mut s| {
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
            s
        })
        .collect();
    merge_same_label_sets(series)
}

/// String literals of the query that, decoded as Go decodes them, are not valid UTF-8 (`"\\xff"`).
/// Rust strings cannot hold such bytes (the parser decodes `\\xff` to `ÿ`), so this list, in the
/// parser's decoding, lets label-name checks reject them as Prometheus does.
fn invalid_utf8_literals(query: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let chars: Vec<char> = query.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let quote = chars[i];
        if quote != '"' && quote != '\'' {
            i += 1;
            continue;
        }
        let mut go_bytes: Vec<u8> = Vec::new();
        let mut decoded = String::new();
        i += 1;
        while i < chars.len() && chars[i] != quote {
            let c = chars[i];
            if c != '\\' || i + 1 >= chars.len() {
                let mut buf = [0u8; 4];
                go_bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                decoded.push(c);
                i += 1;
                continue;
            }
            let e = chars[i + 1];
            let digits = |from: usize, n: usize, radix: u32| -> Option<u32> {
                let s: String = chars.get(from..from + n)?.iter().collect();
                u32::from_str_radix(&s, radix).ok()
            };
            match e {
                'x' => {
                    let v = digits(i + 2, 2, 16).unwrap_or(0);
                    go_bytes.push(v as u8);
                    decoded.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                    i += 4;
                }
                '0'..='7' => {
                    let v = digits(i + 1, 3, 8).unwrap_or(0);
                    go_bytes.push(v as u8);
                    decoded.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                    i += 4;
                }
                _ => {
                    let c = match e {
                        'a' => '\u{7}',
                        'b' => '\u{8}',
                        'f' => '\u{c}',
                        'n' => '\n',
                        'r' => '\r',
                        't' => '\t',
                        'v' => '\u{b}',
                        other => other,
                    };
                    let mut buf = [0u8; 4];
                    go_bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    decoded.push(c);
                    i += 2;
                }
            }
        }
        i += 1;
        if std::str::from_utf8(&go_bytes).is_err() {
            out.push((decoded, go_quote(&go_bytes)));
        }
    }
    out
}

/// Go's `strconv.Quote` for bytes that are not all valid UTF-8: invalid bytes become `\xHH`.
fn go_quote(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::memory::MemoryReader;
    use strata_store::stale_nan;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    /// A series' label pairs and its values every 10s from 0 (None leaves a gap).
    type SeriesSpec<'a> = (&'a [(&'a str, &'a str)], &'a [Option<f64>]);

    fn reader_with(series: &[SeriesSpec<'_>]) -> MemoryReader {
        let r = MemoryReader::new();
        for (l, values) in series {
            let samples = values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| Sample::new(i as i64 * 10_000, v)));
            r.append(labels(l), samples);
        }
        r
    }

    fn vector(out: QueryOutput) -> Vec<(Labels, f64)> {
        match out.value {
            Value::Vector(v) => v.into_iter().map(|(l, _, f)| (l, f)).collect(),
            other => panic!("expected vector, got {other:?}"),
        }
    }

    #[test]
    fn engine_and_errors_cross_threads() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Engine>();
        shareable::<QueryError>();
        shareable::<QueryOutput>();
    }

    #[test]
    fn lookback_window_is_left_open() {
        let r = reader_with(&[(&[("__name__", "m")], &[Some(1.0)])]);
        let e = Engine::default();
        assert_eq!(vector(e.instant_query(&r, "m", 299_999).unwrap()).len(), 1);
        assert!(vector(e.instant_query(&r, "m", 300_000).unwrap()).is_empty());
    }

    #[test]
    fn staleness_marker_hides_series_until_next_sample() {
        let r = reader_with(&[(
            &[("__name__", "m")],
            &[Some(1.0), Some(stale_nan()), Some(2.0)],
        )]);
        let e = Engine::default();
        assert!(vector(e.instant_query(&r, "m", 15_000).unwrap()).is_empty());
        assert_eq!(vector(e.instant_query(&r, "m", 20_000).unwrap())[0].1, 2.0);
        // Range selections skip the marker.
        let v = vector(
            e.instant_query(&r, "count_over_time(m[1m])", 20_000)
                .unwrap(),
        );
        assert_eq!(v[0].1, 2.0);
    }

    #[test]
    fn range_results_are_sorted_by_labels_and_drop_names() {
        let r = reader_with(&[
            (&[("__name__", "m"), ("job", "b")], &[Some(1.0), Some(2.0)]),
            (&[("__name__", "m"), ("job", "a")], &[Some(3.0), Some(4.0)]),
        ]);
        let out = Engine::default()
            .range_query(&r, "m * 2", 0, 10_000, 10_000)
            .unwrap();
        let Value::Matrix(m) = out.value else {
            panic!("expected matrix")
        };
        assert_eq!(m[0].0, labels(&[("job", "a")]));
        assert_eq!(m[1].0, labels(&[("job", "b")]));
        assert_eq!(m[0].1, vec![Sample::new(0, 6.0), Sample::new(10_000, 8.0)]);
    }

    #[test]
    fn sort_desc_orders_instant_results_with_nan_last() {
        let r = reader_with(&[
            (&[("__name__", "m"), ("i", "1")], &[Some(1.0)]),
            (&[("__name__", "m"), ("i", "2")], &[Some(f64::NAN)]),
            (&[("__name__", "m"), ("i", "3")], &[Some(3.0)]),
        ]);
        let v = vector(
            Engine::default()
                .instant_query(&r, "sort_desc(m)", 0)
                .unwrap(),
        );
        let order: Vec<&str> = v.iter().map(|(l, _)| l.get("i").unwrap_or("")).collect();
        assert_eq!(order, ["3", "1", "2"]);
    }

    #[test]
    fn group_left_copies_labels_from_the_one_side() {
        let r = reader_with(&[
            (
                &[("__name__", "req"), ("pod", "p1"), ("code", "200")],
                &[Some(10.0)],
            ),
            (
                &[("__name__", "req"), ("pod", "p1"), ("code", "500")],
                &[Some(2.0)],
            ),
            (
                &[("__name__", "info"), ("pod", "p1"), ("node", "n1")],
                &[Some(1.0)],
            ),
        ]);
        let q = "req * on(pod) group_left(node) info";
        let mut v = vector(Engine::default().instant_query(&r, q, 0).unwrap());
        v.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            v[0],
            (
                labels(&[("code", "200"), ("node", "n1"), ("pod", "p1")]),
                10.0
            )
        );
        assert_eq!(
            v[1],
            (
                labels(&[("code", "500"), ("node", "n1"), ("pod", "p1")]),
                2.0
            )
        );
        // Without group_left the many side has two matches: an execution error.
        let err = Engine::default()
            .instant_query(&r, "req * on(pod) info", 0)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Execution);
        assert!(
            err.to_string()
                .contains("many-to-one matching must be explicit"),
            "{err}"
        );
    }

    #[test]
    fn errors_carry_prometheus_error_types() {
        let r = MemoryReader::new();
        let e = Engine::default();
        assert_eq!(
            e.instant_query(&r, "sum(", 0).unwrap_err().kind(),
            ErrorKind::BadData
        );
        assert_eq!(
            e.range_query(&r, "1", 0, 10, 0).unwrap_err().kind(),
            ErrorKind::BadData
        );
        assert_eq!(
            e.range_query(&r, "m[5m]", 0, 10, 1).unwrap_err().kind(),
            ErrorKind::BadData
        );
        let small = Engine::new(EngineOptions {
            max_samples: 10,
            ..EngineOptions::default()
        });
        let err = small
            .range_query(&r, "time()", 0, 100_000, 1_000)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Execution);
        assert!(err.to_string().contains("too many samples"));
        let cancel = Arc::new(AtomicBool::new(true));
        let controls = QueryControls {
            cancel: Some(cancel),
            ..QueryControls::default()
        };
        assert_eq!(
            e.instant_query_with(&r, "1", 0, &controls)
                .unwrap_err()
                .kind(),
            ErrorKind::Canceled
        );
    }

    #[test]
    fn range_functions_hold_one_series_of_raw_samples_at_a_time() {
        // 20 series of 100 samples: 2,000 raw samples in all, 100 per series.
        let r = MemoryReader::new();
        for i in 0..20 {
            r.append(
                labels(&[("__name__", "c"), ("i", &i.to_string())]),
                (0..100).map(|j| Sample::new(j * 10_000, (j * (i + 1)) as f64)),
            );
        }
        let e = Engine::new(EngineOptions {
            max_samples: 500,
            ..EngineOptions::default()
        });
        // Each series' raw samples fit the budget, and so do the 20 results: the query answers.
        let out = e.instant_query(&r, "sum(rate(c[1000s]))", 990_000).unwrap();
        let got = vector(out);
        assert_eq!(got.len(), 1);
        // Series i rises by 99 * (i + 1) over the 1000 s window, from 0 (no extrapolation below
        // zero): a rate of 0.099 * (i + 1), 0.099 * 210 summed over i = 0..20.
        assert!((got[0].1 - 20.79).abs() < 1e-9, "{got:?}");
        // A matrix result holds them all at once: over budget.
        let err = e.instant_query(&r, "c[1000s]", 990_000).unwrap_err();
        assert!(err.to_string().contains("too many samples"), "{err}");
    }

    #[test]
    fn absurd_parameters_error_instead_of_panicking() {
        let r = reader_with(&[(&[("__name__", "m")], &[Some(1.0)])]);
        let e = Engine::default();
        assert!(e.range_query(&r, "m", i64::MIN, i64::MAX, 1).is_err());
        assert!(e.range_query(&r, "m", i64::MIN, i64::MAX, i64::MAX).is_ok());
        assert!(e
            .range_query(
                &r,
                "rate(m[5m] offset -1y)",
                i64::MIN,
                i64::MAX,
                i64::MAX / 3
            )
            .is_ok());
        assert!(e.instant_query(&r, "m offset 100000000y", 0).is_ok());
        assert!(e.instant_query(&r, "rate(m[100000000y])", i64::MAX).is_ok());
        assert!(e.instant_query(&r, "max_over_time(m[1y:1ms])", 0).is_err());
        assert!(e.instant_query(&r, "topk(1e300, m)", 0).is_err());
    }

    #[test]
    fn rate_of_a_non_counter_name_adds_an_info() {
        let r = reader_with(&[(&[("__name__", "m")], &[Some(1.0), Some(2.0), Some(3.0)])]);
        let out = Engine::default()
            .instant_query(&r, "rate(m[1m])", 20_000)
            .unwrap();
        assert_eq!(
            out.infos,
            ["PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"m\""]
        );
    }

    #[test]
    fn invalid_utf8_literals_follow_go_decoding() {
        let found = invalid_utf8_literals(r#"label_replace(m, "\xff", "ok", "\xc3\xbf", "x")"#);
        assert_eq!(found, [("\u{ff}".to_string(), "\"\\xff\"".to_string())]);
    }

    #[test]
    fn or_matchers_select_the_union_of_branches() {
        let r = reader_with(&[
            (&[("__name__", "m"), ("a", "1")], &[Some(1.0)]),
            (&[("__name__", "m"), ("b", "2")], &[Some(2.0)]),
            (&[("__name__", "m"), ("a", "1"), ("b", "2")], &[Some(3.0)]),
            (&[("__name__", "other"), ("a", "1")], &[Some(4.0)]),
        ]);
        let v = vector(
            Engine::default()
                .instant_query(&r, r#"m{a="1" or b="2"}"#, 0)
                .unwrap(),
        );
        let mut values: Vec<f64> = v.iter().map(|(_, f)| *f).collect();
        values.sort_by(|a, b| a.total_cmp(b));
        assert_eq!(values, [1.0, 2.0, 3.0]);
    }

    #[test]
    fn slow_queries_time_out_during_evaluation() {
        let r = reader_with(&[(&[("__name__", "m")], &[Some(1.0)])]);
        let e = Engine::new(EngineOptions {
            timeout: Duration::from_nanos(1),
            ..EngineOptions::default()
        });
        let err = e
            .range_query(&r, "sum(m)", 0, 10_000_000, 1_000)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert_eq!(err.to_string(), "query timed out in expression evaluation");
    }

    #[test]
    fn queries_beyond_the_concurrency_limit_wait_then_time_out() {
        let gate = ConcurrencyGate::default();
        let held = gate.enter(1, None).unwrap();
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(matches!(
            gate.enter(1, Some(soon)),
            Err(QueryError::Timeout(_))
        ));
        drop(held);
        assert!(gate
            .enter(1, Some(Instant::now() + Duration::from_millis(20)))
            .is_ok());
    }

    #[test]
    fn odd_queries_answer_without_panicking() {
        let r = reader_with(&[
            (
                &[("__name__", "m"), ("le", "0.1")],
                &[Some(1.0), Some(f64::NAN), Some(f64::INFINITY)],
            ),
            (
                &[("__name__", "m"), ("le", "+Inf")],
                &[Some(2.0), None, Some(-1.0)],
            ),
        ]);
        let e = Engine::new(EngineOptions {
            max_samples: 100_000,
            ..EngineOptions::default()
        });
        let queries = [
            "m[0s]",
            "rate(m[1ms])",
            "m offset -1000y",
            "m @ -1e9",
            "m @ 1e18",
            "m[5m:1ms]",
            "max_over_time(m[1h:1ms])",
            "quantile(NaN, m)",
            "quantile(2, m)",
            "topk(-1, m)",
            "limit_ratio(NaN, m)",
            "histogram_quantile(NaN, m)",
            "histogram_fraction(NaN, Inf, m)",
            "round(m, 0)",
            "clamp(m, 5, 1)",
            "label_replace(m, \"x\", \"$99\", \"le\", \"(.*)\")",
            "label_join(m, \"le\", \",\")",
            "count_values(\"le\", m)",
            "sort_by_label(m)",
            "predict_linear(m[1m], Inf)",
            "double_exponential_smoothing(m[1m], 0.5, 0.5)",
            "m / on() group_left m",
            "m and on(le) m",
            "1 / 0",
            "-(-(-m))",
            "year(m)",
            "day_of_week(m)",
            "timestamp(m @ 10)",
            "absent_over_time(nothing[1m:10s])",
            "scalar(m) * vector(Inf)",
            "sum by (__name__) (rate(m[1m]))",
            "m == bool m",
            "m % 0",
            "m ^ m",
            "atan2(m, m)",
        ];
        for q in queries {
            let _ = e.instant_query(&r, q, 20_000);
            let _ = e.range_query(&r, q, 0, 30_000, 7_000);
        }
        let deep = format!("{}m{}", "(".repeat(200), ")".repeat(200));
        assert!(e.instant_query(&r, &deep, 0).is_ok());
    }

    #[test]
    fn fill_modifier_supplies_missing_sides() {
        let r = reader_with(&[
            (&[("__name__", "a"), ("x", "1")], &[Some(1.0)]),
            (&[("__name__", "a"), ("x", "2")], &[Some(2.0)]),
            (&[("__name__", "b"), ("x", "2")], &[Some(20.0)]),
            (&[("__name__", "b"), ("x", "3")], &[Some(30.0)]),
        ]);
        let mut v = vector(
            Engine::default()
                .instant_query(&r, "a + fill(0) b", 0)
                .unwrap(),
        );
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let got: Vec<(&str, f64)> = v
            .iter()
            .map(|(l, f)| (l.get("x").unwrap_or(""), *f))
            .collect();
        assert_eq!(got, [("1", 1.0), ("2", 22.0), ("3", 30.0)]);
    }

    #[test]
    fn native_histogram_functions_answer_a_clear_error() {
        let r = reader_with(&[(&[("__name__", "h")], &[Some(1.0)])]);
        let err = Engine::default()
            .instant_query(&r, "histogram_count(h)", 0)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Execution);
        assert!(
            err.to_string()
                .starts_with("native histograms are not supported"),
            "{err}"
        );
    }

    #[test]
    fn format_query_pretty_prints() {
        assert_eq!(
            format_query("sum(rate(foo[5m]))").unwrap(),
            "sum(rate(foo[5m]))"
        );
        assert!(format_query("sum(").is_err());
    }
}
