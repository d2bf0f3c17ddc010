//! Owns query evaluation: PromQL over the metrics store's read traits, the TraceQL subset and the flow
//! filter language. Knows nothing of HTTP or wire formats; reads storage only through `strata-store` traits.
//!
//! PromQL follows Prometheus 3.8 for float samples: parse with `promql-parser`, then evaluate every node
//! over the whole step grid of the query (as Prometheus's range evaluation does), so an instant query is
//! a range query with one step.

mod aggregation;
mod annotations;
mod binary;
mod engine;
mod error;
mod evaluator;
mod functions;
mod histogram;
pub mod memory;
mod selector;
mod value;

pub use engine::{format_query, Engine, EngineOptions, QueryControls};
pub use error::{ErrorKind, QueryError};
pub use selector::parse_metric_selector;
pub use value::{QueryOutput, Value};
