//! Bit- and byte-level primitives shared by the chunk codecs: an MSB-first bit writer over a `Vec<u8>`
//! (the bit order of Prometheus's `bstream`, so XOR chunks are byte-compatible), two readers that never
//! read outside their slice (a 64-bit-buffered one for the dense columns, a position-only cursor for XOR
//! chunks), and Go-compatible varints.

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
/// sample costs a refill and a few shifts rather than a branch per bit. Past the end of the slice the
/// reader yields zero bits instead of failing each read; callers check [`BitReader::overrun`] once per
/// sample, which keeps the hot path free of per-field bounds branches.
///
/// Invariant: `buf` holds `avail` valid bits left-aligned; the bits below them are zero or equal to the
/// bits that follow in the stream, so refilling by OR is idempotent.
#[derive(Clone, Debug)]
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte to load; runs past `data.len()` once the reader has produced padding.
    pos: usize,
    buf: u64,
    avail: u32,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            pos: 0,
            buf: 0,
            avail: 0,
        }
    }

    /// Tops the buffer up to at least 56 bits.
    #[inline(always)]
    pub(crate) fn refill(&mut self) {
        debug_assert!(self.avail < 64);
        let word = match self.data.get(self.pos..).and_then(|s| s.first_chunk::<8>()) {
            Some(word) => u64::from_be_bytes(*word),
            None => self.tail_word(),
        };
        self.buf |= word >> self.avail;
        let loaded = (63 - self.avail) >> 3;
        self.pos += loaded as usize;
        self.avail += loaded * 8;
    }

    /// The word at `pos` when fewer than 8 bytes remain, zero-padded. Chunks are short (a 120-sample
    /// chunk can be 40 bytes), so this path is common enough to stay cheap: shift the slice's last word
    /// rather than copy bytes.
    #[inline(always)]
    fn tail_word(&self) -> u64 {
        match self.data.last_chunk::<8>() {
            Some(last) => {
                let skip = self.pos - (self.data.len() - 8);
                if skip < 8 {
                    u64::from_be_bytes(*last) << (skip * 8)
                } else {
                    0
                }
            }
            None => self.short_slice_word(),
        }
    }

    #[cold]
    fn short_slice_word(&self) -> u64 {
        let mut word = [0u8; 8];
        if let Some(rest) = self.data.get(self.pos..) {
            let len = rest.len().min(8);
            word[..len].copy_from_slice(&rest[..len]);
        }
        u64::from_be_bytes(word)
    }

    /// The buffered bits, next bit in bit 63; at least `avail` of them are valid.
    #[inline(always)]
    pub(crate) fn buffered(&self) -> u64 {
        self.buf
    }

    #[inline(always)]
    pub(crate) fn available(&self) -> u32 {
        self.avail
    }

    #[inline(always)]
    pub(crate) fn consume(&mut self, n: u32) {
        debug_assert!(n <= self.avail && n < 64);
        self.buf <<= n;
        self.avail -= n;
    }

    /// Reads `n` bits, `n` in `1..=64`; zeros past the end of the slice.
    #[inline(always)]
    pub(crate) fn read(&mut self, n: u32) -> u64 {
        debug_assert!((1..=64).contains(&n));
        if n <= 56 {
            self.read_short(n)
        } else {
            self.read_wide(n)
        }
    }

    #[inline(always)]
    fn read_short(&mut self, n: u32) -> u64 {
        if self.avail < n {
            self.refill();
        }
        let v = self.buf >> (64 - n);
        self.consume(n);
        v
    }

    /// More bits than one refill guarantees: two reads.
    #[inline(never)]
    fn read_wide(&mut self, n: u32) -> u64 {
        let hi = self.read_short(n - 32);
        let lo = self.read_short(32);
        (hi << 32) | lo
    }

    /// Whether more bits were read than the slice holds.
    #[inline(always)]
    pub(crate) fn overrun(&self) -> bool {
        self.pos * 8 - self.avail as usize > self.data.len() * 8
    }

    /// Bytes of the slice read so far, counting a partly read byte.
    pub(crate) fn consumed_bytes(&self) -> usize {
        (self.pos * 8 - self.avail as usize).div_ceil(8)
    }
}

/// MSB-first bit cursor over a byte slice that keeps only a bit position.
///
/// [`BitCursor::peek`] loads the 8 bytes holding the next bit and shifts out the bits already read,
/// giving at least 57 valid bits with no buffer state to maintain: a decoder peeks once, works out
/// how long its fields are, and advances. Past the end of the slice it sees zero bits; callers check
/// [`BitCursor::overrun`] once per record.
#[derive(Clone, Debug)]
pub(crate) struct BitCursor<'a> {
    data: &'a [u8],
    /// Bits read so far; may run past `data.len() * 8` once the cursor has produced padding.
    bit: usize,
}

