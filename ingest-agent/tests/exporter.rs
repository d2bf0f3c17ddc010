//! The OTLP exporter against a real gRPC collector in the same process: a tonic server of the
//! three collector services on a loopback port, which records what it receives (items, compression,
//! tenant and other metadata) and can be scripted to fail. Intervals are tens of milliseconds
//! and every wait is for a condition, under a deadline.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use strata_agent::exporter::{Exporter, ExporterConfig, RetryConfig, SignalKind};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Notify;
use tokio::time::Instant;
use tonic::codec::CompressionEncoding;
use tonic::{Code, Request, Response, Status};

/// How a scripted request is answered; unscripted requests are accepted in full.
#[derive(Clone, Debug)]
enum Answer {
    Fail(Code),
    /// RESOURCE_EXHAUSTED carrying a `google.rpc.RetryInfo` delay.
    SlowDown(Duration),
    /// No answer for this long, then UNAVAILABLE.
    Hang(Duration),
    /// Accepted, with this many items refused in `partial_success`.
    Reject(i64, &'static str),
}

/// One request the collector answered OK.
#[derive(Clone, Debug)]
struct Received {
    signal: SignalKind,
    items: usize,
    /// Log record bodies, in order (the tests number them).
    numbers: Vec<i64>,
    /// `grpc-encoding` of the request, if any.
    encoding: Option<String>,
    tenant: Option<String>,
    agent_header: Option<String>,
    /// Every resource kept its attributes through batching and splitting.
    resources_intact: bool,
}

#[derive(Default)]
struct Recorded {
    received: Vec<Received>,
    /// Arrival of every request, answered OK or not.
    attempts: Vec<(SignalKind, Instant)>,
    script: HashMap<SignalKind, VecDeque<Answer>>,
}

#[derive(Clone, Default)]
struct Collector {
    recorded: Arc<Mutex<Recorded>>,
    changed: Arc<Notify>,
}

impl Collector {
    fn script(&self, signal: SignalKind, answers: impl IntoIterator<Item = Answer>) {
        let mut recorded = self.recorded.lock().unwrap();
        recorded.script.entry(signal).or_default().extend(answers);
    }

    fn received(&self, signal: SignalKind) -> Vec<Received> {
        let recorded = self.recorded.lock().unwrap();
        recorded
            .received
            .iter()
            .filter(|r| r.signal == signal)
            .cloned()
            .collect()
    }

    fn received_items(&self, signal: SignalKind) -> usize {
        self.received(signal).iter().map(|r| r.items).sum()
    }

    fn attempts(&self, signal: SignalKind) -> Vec<Instant> {
        let recorded = self.recorded.lock().unwrap();
        recorded
            .attempts
            .iter()
            .filter(|(s, _)| *s == signal)
            .map(|(_, at)| *at)
            .collect()
    }

    /// Waits until `signal` has received `items` items in accepted requests.
    async fn wait_for_items(&self, signal: SignalKind, items: usize) {
        let wait = async {
            loop {
                let notified = self.changed.notified();
                if self.received_items(signal) >= items {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} received {} of {items} items",
                    signal.as_str(),
                    self.received_items(signal)
                )
            });
    }

