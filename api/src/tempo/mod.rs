//! The Tempo HTTP API under `/tempo`, as Grafana's Tempo data source calls it
//! (`reference/tempo-api.md`): echo, ready, buildinfo, trace by id (v1 and v2, protobuf and JSON),
//! TraceQL search, tag names and tag values (v1 and v2). Also the ingest entry point the OTLP trace
//! listeners call: convert, validate, store, generate span metrics.

pub mod convert;
pub mod json;
#[cfg(test)]
mod router_tests;
pub mod span_metrics;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use opentelemetry_proto::tonic::trace::v1 as otlp;
use prost::Message;
use serde_json::{json, Value as Json};
use strata_query::traceql::{self, AttrSel, Field, Intrinsic, SearchOptions};
use strata_store::traces::{
    hex, AttrScope, DictValue, TraceAppend, TraceReader, TraceStore, Value,
};

use crate::server::{tenant, AppState};

/// The Tempo version Strata answers as: ≥ 2.7.0 so Grafana hides no feature (`reference/tempo-api.md` §1.4).
pub const TEMPO_COMPAT_VERSION: &str = "2.7.0";

/// `tempopb.TraceByIDResponse`: the v2 trace-by-id body.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TraceByIdResponse {
    #[prost(message, optional, tag = "1")]
    pub trace: Option<otlp::TracesData>,
    /// `PartialStatus`: 0 complete, 1 partial.
    #[prost(int32, tag = "3")]
    pub status: i32,
    #[prost(string, tag = "4")]
    pub message: String,
}

/// Why ingest refused a request (mapped to OTLP status by the listeners).
#[derive(Debug, Clone, PartialEq)]
pub enum IngestError {
    InvalidArgument(String),
    ResourceExhausted(String),
    Unavailable(String),
}

/// Stores an OTLP export request for `tenant`. Spans with bad ids are dropped and counted in the
/// result (`partial_success`); bad values or too many spans refuse the request.
pub fn ingest(
    state: &AppState,
    tenant: &str,
    resource_spans: Vec<otlp::ResourceSpans>,
) -> Result<TraceAppend, IngestError> {
    let t = &state.cfg.traces;
    let limits = convert::SpanLimits {
        max_attribute_value_bytes: t.max_attribute_value_bytes,
        max_spans_per_request: t.max_spans_per_request,
    };
    let decoded = convert::from_otlp(resource_spans, &limits).map_err(|r| match r {
        convert::Refusal::Invalid(m) => IngestError::InvalidArgument(m),
        convert::Refusal::TooLarge(m) => IngestError::ResourceExhausted(m),
    })?;
    let mut out = TraceAppend {
        rejected: decoded.rejected,
        reason: decoded.reason,
        ..Default::default()
    };
    if decoded.batches.is_empty() {
        return Ok(out);
    }
    let store = state
        .storage
        .traces_for_write(tenant)
        .map_err(|e| IngestError::InvalidArgument(e.to_string()))?;
    if t.generate_metrics {
        state
            .span_metrics
            .observe(tenant, &decoded.batches, now_ms());
    }
    // A full head waits for a cut (the append waits for room): make sure one is under way.
    cut_in_background(&store);
    let stored = store
        .append(decoded.batches)
        .map_err(|e| IngestError::Unavailable(e.to_string()))?;
    cut_in_background(&store);
    out.accepted = stored.accepted;
    out.rejected += stored.rejected;
    if !stored.reason.is_empty() {
        out.reason = stored.reason;
    }
    Ok(out)
}

