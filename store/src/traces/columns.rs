//! Block format versions 2 and 3's data: consecutive traces form a row group, and a row group is a set of
//! columns — one per span intrinsic, one per attribute key (for span, event and link attributes
//! apart) — each compressed with zstd on its own. Values of one kind side by side (span ids with span
//! ids, durations with durations, `user.id`s with `user.id`s) compress far better than rows that mix
//! them. Every field of the span model round-trips, attribute order and duplicate keys included.
//! Version 3 writes a span's attribute keys as a bitmap over the key order its resource's spans
//! follow ([`AttrsWriter`]). The layout is drawn in `docs/formats.md` ("Trace blocks").

use std::sync::Arc;

use crate::encoding::{
    put_bytes, put_uvarint, put_varint, unzigzag, DecodeError, DecodeResult, Decoder,
};

use super::block::DictMap;
use super::model::{
    get_scope, get_value, put_scope, put_value, Event, KeyValue, Link, Resource, ResourceSpans,
    Scope, ScopeSpans, Span, SpanId, SpanKind, StatusCode, Trace, TraceId, Value,
};
use super::SpanCondition;

/// Columns shorter than this are stored as they are: a zstd frame would not pay for its header.
const MIN_COMPRESSED_COLUMN: usize = 32;
/// A column longer than this is refused on read, before its buffer is allocated.
const MAX_COLUMN_BYTES: u64 = 1 << 30;

/// Value tags of an attribute column. Booleans live in the tag; arrays, key/value lists and bytes go
/// row-wise into the column's `nested` stream, as the WAL encodes them.
const TAG_EMPTY: u8 = 0;
const TAG_STR: u8 = 1;
const TAG_INT: u8 = 2;
const TAG_DOUBLE: u8 = 3;
const TAG_FALSE: u8 = 4;
const TAG_TRUE: u8 = 5;
const TAG_NESTED: u8 = 6;

/// Parent column: no parent, a parent given in full in the `parent_raw` column, or (`LOCAL + i`) the
/// `i`-th span of the same trace, which is how almost every parent is written.
const PARENT_NONE: u64 = 0;
const PARENT_RAW: u64 = 1;
const PARENT_LOCAL: u64 = 2;

/// For each span of a trace (by position), the position of its parent when the parent is in the
/// trace, given the span's parent id resolved to a position (`local`). A span is anchored to its
/// parent — its start written relative to the parent's — when following parents from it ends at a
/// span without one in the trace; parents that loop (duplicate or self-referring ids) are not
/// followed. Writer and reader compute the same from the parent column.
fn anchors(local: &[Option<usize>]) -> Vec<Option<usize>> {
    const UNKNOWN: u8 = 0;
    const ON_PATH: u8 = 1;
    const ENDS: u8 = 2;
    const LOOPS: u8 = 3;
    let mut state = vec![UNKNOWN; local.len()];
    let mut path = Vec::new();
    for i in 0..local.len() {
        let mut j = i;
        let outcome = loop {
            match state[j] {
                UNKNOWN => {}
                ON_PATH => break LOOPS,
                s => break s,
            }
            state[j] = ON_PATH;
            path.push(j);
            match local[j] {
                Some(k) => j = k,
                None => break ENDS,
            }
        };
        for p in path.drain(..) {
            state[p] = outcome;
        }
    }
    local
        .iter()
        .zip(&state)
        .map(|(&l, &s)| if s == ENDS { l } else { None })
        .collect()
}

/// Values of one column written once each, in order of first use; rows refer to them: `0` a new
/// value (the next in `lens`/`bytes`), `i + 1` the `i`-th value. Unique values (request ids) cost a
/// zero byte each, repeated ones (routes, methods) a small index.
#[derive(Default)]
struct DistinctWriter {
    ids: DictMap<Vec<u8>, u32>,
    refs: Vec<u8>,
    lens: Vec<u8>,
    bytes: Vec<u8>,
}

impl DistinctWriter {
    fn push(&mut self, v: &[u8]) {
        if let Some(&i) = self.ids.get(v) {
            put_uvarint(&mut self.refs, u64::from(i) + 1);
            return;
        }
        self.ids.insert(v.to_vec(), self.ids.len() as u32);
        self.refs.push(0);
        put_uvarint(&mut self.lens, v.len() as u64);
        self.bytes.extend_from_slice(v);
    }

    fn raw_len(&self) -> usize {
        self.refs.len() + self.lens.len() + self.bytes.len()
    }

    fn finish(self, out: &mut Vec<Vec<u8>>) {
        out.extend([self.refs, self.lens, self.bytes]);
    }
}

fn utf8(b: &[u8]) -> DecodeResult<String> {
    std::str::from_utf8(b)
        .map(String::from)
        .map_err(|_| DecodeError("invalid UTF-8"))
}

/// The values of one attribute key, by kind.
#[derive(Default)]
struct ValueColumnWriter {
    tags: Vec<u8>,
    strings: DistinctWriter,
    ints: Vec<u8>,
    doubles: Vec<u8>,
    nested: Vec<u8>,
}

impl ValueColumnWriter {
    fn push(&mut self, v: &Value) {
        match v {
            Value::Empty => self.tags.push(TAG_EMPTY),
            Value::Str(s) => {
                self.tags.push(TAG_STR);
                self.strings.push(s.as_bytes());
            }
            Value::Int(i) => {
                self.tags.push(TAG_INT);
                put_varint(&mut self.ints, *i);
            }
            Value::Double(f) => {
                self.tags.push(TAG_DOUBLE);
                self.doubles.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            Value::Bool(b) => self.tags.push(if *b { TAG_TRUE } else { TAG_FALSE }),
            Value::Bytes(_) | Value::Array(_) | Value::KvList(_) => {
                self.tags.push(TAG_NESTED);
                put_value(&mut self.nested, v);
            }
        }
    }

    fn raw_len(&self) -> usize {
        self.tags.len()
            + self.strings.raw_len()
            + self.ints.len()
            + self.doubles.len()
            + self.nested.len()
    }

    fn finish(self, out: &mut Vec<Vec<u8>>) {
        out.push(self.tags);
        self.strings.finish(out);
        out.extend([self.ints, self.doubles, self.nested]);
    }
}

/// The attributes of one kind of owner (spans, events or links): per owner its keys in order (which
/// keeps order and duplicates), and a value column per key.
///
/// Version 2 writes each owner's keys as a list of key ids. Version 3 learns, per context (a span's
/// resource, which the reader knows from the span's position; one context for all events, one for
/// all links), an order in which the context's owners set their keys, as instrumented code sets them
/// in the same order every time; an owner whose keys follow that order is written as a bitmap over
/// it, a bit per key of the context, and any other owner as its list, as in version 2.
#[derive(Default)]
struct AttrsWriter {
    key_ids: DictMap<String, u32>,
    keys: Vec<u8>,
    /// Per owner: its context, and the end of its key ids in `ids`.
    owners: Vec<(u32, u32)>,
    ids: Vec<u32>,
    columns: Vec<ValueColumnWriter>,
}

impl AttrsWriter {
    fn push(&mut self, context: u32, attrs: &[KeyValue]) {
        for kv in attrs {
            let id = match self.key_ids.get(kv.key.as_str()) {
                Some(&id) => id,
                None => {
                    let id = self.columns.len() as u32;
                    self.key_ids.insert(kv.key.clone(), id);
                    crate::encoding::put_str(&mut self.keys, &kv.key);
                    self.columns.push(ValueColumnWriter::default());
                    id
                }
            };
            self.ids.push(id);
            self.columns[id as usize].push(&kv.value);
        }
        self.owners.push((context, self.ids.len() as u32));
    }

    fn raw_len(&self) -> usize {
        self.keys.len()
            + self.owners.len()
            + self.ids.len()
            + self
                .columns
                .iter()
                .map(ValueColumnWriter::raw_len)
                .sum::<usize>()
    }

    /// The key ids of each owner, in owner order.
    fn lists(&self) -> impl Iterator<Item = &[u32]> + '_ {
        let mut start = 0;
        self.owners.iter().map(move |&(_, end)| {
            let list = &self.ids[start as usize..end as usize];
            start = end;
            list
        })
    }

