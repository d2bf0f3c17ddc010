//! One tenant's metrics store: ingest (validate → append to head → log to WAL → acknowledge once durable),
//! reads that merge blocks and head, and the background path that cuts the head into blocks, compacts
//! adjacent blocks and applies retention.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::block::{Block, BlockWriter, DecodedTimestamps};
use crate::catalog::{BlockEntry, Catalog};
use crate::error::{Error, Result};
use crate::head::{Appended, Head, HeadOptions, Reject};
use crate::model::{
    Labels, Matcher, Metadata, MetricsReader, Sample, SeriesExemplars, SeriesInput, SeriesSamples,
    WriteBatch,
};
use crate::wal::{self, Wal, WalOptions, WalRecord};

/// Settings of a metrics store; the server maps its config file onto this.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Width of a block cut from the head (Prometheus: 2 h).
    pub block_range_ms: i64,
    /// Drop blocks whose data is entirely older than this (0: keep forever).
    pub retention_ms: i64,
    /// Drop the oldest blocks while all blocks together exceed this (0: no limit).
    pub retention_bytes: u64,
    /// Accept samples this much older than a series' newest (0: reject, as Prometheus does).
    pub ooo_window_ms: i64,
    /// Exemplars kept in memory per tenant.
    pub max_exemplars: usize,
    /// Compaction merges blocks up to these widths, each a multiple of the one before.
    pub compaction_ranges_ms: Vec<i64>,
    pub wal: WalOptions,
    /// Bytes of decompressed block pages the process keeps ([`crate::page_cache`]).
    pub page_cache_bytes: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        let two_hours = 2 * 3600 * 1000;
        MetricsConfig {
            block_range_ms: two_hours,
            retention_ms: 15 * 24 * 3600 * 1000,
            retention_bytes: 0,
            ooo_window_ms: 0,
            max_exemplars: 100_000,
            compaction_ranges_ms: vec![two_hours * 3, two_hours * 12, two_hours * 12 * 7],
            wal: WalOptions::default(),
            page_cache_bytes: crate::page_cache::DEFAULT_CAPACITY_BYTES,
        }
    }
}

/// What one append did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppendOutcome {
    pub samples_stored: u64,
    pub samples_unchanged: u64,
    pub exemplars_stored: u64,
    pub series_created: u64,
    pub rejected: HashMap<&'static str, u64>,
    /// The first refused sample, to name in an error message.
    pub first_rejection: Option<(Labels, Sample, Reject)>,
}

impl AppendOutcome {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// Counters for self-monitoring, shared by every tenant's store.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub samples_ingested: AtomicU64,
    pub exemplars_ingested: AtomicU64,
    pub samples_rejected_out_of_order: AtomicU64,
    pub samples_rejected_duplicate: AtomicU64,
    pub samples_rejected_out_of_bounds: AtomicU64,
    pub blocks_cut: AtomicU64,
    pub compactions: AtomicU64,
    pub blocks_deleted_by_retention: AtomicU64,
}

impl StoreStats {
    fn count_rejected(&self, r: Reject, n: u64) {
        let c = match r {
            Reject::OutOfOrder => &self.samples_rejected_out_of_order,
            Reject::Duplicate => &self.samples_rejected_duplicate,
            Reject::OutOfBounds => &self.samples_rejected_out_of_bounds,
        };
        c.fetch_add(n, Ordering::Relaxed);
    }
}

pub struct MetricsStore {
    dir: PathBuf,
    cfg: MetricsConfig,
    head: Head,
    wal: Wal,
    catalog: Catalog,
    blocks: RwLock<Vec<Arc<Block>>>,
    metadata: RwLock<HashMap<String, Metadata>>,
    /// Serialises appends so the WAL holds records in the order the head applied them.
    append_lock: Mutex<()>,
    /// Serialises the background path (cut, compaction, retention) against itself.
    maintenance_lock: Mutex<()>,
    stats: Arc<StoreStats>,
}

fn blocks_dir(dir: &Path) -> PathBuf {
    dir.join("blocks")
}

