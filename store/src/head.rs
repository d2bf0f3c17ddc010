//! The head: recent samples in memory. Series live in a slot table addressed by a `u32` reference (the
//! same reference the WAL records use), with interned label strings, an in-memory postings index, an open
//! Gorilla chunk per series plus its closed chunks, and an out-of-order buffer when a window is set.
//!
//! Concurrency: appends come from one appender at a time (the metrics store serialises them so WAL order
//! equals apply order); readers run concurrently, holding the index lock only to find series.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::chunk::{XorEncoder, XorIter};
use crate::model::{Exemplar, Label, Labels, Matcher, Sample, SeriesExemplars, SeriesLabels};
use crate::postings::{self, PostingsIndex};

/// Samples per head chunk before it is closed (Prometheus's target too).
pub const CHUNK_MAX_SAMPLES: usize = 120;

/// Why a sample was refused; the names follow Prometheus's error strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// Older than the newest sample of its series (and outside any out-of-order window).
    OutOfOrder,
    /// Same timestamp as an existing sample, different value.
    Duplicate,
    /// Older than the head's lower bound: that range is already in a block.
    OutOfBounds,
}

impl Reject {
    pub const ALL: [Reject; 3] = [Reject::OutOfOrder, Reject::Duplicate, Reject::OutOfBounds];

    pub fn reason(self) -> &'static str {
        match self {
            Reject::OutOfOrder => "out_of_order",
            Reject::Duplicate => "duplicate",
            Reject::OutOfBounds => "out_of_bounds",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Reject::OutOfOrder => "out of order sample",
            Reject::Duplicate => "duplicate sample for timestamp",
            Reject::OutOfBounds => "out of bounds",
        }
    }
}

/// What appending one sample did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored (and must be logged).
    Stored,
    /// An exact duplicate of a stored sample: accepted, nothing to log.
    Unchanged,
}

#[derive(Debug)]
struct ClosedChunk {
    min_t: i64,
    max_t: i64,
    bytes: Box<[u8]>,
}

/// One series in memory.
#[derive(Debug)]
pub struct MemSeries {
    /// Interned (name, value) symbol pairs, sorted by name.
    labels: Box<[(u32, u32)]>,
    closed: Vec<ClosedChunk>,
    open: XorEncoder,
    /// Accepted out-of-order samples, sorted by time, disjoint from the chunks' timestamps.
    ooo: Vec<Sample>,
    last_exemplar: Option<(i64, u64)>,
}

impl MemSeries {
    fn last(&self) -> Option<(i64, f64)> {
        match (self.open.last_t(), self.open.last_v()) {
            (Some(t), Some(v)) => Some((t, v)),
            _ => None,
        }
    }

    fn max_t(&self) -> Option<i64> {
        let m = self
            .open
            .last_t()
            .or_else(|| self.closed.last().map(|c| c.max_t));
        match (m, self.ooo.last()) {
            (Some(a), Some(b)) => Some(a.max(b.t)),
            (a, b) => a.or(b.map(|s| s.t)),
        }
    }

    fn min_t(&self) -> Option<i64> {
        let m = self
            .closed
            .first()
            .map(|c| c.min_t)
            .or_else(|| self.open.first_t());
        match (m, self.ooo.first()) {
            (Some(a), Some(b)) => Some(a.min(b.t)),
            (a, b) => a.or(b.map(|s| s.t)),
        }
    }

    fn append(
        &mut self,
        t: i64,
        v: f64,
        min_valid_t: i64,
        ooo_window: i64,
    ) -> Result<Appended, Reject> {
        if t < min_valid_t {
            return Err(Reject::OutOfBounds);
        }
        if let Some((last_t, last_v)) = self.last() {
            if t == last_t {
                return if v.to_bits() == last_v.to_bits() {
                    Ok(Appended::Unchanged)
                } else {
                    Err(Reject::Duplicate)
                };
            }
            if t < last_t {
                if ooo_window <= 0 || t < last_t - ooo_window {
                    return Err(Reject::OutOfOrder);
                }
                return self.insert_ooo(t, v);
            }
        }
        if self.open.num_samples() >= CHUNK_MAX_SAMPLES {
            self.cut_chunk();
        }
        self.open.append(t, v);
        Ok(Appended::Stored)
    }

