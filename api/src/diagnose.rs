//! `GET /api/v1/diagnose`: for a pair of ends and a window, the evidence per layer — DNS, TCP,
//! HTTP — against the window just before it (the baseline), and a verdict naming the layer at
//! fault: `dns`, `network`, `application`, or `healthy` (`no_data` when nothing was seen). Every
//! signal carries the PromQL expression and the flow query that produced it, and the HTTP layer
//! the exemplar trace ids behind it, so a person can open each claim.
//!
//! The layers are judged in order and the first at fault wins: a failing lookup or a lossy path
//! makes the application look slow too, never the other way round. Thresholds are in
//! [`Thresholds`], written where they are judged.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use strata_query::{QueryControls, Value as QueryValue};
use strata_store::MetricsReader;

use crate::prometheus::{exemplar_selectors, parse_time};
use crate::server::{tenant, AppState};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/api/v1/diagnose", get(diagnose))
}

/// When a layer is at fault. Ratios are shares of the window's traffic; "rose" compares with the
/// baseline window.
struct Thresholds;

impl Thresholds {
    /// DNS: this share of the source's lookups failed (any code but NOERROR).
    const DNS_FAILURE_RATIO: f64 = 0.2;
    /// TCP: this share of connection attempts failed (refused, timed out, unreachable, reset).
    const CONNECT_FAILURE_RATIO: f64 = 0.1;
    /// TCP: retransmitted segments per segment sent, and how much above the baseline.
    const RETRANSMIT_RATIO: f64 = 0.01;
    const RETRANSMIT_RISE: f64 = 3.0;
    /// TCP: the mean RTT at least doubled and grew by this much.
    const RTT_RISE: f64 = 2.0;
    const RTT_RISE_SECONDS: f64 = 0.010;
    /// HTTP: this share of requests answered 5xx, and at least twice the baseline's share.
    const ERROR_RATIO: f64 = 0.05;
    /// HTTP: p95 latency grew by half and by this much.
    const LATENCY_RISE: f64 = 1.5;
    const LATENCY_RISE_SECONDS: f64 = 0.050;
}

/// One end as the caller names it: `namespace/workload`, or an external DNS name.
#[derive(Clone, Debug, PartialEq, Eq)]
enum End {
    Workload { namespace: String, workload: String },
    External { name: String },
}

