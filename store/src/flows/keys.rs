//! The keys of a partition. A record's key is the value of its key fields ([`is_key_field`]: both
//! ends' identity and addresses, the service port, protocol, DNS and HTTP method texts). A partition
//! holds far fewer distinct keys than records (a pod pair talks many times an hour), so each key is
//! stored once, in the partition's key table, and a record keeps only its key's number, in one
//! column of the index. Filters on key fields are evaluated on the table (a set of key numbers, see
//! [`KeySet`]), groupings by key fields group key numbers first.
//!
//! On disk (`docs/formats.md`, "Flow partition keys"): `keys`, appended to as new keys arrive and
//! synced before each index commit, so every key a committed record refers to is durable; and, once
//! the partition is closed, `keys.zst`, the whole table column by column (each column's distinct
//! values, then every key's ordinal), compressed, which replaces `keys`. `keys` is a sequence of
//! frames of `u32 length · u32 crc32c · payload`, a payload being `uvarint first id · uvarint count ·
//! count × key` with a key in the WAL's record encoding restricted to key fields. A torn last frame of
//! `keys` is cut off at open: its keys were never synced, so no committed record refers to them, and
//! the WAL replay brings them back.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::LazyLock;

use parking_lot::{RwLock, RwLockReadGuard};

use super::codec::{decode_value, encode_fields, encode_value, skip_value};
use super::record::{is_key_field, FieldValue, FlowRecord, FIELDS};
use crate::encoding::{put_uvarint, DecodeError, DecodeResult, Decoder};
use crate::error::{Error, Result};
use crate::hash::FastMap;
use crate::wal::sync_dir;

/// Record fields that make up the key, in field order.
pub static KEY_FIELDS: LazyLock<Vec<usize>> =
    LazyLock::new(|| (0..FIELDS.len()).filter(|&i| is_key_field(i)).collect());

/// Position of each record field among [`KEY_FIELDS`].
static KEY_SLOT: LazyLock<Vec<Option<usize>>> = LazyLock::new(|| {
    let mut slots = vec![None; FIELDS.len()];
    for (slot, &i) in KEY_FIELDS.iter().enumerate() {
        slots[i] = Some(slot);
    }
    slots
});

const PLAIN_FILE: &str = "keys";
const PACKED_FILE: &str = "keys.zst";
/// zstd level of `keys.zst`: written once per partition, read at each open.
const PACKED_LEVEL: i32 = 9;
/// Layout version of the table in `keys.zst`.
const PACKED_VERSION: u8 = 1;
/// Largest frame accepted when reading (a batch of new keys, or the whole packed table).
const MAX_FRAME: usize = 1 << 30;

/// A set of key numbers of one partition's table (a bit per key).
#[derive(Debug, Clone, PartialEq)]
pub struct KeySet {
    words: Vec<u64>,
    len: u32,
}

impl KeySet {
    pub fn empty(len: u32) -> KeySet {
        KeySet {
            words: vec![0; (len as usize).div_ceil(64)],
            len,
        }
    }

    pub fn full(len: u32) -> KeySet {
        let mut s = KeySet::empty(len);
        s.not();
        s
    }

    /// Whether key `k` is in the set; numbers past the table's end are not.
    #[inline]
    pub fn contains(&self, k: u64) -> bool {
        k < u64::from(self.len) && self.words[(k / 64) as usize] & (1 << (k % 64)) != 0
    }

    pub fn insert(&mut self, k: u32) {
        debug_assert!(k < self.len);
        self.words[(k / 64) as usize] |= 1 << (k % 64);
    }