    /// Version 2's list column: per owner, the number of its keys and their ids.
    fn explicit_lists(&self) -> Vec<u8> {
        let mut lists = Vec::with_capacity(self.owners.len() + self.ids.len());
        for list in self.lists() {
            put_explicit(&mut lists, list);
        }
        lists
    }

    /// Version 3's columns: the learned orders (their count, then per order its context, length
    /// and key ids), the per-owner shapes (`0` and the explicit list, or `1` for a bitmap over the
    /// order of the owner's context), and the bitmaps, `⌈len / 8⌉` bytes each, least significant
    /// bit first.
    fn shaped_lists(&self) -> [Vec<u8>; 3] {
        let mut context_order: DictMap<u32, usize> = DictMap::default();
        let mut contexts: Vec<u32> = Vec::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        for (o, &(context, _)) in self.owners.iter().enumerate() {
            let c = *context_order.entry(context).or_insert_with(|| {
                contexts.push(context);
                members.push(Vec::new());
                members.len() - 1
            });
            members[c].push(o);
        }
        let lists: Vec<&[u32]> = self.lists().collect();
        let mut orders_col = Vec::new();
        put_uvarint(&mut orders_col, members.len() as u64);
        // Per owner: the order its bitmap is over and where the bitmap is in `bits`.
        let mut shaped: Vec<Option<(usize, usize)>> = vec![None; self.owners.len()];
        let mut bits = Vec::new();
        let mut position = vec![u32::MAX; self.columns.len()];
        let mut widths = Vec::with_capacity(members.len());
        for (c, owners) in members.iter().enumerate() {
            let order = learn_order(owners.iter().map(|&o| lists[o]), self.columns.len());
            put_uvarint(&mut orders_col, u64::from(contexts[c]));
            put_uvarint(&mut orders_col, order.len() as u64);
            for (i, &k) in order.iter().enumerate() {
                put_uvarint(&mut orders_col, u64::from(k));
                position[k as usize] = i as u32;
            }
            let width = order.len().div_ceil(8);
            widths.push(width);
            for &o in owners {
                let list = lists[o];
                let follows = list
                    .windows(2)
                    .all(|w| position[w[0] as usize] < position[w[1] as usize]);
                if !follows || 1 + width > explicit_len(list) {
                    continue;
                }
                let at = bits.len();
                bits.resize(at + width, 0u8);
                for &k in list {
                    let i = position[k as usize] as usize;
                    bits[at + i / 8] |= 1 << (i % 8);
                }
                shaped[o] = Some((c, at));
            }
            for &k in &order {
                position[k as usize] = u32::MAX;
            }
        }
        let mut shapes = Vec::with_capacity(self.owners.len());
        let mut bitmaps = Vec::with_capacity(bits.len());
        for (o, list) in lists.iter().enumerate() {
            match shaped[o] {
                Some((c, at)) => {
                    shapes.push(SHAPE_BITMAP);
                    bitmaps.extend_from_slice(&bits[at..at + widths[c]]);
                }
                None => {
                    shapes.push(SHAPE_LIST);
                    put_explicit(&mut shapes, list);
                }
            }
        }
        [orders_col, shapes, bitmaps]
    }

    fn finish(self, out: &mut Vec<Vec<u8>>, key_orders: bool) {
        let mut keys = Vec::with_capacity(self.keys.len() + 4);
        put_uvarint(&mut keys, self.columns.len() as u64);
        keys.extend_from_slice(&self.keys);
        out.push(keys);
        if key_orders {
            out.extend(self.shaped_lists());
        } else {
            out.push(self.explicit_lists());
        }
        for c in self.columns {
            c.finish(out);
        }
    }
}

/// Version 3's shapes of an owner's keys: its list follows, or its bitmap is in the bitmap column.
const SHAPE_LIST: u8 = 0;
const SHAPE_BITMAP: u8 = 1;

fn put_explicit(out: &mut Vec<u8>, list: &[u32]) {
    put_uvarint(out, list.len() as u64);
    for &k in list {
        put_uvarint(out, u64::from(k));
    }
}

fn uvarint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Bytes of an explicit list in version 3: its shape, its length and its ids.
fn explicit_len(list: &[u32]) -> usize {
    1 + uvarint_len(list.len() as u64)
        + list
            .iter()
            .map(|&k| uvarint_len(u64::from(k)))
            .sum::<usize>()
}

/// An order of the keys in `lists` (ids below `keys`) that as many lists as possible follow. Each
/// list's consecutive keys are an edge, weighted by how many lists have it; the next key is always
/// one that the fewest lists want after a key still unplaced (none, where the lists agree: a
/// topological order), the key seen first among equals. Where lists disagree, the order the
/// majority follows wins, and the lists it contradicts are written explicitly.
fn learn_order<'a>(lists: impl Iterator<Item = &'a [u32]>, keys: usize) -> Vec<u32> {
    use std::cmp::Reverse;
    const UNSEEN: u32 = u32::MAX;
    let mut rank = vec![UNSEEN; keys];
    let mut by_rank: Vec<u32> = Vec::new();
    let mut edges: DictMap<(u32, u32), u32> = DictMap::default();
    for list in lists {
        let mut previous = None;
        for &k in list {
            if rank[k as usize] == UNSEEN {
                rank[k as usize] = by_rank.len() as u32;
                by_rank.push(k);
            }
            let r = rank[k as usize];
            if let Some(p) = previous.filter(|&p| p != r) {
                *edges.entry((p, r)).or_default() += 1;
            }
            previous = Some(r);
        }
    }
    let n = by_rank.len();
    let mut successors: Vec<Vec<(u32, u32)>> = vec![Vec::new(); n];
    let mut wanted_after = vec![0u64; n];
    for (&(p, r), &count) in &edges {
        successors[p as usize].push((r, count));
        wanted_after[r as usize] += u64::from(count);
    }
    // Entries go stale when their key is placed or its weight drops; the current one is checked.
    let mut next: std::collections::BinaryHeap<Reverse<(u64, u32)>> = (0..n as u32)
        .map(|r| Reverse((wanted_after[r as usize], r)))
        .collect();
    let mut placed = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse((weight, r))) = next.pop() {
        if placed[r as usize] || weight != wanted_after[r as usize] {
            continue;
        }
        placed[r as usize] = true;
        order.push(by_rank[r as usize]);
        for &(s, count) in &successors[r as usize] {
            if !placed[s as usize] {
                wanted_after[s as usize] -= u64::from(count);
                next.push(Reverse((wanted_after[s as usize], s)));
            }
        }
    }
    order
}

/// The columns of a row group as they are written: compressed one by one, behind a table of their
/// lengths.
fn seal(columns: Vec<Vec<u8>>, level: i32) -> std::io::Result<Vec<u8>> {
    let mut table = Vec::with_capacity(columns.len() * 4 + 4);
    let mut body = Vec::new();
    put_uvarint(&mut table, columns.len() as u64);
    for c in &columns {
        put_uvarint(&mut table, c.len() as u64);
        let z = if c.len() >= MIN_COMPRESSED_COLUMN {
            Some(zstd::bulk::compress(c, level)?).filter(|z| z.len() < c.len())
        } else {
            None
        };
        // Stored length, shifted left once; the low bit says whether it is compressed.
        match z {
            Some(z) => {
                put_uvarint(&mut table, ((z.len() as u64) << 1) | 1);
                body.extend_from_slice(&z);
            }
            None => {
                put_uvarint(&mut table, (c.len() as u64) << 1);
                body.extend_from_slice(c);
            }
        }
    }
    table.extend_from_slice(&body);
    Ok(table)
}