/// Cuts a head that outgrew `traces.max_head_bytes` now, on its own thread, rather than at the next
/// maintenance tick; the thread goes on cutting while appends keep the head over the limit. At most
/// one such thread runs per store.
fn cut_in_background(store: &Arc<TraceStore>) {
    if !store.head_over_limit() || store.cutter_running() {
        return;
    }
    let store = store.clone();
    let spawned = std::thread::Builder::new()
        .name("trace-cut".into())
        .spawn(move || {
            if let Err(e) = store.cut_while_over_limit() {
                tracing::error!(error = %e, "cutting the trace head failed");
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start a thread to cut the trace head");
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/echo", get(|| async { "echo" }))
        .route("/ready", get(|| async { "ready" }))
        .route("/api/status/buildinfo", get(buildinfo))
        .route("/api/traces/{id}", get(trace_v1))
        .route("/api/v2/traces/{id}", get(trace_v2))
        .route("/api/search", get(search))
        .route("/api/search/tags", get(tags_v1))
        .route("/api/v2/search/tags", get(tags_v2))
        .route("/api/search/tag/{tag}/values", get(tag_values_v1))
        .route("/api/v2/search/tag/{tag}/values", get(tag_values_v2))
}

/// An API error in Tempo's manner: a status and a plain-text message.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

type ApiResult = Result<Response, ApiError>;

async fn buildinfo() -> impl IntoResponse {
    axum::Json(json!({
        "version": TEMPO_COMPAT_VERSION,
        "revision": env!("CARGO_PKG_VERSION"),
        "branch": "strata",
        "buildDate": "",
        "buildUser": "",
        "goVersion": "",
    }))
}

/// Hex only; an odd length gets a leading 0; up to 16 bytes, left-padded (`pkg/util/traceid.go`).
pub fn parse_trace_id(s: &str) -> Result<[u8; 16], String> {
    let s = s.trim();
    if s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "invalid trace id {s:?}: expected up to 32 hexadecimal characters"
        ));
    }
    let padded = format!("{s:0>32}");
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&padded[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(id)
}

/// Tempo's `TraceIDToHexString`: lowercase hex without leading zeros.
pub fn trace_id_hex(id: &[u8]) -> String {
    let h = hex(id);
    let t = h.trim_start_matches('0');
    if t.is_empty() {
        "0".into()
    } else {
        t.into()
    }
}

fn query_pairs(raw: &Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// `start`/`end` in unix seconds, as nanoseconds (0 = unset).
fn time_range(pairs: &[(String, String)]) -> Result<(u64, u64), ApiError> {
    let get = |k: &str| -> Result<u64, ApiError> {
        match param(pairs, k) {
            None => Ok(0),
            Some(v) => v
                .parse::<u32>()
                .map(|s| u64::from(s) * 1_000_000_000)
                .map_err(|_| bad(format!("invalid {k} {v:?}: expected unix seconds"))),
        }
    };
    let (start, end) = (get("start")?, get("end")?);
    if start != 0 && end != 0 && end < start {
        return Err(bad("invalid start and end: end is before start"));
    }
    // `end` covers its whole second.
    Ok((start, if end == 0 { 0 } else { end + 999_999_999 }))
}

fn store_for(state: &AppState, headers: &HeaderMap) -> Result<Option<Arc<TraceStore>>, ApiError> {
    let tenant = tenant(headers).map_err(bad)?;
    state
        .storage
        .traces_for_read(&tenant)
        .map_err(|e| bad(e.to_string()))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(internal)?
}

fn wants_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/protobuf"))
}

async fn find_trace(
    state: Arc<AppState>,
    headers: &HeaderMap,
    id: &str,
    raw: &Option<String>,
) -> Result<Option<strata_store::traces::Trace>, ApiError> {
    let id = parse_trace_id(id).map_err(bad)?;
    let pairs = query_pairs(raw);
    let (start, end) = time_range(&pairs)?;
    let range = (start != 0 && end != 0).then_some((start, end));
    let Some(store) = store_for(&state, headers)? else {
        return Ok(None);
    };
    blocking(move || store.trace_by_id(&id, range).map_err(internal)).await
}

fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "trace not found".into())
}

fn protobuf(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/protobuf")], body).into_response()
}

async fn trace_v1(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    trace_response(state, headers, id, raw, false).await
}

async fn trace_v2(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    trace_response(state, headers, id, raw, true).await
}

