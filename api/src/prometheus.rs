//! The Prometheus HTTP API under `/prometheus`: remote write and read, series/labels/label values,
//! metadata, exemplars, build info, and the admin endpoints that cut and compact now. Envelope, time
//! formats and error types as in Prometheus (`reference/prometheus-api.md` §1–2).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use strata_store::{Labels, Matcher, MetricsReader, MetricsStore};

use crate::remote::{self, ResponseType, WriteVersion};
use crate::server::{tenant, AppState};
use strata_query::{
    Engine, ErrorKind, QueryControls, QueryError, QueryOutput, Value as QueryValue,
};

/// Prometheus's `errorType` vocabulary, with the HTTP status each maps to. The one place that maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    BadData,
    Execution,
    Timeout,
    Canceled,
    Internal,
    Unavailable,
    NotFound,
}

impl ErrorType {
    fn as_str(self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Timeout => "timeout",
            ErrorType::Canceled => "canceled",
            ErrorType::Internal => "internal",
            ErrorType::Unavailable => "unavailable",
            ErrorType::NotFound => "not_found",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            ErrorType::BadData => StatusCode::BAD_REQUEST,
            ErrorType::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Timeout | ErrorType::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            // Prometheus ≥ 2.43 answers a canceled query with 499 (client closed request).
            ErrorType::Canceled => {
                StatusCode::from_u16(499).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
            }
            ErrorType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::NotFound => StatusCode::NOT_FOUND,
        }
    }
}

/// An API error answered in Prometheus's JSON envelope.
#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorType,
    pub message: String,
}

impl ApiError {
    pub fn bad_data(message: impl Into<String>) -> Self {
        ApiError {
            kind: ErrorType::BadData,
            message: message.into(),
        }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            kind: ErrorType::Internal,
            message: message.into(),
        }
    }
}

impl From<strata_store::Error> for ApiError {
    fn from(e: strata_store::Error) -> Self {
        match e {
            strata_store::Error::InvalidMatcher(_) | strata_store::Error::InvalidTenant(_) => {
                ApiError::bad_data(e.to_string())
            }
            strata_store::Error::LimitExceeded(_) => ApiError {
                kind: ErrorType::Execution,
                message: e.to_string(),
            },
            strata_store::Error::ShuttingDown => ApiError {
                kind: ErrorType::Unavailable,
                message: e.to_string(),
            },
            _ => ApiError::internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({"status": "error", "errorType": self.kind.as_str(), "error": self.message});
        (self.kind.status(), axum::Json(body)).into_response()
    }
}

pub type ApiResult = Result<Response, ApiError>;

/// A success envelope, with `warnings` when there are any.
pub fn success(data: Value, warnings: Vec<String>) -> Response {
    success_with(data, warnings, Vec::new())
}

/// A success envelope with Prometheus's `warnings` and `infos` annotations, each only when non-empty.
pub fn success_with(data: Value, warnings: Vec<String>, infos: Vec<String>) -> Response {
    let mut body = Map::new();
    body.insert("status".into(), json!("success"));
    body.insert("data".into(), data);
    if !warnings.is_empty() {
        body.insert("warnings".into(), json!(warnings));
    }
    if !infos.is_empty() {
        body.insert("infos".into(), json!(infos));
    }
    axum::Json(Value::Object(body)).into_response()
}

/// Request parameters: the URL query merged with a form-encoded body, like Go's `r.Form`.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(
        query: Option<&str>,
        method: &Method,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Params, ApiError> {
        let mut v: Vec<(String, String)> = Vec::new();
        if let Some(q) = query {
            v.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        if method == Method::POST && !body.is_empty() {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            if !ct.starts_with("application/x-www-form-urlencoded") {
                return Err(ApiError::bad_data(format!(
                    "unsupported Content-Type {ct:?}: use application/x-www-form-urlencoded"
                )));
            }
            v.extend(form_urlencoded::parse(body).into_owned());
        }
        Ok(Params(v))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Prometheus's `MinTime`/`MaxTime` as milliseconds (what `/series` etc. default to).
pub const MIN_TIME_MS: i64 = i64::MIN / 2;
pub const MAX_TIME_MS: i64 = i64::MAX / 2;

/// Parses a timestamp parameter: float Unix seconds (ms precision kept) or RFC 3339.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        if f.is_finite() {
            let ms = (f * 1000.0).round();
            if ms.abs() < 9.2e18 {
                return Ok(ms as i64);
            }
        }
    }
    match s {
        "-292273086-05-16T16:47:06Z" => return Ok(MIN_TIME_MS),
        "292277025-08-18T07:12:54.999999999Z" => return Ok(MAX_TIME_MS),
        _ => {}
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp_millis())
        .map_err(|_| format!("cannot parse {s:?} to a valid timestamp"))
}

fn time_param(p: &Params, name: &str, default: i64) -> Result<i64, ApiError> {
    match p.get(name) {
        None => Ok(default),
        Some(s) => parse_time(s)
            .map_err(|e| ApiError::bad_data(format!("invalid parameter \"{name}\": {e}"))),
    }
}

