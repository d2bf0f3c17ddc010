//! The trace store of one tenant, under `<data_dir>/<tenant>/traces/`: span batches are appended to a
//! WAL (group-committed, acknowledged once durable), kept in memory grouped by trace id until the
//! trace has been idle for a while, then cut into immutable blocks (see [`block`]). Background work
//! compacts adjacent blocks, which also joins a trace split across them, and drops blocks past
//! retention. Reads merge the head and every block, newest first.
//!
//! Paths: ingest [`TraceStore::append`]; reads through [`TraceReader`]; background
//! [`TraceStore::maintain`] (cut, compact, retention).

pub mod block;
mod columns;
pub mod model;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::encoding::Decoder;
use crate::error::{Error, Result};
use crate::wal::{self, Wal, WalOptions};

use block::PageCache;
pub use block::{AttrScope, Block, BlockMeta, DictValue};
pub use model::*;

/// WAL payload type of a span batch (the first payload byte, as in the metrics WAL).
const REC_SPANS: u8 = 0x20;
/// Most candidates of one page a scan materializes in one pass over its columns.
const MAX_SCAN_RUN: usize = 1024;

#[derive(Debug, Clone)]
pub struct TracesConfig {
    /// A trace is cut into a block once no span arrived for it for this long.
    pub trace_idle_secs: u64,
    /// The head is cut whole once it holds more than this many encoded bytes. Appends are refused
    /// (retry later) while it holds more than twice this, which bounds the memory of a head that
    /// fills faster than a cut writes it out.
    pub max_head_bytes: usize,
    /// How long an append waits for a cut to make room in a head that holds twice
    /// `max_head_bytes` before it is refused. Waiting keeps senders' requests in flight (the
    /// server's own backpressure) where a refusal sends them into their retry backoff.
    pub head_full_wait: Duration,
    /// Spans of one trace beyond this many encoded bytes (in the head) are refused.
    pub max_trace_bytes: usize,
    /// Uncompressed bytes per page (row group of columns) of a block: the unit read for one trace
    /// lookup. Larger pages compress better (each column's distinct values and zstd tables are
    /// written once per page) but cost more to decode per lookup.
    pub page_bytes: usize,
    /// Decompressed pages kept in memory for lookups and searches, shared by all blocks.
    pub page_cache_bytes: usize,
    /// Compaction merges adjacent blocks while their sum stays below this.
    pub compact_max_block_bytes: u64,
    /// Blocks kept before compaction starts merging.
    pub compact_min_blocks: usize,
    /// Blocks whose newest span is older than this are dropped; 0 keeps everything.
    pub retention_secs: u64,
    pub wal_fsync: bool,
}

impl Default for TracesConfig {
    fn default() -> Self {
        TracesConfig {
            trace_idle_secs: 30,
            max_head_bytes: 256 << 20,
            head_full_wait: Duration::from_secs(5),
            max_trace_bytes: 16 << 20,
            page_bytes: 512 << 10,
            page_cache_bytes: 128 << 20,
            compact_max_block_bytes: 512 << 20,
            compact_min_blocks: 4,
            retention_secs: 14 * 24 * 3600,
            wal_fsync: true,
        }
    }
}

/// The result of an append: how many spans were stored and why others were not.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TraceAppend {
    pub accepted: u64,
    pub rejected: u64,
    pub reason: String,
}

/// A trace in the head, kept as the WAL encodings of its parts (a fraction of the decoded size);
/// decoded when read or cut.
#[derive(Clone)]
struct HeadTrace {
    chunks: Vec<Vec<u8>>,
    bytes: usize,
    last_append_ms: i64,
}

impl HeadTrace {
    fn decode(&self, trace_id: TraceId) -> Result<Trace> {
        let mut t = Trace {
            trace_id,
            batches: Vec::new(),
        };
        for c in &self.chunks {
            let batches = model::get_batches(&mut Decoder::new(c), None, None)
                .map_err(|e| Error::corrupt("trace head", e.to_string()))?;
            for rs in batches {
                model::push_batch(&mut t.batches, rs);
            }
        }
        Ok(t)
    }
}

#[derive(Default)]
struct Head {
    traces: HashMap<TraceId, HeadTrace>,
    bytes: usize,
}

/// Limits and filters of a scan; times in unix nanoseconds, `0` meaning unbounded.
#[derive(Debug, Clone, Default)]
pub struct ScanRequest {
    pub start_ns: u64,
    pub end_ns: u64,
    pub min_duration_ns: u64,
    pub max_duration_ns: u64,
    /// Conjunction of disjunctions of attribute equalities every returned trace must hold somewhere;
    /// blocks answer it from their postings, skipping traces that cannot match.
    pub required: Vec<Vec<(AttrScope, String, DictValue)>>,
    /// Each of these must hold, all its conditions on one span, for some span of a returned
    /// trace; blocks check them on their columns before decoding a trace.
    pub span_filters: Vec<Vec<SpanCondition>>,
}

/// A condition on one span that a block checks on its columns.
#[derive(Debug, Clone, PartialEq)]
pub enum SpanCondition {
    /// The span's name is (`equal`) or is not this.
    Name {
        equal: bool,
        name: String,
    },
    Status {
        equal: bool,
        code: StatusCode,
    },
    Kind {
        equal: bool,
        kind: SpanKind,
    },
    /// The span's duration in nanoseconds lies in `min..=max`.
    Duration {
        min: u64,
        max: u64,
    },
    /// The span's resource has this string attribute.
    Resource {
        key: String,
        value: String,
    },
}

impl ScanRequest {
    fn admits(&self, s: &TraceSummary) -> bool {
        (self.end_ns == 0 || s.start_unix_nano <= self.end_ns)
            && (self.start_ns == 0 || s.end_unix_nano >= self.start_ns)
            && s.duration_nanos() >= self.min_duration_ns
            && (self.max_duration_ns == 0 || s.duration_nanos() <= self.max_duration_ns)
    }
}

/// What a scan looked at, for the search response's `metrics`.
#[derive(Debug, Clone, Default)]
pub struct ScanStats {
    pub inspected_traces: u64,
    pub inspected_bytes: u64,
    pub total_blocks: u64,
}