/// Writes consecutive traces into one row group.
#[derive(Default)]
pub(crate) struct RowGroupWriter {
    traces: usize,
    /// Per trace: resource groups; per group: resource (index into the block's table), scope groups;
    /// per scope group: scope, spans.
    trace_batches: Vec<u8>,
    batches: Vec<u8>,
    scopes: DistinctWriter,
    scope_spans: Vec<u8>,
    span_ids: Vec<u8>,
    parents: Vec<u8>,
    parent_raw: Vec<u8>,
    trace_states: DistinctWriter,
    flags: Vec<u8>,
    names: DistinctWriter,
    kind_status: Vec<u8>,
    status_messages: DistinctWriter,
    starts: Vec<u8>,
    durations: Vec<u8>,
    dropped: Vec<u8>,
    span_attrs: AttrsWriter,
    event_counts: Vec<u8>,
    event_times: Vec<u8>,
    event_names: DistinctWriter,
    event_dropped: Vec<u8>,
    event_attrs: AttrsWriter,
    link_counts: Vec<u8>,
    link_ids: Vec<u8>,
    link_states: DistinctWriter,
    link_flags: Vec<u8>,
    link_dropped: Vec<u8>,
    link_attrs: AttrsWriter,
    /// Span id → position in the trace being added, to write parents as positions.
    positions: DictMap<SpanId, usize>,
    scratch: Vec<u8>,
    /// Version 3: attribute keys as bitmaps over learned orders (see [`AttrsWriter`]).
    key_orders: bool,
}

impl RowGroupWriter {
    /// A writer of version 3 (`key_orders`) or version 2.
    pub fn new(key_orders: bool) -> RowGroupWriter {
        RowGroupWriter {
            key_orders,
            ..RowGroupWriter::default()
        }
    }

    pub fn traces(&self) -> usize {
        self.traces
    }

    /// Uncompressed bytes so far.
    pub fn raw_len(&self) -> usize {
        let columns = [
            self.trace_batches.len(),
            self.batches.len(),
            self.scope_spans.len(),
            self.span_ids.len(),
            self.parents.len(),
            self.parent_raw.len(),
            self.flags.len(),
            self.kind_status.len(),
            self.starts.len(),
            self.durations.len(),
            self.dropped.len(),
            self.event_counts.len(),
            self.event_times.len(),
            self.event_dropped.len(),
            self.link_counts.len(),
            self.link_ids.len(),
            self.link_flags.len(),
            self.link_dropped.len(),
            self.scopes.raw_len(),
            self.trace_states.raw_len(),
            self.names.raw_len(),
            self.status_messages.raw_len(),
            self.event_names.raw_len(),
            self.link_states.raw_len(),
            self.span_attrs.raw_len(),
            self.event_attrs.raw_len(),
            self.link_attrs.raw_len(),
        ];
        columns.iter().sum()
    }

    /// Adds a trace; `base` is its earliest span start (span starts are written relative to it) and
    /// `resource` gives a resource's index in the block's table.
    pub fn add(
        &mut self,
        trace: &Trace,
        base: u64,
        resource: &mut dyn FnMut(&Arc<Resource>) -> u32,
    ) {
        self.traces += 1;
        self.positions.clear();
        let spans: Vec<&Span> = trace.spans().map(|(_, _, s)| s).collect();
        for (i, s) in spans.iter().enumerate() {
            self.positions.entry(s.span_id).or_insert(i);
        }
        let local: Vec<Option<usize>> = spans
            .iter()
            .map(|s| {
                let id = <SpanId>::try_from(s.parent_span_id.as_slice()).ok()?;
                self.positions.get(&id).copied()
            })
            .collect();
        // A child starts near its parent: relative to it, starts are a few bits shorter per level.
        for (i, anchor) in anchors(&local).into_iter().enumerate() {
            let start = spans[i].start_time_unix_nano;
            match anchor {
                Some(k) => put_varint(
                    &mut self.starts,
                    start.wrapping_sub(spans[k].start_time_unix_nano) as i64,
                ),
                None => put_uvarint(&mut self.starts, start.wrapping_sub(base)),
            }
        }
        let mut local = local.into_iter();
        put_uvarint(&mut self.trace_batches, trace.batches.len() as u64);
        for rs in &trace.batches {
            let resource = resource(&rs.resource);
            put_uvarint(&mut self.batches, u64::from(resource));
            put_uvarint(&mut self.batches, rs.scope_spans.len() as u64);
            for ss in &rs.scope_spans {
                self.scratch.clear();
                put_scope(&mut self.scratch, &ss.scope);
                self.scopes.push(&self.scratch);
                put_uvarint(&mut self.scope_spans, ss.spans.len() as u64);
                for s in &ss.spans {
                    self.add_span(s, resource, local.next().flatten());
                }
            }
        }
    }

    /// Adds a span of `resource` whose parent is the span at `local` in the trace, if it is there.
    fn add_span(&mut self, s: &Span, resource: u32, local: Option<usize>) {
        self.span_ids.extend_from_slice(&s.span_id);
        match local {
            _ if s.parent_span_id.is_empty() => put_uvarint(&mut self.parents, PARENT_NONE),
            Some(i) => put_uvarint(&mut self.parents, PARENT_LOCAL + i as u64),
            None => {
                put_uvarint(&mut self.parents, PARENT_RAW);
                put_bytes(&mut self.parent_raw, &s.parent_span_id);
            }
        }
        self.trace_states.push(s.trace_state.as_bytes());
        put_uvarint(&mut self.flags, u64::from(s.flags));
        self.names.push(s.name.as_bytes());
        self.kind_status
            .push(s.kind as u8 | ((s.status_code as u8) << 4));
        self.status_messages.push(s.status_message.as_bytes());
        put_uvarint(
            &mut self.durations,
            s.end_time_unix_nano.wrapping_sub(s.start_time_unix_nano),
        );
        for n in [
            s.dropped_attributes_count,
            s.dropped_events_count,
            s.dropped_links_count,
        ] {
            put_uvarint(&mut self.dropped, u64::from(n));
        }
        self.span_attrs.push(resource, &s.attributes);
        put_uvarint(&mut self.event_counts, s.events.len() as u64);
        for e in &s.events {
            put_varint(
                &mut self.event_times,
                e.time_unix_nano.wrapping_sub(s.start_time_unix_nano) as i64,
            );
            self.event_names.push(e.name.as_bytes());
            put_uvarint(
                &mut self.event_dropped,
                u64::from(e.dropped_attributes_count),
            );
            self.event_attrs.push(0, &e.attributes);
        }
        put_uvarint(&mut self.link_counts, s.links.len() as u64);
        for l in &s.links {
            put_bytes(&mut self.link_ids, &l.trace_id);
            put_bytes(&mut self.link_ids, &l.span_id);
            self.link_states.push(l.trace_state.as_bytes());
            put_uvarint(&mut self.link_flags, u64::from(l.flags));
            put_uvarint(
                &mut self.link_dropped,
                u64::from(l.dropped_attributes_count),
            );
            self.link_attrs.push(0, &l.attributes);
        }
    }

    /// The row group's bytes, leaving an empty writer of the same version in its place.
    pub fn finish_and_restart(&mut self, level: i32) -> std::io::Result<Vec<u8>> {
        let next = RowGroupWriter::new(self.key_orders);
        std::mem::replace(self, next).finish(level)
    }

    /// The row group's bytes: its column table, then the columns.
    fn finish(self, level: i32) -> std::io::Result<Vec<u8>> {
        let mut c = Vec::with_capacity(64);
        c.extend([self.trace_batches, self.batches]);
        self.scopes.finish(&mut c);
        c.extend([
            self.scope_spans,
            self.span_ids,
            self.parents,
            self.parent_raw,
        ]);
        self.trace_states.finish(&mut c);
        c.push(self.flags);
        self.names.finish(&mut c);
        c.push(self.kind_status);
        self.status_messages.finish(&mut c);
        c.extend([self.starts, self.durations, self.dropped]);
        self.span_attrs.finish(&mut c, self.key_orders);
        c.extend([self.event_counts, self.event_times]);
        self.event_names.finish(&mut c);
        c.push(self.event_dropped);
        self.event_attrs.finish(&mut c, self.key_orders);
        c.extend([self.link_counts, self.link_ids]);
        self.link_states.finish(&mut c);
        c.extend([self.link_flags, self.link_dropped]);
        self.link_attrs.finish(&mut c, self.key_orders);
        seal(c, level)
    }
}

enum Parent {
    None,
    Raw(u32),
    Local(u32),
}

