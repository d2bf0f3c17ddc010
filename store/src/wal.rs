//! The write-ahead log of the metrics head: checksummed records in numbered segment files, written by one
//! thread that commits concurrent writers' records with a single `fdatasync` (group commit), so a write is
//! acknowledged only once it is durable. A checkpoint file carries the live series across truncation.
//!
//! Layout (see `docs/formats.md`): a segment starts with `SWAL` + u32 LE version, followed by records
//! `[u32 LE payload length][u32 LE CRC32-C of payload][payload]`; the payload's first byte is the record
//! type. A torn record at the tail (crash mid-write) ends replay of that segment and is cut off.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;

use crate::encoding::{put_str, put_uvarint, put_varint, DecodeResult, Decoder};
use crate::error::{Error, Result};
use crate::model::{Exemplar, Label, Labels, Metadata, MetricType};

const SEGMENT_MAGIC: &[u8; 4] = b"SWAL";
const CHECKPOINT_MAGIC: &[u8; 4] = b"SWCP";
const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: u64 = 8;
/// Segments rotate past this size so truncation can drop whole files.
const SEGMENT_MAX_BYTES: u64 = 64 << 20;
/// Largest record a reader accepts; anything bigger is corruption, not data.
const MAX_RECORD_BYTES: u32 = 256 << 20;

const REC_SERIES: u8 = 1;
const REC_SAMPLES: u8 = 2;
const REC_EXEMPLARS: u8 = 3;
const REC_METADATA: u8 = 4;

/// A decoded WAL record. Series are referred to by the head's series reference.
#[derive(Debug, Clone, PartialEq)]
pub enum WalRecord {
    Series(Vec<(u32, Labels)>),
    Samples(Vec<(u32, i64, f64)>),
    Exemplars(Vec<(u32, Exemplar)>),
    Metadata(Vec<(String, Metadata)>),
}

pub fn encode_series(buf: &mut Vec<u8>, series: &[(u32, &Labels)]) {
    buf.push(REC_SERIES);
    put_uvarint(buf, series.len() as u64);
    for (r, labels) in series {
        put_uvarint(buf, u64::from(*r));
        put_uvarint(buf, labels.len() as u64);
        for l in labels.iter() {
            put_str(buf, &l.name);
            put_str(buf, &l.value);
        }
    }
}

/// Samples are stored against a base timestamp so regular scrapes cost ~1-3 bytes of time each.
pub fn encode_samples(buf: &mut Vec<u8>, samples: &[(u32, i64, f64)]) {
    buf.push(REC_SAMPLES);
    put_uvarint(buf, samples.len() as u64);
    let base = samples.first().map_or(0, |s| s.1);
    put_varint(buf, base);
    for (r, t, v) in samples {
        put_uvarint(buf, u64::from(*r));
        put_varint(buf, t.wrapping_sub(base));
        buf.extend_from_slice(&v.to_bits().to_le_bytes());
    }
}

pub fn encode_exemplars(buf: &mut Vec<u8>, exemplars: &[(u32, &Exemplar)]) {
    buf.push(REC_EXEMPLARS);
    put_uvarint(buf, exemplars.len() as u64);
    for (r, e) in exemplars {
        put_uvarint(buf, u64::from(*r));
        put_varint(buf, e.t);
        buf.extend_from_slice(&e.value.to_bits().to_le_bytes());
        put_uvarint(buf, e.labels.len() as u64);
        for l in e.labels.iter() {
            put_str(buf, &l.name);
            put_str(buf, &l.value);
        }
    }
}

pub fn encode_metadata(buf: &mut Vec<u8>, metadata: &[(&str, &Metadata)]) {
    buf.push(REC_METADATA);
    put_uvarint(buf, metadata.len() as u64);
    for (family, m) in metadata {
        put_str(buf, family);
        buf.push(m.metric_type.as_i32() as u8);
        put_str(buf, &m.help);
        put_str(buf, &m.unit);
    }
}

