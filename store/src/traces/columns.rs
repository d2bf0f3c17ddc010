//! Block format version 2's data: consecutive traces form a row group, and a row group is a set of
//! columns — one per span intrinsic, one per attribute key (for span, event and link attributes
//! apart) — each compressed with zstd on its own. Values of one kind side by side (span ids with span
//! ids, durations with durations, `user.id`s with `user.id`s) compress far better than rows that mix
//! them. Every field of the span model round-trips, attribute order and duplicate keys included. The
//! layout is drawn in `docs/formats.md` ("Trace blocks", version 2).

use std::sync::Arc;

use crate::encoding::{
    put_bytes, put_uvarint, put_varint, unzigzag, DecodeError, DecodeResult, Decoder,
};

use super::block::DictMap;
use super::model::{
    get_scope, get_value, put_scope, put_value, Event, KeyValue, Link, Resource, ResourceSpans,
    ScopeSpans, Span, SpanId, SpanKind, StatusCode, Trace, TraceId, Value,
};

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

/// A decoded [`DistinctWriter`] column: per row, the index of its value; the values stay in one
/// buffer (and strings are checked when materialized), so decoding a row group allocates per column,
/// not per value.
struct Distinct {
    rows: Vec<u32>,
    /// Value `i` is `bytes[starts[i]..starts[i + 1]]`.
    starts: Vec<u32>,
    bytes: Vec<u8>,
}

impl Distinct {
    fn read(columns: &mut Columns, rows: usize) -> DecodeResult<Distinct> {
        let (refs, lens, bytes) = (columns.next()?, columns.next()?, columns.next()?);
        let (mut r, mut l) = (Decoder::new(&refs), Decoder::new(&lens));
        let mut out = Distinct {
            rows: Vec::with_capacity(rows),
            starts: vec![0],
            bytes: Vec::new(),
        };
        let mut at = 0u64;
        for _ in 0..rows {
            let x = r.uvarint()?;
            let known = out.starts.len() as u64 - 1;
            if x == 0 {
                at = at
                    .checked_add(l.uvarint()?)
                    .filter(|&a| a <= bytes.len() as u64)
                    .ok_or(DecodeError("distinct value outside its column"))?;
                out.starts.push(at as u32);
                out.rows.push(known as u32);
            } else if x <= known {
                out.rows.push((x - 1) as u32);
            } else {
                return Err(DecodeError("distinct value index out of range"));
            }
        }
        if !(r.is_empty() && l.is_empty() && at == bytes.len() as u64) {
            return Err(DecodeError("trailing bytes in a distinct-value column"));
        }
        out.bytes = bytes;
        Ok(out)
    }

    fn value(&self, i: u32) -> &[u8] {
        let i = i as usize;
        &self.bytes[self.starts[i] as usize..self.starts[i + 1] as usize]
    }

    fn get(&self, row: usize) -> &[u8] {
        self.value(self.rows[row])
    }

