//! The three OTLP signals as the exporter sees them: what counts as one item (a log record, a
//! metric data point, a span), how a resource is split between two requests without losing its
//! resource and scope, which collector method takes them, and how a request is encoded once for
//! all its attempts.

use std::marker::PhantomData;

use bytes::{BufMut, Bytes};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{metric, Metric, ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// One of the three signals, for stats and log fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignalKind {
    /// Flow records, as OTLP log records.
    Logs,
    /// Metric data points.
    Metrics,
    Spans,
}

impl SignalKind {
    pub const ALL: [SignalKind; 3] = [SignalKind::Logs, SignalKind::Metrics, SignalKind::Spans];

    /// The label value, e.g. `signal="logs"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::Logs => "logs",
            SignalKind::Metrics => "metrics",
            SignalKind::Spans => "spans",
        }
    }
}

/// What the store refused of an accepted request (OTLP `partial_success`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rejected {
    pub items: i64,
    pub message: String,
}

/// A signal's resource type, its item count and split, and its collector method.
pub(crate) trait Signal: Send + Sync + 'static {
    const KIND: SignalKind;
    /// The collector's gRPC method, e.g. `/opentelemetry.proto.collector.trace.v1.TraceService/Export`.
    const PATH: &'static str;
    type Resource: Clone + Send + Sync + 'static;
    type Response: Message + Default + Send + 'static;

    /// Items in one resource: log records, metric data points or spans.
    fn items(resource: &Self::Resource) -> usize;

    /// Keeps the first `at` items in `resource` and returns a resource with the rest, under the
    /// same resource and scopes. `at` is below `items(resource)`.
    fn split_off(resource: &mut Self::Resource, at: usize) -> Self::Resource;

    /// The export request of `resources`, encoded: once per batch, however many attempts it takes.
    fn encode(resources: Vec<Self::Resource>) -> Bytes;

    /// What the store refused of an accepted request.
    fn rejected(response: Self::Response) -> Rejected;
}

/// Sends a request body encoded beforehand and decodes the collector's answer `R`.
pub(crate) struct EncodedCodec<R>(PhantomData<fn() -> R>);

impl<R> Default for EncodedCodec<R> {
    fn default() -> Self {
        EncodedCodec(PhantomData)
    }
}

impl<R: Message + Default + Send + 'static> Codec for EncodedCodec<R> {
    type Encode = Bytes;
    type Decode = R;
    type Encoder = EncodedBody;
    type Decoder = ResponseOf<R>;

    fn encoder(&mut self) -> EncodedBody {
        EncodedBody
    }

    fn decoder(&mut self) -> ResponseOf<R> {
        ResponseOf(PhantomData)
    }
}

pub(crate) struct EncodedBody;

impl Encoder for EncodedBody {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, body: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&body);
        Ok(())
    }
}

pub(crate) struct ResponseOf<R>(PhantomData<fn() -> R>);

impl<R: Message + Default> Decoder for ResponseOf<R> {
    type Item = R;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<R>, Status> {
        R::decode(src)
            .map(Some)
            .map_err(|err| Status::internal(format!("undecodable export response: {err}")))
    }
}

pub(crate) struct Logs;
pub(crate) struct Metrics;
pub(crate) struct Spans;

impl Signal for Logs {
    const KIND: SignalKind = SignalKind::Logs;
    const PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    type Resource = ResourceLogs;
    type Response = ExportLogsServiceResponse;

    fn items(resource: &ResourceLogs) -> usize {
        resource
            .scope_logs
            .iter()
            .map(|scope| scope.log_records.len())
            .sum()
    }

    fn split_off(resource: &mut ResourceLogs, at: usize) -> ResourceLogs {
        let scope_logs = split_nested(
            &mut resource.scope_logs,
            at,
            |scope| scope.log_records.len(),
            |scope, at| ScopeLogs {
                scope: scope.scope.clone(),
                log_records: scope.log_records.split_off(at),
                schema_url: scope.schema_url.clone(),
            },
        );
        ResourceLogs {
            resource: resource.resource.clone(),
            scope_logs,
            schema_url: resource.schema_url.clone(),
        }
    }

    fn encode(resource_logs: Vec<ResourceLogs>) -> Bytes {
        ExportLogsServiceRequest { resource_logs }
            .encode_to_vec()
            .into()
    }

    fn rejected(response: ExportLogsServiceResponse) -> Rejected {
        response
            .partial_success
            .map(|partial| Rejected {
                items: partial.rejected_log_records,
                message: partial.error_message,
            })
            .unwrap_or_default()
    }
}

impl Signal for Metrics {
    const KIND: SignalKind = SignalKind::Metrics;
    const PATH: &'static str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
    type Resource = ResourceMetrics;
    type Response = ExportMetricsServiceResponse;

    fn items(resource: &ResourceMetrics) -> usize {
        resource
            .scope_metrics
            .iter()
            .map(|scope| scope.metrics.iter().map(data_points).sum::<usize>())
            .sum()
    }