/// The spans of trace `t` of a row group: `[first, end)`.
fn span_range(
    trace_batches: &[u32],
    batch_groups: &[u32],
    group_spans: &[u32],
    t: usize,
) -> (usize, usize) {
    let first_group = batch_groups[trace_batches[t] as usize] as usize;
    let end_group = batch_groups[trace_batches[t + 1] as usize] as usize;
    (
        group_spans[first_group] as usize,
        group_spans[end_group] as usize,
    )
}

/// Turns the start column of one trace (zigzag deltas to the parent's start for anchored spans, see
/// [`anchors`]; offsets from the trace start for the others) into offsets from the trace start.
fn relative_starts_to_base(parents: &[Parent], starts: &mut [u64]) {
    let local: Vec<Option<usize>> = parents
        .iter()
        .map(|p| match *p {
            Parent::Local(k) if (k as usize) < parents.len() => Some(k as usize),
            _ => None,
        })
        .collect();
    let anchors = anchors(&local);
    let mut done = vec![false; starts.len()];
    let mut path = Vec::new();
    for i in 0..starts.len() {
        // Anchored chains end at an unanchored span (that is what anchoring requires).
        let mut j = i;
        while !done[j] {
            match anchors[j] {
                Some(k) => {
                    path.push(j);
                    j = k;
                }
                None => done[j] = true,
            }
        }
        while let Some(x) = path.pop() {
            let parent = anchors[x].unwrap_or(x);
            starts[x] = starts[parent].wrapping_add(unzigzag(starts[x]) as u64);
            done[x] = true;
        }
    }
}

/// Reads `n` uvarint counts into running offsets (`n + 1` of them).
fn offsets(d: &mut Decoder<'_>, n: usize) -> DecodeResult<Vec<u32>> {
    let mut out = Vec::with_capacity(n + 1);
    let mut at = 0u32;
    out.push(0);
    for _ in 0..n {
        let c = u32::try_from(d.uvarint()?).map_err(|_| DecodeError("count out of range"))?;
        at = at.checked_add(c).ok_or(DecodeError("count out of range"))?;
        out.push(at);
    }
    Ok(out)
}

fn whole(d: Decoder<'_>) -> DecodeResult<()> {
    if d.is_empty() {
        Ok(())
    } else {
        Err(DecodeError("trailing bytes in a column"))
    }
}

/// A row group's columns as stored, each decompressed when it is first read: a search that checks
/// a few columns leaves the others compressed.
struct Columns {
    sealed: Vec<u8>,
    /// Per column: its raw length, where it is in `sealed`, and whether it is compressed.
    parts: Vec<(usize, std::ops::Range<usize>, bool)>,
    decompressed: Vec<std::sync::OnceLock<DecodeResult<Vec<u8>>>>,
}

impl Columns {
    fn open(sealed: &[u8]) -> DecodeResult<Columns> {
        let mut d = Decoder::new(sealed);
        let n = d.uvarint()? as usize;
        let mut lens = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let raw = d.uvarint()?;
            let stored = d.uvarint()?;
            if raw > MAX_COLUMN_BYTES || stored >> 1 > MAX_COLUMN_BYTES {
                return Err(DecodeError("column too long"));
            }
            lens.push((raw as usize, (stored >> 1) as usize, stored & 1 == 1));
        }
        let mut parts = Vec::with_capacity(lens.len());
        for (raw, stored, compressed) in lens {
            let at = d.position();
            d.bytes(stored)?;
            if !compressed && raw != stored {
                return Err(DecodeError("stored column length mismatch"));
            }
            parts.push((raw, at..at + stored, compressed));
        }
        if !d.is_empty() {
            return Err(DecodeError("trailing bytes after the columns"));
        }
        Ok(Columns {
            sealed: sealed.to_vec(),
            decompressed: parts.iter().map(|_| std::sync::OnceLock::new()).collect(),
            parts,
        })
    }

    fn len(&self) -> usize {
        self.parts.len()
    }

    /// Column `i`'s length once decompressed.
    fn raw_len(&self, i: usize) -> DecodeResult<usize> {
        self.parts
            .get(i)
            .map(|p| p.0)
            .ok_or(DecodeError("missing column"))
    }

    fn get(&self, i: usize) -> DecodeResult<&[u8]> {
        let (raw, range, compressed) = self.parts.get(i).ok_or(DecodeError("missing column"))?;
        let stored = &self.sealed[range.clone()];
        if !compressed {
            return Ok(stored);
        }
        let column = self.decompressed[i].get_or_init(|| {
            let c = zstd::bulk::decompress(stored, *raw)
                .map_err(|_| DecodeError("column does not decompress"))?;
            if c.len() != *raw {
                return Err(DecodeError("column length mismatch"));
            }
            Ok(c)
        });
        column.as_deref().map_err(Clone::clone)
    }

    /// The three columns of a distinct column starting at `i`.
    fn distinct(&self, i: usize) -> DecodeResult<DistinctCursor<'_>> {
        Ok(DistinctCursor::new([
            self.get(i)?,
            self.get(i + 1)?,
            self.get(i + 2)?,
        ]))
    }

    fn decoder(&self, i: usize) -> DecodeResult<Decoder<'_>> {
        Ok(Decoder::new(self.get(i)?))
    }

    /// Bytes held: the stored columns, and each at its decompressed length (whether it is yet).
    fn memory_bytes(&self) -> usize {
        self.sealed.len() + self.parts.iter().map(|p| p.0 + 24).sum::<usize>()
    }
}

/// A [`DistinctWriter`] column read row by row. Values are located as they are first met, so a
/// row can be skipped without copying its value.
struct DistinctCursor<'a> {
    refs: Decoder<'a>,
    lens: Decoder<'a>,
    bytes: &'a [u8],
    /// Value `i` is `bytes[starts[i]..starts[i + 1]]`.
    starts: Vec<u32>,
}

impl<'a> DistinctCursor<'a> {
    /// The reference, length and byte columns.
    fn new([refs, lens, bytes]: [&'a [u8]; 3]) -> DistinctCursor<'a> {
        DistinctCursor {
            refs: Decoder::new(refs),
            lens: Decoder::new(lens),
            bytes,
            starts: vec![0],
        }
    }

    fn next(&mut self) -> DecodeResult<&'a [u8]> {
        Ok(self.next_indexed()?.1)
    }

    /// The next row's value and its index among the column's distinct values.
    fn next_indexed(&mut self) -> DecodeResult<(usize, &'a [u8])> {
        let x = self.refs.uvarint()?;
        let known = self.starts.len() as u64 - 1;
        let i = if x == 0 {
            let at = u64::from(self.starts[self.starts.len() - 1]);
            let end = at
                .checked_add(self.lens.uvarint()?)
                .filter(|&e| e <= self.bytes.len() as u64)
                .ok_or(DecodeError("distinct value outside its column"))?;
            self.starts.push(end as u32);
            known
        } else if x <= known {
            x - 1
        } else {
            return Err(DecodeError("distinct value index out of range"));
        } as usize;
        Ok((
            i,
            &self.bytes[self.starts[i] as usize..self.starts[i + 1] as usize],
        ))
    }

    fn string(&mut self) -> DecodeResult<String> {
        utf8(self.next()?)
    }

    fn skip(&mut self, rows: usize) -> DecodeResult<()> {
        for _ in 0..rows {
            self.next()?;
        }
        Ok(())
    }
}

fn skip_uvarints(d: &mut Decoder<'_>, n: usize) -> DecodeResult<()> {
    for _ in 0..n {
        d.uvarint()?;
    }
    Ok(())
}

/// Sums the next `n` counts of a column.
fn sum_counts(d: &mut Decoder<'_>, n: usize) -> DecodeResult<usize> {
    let mut total = 0usize;
    for _ in 0..n {
        let c = usize::try_from(d.uvarint()?).map_err(|_| DecodeError("count out of range"))?;
        total = total
            .checked_add(c)
            .ok_or(DecodeError("count out of range"))?;
    }
    Ok(total)
}

/// The seven columns of one attribute key's values (see [`ValueColumnWriter`]), read in row order.
struct ValueCursor<'a> {
    tags: &'a [u8],
    row: usize,
    strings: DistinctCursor<'a>,
    ints: Decoder<'a>,
    doubles: Decoder<'a>,
    nested: Decoder<'a>,
}

