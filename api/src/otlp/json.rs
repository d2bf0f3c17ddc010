//! OTLP/JSON decoding. The OTLP messages carry serde derives that follow the OTLP JSON encoding
//! strictly (lowerCamelCase keys, 64-bit times as decimal strings, other 64-bit integers as numbers).
//! Senders are looser — protobuf's JSON mapping lets them use the original snake_case field names and
//! either strings or numbers for any 64-bit integer — so the document is first brought into the strict
//! shape, then deserialised.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Time fields, encoded as decimal strings except in the messages [`numeric_times`] names.
const TIMES: &[&str] = &[
    "timeUnixNano",
    "startTimeUnixNano",
    "endTimeUnixNano",
    "observedTimeUnixNano",
];

/// 64-bit fields whose strict encoding is a JSON number.
const NUMBER_INTEGERS: &[&str] = &["count", "bucketCounts", "asInt", "zeroCount", "intValue"];

/// Parses an OTLP/JSON request body.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let mut doc: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    normalise(&mut doc, 0, Context::default())?;
    serde_json::from_value(doc).map_err(|e| format!("invalid OTLP/JSON: {e}"))
}

/// Deeper nesting than any OTLP message needs (attribute values nest, but not this far).
const MAX_DEPTH: usize = 64;

/// Where a value sits: the key holding it and the key holding that (array elements inherit both).
#[derive(Debug, Default, Clone, Copy)]
struct Context<'a> {
    parent: &'a str,
    grand: &'a str,
}

