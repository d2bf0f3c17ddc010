//! The golden-signal metrics, cumulative since the agent started, labelled with the identity of
//! both ends (namespace, workload, kind; the DNS name of an external end; the process of a host
//! end) and nothing of unbounded cardinality. HTTP durations come from each exchange, with
//! exemplars naming the trace; TCP and DNS come from the interval's flow records, where the two
//! views of a same-node connection are already merged, so nothing counts twice.
//!
//! Names and buckets follow the OpenTelemetry semantic conventions where they define the signal
//! (`http.server.request.duration`, `http.client.request.duration`, `dns.lookup.duration`);
//! the TCP signals, which they do not define, sit under `network.tcp.*` in the same style.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric, number_data_point, AggregationTemporality, Exemplar, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use serde::Deserialize;

use crate::events::{HttpExchange, Role};
use crate::flow_records::FlowRecord;
use crate::identity::Identity;
use crate::otlp;
use crate::spans;

/// Semantic-convention buckets for HTTP durations, in seconds.
const HTTP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// Round-trip times from a LAN (100 µs) to an intercontinental path with queueing (2.5 s).
const RTT_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// DNS answers: a node-local cache (sub-millisecond) to a timed-out upstream (5 s).
const DNS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Clone, Copy, Debug)]
enum Kind {
    Counter,
    Histogram(&'static [f64]),
}

#[derive(Clone, Copy, Debug)]
struct Def {
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    kind: Kind,
}

const HTTP_SERVER_DURATION: Def = Def {
    name: "http.server.request.duration",
    unit: "s",
    description: "Duration of HTTP server requests, observed at the server's socket.",
    kind: Kind::Histogram(HTTP_BUCKETS),
};
const HTTP_CLIENT_DURATION: Def = Def {
    name: "http.client.request.duration",
    unit: "s",
    description: "Duration of HTTP client requests, observed at the client's socket.",
    kind: Kind::Histogram(HTTP_BUCKETS),
};
const TCP_BYTES: Def = Def {
    name: "network.tcp.bytes",
    unit: "By",
    description: "TCP payload bytes between the ends; direction `transmit` is src to dst.",
    kind: Kind::Counter,
};
const TCP_PACKETS: Def = Def {
    name: "network.tcp.packets",
    unit: "{packet}",
    description: "TCP segments between the ends; direction `transmit` is src to dst.",
    kind: Kind::Counter,
};
const TCP_RETRANSMITS: Def = Def {
    name: "network.tcp.retransmits",
    unit: "{segment}",
    description: "TCP segments retransmitted by either end.",
    kind: Kind::Counter,
};
const TCP_RTT: Def = Def {
    name: "network.tcp.rtt",
    unit: "s",
    description: "Smoothed TCP round-trip time, one observation per connection and interval.",
    kind: Kind::Histogram(RTT_BUCKETS),
};
const TCP_CONNECTIONS: Def = Def {
    name: "network.tcp.connections",
    unit: "{connection}",
    description: "TCP connections that ended, by outcome (ok, refused, timeout, reset, …).",
    kind: Kind::Counter,
};
const DNS_DURATION: Def = Def {
    name: "dns.lookup.duration",
    unit: "s",
    description: "DNS query to response, by response code.",
    kind: Kind::Histogram(DNS_BUCKETS),
};
const DEFS: [Def; 8] = [
    HTTP_SERVER_DURATION,
    HTTP_CLIENT_DURATION,
    TCP_BYTES,
    TCP_PACKETS,
    TCP_RETRANSMITS,
    TCP_RTT,
    TCP_CONNECTIONS,
    DNS_DURATION,
];

fn def_index(name: &str) -> usize {
    DEFS.iter()
        .position(|def| def.name == name)
        .expect("every metric is in DEFS")
}

/// `[metrics]` of the agent's configuration.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Series kept at most; past it, observations of new series are dropped and counted.
    pub max_series: usize,
    /// A series not updated for this long is forgotten (its workload went away).
    #[serde(with = "crate::config::duration")]
    pub series_ttl: std::time::Duration,
    /// Label DNS durations with the queried name (`dns.question.name`). Off by default: the
    /// names a cluster queries are not bounded.
    pub dns_question_name: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            max_series: 50_000,
            series_ttl: std::time::Duration::from_secs(600),
            dns_question_name: false,
        }
    }
}

