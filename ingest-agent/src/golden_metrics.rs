//! The golden-signal metrics, cumulative since the agent started, labelled with the identity of
//! both ends (namespace, workload, kind; the DNS name of an external end; the process of a host
//! end) and nothing of unbounded cardinality. HTTP durations come from each exchange, with
//! exemplars naming the trace; TCP and DNS come from the interval's flow records, where the two
//! views of a same-node connection are already merged, so nothing counts twice.
//!
//! Names and buckets follow the OpenTelemetry semantic conventions where they define the signal
//! (`http.server.request.duration`, `http.client.request.duration`, `dns.lookup.duration`);
//! the TCP signals, which they do not define, sit under `network.tcp.*` in the same style.

use crate::hash::FastMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric, number_data_point, AggregationTemporality, Exemplar, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use serde::Deserialize;

use crate::events::{HttpExchange, Role};
use crate::flow_records::FlowRecord;
use crate::flow_table::HttpCounts;
use crate::http::Method;
use crate::identity::Identity;
use crate::otlp;
use crate::spans;

/// Semantic-convention buckets for HTTP durations, in seconds; the kernel counts exchanges into
/// the same (`ingest-ebpf/bpf/http.h`, checked by a test).
pub const HTTP_BUCKETS: &[f64] = &[
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

/// What an HTTP exchange's series is found by before its attributes are built: the two ends as
/// the agent's identity cache hands them out, compared by address, the side, method and status.
/// Plain values, so a lookup clones no `Arc`; the entry's [`HttpSeries`] holds the identities,
/// which keeps their addresses from being reused while the key exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct HttpSeriesKey {
    client: bool,
    /// `Arc::as_ptr(..).addr()`: an address, so the metrics stay `Send`.
    src: usize,
    dst: usize,
    method: Method,
    status: u16,
}

/// The series of an [`HttpSeriesKey`], and the identities whose addresses the key holds.
#[derive(Debug)]
struct HttpSeries {
    index: usize,
    _ends: [Arc<Identity>; 2],
}

