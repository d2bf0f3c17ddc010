//! The traces the version 1 trace-store fixture holds (shared by the test and the example that wrote it).

use std::sync::Arc;

use strata_store::traces::{
    Event, KeyValue, Link, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanKind, StatusCode,
    Value,
};

/// Trace `t` (1..=4): a root and a child across two resources, with every kind of value.
pub fn trace(t: u8) -> Vec<ResourceSpans> {
    let base = 1_700_000_000_000_000_000u64 + u64::from(t) * 1_000_000_000;
    let span = |id: u8, parent: Option<u8>| Span {
        trace_id: [t; 16],
        span_id: [id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        trace_state: "a=1".into(),
        flags: 1,
        name: format!("op-{id}"),
        kind: if parent.is_none() {
            SpanKind::Server
        } else {
            SpanKind::Client
        },
        start_time_unix_nano: base + u64::from(id) * 1_000,
        end_time_unix_nano: base + 5_000_000,
        attributes: vec![
            KeyValue::new("s", Value::Str(format!("v{t}"))),
            KeyValue::new("i", Value::Int(-i64::from(t))),
            KeyValue::new("d", Value::Double(0.5)),
            KeyValue::new("b", Value::Bool(true)),
            KeyValue::new("y", Value::Bytes(vec![t, 0])),
            KeyValue::new(
                "a",
                Value::Array(vec![
                    Value::Int(1),
                    Value::KvList(vec![KeyValue::new("k", Value::Empty)]),
                ]),
            ),
        ],
        dropped_attributes_count: 1,
        events: vec![Event {
            time_unix_nano: base + 10,
            name: "ev".into(),
            attributes: vec![KeyValue::new("e", Value::Str("x".into()))],
            dropped_attributes_count: 2,
        }],
        dropped_events_count: 3,
        links: vec![Link {
            trace_id: vec![9; 16],
            span_id: vec![8; 8],
            trace_state: "l=2".into(),
            attributes: vec![KeyValue::new("l", Value::Int(7))],
            dropped_attributes_count: 4,
            flags: 5,
        }],
        dropped_links_count: 6,
        status_code: if id == 2 {
            StatusCode::Error
        } else {
            StatusCode::Ok
        },
        status_message: "m".into(),
    };
    let group = |service: &str, spans| ResourceSpans {
        resource: Arc::new(Resource {
            attributes: vec![KeyValue::new("service.name", Value::Str(service.into()))],
            dropped_attributes_count: 0,
            schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
        }),
        scope_spans: vec![ScopeSpans {
            scope: Scope {
                name: "lib".into(),
                version: "1".into(),
                attributes: vec![KeyValue::new("sc", Value::Str("y".into()))],
                dropped_attributes_count: 0,
                schema_url: String::new(),
            },
            spans,
        }],
    };
    vec![
        group("front", vec![span(1, None)]),
        group("back", vec![span(2, Some(1))]),
    ]
}