    fn string(&self, row: usize) -> DecodeResult<String> {
        utf8(self.get(row))
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

/// A decoded value, resolved against its column when materialized.
#[derive(Clone, Copy)]
enum Cell {
    Empty,
    Str(u32),
    Int(i64),
    Double(u64),
    Bool(bool),
    /// Offset of a row-wise encoded value in the column's `nested` stream.
    Nested(u32),
}

struct ValueColumn {
    cells: Vec<Cell>,
    strings: Distinct,
    nested: Vec<u8>,
}

impl ValueColumn {
    fn read(columns: &mut Columns, rows: usize) -> DecodeResult<ValueColumn> {
        let tags = columns.next()?;
        if tags.len() != rows {
            return Err(DecodeError("attribute column length mismatch"));
        }
        let n_strings = tags.iter().filter(|&&t| t == TAG_STR).count();
        let strings = Distinct::read(columns, n_strings)?;
        let (ints, doubles, nested) = (columns.next()?, columns.next()?, columns.next()?);
        let (mut i, mut d, mut n) = (
            Decoder::new(&ints),
            Decoder::new(&doubles),
            Decoder::new(&nested),
        );
        let mut next_string = strings.rows.iter();
        let mut cells = Vec::with_capacity(rows);
        for &t in &tags {
            cells.push(match t {
                TAG_EMPTY => Cell::Empty,
                TAG_STR => Cell::Str(*next_string.next().ok_or(DecodeError("missing string"))?),
                TAG_INT => Cell::Int(i.varint()?),
                TAG_DOUBLE => Cell::Double(d.u64_le()?),
                TAG_FALSE => Cell::Bool(false),
                TAG_TRUE => Cell::Bool(true),
                TAG_NESTED => {
                    let at = n.position() as u32;
                    get_value(&mut n, 1)?;
                    Cell::Nested(at)
                }
                _ => return Err(DecodeError("unknown attribute value tag")),
            });
        }
        if !(i.is_empty() && d.is_empty() && n.is_empty()) {
            return Err(DecodeError("trailing bytes in an attribute column"));
        }
        Ok(ValueColumn {
            cells,
            strings,
            nested,
        })
    }

    fn value(&self, row: usize) -> DecodeResult<Value> {
        Ok(match self.cells[row] {
            Cell::Empty => Value::Empty,
            Cell::Str(i) => Value::Str(utf8(self.strings.value(i))?),
            Cell::Int(i) => Value::Int(i),
            Cell::Double(b) => Value::Double(f64::from_bits(b)),
            Cell::Bool(b) => Value::Bool(b),
            Cell::Nested(at) => get_value(&mut Decoder::new(&self.nested[at as usize..]), 1)?,
        })
    }
}

/// The attributes of one kind of owner (spans, events or links): per owner the list of its keys in
/// order (which keeps order and duplicates), and a value column per key.
#[derive(Default)]
struct AttrsWriter {
    key_ids: DictMap<String, u32>,
    keys: Vec<u8>,
    lists: Vec<u8>,
    columns: Vec<ValueColumnWriter>,
}

impl AttrsWriter {
    fn push(&mut self, attrs: &[KeyValue]) {
        put_uvarint(&mut self.lists, attrs.len() as u64);
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
            put_uvarint(&mut self.lists, u64::from(id));
            self.columns[id as usize].push(&kv.value);
        }
    }

    fn raw_len(&self) -> usize {
        self.keys.len()
            + self.lists.len()
            + self
                .columns
                .iter()
                .map(ValueColumnWriter::raw_len)
                .sum::<usize>()
    }

    fn finish(self, out: &mut Vec<Vec<u8>>) {
        let mut keys = Vec::with_capacity(self.keys.len() + 4);
        put_uvarint(&mut keys, self.columns.len() as u64);
        keys.extend_from_slice(&self.keys);
        out.extend([keys, self.lists]);
        for c in self.columns {
            c.finish(out);
        }
    }
}

struct Attrs {
    keys: Vec<String>,
    /// Per owner, where its entries start (one more than there are owners).
    offsets: Vec<u32>,
    /// Per attribute: its key and its row in that key's column.
    entries: Vec<(u32, u32)>,
    columns: Vec<ValueColumn>,
}

impl Attrs {
    fn read(columns: &mut Columns, owners: usize) -> DecodeResult<Attrs> {
        let keys_col = columns.next()?;
        let mut d = Decoder::new(&keys_col);
        let n = d.uvarint()? as usize;
        let mut keys = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            keys.push(d.str()?.to_owned());
        }
        let lists = columns.next()?;
        let mut d = Decoder::new(&lists);
        let mut offsets = Vec::with_capacity(owners + 1);
        let mut entries = Vec::new();
        let mut rows = vec![0u32; keys.len()];
        offsets.push(0);
        for _ in 0..owners {
            let m = d.uvarint()?;
            for _ in 0..m {
                let k = d.uvarint()?;
                let row = rows
                    .get_mut(k as usize)
                    .ok_or(DecodeError("attribute key out of range"))?;
                entries.push((k as u32, *row));
                *row += 1;
            }
            offsets.push(entries.len() as u32);
        }
        if !d.is_empty() {
            return Err(DecodeError("trailing bytes in an attribute list"));
        }
        let columns = rows
            .iter()
            .map(|&r| ValueColumn::read(columns, r as usize))
            .collect::<DecodeResult<Vec<_>>>()?;
        Ok(Attrs {
            keys,
            offsets,
            entries,
            columns,
        })
    }