    pub fn and(&mut self, other: &KeySet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= b;
        }
    }

    pub fn or(&mut self, other: &KeySet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    pub fn not(&mut self) {
        for w in &mut self.words {
            *w = !*w;
        }
        let tail = self.len % 64;
        if tail != 0 {
            if let Some(last) = self.words.last_mut() {
                *last &= (1u64 << tail) - 1;
            }
        }
    }

    pub fn count(&self) -> u32 {
        self.words.iter().map(|w| w.count_ones()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    pub fn is_full(&self) -> bool {
        self.count() == self.len
    }
}

/// Per key, the ordinal of its value, in the narrowest width that holds every ordinal so far (most
/// key fields have a few dozen distinct values, pods and addresses a few thousand).
#[derive(Debug, Clone, PartialEq)]
enum Ordinals {
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
}

impl Default for Ordinals {
    fn default() -> Self {
        Ordinals::U8(Vec::new())
    }
}

impl Ordinals {
    fn len(&self) -> usize {
        match self {
            Ordinals::U8(v) => v.len(),
            Ordinals::U16(v) => v.len(),
            Ordinals::U32(v) => v.len(),
        }
    }

    #[inline]
    fn get(&self, key: usize) -> Option<u32> {
        match self {
            Ordinals::U8(v) => v.get(key).map(|&o| u32::from(o)),
            Ordinals::U16(v) => v.get(key).map(|&o| u32::from(o)),
            Ordinals::U32(v) => v.get(key).copied(),
        }
    }

    fn push(&mut self, o: u32) {
        match self {
            Ordinals::U8(v) if o <= u32::from(u8::MAX) => v.push(o as u8),
            Ordinals::U16(v) if o <= u32::from(u16::MAX) => v.push(o as u16),
            Ordinals::U32(v) => v.push(o),
            Ordinals::U8(v) if o <= u32::from(u16::MAX) => {
                let mut wide: Vec<u16> = v.iter().map(|&x| u16::from(x)).collect();
                wide.push(o as u16);
                *self = Ordinals::U16(wide);
            }
            _ => {
                let mut wide: Vec<u32> = (0..self.len()).filter_map(|k| self.get(k)).collect();
                wide.push(o);
                *self = Ordinals::U32(wide);
            }
        }
    }

    fn reserve(&mut self, n: usize) {
        match self {
            Ordinals::U8(v) => v.reserve(n),
            Ordinals::U16(v) => v.reserve(n),
            Ordinals::U32(v) => v.reserve(n),
        }
    }

    fn memory_bytes(&self) -> usize {
        match self {
            Ordinals::U8(v) => v.capacity(),
            Ordinals::U16(v) => v.capacity() * 2,
            Ordinals::U32(v) => v.capacity() * 4,
        }
    }

    fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len()).map(|k| self.get(k).unwrap_or(0))
    }
}

/// One key field's values: the distinct ones, and per key the ordinal of its own.
#[derive(Debug, Default)]
struct KeyColumn {
    values: Vec<FieldValue>,
    by_bytes: FastMap<Vec<u8>, u32>,
    ords: Ordinals,
}

/// The distinct keys of a partition, column by column.
#[derive(Debug)]
pub struct KeyTable {
    columns: Vec<KeyColumn>,
    len: u32,
}

impl Default for KeyTable {
    fn default() -> Self {
        KeyTable {
            columns: KEY_FIELDS.iter().map(|_| KeyColumn::default()).collect(),
            len: 0,
        }
    }
}

impl KeyTable {
    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a key as the next number (the caller knows it is new), given the encoding of each key
    /// field's value ([`split_key`]).
    fn push(&mut self, values: &[&[u8]]) -> DecodeResult<u32> {
        for ((col, &i), &v) in self.columns.iter_mut().zip(KEY_FIELDS.iter()).zip(values) {
            let ord = match col.by_bytes.get(v) {
                Some(&o) => o,
                None => {
                    let o = col.values.len() as u32;
                    col.values
                        .push(decode_value(&mut Decoder::new(v), FIELDS[i].kind)?);
                    col.by_bytes.insert(v.to_vec(), o);
                    o
                }
            };
            col.ords.push(ord);
        }
        self.len += 1;
        Ok(self.len - 1)
    }

    /// The value of record field `field` in key `key`, when `field` is a key field and `key` exists.
    pub fn value(&self, key: u32, field: usize) -> Option<&FieldValue> {
        let col = &self.columns[KEY_SLOT[field]?];
        col.values.get(col.ords.get(key as usize)? as usize)
    }

    /// The ordinal of key `key`'s value among key field `field`'s distinct values ([`KeyTable::values`]).
    pub fn ordinal(&self, key: u32, field: usize) -> Option<u32> {
        self.columns[KEY_SLOT[field]?].ords.get(key as usize)
    }

    /// Sets the key fields of `r` from key `key` (nothing when there is no such key).
    pub fn fill(&self, key: u32, r: &mut FlowRecord) {
        for (col, &i) in self.columns.iter().zip(KEY_FIELDS.iter()) {
            if let Some(ord) = col.ords.get(key as usize) {
                let _ = r.set_field(i, col.values[ord as usize].clone());
            }
        }
    }