    fn insert_ooo(&mut self, t: i64, v: f64) -> Result<Appended, Reject> {
        let mut existing = None;
        self.for_each_in_chunks(t, t, &mut |s| existing = Some(s));
        if let Some(s) = existing {
            return if s.v.to_bits() == v.to_bits() {
                Ok(Appended::Unchanged)
            } else {
                Err(Reject::Duplicate)
            };
        }
        match self.ooo.binary_search_by(|s| s.t.cmp(&t)) {
            Ok(i) => {
                if self.ooo[i].v.to_bits() == v.to_bits() {
                    Ok(Appended::Unchanged)
                } else {
                    Err(Reject::Duplicate)
                }
            }
            Err(i) => {
                self.ooo.insert(i, Sample::new(t, v));
                Ok(Appended::Stored)
            }
        }
    }

    fn cut_chunk(&mut self) {
        let open = std::mem::take(&mut self.open);
        if let (Some(min_t), Some(max_t)) = (open.first_t(), open.last_t()) {
            let mut bytes = open.into_bytes();
            bytes.shrink_to_fit();
            self.closed.push(ClosedChunk {
                min_t,
                max_t,
                bytes: bytes.into_boxed_slice(),
            });
        }
    }

    fn for_each_in_chunks(&self, mint: i64, maxt: i64, f: &mut dyn FnMut(Sample)) {
        let chunks = self
            .closed
            .iter()
            .filter(|c| c.max_t >= mint && c.min_t <= maxt)
            .map(|c| &c.bytes[..])
            .chain(
                (self.open.num_samples() > 0
                    && self.open.last_t().is_some_and(|t| t >= mint)
                    && self.open.first_t().is_some_and(|t| t <= maxt))
                .then(|| self.open.bytes()),
            );
        for bytes in chunks {
            for (t, v) in XorIter::new(bytes) {
                if t > maxt {
                    break;
                }
                if t >= mint {
                    f(Sample::new(t, v));
                }
            }
        }
    }

    /// Samples in `[mint, maxt]`, sorted by time.
    pub fn samples(&self, mint: i64, maxt: i64, out: &mut Vec<Sample>) {
        let start = out.len();
        self.for_each_in_chunks(mint, maxt, &mut |s| out.push(s));
        if !self.ooo.is_empty() {
            out.extend(self.ooo.iter().filter(|s| s.t >= mint && s.t <= maxt));
            out[start..].sort_by_key(|s| s.t);
        }
    }

    /// Drops every sample before `t`. Returns true when nothing is left.
    fn truncate_before(&mut self, t: i64) -> bool {
        let keep_from = self
            .closed
            .iter()
            .position(|c| c.max_t >= t)
            .unwrap_or(self.closed.len());
        self.closed.drain(..keep_from);
        if let Some(first) = self.closed.first_mut() {
            if first.min_t < t {
                let mut enc = XorEncoder::new();
                for (st, sv) in XorIter::new(&first.bytes) {
                    if st >= t {
                        enc.append(st, sv);
                    }
                }
                if let (Some(min_t), Some(max_t)) = (enc.first_t(), enc.last_t()) {
                    *first = ClosedChunk {
                        min_t,
                        max_t,
                        bytes: enc.into_bytes().into_boxed_slice(),
                    };
                }
            }
        } else if self.open.first_t().is_some_and(|f| f < t) {
            if self.open.last_t().is_some_and(|l| l < t) {
                // The series keeps its last value for duplicate detection only through the block; a new
                // sample at an older time is out of bounds anyway.
                self.open = XorEncoder::new();
            } else {
                let mut enc = XorEncoder::new();
                for (st, sv) in XorIter::new(self.open.bytes()) {
                    if st >= t {
                        enc.append(st, sv);
                    }
                }
                self.open = enc;
            }
        }
        self.ooo.retain(|s| s.t >= t);
        self.closed.is_empty() && self.open.num_samples() == 0 && self.ooo.is_empty()
    }