impl MetricsStore {
    /// Opens (or creates) a store in `dir` with its catalog in `catalog_dir`, replaying the WAL.
    pub fn open(
        dir: &Path,
        catalog_dir: &Path,
        cfg: MetricsConfig,
        stats: Arc<StoreStats>,
    ) -> Result<Self> {
        let bdir = blocks_dir(dir);
        fs::create_dir_all(&bdir).map_err(|e| Error::io(&bdir, e))?;
        crate::page_cache::PageCache::global().set_capacity(cfg.page_cache_bytes);
        let catalog = Catalog::open(catalog_dir)?;
        let entries = catalog.blocks()?;
        let mut blocks = Vec::new();
        for e in &entries {
            blocks.push(Arc::new(Block::open(&bdir.join(&e.id))?));
        }
        remove_debris(&bdir, &entries)?;
        let head = Head::new(HeadOptions {
            ooo_window_ms: cfg.ooo_window_ms,
            max_exemplars: cfg.max_exemplars,
        });
        if let Some(max) = entries.iter().map(|e| e.max_time).max() {
            head.set_min_valid_t(max);
        }
        let wal_dir = dir.join("wal");
        let started = std::time::Instant::now();
        let replay = wal::replay(&wal_dir)?;
        let mut metadata = HashMap::new();
        let mut replayed = 0u64;
        let min_valid = head.min_valid_t();
        for rec in replay.records {
            match rec {
                WalRecord::Series(s) => {
                    for (r, labels) in s {
                        head.restore_series(r, &labels);
                    }
                }
                WalRecord::Samples(samples) => {
                    let mut current: Option<(u32, Arc<Mutex<crate::head::MemSeries>>)> = None;
                    for (r, t, v) in samples {
                        if t < min_valid {
                            continue;
                        }
                        if current.as_ref().is_none_or(|(cr, _)| *cr != r) {
                            current = head.series(r).map(|s| (r, s));
                        }
                        if let Some((_, s)) = &current {
                            if head.append(&mut s.lock(), t, v).is_ok() {
                                replayed += 1;
                            }
                        }
                    }
                }
                WalRecord::Exemplars(e) => {
                    for (r, ex) in e {
                        if let Some(s) = head.series(r) {
                            head.add_exemplar(r, &mut s.lock(), ex);
                        }
                    }
                }
                WalRecord::Metadata(m) => metadata.extend(m),
            }
        }
        tracing::info!(
            dir = %dir.display(),
            samples = replayed,
            series = head.num_series(),
            blocks = blocks.len(),
            damaged_segments = replay.damaged_segments,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "metrics store opened"
        );
        let wal = Wal::open(
            &wal_dir,
            replay.next_segment,
            replay.segments,
            cfg.wal.clone(),
        )?;
        Ok(MetricsStore {
            dir: dir.to_owned(),
            cfg,
            head,
            wal,
            catalog,
            blocks: RwLock::new(blocks),
            metadata: RwLock::new(metadata),
            append_lock: Mutex::new(()),
            maintenance_lock: Mutex::new(()),
            stats,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a batch and returns once what was stored is durable. Refused samples are counted and
    /// reported; the rest of the batch is still stored (as Prometheus does).
    pub fn append(&self, batch: &WriteBatch) -> Result<AppendOutcome> {
        let inputs: Vec<SeriesInput<'_>> = batch
            .series
            .iter()
            .map(|s| SeriesInput {
                labels: &s.labels,
                samples: &s.samples,
                exemplars: &s.exemplars,
            })
            .collect();
        self.append_series(&inputs, &batch.metadata)
    }

    /// [`append`](Self::append) for series whose labels may be borrowed from a request body: labels
    /// are materialised only for series the head does not have yet.
    pub fn append_series(
        &self,
        series: &[SeriesInput<'_>],
        metadata: &[(String, Metadata)],
    ) -> Result<AppendOutcome> {
        let mut out = AppendOutcome::default();
        let mut new_series: Vec<(u32, Labels)> = Vec::new();
        let mut samples: Vec<(u32, i64, f64)> =
            Vec::with_capacity(series.iter().map(|s| s.samples.len()).sum());
        let mut exemplars: Vec<(u32, &crate::model::Exemplar)> = Vec::new();
        let ticket;
        {
            let _order = self.append_lock.lock();
            for sw in series {
                if sw.samples.is_empty() && sw.exemplars.is_empty() {
                    continue;
                }
                let r = match self.head.get_or_create(sw.labels) {
                    Ok(r) => r,
                    Err((r, labels)) => {
                        new_series.push((r, labels));
                        r
                    }
                };
                let Some(handle) = self.head.series(r) else {
                    continue;
                };
                let mut handle = handle.lock();
                for s in sw.samples {
                    match self.head.append(&mut handle, s.t, s.v) {
                        Ok(Appended::Stored) => samples.push((r, s.t, s.v)),
                        Ok(Appended::Unchanged) => out.samples_unchanged += 1,
                        Err(rej) => {
                            *out.rejected.entry(rej.reason()).or_default() += 1;
                            self.stats.count_rejected(rej, 1);
                            if out.first_rejection.is_none() {
                                out.first_rejection = Some((sw.labels.to_labels(), *s, rej));
                            }
                        }
                    }
                }
                for e in sw.exemplars {
                    if self.head.add_exemplar(r, &mut handle, e.clone()) {
                        exemplars.push((r, e));
                    }
                }
            }
            let mut changed_meta: Vec<(&str, &Metadata)> = Vec::new();
            if !metadata.is_empty() {
                let mut md = self.metadata.write();
                for (family, m) in metadata {
                    if md.get(family) != Some(m) {
                        md.insert(family.clone(), m.clone());
                        changed_meta.push((family, m));
                    }
                }
            }
            out.series_created = new_series.len() as u64;
            out.samples_stored = samples.len() as u64;
            out.exemplars_stored = exemplars.len() as u64;
            let mut records = Vec::new();
            if !new_series.is_empty() {
                let mut b = Vec::new();
                let refs: Vec<(u32, &Labels)> = new_series.iter().map(|(r, l)| (*r, l)).collect();
                wal::encode_series(&mut b, &refs);
                records.push(b);
            }
            if !samples.is_empty() {
                let mut b = Vec::with_capacity(samples.len() * 13 + 16);
                wal::encode_samples(&mut b, &samples);
                records.push(b);
            }
            if !exemplars.is_empty() {
                let mut b = Vec::new();
                wal::encode_exemplars(&mut b, &exemplars);
                records.push(b);
            }
            if !changed_meta.is_empty() {
                let mut b = Vec::new();
                wal::encode_metadata(&mut b, &changed_meta);
                records.push(b);
            }
            let max_t = samples.iter().map(|s| s.1).max().unwrap_or(i64::MIN);
            let last = records.pop();
            for r in records {
                self.wal.log_nowait(r)?;
            }
            ticket = last.map(|r| self.wal.log(r, max_t)).transpose()?;
        }
        if let Some(t) = ticket {
            t.wait()?;
        }
        self.stats
            .samples_ingested
            .fetch_add(out.samples_stored, Ordering::Relaxed);
        self.stats
            .exemplars_ingested
            .fetch_add(out.exemplars_stored, Ordering::Relaxed);
        Ok(out)
    }

    fn blocks_snapshot(&self) -> Vec<Arc<Block>> {
        self.blocks.read().clone()
    }

    /// Cuts head data into blocks. Normally only whole block ranges older than the head's newest
    /// sample minus half a range (so late samples still land in the head); with `force`, everything.
    pub fn cut_blocks(&self, force: bool) -> Result<usize> {
        let _m = self.maintenance_lock.lock();
        let Some((head_min, head_max)) = self.head.time_range() else {
            return Ok(0);
        };
        let range = self.cfg.block_range_ms;
        let cut_until = if force {
            head_max + 1
        } else {
            // Keep at least half a block range of recent data in the head, like Prometheus's 1.5x rule.
            let limit = head_max - range / 2;
            limit.div_euclid(range) * range
        };
        let start = head_min.max(self.head.min_valid_t());
        if cut_until <= start {
            return Ok(0);
        }
        // From here on samples before `cut_until` are refused: their range is going into blocks.
        {
            let _order = self.append_lock.lock();
            self.head.set_min_valid_t(cut_until);
        }
        let mut entries = Vec::new();
        let mut lo = start.div_euclid(range) * range;
        while lo < cut_until {
            let hi = (lo + range).min(cut_until);
            let series = self.head.select(&[], lo, hi - 1);
            if !series.is_empty() {
                let mut w = BlockWriter::create(&blocks_dir(&self.dir), lo, hi, 1, vec![])?;
                for (labels, samples) in &series {
                    w.add_series(labels, samples)?;
                }
                if let Some(e) = w.finish()? {
                    entries.push(e);
                }
            }
            lo = hi;
        }
        self.install_blocks(&entries, &[])?;
        {
            let _order = self.append_lock.lock();
            self.head.truncate_before(cut_until);
            self.checkpoint_wal(cut_until)?;
        }
        self.stats
            .blocks_cut
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        Ok(entries.len())
    }

    /// Writes the head's live state as a WAL checkpoint. Caller holds the append lock.
    fn checkpoint_wal(&self, keep_from_t: i64) -> Result<()> {
        let live = self.head.live_series();
        let mut records = Vec::new();
        for chunk in live.chunks(10_000) {
            let mut b = Vec::new();
            wal::encode_series(
                &mut b,
                &chunk.iter().map(|(r, l)| (*r, l)).collect::<Vec<_>>(),
            );
            records.push(b);
        }
        let ex = self.head.exemplars_snapshot();
        if !ex.is_empty() {
            let mut b = Vec::new();
            wal::encode_exemplars(&mut b, &ex.iter().map(|(r, e)| (*r, e)).collect::<Vec<_>>());
            records.push(b);
        }
        let md = self.metadata.read();
        if !md.is_empty() {
            let mut b = Vec::new();
            wal::encode_metadata(
                &mut b,
                &md.iter().map(|(f, m)| (f.as_str(), m)).collect::<Vec<_>>(),
            );
            records.push(b);
        }
        self.wal.checkpoint(&records, keep_from_t)
    }

    /// Opens newly written blocks, records the new set in the catalog and drops replaced blocks.
    fn install_blocks(&self, added: &[BlockEntry], removed: &[String]) -> Result<()> {
        let bdir = blocks_dir(&self.dir);
        let opened: Vec<Arc<Block>> = added
            .iter()
            .map(|e| Block::open(&bdir.join(&e.id)).map(Arc::new))
            .collect::<Result<_>>()?;
        self.catalog.replace_blocks(added, removed)?;
        {
            let mut blocks = self.blocks.write();
            blocks.retain(|b| !removed.contains(&b.meta().id));
            blocks.extend(opened);
            blocks.sort_by_key(|b| (b.meta().min_time, b.meta().max_time));
        }
        for id in removed {
            let p = bdir.join(id);
            if let Err(e) = fs::remove_dir_all(&p) {
                tracing::warn!(path = %p.display(), error = %e, "could not delete replaced block");
            }
        }
        Ok(())
    }

    /// Merges blocks that fall in one compaction range. Without `force`, only ranges fully in the
    /// past with at least two blocks; with `force`, also merges blocks of the current range.
    pub fn compact(&self, force: bool) -> Result<usize> {
        let _m = self.maintenance_lock.lock();
        let mut merged = 0;
        for &range in &self.cfg.compaction_ranges_ms {
            let blocks = self.blocks_snapshot();
            let newest = blocks.iter().map(|b| b.meta().max_time).max().unwrap_or(0);
            let mut groups: std::collections::BTreeMap<i64, Vec<Arc<Block>>> = Default::default();
            for b in blocks {
                let m = b.meta();
                let g = m.min_time.div_euclid(range);
                // A block already spanning more than this range (or crossing its boundary) stays.
                if (m.max_time - 1).div_euclid(range) == g && m.max_time - m.min_time < range {
                    groups.entry(g).or_default().push(b);
                }
            }
            for (g, group) in groups {
                let range_end = (g + 1) * range;
                if group.len() < 2 || (!force && range_end > newest) {
                    continue;
                }
                self.merge_blocks(&group, g * range, range_end)?;
                merged += 1;
            }
        }
        self.stats
            .compactions
            .fetch_add(merged as u64, Ordering::Relaxed);
        Ok(merged)
    }

    fn merge_blocks(&self, group: &[Arc<Block>], lo: i64, hi: i64) -> Result<()> {
        let min_time = group.iter().map(|b| b.meta().min_time).min().unwrap_or(lo);
        let max_time = group.iter().map(|b| b.meta().max_time).max().unwrap_or(hi);
        let level = group.iter().map(|b| b.meta().level).max().unwrap_or(1) + 1;
        let sources = group.iter().flat_map(|b| {
            let m = b.meta();
            if m.sources.is_empty() {
                vec![m.id.clone()]
            } else {
                m.sources.clone()
            }
        });
        let mut w = BlockWriter::create(
            &blocks_dir(&self.dir),
            min_time,
            max_time,
            level,
            sources.collect(),
        )?;
        let mut merged: std::collections::BTreeMap<Labels, Vec<Sample>> = Default::default();
        for b in group {
            for s in b.all_series() {
                let (labels, samples) = s?;
                let e = merged.entry(labels).or_default();
                *e = merge_samples(std::mem::take(e), samples);
            }
        }
        for (labels, samples) in &merged {
            w.add_series(labels, samples)?;
        }
        let removed: Vec<String> = group.iter().map(|b| b.meta().id.clone()).collect();
        let added: Vec<BlockEntry> = w.finish()?.into_iter().collect();
        tracing::info!(
            blocks = removed.len(),
            min_time,
            max_time,
            level,
            "compacted blocks"
        );
        self.install_blocks(&added, &removed)
    }

    /// Drops blocks past the retention age (relative to `now_ms`) or beyond the size limit.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize> {
        let _m = self.maintenance_lock.lock();
        let blocks = self.blocks_snapshot();
        let mut drop: Vec<String> = Vec::new();
        if self.cfg.retention_ms > 0 {
            let cutoff = now_ms - self.cfg.retention_ms;
            drop.extend(
                blocks
                    .iter()
                    .filter(|b| b.meta().max_time <= cutoff)
                    .map(|b| b.meta().id.clone()),
            );
        }
        if self.cfg.retention_bytes > 0 {
            let mut total: u64 = blocks
                .iter()
                .filter(|b| !drop.contains(&b.meta().id))
                .map(|b| b.size_bytes())
                .sum();
            for b in &blocks {
                if total <= self.cfg.retention_bytes {
                    break;
                }
                if !drop.contains(&b.meta().id) {
                    total -= b.size_bytes();
                    drop.push(b.meta().id.clone());
                }
            }
        }
        if drop.is_empty() {
            return Ok(0);
        }
        self.install_blocks(&[], &drop)?;
        self.stats
            .blocks_deleted_by_retention
            .fetch_add(drop.len() as u64, Ordering::Relaxed);
        tracing::info!(blocks = drop.len(), "retention dropped blocks");
        Ok(drop.len())
    }

    /// Writes backfilled series (each sorted by time, no duplicate timestamps) straight into blocks,
    /// one per block range they touch, and records their metadata. Returns the number of blocks.
    pub fn import(
        &self,
        series: &std::collections::BTreeMap<Labels, Vec<Sample>>,
        metadata: &[(String, Metadata)],
    ) -> Result<usize> {
        let _m = self.maintenance_lock.lock();
        let range = self.cfg.block_range_ms;
        let mut ranges: Vec<i64> = series
            .values()
            .flat_map(|s| s.iter().map(|x| x.t.div_euclid(range)))
            .collect();
        ranges.sort_unstable();
        ranges.dedup();
        let mut entries = Vec::new();
        for r in ranges {
            let (lo, hi) = (r * range, (r + 1) * range);
            let mut w = BlockWriter::create(&blocks_dir(&self.dir), lo, hi, 1, vec![])?;
            for (labels, samples) in series {
                let a = samples.partition_point(|x| x.t < lo);
                let b = samples.partition_point(|x| x.t < hi);
                w.add_series(labels, &samples[a..b])?;
            }
            if let Some(e) = w.finish()? {
                entries.push(e);
            }
        }
        self.install_blocks(&entries, &[])?;
        if !metadata.is_empty() {
            let _order = self.append_lock.lock();
            let mut md = self.metadata.write();
            let changed: Vec<(&str, &Metadata)> =
                metadata.iter().map(|(f, m)| (f.as_str(), m)).collect();
            let mut b = Vec::new();
            wal::encode_metadata(&mut b, &changed);
            for (f, m) in metadata {
                md.insert(f.clone(), m.clone());
            }
            drop(md);
            self.wal.log(b, i64::MIN)?.wait()?;
        }
        Ok(entries.len())
    }

    /// The background path, run periodically.
    pub fn maintain(&self, now_ms: i64) -> Result<()> {
        self.cut_blocks(false)?;
        self.compact(false)?;
        self.apply_retention(now_ms)?;
        Ok(())
    }

    pub fn head_series(&self) -> usize {
        self.head.num_series()
    }

    pub fn head_bytes(&self) -> usize {
        self.head.size_bytes()
    }

    pub fn block_count(&self) -> usize {
        self.blocks.read().len()
    }

    pub fn blocks_bytes(&self) -> u64 {
        self.blocks.read().iter().map(|b| b.size_bytes()).sum()
    }

    /// Distinct series in the live blocks, from the catalog's registry.
    pub fn registered_series(&self) -> Result<usize> {
        self.catalog.registered_series()
    }

    pub fn wal_fsyncs(&self) -> u64 {
        self.wal.fsyncs()
    }

    pub fn block_entries(&self) -> Vec<BlockEntry> {
        self.catalog.blocks().unwrap_or_default()
    }

    /// Flushes the catalog and stops the WAL writer after everything queued is durable.
    pub fn close(&self) {
        self.wal.close();
        if let Err(e) = self.catalog.flush() {
            tracing::warn!(error = %e, "catalog flush failed on close");
        }
    }

    fn selected(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>> {
        let mut sources: Vec<Vec<(Labels, Vec<Sample>)>> = Vec::new();
        for b in self
            .blocks_snapshot()
            .iter()
            .filter(|b| b.overlaps(mint, maxt))
        {
            sources.push(b.select(matchers, mint, maxt)?);
        }
        sources.push(self.head.select(matchers, mint, maxt));
        Ok(merge_series(sources))
    }

    fn labels_in_range(&self, selectors: &[Vec<Matcher>], mint: i64, maxt: i64) -> Vec<Labels> {
        let all = [Vec::new()];
        let selectors = if selectors.is_empty() {
            &all[..]
        } else {
            selectors
        };
        let blocks = self.blocks_snapshot();
        let mut out: Vec<Labels> = Vec::new();
        for sel in selectors {
            for b in blocks.iter().filter(|b| b.overlaps(mint, maxt)) {
                out.extend(b.series_labels(sel, mint, maxt));
            }
            out.extend(self.head.series_in_range(sel, mint, maxt));
        }
        out.sort();
        out.dedup();
        out
    }
}

/// Merges per-source series lists (each sorted by labels) into one, merging samples of equal series.
fn merge_series(sources: Vec<Vec<(Labels, Vec<Sample>)>>) -> Vec<(Labels, Vec<Sample>)> {
    if sources.len() == 1 {
        return sources.into_iter().next().unwrap_or_default();
    }
    let mut map: std::collections::BTreeMap<Labels, Vec<Sample>> = Default::default();
    for src in sources {
        for (l, s) in src {
            let e = map.entry(l).or_default();
            *e = merge_samples(std::mem::take(e), s);
        }
    }
    map.into_iter().collect()
}

/// Merges two time-sorted sample lists; on equal timestamps the later list wins.
fn merge_samples(a: Vec<Sample>, b: Vec<Sample>) -> Vec<Sample> {
    if a.is_empty() {
        return b;
    }
    if b.is_empty() {
        return a;
    }
    if a[a.len() - 1].t < b[0].t {
        let mut a = a;
        a.extend(b);
        return a;
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].t.cmp(&b[j].t) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(b[j]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Deletes block directories the catalog does not list (interrupted writes or compactions).
fn remove_debris(bdir: &Path, entries: &[BlockEntry]) -> Result<()> {
    for e in fs::read_dir(bdir).map_err(|e| Error::io(bdir, e))? {
        let e = e.map_err(|err| Error::io(bdir, err))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !entries.iter().any(|b| b.id == name) {
            tracing::warn!(dir = %e.path().display(), "removing block directory not in the catalog");
            let _ = fs::remove_dir_all(e.path());
        }
    }
    Ok(())
}

impl MetricsReader for MetricsStore {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<SeriesSamples>> {
        Ok(self
            .selected(matchers, mint, maxt)?
            .into_iter()
            .map(|(labels, samples)| SeriesSamples { labels, samples })
            .collect())
    }

    /// Streams the selection: label sets of every source first (cheap), then each series' samples
    /// decoded and merged across blocks and head one series at a time.
    fn select_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        f: &mut dyn FnMut(SeriesSamples) -> Result<()>,
    ) -> Result<()> {
        enum Source {
            Block(usize, u32),
            Head(Arc<parking_lot::Mutex<crate::head::MemSeries>>),
        }
        let blocks: Vec<Arc<Block>> = self
            .blocks_snapshot()
            .into_iter()
            .filter(|b| b.overlaps(mint, maxt))
            .collect();
        // (labels, source order, where): equal labels sort blocks first, the head last, so a later
        // source wins on equal timestamps as in `merge_samples`.
        let mut entries: Vec<(Labels, usize, Source)> = Vec::new();
        for (i, b) in blocks.iter().enumerate() {
            for (labels, id) in b.select_ids(matchers, mint, maxt) {
                entries.push((labels, i, Source::Block(i, id)));
            }
        }
        for (labels, _, series) in self.head.select_series(matchers) {
            entries.push((labels, blocks.len(), Source::Head(series)));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut decoded: Vec<DecodedTimestamps> = blocks
            .iter()
            .map(|_| DecodedTimestamps::default())
            .collect();
        let mut entries = entries.into_iter().peekable();
        while let Some((labels, _, first)) = entries.next() {
            let mut samples: Vec<Sample> = Vec::new();
            let mut part: Vec<Sample> = Vec::new();
            let mut source = Some(first);
            while let Some(src) = source.take() {
                part.clear();
                match src {
                    Source::Block(i, id) => {
                        blocks[i].samples_of(id, mint, maxt, &mut part, &mut decoded[i])?
                    }
                    Source::Head(s) => s.lock().samples(mint, maxt, &mut part),
                }
                samples = merge_samples(samples, std::mem::take(&mut part));
                if entries.peek().is_some_and(|(l, _, _)| *l == labels) {
                    source = entries.next().map(|(_, _, s)| s);
                }
            }
            if !samples.is_empty() {
                f(SeriesSamples { labels, samples })?;
            }
        }
        Ok(())
    }

    fn series(&self, selectors: &[Vec<Matcher>], mint: i64, maxt: i64) -> Result<Vec<Labels>> {
        Ok(self.labels_in_range(selectors, mint, maxt))
    }

    fn exemplars(
        &self,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesExemplars>> {
        let mut out: Vec<SeriesExemplars> = Vec::new();
        for sel in selectors {
            for se in self.head.exemplars(sel, mint, maxt) {
                if !out.iter().any(|o| o.labels == se.labels) {
                    out.push(se);
                }
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    fn metadata(&self, metric: Option<&str>) -> Result<Vec<(String, Metadata)>> {
        let md = self.metadata.read();
        let mut out: Vec<(String, Metadata)> = md
            .iter()
            .filter(|(f, _)| metric.is_none_or(|m| m == f.as_str()))
            .map(|(f, m)| (f.clone(), m.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MatchOp, SeriesWrite};

    fn batch(job: &str, from: i64, n: i64, step: i64) -> WriteBatch {
        WriteBatch {
            series: (0..3)
                .map(|i| SeriesWrite {
                    labels: Labels::from_pairs([
                        ("__name__", "m".to_string()),
                        ("job", job.to_string()),
                        ("i", i.to_string()),
                    ]),
                    samples: (0..n)
                        .map(|k| Sample::new(from + k * step, (k * 10 + i) as f64))
                        .collect(),
                    exemplars: vec![],
                })
                .collect(),
            metadata: vec![],
        }
    }

    fn open(dir: &Path) -> MetricsStore {
        MetricsStore::open(
            &dir.join("metrics"),
            &dir.join("catalog"),
            MetricsConfig::default(),
            Arc::default(),
        )
        .unwrap()
    }

    fn count(store: &MetricsStore, mint: i64, maxt: i64) -> usize {
        store
            .select(&[Matcher::equal("__name__", "m")], mint, maxt)
            .unwrap()
            .iter()
            .map(|s| s.samples.len())
            .sum()
    }

    #[test]
    fn acknowledged_samples_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path());
            let out = s.append(&batch("a", 0, 100, 15_000)).unwrap();
            assert_eq!(out.samples_stored, 300);
            // Re-sending: only the newest sample of a series counts as an exact duplicate; older ones
            // are out of order, as in Prometheus.
            let again = s.append(&batch("a", 0, 100, 15_000)).unwrap();
            assert_eq!(again.samples_unchanged, 3);
            assert_eq!(again.rejected.get("out_of_order"), Some(&297));
            // Nothing was cut into blocks: what comes back is replayed from the WAL.
            drop(s);
        }
        let s = open(dir.path());
        assert_eq!(count(&s, 0, i64::MAX), 300);
    }

    #[test]
    fn cut_compact_and_read_across_blocks_and_head() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let hour = 3_600_000;
        // 7 hours at 15 s.
        s.append(&batch("a", 0, 7 * 240, 15_000)).unwrap();
        assert!(s.cut_blocks(false).unwrap() >= 2);
        assert_eq!(count(&s, 0, i64::MAX), 3 * 7 * 240);
        s.append(&batch("a", 7 * hour, 10, 15_000)).unwrap();
        let rej = s.append(&batch("a", 0, 1, 15_000)).unwrap();
        assert_eq!(rej.rejected.get("out_of_bounds"), Some(&3));
        s.cut_blocks(true).unwrap();
        s.compact(true).unwrap();
        assert_eq!(count(&s, 0, i64::MAX), 3 * (7 * 240 + 10));
        assert_eq!(count(&s, hour, 2 * hour - 1), 3 * 240);
        drop(s);
        let s = open(dir.path());
        assert_eq!(count(&s, 0, i64::MAX), 3 * (7 * 240 + 10));
        let names = s
            .label_values(
                "job",
                &[vec![Matcher::new(MatchOp::Regex, "i", "1|2").unwrap()]],
                0,
                i64::MAX,
            )
            .unwrap();
        assert_eq!(names, vec!["a".to_string()]);
    }

    /// Streaming selection hands out exactly what `select` returns, in the same order, with series
    /// spread over several blocks and the head.
    #[test]
    fn select_each_streams_what_select_returns() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.append(&batch("a", 0, 5 * 240, 15_000)).unwrap();
        s.append(&batch("b", 0, 2 * 240, 15_000)).unwrap();
        assert!(s.cut_blocks(false).unwrap() >= 1);
        // The head holds the newest hours; "c" lives only there.
        s.append(&batch("c", 4 * 3_600_000, 40, 15_000)).unwrap();
        for (matchers, mint, maxt) in [
            (vec![Matcher::equal("__name__", "m")], 0, i64::MAX),
            (vec![Matcher::equal("job", "a")], 3_000_000, 15_000_000),
            (
                vec![Matcher::new(MatchOp::Regex, "job", "b|c").unwrap()],
                0,
                5 * 3_600_000,
            ),
            (vec![Matcher::equal("job", "none")], 0, i64::MAX),
        ] {
            let all = s.select(&matchers, mint, maxt).unwrap();
            let mut streamed = Vec::new();
            s.select_each(&matchers, mint, maxt, &mut |x| {
                streamed.push(x);
                Ok(())
            })
            .unwrap();
            assert_eq!(streamed, all, "{matchers:?} {mint}..{maxt}");
        }
        // An error from the callback stops the walk and comes back.
        let mut seen = 0;
        let r = s.select_each(&[Matcher::equal("__name__", "m")], 0, i64::MAX, &mut |_| {
            seen += 1;
            Err(Error::LimitExceeded("enough".into()))
        });
        assert!(matches!(r, Err(Error::LimitExceeded(_))));
        assert_eq!(seen, 1);
    }

    #[test]
    fn retention_by_size_drops_oldest_blocks_first() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = MetricsConfig {
            retention_ms: 0,
            retention_bytes: 1,
            ..MetricsConfig::default()
        };
        let s = MetricsStore::open(
            &dir.path().join("metrics"),
            &dir.path().join("catalog"),
            cfg,
            Arc::default(),
        )
        .unwrap();
        s.append(&batch("a", 0, 1000, 60_000)).unwrap();
        s.cut_blocks(true).unwrap();
        let blocks = s.block_entries();
        assert!(blocks.len() >= 3);
        let newest = blocks.iter().map(|b| b.min_time).max().unwrap();
        // A 1-byte budget keeps nothing but never deletes out of age order: the newest goes last.
        let dropped = s.apply_retention(0).unwrap();
        assert_eq!(dropped, blocks.len());
        assert_eq!(s.block_count(), 0);
        s.append(&batch("a", newest + 7_200_000, 1, 60_000))
            .unwrap();
        s.cut_blocks(true).unwrap();
        let size = s.blocks_bytes();
        let cfg = MetricsConfig {
            retention_ms: 0,
            retention_bytes: size,
            ..MetricsConfig::default()
        };
        drop(s);
        let s = MetricsStore::open(
            &dir.path().join("metrics"),
            &dir.path().join("catalog"),
            cfg,
            Arc::default(),
        )
        .unwrap();
        assert_eq!(
            s.apply_retention(0).unwrap(),
            0,
            "within budget: nothing dropped"
        );
    }

    #[test]
    fn retention_drops_old_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.append(&batch("a", 0, 1000, 60_000)).unwrap();
        s.cut_blocks(true).unwrap();
        let before = s.block_count();
        assert!(before >= 2);
        let dropped = s
            .apply_retention(15 * 24 * 3_600_000 + 4 * 3_600_000)
            .unwrap();
        assert!(dropped >= 1 && s.block_count() < before);
        assert!(count(&s, 0, 4 * 3_600_000 - 1) < 3 * 240);
    }
}
