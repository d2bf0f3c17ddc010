//! The OTLP metrics export hook: OTLP metrics become Prometheus series in the metrics store, translated
//! as Prometheus's own OTLP receiver does by default (names and labels escaped to underscores, unit and
//! type suffixes added):
//!
//! - names: characters outside `[a-zA-Z0-9_:]` split words, joined by `_`; the unit becomes a suffix
//!   (`s` → `_seconds`, `By` → `_bytes`, `{requests}/s` → `_per_second`, `1` on a gauge → `_ratio`);
//!   monotonic sums end in `_total`;
//! - labels: data-point attributes, escaped the same way (a name that starts with a digit gets `key_`);
//!   `job` from `service.namespace`/`service.name` and `instance` from `service.instance.id`; the other
//!   resource attributes go to one `target_info` series per resource;
//! - gauges and non-monotonic sums → gauges; monotonic sums → counters; explicit-bucket histograms →
//!   `_bucket{le}` (cumulative), `_sum`, `_count`; summaries → `{quantile}`, `_sum`, `_count`;
//! - a point flagged "no recorded value" becomes a staleness marker; exemplars keep `trace_id`/`span_id`.
//!
//! Refused, and counted in `partial_success`: delta temporality (Prometheus keeps cumulative series) and
//! exponential histograms (native histograms are not stored yet).

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric, number_data_point, AggregationTemporality, Exemplar as OtlpExemplar,
    HistogramDataPoint, NumberDataPoint, SummaryDataPoint,
};
use strata_store::{Exemplar, Labels, Metadata, MetricType, Sample, SeriesWrite, WriteBatch};

use super::{Accepted, ExportError};
use crate::server::AppState;

/// The OTLP data-point flag "no recorded value": the series ended, so a staleness marker.
const NO_RECORDED_VALUE: u32 = 1;

/// Stores the metrics of one export request for `tenant`.
pub fn export(
    state: &AppState,
    tenant: &str,
    req: ExportMetricsServiceRequest,
) -> Result<Accepted, ExportError> {
    let limits = state.cfg.decode_limits();
    let translated = translate(&req);
    if translated.batch.series.len() > limits.max_series {
        return Err(ExportError::InvalidArgument(format!(
            "{} series in one request, over the limit of {} (limits.max_series_per_request)",
            translated.batch.series.len(),
            limits.max_series
        )));
    }
    for s in &translated.batch.series {
        crate::remote::write::check_label_set(
            s.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
            s.labels.len(),
            &limits,
            true,
        )
        .map_err(|e| ExportError::InvalidArgument(format!("series {}: {e}", s.labels)))?;
    }
    let mut accepted = Accepted::partial(translated.rejected, translated.reasons.join("; "));
    if translated.batch.series.is_empty() {
        return Ok(accepted);
    }
    let store = state
        .storage
        .metrics_for_write(tenant)
        .map_err(|e| ExportError::InvalidArgument(e.to_string()))?;
    let outcome = store
        .append(&translated.batch)
        .map_err(|e| ExportError::Unavailable(format!("cannot store metrics: {e}")))?;
    if let Some((labels, sample, reject)) = &outcome.first_rejection {
        accepted.rejected += outcome.rejected_total() as i64;
        let msg = format!(
            "{}: {} samples refused (first: series {labels} timestamp {})",
            reject.message(),
            outcome.rejected_total(),
            sample.t
        );
        accepted.message = if accepted.message.is_empty() {
            msg
        } else {
            format!("{}; {msg}", accepted.message)
        };
    }
    Ok(accepted)
}

/// A translated request: the series to store, and the points refused with why.
#[derive(Debug, Default)]
pub struct Translated {
    pub batch: WriteBatch,
    pub rejected: i64,
    pub reasons: Vec<String>,
}

impl Translated {
    fn refuse(&mut self, points: usize, reason: String) {
        self.rejected += points as i64;
        if !self.reasons.contains(&reason) {
            self.reasons.push(reason);
        }
    }
}