/// v1 answers `tempopb.Trace` (protobuf) or `{"batches": …}`; v2 wraps the trace in
/// `TraceByIDResponse` or `{"trace": {"resourceSpans": …}}`.
async fn trace_response(
    state: Arc<AppState>,
    headers: HeaderMap,
    id: String,
    raw: Option<String>,
    v2: bool,
) -> ApiResult {
    let trace = find_trace(state, &headers, &id, &raw)
        .await?
        .ok_or_else(not_found)?;
    Ok(match (v2, wants_protobuf(&headers)) {
        (false, true) => protobuf(convert::to_otlp(&trace).encode_to_vec()),
        (true, true) => protobuf(
            TraceByIdResponse {
                trace: Some(convert::to_otlp(&trace)),
                status: 0,
                message: String::new(),
            }
            .encode_to_vec(),
        ),
        (false, false) => {
            axum::Json(json!({ "batches": json::resource_spans(&trace) })).into_response()
        }
        (true, false) => {
            axum::Json(json!({ "trace": { "resourceSpans": json::resource_spans(&trace) } }))
                .into_response()
        }
    })
}

/// Go's `time.ParseDuration` for the forms Grafana sends (`100ms`, `1.5s`, `1h30m`), in nanoseconds.
pub fn parse_go_duration(s: &str) -> Option<u64> {
    traceql::parse_duration(s).and_then(|d| u64::try_from(d).ok())
}

/// logfmt `k=v k2="v w"`, as Tempo's legacy `tags` parameter; a repeated key is an error.
pub fn parse_logfmt(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next() {
                        None => return Err("unterminated quoted value in tags".into()),
                        Some('"') => break,
                        Some('\\') => value.extend(chars.next()),
                        Some(c) => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        if key.is_empty() {
            return Err("empty key in tags".into());
        }
        if out.iter().any(|(k, _)| *k == key) {
            return Err(format!("duplicate tag key {key:?}"));
        }
        out.push((key, value));
    }
}

const SEARCH_PARAMS: &[&str] = &[
    "q",
    "tags",
    "minDuration",
    "maxDuration",
    "limit",
    "start",
    "end",
    "spss",
];

async fn search(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let pairs = query_pairs(&raw);
    let (start_ns, end_ns) = time_range(&pairs)?;
    let q = param(&pairs, "q");
    let tags = param(&pairs, "tags");
    if q.is_some() && tags.is_some() {
        return Err(bad(
            "invalid request: can't specify tags and q in the same query",
        ));
    }
    let count = |k: &str, default: usize| -> Result<usize, ApiError> {
        match param(&pairs, k) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(bad(format!(
                    "invalid {k} {v:?}: must be a positive integer"
                ))),
            },
        }
    };
    let max_limit = state.cfg.traces.max_search_limit;
    let limit = count("limit", 20)?;
    if limit > max_limit {
        return Err(bad(format!("invalid limit {limit}: at most {max_limit}")));
    }
    let spss = count("spss", 3)?;
    let duration = |k: &str| -> Result<u64, ApiError> {
        match param(&pairs, k) {
            None => Ok(0),
            Some(v) => parse_go_duration(v)
                .ok_or_else(|| bad(format!("invalid {k} {v:?}: expected a duration like 100ms"))),
        }
    };
    let (min_d, max_d) = (duration("minDuration")?, duration("maxDuration")?);
    if max_d != 0 && min_d > max_d {
        return Err(bad("invalid maxDuration: must be greater than minDuration"));
    }
    let query = match (q, tags) {
        (Some(q), _) => {
            traceql::parse(q).map_err(|e| bad(format!("invalid TraceQL query: {e}")))?
        }
        (None, Some(t)) => {
            let t = parse_logfmt(t).map_err(|e| bad(format!("invalid tags: {e}")))?;
            traceql::legacy_tags_query(&t).map_err(|e| bad(e.to_string()))?
        }
        (None, None) => {
            // Legacy form: with no q, tags or range, every other parameter is a tag.
            let legacy: Vec<(String, String)> = if start_ns == 0 && end_ns == 0 {
                pairs
                    .iter()
                    .filter(|(k, _)| !SEARCH_PARAMS.contains(&k.as_str()))
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            };
            traceql::legacy_tags_query(&legacy).map_err(|e| bad(e.to_string()))?
        }
    };
    let opts = SearchOptions {
        start_ns,
        end_ns,
        min_duration_ns: min_d,
        max_duration_ns: max_d,
        limit,
        spans_per_spanset: spss,
        max_inspected_traces: state.cfg.traces.max_search_inspected_traces,
    };
    let Some(store) = store_for(&state, &headers)? else {
        return Ok(axum::Json(search_json(&Default::default())).into_response());
    };
    let result =
        blocking(move || traceql::search(store.as_ref(), &query, &opts).map_err(internal)).await?;
    Ok(axum::Json(search_json(&result)).into_response())
}

