//! Flow filters, as the store evaluates them. The filter language (`strata_query::flowql`) checks
//! names, operators and values and hands over a [`Filter`]; here it becomes a tantivy query over one
//! partition. Conditions on key fields are decided on the partition's key table, once per distinct
//! value, and whole subtrees of them fold into one set of key numbers ([`KeySet`]), which a scan of the
//! records' key column then matches; conditions on the other fields are range queries on their
//! columns.

use std::net::Ipv6Addr;
use std::ops::Bound;
use std::sync::Arc;

use tantivy::columnar::ColumnValues;
use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, EnableScoring, ExistsQuery, Explanation, Occur, Query,
    RangeQuery, Scorer, Weight,
};
use tantivy::{DocId, DocSet, Score, SegmentReader, Term, TERMINATED};

use super::index::{to_ipv6, FlowSchema, KEY_FIELD};
use super::keys::{KeySet, KeyTable};
use super::record::{is_key_field, FieldKind, FieldValue, FIELDS};

/// How a value compares with the filter's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Cmp {
    fn holds<T: Ord>(self, x: T, v: T) -> bool {
        match self {
            Cmp::Eq => x == v,
            Cmp::Gt => x > v,
            Cmp::Ge => x >= v,
            Cmp::Lt => x < v,
            Cmp::Le => x <= v,
        }
    }
}

/// A test on one field's value. Absent text never matches a text test; absent numbers are 0.
#[derive(Debug, Clone)]
pub enum Test {
    /// Equal to the text (any of a list's texts).
    Text(String),
    /// The whole text (any of a list's) matches the expression.
    Regex(regex::Regex),
    /// Numbers; for per-code counts, any code seen.
    Uint(Cmp, u64),
    Time(Cmp, i64),
    /// An address within `[lo, hi]` (IPv4 as mapped IPv6).
    Ip(Ipv6Addr, Ipv6Addr),
}

/// A checked filter over the flow fields.
#[derive(Debug, Clone)]
pub enum Filter {
    All,
    Not(Box<Filter>),
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Cond { field: usize, test: Test },
}

impl Test {
    /// Whether a key field's value passes.
    fn on_value(&self, v: &FieldValue) -> bool {
        match (self, v) {
            (Test::Text(t), FieldValue::Str(s)) => !s.is_empty() && s == t,
            (Test::Text(t), FieldValue::List(l)) => l.iter().any(|s| s == t),
            (Test::Regex(re), FieldValue::Str(s)) => !s.is_empty() && re.is_match(s),
            (Test::Regex(re), FieldValue::List(l)) => l.iter().any(|s| re.is_match(s)),
            (Test::Uint(c, n), FieldValue::U64(x)) => c.holds(*x, *n),
            (Test::Time(c, n), FieldValue::Time(x)) => c.holds(*x, *n),
            (Test::Ip(lo, hi), FieldValue::Ip(Some(a))) => (*lo..=*hi).contains(&to_ipv6(*a)),
            _ => false,
        }
    }
}

/// A filter part: decided on keys alone, or a query over the records.
enum Plan {
    Keys(KeySet),
    Records(Box<dyn Query>),
}

fn not(q: Box<dyn Query>) -> Box<dyn Query> {
    Box::new(BooleanQuery::new(vec![
        (Occur::Must, Box::new(AllQuery)),
        (Occur::MustNot, q),
    ]))
}

/// The filter as a query over one partition whose keys are `keys` and schema `schema`.
pub fn to_query(filter: &Filter, schema: &FlowSchema, keys: &KeyTable) -> Box<dyn Query> {
    match plan(filter, schema, keys) {
        Plan::Keys(s) => keys_query(s),
        Plan::Records(q) => q,
    }
}

fn keys_query(set: KeySet) -> Box<dyn Query> {
    if set.is_empty() {
        Box::new(EmptyQuery)
    } else if set.is_full() {
        Box::new(AllQuery)
    } else {
        Box::new(KeySetQuery {
            field: KEY_FIELD,
            set: Arc::new(set),
        })
    }
}

fn plan(filter: &Filter, schema: &FlowSchema, keys: &KeyTable) -> Plan {
    match filter {
        Filter::All => Plan::Keys(KeySet::full(keys.len())),
        Filter::Cond { field, test } if is_key_field(*field) => {
            Plan::Keys(keys.matching(*field, |v| test.on_value(v)))
        }
        Filter::Cond { field, test } => Plan::Records(record_condition(*field, test, schema)),
        Filter::Not(f) => match plan(f, schema, keys) {
            Plan::Keys(mut s) => {
                s.not();
                Plan::Keys(s)
            }
            Plan::Records(q) => Plan::Records(not(q)),
        },
        Filter::And(fs) | Filter::Or(fs) => {
            let and = matches!(filter, Filter::And(_));
            let mut set = if and {
                KeySet::full(keys.len())
            } else {
                KeySet::empty(keys.len())
            };
            let mut queries = Vec::new();
            for f in fs {
                match plan(f, schema, keys) {
                    Plan::Keys(s) if and => set.and(&s),
                    Plan::Keys(s) => set.or(&s),
                    Plan::Records(q) => queries.push(q),
                }
            }
            // The key part alone decides: no record passes an empty conjunction, every record a
            // full disjunction.
            if queries.is_empty() || (and && set.is_empty()) || (!and && set.is_full()) {
                return Plan::Keys(set);
            }
            let occur = if and { Occur::Must } else { Occur::Should };
            let neutral = if and { set.is_full() } else { set.is_empty() };
            let mut clauses: Vec<(Occur, Box<dyn Query>)> =
                queries.into_iter().map(|q| (occur, q)).collect();
            if !neutral {
                clauses.push((occur, keys_query(set)));
            }
            Plan::Records(Box::new(BooleanQuery::new(clauses)))
        }
    }
}

