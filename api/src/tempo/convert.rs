//! OTLP trace messages ↔ the store's span model. Ingest validates on the way in (ids, value sizes and
//! nesting); the trace-by-id API converts back, so what Grafana reads is what was sent.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1 as otlp_common;
use opentelemetry_proto::tonic::resource::v1 as otlp_resource;
use opentelemetry_proto::tonic::trace::v1 as otlp;
use otlp_common::any_value::Value as AnyValueKind;
use strata_store::traces::{
    Event, KeyValue, Link, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanKind, StatusCode,
    Trace, Value, MAX_VALUE_DEPTH,
};

/// Limits applied to every span on ingest.
#[derive(Debug, Clone)]
pub struct SpanLimits {
    /// Largest attribute value (strings, bytes, and nested values added up).
    pub max_attribute_value_bytes: usize,
    pub max_spans_per_request: usize,
}

impl Default for SpanLimits {
    fn default() -> Self {
        SpanLimits {
            max_attribute_value_bytes: 64 << 10,
            max_spans_per_request: 100_000,
        }
    }
}

/// Why a request was refused whole.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Bad data: INVALID_ARGUMENT / 400.
    Invalid(String),
    /// Too much: RESOURCE_EXHAUSTED / 429.
    TooLarge(String),
}

/// The spans of a request in the store's model, plus how many spans were dropped and why (OTLP
/// `partial_success`): spans with invalid ids are dropped, the rest stored.
#[derive(Debug, Default)]
pub struct Decoded {
    pub batches: Vec<ResourceSpans>,
    pub rejected: u64,
    pub reason: String,
}

