//! OTLP ingest from any OpenTelemetry sender: gRPC (`:4317`, the `TraceService`, `LogsService` and
//! `MetricsService` exports) and HTTP (`:4318`, `/v1/traces`, `/v1/logs`, `/v1/metrics`, protobuf or JSON,
//! optionally gzip). Both transports decode into the OTLP messages and hand them to one export hook per
//! signal (`traces`, `logs`, `metrics`), run on the blocking pool because a hook acknowledges only after
//! its write-ahead log is synced. A hook answers how many items it refused and why; that becomes the
//! OTLP `partial_success`. The tenant comes from `X-Scope-OrgID`, as on every other endpoint.

pub mod grpc;
pub mod http;
mod json;
pub mod logs;
pub mod metrics;
pub mod traces;

use std::sync::Arc;

use crate::server::AppState;

/// What a hook kept: the count of refused items and the reason, for `partial_success`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub rejected: i64,
    pub message: String,
}

impl Accepted {
    /// Everything was stored.
    pub fn all() -> Accepted {
        Accepted::default()
    }

    /// Some items were refused for `message`.
    pub fn partial(rejected: i64, message: impl Into<String>) -> Accepted {
        Accepted {
            rejected,
            message: message.into(),
        }
    }

    fn is_partial(&self) -> bool {
        self.rejected != 0 || !self.message.is_empty()
    }
}

/// Why a whole request failed. Only the last two are worth a retry by the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// The request can never succeed (gRPC `INVALID_ARGUMENT`, HTTP 400).
    #[error("{0}")]
    InvalidArgument(String),
    /// A limit was hit; retry later (gRPC `RESOURCE_EXHAUSTED`, HTTP 429).
    #[error("{0}")]
    ResourceExhausted(String),
    /// The store cannot take data now (gRPC `UNAVAILABLE`, HTTP 503).
    #[error("{0}")]
    Unavailable(String),
}

/// One export hook: runs with the decoded request for a tenant.
pub type Hook<Req> = fn(&AppState, &str, Req) -> Result<Accepted, ExportError>;

/// Runs `hook` on the blocking pool.
pub(crate) async fn run_hook<Req: Send + 'static>(
    state: Arc<AppState>,
    tenant: String,
    req: Req,
    hook: Hook<Req>,
) -> Result<Accepted, ExportError> {
    tokio::task::spawn_blocking(move || hook(&state, &tenant, req))
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "OTLP export hook panicked");
            Err(ExportError::Unavailable(
                "internal error while storing".into(),
            ))
        })
}

/// The three signals and their OTLP partial-success messages.
pub(crate) mod messages {
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
    };
    use opentelemetry_proto::tonic::collector::metrics::v1::{
        ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
    };

    use super::Accepted;
    use crate::flows::otlp::{decode, decode_protobuf, DecodedFlows};

    /// A signal's request and response messages, what its hook takes, and how an [`Accepted`] becomes
    /// its response.
    pub trait Signal: Send + 'static {
        type Request: prost::Message + Default + serde::de::DeserializeOwned + Send + 'static;
        type Response: prost::Message + serde::Serialize + Default;
        /// What the hook stores: the request itself, or what a signal's own decoder made of it.
        type Decoded: Send + 'static;
        const NAME: &'static str;
        fn hook() -> super::Hook<Self::Decoded>;
        fn response(a: Accepted) -> Self::Response;
        /// From a request decoded by another path (OTLP/JSON, gRPC); the error says what is wrong.
        fn from_request(req: Self::Request) -> Result<Self::Decoded, String>;
        /// From a protobuf body; the error says what is wrong with it.
        fn from_protobuf(body: &[u8]) -> Result<Self::Decoded, String>;
    }

    /// The prost decoding of a whole request, for signals whose hooks take the request message.
    fn prost_decode<M: prost::Message + Default>(body: &[u8]) -> Result<M, String> {
        M::decode(body).map_err(|e| e.to_string())
    }

    pub struct Traces;
    pub struct Logs;
    pub struct Metrics;

    impl Signal for Traces {
        type Request = ExportTraceServiceRequest;
        type Response = ExportTraceServiceResponse;
        type Decoded = ExportTraceServiceRequest;
        const NAME: &'static str = "traces";
        fn hook() -> super::Hook<Self::Decoded> {
            super::traces::export
        }
        fn response(a: Accepted) -> Self::Response {
            ExportTraceServiceResponse {
                partial_success: a.is_partial().then_some(ExportTracePartialSuccess {
                    rejected_spans: a.rejected,
                    error_message: a.message,
                }),
            }
        }
        fn from_request(req: Self::Request) -> Result<Self::Decoded, String> {
            Ok(req)
        }
        fn from_protobuf(body: &[u8]) -> Result<Self::Decoded, String> {
            prost_decode(body)
        }
    }

    /// Logs are flow records: decoded straight from protobuf, without building the messages.
    impl Signal for Logs {
        type Request = ExportLogsServiceRequest;
        type Response = ExportLogsServiceResponse;
        type Decoded = DecodedFlows;
        const NAME: &'static str = "logs";
        fn hook() -> super::Hook<Self::Decoded> {
            super::logs::export
        }
        fn response(a: Accepted) -> Self::Response {
            ExportLogsServiceResponse {
                partial_success: a.is_partial().then_some(ExportLogsPartialSuccess {
                    rejected_log_records: a.rejected,
                    error_message: a.message,
                }),
            }
        }
        fn from_request(req: Self::Request) -> Result<Self::Decoded, String> {
            decode(&req).map_err(|e| e.to_string())
        }
        fn from_protobuf(body: &[u8]) -> Result<Self::Decoded, String> {
            decode_protobuf(body).map_err(|e| e.to_string())
        }
    }

    impl Signal for Metrics {
        type Request = ExportMetricsServiceRequest;
        type Response = ExportMetricsServiceResponse;
        type Decoded = ExportMetricsServiceRequest;
        const NAME: &'static str = "metrics";
        fn hook() -> super::Hook<Self::Decoded> {
            super::metrics::export
        }
        fn response(a: Accepted) -> Self::Response {
            ExportMetricsServiceResponse {
                partial_success: a.is_partial().then_some(ExportMetricsPartialSuccess {
                    rejected_data_points: a.rejected,
                    error_message: a.message,
                }),
            }
        }
        fn from_request(req: Self::Request) -> Result<Self::Decoded, String> {
            Ok(req)
        }
        fn from_protobuf(body: &[u8]) -> Result<Self::Decoded, String> {
            prost_decode(body)
        }
    }
}
