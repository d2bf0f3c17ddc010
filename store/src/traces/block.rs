//! Immutable trace blocks: traces sorted by trace id, a trace-id index with a summary per trace, a
//! bloom filter on trace ids, a per-block dictionary of attribute values with postings (trace
//! ordinals) for search and autocomplete, and `meta.json`, written last so a block appears atomically.
//! Version 3 (written) keeps the spans in column-wise row groups ([`super::columns`]) with each
//! span's attribute keys as a bitmap over its resource's learned key order; version 2 (read) wrote
//! them as lists of key ids; version 1 (read) kept the spans row-wise in zstd pages. The layout is drawn in `docs/formats.md` ("Trace blocks").

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::encoding::{put_str, put_uvarint, DecodeError, DecodeResult, Decoder};
use crate::error::{Error, Result};
use crate::wal::sync_dir;

use super::columns::{add_column_sizes, RowGroup, RowGroupWriter, TraceAt};
use super::model::{
    get_batches, get_resource, put_resource, Resource, Trace, TraceId, TraceSummary, Value,
};
use super::SpanCondition;

const DATA_MAGIC: &[u8; 4] = b"STTD";
const INDEX_MAGIC: &[u8; 4] = b"STTI";
const BLOOM_MAGIC: &[u8; 4] = b"STTB";
/// The version written: spans in column-wise row groups, attribute keys as bitmaps over learned
/// orders.
pub const BLOCK_FORMAT_VERSION: u32 = 3;
/// The second version, still read: column-wise row groups, attribute keys as lists.
pub const BLOCK_FORMAT_KEY_LISTS: u32 = 2;
/// The first version, still read: spans row-wise in zstd pages.
pub const BLOCK_FORMAT_ROWS: u32 = 1;
const ZSTD_LEVEL: i32 = 3;
/// A key with more distinct values than this in one block keeps no postings (values of ids, urls...):
/// its conditions are checked on the spans instead.
const MAX_DICT_VALUES_PER_KEY: usize = 5_000;

/// Where an attribute lives, as TraceQL scopes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AttrScope {
    Resource = 0,
    Span = 1,
    /// Span intrinsics with postings: `name` (the span name) and `status` (the status code, an int).
    Intrinsic = 2,
}

/// An attribute value as the dictionary keeps it (hashable; doubles by their bits).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DictValue {
    Str(String),
    Int(i64),
    Double(u64),
    Bool(bool),
}

impl DictValue {
    pub fn from_value(v: &Value) -> Option<DictValue> {
        Some(match v {
            Value::Str(s) => DictValue::Str(s.clone()),
            Value::Int(i) => DictValue::Int(*i),
            Value::Double(f) => DictValue::Double(f.to_bits()),
            Value::Bool(b) => DictValue::Bool(*b),
            _ => return None,
        })
    }
    pub fn to_value(&self) -> Value {
        match self {
            DictValue::Str(s) => Value::Str(s.clone()),
            DictValue::Int(i) => Value::Int(*i),
            DictValue::Double(b) => Value::Double(f64::from_bits(*b)),
            DictValue::Bool(b) => Value::Bool(*b),
        }
    }
}

/// Attribute keys and their values in a block. `None` values: too many distinct values to keep.
pub type Dictionary = BTreeMap<(AttrScope, String), Option<BTreeMap<DictValue, Vec<u32>>>>;

/// The dictionary looks up every attribute key and value of every span while a block is written.
pub(super) type DictMap<K, V> = crate::hash::FastMap<K, V>;

/// The dictionary while a block is written: hash maps looked up by `&str`, so adding a span's
/// attributes allocates only for keys and values not seen before.
#[derive(Default)]
struct DictBuilder {
    keys: [DictMap<String, KeyValues>; 3],
}

#[derive(Default)]
struct KeyValues {
    /// Past [`MAX_DICT_VALUES_PER_KEY`] the key keeps no values.
    overflow: bool,
    strings: DictMap<String, Vec<u32>>,
    others: DictMap<DictValue, Vec<u32>>,
}

impl KeyValues {
    fn len(&self) -> usize {
        self.strings.len() + self.others.len()
    }
}

fn push_ordinal(p: &mut Vec<u32>, ordinal: u32) {
    if p.last() != Some(&ordinal) {
        p.push(ordinal);
    }
}

impl DictBuilder {
    /// [`add`](Self::add) for a string value given by reference (span names).
    fn add_str(&mut self, scope: AttrScope, key: &str, v: &str, ordinal: u32) {
        if let Some(p) = self.keys[scope as usize]
            .get_mut(key)
            .filter(|kv| !kv.overflow)
            .and_then(|kv| kv.strings.get_mut(v))
        {
            push_ordinal(p, ordinal);
            return;
        }
        self.add(scope, key, &Value::Str(v.to_owned()), ordinal);
    }

    fn add(&mut self, scope: AttrScope, key: &str, v: &Value, ordinal: u32) {
        let map = &mut self.keys[scope as usize];
        let kv = match map.get_mut(key) {
            Some(kv) => kv,
            None => map.entry(key.to_owned()).or_default(),
        };
        if kv.overflow {
            return;
        }
        match v {
            Value::Str(s) => {
                if let Some(p) = kv.strings.get_mut(s.as_str()) {
                    push_ordinal(p, ordinal);
                    return;
                }
            }
            other => match DictValue::from_value(other) {
                None => return,
                Some(dv) => {
                    if let Some(p) = kv.others.get_mut(&dv) {
                        push_ordinal(p, ordinal);
                        return;
                    }
                }
            },
        }
        if kv.len() >= MAX_DICT_VALUES_PER_KEY {
            *kv = KeyValues {
                overflow: true,
                ..Default::default()
            };
            return;
        }
        match v {
            Value::Str(s) => {
                kv.strings.insert(s.clone(), vec![ordinal]);
            }
            other => {
                if let Some(dv) = DictValue::from_value(other) {
                    kv.others.insert(dv, vec![ordinal]);
                }
            }
        }
    }