fn value(v: Option<otlp_common::AnyValue>, depth: usize) -> Result<Value, String> {
    if depth > MAX_VALUE_DEPTH {
        return Err(format!(
            "attribute value nested deeper than {MAX_VALUE_DEPTH} levels"
        ));
    }
    Ok(match v.and_then(|v| v.value) {
        None => Value::Empty,
        Some(AnyValueKind::StringValue(s)) => Value::Str(s),
        Some(AnyValueKind::BoolValue(b)) => Value::Bool(b),
        Some(AnyValueKind::IntValue(i)) => Value::Int(i),
        Some(AnyValueKind::DoubleValue(d)) => Value::Double(d),
        Some(AnyValueKind::BytesValue(b)) => Value::Bytes(b),
        Some(AnyValueKind::ArrayValue(a)) => Value::Array(
            a.values
                .into_iter()
                .map(|x| value(Some(x), depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Some(AnyValueKind::KvlistValue(kv)) => {
            Value::KvList(attrs(kv.values, depth + 1, usize::MAX)?)
        }
    })
}

fn attrs(
    kvs: Vec<otlp_common::KeyValue>,
    depth: usize,
    max_bytes: usize,
) -> Result<Vec<KeyValue>, String> {
    kvs.into_iter()
        .map(|kv| {
            let v = value(kv.value, depth)?;
            if v.size() > max_bytes {
                return Err(format!(
                    "attribute {:?} has a value of {} bytes, more than the limit of {max_bytes}",
                    kv.key,
                    v.size()
                ));
            }
            Ok(KeyValue {
                key: kv.key,
                value: v,
            })
        })
        .collect()
}

fn id<const N: usize>(b: &[u8]) -> Option<[u8; N]> {
    let a: [u8; N] = b.try_into().ok()?;
    (a != [0u8; N]).then_some(a)
}

/// Converts an export request. Oversized or too-deeply nested values refuse the request (the sender
/// must fix it; retrying cannot help); spans with invalid ids are dropped and counted.
pub fn from_otlp(
    resource_spans: Vec<otlp::ResourceSpans>,
    limits: &SpanLimits,
) -> Result<Decoded, Refusal> {
    let total: usize = resource_spans
        .iter()
        .flat_map(|r| r.scope_spans.iter())
        .map(|s| s.spans.len())
        .sum();
    if total > limits.max_spans_per_request {
        return Err(Refusal::TooLarge(format!(
            "{total} spans in one request, more than the limit of {}",
            limits.max_spans_per_request
        )));
    }
    let max = limits.max_attribute_value_bytes;
    let mut out = Decoded::default();
    for rs in resource_spans {
        let r = rs.resource.unwrap_or_default();
        let resource = Arc::new(Resource {
            attributes: attrs(r.attributes, 1, max).map_err(Refusal::Invalid)?,
            dropped_attributes_count: r.dropped_attributes_count,
            schema_url: rs.schema_url,
        });
        let mut scope_spans = Vec::with_capacity(rs.scope_spans.len());
        for ss in rs.scope_spans {
            let sc = ss.scope.unwrap_or_default();
            let scope = Scope {
                name: sc.name,
                version: sc.version,
                attributes: attrs(sc.attributes, 1, max).map_err(Refusal::Invalid)?,
                dropped_attributes_count: sc.dropped_attributes_count,
                schema_url: ss.schema_url,
            };
            let mut spans = Vec::with_capacity(ss.spans.len());
            for s in ss.spans {
                let (Some(trace_id), Some(span_id)) = (id::<16>(&s.trace_id), id::<8>(&s.span_id))
                else {
                    out.rejected += 1;
                    out.reason =
                        "spans need a 16-byte non-zero trace id and an 8-byte non-zero span id"
                            .into();
                    continue;
                };
                if !(s.parent_span_id.is_empty() || s.parent_span_id.len() == 8) {
                    out.rejected += 1;
                    out.reason = "a parent span id must be empty or 8 bytes".into();
                    continue;
                }
                let status = s.status.unwrap_or_default();
                let mut events = Vec::with_capacity(s.events.len());
                for e in s.events {
                    events.push(Event {
                        time_unix_nano: e.time_unix_nano,
                        name: e.name,
                        attributes: attrs(e.attributes, 1, max).map_err(Refusal::Invalid)?,
                        dropped_attributes_count: e.dropped_attributes_count,
                    });
                }
                let mut links = Vec::with_capacity(s.links.len());
                for l in s.links {
                    links.push(Link {
                        trace_id: l.trace_id,
                        span_id: l.span_id,
                        trace_state: l.trace_state,
                        attributes: attrs(l.attributes, 1, max).map_err(Refusal::Invalid)?,
                        dropped_attributes_count: l.dropped_attributes_count,
                        flags: l.flags,
                    });
                }
                spans.push(Span {
                    trace_id,
                    span_id,
                    parent_span_id: s.parent_span_id,
                    trace_state: s.trace_state,
                    flags: s.flags,
                    name: s.name,
                    kind: SpanKind::from_i32(s.kind),
                    start_time_unix_nano: s.start_time_unix_nano,
                    end_time_unix_nano: s.end_time_unix_nano,
                    attributes: attrs(s.attributes, 1, max).map_err(Refusal::Invalid)?,
                    dropped_attributes_count: s.dropped_attributes_count,
                    events,
                    dropped_events_count: s.dropped_events_count,
                    links,
                    dropped_links_count: s.dropped_links_count,
                    status_code: StatusCode::from_i32(status.code),
                    status_message: status.message,
                });
            }
            if !spans.is_empty() {
                scope_spans.push(ScopeSpans { scope, spans });
            }
        }
        if !scope_spans.is_empty() {
            out.batches.push(ResourceSpans {
                resource,
                scope_spans,
            });
        }
    }
    Ok(out)
}

pub fn to_any_value(v: &Value) -> otlp_common::AnyValue {
    let kind = match v {
        Value::Empty => None,
        Value::Str(s) => Some(AnyValueKind::StringValue(s.clone())),
        Value::Int(i) => Some(AnyValueKind::IntValue(*i)),
        Value::Double(d) => Some(AnyValueKind::DoubleValue(*d)),
        Value::Bool(b) => Some(AnyValueKind::BoolValue(*b)),
        Value::Bytes(b) => Some(AnyValueKind::BytesValue(b.clone())),
        Value::Array(a) => Some(AnyValueKind::ArrayValue(otlp_common::ArrayValue {
            values: a.iter().map(to_any_value).collect(),
        })),
        Value::KvList(kvs) => Some(AnyValueKind::KvlistValue(otlp_common::KeyValueList {
            values: to_key_values(kvs),
        })),
    };
    otlp_common::AnyValue { value: kind }
}

pub fn to_key_values(kvs: &[KeyValue]) -> Vec<otlp_common::KeyValue> {
    kvs.iter()
        .map(|kv| otlp_common::KeyValue {
            key: kv.key.clone(),
            value: Some(to_any_value(&kv.value)),
        })
        .collect()
}

fn to_span(s: &Span) -> otlp::Span {
    otlp::Span {
        trace_id: s.trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        trace_state: s.trace_state.clone(),
        parent_span_id: s.parent_span_id.clone(),
        flags: s.flags,
        name: s.name.clone(),
        kind: s.kind as i32,
        start_time_unix_nano: s.start_time_unix_nano,
        end_time_unix_nano: s.end_time_unix_nano,
        attributes: to_key_values(&s.attributes),
        dropped_attributes_count: s.dropped_attributes_count,
        events: s
            .events
            .iter()
            .map(|e| otlp::span::Event {
                time_unix_nano: e.time_unix_nano,
                name: e.name.clone(),
                attributes: to_key_values(&e.attributes),
                dropped_attributes_count: e.dropped_attributes_count,
            })
            .collect(),
        dropped_events_count: s.dropped_events_count,
        links: s
            .links
            .iter()
            .map(|l| otlp::span::Link {
                trace_id: l.trace_id.clone(),
                span_id: l.span_id.clone(),
                trace_state: l.trace_state.clone(),
                attributes: to_key_values(&l.attributes),
                dropped_attributes_count: l.dropped_attributes_count,
                flags: l.flags,
            })
            .collect(),
        dropped_links_count: s.dropped_links_count,
        status: (s.status_code != StatusCode::Unset || !s.status_message.is_empty()).then(|| {
            otlp::Status {
                message: s.status_message.clone(),
                code: s.status_code as i32,
            }
        }),
    }
}

/// A stored trace as OTLP `TracesData` (wire-identical to Tempo's `tempopb.Trace`).
pub fn to_otlp(t: &Trace) -> otlp::TracesData {
    otlp::TracesData {
        resource_spans: t
            .batches
            .iter()
            .map(|rs| otlp::ResourceSpans {
                resource: Some(otlp_resource::Resource {
                    attributes: to_key_values(&rs.resource.attributes),
                    dropped_attributes_count: rs.resource.dropped_attributes_count,
                    entity_refs: Vec::new(),
                }),
                schema_url: rs.resource.schema_url.clone(),
                scope_spans: rs
                    .scope_spans
                    .iter()
                    .map(|ss| otlp::ScopeSpans {
                        scope: Some(otlp_common::InstrumentationScope {
                            name: ss.scope.name.clone(),
                            version: ss.scope.version.clone(),
                            attributes: to_key_values(&ss.scope.attributes),
                            dropped_attributes_count: ss.scope.dropped_attributes_count,
                        }),
                        schema_url: ss.scope.schema_url.clone(),
                        spans: ss.spans.iter().map(to_span).collect(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn any(v: AnyValueKind) -> Option<otlp_common::AnyValue> {
        Some(otlp_common::AnyValue { value: Some(v) })
    }

    fn nested(depth: usize) -> Option<otlp_common::AnyValue> {
        let mut v = any(AnyValueKind::IntValue(1));
        for _ in 0..depth {
            v = any(AnyValueKind::ArrayValue(otlp_common::ArrayValue {
                values: vec![v.unwrap()],
            }));
        }
        v
    }

    fn request(attr: Option<otlp_common::AnyValue>, trace_id: Vec<u8>) -> Vec<otlp::ResourceSpans> {
        vec![otlp::ResourceSpans {
            resource: Some(otlp_resource::Resource {
                attributes: vec![otlp_common::KeyValue {
                    key: "service.name".into(),
                    value: any(AnyValueKind::StringValue("svc".into())),
                }],
                ..Default::default()
            }),
            scope_spans: vec![otlp::ScopeSpans {
                scope: Some(otlp_common::InstrumentationScope {
                    name: "lib".into(),
                    version: "2".into(),
                    ..Default::default()
                }),
                spans: vec![otlp::Span {
                    trace_id,
                    span_id: vec![2; 8],
                    name: "op".into(),
                    kind: 3,
                    start_time_unix_nano: 10,
                    end_time_unix_nano: 20,
                    attributes: vec![otlp_common::KeyValue {
                        key: "a".into(),
                        value: attr,
                    }],
                    events: vec![otlp::span::Event {
                        time_unix_nano: 15,
                        name: "e".into(),
                        ..Default::default()
                    }],
                    links: vec![otlp::span::Link {
                        trace_id: vec![7; 16],
                        span_id: vec![6; 8],
                        ..Default::default()
                    }],
                    status: Some(otlp::Status {
                        code: 2,
                        message: "bad".into(),
                    }),
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
            schema_url: "s".into(),
        }]
    }

    #[test]
    fn round_trips_every_field() {
        let req = request(nested(3), vec![1; 16]);
        let d = from_otlp(req.clone(), &SpanLimits::default()).unwrap();
        assert_eq!(d.rejected, 0);
        let t = Trace {
            trace_id: [1; 16],
            batches: d.batches,
        };
        assert_eq!(to_otlp(&t).resource_spans, req);
    }

    #[test]
    fn bad_ids_are_partial_rejections_and_bad_values_refuse_the_request() {
        let d = from_otlp(request(nested(0), vec![1; 15]), &SpanLimits::default()).unwrap();
        assert_eq!((d.rejected, d.batches.len()), (1, 0));
        let d = from_otlp(request(nested(0), vec![0; 16]), &SpanLimits::default()).unwrap();
        assert_eq!(d.rejected, 1);
        assert!(matches!(
            from_otlp(request(nested(40), vec![1; 16]), &SpanLimits::default()),
            Err(Refusal::Invalid(m)) if m.contains("nested")
        ));
        let huge = any(AnyValueKind::StringValue("x".repeat(100 << 10)));
        assert!(matches!(
            from_otlp(request(huge, vec![1; 16]), &SpanLimits::default()),
            Err(Refusal::Invalid(m)) if m.contains("limit")
        ));
        let limits = SpanLimits {
            max_spans_per_request: 0,
            ..Default::default()
        };
        assert!(matches!(
            from_otlp(request(nested(0), vec![1; 16]), &limits),
            Err(Refusal::TooLarge(_))
        ));
    }
}