fn range_params(p: &Params) -> Result<(i64, i64), ApiError> {
    let start = time_param(p, "start", MIN_TIME_MS)?;
    let end = time_param(p, "end", MAX_TIME_MS)?;
    if end < start {
        return Err(ApiError::bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    Ok((start, end))
}

fn limit_param(p: &Params) -> Result<usize, ApiError> {
    match p.get("limit") {
        None => Ok(0),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|&n| n >= 0)
            .map(|n| n as usize)
            .ok_or_else(|| {
                ApiError::bad_data(format!(
                    "invalid parameter \"limit\": cannot parse {s:?} to a non-negative integer"
                ))
            }),
    }
}

/// Parses one `match[]` selector into its matcher sets (more than one with `or`). Like Prometheus, each
/// set needs a matcher that rejects the empty string, so a selector cannot silently match every series.
fn parse_match(s: &str) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let sets = strata_query::parse_metric_selector(s)
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"match[]\": {e}")))?;
    if sets.iter().any(|set| set.iter().all(|m| m.matches_empty())) {
        return Err(ApiError::bad_data(
            "match[] must contain at least one non-empty matcher",
        ));
    }
    Ok(sets)
}

fn selectors(p: &Params) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let mut out = Vec::new();
    for s in p.all("match[]") {
        out.extend(parse_match(s)?);
    }
    Ok(out)
}

fn labels_json(l: &Labels) -> Value {
    Value::Object(
        l.iter()
            .map(|x| (x.name.clone(), Value::String(x.value.clone())))
            .collect(),
    )
}

fn store_for_read(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Arc<MetricsStore>>, ApiError> {
    let t = tenant(headers).map_err(ApiError::bad_data)?;
    Ok(state.storage.metrics_for_read(&t)?)
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("task failed: {e}")))?
}

fn truncate<T>(mut v: Vec<T>, limit: usize, warnings: &mut Vec<String>) -> Vec<T> {
    if limit > 0 && v.len() > limit {
        v.truncate(limit);
        warnings.push("results truncated due to limit".into());
    }
    v
}

/// A `/series`, `/labels` or `/label/<name>/values` request: its selectors, range and limit, answered by
/// `lookup` on the tenant's store off the async threads, truncated to the limit with Prometheus's warning.
async fn metadata_lookup<T: Send + 'static>(
    state: &AppState,
    p: &Params,
    headers: &HeaderMap,
    require_match: bool,
    lookup: impl FnOnce(&MetricsStore, &[Vec<Matcher>], i64, i64) -> strata_store::Result<Vec<T>>
        + Send
        + 'static,
) -> Result<(Vec<T>, Vec<String>), ApiError> {
    state
        .counters
        .metadata_queries
        .fetch_add(1, Ordering::Relaxed);
    let sels = selectors(p)?;
    if require_match && sels.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let (start, end) = range_params(p)?;
    let limit = limit_param(p)?;
    let Some(store) = store_for_read(state, headers)? else {
        return Ok((Vec::new(), Vec::new()));
    };
    let found = blocking(move || Ok(lookup(&store, &sels, start, end)?)).await?;
    let mut warnings = Vec::new();
    let found = truncate(found, limit, &mut warnings);
    Ok((found, warnings))
}

pub async fn series(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    let p = Params::parse(q.as_deref(), &method, &headers, &body)?;
    let max = state.cfg.limits.max_series_per_query;
    let (series, warnings) = metadata_lookup(
        &state,
        &p,
        &headers,
        true,
        move |store, sels, start, end| {
            let series = store.series(sels, start, end)?;
            if max > 0 && series.len() > max {
                return Err(strata_store::Error::LimitExceeded(format!(
                "query matched {} series, over the limit of {max} (limits.max_series_per_query)",
                series.len()
            )));
            }
            Ok(series)
        },
    )
    .await?;
    Ok(success(
        Value::Array(series.iter().map(labels_json).collect()),
        warnings,
    ))
}

pub async fn labels(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    let p = Params::parse(q.as_deref(), &method, &headers, &body)?;
    let (names, warnings) =
        metadata_lookup(&state, &p, &headers, false, |store, sels, start, end| {
            store.label_names(sels, start, end)
        })
        .await?;
    Ok(success(json!(names), warnings))
}

