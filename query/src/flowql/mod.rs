//! The flow filter language: what a person types to find flows, e.g.
//! `src.namespace="tenant-jobs" and dst.workload="core-api" and http.status>=500`,
//! `dst.name=~".*twilio.*"`, `tcp.retransmits>0 or dns.rcode="NXDOMAIN"`. Field names are the flow
//! schema's (`docs/flow-schema.md`). [`parser`] owns the syntax, [`compile`] the meaning and the
//! translation into a tantivy query over the flow store's index.

pub mod compile;
pub mod parser;

pub use parser::{Expr, FilterError};

use strata_store::flows::index::FlowSchema;
use tantivy::query::Query;

/// Parses and compiles a filter; errors carry the position and what was expected there.
pub fn filter_query(src: &str, schema: &FlowSchema) -> Result<Box<dyn Query>, FilterError> {
    compile::compile(&parser::parse(src)?, schema)
}

#[cfg(test)]
mod tests;