    fn split_off(resource: &mut ResourceMetrics, at: usize) -> ResourceMetrics {
        let scope_metrics = split_nested(
            &mut resource.scope_metrics,
            at,
            |scope| scope.metrics.iter().map(data_points).sum(),
            |scope, at| ScopeMetrics {
                scope: scope.scope.clone(),
                metrics: split_nested(&mut scope.metrics, at, data_points, split_metric),
                schema_url: scope.schema_url.clone(),
            },
        );
        ResourceMetrics {
            resource: resource.resource.clone(),
            scope_metrics,
            schema_url: resource.schema_url.clone(),
        }
    }

    fn encode(resource_metrics: Vec<ResourceMetrics>) -> Bytes {
        ExportMetricsServiceRequest { resource_metrics }
            .encode_to_vec()
            .into()
    }

    fn rejected(response: ExportMetricsServiceResponse) -> Rejected {
        response
            .partial_success
            .map(|partial| Rejected {
                items: partial.rejected_data_points,
                message: partial.error_message,
            })
            .unwrap_or_default()
    }
}

impl Signal for Spans {
    const KIND: SignalKind = SignalKind::Spans;
    const PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    type Resource = ResourceSpans;
    type Response = ExportTraceServiceResponse;

    fn items(resource: &ResourceSpans) -> usize {
        resource
            .scope_spans
            .iter()
            .map(|scope| scope.spans.len())
            .sum()
    }

    fn split_off(resource: &mut ResourceSpans, at: usize) -> ResourceSpans {
        let scope_spans = split_nested(
            &mut resource.scope_spans,
            at,
            |scope| scope.spans.len(),
            |scope, at| ScopeSpans {
                scope: scope.scope.clone(),
                spans: scope.spans.split_off(at),
                schema_url: scope.schema_url.clone(),
            },
        );
        ResourceSpans {
            resource: resource.resource.clone(),
            scope_spans,
            schema_url: resource.schema_url.clone(),
        }
    }

    fn encode(resource_spans: Vec<ResourceSpans>) -> Bytes {
        ExportTraceServiceRequest { resource_spans }
            .encode_to_vec()
            .into()
    }

    fn rejected(response: ExportTraceServiceResponse) -> Rejected {
        response
            .partial_success
            .map(|partial| Rejected {
                items: partial.rejected_spans,
                message: partial.error_message,
            })
            .unwrap_or_default()
    }
}

fn data_points(metric: &Metric) -> usize {
    match &metric.data {
        Some(metric::Data::Gauge(gauge)) => gauge.data_points.len(),
        Some(metric::Data::Sum(sum)) => sum.data_points.len(),
        Some(metric::Data::Histogram(histogram)) => histogram.data_points.len(),
        Some(metric::Data::ExponentialHistogram(histogram)) => histogram.data_points.len(),
        Some(metric::Data::Summary(summary)) => summary.data_points.len(),
        None => 0,
    }
}

/// Moves the data points from `at` on into a copy of the metric's name, unit, temporality etc.
fn split_metric(metric: &mut Metric, at: usize) -> Metric {
    use metric::Data;
    let data = metric.data.as_mut().map(|data| match data {
        Data::Gauge(gauge) => Data::Gauge(opentelemetry_proto::tonic::metrics::v1::Gauge {
            data_points: gauge.data_points.split_off(at),
        }),
        Data::Sum(sum) => Data::Sum(opentelemetry_proto::tonic::metrics::v1::Sum {
            data_points: sum.data_points.split_off(at),
            aggregation_temporality: sum.aggregation_temporality,
            is_monotonic: sum.is_monotonic,
        }),
        Data::Histogram(histogram) => {
            Data::Histogram(opentelemetry_proto::tonic::metrics::v1::Histogram {
                data_points: histogram.data_points.split_off(at),
                aggregation_temporality: histogram.aggregation_temporality,
            })
        }
        Data::ExponentialHistogram(histogram) => Data::ExponentialHistogram(
            opentelemetry_proto::tonic::metrics::v1::ExponentialHistogram {
                data_points: histogram.data_points.split_off(at),
                aggregation_temporality: histogram.aggregation_temporality,
            },
        ),
        Data::Summary(summary) => Data::Summary(opentelemetry_proto::tonic::metrics::v1::Summary {
            data_points: summary.data_points.split_off(at),
        }),
    });
    Metric {
        name: metric.name.clone(),
        description: metric.description.clone(),
        unit: metric.unit.clone(),
        metadata: metric.metadata.clone(),
        data,
    }
}

