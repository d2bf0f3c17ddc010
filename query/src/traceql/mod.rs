//! The TraceQL subset Grafana's Tempo data source sends: spanset filters `{ … }` with `&&`, `||`, `!`
//! and parentheses; scopes `resource.`, `span.`, `event.`, `link.` and unscoped `.`; the intrinsics
//! (`name`, `status`, `kind`, `duration`, `rootName`, `rootServiceName`, `traceDuration`, their
//! `span:`/`trace:` spellings, ids, `statusMessage`); operators `= != =~ !~ > >= < <=` with fully
//! anchored regexes; typed literals (strings, integers, floats, durations, booleans, `nil`, status and
//! kind keywords); spanset `&&`/`||`; and the pipeline `| count() op n`, `| avg|min|max|sum(field) op v`,
//! `| select(…)` and `| { … }`. Structural operators and metrics functions are not supported.
//!
//! [`search`] drives a query over a [`TraceReader`]: the store narrows candidates with the equality
//! terms from [`required_terms`], then the query is evaluated on each candidate trace.

mod eval;
mod parser;

use std::collections::{BTreeSet, HashSet};

use strata_store::traces::{ScanRequest, ScanStats};
use strata_store::traces::{Span, TraceId, TraceReader, TraceSummary, Value};

pub use eval::{
    evaluate, implied_min_trace_duration, required_terms, shown_fields, span_filters, values,
    SpanRef, Typed,
};
pub use parser::{
    parse, parse_duration, parse_filter, Aggregate, AttrSel, CmpOp, Expr, Field, Intrinsic,
    Literal, ParseError, Query, SpansetExpr, Stage,
};

