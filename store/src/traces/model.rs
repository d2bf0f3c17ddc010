//! The trace data model the store keeps: OTLP's resource → scope → span nesting with every field Grafana
//! shows, in owned Rust types, and their compact binary encoding (shared by the WAL and the blocks).
//!
//! Encoding (all integers LEB128 varints unless noted, strings length-prefixed):
//! `Value` = tag byte (0 empty, 1 string, 2 int (zigzag), 3 double (8 bytes LE), 4 bool, 5 bytes,
//! 6 array, 7 key/value list) + payload; times are stored as a delta from the fragment's base time.

use std::sync::Arc;

use crate::encoding::{
    put_bytes, put_str, put_uvarint, put_varint, DecodeError, DecodeResult, Decoder,
};

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

/// Deepest nesting of array/kvlist values accepted; deeper input is refused before it is stored.
pub const MAX_VALUE_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Empty,
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    KvList(Vec<KeyValue>),
}

impl Value {
    /// Nesting depth: 1 for a scalar.
    pub fn depth(&self) -> usize {
        match self {
            Value::Array(v) => 1 + v.iter().map(Value::depth).max().unwrap_or(0),
            Value::KvList(v) => 1 + v.iter().map(|kv| kv.value.depth()).max().unwrap_or(0),
            _ => 1,
        }
    }

