//! The OTLP metrics export hook.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;

use super::{Accepted, ExportError};
use crate::server::AppState;

/// Stores the metrics of one export request for `tenant`.
pub fn export(
    _state: &AppState,
    _tenant: &str,
    _req: ExportMetricsServiceRequest,
) -> Result<Accepted, ExportError> {
    Err(ExportError::Unavailable(
        "OTLP metrics are not accepted yet; use Prometheus remote write".into(),
    ))
}
