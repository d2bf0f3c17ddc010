//! Bit- and byte-level primitives shared by the chunk codecs: an MSB-first bit writer over a `Vec<u8>`
//! (the bit order of Prometheus's `bstream`, so XOR chunks are byte-compatible), a 64-bit-buffered
//! bit reader that never reads outside its slice, and Go-compatible varints.

/// Appends the low `n` bits of `value` (`n` in `0..=64`), most significant first.
///
/// `free` is the number of unused low bits in the last byte of `buf` (0 when byte-aligned); unused bits
/// are kept zero so that the buffer is a valid, zero-padded stream after every call.
#[inline]
pub(crate) fn write_bits(buf: &mut Vec<u8>, free: &mut u8, value: u64, n: u32) {
    debug_assert!(n <= 64);
    debug_assert!(*free < 8);
    if n == 0 {
        return;
    }
    // Left-align so that bits above `n` fall off and the next bit to write is bit 63.
    let mut v = value << (64 - n);
    let mut n = n;
    if *free > 0 {
        let f = u32::from(*free);
        if let Some(last) = buf.last_mut() {
            *last |= (v >> (64 - f)) as u8;
        }
        if n <= f {
            *free = (f - n) as u8;
            return;
        }
        n -= f;
        v <<= f;
    }
    let whole = (n / 8) as usize;
    let rest = n % 8;
    let bytes = v.to_be_bytes();
    buf.extend_from_slice(&bytes[..whole + usize::from(rest > 0)]);
    *free = if rest > 0 { (8 - rest) as u8 } else { 0 };
}

/// MSB-first bit reader over a byte slice.
///
/// Bits are served from a 64-bit buffer refilled with one unaligned big-endian load, so a typical
/// sample costs one refill and a few shifts rather than a branch per bit. Invariant: `buf` holds
/// `avail` valid bits left-aligned; bits below them are zero or equal to the following stream bits,
/// which makes refilling by OR idempotent.
#[derive(Clone, Debug)]
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte of `data` not yet loaded into `buf`.
    pos: usize,
    buf: u64,
    avail: u32,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0, buf: 0, avail: 0 }
    }

    /// Loads as many whole bytes as fit; afterwards `avail >= 56` unless the data is exhausted.
    #[inline(always)]
    fn refill(&mut self) {
        debug_assert!(self.avail < 64);
        if let Some(word) = self.data.get(self.pos..).and_then(|s| s.first_chunk::<8>()) {
            self.buf |= u64::from_be_bytes(*word) >> self.avail;
            let loaded = (63 - self.avail) >> 3;
            self.pos += loaded as usize;
            self.avail += loaded * 8;
        } else {
            self.refill_tail();
        }
    }

    #[cold]
    fn refill_tail(&mut self) {
        while self.avail <= 56 {
            let Some(&byte) = self.data.get(self.pos) else { break };
            self.buf |= u64::from(byte) << (56 - self.avail);
            self.pos += 1;
            self.avail += 8;
        }
    }

    /// Makes at least `n` (≤ 56) bits available; false if the stream ends first.
    #[inline(always)]
    pub(crate) fn ensure(&mut self, n: u32) -> bool {
        debug_assert!(n <= 56);
        if self.avail < n {
            self.refill();
            return self.avail >= n;
        }
        true
    }

    /// The next `n` bits (1..=56) without consuming them; requires a successful `ensure(n)`.
    #[inline(always)]
    pub(crate) fn peek(&self, n: u32) -> u64 {
        debug_assert!((1..=56).contains(&n) && n <= self.avail);
        self.buf >> (64 - n)
    }

    #[inline(always)]
    pub(crate) fn consume(&mut self, n: u32) {
        debug_assert!(n <= self.avail && n < 64);
        self.buf <<= n;
        self.avail -= n;
    }

    /// Reads `n` bits, `n` in `1..=64`.
    #[inline(always)]
    pub(crate) fn read(&mut self, n: u32) -> Option<u64> {
        debug_assert!((1..=64).contains(&n));
        if n <= 56 {
            if !self.ensure(n) {
                return None;
            }
            let v = self.peek(n);
            self.consume(n);
            Some(v)
        } else {
            let hi = self.read(n - 32)?;
            let lo = self.read(32)?;
            Some((hi << 32) | lo)
        }
    }

    /// Bytes of the slice touched so far, counting a partly read byte as read.
    pub(crate) fn consumed_bytes(&self) -> usize {
        let bits = self.pos * 8 - self.avail as usize;
        bits.div_ceil(8)
    }
}

