//! OTLP over HTTP: `POST /v1/traces`, `/v1/logs`, `/v1/metrics` with `application/x-protobuf` or
//! `application/json` bodies, optionally `Content-Encoding: gzip`. Success is 200 with the export
//! response in the request's encoding; a failure carries a `google.rpc.Status` in that encoding, with
//! 400 for data that can never be accepted and 429/503 when a retry can help, as the OTLP spec asks.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use super::messages::{Logs, Metrics, Signal, Traces};
use super::{json, run_hook, ExportError};
use crate::server::AppState;

/// `google.rpc.Status`, the body of every OTLP/HTTP error.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }

    fn body<M: prost::Message + serde::Serialize>(self, m: &M) -> Vec<u8> {
        match self {
            Encoding::Protobuf => m.encode_to_vec(),
            Encoding::Json => {
                let mut v = serde_json::to_value(m).unwrap_or_default();
                int64_as_strings(&mut v);
                serde_json::to_vec(&v).unwrap_or_default()
            }
        }
    }
}

/// OTLP/JSON writes 64-bit integers as decimal strings; the partial-success counts
/// (`rejectedSpans`, `rejectedLogRecords`, `rejectedDataPoints`) are the only ones in a response.
fn int64_as_strings(v: &mut serde_json::Value) {
    if let Some(ps) = v.get_mut("partialSuccess").and_then(|p| p.as_object_mut()) {
        for (key, count) in ps.iter_mut() {
            if key.starts_with("rejected") && count.is_number() {
                *count = serde_json::Value::String(count.to_string());
            }
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.cfg.limits.max_body_bytes;
    Router::new()
        .route("/v1/traces", post(export::<Traces>))
        .route("/v1/logs", post(export::<Logs>))
        .route("/v1/metrics", post(export::<Metrics>))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// OTLP metrics on the Prometheus path (`/prometheus/api/v1/otlp/v1/metrics`), as Prometheus serves them.
pub async fn prometheus_otlp_metrics(
    state: State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    export::<Metrics>(state, headers, body).await
}

async fn export<S: Signal>(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.counters.otlp_requests.fetch_add(1, Ordering::Relaxed);
    let response = handle::<S>(&state, &headers, body).await;
    if !response.status().is_success() {
        state.counters.otlp_errors.fetch_add(1, Ordering::Relaxed);
    }
    response
}

async fn handle<S: Signal>(state: &Arc<AppState>, headers: &HeaderMap, body: Bytes) -> Response {
    let Some(enc) = encoding(headers) else {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "OTLP/HTTP bodies must be application/x-protobuf or application/json\n",
        )
            .into_response();
    };
    let failure = |code: StatusCode, rpc: i32, message: String| {
        let status = RpcStatus { code: rpc, message };
        (
            code,
            [(header::CONTENT_TYPE, enc.content_type())],
            enc.body(&status),
        )
            .into_response()
    };
    let tenant = match crate::server::tenant(headers) {
        Ok(t) => t,
        Err(e) => return failure(StatusCode::BAD_REQUEST, GRPC_INVALID_ARGUMENT, e),
    };
    let limit = state.cfg.limits.max_decompressed_bytes;
    let body = match decompress(headers, body, limit) {
        Ok(b) => b,
        Err((code, msg)) => return failure(code, GRPC_INVALID_ARGUMENT, msg),
    };
    let req = match enc {
        Encoding::Protobuf => match S::from_protobuf(&body) {
            Ok(r) => r,
            Err(e) => {
                let msg = format!("invalid OTLP protobuf {} request: {e}", S::NAME);
                return failure(StatusCode::BAD_REQUEST, GRPC_INVALID_ARGUMENT, msg);
            }
        },
        Encoding::Json => match json::decode::<S::Request>(&body).and_then(S::from_request) {
            Ok(r) => r,
            Err(e) => return failure(StatusCode::BAD_REQUEST, GRPC_INVALID_ARGUMENT, e),
        },
    };
    match run_hook(state.clone(), tenant, req, S::hook()).await {
        Ok(accepted) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, enc.content_type())],
            enc.body(&S::response(accepted)),
        )
            .into_response(),
        Err(ExportError::InvalidArgument(m)) => {
            failure(StatusCode::BAD_REQUEST, GRPC_INVALID_ARGUMENT, m)
        }
        Err(ExportError::ResourceExhausted(m)) => {
            failure(StatusCode::TOO_MANY_REQUESTS, GRPC_RESOURCE_EXHAUSTED, m)
        }
        Err(ExportError::Unavailable(m)) => {
            failure(StatusCode::SERVICE_UNAVAILABLE, GRPC_UNAVAILABLE, m)
        }
    }
}

const GRPC_INVALID_ARGUMENT: i32 = 3;
const GRPC_RESOURCE_EXHAUSTED: i32 = 8;
const GRPC_UNAVAILABLE: i32 = 14;

fn encoding(headers: &HeaderMap) -> Option<Encoding> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let mime = ct.split(';').next()?.trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
        "application/json" => Some(Encoding::Json),
        _ => None,
    }
}