    /// Records the request and answers it as scripted: the partial-success count and message,
    /// or the failure.
    async fn answer<T>(
        &self,
        signal: SignalKind,
        request: &Request<T>,
        items: usize,
        numbers: Vec<i64>,
        resources_intact: bool,
    ) -> Result<(i64, String), Status> {
        let metadata = request.metadata();
        let text = |name: &str| {
            metadata
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let answer = {
            let mut recorded = self.recorded.lock().unwrap();
            recorded.attempts.push((signal, Instant::now()));
            let answer = recorded
                .script
                .get_mut(&signal)
                .and_then(VecDeque::pop_front);
            if let None | Some(Answer::Reject(..)) = answer {
                recorded.received.push(Received {
                    signal,
                    items,
                    numbers,
                    encoding: text("grpc-encoding"),
                    tenant: text("x-scope-orgid"),
                    agent_header: text("x-agent"),
                    resources_intact,
                });
            }
            answer
        };
        self.changed.notify_waiters();
        match answer {
            None => Ok((0, String::new())),
            Some(Answer::Reject(count, message)) => Ok((count, message.to_owned())),
            Some(Answer::Fail(code)) => Err(Status::new(code, "scripted failure")),
            Some(Answer::SlowDown(delay)) => Err(Status::with_details(
                Code::ResourceExhausted,
                "slow down",
                retry_info(delay).into(),
            )),
            Some(Answer::Hang(delay)) => {
                tokio::time::sleep(delay).await;
                Err(Status::unavailable("answered too late"))
            }
        }
    }
}

#[tonic::async_trait]
impl LogsService for Collector {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let body = request.get_ref();
        let records = || {
            body.resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .flat_map(|s| &s.log_records)
        };
        let numbers = records()
            .filter_map(|record| match record.body.as_ref()?.value.as_ref()? {
                any_value::Value::IntValue(n) => Some(*n),
                _ => None,
            })
            .collect();
        let intact = body
            .resource_logs
            .iter()
            .all(|r| node_resource(&r.resource));
        let (rejected, error_message) = self
            .answer(
                SignalKind::Logs,
                &request,
                records().count(),
                numbers,
                intact,
            )
            .await?;
        Ok(Response::new(ExportLogsServiceResponse {
            partial_success: (rejected > 0).then_some(ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message,
            }),
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let body = request.get_ref();
        let points = body
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(|m| match &m.data {
                Some(metric::Data::Gauge(gauge)) => gauge.data_points.len(),
                _ => 0,
            })
            .sum();
        let intact = body
            .resource_metrics
            .iter()
            .all(|r| node_resource(&r.resource));
        self.answer(SignalKind::Metrics, &request, points, Vec::new(), intact)
            .await?;
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let body = request.get_ref();
        let spans = body
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        let intact = body
            .resource_spans
            .iter()
            .all(|r| node_resource(&r.resource));
        self.answer(SignalKind::Spans, &request, spans, Vec::new(), intact)
            .await?;
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The longest any condition is waited for.
const PATIENCE: Duration = Duration::from_secs(10);

/// A loopback port held but not yet listening: connections to it are refused, as to a store
/// that has not started, and no other process can take it meanwhile.
fn reserve_port() -> (TcpSocket, SocketAddr) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    let addr = socket.local_addr().expect("address");
    (socket, addr)
}

/// Serves the collector on the reserved port from now on.
fn start_collector(socket: TcpSocket, collector: &Collector) {
    let listener: TcpListener = socket.listen(64).expect("listen");
    let (gzip, zstd) = (CompressionEncoding::Gzip, CompressionEncoding::Zstd);
    let router = tonic::transport::Server::builder()
        .add_service(
            LogsServiceServer::new(collector.clone())
                .accept_compressed(gzip)
                .accept_compressed(zstd),
        )
        .add_service(
            MetricsServiceServer::new(collector.clone())
                .accept_compressed(gzip)
                .accept_compressed(zstd),
        )
        .add_service(
            TraceServiceServer::new(collector.clone())
                .accept_compressed(gzip)
                .accept_compressed(zstd),
        );
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        router
            .serve_with_incoming(incoming)
            .await
            .expect("collector serves");
    });
}

/// A collector already listening.
fn running_collector() -> (Collector, SocketAddr) {
    let (socket, addr) = reserve_port();
    let collector = Collector::default();
    start_collector(socket, &collector);
    (collector, addr)
}

fn config(addr: SocketAddr) -> ExporterConfig {
    ExporterConfig {
        endpoint: format!("http://{addr}"),
        tenant: "team-a".into(),
        headers: [("x-agent".to_owned(), "node-1".to_owned())].into(),
        timeout: "2s".into(),
        flush_interval: "20ms".into(),
        queue_capacity: 8,
        retry: RetryConfig {
            initial_backoff: "10ms".into(),
            max_backoff: "40ms".into(),
            max_elapsed: "30s".into(),
        },
        ..ExporterConfig::default()
    }
}

fn node_resource(resource: &Option<Resource>) -> bool {
    resource
        .as_ref()
        .is_some_and(|r| r.attributes.first().is_some_and(|a| a.key == "host.name"))
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![KeyValue {
            key: "host.name".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("node-1".into())),
            }),
        }],
        ..Resource::default()
    })
}

