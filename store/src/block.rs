//! Immutable blocks: all samples of a time range `[min_time, max_time)`, written once by cutting the head,
//! importing, or compacting, then only read and finally deleted by retention.
//!
//! A block is a directory (layout drawn in `docs/formats.md`):
//! - `chunks`: `STCK` + u32 version, then pages `[u32 LE len][u32 LE CRC32-C][zstd frame]`. A page holds
//!   many encoded columns back to back; compressing neighbours together (series sorted by labels, so the
//!   same metric of many instances sits side by side) is where zstd pays.
//! - `index`: `STIX` + u32 version + u32 CRC32-C of the rest + a zstd frame holding the symbol table,
//!   the timestamp columns, the series (labels as symbol pairs, segments), the page table and the
//!   postings (label pair → series ids, delta-coded).
//! - `meta.json`: id, time range, counts, compaction level and sources.
//!
//! Series scraped together share identical timestamps, so each distinct timestamp column is stored once
//! per block and series refer to it.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::catalog::BlockEntry;
use crate::chunk::{decode_timestamps, decode_values, encode_timestamps, encode_values};
use crate::encoding::{put_str, put_uvarint, put_varint, DecodeError, Decoder};
use crate::error::{Error, Result};
use crate::model::{Label, Labels, Matcher, Sample};
use crate::page_cache::PageCache;
use crate::postings::{self, PostingsIndex};
use crate::wal::sync_dir;

