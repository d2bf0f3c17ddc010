//! The REST flow API (`/api/v1/flows…`, documented in `api/openapi/flows.yaml`): search with the flow
//! filter language, group-by aggregations on fast columns, and the field list and field values for
//! autocomplete. Requests act for the tenant in `X-Scope-OrgID`. Searches and aggregations run on the
//! blocking pool; large answers stream as NDJSON when the client asks for `application/x-ndjson`.

pub mod json;
pub mod otlp;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use strata_query::flowql::{self, Filter, FilterError};
use strata_store::flows::aggregate::{AggFn, AggregateRequest};
use strata_store::flows::search::{SearchRequest, SortOrder};
use strata_store::flows::{now_ns, FieldKind, FlowStore, FIELDS};

use crate::prometheus::parse_time;
use crate::server::{tenant, AppState};

/// The window searched when `start` is not given: one hour before `end`.
const DEFAULT_WINDOW_NS: i64 = 3600 * 1_000_000_000;
const DEFAULT_LIMIT: usize = 100;
const DEFAULT_TOP: usize = 20;
const DEFAULT_VALUES_LIMIT: usize = 100;
/// Records per NDJSON chunk, and chunks buffered ahead of a slow client (then the search waits).
const NDJSON_CHUNK_RECORDS: usize = 256;
const NDJSON_CHUNKS_BUFFERED: usize = 8;

/// Every route of the flow API (all `GET`); `api/openapi/flows.yaml` documents exactly these.
pub const ROUTES: [&str; 4] = [
    "/api/v1/flows",
    "/api/v1/flows/aggregate",
    "/api/v1/flows/fields",
    "/api/v1/flows/values",
];

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(ROUTES[0], get(search))
        .route(ROUTES[1], get(aggregate))
        .route(ROUTES[2], get(fields))
        .route(ROUTES[3], get(values))
}

/// An error answer: `{"error": …}`, with the position details of a filter error.
#[derive(Debug)]
pub struct FlowApiError {
    status: StatusCode,
    body: Value,
}

impl FlowApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        FlowApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({ "error": message.into() }),
        }
    }

    fn timeout(limit: Duration) -> Self {
        FlowApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: json!({
                "error": format!(
                    "flow query timed out: it took longer than flows.query_timeout ({limit:?})"
                ),
            }),
        }
    }

    fn internal(message: impl Into<String>) -> Self {
        FlowApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            body: json!({ "error": message.into() }),
        }
    }

    fn filter(e: FilterError) -> Self {
        FlowApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({
                "error": format!("invalid filter: {e}"),
                "position": e.position,
                "expected": e.expected,
                "found": e.found,
            }),
        }
    }
}

impl From<strata_store::Error> for FlowApiError {
    fn from(e: strata_store::Error) -> Self {
        match e {
            strata_store::Error::InvalidTenant(_) | strata_store::Error::InvalidMatcher(_) => {
                FlowApiError::bad_request(e.to_string())
            }
            strata_store::Error::ShuttingDown => FlowApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                body: json!({ "error": e.to_string() }),
            },
            _ => FlowApiError::internal(e.to_string()),
        }
    }
}

impl IntoResponse for FlowApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

type Params = crate::prometheus::Params;

fn params(query: Option<String>) -> Result<Params, FlowApiError> {
    Params::parse(
        query.as_deref(),
        &axum::http::Method::GET,
        &HeaderMap::new(),
        &[],
    )
    .map_err(|e| FlowApiError::bad_request(format!("{e:?}")))
}

/// Unix seconds (fractions allowed) or RFC 3339, as nanoseconds.
fn time_param(p: &Params, name: &str) -> Result<Option<i64>, FlowApiError> {
    p.get(name)
        .map(|s| {
            parse_time(s)
                .map(|ms| ms.saturating_mul(1_000_000))
                .map_err(|e| FlowApiError::bad_request(format!("invalid parameter {name:?}: {e}")))
        })
        .transpose()
}

