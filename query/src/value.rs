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

/// A label set keyed by identity: hashing and comparing the pointer is far cheaper than the labels,
/// and holding the `Arc` keeps the address from being reused while the key lives. Label sets that
/// flow through one node keep their `Arc`, so per-step lookups hit by identity.
#[derive(Debug, Clone)]
pub(crate) struct ByIdentity(pub Arc<Labels>);

impl PartialEq for ByIdentity {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ByIdentity {}

impl std::hash::Hash for ByIdentity {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_usize(Arc::as_ptr(&self.0) as usize);
    }
}

/// Hasher for identity keys: a multiplicative hash of the address (SipHash would dominate the
/// per-step lookups it is used for).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct AddressHasher(u64);

impl std::hash::Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0 ^ n as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }
}

/// A map keyed by label-set identity.
pub(crate) type IdentityMap<V> =
    std::collections::HashMap<ByIdentity, V, std::hash::BuildHasherDefault<AddressHasher>>;

/// Merges series whose label sets became equal (after relabeling or dropping the metric name);
/// two points at one time are Prometheus's "vector cannot contain metrics with the same labelset".
pub(crate) fn merge_same_label_sets(series: Vec<Series>) -> crate::error::Result<Vec<Series>> {
    let mut out: Vec<Series> = Vec::with_capacity(series.len());
    let mut index: std::collections::HashMap<Arc<Labels>, usize> =
        std::collections::HashMap::with_capacity(series.len());
    let mut merged_any = false;
    for s in series {
        match index.get(&s.labels) {
            Some(&i) => {
                out[i].points.extend(s.points);
                out[i].drop_name |= s.drop_name;
                merged_any = true;
            }
            None => {
                index.insert(s.labels.clone(), out.len());
                out.push(s);
            }
        }
    }
    if merged_any {
        for s in &mut out {
            s.points.sort_by_key(|p| p.t);
            if s.points.windows(2).any(|w| w[0].t == w[1].t) {
                return Err(crate::error::QueryError::exec(
                    "vector cannot contain metrics with the same labelset",
                ));
            }
        }
    }
    Ok(out)
}
