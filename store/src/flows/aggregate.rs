//! Group-by aggregations over fast columns (top talkers, error hot spots): records matching a filter
//! are grouped by up to [`MAX_GROUP_FIELDS`] text or number fields, and each group gets its aggregates.
//! Within a segment a group is keyed by the record's key number (which decides every key field at once)
//! and the values of the other grouping fields; no string is touched per record. Keys are turned into
//! the grouping fields' values once per group when a partition is done, and groups with the same
//! values merge. When every grouping field is a key field (the usual `src.workload,dst.workload`), a
//! segment's groups are cells of a dense table indexed by key number, not entries of a hash map.
//! Partitions are aggregated in parallel, one thread per core.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use std::sync::Arc;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

use super::filter::{to_query, Filter};
use super::index::KEY_FIELD;
use super::keys::KeyTable;
use super::partition::tantivy_error;
use super::record::{field_index, is_key_field, FieldKind, FieldValue, FIELDS};
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
    /// Past this instant the aggregation stops and answers [`Error::DeadlineExceeded`].
    pub deadline: Option<Instant>,
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
        Ok(AggregateRequest {
            by,
            aggs,
            top,
            deadline: None,
        })
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

/// Groups by the grouping fields' values.
type Groups = HashMap<Vec<String>, Acc>;
/// A segment's or partition's groups by raw key: per grouping field the record's key number (key
/// fields) or value (other fields), `MISSING` when absent.
type RawGroups = HashMap<[u64; MAX_GROUP_FIELDS], Acc>;

/// The collector of one partition.
struct AggCollector<'a> {
    req: &'a AggregateRequest,
    /// When every grouping field is a key field and their value combinations are few: per key
    /// number, its cell in a dense table of the combinations (see [`Cells`]).
    cells: Option<Arc<Cells>>,
    /// Per aggregate over a key field, that field's value per key number.
    key_values: Vec<Option<Arc<Vec<u64>>>>,
    /// Set by a segment that found the request's deadline passed (and stopped collecting).
    expired: Arc<AtomicBool>,
}

/// Blocks of documents collected between two looks at the clock.
const BLOCKS_PER_CLOCK_CHECK: u32 = 64;

/// The combinations of the grouping fields' values in a partition, as cells of a dense table: a
/// cell is the sum of each field's value ordinal times its stride.
struct Cells {
    /// Per grouping field: its number of distinct values and its stride.
    dims: Vec<(u64, u64)>,
    count: u32,
    of_key: Vec<u32>,
}

impl Cells {
    fn new(by: &[usize], keys: &KeyTable) -> Option<Cells> {
        if by.is_empty() || keys.is_empty() || !by.iter().all(|&f| is_key_field(f)) {
            return None;
        }
        let mut dims = Vec::with_capacity(by.len());
        let mut count = 1u64;
        for &f in by {
            let n = keys.values(f).len() as u64;
            dims.push((n, count));
            count = count.checked_mul(n).filter(|&c| c <= MAX_DENSE_CELLS)?;
        }
        let of_key = (0..keys.len())
            .map(|k| {
                by.iter()
                    .zip(&dims)
                    .map(|(&f, &(_, stride))| u64::from(keys.ordinal(k, f).unwrap_or(0)) * stride)
                    .sum::<u64>() as u32
            })
            .collect();
        Some(Cells {
            dims,
            count: count as u32,
            of_key,
        })
    }

    /// The value ordinal of each grouping field in `cell`.
    fn ordinals(&self, cell: u64) -> [u64; MAX_GROUP_FIELDS] {
        let mut out = [MISSING; MAX_GROUP_FIELDS];
        for (o, &(n, stride)) in out.iter_mut().zip(&self.dims) {
            *o = (cell / stride) % n;
        }
        out
    }
}

struct AggSegment {
    aggs: Vec<AggFn>,
    cells: Option<Arc<Cells>>,
    deadline: Option<Instant>,
    expired: Arc<AtomicBool>,
    /// Blocks collected since the clock was last read.
    blocks: u32,
    /// Per grouping field: `None` for key fields (the key number stands for them), else its column.
    by: Vec<Option<Column<u64>>>,
    key: Option<Column<u64>>,
    values: Vec<ValueColumn>,
    table: Table,
}

