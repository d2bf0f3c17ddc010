//! Owns Strata's storage: the metrics TSDB (WAL, head, Gorilla chunks, blocks, postings, compaction,
//! retention, the sled catalog) and, later, the flow and trace stores. Knows nothing of HTTP, PromQL
//! syntax, wire protocols or eBPF: the API layer decodes requests into the types of [`model`] and calls
//! the metrics store, or, for reads, the [`MetricsReader`] trait.

pub mod chunk;
pub mod error;
pub mod model;

pub use error::{Error, Result};
pub use model::*;