/// Series of one request, merged by label set so each series is appended once with sorted samples.
#[derive(Default)]
struct Series(BTreeMap<Labels, (Vec<Sample>, Vec<Exemplar>)>);

impl Series {
    fn add(&mut self, labels: Labels, sample: Sample, exemplars: Vec<Exemplar>) {
        let e = self.0.entry(labels).or_default();
        e.0.push(sample);
        e.1.extend(exemplars);
    }
}

/// Translates a request into Prometheus series (see the module comment).
pub fn translate(req: &ExportMetricsServiceRequest) -> Translated {
    let mut out = Translated::default();
    let mut series = Series::default();
    let mut metadata: BTreeMap<String, Metadata> = BTreeMap::new();
    for rm in &req.resource_metrics {
        let resource_attrs: &[KeyValue] = rm
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        let target = Target::new(resource_attrs);
        let mut latest_ms: Option<i64> = None;
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let Some(data) = &m.data else { continue };
                let (kind, name) = match data {
                    metric::Data::Gauge(_) => (
                        MetricType::Gauge,
                        metric_name(&m.name, &m.unit, Kind::Gauge),
                    ),
                    metric::Data::Sum(s) if s.is_monotonic => (
                        MetricType::Counter,
                        metric_name(&m.name, &m.unit, Kind::Counter),
                    ),
                    metric::Data::Sum(_) => (
                        MetricType::Gauge,
                        metric_name(&m.name, &m.unit, Kind::Gauge),
                    ),
                    metric::Data::Histogram(_) => (
                        MetricType::Histogram,
                        metric_name(&m.name, &m.unit, Kind::Other),
                    ),
                    metric::Data::Summary(_) => (
                        MetricType::Summary,
                        metric_name(&m.name, &m.unit, Kind::Other),
                    ),
                    metric::Data::ExponentialHistogram(h) => {
                        out.refuse(
                            h.data_points.len(),
                            format!(
                                "metric {:?}: exponential histograms (native histograms) are not supported",
                                m.name
                            ),
                        );
                        continue;
                    }
                };
                let delta = AggregationTemporality::Delta as i32;
                let temporality = match data {
                    metric::Data::Sum(s) => s.aggregation_temporality,
                    metric::Data::Histogram(h) => h.aggregation_temporality,
                    _ => 0,
                };
                if temporality == delta {
                    let points = match data {
                        metric::Data::Sum(s) => s.data_points.len(),
                        metric::Data::Histogram(h) => h.data_points.len(),
                        _ => 0,
                    };
                    out.refuse(
                        points,
                        format!(
                            "metric {:?}: delta temporality is not supported; send cumulative values",
                            m.name
                        ),
                    );
                    continue;
                }
                metadata.entry(name.clone()).or_insert_with(|| Metadata {
                    metric_type: kind,
                    help: m.description.clone(),
                    unit: unit_word(&m.unit).unwrap_or_default(),
                });
                let mut point_time = |t_ms: i64| {
                    latest_ms = Some(latest_ms.map_or(t_ms, |l| l.max(t_ms)));
                };
                match data {
                    metric::Data::Gauge(g) => {
                        for p in &g.data_points {
                            point_time(nanos_to_ms(p.time_unix_nano));
                            number_point(&mut series, &target, &name, p);
                        }
                    }
                    metric::Data::Sum(s) => {
                        for p in &s.data_points {
                            point_time(nanos_to_ms(p.time_unix_nano));
                            number_point(&mut series, &target, &name, p);
                        }
                    }
                    metric::Data::Histogram(h) => {
                        for p in &h.data_points {
                            point_time(nanos_to_ms(p.time_unix_nano));
                            if let Err(e) = histogram_point(&mut series, &target, &name, p) {
                                out.refuse(1, format!("metric {:?}: {e}", m.name));
                            }
                        }
                    }
                    metric::Data::Summary(s) => {
                        for p in &s.data_points {
                            point_time(nanos_to_ms(p.time_unix_nano));
                            summary_point(&mut series, &target, &name, p);
                        }
                    }
                    metric::Data::ExponentialHistogram(_) => {}
                }
            }
        }
        // The resource's other attributes, as Prometheus's `target_info` does.
        if let (Some(t), false) = (latest_ms, target.info.is_empty()) {
            let mut pairs = target.identity();
            pairs.extend(target.info.iter().cloned());
            pairs.push(("__name__".into(), "target_info".into()));
            series.add(label_set(pairs), Sample::new(t, 1.0), vec![]);
            metadata
                .entry("target_info".into())
                .or_insert_with(|| Metadata {
                    metric_type: MetricType::Gauge,
                    help: "Target metadata".into(),
                    unit: String::new(),
                });
        }
    }
    for (labels, (mut samples, exemplars)) in series.0 {
        samples.sort_by_key(|s| s.t);
        samples.dedup_by_key(|s| s.t);
        out.batch.series.push(SeriesWrite {
            labels,
            samples,
            exemplars,
        });
    }
    out.batch.metadata = metadata.into_iter().collect();
    out
}

