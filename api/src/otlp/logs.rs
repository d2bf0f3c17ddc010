//! The OTLP logs export hook.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;

use super::{Accepted, ExportError};
use crate::server::AppState;

/// Stores the logs of one export request for `tenant`.
pub fn export(
    _state: &AppState,
    _tenant: &str,
    _req: ExportLogsServiceRequest,
) -> Result<Accepted, ExportError> {
    Err(ExportError::Unavailable(
        "the logs store is not enabled in this build".into(),
    ))
}
