//! Span metrics and service-graph series generated from ingested spans into the tenant's metrics
//! store, named and labelled as Tempo's metrics generator writes them, so Grafana's service graph and
//! its span-metrics table work with no other component:
//!
//! - `traces_spanmetrics_calls_total`, `traces_spanmetrics_latency_{bucket,sum,count}` by `service`,
//!   `span_name`, `span_kind`, `status_code`;
//! - `traces_service_graph_request_total`, `…_request_failed_total`,
//!   `…_request_server_seconds_{bucket,sum,count}`, `…_request_client_seconds_{bucket,sum,count}` by
//!   `client`, `server`, `connection_type`.
//!
//! A client (or producer) span is paired with the server (or consumer) span whose parent it is; halves
//! wait up to [`PAIR_WAIT_MS`] for each other. A root server span gets the virtual client `user`; an
//! unpaired client span naming a peer (`peer.service`, `db.name`, `db.system`) a virtual server.
//! Counters live in memory and are written cumulatively (a restart is a counter reset). Every written
//! series carries an exemplar whose `traceID` label points at the last trace that moved it.

use std::collections::HashMap;

use parking_lot::Mutex;
use strata_store::traces::{hex, ResourceSpans, SpanId, SpanKind, StatusCode, TraceId, Value};
use strata_store::{Exemplar, Labels, Metadata, MetricType, Sample, SeriesWrite, WriteBatch};

use crate::server::AppState;

/// Tempo's default latency buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192,
    16.384,
];
/// How long one half of a client/server pair waits for the other.
pub const PAIR_WAIT_MS: i64 = 10_000;
/// Unpaired halves kept per tenant; past it the oldest are expired early.
const MAX_PENDING: usize = 100_000;
/// Series kept per tenant; past it new series are not generated (counted in the log).
const MAX_SERIES: usize = 100_000;

/// What the generator needs of a span.
#[derive(Debug, Clone)]
pub struct SpanFact {
    pub service: String,
    pub name: String,
    pub kind: SpanKind,
    pub status: StatusCode,
    pub duration_s: f64,
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    /// `peer.service`, else `db.name`, else `db.system`: names a server that sends no spans.
    pub peer: Option<String>,
    pub database: bool,
}

pub fn observe(batches: &[ResourceSpans]) -> Vec<SpanFact> {
    let mut out = Vec::new();
    for rs in batches {
        let service = rs.resource.service_name().to_owned();
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                let attr = |k: &str| {
                    s.attributes
                        .iter()
                        .find(|kv| kv.key == k)
                        .and_then(|kv| match &kv.value {
                            Value::Str(v) if !v.is_empty() => Some(v.clone()),
                            _ => None,
                        })
                };
                let db = attr("db.name").or_else(|| attr("db.system"));
                out.push(SpanFact {
                    service: service.clone(),
                    name: s.name.clone(),
                    kind: s.kind,
                    status: s.status_code,
                    duration_s: s.duration_nanos() as f64 / 1e9,
                    trace_id: s.trace_id,
                    span_id: s.span_id,
                    parent: <[u8; 8]>::try_from(s.parent_span_id.as_slice())
                        .ok()
                        .filter(|p| *p != [0; 8]),
                    database: db.is_some() && attr("peer.service").is_none(),
                    peer: attr("peer.service").or(db),
                });
            }
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Half {
    Client(SpanFact),
    Server(SpanFact),
}

/// A series' labels, `__name__` first.
type SeriesKey = Vec<(String, String)>;
/// Cumulative value and the last exemplar (trace, value).
type SeriesValue = (f64, Option<(TraceId, f64)>);

#[derive(Default)]
struct TenantState {
    /// Series (labels with `__name__`) → cumulative value and the last exemplar (trace, value).
    series: HashMap<SeriesKey, SeriesValue>,
    /// (trace id, the client span's id) → the half that arrived, with its arrival time.
    pending: HashMap<(TraceId, SpanId), (i64, Half)>,
}

/// Per-tenant generator state.
#[derive(Default)]
pub struct Registry {
    tenants: Mutex<HashMap<String, TenantState>>,
}

struct Update<'a> {
    state: &'a mut TenantState,
    touched: Vec<SeriesKey>,
}