/// What to search and how much to return.
#[derive(Debug, Clone)]
pub struct SearchOptions {
    /// Unix nanoseconds; 0 = unbounded.
    pub start_ns: u64,
    pub end_ns: u64,
    /// Trace duration bounds in nanoseconds; 0 = unbounded.
    pub min_duration_ns: u64,
    pub max_duration_ns: u64,
    /// Traces returned at most.
    pub limit: usize,
    /// Spans per spanset returned at most (`matched` still counts all).
    pub spans_per_spanset: usize,
    /// Traces evaluated at most before answering with what was found.
    pub max_inspected_traces: u64,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            start_ns: 0,
            end_ns: 0,
            min_duration_ns: 0,
            max_duration_ns: 0,
            limit: 20,
            spans_per_spanset: 3,
            max_inspected_traces: 1_000_000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SpanResult {
    pub span: Span,
    /// Shown fields by their TraceQL name.
    pub attributes: Vec<(String, Value)>,
}

#[derive(Debug, Clone)]
pub struct TraceResult {
    pub summary: TraceSummary,
    pub spans: Vec<SpanResult>,
    /// All matching spans, also those not returned.
    pub matched: usize,
    /// Per service: (span count, error count).
    pub service_stats: Vec<(String, u32, u32)>,
}

#[derive(Debug, Clone, Default)]
pub struct SearchResult {
    pub traces: Vec<TraceResult>,
    pub stats: ScanStats,
}

/// Runs `q` over the reader; newest data is scanned first and traces come back newest first.
pub fn search(
    reader: &dyn TraceReader,
    q: &Query,
    opts: &SearchOptions,
) -> strata_store::Result<SearchResult> {
    let req = ScanRequest {
        start_ns: opts.start_ns,
        end_ns: opts.end_ns,
        min_duration_ns: opts.min_duration_ns.max(implied_min_trace_duration(q)),
        max_duration_ns: opts.max_duration_ns,
        required: required_terms(q),
        span_filters: span_filters(q),
    };
    let shown = shown_fields(q);
    let mut seen: HashSet<TraceId> = HashSet::new();
    let mut out = Vec::new();
    let mut inspected = 0u64;
    let stats = reader.scan(&req, &mut |trace| {
        inspected += 1;
        if seen.contains(&trace.trace_id) {
            return true;
        }
        let summary = trace.summary();
        let matched = evaluate(q, trace, &summary);
        if !matched.is_empty() {
            seen.insert(trace.trace_id);
            let mut stats: Vec<(String, u32, u32)> = Vec::new();
            for (res, _, span) in trace.spans() {
                let name = res.service_name();
                let i = match stats.iter().position(|s| s.0 == name) {
                    Some(i) => i,
                    None => {
                        stats.push((name.to_owned(), 0, 0));
                        stats.len() - 1
                    }
                };
                stats[i].1 += 1;
                if span.status_code == strata_store::traces::StatusCode::Error {
                    stats[i].2 += 1;
                }
            }
            let spans = matched
                .iter()
                .take(opts.spans_per_spanset)
                .map(|s| SpanResult {
                    span: s.span.clone(),
                    attributes: shown
                        .iter()
                        .filter_map(|f| {
                            values(f, s, &summary)
                                .first()
                                .map(|v| (f.traceql_name(), v.to_value()))
                        })
                        .collect(),
                })
                .collect();
            out.push(TraceResult {
                summary: summary.clone(),
                spans,
                matched: matched.len(),
                service_stats: stats,
            });
        }
        out.len() < opts.limit && inspected < opts.max_inspected_traces
    })?;
    out.sort_by_key(|t| std::cmp::Reverse(t.summary.start_unix_nano));
    Ok(SearchResult { traces: out, stats })
}

/// The query Tempo's legacy `tags` search means: every `key=value` must hold on some span, as a
/// case-insensitive substring of the span's (or its resource's) attribute, or of the span name for
/// `name`.
pub fn legacy_tags_query(tags: &[(String, String)]) -> Result<Query, ParseError> {
    let mut expr: Option<SpansetExpr> = None;
    for (k, v) in tags {
        let field = match k.as_str() {
            "name" => Field::Intrinsic(Intrinsic::Name),
            _ => Field::Attr {
                scope: AttrSel::Any,
                name: k.clone(),
            },
        };
        let regex =
            regex::Regex::new(&format!("(?is)^.*{}.*$", regex::escape(v))).map_err(|e| {
                ParseError {
                    pos: 0,
                    message: e.to_string(),
                }
            })?;
        let f = SpansetExpr::Filter(Some(Expr::Cmp {
            field,
            op: CmpOp::Re,
            value: Literal::Str(v.clone()),
            regex: Some(regex),
        }));
        expr = Some(match expr {
            None => f,
            Some(prev) => SpansetExpr::And(Box::new(prev), Box::new(f)),
        });
    }
    Ok(Query {
        spansets: expr.unwrap_or(SpansetExpr::Filter(None)),
        pipeline: Vec::new(),
    })
}

/// Values `field` takes on the spans `filter` matches (autocomplete with `q`), at most `limit`,
/// looking at no more than `max_traces` traces.
pub fn filtered_values(
    reader: &dyn TraceReader,
    filter: &Query,
    field: &Field,
    start_ns: u64,
    end_ns: u64,
    limit: usize,
    max_traces: u64,
) -> strata_store::Result<Vec<Value>> {
    let req = ScanRequest {
        start_ns,
        end_ns,
        required: required_terms(filter),
        span_filters: span_filters(filter),
        ..Default::default()
    };
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    let mut n = 0u64;
    reader.scan(&req, &mut |trace| {
        n += 1;
        let summary = trace.summary();
        for s in evaluate(filter, trace, &summary) {
            for v in values(field, &s, &summary) {
                let value = v.to_value();
                if seen.insert(format!("{value:?}")) {
                    out.push(value);
                }
            }
        }
        out.len() < limit && n < max_traces
    })?;
    out.truncate(limit);
    Ok(out)
}

/// Attribute names, by scope, on the spans `filter` matches (tags v2 with `q`).
pub fn filtered_tag_names(
    reader: &dyn TraceReader,
    filter: &Query,
    start_ns: u64,
    end_ns: u64,
    max_traces: u64,
) -> strata_store::Result<BTreeSet<(strata_store::traces::AttrScope, String)>> {
    use strata_store::traces::AttrScope;
    let req = ScanRequest {
        start_ns,
        end_ns,
        required: required_terms(filter),
        span_filters: span_filters(filter),
        ..Default::default()
    };
    let mut out = BTreeSet::new();
    let mut n = 0u64;
    reader.scan(&req, &mut |trace| {
        n += 1;
        let summary = trace.summary();
        for s in evaluate(filter, trace, &summary) {
            out.extend(
                s.resource
                    .attributes
                    .iter()
                    .map(|kv| (AttrScope::Resource, kv.key.clone())),
            );
            out.extend(
                s.span
                    .attributes
                    .iter()
                    .map(|kv| (AttrScope::Span, kv.key.clone())),
            );
        }
        n < max_traces
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use strata_store::traces::{
        KeyValue, Resource, ResourceSpans, ScopeSpans, SpanKind, StatusCode, Trace, TraceStore,
        TracesConfig,
    };

    use super::*;

    fn span(t: u8, id: u8, parent: Option<u8>, name: &str, start: u64, dur_ms: u64) -> Span {
        Span {
            trace_id: [t; 16],
            span_id: [id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: name.into(),
            kind: if parent.is_none() {
                SpanKind::Server
            } else {
                SpanKind::Client
            },
            start_time_unix_nano: start,
            end_time_unix_nano: start + dur_ms * 1_000_000,
            attributes: vec![
                KeyValue::new(
                    "http.status_code",
                    Value::Int(if id == 2 { 500 } else { 200 }),
                ),
                KeyValue::new(
                    "tags",
                    Value::Array(vec![Value::Str("a".into()), Value::Str("b".into())]),
                ),
            ],
            status_code: if id == 2 {
                StatusCode::Error
            } else {
                StatusCode::Unset
            },
            ..Default::default()
        }
    }

    fn trace(t: u8, service: &str) -> Trace {
        Trace {
            trace_id: [t; 16],
            batches: vec![ResourceSpans {
                resource: Arc::new(Resource {
                    attributes: vec![KeyValue::new("service.name", Value::Str(service.into()))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Default::default(),
                    spans: vec![
                        span(t, 1, None, "GET /cart", 1_000, 300),
                        span(t, 2, Some(1), "db", 2_000, 150),
                        span(t, 3, Some(1), "cache", 3_000, 5),
                    ],
                }],
            }],
        }
    }

    fn matches(q: &str, t: &Trace) -> Vec<String> {
        let q = parse(q).unwrap();
        let s = t.summary();
        evaluate(&q, t, &s)
            .iter()
            .map(|s| s.span.name.clone())
            .collect()
    }

    #[test]
    fn filters_operators_and_types() {
        let t = trace(1, "checkout");
        assert_eq!(
            matches(
                r#"{resource.service.name="checkout" && name="db" && status=error && duration>100ms}"#,
                &t
            ),
            ["db"]
        );
        assert_eq!(
            matches(r#"{ .service.name = "checkout" && duration < 10ms }"#, &t),
            ["cache"]
        );
        assert_eq!(matches(r#"{ name =~ "GET.*" }"#, &t), ["GET /cart"]);
        // anchored: a partial match is no match
        assert!(matches(r#"{ name =~ "GET" }"#, &t).is_empty());
        assert_eq!(matches(r#"{ name !~ "GET.*|db" }"#, &t), ["cache"]);
        assert_eq!(matches(r#"{ span.http.status_code >= 500 }"#, &t), ["db"]);
        assert_eq!(matches(r#"{ span.http.status_code = 500.0 }"#, &t), ["db"]);
        assert!(matches(r#"{ span.http.status_code = "500" }"#, &t).is_empty());
        assert_eq!(matches(r#"{ kind = server }"#, &t), ["GET /cart"]);
        assert_eq!(
            matches(r#"{ kind != server && status != error }"#, &t),
            ["cache"]
        );
        assert_eq!(
            matches(r#"{ span.missing = nil && name = "db" }"#, &t),
            ["db"]
        );
        assert_eq!(matches(r#"{ span.tags = "b" && name = "db" }"#, &t), ["db"]);
        assert_eq!(
            matches(
                r#"{ rootName = "GET /cart" && rootServiceName = "checkout" && traceDuration > 2000us && name="cache" }"#,
                &t
            ),
            ["cache"]
        );
        assert_eq!(
            matches(r#"{ !(name = "db") && name != "cache" }"#, &t),
            ["GET /cart"]
        );
        // strings order lexicographically: "GET /cart" < "cache" < "d" < "db"
        assert_eq!(matches(r#"{ name > "d" }"#, &t), ["db"]);
    }

    #[test]
    fn spanset_operators_and_pipeline() {
        let t = trace(1, "checkout");
        assert_eq!(
            matches(r#"{ name = "db" } && { name = "cache" }"#, &t),
            ["db", "cache"]
        );
        assert!(matches(r#"{ name = "db" } && { name = "nope" }"#, &t).is_empty());
        assert_eq!(
            matches(r#"{ name = "db" } || { name = "nope" }"#, &t),
            ["db"]
        );
        assert_eq!(matches("{ } | count() > 2", &t).len(), 3);
        assert!(matches("{ } | count() > 3", &t).is_empty());
        assert_eq!(
            matches("{ kind = client } | avg(duration) > 50ms", &t).len(),
            2
        );
        assert!(matches("{ kind = client } | max(duration) > 200ms", &t).is_empty());
        assert_eq!(matches(r#"{ } | { name = "db" }"#, &t), ["db"]);
    }

    #[test]
    fn span_durations_in_the_query_skip_shorter_traces_unread() {
        let q = |s: &str| implied_min_trace_duration(&parse(s).unwrap());
        assert_eq!(q(r#"{ name = "db" && duration > 100ms }"#), 100_000_000);
        assert_eq!(q("{ duration >= 1s } && { duration > 2s }"), 2_000_000_000);
        assert_eq!(q("{ duration > 1s || name = \"x\" }"), 0);
        assert_eq!(q("{ duration > 1s } || { duration > 2s }"), 1_000_000_000);
        assert_eq!(q("{ duration < 1s }"), 0);
        assert_eq!(q("{ !(duration > 1s) }"), 0);

        let dir = tempfile::tempdir().unwrap();
        let store = TraceStore::open(dir.path(), TracesConfig::default()).unwrap();
        for i in 1..=6u8 {
            let mut t = trace(i, "svc");
            if i > 3 {
                // Traces 4-6 last 10 ms: none of their spans can be longer.
                for s in &mut t.batches[0].scope_spans[0].spans {
                    s.end_time_unix_nano = s.start_time_unix_nano + 10_000_000;
                }
            }
            store.append(t.batches).unwrap();
            if i == 3 {
                store.cut(i64::MAX, true).unwrap();
            }
        }
        let q = parse(r#"{ name = "db" && duration > 100ms }"#).unwrap();
        let r = search(&store, &q, &SearchOptions::default()).unwrap();
        let mut ids: Vec<u8> = r.traces.iter().map(|t| t.summary.trace_id[0]).collect();
        ids.sort_unstable();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(
            r.stats.inspected_traces, 3,
            "the short traces are never decoded"
        );
    }

    #[test]
    fn span_filters_keep_the_conditions_one_span_meets_together() {
        use strata_store::traces::SpanCondition as C;
        let q = parse(
            r#"{ resource.service.name = "x" && name != "GET" && status = error && kind = client && duration > 100ms && (span.a = 1 || name = "y") } && { duration <= 2s }"#,
        )
        .unwrap();
        let ms = 1_000_000;
        assert_eq!(
            span_filters(&q),
            [
                vec![
                    C::Resource {
                        key: "service.name".into(),
                        value: "x".into()
                    },
                    C::Name {
                        equal: false,
                        name: "GET".into()
                    },
                    C::Status {
                        equal: true,
                        code: StatusCode::Error
                    },
                    C::Kind {
                        equal: true,
                        kind: SpanKind::Client
                    },
                    C::Duration {
                        min: 100 * ms + 1,
                        max: i64::MAX as u64
                    },
                ],
                vec![C::Duration {
                    min: 0,
                    max: 2_000 * ms
                }],
            ]
        );
        // Either side may match: no span needs to meet anything.
        let q = parse(r#"{ name = "a" } || { name = "b" }"#).unwrap();
        assert!(span_filters(&q).is_empty());
        let q = parse(r#"{ !(name = "a") && span.x =~ "a.*" }"#).unwrap();
        assert!(span_filters(&q).is_empty());
    }

    #[test]
    fn search_returns_tempo_shaped_results_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let store = TraceStore::open(dir.path(), TracesConfig::default()).unwrap();
        for i in 1..=6u8 {
            store
                .append(trace(i, if i % 2 == 0 { "even" } else { "odd" }).batches)
                .unwrap();
            if i == 3 {
                store.cut(i64::MAX, true).unwrap();
            }
        }
        let q = parse(r#"{ resource.service.name = "even" && status = error } | select(span.http.status_code)"#).unwrap();
        // the service equality and `status = error` both come from postings
        assert_eq!(required_terms(&q).len(), 2);
        let r = search(&store, &q, &SearchOptions::default()).unwrap();
        let mut ids: Vec<u8> = r.traces.iter().map(|t| t.summary.trace_id[0]).collect();
        ids.sort_unstable();
        assert_eq!(ids, [2, 4, 6]);
        let t = &r.traces[0];
        assert_eq!(t.matched, 1);
        assert_eq!(t.summary.root_span_name, "GET /cart");
        let names: Vec<&str> = t.spans[0].attributes.iter().map(|a| a.0.as_str()).collect();
        assert_eq!(
            names,
            ["resource.service.name", "status", "span.http.status_code"]
        );
        assert_eq!(t.service_stats, vec![("even".to_owned(), 3, 1)]);
        let r = search(
            &store,
            &parse("{}").unwrap(),
            &SearchOptions {
                limit: 2,
                spans_per_spanset: 1,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(r.traces.len(), 2);
        assert_eq!(r.traces[0].spans.len(), 1);
        assert_eq!(r.traces[0].matched, 3);
        let legacy = legacy_tags_query(&[("service.name".into(), "EVE".into())]).unwrap();
        assert_eq!(
            search(&store, &legacy, &SearchOptions::default())
                .unwrap()
                .traces
                .len(),
            3
        );
        let vals = filtered_values(
            &store,
            &parse(r#"{ name = "db" }"#).unwrap(),
            &Field::Attr {
                scope: AttrSel::Span,
                name: "http.status_code".into(),
            },
            0,
            0,
            10,
            1000,
        )
        .unwrap();
        assert_eq!(vals, vec![Value::Int(500)]);
    }
}