    /// The keys whose value of key field `field` satisfies `test` (tested once per distinct value).
    pub fn matching(&self, field: usize, test: impl Fn(&FieldValue) -> bool) -> KeySet {
        let mut set = KeySet::empty(self.len);
        let Some(slot) = KEY_SLOT[field] else {
            return set;
        };
        let col = &self.columns[slot];
        let hits: Vec<bool> = col.values.iter().map(test).collect();
        for (k, ord) in col.ords.iter().enumerate() {
            if hits[ord as usize] {
                set.insert(k as u32);
            }
        }
        set
    }

    /// Bytes the table takes in memory, roughly.
    pub fn memory_bytes(&self) -> usize {
        self.columns
            .iter()
            .map(|c| {
                let values: usize = c
                    .values
                    .iter()
                    .map(|v| {
                        std::mem::size_of::<FieldValue>()
                            + match v {
                                FieldValue::Str(s) => s.len(),
                                FieldValue::List(l) => l.iter().map(|s| s.len() + 24).sum(),
                                _ => 0,
                            }
                    })
                    .sum();
                let index: usize = c.by_bytes.keys().map(|k| k.len() + 48).sum();
                c.ords.memory_bytes() + values + index
            })
            .sum()
    }

    /// Distinct values of key field `field` (every value some key holds).
    pub fn values(&self, field: usize) -> &[FieldValue] {
        KEY_SLOT[field].map_or(&[], |s| &self.columns[s].values)
    }

