//! The flow WAL payload: a batch of records, each a list of its present fields by id (the position in
//! [`FIELDS`], which only ever grows at the end). Layout in `docs/formats.md`.

use std::net::IpAddr;
use std::ops::Range;

use super::record::{
    check_field, is_key_field, FieldKind, FieldRef, FieldValue, FlowRecord, FIELDS,
};
use crate::encoding::{put_str, put_uvarint, put_varint, DecodeError, DecodeResult, Decoder};

/// Payload type byte of a batch of flow records, each one list of its fields (written until the key
/// table's layout; still read).
const REC_FLOWS: u8 = 0x20;
/// Payload type byte of a batch of flow records, each written as two lists: its key fields (exactly
/// the key table's encoding of its key, so the key is looked up in the WAL's own bytes), then the other
/// fields. The count of records is a u32 (little-endian), written once the batch is complete.
const REC_FLOWS_KEYED: u8 = 0x21;

/// A WAL payload being written: records are checked and encoded in one pass each, and the ones
/// that fail their checks leave nothing behind.
pub struct BatchWriter {
    buf: Vec<u8>,
    rest: Vec<u8>,
    records: u32,
}

impl BatchWriter {
    pub fn with_capacity(records: usize) -> BatchWriter {
        let mut buf = Vec::with_capacity(5 + records * 384);
        buf.push(REC_FLOWS_KEYED);
        buf.extend_from_slice(&0u32.to_le_bytes());
        BatchWriter {
            buf,
            rest: Vec::with_capacity(256),
            records: 0,
        }
    }

    /// Appends `r` when it passes [`FlowRecord::validate`]'s checks; returns where its key's encoding
    /// lies in the payload, else why it was refused (and the payload is as it was).
    pub fn push(&mut self, r: &FlowRecord) -> Result<Range<usize>, String> {
        r.check_times()?;
        self.push_fields::<true>(r)
    }

    /// Appends a record the store already holds (replayed, or read back to be rewritten), unchecked.
    pub fn push_stored(&mut self, r: &FlowRecord) -> Range<usize> {
        match self.push_fields::<false>(r) {
            Ok(key) => key,
            Err(_) => unreachable!("nothing is checked"),
        }
    }

    #[inline]
    fn push_fields<const CHECK: bool>(&mut self, r: &FlowRecord) -> Result<Range<usize>, String> {
        let start = self.buf.len();
        let (buf, rest) = (&mut self.buf, &mut self.rest);
        rest.clear();
        buf.push(0);
        rest.push(0);
        let (mut keys, mut others) = (0u8, 0u8);
        let mut verdict = Ok(());
        r.for_each_field(|i, v| {
            if v.is_empty() || verdict.is_err() {
                return;
            }
            if CHECK {
                verdict = check_field(i, v);
            }
            let (out, n) = if is_key_field(i) {
                (&mut *buf, &mut keys)
            } else {
                (&mut *rest, &mut others)
            };
            out.push(i as u8);
            encode_value(out, v);
            *n += 1;
        });
        if let Err(e) = verdict {
            buf.truncate(start);
            return Err(e);
        }
        buf[start] = keys;
        rest[0] = others;
        let key = start..buf.len();
        buf.extend_from_slice(rest);
        self.records += 1;
        Ok(key)
    }

    pub fn len(&self) -> usize {
        self.records as usize
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The payload so far: what [`Self::finish`] will return, less the count of records.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf[1..5].copy_from_slice(&self.records.to_le_bytes());
        self.buf
    }
}

/// The payload of a batch of records the store already holds; returns, per record, where its key's
/// encoding lies in it.
pub fn encode_batch<'a>(
    records: impl ExactSizeIterator<Item = &'a FlowRecord>,
) -> (Vec<u8>, Vec<Range<usize>>) {
    let mut w = BatchWriter::with_capacity(records.len());
    let keys = records.map(|r| w.push_stored(r)).collect();
    (w.finish(), keys)
}