/// Splits a list of containers at item `at`: `parts` keeps the containers holding the first `at`
/// items (the straddling one cut by `split`), and the rest is returned. Containers of no items
/// stay in front.
fn split_nested<T>(
    parts: &mut Vec<T>,
    at: usize,
    items: impl Fn(&T) -> usize,
    split: impl Fn(&mut T, usize) -> T,
) -> Vec<T> {
    let mut kept = 0;
    for index in 0..parts.len() {
        let here = items(&parts[index]);
        if kept + here <= at {
            kept += here;
            continue;
        }
        let cut = at - kept;
        if cut == 0 {
            return parts.split_off(index);
        }
        let tail = split(&mut parts[index], cut);
        let mut rest = Vec::with_capacity(parts.len() - index);
        rest.push(tail);
        rest.extend(parts.drain(index + 1..));
        return rest;
    }
    Vec::new()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope};
    use opentelemetry_proto::tonic::logs::v1::LogRecord;
    use opentelemetry_proto::tonic::metrics::v1::{Gauge, NumberDataPoint, Sum};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::Span;

    fn scope(name: &str) -> Option<InstrumentationScope> {
        Some(InstrumentationScope {
            name: name.into(),
            ..InstrumentationScope::default()
        })
    }

    fn resource() -> Option<Resource> {
        Some(Resource {
            dropped_attributes_count: 7,
            ..Resource::default()
        })
    }

    /// Log records numbered from `first`, in scopes of the given sizes.
    pub(crate) fn logs(first: i64, scopes: &[usize]) -> ResourceLogs {
        let mut next = first;
        ResourceLogs {
            resource: resource(),
            scope_logs: scopes
                .iter()
                .enumerate()
                .map(|(index, &records)| ScopeLogs {
                    scope: scope(&format!("scope-{index}")),
                    log_records: (0..records)
                        .map(|_| {
                            next += 1;
                            LogRecord {
                                body: Some(AnyValue {
                                    value: Some(any_value::Value::IntValue(next - 1)),
                                }),
                                ..LogRecord::default()
                            }
                        })
                        .collect(),
                    schema_url: String::new(),
                })
                .collect(),
            schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
        }
    }

    pub(crate) fn numbers(resource: &ResourceLogs) -> Vec<i64> {
        resource
            .scope_logs
            .iter()
            .flat_map(|scope| &scope.log_records)
            .map(
                |record| match record.body.as_ref().and_then(|b| b.value.as_ref()) {
                    Some(any_value::Value::IntValue(n)) => *n,
                    other => panic!("unexpected body {other:?}"),
                },
            )
            .collect()
    }

    #[test]
    fn a_log_resource_splits_across_scopes_keeping_resource_and_scope() {
        for at in 1..9 {
            let mut front = logs(0, &[3, 0, 4, 2]);
            let back = Logs::split_off(&mut front, at);
            assert_eq!(Logs::items(&front), at);
            assert_eq!(Logs::items(&back), 9 - at);
            let mut all = numbers(&front);
            all.extend(numbers(&back));
            assert_eq!(all, (0..9).collect::<Vec<_>>(), "split at {at}");
            assert_eq!(back.resource, front.resource);
            assert_eq!(back.schema_url, front.schema_url);
            assert!(back.scope_logs.iter().all(|s| s.scope.is_some()));
        }
        let mut front = logs(0, &[3, 4]);
        let back = Logs::split_off(&mut front, 5);
        let scopes = |r: &ResourceLogs| -> Vec<String> {
            r.scope_logs
                .iter()
                .map(|s| s.scope.as_ref().unwrap().name.clone())
                .collect()
        };
        assert_eq!(scopes(&front), ["scope-0", "scope-1"]);
        assert_eq!(scopes(&back), ["scope-1"]);
    }

    #[test]
    fn a_metric_splits_between_its_data_points_keeping_its_kind() {
        let point = NumberDataPoint::default;
        let mut front = ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                scope: scope("agent"),
                metrics: vec![
                    Metric {
                        name: "a".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![point(), point()],
                        })),
                        ..Metric::default()
                    },
                    Metric {
                        name: "b".into(),
                        unit: "By".into(),
                        data: Some(metric::Data::Sum(Sum {
                            data_points: vec![point(), point(), point()],
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        })),
                        ..Metric::default()
                    },
                ],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        };
        assert_eq!(Metrics::items(&front), 5);
        let back = Metrics::split_off(&mut front, 3);
        assert_eq!((Metrics::items(&front), Metrics::items(&back)), (3, 2));
        let moved = &back.scope_metrics[0].metrics[0];
        assert_eq!((moved.name.as_str(), moved.unit.as_str()), ("b", "By"));
        let Some(metric::Data::Sum(sum)) = &moved.data else {
            panic!("a sum stays a sum");
        };
        assert!(sum.is_monotonic);
        assert_eq!(sum.aggregation_temporality, 2);
        assert_eq!(back.scope_metrics[0].scope, scope("agent"));
    }

    #[test]
    fn spans_split_like_log_records() {
        let mut front = ResourceSpans {
            resource: resource(),
            scope_spans: vec![ScopeSpans {
                scope: scope("http"),
                spans: vec![Span::default(); 5],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        };
        let back = Spans::split_off(&mut front, 2);
        assert_eq!((Spans::items(&front), Spans::items(&back)), (2, 3));
        assert_eq!(back.scope_spans[0].scope, scope("http"));
    }
}