impl<'a> ValueCursor<'a> {
    /// The seven columns starting at `columns[at]`.
    fn new(columns: &'a Columns, at: usize) -> DecodeResult<ValueCursor<'a>> {
        Ok(ValueCursor {
            tags: columns.get(at)?,
            row: 0,
            strings: columns.distinct(at + 1)?,
            ints: columns.decoder(at + 4)?,
            doubles: columns.decoder(at + 5)?,
            nested: columns.decoder(at + 6)?,
        })
    }

    fn tag(&mut self) -> DecodeResult<u8> {
        let t = *self
            .tags
            .get(self.row)
            .ok_or(DecodeError("attribute column length mismatch"))?;
        self.row += 1;
        Ok(t)
    }

    fn next(&mut self) -> DecodeResult<Value> {
        Ok(match self.tag()? {
            TAG_EMPTY => Value::Empty,
            TAG_STR => Value::Str(self.strings.string()?),
            TAG_INT => Value::Int(self.ints.varint()?),
            TAG_DOUBLE => Value::Double(f64::from_bits(self.doubles.u64_le()?)),
            TAG_FALSE => Value::Bool(false),
            TAG_TRUE => Value::Bool(true),
            TAG_NESTED => get_value(&mut self.nested, 1)?,
            _ => return Err(DecodeError("unknown attribute value tag")),
        })
    }

    fn skip(&mut self) -> DecodeResult<()> {
        match self.tag()? {
            TAG_EMPTY | TAG_FALSE | TAG_TRUE => {}
            TAG_STR => {
                self.strings.next()?;
            }
            TAG_INT => {
                self.ints.uvarint()?;
            }
            TAG_DOUBLE => {
                self.doubles.u64_le()?;
            }
            TAG_NESTED => {
                get_value(&mut self.nested, 1)?;
            }
            _ => return Err(DecodeError("unknown attribute value tag")),
        }
        Ok(())
    }
}

/// Where the columns of one kind of attributes (see [`AttrsWriter`]) are in a row group.
struct AttrsLayout {
    keys: Vec<String>,
    /// Version 3: the learned order of keys (ids into `keys`) of each context; `None` in version 2.
    orders: Option<DictMap<u32, Vec<u32>>>,
    /// Index of the list (version 3: shape) column; in version 3 the bitmap column follows.
    lists: usize,
    /// Index of the first value column; seven per key.
    values: usize,
}

impl AttrsLayout {
    /// Reads the key column at `columns[at]` (and version 3's orders after it); returns the layout
    /// and the index after its columns.
    fn read(columns: &Columns, at: usize, key_orders: bool) -> DecodeResult<(AttrsLayout, usize)> {
        let mut d = columns.decoder(at)?;
        let n = d.uvarint()? as usize;
        let mut keys = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            keys.push(d.str()?.to_owned());
        }
        whole(d)?;
        let (orders, lists, values) = if key_orders {
            let mut d = columns.decoder(at + 1)?;
            let count = d.uvarint()? as usize;
            let mut orders = DictMap::default();
            for _ in 0..count {
                let context = u32::try_from(d.uvarint()?)
                    .map_err(|_| DecodeError("key order context out of range"))?;
                let len = d.uvarint()? as usize;
                if len > keys.len() {
                    return Err(DecodeError("key order longer than its keys"));
                }
                let order = (0..len)
                    .map(|_| match d.uvarint()? {
                        k if (k as usize) < keys.len() => Ok(k as u32),
                        _ => Err(DecodeError("attribute key out of range")),
                    })
                    .collect::<DecodeResult<Vec<u32>>>()?;
                if orders.insert(context, order).is_some() {
                    return Err(DecodeError("two key orders for one context"));
                }
            }
            whole(d)?;
            (Some(orders), at + 2, at + 4)
        } else {
            (None, at + 1, at + 2)
        };
        let end = values + keys.len() * 7;
        if end > columns.len() {
            return Err(DecodeError("missing column"));
        }
        Ok((
            AttrsLayout {
                keys,
                orders,
                lists,
                values,
            },
            end,
        ))
    }

    fn cursor<'a>(&'a self, columns: &'a Columns) -> DecodeResult<AttrsCursor<'a>> {
        Ok(AttrsCursor {
            keys: &self.keys,
            orders: self.orders.as_ref(),
            lists: columns.decoder(self.lists)?,
            bitmaps: match self.orders {
                Some(_) => columns.decoder(self.lists + 1)?,
                None => Decoder::new(&[]),
            },
            values: (0..self.keys.len())
                .map(|k| ValueCursor::new(columns, self.values + k * 7))
                .collect::<DecodeResult<_>>()?,
            owner_keys: Vec::new(),
        })
    }
}

/// The attributes of one kind of owner, read owner by owner.
struct AttrsCursor<'a> {
    keys: &'a [String],
    orders: Option<&'a DictMap<u32, Vec<u32>>>,
    lists: Decoder<'a>,
    bitmaps: Decoder<'a>,
    values: Vec<ValueCursor<'a>>,
    /// The next owner's key ids, in its order.
    owner_keys: Vec<u32>,
}

impl<'a> AttrsCursor<'a> {
    /// Reads the key ids of the next owner, of `context`, into `owner_keys`.
    fn next_keys(&mut self, context: u32) -> DecodeResult<()> {
        self.owner_keys.clear();
        let shape = match self.orders {
            Some(_) => self.lists.u8()?,
            None => SHAPE_LIST,
        };
        if shape == SHAPE_LIST {
            let m = self.lists.uvarint()? as usize;
            for _ in 0..m {
                match self.lists.uvarint()? {
                    k if (k as usize) < self.keys.len() => self.owner_keys.push(k as u32),
                    _ => return Err(DecodeError("attribute key out of range")),
                }
            }
            return Ok(());
        }
        if shape != SHAPE_BITMAP {
            return Err(DecodeError("unknown key shape"));
        }
        let order = self
            .orders
            .and_then(|o| o.get(&context))
            .ok_or(DecodeError("no key order for a bitmap's context"))?;
        let bits = self.bitmaps.bytes(order.len().div_ceil(8))?;
        for (byte_at, &byte) in bits.iter().enumerate() {
            let mut byte = byte;
            while byte != 0 {
                let i = byte_at * 8 + byte.trailing_zeros() as usize;
                let &k = order
                    .get(i)
                    .ok_or(DecodeError("key bitmap past its order"))?;
                self.owner_keys.push(k);
                byte &= byte - 1;
            }
        }
        Ok(())
    }

    fn next(&mut self, context: u32) -> DecodeResult<Vec<KeyValue>> {
        self.next_keys(context)?;
        let mut out = Vec::with_capacity(self.owner_keys.len());
        for &k in &self.owner_keys {
            out.push(KeyValue {
                key: self.keys[k as usize].clone(),
                value: self.values[k as usize].next()?,
            });
        }
        Ok(out)
    }

    /// Passes over owners, one per context given.
    fn skip(&mut self, contexts: impl Iterator<Item = u32>) -> DecodeResult<()> {
        for context in contexts {
            self.next_keys(context)?;
            for &k in &self.owner_keys {
                self.values[k as usize].skip()?;
            }
        }
        Ok(())
    }
}

/// Column indices of the fixed part of a row group, in writing order (see [`RowGroupWriter::finish`]).
const COL_TRACE_BATCHES: usize = 0;
const COL_BATCHES: usize = 1;
const COL_SCOPES: usize = 2;
const COL_SCOPE_SPANS: usize = 5;
const COL_SPAN_IDS: usize = 6;
const COL_PARENTS: usize = 7;
const COL_PARENT_RAW: usize = 8;
const COL_TRACE_STATES: usize = 9;
const COL_FLAGS: usize = 12;
const COL_NAMES: usize = 13;
const COL_KIND_STATUS: usize = 16;
const COL_STATUS_MESSAGES: usize = 17;
const COL_STARTS: usize = 20;
const COL_DURATIONS: usize = 21;
const COL_DROPPED: usize = 22;
const COL_SPAN_ATTRS: usize = 23;
/// After the span attributes: counts, times, names (3), dropped, then the event attributes.
const EVENT_COLUMNS: usize = 6;
/// After the event attributes: counts, ids, trace states (3), flags, dropped, then the link
/// attributes.
const LINK_COLUMNS: usize = 7;

