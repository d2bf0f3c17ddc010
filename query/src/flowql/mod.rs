//! The flow filter language: what a person types to find flows, e.g.
//! `src.namespace="tenant-jobs" and dst.workload="core-api" and http.status>=500`,
//! `dst.name=~".*twilio.*"`, `tcp.retransmits>0 or dns.rcode="NXDOMAIN"`. Field names are the flow
//! schema's (`docs/flow-schema.md`). [`parser`] owns the syntax, [`compile`] the meaning: the result
//! is the flow store's [`Filter`].

pub mod compile;
pub mod parser;

pub use parser::{Expr, FilterError};

pub use strata_store::flows::filter::Filter;

/// Parses and checks a filter; errors carry the position and what was expected there.
pub fn filter(src: &str) -> Result<Filter, FilterError> {
    compile::compile(&parser::parse(src)?)
}

#[cfg(test)]
mod tests;