/// Encodes an owned record: the inverse of [`decode_record`]. The ingest path encodes from borrowed
/// parts with the functions above instead, to avoid building records it would only throw away.
pub fn encode_record(r: &WalRecord) -> Vec<u8> {
    let mut b = Vec::new();
    match r {
        WalRecord::Series(s) => {
            encode_series(&mut b, &s.iter().map(|(r, l)| (*r, l)).collect::<Vec<_>>())
        }
        WalRecord::Samples(s) => encode_samples(&mut b, s),
        WalRecord::Exemplars(e) => {
            encode_exemplars(&mut b, &e.iter().map(|(r, e)| (*r, e)).collect::<Vec<_>>())
        }
        WalRecord::Metadata(m) => encode_metadata(
            &mut b,
            &m.iter().map(|(f, m)| (f.as_str(), m)).collect::<Vec<_>>(),
        ),
    }
    b
}

fn decode_labels(d: &mut Decoder<'_>) -> DecodeResult<Labels> {
    let n = d.uvarint()? as usize;
    let mut labels = Vec::with_capacity(n.min(256));
    for _ in 0..n {
        let name = d.str()?.to_owned();
        let value = d.str()?.to_owned();
        labels.push(Label { name, value });
    }
    Ok(Labels::from_pairs(
        labels.into_iter().map(|l| (l.name, l.value)),
    ))
}

pub fn decode_record(payload: &[u8]) -> DecodeResult<WalRecord> {
    let mut d = Decoder::new(payload);
    let kind = d.u8()?;
    let n = d.uvarint()? as usize;
    // Bound pre-allocation by what the payload could hold, so a corrupt count cannot exhaust memory.
    let cap = n.min(payload.len());
    let rec = match kind {
        REC_SERIES => {
            let mut v = Vec::with_capacity(cap);
            for _ in 0..n {
                let r = u32::try_from(d.uvarint()?)
                    .map_err(|_| crate::encoding::DecodeError("series ref overflow"))?;
                v.push((r, decode_labels(&mut d)?));
            }
            WalRecord::Series(v)
        }
        REC_SAMPLES => {
            let mut v = Vec::with_capacity(cap);
            let base = d.varint()?;
            for _ in 0..n {
                let r = u32::try_from(d.uvarint()?)
                    .map_err(|_| crate::encoding::DecodeError("series ref overflow"))?;
                let t = base.wrapping_add(d.varint()?);
                v.push((r, t, d.f64_le()?));
            }
            WalRecord::Samples(v)
        }
        REC_EXEMPLARS => {
            let mut v = Vec::with_capacity(cap);
            for _ in 0..n {
                let r = u32::try_from(d.uvarint()?)
                    .map_err(|_| crate::encoding::DecodeError("series ref overflow"))?;
                let t = d.varint()?;
                let value = d.f64_le()?;
                let labels = decode_labels(&mut d)?;
                v.push((r, Exemplar { labels, value, t }));
            }
            WalRecord::Exemplars(v)
        }
        REC_METADATA => {
            let mut v = Vec::with_capacity(cap);
            for _ in 0..n {
                let family = d.str()?.to_owned();
                let metric_type = MetricType::from_i32(i32::from(d.u8()?));
                let help = d.str()?.to_owned();
                let unit = d.str()?.to_owned();
                v.push((
                    family,
                    Metadata {
                        metric_type,
                        help,
                        unit,
                    },
                ));
            }
            WalRecord::Metadata(v)
        }
        _ => return Err(crate::encoding::DecodeError("unknown record type")),
    };
    if !d.is_empty() {
        return Err(crate::encoding::DecodeError("trailing bytes in record"));
    }
    Ok(rec)
}

/// A record's frame header: its length and CRC-32C, each u32 LE.
fn frame_header(payload: &[u8]) -> [u8; 8] {
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[4..].copy_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    h
}

fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&frame_header(payload));
    out.extend_from_slice(payload);
}

fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index:08}"))
}

fn checkpoint_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("checkpoint.{index:08}"))
}