    fn finish(self) -> Dictionary {
        let mut dict = Dictionary::new();
        for (scope, map) in [AttrScope::Resource, AttrScope::Span, AttrScope::Intrinsic]
            .into_iter()
            .zip(self.keys)
        {
            for (key, kv) in map {
                let values = (!kv.overflow).then(|| {
                    kv.strings
                        .into_iter()
                        .map(|(s, p)| (DictValue::Str(s), p))
                        .chain(kv.others)
                        .collect()
                });
                dict.insert((scope, key), values);
            }
        }
        dict
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockMeta {
    pub format_version: u32,
    pub id: String,
    /// Creation order; compaction keeps the smallest of its sources.
    pub seq: u64,
    pub level: u32,
    pub min_time_unix_nano: u64,
    pub max_time_unix_nano: u64,
    pub traces: u64,
    pub spans: u64,
    pub data_bytes: u64,
    pub index_bytes: u64,
    pub bloom_bytes: u64,
    /// Blocks this one replaces (compaction); on open, a replaced block still on disk is removed.
    #[serde(default)]
    pub replaces: Vec<String>,
}

impl BlockMeta {
    pub fn total_bytes(&self) -> u64 {
        self.data_bytes + self.index_bytes + self.bloom_bytes
    }
}

struct TraceEntry {
    trace_id: TraceId,
    page: u32,
    offset: u32,
    len: u32,
    summary: TraceSummary,
}

/// Bloom filter on trace ids: `k` probes by double hashing the id's XXH3-128.
struct Bloom {
    k: u32,
    bits: Vec<u64>,
}

impl Bloom {
    fn with_capacity(n: usize) -> Bloom {
        // ~10 bits per id and 7 probes: ~1% false positives, Tempo's default rate.
        let words = (n * 10).div_ceil(64).max(1);
        Bloom {
            k: 7,
            bits: vec![0; words],
        }
    }
    fn probes(&self, id: &TraceId) -> impl Iterator<Item = usize> + '_ {
        let h = xxhash_rust::xxh3::xxh3_128(id);
        let (h1, h2) = (h as u64, (h >> 64) as u64 | 1);
        let m = (self.bits.len() * 64) as u64;
        (0..u64::from(self.k)).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % m) as usize)
    }
    fn insert(&mut self, id: &TraceId) {
        let p: Vec<usize> = self.probes(id).collect();
        for b in p {
            self.bits[b / 64] |= 1 << (b % 64);
        }
    }
    fn may_contain(&self, id: &TraceId) -> bool {
        self.probes(id)
            .all(|b| self.bits[b / 64] & (1 << (b % 64)) != 0)
    }
}

/// Whether resource `r` meets the resource conditions of `filter`.
fn resource_meets(r: &Resource, filter: &[SpanCondition]) -> bool {
    filter.iter().all(|c| match c {
        SpanCondition::Resource { key, value } => r
            .attributes
            .iter()
            .any(|kv| kv.key == *key && matches!(&kv.value, Value::Str(v) if v == value)),
        _ => true,
    })
}

/// What the data file's pages hold while they are filled.
enum Pages {
    /// Versions 2 and 3: the row group being filled.
    Columns(Box<RowGroupWriter>),
    /// Version 1: span batch bodies back to back. Written only by tests, which check that blocks of
    /// the first version are still read and compacted.
    #[cfg(test)]
    Rows(Vec<u8>),
}

/// Writes a block from traces given in ascending trace-id order (merges must combine equal ids first).
pub struct BlockWriter {
    dir: PathBuf,
    tmp: PathBuf,
    data: File,
    data_len: u64,
    version: u32,
    /// Uncompressed bytes at which a page (row group) is closed.
    page_bytes: usize,
    page: Pages,
    pages: Vec<(u64, u32)>,
    entries: Vec<TraceEntry>,
    resources: Vec<Arc<Resource>>,
    resource_ids: DictMap<Arc<Resource>, u32>,
    dict: DictBuilder,
    spans: u64,
    last_id: Option<TraceId>,
}

impl BlockWriter {
    pub fn create(blocks_dir: &Path, id: &str, page_bytes: usize) -> Result<BlockWriter> {
        let page = Pages::Columns(Box::new(RowGroupWriter::new(true)));
        Self::create_with(blocks_dir, id, page_bytes, BLOCK_FORMAT_VERSION, page)
    }

    /// A writer of the second version, attribute keys as lists.
    #[cfg(test)]
    pub(crate) fn create_v2(blocks_dir: &Path, id: &str, page_bytes: usize) -> Result<BlockWriter> {
        let page = Pages::Columns(Box::new(RowGroupWriter::new(false)));
        Self::create_with(blocks_dir, id, page_bytes, BLOCK_FORMAT_KEY_LISTS, page)
    }

    /// A writer of the first, row-wise version.
    #[cfg(test)]
    pub(crate) fn create_v1(blocks_dir: &Path, id: &str, page_bytes: usize) -> Result<BlockWriter> {
        let page = Pages::Rows(Vec::new());
        Self::create_with(blocks_dir, id, page_bytes, BLOCK_FORMAT_ROWS, page)
    }

