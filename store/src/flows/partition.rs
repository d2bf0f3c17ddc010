//! One time partition of a tenant's flows: a tantivy index under `flows/<start>_<width>/` holding the
//! records whose `interval.end` falls in `[start, start + width)` (Unix seconds in the name). Its
//! writer is opened on the first record and dropped once a commit finds it idle, so only partitions
//! being written hold an indexing heap. Each commit records, as its payload, the WAL segment from
//! which records are not yet in this index. Once no longer written, a partition's segments are merged
//! into one (`merge_segments`): every segment repeats its term and column dictionaries. Beside the
//! index, the partition's key table (`keys`): every distinct key its records refer to.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use tantivy::directory::MmapDirectory;
use tantivy::indexer::LogMergePolicy;
use tantivy::store::{Compressor, ZstdCompressor};
use tantivy::{Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy};

use super::codec::encode_batch;
use super::index::{FlowDoc, FlowSchema, SegmentRecords};
use super::keys::{KeyTable, PartitionKeys};
use super::record::FlowRecord;
use crate::error::{Error, Result};
use crate::wal::sync_dir;

/// Settings of the partitions' indexes.
#[derive(Debug, Clone)]
pub struct PartitionOptions {
    pub writer_heap_bytes: usize,
    pub writer_threads: usize,
    pub zstd_level: i32,
    pub docstore_block_bytes: usize,
}

/// A record on its way into a partition: its time (`interval.end`, which picks the partition), the
/// encoding of its key (as a keyed WAL record begins) and its document, built while the record was
/// being encoded.
pub struct Incoming<'a> {
    pub end_ns: i64,
    pub key: &'a [u8],
    pub doc: FlowDoc,
}

impl<'a> Incoming<'a> {
    /// `records`, with their keys encoded into `buf`: for records that do not come with a WAL
    /// payload (replayed, or read back to be rewritten).
    pub fn all(
        buf: &'a mut Vec<u8>,
        records: &[&'a FlowRecord],
        schema: &FlowSchema,
    ) -> Vec<Incoming<'a>> {
        let ranges;
        (*buf, ranges) = encode_batch(records.iter().copied());
        let buf: &'a [u8] = buf;
        records
            .iter()
            .zip(ranges)
            .map(|(&record, range)| Incoming {
                end_ns: record.interval_end,
                key: &buf[range],
                doc: schema.to_document(record),
            })
            .collect()
    }
}

pub(crate) fn tantivy_error(path: &Path, e: tantivy::TantivyError) -> Error {
    Error::corrupt(path, format!("flow index: {e}"))
}

struct WriterState {
    writer: IndexWriter<FlowDoc>,
    /// Documents added since the last commit.
    pending: u64,
    /// A merge of the whole partition runs on this writer: an idle commit leaves it open, since
    /// dropping it would wait for the merge while the ingest lock is held.
    merging: bool,
}

pub struct Partition {
    pub start_ns: i64,
    pub width_ns: i64,
    dir: PathBuf,
    index: Index,
    pub reader: IndexReader,
    writer: Mutex<Option<WriterState>>,
    /// Records in WAL segments from this one on may be missing from the index (commit payload).
    committed_wal_segment: Mutex<u64>,
    pub keys: PartitionKeys,
    /// Written in format version 1 or 2, to be rewritten ([`upgrade`]) before use.
    pub legacy: bool,
}

pub fn dir_name(start_ns: i64, width_ns: i64) -> String {
    format!("{}_{}", start_ns / 1_000_000_000, width_ns / 1_000_000_000)
}

/// Parses a partition directory name back into `(start_ns, width_ns)`.
pub fn parse_dir_name(name: &str) -> Option<(i64, i64)> {
    let (s, w) = name.split_once('_')?;
    let (s, w): (i64, i64) = (s.parse().ok()?, w.parse().ok()?);
    (w > 0).then_some((s.checked_mul(1_000_000_000)?, w.checked_mul(1_000_000_000)?))
}

impl Partition {
    /// Opens the partition's index, creating it when absent.
    pub fn open(
        base: &Path,
        start_ns: i64,
        width_ns: i64,
        schema: &FlowSchema,
        opts: &PartitionOptions,
    ) -> Result<Partition> {
        let dir = base.join(dir_name(start_ns, width_ns));
        Partition::open_dir(dir, start_ns, width_ns, schema, opts)
    }