/// Read access to traces, as the query layer and the API use it.
pub trait TraceReader: Send + Sync {
    /// Every stored span of the trace; with `range`, `None` unless a span overlaps it.
    fn trace_by_id(&self, id: &TraceId, range: Option<(u64, u64)>) -> Result<Option<Trace>>;
    /// Visits candidate traces newest data first until `visit` returns false.
    fn scan(&self, req: &ScanRequest, visit: &mut dyn FnMut(&Trace) -> bool) -> Result<ScanStats>;
    /// Attribute keys seen in the range, by scope.
    fn tag_names(&self, start_ns: u64, end_ns: u64) -> Result<BTreeSet<(AttrScope, String)>>;
    /// Distinct values of an attribute seen in the range, at most `limit`.
    fn tag_values(
        &self,
        scope: AttrScope,
        key: &str,
        start_ns: u64,
        end_ns: u64,
        limit: usize,
    ) -> Result<BTreeSet<DictValue>>;
}

pub struct TraceStore {
    dir: PathBuf,
    cfg: TracesConfig,
    wal: Wal,
    /// Appends hold it shared (WAL then head); cutting holds it exclusively while it takes the head
    /// (starting a new WAL segment when it takes all) and while it checkpoints, so the head, the
    /// checkpoint and the segments agree.
    gate: RwLock<()>,
    head: RwLock<Head>,
    /// Traces taken from the head and being written into a block: still readable.
    flushing: RwLock<Arc<Vec<(TraceId, HeadTrace)>>>,
    blocks: RwLock<Vec<Arc<Block>>>,
    page_cache: Arc<PageCache>,
    next_seq: AtomicU64,
    /// One cut at a time.
    cutting: Mutex<()>,
    /// One compaction or retention pass at a time. Cuts go on meanwhile: a compaction of large
    /// blocks takes long enough for the head to fill several times.
    compacting: Mutex<()>,
    /// Appends waiting for a cut to make room in a full head wait on `room`, under this lock.
    room_lock: Mutex<()>,
    room: Condvar,
    /// Set while a thread runs [`TraceStore::cut_while_over_limit`].
    cutter: std::sync::atomic::AtomicBool,
    pub spans_ingested: AtomicU64,
    /// Encoded bytes of the last append: the next one's first guess.
    encoded_hint: AtomicUsize,
}

/// A WAL payload: the record type, the number of parts, then per part the trace id and its encoding.
fn wal_payload<'a>(
    parts: impl ExactSizeIterator<Item = (&'a TraceId, &'a [u8])> + Clone,
) -> Vec<u8> {
    // Exact size up front: payloads reach megabytes, and growing one by doubling copies it again.
    let size = 1 + 10 + parts.clone().map(|(_, b)| 16 + 10 + b.len()).sum::<usize>();
    let mut buf = Vec::with_capacity(size);
    buf.push(REC_SPANS);
    crate::encoding::put_uvarint(&mut buf, parts.len() as u64);
    for (id, body) in parts {
        buf.extend_from_slice(id);
        crate::encoding::put_bytes(&mut buf, body);
    }
    buf
}

/// Splits a WAL payload into its (trace id, encoded part) pairs.
fn decode_parts(p: &[u8]) -> std::result::Result<Vec<(TraceId, Vec<u8>)>, String> {
    let Some((&REC_SPANS, rest)) = p.split_first() else {
        return Err("unknown trace WAL record type".into());
    };
    let mut d = Decoder::new(rest);
    let parts = (|| {
        let n = d.uvarint()? as usize;
        let mut out = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let mut id = [0u8; 16];
            id.copy_from_slice(d.bytes(16)?);
            out.push((id, d.len_bytes()?.to_vec()));
        }
        Ok(out)
    })()
    .map_err(|e: crate::encoding::DecodeError| e.to_string())?;
    if !d.is_empty() {
        return Err("trailing bytes".into());
    }
    Ok(parts)
}