/// The labels a resource gives every series: `job`, `instance`, and the rest for `target_info`.
struct Target {
    job: Option<String>,
    instance: Option<String>,
    info: Vec<(String, String)>,
}

impl Target {
    fn new(attrs: &[KeyValue]) -> Target {
        let get = |k: &str| {
            attrs
                .iter()
                .find(|a| a.key == k)
                .map(|a| value_string(a.value.as_ref()))
        };
        let job = match (get("service.namespace"), get("service.name")) {
            (Some(ns), Some(name)) if !ns.is_empty() => Some(format!("{ns}/{name}")),
            (_, name) => name,
        };
        let instance = get("service.instance.id");
        let info = attrs
            .iter()
            .filter(|a| {
                !matches!(
                    a.key.as_str(),
                    "service.name" | "service.namespace" | "service.instance.id"
                )
            })
            .map(|a| (label_name(&a.key), value_string(a.value.as_ref())))
            .collect();
        Target {
            job,
            instance,
            info,
        }
    }

    fn identity(&self) -> Vec<(String, String)> {
        let mut v = Vec::with_capacity(2);
        if let Some(j) = &self.job {
            v.push(("job".to_owned(), j.clone()));
        }
        if let Some(i) = &self.instance {
            v.push(("instance".to_owned(), i.clone()));
        }
        v
    }

    /// A point's label pairs: its attributes, then the resource identity (which wins on a clash).
    fn point_labels(&self, name: &str, attrs: &[KeyValue]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = attrs
            .iter()
            .map(|a| (label_name(&a.key), value_string(a.value.as_ref())))
            .collect();
        v.retain(|(k, _)| k != "job" && k != "instance" && k != "__name__");
        v.extend(self.identity());
        v.push(("__name__".to_owned(), name.to_owned()));
        v
    }
}

/// A sorted label set; attributes that escape to the same name are joined with `;` (as Prometheus does).
fn label_set(pairs: Vec<(String, String)>) -> Labels {
    let mut merged: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in pairs {
        if v.is_empty() {
            continue;
        }
        merged
            .entry(k)
            .and_modify(|old| {
                old.push(';');
                old.push_str(&v);
            })
            .or_insert(v);
    }
    Labels::from_pairs(merged)
}

fn nanos_to_ms(n: u64) -> i64 {
    (n / 1_000_000) as i64
}

fn number_value(p: &NumberDataPoint) -> f64 {
    if p.flags & NO_RECORDED_VALUE != 0 {
        return strata_store::stale_nan();
    }
    match p.value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        Some(number_data_point::Value::AsInt(v)) => v as f64,
        None => 0.0,
    }
}

fn number_point(series: &mut Series, target: &Target, name: &str, p: &NumberDataPoint) {
    let labels = label_set(target.point_labels(name, &p.attributes));
    let t = nanos_to_ms(p.time_unix_nano);
    series.add(
        labels,
        Sample::new(t, number_value(p)),
        exemplars(&p.exemplars, t),
    );
}