fn range(lower: Bound<Term>, upper: Bound<Term>) -> Box<dyn Query> {
    Box::new(RangeQuery::new(lower, upper))
}

/// `field cmp value` on an ordered column, given a function that makes the value's term.
fn ordered(cmp: Cmp, term: impl Fn() -> Term) -> Box<dyn Query> {
    use Bound::{Excluded, Included, Unbounded};
    match cmp {
        Cmp::Eq => range(Included(term()), Included(term())),
        Cmp::Gt => range(Excluded(term()), Unbounded),
        Cmp::Ge => range(Included(term()), Unbounded),
        Cmp::Lt => range(Unbounded, Excluded(term())),
        Cmp::Le => range(Unbounded, Included(term())),
    }
}

/// A condition on a per-record column.
fn record_condition(i: usize, test: &Test, schema: &FlowSchema) -> Box<dyn Query> {
    let def = &FIELDS[i];
    let Some(field) = schema.field(i) else {
        // Not a column (stored only): the filter language refuses these before.
        return Box::new(EmptyQuery);
    };
    match (def.kind, test) {
        (FieldKind::U64 | FieldKind::Counts, &Test::Uint(cmp, v)) => {
            let q = ordered(cmp, || Term::from_field_u64(field, v));
            // Zeros are left out of the columns: where 0 satisfies the comparison, records without
            // the value match too. For per-code counts, absent means no code at all.
            if def.kind == FieldKind::U64 && cmp.holds(0, v) {
                Box::new(BooleanQuery::new(vec![
                    (Occur::Should, q),
                    (
                        Occur::Should,
                        not(Box::new(ExistsQuery::new(def.name.to_owned(), false))),
                    ),
                ]))
            } else {
                q
            }
        }
        (FieldKind::Time, &Test::Time(cmp, v)) => ordered(cmp, || Term::from_field_i64(field, v)),
        _ => Box::new(EmptyQuery),
    }
}

/// Records whose key is in a set: a scan of the key column.
#[derive(Debug, Clone)]
struct KeySetQuery {
    field: &'static str,
    set: Arc<KeySet>,
}

impl Query for KeySetQuery {
    fn weight(&self, _: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(self.clone()))
    }
}

impl Weight for KeySetQuery {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let Some(column) = reader.fast_fields().column_opt::<u64>(self.field)? else {
            return Ok(Box::new(tantivy::query::EmptyScorer));
        };
        // Every record has a key, so the column is dense (row = document); a segment where it is
        // not is damaged, and reading it as dense would pair documents with other records' keys.
        if column.get_cardinality() != tantivy::columnar::Cardinality::Full {
            return Err(tantivy::TantivyError::InternalError(format!(
                "flow segment: key column is {}, not dense",
                column.get_cardinality()
            )));
        }
        let mut s = KeySetScorer {
            values: column.values,
            set: self.set.clone(),
            max_doc: reader.max_doc(),
            buf: Vec::new(),
            matches: Vec::new(),
            pos: 0,
            next: 0,
            boost,
        };
        s.refill();
        Ok(Box::new(s))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut s = self.scorer(reader, 1.0)?;
        if s.seek(doc) == doc {
            Ok(Explanation::new("key in set", 1.0))
        } else {
            Err(tantivy::TantivyError::InvalidArgument(format!(
                "document {doc} does not match"
            )))
        }
    }
}

/// Documents scanned per refill.
const CHUNK: u32 = 4096;

struct KeySetScorer {
    values: Arc<dyn ColumnValues<u64>>,
    set: Arc<KeySet>,
    max_doc: DocId,
    buf: Vec<u64>,
    /// Matching documents of the scanned chunk, from `pos` on not yet visited.
    matches: Vec<DocId>,
    pos: usize,
    /// First document not scanned yet.
    next: DocId,
    boost: Score,
}

impl KeySetScorer {
    /// Scans chunks from `next` until one holds a match or the segment ends.
    fn refill(&mut self) {
        self.matches.clear();
        self.pos = 0;
        while self.matches.is_empty() && self.next < self.max_doc {
            let end = self.next.saturating_add(CHUNK).min(self.max_doc);
            let n = (end - self.next) as usize;
            self.buf.resize(n, 0);
            self.values.get_range(u64::from(self.next), &mut self.buf);
            for (i, &k) in self.buf.iter().enumerate() {
                if self.set.contains(k) {
                    self.matches.push(self.next + i as u32);
                }
            }
            self.next = end;
        }
    }
}

impl DocSet for KeySetScorer {
    fn advance(&mut self) -> DocId {
        self.pos += 1;
        if self.pos >= self.matches.len() {
            self.refill();
        }
        self.doc()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if self.doc() >= target {
            return self.doc();
        }
        self.pos += self.matches[self.pos..].partition_point(|&d| d < target);
        if self.pos >= self.matches.len() {
            self.next = self.next.max(target);
            self.refill();
            // The refill starts at `target` or later, so every match is at or after it.
        }
        self.doc()
    }

    fn doc(&self) -> DocId {
        self.matches.get(self.pos).copied().unwrap_or(TERMINATED)
    }

    fn size_hint(&self) -> u32 {
        self.max_doc
    }
}

impl Scorer for KeySetScorer {
    fn score(&mut self) -> Score {
        self.boost
    }
}