    fn size_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.labels.len() * 8
            + self.closed.capacity() * std::mem::size_of::<ClosedChunk>()
            + self.closed.iter().map(|c| c.bytes.len()).sum::<usize>()
            + self.open.size_bytes()
            + self.ooo.capacity() * std::mem::size_of::<Sample>()
    }
}

/// Interned strings: every label name and value is stored once.
#[derive(Debug, Default)]
struct Symbols {
    ids: HashMap<Arc<str>, u32>,
    strings: Vec<Arc<str>>,
}

impl Symbols {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.strings.len() as u32;
        let a: Arc<str> = Arc::from(s);
        self.strings.push(a.clone());
        self.ids.insert(a, id);
        id
    }

    fn lookup(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    fn get(&self, id: u32) -> &str {
        &self.strings[id as usize]
    }
}

/// Keys are already hashes; hashing them again wastes time.
#[derive(Default)]
struct PassThroughHasher(u64);

impl std::hash::Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

type HashIndex<V> = HashMap<u128, V, BuildHasherDefault<PassThroughHasher>>;

#[derive(Default)]
struct Index {
    symbols: Symbols,
    /// Label-set identity hash → series ref.
    by_hash: HashIndex<u32>,
    series: Vec<Option<Arc<Mutex<MemSeries>>>>,
    /// name symbol → value symbol → sorted series refs.
    postings: HashMap<u32, HashMap<u32, Vec<u32>>>,
}

impl Index {
    fn labels_of(&self, s: &MemSeries) -> Labels {
        Labels::from_sorted(
            s.labels
                .iter()
                .map(|&(n, v)| Label::new(self.symbols.get(n), self.symbols.get(v)))
                .collect(),
        )
    }

    fn find(&self, hash: u128) -> Option<u32> {
        self.by_hash.get(&hash).copied()
    }

    fn insert(&mut self, r: u32, hash: u128, labels: &Labels) -> Arc<Mutex<MemSeries>> {
        let syms: Box<[(u32, u32)]> = labels
            .iter()
            .map(|l| (self.symbols.intern(&l.name), self.symbols.intern(&l.value)))
            .collect();
        for &(n, v) in syms.iter() {
            let list = self.postings.entry(n).or_default().entry(v).or_default();
            if list.last().is_none_or(|&last| last < r) {
                list.push(r);
            } else if let Err(i) = list.binary_search(&r) {
                list.insert(i, r);
            }
        }
        let series = Arc::new(Mutex::new(MemSeries {
            labels: syms,
            closed: Vec::new(),
            open: XorEncoder::new(),
            ooo: Vec::new(),
            last_exemplar: None,
        }));
        let slot = r as usize;
        if self.series.len() <= slot {
            self.series.resize(slot + 1, None);
        }
        self.series[slot] = Some(series.clone());
        self.by_hash.insert(hash, r);
        series
    }
}

impl PostingsIndex for Index {
    fn all_postings(&self) -> Vec<u32> {
        self.series
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some())
            .map(|(i, _)| i as u32)
            .collect()
    }

    fn for_each_value(&self, name: &str, f: &mut dyn FnMut(&str, &[u32])) {
        let Some(n) = self.symbols.lookup(name) else {
            return;
        };
        if let Some(values) = self.postings.get(&n) {
            for (v, list) in values {
                f(self.symbols.get(*v), list);
            }
        }
    }

    fn postings(&self, name: &str, value: &str) -> Vec<u32> {
        let (Some(n), Some(v)) = (self.symbols.lookup(name), self.symbols.lookup(value)) else {
            return Vec::new();
        };
        self.postings
            .get(&n)
            .and_then(|m| m.get(&v))
            .cloned()
            .unwrap_or_default()
    }
}

/// Head options.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeadOptions {
    /// Accept samples up to this many ms older than a series' newest sample (0: reject, as Prometheus).
    pub ooo_window_ms: i64,
    /// Exemplars kept in memory per tenant (a ring; the oldest is overwritten).
    pub max_exemplars: usize,
}

/// The in-memory head of one tenant's metrics.
pub struct Head {
    index: RwLock<Index>,
    next_ref: AtomicUsize,
    min_valid_t: AtomicI64,
    opts: HeadOptions,
    exemplars: Mutex<ExemplarRing>,
}