fn histogram_point(
    series: &mut Series,
    target: &Target,
    name: &str,
    p: &HistogramDataPoint,
) -> Result<(), String> {
    let t = nanos_to_ms(p.time_unix_nano);
    let stale = p.flags & NO_RECORDED_VALUE != 0;
    if !stale && !p.bucket_counts.is_empty() && p.bucket_counts.len() != p.explicit_bounds.len() + 1
    {
        return Err(format!(
            "{} bucket counts for {} bounds; there must be one more count than bounds",
            p.bucket_counts.len(),
            p.explicit_bounds.len()
        ));
    }
    let value = |v: f64| if stale { strata_store::stale_nan() } else { v };
    let base = target.point_labels(name, &p.attributes);
    let with = |suffix: &str, extra: Option<(&str, String)>| derived(&base, name, suffix, extra);
    let mut exs = exemplars(&p.exemplars, t);
    let mut cumulative = 0u64;
    for (i, count) in p.bucket_counts.iter().enumerate() {
        cumulative += count;
        let bound = p.explicit_bounds.get(i).copied().unwrap_or(f64::INFINITY);
        // Each exemplar goes to the first bucket that holds its value.
        let (here, rest): (Vec<Exemplar>, Vec<Exemplar>) =
            exs.into_iter().partition(|e| e.value <= bound);
        exs = rest;
        series.add(
            with("_bucket", Some(("le", format_bound(bound)))),
            Sample::new(t, value(cumulative as f64)),
            here,
        );
    }
    if p.bucket_counts.is_empty() {
        series.add(
            with("_bucket", Some(("le", "+Inf".into()))),
            Sample::new(t, value(p.count as f64)),
            exs,
        );
    }
    if let Some(sum) = p.sum {
        series.add(with("_sum", None), Sample::new(t, value(sum)), vec![]);
    }
    series.add(
        with("_count", None),
        Sample::new(t, value(p.count as f64)),
        vec![],
    );
    Ok(())
}

/// A classic-histogram or summary series of one point: the base labels with `name` + `suffix` as the
/// metric name and `extra` (`le` or `quantile`) set.
fn derived(
    base: &[(String, String)],
    name: &str,
    suffix: &str,
    extra: Option<(&str, String)>,
) -> Labels {
    let mut pairs = base.to_vec();
    pairs.last_mut().expect("__name__ is last").1 = format!("{name}{suffix}");
    if let Some((k, v)) = extra {
        pairs.retain(|(pk, _)| pk != k);
        pairs.push((k.to_owned(), v));
    }
    label_set(pairs)
}

fn summary_point(series: &mut Series, target: &Target, name: &str, p: &SummaryDataPoint) {
    let t = nanos_to_ms(p.time_unix_nano);
    let stale = p.flags & NO_RECORDED_VALUE != 0;
    let value = |v: f64| if stale { strata_store::stale_nan() } else { v };
    let base = target.point_labels(name, &p.attributes);
    let with = |suffix: &str, extra: Option<(&str, String)>| derived(&base, name, suffix, extra);
    for q in &p.quantile_values {
        series.add(
            with("", Some(("quantile", format_bound(q.quantile)))),
            Sample::new(t, value(q.value)),
            vec![],
        );
    }
    series.add(with("_sum", None), Sample::new(t, value(p.sum)), vec![]);
    series.add(
        with("_count", None),
        Sample::new(t, value(p.count as f64)),
        vec![],
    );
}