/// Cumulative golden-signal series.
#[derive(Debug)]
pub struct GoldenMetrics {
    config: MetricsConfig,
    series: Vec<Series>,
    /// Index into `series` by metric name and sorted attributes.
    index: FastMap<(&'static str, Attributes), usize>,
    /// Index into `series` for HTTP exchanges, so that an exchange of a known pair builds no
    /// attributes; emptied at each collection, which lets go of identities no longer handed out.
    http_index: FastMap<HttpSeriesKey, HttpSeries>,
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
            series: Vec::new(),
            index: FastMap::default(),
            http_index: FastMap::default(),
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

    /// The index of the series of `def` with `attributes`, created on first use unless
    /// `max_series` is reached; one hash lookup.
    fn series_index(
        &mut self,
        def: &Def,
        mut attributes: Attributes,
        now_ns: u64,
    ) -> Option<usize> {
        attributes.sort();
        match self.index.entry((def.name, attributes)) {
            Entry::Occupied(entry) => Some(*entry.get()),
            Entry::Vacant(_) if self.series.len() >= self.config.max_series => {
                self.dropped += 1;
                None
            }
            Entry::Vacant(entry) => {
                let buckets = match def.kind {
                    Kind::Counter => 0,
                    Kind::Histogram(bounds) => bounds.len() + 1,
                };
                self.series.push(Series {
                    start_ns: now_ns,
                    updated_ns: now_ns,
                    value: 0.0,
                    count: 0,
                    buckets: vec![0; buckets],
                    exemplars: vec![None; buckets],
                });
                Some(*entry.insert(self.series.len() - 1))
            }
        }
    }

    fn series_mut(&mut self, index: usize, now_ns: u64) -> Option<&mut Series> {
        let series = self.series.get_mut(index)?;
        series.updated_ns = now_ns;
        Some(series)
    }

    fn add(&mut self, def: &Def, attributes: Attributes, value: f64, now_ns: u64) {
        let index = self.series_index(def, attributes, now_ns);
        if let Some(series) = index.and_then(|index| self.series_mut(index, now_ns)) {
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
        if let Some(index) = self.series_index(def, attributes, now_ns) {
            self.observe_at(def, index, value, now_ns, exemplar);
        }
    }

    fn observe_at(
        &mut self,
        def: &Def,
        index: usize,
        value: f64,
        now_ns: u64,
        exemplar: Option<Exemplar>,
    ) {
        let Kind::Histogram(bounds) = def.kind else {
            return;
        };
        if let Some(series) = self.series_mut(index, now_ns) {
            let bucket = bounds.partition_point(|bound| *bound < value);
            series.count += 1;
            series.value += value;
            series.buckets[bucket] += 1;
            if exemplar.is_some() {
                series.exemplars[bucket] = exemplar;
            }
        }
    }

    /// The duration histogram and series of HTTP exchanges of `method` and `status` seen at
    /// `local`'s socket in `role`, with the other end `remote`.
    fn http_series(
        &mut self,
        role: Role,
        method: Method,
        status: u16,
        local: &Arc<Identity>,
        remote: &Arc<Identity>,
        now_ns: u64,
    ) -> Option<(&'static Def, usize)> {
        let (def, src, dst) = match role {
            Role::Client => (&HTTP_CLIENT_DURATION, local, remote),
            Role::Server | Role::Unknown => (&HTTP_SERVER_DURATION, remote, local),
        };
        let key = HttpSeriesKey {
            client: role == Role::Client,
            src: Arc::as_ptr(src).addr(),
            dst: Arc::as_ptr(dst).addr(),
            method,
            status,
        };
        if let Some(series) = self.http_index.get(&key) {
            return Some((def, series.index));
        }
        let mut attributes = pair(src, dst);
        attributes.push(("http.request.method", method.as_str().to_owned()));
        attributes.push(("http.response.status_code", status.to_string()));
        let index = self.series_index(def, attributes, now_ns)?;
        let series = HttpSeries {
            index,
            _ends: [Arc::clone(src), Arc::clone(dst)],
        };
        self.http_index.insert(key, series);
        Some((def, index))
    }

    /// One HTTP exchange seen at `local`'s socket, with the other end `remote`.
    pub fn observe_http(
        &mut self,
        exchange: &HttpExchange,
        local: &Arc<Identity>,
        remote: &Arc<Identity>,
        now_ns: u64,
    ) {
        let (Some(request), Some(status)) = (&exchange.request, &exchange.status) else {
            return;
        };
        let Some((def, index)) = self.http_series(
            exchange.role,
            request.method,
            status.code,
            local,
            remote,
            now_ns,
        ) else {
            return;
        };
        let seconds = exchange.latency().as_secs_f64();
        let exemplar = spans::span_ids(exchange).map(|(trace_id, span_id)| Exemplar {
            time_unix_nano: now_ns,
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            value: Some(exemplar::Value::AsDouble(seconds)),
            ..Exemplar::default()
        });
        self.observe_at(def, index, seconds, now_ns, exemplar);
    }

    /// HTTP exchanges the kernel counted at `local`'s socket, with the other end `remote`: its
    /// buckets are the histogram's.
    pub fn observe_http_counts(
        &mut self,
        counts: &HttpCounts,
        local: &Arc<Identity>,
        remote: &Arc<Identity>,
        now_ns: u64,
    ) {
        let Some((_, index)) = self.http_series(
            counts.role,
            counts.method,
            counts.status,
            local,
            remote,
            now_ns,
        ) else {
            return;
        };
        if let Some(series) = self.series_mut(index, now_ns) {
            series.count += counts.count;
            series.value += counts.latency_sum_ns as f64 / 1e9;
            for (bucket, added) in series.buckets.iter_mut().zip(counts.buckets) {
                *bucket += added;
            }
        }
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
        self.http_index.clear();
        let mut all: Vec<Option<Series>> = std::mem::take(&mut self.series)
            .into_iter()
            .map(Some)
            .collect();
        let series = &mut self.series;
        self.index.retain(
            |_, index| match all.get_mut(*index).and_then(Option::take) {
                Some(kept) if now_ns.saturating_sub(kept.updated_ns) <= ttl_ns => {
                    series.push(kept);
                    *index = series.len() - 1;
                    true
                }
                _ => false,
            },
        );
        let mut points: Vec<Vec<(&Attributes, &Series)>> =
            DEFS.iter().map(|_| Vec::new()).collect();
        for ((name, attributes), index) in &self.index {
            if let Some(series) = self.series.get(*index) {
                points[def_index(name)].push((attributes, series));
            }
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
                            exemplars: series.exemplars.iter().flatten().cloned().collect(),
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
        // Exemplars go out once: each collection sends those seen since the previous one.
        for series in &mut self.series {
            series
                .exemplars
                .iter_mut()
                .for_each(|exemplar| *exemplar = None);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_request_head;
    use strata_ebpf::abi;

    const SECOND: u64 = 1_000_000_000;

    fn workload(name: &str) -> Arc<Identity> {
        Arc::new(Identity {
            namespace: "tenant-jobs".into(),
            workload: name.into(),
            workload_kind: "Deployment".into(),
            ..Identity::default()
        })
    }

    /// (attributes as `key=value` strings, count, sum) of each HTTP server duration point.
    fn server_points(metrics: &mut GoldenMetrics, now_ns: u64) -> Vec<(Vec<String>, u64, f64)> {
        let collected = metrics.collect("node-a", now_ns);
        let mut points = Vec::new();
        for metric in &collected.scope_metrics[0].metrics {
            if metric.name != HTTP_SERVER_DURATION.name {
                continue;
            }
            let Some(metric::Data::Histogram(histogram)) = &metric.data else {
                panic!("a histogram: {metric:?}");
            };
            for point in &histogram.data_points {
                let attributes = point
                    .attributes
                    .iter()
                    .map(|kv| format!("{}={:?}", kv.key, kv.value))
                    .collect();
                points.push((attributes, point.count, point.sum.unwrap_or(0.0)));
            }
        }
        points
    }

    #[test]
    fn a_pair_counts_in_one_series_however_its_identities_are_shared() {
        let mut metrics = GoldenMetrics::new(MetricsConfig::default());
        let (server, client) = (workload("core-api"), workload("resumes"));
        for _ in 0..3 {
            metrics.observe_http(
                &HttpExchange::served(200, 2_000_000),
                &server,
                &client,
                SECOND,
            );
        }
        // The same ends resolved afresh: other `Arc`s, the same series.
        let (server_again, client_again) = (workload("core-api"), workload("resumes"));
        metrics.observe_http(
            &HttpExchange::served(200, 4_000_000),
            &server_again,
            &client_again,
            SECOND,
        );
        metrics.observe_http(
            &HttpExchange::served(500, 1_000_000),
            &server,
            &client,
            SECOND,
        );
        assert_eq!(metrics.series(), 2);

        let points = server_points(&mut metrics, 2 * SECOND);
        let ok = points
            .iter()
            .find(|(attributes, ..)| attributes.iter().any(|a| a.contains("200")))
            .expect("the 200 series");
        assert_eq!(ok.1, 4);
        assert!((ok.2 - 0.010).abs() < 1e-9, "{ok:?}");
        for label in ["src.workload", "dst.workload", "http.request.method"] {
            assert!(ok.0.iter().any(|a| a.starts_with(label)), "{label}: {ok:?}");
        }
        let failed = points
            .iter()
            .find(|(attributes, ..)| attributes.iter().any(|a| a.contains("500")))
            .expect("the 500 series");
        assert_eq!(failed.1, 1);
    }

    #[test]
    fn kernel_counts_join_the_series_of_exchanges_with_their_buckets() {
        let mut metrics = GoldenMetrics::new(MetricsConfig::default());
        let (server, client) = (workload("core-api"), workload("resumes"));
        // One exchange through the ring (a traced request), 0.002 s.
        metrics.observe_http(
            &HttpExchange::served(200, 2_000_000),
            &server,
            &client,
            SECOND,
        );
        // Three counted in the kernel: 1 ms, 4 ms and 30 ms.
        let mut buckets = [0; abi::HTTP_BUCKETS];
        buckets[0] = 2;
        buckets[3] = 1;
        let counts = HttpCounts {
            role: Role::Server,
            method: Method::Get,
            status: 200,
            count: 3,
            latency_sum_ns: 35_000_000,
            latency_max_us: 30_000,
            buckets,
        };
        metrics.observe_http_counts(&counts, &server, &client, SECOND);
        assert_eq!(metrics.series(), 1, "one series for both paths");
        let collected = metrics.collect("node-a", 2 * SECOND);
        let metric = &collected.scope_metrics[0].metrics[0];
        let Some(metric::Data::Histogram(histogram)) = &metric.data else {
            panic!("a histogram: {metric:?}");
        };
        let point = &histogram.data_points[0];
        assert_eq!(point.count, 4);
        assert!((point.sum.unwrap() - 0.037).abs() < 1e-9, "{point:?}");
        assert_eq!(point.bucket_counts[0], 3);
        assert_eq!(point.bucket_counts[3], 1);
        assert_eq!(point.bucket_counts.iter().sum::<u64>(), 4);
    }

    /// The kernel counts into buckets bounded by `http_bucket_bounds_ns` in bpf/http.h: the same
    /// bounds as the histograms', in ns.
    #[test]
    fn the_kernel_buckets_are_the_histograms() {
        let header = include_str!("../../ingest-ebpf/bpf/http.h");
        let start = header
            .find("http_bucket_bounds_ns[")
            .expect("bounds in http.h");
        let body = &header[start..];
        let body = &body[body.find('{').unwrap() + 1..body.find('}').unwrap()];
        let bounds: Vec<u64> = body
            .split(',')
            .map(|v| v.trim().trim_end_matches("ULL"))
            .filter(|v| !v.is_empty())
            .map(|v| v.parse().expect("a number"))
            .collect();
        let expected: Vec<u64> = HTTP_BUCKETS
            .iter()
            .map(|seconds| (seconds * 1e9).round() as u64)
            .collect();
        assert_eq!(bounds, expected);
        assert_eq!(HTTP_BUCKETS.len() + 1, abi::HTTP_BUCKETS);
    }

    #[test]
    fn an_identity_let_go_by_its_cache_keeps_its_address_from_the_next() {
        let mut metrics = GoldenMetrics::new(MetricsConfig::default());
        let server = workload("core-api");
        let gone = workload("gone");
        metrics.observe_http(&HttpExchange::served(200, 1_000), &server, &gone, SECOND);
        let address = Arc::as_ptr(&gone).addr();
        drop(gone);
        // Allocated right after the drop, where the allocator would reuse the freed block.
        let next: Vec<Arc<Identity>> = (0..8).map(|_| workload("next")).collect();
        assert!(next.iter().all(|id| Arc::as_ptr(id).addr() != address));
        metrics.observe_http(&HttpExchange::served(200, 1_000), &server, &next[0], SECOND);
        let points = server_points(&mut metrics, 2 * SECOND);
        assert_eq!(points.len(), 2, "{points:?}");
        assert!(points.iter().all(|(_, count, _)| *count == 1), "{points:?}");
    }

    #[test]
    fn expired_series_go_and_the_others_keep_counting() {
        let mut metrics = GoldenMetrics::new(MetricsConfig {
            series_ttl: std::time::Duration::from_secs(5),
            ..MetricsConfig::default()
        });
        let server = workload("core-api");
        let (old, new) = (workload("old-client"), workload("new-client"));
        metrics.observe_http(&HttpExchange::served(200, 1_000), &server, &old, SECOND);
        metrics.observe_http(&HttpExchange::served(200, 1_000), &server, &new, 8 * SECOND);
        let points = server_points(&mut metrics, 10 * SECOND);
        assert_eq!(
            points.len(),
            1,
            "the old client's series expired: {points:?}"
        );
        assert!(points[0].0.iter().any(|a| a.contains("new-client")));

        metrics.observe_http(
            &HttpExchange::served(200, 1_000),
            &server,
            &new,
            11 * SECOND,
        );
        metrics.observe_http(
            &HttpExchange::served(200, 1_000),
            &server,
            &old,
            11 * SECOND,
        );
        let points = server_points(&mut metrics, 12 * SECOND);
        let count_of = |name: &str| {
            points
                .iter()
                .find(|(attributes, ..)| attributes.iter().any(|a| a.contains(name)))
                .map(|point| point.1)
        };
        assert_eq!(count_of("new-client"), Some(2), "cumulative: {points:?}");
        assert_eq!(count_of("old-client"), Some(1), "started over: {points:?}");
    }

    #[test]
    fn an_exemplar_is_sent_by_the_next_collection_only() {
        let mut metrics = GoldenMetrics::new(MetricsConfig::default());
        let traced = HttpExchange {
            request: parse_request_head(
                b"GET /work HTTP/1.1\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n",
            ),
            ..HttpExchange::served(200, 1_000_000)
        };
        metrics.observe_http(&traced, &workload("core-api"), &workload("resumes"), SECOND);
        let exemplars = |metrics: &mut GoldenMetrics, now_ns: u64| -> Vec<Vec<u8>> {
            let collected = metrics.collect("node-a", now_ns);
            collected.scope_metrics[0]
                .metrics
                .iter()
                .filter_map(|metric| match &metric.data {
                    Some(metric::Data::Histogram(histogram)) => Some(histogram),
                    _ => None,
                })
                .flat_map(|histogram| &histogram.data_points)
                .flat_map(|point| &point.exemplars)
                .map(|exemplar| exemplar.trace_id.clone())
                .collect()
        };
        let first = exemplars(&mut metrics, 2 * SECOND);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0][0], 0x0a, "the traceparent's trace id");
        assert!(exemplars(&mut metrics, 3 * SECOND).is_empty());

        // A trace the caller did not sample has no spans to point at: no exemplar names it.
        let unsampled = HttpExchange {
            request: parse_request_head(
                b"GET /work HTTP/1.1\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00\r\n\r\n",
            ),
            ..HttpExchange::served(200, 1_000_000)
        };
        metrics.observe_http(
            &unsampled,
            &workload("core-api"),
            &workload("resumes"),
            4 * SECOND,
        );
        assert!(exemplars(&mut metrics, 5 * SECOND).is_empty());
    }

    #[test]
    fn past_max_series_new_pairs_are_dropped_and_counted() {
        let mut metrics = GoldenMetrics::new(MetricsConfig {
            max_series: 1,
            ..MetricsConfig::default()
        });
        let server = workload("core-api");
        metrics.observe_http(
            &HttpExchange::served(200, 1_000),
            &server,
            &workload("a"),
            SECOND,
        );
        metrics.observe_http(
            &HttpExchange::served(200, 1_000),
            &server,
            &workload("b"),
            SECOND,
        );
        metrics.observe_http(
            &HttpExchange::served(200, 1_000),
            &server,
            &workload("b"),
            SECOND,
        );
        assert_eq!((metrics.series(), metrics.dropped()), (1, 2));
    }
}