impl TraceStore {
    pub fn open(dir: &Path, cfg: TracesConfig) -> Result<TraceStore> {
        let blocks_dir = dir.join("blocks");
        fs::create_dir_all(&blocks_dir).map_err(|e| Error::io(&blocks_dir, e))?;
        let page_cache = Arc::new(PageCache::new(cfg.page_cache_bytes as u64));
        let blocks = open_blocks(&blocks_dir, &page_cache)?;
        let next_seq = blocks.iter().map(|b| b.meta.seq + 1).max().unwrap_or(1);
        let wal_dir = dir.join("wal");
        let replay = wal::replay_raw(&wal_dir, |_| 0)?;
        let now = now_ms();
        let mut head = Head::default();
        let payloads = replay.payloads.iter().map(|(_, p)| p);
        for (i, p) in replay.checkpoint.iter().chain(payloads).enumerate() {
            match decode_parts(p) {
                Ok(parts) => insert_head(&mut head, parts, now),
                Err(e) if i < replay.checkpoint.len() => {
                    return Err(Error::corrupt(wal_dir.join("checkpoint"), e));
                }
                Err(e) => tracing::warn!(error = %e, "undecodable trace WAL record skipped"),
            }
        }
        let wal = Wal::open(
            &wal_dir,
            replay.next_segment,
            replay.segments,
            WalOptions {
                fsync: cfg.wal_fsync,
                ..Default::default()
            },
        )?;
        tracing::info!(dir = %dir.display(), traces = head.traces.len(), blocks = blocks.len(), "trace store opened");
        Ok(TraceStore {
            dir: dir.to_owned(),
            cfg,
            wal,
            gate: RwLock::new(()),
            head: RwLock::new(head),
            flushing: RwLock::new(Arc::new(Vec::new())),
            blocks: RwLock::new(blocks),
            page_cache,
            next_seq: AtomicU64::new(next_seq),
            cutting: Mutex::new(()),
            compacting: Mutex::new(()),
            room_lock: Mutex::new(()),
            room: Condvar::new(),
            cutter: std::sync::atomic::AtomicBool::new(false),
            spans_ingested: AtomicU64::new(0),
            encoded_hint: AtomicUsize::new(64 << 10),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Logs the spans and makes them readable; returns once they are durable. Spans that would grow a
    /// trace past `max_trace_bytes` are refused and counted.
    pub fn append(&self, batches: Vec<ResourceSpans>) -> Result<TraceAppend> {
        self.wait_for_room()?;
        let mut out = TraceAppend::default();
        // Every trace is encoded into one buffer sized from the previous request, then copied once
        // into the WAL payload and once into its exact-size head chunk: no buffer grows by doubling.
        let mut encoded = Vec::with_capacity(self.encoded_hint.load(Ordering::Relaxed));
        let mut accepted: Vec<(TraceId, std::ops::Range<usize>)> = Vec::new();
        let mut n = 0u64;
        {
            let head = self.head.read();
            for t in group_by_trace(batches) {
                let from = encoded.len();
                model::put_batches(&mut encoded, &t.batches, ResourceRef::Inline, true);
                let len = encoded.len() - from;
                let have = head.traces.get(&t.trace_id).map_or(0, |h| h.bytes);
                let spans = t.span_count() as u64;
                if have + len > self.cfg.max_trace_bytes {
                    encoded.truncate(from);
                    out.rejected += spans;
                    out.reason = format!(
                        "trace {} exceeds the per-trace limit of {} bytes",
                        hex(&t.trace_id),
                        self.cfg.max_trace_bytes
                    );
                } else {
                    n += spans;
                    accepted.push((t.trace_id, from..encoded.len()));
                }
            }
        }
        if accepted.is_empty() {
            return Ok(out);
        }
        self.encoded_hint.store(encoded.len(), Ordering::Relaxed);
        let payload = wal_payload(accepted.iter().map(|(id, r)| (id, &encoded[r.clone()])));
        let accepted: Vec<(TraceId, Vec<u8>)> = accepted
            .into_iter()
            .map(|(id, r)| (id, encoded[r].to_vec()))
            .collect();
        let ticket = {
            let _g = self.gate.read();
            let ticket = self.wal.log(payload, now_ms())?;
            insert_head(&mut self.head.write(), accepted, now_ms());
            ticket
        };
        ticket.wait()?;
        self.spans_ingested.fetch_add(n, Ordering::Relaxed);
        out.accepted = n;
        Ok(out)
    }

    /// Returns once the head holds at most twice `max_head_bytes`, waiting up to `head_full_wait`
    /// for a cut to take it; past that, the append is refused (retry later).
    fn wait_for_room(&self) -> Result<()> {
        let limit = 2 * self.cfg.max_head_bytes;
        if self.head.read().bytes <= limit {
            return Ok(());
        }
        let deadline = Instant::now() + self.cfg.head_full_wait;
        let mut g = self.room_lock.lock();
        loop {
            let held = self.head.read().bytes;
            if held <= limit {
                return Ok(());
            }
            if self.room.wait_until(&mut g, deadline).timed_out() && self.head.read().bytes > limit
            {
                return Err(Error::Overloaded(format!(
                    "the trace head holds {held} bytes, more than twice traces.max_head_bytes, \
                     while a block is written out; retry later"
                )));
            }
        }
    }

    /// True when the head has grown past `max_head_bytes` and should be cut now, not at the next
    /// maintenance tick.
    pub fn head_over_limit(&self) -> bool {
        self.head.read().bytes > self.cfg.max_head_bytes
    }

    /// Whether a thread is in [`Self::cut_while_over_limit`].
    pub fn cutter_running(&self) -> bool {
        self.cutter.load(Ordering::Acquire)
    }

    /// Cuts the whole head, again and again, while it is over `max_head_bytes`: under sustained
    /// load, one cut follows the other while appends go on filling the head. Returns at once when
    /// another thread is doing it.
    pub fn cut_while_over_limit(&self) -> Result<()> {
        loop {
            if self.cutter.swap(true, Ordering::AcqRel) {
                return Ok(());
            }
            let result = (|| {
                while self.head_over_limit() {
                    self.cut(now_ms(), false)?;
                }
                Ok(())
            })();
            self.cutter.store(false, Ordering::Release);
            // An append may have filled the head after the last check, and found this thread
            // still running: look once more.
            if result.is_err() || !self.head_over_limit() {
                return result;
            }
        }
    }

    pub fn head_bytes(&self) -> usize {
        self.head.read().bytes
    }

    pub fn head_traces(&self) -> usize {
        self.head.read().traces.len()
    }

    pub fn blocks(&self) -> Vec<Arc<Block>> {
        self.blocks.read().clone()
    }

    pub fn blocks_bytes(&self) -> u64 {
        self.blocks
            .read()
            .iter()
            .map(|b| b.meta.total_bytes())
            .sum()
    }

    /// Cuts idle traces (all traces when `force` or when the head is over its size) into a block.
    /// Returns the number of traces written.
    pub fn cut(&self, now_ms: i64, force: bool) -> Result<usize> {
        let _cut = self.cutting.lock();
        let (taken, rotated) = {
            let _g = self.gate.write();
            let mut head = self.head.write();
            let all = force || head.bytes > self.cfg.max_head_bytes;
            // When the whole head is taken, the WAL starts a new segment here: once the block is
            // written, the older segments hold nothing the block does not, and go without a
            // checkpoint (which would copy the head that refilled meanwhile). Appends are held
            // between their WAL record and the head (the gate), so none falls on the wrong side.
            let rotated = if all && !head.traces.is_empty() {
                Some(self.wal.rotate()?)
            } else {
                None
            };
            let idle_before = now_ms - (self.cfg.trace_idle_secs as i64) * 1000;
            let ids: Vec<TraceId> = head
                .traces
                .iter()
                .filter(|(_, h)| all || h.last_append_ms <= idle_before)
                .map(|(id, _)| *id)
                .collect();
            let mut taken = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(h) = head.traces.remove(&id) {
                    head.bytes -= h.bytes;
                    taken.push((id, h));
                }
            }
            taken.sort_by_key(|(id, _)| *id);
            let taken = Arc::new(taken);
            *self.flushing.write() = taken.clone();
            (taken, rotated)
        };
        // The head has room again.
        drop(self.room_lock.lock());
        self.room.notify_all();
        if taken.is_empty() {
            return Ok(0);
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let result = (|| {
            let mut w = BlockWriter::create(
                &self.dir.join("blocks"),
                &block_id(seq),
                self.cfg.page_bytes,
            )?;
            for (id, h) in taken.iter() {
                w.add(&h.decode(*id)?)?;
            }
            w.finish(seq, 0, Vec::new())?;
            Block::open_cached(
                &self.dir.join("blocks").join(block_id(seq)),
                self.page_cache.clone(),
            )
        })();
        let _g = self.gate.write();
        let block = match result {
            Ok(b) => b,
            Err(e) => {
                // Put the traces back: they are still in the WAL, and the next cut retries.
                let mut head = self.head.write();
                for (id, h) in taken.iter() {
                    let parts = h.chunks.iter().map(|c| (*id, c.clone())).collect();
                    insert_head(&mut head, parts, now_ms);
                }
                *self.flushing.write() = Arc::new(Vec::new());
                return Err(e);
            }
        };
        self.blocks.write().push(Arc::new(block));
        *self.flushing.write() = Arc::new(Vec::new());
        if let Some(first_kept) = rotated {
            drop(_g);
            return self.wal.remove_before(first_kept).map(|()| taken.len());
        }
        // Everything still in the head goes into the checkpoint; every older segment goes.
        let records: Vec<Vec<u8>> = self
            .head
            .read()
            .traces
            .iter()
            .map(|(id, h)| wal_payload(h.chunks.iter().map(|c| (id, c.as_slice()))))
            .collect();
        self.wal.checkpoint(&records, i64::MAX)?;
        Ok(taken.len())
    }

    /// Merges blocks level by level (oldest first); a trace split across them becomes one. Once a
    /// level holds `compact_min_blocks` blocks, they are merged (as many as fit in
    /// `compact_max_block_bytes`) into one block of the next level. A span is therefore rewritten
    /// once per level, a few times in all, where merging each new block into one growing block
    /// would rewrite the oldest spans at every merge.
    pub fn compact(&self) -> Result<usize> {
        let _bg = self.compacting.lock();
        let mut merged = 0;
        loop {
            let mut by_level: BTreeMap<u32, Vec<Arc<Block>>> = BTreeMap::new();
            for b in self.blocks() {
                by_level.entry(b.meta.level).or_default().push(b);
            }
            let min_blocks = self.cfg.compact_min_blocks.max(2);
            let run = by_level.into_values().find_map(|mut level| {
                if level.len() < min_blocks {
                    return None;
                }
                level.sort_by_key(|b| b.meta.seq);
                let mut bytes = 0;
                let fit = level
                    .iter()
                    .take_while(|b| {
                        bytes += b.meta.total_bytes();
                        bytes <= self.cfg.compact_max_block_bytes
                    })
                    .count();
                level.truncate(fit);
                (level.len() >= 2).then_some(level)
            });
            let Some(run) = run else {
                return Ok(merged);
            };
            self.merge(&run)?;
            merged += run.len();
        }
    }

    fn merge(&self, run: &[Arc<Block>]) -> Result<()> {
        let seq = run.iter().map(|b| b.meta.seq).min().unwrap_or(0);
        let level = run.iter().map(|b| b.meta.level).max().unwrap_or(0) + 1;
        let id = format!("{}-l{level}", block_id(seq));
        let blocks_dir = self.dir.join("blocks");
        let mut w = BlockWriter::create(&blocks_dir, &id, self.cfg.page_bytes)?;
        // k-way merge by trace id: each block is sorted, and read a page at a time.
        let mut pos = vec![0usize; run.len()];
        let mut read: Vec<VecDeque<Trace>> = vec![VecDeque::new(); run.len()];
        loop {
            let next = run
                .iter()
                .enumerate()
                .filter(|(i, b)| pos[*i] < b.len())
                .map(|(i, b)| b.summary(pos[i]).trace_id)
                .min();
            let Some(id) = next else { break };
            let mut trace: Option<Trace> = None;
            for (i, b) in run.iter().enumerate() {
                if pos[i] < b.len() && b.summary(pos[i]).trace_id == id {
                    if read[i].is_empty() {
                        let page: Vec<usize> = (pos[i]..b.page_ordinals(pos[i]).end).collect();
                        read[i].extend(b.read_many(&page)?);
                    }
                    let t = read[i]
                        .pop_front()
                        .ok_or_else(|| Error::corrupt(b.dir(), "trace not read"))?;
                    pos[i] += 1;
                    match &mut trace {
                        None => trace = Some(t),
                        Some(acc) => acc.merge(t),
                    }
                }
            }
            if let Some(t) = trace {
                w.add(&t)?;
            }
        }
        let replaces: Vec<String> = run.iter().map(|b| b.meta.id.clone()).collect();
        w.finish(seq, level, replaces.clone())?;
        let block = Arc::new(Block::open_cached(
            &blocks_dir.join(&id),
            self.page_cache.clone(),
        )?);
        {
            let mut blocks = self.blocks.write();
            let at = blocks
                .iter()
                .position(|b| replaces.contains(&b.meta.id))
                .unwrap_or(blocks.len());
            blocks.retain(|b| !replaces.contains(&b.meta.id));
            let at = at.min(blocks.len());
            blocks.insert(at, block);
        }
        for b in run {
            fs::remove_dir_all(b.dir()).map_err(|e| Error::io(b.dir(), e))?;
        }
        Ok(())
    }

    /// Drops blocks whose newest span ended before `now - retention`.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize> {
        if self.cfg.retention_secs == 0 {
            return Ok(0);
        }
        let _bg = self.compacting.lock();
        let cutoff = (now_ms.max(0) as u64)
            .saturating_mul(1_000_000)
            .saturating_sub(self.cfg.retention_secs.saturating_mul(1_000_000_000));
        let expired: Vec<Arc<Block>> = self
            .blocks()
            .into_iter()
            .filter(|b| b.meta.max_time_unix_nano < cutoff)
            .collect();
        if expired.is_empty() {
            return Ok(0);
        }
        self.blocks
            .write()
            .retain(|b| !expired.iter().any(|e| Arc::ptr_eq(e, b)));
        for b in &expired {
            fs::remove_dir_all(b.dir()).map_err(|e| Error::io(b.dir(), e))?;
        }
        Ok(expired.len())
    }

    pub fn maintain(&self, now_ms: i64) -> Result<()> {
        self.cut(now_ms, false)?;
        self.compact()?;
        self.apply_retention(now_ms)?;
        Ok(())
    }

    /// Cuts the whole head into a block and stops the WAL.
    pub fn close(&self) {
        if let Err(e) = self.cut(now_ms(), true) {
            tracing::error!(dir = %self.dir.display(), error = %e, "cutting the trace head at shutdown failed");
        }
        self.wal.close();
    }

    /// Every trace in the head and in a cut under way, decoded.
    fn head_snapshot(&self) -> Result<Vec<Trace>> {
        let parts: Vec<(TraceId, HeadTrace)> = self
            .head
            .read()
            .traces
            .iter()
            .map(|(id, h)| (*id, h.clone()))
            .collect();
        let flushing = self.flushing.read().clone();
        parts
            .iter()
            .chain(flushing.iter())
            .map(|(id, h)| h.decode(*id))
            .collect()
    }
}

use block::BlockWriter;

fn insert_head(head: &mut Head, parts: Vec<(TraceId, Vec<u8>)>, now_ms: i64) {
    for (id, chunk) in parts {
        let size = chunk.len();
        head.bytes += size;
        let h = head.traces.entry(id).or_insert_with(|| HeadTrace {
            chunks: Vec::new(),
            bytes: 0,
            last_append_ms: now_ms,
        });
        h.chunks.push(chunk);
        h.bytes += size;
        h.last_append_ms = now_ms;
    }
}

fn block_id(seq: u64) -> String {
    format!("{seq:016x}")
}

fn open_blocks(dir: &Path, cache: &Arc<PageCache>) -> Result<Vec<Arc<Block>>> {
    let mut blocks = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|err| Error::io(dir, err))?;
        let path = e.path();
        if !path.is_dir() {
            continue;
        }
        if !path.join("meta.json").exists() || path.extension().is_some_and(|x| x == "tmp") {
            // An unfinished block (crash mid-write): its traces are still in the WAL or its sources.
            fs::remove_dir_all(&path).map_err(|err| Error::io(&path, err))?;
            continue;
        }
        blocks.push(Arc::new(Block::open_cached(&path, cache.clone())?));
    }
    // A compaction that crashed after writing its result but before deleting its sources.
    let replaced: BTreeSet<String> = blocks
        .iter()
        .flat_map(|b| b.meta.replaces.iter().cloned())
        .collect();
    let (gone, mut keep): (Vec<_>, Vec<_>) = blocks
        .into_iter()
        .partition(|b| replaced.contains(&b.meta.id));
    for b in gone {
        fs::remove_dir_all(b.dir()).map_err(|e| Error::io(b.dir(), e))?;
    }
    keep.sort_by_key(|b| b.meta.seq);
    Ok(keep)
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn head_tags(t: &Trace, out: &mut BTreeSet<(AttrScope, String)>) {
    for (res, _, span) in t.spans() {
        for kv in &res.attributes {
            out.insert((AttrScope::Resource, kv.key.clone()));
        }
        for kv in &span.attributes {
            out.insert((AttrScope::Span, kv.key.clone()));
        }
    }
}

impl TraceReader for TraceStore {
    fn trace_by_id(&self, id: &TraceId, range: Option<(u64, u64)>) -> Result<Option<Trace>> {
        let mut found: Option<Trace> = None;
        let mut add = |t: Trace| match &mut found {
            None => found = Some(t),
            Some(acc) => acc.merge(t),
        };
        for b in self.blocks() {
            if let Some((s, e)) = range {
                if b.meta.max_time_unix_nano < s || b.meta.min_time_unix_nano > e {
                    continue;
                }
            }
            if let Some(t) = b.find(id)? {
                add(t);
            }
        }
        let flushing = self.flushing.read().clone();
        for (_, h) in flushing.iter().filter(|(t, _)| t == id) {
            add(h.decode(*id)?);
        }
        let in_head = self.head.read().traces.get(id).cloned();
        if let Some(h) = in_head {
            add(h.decode(*id)?);
        }
        Ok(match (found, range) {
            (Some(t), Some((s, e))) if !t.overlaps(s, e) => None,
            (f, _) => f,
        })
    }