impl End {
    fn parse(text: &str) -> Result<End, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("is empty".into());
        }
        if let Some((namespace, workload)) = text.split_once('/') {
            if namespace.is_empty() || workload.is_empty() || workload.contains('/') {
                return Err(format!("{text:?} is not namespace/workload"));
            }
            return Ok(End::Workload {
                namespace: namespace.into(),
                workload: workload.into(),
            });
        }
        Ok(End::External { name: text.into() })
    }

    /// PromQL matchers for this end as `side` (`src` or `dst`).
    fn matchers(&self, side: &str) -> String {
        match self {
            End::Workload {
                namespace,
                workload,
            } => format!(
                "{side}_namespace=\"{}\",{side}_workload=\"{}\"",
                escape(namespace),
                escape(workload)
            ),
            End::External { name } => format!("{side}_name=\"{}\"", escape(name)),
        }
    }

    /// The flow-filter terms for this end as `side`.
    fn flow_terms(&self, side: &str) -> String {
        match self {
            End::Workload {
                namespace,
                workload,
            } => format!(
                "{side}.namespace=\"{}\" and {side}.workload=\"{}\"",
                escape(namespace),
                escape(workload)
            ),
            End::External { name } => format!("{side}.name=\"{}\"", escape(name)),
        }
    }

    fn label(&self) -> String {
        match self {
            End::Workload {
                namespace,
                workload,
            } => format!("{namespace}/{workload}"),
            End::External { name } => name.clone(),
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

#[derive(Debug)]
struct DiagnoseError(StatusCode, String);

impl IntoResponse for DiagnoseError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

fn bad_request(message: impl Into<String>) -> DiagnoseError {
    DiagnoseError(StatusCode::BAD_REQUEST, message.into())
}

/// The window and its baseline, in ms.
#[derive(Clone, Copy, Debug)]
struct Window {
    start: i64,
    end: i64,
}

impl Window {
    fn seconds(&self) -> i64 {
        ((self.end - self.start) / 1000).max(1)
    }
}

/// Evaluates instant queries for one tenant.
struct Evaluator {
    state: Arc<AppState>,
    reader: Arc<dyn MetricsReader>,
}

impl Evaluator {
    /// The value of `expr` at `at` (ms): a scalar, or the single sample of a vector; `None`
    /// when it has no value (no data, or a division by zero).
    fn value(&self, expr: &str, at: i64) -> Result<Option<f64>, DiagnoseError> {
        let out = self
            .state
            .engine
            .instant_query_with(self.reader.as_ref(), expr, at, &QueryControls::default())
            .map_err(|err| {
                DiagnoseError(StatusCode::UNPROCESSABLE_ENTITY, format!("{expr}: {err}"))
            })?;
        let value = match out.value {
            QueryValue::Scalar(_, v) => Some(v),
            QueryValue::Vector(samples) => samples.first().map(|(_, _, v)| *v),
            _ => None,
        };
        Ok(value.filter(|v| v.is_finite()))
    }
}

/// One measured signal of a layer.
struct Signal {
    name: &'static str,
    unit: &'static str,
    value: Option<f64>,
    baseline: Option<f64>,
    promql: String,
}

impl Signal {
    fn measure(
        eval: &Evaluator,
        name: &'static str,
        unit: &'static str,
        window: Window,
        expr: impl Fn(i64) -> String,
    ) -> Result<Signal, DiagnoseError> {
        let seconds = window.seconds();
        let promql = expr(seconds);
        Ok(Signal {
            name,
            unit,
            value: eval.value(&promql, window.end)?,
            baseline: eval.value(&promql, window.start)?,
            promql,
        })
    }

    fn json(&self) -> Value {
        json!({
            "signal": self.name,
            "unit": self.unit,
            "value": self.value,
            "baseline": self.baseline,
            "promql": self.promql,
        })
    }

    fn value_or_zero(&self) -> f64 {
        self.value.unwrap_or(0.0)
    }

    fn baseline_or_zero(&self) -> f64 {
        self.baseline.unwrap_or(0.0)
    }
}

/// A layer's finding.
struct Layer {
    status: &'static str,
    claims: Vec<String>,
    signals: Vec<Signal>,
    flows: String,
    extra: Option<(&'static str, Value)>,
}

impl Layer {
    fn json(&self) -> Value {
        let mut layer = json!({
            "status": self.status,
            "claims": self.claims,
            "evidence": self.signals.iter().map(Signal::json).collect::<Vec<_>>(),
            "flows": self.flows,
        });
        if let Some((key, value)) = &self.extra {
            layer[key] = value.clone();
        }
        layer
    }
}

fn status(at_fault: bool, seen: bool) -> &'static str {
    match (at_fault, seen) {
        (true, _) => "fault",
        (false, true) => "healthy",
        (false, false) => "no_data",
    }
}

fn percent(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

fn millis(seconds: f64) -> String {
    format!("{:.1} ms", seconds * 1000.0)
}

fn dns_layer(
    eval: &Evaluator,
    src: &End,
    dst: &End,
    window: Window,
) -> Result<Layer, DiagnoseError> {
    let s = src.matchers("src");
    let lookups = Signal::measure(eval, "lookups", "1", window, |w| {
        format!("sum(increase(dns_lookup_duration_seconds_count{{{s}}}[{w}s]))")
    })?;
    let failures = Signal::measure(eval, "failure_ratio", "ratio", window, |w| {
        format!(
            "(sum(increase(dns_lookup_duration_seconds_count{{{s},dns_response_code!=\"NOERROR\"}}[{w}s])) or vector(0)) / sum(increase(dns_lookup_duration_seconds_count{{{s}}}[{w}s]))"
        )
    })?;
    let latency = Signal::measure(eval, "mean_latency", "s", window, |w| {
        format!(
            "sum(increase(dns_lookup_duration_seconds_sum{{{s}}}[{w}s])) / sum(increase(dns_lookup_duration_seconds_count{{{s}}}[{w}s]))"
        )
    })?;
    let ratio = failures.value_or_zero();
    let at_fault = lookups.value_or_zero() >= 1.0
        && ratio >= Thresholds::DNS_FAILURE_RATIO
        && ratio > failures.baseline_or_zero();
    let mut claims = Vec::new();
    if at_fault {
        claims.push(format!(
            "{} of {}'s DNS lookups failed (baseline {})",
            percent(ratio),
            src.label(),
            percent(failures.baseline_or_zero())
        ));
    }
    let mut flows = format!(
        "{} and dns.rcode!=\"\" and dns.rcode!=\"NOERROR\"",
        src.flow_terms("src")
    );
    if let End::External { name } = dst {
        flows = format!(
            "{} and dns.query=\"{}\"",
            src.flow_terms("src"),
            escape(name)
        );
    }
    Ok(Layer {
        status: status(at_fault, lookups.value_or_zero() > 0.0),
        claims,
        signals: vec![lookups, failures, latency],
        flows,
        extra: None,
    })
}

fn tcp_layer(
    eval: &Evaluator,
    src: &End,
    dst: &End,
    window: Window,
) -> Result<Layer, DiagnoseError> {
    let m = format!("{},{}", src.matchers("src"), dst.matchers("dst"));
    let packets = Signal::measure(eval, "packets", "1", window, |w| {
        format!("sum(increase(network_tcp_packets_total{{{m}}}[{w}s]))")
    })?;
    let retransmits = Signal::measure(eval, "retransmit_ratio", "ratio", window, |w| {
        format!(
            "(sum(increase(network_tcp_retransmits_total{{{m}}}[{w}s])) or vector(0)) / sum(increase(network_tcp_packets_total{{{m}}}[{w}s]))"
        )
    })?;
    let rtt = Signal::measure(eval, "mean_rtt", "s", window, |w| {
        format!(
            "sum(increase(network_tcp_rtt_seconds_sum{{{m}}}[{w}s])) / sum(increase(network_tcp_rtt_seconds_count{{{m}}}[{w}s]))"
        )
    })?;
    let connects = Signal::measure(eval, "connect_failure_ratio", "ratio", window, |w| {
        format!(
            "(sum(increase(network_tcp_connections_total{{{m},outcome!=\"ok\"}}[{w}s])) or vector(0)) / sum(increase(network_tcp_connections_total{{{m}}}[{w}s]))"
        )
    })?;
    let mut claims = Vec::new();
    let connect_ratio = connects.value_or_zero();
    if connect_ratio >= Thresholds::CONNECT_FAILURE_RATIO {
        claims.push(format!(
            "{} of connections failed (baseline {})",
            percent(connect_ratio),
            percent(connects.baseline_or_zero())
        ));
    }
    let ratio = retransmits.value_or_zero();
    if ratio >= Thresholds::RETRANSMIT_RATIO
        && ratio >= Thresholds::RETRANSMIT_RISE * retransmits.baseline_or_zero()
    {
        claims.push(format!(
            "{} of segments were retransmitted (baseline {})",
            percent(ratio),
            percent(retransmits.baseline_or_zero())
        ));
    }
    if let (Some(now), Some(before)) = (rtt.value, rtt.baseline) {
        if now >= Thresholds::RTT_RISE * before && now - before >= Thresholds::RTT_RISE_SECONDS {
            claims.push(format!(
                "mean RTT rose to {} from {}",
                millis(now),
                millis(before)
            ));
        }
    }
    let flows = format!(
        "{} and {} and (tcp.retransmits>0 or (tcp.connect!=\"\" and tcp.connect!=\"ok\"))",
        src.flow_terms("src"),
        dst.flow_terms("dst")
    );
    Ok(Layer {
        status: status(!claims.is_empty(), packets.value_or_zero() > 0.0),
        claims,
        signals: vec![packets, retransmits, rtt, connects],
        flows,
        extra: None,
    })
}

fn http_layer(
    eval: &Evaluator,
    src: &End,
    dst: &End,
    window: Window,
    trace_ids: impl Fn(&str) -> Vec<String>,
) -> Result<Layer, DiagnoseError> {
    let m = format!("{},{}", src.matchers("src"), dst.matchers("dst"));
    // The server's view when the server is observed; an external server only has the client's.
    let side = match dst {
        End::Workload { .. } => "server",
        End::External { .. } => "client",
    };
    let metric = format!("http_{side}_request_duration_seconds");
    let requests = Signal::measure(eval, "requests", "1", window, |w| {
        format!("sum(increase({metric}_count{{{m}}}[{w}s]))")
    })?;
    let errors = Signal::measure(eval, "error_ratio", "ratio", window, |w| {
        format!(
            "(sum(increase({metric}_count{{{m},http_response_status_code=~\"5..\"}}[{w}s])) or vector(0)) / sum(increase({metric}_count{{{m}}}[{w}s]))"
        )
    })?;
    let p95 = Signal::measure(eval, "p95_latency", "s", window, |w| {
        format!("histogram_quantile(0.95, sum by (le) (increase({metric}_bucket{{{m}}}[{w}s])))")
    })?;
    let p50 = Signal::measure(eval, "p50_latency", "s", window, |w| {
        format!("histogram_quantile(0.5, sum by (le) (increase({metric}_bucket{{{m}}}[{w}s])))")
    })?;
    let mut claims = Vec::new();
    let mut exemplars = Vec::new();
    let ratio = errors.value_or_zero();
    if ratio >= Thresholds::ERROR_RATIO && ratio >= 2.0 * errors.baseline_or_zero() {
        claims.push(format!(
            "{} of requests answered 5xx (baseline {})",
            percent(ratio),
            percent(errors.baseline_or_zero())
        ));
        exemplars.extend(trace_ids(&format!(
            "{metric}_bucket{{{m},http_response_status_code=~\"5..\"}}"
        )));
    }
    if let (Some(now), Some(before)) = (p95.value, p95.baseline) {
        if now >= Thresholds::LATENCY_RISE * before
            && now - before >= Thresholds::LATENCY_RISE_SECONDS
        {
            claims.push(format!(
                "p95 latency rose to {} from {}",
                millis(now),
                millis(before)
            ));
            exemplars.extend(trace_ids(&format!("{metric}_bucket{{{m}}}")));
        }
    }
    if exemplars.is_empty() {
        exemplars.extend(trace_ids(&format!("{metric}_bucket{{{m}}}")));
    }
    exemplars.dedup();
    exemplars.truncate(5);
    let flows = format!(
        "{} and {} and http.requests>0",
        src.flow_terms("src"),
        dst.flow_terms("dst")
    );
    Ok(Layer {
        status: status(!claims.is_empty(), requests.value_or_zero() > 0.0),
        claims,
        signals: vec![requests, errors, p95, p50],
        flows,
        extra: Some(("exemplar_trace_ids", json!(exemplars))),
    })
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn diagnose(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, DiagnoseError> {
    let params: Vec<(String, String)> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let end_param = |name: &str| -> Result<End, DiagnoseError> {
        let text = param(&params, name).ok_or_else(|| {
            bad_request(format!(
                "missing parameter {name:?}: namespace/workload or a DNS name"
            ))
        })?;
        End::parse(text).map_err(|why| bad_request(format!("invalid parameter {name:?}: {why}")))
    };
    let src = end_param("src")?;
    let dst = end_param("dst")?;
    let time = |name: &str, default: i64| -> Result<i64, DiagnoseError> {
        param(&params, name).map_or(Ok(default), |text| {
            parse_time(text)
                .map_err(|why| bad_request(format!("invalid parameter {name:?}: {why}")))
        })
    };
    let end = time("end", now_ms())?;
    let start = time("start", end - 15 * 60 * 1000)?;
    if start >= end {
        return Err(bad_request("start must be before end"));
    }
    let window = Window { start, end };
    let tenant = tenant(&headers).map_err(bad_request)?;
    let store = state
        .storage
        .metrics_for_read(&tenant)
        .map_err(|err| DiagnoseError(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))?;
    let reader: Arc<dyn MetricsReader> = match &store {
        Some(store) => store.clone(),
        None => Arc::new(strata_query::memory::MemoryReader::default()),
    };
    let eval = Evaluator {
        state: Arc::clone(&state),
        reader,
    };
    let report = tokio::task::spawn_blocking(move || -> Result<Value, DiagnoseError> {
        let trace_ids = |selector: &str| -> Vec<String> {
            let (Some(store), Ok(selectors)) = (&store, exemplar_selectors(selector)) else {
                return Vec::new();
            };
            let Ok(found) = store.exemplars(&selectors, window.start, window.end) else {
                return Vec::new();
            };
            // The slowest first: they are what a person looks at.
            let mut exemplars: Vec<(f64, String)> = found
                .iter()
                .flat_map(|series| &series.exemplars)
                .filter_map(|exemplar| Some((exemplar.value, exemplar.labels.get("trace_id")?.to_owned())))
                .collect();
            exemplars.sort_by(|a, b| b.0.total_cmp(&a.0));
            exemplars.into_iter().map(|(_, id)| id).collect()
        };
        let dns = dns_layer(&eval, &src, &dst, window)?;
        let tcp = tcp_layer(&eval, &src, &dst, window)?;
        let http = http_layer(&eval, &src, &dst, window, trace_ids)?;
        let verdict = [("dns", &dns), ("network", &tcp), ("application", &http)]
            .into_iter()
            .find(|(_, layer)| layer.status == "fault")
            .map(|(name, _)| name)
            .unwrap_or(if [&dns, &tcp, &http].iter().any(|l| l.status == "healthy") {
                "healthy"
            } else {
                "no_data"
            });
        let summary = match verdict {
            "dns" => dns.claims.join("; "),
            "network" => tcp.claims.join("; "),
            "application" => http.claims.join("; "),
            "healthy" => "no layer shows a fault".to_owned(),
            _ => "no traffic between these ends in the window".to_owned(),
        };
        let baseline_start = window.start - (window.end - window.start);
        Ok(json!({
            "src": src.label(),
            "dst": dst.label(),
            "start": window.start as f64 / 1000.0,
            "end": window.end as f64 / 1000.0,
            "baseline": { "start": baseline_start as f64 / 1000.0, "end": window.start as f64 / 1000.0 },
            "verdict": verdict,
            "summary": summary,
            "layers": { "dns": dns.json(), "tcp": tcp.json(), "http": http.json() },
        }))
    })
    .await
    .map_err(|err| DiagnoseError(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))??;
    Ok(axum::Json(report).into_response())
}

/// A diagnosis as a person reads it in a terminal.
pub fn render_text(report: &Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} -> {}   window {} .. {} (baseline: the window before)",
        report["src"].as_str().unwrap_or("?"),
        report["dst"].as_str().unwrap_or("?"),
        report["start"],
        report["end"]
    );
    let _ = writeln!(
        out,
        "verdict: {} - {}\n",
        report["verdict"].as_str().unwrap_or("?"),
        report["summary"].as_str().unwrap_or("")
    );
    for (name, key) in [("DNS", "dns"), ("TCP", "tcp"), ("HTTP", "http")] {
        let layer = &report["layers"][key];
        let _ = writeln!(out, "{name:<5} {}", layer["status"].as_str().unwrap_or("?"));
        for claim in layer["claims"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "      {}", claim.as_str().unwrap_or(""));
        }
        for signal in layer["evidence"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "      {:<22} {:>12} (baseline {})   {}",
                signal["signal"].as_str().unwrap_or("?"),
                signal["value"]
                    .as_f64()
                    .map_or("-".to_owned(), |v| format!("{v:.4}")),
                signal["baseline"]
                    .as_f64()
                    .map_or("-".to_owned(), |v| format!("{v:.4}")),
                signal["promql"].as_str().unwrap_or("")
            );
        }
        let _ = writeln!(
            out,
            "      flows: {}",
            layer["flows"].as_str().unwrap_or("")
        );
        if let Some(ids) = layer["exemplar_trace_ids"]
            .as_array()
            .filter(|ids| !ids.is_empty())
        {
            let ids: Vec<&str> = ids.iter().filter_map(Value::as_str).collect();
            let _ = writeln!(out, "      traces: {}", ids.join(" "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_are_workloads_or_names() {
        assert_eq!(
            End::parse("tenant-jobs/core-api"),
            Ok(End::Workload {
                namespace: "tenant-jobs".into(),
                workload: "core-api".into()
            })
        );
        assert_eq!(
            End::parse("api.twilio.com"),
            Ok(End::External {
                name: "api.twilio.com".into()
            })
        );
        assert!(End::parse("a/").is_err());
        assert!(End::parse("a/b/c").is_err());
        assert!(End::parse(" ").is_err());
        let end = End::parse("ns/w\"x").expect("parses");
        assert_eq!(
            end.matchers("src"),
            r#"src_namespace="ns",src_workload="w\"x""#
        );
        assert_eq!(
            end.flow_terms("dst"),
            r#"dst.namespace="ns" and dst.workload="w\"x""#
        );
    }
}