impl Update<'_> {
    fn add(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        by: f64,
        exemplar: Option<(TraceId, f64)>,
    ) {
        let mut key: SeriesKey = Vec::with_capacity(labels.len() + 1);
        key.push(("__name__".into(), name.into()));
        key.extend(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        if !self.state.series.contains_key(&key) && self.state.series.len() >= MAX_SERIES {
            return;
        }
        let e = self.state.series.entry(key.clone()).or_insert((0.0, None));
        e.0 += by;
        if exemplar.is_some() {
            e.1 = exemplar;
        }
        self.touched.push(key);
    }

    fn histogram(&mut self, base: &str, labels: &[(&str, &str)], v: f64, trace: TraceId) {
        let bucket = format!("{base}_bucket");
        let mut exemplar = Some((trace, v));
        for le in BUCKETS {
            let le_s = le.to_string();
            let mut l = labels.to_vec();
            l.push(("le", &le_s));
            // The exemplar goes to the smallest bucket holding the value.
            let hit = v <= *le;
            self.add(
                &bucket,
                &l,
                if hit { 1.0 } else { 0.0 },
                if hit { exemplar.take() } else { None },
            );
        }
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        self.add(&bucket, &l, 1.0, exemplar.take());
        self.add(&format!("{base}_sum"), labels, v, None);
        self.add(&format!("{base}_count"), labels, 1.0, Some((trace, v)));
    }

    fn edge(
        &mut self,
        client: Option<&SpanFact>,
        server: Option<&SpanFact>,
        server_name: &str,
        connection_type: &str,
    ) {
        let client_name = client.map_or("user", |c| c.service.as_str()).to_owned();
        let labels = [
            ("client", client_name.as_str()),
            ("server", server_name),
            ("connection_type", connection_type),
        ];
        let trace = client.or(server).map(|f| f.trace_id).unwrap_or_default();
        self.add(
            "traces_service_graph_request_total",
            &labels,
            1.0,
            Some((trace, 1.0)),
        );
        let failed = [client, server]
            .iter()
            .flatten()
            .any(|f| f.status == StatusCode::Error);
        self.add(
            "traces_service_graph_request_failed_total",
            &labels,
            if failed { 1.0 } else { 0.0 },
            None,
        );
        if let Some(s) = server {
            self.histogram(
                "traces_service_graph_request_server_seconds",
                &labels,
                s.duration_s,
                s.trace_id,
            );
        }
        if let Some(c) = client {
            self.histogram(
                "traces_service_graph_request_client_seconds",
                &labels,
                c.duration_s,
                c.trace_id,
            );
        }
    }

    fn expire(&mut self, before_ms: i64) {
        let expired: Vec<(TraceId, SpanId)> = self
            .state
            .pending
            .iter()
            .filter(|(_, (t, _))| *t < before_ms)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            if let Some((_, Half::Client(c))) = self.state.pending.remove(&k) {
                if let Some(peer) = c.peer.clone() {
                    let ct = if c.database {
                        "database"
                    } else {
                        "virtual_node"
                    };
                    self.edge(Some(&c), None, &peer, ct);
                }
            }
        }
    }

    fn span(&mut self, f: SpanFact, now_ms: i64) {
        let labels = [
            ("service", f.service.as_str()),
            ("span_name", f.name.as_str()),
            ("span_kind", f.kind.otlp_name()),
            ("status_code", f.status.otlp_name()),
        ];
        self.add(
            "traces_spanmetrics_calls_total",
            &labels,
            1.0,
            Some((f.trace_id, 1.0)),
        );
        self.histogram(
            "traces_spanmetrics_latency",
            &labels,
            f.duration_s,
            f.trace_id,
        );
        let messaging = matches!(f.kind, SpanKind::Producer | SpanKind::Consumer);
        let ct = if messaging { "messaging_system" } else { "" };
        match f.kind {
            SpanKind::Server | SpanKind::Consumer => match f.parent {
                None => {
                    let server = f.service.clone();
                    self.edge(None, Some(&f), &server, ct);
                }
                Some(p) => match self.state.pending.remove(&(f.trace_id, p)) {
                    Some((_, Half::Client(c))) => {
                        let server = f.service.clone();
                        self.edge(Some(&c), Some(&f), &server, ct);
                    }
                    _ => {
                        self.state
                            .pending
                            .insert((f.trace_id, p), (now_ms, Half::Server(f)));
                    }
                },
            },
            SpanKind::Client | SpanKind::Producer => {
                match self.state.pending.remove(&(f.trace_id, f.span_id)) {
                    Some((_, Half::Server(s))) => {
                        let server = s.service.clone();
                        self.edge(Some(&f), Some(&s), &server, ct);
                    }
                    _ => {
                        self.state
                            .pending
                            .insert((f.trace_id, f.span_id), (now_ms, Half::Client(f)));
                    }
                }
            }
            _ => {}
        }
    }
}