/// `[start, end]` in nanoseconds: `end` defaults to now, `start` to an hour before `end`.
fn time_range(p: &Params) -> Result<(i64, i64), FlowApiError> {
    let end = time_param(p, "end")?.unwrap_or_else(now_ns);
    let start = time_param(p, "start")?.unwrap_or(end.saturating_sub(DEFAULT_WINDOW_NS));
    if end < start {
        return Err(FlowApiError::bad_request(
            "invalid parameter \"end\": before \"start\"",
        ));
    }
    Ok((start, end))
}

fn count_param(p: &Params, name: &str, default: usize, max: usize) -> Result<usize, FlowApiError> {
    let Some(s) = p.get(name) else {
        return Ok(default);
    };
    let n: usize = s.parse().map_err(|_| {
        FlowApiError::bad_request(format!(
            "invalid parameter {name:?}: {s:?} is not a positive integer"
        ))
    })?;
    if n == 0 || n > max {
        return Err(FlowApiError::bad_request(format!(
            "invalid parameter {name:?}: must be between 1 and {max}"
        )));
    }
    Ok(n)
}

fn filter(p: &Params) -> Result<Filter, FlowApiError> {
    flowql::filter(p.get("query").unwrap_or("")).map_err(FlowApiError::filter)
}

/// What the search and the aggregation both take: the parameters, the compiled filter, the window.
struct Filtered {
    p: Params,
    filter: Filter,
    start_ns: i64,
    end_ns: i64,
}

fn filtered(query: Option<String>) -> Result<Filtered, FlowApiError> {
    let p = params(query)?;
    let filter = filter(&p)?;
    let (start_ns, end_ns) = time_range(&p)?;
    Ok(Filtered {
        p,
        filter,
        start_ns,
        end_ns,
    })
}

/// The non-empty items of list parameters `name`, repeated or separated by any of `seps`.
fn list_param<'a>(p: &'a Params, name: &str, seps: &[char]) -> Vec<&'a str> {
    p.all(name)
        .into_iter()
        .flat_map(|a| a.split(seps))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

fn store_for_read(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Arc<FlowStore>>, FlowApiError> {
    let t = tenant(headers).map_err(FlowApiError::bad_request)?;
    Ok(state.flows.for_read(&t)?)
}

/// A slot among `flows.max_concurrent_queries`, waited for until `deadline`.
async fn query_slot(
    state: &AppState,
    deadline: Instant,
) -> Result<tokio::sync::OwnedSemaphorePermit, FlowApiError> {
    tokio::time::timeout_at(deadline.into(), state.flow_queries.clone().acquire_owned())
        .await
        .map_err(|_| FlowApiError::timeout(state.cfg.flows.query_timeout()))?
        .map_err(|_| FlowApiError::internal("flow query slots closed"))
}

/// Runs a flow query on the blocking pool within the limits: it waits for a query slot and
/// answers 503 past `flows.query_timeout`; `f` gets the deadline, to stop at when it can. A query
/// keeps its slot until it returns, so one that overran still counts against the limit.
async fn limited<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(Instant) -> Result<T, FlowApiError> + Send + 'static,
) -> Result<T, FlowApiError> {
    let timeout = state.cfg.flows.query_timeout();
    let deadline = Instant::now() + timeout;
    let slot = query_slot(state, deadline).await?;
    let task = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        f(deadline)
    });
    match tokio::time::timeout_at(deadline.into(), task).await {
        Ok(joined) => joined
            .unwrap_or_else(|e| Err(FlowApiError::internal(format!("query task failed: {e}")))),
        Err(_) => Err(FlowApiError::timeout(timeout)),
    }
}

fn wants_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/x-ndjson"))
}

