//! The flow store: per tenant, flow records in tantivy indexes partitioned by time (`partition`), made
//! durable by a WAL before they are acknowledged, searchable once the next index commit lands.
//!
//! Ingest: validate → group by partition → log the batch to the WAL and add the documents to the
//! partitions' writers (one lock, so the WAL order and the index order agree) → wait for the WAL fsync
//! → acknowledge. Background: every commit interval, rotate the WAL, commit every open writer with the
//! new segment number as payload, then delete the older segments; apply retention by deleting whole
//! partitions. Beside it, on a thread of its own, merge the segments of each partition whose hour is
//! over and which nothing writes to any more into one. After a crash, the WAL segments at or after a
//! partition's payload are replayed into it.

pub mod aggregate;
pub mod codec;
pub mod filter;
pub mod index;
pub mod keys;
pub mod partition;
pub mod record;
pub mod search;
#[cfg(test)]
pub(crate) mod testdata;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};

use crate::error::{Error, Result};
use crate::tenants::validate_tenant;
use crate::wal::{self, Wal, WalOptions};
use index::FlowSchema;
use partition::{Incoming, Partition, PartitionOptions};
pub use record::{FieldDef, FieldKind, FieldRef, FieldValue, FlowRecord, FIELDS};

const NS_PER_SEC: i64 = 1_000_000_000;

/// Settings of the flow stores; the server maps its config file onto this.
#[derive(Debug, Clone)]
pub struct FlowConfig {
    /// Width of a time partition (one tantivy index each).
    pub partition_ns: i64,
    /// Partitions entirely older than this are deleted; 0 keeps flows forever.
    pub retention_ns: i64,
    /// Records whose `interval.end` is further ahead of the clock than this are refused.
    pub max_future_ns: i64,
    /// How often written records are committed to the indexes (and become searchable).
    pub commit_interval: Duration,
    /// Indexing memory of one open partition writer (tantivy needs at least 15 MB per thread).
    pub writer_heap_bytes: usize,
    pub writer_threads: usize,
    /// Partitions written at once; a batch that needs more commits and closes the others first.
    pub max_open_writers: usize,
    /// zstd level of the document store (which holds empty documents since partition format 2).
    pub zstd_level: i32,
    /// Memory for the key tables of partitions not being written, over all of a tenant's partitions:
    /// past it, the least recently queried are unloaded (and read again from disk when needed).
    pub key_cache_bytes: usize,
    pub wal: WalOptions,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            partition_ns: 3600 * NS_PER_SEC,
            retention_ns: 7 * 24 * 3600 * NS_PER_SEC,
            max_future_ns: 3600 * NS_PER_SEC,
            commit_interval: Duration::from_secs(5),
            writer_heap_bytes: 64 << 20,
            writer_threads: 1,
            max_open_writers: 4,
            zstd_level: 3,
            key_cache_bytes: 512 << 20,
            wal: WalOptions::default(),
        }
    }
}

impl FlowConfig {
    fn partition_options(&self) -> PartitionOptions {
        PartitionOptions {
            writer_heap_bytes: self.writer_heap_bytes.max(15_000_000 * self.writer_threads),
            writer_threads: self.writer_threads.max(1),
            zstd_level: self.zstd_level,
            docstore_block_bytes: 64 << 10,
        }
    }
}

/// What one append did: records are accepted or refused one by one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowAppendOutcome {
    pub accepted: u64,
    pub rejected: u64,
    /// Why the first refused record was refused.
    pub first_error: Option<String>,
}

/// Counters of one tenant's flow store.
#[derive(Debug, Default)]
pub struct FlowStats {
    pub records_appended: AtomicU64,
    pub records_rejected: AtomicU64,
    pub commits: AtomicU64,
    pub partitions_dropped: AtomicU64,
    pub partitions_merged: AtomicU64,
    /// Key tables dropped from memory to stay within `key_cache_bytes`.
    pub key_tables_unloaded: AtomicU64,
}

/// One tenant's flow store.
pub struct FlowStore {
    dir: PathBuf,
    cfg: FlowConfig,
    popts: PartitionOptions,
    schema: FlowSchema,
    partitions: RwLock<BTreeMap<i64, Arc<Partition>>>,
    wal: Wal,
    /// Held while logging and indexing a batch, and while committing: the WAL order and the index
    /// order agree, and a commit's WAL cut-off separates indexed records from the rest.
    ingest: Mutex<()>,
    /// Held while merging a partition and while dropping partitions, so that no merge writes into a
    /// directory being deleted. Taken before `ingest` when both are needed.
    merge: Mutex<()>,
    pub stats: FlowStats,
}

