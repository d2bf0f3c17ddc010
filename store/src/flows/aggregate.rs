//! Group-by aggregations over fast columns (top talkers, error hot spots): records matching a filter
//! are grouped by up to [`MAX_GROUP_FIELDS`] text or number fields, and each group gets its aggregates.
//! Within a segment a group is keyed by the columns' ordinals (no string is touched per record);
//! ordinals are turned into strings once per group when the segment is done. When every grouping
//! field is text and the product of their distinct values is small (the usual `src.workload,
//! dst.workload`), a segment's groups are cells of a dense table indexed by the ordinals, not entries
//! of a hash map. Partitions are aggregated in parallel, one thread per core.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::query::Query;
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

use super::partition::tantivy_error;
use super::record::{field_index, FieldKind, FIELDS};
use super::search::time_bounded;
use super::FlowStore;
use crate::error::{Error, Result};

pub const MAX_GROUP_FIELDS: usize = 4;

/// An aggregate function over a number field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFn {
    Count,
    Sum(usize),
    Min(usize),
    Max(usize),
    Avg(usize),
}

impl AggFn {
    /// Parses `count`, `sum(f)`, `min(f)`, `max(f)` or `avg(f)` for a number field `f`.
    pub fn parse(s: &str) -> std::result::Result<AggFn, String> {
        let s = s.trim();
        if s == "count" || s == "count()" {
            return Ok(AggFn::Count);
        }
        let (name, rest) = s.split_once('(').ok_or_else(|| {
            format!("aggregate {s:?}: expected count, sum(f), min(f), max(f) or avg(f)")
        })?;
        let field = rest
            .strip_suffix(')')
            .ok_or_else(|| format!("aggregate {s:?}: missing `)`"))?
            .trim();
        let i = field_index(field)
            .filter(|&i| matches!(FIELDS[i].kind, FieldKind::U64 | FieldKind::Time))
            .ok_or_else(|| format!("aggregate {s:?}: {field:?} is not a number field"))?;
        match name.trim() {
            "sum" => Ok(AggFn::Sum(i)),
            "min" => Ok(AggFn::Min(i)),
            "max" => Ok(AggFn::Max(i)),
            "avg" => Ok(AggFn::Avg(i)),
            other => Err(format!(
                "aggregate {s:?}: unknown function {other:?}; expected count, sum, min, max or avg"
            )),
        }
    }

    fn field(self) -> Option<usize> {
        match self {
            AggFn::Count => None,
            AggFn::Sum(i) | AggFn::Min(i) | AggFn::Max(i) | AggFn::Avg(i) => Some(i),
        }
    }

    pub fn name(self) -> String {
        match self {
            AggFn::Count => "count".into(),
            AggFn::Sum(i) => format!("sum({})", FIELDS[i].name),
            AggFn::Min(i) => format!("min({})", FIELDS[i].name),
            AggFn::Max(i) => format!("max({})", FIELDS[i].name),
            AggFn::Avg(i) => format!("avg({})", FIELDS[i].name),
        }
    }
}

/// A group-by request. Groups are ranked by the first aggregate, largest first.
#[derive(Debug, Clone)]
pub struct AggregateRequest {
    pub by: Vec<usize>,
    pub aggs: Vec<AggFn>,
    pub top: usize,
}

impl AggregateRequest {
    /// Checks that grouping fields are text or number fields and that there is something to compute.
    pub fn new(by: &[&str], aggs: Vec<AggFn>, top: usize) -> std::result::Result<Self, String> {
        if by.len() > MAX_GROUP_FIELDS {
            return Err(format!("at most {MAX_GROUP_FIELDS} grouping fields"));
        }
        if aggs.is_empty() {
            return Err("at least one aggregate is needed".into());
        }
        let by = by
            .iter()
            .map(|name| {
                field_index(name)
                    .filter(|&i| {
                        matches!(
                            FIELDS[i].kind,
                            FieldKind::Str | FieldKind::StrList | FieldKind::U64
                        )
                    })
                    .ok_or_else(|| format!("cannot group by {name:?}: not a text or number field"))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(AggregateRequest { by, aggs, top })
    }
}

/// One group: its key (one string per grouping field; empty when the record had none) and values.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateRow {
    pub key: Vec<String>,
    pub values: Vec<f64>,
}

/// Accumulators of one group: per aggregate a running value, plus the record count.
#[derive(Debug, Clone)]
struct Acc {
    count: u64,
    values: Vec<u64>,
}

impl Acc {
    fn new(aggs: &[AggFn]) -> Acc {
        Acc {
            count: 0,
            values: aggs
                .iter()
                .map(|a| match a {
                    AggFn::Min(_) => u64::MAX,
                    _ => 0,
                })
                .collect(),
        }
    }