/// Segment indices and checkpoints present in a WAL directory.
fn list_dir(dir: &Path) -> Result<(Vec<u64>, Vec<u64>)> {
    let mut segments = Vec::new();
    let mut checkpoints = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_prefix("checkpoint.") {
            if let Ok(i) = n.parse() {
                checkpoints.push(i);
            }
        } else if let Ok(i) = name.parse() {
            segments.push(i);
        }
    }
    segments.sort_unstable();
    checkpoints.sort_unstable();
    Ok((segments, checkpoints))
}

/// Reads framed records after an 8-byte header until the end or the first damaged record. Returns the
/// records and the byte offset where valid data ends.
fn read_records(path: &Path, magic: &[u8; 4]) -> Result<(Vec<Vec<u8>>, u64, bool)> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(|e| Error::io(path, e))?;
    if data.len() < HEADER_LEN as usize {
        // A crash right after creating the file: nothing was acknowledged from it.
        return Ok((Vec::new(), 0, !data.is_empty()));
    }
    if &data[..4] != magic {
        return Err(Error::corrupt(path, "bad magic"));
    }
    let version = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_owned(),
            version,
        });
    }
    let mut records = Vec::new();
    let mut pos = HEADER_LEN as usize;
    let mut damaged = false;
    while pos < data.len() {
        if pos + 8 > data.len() {
            damaged = true;
            break;
        }
        let len = u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]);
        let crc = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
        let end = pos + 8 + len as usize;
        if len > MAX_RECORD_BYTES || end > data.len() || crc32c::crc32c(&data[pos + 8..end]) != crc
        {
            damaged = true;
            break;
        }
        records.push(data[pos + 8..end].to_vec());
        pos = end;
    }
    Ok((records, pos as u64, damaged))
}

/// Result of replaying a WAL directory.
#[derive(Debug, Default)]
pub struct Replay {
    pub records: Vec<WalRecord>,
    /// Records that failed to decode or bytes cut off after a torn write.
    pub damaged_segments: usize,
    /// Segment index to continue writing at.
    pub next_segment: u64,
    /// Each replayed segment with the newest sample time it holds, for [`Wal::open`].
    pub segments: Vec<(u64, i64)>,
}

/// Replay of a WAL directory before its payloads are decoded, for stores whose records are not the
/// metrics head's (the segment framing is shared; the payload is the store's own).
#[derive(Debug, Default)]
pub struct RawReplay {
    /// Payloads of the newest checkpoint (damage there is corruption, not a torn write).
    pub checkpoint: Vec<Vec<u8>>,
    /// Payloads of the segments after it, in write order, each with its segment's index.
    pub payloads: Vec<(u64, Vec<u8>)>,
    /// Segments whose tail was cut off after a torn write.
    pub damaged_segments: usize,
    pub next_segment: u64,
    /// Each replayed segment with the newest time `max_t_of` found in it.
    pub segments: Vec<(u64, i64)>,
}

/// Reads the newest checkpoint and every segment after it, in order, repairing a torn tail.
pub fn replay(dir: &Path) -> Result<Replay> {
    let cp_path = dir.join("checkpoint");
    let raw = replay_raw(dir, |p| match decode_record(p) {
        Ok(WalRecord::Samples(s)) => s.iter().fold(i64::MIN, |m, x| m.max(x.1)),
        _ => i64::MIN,
    })?;
    let mut out = Replay {
        damaged_segments: raw.damaged_segments,
        next_segment: raw.next_segment,
        segments: raw.segments,
        ..Default::default()
    };
    for r in &raw.checkpoint {
        out.records
            .push(decode_record(r).map_err(|e| Error::corrupt(&cp_path, e.to_string()))?);
    }
    for (_, r) in &raw.payloads {
        match decode_record(r) {
            Ok(rec) => out.records.push(rec),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "undecodable WAL record skipped");
                out.damaged_segments += 1;
            }
        }
    }
    Ok(out)
}