    fn scan(&self, req: &ScanRequest, visit: &mut dyn FnMut(&Trace) -> bool) -> Result<ScanStats> {
        let mut stats = ScanStats::default();
        for t in self.head_snapshot()? {
            if req.admits(&t.summary()) {
                stats.inspected_traces += 1;
                if !visit(&t) {
                    return Ok(stats);
                }
            }
        }
        let blocks = self.blocks();
        for b in blocks.iter().rev() {
            if (req.end_ns != 0 && b.meta.min_time_unix_nano > req.end_ns)
                || (req.start_ns != 0 && b.meta.max_time_unix_nano < req.start_ns)
            {
                continue;
            }
            stats.total_blocks += 1;
            let candidates = candidates(b, &req.required);
            let iter: Box<dyn Iterator<Item = usize>> = match candidates {
                Some(c) => Box::new(c.into_iter().rev()),
                None => Box::new((0..b.len()).rev()),
            };
            // Descending ordinals, candidates of one page read together: one pass over the page's
            // columns decodes them all. Runs start short and double, so a search that stops after a
            // few matches does not materialize a whole page of candidates first.
            let mut iter = iter.filter(|&o| req.admits(b.summary(o))).peekable();
            let mut run_len = 4;
            while let Some(o) = iter.next() {
                let page = b.page_ordinals(o);
                let mut run = vec![o];
                while run.len() < run_len {
                    match iter.next_if(|n| page.contains(n)) {
                        Some(next) => run.push(next),
                        None => break,
                    }
                }
                run_len = (run_len * 2).min(MAX_SCAN_RUN);
                let run = b.with_matching_spans(run, &req.span_filters)?;
                for t in b.read_many(&run)? {
                    stats.inspected_traces += 1;
                    if !visit(&t) {
                        stats.inspected_bytes += b.meta.data_bytes;
                        return Ok(stats);
                    }
                }
            }
            stats.inspected_bytes += b.meta.data_bytes;
        }
        Ok(stats)
    }