impl FlowStore {
    /// Opens (or creates) the store in `dir`, replaying the WAL into the partitions.
    pub fn open(dir: &Path, cfg: FlowConfig) -> Result<FlowStore> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let schema = FlowSchema::new();
        let popts = cfg.partition_options();
        partition::finish_upgrades(dir)?;
        let mut partitions = BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some((start, width)) = partition::parse_dir_name(&name) {
                let mut p = Partition::open(dir, start, width, &schema, &popts)?;
                if p.legacy {
                    p = partition::upgrade(dir, p, &schema, &popts)?;
                }
                partitions.insert(start, Arc::new(p));
            }
        }
        let wal_dir = dir.join("wal");
        // The flow WAL has no checkpoints; its payloads carry no sample times.
        let replay = wal::replay_raw(&wal_dir, |_| i64::MIN)?;
        if replay.damaged_segments > 0 {
            tracing::warn!(dir = %wal_dir.display(), damaged = replay.damaged_segments, "flow WAL had torn tails");
        }
        let wal = Wal::open(&wal_dir, replay.next_segment, Vec::new(), cfg.wal.clone())?;
        let store = FlowStore {
            dir: dir.to_owned(),
            popts,
            schema,
            partitions: RwLock::new(partitions),
            wal,
            ingest: Mutex::new(()),
            merge: Mutex::new(()),
            stats: FlowStats::default(),
            cfg,
        };
        let mut replayed = 0u64;
        for (segment, payload) in replay.payloads {
            let records = match codec::decode_batch(&payload) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(segment, error = %e, "undecodable flow WAL record skipped");
                    continue;
                }
            };
            let refs: Vec<&FlowRecord> = records.iter().collect();
            let mut keys = Vec::new();
            let incoming = Incoming::all(&mut keys, &refs, &store.schema);
            for (start, group) in store.by_partition(incoming) {
                let p = store.partition_for_write(start)?;
                if segment >= p.committed_wal_segment() {
                    replayed += group.len() as u64;
                    p.add(group, &store.schema, &store.popts)?;
                }
            }
        }
        // Everything replayed is committed at once, so the old segments can go.
        store.commit()?;
        if replayed > 0 {
            tracing::info!(dir = %dir.display(), replayed, "flow WAL replayed");
        }
        Ok(store)
    }

    pub fn config(&self) -> &FlowConfig {
        &self.cfg
    }

    pub fn schema(&self) -> &FlowSchema {
        &self.schema
    }

    fn partition_start(&self, t: i64) -> i64 {
        t.div_euclid(self.cfg.partition_ns) * self.cfg.partition_ns
    }

    /// The records grouped by the partition they belong to.
    fn by_partition<'a>(
        &self,
        records: impl IntoIterator<Item = Incoming<'a>>,
    ) -> BTreeMap<i64, Vec<Incoming<'a>>> {
        let mut groups: BTreeMap<i64, Vec<_>> = BTreeMap::new();
        for r in records {
            groups
                .entry(self.partition_start(r.end_ns))
                .or_default()
                .push(r);
        }
        groups
    }

    fn partition_for_write(&self, start: i64) -> Result<Arc<Partition>> {
        if let Some(p) = self.partitions.read().get(&start) {
            return Ok(p.clone());
        }
        let mut map = self.partitions.write();
        if let Some(p) = map.get(&start) {
            return Ok(p.clone());
        }
        let p = Arc::new(Partition::open(
            &self.dir,
            start,
            self.cfg.partition_ns,
            &self.schema,
            &self.popts,
        )?);
        map.insert(start, p.clone());
        Ok(p)
    }

    /// Unloads the least recently used key tables of partitions not being written while the loaded
    /// ones take more than `key_cache_bytes`. Queries call it after each partition they read.
    pub(crate) fn trim_key_tables(&self) {
        let parts: Vec<Arc<Partition>> = self.partitions.read().values().cloned().collect();
        let mut total: usize = parts.iter().map(|p| p.keys.loaded_bytes()).sum();
        if total <= self.cfg.key_cache_bytes {
            return;
        }
        let mut loaded: Vec<&Arc<Partition>> =
            parts.iter().filter(|p| p.keys.loaded_bytes() > 0).collect();
        loaded.sort_by_key(|p| p.keys.last_used());
        for p in loaded {
            if total <= self.cfg.key_cache_bytes {
                break;
            }
            let freed = p.keys.unload();
            if freed > 0 {
                total -= freed.min(total);
                self.stats
                    .key_tables_unloaded
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Bytes of the key tables in memory, over the tenant's partitions.
    pub fn key_tables_bytes(&self) -> usize {
        self.partitions
            .read()
            .values()
            .map(|p| p.keys.loaded_bytes())
            .sum()
    }

    /// Partitions that may hold records with `interval.end` in `[start, end]`, oldest first.
    pub fn partitions_overlapping(&self, start: i64, end: i64) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .values()
            .filter(|p| p.start_ns <= end && p.end_ns() > start)
            .cloned()
            .collect()
    }

    /// Appends records; returns once every accepted record is durable in the WAL. `now_ns` is the
    /// clock, for the retention and future bounds.
    pub fn append(&self, records: &[FlowRecord], now_ns: i64) -> Result<FlowAppendOutcome> {
        let mut out = FlowAppendOutcome::default();
        let oldest = if self.cfg.retention_ns > 0 {
            now_ns.saturating_sub(self.cfg.retention_ns)
        } else {
            i64::MIN
        };
        let newest = now_ns.saturating_add(self.cfg.max_future_ns);
        // Each record is checked and written into the WAL payload in one pass.
        let mut batch = codec::BatchWriter::with_capacity(records.len());
        let mut accepted = Vec::with_capacity(records.len());
        for r in records {
            let verdict = r.check_times().and_then(|()| {
                if r.interval_end < oldest {
                    Err("interval.end is older than the flow retention".to_owned())
                } else if r.interval_end > newest {
                    Err("interval.end is too far in the future".to_owned())
                } else {
                    batch.push(r)
                }
            });
            match verdict {
                // The document too, while the record is at hand.
                Ok(key) => accepted.push((r, key, self.schema.to_document(r))),
                Err(e) => {
                    out.rejected += 1;
                    out.first_error.get_or_insert(e);
                }
            }
        }
        self.stats
            .records_rejected
            .fetch_add(out.rejected, Ordering::Relaxed);
        if accepted.is_empty() {
            return Ok(out);
        }
        let payload = batch.bytes();
        let n = accepted.len() as u64;
        let groups = self.by_partition(accepted.into_iter().map(|(r, key, doc)| Incoming {
            end_ns: r.interval_end,
            key: &payload[key],
            doc,
        }));
        let ticket = {
            let _guard = self.ingest.lock();
            let open = self
                .partitions
                .read()
                .values()
                .filter(|p| p.has_writer())
                .count();
            let new = groups
                .keys()
                .filter(|s| {
                    !self
                        .partitions
                        .read()
                        .get(s)
                        .is_some_and(|p| p.has_writer())
                })
                .count();
            if open + new > self.cfg.max_open_writers.max(1) {
                // Memory bound: commit and close every writer before opening more.
                self.commit_locked(true)?;
            }
            // The keys are read from the payload, so the records are added before it goes to the
            // WAL. Nothing is acknowledged before the WAL has it, and no commit comes between the
            // two (both hold the ingest lock).
            for (start, group) in groups {
                self.partition_for_write(start)?
                    .add(group, &self.schema, &self.popts)?;
            }
            self.wal.log(batch.finish(), i64::MIN)?
        };
        ticket.wait()?;
        out.accepted = n;
        self.stats
            .records_appended
            .fetch_add(out.accepted, Ordering::Relaxed);
        Ok(out)
    }

    /// Commits every open writer, making what was appended searchable, and drops the WAL segments
    /// whose records are now in the indexes.
    pub fn commit(&self) -> Result<()> {
        let _guard = self.ingest.lock();
        self.commit_locked(false)
    }

    fn commit_locked(&self, close_all: bool) -> Result<()> {
        let segment = self.wal.rotate()?;
        let partitions: Vec<_> = self.partitions.read().values().cloned().collect();
        for p in partitions {
            p.commit(segment, close_all)?;
        }
        self.wal.remove_before(segment)?;
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Deletes the partitions that lie entirely before `now_ns - retention`.
    pub fn apply_retention(&self, now_ns: i64) -> Result<usize> {
        if self.cfg.retention_ns <= 0 {
            return Ok(0);
        }
        let cutoff = now_ns.saturating_sub(self.cfg.retention_ns);
        let expired = |p: &Arc<Partition>| p.end_ns() <= cutoff;
        if !self.partitions.read().values().any(expired) {
            return Ok(0);
        }
        // A partition being merged finishes its merge before its directory goes (lock order: merge,
        // then ingest; nothing holding `ingest` waits for `merge`).
        let _merge = self.merge.lock();
        let _guard = self.ingest.lock();
        let doomed: Vec<_> = {
            let mut map = self.partitions.write();
            let keys: Vec<i64> = map
                .values()
                .filter(|p| expired(p))
                .map(|p| p.start_ns)
                .collect();
            keys.iter().filter_map(|k| map.remove(k)).collect()
        };
        let n = doomed.len();
        for p in doomed {
            // A doomed partition has nothing pending: appends refuse records older than the
            // retention, and the WAL only holds records since the last commit.
            let dir = p.dir().to_owned();
            // The merge thread may still hold the partition; its files go now all the same.
            p.close_writer()?;
            drop(p);
            fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            tracing::info!(dir = %dir.display(), "flow partition dropped by retention");
        }
        self.stats
            .partitions_dropped
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    /// Merges into one segment each partition whose time range ended before `now_ns` and which has no
    /// writer (nothing appended since its last commit), one at a time; returns how many it merged.
    /// Appends and queries go on meanwhile (see [`Partition::merge_segments`]).
    pub fn merge_closed_partitions(&self, now_ns: i64) -> Result<usize> {
        let closed: Vec<_> = self
            .partitions
            .read()
            .values()
            .filter(|p| p.end_ns() <= now_ns)
            .cloned()
            .collect();
        let mut merged = 0;
        for p in closed {
            let _merge = self.merge.lock();
            let current = self
                .partitions
                .read()
                .get(&p.start_ns)
                .is_some_and(|q| Arc::ptr_eq(q, &p));
            if current && p.merge_segments(&self.popts)? {
                merged += 1;
                self.stats.partitions_merged.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(dir = %p.dir().display(), "flow partition merged into one segment");
            }
            if current && !p.has_writer() {
                p.keys.pack()?;
            }
        }
        Ok(merged)
    }

    /// Bytes on disk: partitions and WAL.
    pub fn disk_bytes(&self) -> u64 {
        let parts: u64 = self
            .partitions
            .read()
            .values()
            .map(|p| p.disk_bytes())
            .sum();
        parts + self.wal.bytes_written()
    }

    /// Committed index bytes by part and field over every partition (see [`Partition::space_by_field`]).
    pub fn space_by_field(&self) -> Result<BTreeMap<(String, String), u64>> {
        let mut out = BTreeMap::new();
        for p in self.partitions.read().values() {
            for (k, v) in p.space_by_field()? {
                *out.entry(k).or_default() += v;
            }
        }
        Ok(out)
    }

    pub fn partition_count(&self) -> usize {
        self.partitions.read().len()
    }

    /// Commits and stops the WAL writer.
    pub fn close(&self) {
        {
            let _guard = self.ingest.lock();
            if let Err(e) = self.commit_locked(true) {
                tracing::error!(dir = %self.dir.display(), error = %e, "flow store commit at close failed");
            }
        }
        self.wal.close();
    }
}

/// The flow stores of every tenant, under `<data_dir>/<tenant>/flows/`, opened on first use, with one
/// background thread that commits them and applies retention, and one that merges closed partitions.
pub struct FlowStorage {
    data_dir: PathBuf,
    cfg: FlowConfig,
    stores: RwLock<HashMap<String, Arc<FlowStore>>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    background: Mutex<Vec<std::thread::JoinHandle<()>>>,
    closed: AtomicBool,
}

impl FlowStorage {
    /// The flow stores under `data_dir`; nothing is read until [`FlowStorage::start`] or first use.
    pub fn new(data_dir: &Path, cfg: FlowConfig) -> Arc<FlowStorage> {
        Arc::new(FlowStorage {
            data_dir: data_dir.to_owned(),
            cfg,
            stores: RwLock::new(HashMap::new()),
            stop: Arc::new((Mutex::new(false), Condvar::new())),
            background: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        })
    }

    /// Opens the tenants that already have flows (replaying their WAL) and starts the background
    /// threads: one commits and applies retention, one merges closed partitions (a merge takes
    /// seconds to minutes, which must not hold up commits).
    pub fn start(self: &Arc<Self>) -> Result<()> {
        let data_dir = &self.data_dir;
        fs::create_dir_all(data_dir).map_err(|e| Error::io(data_dir, e))?;
        for e in fs::read_dir(data_dir).map_err(|e| Error::io(data_dir, e))? {
            let e = e.map_err(|err| Error::io(data_dir, err))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().join("flows").is_dir() && validate_tenant(&name).is_ok() {
                self.for_write(&name)?;
            }
        }
        let every = self.cfg.commit_interval;
        let tasks: [(&str, StoreTask); 2] =
            [("flow-commit", commit_task), ("flow-merge", merge_task)];
        for (name, task) in tasks {
            let weak = Arc::downgrade(self);
            let stop = self.stop.clone();
            let handle = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || background_loop(weak, stop, every, task))
                .map_err(|e| Error::io(data_dir, e))?;
            self.background.lock().push(handle);
        }
        Ok(())
    }

    /// [`FlowStorage::new`] then [`FlowStorage::start`].
    pub fn open(data_dir: &Path, cfg: FlowConfig) -> Result<Arc<FlowStorage>> {
        let s = FlowStorage::new(data_dir, cfg);
        s.start()?;
        Ok(s)
    }

    pub fn config(&self) -> &FlowConfig {
        &self.cfg
    }

    /// The tenant's store, created when absent.
    pub fn for_write(&self, tenant: &str) -> Result<Arc<FlowStore>> {
        validate_tenant(tenant)?;
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::ShuttingDown);
        }
        if let Some(s) = self.stores.read().get(tenant) {
            return Ok(s.clone());
        }
        let mut map = self.stores.write();
        if let Some(s) = map.get(tenant) {
            return Ok(s.clone());
        }
        let dir = self.data_dir.join(tenant).join("flows");
        let store = Arc::new(FlowStore::open(&dir, self.cfg.clone())?);
        map.insert(tenant.to_owned(), store.clone());
        Ok(store)
    }

    /// The tenant's store if it has ever held flows.
    pub fn for_read(&self, tenant: &str) -> Result<Option<Arc<FlowStore>>> {
        validate_tenant(tenant)?;
        if let Some(s) = self.stores.read().get(tenant) {
            return Ok(Some(s.clone()));
        }
        if self.data_dir.join(tenant).join("flows").is_dir() {
            return self.for_write(tenant).map(Some);
        }
        Ok(None)
    }

    pub fn tenants(&self) -> Vec<(String, Arc<FlowStore>)> {
        let mut v: Vec<_> = self
            .stores
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Commits every tenant now (tests and shutdown).
    pub fn commit_all(&self) -> Result<()> {
        for (_, s) in self.tenants() {
            s.commit()?;
        }
        Ok(())
    }

    /// Stops the background thread, commits and closes every tenant.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        {
            let (lock, cv) = &*self.stop;
            *lock.lock() = true;
            cv.notify_all();
        }
        let handles = std::mem::take(&mut *self.background.lock());
        for h in handles {
            // A background thread may itself hold the last handle and be running this.
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
        for (_, s) in self.tenants() {
            s.close();
        }
    }
}