    fn merge(&mut self, other: &Acc, aggs: &[AggFn]) {
        self.count += other.count;
        for ((v, &o), a) in self.values.iter_mut().zip(&other.values).zip(aggs) {
            fold(a, v, o);
        }
    }

    fn finish(&self, aggs: &[AggFn]) -> Vec<f64> {
        aggs.iter()
            .zip(&self.values)
            .map(|(a, &v)| match a {
                AggFn::Count => self.count as f64,
                AggFn::Avg(_) if self.count > 0 => v as f64 / self.count as f64,
                AggFn::Min(_) if self.count == 0 => 0.0,
                _ => v as f64,
            })
            .collect()
    }
}

type Groups = HashMap<Vec<String>, Acc>;

struct AggCollector<'a> {
    req: &'a AggregateRequest,
}

enum KeyColumn {
    Str(StrColumn),
    U64(Column<u64>),
    Absent,
}

struct AggSegment {
    aggs: Vec<AggFn>,
    keys: Vec<KeyColumn>,
    values: Vec<Option<ValueColumn>>,
    table: Table,
}

/// A segment's groups.
enum Table {
    Hashed(HashMap<[u64; MAX_GROUP_FIELDS], Acc>),
    Dense(DenseTable),
}

/// Cells of `count` and of the aggregates' running values (`values[cell * aggs + j]`), one per
/// combination of the key columns' ordinals, `MISSING` taking the ordinal after the last term.
struct DenseTable {
    /// Per key column: the number of terms, and the distance between cells of consecutive ordinals.
    dims: Vec<(u64, u64)>,
    counts: Vec<u64>,
    values: Vec<u64>,
}

/// Largest dense table, in cells: 256k cells cost 2 MiB per running value.
const MAX_DENSE_CELLS: u64 = 1 << 18;

impl DenseTable {
    /// A table for these key columns, when they are all text and few enough combinations exist for
    /// `docs` documents to fill a fair part of it.
    fn new(keys: &[KeyColumn], aggs: &[AggFn], docs: u32) -> Option<DenseTable> {
        let limit = MAX_DENSE_CELLS.min(4 * u64::from(docs) + 1024);
        let mut cells = 1u64;
        let mut dims = Vec::with_capacity(keys.len());
        for k in keys {
            let terms = match k {
                KeyColumn::Str(c) => c.num_terms() as u64,
                KeyColumn::Absent => 0,
                KeyColumn::U64(_) => return None,
            };
            dims.push((terms, cells));
            cells = cells.checked_mul(terms + 1).filter(|&c| c <= limit)?;
        }
        let init: Vec<u64> = Acc::new(aggs).values;
        let mut values = Vec::with_capacity(cells as usize * init.len());
        for _ in 0..cells {
            values.extend_from_slice(&init);
        }
        Some(DenseTable {
            dims,
            counts: vec![0; cells as usize],
            values,
        })
    }

    fn cell(&self, key: &[u64; MAX_GROUP_FIELDS]) -> usize {
        let mut cell = 0;
        for (&k, &(terms, stride)) in key.iter().zip(&self.dims) {
            cell += k.min(terms) * stride;
        }
        cell as usize
    }

    fn key(&self, cell: usize) -> [u64; MAX_GROUP_FIELDS] {
        let mut key = [MISSING; MAX_GROUP_FIELDS];
        for (k, &(terms, stride)) in key.iter_mut().zip(&self.dims) {
            let ord = (cell as u64 / stride) % (terms + 1);
            if ord < terms {
                *k = ord;
            }
        }
        key
    }
}

enum ValueColumn {
    U64(Column<u64>),
    /// Times are i64 nanoseconds; flows are after 1970, so clamping at 0 loses nothing.
    Time(Column<i64>),
}

const MISSING: u64 = u64::MAX;