/// `GET /api/v1/flows`: matching records, newest first unless `order=asc`.
async fn search(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, FlowApiError> {
    let Filtered {
        p,
        filter,
        start_ns,
        end_ns,
    } = filtered(query)?;
    let limit = count_param(&p, "limit", DEFAULT_LIMIT, state.cfg.flows.max_search_limit)?;
    let order = match p.get("order") {
        None | Some("desc") => SortOrder::Desc,
        Some("asc") => SortOrder::Asc,
        Some(o) => {
            return Err(FlowApiError::bad_request(format!(
                "invalid parameter \"order\": {o:?}; use asc or desc"
            )))
        }
    };
    let store = store_for_read(&state, &headers)?;
    if wants_ndjson(&headers) {
        let timeout = state.cfg.flows.query_timeout();
        let deadline = Instant::now() + timeout;
        let slot = query_slot(&state, deadline).await?;
        let req = (filter, start_ns, end_ns, limit, order);
        return Ok(ndjson(store, req, slot, deadline, timeout));
    }
    let timeout = state.cfg.flows.query_timeout();
    let flows = limited(&state, move |deadline| {
        let mut flows = Vec::new();
        let mut late = false;
        if let Some(store) = store {
            let req = SearchRequest {
                filter: &filter,
                start_ns,
                end_ns,
                limit,
                order,
            };
            store.search(&req, &mut |r| {
                flows.push(json::record_json(&r));
                late = Instant::now() >= deadline;
                !late
            })?;
        }
        if late {
            return Err(FlowApiError::timeout(timeout));
        }
        Ok(flows)
    })
    .await?;
    Ok(axum::Json(json!({ "flows": flows, "limit": limit })).into_response())
}

/// Streams matching records as NDJSON while the search runs; a client that goes away stops it.
/// Past `deadline` the stream ends with an error, which aborts the response.
fn ndjson(
    store: Option<Arc<FlowStore>>,
    (filter, start_ns, end_ns, limit, order): (Filter, i64, i64, usize, SortOrder),
    slot: tokio::sync::OwnedSemaphorePermit,
    deadline: Instant,
    timeout: Duration,
) -> Response {
    let (tx, rx) =
        tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(NDJSON_CHUNKS_BUFFERED);
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let Some(store) = store else { return };
        let mut late = false;
        let mut chunk = Vec::with_capacity(64 << 10);
        let mut in_chunk = 0;
        let send = |chunk: &mut Vec<u8>| {
            tx.blocking_send(Ok(bytes::Bytes::from(std::mem::take(chunk))))
                .is_ok()
        };
        let req = SearchRequest {
            filter: &filter,
            start_ns,
            end_ns,
            limit,
            order,
        };
        let result = store.search(&req, &mut |r| {
            // Serialising a `Value` into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut chunk, &json::record_json(&r));
            chunk.push(b'\n');
            in_chunk += 1;
            if Instant::now() >= deadline {
                late = true;
                return false;
            }
            if in_chunk >= NDJSON_CHUNK_RECORDS {
                in_chunk = 0;
                return send(&mut chunk);
            }
            true
        });
        match result {
            Ok(_) if late => {
                let message = format!("flow query timed out after {timeout:?}");
                let _ = tx.blocking_send(Err(std::io::Error::other(message)));
            }
            Ok(_) => {
                if !chunk.is_empty() {
                    send(&mut chunk);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "flow search failed while streaming");
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

/// Parses `agg` parameters: repeated, or comma- or `|`-separated in one.
fn aggs_param(p: &Params) -> Result<Vec<AggFn>, FlowApiError> {
    let specs = list_param(p, "agg", &[',', '|']);
    if specs.is_empty() {
        return Ok(vec![AggFn::Count]);
    }
    specs
        .into_iter()
        .map(|s| {
            AggFn::parse(s)
                .map_err(|e| FlowApiError::bad_request(format!("invalid parameter \"agg\": {e}")))
        })
        .collect()
}

/// `GET /api/v1/flows/aggregate`: groups ranked by the first aggregate.
async fn aggregate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, FlowApiError> {
    let Filtered {
        p,
        filter,
        start_ns,
        end_ns,
    } = filtered(query)?;
    let top = count_param(&p, "top", DEFAULT_TOP, state.cfg.flows.max_aggregate_top)?;
    let by: Vec<String> = list_param(&p, "by", &[','])
        .into_iter()
        .map(str::to_owned)
        .collect();
    let aggs = aggs_param(&p)?;
    let by_refs: Vec<&str> = by.iter().map(String::as_str).collect();
    let mut req = AggregateRequest::new(&by_refs, aggs.clone(), top).map_err(|e| {
        FlowApiError::bad_request(format!("invalid parameter \"by\" or \"agg\": {e}"))
    })?;
    let store = store_for_read(&state, &headers)?;
    let timeout = state.cfg.flows.query_timeout();
    let rows = limited(&state, move |deadline| {
        req.deadline = Some(deadline);
        match store {
            Some(s) => s
                .aggregate(&filter, start_ns, end_ns, &req)
                .map_err(|e| match e {
                    strata_store::Error::DeadlineExceeded => FlowApiError::timeout(timeout),
                    e => e.into(),
                }),
            None => Ok(Vec::new()),
        }
    })
    .await?;
    let agg_names: Vec<String> = aggs.iter().map(|a| a.name()).collect();
    let groups: Vec<Value> = rows
        .into_iter()
        .map(|row| {
            let key: serde_json::Map<String, Value> = by
                .iter()
                .cloned()
                .zip(row.key.into_iter().map(Value::String))
                .collect();
            let values: serde_json::Map<String, Value> = agg_names
                .iter()
                .cloned()
                .zip(row.values.into_iter().map(number))
                .collect();
            json!({ "key": key, "values": values })
        })
        .collect();
    Ok(axum::Json(json!({ "by": by, "aggs": agg_names, "groups": groups })).into_response())
}

/// Whole numbers as JSON integers, others as floats.
fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        Value::from(v as i64)
    } else {
        Value::from(v)
    }
}

fn kind_name(k: FieldKind) -> &'static str {
    match k {
        FieldKind::Str => "string",
        FieldKind::U64 => "uint",
        FieldKind::Time => "time",
        FieldKind::Ip => "ip",
        FieldKind::StrList => "string_list",
        FieldKind::StoredList => "stored_list",
        FieldKind::Counts => "counts",
    }
}

fn operators(k: FieldKind) -> &'static [&'static str] {
    match k {
        FieldKind::Str | FieldKind::StrList => &["=", "!=", "=~", "!~"],
        FieldKind::Ip => &["=", "!="],
        FieldKind::StoredList => &[],
        FieldKind::U64 | FieldKind::Time | FieldKind::Counts => &["=", "!=", ">", ">=", "<", "<="],
    }
}