impl Registry {
    /// Applies the spans to the tenant's counters; returns the series they moved, with current values.
    pub fn apply(&self, tenant: &str, facts: Vec<SpanFact>, now_ms: i64) -> WriteBatch {
        let mut tenants = self.tenants.lock();
        let state = tenants.entry(tenant.to_owned()).or_default();
        let mut u = Update {
            state,
            touched: Vec::new(),
        };
        let early = if u.state.pending.len() > MAX_PENDING {
            now_ms
        } else {
            now_ms - PAIR_WAIT_MS
        };
        u.expire(early);
        for f in facts {
            u.span(f, now_ms);
        }
        let Update { state, mut touched } = u;
        touched.sort();
        touched.dedup();
        let series = touched
            .into_iter()
            .filter_map(|key| {
                let (v, ex) = state.series.get(&key)?;
                Some(SeriesWrite {
                    labels: Labels::from_pairs(key.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                    samples: vec![Sample::new(now_ms, *v)],
                    exemplars: ex
                        .iter()
                        .map(|(t, value)| Exemplar {
                            labels: Labels::from_pairs([("traceID", hex(t))]),
                            value: *value,
                            t: now_ms,
                        })
                        .collect(),
                })
            })
            .collect();
        WriteBatch {
            series,
            metadata: metadata(),
        }
    }
}

fn metadata() -> Vec<(String, Metadata)> {
    let m = |t, help: &str| Metadata {
        metric_type: t,
        help: help.into(),
        unit: String::new(),
    };
    vec![
        (
            "traces_spanmetrics_calls_total".into(),
            m(
                MetricType::Counter,
                "Spans seen, by service, name, kind and status.",
            ),
        ),
        (
            "traces_spanmetrics_latency".into(),
            m(MetricType::Histogram, "Span durations in seconds."),
        ),
        (
            "traces_service_graph_request_total".into(),
            m(MetricType::Counter, "Requests between two services."),
        ),
        (
            "traces_service_graph_request_failed_total".into(),
            m(MetricType::Counter, "Failed requests between two services."),
        ),
        (
            "traces_service_graph_request_server_seconds".into(),
            m(
                MetricType::Histogram,
                "Server-side request durations in seconds.",
            ),
        ),
        (
            "traces_service_graph_request_client_seconds".into(),
            m(
                MetricType::Histogram,
                "Client-side request durations in seconds.",
            ),
        ),
    ]
}

/// Applies `facts` and writes the moved series into the tenant's metrics store.
pub fn write(state: &AppState, tenant: &str, facts: Vec<SpanFact>) -> Result<(), String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let batch = state.span_metrics.apply(tenant, facts, now);
    if batch.series.is_empty() {
        return Ok(());
    }
    let store = state
        .storage
        .metrics_for_write(tenant)
        .map_err(|e| e.to_string())?;
    store.append(&batch).map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(
        service: &str,
        kind: SpanKind,
        id: u8,
        parent: Option<u8>,
        status: StatusCode,
    ) -> SpanFact {
        SpanFact {
            service: service.into(),
            name: "op".into(),
            kind,
            status,
            duration_s: 0.1,
            trace_id: [1; 16],
            span_id: [id; 8],
            parent: parent.map(|p| [p; 8]),
            peer: None,
            database: false,
        }
    }