    fn create_with(
        blocks_dir: &Path,
        id: &str,
        page_bytes: usize,
        version: u32,
        page: Pages,
    ) -> Result<BlockWriter> {
        let dir = blocks_dir.join(id);
        let tmp = blocks_dir.join(format!("{id}.tmp"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let path = tmp.join("data");
        let mut data = File::create(&path).map_err(|e| Error::io(&path, e))?;
        data.write_all(&header(DATA_MAGIC, version))
            .map_err(|e| Error::io(&path, e))?;
        Ok(BlockWriter {
            dir,
            tmp,
            data,
            data_len: 8,
            version,
            page_bytes,
            page,
            pages: Vec::new(),
            entries: Vec::new(),
            resources: Vec::new(),
            resource_ids: DictMap::default(),
            dict: DictBuilder::default(),
            spans: 0,
            last_id: None,
        })
    }

    pub fn add(&mut self, trace: &Trace) -> Result<()> {
        debug_assert!(
            self.last_id.is_none_or(|l| l < trace.trace_id),
            "traces out of order"
        );
        self.last_id = Some(trace.trace_id);
        let ordinal = self.entries.len() as u32;
        let summary = trace.summary();
        let resources = &mut self.resources;
        let ids = &mut self.resource_ids;
        let mut lookup = |r: &Arc<Resource>| -> u32 {
            *ids.entry(r.clone()).or_insert_with(|| {
                resources.push(r.clone());
                (resources.len() - 1) as u32
            })
        };
        // Where the trace sits in its page: v2 its position in the row group, v1 a byte range.
        let (offset, len, full) = match &mut self.page {
            Pages::Columns(group) => {
                group.add(trace, summary.start_unix_nano, &mut lookup);
                let full = group.raw_len() >= self.page_bytes;
                (group.traces() - 1, 0, full)
            }
            #[cfg(test)]
            Pages::Rows(page) => {
                let offset = page.len();
                super::model::put_batches(
                    page,
                    &trace.batches,
                    super::model::ResourceRef::Table(&mut lookup),
                    false,
                );
                (offset, page.len() - offset, page.len() >= self.page_bytes)
            }
        };
        for rs in &trace.batches {
            // A resource's attributes are the same for all its spans: add them once per group.
            for kv in &rs.resource.attributes {
                self.dict
                    .add(AttrScope::Resource, &kv.key, &kv.value, ordinal);
            }
            for span in rs.scope_spans.iter().flat_map(|ss| ss.spans.iter()) {
                for kv in &span.attributes {
                    self.dict.add(AttrScope::Span, &kv.key, &kv.value, ordinal);
                }
                self.dict
                    .add_str(AttrScope::Intrinsic, "name", &span.name, ordinal);
                let status = Value::Int(span.status_code as i64);
                self.dict
                    .add(AttrScope::Intrinsic, "status", &status, ordinal);
            }
        }
        self.spans += trace.span_count() as u64;
        self.entries.push(TraceEntry {
            trace_id: trace.trace_id,
            page: self.pages.len() as u32,
            offset: offset as u32,
            len: len as u32,
            summary,
        });
        if full {
            self.flush_page()?;
        }
        Ok(())
    }

    fn flush_page(&mut self) -> Result<()> {
        let io = |e| Error::io(&self.tmp, e);
        let z = match &mut self.page {
            Pages::Columns(group) if group.traces() == 0 => return Ok(()),
            Pages::Columns(group) => group.finish_and_restart(ZSTD_LEVEL).map_err(io)?,
            #[cfg(test)]
            Pages::Rows(page) if page.is_empty() => return Ok(()),
            #[cfg(test)]
            Pages::Rows(page) => {
                let z = zstd::bulk::compress(page, ZSTD_LEVEL).map_err(io)?;
                page.clear();
                z
            }
        };
        let mut framed = Vec::with_capacity(z.len() + 8);
        framed.extend_from_slice(&(z.len() as u32).to_le_bytes());
        framed.extend_from_slice(&crc32c::crc32c(&z).to_le_bytes());
        framed.extend_from_slice(&z);
        self.data
            .write_all(&framed)
            .map_err(|e| Error::io(&self.tmp, e))?;
        self.pages.push((self.data_len, framed.len() as u32));
        self.data_len += framed.len() as u64;
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes index, bloom and `meta.json`, syncs, and renames the directory into place.
    pub fn finish(mut self, seq: u64, level: u32, replaces: Vec<String>) -> Result<BlockMeta> {
        self.flush_page()?;
        self.data.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        let mut body = Vec::new();
        put_uvarint(&mut body, self.resources.len() as u64);
        for r in &self.resources {
            put_resource(&mut body, r);
        }
        put_uvarint(&mut body, self.pages.len() as u64);
        for (off, len) in &self.pages {
            put_uvarint(&mut body, *off);
            put_uvarint(&mut body, u64::from(*len));
        }
        let mut strings: HashMap<&str, u64> = HashMap::new();
        let mut table: Vec<&str> = Vec::new();
        for e in &self.entries {
            for s in [&e.summary.root_service_name, &e.summary.root_span_name] {
                strings.entry(s.as_str()).or_insert_with(|| {
                    table.push(s);
                    (table.len() - 1) as u64
                });
            }
        }
        put_uvarint(&mut body, table.len() as u64);
        for s in &table {
            put_str(&mut body, s);
        }
        put_uvarint(&mut body, self.entries.len() as u64);
        for e in &self.entries {
            body.extend_from_slice(&e.trace_id);
            put_uvarint(&mut body, u64::from(e.page));
            put_uvarint(&mut body, u64::from(e.offset));
            put_uvarint(&mut body, u64::from(e.len));
            put_uvarint(&mut body, strings[e.summary.root_service_name.as_str()]);
            put_uvarint(&mut body, strings[e.summary.root_span_name.as_str()]);
            put_uvarint(&mut body, e.summary.start_unix_nano);
            put_uvarint(&mut body, e.summary.duration_nanos());
            put_uvarint(&mut body, u64::from(e.summary.span_count));
        }
        let dict = std::mem::take(&mut self.dict).finish();
        put_dictionary(&mut body, &dict);
        let index = seal(INDEX_MAGIC, self.version, &body, &self.tmp)?;
        let mut bloom = Bloom::with_capacity(self.entries.len());
        for e in &self.entries {
            bloom.insert(&e.trace_id);
        }
        let mut bbody = Vec::with_capacity(bloom.bits.len() * 8 + 8);
        put_uvarint(&mut bbody, u64::from(bloom.k));
        put_uvarint(&mut bbody, bloom.bits.len() as u64);
        for w in &bloom.bits {
            bbody.extend_from_slice(&w.to_le_bytes());
        }
        let bloom_bytes = framed_file(BLOOM_MAGIC, self.version, &bbody);
        write_synced(&self.tmp.join("index"), &index)?;
        write_synced(&self.tmp.join("bloom"), &bloom_bytes)?;
        let id = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let meta = BlockMeta {
            format_version: self.version,
            id,
            seq,
            level,
            min_time_unix_nano: self
                .entries
                .iter()
                .map(|e| e.summary.start_unix_nano)
                .min()
                .unwrap_or(0),
            max_time_unix_nano: self
                .entries
                .iter()
                .map(|e| e.summary.end_unix_nano)
                .max()
                .unwrap_or(0),
            traces: self.entries.len() as u64,
            spans: self.spans,
            data_bytes: self.data_len,
            index_bytes: index.len() as u64,
            bloom_bytes: bloom_bytes.len() as u64,
            replaces,
        };
        let json = serde_json::to_vec_pretty(&meta)
            .map_err(|e| Error::corrupt(&self.tmp, e.to_string()))?;
        write_synced(&self.tmp.join("meta.json"), &json)?;
        sync_dir(&self.tmp)?;
        fs::rename(&self.tmp, &self.dir).map_err(|e| Error::io(&self.dir, e))?;
        if let Some(parent) = self.dir.parent() {
            sync_dir(parent)?;
        }
        Ok(meta)
    }
}

fn put_dictionary(buf: &mut Vec<u8>, dict: &Dictionary) {
    put_uvarint(buf, dict.len() as u64);
    for ((scope, key), values) in dict {
        buf.push(*scope as u8);
        put_str(buf, key);
        let Some(values) = values else {
            buf.push(0);
            continue;
        };
        buf.push(1);
        put_uvarint(buf, values.len() as u64);
        for (v, postings) in values {
            match v {
                DictValue::Str(s) => {
                    buf.push(1);
                    put_str(buf, s);
                }
                DictValue::Int(i) => {
                    buf.push(2);
                    crate::encoding::put_varint(buf, *i);
                }
                DictValue::Double(b) => {
                    buf.push(3);
                    buf.extend_from_slice(&b.to_le_bytes());
                }
                DictValue::Bool(b) => {
                    buf.push(4);
                    buf.push(u8::from(*b));
                }
            }
            put_uvarint(buf, postings.len() as u64);
            let mut prev = 0u32;
            for &p in postings {
                put_uvarint(buf, u64::from(p - prev));
                prev = p;
            }
        }
    }
}

fn get_dictionary(d: &mut Decoder<'_>, traces: u32) -> DecodeResult<Dictionary> {
    let n = d.uvarint()? as usize;
    let mut dict = Dictionary::new();
    for _ in 0..n {
        let scope = match d.u8()? {
            0 => AttrScope::Resource,
            1 => AttrScope::Span,
            2 => AttrScope::Intrinsic,
            _ => return Err(DecodeError("unknown attribute scope")),
        };
        let key = d.str()?.to_owned();
        if d.u8()? == 0 {
            dict.insert((scope, key), None);
            continue;
        }
        let nv = d.uvarint()? as usize;
        let mut values = BTreeMap::new();
        for _ in 0..nv {
            let v = match d.u8()? {
                1 => DictValue::Str(d.str()?.to_owned()),
                2 => DictValue::Int(d.varint()?),
                3 => DictValue::Double(d.u64_le()?),
                4 => DictValue::Bool(d.u8()? != 0),
                _ => return Err(DecodeError("unknown dictionary value tag")),
            };
            let np = d.uvarint()? as usize;
            let mut postings = Vec::with_capacity(np.min(traces as usize));
            let mut prev = 0u64;
            for _ in 0..np {
                prev += d.uvarint()?;
                if prev >= u64::from(traces) {
                    return Err(DecodeError("posting out of range"));
                }
                postings.push(prev as u32);
            }
            values.insert(v, postings);
        }
        dict.insert((scope, key), Some(values));
    }
    Ok(dict)
}

fn header(magic: &[u8; 4], version: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(8);
    h.extend_from_slice(magic);
    h.extend_from_slice(&version.to_le_bytes());
    h
}

/// `magic, version, u32 CRC-32C of the body, body`.
fn framed_file(magic: &[u8; 4], version: u32, body: &[u8]) -> Vec<u8> {
    let mut out = header(magic, version);
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

fn seal(magic: &[u8; 4], version: u32, body: &[u8], path: &Path) -> Result<Vec<u8>> {
    let z = zstd::bulk::compress(body, ZSTD_LEVEL).map_err(|e| Error::io(path, e))?;
    Ok(framed_file(magic, version, &z))
}

/// The body of a file written by [`framed_file`], whose version must be the block's.
fn unframe(path: &Path, magic: &[u8; 4], expected: u32, data: &[u8]) -> Result<Vec<u8>> {
    if data.len() < 12 || &data[..4] != magic {
        return Err(Error::corrupt(path, "bad magic"));
    }
    let version = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    if version != expected {
        return Err(Error::UnsupportedVersion {
            path: path.to_owned(),
            version,
        });
    }
    let crc = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    if crc32c::crc32c(&data[12..]) != crc {
        return Err(Error::corrupt(path, "checksum mismatch"));
    }
    Ok(data[12..].to_vec())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

/// Pages read from disk and decompressed (version 2: a row group's columns), kept for the next
/// lookup or search that needs them; one cache serves every block of a store.
pub(crate) type PageCache = crate::page_cache::PageCache<Page>;

/// Cache capacity of a block opened on its own (tests, tools), not by a store.
const STANDALONE_CACHE_BYTES: u64 = 16 << 20;

/// An open block: index, bloom and dictionary in memory; pages read from disk on demand.
pub struct Block {
    pub meta: BlockMeta,
    dir: PathBuf,
    data: File,
    pages: Vec<(u64, u32)>,
    resources: Vec<Arc<Resource>>,
    entries: Vec<TraceEntry>,
    bloom: Bloom,
    pub dict: Dictionary,
    cache: Arc<PageCache>,
    cache_key: u64,
}

/// A page as read: a row group with its columns decompressed (version 2) or decompressed span batch
/// bodies (version 1).
#[derive(Clone)]
pub(crate) enum Page {
    Columns(Arc<RowGroup>),
    Rows(Arc<Vec<u8>>),
}

impl Drop for Block {
    fn drop(&mut self) {
        self.cache.forget_block(self.cache_key);
    }
}

impl crate::page_cache::Weigh for Page {
    fn weight(&self) -> u64 {
        match self {
            Page::Columns(g) => g.memory_bytes() as u64,
            Page::Rows(r) => r.len() as u64,
        }
    }
}

impl Block {
    /// Opens a block with a cache of its own.
    pub fn open(dir: &Path) -> Result<Block> {
        Block::open_cached(dir, Arc::new(PageCache::new(STANDALONE_CACHE_BYTES)))
    }

    /// Opens a block whose pages go into `cache`, shared with other blocks.
    pub(crate) fn open_cached(dir: &Path, cache: Arc<PageCache>) -> Result<Block> {
        let mpath = dir.join("meta.json");
        let meta: BlockMeta =
            serde_json::from_slice(&fs::read(&mpath).map_err(|e| Error::io(&mpath, e))?)
                .map_err(|e| Error::corrupt(&mpath, e.to_string()))?;
        if ![
            BLOCK_FORMAT_ROWS,
            BLOCK_FORMAT_KEY_LISTS,
            BLOCK_FORMAT_VERSION,
        ]
        .contains(&meta.format_version)
        {
            return Err(Error::UnsupportedVersion {
                path: mpath,
                version: meta.format_version,
            });
        }
        let ipath = dir.join("index");
        let raw = fs::read(&ipath).map_err(|e| Error::io(&ipath, e))?;
        let z = unframe(&ipath, INDEX_MAGIC, meta.format_version, &raw)?;
        let body = zstd::stream::decode_all(&z[..]).map_err(|e| Error::io(&ipath, e))?;
        let corrupt = |e: DecodeError| Error::corrupt(&ipath, e.to_string());
        let mut d = Decoder::new(&body);
        let (resources, pages, entries, dict) = (|| {
            let n = d.uvarint()? as usize;
            let mut resources = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                resources.push(Arc::new(get_resource(&mut d)?));
            }
            let n = d.uvarint()? as usize;
            let mut pages = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                pages.push((d.uvarint()?, d.uvarint()? as u32));
            }
            let n = d.uvarint()? as usize;
            let mut strings = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                strings.push(d.str()?.to_owned());
            }
            let string = |i: u64| {
                strings
                    .get(i as usize)
                    .cloned()
                    .ok_or(DecodeError("string index out of range"))
            };
            let n = d.uvarint()? as usize;
            let mut entries = Vec::with_capacity(n.min(1 << 20));
            for _ in 0..n {
                let mut trace_id = [0u8; 16];
                trace_id.copy_from_slice(d.bytes(16)?);
                let page = d.uvarint()? as u32;
                let offset = d.uvarint()? as u32;
                let len = d.uvarint()? as u32;
                if page as usize >= pages.len() {
                    return Err(DecodeError("page index out of range"));
                }
                let root_service_name = string(d.uvarint()?)?;
                let root_span_name = string(d.uvarint()?)?;
                let start = d.uvarint()?;
                let dur = d.uvarint()?;
                let span_count = d.uvarint()? as u32;
                entries.push(TraceEntry {
                    trace_id,
                    page,
                    offset,
                    len,
                    summary: TraceSummary {
                        trace_id,
                        root_service_name,
                        root_span_name,
                        start_unix_nano: start,
                        end_unix_nano: start.saturating_add(dur),
                        span_count,
                    },
                });
            }
            let dict = get_dictionary(&mut d, entries.len() as u32)?;
            Ok((resources, pages, entries, dict))
        })()
        .map_err(corrupt)?;
        let bpath = dir.join("bloom");
        let raw = fs::read(&bpath).map_err(|e| Error::io(&bpath, e))?;
        let bbody = unframe(&bpath, BLOOM_MAGIC, meta.format_version, &raw)?;
        let mut d = Decoder::new(&bbody);
        let bloom = (|| {
            let k = d.uvarint()? as u32;
            let n = d.uvarint()? as usize;
            if n == 0 || n > d.remaining() / 8 {
                return Err(DecodeError("bad bloom size"));
            }
            let mut bits = Vec::with_capacity(n);
            for _ in 0..n {
                bits.push(d.u64_le()?);
            }
            Ok(Bloom { k, bits })
        })()
        .map_err(|e: DecodeError| Error::corrupt(&bpath, e.to_string()))?;
        let dpath = dir.join("data");
        let data = File::open(&dpath).map_err(|e| Error::io(&dpath, e))?;
        Ok(Block {
            meta,
            dir: dir.to_owned(),
            data,
            pages,
            resources,
            entries,
            bloom,
            dict,
            cache_key: cache.block_key(),
            cache,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn summary(&self, ordinal: usize) -> &TraceSummary {
        &self.entries[ordinal].summary
    }

    /// The ordinals of the traces kept in the same page as `ordinal` (they are consecutive).
    pub fn page_ordinals(&self, ordinal: usize) -> Range<usize> {
        let page = self.entries[ordinal].page;
        let first = self.entries[..ordinal].partition_point(|e| e.page < page);
        let end = ordinal + self.entries[ordinal..].partition_point(|e| e.page == page);
        first..end
    }

    fn page(&self, page: u32) -> Result<Page> {
        if let Some(cached) = self.cache.get(self.cache_key, page) {
            return Ok(cached);
        }
        let dpath = self.dir.join("data");
        let (off, len) = self.pages[page as usize];
        let mut framed = vec![0u8; len as usize];
        self.data
            .read_exact_at(&mut framed, off)
            .map_err(|e| Error::io(&dpath, e))?;
        if framed.len() < 8 {
            return Err(Error::corrupt(&dpath, "short page"));
        }
        let zlen = u32::from_le_bytes([framed[0], framed[1], framed[2], framed[3]]) as usize;
        let crc = u32::from_le_bytes([framed[4], framed[5], framed[6], framed[7]]);
        let z = &framed[8..];
        if z.len() != zlen || crc32c::crc32c(z) != crc {
            return Err(Error::corrupt(&dpath, "page checksum mismatch"));
        }
        let decoded = if self.meta.format_version == BLOCK_FORMAT_ROWS {
            Page::Rows(Arc::new(
                zstd::stream::decode_all(z).map_err(|e| Error::io(&dpath, e))?,
            ))
        } else {
            // Traces of a page are consecutive ordinals: the page's count is where the next begins.
            let first = self.entries.partition_point(|e| e.page < page);
            let traces = self.entries[first..].partition_point(|e| e.page == page);
            let key_orders = self.meta.format_version >= BLOCK_FORMAT_VERSION;
            let group = RowGroup::open(z, traces, &self.resources, key_orders)
                .map_err(|err| Error::corrupt(&dpath, err.to_string()))?;
            Page::Columns(Arc::new(group))
        };
        self.cache.insert(self.cache_key, page, decoded.clone());
        Ok(decoded)
    }

    /// Reads the trace at an index position.
    pub fn read(&self, ordinal: usize) -> Result<Trace> {
        let mut traces = self.read_many(&[ordinal])?;
        Ok(traces.remove(0))
    }

    /// Reads the traces at the given index positions, in that order. Each page is read once, and
    /// only the traces asked for are decoded from it.
    /// The traces of `ordinals` (all in one page, ascending or descending) that have, for each of
    /// `filters`, a span meeting all its conditions, found on the page's columns without decoding
    /// the traces. Pages of version 1 are not checked: their traces are all kept.
    pub(crate) fn with_matching_spans(
        &self,
        ordinals: Vec<usize>,
        filters: &[Vec<SpanCondition>],
    ) -> Result<Vec<usize>> {
        let Some(&o) = ordinals.first() else {
            return Ok(ordinals);
        };
        if filters.is_empty() {
            return Ok(ordinals);
        }
        let page_no = self.entries[o].page;
        let Page::Columns(group) = self.page(page_no)? else {
            return Ok(ordinals);
        };
        let first = self.entries.partition_point(|e| e.page < page_no);
        let mut positions: Vec<usize> = ordinals.iter().map(|&o| o - first).collect();
        positions.sort_unstable();
        let resource_ok: Vec<Vec<bool>> = filters
            .iter()
            .map(|f| {
                self.resources
                    .iter()
                    .map(|r| resource_meets(r, f))
                    .collect()
            })
            .collect();
        let keep = group
            .traces_with_spans(&positions, filters, &resource_ok)
            .map_err(|err| Error::corrupt(self.dir.join("data"), err.to_string()))?;
        Ok(ordinals
            .into_iter()
            .filter(|&o| positions.binary_search(&(o - first)).is_ok_and(|i| keep[i]))
            .collect())
    }

    pub fn read_many(&self, ordinals: &[usize]) -> Result<Vec<Trace>> {
        let dpath = self.dir.join("data");
        let corrupt = |err: DecodeError| Error::corrupt(&dpath, err.to_string());
        let mut order: Vec<usize> = (0..ordinals.len()).collect();
        order.sort_by_key(|&i| ordinals[i]);
        order.dedup_by_key(|i| ordinals[*i]);
        let mut read: Vec<(usize, Trace)> = Vec::with_capacity(order.len());
        let mut at = 0;
        while at < order.len() {
            let page_no = self.entries[ordinals[order[at]]].page;
            let run = order[at..]
                .iter()
                .take_while(|&&i| self.entries[ordinals[i]].page == page_no)
                .count();
            let run_ordinals: Vec<usize> =
                order[at..at + run].iter().map(|&i| ordinals[i]).collect();
            at += run;
            match self.page(page_no)? {
                Page::Columns(group) => {
                    let first = self.entries.partition_point(|e| e.page < page_no);
                    let wanted: Vec<TraceAt> = run_ordinals
                        .iter()
                        .map(|&o| {
                            let e = &self.entries[o];
                            TraceAt {
                                position: o - first,
                                trace_id: e.trace_id,
                                base: e.summary.start_unix_nano,
                            }
                        })
                        .collect();
                    let traces = group.traces(&wanted).map_err(corrupt)?;
                    read.extend(run_ordinals.into_iter().zip(traces));
                }
                Page::Rows(page) => {
                    for o in run_ordinals {
                        let e = &self.entries[o];
                        let (start, end) = (e.offset as usize, e.offset as usize + e.len as usize);
                        let slice = page
                            .get(start..end)
                            .ok_or_else(|| Error::corrupt(&dpath, "trace outside its page"))?;
                        let batches = get_batches(
                            &mut Decoder::new(slice),
                            Some(&self.resources),
                            Some(e.trace_id),
                        )
                        .map_err(corrupt)?;
                        read.push((
                            o,
                            Trace {
                                trace_id: e.trace_id,
                                batches,
                            },
                        ));
                    }
                }
            }
        }
        // Back into the order asked for (`read` is in ascending ordinal order, without repeats).
        let repeats = read.len() < ordinals.len();
        let mut read: Vec<(usize, Option<Trace>)> =
            read.into_iter().map(|(o, t)| (o, Some(t))).collect();
        ordinals
            .iter()
            .map(|o| {
                let i = read
                    .binary_search_by_key(o, |(x, _)| *x)
                    .map_err(|_| Error::corrupt(&dpath, "trace not read"))?;
                let slot = &mut read[i].1;
                let t = if repeats { slot.clone() } else { slot.take() };
                t.ok_or_else(|| Error::corrupt(&dpath, "trace not read"))
            })
            .collect()
    }

    /// Where the block's bytes go: per part (a data column, an index section), its bytes before and
    /// after compression. Data columns are summed over the row groups; the index is compressed as a
    /// whole, so its sections are compressed apart here to apportion it (their sum differs a little
    /// from the file).
    pub fn size_breakdown(&self) -> Result<BTreeMap<String, (u64, u64)>> {
        let dpath = self.dir.join("data");
        let mut out = BTreeMap::new();
        let mut framing = 8u64;
        for &(off, len) in &self.pages {
            let mut framed = vec![0u8; len as usize];
            self.data
                .read_exact_at(&mut framed, off)
                .map_err(|e| Error::io(&dpath, e))?;
            let z = framed
                .get(8..)
                .ok_or_else(|| Error::corrupt(&dpath, "short page"))?;
            framing += 8;
            if self.meta.format_version == BLOCK_FORMAT_ROWS {
                let e: &mut (u64, u64) = out.entry("data: rows".into()).or_default();
                e.1 += z.len() as u64;
                continue;
            }
            let key_orders = self.meta.format_version >= BLOCK_FORMAT_VERSION;
            add_column_sizes(z, key_orders, &mut out)
                .map_err(|err| Error::corrupt(&dpath, err.to_string()))?;
        }
        let mut out: BTreeMap<String, (u64, u64)> = out
            .into_iter()
            .map(|(k, v)| {
                if k.starts_with("data: ") {
                    (k, v)
                } else {
                    (format!("data: {k}"), v)
                }
            })
            .collect();
        out.insert("data: page framing".into(), (framing, framing));
        let zstd_len = |b: &[u8]| -> Result<u64> {
            Ok(zstd::bulk::compress(b, ZSTD_LEVEL)
                .map_err(|e| Error::io(&dpath, e))?
                .len() as u64)
        };
        let mut entries = Vec::new();
        for e in &self.entries {
            entries.extend_from_slice(&e.trace_id);
            put_uvarint(&mut entries, u64::from(e.page));
            put_uvarint(&mut entries, u64::from(e.offset));
            put_uvarint(&mut entries, u64::from(e.len));
            put_uvarint(&mut entries, 0);
            put_uvarint(&mut entries, 0);
            put_uvarint(&mut entries, e.summary.start_unix_nano);
            put_uvarint(&mut entries, e.summary.duration_nanos());
            put_uvarint(&mut entries, u64::from(e.summary.span_count));
        }
        let entries_z = zstd_len(&entries)?;
        out.insert("index: traces".into(), (entries.len() as u64, entries_z));
        let mut dict_z = 0;
        for (key, values) in &self.dict {
            let mut one = Dictionary::new();
            one.insert(key.clone(), values.clone());
            let mut dict = Vec::new();
            put_dictionary(&mut dict, &one);
            let z = zstd_len(&dict)?;
            dict_z += z;
            let scope = match key.0 {
                AttrScope::Resource => "resource",
                AttrScope::Span => "span",
                AttrScope::Intrinsic => "intrinsic",
            };
            out.insert(
                format!("index: dictionary {scope}.{}", key.1),
                (dict.len() as u64, z),
            );
        }
        out.insert(
            "index: the rest (resources, pages, names)".into(),
            (0, self.meta.index_bytes.saturating_sub(entries_z + dict_z)),
        );
        out.insert(
            "bloom".into(),
            (self.meta.bloom_bytes, self.meta.bloom_bytes),
        );
        Ok(out)
    }

    /// The bloom filter first (most blocks do not hold a given id), then a binary search of the index.
    pub fn find(&self, id: &TraceId) -> Result<Option<Trace>> {
        if !self.bloom.may_contain(id) {
            return Ok(None);
        }
        match self.entries.binary_search_by(|e| e.trace_id.cmp(id)) {
            Ok(i) => self.read(i).map(Some),
            Err(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::tests::{batch, span, value_strategy};
    use super::super::model::{
        Event, KeyValue, Link, ResourceSpans, Scope, ScopeSpans, Span, SpanKind, StatusCode,
    };
    use super::*;

    /// A trace exercising every field: all value kinds (nested too), attributes out of key order
    /// with a duplicate key and a key whose type changes, parents inside and outside the trace and of
    /// odd length, events and links with attributes, two resources and two scopes, an end before the
    /// start.
    fn varied_trace(id: u8) -> Trace {
        let t0 = 1_700_000_000_000_000_000 + u64::from(id) * 7_919;
        let mut spans: Vec<Span> = (0..6u8)
            .map(|k| {
                let mut s = span(
                    id,
                    k + 1,
                    (k > 0).then_some(k),
                    &format!("op-{}", k % 3),
                    0,
                    0,
                );
                s.start_time_unix_nano = t0 + u64::from(k) * 1_000 + u64::from(id);
                s.end_time_unix_nano = s.start_time_unix_nano + 10_000 * u64::from(k + id);
                s.kind = SpanKind::from_i32(i32::from(k % 6));
                s.status_code = StatusCode::from_i32(i32::from(k % 3));
                s.status_message = if k.is_multiple_of(2) {
                    String::new()
                } else {
                    format!("m{id}")
                };
                s.trace_state = if k == 3 {
                    "vendor=x".into()
                } else {
                    String::new()
                };
                s.flags = u32::from(k) << 8;
                s.dropped_attributes_count = u32::from(k);
                s.dropped_events_count = u32::from(id % 3);
                s.dropped_links_count = 7;
                s.attributes = vec![
                    KeyValue::new("z.last", Value::Str(format!("req-{id}-{k}"))),
                    KeyValue::new("a.first", Value::Int(-i64::from(k) * 1_000_003)),
                    KeyValue::new(
                        "shifty",
                        if k.is_multiple_of(2) {
                            Value::Str("s".into())
                        } else {
                            Value::Double(f64::from(k) / 3.0)
                        },
                    ),
                    KeyValue::new("a.first", Value::Bool(k % 2 == 1)),
                    KeyValue::new("empty", Value::Empty),
                    KeyValue::new("bytes", Value::Bytes(vec![id, k, 0, 255])),
                    KeyValue::new(
                        "nested",
                        Value::Array(vec![
                            Value::Int(i64::MIN),
                            Value::KvList(vec![KeyValue::new(
                                "in",
                                Value::Array(vec![Value::Str("deep".into()), Value::Empty]),
                            )]),
                        ]),
                    ),
                ];
                s.attributes.truncate(2 + usize::from(k));
                s
            })
            .collect();
        spans[2].parent_span_id = vec![0xab; 8]; // a parent in another trace
        spans[3].parent_span_id = vec![1, 2, 3]; // not a span id at all
        spans[4].end_time_unix_nano = spans[4].start_time_unix_nano - 5; // ends before it starts
        let before = spans[4].start_time_unix_nano - 1_000;
        spans[4].events.push(Event {
            time_unix_nano: before,
            name: "before".into(),
            attributes: vec![],
            dropped_attributes_count: 0,
        });
        spans[5].links.push(Link {
            trace_id: vec![],
            span_id: vec![3; 8],
            trace_state: String::new(),
            attributes: vec![KeyValue::new("l", Value::Bytes(vec![]))],
            dropped_attributes_count: 9,
            flags: 0,
        });
        spans[1].events.clear();
        spans[1].links.clear();
        let later = spans.split_off(3);
        let mut first = batch(&format!("svc-{}", id % 2), spans);
        first.scope_spans.push(ScopeSpans {
            scope: Scope {
                name: "other".into(),
                version: String::new(),
                attributes: vec![KeyValue::new("sc", Value::Int(1))],
                dropped_attributes_count: 1,
                schema_url: "u".into(),
            },
            spans: later[..1].to_vec(),
        });
        let second = ResourceSpans {
            resource: Arc::new(Resource::default()),
            scope_spans: vec![ScopeSpans {
                scope: Scope::default(),
                spans: later[1..].to_vec(),
            }],
        };
        Trace {
            trace_id: [id; 16],
            batches: vec![first, second],
        }
    }

    fn write_block(
        dir: &Path,
        id: &str,
        version: u32,
        page_bytes: usize,
        traces: &[Trace],
    ) -> Block {
        let mut w = match version {
            BLOCK_FORMAT_ROWS => BlockWriter::create_v1(dir, id, page_bytes).unwrap(),
            BLOCK_FORMAT_KEY_LISTS => BlockWriter::create_v2(dir, id, page_bytes).unwrap(),
            _ => BlockWriter::create(dir, id, page_bytes).unwrap(),
        };
        for t in traces {
            w.add(t).unwrap();
        }
        w.finish(1, 0, vec![]).unwrap();
        Block::open(&dir.join(id)).unwrap()
    }

    #[test]
    fn row_groups_round_trip_every_field() {
        let dir = tempfile::tempdir().unwrap();
        let traces: Vec<Trace> = (1..=40).map(varied_trace).collect();
        for version in [BLOCK_FORMAT_KEY_LISTS, BLOCK_FORMAT_VERSION] {
            // Small row groups: traces of one group and of different groups are read in any order.
            let id = format!("b{version}");
            let b = write_block(dir.path(), &id, version, 4_000, &traces);
            assert_eq!(b.meta.format_version, version);
            assert!(b.pages.len() > 3, "{} row groups", b.pages.len());
            for t in traces.iter().rev().chain(traces.iter().step_by(3)) {
                assert_eq!(b.find(&t.trace_id).unwrap().as_ref(), Some(t));
            }
            for (o, t) in traces.iter().enumerate() {
                assert_eq!(&b.read(o).unwrap(), t);
                assert_eq!(b.summary(o), &t.summary());
            }
        }
    }

    #[test]
    fn read_many_returns_the_traces_asked_for_in_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let traces: Vec<Trace> = (1..=40).map(varied_trace).collect();
        for version in [BLOCK_FORMAT_ROWS, BLOCK_FORMAT_VERSION] {
            let id = format!("b{version}");
            let b = write_block(dir.path(), &id, version, 4_000, &traces);
            let ordinals = [39, 0, 17, 18, 3, 17, 25, 1, 38];
            let read = b.read_many(&ordinals).unwrap();
            let expected: Vec<&Trace> = ordinals.iter().map(|&o| &traces[o]).collect();
            assert_eq!(read.iter().collect::<Vec<_>>(), expected);
            let page = b.page_ordinals(18);
            assert!(page.contains(&18) && page.len() < traces.len(), "{page:?}");
            assert_eq!(b.page_ordinals(page.start), page);
            assert_eq!(b.page_ordinals(page.end - 1), page);
        }
    }

    #[test]
    fn page_cache_stays_within_its_bytes_and_is_shared() {
        let dir = tempfile::tempdir().unwrap();
        let traces: Vec<Trace> = (1..=40).map(varied_trace).collect();
        write_block(dir.path(), "b2", BLOCK_FORMAT_VERSION, 4_000, &traces);
        let cache = Arc::new(PageCache::new(12_000));
        let a = Block::open_cached(&dir.path().join("b2"), cache.clone()).unwrap();
        let b = Block::open_cached(&dir.path().join("b2"), cache.clone()).unwrap();
        for _ in 0..2 {
            for (o, t) in traces.iter().enumerate() {
                assert_eq!(&a.read(o).unwrap(), t);
                assert_eq!(
                    &b.read(traces.len() - 1 - o).unwrap(),
                    &traces[traces.len() - 1 - o]
                );
                assert!(cache.bytes() <= 12_000, "{} bytes cached", cache.bytes());
            }
        }
        assert!(cache.bytes() > 0);
        let none = Arc::new(PageCache::new(0));
        let c = Block::open_cached(&dir.path().join("b2"), none.clone()).unwrap();
        assert_eq!(&c.read(5).unwrap(), &traces[5]);
        assert_eq!(none.bytes(), 0);
    }

    #[test]
    fn size_breakdown_accounts_for_every_byte_of_the_data_file() {
        let dir = tempfile::tempdir().unwrap();
        let traces: Vec<Trace> = (1..=40).map(varied_trace).collect();
        let b = write_block(dir.path(), "b2", BLOCK_FORMAT_VERSION, 4_000, &traces);
        let sizes = b.size_breakdown().unwrap();
        let data: u64 = sizes
            .iter()
            .filter(|(k, _)| k.starts_with("data: "))
            .map(|(_, (_, stored))| stored)
            .sum();
        assert_eq!(
            data,
            fs::metadata(dir.path().join("b2/data")).unwrap().len()
        );
        assert!(sizes.contains_key("data: span ids"), "{sizes:?}");
        assert!(sizes.contains_key("data: span keys: bitmaps"), "{sizes:?}");
        assert!(sizes.keys().any(|k| k.starts_with("index: dictionary ")));
    }

    #[test]
    fn older_blocks_still_read_and_agree_with_the_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let traces: Vec<Trace> = (1..=30).map(varied_trace).collect();
        let current = write_block(dir.path(), "b3", BLOCK_FORMAT_VERSION, 2_000, &traces);
        assert_eq!(fs::read(dir.path().join("b3/data")).unwrap()[4], 3);
        for version in [BLOCK_FORMAT_ROWS, BLOCK_FORMAT_KEY_LISTS] {
            let id = format!("b{version}");
            let old = write_block(dir.path(), &id, version, 2_000, &traces);
            assert_eq!(old.meta.format_version, version);
            assert_eq!(
                fs::read(dir.path().join(&id).join("data")).unwrap()[4],
                version as u8
            );
            for (o, t) in traces.iter().enumerate() {
                assert_eq!(&old.read(o).unwrap(), t);
                assert_eq!(old.read(o).unwrap(), current.read(o).unwrap());
            }
            assert_eq!(old.dict, current.dict);
            assert!(old.find(&[0xee; 16]).unwrap().is_none());
        }
    }

    /// Spans of two services, each setting a varying subset of its keys in a fixed order of its
    /// own (as instrumented code does), and spans that break their service's order.
    fn keyed_traces(breaking: bool) -> Vec<Trace> {
        let keys = |service: usize| -> Vec<String> {
            let mut k: Vec<String> = (0..24).map(|i| format!("key.{i:02}")).collect();
            if service == 1 {
                k.reverse();
            }
            k
        };
        (1..=60u8)
            .map(|id| {
                let batches = (0..2)
                    .map(|service| {
                        let order = keys(service);
                        let spans = (0..5u8)
                            .map(|k| {
                                let mut s = span(id, k + 1, None, "op", 1_000, 10);
                                let seed = u64::from(id) * 31 + u64::from(k) * 7 + service as u64;
                                s.attributes = order
                                    .iter()
                                    .enumerate()
                                    .filter(|(i, _)| (seed >> (i % 12)) & 1 == 1 || *i == 0)
                                    .map(|(i, key)| KeyValue::new(key, Value::Int(i as i64)))
                                    .collect();
                                if breaking && k == 2 {
                                    s.attributes.reverse();
                                }
                                s
                            })
                            .collect();
                        batch(&format!("svc-{service}"), spans)
                    })
                    .collect();
                Trace {
                    trace_id: [id; 16],
                    batches,
                }
            })
            .collect()
    }

    #[test]
    fn attribute_keys_follow_their_resources_learned_order() {
        let dir = tempfile::tempdir().unwrap();
        let key_bytes = |b: &Block, part: &str| -> u64 {
            b.size_breakdown().unwrap()[&format!("data: span keys: {part}")].0
        };
        for breaking in [false, true] {
            let traces = keyed_traces(breaking);
            let v2 = write_block(dir.path(), "v2", BLOCK_FORMAT_KEY_LISTS, 1 << 20, &traces);
            let v3 = write_block(dir.path(), "v3", BLOCK_FORMAT_VERSION, 1 << 20, &traces);
            for (o, t) in traces.iter().enumerate() {
                assert_eq!(&v3.read(o).unwrap(), t);
            }
            let lists = key_bytes(&v2, "lists");
            let (shapes, bitmaps) = (key_bytes(&v3, "shapes"), key_bytes(&v3, "bitmaps"));
            let shaped = key_bytes(&v3, "orders") + shapes + bitmaps;
            // 600 spans, 120 of them (every fifth) out of order when `breaking`. A span in order
            // is its shape's byte and a bitmap over its service's 17-24 keys (3 bytes); one out
            // of order is its shape's byte and its list.
            let in_order = if breaking { 480 } else { 600 };
            assert_eq!(bitmaps, in_order * 3);
            if breaking {
                assert!(shapes > 600 + 120 * 5, "{shapes}");
            } else {
                assert_eq!(shapes, 600);
            }
            assert!(
                shaped * 2 < lists,
                "{shaped} raw bytes against {lists} as lists"
            );
            drop((v2, v3));
            fs::remove_dir_all(dir.path().join("v2")).unwrap();
            fs::remove_dir_all(dir.path().join("v3")).unwrap();
        }
    }

    #[test]
    fn damaged_row_group_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let b = write_block(
            dir.path(),
            "b2",
            BLOCK_FORMAT_VERSION,
            1 << 20,
            &[varied_trace(1)],
        );
        let dpath = dir.path().join("b2/data");
        let mut raw = fs::read(&dpath).unwrap();
        raw[20] ^= 0x01;
        fs::write(&dpath, raw).unwrap();
        let b = {
            drop(b);
            Block::open(&dir.path().join("b2")).unwrap()
        };
        assert!(matches!(b.read(0), Err(Error::Corrupt { .. })));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn any_spans_round_trip_through_row_groups(
            spans in proptest::collection::vec((
                proptest::collection::vec(("[a-c]{1,2}", value_strategy()), 0..5),
                proptest::prelude::any::<u64>(),
                proptest::prelude::any::<u64>(),
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..=9),
                ".{0,4}",
            ), 1..6),
        ) {
            let spans: Vec<Span> = spans
                .into_iter()
                .enumerate()
                .map(|(i, (attrs, start, end, parent, name))| {
                    let mut s = span(5, i as u8, None, &name, 0, 0);
                    s.start_time_unix_nano = start;
                    s.end_time_unix_nano = end;
                    s.parent_span_id = if parent.len() == 9 { vec![(i as u8).saturating_sub(1); 8] } else { parent };
                    s.attributes = attrs.into_iter().map(|(k, v)| KeyValue::new(k, v)).collect();
                    s.events[0].attributes = s.attributes.clone();
                    s.links[0].attributes = s.attributes.iter().rev().cloned().collect();
                    s
                })
                .collect();
            let t = Trace { trace_id: [5; 16], batches: vec![batch("p", spans)] };
            let dir = tempfile::tempdir().unwrap();
            for version in [BLOCK_FORMAT_KEY_LISTS, BLOCK_FORMAT_VERSION] {
                let id = format!("p{version}");
                let b = write_block(dir.path(), &id, version, 1 << 20, std::slice::from_ref(&t));
                proptest::prop_assert_eq!(b.read(0).unwrap(), t.clone());
            }
        }
    }

    fn trace(id: u8, service: &str) -> Trace {
        Trace {
            trace_id: [id; 16],
            batches: vec![batch(
                service,
                vec![
                    span(id, 1, None, "root", 1_000 * u64::from(id), 500),
                    span(id, 2, Some(1), "child", 1_000 * u64::from(id) + 10, 100),
                ],
            )],
        }
    }

    #[test]
    fn block_round_trips_and_finds_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = BlockWriter::create(dir.path(), "b1", 200).unwrap();
        let traces: Vec<Trace> = (1..=20)
            .map(|i| trace(i, if i % 2 == 0 { "even" } else { "odd" }))
            .collect();
        for t in &traces {
            w.add(t).unwrap();
        }
        let meta = w.finish(1, 0, vec![]).unwrap();
        assert_eq!(meta.traces, 20);
        assert_eq!(meta.spans, 40);
        let b = Block::open(&dir.path().join("b1")).unwrap();
        for t in &traces {
            assert_eq!(b.find(&t.trace_id).unwrap().as_ref(), Some(t));
        }
        assert!(b.find(&[0xee; 16]).unwrap().is_none());
        let values = b.dict[&(AttrScope::Resource, "service.name".to_owned())]
            .as_ref()
            .unwrap();
        let even = &values[&DictValue::Str("even".into())];
        assert_eq!(even.len(), 10);
        assert!(even
            .iter()
            .all(|&o| b.summary(o as usize).trace_id[0].is_multiple_of(2)));
        assert_eq!(b.summary(0).root_span_name, "root");
        let names = b.dict[&(AttrScope::Intrinsic, "name".to_owned())]
            .as_ref()
            .unwrap();
        assert_eq!(names[&DictValue::Str("child".into())].len(), 20);
        let status = b.dict[&(AttrScope::Intrinsic, "status".to_owned())]
            .as_ref()
            .unwrap();
        assert_eq!(status.keys().collect::<Vec<_>>(), [&DictValue::Int(2)]);
    }

    #[test]
    fn damaged_index_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = BlockWriter::create(dir.path(), "b1", 200).unwrap();
        w.add(&trace(1, "a")).unwrap();
        w.finish(1, 0, vec![]).unwrap();
        let ipath = dir.path().join("b1/index");
        let mut raw = fs::read(&ipath).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 0xff;
        fs::write(&ipath, raw).unwrap();
        assert!(matches!(
            Block::open(&dir.path().join("b1")),
            Err(Error::Corrupt { .. })
        ));
    }
}