    fn get(&self, owner: usize) -> DecodeResult<Vec<KeyValue>> {
        let (a, b) = (
            self.offsets[owner] as usize,
            self.offsets[owner + 1] as usize,
        );
        self.entries[a..b]
            .iter()
            .map(|&(k, row)| {
                Ok(KeyValue {
                    key: self.keys[k as usize].clone(),
                    value: self.columns[k as usize].value(row as usize)?,
                })
            })
            .collect()
    }
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

/// The columns of a row group being read, in writing order.
struct Columns(std::vec::IntoIter<Vec<u8>>);

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
        let mut out = Vec::with_capacity(lens.len());
        for (raw, stored, compressed) in lens {
            let bytes = d.bytes(stored)?;
            if !compressed {
                if raw != stored {
                    return Err(DecodeError("stored column length mismatch"));
                }
                out.push(bytes.to_vec());
                continue;
            }
            let c = zstd::bulk::decompress(bytes, raw)
                .map_err(|_| DecodeError("column does not decompress"))?;
            if c.len() != raw {
                return Err(DecodeError("column length mismatch"));
            }
            out.push(c);
        }
        if !d.is_empty() {
            return Err(DecodeError("trailing bytes after the columns"));
        }
        Ok(Columns(out.into_iter()))
    }

    fn next(&mut self) -> DecodeResult<Vec<u8>> {
        self.0.next().ok_or(DecodeError("missing column"))
    }

    /// Reads the next column whole with `f`.
    fn parse<T>(&mut self, f: impl FnOnce(&mut Decoder<'_>) -> DecodeResult<T>) -> DecodeResult<T> {
        let col = self.next()?;
        let mut d = Decoder::new(&col);
        let v = f(&mut d)?;
        whole(d)?;
        Ok(v)
    }

    /// Reads `n` counts from the next column into running offsets.
    fn offsets(&mut self, n: usize) -> DecodeResult<Vec<u32>> {
        self.parse(|d| offsets(d, n))
    }
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
}