/// A row group whose columns are decompressed but not decoded. Only the few columns that say which
/// spans belong to which trace are decoded on open; reading traces walks every column once, in
/// order, skipping the rows of the traces not asked for and materializing the others, so a lookup
/// of one trace builds only that trace's spans.
pub(crate) struct RowGroup {
    columns: Columns,
    trace_batches: Vec<u32>,
    batch_resources: Vec<Arc<Resource>>,
    /// Per resource group, its resource's index in the block: the context of its spans' keys.
    batch_resource_ids: Vec<u32>,
    /// Per resource group, its first span; then the number of spans.
    batch_spans: Vec<u32>,
    batch_groups: Vec<u32>,
    /// Per scope group, its scope (an index into `scopes`).
    group_scopes: Vec<u32>,
    scopes: Vec<Scope>,
    group_spans: Vec<u32>,
    span_attrs: AttrsLayout,
    /// Index of the event-count column.
    events: usize,
    event_attrs: AttrsLayout,
    /// Index of the link-count column.
    links: usize,
    link_attrs: AttrsLayout,
}

/// One trace to read from a row group: its position there, its id and its earliest span start.
pub(crate) struct TraceAt {
    pub position: usize,
    pub trace_id: TraceId,
    pub base: u64,
}

impl RowGroup {
    /// Opens a row group of `traces` traces; resources resolve into the block's `resources`.
    pub fn open(
        sealed: &[u8],
        traces: usize,
        resources: &[Arc<Resource>],
        key_orders: bool,
    ) -> DecodeResult<RowGroup> {
        let columns = Columns::open(sealed)?;
        if columns.len() < COL_SPAN_ATTRS + 2 {
            return Err(DecodeError("missing column"));
        }
        let parse_offsets = |i: usize, n: usize| {
            let mut d = columns.decoder(i)?;
            let v = offsets(&mut d, n)?;
            whole(d)?;
            Ok::<_, DecodeError>(v)
        };
        let trace_batches = parse_offsets(COL_TRACE_BATCHES, traces)?;
        let n_batches = *trace_batches.last().unwrap_or(&0) as usize;
        let mut d = columns.decoder(COL_BATCHES)?;
        let mut batch_resources = Vec::with_capacity(n_batches);
        let mut batch_resource_ids = Vec::with_capacity(n_batches);
        let mut batch_groups = vec![0u32];
        for _ in 0..n_batches {
            let id = d.uvarint()?;
            let r = resources
                .get(id as usize)
                .ok_or(DecodeError("resource index out of range"))?;
            batch_resources.push(r.clone());
            batch_resource_ids.push(id as u32);
            let n = u32::try_from(d.uvarint()?).map_err(|_| DecodeError("count out of range"))?;
            let last = *batch_groups.last().unwrap_or(&0);
            batch_groups.push(
                last.checked_add(n)
                    .ok_or(DecodeError("count out of range"))?,
            );
        }
        whole(d)?;
        let n_groups = *batch_groups.last().unwrap_or(&0) as usize;
        let mut scope_cursor = columns.distinct(COL_SCOPES)?;
        let mut scopes = Vec::new();
        let mut group_scopes = Vec::with_capacity(n_groups);
        for _ in 0..n_groups {
            let (i, bytes) = scope_cursor.next_indexed()?;
            if i == scopes.len() {
                scopes.push(get_scope(&mut Decoder::new(bytes))?);
            }
            group_scopes.push(i as u32);
        }
        let group_spans = parse_offsets(COL_SCOPE_SPANS, n_groups)?;
        let spans = *group_spans.last().unwrap_or(&0) as usize;
        let batch_spans = batch_groups
            .iter()
            .map(|&g| group_spans[g as usize])
            .collect();
        if columns.raw_len(COL_SPAN_IDS)? != spans * 8 {
            return Err(DecodeError("span id column length mismatch"));
        }
        if columns.raw_len(COL_KIND_STATUS)? != spans {
            return Err(DecodeError("kind column length mismatch"));
        }
        let (span_attrs, events) = AttrsLayout::read(&columns, COL_SPAN_ATTRS, key_orders)?;
        let (event_attrs, links) = AttrsLayout::read(&columns, events + EVENT_COLUMNS, key_orders)?;
        let (link_attrs, end) = AttrsLayout::read(&columns, links + LINK_COLUMNS, key_orders)?;
        if end != columns.len() {
            return Err(DecodeError("unexpected column"));
        }
        Ok(RowGroup {
            columns,
            trace_batches,
            batch_resources,
            batch_resource_ids,
            batch_spans,
            batch_groups,
            group_scopes,
            scopes,
            group_spans,
            span_attrs,
            events,
            event_attrs,
            links,
            link_attrs,
        })
    }

    pub fn len(&self) -> usize {
        self.trace_batches.len() - 1
    }

    /// Bytes held in memory, for a cache's budget.
    pub fn memory_bytes(&self) -> usize {
        self.columns.memory_bytes()
            + (self.trace_batches.len() + self.batch_groups.len() + self.group_spans.len()) * 4
            + self.batch_resources.len() * 16
            + self.group_scopes.len() * 4
    }

    fn span_range(&self, t: usize) -> (usize, usize) {
        span_range(
            &self.trace_batches,
            &self.batch_groups,
            &self.group_spans,
            t,
        )
    }

    /// For each trace at `positions` (ascending), whether each of `filters` holds, all its
    /// conditions on one span, for some span of the trace: read from the name, kind and status,
    /// and duration columns and the spans' resources, without materializing spans.
    /// `resource_ok[f][r]` says whether the block's resource `r` meets filter `f`'s resource
    /// conditions.
    pub fn traces_with_spans(
        &self,
        positions: &[usize],
        filters: &[Vec<SpanCondition>],
        resource_ok: &[Vec<bool>],
    ) -> DecodeResult<Vec<bool>> {
        let c = &self.columns;
        let mut names = c.distinct(COL_NAMES)?;
        let mut durations = c.decoder(COL_DURATIONS)?;
        let kind_status = c.get(COL_KIND_STATUS)?;
        let mut resources = ResourceWalk {
            group: self,
            batch: 0,
        };
        let mut at = 0;
        let mut out = Vec::with_capacity(positions.len());
        let mut met = vec![false; filters.len()];
        for &t in positions {
            if t >= self.len() {
                return Err(DecodeError("trace outside its row group"));
            }
            let (first, end) = self.span_range(t);
            let skipped = first
                .checked_sub(at)
                .ok_or(DecodeError("traces out of order"))?;
            names.skip(skipped)?;
            skip_uvarints(&mut durations, skipped)?;
            met.fill(false);
            for span in first..end {
                let (_, name) = names.next_indexed()?;
                // As the span model reads it: an end before the start is a duration of 0.
                let duration = match durations.uvarint()? {
                    d if d > i64::MAX as u64 => 0,
                    d => d,
                };
                let ks = *kind_status
                    .get(span)
                    .ok_or(DecodeError("kind column length mismatch"))?;
                let resource = resources.of(span) as usize;
                for (f, filter) in filters.iter().enumerate() {
                    met[f] = met[f]
                        || filter.iter().all(|cond| match cond {
                            SpanCondition::Name { equal, name: n } => {
                                (name == n.as_bytes()) == *equal
                            }
                            SpanCondition::Status { equal, code } => {
                                (ks >> 4 == *code as u8) == *equal
                            }
                            SpanCondition::Kind { equal, kind } => {
                                (ks & 0x0f == *kind as u8) == *equal
                            }
                            SpanCondition::Duration { min, max } => {
                                (*min..=*max).contains(&duration)
                            }
                            SpanCondition::Resource { .. } => {
                                resource_ok[f].get(resource).copied().unwrap_or(false)
                            }
                        });
                }
            }
            at = end;
            out.push(met.iter().all(|&m| m));
        }
        Ok(out)
    }