/// The body after `Content-Encoding`, refusing more than `limit` decompressed bytes.
fn decompress(
    headers: &HeaderMap,
    body: Bytes,
    limit: usize,
) -> Result<Bytes, (StatusCode, String)> {
    let coding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    match coding.as_deref() {
        None | Some("") | Some("identity") => Ok(body),
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid gzip body: {e}")))?;
            if out.len() > limit {
                return Err((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "decompressed body exceeds {limit} bytes (limits.max_decompressed_bytes)"
                    ),
                ));
            }
            Ok(Bytes::from(out))
        }
        Some(other) => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Encoding {other:?}; use gzip or none"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    use tower::ServiceExt;

    use super::*;

    fn app(cfg: crate::config::Config) -> (Router, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let storage =
            Arc::new(strata_store::Storage::open(dir.path(), cfg.metrics_config()).unwrap());
        (router(AppState::new(storage, cfg)), dir)
    }

    async fn post(app: &Router, headers: &[(&str, &str)], body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        let mut req = Request::post("/v1/traces");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = app
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = r.status();
        (
            status,
            r.into_body().collect().await.unwrap().to_bytes().to_vec(),
        )
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    const PB: (&str, &str) = ("content-type", "application/x-protobuf");
    const JSON: (&str, &str) = ("content-type", "application/json");

    #[tokio::test]
    async fn malformed_requests_get_an_rpc_status_in_their_encoding() {
        let (app, _dir) = app(crate::config::Config::default());
        let (code, body) = post(&app, &[PB], vec![0xff, 0xff, 0xff]).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        let status = RpcStatus::decode(&body[..]).unwrap();
        assert_eq!(status.code, GRPC_INVALID_ARGUMENT);
        assert!(
            status.message.contains("invalid OTLP protobuf traces"),
            "{status:?}"
        );

        let (code, body) = post(&app, &[JSON], b"{\"resourceSpans\": 7}".to_vec()).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], GRPC_INVALID_ARGUMENT);
        assert!(
            v["message"].as_str().unwrap().contains("invalid OTLP/JSON"),
            "{v}"
        );

        let (code, _) = post(&app, &[("content-type", "text/plain")], b"x".to_vec()).await;
        assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE);

        let (code, body) = post(&app, &[PB, ("content-encoding", "gzip")], b"nope".to_vec()).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(RpcStatus::decode(&body[..])
            .unwrap()
            .message
            .contains("gzip"));

        let (code, _) = post(&app, &[PB, ("content-encoding", "br")], vec![]).await;
        assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE);

        let (code, body) = post(&app, &[PB, ("x-scope-orgid", "../x")], vec![]).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(RpcStatus::decode(&body[..])
            .unwrap()
            .message
            .contains("tenant"));
    }

    #[test]
    fn json_partial_success_counts_are_strings() {
        use opentelemetry_proto::tonic::collector::trace::v1::{
            ExportTracePartialSuccess, ExportTraceServiceResponse,
        };
        let r = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 3,
                error_message: "bad ids".into(),
            }),
        };
        let v: serde_json::Value = serde_json::from_slice(&Encoding::Json.body(&r)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"partialSuccess": {"rejectedSpans": "3", "errorMessage": "bad ids"}})
        );
        let ok: serde_json::Value =
            serde_json::from_slice(&Encoding::Json.body(&ExportTraceServiceResponse::default()))
                .unwrap();
        assert!(ok.get("partialSuccess").is_none_or(|p| p.is_null()), "{ok}");
    }

    #[tokio::test]
    async fn body_limits_hold_before_and_after_gzip() {
        let mut cfg = crate::config::Config::default();
        cfg.limits.max_body_bytes = 4096;
        cfg.limits.max_decompressed_bytes = 8192;
        let (app, _dir) = app(cfg);
        let (code, _) = post(&app, &[PB], vec![0; 5000]).await;
        assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
        // Small on the wire, too large once inflated.
        let bomb = gzip(&vec![0u8; 100_000]);
        assert!(bomb.len() < 4096);
        let (code, body) = post(&app, &[PB, ("content-encoding", "gzip")], bomb).await;
        assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(RpcStatus::decode(&body[..])
            .unwrap()
            .message
            .contains("limits.max_decompressed_bytes"));
    }

    #[tokio::test]
    async fn well_formed_requests_reach_the_hook_in_every_encoding() {
        let (app, _dir) = app(crate::config::Config::default());
        let pb = ExportTraceServiceRequest::default().encode_to_vec();
        for (headers, body) in [
            (vec![PB], pb.clone()),
            (vec![PB, ("content-encoding", "gzip")], gzip(&pb)),
            (vec![JSON], b"{\"resourceSpans\":[]}".to_vec()),
            (vec![JSON, ("content-encoding", "gzip")], gzip(b"{}")),
        ] {
            let (code, body) = post(&app, &headers, body).await;
            // Decoding succeeded: the answer is the hook's, never a 4xx about the request itself.
            assert!(
                !code.is_client_error(),
                "{headers:?}: {code} {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
}