/// Log records numbered `numbers`, in scopes of `per_scope` records.
fn logs(numbers: std::ops::Range<i64>, per_scope: usize) -> ResourceLogs {
    let records: Vec<LogRecord> = numbers
        .map(|n| LogRecord {
            body: Some(AnyValue {
                value: Some(any_value::Value::IntValue(n)),
            }),
            ..LogRecord::default()
        })
        .collect();
    ResourceLogs {
        resource: resource(),
        scope_logs: records
            .chunks(per_scope)
            .map(|chunk| ScopeLogs {
                log_records: chunk.to_vec(),
                ..ScopeLogs::default()
            })
            .collect(),
        schema_url: String::new(),
    }
}

fn gauge(points: usize) -> ResourceMetrics {
    ResourceMetrics {
        resource: resource(),
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![Metric {
                name: "strata_agent_flows".into(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: vec![NumberDataPoint::default(); points],
                })),
                ..Metric::default()
            }],
            ..ScopeMetrics::default()
        }],
        schema_url: String::new(),
    }
}

fn spans(count: usize) -> ResourceSpans {
    ResourceSpans {
        resource: resource(),
        scope_spans: vec![ScopeSpans {
            spans: vec![Span::default(); count],
            ..ScopeSpans::default()
        }],
        schema_url: String::new(),
    }
}

/// Waits for a condition on the exporter's stats.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// `google.rpc.Status` with one `google.rpc.RetryInfo`, encoded by hand as a server would.
fn retry_info(delay: Duration) -> Vec<u8> {
    #[derive(Clone, PartialEq, Message)]
    struct RpcStatus {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
        #[prost(message, repeated, tag = "3")]
        details: Vec<Any>,
    }
    #[derive(Clone, PartialEq, Message)]
    struct Any {
        #[prost(string, tag = "1")]
        type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        value: Vec<u8>,
    }
    #[derive(Clone, PartialEq, Message)]
    struct RetryInfo {
        #[prost(message, optional, tag = "1")]
        retry_delay: Option<ProtoDuration>,
    }
    #[derive(Clone, PartialEq, Message)]
    struct ProtoDuration {
        #[prost(int64, tag = "1")]
        seconds: i64,
        #[prost(int32, tag = "2")]
        nanos: i32,
    }
    let info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: delay.as_secs() as i64,
            nanos: delay.subsec_nanos() as i32,
        }),
    };
    RpcStatus {
        code: Code::ResourceExhausted as i32,
        message: "slow down".into(),
        details: vec![Any {
            type_url: RETRY_INFO_TYPE.into(),
            value: info.encode_to_vec(),
        }],
    }
    .encode_to_vec()
}