/// Appends the present fields of `r` that `pick` picks: a count, then (u8 id, value) pairs in id order.
#[inline]
pub fn encode_fields(buf: &mut Vec<u8>, r: &FlowRecord, pick: impl Fn(usize) -> bool) {
    const {
        assert!(
            FIELDS.len() < 128,
            "field ids are one byte, and the count one varint byte"
        )
    };
    let count_at = buf.len();
    buf.push(0);
    let mut present = 0u8;
    r.for_each_field(|i, v| {
        if pick(i) && !v.is_empty() {
            buf.push(i as u8);
            encode_value(buf, v);
            present += 1;
        }
    });
    buf[count_at] = present;
}

/// Appends one value in the layout of its kind.
pub fn encode_value(buf: &mut Vec<u8>, v: FieldRef<'_>) {
    match v {
        FieldRef::Str(s) => put_str(buf, s),
        FieldRef::U64(v) => put_uvarint(buf, v),
        FieldRef::Time(v) => put_varint(buf, v),
        FieldRef::Ip(ip) => match ip {
            Some(IpAddr::V4(a)) => {
                buf.push(4);
                buf.extend_from_slice(&a.octets());
            }
            Some(IpAddr::V6(a)) => {
                buf.push(16);
                buf.extend_from_slice(&a.octets());
            }
            None => buf.push(0),
        },
        FieldRef::List(l) => {
            put_uvarint(buf, l.len() as u64);
            for s in l {
                put_str(buf, s);
            }
        }
        FieldRef::Counts(c) => {
            put_uvarint(buf, c.len() as u64);
            for &(code, n) in c {
                put_uvarint(buf, code);
                put_uvarint(buf, n);
            }
        }
    }
}

/// Reads what [`encode_fields`] wrote into `r`.
pub fn decode_fields(d: &mut Decoder<'_>, r: &mut FlowRecord) -> DecodeResult<()> {
    let fields = d.uvarint()?;
    for _ in 0..fields {
        let id = usize::from(d.u8()?);
        let def = FIELDS.get(id).ok_or(DecodeError("unknown flow field"))?;
        let v = decode_value(d, def.kind)?;
        r.set_field(id, v)
            .map_err(|_| DecodeError("flow field of the wrong kind"))?;
    }
    Ok(())
}

/// Moves past one value of `kind`, as [`decode_value`] would read it, without building it.
pub fn skip_value(d: &mut Decoder<'_>, kind: FieldKind) -> DecodeResult<()> {
    match kind {
        FieldKind::Str => d.len_bytes().map(drop),
        FieldKind::U64 => d.uvarint().map(drop),
        FieldKind::Time => d.varint().map(drop),
        FieldKind::Ip => match d.u8()? {
            0 => Ok(()),
            n @ (4 | 16) => d.bytes(usize::from(n)).map(drop),
            _ => Err(DecodeError("bad address length")),
        },
        FieldKind::StrList | FieldKind::StoredList => {
            for _ in 0..d.uvarint()? {
                d.len_bytes()?;
            }
            Ok(())
        }
        FieldKind::Counts => {
            for _ in 0..d.uvarint()? {
                d.uvarint()?;
                d.uvarint()?;
            }
            Ok(())
        }
    }
}

pub fn decode_value(d: &mut Decoder<'_>, kind: FieldKind) -> DecodeResult<FieldValue> {
    Ok(match kind {
        FieldKind::Str => FieldValue::Str(d.str()?.to_owned()),
        FieldKind::U64 => FieldValue::U64(d.uvarint()?),
        FieldKind::Time => FieldValue::Time(d.varint()?),
        FieldKind::Ip => FieldValue::Ip(match d.u8()? {
            0 => None,
            4 => {
                let b: [u8; 4] = d.bytes(4)?.try_into().expect("4 bytes");
                Some(IpAddr::from(b))
            }
            16 => {
                let b: [u8; 16] = d.bytes(16)?.try_into().expect("16 bytes");
                Some(IpAddr::from(b))
            }
            _ => return Err(DecodeError("bad address length")),
        }),
        FieldKind::StrList | FieldKind::StoredList => {
            let n = d.uvarint()? as usize;
            let mut l = Vec::with_capacity(n.min(d.remaining()));
            for _ in 0..n {
                l.push(d.str()?.to_owned());
            }
            FieldValue::List(l)
        }
        FieldKind::Counts => {
            let n = d.uvarint()? as usize;
            let mut c = Vec::with_capacity(n.min(d.remaining()));
            for _ in 0..n {
                c.push((d.uvarint()?, d.uvarint()?));
            }
            FieldValue::Counts(c)
        }
    })
}