const CHUNKS_MAGIC: &[u8; 4] = b"STCK";
const INDEX_MAGIC: &[u8; 4] = b"STIX";
const FORMAT_VERSION: u32 = 1;
/// Uncompressed bytes gathered before a page is compressed: big enough for zstd to find the
/// similarities between neighbouring series, small enough that reading one series stays cheap.
const PAGE_RAW_BYTES: usize = 256 << 10;
/// Samples per segment: a series longer than this in one block is split.
const SEGMENT_MAX_SAMPLES: usize = 16 * 1024;
/// A segment holds samples of one aligned span of time, so that a query over part of a long block
/// decodes little beyond its range. Aligned, the cuts fall at the same times in every series, and
/// series scraped together still share their timestamp columns.
const SEGMENT_SPAN_MS: i64 = 2 * 3600 * 1000;
const ZSTD_LEVEL: i32 = 9;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlockMeta {
    pub version: u32,
    pub id: String,
    pub min_time: i64,
    /// Exclusive.
    pub max_time: i64,
    pub num_series: u64,
    pub num_samples: u64,
    pub num_segments: u64,
    pub level: u32,
    pub sources: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
struct BlobRef {
    page: u32,
    offset: u32,
    len: u32,
}

/// Timestamp columns already decoded while reading one block's series one after another. Series
/// scraped together share a column, so a walk over them decodes each column once.
#[derive(Debug, Default)]
pub struct DecodedTimestamps {
    columns: HashMap<u32, Vec<i64>>,
    /// Scratch space for a segment's values.
    values: Vec<f64>,
}

impl DecodedTimestamps {
    /// Columns kept at most; past this the cache starts over, which bounds its memory.
    const MAX_COLUMNS: usize = 512;

    fn bound(&mut self) {
        if self.columns.len() > Self::MAX_COLUMNS {
            self.columns.clear();
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    min_t: i64,
    max_t: i64,
    count: u32,
    ts_column: u32,
    values: BlobRef,
}

#[derive(Debug)]
struct BlockSeries {
    labels: Box<[(u32, u32)]>,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, Copy)]
struct PageRef {
    offset: u64,
    len: u32,
}

/// A new, unique block id: creation time in ms plus randomness, so ids sort roughly by age.
pub fn new_block_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let salt = u64::from(std::process::id()).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{now:013}-{:08x}", salt as u32)
}

/// Writes one block; series must arrive sorted by labels.
pub struct BlockWriter {
    dir: PathBuf,
    tmp: PathBuf,
    chunks: File,
    chunks_len: u64,
    page: Vec<u8>,
    pages: Vec<PageRef>,
    symbols: HashMap<String, u32>,
    symbol_list: Vec<String>,
    ts_columns: HashMap<Vec<u8>, u32>,
    ts_refs: Vec<BlobRef>,
    series: Vec<BlockSeries>,
    series_hashes: Vec<u64>,
    last_labels: Option<Labels>,
    meta: BlockMeta,
}

impl BlockWriter {
    /// Starts a block under `blocks_dir` (written to `<id>.tmp`, renamed on [`finish`](Self::finish)).
    pub fn create(
        blocks_dir: &Path,
        min_time: i64,
        max_time: i64,
        level: u32,
        sources: Vec<String>,
    ) -> Result<Self> {
        let id = new_block_id();
        let dir = blocks_dir.join(&id);
        let tmp = blocks_dir.join(format!("{id}.tmp"));
        fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let path = tmp.join("chunks");
        let mut chunks = File::create(&path).map_err(|e| Error::io(&path, e))?;
        chunks
            .write_all(CHUNKS_MAGIC)
            .map_err(|e| Error::io(&path, e))?;
        chunks
            .write_all(&FORMAT_VERSION.to_le_bytes())
            .map_err(|e| Error::io(&path, e))?;
        Ok(BlockWriter {
            dir,
            tmp,
            chunks,
            chunks_len: 8,
            page: Vec::with_capacity(PAGE_RAW_BYTES + (64 << 10)),
            pages: Vec::new(),
            symbols: HashMap::new(),
            symbol_list: Vec::new(),
            ts_columns: HashMap::new(),
            ts_refs: Vec::new(),
            series: Vec::new(),
            series_hashes: Vec::new(),
            last_labels: None,
            meta: BlockMeta {
                version: FORMAT_VERSION,
                id,
                min_time,
                max_time,
                num_series: 0,
                num_samples: 0,
                num_segments: 0,
                level,
                sources,
            },
        })
    }

    pub fn id(&self) -> &str {
        &self.meta.id
    }

    fn symbol(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.symbols.get(s) {
            return id;
        }
        let id = self.symbol_list.len() as u32;
        self.symbol_list.push(s.to_owned());
        self.symbols.insert(s.to_owned(), id);
        id
    }

    fn put_blob(&mut self, blob: &[u8]) -> Result<BlobRef> {
        if !self.page.is_empty() && self.page.len() + blob.len() > PAGE_RAW_BYTES {
            self.flush_page()?;
        }
        let r = BlobRef {
            page: self.pages.len() as u32,
            offset: self.page.len() as u32,
            len: blob.len() as u32,
        };
        self.page.extend_from_slice(blob);
        Ok(r)
    }

    fn flush_page(&mut self) -> Result<()> {
        if self.page.is_empty() {
            return Ok(());
        }
        let path = self.tmp.join("chunks");
        let compressed =
            zstd::bulk::compress(&self.page, ZSTD_LEVEL).map_err(|e| Error::io(&path, e))?;
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&(compressed.len() as u32).to_le_bytes());
        head[4..].copy_from_slice(&crc32c::crc32c(&compressed).to_le_bytes());
        self.chunks
            .write_all(&head)
            .map_err(|e| Error::io(&path, e))?;
        self.chunks
            .write_all(&compressed)
            .map_err(|e| Error::io(&path, e))?;
        self.pages.push(PageRef {
            offset: self.chunks_len,
            len: compressed.len() as u32,
        });
        self.chunks_len += 8 + compressed.len() as u64;
        self.page.clear();
        Ok(())
    }

    /// Adds a series with its samples (sorted by time, all inside the block's range).
    pub fn add_series(&mut self, labels: &Labels, samples: &[Sample]) -> Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        debug_assert!(
            self.last_labels.as_ref().is_none_or(|l| l < labels),
            "series out of order"
        );
        debug_assert!(samples.windows(2).all(|w| w[0].t < w[1].t));
        debug_assert!(
            samples[0].t >= self.meta.min_time && samples[samples.len() - 1].t < self.meta.max_time
        );
        let syms: Box<[(u32, u32)]> = labels
            .iter()
            .map(|l| (self.symbol(&l.name), self.symbol(&l.value)))
            .collect();
        let mut segments = Vec::new();
        let mut ts = Vec::new();
        let mut vs = Vec::new();
        let spans = samples
            .chunk_by(|a, b| a.t.div_euclid(SEGMENT_SPAN_MS) == b.t.div_euclid(SEGMENT_SPAN_MS));
        for part in spans.flat_map(|span| span.chunks(SEGMENT_MAX_SAMPLES)) {
            ts.clear();
            vs.clear();
            ts.extend(part.iter().map(|s| s.t));
            vs.extend(part.iter().map(|s| s.v));
            let ts_bytes = encode_timestamps(&ts);
            let ts_column = match self.ts_columns.get(&ts_bytes) {
                Some(&id) => id,
                None => {
                    let r = self.put_blob(&ts_bytes)?;
                    let id = self.ts_refs.len() as u32;
                    self.ts_refs.push(r);
                    self.ts_columns.insert(ts_bytes, id);
                    id
                }
            };
            let values = self.put_blob(&encode_values(&vs))?;
            segments.push(Segment {
                min_t: part[0].t,
                max_t: part[part.len() - 1].t,
                count: part.len() as u32,
                ts_column,
                values,
            });
        }
        self.meta.num_series += 1;
        self.meta.num_samples += samples.len() as u64;
        self.meta.num_segments += segments.len() as u64;
        self.series.push(BlockSeries {
            labels: syms,
            segments,
        });
        self.series_hashes.push(labels.identity_hash() as u64);
        self.last_labels = Some(labels.clone());
        Ok(())
    }

    /// Writes the index and meta, syncs, and moves the block into place. Returns its catalog entry,
    /// or `None` when no series was added (nothing is left on disk then).
    pub fn finish(mut self) -> Result<Option<BlockEntry>> {
        if self.series.is_empty() {
            drop(self.chunks);
            fs::remove_dir_all(&self.tmp).map_err(|e| Error::io(&self.tmp, e))?;
            return Ok(None);
        }
        self.flush_page()?;
        let chunks_path = self.tmp.join("chunks");
        self.chunks
            .sync_all()
            .map_err(|e| Error::io(&chunks_path, e))?;

        let mut body = Vec::with_capacity(1 << 20);
        put_uvarint(&mut body, self.symbol_list.len() as u64);
        for s in &self.symbol_list {
            put_str(&mut body, s);
        }
        put_uvarint(&mut body, self.pages.len() as u64);
        for p in &self.pages {
            put_uvarint(&mut body, p.offset);
            put_uvarint(&mut body, u64::from(p.len));
        }
        put_uvarint(&mut body, self.ts_refs.len() as u64);
        for r in &self.ts_refs {
            put_blob_ref(&mut body, r);
        }
        put_uvarint(&mut body, self.series.len() as u64);
        for s in &self.series {
            put_uvarint(&mut body, s.labels.len() as u64);
            for &(n, v) in s.labels.iter() {
                put_uvarint(&mut body, u64::from(n));
                put_uvarint(&mut body, u64::from(v));
            }
            put_uvarint(&mut body, s.segments.len() as u64);
            for seg in &s.segments {
                put_varint(&mut body, seg.min_t);
                put_uvarint(&mut body, (seg.max_t - seg.min_t) as u64);
                put_uvarint(&mut body, u64::from(seg.count));
                put_uvarint(&mut body, u64::from(seg.ts_column));
                put_blob_ref(&mut body, &seg.values);
            }
        }
        let mut postings: std::collections::BTreeMap<(u32, u32), Vec<u32>> = Default::default();
        for (i, s) in self.series.iter().enumerate() {
            for &pair in s.labels.iter() {
                postings.entry(pair).or_default().push(i as u32);
            }
        }
        put_uvarint(&mut body, postings.len() as u64);
        for ((n, v), list) in &postings {
            put_uvarint(&mut body, u64::from(*n));
            put_uvarint(&mut body, u64::from(*v));
            put_uvarint(&mut body, list.len() as u64);
            let mut prev = 0u32;
            for &id in list {
                put_uvarint(&mut body, u64::from(id - prev));
                prev = id;
            }
        }
        let index_path = self.tmp.join("index");
        let compressed =
            zstd::bulk::compress(&body, ZSTD_LEVEL).map_err(|e| Error::io(&index_path, e))?;
        let mut out = Vec::with_capacity(compressed.len() + 12);
        out.extend_from_slice(INDEX_MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&compressed).to_le_bytes());
        out.extend_from_slice(&compressed);
        write_synced(&index_path, &out)?;
        let meta_path = self.tmp.join("meta.json");
        let meta = serde_json::to_vec_pretty(&self.meta)
            .map_err(|e| Error::corrupt(&meta_path, e.to_string()))?;
        write_synced(&meta_path, &meta)?;
        sync_dir(&self.tmp)?;
        fs::rename(&self.tmp, &self.dir).map_err(|e| Error::io(&self.dir, e))?;
        if let Some(parent) = self.dir.parent() {
            sync_dir(parent)?;
        }
        Ok(Some(BlockEntry {
            id: self.meta.id.clone(),
            min_time: self.meta.min_time,
            max_time: self.meta.max_time,
            num_series: self.meta.num_series,
            num_samples: self.meta.num_samples,
            size_bytes: dir_size(&self.dir),
            level: self.meta.level,
            series: {
                let mut h = std::mem::take(&mut self.series_hashes);
                h.sort_unstable();
                h.dedup();
                h
            },
        }))
    }
}