fn exemplars(list: &[OtlpExemplar], point_t: i64) -> Vec<Exemplar> {
    list.iter()
        .map(|e| {
            let mut pairs: Vec<(String, String)> = e
                .filtered_attributes
                .iter()
                .map(|a| (label_name(&a.key), value_string(a.value.as_ref())))
                .collect();
            if !e.trace_id.is_empty() {
                pairs.push(("trace_id".into(), hex(&e.trace_id)));
            }
            if !e.span_id.is_empty() {
                pairs.push(("span_id".into(), hex(&e.span_id)));
            }
            let value = match e.value {
                Some(exemplar::Value::AsDouble(v)) => v,
                Some(exemplar::Value::AsInt(v)) => v as f64,
                None => 0.0,
            };
            let t = match e.time_unix_nano {
                0 => point_t,
                n => nanos_to_ms(n),
            };
            Exemplar {
                labels: label_set(pairs),
                value,
                t,
            }
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `le` and `quantile` values as Prometheus writes them: shortest float text, `+Inf`.
fn format_bound(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// An attribute value as label text.
fn value_string(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => format!("{d}"),
        Some(any_value::Value::BytesValue(b)) => hex(b),
        Some(any_value::Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(|v| value_json(Some(v))).collect();
            format!("[{}]", items.join(","))
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            let items: Vec<String> = kv
                .values
                .iter()
                .map(|p| format!("{:?}:{}", p.key, value_json(p.value.as_ref())))
                .collect();
            format!("{{{}}}", items.join(","))
        }
    }
}

fn value_json(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => format!("{s:?}"),
        _ => value_string(v),
    }
}

/// Escapes an attribute key to a label name: invalid characters become `_`; a leading digit gets
/// `key_`, a single leading underscore `key`.
pub fn label_name(key: &str) -> String {
    let mut s: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert_str(0, "key_");
    } else if s.starts_with('_') && !s.starts_with("__") {
        s.insert_str(0, "key");
    }
    if s.is_empty() {
        s.push_str("key_");
    }
    s
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Other,
}

/// The Prometheus name of an OTLP metric (see the module comment).
fn metric_name(name: &str, unit: &str, kind: Kind) -> String {
    let mut words: Vec<String> = name
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == ':'))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();
    let (main, per) = unit_words(unit);
    if let Some(main) = main {
        if !words.iter().any(|w| w == &main) {
            words.push(main);
        }
    }
    if let Some(per) = per {
        if !words.iter().any(|w| w == &per) {
            words.push("per".into());
            words.push(per);
        }
    }
    if kind == Kind::Counter {
        words.retain(|w| w != "total");
        words.push("total".into());
    }
    if kind == Kind::Gauge && unit == "1" && words.last().map(String::as_str) != Some("ratio") {
        words.push("ratio".into());
    }
    let mut out = words.join("_");
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// The unit as one word for metadata (`seconds`, `bytes_per_second`), if it has one.
fn unit_word(unit: &str) -> Option<String> {
    match unit_words(unit) {
        (Some(m), Some(p)) => Some(format!("{m}_per_{p}")),
        (Some(m), None) => Some(m),
        (None, Some(p)) => Some(format!("per_{p}")),
        (None, None) => None,
    }
}

/// The main and "per" words of a UCUM unit; annotations in braces are dropped.
fn unit_words(unit: &str) -> (Option<String>, Option<String>) {
    let (main, per) = match unit.split_once('/') {
        Some((m, p)) => (m, Some(p)),
        None => (unit, None),
    };
    let word = |u: &str, per: bool| -> Option<String> {
        let u = u.trim();
        if u.is_empty() || u.starts_with('{') || u == "1" {
            return None;
        }
        let mapped = if per { per_unit(u) } else { main_unit(u) };
        let w = mapped.map(str::to_owned).unwrap_or_else(|| {
            u.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect()
        });
        let w = w.trim_matches('_').to_owned();
        (!w.is_empty()).then_some(w)
    };
    (word(main, false), per.and_then(|p| word(p, true)))
}

fn main_unit(u: &str) -> Option<&'static str> {
    Some(match u {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        _ => return None,
    })
}