    fn tag_names(&self, start_ns: u64, end_ns: u64) -> Result<BTreeSet<(AttrScope, String)>> {
        let mut out = BTreeSet::new();
        for t in self.head_snapshot()? {
            head_tags(&t, &mut out);
        }
        for b in self.blocks() {
            if in_range(&b.meta, start_ns, end_ns) {
                out.extend(b.dict.keys().cloned());
            }
        }
        Ok(out)
    }

    fn tag_values(
        &self,
        scope: AttrScope,
        key: &str,
        start_ns: u64,
        end_ns: u64,
        limit: usize,
    ) -> Result<BTreeSet<DictValue>> {
        let mut out = BTreeSet::new();
        for t in self.head_snapshot()? {
            for (res, _, span) in t.spans() {
                let attrs = match scope {
                    AttrScope::Resource => &res.attributes,
                    AttrScope::Span => &span.attributes,
                    AttrScope::Intrinsic => {
                        match key {
                            "name" => out.insert(DictValue::Str(span.name.clone())),
                            "status" => out.insert(DictValue::Int(span.status_code as i64)),
                            _ => false,
                        };
                        continue;
                    }
                };
                for kv in attrs.iter().filter(|kv| kv.key == key) {
                    if let Some(v) = DictValue::from_value(&kv.value) {
                        out.insert(v);
                    }
                }
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
        for b in self.blocks().iter().rev() {
            if !in_range(&b.meta, start_ns, end_ns) {
                continue;
            }
            if let Some(Some(values)) = b.dict.get(&(scope, key.to_owned())) {
                for v in values.keys() {
                    if out.len() >= limit {
                        return Ok(out);
                    }
                    out.insert(v.clone());
                }
            }
        }
        Ok(out)
    }
}

fn in_range(m: &BlockMeta, start_ns: u64, end_ns: u64) -> bool {
    (end_ns == 0 || m.min_time_unix_nano <= end_ns)
        && (start_ns == 0 || m.max_time_unix_nano >= start_ns)
}

/// Trace ordinals of a block that can satisfy `required`, ascending; `None` when the dictionary cannot
/// narrow it (no condition, or a key kept without postings).
fn candidates(b: &Block, required: &[Vec<(AttrScope, String, DictValue)>]) -> Option<Vec<usize>> {
    let mut acc: Option<Vec<u32>> = None;
    for any_of in required {
        let mut union: BTreeSet<u32> = BTreeSet::new();
        let mut narrowable = true;
        for (scope, key, value) in any_of {
            match b.dict.get(&(*scope, key.clone())) {
                None => {}
                Some(None) => narrowable = false,
                Some(Some(values)) => {
                    if let Some(p) = values.get(value) {
                        union.extend(p.iter().copied());
                    }
                }
            }
        }
        if !narrowable {
            continue;
        }
        acc = Some(match acc {
            None => union.into_iter().collect(),
            Some(prev) => prev.into_iter().filter(|o| union.contains(o)).collect(),
        });
    }
    acc.map(|v| v.into_iter().map(|o| o as usize).collect())
}

#[cfg(test)]
mod tests {
    use super::model::tests::{batch, span};
    use super::*;

    fn cfg() -> TracesConfig {
        TracesConfig {
            page_bytes: 512,
            compact_min_blocks: 2,
            ..Default::default()
        }
    }

    fn ids(store: &TraceStore, req: &ScanRequest) -> Vec<u8> {
        let mut v = Vec::new();
        store
            .scan(req, &mut |t| {
                v.push(t.trace_id[0]);
                true
            })
            .unwrap();
        v.sort_unstable();
        v
    }

    #[test]
    fn acknowledged_spans_survive_reopen_without_close() {
        let dir = tempfile::tempdir().unwrap();
        let b = vec![batch(
            "svc",
            vec![
                span(1, 1, None, "root", 1_000, 10),
                span(1, 2, Some(1), "c", 1_001, 5),
            ],
        )];
        {
            let s = TraceStore::open(dir.path(), cfg()).unwrap();
            assert_eq!(s.append(b.clone()).unwrap().accepted, 2);
            // dropped without close: as after kill -9 the WAL alone holds the spans
            std::mem::forget(s);
        }
        let s = TraceStore::open(dir.path(), cfg()).unwrap();
        let t = s.trace_by_id(&[1; 16], None).unwrap().unwrap();
        assert_eq!(t.batches, b);
        assert!(s.trace_by_id(&[2; 16], None).unwrap().is_none());
    }

    #[test]
    fn cut_compact_and_split_trace_join() {
        let dir = tempfile::tempdir().unwrap();
        let s = TraceStore::open(dir.path(), cfg()).unwrap();
        s.append(vec![batch("a", vec![span(1, 1, None, "root", 1_000, 100)])])
            .unwrap();
        s.append(vec![batch("b", vec![span(2, 1, None, "r2", 2_000, 100)])])
            .unwrap();
        assert_eq!(s.cut(now_ms(), true).unwrap(), 2);
        // the second half of trace 1 arrives after its first half was cut
        s.append(vec![batch(
            "c",
            vec![span(1, 2, Some(1), "late", 1_050, 10)],
        )])
        .unwrap();
        assert_eq!(s.cut(now_ms(), true).unwrap(), 1);
        assert_eq!(s.blocks().len(), 2);
        let before = s.trace_by_id(&[1; 16], None).unwrap().unwrap();
        assert_eq!(before.span_count(), 2);
        assert_eq!(s.compact().unwrap(), 2);
        assert_eq!(s.blocks().len(), 1);
        assert_eq!(s.blocks()[0].len(), 2);
        let after = s.trace_by_id(&[1; 16], None).unwrap().unwrap();
        assert_eq!(after.span_count(), 2);
        assert_eq!(after.summary().root_span_name, "root");
        s.close();
        let s = TraceStore::open(dir.path(), cfg()).unwrap();
        assert_eq!(s.blocks().len(), 1);
        assert_eq!(
            s.trace_by_id(&[2; 16], None).unwrap().unwrap().span_count(),
            1
        );
        // start/end: a range that misses every span finds nothing
        assert!(s
            .trace_by_id(&[2; 16], Some((5_000, 6_000)))
            .unwrap()
            .is_none());
        assert!(s
            .trace_by_id(&[2; 16], Some((1_500, 2_050)))
            .unwrap()
            .is_some());
    }

    #[test]
    fn blocks_pass_only_traces_with_one_span_meeting_a_filter() {
        let dir = tempfile::tempdir().unwrap();
        let s = TraceStore::open(dir.path(), cfg()).unwrap();
        let with = |name: &str, status: StatusCode, dur: u64, mut sp: Span| {
            sp.name = name.into();
            sp.status_code = status;
            sp.end_time_unix_nano = sp.start_time_unix_nano + dur;
            sp
        };
        let (ok, err) = (StatusCode::Ok, StatusCode::Error);
        // 1: "GET" failed and slow on one span; 2: "GET" ok, another span failed;
        // 3: like 1 but fast; 4: like 1 in service "other"; 5, 6: like 1 and 2, kept in the head.
        let trace = |id: u8, svc: &str, parts: [(&str, StatusCode, u64); 2]| {
            let spans = parts
                .iter()
                .enumerate()
                .map(|(k, &(n, st, d))| {
                    with(
                        n,
                        st,
                        d,
                        span(id, k as u8 + 1, None, "x", u64::from(id) * 1_000, 1),
                    )
                })
                .collect();
            vec![batch(svc, spans)]
        };
        s.append(trace(1, "a", [("GET", err, 500), ("db", ok, 10)]))
            .unwrap();
        s.append(trace(2, "a", [("GET", ok, 500), ("db", err, 500)]))
            .unwrap();
        s.append(trace(3, "a", [("GET", err, 50), ("db", ok, 10)]))
            .unwrap();
        s.append(trace(4, "other", [("GET", err, 500), ("db", ok, 10)]))
            .unwrap();
        s.cut(now_ms(), true).unwrap();
        s.append(trace(5, "a", [("GET", err, 500), ("db", ok, 10)]))
            .unwrap();
        s.append(trace(6, "a", [("GET", ok, 500), ("db", err, 500)]))
            .unwrap();
        let failed_slow_get = vec![
            SpanCondition::Name {
                equal: true,
                name: "GET".into(),
            },
            SpanCondition::Status {
                equal: true,
                code: err,
            },
            SpanCondition::Duration {
                min: 101,
                max: u64::MAX,
            },
            SpanCondition::Resource {
                key: "service.name".into(),
                value: "a".into(),
            },
        ];
        let req = ScanRequest {
            span_filters: vec![failed_slow_get.clone()],
            ..Default::default()
        };
        // The head is passed whole, as before; in the block only trace 1 has such a span.
        assert_eq!(ids(&s, &req), vec![1, 5, 6]);
        // Two filters, each met by its own span: trace 2 too.
        let failed = vec![SpanCondition::Status {
            equal: true,
            code: err,
        }];
        let not_get = vec![SpanCondition::Name {
            equal: false,
            name: "GET".into(),
        }];
        let req = ScanRequest {
            span_filters: vec![failed, not_get],
            ..Default::default()
        };
        assert_eq!(ids(&s, &req), vec![1, 2, 3, 4, 5, 6]);
        let req = ScanRequest {
            span_filters: vec![vec![SpanCondition::Kind {
                equal: true,
                kind: SpanKind::Client,
            }]],
            ..Default::default()
        };
        assert_eq!(ids(&s, &req), vec![5, 6]);
    }

    #[test]
    fn scan_uses_postings_and_time_range() {
        let dir = tempfile::tempdir().unwrap();
        let s = TraceStore::open(dir.path(), cfg()).unwrap();
        for i in 1..=10u8 {
            let svc = if i % 2 == 0 { "even" } else { "odd" };
            s.append(vec![batch(
                svc,
                vec![span(i, 1, None, "root", u64::from(i) * 1_000, 100)],
            )])
            .unwrap();
        }
        s.append(vec![batch(
            "odd",
            vec![span(11, 1, None, "root", 11_000, 100)],
        )])
        .unwrap();
        s.cut(now_ms(), true).unwrap();
        s.append(vec![batch(
            "even",
            vec![span(12, 1, None, "root", 12_000, 100)],
        )])
        .unwrap();
        let even = vec![vec![(
            AttrScope::Resource,
            "service.name".to_owned(),
            DictValue::Str("even".into()),
        )]];
        let req = ScanRequest {
            required: even.clone(),
            ..Default::default()
        };
        // the head is scanned whole (the caller filters); blocks only yield candidates
        assert_eq!(ids(&s, &req), vec![2, 4, 6, 8, 10, 12]);
        let req = ScanRequest {
            required: even,
            start_ns: 3_500,
            end_ns: 8_050,
            ..Default::default()
        };
        assert_eq!(ids(&s, &req), vec![4, 6, 8]);
        let tags = s.tag_names(0, 0).unwrap();
        assert!(tags.contains(&(AttrScope::Span, "http.method".to_owned())));
        let vals = s
            .tag_values(AttrScope::Resource, "service.name", 0, 0, 100)
            .unwrap();
        assert_eq!(vals.len(), 2);
    }

    #[test]
    fn older_blocks_answer_alike_and_compact_into_the_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let blocks = dir.path().join("blocks");
        fs::create_dir_all(&blocks).unwrap();
        let part = |id: u8, sid: u8| {
            let svc = if id.is_multiple_of(2) { "even" } else { "odd" };
            batch(
                svc,
                vec![span(id, sid, None, "root", u64::from(id) * 1_000, 100)],
            )
        };
        // Blocks of the first and second versions, as they wrote them; trace 3 is split across
        // them.
        for (seq, ids) in [(1u64, [1u8, 3]), (2, [2, 3])] {
            let mut w = match seq {
                1 => BlockWriter::create_v1(&blocks, &block_id(seq), 512).unwrap(),
                _ => BlockWriter::create_v2(&blocks, &block_id(seq), 512).unwrap(),
            };
            for id in ids {
                let batches = vec![part(id, seq as u8)];
                w.add(&Trace {
                    trace_id: [id; 16],
                    batches,
                })
                .unwrap();
            }
            w.finish(seq, 0, Vec::new()).unwrap();
        }
        let s = TraceStore::open(dir.path(), cfg()).unwrap();
        s.append(vec![part(4, 1), part(3, 9)]).unwrap();
        s.cut(now_ms(), true).unwrap();
        let versions: Vec<u32> = s.blocks().iter().map(|b| b.meta.format_version).collect();
        assert_eq!(versions, [1, 2, 3]);
        let read_all = |s: &TraceStore| -> Vec<Trace> {
            (1..=4u8)
                .map(|i| s.trace_by_id(&[i; 16], None).unwrap().unwrap())
                .collect()
        };
        let even = ScanRequest {
            required: vec![vec![(
                AttrScope::Resource,
                "service.name".to_owned(),
                DictValue::Str("even".into()),
            )]],
            ..Default::default()
        };
        let before = read_all(&s);
        assert_eq!(before[2].span_count(), 3);
        assert_eq!(ids(&s, &even), vec![2, 4]);
        assert_eq!(s.compact().unwrap(), 3);
        let versions: Vec<u32> = s.blocks().iter().map(|b| b.meta.format_version).collect();
        assert_eq!(versions, [3]);
        assert_eq!(read_all(&s), before);
        assert_eq!(ids(&s, &even), vec![2, 4]);
    }

    #[test]
    fn compaction_merges_level_by_level_and_leaves_merged_blocks_alone() {
        let dir = tempfile::tempdir().unwrap();
        let s = TraceStore::open(
            dir.path(),
            TracesConfig {
                compact_min_blocks: 4,
                ..cfg()
            },
        )
        .unwrap();
        let block_of = |s: &TraceStore, id: u8| {
            s.append(vec![batch(
                "a",
                vec![span(id, 1, None, "root", 1_000, 100)],
            )])
            .unwrap();
            s.cut(now_ms(), true).unwrap();
        };
        let levels = |s: &TraceStore| -> Vec<(u32, String)> {
            s.blocks()
                .iter()
                .map(|b| (b.meta.level, b.meta.id.clone()))
                .collect()
        };
        for id in 1..=4 {
            block_of(&s, id);
        }
        assert_eq!(s.compact().unwrap(), 4);
        let first = levels(&s);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].0, 1);
        for id in 5..=7 {
            block_of(&s, id);
        }
        assert_eq!(s.compact().unwrap(), 0, "{:?}", levels(&s));
        block_of(&s, 8);
        assert_eq!(s.compact().unwrap(), 4);
        let now = levels(&s);
        // The first merged block is not rewritten with the newer ones.
        assert_eq!(now.len(), 2);
        assert_eq!(now[0], first[0]);
        assert_eq!(now[1].0, 1);
        for id in 1..=8u8 {
            assert!(
                s.trace_by_id(&[id; 16], None).unwrap().is_some(),
                "trace {id}"
            );
        }
    }

