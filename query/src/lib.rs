//! Owns query evaluation: PromQL over the metrics store's read traits, the TraceQL subset and the flow
//! filter language. Knows nothing of HTTP or wire formats; reads storage only through `strata-store` traits.
//!
//! PromQL follows Prometheus 3.8 for float samples: parse with `promql-parser`, then evaluate every node
//! over the whole step grid of the query (as Prometheus's range evaluation does), so an instant query is
//! a range query with one step. The path of a query, top-down:
//!
//! - [`engine`](Engine): parse, admit (concurrency), run, then shape the result: delayed `__name__`
//!   removal, merging of equal label sets, sorting of range results;
//! - `evaluator`: the step grid, the sample budget, deadline and cancellation, dispatch per node;
//! - `selector`: instant vectors with lookback and staleness, range windows `(t - range, t]`,
//!   subqueries, `offset` and `@`;
//! - `functions`, `aggregation`, `binary`, `histogram`: the operators, per step or per series;
//! - `annotations`: warnings and infos worded as Prometheus words them.
//!
//! Native histograms are not supported: the store holds float samples only.

mod aggregation;
mod annotations;
mod binary;
mod engine;
mod error;
mod evaluator;
pub mod flowql;
mod functions;
mod histogram;
pub mod memory;
mod selector;
pub mod traceql;
mod value;

pub use engine::{format_query, Engine, EngineOptions, QueryControls};
pub use error::{ErrorKind, QueryError};
pub use selector::parse_metric_selector;
pub use value::{QueryOutput, Value};