#[derive(Default)]
struct ExemplarRing {
    buf: Vec<(u32, Exemplar)>,
    next: usize,
}

impl Head {
    pub fn new(opts: HeadOptions) -> Self {
        Head {
            index: RwLock::new(Index::default()),
            next_ref: AtomicUsize::new(1),
            min_valid_t: AtomicI64::new(i64::MIN),
            opts,
            exemplars: Mutex::new(ExemplarRing::default()),
        }
    }

    pub fn min_valid_t(&self) -> i64 {
        self.min_valid_t.load(Ordering::Acquire)
    }

    /// Samples before `t` are refused from now on (their range is, or is being, written to a block).
    pub fn set_min_valid_t(&self, t: i64) {
        self.min_valid_t.fetch_max(t, Ordering::AcqRel);
    }

    /// The series reference for `labels`, creating the series if needed. `Ok(r)` = existing,
    /// `Err((r, labels))` = created now, with its labels for the caller to log to the WAL.
    pub fn get_or_create(&self, labels: &dyn SeriesLabels) -> Result<u32, (u32, Labels)> {
        let hash = labels.identity_hash();
        if let Some(r) = self.index.read().find(hash) {
            return Ok(r);
        }
        let mut idx = self.index.write();
        if let Some(r) = idx.find(hash) {
            return Ok(r);
        }
        let r = self.next_ref.fetch_add(1, Ordering::Relaxed) as u32;
        let labels = labels.to_labels();
        idx.insert(r, hash, &labels);
        Err((r, labels))
    }

    /// Re-creates a series with a known reference (WAL replay).
    pub fn restore_series(&self, r: u32, labels: &Labels) {
        let hash = labels.identity_hash();
        let mut idx = self.index.write();
        if idx.series.get(r as usize).is_some_and(|s| s.is_some()) {
            return;
        }
        if let Some(existing) = idx.find(hash) {
            // The same labels under another ref: a later record re-created the series after truncation.
            // Both refs point at one series so samples logged under either land together.
            let s = idx.series[existing as usize].clone();
            if idx.series.len() <= r as usize {
                idx.series.resize(r as usize + 1, None);
            }
            idx.series[r as usize] = s;
        } else {
            idx.insert(r, hash, labels);
        }
        self.next_ref.fetch_max(r as usize + 1, Ordering::Relaxed);
    }

    pub fn series(&self, r: u32) -> Option<Arc<Mutex<MemSeries>>> {
        self.index.read().series.get(r as usize).cloned().flatten()
    }

    /// Appends one sample to a series.
    pub fn append(&self, series: &mut MemSeries, t: i64, v: f64) -> Result<Appended, Reject> {
        series.append(t, v, self.min_valid_t(), self.opts.ooo_window_ms)
    }

    /// Keeps an exemplar unless it repeats the series' previous one. Returns true when stored.
    pub fn add_exemplar(&self, r: u32, series: &mut MemSeries, e: Exemplar) -> bool {
        let key = (e.t, e.value.to_bits());
        if series.last_exemplar == Some(key) || self.opts.max_exemplars == 0 {
            return false;
        }
        series.last_exemplar = Some(key);
        let mut ring = self.exemplars.lock();
        if ring.buf.len() < self.opts.max_exemplars {
            ring.buf.push((r, e));
        } else {
            let i = ring.next;
            ring.buf[i] = (r, e);
            ring.next = (i + 1) % self.opts.max_exemplars;
        }
        true
    }

    pub fn num_series(&self) -> usize {
        self.index
            .read()
            .series
            .iter()
            .filter(|s| s.is_some())
            .count()
    }

