//! The OTLP logs export hook: flow records (`docs/flow-schema.md`) go to the tenant's flow store; log
//! records that are not flows, and flows that do not validate, are refused through `partial_success`.

use strata_store::flows::now_ns;

use super::{Accepted, ExportError};
use crate::flows::otlp::DecodedFlows;
use crate::server::AppState;

/// Stores the flows of one export request for `tenant`; returns once they are durable.
pub fn export(
    state: &AppState,
    tenant: &str,
    decoded: DecodedFlows,
) -> Result<Accepted, ExportError> {
    let mut rejected = decoded.rejected;
    let mut message = decoded.first_error;
    if !decoded.records.is_empty() {
        let store = state.flows.for_write(tenant).map_err(store_error)?;
        let out = store
            .append(&decoded.records, now_ns())
            .map_err(store_error)?;
        rejected += out.rejected as i64;
        message = message.or(out.first_error);
    }
    Ok(match message {
        Some(m) if rejected > 0 => Accepted::partial(rejected, m),
        _ => Accepted::all(),
    })
}

fn store_error(e: strata_store::Error) -> ExportError {
    match e {
        strata_store::Error::InvalidTenant(_) => ExportError::InvalidArgument(e.to_string()),
        _ => ExportError::Unavailable(format!("flow store: {e}")),
    }
}