/// A segment's groups.
enum Table {
    Hashed(RawGroups),
    Dense(DenseTable),
}

/// Cells of `count` and of the aggregates' running values (`values[cell * aggs + j]`), one per
/// combination of the grouping fields' values ([`Cells`]).
struct DenseTable {
    counts: Vec<u64>,
    values: Vec<u64>,
}

/// Largest dense table, in cells: 256k cells cost 2 MiB per running value.
const MAX_DENSE_CELLS: u64 = 1 << 18;

impl DenseTable {
    fn new(cells: u32, aggs: &[AggFn]) -> Option<DenseTable> {
        if u64::from(cells) > MAX_DENSE_CELLS {
            return None;
        }
        let init: Vec<u64> = Acc::new(aggs).values;
        let mut values = Vec::with_capacity(cells as usize * init.len());
        for _ in 0..cells {
            values.extend_from_slice(&init);
        }
        Some(DenseTable {
            counts: vec![0; cells as usize],
            values,
        })
    }
}

enum ValueColumn {
    None,
    U64(Column<u64>),
    /// Times are i64 nanoseconds; flows are after 1970, so clamping at 0 loses nothing.
    Time(Column<i64>),
    /// A key field's value, per key number.
    Key(Arc<Vec<u64>>),
}

const MISSING: u64 = u64::MAX;

