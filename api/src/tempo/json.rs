//! Tempo's JSON for traces: gogo `jsonpb` output of OTLP messages — camelCase keys, zero values left
//! out, 64-bit integers as strings, ids in base64, and span kind and status code by enum name.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Map, Value as Json};
use strata_store::traces::{KeyValue, Span, StatusCode, Trace, Value};

pub fn any_value(v: &Value) -> Json {
    match v {
        Value::Empty => json!({}),
        Value::Str(s) => json!({ "stringValue": s }),
        Value::Int(i) => json!({ "intValue": i.to_string() }),
        Value::Double(d) => json!({ "doubleValue": d }),
        Value::Bool(b) => json!({ "boolValue": b }),
        Value::Bytes(b) => json!({ "bytesValue": B64.encode(b) }),
        Value::Array(a) => {
            json!({ "arrayValue": { "values": a.iter().map(any_value).collect::<Vec<_>>() } })
        }
        Value::KvList(kvs) => json!({ "kvlistValue": { "values": attributes(kvs) } }),
    }
}

pub fn attributes(kvs: &[KeyValue]) -> Vec<Json> {
    kvs.iter()
        .map(|kv| json!({ "key": kv.key, "value": any_value(&kv.value) }))
        .collect()
}

/// Inserts `v` unless it is the zero value jsonpb leaves out.
fn put(m: &mut Map<String, Json>, k: &str, v: Json) {
    let zero = match &v {
        Json::Null => true,
        Json::String(s) => s.is_empty() || s == "0",
        Json::Number(n) => n.as_f64() == Some(0.0),
        Json::Array(a) => a.is_empty(),
        Json::Bool(b) => !b,
        Json::Object(_) => false,
    };
    if !zero {
        m.insert(k.to_owned(), v);
    }
}

fn span(s: &Span) -> Json {
    let mut m = Map::new();
    put(&mut m, "traceId", json!(B64.encode(s.trace_id)));
    put(&mut m, "spanId", json!(B64.encode(s.span_id)));
    put(&mut m, "traceState", json!(s.trace_state));
    put(&mut m, "parentSpanId", json!(B64.encode(&s.parent_span_id)));
    put(&mut m, "flags", json!(s.flags));
    put(&mut m, "name", json!(s.name));
    put(&mut m, "kind", json!(s.kind.otlp_name()));
    put(
        &mut m,
        "startTimeUnixNano",
        json!(s.start_time_unix_nano.to_string()),
    );
    put(
        &mut m,
        "endTimeUnixNano",
        json!(s.end_time_unix_nano.to_string()),
    );
    put(&mut m, "attributes", json!(attributes(&s.attributes)));
    put(
        &mut m,
        "droppedAttributesCount",
        json!(s.dropped_attributes_count),
    );
    let events: Vec<Json> = s
        .events
        .iter()
        .map(|e| {
            let mut em = Map::new();
            put(&mut em, "timeUnixNano", json!(e.time_unix_nano.to_string()));
            put(&mut em, "name", json!(e.name));
            put(&mut em, "attributes", json!(attributes(&e.attributes)));
            put(
                &mut em,
                "droppedAttributesCount",
                json!(e.dropped_attributes_count),
            );
            Json::Object(em)
        })
        .collect();
    put(&mut m, "events", json!(events));
    put(&mut m, "droppedEventsCount", json!(s.dropped_events_count));
    let links: Vec<Json> = s
        .links
        .iter()
        .map(|l| {
            let mut lm = Map::new();
            put(&mut lm, "traceId", json!(B64.encode(&l.trace_id)));
            put(&mut lm, "spanId", json!(B64.encode(&l.span_id)));
            put(&mut lm, "traceState", json!(l.trace_state));
            put(&mut lm, "attributes", json!(attributes(&l.attributes)));
            put(
                &mut lm,
                "droppedAttributesCount",
                json!(l.dropped_attributes_count),
            );
            put(&mut lm, "flags", json!(l.flags));
            Json::Object(lm)
        })
        .collect();
    put(&mut m, "links", json!(links));
    put(&mut m, "droppedLinksCount", json!(s.dropped_links_count));
    let mut status = Map::new();
    put(&mut status, "message", json!(s.status_message));
    if s.status_code != StatusCode::Unset {
        status.insert("code".into(), json!(s.status_code.otlp_name()));
    }
    m.insert("status".into(), Json::Object(status));
    Json::Object(m)
}

/// The trace's resource spans as jsonpb writes `tempopb.Trace.resourceSpans`.
pub fn resource_spans(t: &Trace) -> Vec<Json> {
    t.batches
        .iter()
        .map(|rs| {
            let mut res = Map::new();
            put(
                &mut res,
                "attributes",
                json!(attributes(&rs.resource.attributes)),
            );
            put(
                &mut res,
                "droppedAttributesCount",
                json!(rs.resource.dropped_attributes_count),
            );
            let scope_spans: Vec<Json> = rs
                .scope_spans
                .iter()
                .map(|ss| {
                    let mut scope = Map::new();
                    put(&mut scope, "name", json!(ss.scope.name));
                    put(&mut scope, "version", json!(ss.scope.version));
                    put(
                        &mut scope,
                        "attributes",
                        json!(attributes(&ss.scope.attributes)),
                    );
                    put(
                        &mut scope,
                        "droppedAttributesCount",
                        json!(ss.scope.dropped_attributes_count),
                    );
                    let mut m = Map::new();
                    m.insert("scope".into(), Json::Object(scope));
                    m.insert(
                        "spans".into(),
                        json!(ss.spans.iter().map(span).collect::<Vec<_>>()),
                    );
                    put(&mut m, "schemaUrl", json!(ss.scope.schema_url));
                    Json::Object(m)
                })
                .collect();
            let mut m = Map::new();
            m.insert("resource".into(), Json::Object(res));
            m.insert("scopeSpans".into(), json!(scope_spans));
            put(&mut m, "schemaUrl", json!(rs.resource.schema_url));
            Json::Object(m)
        })
        .collect()
}
