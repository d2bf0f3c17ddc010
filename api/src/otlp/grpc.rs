//! OTLP over gRPC: the three collector services, answering with `partial_success` or a gRPC status.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use super::messages::{Logs, Metrics, Signal, Traces};
use super::{run_hook, ExportError};
use crate::server::AppState;

#[derive(Clone)]
struct Collector {
    state: Arc<AppState>,
}

impl Collector {
    async fn export<S: Signal>(
        &self,
        req: Request<S::Request>,
    ) -> Result<Response<S::Response>, Status> {
        let counters = &self.state.counters;
        counters
            .otlp_requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tenant = crate::server::tenant(&req.metadata().clone().into_headers())
            .map_err(Status::invalid_argument)?;
        let decoded = S::from_request(req.into_inner()).map_err(Status::invalid_argument)?;
        let result = run_hook(self.state.clone(), tenant, decoded, S::hook()).await;
        match result {
            Ok(accepted) => Ok(Response::new(S::response(accepted))),
            Err(e) => {
                counters
                    .otlp_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(signal = S::NAME, error = %e, "OTLP gRPC export refused");
                Err(status(e))
            }
        }
    }
}

fn status(e: ExportError) -> Status {
    match e {
        ExportError::InvalidArgument(m) => Status::invalid_argument(m),
        ExportError::ResourceExhausted(m) => Status::resource_exhausted(m),
        ExportError::Unavailable(m) => Status::unavailable(m),
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        Collector::export::<Traces>(self, req).await
    }
}

#[tonic::async_trait]
impl LogsService for Collector {
    async fn export(
        &self,
        req: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        Collector::export::<Logs>(self, req).await
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        req: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        Collector::export::<Metrics>(self, req).await
    }
}

/// The gRPC routes of the three services, with gzip accepted and the decompressed-size limit applied.
pub fn routes(state: Arc<AppState>) -> tonic::service::Routes {
    let limit = state.cfg.limits.max_decompressed_bytes;
    let c = Collector { state };
    // gzip as every OTLP client can send, zstd as the agent and OTel Collectors can (a third of
    // gzip's CPU); the limit holds for the decompressed message either way.
    let (gz, zstd) = (CompressionEncoding::Gzip, CompressionEncoding::Zstd);
    tonic::service::Routes::new(
        TraceServiceServer::new(c.clone())
            .accept_compressed(gz)
            .accept_compressed(zstd)
            .send_compressed(gz)
            .max_decoding_message_size(limit),
    )
    .add_service(
        LogsServiceServer::new(c.clone())
            .accept_compressed(gz)
            .accept_compressed(zstd)
            .send_compressed(gz)
            .max_decoding_message_size(limit),
    )
    .add_service(
        MetricsServiceServer::new(c)
            .accept_compressed(gz)
            .accept_compressed(zstd)
            .send_compressed(gz)
            .max_decoding_message_size(limit),
    )
}

/// Serves the gRPC routes on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_routes(routes(state))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
