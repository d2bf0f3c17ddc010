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
//! Counters live in memory, grouped by label set (no allocation per span), and the label sets that moved
//! are written cumulatively every [`FLUSH_INTERVAL`] and at shutdown, as a scrape would; a restart is a
//! counter reset. Call counts, request totals, `_count` and the bucket of the last observation carry an
//! exemplar whose `traceID` label names the last trace that moved them.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

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
/// Label sets (span groups plus edges) kept per tenant; new ones past it are not generated.
const MAX_GROUPS: usize = 20_000;
/// How often the generated series are written into the metrics store, like a scrape interval.
pub const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(15);

/// What pairing needs of a client or server span.
#[derive(Debug, Clone)]
pub struct SpanFact {
    pub service: String,
    pub kind: SpanKind,
    pub status: StatusCode,
    pub duration_s: f64,
    pub trace_id: TraceId,
    /// `peer.service`, else `db.name`, else `db.system`: names a server that sends no spans.
    pub peer: Option<String>,
    pub database: bool,
}

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Observations per bucket (not cumulative); the `+Inf` bucket is `count`.
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
    /// The last observation with its trace, and the bucket it fell in.
    exemplar: Option<(TraceId, f64)>,
}

impl Histogram {
    fn observe(&mut self, v: f64, trace: TraceId) {
        if let Some(i) = BUCKETS.iter().position(|le| v <= *le) {
            self.buckets[i] += 1;
        }
        self.sum += v;
        self.count += 1;
        self.exemplar = Some((trace, v));
    }

    fn write(&self, base: &str, labels: &[(&str, &str)], t: i64, out: &mut Vec<SeriesWrite>) {
        let ex_bucket = self.exemplar.map(|(_, v)| {
            BUCKETS
                .iter()
                .position(|le| v <= *le)
                .unwrap_or(BUCKETS.len())
        });
        let mut cumulative = 0;
        let bucket = format!("{base}_bucket");
        for (i, le) in BUCKETS
            .iter()
            .map(f64::to_string)
            .chain(["+Inf".to_owned()])
            .enumerate()
        {
            cumulative = if i < BUCKETS.len() {
                cumulative + self.buckets[i]
            } else {
                self.count
            };
            let mut l = labels.to_vec();
            l.push(("le", &le));
            let ex = self.exemplar.filter(|_| ex_bucket == Some(i));
            out.push(series(&bucket, &l, cumulative as f64, ex, t));
        }
        out.push(series(&format!("{base}_sum"), labels, self.sum, None, t));
        out.push(series(
            &format!("{base}_count"),
            labels,
            self.count as f64,
            self.exemplar,
            t,
        ));
    }
}

fn series(
    name: &str,
    labels: &[(&str, &str)],
    v: f64,
    exemplar: Option<(TraceId, f64)>,
    t: i64,
) -> SeriesWrite {
    SeriesWrite {
        labels: Labels::from_pairs(
            std::iter::once(("__name__", name)).chain(labels.iter().copied()),
        ),
        samples: vec![Sample::new(t, v)],
        exemplars: exemplar
            .map(|(trace, value)| Exemplar {
                labels: Labels::from_pairs([("traceID", hex(&trace))]),
                value,
                t,
            })
            .into_iter()
            .collect(),
    }
}

/// Spans of one service, name, kind and status.
#[derive(Debug, Clone)]
struct SpanGroup {
    service: String,
    name: String,
    kind: SpanKind,
    status: StatusCode,
    calls: u64,
    latency: Histogram,
    dirty: bool,
}

/// Requests from one client to one server.
#[derive(Debug, Clone, Default)]
struct Edge {
    client: String,
    server: String,
    connection_type: &'static str,
    total: u64,
    failed: u64,
    server_seconds: Histogram,
    client_seconds: Histogram,
    last_trace: Option<TraceId>,
    dirty: bool,
}

#[derive(Debug, Clone)]
enum Half {
    Client(SpanFact),
    Server(SpanFact),
}

#[derive(Default)]
struct TenantState {
    /// Keyed by a 64-bit hash of (service, name, kind, status): no allocation per span.
    spans: HashMap<u64, SpanGroup>,
    edges: HashMap<(String, String, &'static str), Edge>,
    /// (trace id, the client span's id) → the half that arrived, with its arrival time.
    pending: HashMap<(TraceId, SpanId), (i64, Half)>,
    /// Every insertion into `pending` in arrival order, so expiry looks only at what is due rather
    /// than at every waiting half on each request. An entry whose half was paired or replaced since is
    /// skipped when it comes due.
    arrivals: VecDeque<(i64, (TraceId, SpanId))>,
}

/// Per-tenant generator state: counters in memory, written out by [`Registry::collect`].
#[derive(Default)]
pub struct Registry {
    tenants: Mutex<HashMap<String, TenantState>>,
}

fn group_key(service: &str, name: &str, kind: SpanKind, status: StatusCode) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    (service, name, kind, status).hash(&mut h);
    h.finish()
}