#[tokio::test]
async fn enqueued_logs_arrive_batched_gzipped_with_the_tenant() {
    let (collector, addr) = running_collector();
    let exporter = Exporter::spawn(&ExporterConfig {
        // Long enough that three enqueues in a row share one batch.
        flush_interval: "300ms".into(),
        ..config(addr)
    })
    .expect("exporter");
    exporter.logs(vec![logs(0..100, 40)]);
    exporter.logs(vec![logs(100..200, 40), logs(200..250, 50)]);
    exporter.handle().logs(vec![logs(250..300, 50)]);
    collector.wait_for_items(SignalKind::Logs, 300).await;

    let received = collector.received(SignalKind::Logs);
    assert_eq!(received.len(), 1, "one request for all four enqueues");
    let request = &received[0];
    assert_eq!(request.numbers, (0..300).collect::<Vec<_>>());
    assert_eq!(request.encoding.as_deref(), Some("gzip"), "gzip by default");
    assert_eq!(request.tenant.as_deref(), Some("team-a"));
    assert_eq!(request.agent_header.as_deref(), Some("node-1"));
    assert!(request.resources_intact);

    let stats = exporter.stats();
    eventually("the answer to be counted", || {
        stats.logs.sent_items.load(Ordering::Relaxed) == 300
    })
    .await;
    assert_eq!(stats.logs.sent_requests.load(Ordering::Relaxed), 1);
    assert_eq!(stats.logs.queued_items.load(Ordering::Relaxed), 0);
    assert_eq!(stats.logs.dropped_total(), 0);
    assert_eq!(stats.logs.last_error(), None);
}

#[tokio::test]
async fn without_compression_or_tenant_requests_go_plain() {
    let (collector, addr) = running_collector();
    let exporter = Exporter::spawn(&ExporterConfig {
        compression: "none".into(),
        tenant: String::new(),
        ..config(addr)
    })
    .expect("exporter");
    exporter.logs(vec![logs(0..3, 3)]);
    collector.wait_for_items(SignalKind::Logs, 3).await;
    let request = &collector.received(SignalKind::Logs)[0];
    assert_eq!(request.encoding, None);
    assert_eq!(request.tenant, None);
}

#[tokio::test]
async fn zstd_compression_when_configured() {
    let (collector, addr) = running_collector();
    let exporter = Exporter::spawn(&ExporterConfig {
        compression: "zstd".into(),
        ..config(addr)
    })
    .expect("exporter");
    exporter.spans(vec![spans(5)]);
    collector.wait_for_items(SignalKind::Spans, 5).await;
    let request = &collector.received(SignalKind::Spans)[0];
    assert_eq!(request.encoding.as_deref(), Some("zstd"));
    assert!(request.resources_intact);
}

#[tokio::test]
async fn a_batch_larger_than_max_batch_items_is_split() {
    let (collector, addr) = running_collector();
    let exporter = Exporter::spawn(&ExporterConfig {
        max_batch_items: 10,
        ..config(addr)
    })
    .expect("exporter");
    exporter.logs(vec![logs(0..25, 12)]);
    collector.wait_for_items(SignalKind::Logs, 25).await;

    let received = collector.received(SignalKind::Logs);
    let sizes: Vec<usize> = received.iter().map(|r| r.items).collect();
    assert_eq!(sizes, [10, 10, 5]);
    let numbers: Vec<i64> = received.iter().flat_map(|r| r.numbers.clone()).collect();
    assert_eq!(
        numbers,
        (0..25).collect::<Vec<_>>(),
        "nothing lost or reordered"
    );
    assert!(received.iter().all(|r| r.resources_intact));
    let stats = exporter.stats();
    eventually("the answers to be counted", || {
        stats.logs.sent_requests.load(Ordering::Relaxed) == 3
    })
    .await;
}

#[tokio::test]
async fn unavailable_is_retried_until_delivered_once() {
    let (collector, addr) = running_collector();
    collector.script(
        SignalKind::Logs,
        [
            Answer::Fail(Code::Unavailable),
            Answer::Fail(Code::Unavailable),
        ],
    );
    let exporter = Exporter::spawn(&config(addr)).expect("exporter");
    exporter.logs(vec![logs(0..5, 5)]);
    collector.wait_for_items(SignalKind::Logs, 5).await;

    assert_eq!(collector.attempts(SignalKind::Logs).len(), 3);
    assert_eq!(
        collector.received(SignalKind::Logs).len(),
        1,
        "delivered once"
    );
    let stats = exporter.stats();
    eventually("the answer to be counted", || {
        stats.logs.sent_items.load(Ordering::Relaxed) == 5
    })
    .await;
    let stats = &stats.logs;
    assert_eq!(stats.retries.load(Ordering::Relaxed), 2);
    assert_eq!(stats.export_errors.load(Ordering::Relaxed), 2);
    assert_eq!(stats.dropped_total(), 0);
    let last_error = stats.last_error().expect("the failures are remembered");
    assert!(last_error.contains("Unavailable"), "{last_error}");
}