    /// Matching series refs and their label sets, sorted by labels.
    pub fn select_series(&self, matchers: &[Matcher]) -> Vec<(Labels, u32, Arc<Mutex<MemSeries>>)> {
        let idx = self.index.read();
        let refs = postings::select(&*idx, matchers);
        let mut out: Vec<_> = refs
            .into_iter()
            .filter_map(|r| {
                let s = idx.series.get(r as usize)?.clone()?;
                let labels = idx.labels_of(&s.lock());
                Some((labels, r, s))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Label sets of matching series that have samples overlapping `[mint, maxt]`.
    pub fn series_in_range(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Labels> {
        self.select_series(matchers)
            .into_iter()
            .filter(|(_, _, s)| {
                let s = s.lock();
                s.min_t().is_some_and(|a| a <= maxt) && s.max_t().is_some_and(|b| b >= mint)
            })
            .map(|(l, _, _)| l)
            .collect()
    }

    /// Matching series with their samples in range; series without samples there are left out.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<(Labels, Vec<Sample>)> {
        self.select_series(matchers)
            .into_iter()
            .filter_map(|(l, _, s)| {
                let mut out = Vec::new();
                s.lock().samples(mint, maxt, &mut out);
                (!out.is_empty()).then_some((l, out))
            })
            .collect()
    }

    pub fn exemplars(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<SeriesExemplars> {
        let series = self.select_series(matchers);
        let wanted: HashMap<u32, usize> = series
            .iter()
            .enumerate()
            .map(|(i, (_, r, _))| (*r, i))
            .collect();
        let mut per: Vec<Vec<Exemplar>> = vec![Vec::new(); series.len()];
        for (r, e) in self.exemplars.lock().buf.iter() {
            if e.t >= mint && e.t <= maxt {
                if let Some(&i) = wanted.get(r) {
                    per[i].push(e.clone());
                }
            }
        }
        series
            .into_iter()
            .zip(per)
            .filter(|(_, e)| !e.is_empty())
            .map(|((labels, _, _), mut exemplars)| {
                exemplars.sort_by_key(|e| e.t);
                SeriesExemplars { labels, exemplars }
            })
            .collect()
    }

    /// Live series with their refs, in ref order (for WAL checkpoints).
    pub fn live_series(&self) -> Vec<(u32, Labels)> {
        let idx = self.index.read();
        idx.series
            .iter()
            .enumerate()
            .filter_map(|(r, s)| s.as_ref().map(|s| (r as u32, idx.labels_of(&s.lock()))))
            .collect()
    }

    /// Exemplars currently held, for WAL checkpoints.
    pub fn exemplars_snapshot(&self) -> Vec<(u32, Exemplar)> {
        self.exemplars.lock().buf.clone()
    }

    /// Oldest and newest sample time in the head, if any.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let idx = self.index.read();
        let mut range: Option<(i64, i64)> = None;
        for s in idx.series.iter().flatten() {
            let s = s.lock();
            if let (Some(a), Some(b)) = (s.min_t(), s.max_t()) {
                range = Some(match range {
                    None => (a, b),
                    Some((x, y)) => (x.min(a), y.max(b)),
                });
            }
        }
        range
    }

    /// Drops samples before `t`, removes series left empty, and rebuilds the postings.
    pub fn truncate_before(&self, t: i64) -> usize {
        let mut idx = self.index.write();
        let mut removed = 0;
        for slot in idx.series.iter_mut() {
            let empty = slot.as_ref().is_some_and(|s| s.lock().truncate_before(t));
            if empty {
                *slot = None;
                removed += 1;
            }
        }
        if removed > 0 {
            let mut postings: HashMap<u32, HashMap<u32, Vec<u32>>> = HashMap::new();
            let mut by_hash = HashIndex::default();
            for (r, s) in idx.series.iter().enumerate() {
                let Some(s) = s else { continue };
                let s = s.lock();
                for &(n, v) in s.labels.iter() {
                    postings
                        .entry(n)
                        .or_default()
                        .entry(v)
                        .or_default()
                        .push(r as u32);
                }
                by_hash.insert(idx.labels_of(&s).identity_hash(), r as u32);
            }
            idx.postings = postings;
            idx.by_hash = by_hash;
            let trailing = idx
                .series
                .iter()
                .rposition(|s| s.is_some())
                .map_or(0, |p| p + 1);
            idx.series.truncate(trailing.max(1));
        }
        self.exemplars.lock().buf.retain(|(_, e)| e.t >= t);
        removed
    }

    /// Approximate bytes held by series data and the index (for self-monitoring).
    pub fn size_bytes(&self) -> usize {
        let idx = self.index.read();
        let series: usize = idx
            .series
            .iter()
            .flatten()
            .map(|s| s.lock().size_bytes() + 16)
            .sum();
        let postings: usize = idx
            .postings
            .values()
            .map(|m| m.values().map(|l| l.capacity() * 4 + 40).sum::<usize>())
            .sum();
        let symbols: usize = idx.symbols.strings.iter().map(|s| s.len() + 48).sum();
        series + postings + symbols + idx.series.capacity() * 8 + idx.by_hash.capacity() * 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{stale_nan, MatchOp};

    fn ls(job: &str, i: &str) -> Labels {
        Labels::from_pairs([("__name__", "m"), ("job", job), ("instance", i)])
    }

    fn add(head: &Head, labels: &Labels, t: i64, v: f64) -> Result<Appended, Reject> {
        let r = head.get_or_create(labels).unwrap_or_else(|(r, _)| r);
        let s = head.series(r).unwrap();
        let mut s = s.lock();
        head.append(&mut s, t, v)
    }

    #[test]
    fn append_and_select_across_chunks() {
        let head = Head::new(HeadOptions::default());
        let a = ls("a", "1");
        for i in 0..500 {
            assert_eq!(add(&head, &a, i * 15_000, i as f64), Ok(Appended::Stored));
        }
        add(&head, &ls("b", "1"), 0, 1.0).unwrap();
        let got = head.select(&[Matcher::equal("job", "a")], 15_000, 30_000 * 100);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.len(), 200);
        assert_eq!(got[0].1[0], Sample::new(15_000, 1.0));
        assert_eq!(
            head.select(&[Matcher::equal("__name__", "m")], 0, 0).len(),
            2
        );
    }

    #[test]
    fn rejects_like_prometheus() {
        let head = Head::new(HeadOptions::default());
        let a = ls("a", "1");
        add(&head, &a, 1000, 1.0).unwrap();
        assert_eq!(add(&head, &a, 1000, 1.0), Ok(Appended::Unchanged));
        assert_eq!(add(&head, &a, 1000, 2.0), Err(Reject::Duplicate));
        assert_eq!(add(&head, &a, 999, 2.0), Err(Reject::OutOfOrder));
        add(&head, &a, 2000, stale_nan()).unwrap();
        head.set_min_valid_t(5000);
        assert_eq!(
            add(&head, &ls("new", "1"), 4000, 1.0),
            Err(Reject::OutOfBounds)
        );
    }

    #[test]
    fn out_of_order_window_accepts_and_merges() {
        let head = Head::new(HeadOptions {
            ooo_window_ms: 10_000,
            max_exemplars: 0,
        });
        let a = ls("a", "1");
        add(&head, &a, 20_000, 2.0).unwrap();
        add(&head, &a, 15_000, 1.5).unwrap();
        assert_eq!(add(&head, &a, 15_000, 1.6), Err(Reject::Duplicate));
        assert_eq!(add(&head, &a, 5_000, 1.0), Err(Reject::OutOfOrder));
        let got = head.select(&[Matcher::equal("job", "a")], 0, 100_000);
        assert_eq!(
            got[0].1,
            vec![Sample::new(15_000, 1.5), Sample::new(20_000, 2.0)]
        );
    }

    #[test]
    fn truncation_drops_old_samples_and_empty_series() {
        let head = Head::new(HeadOptions::default());
        for i in 0..300 {
            add(&head, &ls("a", "1"), i * 1000, 1.0).unwrap();
        }
        add(&head, &ls("b", "1"), 10, 1.0).unwrap();
        assert_eq!(head.truncate_before(150_000), 1);
        assert_eq!(head.num_series(), 1);
        let got = head.select(
            &[Matcher::new(MatchOp::Regex, "job", ".+").unwrap()],
            0,
            i64::MAX,
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.len(), 150);
        assert_eq!(got[0].1[0].t, 150_000);
        // The remaining series is still found by its labels, and new series get fresh refs.
        assert!(head.get_or_create(&ls("a", "1")).is_ok());
        assert!(head.get_or_create(&ls("b", "1")).is_err());
    }
}