    /// Approximate size in bytes, for limits.
    pub fn size(&self) -> usize {
        match self {
            Value::Str(s) => s.len(),
            Value::Bytes(b) => b.len(),
            Value::Array(v) => v.iter().map(Value::size).sum(),
            Value::KvList(v) => v.iter().map(|kv| kv.key.len() + kv.value.size()).sum(),
            _ => 8,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue {
    pub key: String,
    pub value: Value,
}

impl KeyValue {
    pub fn new(key: impl Into<String>, value: Value) -> Self {
        KeyValue {
            key: key.into(),
            value,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resource {
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
    /// `ResourceSpans.schema_url`.
    pub schema_url: String,
}

impl Resource {
    pub fn service_name(&self) -> &str {
        self.attributes
            .iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| match &kv.value {
                Value::Str(s) => Some(s.as_str()),
                _ => None,
            })
            .unwrap_or("")
    }
}

/// Hashes keys and string, integer and boolean values (equal resources hash alike), so a block's
/// resource table dedupes by value with few collisions.
impl std::hash::Hash for Resource {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.schema_url.hash(state);
        for kv in &self.attributes {
            kv.key.hash(state);
            match &kv.value {
                Value::Str(s) => s.hash(state),
                Value::Int(i) => i.hash(state),
                Value::Bool(b) => b.hash(state),
                _ => {}
            }
        }
    }
}

// A resource holding a NaN double is unequal to itself; it then only misses deduplication.
impl Eq for Resource {}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scope {
    pub name: String,
    pub version: String,
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
    /// `ScopeSpans.schema_url`.
    pub schema_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum SpanKind {
    #[default]
    Unspecified = 0,
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

impl SpanKind {
    pub fn from_i32(v: i32) -> SpanKind {
        match v {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }
    /// The OTLP enum name, as Tempo's JSON and the span metrics label write it.
    pub fn otlp_name(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "SPAN_KIND_UNSPECIFIED",
            SpanKind::Internal => "SPAN_KIND_INTERNAL",
            SpanKind::Server => "SPAN_KIND_SERVER",
            SpanKind::Client => "SPAN_KIND_CLIENT",
            SpanKind::Producer => "SPAN_KIND_PRODUCER",
            SpanKind::Consumer => "SPAN_KIND_CONSUMER",
        }
    }
    /// The TraceQL keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "unspecified",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum StatusCode {
    #[default]
    Unset = 0,
    Ok = 1,
    Error = 2,
}

impl StatusCode {
    pub fn from_i32(v: i32) -> StatusCode {
        match v {
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }
    pub fn otlp_name(self) -> &'static str {
        match self {
            StatusCode::Unset => "STATUS_CODE_UNSET",
            StatusCode::Ok => "STATUS_CODE_OK",
            StatusCode::Error => "STATUS_CODE_ERROR",
        }
    }
    pub fn keyword(self) -> &'static str {
        match self {
            StatusCode::Unset => "unset",
            StatusCode::Ok => "ok",
            StatusCode::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    pub time_unix_nano: u64,
    pub name: String,
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Link {
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub trace_state: String,
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
    pub flags: u32,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// Empty for a root span, else 8 bytes.
    pub parent_span_id: Vec<u8>,
    pub trace_state: String,
    pub flags: u32,
    pub name: String,
    pub kind: SpanKind,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
    pub events: Vec<Event>,
    pub dropped_events_count: u32,
    pub links: Vec<Link>,
    pub dropped_links_count: u32,
    pub status_code: StatusCode,
    pub status_message: String,
}

impl Span {
    pub fn duration_nanos(&self) -> u64 {
        self.end_time_unix_nano
            .saturating_sub(self.start_time_unix_nano)
    }
    pub fn is_root(&self) -> bool {
        self.parent_span_id.iter().all(|&b| b == 0)
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScopeSpans {
    pub scope: Scope,
    pub spans: Vec<Span>,
}

/// Spans of one resource. Resources are shared (`Arc`) between the fragments of one ingest batch and,
/// in a block, between every trace that names the same resource.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResourceSpans {
    pub resource: Arc<Resource>,
    pub scope_spans: Vec<ScopeSpans>,
}

impl ResourceSpans {
    pub fn span_count(&self) -> usize {
        self.scope_spans.iter().map(|s| s.spans.len()).sum()
    }
}

/// Every stored span of one trace, in the resource/scope groups they arrived in.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trace {
    pub trace_id: TraceId,
    pub batches: Vec<ResourceSpans>,
}

/// What search results show of a trace without reading its spans.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TraceSummary {
    pub trace_id: TraceId,
    pub root_service_name: String,
    pub root_span_name: String,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub span_count: u32,
}

impl TraceSummary {
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }
}

impl Trace {
    pub fn spans(&self) -> impl Iterator<Item = (&Resource, &Scope, &Span)> {
        self.batches.iter().flat_map(|rs| {
            rs.scope_spans.iter().flat_map(move |ss| {
                ss.spans
                    .iter()
                    .map(move |s| (rs.resource.as_ref(), &ss.scope, s))
            })
        })
    }

    pub fn span_count(&self) -> usize {
        self.batches.iter().map(ResourceSpans::span_count).sum()
    }

    /// Root = the earliest span without a parent; with none (a partial trace), the earliest span, as
    /// Tempo names such traces by their first span too.
    pub fn summary(&self) -> TraceSummary {
        let mut s = TraceSummary {
            trace_id: self.trace_id,
            start_unix_nano: u64::MAX,
            ..Default::default()
        };
        let mut root: Option<(&Resource, &Span)> = None;
        let mut earliest: Option<(&Resource, &Span)> = None;
        for (res, _, span) in self.spans() {
            s.span_count += 1;
            s.start_unix_nano = s.start_unix_nano.min(span.start_time_unix_nano);
            s.end_unix_nano = s.end_unix_nano.max(span.end_time_unix_nano);
            let better = |cur: Option<(&Resource, &Span)>| {
                cur.is_none_or(|(_, c)| span.start_time_unix_nano < c.start_time_unix_nano)
            };
            if span.is_root() && better(root) {
                root = Some((res, span));
            }
            if better(earliest) {
                earliest = Some((res, span));
            }
        }
        if s.span_count == 0 {
            s.start_unix_nano = 0;
        }
        if let Some((res, span)) = root.or(earliest) {
            s.root_service_name = res.service_name().to_owned();
            s.root_span_name = if root.is_some() {
                span.name.clone()
            } else {
                String::new()
            };
        }
        s
    }

    /// Appends `other`'s batches, joining a batch to the last one when resource and scope are equal.
    pub fn merge(&mut self, other: Trace) {
        for rs in other.batches {
            push_batch(&mut self.batches, rs);
        }
    }

    /// Keeps only spans that overlap `[start, end]` (nanoseconds), for `start`/`end` on trace by id.
    pub fn overlaps(&self, start_ns: u64, end_ns: u64) -> bool {
        self.spans().any(|(_, _, s)| {
            s.start_time_unix_nano <= end_ns
                && s.end_time_unix_nano.max(s.start_time_unix_nano) >= start_ns
        })
    }
}

pub(crate) fn push_batch(batches: &mut Vec<ResourceSpans>, rs: ResourceSpans) {
    if let Some(last) = batches.last_mut() {
        if Arc::ptr_eq(&last.resource, &rs.resource) || last.resource == rs.resource {
            for ss in rs.scope_spans {
                match last.scope_spans.iter_mut().find(|x| x.scope == ss.scope) {
                    Some(x) => x.spans.extend(ss.spans),
                    None => last.scope_spans.push(ss),
                }
            }
            return;
        }
    }
    batches.push(rs);
}

/// Splits a batch of resource spans into one trace per trace id (in first-seen order).
pub fn group_by_trace(batch: Vec<ResourceSpans>) -> Vec<Trace> {
    let mut order: Vec<Trace> = Vec::new();
    let mut index: std::collections::HashMap<TraceId, usize> = std::collections::HashMap::new();
    for rs in batch {
        for ss in rs.scope_spans {
            let mut per_trace: Vec<(TraceId, Vec<Span>)> = Vec::new();
            for span in ss.spans {
                match per_trace.iter_mut().find(|(t, _)| *t == span.trace_id) {
                    Some((_, v)) => v.push(span),
                    None => per_trace.push((span.trace_id, vec![span])),
                }
            }
            for (tid, spans) in per_trace {
                let i = *index.entry(tid).or_insert_with(|| {
                    order.push(Trace {
                        trace_id: tid,
                        batches: Vec::new(),
                    });
                    order.len() - 1
                });
                push_batch(
                    &mut order[i].batches,
                    ResourceSpans {
                        resource: rs.resource.clone(),
                        scope_spans: vec![ScopeSpans {
                            scope: ss.scope.clone(),
                            spans,
                        }],
                    },
                );
            }
        }
    }
    order
}

// ---- encoding ----

pub(crate) fn put_value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Empty => buf.push(0),
        Value::Str(s) => {
            buf.push(1);
            put_str(buf, s);
        }
        Value::Int(i) => {
            buf.push(2);
            put_varint(buf, *i);
        }
        Value::Double(f) => {
            buf.push(3);
            buf.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::Bool(b) => {
            buf.push(4);
            buf.push(u8::from(*b));
        }
        Value::Bytes(b) => {
            buf.push(5);
            put_bytes(buf, b);
        }
        Value::Array(a) => {
            buf.push(6);
            put_uvarint(buf, a.len() as u64);
            for x in a {
                put_value(buf, x);
            }
        }
        Value::KvList(kvs) => {
            buf.push(7);
            put_attrs(buf, kvs);
        }
    }
}

fn put_attrs(buf: &mut Vec<u8>, kvs: &[KeyValue]) {
    put_uvarint(buf, kvs.len() as u64);
    for kv in kvs {
        put_str(buf, &kv.key);
        put_value(buf, &kv.value);
    }
}

pub(crate) fn get_value(d: &mut Decoder<'_>, depth: usize) -> DecodeResult<Value> {
    if depth > MAX_VALUE_DEPTH {
        return Err(DecodeError("attribute value nested too deep"));
    }
    Ok(match d.u8()? {
        0 => Value::Empty,
        1 => Value::Str(d.str()?.to_owned()),
        2 => Value::Int(d.varint()?),
        3 => Value::Double(d.f64_le()?),
        4 => Value::Bool(d.u8()? != 0),
        5 => Value::Bytes(d.len_bytes()?.to_vec()),
        6 => {
            let n = d.uvarint()? as usize;
            let mut v = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                v.push(get_value(d, depth + 1)?);
            }
            Value::Array(v)
        }
        7 => Value::KvList(get_attrs(d, depth + 1)?),
        _ => return Err(DecodeError("unknown value tag")),
    })
}

fn get_attrs(d: &mut Decoder<'_>, depth: usize) -> DecodeResult<Vec<KeyValue>> {
    let n = d.uvarint()? as usize;
    let mut v = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let key = d.str()?.to_owned();
        v.push(KeyValue {
            key,
            value: get_value(d, depth)?,
        });
    }
    Ok(v)
}

pub(crate) fn put_resource(buf: &mut Vec<u8>, r: &Resource) {
    put_attrs(buf, &r.attributes);
    put_uvarint(buf, u64::from(r.dropped_attributes_count));
    put_str(buf, &r.schema_url);
}

pub(crate) fn get_resource(d: &mut Decoder<'_>) -> DecodeResult<Resource> {
    Ok(Resource {
        attributes: get_attrs(d, 1)?,
        dropped_attributes_count: get_u32(d)?,
        schema_url: d.str()?.to_owned(),
    })
}

fn get_u32(d: &mut Decoder<'_>) -> DecodeResult<u32> {
    u32::try_from(d.uvarint()?).map_err(|_| DecodeError("count out of range"))
}

pub(crate) fn put_scope(buf: &mut Vec<u8>, s: &Scope) {
    put_str(buf, &s.name);
    put_str(buf, &s.version);
    put_attrs(buf, &s.attributes);
    put_uvarint(buf, u64::from(s.dropped_attributes_count));
    put_str(buf, &s.schema_url);
}

pub(crate) fn get_scope(d: &mut Decoder<'_>) -> DecodeResult<Scope> {
    Ok(Scope {
        name: d.str()?.to_owned(),
        version: d.str()?.to_owned(),
        attributes: get_attrs(d, 1)?,
        dropped_attributes_count: get_u32(d)?,
        schema_url: d.str()?.to_owned(),
    })
}

/// Span layout: span id (8), parent (length-prefixed), trace state, flags, name, kind, status code,
/// status message, start (delta to `base`, zigzag), duration, attributes, events (time as delta to the
/// span start), links, dropped counts. The trace id is written only when `with_trace_id` (WAL
/// records mix traces; a block stores it once per trace).
fn put_span(buf: &mut Vec<u8>, s: &Span, base: u64, with_trace_id: bool) {
    if with_trace_id {
        buf.extend_from_slice(&s.trace_id);
    }
    buf.extend_from_slice(&s.span_id);
    put_bytes(buf, &s.parent_span_id);
    put_str(buf, &s.trace_state);
    put_uvarint(buf, u64::from(s.flags));
    put_str(buf, &s.name);
    buf.push(s.kind as u8 | ((s.status_code as u8) << 4));
    put_str(buf, &s.status_message);
    put_varint(buf, s.start_time_unix_nano.wrapping_sub(base) as i64);
    put_varint(
        buf,
        s.end_time_unix_nano.wrapping_sub(s.start_time_unix_nano) as i64,
    );
    put_attrs(buf, &s.attributes);
    put_uvarint(buf, s.events.len() as u64);
    for e in &s.events {
        put_varint(
            buf,
            e.time_unix_nano.wrapping_sub(s.start_time_unix_nano) as i64,
        );
        put_str(buf, &e.name);
        put_attrs(buf, &e.attributes);
        put_uvarint(buf, u64::from(e.dropped_attributes_count));
    }
    put_uvarint(buf, s.links.len() as u64);
    for l in &s.links {
        put_bytes(buf, &l.trace_id);
        put_bytes(buf, &l.span_id);
        put_str(buf, &l.trace_state);
        put_attrs(buf, &l.attributes);
        put_uvarint(buf, u64::from(l.dropped_attributes_count));
        put_uvarint(buf, u64::from(l.flags));
    }
    put_uvarint(buf, u64::from(s.dropped_attributes_count));
    put_uvarint(buf, u64::from(s.dropped_events_count));
    put_uvarint(buf, u64::from(s.dropped_links_count));
}

fn get_span(d: &mut Decoder<'_>, base: u64, trace_id: Option<TraceId>) -> DecodeResult<Span> {
    let trace_id = match trace_id {
        Some(t) => t,
        None => fixed(d.bytes(16)?),
    };
    let span_id = fixed(d.bytes(8)?);
    let parent_span_id = d.len_bytes()?.to_vec();
    let trace_state = d.str()?.to_owned();
    let flags = get_u32(d)?;
    let name = d.str()?.to_owned();
    let ks = d.u8()?;
    let status_message = d.str()?.to_owned();
    let start = base.wrapping_add(d.varint()? as u64);
    let end = start.wrapping_add(d.varint()? as u64);
    let attributes = get_attrs(d, 1)?;
    let n = d.uvarint()? as usize;
    let mut events = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        events.push(Event {
            time_unix_nano: start.wrapping_add(d.varint()? as u64),
            name: d.str()?.to_owned(),
            attributes: get_attrs(d, 1)?,
            dropped_attributes_count: get_u32(d)?,
        });
    }
    let n = d.uvarint()? as usize;
    let mut links = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        links.push(Link {
            trace_id: d.len_bytes()?.to_vec(),
            span_id: d.len_bytes()?.to_vec(),
            trace_state: d.str()?.to_owned(),
            attributes: get_attrs(d, 1)?,
            dropped_attributes_count: get_u32(d)?,
            flags: get_u32(d)?,
        });
    }
    Ok(Span {
        trace_id,
        span_id,
        parent_span_id,
        trace_state,
        flags,
        name,
        kind: SpanKind::from_i32(i32::from(ks & 0x0f)),
        status_code: StatusCode::from_i32(i32::from(ks >> 4)),
        status_message,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes,
        events,
        links,
        dropped_attributes_count: get_u32(d)?,
        dropped_events_count: get_u32(d)?,
        dropped_links_count: get_u32(d)?,
    })
}

fn fixed<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(b);
    a
}