    /// One root span of trace `id`.
    fn one(id: u8) -> Vec<ResourceSpans> {
        vec![batch("a", vec![span(id, 1, None, "root", 1_000, 100)])]
    }

    /// Fills a head past twice its limit, up to the first refusal (which must say it is
    /// overloaded); returns the acknowledged trace ids.
    fn fill_head(s: &TraceStore) -> Vec<u8> {
        let mut acked = Vec::new();
        for id in 1..=200u8 {
            match s.append(one(id)) {
                Ok(r) => {
                    assert_eq!(r.accepted, 1);
                    acked.push(id);
                }
                Err(Error::Overloaded(_)) => return acked,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("appends are refused once the head is full");
    }

    fn assert_stored(s: &TraceStore, ids: impl IntoIterator<Item = u8>) {
        for id in ids {
            assert!(
                s.trace_by_id(&[id; 16], None).unwrap().is_some(),
                "trace {id}"
            );
        }
    }

    #[test]
    fn a_head_past_twice_its_limit_refuses_appends_until_cut() {
        let dir = tempfile::tempdir().unwrap();
        let s = TraceStore::open(
            dir.path(),
            TracesConfig {
                max_head_bytes: 2_000,
                head_full_wait: Duration::ZERO,
                ..cfg()
            },
        )
        .unwrap();
        let acked = fill_head(&s);
        assert!(s.head_bytes() > 4_000 && s.head_bytes() < 6_000);
        s.cut(now_ms(), false).unwrap();
        assert_eq!(s.head_bytes(), 0);
        let next = acked.len() as u8 + 1;
        s.append(one(next)).unwrap();
        assert_stored(&s, acked.into_iter().chain([next]));
    }

    #[test]
    fn an_append_to_a_full_head_waits_for_a_cut_and_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let wait = Duration::from_secs(3);
        let s = Arc::new(
            TraceStore::open(
                dir.path(),
                TracesConfig {
                    max_head_bytes: 2_000,
                    head_full_wait: wait,
                    ..cfg()
                },
            )
            .unwrap(),
        );
        let started = Instant::now();
        let acked = fill_head(&s);
        assert!(started.elapsed() >= wait, "refused only after waiting");
        // Nobody cuts yet: the next append waits, and is stored once a cut takes the head.
        let appender = {
            let s = s.clone();
            std::thread::spawn(move || s.append(one(250)))
        };
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !appender.is_finished(),
            "the append waits while the head is full"
        );
        s.cut_while_over_limit().unwrap();
        assert!(!s.head_over_limit());
        assert_eq!(appender.join().unwrap().unwrap().accepted, 1);
        assert_stored(&s, acked.into_iter().chain([250]));
    }