/// Decodes Prometheus's `U__` label-name escaping (`U__http_2e_status` → `http.status`).
fn unescape_label_name(name: &str) -> String {
    let Some(rest) = name.strip_prefix("U__") else {
        return name.to_owned();
    };
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '_' {
            if chars.peek() == Some(&'_') {
                chars.next();
                out.push('_');
                continue;
            }
            let hex: String = chars.by_ref().take_while(|&h| h != '_').collect();
            match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                Some(ch) => out.push(ch),
                None => return name.to_owned(),
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub async fn label_values(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = Params::parse(q.as_deref(), &Method::GET, &headers, &[])?;
    let name = unescape_label_name(&name);
    if name.is_empty() {
        return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
    }
    let (values, warnings) = metadata_lookup(
        &state,
        &p,
        &headers,
        false,
        move |store, sels, start, end| store.label_values(&name, sels, start, end),
    )
    .await?;
    Ok(success(json!(values), warnings))
}

pub async fn metadata(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = Params::parse(q.as_deref(), &Method::GET, &headers, &[])?;
    let limit = limit_param(&p)?;
    let per_metric = match p.get("limit_per_metric") {
        None => 0,
        Some(s) => s.parse::<usize>().map_err(|_| {
            ApiError::bad_data(format!("invalid parameter \"limit_per_metric\": {s:?}"))
        })?,
    };
    let metric = p.get("metric").map(str::to_owned);
    let Some(store) = store_for_read(&state, &headers)? else {
        return Ok(success(json!({}), vec![]));
    };
    let md = blocking(move || Ok(store.metadata(metric.as_deref())?)).await?;
    let mut out = Map::new();
    for (family, m) in md {
        if limit > 0 && out.len() >= limit {
            break;
        }
        let entry = json!([{"type": m.metric_type.as_str(), "help": m.help, "unit": m.unit}]);
        let entry = if per_metric == 0 {
            entry
        } else {
            Value::Array(
                entry
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .take(per_metric)
                    .collect(),
            )
        };
        out.insert(family, entry);
    }
    Ok(success(Value::Object(out), vec![]))
}

pub async fn query_exemplars(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    let p = Params::parse(q.as_deref(), &method, &headers, &body)?;
    let query = p
        .get("query")
        .ok_or_else(|| ApiError::bad_data("invalid parameter \"query\": missing"))?;
    let (start, end) = range_params(&p)?;
    let sels = exemplar_selectors(query)
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"query\": {e}")))?;
    let Some(store) = store_for_read(&state, &headers)? else {
        return Ok(success(json!([]), vec![]));
    };
    let found = blocking(move || Ok(store.exemplars(&sels, start, end)?)).await?;
    let data: Vec<Value> = found
        .iter()
        .map(|se| {
            json!({
                "seriesLabels": labels_json(&se.labels),
                "exemplars": se.exemplars.iter().map(|e| json!({
                    "labels": labels_json(&e.labels),
                    "value": format_value(e.value),
                    "timestamp": format_timestamp(e.t),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(success(Value::Array(data), vec![]))
}

/// Every vector selector inside a PromQL expression, as Prometheus's exemplar API collects them.
pub(crate) fn exemplar_selectors(query: &str) -> Result<Vec<Vec<Matcher>>, String> {
    let expr = promql_parser::parser::parse(query)?;
    let mut out = Vec::new();
    collect_selectors(&expr, &mut out)?;
    Ok(out)
}

fn collect_selectors(
    expr: &promql_parser::parser::Expr,
    out: &mut Vec<Vec<Matcher>>,
) -> Result<(), String> {
    use promql_parser::parser::Expr;
    match expr {
        // A selector that matches only the empty string is still a valid query; it has no exemplars.
        Expr::VectorSelector(vs) => out.extend(parse_match(&vs.to_string()).unwrap_or_default()),
        Expr::MatrixSelector(ms) => out.extend(parse_match(&ms.vs.to_string()).unwrap_or_default()),
        Expr::Aggregate(a) => collect_selectors(&a.expr, out)?,
        Expr::Unary(u) => collect_selectors(&u.expr, out)?,
        Expr::Binary(b) => {
            collect_selectors(&b.lhs, out)?;
            collect_selectors(&b.rhs, out)?;
        }
        Expr::Paren(p) => collect_selectors(&p.expr, out)?,
        Expr::Subquery(s) => collect_selectors(&s.expr, out)?,
        Expr::Call(c) => {
            for a in &c.args.args {
                collect_selectors(a, out)?;
            }
        }
        _ => {}
    }
    out.retain(|m| !m.is_empty());
    Ok(())
}

/// Go's `strconv.FormatFloat(v, 'f'|'e', -1, 64)` as Prometheus prints sample values.
pub fn format_value(v: f64) -> String {
    let mut b = Vec::with_capacity(24);
    write_value(&mut b, v);
    // Only ASCII is written.
    String::from_utf8(b).unwrap_or_default()
}

/// [`format_value`] appended to `b`: the shortest digits that read back as `v`, in plain
/// notation for magnitudes in [1e-6, 1e21) and otherwise with an exponent of at least two
/// digits (`1e-07`, `2.5e+21`), as Go prints them.
pub fn write_value(b: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        b.extend_from_slice(b"NaN");
        return;
    }
    if v.is_infinite() {
        b.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
        return;
    }
    if v == v.trunc() && v.abs() < 1e15 {
        // Integers, the common case of counters and gauges, exactly as i64.
        if v == 0.0 && v.is_sign_negative() {
            b.extend_from_slice(b"-0");
        } else {
            b.extend_from_slice(itoa::Buffer::new().format(v as i64).as_bytes());
        }
        return;
    }
    // ryu gives the shortest round-trip digits; lay them out as Go does.
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(v);
    if !text.as_bytes().contains(&b'e') {
        // ryu writes plain notation for magnitudes in [1e-5, 1e16), inside Go's plain range, and
        // marks integral values with ".0", which Go leaves out.
        let plain = text.strip_suffix(".0").unwrap_or(text);
        b.extend_from_slice(plain.as_bytes());
        return;
    }
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match text.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // value = 0.d1d2… × 10^point
    let mut digits = [0u8; 32];
    let mut len = 0;
    let mut point = int_part.len() as i32 + exponent;
    for &d in int_part.as_bytes().iter().chain(frac_part.as_bytes()) {
        if len == 0 && d == b'0' {
            point -= 1;
            continue;
        }
        if len < digits.len() {
            digits[len] = d;
            len += 1;
        }
    }
    while len > 1 && digits[len - 1] == b'0' {
        len -= 1;
    }
    let digits = &digits[..len];
    if negative {
        b.push(b'-');
    }
    if (1e-6..1e21).contains(&v.abs()) {
        if point <= 0 {
            b.extend_from_slice(b"0.");
            b.extend(std::iter::repeat_n(b'0', point.unsigned_abs() as usize));
            b.extend_from_slice(digits);
        } else if point as usize >= digits.len() {
            b.extend_from_slice(digits);
            b.extend(std::iter::repeat_n(b'0', point as usize - digits.len()));
        } else {
            b.extend_from_slice(&digits[..point as usize]);
            b.push(b'.');
            b.extend_from_slice(&digits[point as usize..]);
        }
    } else {
        b.push(digits[0]);
        if digits.len() > 1 {
            b.push(b'.');
            b.extend_from_slice(&digits[1..]);
        }
        let e = point - 1;
        b.push(b'e');
        b.push(if e < 0 { b'-' } else { b'+' });
        if e.unsigned_abs() < 10 {
            b.push(b'0');
        }
        b.extend_from_slice(itoa::Buffer::new().format(e.unsigned_abs()).as_bytes());
    }
}

/// Unix seconds with up to 3 decimals, as a JSON number.
pub fn format_timestamp(ms: i64) -> Value {
    if ms % 1000 == 0 {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

pub async fn buildinfo() -> Response {
    success(
        json!({
            "version": crate::PROMETHEUS_COMPAT_VERSION,
            "revision": env!("CARGO_PKG_VERSION"),
            "branch": "strata",
            "buildUser": "strata",
            "buildDate": "",
            "goVersion": "n/a",
        }),
        vec![],
    )
}

pub async fn status_config() -> Response {
    success(json!({"yaml": ""}), vec![])
}

pub async fn rules() -> Response {
    success(json!({"groups": []}), vec![])
}

/// Remote write: decode and validate, append (durable before we answer), 204. Refused samples answer
/// 400 after the valid ones are stored, as Prometheus does, so the sender does not retry them.
pub async fn remote_write(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state
        .counters
        .remote_write_requests
        .fetch_add(1, Ordering::Relaxed);
    let response = remote_write_inner(&state, &headers, body).await;
    if !response.status().is_success() {
        state
            .counters
            .remote_write_errors
            .fetch_add(1, Ordering::Relaxed);
    }
    response
}

fn plain(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut msg = msg.into();
    msg.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg,
    )
        .into_response()
}

async fn remote_write_inner(state: &Arc<AppState>, headers: &HeaderMap, body: Bytes) -> Response {
    let tenant = match tenant(headers) {
        Ok(t) => t,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let limits = state.limits.clone();
    let storage = state.storage.clone();
    let work = tokio::task::spawn_blocking(move || {
        ingest(
            &storage,
            &tenant,
            &body,
            content_type.as_deref(),
            encoding.as_deref(),
            &limits,
        )
    })
    .await;
    let written = match work {
        Ok(Ok(x)) => x,
        Ok(Err((status, msg))) => return plain(status, msg),
        Err(e) => {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("write failed: {e}"),
            )
        }
    };
    let outcome = &written.outcome;
    if let Some((labels, sample, reject)) = &outcome.first_rejection {
        return plain(
            StatusCode::BAD_REQUEST,
            format!(
                "{}: {} of {} samples refused (first: series {labels} timestamp {}); the others were stored",
                reject.message(),
                outcome.rejected_total(),
                written.samples,
                sample.t
            ),
        );
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if written.version == WriteVersion::V2 {
        let h = resp.headers_mut();
        // Native histograms are refused whole, so none is ever written.
        for (name, n) in [
            ("x-prometheus-remote-write-samples-written", written.samples),
            ("x-prometheus-remote-write-histograms-written", 0),
            (
                "x-prometheus-remote-write-exemplars-written",
                written.exemplars,
            ),
        ] {
            h.insert(name, HeaderValue::from(n as u64));
        }
    }
    resp
}

/// What one remote write stored.
struct Written {
    version: WriteVersion,
    samples: usize,
    exemplars: usize,
    outcome: strata_store::AppendOutcome,
}

/// Decode → validate → append → durable. Version 1 bodies take the borrowing decoder, so samples of
/// known series cost no allocation; version 2 (symbol tables) goes through the owned decoder.
fn ingest(
    storage: &strata_store::Storage,
    tenant: &str,
    body: &[u8],
    content_type: Option<&str>,
    encoding: Option<&str>,
    limits: &remote::DecodeLimits,
) -> Result<Written, (StatusCode, String)> {
    let refused = |e: remote::RemoteError| {
        (
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            e.to_string(),
        )
    };
    let failed = |e: strata_store::Error| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let version = remote::write_version(content_type, encoding).map_err(refused)?;
    match version {
        WriteVersion::V1 => {
            let raw = remote::decompress(body, limits).map_err(refused)?;
            let w = remote::decode_write_v1_borrowed(&raw, limits).map_err(refused)?;
            let store = storage.metrics_for_write(tenant).map_err(failed)?;
            let pairs: Vec<strata_store::LabelPairs<'_>> =
                w.series.iter().map(|s| w.labels_of(s)).collect();
            let inputs: Vec<strata_store::SeriesInput<'_>> = w
                .series
                .iter()
                .zip(&pairs)
                .map(|(s, labels)| strata_store::SeriesInput {
                    labels,
                    samples: &s.samples,
                    exemplars: &s.exemplars,
                })
                .collect();
            let outcome = store.append_series(&inputs, &w.metadata).map_err(failed)?;
            Ok(Written {
                version,
                samples: w.samples,
                exemplars: w.exemplars,
                outcome,
            })
        }
        WriteVersion::V2 => {
            let decoded =
                remote::decode_write(body, content_type, encoding, limits).map_err(refused)?;
            let store = storage.metrics_for_write(tenant).map_err(failed)?;
            let outcome = store.append(&decoded.batch).map_err(failed)?;
            Ok(Written {
                version,
                samples: decoded.samples,
                exemplars: decoded.exemplars,
                outcome,
            })
        }
    }
}

/// Remote read: SAMPLES or STREAMED_XOR_CHUNKS, whichever the client prefers.
pub async fn remote_read(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state
        .counters
        .remote_read_requests
        .fetch_add(1, Ordering::Relaxed);
    let store = match store_for_read(&state, &headers) {
        Ok(s) => s,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e.message),
    };
    let limits = state.limits.clone();
    let max_series = state.cfg.limits.max_series_per_query;
    let work = tokio::task::spawn_blocking(
        move || -> Result<(ResponseType, Vec<u8>), (StatusCode, String)> {
            let req = remote::decode_read(&body, &limits).map_err(|e| {
                (
                    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
                    e.to_string(),
                )
            })?;
            let mut results = Vec::with_capacity(req.queries.len());
            for q in &req.queries {
                let series = match &store {
                    Some(s) => s
                        .select(&q.matchers, q.start_ms, q.end_ms)
                        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
                    None => Vec::new(),
                };
                if max_series > 0 && series.len() > max_series {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        format!(
                            "query matched {} series, over the limit of {max_series}",
                            series.len()
                        ),
                    ));
                }
                results.push(series);
            }
            let kind = req.response_type();
            let body = match kind {
                ResponseType::Samples => remote::encode_read_samples(&results)
                    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
                ResponseType::StreamedXorChunks => {
                    let mut out = Vec::new();
                    for (i, series) in results.iter().enumerate() {
                        let chunked: Vec<(Labels, Vec<remote::XorChunk>)> = series
                            .iter()
                            .map(|s| (s.labels.clone(), xor_chunks(&s.samples)))
                            .collect();
                        for part in chunked.chunks(64) {
                            remote::encode_chunked_frame(&mut out, i as i64, part);
                        }
                    }
                    out
                }
            };
            Ok((kind, body))
        },
    )
    .await;
    match work {
        Ok(Ok((ResponseType::Samples, body))) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/x-protobuf"),
                (header::CONTENT_ENCODING, "snappy"),
            ],
            body,
        )
            .into_response(),
        Ok(Ok((ResponseType::StreamedXorChunks, body))) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse",
            )],
            body,
        )
            .into_response(),
        Ok(Err((status, msg))) => plain(status, msg),
        Err(e) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("read failed: {e}"),
        ),
    }
}