/// `GET /api/v1/flows/fields`: the schema.
async fn fields() -> Response {
    let fields: Vec<Value> = FIELDS
        .iter()
        .map(|f| {
            json!({
                "name": f.name,
                "type": kind_name(f.kind),
                "unit": f.unit,
                "description": f.doc,
                "operators": operators(f.kind),
                "groupable": matches!(f.kind, FieldKind::Str | FieldKind::StrList | FieldKind::U64),
                "aggregatable": matches!(f.kind, FieldKind::U64 | FieldKind::Time),
            })
        })
        .collect();
    axum::Json(json!({ "fields": fields })).into_response()
}

/// `GET /api/v1/flows/values`: values of a text field starting with `prefix`.
async fn values(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, FlowApiError> {
    let p = params(query)?;
    let field = p
        .get("field")
        .ok_or_else(|| FlowApiError::bad_request("missing parameter \"field\""))?
        .to_owned();
    let known = FIELDS
        .iter()
        .any(|f| f.name == field && matches!(f.kind, FieldKind::Str | FieldKind::StrList));
    if !known {
        return Err(FlowApiError::bad_request(format!(
            "invalid parameter \"field\": {field:?} is not a text field (see /api/v1/flows/fields)"
        )));
    }
    let prefix = p.get("prefix").unwrap_or("").to_owned();
    let (start_ns, end_ns) = time_range(&p)?;
    let limit = count_param(
        &p,
        "limit",
        DEFAULT_VALUES_LIMIT,
        state.cfg.flows.max_search_limit,
    )?;
    let store = store_for_read(&state, &headers)?;
    let f = field.clone();
    let values = limited(&state, move |_| match store {
        Some(s) => Ok(s.field_values(&f, &prefix, start_ns, end_ns, limit)?),
        None => Ok(Vec::new()),
    })
    .await?;
    Ok(axum::Json(json!({ "field": field, "values": values })).into_response())
}