/// Bits [`BitCursor::peek`] guarantees: a load of 8 bytes less up to 7 already read.
pub(crate) const PEEK_BITS: u32 = 57;

impl<'a> BitCursor<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitCursor { data, bit: 0 }
    }

    /// The next bits, next bit in bit 63; the top [`PEEK_BITS`] are valid, zeros past the end.
    #[inline(always)]
    pub(crate) fn peek(&self) -> u64 {
        peek_at(self.data, self.bit)
    }

    #[inline(always)]
    pub(crate) fn advance(&mut self, n: u32) {
        self.bit += n as usize;
    }

    /// Reads `n` bits, `n` in `1..=64`; zeros past the end of the slice.
    #[inline(always)]
    pub(crate) fn read(&mut self, n: u32) -> u64 {
        debug_assert!((1..=64).contains(&n));
        let v = if n <= PEEK_BITS {
            self.peek() >> (64 - n)
        } else {
            peek_wide(self.data, self.bit, n)
        };
        self.advance(n);
        v
    }

    /// Whether more bits were read than the slice holds.
    #[inline(always)]
    pub(crate) fn overrun(&self) -> bool {
        self.bit > self.data.len() * 8
    }
}

/// The 64 bits from `bit` on, MSB first; the top [`PEEK_BITS`] are valid, zeros past the end. A free
/// function over copies of the cursor's fields, so that slow paths calling it do not take the cursor's
/// address and force it out of registers.
#[inline(always)]
fn peek_at(data: &[u8], bit: usize) -> u64 {
    let byte = bit >> 3;
    let word = match data.get(byte..byte + 8) {
        Some(word) => u64::from_be_bytes(word.try_into().unwrap_or([0; 8])),
        None => tail_word(data, byte),
    };
    word << (bit & 7)
}

/// The word at `byte` when fewer than 8 bytes remain, zero-padded: the slice's last word shifted rather
/// than copied, because a chunk's last few samples all take this path.
#[inline(always)]
fn tail_word(data: &[u8], byte: usize) -> u64 {
    match data.last_chunk::<8>() {
        Some(last) => {
            let skip = byte - (data.len() - 8);
            u64::from_be_bytes(*last)
                .checked_shl(skip.min(8) as u32 * 8)
                .unwrap_or(0)
        }
        None => short_slice_word(data, byte),
    }
}

#[cold]
fn short_slice_word(data: &[u8], byte: usize) -> u64 {
    let mut word = [0u8; 8];
    if let Some(rest) = data.get(byte..) {
        word[..rest.len()].copy_from_slice(rest);
    }
    u64::from_be_bytes(word)
}

/// `n` bits from `bit` on, more than one peek guarantees: two peeks.
#[cold]
#[inline(never)]
fn peek_wide(data: &[u8], bit: usize, n: u32) -> u64 {
    debug_assert!(n > 32 && n <= 64);
    let hi = peek_at(data, bit) >> (96 - n);
    let lo = peek_at(data, bit + n as usize - 32) >> 32;
    (hi << 32) | lo
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
#[inline(always)]
pub(crate) fn read_uvarint(data: &[u8], pos: &mut usize) -> Result<u64, &'static str> {
    // Delta-of-deltas and small deltas are one byte; keep that case inline.
    if let Some(&byte) = data.get(*pos) {
        if byte < 0x80 {
            *pos += 1;
            return Ok(u64::from(byte));
        }
    }
    read_uvarint_long(data, pos)
}

#[inline(never)]
fn read_uvarint_long(data: &[u8], pos: &mut usize) -> Result<u64, &'static str> {
    // Millisecond timestamps are 6-byte varints and every XOR chunk opens with one: decode varints of
    // up to 8 bytes from one word rather than a byte at a time.
    if let Some(word) = data.get(*pos..).and_then(|s| s.first_chunk::<8>()) {
        if let Some((v, len)) = uvarint_in_word(u64::from_le_bytes(*word)) {
            *pos += len;
            return Ok(v);
        }
    }
    read_uvarint_bytewise(data, pos)
}

/// A varint of at most 8 bytes at the start of `word` (the bytes in little-endian order) and its
/// length, or `None` if it is longer.
#[inline(always)]
fn uvarint_in_word(word: u64) -> Option<(u64, usize)> {
    let ends = !word & 0x8080_8080_8080_8080;
    if ends == 0 {
        return None;
    }
    let len = ends.trailing_zeros() / 8 + 1;
    // Keep the varint's bytes, drop their continuation bits, then close the gaps pairwise: 7-bit
    // groups into 14-bit ones, 14 into 28, 28 into 56.
    let x = word & (u64::MAX >> (64 - 8 * len)) & 0x7f7f_7f7f_7f7f_7f7f;
    let x = ((x & 0x7f00_7f00_7f00_7f00) >> 1) | (x & 0x007f_007f_007f_007f);
    let x = ((x & 0x3fff_0000_3fff_0000) >> 2) | (x & 0x0000_3fff_0000_3fff);
    let x = ((x & 0x0fff_ffff_0000_0000) >> 4) | (x & 0x0000_0000_0fff_ffff);
    Some((x, len as usize))
}