#[tokio::test]
async fn invalid_argument_is_dropped_without_retry() {
    let (collector, addr) = running_collector();
    collector.script(SignalKind::Logs, [Answer::Fail(Code::InvalidArgument)]);
    let exporter = Exporter::spawn(&config(addr)).expect("exporter");
    let stats = exporter.stats();
    exporter.logs(vec![logs(0..5, 5)]);
    eventually("the refused batch to be dropped", || {
        stats.logs.dropped_refused.load(Ordering::Relaxed) == 5
    })
    .await;
    // The sender takes batches in order: had it retried the first, it would have done so
    // before sending this one.
    exporter.logs(vec![logs(100..103, 3)]);
    collector.wait_for_items(SignalKind::Logs, 3).await;
    eventually("the answer to be counted", || {
        stats.logs.sent_items.load(Ordering::Relaxed) == 3
    })
    .await;

    assert_eq!(collector.attempts(SignalKind::Logs).len(), 2);
    assert_eq!(
        collector.received(SignalKind::Logs)[0].numbers,
        [100, 101, 102]
    );
    assert_eq!(stats.logs.retries.load(Ordering::Relaxed), 0);
    assert_eq!(stats.logs.export_errors.load(Ordering::Relaxed), 1);
    assert!(stats
        .logs
        .last_error()
        .is_some_and(|e| e.contains("InvalidArgument")));
}