fn put_blob_ref(buf: &mut Vec<u8>, r: &BlobRef) {
    put_uvarint(buf, u64::from(r.page));
    put_uvarint(buf, u64::from(r.offset));
    put_uvarint(buf, u64::from(r.len));
}

fn write_synced(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(data).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

/// Bytes of all files in a directory (not recursive: blocks are flat).
pub fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// An open block: index in memory, chunk pages read and decompressed on demand.
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    symbols: Vec<String>,
    symbol_ids: HashMap<String, u32>,
    pages: Vec<PageRef>,
    ts_columns: Vec<BlobRef>,
    series: Vec<BlockSeries>,
    /// name symbol → [(value symbol, series ids)]
    postings: HashMap<u32, Vec<(u32, Vec<u32>)>>,
    chunks: Mutex<File>,
    /// This block's key in the process's [`PageCache`].
    cache_key: u64,
    size_bytes: u64,
}

impl Drop for Block {
    fn drop(&mut self) {
        PageCache::global().forget_block(self.cache_key);
    }
}

fn corrupt(path: &Path) -> impl Fn(DecodeError) -> Error + '_ {
    move |e| Error::corrupt(path, e.to_string())
}

impl Block {
    pub fn open(dir: &Path) -> Result<Block> {
        let meta_path = dir.join("meta.json");
        let meta: BlockMeta =
            serde_json::from_slice(&fs::read(&meta_path).map_err(|e| Error::io(&meta_path, e))?)
                .map_err(|e| Error::corrupt(&meta_path, e.to_string()))?;
        if meta.version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                path: meta_path,
                version: meta.version,
            });
        }
        let index_path = dir.join("index");
        let raw = fs::read(&index_path).map_err(|e| Error::io(&index_path, e))?;
        if raw.len() < 12 || &raw[..4] != INDEX_MAGIC {
            return Err(Error::corrupt(&index_path, "bad magic"));
        }
        let version = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                path: index_path,
                version,
            });
        }
        let crc = u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]);
        if crc32c::crc32c(&raw[12..]) != crc {
            return Err(Error::corrupt(&index_path, "checksum mismatch"));
        }
        let body = zstd::stream::decode_all(&raw[12..])
            .map_err(|e| Error::corrupt(&index_path, e.to_string()))?;
        let c = corrupt(&index_path);
        let mut d = Decoder::new(&body);
        let n = d.uvarint().map_err(&c)? as usize;
        let mut symbols = Vec::with_capacity(n.min(body.len()));
        for _ in 0..n {
            symbols.push(d.str().map_err(&c)?.to_owned());
        }
        let n = d.uvarint().map_err(&c)? as usize;
        let mut pages = Vec::with_capacity(n.min(body.len()));
        for _ in 0..n {
            pages.push(PageRef {
                offset: d.uvarint().map_err(&c)?,
                len: d.uvarint().map_err(&c)? as u32,
            });
        }
        let read_blob = |d: &mut Decoder<'_>| -> std::result::Result<BlobRef, DecodeError> {
            Ok(BlobRef {
                page: d.uvarint()? as u32,
                offset: d.uvarint()? as u32,
                len: d.uvarint()? as u32,
            })
        };
        let n = d.uvarint().map_err(&c)? as usize;
        let mut ts_columns = Vec::with_capacity(n.min(body.len()));
        for _ in 0..n {
            ts_columns.push(read_blob(&mut d).map_err(&c)?);
        }
        let n = d.uvarint().map_err(&c)? as usize;
        let mut series = Vec::with_capacity(n.min(body.len()));
        let sym_ok = |id: u64| -> std::result::Result<u32, DecodeError> {
            if (id as usize) < symbols.len() {
                Ok(id as u32)
            } else {
                Err(DecodeError("symbol out of range"))
            }
        };
        for _ in 0..n {
            let nl = d.uvarint().map_err(&c)? as usize;
            let mut labels = Vec::with_capacity(nl.min(64));
            for _ in 0..nl {
                labels.push((
                    sym_ok(d.uvarint().map_err(&c)?).map_err(&c)?,
                    sym_ok(d.uvarint().map_err(&c)?).map_err(&c)?,
                ));
            }
            let ns = d.uvarint().map_err(&c)? as usize;
            let mut segments = Vec::with_capacity(ns.min(1024));
            for _ in 0..ns {
                let min_t = d.varint().map_err(&c)?;
                let max_t = min_t.wrapping_add(d.uvarint().map_err(&c)? as i64);
                let count = d.uvarint().map_err(&c)? as u32;
                let ts_column = d.uvarint().map_err(&c)? as u32;
                let values = read_blob(&mut d).map_err(&c)?;
                if ts_column as usize >= ts_columns.len() {
                    return Err(Error::corrupt(&index_path, "timestamp column out of range"));
                }
                segments.push(Segment {
                    min_t,
                    max_t,
                    count,
                    ts_column,
                    values,
                });
            }
            series.push(BlockSeries {
                labels: labels.into_boxed_slice(),
                segments,
            });
        }
        let n = d.uvarint().map_err(&c)? as usize;
        let mut postings: HashMap<u32, Vec<(u32, Vec<u32>)>> = HashMap::new();
        for _ in 0..n {
            let name = sym_ok(d.uvarint().map_err(&c)?).map_err(&c)?;
            let value = sym_ok(d.uvarint().map_err(&c)?).map_err(&c)?;
            let len = d.uvarint().map_err(&c)? as usize;
            let mut list = Vec::with_capacity(len.min(series.len()));
            let mut prev = 0u32;
            for _ in 0..len {
                prev = prev.wrapping_add(d.uvarint().map_err(&c)? as u32);
                if prev as usize >= series.len() {
                    return Err(Error::corrupt(&index_path, "posting out of range"));
                }
                list.push(prev);
            }
            postings.entry(name).or_default().push((value, list));
        }
        let symbol_ids = symbols
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i as u32))
            .collect();
        let chunks_path = dir.join("chunks");
        let mut chunks = File::open(&chunks_path).map_err(|e| Error::io(&chunks_path, e))?;
        let mut head = [0u8; 8];
        chunks
            .read_exact(&mut head)
            .map_err(|e| Error::io(&chunks_path, e))?;
        if &head[..4] != CHUNKS_MAGIC {
            return Err(Error::corrupt(&chunks_path, "bad magic"));
        }
        Ok(Block {
            dir: dir.to_owned(),
            meta,
            symbols,
            symbol_ids,
            pages,
            ts_columns,
            series,
            postings,
            chunks: Mutex::new(chunks),
            cache_key: PageCache::global().block_key(),
            size_bytes: dir_size(dir),
        })
    }

    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.meta.min_time <= maxt && self.meta.max_time > mint
    }

    fn page(&self, id: u32) -> Result<Arc<Vec<u8>>> {
        let cache = PageCache::global();
        if let Some(page) = cache.get(self.cache_key, id) {
            return Ok(page);
        }
        let path = self.dir.join("chunks");
        let r = *self
            .pages
            .get(id as usize)
            .ok_or_else(|| Error::corrupt(&path, "page out of range"))?;
        let mut buf = vec![0u8; 8 + r.len as usize];
        {
            let mut f = self.chunks.lock();
            f.seek(SeekFrom::Start(r.offset))
                .map_err(|e| Error::io(&path, e))?;
            f.read_exact(&mut buf).map_err(|e| Error::io(&path, e))?;
        }
        let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
        if crc32c::crc32c(&buf[8..]) != crc {
            return Err(Error::corrupt(
                &path,
                format!("page {id}: checksum mismatch"),
            ));
        }
        let page = Arc::new(
            zstd::stream::decode_all(&buf[8..])
                .map_err(|e| Error::corrupt(&path, e.to_string()))?,
        );
        cache.insert(self.cache_key, id, page.clone());
        Ok(page)
    }

    fn blob(&self, r: BlobRef) -> Result<(Arc<Vec<u8>>, std::ops::Range<usize>)> {
        let page = self.page(r.page)?;
        let range = r.offset as usize..(r.offset as usize + r.len as usize);
        if range.end > page.len() {
            return Err(Error::corrupt(self.dir.join("chunks"), "blob out of page"));
        }
        Ok((page, range))
    }

    fn labels(&self, s: &BlockSeries) -> Labels {
        Labels::from_sorted(
            s.labels
                .iter()
                .map(|&(n, v)| {
                    Label::new(
                        self.symbols[n as usize].clone(),
                        self.symbols[v as usize].clone(),
                    )
                })
                .collect(),
        )
    }

    fn series_samples(
        &self,
        s: &BlockSeries,
        mint: i64,
        maxt: i64,
        out: &mut Vec<Sample>,
        decoded: &mut DecodedTimestamps,
    ) -> Result<()> {
        let path = self.dir.join("chunks");
        let overlapping = || {
            s.segments
                .iter()
                .filter(|g| g.max_t >= mint && g.min_t <= maxt)
        };
        out.reserve(overlapping().map(|g| g.count as usize).sum());
        let mut vs = std::mem::take(&mut decoded.values);
        for seg in overlapping() {
            let ts = match decoded.columns.entry(seg.ts_column) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let mut ts = Vec::new();
                    let (page, range) = self.blob(self.ts_columns[seg.ts_column as usize])?;
                    decode_timestamps(&page[range], &mut ts)
                        .map_err(|e| Error::corrupt(&path, e))?;
                    e.insert(ts)
                }
            };
            vs.clear();
            let (page, range) = self.blob(seg.values)?;
            decode_values(&page[range], &mut vs).map_err(|e| Error::corrupt(&path, e))?;
            if ts.len() != vs.len() || ts.len() != seg.count as usize {
                return Err(Error::corrupt(&path, "segment length mismatch"));
            }
            let pairs = ts.iter().zip(&vs).map(|(&t, &v)| Sample::new(t, v));
            if seg.min_t >= mint && seg.max_t <= maxt {
                out.extend(pairs);
            } else {
                out.extend(pairs.filter(|p| p.t >= mint && p.t <= maxt));
            }
        }
        decoded.values = vs;
        decoded.bound();
        Ok(())
    }

    fn matching(&self, matchers: &[Matcher]) -> Vec<u32> {
        postings::select(self, matchers)
    }

    /// Matching series with samples in `[mint, maxt]`, sorted by labels.
    pub fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>> {
        let mut out = Vec::new();
        let mut decoded = DecodedTimestamps::default();
        for id in self.matching(matchers) {
            let s = &self.series[id as usize];
            if !s
                .segments
                .iter()
                .any(|g| g.max_t >= mint && g.min_t <= maxt)
            {
                continue;
            }
            let mut samples = Vec::new();
            self.series_samples(s, mint, maxt, &mut samples, &mut decoded)?;
            if !samples.is_empty() {
                out.push((self.labels(s), samples));
            }
        }
        Ok(out)
    }

    /// Matching series with data overlapping the range, in label order, as ids whose samples
    /// [`Block::samples_of`] decodes one series at a time.
    pub fn select_ids(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<(Labels, u32)> {
        self.matching(matchers)
            .into_iter()
            .filter_map(|id| {
                let s = &self.series[id as usize];
                s.segments
                    .iter()
                    .any(|g| g.max_t >= mint && g.min_t <= maxt)
                    .then(|| (self.labels(s), id))
            })
            .collect()
    }

    /// Appends the samples in `[mint, maxt]` of series `id` (from [`Block::select_ids`]).
    /// Series read one after the other should share `decoded`.
    pub fn samples_of(
        &self,
        id: u32,
        mint: i64,
        maxt: i64,
        out: &mut Vec<Sample>,
        decoded: &mut DecodedTimestamps,
    ) -> Result<()> {
        match self.series.get(id as usize) {
            Some(s) => self.series_samples(s, mint, maxt, out, decoded),
            None => Err(Error::corrupt(
                self.dir.join("index"),
                "series id out of range",
            )),
        }
    }

    /// Label sets of matching series with data overlapping the range, sorted.
    pub fn series_labels(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Labels> {
        self.matching(matchers)
            .into_iter()
            .map(|id| &self.series[id as usize])
            .filter(|s| {
                s.segments
                    .iter()
                    .any(|g| g.max_t >= mint && g.min_t <= maxt)
            })
            .map(|s| self.labels(s))
            .collect()
    }

    /// Every series with all its samples, in label order (for compaction).
    pub fn all_series(&self) -> impl Iterator<Item = Result<(Labels, Vec<Sample>)>> + '_ {
        let mut decoded = DecodedTimestamps::default();
        self.series.iter().map(move |s| {
            let mut samples = Vec::new();
            self.series_samples(s, i64::MIN, i64::MAX, &mut samples, &mut decoded)?;
            Ok((self.labels(s), samples))
        })
    }
}