    /// Materializes the traces asked for, which must be in ascending position order.
    pub fn traces(&self, wanted: &[TraceAt]) -> DecodeResult<Vec<Trace>> {
        let mut cursor = SpanCursor::new(self)?;
        let mut out = Vec::with_capacity(wanted.len());
        let mut last = None;
        for w in wanted {
            if w.position >= self.len() || last.is_some_and(|l| l >= w.position) {
                return Err(DecodeError("trace outside its row group"));
            }
            last = Some(w.position);
            let t = w.position;
            let (first, end) = self.span_range(t);
            cursor.skip(first - cursor.at)?;
            let mut spans = cursor.read(end - first, w.trace_id, w.base)?.into_iter();
            let (b0, b1) = (
                self.trace_batches[t] as usize,
                self.trace_batches[t + 1] as usize,
            );
            let mut batches = Vec::with_capacity(b1 - b0);
            for b in b0..b1 {
                let (g0, g1) = (
                    self.batch_groups[b] as usize,
                    self.batch_groups[b + 1] as usize,
                );
                let mut scope_spans = Vec::with_capacity(g1 - g0);
                for g in g0..g1 {
                    let n = (self.group_spans[g + 1] - self.group_spans[g]) as usize;
                    scope_spans.push(ScopeSpans {
                        scope: self.scopes[self.group_scopes[g] as usize].clone(),
                        spans: spans.by_ref().take(n).collect(),
                    });
                }
                batches.push(ResourceSpans {
                    resource: self.batch_resources[b].clone(),
                    scope_spans,
                });
            }
            out.push(Trace {
                trace_id: w.trace_id,
                batches,
            });
        }
        Ok(out)
    }
}

/// The resource of each span of a row group, asked for in ascending span order.
struct ResourceWalk<'a> {
    group: &'a RowGroup,
    batch: usize,
}

impl ResourceWalk<'_> {
    /// The block's index of the resource of span `span`, which is not before the last one asked.
    fn of(&mut self, span: usize) -> u32 {
        let starts = &self.group.batch_spans;
        while self.batch + 1 < starts.len() - 1 && starts[self.batch + 1] as usize <= span {
            self.batch += 1;
        }
        // No resource group at all (a row group without spans) names no context.
        self.group
            .batch_resource_ids
            .get(self.batch)
            .copied()
            .unwrap_or(u32::MAX)
    }
}

/// Every per-span, per-event and per-link column of a row group, read forward in span order.
struct SpanCursor<'a> {
    /// The next span's position in the row group.
    at: usize,
    resources: ResourceWalk<'a>,
    span_ids: &'a [u8],
    kind_status: &'a [u8],
    parents: Decoder<'a>,
    parent_raw: Decoder<'a>,
    trace_states: DistinctCursor<'a>,
    flags: Decoder<'a>,
    names: DistinctCursor<'a>,
    status_messages: DistinctCursor<'a>,
    starts: Decoder<'a>,
    durations: Decoder<'a>,
    dropped: Decoder<'a>,
    span_attrs: AttrsCursor<'a>,
    event_counts: Decoder<'a>,
    event_times: Decoder<'a>,
    event_names: DistinctCursor<'a>,
    event_dropped: Decoder<'a>,
    event_attrs: AttrsCursor<'a>,
    link_counts: Decoder<'a>,
    link_ids: Decoder<'a>,
    link_states: DistinctCursor<'a>,
    link_flags: Decoder<'a>,
    link_dropped: Decoder<'a>,
    link_attrs: AttrsCursor<'a>,
}