    /// The table column by column: `u8 version · uvarint keys · uvarint columns · columns × (u8 field
    /// id · uvarint values · values × value · keys × uvarint ordinal) · u32 crc32c` of what precedes.
    fn encode_packed(&self) -> Vec<u8> {
        let mut b = vec![PACKED_VERSION];
        put_uvarint(&mut b, u64::from(self.len));
        put_uvarint(&mut b, self.columns.len() as u64);
        for (col, &i) in self.columns.iter().zip(KEY_FIELDS.iter()) {
            b.push(i as u8);
            put_uvarint(&mut b, col.values.len() as u64);
            for v in &col.values {
                encode_value(&mut b, v.as_field_ref());
            }
            for o in col.ords.iter() {
                put_uvarint(&mut b, u64::from(o));
            }
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Reads what [`KeyTable::encode_packed`] wrote. Key fields the file lacks (added to the schema
    /// since) are absent in every key.
    fn decode_packed(path: &Path, data: &[u8]) -> Result<KeyTable> {
        let bad = |what: &str| Error::corrupt(path, format!("flow keys: {what}"));
        let body = data
            .len()
            .checked_sub(4)
            .map(|n| &data[..n])
            .ok_or_else(|| bad("too short"))?;
        let crc = u32::from_le_bytes(data[body.len()..].try_into().expect("4 bytes"));
        if crc32c::crc32c(body) != crc {
            return Err(bad("checksum mismatch"));
        }
        let mut d = Decoder::new(body);
        let dec = |e: crate::encoding::DecodeError| Error::corrupt(path, format!("flow keys: {e}"));
        if d.u8().map_err(dec)? != PACKED_VERSION {
            return Err(bad("unknown layout version"));
        }
        let len = u32::try_from(d.uvarint().map_err(dec)?).map_err(|_| bad("too many keys"))?;
        let mut table = KeyTable {
            len,
            ..KeyTable::default()
        };
        let columns = d.uvarint().map_err(dec)?;
        for _ in 0..columns {
            let field = usize::from(d.u8().map_err(dec)?);
            let kind = FIELDS.get(field).ok_or_else(|| bad("unknown field"))?.kind;
            let slot = KEY_SLOT[field].ok_or_else(|| bad("not a key field"))?;
            let col = &mut table.columns[slot];
            let n = d.uvarint().map_err(dec)?;
            for o in 0..n {
                let v = decode_value(&mut d, kind).map_err(dec)?;
                let mut bytes = Vec::new();
                encode_value(&mut bytes, v.as_field_ref());
                col.by_bytes.insert(bytes, o as u32);
                col.values.push(v);
            }
            col.ords.reserve(len as usize);
            for _ in 0..len {
                let o = d.uvarint().map_err(dec)?;
                if o >= n {
                    return Err(bad("ordinal out of range"));
                }
                col.ords.push(o as u32);
            }
        }
        if !d.is_empty() {
            return Err(bad("trailing bytes"));
        }
        // Columns the file lacks: absent values.
        for (col, &i) in table.columns.iter_mut().zip(KEY_FIELDS.iter()) {
            if col.ords.len() < len as usize {
                let absent = FlowRecord::default().field(i).to_owned_value();
                let mut bytes = Vec::new();
                encode_value(&mut bytes, absent.as_field_ref());
                col.by_bytes.insert(bytes, 0);
                col.values = vec![absent];
                col.ords = Ordinals::U8(vec![0; len as usize]);
            }
        }
        Ok(table)
    }

    fn encode_key(&self, key: u32, buf: &mut Vec<u8>) {
        let mut r = FlowRecord::default();
        self.fill(key, &mut r);
        encode_fields(buf, &r, is_key_field);
    }
}

struct KeysState {
    table: KeyTable,
    /// Encoded key → number; built when the partition is first written to after opening.
    lookup: Option<FastMap<Box<[u8]>, u32>>,
    /// `keys`, open for appending while the partition is written.
    plain: Option<File>,
    unsynced: bool,
}

/// A partition's key table and its files.
pub struct PartitionKeys {
    dir: PathBuf,
    /// Loaded on first use; unloaded by [`PartitionKeys::unload`] when memory is short.
    state: RwLock<Option<KeysState>>,
    /// When the table was last used (a tick of [`PartitionKeys::touch`]'s clock), for eviction.
    last_used: AtomicU64,
    /// What the loaded table takes in memory, as of its loading or last growth.
    loaded_bytes: AtomicUsize,
}

/// A clock that orders uses of key tables (any monotonic count will do).
static USE_CLOCK: AtomicU64 = AtomicU64::new(0);

/// A read view of a partition's keys.
pub struct KeysView<'a>(RwLockReadGuard<'a, Option<KeysState>>);

impl std::ops::Deref for KeysView<'_> {
    type Target = KeyTable;
    fn deref(&self) -> &KeyTable {
        &self.0.as_ref().expect("loaded before a view is made").table
    }
}

fn frame(first: u32, count: u32, keys: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(keys.len() + 18);
    out.extend_from_slice(&[0; 8]);
    put_uvarint(&mut out, u64::from(first));
    put_uvarint(&mut out, u64::from(count));
    out.extend_from_slice(keys);
    let len = (out.len() - 8) as u32;
    let crc = crc32c::crc32c(&out[8..]);
    out[..4].copy_from_slice(&len.to_le_bytes());
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Reads one key's encoding (`fields` of key fields, as the WAL writes them) from `d`, a decoder of
/// `data`, into the encoding of each key field's value, in [`KEY_FIELDS`] order. A field the key
/// leaves out gets `[0]`, the encoding of every kind's empty value.
fn split_key<'a>(data: &'a [u8], d: &mut Decoder<'a>, out: &mut Vec<&'a [u8]>) -> DecodeResult<()> {
    out.clear();
    out.resize(KEY_FIELDS.len(), &[0]);
    for _ in 0..d.uvarint()? {
        let i = usize::from(d.u8()?);
        let slot = KEY_SLOT
            .get(i)
            .copied()
            .flatten()
            .ok_or(DecodeError("not a key field"))?;
        let from = data.len() - d.remaining();
        skip_value(d, FIELDS[i].kind)?;
        out[slot] = &data[from..data.len() - d.remaining()];
    }
    Ok(())
}

/// Reads the frames of `data` into `table`; returns the length of the intact prefix. Keys already in
/// the table (a frame of `keys` that `keys.zst` holds too) are skipped.
fn read_frames(path: &Path, data: &[u8], table: &mut KeyTable) -> Result<usize> {
    let mut pos = 0;
    while data.len() - pos >= 8 {
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().expect("4 bytes"));
        let end = pos + 8 + len;
        if len > MAX_FRAME || end > data.len() || crc32c::crc32c(&data[pos + 8..end]) != crc {
            break;
        }
        let body = &data[pos + 8..end];
        let mut d = Decoder::new(body);
        let bad = |e: crate::encoding::DecodeError| Error::corrupt(path, format!("flow keys: {e}"));
        let first = d.uvarint().map_err(bad)?;
        let count = d.uvarint().map_err(bad)?;
        if first > u64::from(table.len()) {
            return Err(Error::corrupt(
                path,
                format!(
                    "flow keys: frame starts at key {first}, {} known",
                    table.len()
                ),
            ));
        }
        let mut values = Vec::new();
        for k in first..first.saturating_add(count) {
            split_key(body, &mut d, &mut values).map_err(bad)?;
            if k == u64::from(table.len()) {
                table.push(&values).map_err(bad)?;
            }
        }
        pos = end;
    }
    Ok(pos)
}