impl PostingsIndex for Block {
    fn all_postings(&self) -> Vec<u32> {
        (0..self.series.len() as u32).collect()
    }

    fn for_each_value(&self, name: &str, f: &mut dyn FnMut(&str, &[u32])) {
        let Some(n) = self.symbol_ids.get(name) else {
            return;
        };
        if let Some(values) = self.postings.get(n) {
            for (v, list) in values {
                f(&self.symbols[*v as usize], list);
            }
        }
    }

    fn postings(&self, name: &str, value: &str) -> Vec<u32> {
        let (Some(n), Some(v)) = (self.symbol_ids.get(name), self.symbol_ids.get(value)) else {
            return Vec::new();
        };
        self.postings
            .get(n)
            .and_then(|values| values.iter().find(|(x, _)| x == v))
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{stale_nan, MatchOp};

    #[test]
    fn write_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut series: Vec<(Labels, Vec<Sample>)> = (0..300)
            .map(|i| {
                let labels = Labels::from_pairs([
                    ("__name__", if i % 2 == 0 { "a" } else { "b" }.to_string()),
                    ("instance", format!("host-{i}")),
                ]);
                let samples: Vec<Sample> = (0..480)
                    .map(|j| Sample::new(j * 15_000 + i % 7, (i * 1000 + j) as f64 * 0.5))
                    .collect();
                (labels, samples)
            })
            .collect();
        series[3].1[10].v = stale_nan();
        series[4].1[11].v = f64::NAN;
        series.sort_by(|a, b| a.0.cmp(&b.0));
        let mut w = BlockWriter::create(dir.path(), 0, 7_200_000, 1, vec![]).unwrap();
        for (l, s) in &series {
            w.add_series(l, s).unwrap();
        }
        let entry = w.finish().unwrap().unwrap();
        assert_eq!(entry.num_samples, 300 * 480);
        let block = Block::open(&dir.path().join(&entry.id)).unwrap();
        let all: Vec<_> = block.all_series().collect::<Result<_>>().unwrap();
        assert_eq!(all.len(), series.len());
        for ((la, sa), (lb, sb)) in all.iter().zip(&series) {
            assert_eq!(la, lb);
            assert_eq!(sa.len(), sb.len());
            for (x, y) in sa.iter().zip(sb) {
                assert_eq!((x.t, x.v.to_bits()), (y.t, y.v.to_bits()));
            }
        }
        let got = block
            .select(
                &[
                    Matcher::equal("__name__", "a"),
                    Matcher::new(MatchOp::Regex, "instance", "host-1.").unwrap(),
                ],
                15_000,
                30_006,
            )
            .unwrap();
        assert_eq!(got.len(), 5);
        assert!(got.iter().all(|(_, s)| s.len() == 2));
    }

