//! The flow WAL payload: a batch of records, each a list of its present fields by id (the position in
//! [`FIELDS`], which only ever grows at the end). Layout in `docs/formats.md`.

use std::net::IpAddr;

use super::record::{FieldKind, FieldRef, FieldValue, FlowRecord, FIELDS};
use crate::encoding::{put_str, put_uvarint, put_varint, DecodeError, DecodeResult, Decoder};

/// Payload type byte of a batch of flow records.
const REC_FLOWS: u8 = 0x20;

pub fn encode_batch<'a>(buf: &mut Vec<u8>, records: impl ExactSizeIterator<Item = &'a FlowRecord>) {
    buf.push(REC_FLOWS);
    put_uvarint(buf, records.len() as u64);
    for r in records {
        encode_fields(buf, r, 0..FIELDS.len());
    }
}

/// Appends the present fields of `r` among `ids` (ascending): a count, then (u8 id, value) pairs.
pub fn encode_fields(buf: &mut Vec<u8>, r: &FlowRecord, ids: impl IntoIterator<Item = usize>) {
    let count_at = buf.len();
    buf.push(0);
    let mut present = 0u8;
    for i in ids {
        let v = r.field(i);
        if v.is_empty() {
            continue;
        }
        debug_assert!(
            i < 128,
            "field ids are one byte, and the count one varint byte"
        );
        buf.push(i as u8);
        encode_value(buf, v);
        present += 1;
    }
    // Fewer than 128 fields: the count is a one-byte uvarint.
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
    if d.u8()? != REC_FLOWS {
        return Err(DecodeError("not a flow batch"));
    }
    let n = d.uvarint()? as usize;
    let mut out = Vec::with_capacity(n.min(payload.len()));
    for _ in 0..n {
        let mut r = FlowRecord::default();
        decode_fields(&mut d, &mut r)?;
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
        let mut buf = Vec::new();
        encode_batch(&mut buf, records.iter());
        assert_eq!(decode_batch(&buf).unwrap(), records);
    }

    #[test]
    fn truncated_batches_are_errors_not_panics() {
        let records = sample_records(5, 1_700_000_000_000_000_000);
        let mut buf = Vec::new();
        encode_batch(&mut buf, records.iter());
        for cut in 0..buf.len() {
            assert!(decode_batch(&buf[..cut]).is_err(), "cut at {cut}");
        }
    }
}