impl Collector for AggCollector<'_> {
    type Fruit = RawGroups;
    type Child = AggSegment;

    fn for_segment(
        &self,
        _ord: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<AggSegment> {
        let ff = segment.fast_fields();
        let by = self
            .req
            .by
            .iter()
            .map(|&i| match is_key_field(i) {
                true => Ok(None),
                false => ff.column_opt::<u64>(FIELDS[i].name),
            })
            .collect::<tantivy::Result<Vec<_>>>()?;
        let key = ff.column_opt::<u64>(KEY_FIELD)?;
        let values = self
            .req
            .aggs
            .iter()
            .zip(&self.key_values)
            .map(|(a, kv)| match (a.field(), kv) {
                (None, _) => Ok(ValueColumn::None),
                (Some(_), Some(kv)) => Ok(ValueColumn::Key(kv.clone())),
                (Some(i), None) if FIELDS[i].kind == FieldKind::Time => Ok(ff
                    .column_opt::<i64>(FIELDS[i].name)?
                    .map_or(ValueColumn::None, ValueColumn::Time)),
                (Some(i), None) => Ok(ff
                    .column_opt::<u64>(FIELDS[i].name)?
                    .map_or(ValueColumn::None, ValueColumn::U64)),
            })
            .collect::<tantivy::Result<Vec<_>>>()?;
        let table = match self
            .cells
            .as_ref()
            .and_then(|c| DenseTable::new(c.count, &self.req.aggs))
        {
            Some(t) => Table::Dense(t),
            None => Table::Hashed(HashMap::new()),
        };
        Ok(AggSegment {
            aggs: self.req.aggs.clone(),
            cells: self.cells.clone(),
            deadline: self.req.deadline,
            expired: self.expired.clone(),
            blocks: 0,
            by,
            key,
            values,
            table,
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<RawGroups>) -> tantivy::Result<RawGroups> {
        let mut out = RawGroups::new();
        for f in fruits {
            merge_groups(&mut out, f, &self.req.aggs);
        }
        Ok(out)
    }
}

fn merge_groups<K: std::hash::Hash + Eq>(
    into: &mut HashMap<K, Acc>,
    from: HashMap<K, Acc>,
    aggs: &[AggFn],
) {
    for (k, acc) in from {
        merge_one(into, k, acc, aggs);
    }
}

fn merge_one<K: std::hash::Hash + Eq>(into: &mut HashMap<K, Acc>, k: K, acc: Acc, aggs: &[AggFn]) {
    match into.entry(k) {
        std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().merge(&acc, aggs),
        std::collections::hash_map::Entry::Vacant(e) => {
            e.insert(acc);
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
                // The first holds the cell (see `collect_block`).
                let cell = key[0] as usize;
                if cell >= t.counts.len() {
                    return;
                }
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
    type Fruit = RawGroups;

    fn collect(&mut self, doc: DocId, _score: Score) {
        self.collect_block(&[doc]);
    }

    /// Reads each column for the whole block at once (tantivy hands over up to 64 documents), which
    /// is several times cheaper than a lookup per document and column.
    fn collect_block(&mut self, docs: &[DocId]) {
        if let Some(deadline) = self.deadline {
            self.blocks += 1;
            if self.blocks >= BLOCKS_PER_CLOCK_CHECK {
                self.blocks = 0;
                if Instant::now() >= deadline {
                    self.expired.store(true, Ordering::Relaxed);
                }
            }
            if self.expired.load(Ordering::Relaxed) {
                return;
            }
        }
        let n = docs.len();
        let mut scratch: Vec<Option<u64>> = vec![None; n];
        let mut key_numbers = vec![MISSING; n];
        if let Some(c) = &self.key {
            c.first_vals(docs, &mut scratch);
            for (k, v) in key_numbers.iter_mut().zip(&scratch) {
                *k = v.unwrap_or(MISSING);
            }
        }
        let mut keys = vec![[MISSING; MAX_GROUP_FIELDS]; n];
        if let Some(cells) = &self.cells {
            for (key, &k) in keys.iter_mut().zip(&key_numbers) {
                key[0] = cells
                    .of_key
                    .get(k as usize)
                    .map_or(MISSING, |&c| u64::from(c));
            }
        }
        for (f, col) in self.by.iter().enumerate().filter(|_| self.cells.is_none()) {
            match col {
                None => {
                    for (key, &k) in keys.iter_mut().zip(&key_numbers) {
                        key[f] = k;
                    }
                }
                Some(c) => {
                    c.first_vals(docs, &mut scratch);
                    for (key, v) in keys.iter_mut().zip(&scratch) {
                        key[f] = v.unwrap_or(MISSING);
                    }
                }
            }
        }
        let mut values: Vec<Vec<u64>> = Vec::with_capacity(self.values.len());
        for col in &self.values {
            values.push(match col {
                ValueColumn::None => Vec::new(),
                ValueColumn::U64(c) => {
                    c.first_vals(docs, &mut scratch);
                    scratch.iter().map(|v| v.unwrap_or(0)).collect()
                }
                ValueColumn::Time(c) => {
                    let mut t = vec![None; n];
                    c.first_vals(docs, &mut t);
                    t.iter().map(|v| v.unwrap_or(0).max(0) as u64).collect()
                }
                ValueColumn::Key(kv) => key_numbers
                    .iter()
                    .map(|&k| kv.get(k as usize).copied().unwrap_or(0))
                    .collect(),
            });
        }
        for (i, key) in keys.iter().enumerate() {
            self.add(key, values.iter().map(|v| v.get(i).copied().unwrap_or(0)));
        }
    }

    fn harvest(self) -> RawGroups {
        match self.table {
            Table::Hashed(groups) => groups,
            Table::Dense(t) => {
                let n = self.aggs.len();
                t.counts
                    .iter()
                    .enumerate()
                    .filter(|&(_, &count)| count > 0)
                    .map(|(cell, &count)| {
                        let values = t.values[cell * n..(cell + 1) * n].to_vec();
                        let mut key = [MISSING; MAX_GROUP_FIELDS];
                        key[0] = cell as u64;
                        (key, Acc { count, values })
                    })
                    .collect()
            }
        }
    }
}

/// A grouping value as text, given the raw value of its group ([`by_value`]): key fields from the
/// key table, numbers in decimal, absent as "".
fn group_name(field: usize, raw: u64, keys: &KeyTable) -> String {
    if raw == MISSING {
        return String::new();
    }
    if !is_key_field(field) {
        return raw.to_string();
    }
    match keys.values(field).get(raw as usize) {
        Some(FieldValue::Str(s)) => s.clone(),
        // A list groups by its first value, as a multi-valued column would.
        Some(FieldValue::List(l)) => l.first().cloned().unwrap_or_default(),
        Some(FieldValue::U64(0)) | None => String::new(),
        Some(FieldValue::U64(v)) => v.to_string(),
        Some(FieldValue::Ip(Some(a))) => a.to_string(),
        Some(_) => String::new(),
    }
}

/// A segment group's raw key with key numbers replaced by the ordinals of the grouping fields'
/// values, so that keys with the same values fall into one group before any text is made.
fn by_value(
    by: &[usize],
    raw: [u64; MAX_GROUP_FIELDS],
    keys: &KeyTable,
) -> [u64; MAX_GROUP_FIELDS] {
    let mut out = raw;
    for (o, (&f, &r)) in out.iter_mut().zip(by.iter().zip(&raw)) {
        if is_key_field(f) && r != MISSING {
            *o = keys.ordinal(r as u32, f).map_or(MISSING, u64::from);
        }
    }
    out
}

/// A key field's number per key (0 when absent), for aggregates over it.
fn key_numbers(field: usize, keys: &KeyTable) -> Vec<u64> {
    (0..keys.len())
        .map(|k| match keys.value(k, field) {
            Some(FieldValue::U64(v)) => *v,
            _ => 0,
        })
        .collect()
}

impl FlowStore {
    /// Groups the records matching `filter` with `interval.end` in `[start_ns, end_ns]` and returns
    /// the `top` groups by the first aggregate, largest first (ties by key).
    pub fn aggregate(
        &self,
        filter: &Filter,
        start_ns: i64,
        end_ns: i64,
        req: &AggregateRequest,
    ) -> Result<Vec<AggregateRow>> {
        if req.by.len() > MAX_GROUP_FIELDS {
            return Err(Error::LimitExceeded(format!(
                "at most {MAX_GROUP_FIELDS} grouping fields"
            )));
        }
        let partitions = self.partitions_overlapping(start_ns, end_ns);
        let next = AtomicUsize::new(0);
        let expired = Arc::new(AtomicBool::new(false));
        // Partitions are independent: each thread takes the next one until none is left.
        let aggregate_partitions = || -> Result<Groups> {
            let mut groups = Groups::new();
            while let Some(p) = partitions.get(next.fetch_add(1, Ordering::Relaxed)) {
                if expired.load(Ordering::Relaxed)
                    || req.deadline.is_some_and(|d| Instant::now() >= d)
                {
                    return Err(Error::DeadlineExceeded);
                }
                let searcher = p.reader.searcher();
                // After the searcher: the table then holds every key its records refer to. It is
                // locked while the aggregation is planned and its groups named, not while it runs:
                // appends number their keys under that lock.
                let (query, cells, key_values) = {
                    let keys = p.keys.view()?;
                    let key_values: Vec<_> = req
                        .aggs
                        .iter()
                        .map(|a| {
                            a.field()
                                .filter(|&i| is_key_field(i))
                                .map(|i| Arc::new(key_numbers(i, &keys)))
                        })
                        .collect();
                    (
                        to_query(filter, self.schema(), &keys),
                        Cells::new(&req.by, &keys).map(Arc::new),
                        key_values,
                    )
                };
                let query = time_bounded(self, &searcher, query, start_ns, end_ns)
                    .map_err(|e| tantivy_error(p.dir(), e))?;
                let collector = AggCollector {
                    req,
                    cells: cells.clone(),
                    expired: expired.clone(),
                    key_values,
                };
                let raw = searcher
                    .search(&*query, &collector)
                    .map_err(|e| tantivy_error(p.dir(), e))?;
                if expired.load(Ordering::Relaxed) {
                    return Err(Error::DeadlineExceeded);
                }
                let keys = p.keys.view()?;
                let mut by_values = RawGroups::new();
                for (key, acc) in raw {
                    let v = match &cells {
                        Some(c) => c.ordinals(key[0]),
                        None => by_value(&req.by, key, &keys),
                    };
                    merge_one(&mut by_values, v, acc, &req.aggs);
                }
                for (v, acc) in by_values {
                    let names = req
                        .by
                        .iter()
                        .zip(v)
                        .map(|(&f, raw)| group_name(f, raw, &keys))
                        .collect();
                    merge_one(&mut groups, names, acc, &req.aggs);
                }
                drop(keys);
                self.trim_key_tables();
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
