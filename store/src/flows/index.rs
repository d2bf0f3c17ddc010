//! How a flow record maps onto a tantivy document, and back. A record's key fields (identity,
//! addresses, texts: see `keys`) are stored once per partition in its key table; the document keeps
//! the key's number, a column (`_key`). The other fields (numbers and times) are columns only: range
//! filters run on the columns. The few list-valued fields that are only shown, never filtered on, go
//! into one compact blob per record, a dictionary-encoded bytes column (most blobs repeat: per-code
//! counts of a few codes). A record is rebuilt from its key, its columns and that blob, so nothing is
//! stored twice. Numbers that are 0 are not written (absent reads back as 0).
//!
//! Partitions of format versions 1 and 2 had no key table: text fields were exact terms and columns
//! of their own, and (version 1) the blob lived in tantivy's document store. They are read only to be
//! rewritten into the current format ([`FlowSchema::legacy`]).

use std::net::{IpAddr, Ipv6Addr};

use tantivy::columnar::{BytesColumn, Column, StrColumn};
use tantivy::schema::document::{ReferenceValue, ReferenceValueLeaf};
use tantivy::schema::{
    Field, IndexRecordOption, IpAddrOptions, NumericOptions, Schema, TextFieldIndexing,
    TextOptions, Value, FAST,
};
use tantivy::store::StoreReader;
use tantivy::{DocId, SegmentReader, TantivyDocument};

use super::codec::{decode_fields, encode_fields};
use super::keys::KeyTable;
use super::record::{is_key_field, FieldKind, FieldRef, FieldValue, FlowRecord, FIELDS};
use crate::encoding::Decoder;

/// The tantivy field holding the blob of the fields that are only shown (a bytes column; the document
/// store in format version 1).
const STORED_FIELD: &str = "_stored";
/// The tantivy field holding a record's key number (format version 3).
pub const KEY_FIELD: &str = "_key";

/// The tantivy schema of a flow partition, with the tantivy field of each record field.
#[derive(Debug, Clone)]
pub struct FlowSchema {
    pub schema: Schema,
    /// Indexed by the position in [`FIELDS`]; `None` for key fields and stored-only fields.
    fields: Vec<Option<Field>>,
    stored: Field,
    /// `None` in the legacy layout.
    key: Option<Field>,
}

impl Default for FlowSchema {
    fn default() -> Self {
        Self::new()
    }
}

impl FlowSchema {
    /// The current layout (format version 3).
    pub fn new() -> FlowSchema {
        let mut b = Schema::builder();
        let number = NumericOptions::default().set_fast();
        let fields = FIELDS
            .iter()
            .enumerate()
            .map(|(i, f)| match f.kind {
                _ if is_key_field(i) => None,
                FieldKind::U64 => Some(b.add_u64_field(f.name, number.clone())),
                // The codes of a per-code count are a multi-valued column, so `http.status>=500`
                // matches a record that saw any 5xx; the counts live in the blob.
                FieldKind::Counts => Some(b.add_u64_field(f.name, number.clone())),
                FieldKind::Time => Some(b.add_i64_field(f.name, number.clone())),
                FieldKind::Str | FieldKind::StrList | FieldKind::Ip | FieldKind::StoredList => None,
            })
            .collect();
        let key = b.add_u64_field(KEY_FIELD, number);
        let stored = b.add_bytes_field(STORED_FIELD, FAST);
        FlowSchema {
            schema: b.build(),
            fields,
            stored,
            key: Some(key),
        }
    }

    /// The layout of format versions 1 and 2 (which differ only in `_stored`'s options).
    pub fn legacy() -> FlowSchema {
        let mut b = Schema::builder();
        let exact = TextOptions::default()
            .set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer("raw")
                    .set_index_option(IndexRecordOption::Basic)
                    .set_fieldnorms(false),
            )
            .set_fast(None);
        let number = NumericOptions::default().set_fast();
        let fields = FIELDS
            .iter()
            .map(|f| match f.kind {
                FieldKind::Str | FieldKind::StrList => {
                    Some(b.add_text_field(f.name, exact.clone()))
                }
                FieldKind::U64 | FieldKind::Counts => Some(b.add_u64_field(f.name, number.clone())),
                FieldKind::Time => Some(b.add_i64_field(f.name, number.clone())),
                FieldKind::Ip => {
                    Some(b.add_ip_addr_field(f.name, IpAddrOptions::default().set_fast()))
                }
                FieldKind::StoredList => None,
            })
            .collect();
        let stored = b.add_bytes_field(STORED_FIELD, FAST);
        FlowSchema {
            schema: b.build(),
            fields,
            stored,
            key: None,
        }
    }

    /// The tantivy field of record field `i`, when it is a column of the index.
    pub fn field(&self, i: usize) -> Option<Field> {
        self.fields[i]
    }

    /// Whether an index with schema `theirs` has the current layout; `Err` names what differs.
    pub fn is_current(&self, theirs: &Schema) -> std::result::Result<bool, String> {
        if theirs.get_field(KEY_FIELD).is_err() {
            return Ok(false);
        }
        for (field, entry) in self.schema.fields() {
            if theirs.get_field(entry.name()).ok() != Some(field) {
                return Err(format!("field {} missing or moved", entry.name()));
            }
        }
        Ok(true)
    }

    /// The document of a record, in one pass over it; its key's number is added once known
    /// ([`Self::set_key`]).
    pub fn to_document(&self, r: &FlowRecord) -> FlowDoc {
        let mut doc = FlowDoc {
            values: Vec::with_capacity(24),
            blob: None,
        };
        let mut has_blob = false;
        r.for_each_field(|i, v| {
            has_blob |= is_stored_only(i) && !v.is_empty();
            let Some(field) = self.fields[i] else {
                return;
            };
            match v {
                // Zero is absent: most numbers are zero on most records (HTTP, DNS, retransmits), and
                // a sparse column costs far less than a dense one. Filters treat absent as 0.
                FieldRef::U64(0) => {}
                FieldRef::U64(n) => doc.values.push((field, Leaf::U64(n))),
                FieldRef::Time(t) => doc.values.push((field, Leaf::I64(t))),
                FieldRef::Counts(c) => doc
                    .values
                    .extend(c.iter().map(|&(code, _)| (field, Leaf::U64(code)))),
                FieldRef::Str(_) | FieldRef::Ip(_) | FieldRef::List(_) => {}
            }
        });
        if has_blob {
            let mut blob = Vec::new();
            encode_fields(&mut blob, r, is_stored_only);
            doc.blob = Some((self.stored, blob));
        }
        doc
    }
}