fn normalise(v: &mut Value, depth: usize, at: Context<'_>) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("OTLP/JSON nests deeper than {MAX_DEPTH} levels"));
    }
    match v {
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (key, mut value) in entries {
                let key = camel_case(key);
                if TIMES.contains(&key.as_str()) {
                    if numeric_times(at) {
                        to_number(&mut value);
                    } else if let Value::Number(n) = &value {
                        value = Value::String(n.to_string());
                    }
                } else if NUMBER_INTEGERS.contains(&key.as_str()) {
                    to_number(&mut value);
                } else {
                    let inner = Context {
                        parent: &key,
                        grand: at.parent,
                    };
                    normalise(&mut value, depth + 1, inner)?;
                }
                map.insert(key, value);
            }
            for (key, default) in defaults(at) {
                map.entry(*key).or_insert_with(|| default.clone());
            }
        }
        Value::Array(items) => {
            for item in items {
                normalise(item, depth + 1, at)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Places (grand-parent key or `*`, parent key) and the defaults an object there takes.
type Defaults = (
    Vec<(&'static str, &'static str)>,
    Vec<(&'static str, Value)>,
);

/// Summary points, exponential-histogram points and exemplars take their times as JSON numbers.
fn numeric_times(at: Context<'_>) -> bool {
    at.parent == "exemplars"
        || (at.parent == "dataPoints" && matches!(at.grand, "summary" | "exponentialHistogram"))
}

/// Proto3 JSON lets a sender omit any field at its default; these messages' serde derives require
/// some fields, so their defaults are filled in by where the object sits.
fn defaults(at: Context<'_>) -> &'static [(&'static str, Value)] {
    use std::sync::OnceLock;
    static TABLE: OnceLock<Vec<Defaults>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let zero = || Value::from(0);
        let list = || Value::Array(vec![]);
        let point = |extra: Vec<(&'static str, Value)>| {
            let mut v = vec![
                ("attributes", list()),
                ("startTimeUnixNano", zero()),
                ("timeUnixNano", zero()),
                ("count", zero()),
                ("flags", zero()),
            ];
            v.extend(extra);
            v
        };
        vec![
            (
                vec![("", "")],
                vec![
                    ("resourceSpans", list()),
                    ("resourceLogs", list()),
                    ("resourceMetrics", list()),
                ],
            ),
            (
                vec![("*", "arrayValue"), ("*", "kvlistValue")],
                vec![("values", list())],
            ),
            (
                vec![("*", "attributes"), ("*", "filteredAttributes")],
                vec![("key", Value::from(""))],
            ),
            (
                vec![("*", "exemplars")],
                vec![
                    ("filteredAttributes", list()),
                    ("timeUnixNano", zero()),
                    ("spanId", Value::from("")),
                    ("traceId", Value::from("")),
                ],
            ),
            (
                vec![("summary", "dataPoints")],
                point(vec![("sum", zero()), ("quantileValues", list())]),
            ),
            (
                vec![("*", "quantileValues")],
                vec![("quantile", zero()), ("value", zero())],
            ),
            (
                vec![("exponentialHistogram", "dataPoints")],
                point(vec![
                    ("scale", zero()),
                    ("zeroCount", zero()),
                    ("exemplars", list()),
                    ("zeroThreshold", zero()),
                ]),
            ),
            (
                vec![("*", "positive"), ("*", "negative")],
                vec![("offset", zero()), ("bucketCounts", list())],
            ),
        ]
    });
    table
        .iter()
        .find(|(places, _)| {
            places
                .iter()
                .any(|(g, p)| *p == at.parent && (*g == "*" || *g == at.grand))
        })
        .map(|(_, d)| d.as_slice())
        .unwrap_or(&[])
}

/// A decimal string (or an array of them) becomes a number; anything else is left for serde to judge.
fn to_number(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let Ok(n) = s.parse::<u64>() {
                *v = Value::from(n);
            } else if let Ok(n) = s.parse::<i64>() {
                *v = Value::from(n);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(to_number),
        _ => {}
    }
}

fn camel_case(key: String) -> String {
    if !key.contains('_') {
        return key;
    }
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value;

    use super::*;

    #[test]
    fn strict_and_loose_encodings_decode_alike() {
        let strict = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
            "scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "name":"GET /","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
            "attributes":[{"key":"n","value":{"intValue":"42"}}]}]}]}]}"#;
        let loose = r#"{"resource_spans":[{"resource":{"attributes":[{"key":"service.name","value":{"string_value":"api"}}]},
            "scope_spans":[{"spans":[{"trace_id":"5b8efff798038103d269b633813fc60c","span_id":"eee19b7ec3c1b174",
            "name":"GET /","kind":2,"start_time_unix_nano":1544712660000000000,"end_time_unix_nano":1544712661000000000,
            "attributes":[{"key":"n","value":{"int_value":42}}]}]}]}]}"#;
        let a: ExportTraceServiceRequest = decode(strict.as_bytes()).unwrap();
        let b: ExportTraceServiceRequest = decode(loose.as_bytes()).unwrap();
        assert_eq!(a, b);
        let span = &a.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.trace_id.len(), 16);
        assert_eq!(span.span_id[0], 0xee);
        assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
        let v = span.attributes[0].value.as_ref().unwrap().value.as_ref();
        assert_eq!(v, Some(&any_value::Value::IntValue(42)));
    }

    #[test]
    fn histogram_counts_may_be_strings() {
        let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"h","histogram":{
            "aggregationTemporality":2,"dataPoints":[{"timeUnixNano":"1000","count":"3","sum":1.5,
            "bucketCounts":["1","2"],"explicitBounds":[1.0]}]}}]}]}]}"#;
        let r: ExportMetricsServiceRequest = decode(body.as_bytes()).unwrap();
        let m = &r.resource_metrics[0].scope_metrics[0].metrics[0];
        let Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Histogram(h)) = &m.data
        else {
            panic!("not a histogram: {m:?}");
        };
        assert_eq!(h.data_points[0].count, 3);
        assert_eq!(h.data_points[0].bucket_counts, vec![1, 2]);
        assert_eq!(h.data_points[0].time_unix_nano, 1000);
    }

    #[test]
    fn omitted_fields_take_their_defaults() {
        let r: ExportTraceServiceRequest = decode(b"{}").unwrap();
        assert!(r.resource_spans.is_empty());
        let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"s","summary":{
            "dataPoints":[{"timeUnixNano":"5","quantileValues":[{"quantile":0.5}]}]}},
            {"name":"g","gauge":{"dataPoints":[{"asInt":"7","exemplars":[{"asDouble":1.0}]}]}}]}]}]}"#;
        let r: ExportMetricsServiceRequest = decode(body.as_bytes()).unwrap();
        let ms = &r.resource_metrics[0].scope_metrics[0].metrics;
        assert_eq!(ms.len(), 2);
        use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
        let Some(Data::Summary(s)) = &ms[0].data else {
            panic!("{:?}", ms[0])
        };
        assert_eq!(s.data_points[0].time_unix_nano, 5);
        assert_eq!(s.data_points[0].quantile_values[0].value, 0.0);
        let Some(Data::Gauge(g)) = &ms[1].data else {
            panic!("{:?}", ms[1])
        };
        assert_eq!(
            g.data_points[0].value,
            Some(number_data_point::Value::AsInt(7))
        );
        assert!(g.data_points[0].exemplars[0].trace_id.is_empty());
    }

    #[test]
    fn bad_documents_are_errors() {
        assert!(decode::<ExportTraceServiceRequest>(b"{").is_err());
        assert!(decode::<ExportTraceServiceRequest>(
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#
        )
        .is_err());
        let deep = "[".repeat(100) + &"]".repeat(100);
        let body = format!(r#"{{"resourceSpans":{deep}}}"#);
        let e = decode::<ExportTraceServiceRequest>(body.as_bytes()).unwrap_err();
        assert!(e.contains("nests deeper"), "{e}");
    }
}