    #[test]
    fn a_whole_head_cut_leaves_the_wal_only_what_came_after() {
        let dir = tempfile::tempdir().unwrap();
        let has_checkpoint = || {
            fs::read_dir(dir.path().join("wal")).unwrap().any(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("checkpoint")
            })
        };
        let config = || TracesConfig {
            trace_idle_secs: 1,
            ..cfg()
        };
        {
            let s = TraceStore::open(dir.path(), config()).unwrap();
            // An idle cut takes trace 1 and checkpoints trace 2, which stays in the head.
            s.append(one(1)).unwrap();
            std::thread::sleep(Duration::from_millis(1_100));
            s.append(one(2)).unwrap();
            assert_eq!(s.cut(now_ms(), false).unwrap(), 1);
            assert!(has_checkpoint());
            // A whole-head cut takes traces 2 and 3; the WAL keeps neither, nor the checkpoint.
            s.append(one(3)).unwrap();
            assert_eq!(s.cut(now_ms(), true).unwrap(), 2);
            assert!(!has_checkpoint());
            s.append(one(4)).unwrap();
            // dropped without close, as after kill -9
            std::mem::forget(s);
        }
        let s = TraceStore::open(dir.path(), config()).unwrap();
        assert_eq!(s.blocks().len(), 2);
        // Trace 4 comes back from the WAL; the others are in blocks only, each span once.
        assert_eq!(s.head_traces(), 1);
        for id in 1..=4u8 {
            let t = s.trace_by_id(&[id; 16], None).unwrap().unwrap();
            assert_eq!(t.span_count(), 1, "trace {id}");
        }
    }

    #[test]
    fn retention_drops_old_blocks_and_per_trace_limit_holds() {
        let dir = tempfile::tempdir().unwrap();
        let s = TraceStore::open(
            dir.path(),
            TracesConfig {
                retention_secs: 3600,
                max_trace_bytes: 2_000,
                ..cfg()
            },
        )
        .unwrap();
        s.append(vec![batch("a", vec![span(1, 1, None, "root", 1_000, 100)])])
            .unwrap();
        s.cut(now_ms(), true).unwrap();
        assert_eq!(s.apply_retention(now_ms()).unwrap(), 1);
        assert!(s.trace_by_id(&[1; 16], None).unwrap().is_none());
        let big: Vec<Span> = (0..40)
            .map(|i| span(3, i, Some(1), "x", 1_000, 1))
            .collect();
        let r = s.append(vec![batch("a", big)]).unwrap();
        assert_eq!((r.accepted, r.rejected), (0, 40));
        assert!(r.reason.contains("per-trace limit"));
    }
}