/// How a resource is written inside a batch: inline (WAL) or as an index into a block's resource table.
pub(crate) enum ResourceRef<'a> {
    Inline,
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "only the version 1 block writer, kept for tests, uses it"
        )
    )]
    Table(&'a mut dyn FnMut(&Arc<Resource>) -> u32),
}

/// Encodes resource span groups. `with_trace_id` is set for WAL records, which mix traces.
pub(crate) fn put_batches(
    buf: &mut Vec<u8>,
    batches: &[ResourceSpans],
    mut resources: ResourceRef<'_>,
    with_trace_id: bool,
) {
    let base = batches
        .iter()
        .flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| ss.spans.iter()))
        .map(|s| s.start_time_unix_nano)
        .min()
        .unwrap_or(0);
    put_uvarint(buf, base);
    put_uvarint(buf, batches.len() as u64);
    for rs in batches {
        match &mut resources {
            ResourceRef::Inline => put_resource(buf, &rs.resource),
            ResourceRef::Table(f) => put_uvarint(buf, u64::from(f(&rs.resource))),
        }
        put_uvarint(buf, rs.scope_spans.len() as u64);
        for ss in &rs.scope_spans {
            put_scope(buf, &ss.scope);
            put_uvarint(buf, ss.spans.len() as u64);
            for s in &ss.spans {
                put_span(buf, s, base, with_trace_id);
            }
        }
    }
}