fn per_unit(u: &str) -> Option<&'static str> {
    Some(match u {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::KeyValue;
    use opentelemetry_proto::tonic::metrics::v1::{
        metric::Data, summary_data_point::ValueAtQuantile, ExponentialHistogram, Gauge, Histogram,
        Metric, ResourceMetrics, ScopeMetrics, Sum, Summary,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;

    use super::*;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
        }
    }

    fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", "checkout"),
                        kv("service.namespace", "shop"),
                        kv("service.instance.id", "pod-1"),
                        kv("k8s.pod.name", "checkout-7d9"),
                    ],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn point(t_s: u64, v: f64, attrs: Vec<KeyValue>) -> NumberDataPoint {
        NumberDataPoint {
            attributes: attrs,
            time_unix_nano: t_s * 1_000_000_000,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        }
    }

    fn find<'a>(t: &'a Translated, labels: &str) -> &'a SeriesWrite {
        t.batch
            .series
            .iter()
            .find(|s| s.labels.to_string() == labels)
            .unwrap_or_else(|| {
                let all: Vec<String> = t
                    .batch
                    .series
                    .iter()
                    .map(|s| s.labels.to_string())
                    .collect();
                panic!("no series {labels} in {all:#?}")
            })
    }

    #[test]
    fn names_and_labels_follow_prometheus_translation() {
        assert_eq!(
            metric_name("http.server.request.duration", "s", Kind::Other),
            "http_server_request_duration_seconds"
        );
        assert_eq!(
            metric_name("system.network.io", "By", Kind::Counter),
            "system_network_io_bytes_total"
        );
        assert_eq!(
            metric_name("requests.total", "{request}", Kind::Counter),
            "requests_total"
        );
        assert_eq!(
            metric_name("throughput", "By/s", Kind::Gauge),
            "throughput_bytes_per_second"
        );
        assert_eq!(
            metric_name("cpu.utilization", "1", Kind::Gauge),
            "cpu_utilization_ratio"
        );
        assert_eq!(metric_name("2xx", "", Kind::Gauge), "_2xx");
        assert_eq!(
            label_name("http.response.status_code"),
            "http_response_status_code"
        );
        assert_eq!(label_name("1st"), "key_1st");
        assert_eq!(label_name("_private"), "key_private");
        assert_eq!(label_name("__reserved"), "__reserved");
    }

    #[test]
    fn sums_gauges_and_resources_become_series() {
        let req = request(vec![
            Metric {
                name: "http.server.requests".into(),
                unit: "{request}".into(),
                description: "Requests served.".into(),
                data: Some(Data::Sum(Sum {
                    data_points: vec![
                        point(1_700_000_015, 12.0, vec![kv("http.route", "/cart")]),
                        point(1_700_000_000, 10.0, vec![kv("http.route", "/cart")]),
                    ],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                })),
                ..Default::default()
            },
            Metric {
                name: "queue.depth".into(),
                data: Some(Data::Gauge(Gauge {
                    data_points: vec![NumberDataPoint {
                        flags: NO_RECORDED_VALUE,
                        ..point(1_700_000_000, 3.0, vec![])
                    }],
                })),
                ..Default::default()
            },
        ]);
        let t = translate(&req);
        assert_eq!(t.rejected, 0);
        let s = find(
            &t,
            r#"{__name__="http_server_requests_total", http_route="/cart", instance="pod-1", job="shop/checkout"}"#,
        );
        // Sorted by time, as the store needs.
        assert_eq!(
            s.samples,
            vec![
                Sample::new(1_700_000_000_000, 10.0),
                Sample::new(1_700_000_015_000, 12.0)
            ]
        );
        let g = find(
            &t,
            r#"{__name__="queue_depth", instance="pod-1", job="shop/checkout"}"#,
        );
        assert!(strata_store::is_stale_nan(g.samples[0].v));
        let info = find(
            &t,
            r#"{__name__="target_info", instance="pod-1", job="shop/checkout", k8s_pod_name="checkout-7d9"}"#,
        );
        assert_eq!(info.samples, vec![Sample::new(1_700_000_015_000, 1.0)]);
        let meta: BTreeMap<_, _> = t.batch.metadata.iter().cloned().collect();
        assert_eq!(
            meta["http_server_requests_total"].metric_type,
            MetricType::Counter
        );
        assert_eq!(meta["http_server_requests_total"].help, "Requests served.");
    }

    #[test]
    fn histograms_and_summaries_expand_into_classic_series() {
        let req = request(vec![
            Metric {
                name: "rpc.duration".into(),
                unit: "s".into(),
                data: Some(Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        time_unix_nano: 1_700_000_000_000_000_000,
                        count: 6,
                        sum: Some(2.5),
                        bucket_counts: vec![1, 2, 3],
                        explicit_bounds: vec![0.1, 0.5],
                        exemplars: vec![OtlpExemplar {
                            value: Some(exemplar::Value::AsDouble(0.3)),
                            trace_id: vec![0xab; 16],
                            span_id: vec![0xcd; 8],
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                })),
                ..Default::default()
            },
            Metric {
                name: "gc.pause".into(),
                unit: "ms".into(),
                data: Some(Data::Summary(Summary {
                    data_points: vec![SummaryDataPoint {
                        time_unix_nano: 1_700_000_000_000_000_000,
                        count: 4,
                        sum: 10.0,
                        quantile_values: vec![ValueAtQuantile {
                            quantile: 0.99,
                            value: 7.0,
                        }],
                        ..Default::default()
                    }],
                })),
                ..Default::default()
            },
            Metric {
                name: "delta.requests".into(),
                data: Some(Data::Sum(Sum {
                    data_points: vec![
                        point(1_700_000_000, 1.0, vec![]),
                        point(1_700_000_015, 1.0, vec![]),
                    ],
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                    is_monotonic: true,
                })),
                ..Default::default()
            },
            Metric {
                name: "native".into(),
                data: Some(Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![Default::default()],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                })),
                ..Default::default()
            },
        ]);
        let t = translate(&req);
        let id = r#"instance="pod-1", job="shop/checkout""#;
        let bucket = |le: &str| {
            find(
                &t,
                &format!(r#"{{__name__="rpc_duration_seconds_bucket", {id}, le="{le}"}}"#),
            )
            .clone()
        };
        assert_eq!(bucket("0.1").samples[0].v, 1.0);
        assert_eq!(bucket("0.5").samples[0].v, 3.0);
        assert_eq!(bucket("+Inf").samples[0].v, 6.0);
        // The exemplar (0.3 s) sits in the first bucket that holds it.
        let ex = &bucket("0.5").exemplars;
        assert_eq!(ex.len(), 1);
        assert_eq!(
            ex[0].labels.get("trace_id"),
            Some("abababababababababababababababab")
        );
        assert_eq!(ex[0].t, 1_700_000_000_000);
        assert!(bucket("0.1").exemplars.is_empty());
        let sum = find(
            &t,
            &format!(r#"{{__name__="rpc_duration_seconds_sum", {id}}}"#),
        );
        assert_eq!(sum.samples[0].v, 2.5);
        let q = find(
            &t,
            &format!(r#"{{__name__="gc_pause_milliseconds", {id}, quantile="0.99"}}"#),
        );
        assert_eq!(q.samples[0].v, 7.0);
        find(
            &t,
            &format!(r#"{{__name__="gc_pause_milliseconds_count", {id}}}"#),
        );
        // Delta sums and exponential histograms are refused and said so.
        assert_eq!(t.rejected, 3);
        assert!(
            t.reasons.iter().any(|r| r.contains("delta temporality")),
            "{:?}",
            t.reasons
        );
        assert!(
            t.reasons
                .iter()
                .any(|r| r.contains("exponential histograms")),
            "{:?}",
            t.reasons
        );
        assert!(!t.batch.series.iter().any(|s| s
            .labels
            .get("__name__")
            .unwrap()
            .starts_with("delta")));
    }

    #[test]
    fn malformed_histogram_points_are_refused_not_guessed() {
        let req = request(vec![Metric {
            name: "bad".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    time_unix_nano: 1_700_000_000_000_000_000,
                    count: 1,
                    bucket_counts: vec![1, 0, 0],
                    explicit_bounds: vec![1.0],
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        }]);
        let t = translate(&req);
        assert_eq!(t.rejected, 1);
        assert!(
            t.reasons[0].contains("one more count than bounds"),
            "{:?}",
            t.reasons
        );
    }
}