/// [`replay`] without decoding: `max_t_of` gives the newest time a payload holds (for truncation).
pub fn replay_raw(dir: &Path, max_t_of: impl Fn(&[u8]) -> i64) -> Result<RawReplay> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let (segments, checkpoints) = list_dir(dir)?;
    let mut out = RawReplay::default();
    let first = checkpoints.last().copied();
    if let Some(cp) = first {
        let path = checkpoint_path(dir, cp);
        let (records, _, damaged) = read_records(&path, CHECKPOINT_MAGIC)?;
        if damaged {
            // Checkpoints are written to a temp file and renamed after fsync, so damage is real corruption.
            return Err(Error::corrupt(path, "checkpoint is damaged"));
        }
        out.checkpoint = records;
    }
    let start = first.unwrap_or(0);
    for &seg in segments.iter().filter(|&&s| s >= start) {
        let path = segment_path(dir, seg);
        let (records, valid_len, damaged) = read_records(&path, SEGMENT_MAGIC)?;
        let max_t = records.iter().fold(i64::MIN, |m, r| m.max(max_t_of(r)));
        out.payloads.extend(records.into_iter().map(|r| (seg, r)));
        if damaged {
            out.damaged_segments += 1;
            tracing::warn!(path = %path.display(), valid_len, "torn WAL tail cut off");
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            if valid_len < HEADER_LEN {
                drop(f);
                fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            } else {
                f.set_len(valid_len).map_err(|e| Error::io(&path, e))?;
                f.sync_all().map_err(|e| Error::io(&path, e))?;
            }
        }
        if valid_len >= HEADER_LEN {
            out.segments.push((seg, max_t));
        }
        out.next_segment = seg + 1;
    }
    out.next_segment = out.next_segment.max(start);
    Ok(out)
}

enum Command {
    Append {
        payload: Vec<u8>,
        max_t: i64,
        done: Option<SyncSender<io::Result<()>>>,
    },
    /// Close the current segment and start a new one; answers with the new segment's index.
    Rotate { done: SyncSender<io::Result<u64>> },
}

/// Waits for a logged record to become durable.
#[must_use = "a write is durable only once the ticket is waited on"]
pub struct Ticket(Receiver<io::Result<()>>);

impl Ticket {
    pub fn wait(self) -> Result<()> {
        match self.0.recv() {
            Ok(r) => r.map_err(|e| Error::io("wal", e)),
            Err(_) => Err(Error::ShuttingDown),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct SegmentInfo {
    index: u64,
    max_t: i64,
}

/// WAL options.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// `fdatasync` before acknowledging. Off only for benchmarks that measure everything else.
    pub fsync: bool,
    /// Commands waiting for the writer thread; when full, appenders block (backpressure to senders).
    pub queue_capacity: usize,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            fsync: true,
            queue_capacity: 1024,
        }
    }
}

/// The WAL writer: one thread owns the open segment.
pub struct Wal {
    dir: PathBuf,
    tx: Mutex<Option<SyncSender<Command>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    segments: Arc<Mutex<Vec<SegmentInfo>>>,
    fsyncs: Arc<AtomicU64>,
    bytes_written: Arc<AtomicU64>,
}