pub fn decode_batch(payload: &[u8]) -> DecodeResult<Vec<FlowRecord>> {
    let mut d = Decoder::new(payload);
    let (lists, n) = match d.u8()? {
        REC_FLOWS => (1, d.uvarint()? as usize),
        REC_FLOWS_KEYED => (2, d.u32_le()? as usize),
        _ => return Err(DecodeError("not a flow batch")),
    };
    let mut out = Vec::with_capacity(n.min(payload.len()));
    for _ in 0..n {
        let mut r = FlowRecord::default();
        for _ in 0..lists {
            decode_fields(&mut d, &mut r)?;
        }
        out.push(r);
    }
    if !d.is_empty() {
        return Err(DecodeError("trailing bytes in flow batch"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::testdata::sample_records;

    #[test]
    fn batches_round_trip() {
        let records = sample_records(50, 1_700_000_000_000_000_000);
        let (buf, _) = encode_batch(records.iter());
        assert_eq!(decode_batch(&buf).unwrap(), records);
    }

    /// WAL segments written before keyed batches replay as they did.
    #[test]
    fn batches_of_one_list_per_record_still_decode() {
        let records = sample_records(20, 1_700_000_000_000_000_000);
        let mut buf = vec![REC_FLOWS];
        put_uvarint(&mut buf, records.len() as u64);
        for r in &records {
            encode_fields(&mut buf, r, |_| true);
        }
        assert_eq!(decode_batch(&buf).unwrap(), records);
    }

    /// Each record's key range holds its key fields alone, as the key table encodes them.
    #[test]
    fn key_ranges_hold_the_key_fields() {
        let records = sample_records(20, 1_700_000_000_000_000_000);
        let (buf, keys) = encode_batch(records.iter());
        for (r, range) in records.iter().zip(keys) {
            let mut table_encoding = Vec::new();
            encode_fields(&mut table_encoding, r, is_key_field);
            assert_eq!(&buf[range], table_encoding.as_slice());
        }
    }

    /// A record that fails a check leaves the payload as it was; the others are written whole.
    #[test]
    fn refused_records_leave_nothing_behind() {
        let records = sample_records(6, 1_700_000_000_000_000_000);
        let mut w = BatchWriter::with_capacity(8);
        let mut kept = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let mut r = r.clone();
            match i {
                1 => r.src.workload = "w".repeat(2000),
                3 => r.dst.port = 70_000,
                4 => r.interval_start = r.interval_end + 1,
                _ => {}
            }
            let before = w.bytes().len();
            match w.push(&r) {
                Ok(_) => kept.push(r),
                Err(e) => {
                    assert_eq!(w.bytes().len(), before, "{e}");
                    assert_eq!(Err(e), r.validate());
                }
            }
        }
        assert_eq!(kept.len(), 3);
        assert_eq!(w.len(), 3);
        assert_eq!(decode_batch(&w.finish()).unwrap(), kept);
    }

    #[test]
    fn truncated_batches_are_errors_not_panics() {
        let records = sample_records(5, 1_700_000_000_000_000_000);
        let (buf, _) = encode_batch(records.iter());
        for cut in 0..buf.len() {
            assert!(decode_batch(&buf[..cut]).is_err(), "cut at {cut}");
        }
    }
}