/// Samples re-encoded as Prometheus XOR chunks of at most 120 samples.
fn xor_chunks(samples: &[strata_store::Sample]) -> Vec<remote::XorChunk> {
    samples
        .chunks(strata_store::head::CHUNK_MAX_SAMPLES)
        .map(|part| {
            let mut enc = strata_store::chunk::XorEncoder::new();
            for s in part {
                enc.append(s.t, s.v);
            }
            (part[0].t, part[part.len() - 1].t, enc.into_bytes())
        })
        .collect()
}

fn admin_store(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Arc<MetricsStore>>, ApiError> {
    store_for_read(state, headers)
}

/// Cuts everything in the head into blocks now (operators, tests, benchmarks).
pub async fn admin_flush(State(state): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult {
    let Some(store) = admin_store(&state, &headers)? else {
        return Ok(success(json!({"blocks": 0}), vec![]));
    };
    let n = blocking(move || Ok(store.cut_blocks(true)?)).await?;
    Ok(success(json!({"blocks": n}), vec![]))
}

/// Merges blocks now, including those of the current compaction range.
pub async fn admin_compact(State(state): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult {
    let Some(store) = admin_store(&state, &headers)? else {
        return Ok(success(json!({"compactions": 0}), vec![]));
    };
    let n = blocking(move || {
        let mut total = 0;
        // Repeat so blocks merged at one level can merge again at the next.
        loop {
            let n = store.compact(true)?;
            total += n;
            if n == 0 {
                break;
            }
        }
        Ok(total)
    })
    .await?;
    Ok(success(json!({"compactions": n}), vec![]))
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        let kind = match e.kind() {
            ErrorKind::BadData => ErrorType::BadData,
            ErrorKind::Execution => ErrorType::Execution,
            ErrorKind::Timeout => ErrorType::Timeout,
            ErrorKind::Canceled => ErrorType::Canceled,
            ErrorKind::Internal => ErrorType::Internal,
        };
        let message = match kind {
            ErrorType::BadData if matches!(e, QueryError::Parse(_)) => {
                format!("invalid parameter \"query\": {e}")
            }
            _ => e.to_string(),
        };
        ApiError { kind, message }
    }
}

/// Prometheus's `parseDuration`: float seconds or a duration such as `5m`.
fn duration_param(p: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    let Some(s) = p.get(name) else {
        return Ok(None);
    };
    if let Ok(f) = s.parse::<f64>() {
        let ms = f * 1000.0;
        if ms.is_finite() && ms.abs() < 9.2e18 {
            return Ok(Some(ms.round() as i64));
        }
    } else if let Some(ms) = crate::config::parse_duration_ms(s) {
        return Ok(Some(ms));
    }
    Err(ApiError::bad_data(format!(
        "invalid parameter \"{name}\": cannot parse {s:?} to a valid duration"
    )))
}

fn query_controls(state: &AppState, p: &Params) -> Result<(QueryControls, Option<i64>), ApiError> {
    let lookback = duration_param(p, "lookback_delta")?;
    let timeout = duration_param(p, "timeout")?;
    let controls = QueryControls {
        lookback_delta: lookback
            .filter(|&ms| ms > 0)
            .map(|ms| std::time::Duration::from_millis(ms as u64)),
        ..Default::default()
    };
    let _ = state;
    Ok((controls, timeout))
}

/// A query answer written straight to bytes in Prometheus's envelope: large matrices are most of a
/// query's cost when built as `serde_json::Value` trees first.
fn query_response(out: &QueryOutput) -> Response {
    let mut b: Vec<u8> = Vec::with_capacity(256 + result_size_hint(&out.value));
    b.extend_from_slice(b"{\"status\":\"success\",\"data\":{\"resultType\":\"");
    match &out.value {
        QueryValue::Scalar(t, v) => {
            b.extend_from_slice(b"scalar\",\"result\":");
            write_point(&mut b, *t, *v);
        }
        QueryValue::String(t, text) => {
            b.extend_from_slice(b"string\",\"result\":[");
            write_timestamp(&mut b, *t);
            b.push(b',');
            write_json_str(&mut b, text);
            b.push(b']');
        }
        QueryValue::Vector(v) => {
            b.extend_from_slice(b"vector\",\"result\":[");
            for (i, (labels, t, x)) in v.iter().enumerate() {
                if i > 0 {
                    b.push(b',');
                }
                b.extend_from_slice(b"{\"metric\":");
                write_labels(&mut b, labels);
                b.extend_from_slice(b",\"value\":");
                write_point(&mut b, *t, *x);
                b.push(b'}');
            }
            b.push(b']');
        }
        QueryValue::Matrix(m) => {
            b.extend_from_slice(b"matrix\",\"result\":[");
            for (i, (labels, samples)) in m.iter().enumerate() {
                if i > 0 {
                    b.push(b',');
                }
                b.extend_from_slice(b"{\"metric\":");
                write_labels(&mut b, labels);
                b.extend_from_slice(b",\"values\":[");
                for (j, s) in samples.iter().enumerate() {
                    if j > 0 {
                        b.push(b',');
                    }
                    write_point(&mut b, s.t, s.v);
                }
                b.extend_from_slice(b"]}");
            }
            b.push(b']');
        }
    }
    b.push(b'}');
    for (key, notes) in [("warnings", &out.warnings), ("infos", &out.infos)] {
        if !notes.is_empty() {
            b.extend_from_slice(format!(",\"{key}\":[").as_bytes());
            for (i, n) in notes.iter().enumerate() {
                if i > 0 {
                    b.push(b',');
                }
                write_json_str(&mut b, n);
            }
            b.push(b']');
        }
    }
    b.push(b'}');
    ([(header::CONTENT_TYPE, "application/json")], b).into_response()
}

fn result_size_hint(v: &QueryValue) -> usize {
    match v {
        QueryValue::Matrix(m) => m.iter().map(|(_, s)| 64 + s.len() * 28).sum(),
        QueryValue::Vector(v) => v.len() * 96,
        _ => 64,
    }
}

/// `[<seconds>,"<value>"]`.
fn write_point(b: &mut Vec<u8>, t: i64, v: f64) {
    b.push(b'[');
    write_timestamp(b, t);
    b.extend_from_slice(b",\"");
    write_value(b, v);
    b.extend_from_slice(b"\"]");
}

/// Unix seconds with up to 3 decimals, as [`format_timestamp`] gives them.
fn write_timestamp(b: &mut Vec<u8>, ms: i64) {
    if ms < 0 {
        b.push(b'-');
    }
    let abs = ms.unsigned_abs();
    b.extend_from_slice(itoa::Buffer::new().format(abs / 1000).as_bytes());
    let mut frac = abs % 1000;
    if frac != 0 {
        b.push(b'.');
        let mut divisor = 100;
        while frac != 0 {
            b.push(b'0' + (frac / divisor) as u8);
            frac %= divisor;
            divisor /= 10;
        }
    }
}

fn write_json_str(b: &mut Vec<u8>, s: &str) {
    // Writing a `str` to a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *b, s);
}

fn write_labels(b: &mut Vec<u8>, labels: &Labels) {
    b.push(b'{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        write_json_str(b, &l.name);
        b.push(b':');
        write_json_str(b, &l.value);
    }
    b.push(b'}');
}

fn reader_for(state: &AppState, headers: &HeaderMap) -> Result<Arc<dyn MetricsReader>, ApiError> {
    Ok(match store_for_read(state, headers)? {
        Some(s) => s,
        // A tenant that never wrote: every selector is empty, and `1+1` still answers.
        None => Arc::new(strata_query::memory::MemoryReader::default()),
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs a query off the async threads, enforcing the request's `timeout` (capped by the server's).
async fn run_query(
    state: &Arc<AppState>,
    timeout_ms: Option<i64>,
    f: impl FnOnce(&Engine, &QueryControls) -> Result<QueryOutput, QueryError> + Send + 'static,
    controls: QueryControls,
) -> Result<QueryOutput, ApiError> {
    state.counters.queries.fetch_add(1, Ordering::Relaxed);
    let engine = state.engine.clone();
    let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let controls = QueryControls {
        cancel: Some(cancel.clone()),
        ..controls
    };
    let limit = state.cfg.limits.query_timeout_secs * 1000;
    let wait = timeout_ms
        .filter(|&t| t > 0)
        .map_or(limit, |t| (t as u64).min(limit));
    let task = tokio::task::spawn_blocking(move || f(&engine, &controls));
    let result = match tokio::time::timeout(std::time::Duration::from_millis(wait), task).await {
        Ok(Ok(r)) => r.map_err(ApiError::from),
        Ok(Err(e)) => Err(ApiError::internal(format!("query task failed: {e}"))),
        Err(_) => {
            cancel.store(true, Ordering::Relaxed);
            Err(ApiError {
                kind: ErrorType::Timeout,
                message: "query timed out in query execution".into(),
            })
        }
    };
    if result.is_err() {
        state.counters.query_errors.fetch_add(1, Ordering::Relaxed);
    }
    result
}

pub async fn query(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    let p = Params::parse(q.as_deref(), &method, &headers, &body)?;
    let text = p.get("query").unwrap_or_default().to_owned();
    let time = time_param(&p, "time", now_ms())?;
    let (controls, timeout) = query_controls(&state, &p)?;
    let reader = reader_for(&state, &headers)?;
    let out = run_query(
        &state,
        timeout,
        move |engine, controls| engine.instant_query_with(reader.as_ref(), &text, time, controls),
        controls,
    )
    .await?;
    Ok(query_response(&out))
}

/// Prometheus's resolution limit for range queries.
const MAX_POINTS_PER_SERIES: i64 = 11_000;

pub async fn query_range(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    let p = Params::parse(q.as_deref(), &method, &headers, &body)?;
    let text = p.get("query").unwrap_or_default().to_owned();
    let start = p.get("start").ok_or_else(|| {
        ApiError::bad_data("invalid parameter \"start\": cannot parse \"\" to a valid timestamp")
    })?;
    let start = parse_time(start)
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"start\": {e}")))?;
    let end = p.get("end").ok_or_else(|| {
        ApiError::bad_data("invalid parameter \"end\": cannot parse \"\" to a valid timestamp")
    })?;
    let end = parse_time(end)
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"end\": {e}")))?;
    if end < start {
        return Err(ApiError::bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    let step = duration_param(&p, "step")?.ok_or_else(|| {
        ApiError::bad_data("invalid parameter \"step\": cannot parse \"\" to a valid duration")
    })?;
    if step <= 0 {
        return Err(ApiError::bad_data(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step > MAX_POINTS_PER_SERIES {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let (controls, timeout) = query_controls(&state, &p)?;
    let reader = reader_for(&state, &headers)?;
    let out = run_query(
        &state,
        timeout,
        move |engine, controls| {
            engine.range_query_with(reader.as_ref(), &text, start, end, step, controls)
        },
        controls,
    )
    .await?;
    Ok(query_response(&out))
}

pub async fn format_query_handler(
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    let p = Params::parse(q.as_deref(), &method, &headers, &body)?;
    let text = p.get("query").unwrap_or_default();
    let pretty = strata_query::format_query(text).map_err(ApiError::from)?;
    Ok(success(json!(pretty), vec![]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configured series limit answers 422 `execution`, in-process through the router.
    #[tokio::test]
    async fn series_limit_is_enforced() {
        use tower::ServiceExt;
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = crate::config::Config::default();
        cfg.limits.max_series_per_query = 1;
        let storage =
            Arc::new(strata_store::Storage::open(dir.path(), cfg.metrics_config()).unwrap());
        let batch = strata_store::WriteBatch {
            series: ["a", "b"]
                .iter()
                .map(|j| strata_store::SeriesWrite {
                    labels: Labels::from_pairs([("__name__", "up"), ("job", j)]),
                    samples: vec![strata_store::Sample::new(1000, 1.0)],
                    exemplars: vec![],
                })
                .collect(),
            metadata: vec![],
        };
        storage
            .metrics_for_write("default")
            .unwrap()
            .append(&batch)
            .unwrap();
        let app = crate::server::router(crate::server::AppState::new(storage, cfg));
        let get = |q: &str| {
            axum::http::Request::get(format!("/prometheus/api/v1/series?{q}"))
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let r = app
            .clone()
            .oneshot(get("match[]=up%7Bjob%3D%22a%22%7D"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = app.oneshot(get("match[]=up")).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = http_body_util::BodyExt::collect(r.into_body())
            .await
            .unwrap()
            .to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["errorType"], "execution");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("limits.max_series_per_query"),
            "{v}"
        );
    }

    #[tokio::test]
    async fn query_answers_are_written_in_prometheus_shape() {
        use strata_query::Value as QueryValue;
        let body = |value: QueryValue, warnings: Vec<String>| async move {
            let out = QueryOutput {
                value,
                warnings,
                infos: vec![],
            };
            let r = query_response(&out);
            assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
            let bytes = http_body_util::BodyExt::collect(r.into_body())
                .await
                .unwrap()
                .to_bytes();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        };
        let labels = Labels::from_pairs([("__name__", "up"), ("path", "/a\"b\\c")]);
        let m = QueryValue::Matrix(vec![(
            labels.clone(),
            vec![
                strata_store::Sample::new(1_700_000_000_000, 1.0),
                strata_store::Sample::new(1_700_000_000_120, f64::NAN),
                strata_store::Sample::new(-1_500, f64::NEG_INFINITY),
                strata_store::Sample::new(5, 1e-7),
            ],
        )]);
        assert_eq!(
            body(m, vec!["careful".into()]).await,
            json!({"status": "success", "warnings": ["careful"], "data": {"resultType": "matrix", "result": [{
                "metric": {"__name__": "up", "path": "/a\"b\\c"},
                "values": [[1_700_000_000, "1"], [1_700_000_000.12, "NaN"], [-1.5, "-Inf"], [0.005, "1e-07"]]
            }]}})
        );
        let v = QueryValue::Vector(vec![(labels, 4_000, 2.5)]);
        assert_eq!(
            body(v, vec![]).await,
            json!({"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {"__name__": "up", "path": "/a\"b\\c"}, "value": [4, "2.5"]}
            ]}})
        );
        assert_eq!(
            body(QueryValue::Scalar(4_000, 2.0), vec![]).await,
            json!({"status": "success", "data": {"resultType": "scalar", "result": [4, "2"]}})
        );
        assert_eq!(
            body(QueryValue::String(1_001, "x\ny".into()), vec![]).await,
            json!({"status": "success", "data": {"resultType": "string", "result": [1.001, "x\ny"]}})
        );
    }

    #[test]
    fn values_format_like_go() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.5), "0.5");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(1e-7), "1e-07");
        assert_eq!(format_value(2.5e21), "2.5e+21");
        assert_eq!(format_value(123456789.0), "123456789");
        assert_eq!(format_value(-0.0), "-0");
        assert_eq!(format_value(1e15), "1000000000000000");
        assert_eq!(format_value(1e20), "100000000000000000000");
        assert_eq!(format_value(1e21), "1e+21");
        assert_eq!(format_value(1e-6), "0.000001");
        assert_eq!(format_value(-1.5e-300), "-1.5e-300");
        assert_eq!(format_value(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_value(123.456), "123.456");
        // -23768853224852.0625 exactly: .062 and .063 are equally near; Go takes the even digit.
        assert_eq!(
            format_value(-23_768_853_224_852.0 - 0.0625),
            "-23768853224852.062"
        );
    }

    /// The layout of Rust's own shortest digits, which `write_value` must reproduce.
    fn go_format_reference(v: f64) -> String {
        if v.is_nan() {
            return "NaN".into();
        }
        if v.is_infinite() {
            return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
        }
        let a = v.abs();
        if a != 0.0 && !(1e-6..1e21).contains(&a) {
            let s = format!("{v:e}");
            let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            return format!("{m}e{sign}{digits:0>2}");
        }
        format!("{v}")
    }

    proptest::proptest! {
        #[test]
        fn values_format_as_the_reference_does(bits in proptest::prelude::any::<u64>(),
                                               decimal in -1e7f64..1e7, scale in -30i32..30) {
            for v in [f64::from_bits(bits), decimal, decimal * 10f64.powi(scale), decimal.round()] {
                let ours = format_value(v);
                let reference = go_format_reference(v);
                if ours != reference {
                    // Only where two shortest candidates are equally near: Go, like ryu, takes
                    // the even digit, Rust's formatter the higher one.
                    proptest::prop_assert_eq!(ours.len(), reference.len(), "{} {}", ours, reference);
                    proptest::prop_assert_eq!(&ours[..ours.len() - 1], &reference[..reference.len() - 1]);
                    proptest::prop_assert_eq!(ours.as_bytes()[ours.len() - 1] % 2, 0);
                }
                if v.is_finite() {
                    proptest::prop_assert_eq!(ours.parse::<f64>().ok(), Some(v), "{}", ours);
                }
            }
        }

        #[test]
        fn timestamps_format_as_before(ms in proptest::prelude::any::<i64>()) {
            let mut b = Vec::new();
            write_timestamp(&mut b, ms);
            let abs = ms.unsigned_abs();
            let frac = format!("{:03}", abs % 1000);
            let frac = frac.trim_end_matches('0');
            let expected = format!("{}{}{}{}", if ms < 0 { "-" } else { "" }, abs / 1000,
                if frac.is_empty() { "" } else { "." }, frac);
            proptest::prop_assert_eq!(String::from_utf8(b).unwrap(), expected);
        }
    }

    #[test]
    fn times_parse_like_prometheus() {
        assert_eq!(parse_time("1435781451.781"), Ok(1_435_781_451_781));
        assert_eq!(parse_time("4"), Ok(4000));
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z"),
            Ok(1_435_781_451_781)
        );
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn escaped_label_names() {
        assert_eq!(unescape_label_name("U__http_2e_status"), "http.status");
        assert_eq!(unescape_label_name("job"), "job");
        assert_eq!(unescape_label_name("U__a__b"), "a_b");
    }
}