fn search_json(r: &traceql::SearchResult) -> Json {
    let traces: Vec<Json> = r
        .traces
        .iter()
        .map(|t| {
            let spans: Vec<Json> = t
                .spans
                .iter()
                .map(|s| {
                    let mut m = serde_json::Map::new();
                    m.insert("spanID".into(), json!(hex(&s.span.span_id)));
                    if !s.span.name.is_empty() {
                        m.insert("name".into(), json!(s.span.name));
                    }
                    m.insert(
                        "startTimeUnixNano".into(),
                        json!(s.span.start_time_unix_nano.to_string()),
                    );
                    m.insert(
                        "durationNanos".into(),
                        json!(s.span.duration_nanos().to_string()),
                    );
                    let attrs: Vec<Json> = s
                        .attributes
                        .iter()
                        .map(|(k, v)| json!({ "key": k, "value": json::any_value(v) }))
                        .collect();
                    if !attrs.is_empty() {
                        m.insert("attributes".into(), json!(attrs));
                    }
                    Json::Object(m)
                })
                .collect();
            let spanset = json!({ "spans": spans, "matched": t.matched });
            let stats: serde_json::Map<String, Json> = t
                .service_stats
                .iter()
                .map(|(svc, n, errors)| {
                    let mut s = json!({ "spanCount": n });
                    if *errors > 0 {
                        s["errorCount"] = json!(errors);
                    }
                    (svc.clone(), s)
                })
                .collect();
            let mut m = serde_json::Map::new();
            m.insert("traceID".into(), json!(trace_id_hex(&t.summary.trace_id)));
            if !t.summary.root_service_name.is_empty() {
                m.insert("rootServiceName".into(), json!(t.summary.root_service_name));
            }
            if !t.summary.root_span_name.is_empty() {
                m.insert("rootTraceName".into(), json!(t.summary.root_span_name));
            }
            m.insert(
                "startTimeUnixNano".into(),
                json!(t.summary.start_unix_nano.to_string()),
            );
            let ms = t.summary.duration_nanos() / 1_000_000;
            if ms > 0 {
                m.insert("durationMs".into(), json!(ms.min(u64::from(u32::MAX))));
            }
            m.insert("spanSet".into(), spanset.clone());
            m.insert("spanSets".into(), json!([spanset]));
            m.insert("serviceStats".into(), Json::Object(stats));
            Json::Object(m)
        })
        .collect();
    json!({
        "traces": traces,
        "metrics": {
            "inspectedTraces": r.stats.inspected_traces,
            "inspectedBytes": r.stats.inspected_bytes.to_string(),
            "totalBlocks": r.stats.total_blocks,
            "completedJobs": 1,
            "totalJobs": 1,
        }
    })
}

/// Intrinsics listed by tags v2 (Tempo's list).
const INTRINSICS: &[&str] = &[
    "duration",
    "event:name",
    "kind",
    "name",
    "rootName",
    "rootServiceName",
    "span:duration",
    "span:kind",
    "span:name",
    "span:status",
    "span:statusMessage",
    "status",
    "statusMessage",
    "trace:duration",
    "trace:rootName",
    "trace:rootService",
    "traceDuration",
];

fn scope_name(s: AttrScope) -> &'static str {
    match s {
        AttrScope::Resource => "resource",
        AttrScope::Span => "span",
        AttrScope::Intrinsic => "intrinsic",
    }
}