impl TenantState {
    fn groups(&self) -> usize {
        self.spans.len() + self.edges.len()
    }

    fn edge(
        &mut self,
        client: Option<&SpanFact>,
        server: Option<&SpanFact>,
        server_name: &str,
        connection_type: &'static str,
    ) {
        let client_name = client.map_or("user", |c| c.service.as_str());
        let key = (
            client_name.to_owned(),
            server_name.to_owned(),
            connection_type,
        );
        if !self.edges.contains_key(&key) && self.groups() >= MAX_GROUPS {
            return;
        }
        let e = self.edges.entry(key).or_insert_with(|| Edge {
            client: client_name.to_owned(),
            server: server_name.to_owned(),
            connection_type,
            ..Default::default()
        });
        e.total += 1;
        if [client, server]
            .iter()
            .flatten()
            .any(|f| f.status == StatusCode::Error)
        {
            e.failed += 1;
        }
        if let Some(s) = server {
            e.server_seconds.observe(s.duration_s, s.trace_id);
        }
        if let Some(c) = client {
            e.client_seconds.observe(c.duration_s, c.trace_id);
        }
        e.last_trace = client.or(server).map(|f| f.trace_id);
        e.dirty = true;
    }

    fn wait_for_other_half(&mut self, key: (TraceId, SpanId), now_ms: i64, half: Half) {
        self.pending.insert(key, (now_ms, half));
        self.arrivals.push_back((now_ms, key));
    }