impl Collector for AggCollector<'_> {
    type Fruit = Groups;
    type Child = AggSegment;

    fn for_segment(
        &self,
        _ord: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<AggSegment> {
        let ff = segment.fast_fields();
        let keys = self
            .req
            .by
            .iter()
            .map(|&i| {
                let name = FIELDS[i].name;
                Ok(match FIELDS[i].kind {
                    FieldKind::U64 => ff
                        .column_opt::<u64>(name)?
                        .map_or(KeyColumn::Absent, KeyColumn::U64),
                    _ => ff.str(name)?.map_or(KeyColumn::Absent, KeyColumn::Str),
                })
            })
            .collect::<tantivy::Result<Vec<_>>>()?;
        let values = self
            .req
            .aggs
            .iter()
            .map(|a| match a.field() {
                None => Ok(None),
                Some(i) if FIELDS[i].kind == FieldKind::Time => {
                    Ok(ff.column_opt::<i64>(FIELDS[i].name)?.map(ValueColumn::Time))
                }
                Some(i) => Ok(ff.column_opt::<u64>(FIELDS[i].name)?.map(ValueColumn::U64)),
            })
            .collect::<tantivy::Result<Vec<_>>>()?;
        let table = match DenseTable::new(&keys, &self.req.aggs, segment.max_doc()) {
            Some(t) => Table::Dense(t),
            None => Table::Hashed(HashMap::new()),
        };
        Ok(AggSegment {
            aggs: self.req.aggs.clone(),
            keys,
            values,
            table,
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Groups>) -> tantivy::Result<Groups> {
        let mut out = Groups::new();
        for f in fruits {
            merge_groups(&mut out, f, &self.req.aggs);
        }
        Ok(out)
    }
}

fn merge_groups(into: &mut Groups, from: Groups, aggs: &[AggFn]) {
    for (k, acc) in from {
        match into.get_mut(&k) {
            Some(a) => a.merge(&acc, aggs),
            None => {
                into.insert(k, acc);
            }
        }
    }
}

/// Folds `x` into a running value of aggregate `a`.
fn fold(a: &AggFn, v: &mut u64, x: u64) {
    *v = match a {
        AggFn::Min(_) => (*v).min(x),
        AggFn::Max(_) => (*v).max(x),
        _ => v.saturating_add(x),
    };
}

impl AggSegment {
    fn add(&mut self, key: &[u64; MAX_GROUP_FIELDS], values: impl Iterator<Item = u64>) {
        let aggs = &self.aggs;
        match &mut self.table {
            Table::Hashed(groups) => {
                let acc = groups.entry(*key).or_insert_with(|| Acc::new(aggs));
                acc.count += 1;
                for ((v, x), a) in acc.values.iter_mut().zip(values).zip(aggs) {
                    fold(a, v, x);
                }
            }
            Table::Dense(t) => {
                let cell = t.cell(key);
                t.counts[cell] += 1;
                let running = &mut t.values[cell * aggs.len()..(cell + 1) * aggs.len()];
                for ((v, x), a) in running.iter_mut().zip(values).zip(aggs) {
                    fold(a, v, x);
                }
            }
        }
    }
}

impl SegmentCollector for AggSegment {
    type Fruit = Groups;

    fn collect(&mut self, doc: DocId, _score: Score) {
        self.collect_block(&[doc]);
    }

    /// Reads each column for the whole block at once (tantivy hands over up to 64 documents), which
    /// is several times cheaper than a lookup per document and column.
    fn collect_block(&mut self, docs: &[DocId]) {
        let n = docs.len();
        let mut keys = vec![[MISSING; MAX_GROUP_FIELDS]; n];
        let mut scratch: Vec<Option<u64>> = vec![None; n];
        for (k, col) in self.keys.iter().enumerate() {
            let column = match col {
                KeyColumn::Str(c) => c.ords(),
                KeyColumn::U64(c) => c,
                KeyColumn::Absent => continue,
            };
            column.first_vals(docs, &mut scratch);
            for (key, v) in keys.iter_mut().zip(&scratch) {
                key[k] = v.unwrap_or(MISSING);
            }
        }
        let mut values: Vec<Vec<u64>> = Vec::with_capacity(self.values.len());
        for col in &self.values {
            values.push(match col {
                None => Vec::new(),
                Some(ValueColumn::U64(c)) => {
                    c.first_vals(docs, &mut scratch);
                    scratch.iter().map(|v| v.unwrap_or(0)).collect()
                }
                Some(ValueColumn::Time(c)) => {
                    let mut t = vec![None; n];
                    c.first_vals(docs, &mut t);
                    t.iter().map(|v| v.unwrap_or(0).max(0) as u64).collect()
                }
            });
        }
        for (i, key) in keys.iter().enumerate() {
            self.add(key, values.iter().map(|v| v.get(i).copied().unwrap_or(0)));
        }
    }

    fn harvest(self) -> Groups {
        let groups: Vec<([u64; MAX_GROUP_FIELDS], Acc)> = match self.table {
            Table::Hashed(groups) => groups.into_iter().collect(),
            Table::Dense(t) => {
                let n = self.aggs.len();
                t.counts
                    .iter()
                    .enumerate()
                    .filter(|&(_, &count)| count > 0)
                    .map(|(cell, &count)| {
                        let values = t.values[cell * n..(cell + 1) * n].to_vec();
                        (t.key(cell), Acc { count, values })
                    })
                    .collect()
            }
        };
        let mut out = Groups::with_capacity(groups.len());
        let mut text = String::new();
        for (key, acc) in groups {
            let names = key
                .iter()
                .zip(&self.keys)
                .map(|(&k, col)| match col {
                    _ if k == MISSING => String::new(),
                    KeyColumn::Str(c) => {
                        text.clear();
                        match c.ord_to_str(k, &mut text) {
                            Ok(true) => text.clone(),
                            _ => String::new(),
                        }
                    }
                    KeyColumn::U64(_) => k.to_string(),
                    KeyColumn::Absent => String::new(),
                })
                .collect();
            merge_groups(&mut out, HashMap::from([(names, acc)]), &self.aggs);
        }
        out
    }
}

impl FlowStore {
    /// Groups the records matching `filter` with `interval.end` in `[start_ns, end_ns]` and returns
    /// the `top` groups by the first aggregate, largest first (ties by key).
    pub fn aggregate(
        &self,
        filter: &dyn Query,
        start_ns: i64,
        end_ns: i64,
        req: &AggregateRequest,
    ) -> Result<Vec<AggregateRow>> {
        if req.by.len() > MAX_GROUP_FIELDS {
            return Err(Error::LimitExceeded(format!(
                "at most {MAX_GROUP_FIELDS} grouping fields"
            )));
        }
        let collector = AggCollector { req };
        let partitions = self.partitions_overlapping(start_ns, end_ns);
        let next = AtomicUsize::new(0);
        // Partitions are independent: each thread takes the next one until none is left.
        let aggregate_partitions = || -> Result<Groups> {
            let mut groups = Groups::new();
            while let Some(p) = partitions.get(next.fetch_add(1, Ordering::Relaxed)) {
                let searcher = p.reader.searcher();
                let query = time_bounded(self, &searcher, filter, start_ns, end_ns)
                    .map_err(|e| tantivy_error(p.dir(), e))?;
                let g = searcher
                    .search(&*query, &collector)
                    .map_err(|e| tantivy_error(p.dir(), e))?;
                merge_groups(&mut groups, g, &req.aggs);
            }
            Ok(groups)
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(partitions.len());
        let mut groups = Groups::new();
        if threads <= 1 {
            groups = aggregate_partitions()?;
        } else {
            let results: Vec<Result<Groups>> = std::thread::scope(|s| {
                let workers: Vec<_> = (0..threads)
                    .map(|_| s.spawn(aggregate_partitions))
                    .collect();
                workers
                    .into_iter()
                    .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect()
            });
            for g in results {
                merge_groups(&mut groups, g?, &req.aggs);
            }
        }
        let mut rows: Vec<AggregateRow> = groups
            .into_iter()
            .map(|(key, acc)| AggregateRow {
                values: acc.finish(&req.aggs),
                key,
            })
            .collect();
        rows.sort_by(|a, b| {
            b.values[0]
                .total_cmp(&a.values[0])
                .then_with(|| a.key.cmp(&b.key))
        });
        rows.truncate(req.top);
        Ok(rows)
    }
}