    fn value(b: &WriteBatch, name: &str, pairs: &[(&str, &str)]) -> Option<f64> {
        b.series
            .iter()
            .find(|s| {
                s.labels.get("__name__") == Some(name)
                    && pairs.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            })
            .map(|s| s.samples[0].v)
    }

    #[test]
    fn pairs_client_and_server_across_requests_and_roots_get_user() {
        let r = Registry::default();
        let b = r.apply(
            "t",
            vec![
                fact("front", SpanKind::Server, 1, None, StatusCode::Unset),
                fact("front", SpanKind::Client, 2, Some(1), StatusCode::Unset),
            ],
            1_000,
        );
        assert_eq!(
            value(
                &b,
                "traces_service_graph_request_total",
                &[("client", "user"), ("server", "front")]
            ),
            Some(1.0)
        );
        // the server half arrives in a later request
        let b = r.apply(
            "t",
            vec![fact(
                "cart",
                SpanKind::Server,
                3,
                Some(2),
                StatusCode::Error,
            )],
            2_000,
        );
        assert_eq!(
            value(
                &b,
                "traces_service_graph_request_total",
                &[("client", "front"), ("server", "cart")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &b,
                "traces_service_graph_request_failed_total",
                &[("client", "front"), ("server", "cart")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &b,
                "traces_service_graph_request_server_seconds_bucket",
                &[("client", "front"), ("le", "0.128")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &b,
                "traces_service_graph_request_server_seconds_bucket",
                &[("client", "front"), ("le", "0.064")]
            ),
            Some(0.0)
        );
        let ex = b
            .series
            .iter()
            .find(|s| s.labels.get("__name__") == Some("traces_service_graph_request_total"))
            .unwrap();
        assert_eq!(
            ex.exemplars[0].labels.get("traceID"),
            Some(hex(&[1; 16]).as_str())
        );
        assert_eq!(
            value(
                &b,
                "traces_spanmetrics_calls_total",
                &[
                    ("service", "cart"),
                    ("span_kind", "SPAN_KIND_SERVER"),
                    ("status_code", "STATUS_CODE_ERROR")
                ]
            ),
            Some(1.0)
        );
        // counters are cumulative
        let b = r.apply(
            "t",
            vec![fact("cart", SpanKind::Server, 9, None, StatusCode::Unset)],
            3_000,
        );
        assert_eq!(
            value(
                &b,
                "traces_spanmetrics_calls_total",
                &[("service", "cart"), ("status_code", "STATUS_CODE_UNSET")]
            ),
            Some(1.0)
        );
        let b = r.apply(
            "t",
            vec![fact("cart", SpanKind::Server, 10, None, StatusCode::Unset)],
            4_000,
        );
        assert_eq!(
            value(
                &b,
                "traces_spanmetrics_calls_total",
                &[("service", "cart"), ("status_code", "STATUS_CODE_UNSET")]
            ),
            Some(2.0)
        );
    }

    #[test]
    fn unpaired_client_with_a_peer_expires_into_a_virtual_server() {
        let r = Registry::default();
        let mut c = fact("api", SpanKind::Client, 5, Some(4), StatusCode::Unset);
        c.peer = Some("postgres".into());
        c.database = true;
        r.apply("t", vec![c], 1_000);
        let b = r.apply("t", vec![], 1_000 + PAIR_WAIT_MS + 1);
        assert_eq!(
            value(
                &b,
                "traces_service_graph_request_total",
                &[
                    ("client", "api"),
                    ("server", "postgres"),
                    ("connection_type", "database")
                ]
            ),
            Some(1.0)
        );
    }
}