impl FlowSchema {
    /// Gives `doc` its record's key number.
    pub fn set_key(&self, doc: &mut FlowDoc, key: u32) {
        if let Some(k) = self.key {
            doc.values.push((k, Leaf::U64(u64::from(key))));
        }
    }
}

/// Whether field `i` is kept in the blob: shown with the record, not filtered on (per-code counts are
/// both).
#[inline]
fn is_stored_only(i: usize) -> bool {
    matches!(FIELDS[i].kind, FieldKind::StoredList | FieldKind::Counts)
}

/// A flow record as tantivy indexes it: the values of its columns, and its blob. Built in one pass
/// over the record and handed to tantivy as it is (tantivy's own document would be built value by
/// value and read back the same way).
#[derive(Debug)]
pub struct FlowDoc {
    values: Vec<(Field, Leaf)>,
    blob: Option<(Field, Vec<u8>)>,
}

#[derive(Debug, Clone, Copy)]
enum Leaf {
    U64(u64),
    I64(i64),
}

/// One value of a [`FlowDoc`], as tantivy reads it.
#[derive(Debug, Clone, Copy)]
pub enum FlowDocValue<'a> {
    U64(u64),
    I64(i64),
    Bytes(&'a [u8]),
}

impl<'a> tantivy::schema::Value<'a> for FlowDocValue<'a> {
    type ArrayIter = std::iter::Empty<Self>;
    type ObjectIter = std::iter::Empty<(&'a str, Self)>;

    #[inline]
    fn as_value(&self) -> ReferenceValue<'a, Self> {
        ReferenceValue::Leaf(match *self {
            FlowDocValue::U64(v) => ReferenceValueLeaf::U64(v),
            FlowDocValue::I64(v) => ReferenceValueLeaf::I64(v),
            FlowDocValue::Bytes(b) => ReferenceValueLeaf::Bytes(b),
        })
    }
}

impl tantivy::schema::document::Document for FlowDoc {
    type Value<'a> = FlowDocValue<'a>;
    type FieldsValuesIter<'a> = FlowDocValues<'a>;

    fn iter_fields_and_values(&self) -> FlowDocValues<'_> {
        FlowDocValues {
            values: self.values.iter(),
            blob: self.blob.as_ref(),
        }
    }
}

/// The values of a [`FlowDoc`]: its columns', then its blob.
pub struct FlowDocValues<'a> {
    values: std::slice::Iter<'a, (Field, Leaf)>,
    blob: Option<&'a (Field, Vec<u8>)>,
}

impl<'a> Iterator for FlowDocValues<'a> {
    type Item = (Field, FlowDocValue<'a>);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if let Some(&(f, v)) = self.values.next() {
            let v = match v {
                Leaf::U64(v) => FlowDocValue::U64(v),
                Leaf::I64(v) => FlowDocValue::I64(v),
            };
            return Some((f, v));
        }
        let (f, b) = self.blob.take()?;
        Some((*f, FlowDocValue::Bytes(b)))
    }
}

pub fn to_ipv6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

fn from_ipv6(a: Ipv6Addr) -> IpAddr {
    match a.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(a),
    }
}

enum ColumnOf {
    Str(StrColumn),
    U64(Column<u64>),
    I64(Column<i64>),
    Ip(Column<Ipv6Addr>),
    Absent,
}

/// Where a segment keeps the blobs.
enum Blobs {
    Column(Option<BytesColumn>),
    /// Format version 1.
    DocStore(StoreReader),
}