impl Drop for FlowStorage {
    fn drop(&mut self) {
        self.close();
    }
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Work of a background thread on one tenant's store (the tenant's name is for the logs).
type StoreTask = fn(&FlowStore, &str);

/// Runs `task` on every tenant's store each `every`, until stopped or the storage is gone.
fn background_loop(
    storage: std::sync::Weak<FlowStorage>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    every: Duration,
    task: StoreTask,
) {
    loop {
        {
            let (lock, cv) = &*stop;
            let mut stopped = lock.lock();
            if !*stopped {
                cv.wait_for(&mut stopped, every);
            }
            if *stopped {
                return;
            }
        }
        let Some(storage) = storage.upgrade() else {
            return;
        };
        for (tenant, store) in storage.tenants() {
            if storage.closed.load(Ordering::Relaxed) {
                return;
            }
            task(&store, &tenant);
        }
    }
}

fn commit_task(store: &FlowStore, tenant: &str) {
    if let Err(e) = store.commit() {
        tracing::error!(tenant, error = %e, "flow commit failed");
    }
    if let Err(e) = store.apply_retention(now_ns()) {
        tracing::error!(tenant, error = %e, "flow retention failed");
    }
}

fn merge_task(store: &FlowStore, tenant: &str) {
    if let Err(e) = store.merge_closed_partitions(now_ns()) {
        tracing::error!(tenant, error = %e, "flow partition merge failed");
    }
}

#[cfg(test)]
mod tests;