/// Tag names in range, optionally only on spans matching the TraceQL filter `q` (a `q` that does
/// not parse falls back to all names, as Tempo does for a query still being typed).
async fn tag_names(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<BTreeMap<AttrScope, Vec<String>>, ApiError> {
    let (start, end) = time_range(pairs)?;
    let filter = param(pairs, "q").and_then(|q| traceql::parse(q).ok());
    let max = state.cfg.traces.max_search_inspected_traces;
    let Some(store) = store_for(state, headers)? else {
        return Ok(BTreeMap::new());
    };
    let names = blocking(move || {
        match filter {
            Some(f) => traceql::filtered_tag_names(store.as_ref(), &f, start, end, max),
            None => store.tag_names(start, end),
        }
        .map_err(internal)
    })
    .await?;
    let mut out: BTreeMap<AttrScope, Vec<String>> = BTreeMap::new();
    for (scope, name) in names {
        out.entry(scope).or_default().push(name);
    }
    Ok(out)
}

fn limit_param(pairs: &[(String, String)]) -> Result<usize, ApiError> {
    match param(pairs, "limit") {
        None => Ok(usize::MAX),
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| bad(format!("invalid limit {v:?}"))),
    }
}

async fn tags_v1(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let pairs = query_pairs(&raw);
    let scope = param(&pairs, "scope");
    let limit = limit_param(&pairs)?;
    let by_scope = tag_names(&state, &headers, &pairs).await?;
    let mut names: Vec<String> = by_scope
        .into_iter()
        .filter(|(s, _)| {
            *s != AttrScope::Intrinsic && scope.is_none_or(|want| want == scope_name(*s))
        })
        .flat_map(|(_, v)| v)
        .collect();
    names.sort();
    names.dedup();
    names.truncate(limit);
    Ok(
        axum::Json(json!({ "tagNames": names, "metrics": { "inspectedBytes": "0" } }))
            .into_response(),
    )
}

async fn tags_v2(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let pairs = query_pairs(&raw);
    let scope = param(&pairs, "scope");
    if let Some(s) = scope {
        if !matches!(
            s,
            "resource"
                | "span"
                | "intrinsic"
                | "event"
                | "link"
                | "instrumentation"
                | "none"
                | "all"
        ) {
            return Err(bad(format!("invalid scope {s:?}")));
        }
    }
    let limit = limit_param(&pairs)?;
    let by_scope = tag_names(&state, &headers, &pairs).await?;
    let wanted = |name: &str| scope.is_none_or(|s| s == name || s == "all" || s == "none");
    let mut scopes = Vec::new();
    for s in [AttrScope::Resource, AttrScope::Span] {
        if wanted(scope_name(s)) {
            let mut tags = by_scope.get(&s).cloned().unwrap_or_default();
            tags.truncate(limit);
            scopes.push(json!({ "name": scope_name(s), "tags": tags }));
        }
    }
    if wanted("intrinsic") {
        let mut tags: Vec<&str> = INTRINSICS.to_vec();
        tags.truncate(limit);
        scopes.push(json!({ "name": "intrinsic", "tags": tags }));
    }
    Ok(
        axum::Json(json!({ "scopes": scopes, "metrics": { "inspectedBytes": "0" } }))
            .into_response(),
    )
}

/// Parses a v2 tag path segment (`resource.service.name`, `.http.method`, `status`) into a field.
fn tag_field(tag: &str) -> Result<Field, ApiError> {
    let q = traceql::parse(&format!("{{ {tag} != nil }}"))
        .map_err(|e| bad(format!("invalid tag {tag:?}: {e}")))?;
    match q.spansets {
        traceql::SpansetExpr::Filter(Some(traceql::Expr::Cmp { field, .. })) => Ok(field),
        _ => Err(bad(format!("invalid tag {tag:?}"))),
    }
}

fn typed(v: &Value) -> Option<Json> {
    let (ty, value) = match v {
        Value::Str(s) => ("string", s.clone()),
        Value::Int(i) => ("int", i.to_string()),
        Value::Double(d) => ("float", d.to_string()),
        Value::Bool(b) => ("bool", b.to_string()),
        _ => return None,
    };
    Some(json!({ "type": ty, "value": value }))
}