impl PartitionKeys {
    pub fn new(dir: &Path) -> PartitionKeys {
        PartitionKeys {
            dir: dir.to_owned(),
            state: RwLock::new(None),
            last_used: AtomicU64::new(0),
            loaded_bytes: AtomicUsize::new(0),
        }
    }

    fn load(&self) -> Result<KeysState> {
        let packed = self.dir.join(PACKED_FILE);
        let mut table = match fs::read(&packed) {
            Ok(z) => {
                let data = zstd::decode_all(&z[..]).map_err(|e| Error::io(&packed, e))?;
                KeyTable::decode_packed(&packed, &data)?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => KeyTable::default(),
            Err(e) => return Err(Error::io(&packed, e)),
        };
        let plain = self.dir.join(PLAIN_FILE);
        match fs::read(&plain) {
            Ok(data) => {
                let good = read_frames(&plain, &data, &mut table)?;
                if good != data.len() {
                    tracing::warn!(path = %plain.display(), cut = data.len() - good, "torn tail of flow keys cut off");
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&plain)
                        .map_err(|e| Error::io(&plain, e))?;
                    f.set_len(good as u64).map_err(|e| Error::io(&plain, e))?;
                    f.sync_all().map_err(|e| Error::io(&plain, e))?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&plain, e)),
        }
        Ok(KeysState {
            table,
            lookup: None,
            plain: None,
            unsynced: false,
        })
    }

    /// The table, loading it first when needed.
    pub fn view(&self) -> Result<KeysView<'_>> {
        self.last_used
            .store(USE_CLOCK.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
        {
            let g = self.state.read();
            if g.is_some() {
                return Ok(KeysView(g));
            }
        }
        self.loaded(&mut self.state.write())?;
        self.view()
    }

