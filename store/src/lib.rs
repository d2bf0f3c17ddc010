//! Owns Strata's storage: the metrics TSDB (WAL, head, Gorilla chunks, blocks, postings, compaction,
//! retention, the sled catalog) and, later, the flow and trace stores. Knows nothing of HTTP, PromQL
//! syntax, wire protocols or eBPF: the API layer decodes requests into the types of [`model`] and calls
//! [`MetricsStore`], or, for reads, the [`MetricsReader`] trait.

pub mod block;
pub mod catalog;
pub mod chunk;
pub mod encoding;
pub mod error;
pub mod flows;
pub mod hash;
pub mod head;
pub mod metrics;
pub mod model;
pub mod page_cache;
pub mod postings;
pub mod tenants;
pub mod traces;
pub mod wal;

pub use error::{Error, Result};
pub use metrics::{AppendOutcome, MetricsConfig, MetricsStore, StoreStats};
pub use model::*;
pub use tenants::{validate_tenant, Storage, DEFAULT_TENANT};