#[tokio::test]
async fn resource_exhausted_waits_the_delay_the_store_asks_for() {
    let (collector, addr) = running_collector();
    let asked = Duration::from_millis(300);
    collector.script(SignalKind::Spans, [Answer::SlowDown(asked)]);
    // The backoff alone would retry after at most 15 ms.
    let exporter = Exporter::spawn(&config(addr)).expect("exporter");
    exporter.spans(vec![spans(4)]);
    collector.wait_for_items(SignalKind::Spans, 4).await;
    let stats = exporter.stats();
    eventually("the answer to be counted", || {
        stats.spans.sent_items.load(Ordering::Relaxed) == 4
    })
    .await;

    let attempts = collector.attempts(SignalKind::Spans);
    assert_eq!(attempts.len(), 2);
    assert!(
        attempts[1] - attempts[0] >= asked,
        "retried after {:?}",
        attempts[1] - attempts[0]
    );
    assert_eq!(stats.spans.retries.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn an_attempt_without_an_answer_times_out_and_is_retried() {
    let (collector, addr) = running_collector();
    collector.script(SignalKind::Logs, [Answer::Hang(Duration::from_secs(2))]);
    let exporter = Exporter::spawn(&ExporterConfig {
        timeout: "100ms".into(),
        ..config(addr)
    })
    .expect("exporter");
    let stats = exporter.stats();
    exporter.logs(vec![logs(0..5, 5)]);
    collector.wait_for_items(SignalKind::Logs, 5).await;
    eventually("the answer to be counted", || {
        stats.logs.sent_items.load(Ordering::Relaxed) == 5
    })
    .await;
    let attempts = collector.attempts(SignalKind::Logs);
    assert_eq!(attempts.len(), 2);
    assert!(
        attempts[1] - attempts[0] < Duration::from_secs(2),
        "not waited out"
    );
    assert_eq!(stats.logs.retries.load(Ordering::Relaxed), 1);
    let last_error = stats.logs.last_error().expect("the timeout is remembered");
    assert!(last_error.starts_with("DeadlineExceeded"), "{last_error}");
}

#[tokio::test]
async fn a_batch_still_failing_after_max_elapsed_is_given_up() {
    let (collector, addr) = running_collector();
    collector.script(
        SignalKind::Spans,
        std::iter::repeat_n(Answer::Fail(Code::Unavailable), 10_000),
    );
    let exporter = Exporter::spawn(&ExporterConfig {
        retry: RetryConfig {
            max_elapsed: "100ms".into(),
            ..config(addr).retry
        },
        ..config(addr)
    })
    .expect("exporter");
    let stats = exporter.stats();
    exporter.spans(vec![spans(4)]);
    eventually("the batch to be given up", || {
        stats.spans.dropped_gave_up.load(Ordering::Relaxed) == 4
    })
    .await;
    let attempts = collector.attempts(SignalKind::Spans).len() as u64;
    assert!(attempts >= 2, "retried before giving up");
    assert_eq!(stats.spans.retries.load(Ordering::Relaxed), attempts - 1);
    assert_eq!(stats.spans.sent_items.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn delivers_once_the_store_starts_after_the_exporter() {
    let (socket, addr) = reserve_port();
    let exporter = Exporter::spawn(&config(addr)).expect("exporter");
    let stats = exporter.stats();
    exporter.logs(vec![logs(0..5, 5)]);
    eventually("a refused connection", || {
        stats.logs.export_errors.load(Ordering::Relaxed) >= 2
    })
    .await;
    let last_error = stats.logs.last_error().expect("a connection error");
    assert!(last_error.starts_with("Unavailable"), "{last_error}");

    let collector = Collector::default();
    start_collector(socket, &collector);
    collector.wait_for_items(SignalKind::Logs, 5).await;
    assert_eq!(collector.received(SignalKind::Logs).len(), 1);
    eventually("the answer to be counted", || {
        stats.logs.sent_items.load(Ordering::Relaxed) == 5
    })
    .await;
    assert_eq!(stats.logs.dropped_total(), 0);
}

#[tokio::test]
async fn a_full_queue_drops_its_oldest_batches_while_the_store_is_down() {
    let (socket, addr) = reserve_port();
    let exporter = Exporter::spawn(&ExporterConfig {
        max_batch_items: 10,
        queue_capacity: 2,
        ..config(addr)
    })
    .expect("exporter");
    let stats = exporter.stats();
    // Batch 0 goes out first and is held, retrying, by the sender.
    exporter.logs(vec![logs(0..10, 10)]);
    eventually("the first batch to fail", || {
        stats.logs.export_errors.load(Ordering::Relaxed) >= 1
    })
    .await;
    // Batches 1 to 4 wait in a queue of two: 1 and 2 make way for 3 and 4.
    for batch in 1..=4 {
        exporter.logs(vec![logs(batch * 10..batch * 10 + 10, 10)]);
    }
    assert_eq!(stats.logs.dropped_queue_full.load(Ordering::Relaxed), 20);
    assert_eq!(stats.logs.queued_batches.load(Ordering::Relaxed), 2);

    let collector = Collector::default();
    start_collector(socket, &collector);
    collector.wait_for_items(SignalKind::Logs, 30).await;
    let numbers: Vec<i64> = collector
        .received(SignalKind::Logs)
        .iter()
        .flat_map(|r| r.numbers.clone())
        .collect();
    let expected: Vec<i64> = (0..10).chain(30..50).collect();
    assert_eq!(numbers, expected, "the held batch, then the newest two");
    eventually("the answers to be counted", || {
        stats.logs.sent_items.load(Ordering::Relaxed) == 30
    })
    .await;
    assert_eq!(stats.logs.dropped_total(), 20);
    assert_eq!(stats.logs.queued_batches.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn partial_success_rejections_are_counted() {
    let (collector, addr) = running_collector();
    collector.script(SignalKind::Logs, [Answer::Reject(3, "timestamp too old")]);
    let exporter = Exporter::spawn(&config(addr)).expect("exporter");
    exporter.logs(vec![logs(0..5, 5)]);
    collector.wait_for_items(SignalKind::Logs, 5).await;
    let stats = exporter.stats();
    eventually("the rejection to be counted", || {
        stats.logs.rejected_items.load(Ordering::Relaxed) == 3
    })
    .await;
    assert_eq!(stats.logs.sent_items.load(Ordering::Relaxed), 5);
    assert_eq!(stats.logs.retries.load(Ordering::Relaxed), 0, "not retried");
    let last_error = stats.logs.last_error().expect("the message is kept");
    assert!(last_error.contains("timestamp too old"), "{last_error}");
}

#[tokio::test]
async fn a_failing_signal_does_not_hold_up_the_others() {
    let (collector, addr) = running_collector();
    collector.script(
        SignalKind::Logs,
        std::iter::repeat_n(Answer::Fail(Code::Unavailable), 10_000),
    );
    let exporter = Exporter::spawn(&config(addr)).expect("exporter");
    exporter.logs(vec![logs(0..5, 5)]);
    exporter.metrics(vec![gauge(6)]);
    exporter.spans(vec![spans(7)]);
    collector.wait_for_items(SignalKind::Metrics, 6).await;
    collector.wait_for_items(SignalKind::Spans, 7).await;

    assert!(!collector.attempts(SignalKind::Logs).is_empty());
    assert!(collector.received(SignalKind::Logs).is_empty());
    let stats = exporter.stats();
    eventually("the answers to be counted", || {
        stats.metrics.sent_items.load(Ordering::Relaxed) == 6
            && stats.spans.sent_items.load(Ordering::Relaxed) == 7
    })
    .await;
    assert!(collector
        .received(SignalKind::Metrics)
        .iter()
        .all(|r| r.resources_intact && r.tenant.as_deref() == Some("team-a")));
}

#[tokio::test]
async fn shutdown_flushes_what_is_queued() {
    let (collector, addr) = running_collector();
    let exporter = Exporter::spawn(&ExporterConfig {
        // Nothing leaves on the timer: only the shutdown sends.
        flush_interval: "1h".into(),
        ..config(addr)
    })
    .expect("exporter");
    let stats = exporter.stats();
    exporter.logs(vec![logs(0..7, 7)]);
    exporter.metrics(vec![gauge(4)]);
    exporter.spans(vec![spans(2)]);
    assert_eq!(stats.logs.queued_items.load(Ordering::Relaxed), 7);

    exporter.shutdown(Duration::from_secs(5)).await;
    assert_eq!(collector.received_items(SignalKind::Logs), 7);
    assert_eq!(collector.received_items(SignalKind::Metrics), 4);
    assert_eq!(collector.received_items(SignalKind::Spans), 2);
    for kind in SignalKind::ALL {
        assert_eq!(stats.signal(kind).dropped_total(), 0, "{}", kind.as_str());
        assert_eq!(stats.signal(kind).queued_items.load(Ordering::Relaxed), 0);
    }
}

#[tokio::test]
async fn shutdown_gives_up_at_its_deadline_when_the_store_is_down() {
    let (_socket, addr) = reserve_port();
    let exporter = Exporter::spawn(&config(addr)).expect("exporter");
    let stats = exporter.stats();
    let handle = exporter.handle();
    exporter.logs(vec![logs(0..5, 5)]);
    exporter.spans(vec![spans(3)]);

    let started = Instant::now();
    exporter.shutdown(Duration::from_millis(200)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(stats.logs.dropped_gave_up.load(Ordering::Relaxed), 5);
    assert_eq!(stats.spans.dropped_gave_up.load(Ordering::Relaxed), 3);

    // A handle that outlives the exporter counts what it is given.
    handle.logs(vec![logs(0..2, 2)]);
    assert_eq!(stats.logs.dropped_gave_up.load(Ordering::Relaxed), 7);
}