type Attributes = Vec<(&'static str, String)>;

#[derive(Clone, Debug)]
struct Series {
    start_ns: u64,
    updated_ns: u64,
    value: f64,
    count: u64,
    buckets: Vec<u64>,
    /// The latest exemplar per bucket since the last collection.
    exemplars: Vec<Option<Exemplar>>,
}

/// Cumulative golden-signal series.
#[derive(Debug)]
pub struct GoldenMetrics {
    config: MetricsConfig,
    /// Keyed by metric name and sorted attributes.
    series: HashMap<(&'static str, Attributes), Series>,
    dropped: u64,
}

/// Label keys of each end: namespace, workload, kind, external name, host process.
const END_KEYS: [[&str; 5]; 2] = [
    [
        "src.namespace",
        "src.workload",
        "src.workload_kind",
        "src.name",
        "src.process",
    ],
    [
        "dst.namespace",
        "dst.workload",
        "dst.workload_kind",
        "dst.name",
        "dst.process",
    ],
];

/// The identity labels of both ends. A host process is named only outside Kubernetes.
fn pair(src: &Identity, dst: &Identity) -> Attributes {
    let mut attributes = Vec::with_capacity(8);
    for (keys, end) in END_KEYS.iter().zip([src, dst]) {
        let process = if end.namespace.is_empty() {
            &end.process
        } else {
            ""
        };
        let values = [
            &*end.namespace,
            &end.workload,
            &end.workload_kind,
            &end.name,
            process,
        ];
        for (key, value) in keys.iter().zip(values) {
            if !value.is_empty() {
                attributes.push((*key, value.to_owned()));
            }
        }
    }
    attributes
}

fn seconds_of_us(us: u64) -> f64 {
    us as f64 / 1e6
}

impl GoldenMetrics {
    pub fn new(config: MetricsConfig) -> GoldenMetrics {
        GoldenMetrics {
            config,
            series: HashMap::new(),
            dropped: 0,
        }
    }

    /// Observations dropped because `max_series` was reached.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn series(&self) -> usize {
        self.series.len()
    }

    /// The series of `def` with `attributes`, created on first use unless `max_series` is
    /// reached; one hash lookup per observation.
    fn series_mut(
        &mut self,
        def: &Def,
        mut attributes: Attributes,
        now_ns: u64,
    ) -> Option<&mut Series> {
        attributes.sort();
        let full = self.series.len() >= self.config.max_series;
        let series = match self.series.entry((def.name, attributes)) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(_) if full => {
                self.dropped += 1;
                return None;
            }
            Entry::Vacant(entry) => {
                let buckets = match def.kind {
                    Kind::Counter => 0,
                    Kind::Histogram(bounds) => bounds.len() + 1,
                };
                entry.insert(Series {
                    start_ns: now_ns,
                    updated_ns: now_ns,
                    value: 0.0,
                    count: 0,
                    buckets: vec![0; buckets],
                    exemplars: vec![None; buckets],
                })
            }
        };
        series.updated_ns = now_ns;
        Some(series)
    }

    fn add(&mut self, def: &Def, attributes: Attributes, value: f64, now_ns: u64) {
        if let Some(series) = self.series_mut(def, attributes, now_ns) {
            series.value += value;
        }
    }

    fn observe(
        &mut self,
        def: &Def,
        attributes: Attributes,
        value: f64,
        now_ns: u64,
        exemplar: Option<Exemplar>,
    ) {
        let Kind::Histogram(bounds) = def.kind else {
            return;
        };
        if let Some(series) = self.series_mut(def, attributes, now_ns) {
            let bucket = bounds.partition_point(|bound| *bound < value);
            series.count += 1;
            series.value += value;
            series.buckets[bucket] += 1;
            if exemplar.is_some() {
                series.exemplars[bucket] = exemplar;
            }
        }
    }

    /// One HTTP exchange seen at `local`'s socket, with the other end `remote`.
    pub fn observe_http(
        &mut self,
        exchange: &HttpExchange,
        local: &Identity,
        remote: &Identity,
        now_ns: u64,
    ) {
        let (Some(request), Some(status)) = (&exchange.request, &exchange.status) else {
            return;
        };
        let (def, src, dst) = match exchange.role {
            Role::Client => (&HTTP_CLIENT_DURATION, local, remote),
            Role::Server | Role::Unknown => (&HTTP_SERVER_DURATION, remote, local),
        };
        let mut attributes = pair(src, dst);
        attributes.push(("http.request.method", request.method.as_str().to_owned()));
        attributes.push(("http.response.status_code", status.code.to_string()));
        let seconds = exchange.latency().as_secs_f64();
        let exemplar = spans::span_ids(exchange).map(|(trace_id, span_id)| Exemplar {
            time_unix_nano: now_ns,
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            value: Some(exemplar::Value::AsDouble(seconds)),
            ..Exemplar::default()
        });
        self.observe(def, attributes, seconds, now_ns, exemplar);
    }

    /// The TCP and DNS signals of one flow record.
    pub fn observe_record(&mut self, record: &FlowRecord, now_ns: u64) {
        let ends = pair(&record.src_identity, &record.dst_identity);
        if record.protocol == "tcp" {
            for (def, transmit, receive) in [
                (&TCP_BYTES, record.bytes_tx, record.bytes_rx),
                (&TCP_PACKETS, record.packets_tx, record.packets_rx),
            ] {
                for (direction, value) in [("transmit", transmit), ("receive", receive)] {
                    if value > 0 {
                        let mut attributes = ends.clone();
                        attributes.push(("network.io.direction", direction.to_owned()));
                        self.add(def, attributes, value as f64, now_ns);
                    }
                }
            }
            if record.tcp_retransmits > 0 || record.bytes_tx + record.bytes_rx > 0 {
                // Present at zero once traffic flowed, so rates over it read 0, not absent.
                self.add(
                    &TCP_RETRANSMITS,
                    ends.clone(),
                    record.tcp_retransmits as f64,
                    now_ns,
                );
            }
            if record.tcp_srtt_us > 0 {
                self.observe(
                    &TCP_RTT,
                    ends.clone(),
                    seconds_of_us(record.tcp_srtt_us),
                    now_ns,
                    None,
                );
            }
            if record.ended {
                let mut attributes = ends.clone();
                attributes.push(("outcome", record.tcp_connect.to_owned()));
                self.add(&TCP_CONNECTIONS, attributes, 1.0, now_ns);
            }
        }
        if !record.dns_rcode.is_empty() {
            let mut attributes = ends;
            attributes.push(("dns.response_code", record.dns_rcode.clone()));
            attributes.push(("dns.question.type", record.dns_qtype.clone()));
            if self.config.dns_question_name {
                attributes.push(("dns.question.name", record.dns_query.clone()));
            }
            let seconds = seconds_of_us(record.dns_latency_us);
            self.observe(&DNS_DURATION, attributes, seconds, now_ns, None);
        }
    }

    /// Every live series as of `now_ns`, cumulative; forgets series idle past the TTL.
    pub fn collect(&mut self, node: &str, now_ns: u64) -> ResourceMetrics {
        let ttl_ns = u64::try_from(self.config.series_ttl.as_nanos()).unwrap_or(u64::MAX);
        self.series
            .retain(|_, series| now_ns.saturating_sub(series.updated_ns) <= ttl_ns);
        let mut points: Vec<Vec<(&Attributes, &mut Series)>> =
            DEFS.iter().map(|_| Vec::new()).collect();
        for ((name, attributes), series) in &mut self.series {
            points[def_index(name)].push((attributes, series));
        }
        let mut metrics = Vec::new();
        for (def, mut series) in DEFS.iter().zip(points) {
            if series.is_empty() {
                continue;
            }
            series.sort_by(|a, b| a.0.cmp(b.0));
            let data = match def.kind {
                Kind::Counter => metric::Data::Sum(Sum {
                    data_points: series
                        .into_iter()
                        .map(|(attributes, series)| NumberDataPoint {
                            attributes: key_values(attributes),
                            start_time_unix_nano: series.start_ns,
                            time_unix_nano: now_ns,
                            value: Some(number_data_point::Value::AsDouble(series.value)),
                            ..NumberDataPoint::default()
                        })
                        .collect(),
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                }),
                Kind::Histogram(bounds) => metric::Data::Histogram(Histogram {
                    data_points: series
                        .into_iter()
                        .map(|(attributes, series)| HistogramDataPoint {
                            attributes: key_values(attributes),
                            start_time_unix_nano: series.start_ns,
                            time_unix_nano: now_ns,
                            count: series.count,
                            sum: Some(series.value),
                            bucket_counts: series.buckets.clone(),
                            explicit_bounds: bounds.to_vec(),
                            exemplars: series
                                .exemplars
                                .iter_mut()
                                .filter_map(Option::take)
                                .collect(),
                            ..HistogramDataPoint::default()
                        })
                        .collect(),
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                }),
            };
            metrics.push(Metric {
                name: def.name.to_owned(),
                description: def.description.to_owned(),
                unit: def.unit.to_owned(),
                data: Some(data),
                ..Metric::default()
            });
        }
        ResourceMetrics {
            resource: Some(otlp::node_resource(node)),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(otlp::scope()),
                metrics,
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }
    }
}

fn key_values(attributes: &Attributes) -> Vec<KeyValue> {
    attributes
        .iter()
        .map(|(key, value)| otlp::string(key, value.clone()))
        .collect()
}