impl<'a> SpanCursor<'a> {
    fn new(group: &'a RowGroup) -> DecodeResult<SpanCursor<'a>> {
        let c = &group.columns;
        let (e, l) = (group.events, group.links);
        Ok(SpanCursor {
            at: 0,
            resources: ResourceWalk { group, batch: 0 },
            span_ids: c.get(COL_SPAN_IDS)?,
            kind_status: c.get(COL_KIND_STATUS)?,
            parents: c.decoder(COL_PARENTS)?,
            parent_raw: c.decoder(COL_PARENT_RAW)?,
            trace_states: c.distinct(COL_TRACE_STATES)?,
            flags: c.decoder(COL_FLAGS)?,
            names: c.distinct(COL_NAMES)?,
            status_messages: c.distinct(COL_STATUS_MESSAGES)?,
            starts: c.decoder(COL_STARTS)?,
            durations: c.decoder(COL_DURATIONS)?,
            dropped: c.decoder(COL_DROPPED)?,
            span_attrs: group.span_attrs.cursor(c)?,
            event_counts: c.decoder(e)?,
            event_times: c.decoder(e + 1)?,
            event_names: c.distinct(e + 2)?,
            event_dropped: c.decoder(e + 5)?,
            event_attrs: group.event_attrs.cursor(c)?,
            link_counts: c.decoder(l)?,
            link_ids: c.decoder(l + 1)?,
            link_states: c.distinct(l + 2)?,
            link_flags: c.decoder(l + 5)?,
            link_dropped: c.decoder(l + 6)?,
            link_attrs: group.link_attrs.cursor(c)?,
        })
    }

    /// Passes over the next `n` spans, their events and links.
    fn skip(&mut self, n: usize) -> DecodeResult<()> {
        for _ in 0..n {
            if self.parents.uvarint()? == PARENT_RAW {
                self.parent_raw.len_bytes()?;
            }
        }
        self.trace_states.skip(n)?;
        skip_uvarints(&mut self.flags, n)?;
        self.names.skip(n)?;
        self.status_messages.skip(n)?;
        skip_uvarints(&mut self.starts, n)?;
        skip_uvarints(&mut self.durations, n)?;
        skip_uvarints(&mut self.dropped, n * 3)?;
        let resources = &mut self.resources;
        self.span_attrs
            .skip((self.at..self.at + n).map(|i| resources.of(i)))?;
        let events = sum_counts(&mut self.event_counts, n)?;
        skip_uvarints(&mut self.event_times, events)?;
        self.event_names.skip(events)?;
        skip_uvarints(&mut self.event_dropped, events)?;
        self.event_attrs.skip(std::iter::repeat_n(0, events))?;
        let links = sum_counts(&mut self.link_counts, n)?;
        for _ in 0..links {
            self.link_ids.len_bytes()?;
            self.link_ids.len_bytes()?;
        }
        self.link_states.skip(links)?;
        skip_uvarints(&mut self.link_flags, links)?;
        skip_uvarints(&mut self.link_dropped, links)?;
        self.link_attrs.skip(std::iter::repeat_n(0, links))?;
        self.at += n;
        Ok(())
    }

    fn span_id(&self, i: usize) -> SpanId {
        let mut id = [0u8; 8];
        id.copy_from_slice(&self.span_ids[i * 8..i * 8 + 8]);
        id
    }

    /// Materializes the next `n` spans: all the spans of one trace, whose earliest starts at `base`.
    fn read(&mut self, n: usize, trace_id: TraceId, base: u64) -> DecodeResult<Vec<Span>> {
        let first = self.at;
        if first + n > self.kind_status.len() {
            return Err(DecodeError("trace outside its row group"));
        }
        let mut parents = Vec::with_capacity(n);
        let mut raw = Vec::new();
        for _ in 0..n {
            parents.push(match self.parents.uvarint()? {
                PARENT_NONE => Parent::None,
                PARENT_RAW => {
                    raw.push(self.parent_raw.len_bytes()?);
                    Parent::Raw(raw.len() as u32 - 1)
                }
                i => Parent::Local(
                    u32::try_from(i - PARENT_LOCAL)
                        .map_err(|_| DecodeError("parent out of range"))?,
                ),
            });
        }
        let mut starts = (0..n)
            .map(|_| self.starts.uvarint())
            .collect::<DecodeResult<Vec<u64>>>()?;
        relative_starts_to_base(&parents, &mut starts);
        let mut out = Vec::with_capacity(n);
        for (i, parent) in parents.iter().enumerate() {
            let at = first + i;
            let parent_span_id = match *parent {
                Parent::None => Vec::new(),
                Parent::Raw(r) => raw[r as usize].to_vec(),
                Parent::Local(k) if (k as usize) < n => self.span_id(first + k as usize).to_vec(),
                Parent::Local(_) => return Err(DecodeError("parent outside its trace")),
            };
            let start = base.wrapping_add(starts[i]);
            let trace_state = self.trace_states.string()?;
            let flags = u32::try_from(self.flags.uvarint()?)
                .map_err(|_| DecodeError("value out of range"))?;
            let name = self.names.string()?;
            let status_message = self.status_messages.string()?;
            let duration = self.durations.uvarint()?;
            let mut dropped = [0u32; 3];
            for d in &mut dropped {
                *d = u32::try_from(self.dropped.uvarint()?)
                    .map_err(|_| DecodeError("value out of range"))?;
            }
            let attributes = self.span_attrs.next(self.resources.of(at))?;
            let events = (0..self.event_counts.uvarint()?)
                .map(|_| self.event(start))
                .collect::<DecodeResult<Vec<_>>>()?;
            let links = (0..self.link_counts.uvarint()?)
                .map(|_| self.link())
                .collect::<DecodeResult<Vec<_>>>()?;
            let ks = self.kind_status[at];
            out.push(Span {
                trace_id,
                span_id: self.span_id(at),
                parent_span_id,
                trace_state,
                flags,
                name,
                kind: SpanKind::from_i32(i32::from(ks & 0x0f)),
                start_time_unix_nano: start,
                end_time_unix_nano: start.wrapping_add(duration),
                attributes,
                dropped_attributes_count: dropped[0],
                events,
                dropped_events_count: dropped[1],
                links,
                dropped_links_count: dropped[2],
                status_code: StatusCode::from_i32(i32::from(ks >> 4)),
                status_message,
            });
        }
        self.at += n;
        Ok(out)
    }

    fn event(&mut self, span_start: u64) -> DecodeResult<Event> {
        let time = span_start.wrapping_add(self.event_times.varint()? as u64);
        Ok(Event {
            time_unix_nano: time,
            name: self.event_names.string()?,
            dropped_attributes_count: u32::try_from(self.event_dropped.uvarint()?)
                .map_err(|_| DecodeError("value out of range"))?,
            attributes: self.event_attrs.next(0)?,
        })
    }

    fn link(&mut self) -> DecodeResult<Link> {
        let trace_id = self.link_ids.len_bytes()?.to_vec();
        let span_id = self.link_ids.len_bytes()?.to_vec();
        Ok(Link {
            trace_id,
            span_id,
            trace_state: self.link_states.string()?,
            flags: u32::try_from(self.link_flags.uvarint()?)
                .map_err(|_| DecodeError("value out of range"))?,
            dropped_attributes_count: u32::try_from(self.link_dropped.uvarint()?)
                .map_err(|_| DecodeError("value out of range"))?,
            attributes: self.link_attrs.next(0)?,
        })
    }
}

/// Adds the raw and stored bytes of each column of a sealed row group to `out`, by column name (an
/// attribute key's seven columns under one name). For the size breakdown of a block.
pub(crate) fn add_column_sizes(
    sealed: &[u8],
    key_orders: bool,
    out: &mut std::collections::BTreeMap<String, (u64, u64)>,
) -> DecodeResult<()> {
    let columns = Columns::open(sealed)?;
    let table = columns.parts.first().map_or(sealed.len(), |p| p.1.start) as u64;
    let lens = columns
        .parts
        .iter()
        .map(|(raw, stored, _)| (*raw as u64, stored.len() as u64));
    let mut names: Vec<String> = [
        "trace resource groups",
        "resource groups",
        "scopes",
        "scopes",
        "scopes",
        "scope span counts",
        "span ids",
        "parents",
        "parents given in full",
        "trace states",
        "trace states",
        "trace states",
        "flags",
        "names",
        "names",
        "names",
        "kind and status",
        "status messages",
        "status messages",
        "status messages",
        "starts",
        "durations",
        "dropped counts",
    ]
    .map(String::from)
    .into();
    let attrs = |names: &mut Vec<String>, owner: &str| -> DecodeResult<()> {
        let (layout, _) = AttrsLayout::read(&columns, names.len(), key_orders)?;
        let parts: &[&str] = if key_orders {
            &["names", "orders", "shapes", "bitmaps"]
        } else {
            &["names", "lists"]
        };
        names.extend(parts.iter().map(|p| format!("{owner} keys: {p}")));
        for k in &layout.keys {
            names.extend(std::iter::repeat_n(format!("{owner} attribute {k}"), 7));
        }
        Ok(())
    };
    attrs(&mut names, "span")?;
    names.extend(
        [
            "event counts",
            "event times",
            "event names",
            "event names",
            "event names",
            "event dropped counts",
        ]
        .map(String::from),
    );
    attrs(&mut names, "event")?;
    names.extend(
        [
            "link counts",
            "link ids",
            "link trace states",
            "link trace states",
            "link trace states",
            "link flags",
            "link dropped counts",
        ]
        .map(String::from),
    );
    attrs(&mut names, "link")?;
    if names.len() != columns.len() {
        return Err(DecodeError("unexpected column"));
    }
    for (name, (raw, stored)) in names.into_iter().zip(lens) {
        let e = out.entry(name).or_default();
        e.0 += raw;
        e.1 += stored;
    }
    let e = out.entry("column tables".into()).or_default();
    e.0 += table;
    e.1 += table;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::model::tests::{batch, span};
    use super::super::model::Trace;
    use super::super::SpanCondition;
    use super::{learn_order, RowGroup, RowGroupWriter, COL_NAMES, COL_SPAN_ATTRS};

    #[test]
    fn a_span_check_decompresses_only_the_columns_it_reads() {
        let trace = Trace {
            trace_id: [7; 16],
            batches: vec![batch(
                "svc",
                (1..=40u8)
                    .map(|i| span(7, i, None, &format!("op-{}", i % 3), 1_000, 100))
                    .collect(),
            )],
        };
        let mut resources = Vec::new();
        let mut writer = RowGroupWriter::new(true);
        writer.add(&trace, 1_000, &mut |r| {
            resources.push(r.clone());
            0
        });
        let sealed = writer.finish_and_restart(3).unwrap();
        let group = RowGroup::open(&sealed, 1, &resources[..1], true).unwrap();
        let decompressed = |g: &RowGroup| -> Vec<usize> {
            (0..g.columns.len())
                .filter(|&i| g.columns.decompressed[i].get().is_some())
                .collect()
        };
        let before = decompressed(&group);
        let filter = vec![SpanCondition::Name {
            equal: true,
            name: "op-2".into(),
        }];
        assert_eq!(
            group
                .traces_with_spans(&[0], &[filter], &[vec![true]])
                .unwrap(),
            [true]
        );
        let after = decompressed(&group);
        assert!(after.len() > before.len(), "{before:?} → {after:?}");
        assert!(after.iter().all(|&i| i < COL_SPAN_ATTRS), "{after:?}");
        assert!(!before.contains(&COL_NAMES));
        // Reading the trace decompresses what it needs, and gives it back whole.
        let read = group
            .traces(&[super::TraceAt {
                position: 0,
                trace_id: [7; 16],
                base: 1_000,
            }])
            .unwrap();
        assert_eq!(read[0].batches, trace.batches);
        assert!(decompressed(&group).iter().any(|&i| i > COL_SPAN_ATTRS));
    }

    #[test]
    fn learned_order_is_one_every_list_follows() {
        let lists: [&[u32]; 4] = [&[0, 2, 5], &[1, 2, 3], &[0, 1, 4, 5], &[3, 4]];
        let order = learn_order(lists.iter().copied(), 6);
        let at = |k: u32| order.iter().position(|&o| o == k).unwrap();
        for list in lists {
            assert!(list.windows(2).all(|w| at(w[0]) < at(w[1])), "{order:?}");
        }
        assert_eq!(order.len(), 6);
    }

    #[test]
    fn lists_that_disagree_keep_the_order_first_seen() {
        let lists: [&[u32]; 3] = [&[2, 0, 1], &[1, 0], &[0, 3]];
        assert_eq!(learn_order(lists.iter().copied(), 4), [2, 0, 1, 3]);
    }
}
