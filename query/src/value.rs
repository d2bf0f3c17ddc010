//! Query results as the API layer sees them, and the per-step series the evaluator passes between nodes.

use std::sync::Arc;

use strata_store::{Labels, Sample};

/// A query result, shaped like the Prometheus API's `resultType`s. Times are milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(i64, f64),
    String(i64, String),
    /// One sample per series, all at the evaluation time.
    Vector(Vec<(Labels, i64, f64)>),
    /// Series with their points, sorted by labels for range queries.
    Matrix(Vec<(Labels, Vec<Sample>)>),
}

/// A result and the annotations evaluation produced (Prometheus's `warnings` and `infos`).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryOutput {
    pub value: Value,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

/// One series inside the evaluator. For instant-vector nodes the points sit on the step grid; for
/// range-vector nodes they are raw samples. `drop_name` is Prometheus 3's delayed `__name__` removal:
/// the name stays for matching and grouping and is removed when the query result is assembled.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub labels: Arc<Labels>,
    pub points: Vec<Sample>,
    pub drop_name: bool,
}

/// One element of an instant vector at one step.
#[derive(Debug, Clone)]
pub(crate) struct StepSample {
    pub labels: Arc<Labels>,
    pub f: f64,
    pub drop_name: bool,
}

/// What a node evaluates to over the step grid.
#[derive(Debug, Clone)]
pub(crate) enum Evaluated {
    /// An instant vector at every step.
    Vector(Vec<Series>),
    /// A scalar at every step (one value per step).
    Scalar(Vec<f64>),
    String(String),
    /// A range vector (only as an instant query's result).
    Matrix(Vec<Series>),
}