impl RowGroupWriter {
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
            put_uvarint(&mut self.batches, u64::from(resource(&rs.resource)));
            put_uvarint(&mut self.batches, rs.scope_spans.len() as u64);
            for ss in &rs.scope_spans {
                self.scratch.clear();
                put_scope(&mut self.scratch, &ss.scope);
                self.scopes.push(&self.scratch);
                put_uvarint(&mut self.scope_spans, ss.spans.len() as u64);
                for s in &ss.spans {
                    self.add_span(s, local.next().flatten());
                }
            }
        }
    }

    /// Adds a span whose parent is the span at `local` in the trace, if it is there.
    fn add_span(&mut self, s: &Span, local: Option<usize>) {
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
        self.span_attrs.push(&s.attributes);
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
            self.event_attrs.push(&e.attributes);
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
            self.link_attrs.push(&l.attributes);
        }
    }

    /// The row group's bytes: its column table, then the columns.
    pub fn finish(self, level: i32) -> std::io::Result<Vec<u8>> {
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
        self.span_attrs.finish(&mut c);
        c.extend([self.event_counts, self.event_times]);
        self.event_names.finish(&mut c);
        c.push(self.event_dropped);
        self.event_attrs.finish(&mut c);
        c.extend([self.link_counts, self.link_ids]);
        self.link_states.finish(&mut c);
        c.extend([self.link_flags, self.link_dropped]);
        self.link_attrs.finish(&mut c);
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

fn uvarints<T: TryFrom<u64>>(col: &[u8], n: usize) -> DecodeResult<Vec<T>> {
    let mut d = Decoder::new(col);
    let v = (0..n)
        .map(|_| T::try_from(d.uvarint()?).map_err(|_| DecodeError("value out of range")))
        .collect::<DecodeResult<Vec<T>>>()?;
    if !d.is_empty() {
        return Err(DecodeError("trailing bytes in a column"));
    }
    Ok(v)
}

fn whole(d: Decoder<'_>) -> DecodeResult<()> {
    if d.is_empty() {
        Ok(())
    } else {
        Err(DecodeError("trailing bytes in a column"))
    }
}

/// A decoded row group: every column as an array, from which any of its traces is materialized.
pub(crate) struct RowGroup {
    trace_batches: Vec<u32>,
    batch_resources: Vec<Arc<Resource>>,
    batch_groups: Vec<u32>,
    group_scopes: Distinct,
    group_spans: Vec<u32>,
    span_ids: Vec<u8>,
    parents: Vec<Parent>,
    parent_raw: Vec<Vec<u8>>,
    trace_states: Distinct,
    flags: Vec<u32>,
    names: Distinct,
    kind_status: Vec<u8>,
    status_messages: Distinct,
    starts: Vec<u64>,
    durations: Vec<u64>,
    dropped: Vec<u32>,
    span_attrs: Attrs,
    span_events: Vec<u32>,
    event_times: Vec<i64>,
    event_names: Distinct,
    event_dropped: Vec<u32>,
    event_attrs: Attrs,
    span_links: Vec<u32>,
    link_ids: Vec<(Vec<u8>, Vec<u8>)>,
    link_states: Distinct,
    link_flags: Vec<u32>,
    link_dropped: Vec<u32>,
    link_attrs: Attrs,
}

impl RowGroup {
    /// Decodes a row group of `traces` traces; resources resolve into the block's `resources`.
    pub fn decode(
        sealed: &[u8],
        traces: usize,
        resources: &[Arc<Resource>],
    ) -> DecodeResult<RowGroup> {
        let mut c = Columns::open(sealed)?;
        let trace_batches = c.offsets(traces)?;
        let n_batches = *trace_batches.last().unwrap_or(&0) as usize;
        let col = c.next()?;
        let mut d = Decoder::new(&col);
        let mut batch_resources = Vec::with_capacity(n_batches);
        let mut batch_groups = vec![0u32];
        for _ in 0..n_batches {
            let r = resources
                .get(d.uvarint()? as usize)
                .ok_or(DecodeError("resource index out of range"))?;
            batch_resources.push(r.clone());
            let n = u32::try_from(d.uvarint()?).map_err(|_| DecodeError("count out of range"))?;
            let last = *batch_groups.last().unwrap_or(&0);
            batch_groups.push(
                last.checked_add(n)
                    .ok_or(DecodeError("count out of range"))?,
            );
        }
        whole(d)?;
        let n_groups = *batch_groups.last().unwrap_or(&0) as usize;
        let group_scopes = Distinct::read(&mut c, n_groups)?;
        let group_spans = c.offsets(n_groups)?;
        let spans = *group_spans.last().unwrap_or(&0) as usize;
        let span_ids = c.next()?;
        if span_ids.len() != spans * 8 {
            return Err(DecodeError("span id column length mismatch"));
        }
        let (col, raw) = (c.next()?, c.next()?);
        let (mut d, mut r) = (Decoder::new(&col), Decoder::new(&raw));
        let mut parents = Vec::with_capacity(spans);
        let mut parent_raw = Vec::new();
        for _ in 0..spans {
            parents.push(match d.uvarint()? {
                PARENT_NONE => Parent::None,
                PARENT_RAW => {
                    parent_raw.push(r.len_bytes()?.to_vec());
                    Parent::Raw(parent_raw.len() as u32 - 1)
                }
                i => Parent::Local(
                    u32::try_from(i - PARENT_LOCAL)
                        .map_err(|_| DecodeError("parent out of range"))?,
                ),
            });
        }
        whole(d)?;
        whole(r)?;
        let trace_states = Distinct::read(&mut c, spans)?;
        let flags = uvarints(&c.next()?, spans)?;
        let names = Distinct::read(&mut c, spans)?;
        let kind_status = c.next()?;
        if kind_status.len() != spans {
            return Err(DecodeError("kind column length mismatch"));
        }
        let status_messages = Distinct::read(&mut c, spans)?;
        let mut starts: Vec<u64> = uvarints(&c.next()?, spans)?;
        for t in 0..traces {
            let (first, end) = span_range(&trace_batches, &batch_groups, &group_spans, t);
            relative_starts_to_base(&parents[first..end], &mut starts[first..end]);
        }
        let durations = uvarints(&c.next()?, spans)?;
        let dropped = uvarints(&c.next()?, spans * 3)?;
        let span_attrs = Attrs::read(&mut c, spans)?;
        let span_events = c.offsets(spans)?;
        let events = *span_events.last().unwrap_or(&0) as usize;
        let event_times = c.parse(|d| (0..events).map(|_| d.varint()).collect())?;
        let event_names = Distinct::read(&mut c, events)?;
        let event_dropped = uvarints(&c.next()?, events)?;
        let event_attrs = Attrs::read(&mut c, events)?;
        let span_links = c.offsets(spans)?;
        let links = *span_links.last().unwrap_or(&0) as usize;
        let link_ids = c.parse(|d| {
            (0..links)
                .map(|_| Ok((d.len_bytes()?.to_vec(), d.len_bytes()?.to_vec())))
                .collect()
        })?;
        let link_states = Distinct::read(&mut c, links)?;
        let link_flags = uvarints(&c.next()?, links)?;
        let link_dropped = uvarints(&c.next()?, links)?;
        let link_attrs = Attrs::read(&mut c, links)?;
        if c.0.next().is_some() {
            return Err(DecodeError("unexpected column"));
        }
        Ok(RowGroup {
            trace_batches,
            batch_resources,
            batch_groups,
            group_scopes,
            group_spans,
            span_ids,
            parents,
            parent_raw,
            trace_states,
            flags,
            names,
            kind_status,
            status_messages,
            starts,
            durations,
            dropped,
            span_attrs,
            span_events,
            event_times,
            event_names,
            event_dropped,
            event_attrs,
            span_links,
            link_ids,
            link_states,
            link_flags,
            link_dropped,
            link_attrs,
        })
    }

    pub fn len(&self) -> usize {
        self.trace_batches.len() - 1
    }

    fn span_range(&self, t: usize) -> (usize, usize) {
        span_range(
            &self.trace_batches,
            &self.batch_groups,
            &self.group_spans,
            t,
        )
    }

    /// Materializes trace `t` (its position in the row group), whose earliest span starts at `base`.
    pub fn trace(&self, t: usize, trace_id: TraceId, base: u64) -> DecodeResult<Trace> {
        if t >= self.len() {
            return Err(DecodeError("trace outside its row group"));
        }
        let (first, end) = self.span_range(t);
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
                let spans = (self.group_spans[g]..self.group_spans[g + 1])
                    .map(|i| self.span(i as usize, (first, end), trace_id, base))
                    .collect::<DecodeResult<Vec<_>>>()?;
                scope_spans.push(ScopeSpans {
                    scope: get_scope(&mut Decoder::new(self.group_scopes.get(g)))?,
                    spans,
                });
            }
            batches.push(ResourceSpans {
                resource: self.batch_resources[b].clone(),
                scope_spans,
            });
        }
        Ok(Trace { trace_id, batches })
    }

    fn span_id(&self, i: usize) -> SpanId {
        let mut id = [0u8; 8];
        id.copy_from_slice(&self.span_ids[i * 8..i * 8 + 8]);
        id
    }

    fn span(
        &self,
        i: usize,
        (first, end): (usize, usize),
        trace_id: TraceId,
        base: u64,
    ) -> DecodeResult<Span> {
        let parent_span_id = match self.parents[i] {
            Parent::None => Vec::new(),
            Parent::Raw(r) => self.parent_raw[r as usize].clone(),
            Parent::Local(k) => {
                let j = first + k as usize;
                if j >= end {
                    return Err(DecodeError("parent outside its trace"));
                }
                self.span_id(j).to_vec()
            }
        };
        let start = base.wrapping_add(self.starts[i]);
        let events = (self.span_events[i]..self.span_events[i + 1])
            .map(|e| {
                let e = e as usize;
                Ok(Event {
                    time_unix_nano: start.wrapping_add(self.event_times[e] as u64),
                    name: self.event_names.string(e)?,
                    attributes: self.event_attrs.get(e)?,
                    dropped_attributes_count: self.event_dropped[e],
                })
            })
            .collect::<DecodeResult<Vec<_>>>()?;
        let links = (self.span_links[i]..self.span_links[i + 1])
            .map(|l| {
                let l = l as usize;
                Ok(Link {
                    trace_id: self.link_ids[l].0.clone(),
                    span_id: self.link_ids[l].1.clone(),
                    trace_state: self.link_states.string(l)?,
                    attributes: self.link_attrs.get(l)?,
                    dropped_attributes_count: self.link_dropped[l],
                    flags: self.link_flags[l],
                })
            })
            .collect::<DecodeResult<Vec<_>>>()?;
        let ks = self.kind_status[i];
        Ok(Span {
            trace_id,
            span_id: self.span_id(i),
            parent_span_id,
            trace_state: self.trace_states.string(i)?,
            flags: self.flags[i],
            name: self.names.string(i)?,
            kind: SpanKind::from_i32(i32::from(ks & 0x0f)),
            start_time_unix_nano: start,
            end_time_unix_nano: start.wrapping_add(self.durations[i]),
            attributes: self.span_attrs.get(i)?,
            dropped_attributes_count: self.dropped[i * 3],
            events,
            dropped_events_count: self.dropped[i * 3 + 1],
            links,
            dropped_links_count: self.dropped[i * 3 + 2],
            status_code: StatusCode::from_i32(i32::from(ks >> 4)),
            status_message: self.status_messages.string(i)?,
        })
    }
}