    /// The state under `g`, loading it first when needed.
    fn loaded<'g>(&self, g: &'g mut Option<KeysState>) -> Result<&'g mut KeysState> {
        if g.is_none() {
            let st = self.load()?;
            self.loaded_bytes
                .store(st.table.memory_bytes(), Ordering::Relaxed);
            *g = Some(st);
        }
        Ok(g.as_mut().expect("loaded above"))
    }

    /// When the table was last used, on a clock shared by all partitions (larger is later).
    pub fn last_used(&self) -> u64 {
        self.last_used.load(Ordering::Relaxed)
    }

    /// Bytes of the loaded table (0 when not loaded).
    pub fn loaded_bytes(&self) -> usize {
        self.loaded_bytes.load(Ordering::Relaxed)
    }

    /// Drops the loaded table when the partition is not being written (no keys being numbered, none
    /// waiting for a sync); it is read again from its files on next use. Returns the bytes freed.
    pub fn unload(&self) -> usize {
        let mut g = self.state.write();
        let idle = g
            .as_ref()
            .is_some_and(|st| st.lookup.is_none() && st.plain.is_none() && !st.unsynced);
        if !idle {
            return 0;
        }
        *g = None;
        self.loaded_bytes.swap(0, Ordering::Relaxed)
    }

    /// The number of each key, given by its encoding (see [`super::codec::BatchWriter`]), adding new
    /// keys to the table and to `keys` (not yet synced).
    pub fn assign<'a>(
        &self,
        keys: impl Iterator<Item = &'a [u8]>,
        out: &mut Vec<u32>,
    ) -> Result<()> {
        let mut g = self.state.write();
        let st = self.loaded(&mut g)?;
        let lookup = st.lookup.get_or_insert_with(|| {
            let mut m =
                FastMap::with_capacity_and_hasher(st.table.len() as usize, Default::default());
            let mut buf = Vec::new();
            for k in 0..st.table.len() {
                buf.clear();
                st.table.encode_key(k, &mut buf);
                m.insert(buf.as_slice().into(), k);
            }
            m
        });
        let first_new = st.table.len();
        let mut new_keys = Vec::new();
        let mut values = Vec::new();
        for key in keys {
            let k = match lookup.get(key) {
                Some(&k) => k,
                None => {
                    let bad = |e| Error::corrupt(&self.dir, format!("flow key to add: {e}"));
                    split_key(key, &mut Decoder::new(key), &mut values).map_err(bad)?;
                    let k = st.table.push(&values).map_err(bad)?;
                    lookup.insert(key.into(), k);
                    new_keys.extend_from_slice(key);
                    k
                }
            };
            out.push(k);
        }
        let added = st.table.len() - first_new;
        if added > 0 {
            let path = self.dir.join(PLAIN_FILE);
            if st.plain.is_none() {
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| Error::io(&path, e))?;
                st.plain = Some(f);
            }
            let f = st.plain.as_mut().expect("opened above");
            f.write_all(&frame(first_new, added, &new_keys))
                .map_err(|e| Error::io(&path, e))?;
            st.unsynced = true;
            self.loaded_bytes
                .store(st.table.memory_bytes(), Ordering::Relaxed);
        }
        Ok(())
    }

    /// Makes every key assigned so far durable (before the index commit that refers to them). The
    /// table is not locked during the fsync, so queries go on; the caller keeps keys from being
    /// assigned meanwhile (the store's ingest lock), or they wait for the next sync.
    pub fn sync(&self) -> Result<()> {
        let path = self.dir.join(PLAIN_FILE);
        let file = {
            let mut g = self.state.write();
            match g.as_mut().filter(|st| st.unsynced) {
                Some(st) => {
                    st.unsynced = false;
                    st.plain
                        .as_ref()
                        .map(File::try_clone)
                        .transpose()
                        .map_err(|e| Error::io(&path, e))?
                }
                None => None,
            }
        };
        if let Some(f) = file {
            if let Err(e) = f.sync_data() {
                if let Some(st) = self.state.write().as_mut() {
                    st.unsynced = true;
                }
                return Err(Error::io(&path, e));
            }
        }
        Ok(())
    }

    /// Writes the whole table as `keys.zst` and removes `keys`, when `keys` exists; drops the lookup
    /// map (a closed partition is rarely written to again). Crash-safe: `keys.zst` is complete
    /// before it is renamed into place, and a `keys` left beside it repeats keys it holds.
    pub fn pack(&self) -> Result<()> {
        let plain = self.dir.join(PLAIN_FILE);
        if !plain.exists() {
            return Ok(());
        }
        let mut g = self.state.write();
        let st = self.loaded(&mut g)?;
        let data = st.table.encode_packed();
        let packed = self.dir.join(PACKED_FILE);
        let tmp = self.dir.join(format!("{PACKED_FILE}.tmp"));
        let z = zstd::encode_all(&data[..], PACKED_LEVEL).map_err(|e| Error::io(&tmp, e))?;
        {
            let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
            f.write_all(&z).map_err(|e| Error::io(&tmp, e))?;
            f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        }
        fs::rename(&tmp, &packed).map_err(|e| Error::io(&packed, e))?;
        sync_dir(&self.dir)?;
        st.plain = None;
        st.unsynced = false;
        st.lookup = None;
        fs::remove_file(&plain).map_err(|e| Error::io(&plain, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::codec::encode_batch;
    use crate::flows::testdata::sample_records;
    use crate::flows::FieldRef;

    /// Assigns keys to `records` as an append does, from their batch encoding.
    fn assign(keys: &PartitionKeys, records: &[FlowRecord], ids: &mut Vec<u32>) {
        let (buf, ranges) = encode_batch(records.iter());
        keys.assign(ranges.iter().map(|r| &buf[r.clone()]), ids)
            .unwrap();
    }

    /// Sample records whose pods (and addresses) repeat, so keys repeat.
    fn records(n: usize) -> Vec<FlowRecord> {
        let mut rs = sample_records(n, 1_700_000_000_000_000_000);
        for (i, r) in rs.iter_mut().enumerate() {
            r.src.pod = format!("{}-0", r.src.workload);
            r.src.ip = Some(std::net::IpAddr::from([10, 0, 0, (i % 5) as u8]));
        }
        rs
    }

    fn key_of(r: &FlowRecord) -> FlowRecord {
        let mut k = FlowRecord::default();
        for &i in KEY_FIELDS.iter() {
            let _ = k.set_field(i, r.field(i).to_owned_value());
        }
        k
    }

    #[test]
    fn keys_survive_reopen_pack_and_torn_tails() {
        let dir = tempfile::tempdir().unwrap();
        let records = records(300);
        let keys = PartitionKeys::new(dir.path());
        let mut ids = Vec::new();
        assign(&keys, &records, &mut ids);
        keys.sync().unwrap();
        let n = keys.view().unwrap().len();
        assert!(n > 1 && (n as usize) < records.len(), "{n} keys");
        // Same key, same number; every record's key reads back.
        for (r, &k) in records.iter().zip(&ids) {
            let mut got = FlowRecord::default();
            keys.view().unwrap().fill(k, &mut got);
            assert_eq!(got, key_of(r));
        }
        // Reopened: the same numbers.
        let again = PartitionKeys::new(dir.path());
        let mut ids2 = Vec::new();
        assign(&again, &records, &mut ids2);
        assert_eq!(ids, ids2);
        assert_eq!(again.view().unwrap().len(), n);
        // Packed, then a new key appended to a fresh `keys`, then a torn frame after it.
        again.pack().unwrap();
        assert!(!dir.path().join(PLAIN_FILE).exists());
        let mut odd = records[0].clone();
        odd.src.workload = "brand-new".into();
        let mut id = Vec::new();
        assign(&again, std::slice::from_ref(&odd), &mut id);
        again.sync().unwrap();
        assert_eq!(id, vec![n]);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(PLAIN_FILE))
            .unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let third = PartitionKeys::new(dir.path());
        let v = third.view().unwrap();
        assert_eq!(v.len(), n + 1);
        assert_eq!(
            v.value(
                n,
                crate::flows::record::field_index("src.workload").unwrap()
            ),
            Some(&FieldValue::Str("brand-new".into()))
        );
        let mut first = FlowRecord::default();
        v.fill(ids[0], &mut first);
        assert_eq!(first, key_of(&records[0]));
        drop(v);
        // The torn frame was cut off, so the next append lands after the intact ones.
        let plain_len = fs::metadata(dir.path().join(PLAIN_FILE)).unwrap().len();
        let mut later = records[1].clone();
        later.dst.workload = "another".into();
        assign(&third, std::slice::from_ref(&later), &mut Vec::new());
        third.sync().unwrap();
        assert!(fs::metadata(dir.path().join(PLAIN_FILE)).unwrap().len() > plain_len);
        assert_eq!(PartitionKeys::new(dir.path()).view().unwrap().len(), n + 2);
    }

    #[test]
    fn ordinals_widen_as_they_grow() {
        let mut o = Ordinals::default();
        let values: Vec<u32> = (0..70_000u32)
            .map(|i| if i % 2 == 0 { i } else { i % 256 })
            .collect();
        for (n, &v) in values.iter().enumerate() {
            o.push(v);
            assert_eq!(o.get(n), Some(v));
        }
        assert!(matches!(o, Ordinals::U32(_)));
        assert_eq!(o.iter().collect::<Vec<_>>(), values);
        let mut small = Ordinals::default();
        (0..300).for_each(|v| small.push(v));
        assert!(matches!(small, Ordinals::U16(_)));
        assert_eq!(
            small.iter().collect::<Vec<_>>(),
            (0..300).collect::<Vec<_>>()
        );
        assert_eq!(small.get(300), None);
    }

    #[test]
    fn key_sets_follow_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let records = records(200);
        let keys = PartitionKeys::new(dir.path());
        let mut ids = Vec::new();
        assign(&keys, &records, &mut ids);
        let v = keys.view().unwrap();
        let f = crate::flows::record::field_index("dst.workload").unwrap();
        let want = match records[0].field(f) {
            FieldRef::Str(s) => s.to_owned(),
            _ => unreachable!(),
        };
        let set = v.matching(f, |x| *x == FieldValue::Str(want.clone()));
        for (r, &k) in records.iter().zip(&ids) {
            assert_eq!(set.contains(u64::from(k)), r.dst.workload == want);
        }
        let mut not = set.clone();
        not.not();
        assert_eq!(set.count() + not.count(), v.len());
        let mut both = set.clone();
        both.and(&not);
        assert!(both.is_empty());
        let mut either = set.clone();
        either.or(&not);
        assert!(either.is_full());
        assert!(!set.contains(u64::from(v.len())));
    }
}