impl Wal {
    /// Opens the WAL for writing at `next_segment` (from [`replay`]); `segment_max_t` gives the newest
    /// sample time of each existing segment so truncation knows which ones may go.
    pub fn open(
        dir: &Path,
        next_segment: u64,
        existing: Vec<(u64, i64)>,
        opts: WalOptions,
    ) -> Result<Wal> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let segments = Arc::new(Mutex::new(
            existing
                .into_iter()
                .map(|(index, max_t)| SegmentInfo { index, max_t })
                .collect::<Vec<_>>(),
        ));
        let file = create_segment(dir, next_segment)?;
        segments.lock().push(SegmentInfo {
            index: next_segment,
            max_t: i64::MIN,
        });
        let (tx, rx) = mpsc::sync_channel(opts.queue_capacity);
        let fsyncs = Arc::new(AtomicU64::new(0));
        let bytes_written = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            dir: dir.to_owned(),
            file,
            index: next_segment,
            size: HEADER_LEN,
            fsync: opts.fsync,
            segments: segments.clone(),
            fsyncs: fsyncs.clone(),
            bytes_written: bytes_written.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::io(dir, e))?;
        Ok(Wal {
            dir: dir.to_owned(),
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            segments,
            fsyncs,
            bytes_written,
        })
    }

    fn send(&self, cmd: Command) -> Result<()> {
        let tx = self.tx.lock().clone().ok_or(Error::ShuttingDown)?;
        tx.send(cmd).map_err(|_| Error::ShuttingDown)
    }

    /// Queues a record; the ticket resolves once it is on disk. Records are written in call order.
    pub fn log(&self, payload: Vec<u8>, max_t: i64) -> Result<Ticket> {
        let (done, rx) = mpsc::sync_channel(1);
        self.send(Command::Append {
            payload,
            max_t,
            done: Some(done),
        })?;
        Ok(Ticket(rx))
    }

    /// Queues a record without waiting for it (it is made durable with the next synced record).
    pub fn log_nowait(&self, payload: Vec<u8>) -> Result<()> {
        self.send(Command::Append {
            payload,
            max_t: i64::MIN,
            done: None,
        })
    }

    pub fn rotate(&self) -> Result<u64> {
        let (done, rx) = mpsc::sync_channel(1);
        self.send(Command::Rotate { done })?;
        rx.recv()
            .map_err(|_| Error::ShuttingDown)?
            .map_err(|e| Error::io(&self.dir, e))
    }

    /// Writes a checkpoint holding `records` (the live state) that replaces every segment before the
    /// first one that still holds a sample at or after `keep_from_t`, then deletes what it replaces.
    /// The caller must stop appends while calling this, so the checkpoint and the segments agree.
    pub fn checkpoint(&self, records: &[Vec<u8>], keep_from_t: i64) -> Result<()> {
        let current = self.rotate()?;
        let first_kept = {
            let segs = self.segments.lock();
            segs.iter()
                .find(|s| s.index >= current || s.max_t >= keep_from_t)
                .map_or(current, |s| s.index)
        };
        let tmp = self.dir.join("checkpoint.tmp");
        {
            // Written record by record: a checkpoint of a large head is not copied again whole.
            let f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, f);
            let mut write = |bytes: &[u8]| out.write_all(bytes).map_err(|e| Error::io(&tmp, e));
            write(CHECKPOINT_MAGIC)?;
            write(&FORMAT_VERSION.to_le_bytes())?;
            for r in records {
                write(&frame_header(r))?;
                write(r)?;
            }
            let f = out
                .into_inner()
                .map_err(|e| Error::io(&tmp, e.into_error()))?;
            f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        }
        let path = checkpoint_path(&self.dir, first_kept);
        fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        sync_dir(&self.dir)?;
        let (segments, checkpoints) = list_dir(&self.dir)?;
        for s in segments.into_iter().filter(|&s| s < first_kept) {
            let p = segment_path(&self.dir, s);
            fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
        for c in checkpoints.into_iter().filter(|&c| c < first_kept) {
            let p = checkpoint_path(&self.dir, c);
            fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
        self.segments.lock().retain(|s| s.index >= first_kept);
        Ok(())
    }

    /// Deletes every segment and checkpoint before `index` (their records are durable elsewhere).
    pub fn remove_before(&self, index: u64) -> Result<()> {
        let (segments, checkpoints) = list_dir(&self.dir)?;
        for c in checkpoints.into_iter().filter(|&c| c < index) {
            let p = checkpoint_path(&self.dir, c);
            fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
        for s in segments.into_iter().filter(|&s| s < index) {
            let p = segment_path(&self.dir, s);
            fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
        self.segments.lock().retain(|s| s.index >= index);
        Ok(())
    }

    pub fn fsyncs(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    pub fn bytes_written(&self) -> u64 {
        self.bytes_written.load(Ordering::Relaxed)
    }

    /// Stops the writer after it has written and synced everything queued.
    pub fn close(&self) {
        self.tx.lock().take();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

/// Makes a directory's entries (files created, renamed or removed in it) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

fn create_segment(dir: &Path, index: u64) -> Result<File> {
    let path = segment_path(dir, index);
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    let len = f.metadata().map_err(|e| Error::io(&path, e))?.len();
    if len == 0 {
        let mut header = Vec::with_capacity(8);
        header.extend_from_slice(SEGMENT_MAGIC);
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        f.write_all(&header).map_err(|e| Error::io(&path, e))?;
        f.sync_all().map_err(|e| Error::io(&path, e))?;
        sync_dir(dir)?;
    }
    Ok(f)
}

struct Writer {
    dir: PathBuf,
    file: File,
    index: u64,
    size: u64,
    fsync: bool,
    segments: Arc<Mutex<Vec<SegmentInfo>>>,
    fsyncs: Arc<AtomicU64>,
    bytes_written: Arc<AtomicU64>,
}

/// Most commands gathered into one write + one fsync.
const GROUP_MAX_COMMANDS: usize = 4096;
const GROUP_MAX_BYTES: usize = 16 << 20;

impl Writer {
    fn run(mut self, rx: Receiver<Command>) {
        let mut buf = Vec::with_capacity(1 << 20);
        let mut waiting: Vec<SyncSender<io::Result<()>>> = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            let mut n = 0;
            // Gather what is already queued: everyone in this group shares one write and one fsync.
            while let Some(cmd) = next.take() {
                n += 1;
                match cmd {
                    Command::Append {
                        payload,
                        max_t,
                        done,
                    } => {
                        frame(&payload, &mut buf);
                        if max_t != i64::MIN {
                            if let Some(s) = self.segments.lock().last_mut() {
                                s.max_t = s.max_t.max(max_t);
                            }
                        }
                        waiting.extend(done);
                    }
                    Command::Rotate { done } => {
                        let r = self
                            .commit(&mut buf, &mut waiting)
                            .and_then(|()| self.rotate());
                        let _ = done.send(r);
                    }
                }
                if n < GROUP_MAX_COMMANDS && buf.len() < GROUP_MAX_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            let _ = self.commit(&mut buf, &mut waiting);
            if self.size >= SEGMENT_MAX_BYTES {
                if let Err(e) = self.rotate() {
                    tracing::error!(error = %e, "WAL segment rotation failed");
                }
            }
        }
        let _ = self.commit(&mut buf, &mut waiting);
    }

    fn commit(
        &mut self,
        buf: &mut Vec<u8>,
        waiting: &mut Vec<SyncSender<io::Result<()>>>,
    ) -> io::Result<()> {
        if buf.is_empty() && waiting.is_empty() {
            return Ok(());
        }
        let mut result = self.file.write_all(buf);
        if result.is_ok() {
            self.size += buf.len() as u64;
            self.bytes_written
                .fetch_add(buf.len() as u64, Ordering::Relaxed);
            if self.fsync && !waiting.is_empty() {
                result = self.file.sync_data();
                self.fsyncs.fetch_add(1, Ordering::Relaxed);
            }
        }
        buf.clear();
        for w in waiting.drain(..) {
            let _ = w.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            });
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, segment = self.index, "WAL write failed");
        }
        result
    }

    fn rotate(&mut self) -> io::Result<u64> {
        self.file.sync_data()?;
        let next = self.index + 1;
        self.file = create_segment(&self.dir, next).map_err(|e| io::Error::other(e.to_string()))?;
        self.index = next;
        self.size = HEADER_LEN;
        self.segments.lock().push(SegmentInfo {
            index: next,
            max_t: i64::MIN,
        });
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Labels, MetricType};

    fn sample_records() -> Vec<WalRecord> {
        vec![
            WalRecord::Series(vec![(
                1,
                Labels::from_pairs([("__name__", "up"), ("job", "a")]),
            )]),
            WalRecord::Samples(vec![
                (1, 1000, 1.0),
                (1, 2000, f64::NAN),
                (2, -5, f64::INFINITY),
            ]),
            WalRecord::Exemplars(vec![(
                1,
                Exemplar {
                    labels: Labels::from_pairs([("trace_id", "abc")]),
                    value: 2.5,
                    t: 1500,
                },
            )]),
            WalRecord::Metadata(vec![(
                "up".into(),
                Metadata {
                    metric_type: MetricType::Gauge,
                    help: "h".into(),
                    unit: "".into(),
                },
            )]),
        ]
    }

    fn same(a: &[WalRecord], b: &[WalRecord]) -> bool {
        // NaN != NaN, so compare through the debug rendering of bits-exact encodings.
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| encode_record(x) == encode_record(y))
    }

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let recs = sample_records();
        {
            let r = replay(dir.path()).unwrap();
            let wal = Wal::open(dir.path(), r.next_segment, vec![], WalOptions::default()).unwrap();
            let tickets: Vec<_> = recs
                .iter()
                .map(|r| wal.log(encode_record(r), 0).unwrap())
                .collect();
            for t in tickets {
                t.wait().unwrap();
            }
            assert!(wal.fsyncs() >= 1);
        }
        let r = replay(dir.path()).unwrap();
        assert!(same(&r.records, &recs), "{:?}", r.records);
        assert_eq!(r.damaged_segments, 0);
    }

    #[test]
    fn torn_tail_is_cut_and_earlier_records_kept() {
        let dir = tempfile::tempdir().unwrap();
        let recs = sample_records();
        {
            let wal = Wal::open(dir.path(), 0, vec![], WalOptions::default()).unwrap();
            for r in &recs {
                wal.log(encode_record(r), 0).unwrap().wait().unwrap();
            }
        }
        let seg = segment_path(dir.path(), 0);
        let len = fs::metadata(&seg).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let r = replay(dir.path()).unwrap();
        assert!(same(&r.records, &recs[..3]));
        assert_eq!(r.damaged_segments, 1);
        // Writing continues in a fresh segment after the repaired one.
        let wal = Wal::open(dir.path(), r.next_segment, vec![], WalOptions::default()).unwrap();
        wal.log(encode_record(&recs[3]), 0).unwrap().wait().unwrap();
        drop(wal);
        let r = replay(dir.path()).unwrap();
        assert!(same(&r.records, &recs));
    }

    #[test]
    fn flipped_bit_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let recs = sample_records();
        {
            let wal = Wal::open(dir.path(), 0, vec![], WalOptions::default()).unwrap();
            for r in &recs {
                wal.log(encode_record(r), 0).unwrap().wait().unwrap();
            }
        }
        let seg = segment_path(dir.path(), 0);
        let mut data = fs::read(&seg).unwrap();
        let last = data.len() - 2;
        data[last] ^= 0x10;
        fs::write(&seg, &data).unwrap();
        let r = replay(dir.path()).unwrap();
        assert!(same(&r.records, &recs[..3]));
    }

    #[test]
    fn checkpoint_replaces_old_segments() {
        let dir = tempfile::tempdir().unwrap();
        let recs = sample_records();
        let wal = Wal::open(dir.path(), 0, vec![], WalOptions::default()).unwrap();
        wal.log(encode_record(&recs[1]), 2000)
            .unwrap()
            .wait()
            .unwrap();
        wal.checkpoint(&[encode_record(&recs[0])], 3000).unwrap();
        wal.log(encode_record(&recs[3]), 0).unwrap().wait().unwrap();
        drop(wal);
        let (segments, checkpoints) = list_dir(dir.path()).unwrap();
        assert_eq!(checkpoints, vec![1]);
        assert!(segments.iter().all(|&s| s >= 1));
        let r = replay(dir.path()).unwrap();
        assert!(same(&r.records, &[recs[0].clone(), recs[3].clone()]));
    }

    #[test]
    fn concurrent_writers_share_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::open(dir.path(), 0, vec![], WalOptions::default()).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let wal = wal.clone();
                std::thread::spawn(move || {
                    for j in 0..50 {
                        let mut b = Vec::new();
                        encode_samples(&mut b, &[(i, j, 1.0)]);
                        wal.log(b, j).unwrap().wait().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(wal.fsyncs() <= 400, "fsyncs {}", wal.fsyncs());
        wal.close();
        let r = replay(dir.path()).unwrap();
        assert_eq!(r.records.len(), 400);
    }
}
