//! The OTLP traces export hook: hands the request to the trace store through the Tempo module's
//! ingest path (validation, storage, span metrics).

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::{Accepted, ExportError};
use crate::server::AppState;
use crate::tempo::{ingest, IngestError};

/// Stores the traces of one export request for `tenant`; spans refused one by one (bad ids, a trace
/// over its size limit) are reported as `partial_success`.
pub fn export(
    state: &AppState,
    tenant: &str,
    req: ExportTraceServiceRequest,
) -> Result<Accepted, ExportError> {
    match ingest(state, tenant, req.resource_spans) {
        Ok(r) => Ok(Accepted {
            rejected: i64::try_from(r.rejected).unwrap_or(i64::MAX),
            message: r.reason,
        }),
        Err(IngestError::InvalidArgument(m)) => Err(ExportError::InvalidArgument(m)),
        Err(IngestError::ResourceExhausted(m)) => Err(ExportError::ResourceExhausted(m)),
        Err(IngestError::Unavailable(m)) => Err(ExportError::Unavailable(m)),
    }
}