/// Appends `v` as an unsigned LEB128 varint (Go's `binary.PutUvarint`).
#[inline]
pub(crate) fn write_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends `v` zigzag-encoded (Go's `binary.PutVarint`).
#[inline]
pub(crate) fn write_varint(buf: &mut Vec<u8>, v: i64) {
    write_uvarint(buf, zigzag(v));
}

#[inline(always)]
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline(always)]
pub(crate) fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Reads an unsigned varint at `*pos`, advancing it. Rejects truncation and values that overflow 64
/// bits, as Go's `binary.ReadUvarint` does.
#[inline]
pub(crate) fn read_uvarint(data: &[u8], pos: &mut usize) -> Result<u64, &'static str> {
    let mut v: u64 = 0;
    let mut shift = 0u32;
    loop {
        let Some(&byte) = data.get(*pos) else {
            return Err("truncated varint");
        };
        *pos += 1;
        if shift == 63 && byte > 1 {
            return Err("varint overflows 64 bits");
        }
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(v);
        }
        shift += 7;
        if shift > 63 {
            return Err("varint overflows 64 bits");
        }
    }
}

#[inline]
pub(crate) fn read_varint(data: &[u8], pos: &mut usize) -> Result<i64, &'static str> {
    read_uvarint(data, pos).map(unzigzag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn writer_packs_msb_first_and_zero_pads() {
        let mut buf = Vec::new();
        let mut free = 0;
        write_bits(&mut buf, &mut free, 0b1, 1);
        write_bits(&mut buf, &mut free, 0b01, 2);
        assert_eq!(buf, [0b1010_0000]);
        assert_eq!(free, 5);
        write_bits(&mut buf, &mut free, 0x1ff, 9);
        assert_eq!(buf, [0b1011_1111, 0b1111_0000]);
        assert_eq!(free, 4);
        write_bits(&mut buf, &mut free, u64::MAX, 64);
        assert_eq!(buf.len(), 10);
        assert_eq!(free, 4);
    }

    #[test]
    fn varints_match_go() {
        // Go: PutUvarint(300) = [0xac 0x02]; PutVarint(-1) = [0x01]; PutVarint(1) = [0x02].
        let mut buf = Vec::new();
        write_uvarint(&mut buf, 300);
        write_varint(&mut buf, -1);
        write_varint(&mut buf, 1);
        assert_eq!(buf, [0xac, 0x02, 0x01, 0x02]);
        let mut pos = 0;
        assert_eq!(read_uvarint(&buf, &mut pos), Ok(300));
        assert_eq!(read_varint(&buf, &mut pos), Ok(-1));
        assert_eq!(read_varint(&buf, &mut pos), Ok(1));
        assert_eq!(read_uvarint(&buf, &mut pos), Err("truncated varint"));
        let overflow = [0xff; 10];
        assert!(read_uvarint(&overflow, &mut 0).is_err());
        let mut max = Vec::new();
        write_uvarint(&mut max, u64::MAX);
        assert_eq!(read_uvarint(&max, &mut 0), Ok(u64::MAX));
    }

    proptest! {
        #[test]
        fn bits_round_trip(fields in proptest::collection::vec((any::<u64>(), 0u32..=64), 0..200)) {
            let mut buf = Vec::new();
            let mut free = 0;
            for &(v, n) in &fields {
                write_bits(&mut buf, &mut free, v, n);
            }
            let total: u32 = fields.iter().map(|f| f.1).sum();
            prop_assert_eq!(buf.len(), total.div_ceil(8) as usize);
            let mut r = BitReader::new(&buf);
            for &(v, n) in &fields {
                if n == 0 { continue; }
                let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
                prop_assert_eq!(r.read(n), Some(v & mask));
            }
            prop_assert_eq!(r.consumed_bytes(), buf.len());
            // Only zero padding remains.
            let pad = (8 - total % 8) % 8;
            if pad > 0 {
                prop_assert_eq!(r.read(pad), Some(0));
            }
            prop_assert_eq!(r.read(1), None);
        }

        #[test]
        fn varint_round_trip(v in any::<i64>(), u in any::<u64>()) {
            let mut buf = Vec::new();
            write_varint(&mut buf, v);
            write_uvarint(&mut buf, u);
            let mut pos = 0;
            prop_assert_eq!(read_varint(&buf, &mut pos), Ok(v));
            prop_assert_eq!(read_uvarint(&buf, &mut pos), Ok(u));
            prop_assert_eq!(pos, buf.len());
        }
    }
}