fn read_uvarint_bytewise(data: &[u8], pos: &mut usize) -> Result<u64, &'static str> {
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

#[inline(always)]
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
    fn uvarint_word_path_takes_non_minimal_and_refuses_long() {
        // Go's ReadUvarint accepts redundant continuation groups: 0x80 0x80 0x00 is 0.
        let padded = [0x80, 0x80, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff];
        let mut pos = 0;
        assert_eq!(read_uvarint(&padded, &mut pos), Ok(0));
        assert_eq!(pos, 3);
        // Eight continuation bytes: too long for one word, left to the byte loop.
        assert_eq!(uvarint_in_word(u64::MAX), None);
        let nine = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(read_uvarint(&nine, &mut 0), Ok((1 << 57) - 1));
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
                prop_assert_eq!(r.read(n), v & mask);
            }
            prop_assert_eq!(r.consumed_bytes(), buf.len());
            prop_assert!(!r.overrun());
            // Only zero padding remains, then zeros past the end, flagged as an overrun.
            let pad = (8 - total % 8) % 8;
            if pad > 0 {
                prop_assert_eq!(r.read(pad), 0);
            }
            prop_assert!(!r.overrun());
            prop_assert_eq!(r.read(64), 0);
            prop_assert!(r.overrun());
        }

        #[test]
        fn cursor_round_trip(fields in proptest::collection::vec((any::<u64>(), 0u32..=64), 0..200)) {
            let mut buf = Vec::new();
            let mut free = 0;
            for &(v, n) in &fields {
                write_bits(&mut buf, &mut free, v, n);
            }
            let total: u32 = fields.iter().map(|f| f.1).sum();
            let mut c = BitCursor::new(&buf);
            for &(v, n) in &fields {
                if n == 0 { continue; }
                let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
                // A peek shows the field in its top bits without moving.
                let shown = n.min(PEEK_BITS);
                prop_assert_eq!(c.peek() >> (64 - shown), (v & mask) >> (n - shown));
                prop_assert_eq!(c.read(n), v & mask);
            }
            prop_assert!(!c.overrun());
            // Only zero padding remains, then zeros past the end, flagged as an overrun.
            let pad = (8 - total % 8) % 8;
            if pad > 0 {
                prop_assert_eq!(c.read(pad), 0);
            }
            prop_assert!(!c.overrun());
            prop_assert_eq!(c.peek(), 0);
            prop_assert_eq!(c.read(64), 0);
            prop_assert!(c.overrun());
            prop_assert_eq!(c.peek(), 0);
        }

        /// Every bit offset of slices of every length up to 24 bytes: the word path, the last-word
        /// path of the final 7 bytes, slices shorter than a word, and positions past the end.
        #[test]
        fn cursor_peeks_at_every_offset(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
            let bit_at = |i: usize| bytes.get(i / 8).map_or(0, |b| u64::from(b >> (7 - i % 8) & 1));
            for start in 0..=bytes.len() * 8 + 80 {
                let mut c = BitCursor::new(&bytes);
                c.advance(start as u32);
                let want = (0..64).fold(0u64, |w, i| (w << 1) | bit_at(start + i));
                let got = c.peek();
                prop_assert_eq!(got >> (64 - PEEK_BITS), want >> (64 - PEEK_BITS), "start {}", start);
                prop_assert_eq!(c.read(64), want, "start {}", start);
            }
        }

        /// Varints followed by anything: the one-word path for those of up to 8 bytes with 8 bytes
        /// readable, the byte loop otherwise, and both agree with Go's encoding.
        #[test]
        fn uvarint_with_trailing_bytes(
            u in prop_oneof![any::<u64>(), 0u64..1 << 21, 1u64 << 40..1 << 48],
            tail in proptest::collection::vec(any::<u8>(), 0..12),
        ) {
            let mut buf = Vec::new();
            write_uvarint(&mut buf, u);
            let len = buf.len();
            buf.extend_from_slice(&tail);
            let mut pos = 0;
            prop_assert_eq!(read_uvarint(&buf, &mut pos), Ok(u));
            prop_assert_eq!(pos, len);
            let mut pos = 0;
            prop_assert_eq!(read_uvarint_bytewise(&buf, &mut pos), Ok(u));
            prop_assert_eq!(pos, len);
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