    fn open_dir(
        dir: PathBuf,
        start_ns: i64,
        width_ns: i64,
        schema: &FlowSchema,
        opts: &PartitionOptions,
    ) -> Result<Partition> {
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let mmap = MmapDirectory::open(&dir).map_err(|e| Error::corrupt(&dir, e.to_string()))?;
        let settings = IndexSettings {
            docstore_compression: Compressor::Zstd(ZstdCompressor {
                compression_level: Some(opts.zstd_level),
            }),
            docstore_blocksize: opts.docstore_block_bytes,
            ..IndexSettings::default()
        };
        // An existing index keeps the schema it was written with.
        let exists = Index::exists(&mmap).map_err(|e| Error::corrupt(&dir, e.to_string()))?;
        let index = if exists {
            Index::open(mmap)
        } else {
            Index::builder()
                .schema(schema.schema.clone())
                .settings(settings)
                .open_or_create(mmap)
        }
        .map_err(|e| tantivy_error(&dir, e))?;
        let legacy = !schema
            .is_current(&index.schema())
            .map_err(|e| Error::corrupt(&dir, format!("flow index: {e}")))?;
        let committed = index
            .load_metas()
            .map_err(|e| tantivy_error(&dir, e))?
            .payload
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| tantivy_error(&dir, e))?;
        Ok(Partition {
            start_ns,
            width_ns,
            keys: PartitionKeys::new(&dir),
            dir,
            index,
            reader,
            writer: Mutex::new(None),
            committed_wal_segment: Mutex::new(committed),
            legacy,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn end_ns(&self) -> i64 {
        self.start_ns.saturating_add(self.width_ns)
    }

    pub fn committed_wal_segment(&self) -> u64 {
        *self.committed_wal_segment.lock()
    }

    /// Whether the partition is being written: a writer with documents added since it was opened.
    /// A writer that only merges does not count.
    pub fn has_writer(&self) -> bool {
        self.writer
            .lock()
            .as_ref()
            .is_some_and(|s| !s.merging || s.pending > 0)
    }

    fn open_writer(&self, opts: &PartitionOptions) -> Result<IndexWriter<FlowDoc>> {
        let writer: IndexWriter<FlowDoc> = self
            .index
            .writer_with_num_threads(opts.writer_threads, opts.writer_heap_bytes)
            .map_err(|e| tantivy_error(&self.dir, e))?;
        // Merge sooner than tantivy's default (8 segments of a level): every segment repeats the
        // dictionaries of its columns and terms, so fewer segments are smaller and faster to query.
        let mut policy = LogMergePolicy::default();
        policy.set_min_num_segments(4);
        writer.set_merge_policy(Box::new(policy));
        Ok(writer)
    }

    /// Adds records, numbering their keys, opening the writer when needed.
    pub fn add(
        &self,
        records: Vec<Incoming<'_>>,
        schema: &FlowSchema,
        opts: &PartitionOptions,
    ) -> Result<()> {
        if self.legacy {
            return Err(Error::corrupt(&self.dir, "flow partition not upgraded"));
        }
        let mut ids = Vec::with_capacity(records.len());
        self.keys.assign(records.iter().map(|i| i.key), &mut ids)?;
        let docs = records.into_iter().zip(ids).map(|(i, k)| {
            let mut doc = i.doc;
            schema.set_key(&mut doc, k);
            doc
        });
        let mut w = self.writer.lock();
        if w.is_none() {
            *w = Some(WriterState {
                writer: self.open_writer(opts)?,
                pending: 0,
                merging: false,
            });
        }
        let state = w.as_mut().expect("writer opened above");
        for d in docs {
            state
                .writer
                .add_document(d)
                .map_err(|e| tantivy_error(&self.dir, e))?;
            state.pending += 1;
        }
        Ok(())
    }

    /// Commits what was added, recording `wal_segment` as the first segment whose records may not be
    /// in the index; drops the writer when nothing had been added since the last commit (or `close`).
    pub fn commit(&self, wal_segment: u64, close: bool) -> Result<()> {
        let mut w = self.writer.lock();
        let Some(state) = w.as_mut() else {
            return Ok(());
        };
        let idle = state.pending == 0;
        if !idle {
            // Every key a committed record refers to is durable first.
            self.keys.sync()?;
            let mut prepared = state
                .writer
                .prepare_commit()
                .map_err(|e| tantivy_error(&self.dir, e))?;
            prepared.set_payload(&wal_segment.to_string());
            prepared.commit().map_err(|e| tantivy_error(&self.dir, e))?;
            state.pending = 0;
            *self.committed_wal_segment.lock() = wal_segment;
            self.reader
                .reload()
                .map_err(|e| tantivy_error(&self.dir, e))?;
        }
        if (idle && !state.merging) || close {
            if let Some(state) = w.take() {
                state
                    .writer
                    .wait_merging_threads()
                    .map_err(|e| tantivy_error(&self.dir, e))?;
            }
        }
        Ok(())
    }

    /// Drops the writer, uncommitted documents included, once its merges are done.
    pub fn close_writer(&self) -> Result<()> {
        if let Some(state) = self.writer.lock().take() {
            state
                .writer
                .wait_merging_threads()
                .map_err(|e| tantivy_error(&self.dir, e))?;
        }
        Ok(())
    }

    /// Committed segments of the index.
    pub fn segment_count(&self) -> Result<usize> {
        self.index
            .searchable_segment_ids()
            .map(|ids| ids.len())
            .map_err(|e| tantivy_error(&self.dir, e))
    }

    /// Merges every committed segment into one when nothing was added to the partition since its
    /// last commit; returns whether it did. The caller waits for the merge, but holds no lock meanwhile: records may be
    /// added and committed to the partition while it runs (they land in a new segment). Readers keep
    /// their segments until they reload. Crash-safe through tantivy's commit protocol: `meta.json`
    /// names the merged segment, with the last commit's payload, only once it is complete; until then
    /// the old segments are the index.
    pub fn merge_segments(&self, opts: &PartitionOptions) -> Result<bool> {
        let merge = {
            let mut w = self.writer.lock();
            match w.as_ref() {
                Some(state) if state.pending > 0 || state.merging => return Ok(false),
                // Idle since its last commit: close it as the next commit would, letting the merges
                // its merge policy started finish first.
                Some(_) => {
                    let state = w.take().expect("matched above");
                    state
                        .writer
                        .wait_merging_threads()
                        .map_err(|e| tantivy_error(&self.dir, e))?;
                }
                None => {}
            }
            let ids = self
                .index
                .searchable_segment_ids()
                .map_err(|e| tantivy_error(&self.dir, e))?;
            if ids.len() < 2 {
                return Ok(false);
            }
            let mut writer = self.open_writer(opts)?;
            let merge = writer.merge(&ids);
            *w = Some(WriterState {
                writer,
                pending: 0,
                merging: true,
            });
            merge
        };
        let merged = merge.wait();
        {
            let mut w = self.writer.lock();
            if let Some(state) = w.as_mut() {
                state.merging = false;
                // Documents added meanwhile keep the writer for the next commit.
                if state.pending == 0 {
                    let state = w.take().expect("checked above");
                    state
                        .writer
                        .wait_merging_threads()
                        .map_err(|e| tantivy_error(&self.dir, e))?;
                }
            }
        }
        merged.map_err(|e| tantivy_error(&self.dir, e))?;
        self.reader
            .reload()
            .map_err(|e| tantivy_error(&self.dir, e))?;
        Ok(true)
    }

    /// Bytes of the committed index by part (`postings`, `termdict`, `fast`, `store`, `fieldnorms`)
    /// and field, summed over segments: where the disk goes.
    pub fn space_by_field(&self) -> Result<BTreeMap<(String, String), u64>> {
        let usage = self
            .reader
            .searcher()
            .space_usage()
            .map_err(|e| Error::io(&self.dir, e))?;
        let mut out = BTreeMap::new();
        for seg in usage.segments() {
            for (part, per_field) in [
                ("postings", seg.postings()),
                ("termdict", seg.termdict()),
                ("fast", seg.fast_fields()),
                ("fieldnorms", seg.fieldnorms()),
            ] {
                for f in per_field.fields() {
                    *out.entry((part.to_owned(), f.field_name().to_owned()))
                        .or_default() += f.total().get_bytes();
                }
            }
            *out.entry(("store".to_owned(), String::new())).or_default() +=
                seg.store().total().get_bytes();
        }
        Ok(out)
    }

    /// Bytes the partition takes on disk.
    pub fn disk_bytes(&self) -> u64 {
        fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

const UPGRADE_SUFFIX: &str = ".upgrade";
const OLD_SUFFIX: &str = ".old";

/// Rewrites the legacy partition `p` (format version 1 or 2) into the current format in its place:
/// its records are read back and written into a new index beside it, which, once complete, committed
/// with the same WAL payload and merged, takes the old directory's name. Returns the new partition.
/// A crash at any point leaves either layout whole ([`finish_upgrades`] tidies up at the next open).
pub fn upgrade(
    base: &Path,
    p: Partition,
    schema: &FlowSchema,
    opts: &PartitionOptions,
) -> Result<Partition> {
    let (start_ns, width_ns) = (p.start_ns, p.width_ns);
    let name = dir_name(start_ns, width_ns);
    let tmp = base.join(format!("{name}{UPGRADE_SUFFIX}"));
    let old = base.join(format!("{name}{OLD_SUFFIX}"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    let legacy = FlowSchema::legacy();
    let searcher = p.reader.searcher();
    let next = Partition::open_dir(tmp.clone(), start_ns, width_ns, schema, opts)?;
    let empty = KeyTable::default();
    let mut records = 0u64;
    for seg in searcher.segment_readers() {
        let mut reader =
            SegmentRecords::open(&legacy, seg).map_err(|e| tantivy_error(&p.dir, e))?;
        reader.cache_terms().map_err(|e| tantivy_error(&p.dir, e))?;
        let mut batch = Vec::with_capacity(8192);
        let mut keys = Vec::new();
        let mut flush = |batch: &mut Vec<FlowRecord>| -> Result<()> {
            let refs: Vec<&FlowRecord> = batch.iter().collect();
            next.add(Incoming::all(&mut keys, &refs, schema), schema, opts)?;
            batch.clear();
            Ok(())
        };
        for doc in 0..seg.max_doc() {
            if seg.is_deleted(doc) {
                continue;
            }
            batch.push(
                reader
                    .read(doc, &empty)
                    .map_err(|e| tantivy_error(&p.dir, e))?,
            );
            records += 1;
            if batch.len() == batch.capacity() {
                flush(&mut batch)?;
            }
        }
        flush(&mut batch)?;
    }
    next.commit(p.committed_wal_segment(), true)?;
    next.merge_segments(opts)?;
    next.keys.pack()?;
    drop(next);
    drop(searcher);
    let dir = p.dir.clone();
    drop(p);
    fs::rename(&dir, &old).map_err(|e| Error::io(&dir, e))?;
    fs::rename(&tmp, &dir).map_err(|e| Error::io(&tmp, e))?;
    sync_dir(base)?;
    fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    tracing::info!(dir = %dir.display(), records, "flow partition rewritten into format version 3");
    Partition::open_dir(dir, start_ns, width_ns, schema, opts)
}

/// Completes or discards upgrades that a crash interrupted, under `base`: an old layout set aside
/// (`.old`) whose successor was not yet renamed into place is replaced by that complete successor; a
/// successor beside an untouched old layout is incomplete and goes.
pub fn finish_upgrades(base: &Path) -> Result<()> {
    let names: Vec<String> = fs::read_dir(base)
        .map_err(|e| Error::io(base, e))?
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .collect();
    for n in names.iter().filter(|n| n.ends_with(OLD_SUFFIX)) {
        let name = &n[..n.len() - OLD_SUFFIX.len()];
        let dir = base.join(name);
        let tmp = base.join(format!("{name}{UPGRADE_SUFFIX}"));
        if !dir.exists() {
            fs::rename(&tmp, &dir).map_err(|e| Error::io(&tmp, e))?;
            sync_dir(base)?;
        }
        let old = base.join(n);
        fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    for n in names.iter().filter(|n| n.ends_with(UPGRADE_SUFFIX)) {
        let tmp = base.join(n);
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
    }
    Ok(())
}
