//! The query path over a tenant's flow partitions: matching records in time order, and the values of
//! a field for autocomplete. Each partition turns the filter into a tantivy query over its own keys
//! (`filter`); the store adds the time range and prunes partitions that lie outside it.

use std::collections::BTreeSet;
use std::ops::Bound;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery};
use tantivy::{DocAddress, Order, Searcher, Term};

use super::filter::{to_query, Filter};
use super::index::SegmentRecords;
use super::partition::{tantivy_error, Partition};
use super::record::{field_index, FieldKind, FieldValue, FlowRecord, FIELDS};
use super::FlowStore;
use crate::error::{Error, Result};

/// Time order of the answers (by `interval.end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    Asc,
    Desc,
}

/// One search: records matching `filter` whose `interval.end` lies in `[start_ns, end_ns]`.
#[derive(Debug)]
pub struct SearchRequest<'a> {
    pub filter: &'a Filter,
    pub start_ns: i64,
    pub end_ns: i64,
    pub limit: usize,
    pub order: SortOrder,
}

/// The filter restricted to `interval.end` in `[start, end]` over the records of `searcher`. When
/// every record there lies in the range (a partition inside the queried range), the filter alone: the
/// range would be a per-record check that removes nothing.
pub fn time_bounded(
    store: &FlowStore,
    searcher: &Searcher,
    filter: Box<dyn Query>,
    start: i64,
    end: i64,
) -> tantivy::Result<Box<dyn Query>> {
    const NAME: &str = "interval.end";
    let mut inside = true;
    for segment in searcher.segment_readers() {
        if let Some(c) = segment.fast_fields().column_opt::<i64>(NAME)? {
            inside &= c.min_value() >= start && c.max_value() <= end;
        }
    }
    if inside {
        return Ok(filter);
    }
    let field = store
        .schema()
        .field(field_index(NAME).expect("interval.end is in the schema"))
        .expect("interval.end is a column");
    let range = RangeQuery::new(
        Bound::Included(Term::from_field_i64(field, start)),
        Bound::Included(Term::from_field_i64(field, end)),
    );
    Ok(Box::new(BooleanQuery::new(vec![
        (Occur::Must, filter),
        (Occur::Must, Box::new(range)),
    ])))
}

impl FlowStore {
    /// Calls `emit` with each matching record, newest first for [`SortOrder::Desc`], until `limit`
    /// records were emitted or `emit` answers `false`. Returns how many were emitted.
    pub fn search(
        &self,
        req: &SearchRequest<'_>,
        emit: &mut dyn FnMut(FlowRecord) -> bool,
    ) -> Result<usize> {
        if req.limit == 0 || req.start_ns > req.end_ns {
            return Ok(0);
        }
        let mut partitions = self.partitions_overlapping(req.start_ns, req.end_ns);
        if req.order == SortOrder::Desc {
            partitions.reverse();
        }
        let mut emitted = 0;
        // Partitions do not overlap in time, so walking them in order and each in order is a merge.
        for p in partitions {
            let remaining = req.limit - emitted;
            let searched = self.search_partition(&p, req, remaining, emit);
            self.trim_key_tables();
            let (n, stop) = searched?;
            emitted += n;
            if stop || emitted >= req.limit {
                break;
            }
        }
        Ok(emitted)
    }

    fn search_partition(
        &self,
        p: &Partition,
        req: &SearchRequest<'_>,
        limit: usize,
        emit: &mut dyn FnMut(FlowRecord) -> bool,
    ) -> Result<(usize, bool)> {
        let searcher = p.reader.searcher();
        // After the searcher: the table then holds every key its records refer to. The table is
        // locked only while the query is planned and while each record is read, never across the
        // search or `emit` (a slow client): appends number their keys under that lock.
        let filter = to_query(req.filter, self.schema(), &*p.keys.view()?);
        let query = time_bounded(self, &searcher, filter, req.start_ns, req.end_ns)
            .map_err(|e| tantivy_error(p.dir(), e))?;
        let order = match req.order {
            SortOrder::Asc => Order::Asc,
            SortOrder::Desc => Order::Desc,
        };
        let top = TopDocs::with_limit(limit).order_by_fast_field::<i64>("interval.end", order);
        let hits: Vec<(Option<i64>, DocAddress)> = searcher
            .search(&*query, &top)
            .map_err(|e| tantivy_error(p.dir(), e))?;
        let mut segments: Vec<Option<SegmentRecords>> = (0..searcher.segment_readers().len())
            .map(|_| None)
            .collect();
        let mut n = 0;
        for (_, addr) in hits {
            let seg = addr.segment_ord as usize;
            if segments[seg].is_none() {
                segments[seg] = Some(
                    SegmentRecords::open(self.schema(), searcher.segment_reader(addr.segment_ord))
                        .map_err(|e| tantivy_error(p.dir(), e))?,
                );
            }
            let record = segments[seg]
                .as_ref()
                .expect("opened above")
                .read(addr.doc_id, &*p.keys.view()?)
                .map_err(|e| tantivy_error(p.dir(), e))?;
            n += 1;
            if !emit(record) {
                return Ok((n, true));
            }
        }
        Ok((n, false))
    }

    /// Distinct values of a text field starting with `prefix`, in byte order, at most `limit`, from
    /// the partitions overlapping `[start_ns, end_ns]`.
    pub fn field_values(
        &self,
        field: &str,
        prefix: &str,
        start_ns: i64,
        end_ns: i64,
        limit: usize,
    ) -> Result<Vec<String>> {
        let i = field_index(field)
            .filter(|&i| matches!(FIELDS[i].kind, FieldKind::Str | FieldKind::StrList))
            .ok_or_else(|| Error::InvalidMatcher(format!("{field} is not a text field")))?;
        let mut values = BTreeSet::new();
        for p in self.partitions_overlapping(start_ns, end_ns) {
            self.trim_key_tables();
            let keys = p.keys.view()?;
            for v in keys.values(i) {
                let texts: &[String] = match v {
                    FieldValue::Str(s) => std::slice::from_ref(s),
                    FieldValue::List(l) => l,
                    _ => &[],
                };
                for t in texts {
                    if t.is_empty() || !t.starts_with(prefix) {
                        continue;
                    }
                    // Past the limit, only values that sort before what we hold can still matter.
                    if values.len() >= limit && values.last().is_some_and(|l: &String| t >= l) {
                        continue;
                    }
                    values.insert(t.clone());
                    if values.len() > limit {
                        values.pop_last();
                    }
                }
            }
        }
        Ok(values.into_iter().collect())
    }
}