/// Decodes [`put_batches`]. With a resource table, indices resolve into it; `trace_id` is given when
/// the spans were written without theirs.
pub(crate) fn get_batches(
    d: &mut Decoder<'_>,
    table: Option<&[Arc<Resource>]>,
    trace_id: Option<TraceId>,
) -> DecodeResult<Vec<ResourceSpans>> {
    let base = d.uvarint()?;
    let n = d.uvarint()? as usize;
    let mut out = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let resource = match table {
            None => Arc::new(get_resource(d)?),
            Some(t) => t
                .get(d.uvarint()? as usize)
                .cloned()
                .ok_or(DecodeError("resource index out of range"))?,
        };
        let ns = d.uvarint()? as usize;
        let mut scope_spans = Vec::with_capacity(ns.min(1024));
        for _ in 0..ns {
            let scope = get_scope(d)?;
            let nspans = d.uvarint()? as usize;
            let mut spans = Vec::with_capacity(nspans.min(4096));
            for _ in 0..nspans {
                spans.push(get_span(d, base, trace_id)?);
            }
            scope_spans.push(ScopeSpans { scope, spans });
        }
        out.push(ResourceSpans {
            resource,
            scope_spans,
        });
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn span(trace: u8, id: u8, parent: Option<u8>, name: &str, start: u64, dur: u64) -> Span {
        Span {
            trace_id: [trace; 16],
            span_id: [id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: name.into(),
            kind: SpanKind::Server,
            start_time_unix_nano: start,
            end_time_unix_nano: start + dur,
            attributes: vec![
                KeyValue::new("http.method", Value::Str("GET".into())),
                KeyValue::new("http.status_code", Value::Int(200)),
            ],
            events: vec![Event {
                time_unix_nano: start + 5,
                name: "ev".into(),
                attributes: vec![KeyValue::new("k", Value::Bool(true))],
                dropped_attributes_count: 1,
            }],
            links: vec![Link {
                trace_id: vec![9; 16],
                span_id: vec![8; 8],
                trace_state: "a=b".into(),
                attributes: vec![KeyValue::new("l", Value::Double(1.5))],
                dropped_attributes_count: 0,
                flags: 1,
            }],
            status_code: StatusCode::Error,
            status_message: "boom".into(),
            flags: 0x101,
            ..Default::default()
        }
    }

    pub fn batch(service: &str, spans: Vec<Span>) -> ResourceSpans {
        ResourceSpans {
            resource: Arc::new(Resource {
                attributes: vec![
                    KeyValue::new("service.name", Value::Str(service.into())),
                    KeyValue::new(
                        "nested",
                        Value::KvList(vec![KeyValue::new(
                            "a",
                            Value::Array(vec![Value::Int(-1), Value::Bytes(vec![1, 2])]),
                        )]),
                    ),
                ],
                dropped_attributes_count: 2,
                schema_url: "https://schema".into(),
            }),
            scope_spans: vec![ScopeSpans {
                scope: Scope {
                    name: "lib".into(),
                    version: "1.0".into(),
                    ..Default::default()
                },
                spans,
            }],
        }
    }

    #[test]
    fn batches_round_trip_inline_and_grouped() {
        let b = vec![
            batch(
                "a",
                vec![
                    span(1, 1, None, "root", 1000, 50),
                    span(2, 2, Some(1), "x", 900, 5),
                ],
            ),
            batch("b", vec![span(1, 3, Some(1), "child", 1010, 10)]),
        ];
        let mut buf = Vec::new();
        put_batches(&mut buf, &b, ResourceRef::Inline, true);
        let back = get_batches(&mut Decoder::new(&buf), None, None).unwrap();
        assert_eq!(back, b);
        let traces = group_by_trace(b);
        assert_eq!(traces.len(), 2);
        assert_eq!(traces[0].span_count(), 2);
        let s = traces[0].summary();
        assert_eq!(s.root_service_name, "a");
        assert_eq!(s.root_span_name, "root");
        assert_eq!((s.start_unix_nano, s.end_unix_nano), (1000, 1050));
    }

    pub fn value_strategy() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Empty),
            ".{0,12}".prop_map(Value::Str),
            any::<i64>().prop_map(Value::Int),
            any::<f64>()
                .prop_filter("NaN never equals itself", |f| !f.is_nan())
                .prop_map(Value::Double),
            any::<bool>().prop_map(Value::Bool),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec(("[a-z.]{0,6}", inner), 0..4).prop_map(|kvs| {
                    Value::KvList(kvs.into_iter().map(|(k, v)| KeyValue::new(k, v)).collect())
                }),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn any_span_round_trips(
            attrs in proptest::collection::vec(("[a-z.]{1,8}", value_strategy()), 0..6),
            start in proptest::prelude::any::<u64>(),
            dur in proptest::prelude::any::<u64>(),
            kind in 0i32..6,
            status in 0i32..3,
            parent in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..=8),
        ) {
            let mut s = span(3, 4, None, "n", start, 0);
            s.end_time_unix_nano = start.wrapping_add(dur);
            s.kind = SpanKind::from_i32(kind);
            s.status_code = StatusCode::from_i32(status);
            s.parent_span_id = parent;
            s.attributes = attrs.into_iter().map(|(k, v)| KeyValue::new(k, v)).collect();
            s.events[0].time_unix_nano = start.wrapping_sub(dur);
            let b = vec![batch("svc", vec![s])];
            let mut buf = Vec::new();
            put_batches(&mut buf, &b, ResourceRef::Inline, true);
            let back = get_batches(&mut Decoder::new(&buf), None, None).unwrap();
            proptest::prop_assert_eq!(back, b);
        }
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let b = vec![batch("a", vec![span(1, 1, None, "root", 1000, 50)])];
        let mut buf = Vec::new();
        put_batches(&mut buf, &b, ResourceRef::Inline, true);
        for cut in 0..buf.len() {
            assert!(get_batches(&mut Decoder::new(&buf[..cut]), None, None).is_err());
        }
    }
}