async fn values_of(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    field: Field,
    pairs: &[(String, String)],
) -> Result<Vec<Value>, ApiError> {
    let (start, end) = time_range(pairs)?;
    let limit = limit_param(pairs)?.min(100_000);
    let filter = param(pairs, "q").and_then(|q| traceql::parse(q).ok());
    let max = state.cfg.traces.max_search_inspected_traces;
    let Some(store) = store_for(state, headers)? else {
        return Ok(Vec::new());
    };
    blocking(move || {
        let dict_scopes: Option<Vec<AttrScope>> = match &field {
            Field::Attr {
                scope: AttrSel::Resource,
                ..
            } => Some(vec![AttrScope::Resource]),
            Field::Attr {
                scope: AttrSel::Span,
                ..
            } => Some(vec![AttrScope::Span]),
            Field::Attr {
                scope: AttrSel::Any,
                ..
            } => Some(vec![AttrScope::Span, AttrScope::Resource]),
            _ => None,
        };
        match (filter, dict_scopes, &field) {
            (None, Some(scopes), Field::Attr { name, .. }) => {
                let mut all: std::collections::BTreeSet<DictValue> = Default::default();
                for s in scopes {
                    all.extend(
                        store
                            .tag_values(s, name, start, end, limit)
                            .map_err(internal)?,
                    );
                }
                Ok(all.iter().take(limit).map(DictValue::to_value).collect())
            }
            (filter, _, _) => {
                let filter = filter
                    .unwrap_or_else(|| traceql::parse("{}").expect("the empty filter parses"));
                traceql::filtered_values(store.as_ref(), &filter, &field, start, end, limit, max)
                    .map_err(internal)
            }
        }
    })
    .await
}

async fn tag_values_v1(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(tag): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let pairs = query_pairs(&raw);
    // v1 names are bare attribute names, looked up on spans and resources.
    let field = match Intrinsic::parse(&tag) {
        Some(i) => Field::Intrinsic(i),
        None => Field::Attr {
            scope: AttrSel::Any,
            name: tag.clone(),
        },
    };
    let values = values_of(&state, &headers, field, &pairs).await?;
    let mut strings: Vec<String> = values
        .iter()
        .filter_map(|v| typed(v).and_then(|j| j["value"].as_str().map(str::to_owned)))
        .collect();
    strings.sort();
    strings.dedup();
    Ok(
        axum::Json(json!({ "tagValues": strings, "metrics": { "inspectedBytes": "0" } }))
            .into_response(),
    )
}

async fn tag_values_v2(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(tag): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let pairs = query_pairs(&raw);
    let field = tag_field(&tag)?;
    let keyword = |vals: &[&str]| -> Vec<Json> {
        vals.iter()
            .map(|v| json!({ "type": "keyword", "value": v }))
            .collect()
    };
    let values: Vec<Json> = match &field {
        Field::Intrinsic(Intrinsic::Status) => keyword(&["error", "ok", "unset"]),
        Field::Intrinsic(Intrinsic::Kind) => keyword(&[
            "client",
            "consumer",
            "internal",
            "producer",
            "server",
            "unspecified",
        ]),
        Field::Intrinsic(Intrinsic::Duration | Intrinsic::TraceDuration) => Vec::new(),
        _ => {
            let mut seen = HashMap::new();
            values_of(&state, &headers, field, &pairs)
                .await?
                .iter()
                .filter_map(typed)
                .filter(|j| seen.insert(j.to_string(), ()).is_none())
                .collect()
        }
    };
    Ok(
        axum::Json(json!({ "tagValues": values, "metrics": { "inspectedBytes": "0" } }))
            .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_parse_like_tempo() {
        let mut want = [0u8; 16];
        want[15] = 0x0a;
        assert_eq!(parse_trace_id("a").unwrap(), want);
        assert_eq!(parse_trace_id("00a").unwrap(), want);
        assert_eq!(trace_id_hex(&want), "a");
        assert!(parse_trace_id("xyz").is_err());
        assert!(parse_trace_id(&"1".repeat(33)).is_err());
        assert!(parse_trace_id("").is_err());
    }

    #[test]
    fn durations_and_logfmt() {
        assert_eq!(parse_go_duration("100ms"), Some(100_000_000));
        assert_eq!(parse_go_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_go_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(
            parse_logfmt(r#"service.name=cart http.url="/a b""#).unwrap(),
            vec![
                ("service.name".into(), "cart".into()),
                ("http.url".into(), "/a b".into())
            ]
        );
        assert!(parse_logfmt("a=1 a=2").is_err());
    }
}