    fn expire(&mut self, before_ms: i64) {
        while let Some(&(t, key)) = self.arrivals.front() {
            if t >= before_ms {
                break;
            }
            self.arrivals.pop_front();
            if self.pending.get(&key).is_none_or(|(at, _)| *at != t) {
                continue;
            }
            if let Some((_, Half::Client(c))) = self.pending.remove(&key) {
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

    fn pair(&mut self, f: SpanFact, span_id: SpanId, parent: Option<SpanId>, now_ms: i64) {
        let ct = if matches!(f.kind, SpanKind::Producer | SpanKind::Consumer) {
            "messaging_system"
        } else {
            ""
        };
        match f.kind {
            SpanKind::Server | SpanKind::Consumer => match parent {
                None => {
                    let server = f.service.clone();
                    self.edge(None, Some(&f), &server, ct);
                }
                Some(p) => match self.pending.remove(&(f.trace_id, p)) {
                    Some((_, Half::Client(c))) => {
                        let server = f.service.clone();
                        self.edge(Some(&c), Some(&f), &server, ct);
                    }
                    _ => self.wait_for_other_half((f.trace_id, p), now_ms, Half::Server(f)),
                },
            },
            SpanKind::Client | SpanKind::Producer => {
                match self.pending.remove(&(f.trace_id, span_id)) {
                    Some((_, Half::Server(s))) => {
                        let server = s.service.clone();
                        self.edge(Some(&f), Some(&s), &server, ct);
                    }
                    _ => self.wait_for_other_half((f.trace_id, span_id), now_ms, Half::Client(f)),
                }
            }
            _ => {}
        }
    }
}

impl Registry {
    /// Counts the spans of one ingest request for `tenant`.
    pub fn observe(&self, tenant: &str, batches: &[ResourceSpans], now_ms: i64) {
        let mut tenants = self.tenants.lock();
        let state = tenants.entry(tenant.to_owned()).or_default();
        let early = if state.pending.len() > MAX_PENDING {
            now_ms
        } else {
            now_ms - PAIR_WAIT_MS
        };
        state.expire(early);
        for rs in batches {
            let service = rs.resource.service_name();
            for s in rs.scope_spans.iter().flat_map(|ss| ss.spans.iter()) {
                let duration_s = s.duration_nanos() as f64 / 1e9;
                let key = group_key(service, &s.name, s.kind, s.status_code);
                if !state.spans.contains_key(&key) && state.groups() >= MAX_GROUPS {
                    continue;
                }
                let g = state.spans.entry(key).or_insert_with(|| SpanGroup {
                    service: service.to_owned(),
                    name: s.name.clone(),
                    kind: s.kind,
                    status: s.status_code,
                    calls: 0,
                    latency: Histogram::default(),
                    dirty: false,
                });
                g.calls += 1;
                g.latency.observe(duration_s, s.trace_id);
                g.dirty = true;
                if matches!(s.kind, SpanKind::Internal | SpanKind::Unspecified) {
                    continue;
                }
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
                let peer_service = attr("peer.service");
                let fact = SpanFact {
                    service: service.to_owned(),
                    kind: s.kind,
                    status: s.status_code,
                    duration_s,
                    trace_id: s.trace_id,
                    database: db.is_some() && peer_service.is_none(),
                    peer: peer_service.or(db),
                };
                let parent = <[u8; 8]>::try_from(s.parent_span_id.as_slice())
                    .ok()
                    .filter(|p| *p != [0; 8]);
                state.pair(fact, s.span_id, parent, now_ms);
            }
        }
    }

    /// The series that changed since the last call, per tenant, with their cumulative values at `now_ms`.
    pub fn collect(&self, now_ms: i64) -> Vec<(String, WriteBatch)> {
        let mut tenants = self.tenants.lock();
        let mut out = Vec::new();
        for (tenant, state) in tenants.iter_mut() {
            state.expire(now_ms - PAIR_WAIT_MS);
            let mut series_out = Vec::new();
            for g in state.spans.values_mut().filter(|g| g.dirty) {
                g.dirty = false;
                let labels = [
                    ("service", g.service.as_str()),
                    ("span_name", g.name.as_str()),
                    ("span_kind", g.kind.otlp_name()),
                    ("status_code", g.status.otlp_name()),
                ];
                series_out.push(series(
                    "traces_spanmetrics_calls_total",
                    &labels,
                    g.calls as f64,
                    g.latency.exemplar.map(|(t, _)| (t, 1.0)),
                    now_ms,
                ));
                g.latency.write(
                    "traces_spanmetrics_latency",
                    &labels,
                    now_ms,
                    &mut series_out,
                );
            }
            for e in state.edges.values_mut().filter(|e| e.dirty) {
                e.dirty = false;
                let labels = [
                    ("client", e.client.as_str()),
                    ("server", e.server.as_str()),
                    ("connection_type", e.connection_type),
                ];
                let ex = e.last_trace.map(|t| (t, 1.0));
                series_out.push(series(
                    "traces_service_graph_request_total",
                    &labels,
                    e.total as f64,
                    ex,
                    now_ms,
                ));
                series_out.push(series(
                    "traces_service_graph_request_failed_total",
                    &labels,
                    e.failed as f64,
                    None,
                    now_ms,
                ));
                if e.server_seconds.count > 0 {
                    e.server_seconds.write(
                        "traces_service_graph_request_server_seconds",
                        &labels,
                        now_ms,
                        &mut series_out,
                    );
                }
                if e.client_seconds.count > 0 {
                    e.client_seconds.write(
                        "traces_service_graph_request_client_seconds",
                        &labels,
                        now_ms,
                        &mut series_out,
                    );
                }
            }
            if !series_out.is_empty() {
                out.push((
                    tenant.clone(),
                    WriteBatch {
                        series: series_out,
                        metadata: metadata(),
                    },
                ));
            }
        }
        out
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

/// Writes what changed since the last flush into each tenant's metrics store.
pub fn flush(state: &AppState, now_ms: i64) {
    for (tenant, batch) in state.span_metrics.collect(now_ms) {
        let result = state
            .storage
            .metrics_for_write(&tenant)
            .and_then(|store| store.append(&batch));
        if let Err(e) = result {
            tracing::warn!(tenant, error = %e, "span metrics were not stored");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use strata_store::traces::{KeyValue, Resource, ScopeSpans, Span};

    use super::*;

    fn span(
        service: &str,
        kind: SpanKind,
        id: u8,
        parent: Option<u8>,
        status: StatusCode,
    ) -> ResourceSpans {
        ResourceSpans {
            resource: Arc::new(Resource {
                attributes: vec![KeyValue::new("service.name", Value::Str(service.into()))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Default::default(),
                spans: vec![Span {
                    trace_id: [1; 16],
                    span_id: [id; 8],
                    parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
                    name: "op".into(),
                    kind,
                    status_code: status,
                    start_time_unix_nano: 0,
                    end_time_unix_nano: 100_000_000,
                    ..Default::default()
                }],
            }],
        }
    }

    fn value(b: &[(String, WriteBatch)], name: &str, pairs: &[(&str, &str)]) -> Option<f64> {
        b.iter()
            .flat_map(|(_, b)| &b.series)
            .find(|s| {
                s.labels.get("__name__") == Some(name)
                    && pairs.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            })
            .map(|s| s.samples[0].v)
    }

    #[test]
    fn pairs_client_and_server_across_requests_and_roots_get_user() {
        let r = Registry::default();
        r.observe(
            "t",
            &[
                span("front", SpanKind::Server, 1, None, StatusCode::Unset),
                span("front", SpanKind::Client, 2, Some(1), StatusCode::Unset),
            ],
            1_000,
        );
        let b = r.collect(1_000);
        assert_eq!(
            value(
                &b,
                "traces_service_graph_request_total",
                &[("client", "user"), ("server", "front")]
            ),
            Some(1.0)
        );
        // the server half arrives in a later request
        r.observe(
            "t",
            &[span(
                "cart",
                SpanKind::Server,
                3,
                Some(2),
                StatusCode::Error,
            )],
            2_000,
        );
        let b = r.collect(2_000);
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
        assert_eq!(
            value(
                &b,
                "traces_service_graph_request_server_seconds_bucket",
                &[("client", "front"), ("le", "+Inf")]
            ),
            Some(1.0)
        );
        let ex = b
            .iter()
            .flat_map(|(_, b)| &b.series)
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
        // only what changed is written again, with cumulative values
        assert!(r.collect(2_500).is_empty());
        r.observe(
            "t",
            &[span("cart", SpanKind::Server, 9, None, StatusCode::Unset)],
            3_000,
        );
        r.observe(
            "t",
            &[span("cart", SpanKind::Server, 10, None, StatusCode::Unset)],
            3_000,
        );
        let b = r.collect(3_000);
        assert_eq!(
            value(
                &b,
                "traces_spanmetrics_calls_total",
                &[("service", "cart"), ("status_code", "STATUS_CODE_UNSET")]
            ),
            Some(2.0)
        );
        assert_eq!(
            value(
                &b,
                "traces_spanmetrics_latency_count",
                &[("service", "cart"), ("status_code", "STATUS_CODE_UNSET")]
            ),
            Some(2.0)
        );
        assert_eq!(
            value(
                &b,
                "traces_spanmetrics_latency_sum",
                &[("service", "cart"), ("status_code", "STATUS_CODE_UNSET")]
            ),
            Some(0.2)
        );
    }

    #[test]
    fn unpaired_client_with_a_peer_expires_into_a_virtual_server() {
        let r = Registry::default();
        let mut c = span("api", SpanKind::Client, 5, Some(4), StatusCode::Unset);
        c.scope_spans[0].spans[0].attributes =
            vec![KeyValue::new("db.system", Value::Str("postgres".into()))];
        r.observe("t", &[c], 1_000);
        let b = r.collect(1_000 + PAIR_WAIT_MS + 1);
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

    #[test]
    fn only_halves_still_waiting_at_their_deadline_expire() {
        let r = Registry::default();
        let client = |id| {
            let mut c = span("api", SpanKind::Client, id, Some(4), StatusCode::Unset);
            c.scope_spans[0].spans[0].attributes =
                vec![KeyValue::new("peer.service", Value::Str("billing".into()))];
            c
        };
        // Span 5 is paired by its server before its deadline; span 6 arrives again later, which
        // restarts its wait; span 7 waits alone.
        r.observe("t", &[client(5), client(6), client(7)], 1_000);
        r.observe(
            "t",
            &[span(
                "billing",
                SpanKind::Server,
                9,
                Some(5),
                StatusCode::Unset,
            )],
            2_000,
        );
        r.observe("t", &[client(6)], 5_000);
        let virtual_edge = [
            ("client", "api"),
            ("server", "billing"),
            ("connection_type", "virtual_node"),
        ];
        let b = r.collect(1_000 + PAIR_WAIT_MS + 1);
        // Only the paired edge has a server half, hence server latencies.
        assert_eq!(
            value(
                &b,
                "traces_service_graph_request_server_seconds_count",
                &[("client", "api"), ("server", "billing")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&b, "traces_service_graph_request_total", &virtual_edge),
            Some(1.0),
            "only span 7 is due"
        );
        let b = r.collect(5_000 + PAIR_WAIT_MS + 1);
        assert_eq!(
            value(&b, "traces_service_graph_request_total", &virtual_edge),
            Some(2.0),
            "span 6 is due at its second arrival's deadline"
        );
        assert!(r.tenants.lock()["t"].arrivals.is_empty());
    }
}