/// Rebuilds records of one segment from its columns and blobs.
pub struct SegmentRecords {
    columns: Vec<ColumnOf>,
    /// Per column, every term of a text column in ordinal order, when [`SegmentRecords::cache_terms`]
    /// was called (reading a whole legacy segment: a dictionary lookup per value is slow).
    terms: Vec<Option<Vec<String>>>,
    key: Option<Column<u64>>,
    blobs: Blobs,
    stored: Field,
}

impl SegmentRecords {
    pub fn open(schema: &FlowSchema, segment: &SegmentReader) -> tantivy::Result<SegmentRecords> {
        let ff = segment.fast_fields();
        let mut columns = Vec::with_capacity(FIELDS.len());
        for (i, def) in FIELDS.iter().enumerate() {
            let col = match (def.kind, schema.fields[i]) {
                (_, None) | (FieldKind::Counts, _) => ColumnOf::Absent,
                (FieldKind::Str | FieldKind::StrList, _) => {
                    ff.str(def.name)?.map_or(ColumnOf::Absent, ColumnOf::Str)
                }
                (FieldKind::U64, _) => ff
                    .column_opt::<u64>(def.name)?
                    .map_or(ColumnOf::Absent, ColumnOf::U64),
                (FieldKind::Time, _) => ff
                    .column_opt::<i64>(def.name)?
                    .map_or(ColumnOf::Absent, ColumnOf::I64),
                (FieldKind::Ip, _) => ff
                    .column_opt::<Ipv6Addr>(def.name)?
                    .map_or(ColumnOf::Absent, ColumnOf::Ip),
                (FieldKind::StoredList, _) => ColumnOf::Absent,
            };
            columns.push(col);
        }
        let blobs = if segment.schema().get_field_entry(schema.stored).is_fast() {
            Blobs::Column(ff.bytes(STORED_FIELD)?)
        } else {
            Blobs::DocStore(segment.get_store_reader(8)?)
        };
        let key = match schema.key {
            Some(_) => ff.column_opt::<u64>(KEY_FIELD)?,
            None => None,
        };
        Ok(SegmentRecords {
            terms: columns.iter().map(|_| None).collect(),
            columns,
            key,
            blobs,
            stored: schema.stored,
        })
    }

    /// Reads every text column's terms once, for reading many records.
    pub fn cache_terms(&mut self) -> tantivy::Result<()> {
        for (col, terms) in self.columns.iter().zip(&mut self.terms) {
            if let ColumnOf::Str(c) = col {
                let mut all = Vec::with_capacity(c.num_terms());
                let mut stream = c.dictionary().stream()?;
                while stream.advance() {
                    all.push(String::from_utf8_lossy(stream.key()).into_owned());
                }
                *terms = Some(all);
            }
        }
        Ok(())
    }

    /// The record of `doc`; `keys` is the partition's key table (empty for the legacy layout).
    pub fn read(&self, doc: DocId, keys: &KeyTable) -> tantivy::Result<FlowRecord> {
        let mut r = FlowRecord::default();
        if let Some(k) = self.key.as_ref().and_then(|c| c.first(doc)) {
            let k = u32::try_from(k).unwrap_or(u32::MAX);
            if k >= keys.len() {
                return Err(tantivy::TantivyError::InternalError(format!(
                    "flow record refers to key {k}, the partition has {}",
                    keys.len()
                )));
            }
            keys.fill(k, &mut r);
        }
        let mut text = String::new();
        for (i, col) in self.columns.iter().enumerate() {
            let v = match col {
                ColumnOf::Absent => continue,
                ColumnOf::Str(c) => {
                    let mut values = Vec::new();
                    for ord in c.term_ords(doc) {
                        match self.terms[i].as_ref().and_then(|t| t.get(ord as usize)) {
                            Some(t) => values.push(t.clone()),
                            None => {
                                text.clear();
                                c.ord_to_str(ord, &mut text)?;
                                values.push(text.clone());
                            }
                        }
                    }
                    if FIELDS[i].kind == FieldKind::StrList {
                        FieldValue::List(values)
                    } else {
                        FieldValue::Str(values.into_iter().next().unwrap_or_default())
                    }
                }
                ColumnOf::U64(c) => FieldValue::U64(c.first(doc).unwrap_or(0)),
                ColumnOf::I64(c) => FieldValue::Time(c.first(doc).unwrap_or(0)),
                ColumnOf::Ip(c) => FieldValue::Ip(c.first(doc).map(from_ipv6)),
            };
            let _ = r.set_field(i, v);
        }
        let mut blob = Vec::new();
        match &self.blobs {
            Blobs::Column(None) => {}
            Blobs::Column(Some(c)) => {
                if let Some(ord) = c.term_ords(doc).next() {
                    c.ord_to_bytes(ord, &mut blob)?;
                }
            }
            Blobs::DocStore(store) => {
                let doc: TantivyDocument = store.get(doc)?;
                if let Some(b) = doc.get_first(self.stored).and_then(|v| v.as_bytes()) {
                    blob.extend_from_slice(b);
                }
            }
        }
        if !blob.is_empty() {
            decode_fields(&mut Decoder::new(&blob), &mut r).map_err(|e| {
                tantivy::TantivyError::InternalError(format!("flow record blob: {e}"))
            })?;
        }
        Ok(r)
    }
}