    #[test]
    fn segments_follow_aligned_spans_and_share_timestamp_columns() {
        // Two series scraped together over 5 h of a 6 h block, and one scraped at other times.
        let dir = tempfile::tempdir().unwrap();
        let hour = 3_600_000;
        let times: Vec<i64> = (0..1200).map(|j| hour / 2 + j * 15_000).collect();
        let series = |name: &str, shift: i64| {
            let labels = Labels::from_pairs([("__name__", name.to_string())]);
            let samples: Vec<Sample> = times
                .iter()
                .map(|&t| Sample::new(t + shift, (t / 1000) as f64))
                .collect();
            (labels, samples)
        };
        let all = [series("a", 0), series("b", 0), series("c", 7)];
        let mut w = BlockWriter::create(dir.path(), 0, 6 * hour, 1, vec![]).unwrap();
        for (l, s) in &all {
            w.add_series(l, s).unwrap();
        }
        let entry = w.finish().unwrap().unwrap();
        let block = Block::open(&dir.path().join(&entry.id)).unwrap();
        // 0:30 to 5:30: the spans 0-2 h, 2-4 h and 4-6 h.
        for s in block.series.iter() {
            let bounds: Vec<(i64, i64)> = s.segments.iter().map(|g| (g.min_t, g.max_t)).collect();
            assert_eq!(bounds.len(), 3, "{bounds:?}");
            for (g, span) in bounds.iter().zip(0..) {
                assert!(
                    g.0 >= span * 2 * hour && g.1 < (span + 1) * 2 * hour,
                    "{bounds:?}"
                );
            }
        }
        assert_eq!(
            block.series[0].segments[1].ts_column,
            block.series[1].segments[1].ts_column
        );
        assert_eq!(block.ts_columns.len(), 6, "a and b share, c has its own");
        // A read from the middle of the range gets exactly its samples, through a shared cache.
        let mut decoded = DecodedTimestamps::default();
        for (id, (_, samples)) in all.iter().enumerate() {
            let mut out = Vec::new();
            block
                .samples_of(
                    id as u32,
                    2 * hour - 30_000,
                    3 * hour,
                    &mut out,
                    &mut decoded,
                )
                .unwrap();
            let want: Vec<Sample> = samples
                .iter()
                .copied()
                .filter(|p| p.t >= 2 * hour - 30_000 && p.t <= 3 * hour)
                .collect();
            assert_eq!(out, want);
        }
        assert_eq!(
            decoded.columns.len(),
            4,
            "two spans read, for two timestamp columns"
        );
    }

    #[test]
    fn damaged_index_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = BlockWriter::create(dir.path(), 0, 1000, 1, vec![]).unwrap();
        w.add_series(
            &Labels::from_pairs([("__name__", "x")]),
            &[Sample::new(1, 1.0)],
        )
        .unwrap();
        let e = w.finish().unwrap().unwrap();
        let p = dir.path().join(&e.id).join("index");
        let mut data = fs::read(&p).unwrap();
        let n = data.len();
        data[n - 1] ^= 1;
        fs::write(&p, data).unwrap();
        assert!(matches!(
            Block::open(&dir.path().join(&e.id)),
            Err(Error::Corrupt { .. })
        ));
    }
}
