//! Prometheus's XOR chunk (`chunkenc.EncXOR`), byte-for-byte as `tsdb/chunkenc/xor.go` writes it, so head
//! chunks can be served as remote-read `STREAMED_XOR_CHUNKS` and compared with Prometheus directly.
//!
//! Layout (`tsdb/docs/format/chunks.md`): a 2-byte big-endian sample count; `t0` as a signed varint and
//! `v0` as 64 raw bits; `t1 - t0` as an unsigned varint and `v1` XOR-coded; then per sample a
//! delta-of-delta timestamp (`0` → 0, `10` + 14 bits, `110` + 17 bits, `1110` + 20 bits, `1111` + 64
//! bits, each signed range being `[-(2^(n-1) - 1), 2^(n-1)]`) followed by an XOR-coded value. The last byte
//! is zero-padded.

use super::bits::{
    read_uvarint, read_varint, write_bits, write_uvarint, write_varint, BitCursor, BitReader,
};

/// Worst case bytes one append writes: `1111` + 64-bit dod, then `11` + 5 + 6 + 64 value bits = 145
/// bits, rounded up. The first sample (10-byte varint + 8 bytes) is smaller.
const MAX_SAMPLE_BYTES: usize = 19;

/// Marks "no value window chosen yet", as Prometheus's appender does with `leading = 0xff`.
const NO_WINDOW: u8 = 0xff;

/// Streaming encoder for one XOR chunk.
///
/// Kept at 56 bytes plus the chunk buffer because the head holds one per active series; the sample count
/// and `t0` live only in the buffer.
#[derive(Clone, Debug)]
pub struct XorEncoder {
    /// The chunk as Prometheus lays it out; empty until the first append.
    buf: Vec<u8>,
    t: i64,
    v: u64,
    t_delta: u64,
    /// Unused low bits of the last byte of `buf`.
    free: u8,
    leading: u8,
    trailing: u8,
}

impl Default for XorEncoder {
    fn default() -> Self {
        Self::new()
    }
}

/// The chunk of zero samples: just the count.
const EMPTY_CHUNK: [u8; 2] = [0, 0];

impl XorEncoder {
    /// An empty chunk. Allocates nothing until the first append.
    pub fn new() -> Self {
        XorEncoder {
            buf: Vec::new(),
            t: 0,
            v: 0,
            t_delta: 0,
            free: 0,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    /// Appends one sample. The caller guarantees `t` is greater than the last timestamp and that the
    /// chunk holds fewer than 65535 samples (the count is 16 bits); the head cuts at 120.
    pub fn append(&mut self, t: i64, v: f64) {
        let n = self.num_samples();
        debug_assert!(
            n < usize::from(u16::MAX),
            "XOR chunk is full (65535 samples)"
        );
        debug_assert!(
            n == 0 || t > self.t,
            "timestamps must increase: {} after {}",
            t,
            self.t
        );
        self.reserve_for_sample();
        let v = v.to_bits();
        let mut t_delta = 0;
        match n {
            0 => {
                self.buf.extend_from_slice(&EMPTY_CHUNK);
                write_varint(&mut self.buf, t);
                self.buf.extend_from_slice(&v.to_be_bytes());
            }
            1 => {
                // Still byte-aligned here: header, varint and 64 raw bits are whole bytes.
                debug_assert_eq!(self.free, 0);
                t_delta = t.wrapping_sub(self.t) as u64;
                write_uvarint(&mut self.buf, t_delta);
                self.write_value(v);
            }
            _ => {
                t_delta = t.wrapping_sub(self.t) as u64;
                let dod = t_delta.wrapping_sub(self.t_delta) as i64;
                let (prefix, prefix_len, size) = if dod == 0 {
                    (0b0, 1, 0)
                } else if fits_signed(dod, 14) {
                    (0b10, 2, 14)
                } else if fits_signed(dod, 17) {
                    (0b110, 3, 17)
                } else if fits_signed(dod, 20) {
                    (0b1110, 4, 20)
                } else {
                    (0b1111, 4, 64)
                };
                if size == 64 {
                    write_bits(&mut self.buf, &mut self.free, prefix, prefix_len);
                    write_bits(&mut self.buf, &mut self.free, dod as u64, 64);
                } else {
                    // One write for prefix and payload: at most 4 + 20 bits.
                    let mask = (1u64 << size) - 1;
                    let field = (prefix << size) | (dod as u64 & mask);
                    write_bits(&mut self.buf, &mut self.free, field, prefix_len + size);
                }
                self.write_value(v);
            }
        }
        self.t = t;
        self.v = v;
        self.t_delta = t_delta;
        let count = (n as u16).wrapping_add(1).to_be_bytes();
        self.buf[..2].copy_from_slice(&count);
    }

    fn write_value(&mut self, v: u64) {
        write_xor_value(
            &mut self.buf,
            &mut self.free,
            self.v,
            v,
            &mut self.leading,
            &mut self.trailing,
        );
    }

    /// Grows the buffer by a quarter (at least 32 bytes) rather than doubling: head chunks of 120
    /// samples end near 150-250 bytes, and doubling would waste up to half of that per series.
    fn reserve_for_sample(&mut self) {
        if self.buf.capacity() - self.buf.len() < MAX_SAMPLE_BYTES {
            self.buf.reserve_exact((self.buf.len() / 4).max(32));
        }
    }

    pub fn num_samples(&self) -> usize {
        xor_num_samples(&self.buf)
    }

    pub fn first_t(&self) -> Option<i64> {
        if self.buf.len() < 3 {
            return None;
        }
        read_varint(&self.buf, &mut 2).ok()
    }

    pub fn last_t(&self) -> Option<i64> {
        (self.num_samples() > 0).then_some(self.t)
    }

    pub fn last_v(&self) -> Option<f64> {
        (self.num_samples() > 0).then_some(f64::from_bits(self.v))
    }

    /// The chunk so far, count included: valid to decode or ship at any moment.
    pub fn bytes(&self) -> &[u8] {
        if self.buf.is_empty() {
            &EMPTY_CHUNK
        } else {
            &self.buf
        }
    }

    /// The finished chunk, trimmed to its length: closed head chunks stay in memory a while.
    pub fn into_bytes(mut self) -> Vec<u8> {
        if self.buf.is_empty() {
            return EMPTY_CHUNK.to_vec();
        }
        self.buf.shrink_to_fit();
        self.buf
    }

    /// Heap bytes held by the encoder (its buffer's capacity), for memory accounting.
    pub fn size_bytes(&self) -> usize {
        self.buf.capacity()
    }
}

/// Prometheus's `bitRange`: `x` fits the `nbits` two's-complement field as its decoder reads it back.
#[inline]
fn fits_signed(x: i64, nbits: u32) -> bool {
    let half = 1i64 << (nbits - 1);
    -(half - 1) <= x && x <= half
}

/// Writes `cur` XOR-coded against `prev` exactly as Prometheus's `xorWrite`: `0` if equal; `10` + the
/// bits inside the previous window if the new XOR fits it; else `11`, 5 bits of leading zeros (clamped
/// to 31), 6 bits of significant-bit count (64 written as 0), then those bits.
#[inline]
pub(crate) fn write_xor_value(
    buf: &mut Vec<u8>,
    free: &mut u8,
    prev: u64,
    cur: u64,
    leading: &mut u8,
    trailing: &mut u8,
) {
    let delta = prev ^ cur;
    if delta == 0 {
        write_bits(buf, free, 0, 1);
        return;
    }
    let lz = (delta.leading_zeros() as u8).min(31);
    let tz = delta.trailing_zeros() as u8;
    if *leading != NO_WINDOW && lz >= *leading && tz >= *trailing {
        let sig = 64 - u32::from(*leading) - u32::from(*trailing);
        write_bits(buf, free, 0b10, 2);
        write_bits(buf, free, delta >> *trailing, sig);
    } else {
        *leading = lz;
        *trailing = tz;
        let sig = 64 - u32::from(lz) - u32::from(tz);
        let header = (0b11 << 11) | (u64::from(lz) << 6) | u64::from(sig & 63);
        write_bits(buf, free, header, 13);
        write_bits(buf, free, delta >> tz, sig);
    }
}

/// Reads one XOR-coded value (see [`write_xor_value`]) into `v`. `leading`/`trailing` carry the window
/// between calls and start at 0/0, as in Prometheus's iterator. Reading past the end yields zeros; the
/// caller checks [`BitReader::overrun`].
#[inline(always)]
pub(crate) fn read_xor_value(
    br: &mut BitReader<'_>,
    v: &mut u64,
    leading: &mut u8,
    trailing: &mut u8,
) -> Result<(), &'static str> {
    // Control bits and a new window's header: 13 bits at most.
    if br.available() < 13 {
        br.refill();
    }
    let b = br.buffered();
    if b >> 63 == 0 {
        br.consume(1);
        return Ok(());
    }
    if (b >> 62) & 1 == 1 {
        let lz = ((b >> 57) & 31) as u8;
        let sig = match ((b >> 51) & 63) as u8 {
            0 => 64,
            s => s,
        };
        br.consume(13);
        if lz + sig > 64 {
            return Err("corrupt XOR value window");
        }
        *leading = lz;
        *trailing = 64 - lz - sig;
    } else {
        br.consume(2);
    }
    let sig = 64 - u32::from(*leading) - u32::from(*trailing);
    let bits = br.read(sig);
    *v ^= bits << *trailing;
    Ok(())
}

const TRUNCATED: &str = "chunk ends before its last sample";

/// A delta-of-delta field of `size` bits (`size` in `1..=63`) as two's complement the way Prometheus
/// reads it back: fields above half the range are negative (see `fits_signed`).
#[inline(always)]
fn dod_from_field(bits: u64, size: u32) -> i64 {
    let half = 1u64 << (size - 1);
    if bits > half {
        bits.wrapping_sub(1 << size) as i64
    } else {
        bits as i64
    }
}

/// The sample count from a chunk's header (0 if the header is missing).
pub fn xor_num_samples(chunk: &[u8]) -> usize {
    match chunk {
        [hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
        _ => 0,
    }
}

/// Iterates over an XOR chunk's samples. On truncated or corrupt input iteration stops early and
/// [`XorIter::error`] says why; it never panics.
///
/// Each sample after the first two is decoded from one [`BitCursor::peek`]: a timestamp field takes at
/// most 24 bits unless it is a 64-bit one, and a value's control bits and window header at most 13, so
/// both fit the 57 bits a peek guarantees; only the value's significant bits need a second load.
#[derive(Clone, Debug)]
pub struct XorIter<'a> {
    bits: BitCursor<'a>,
    /// The bytes after the header, for the byte-aligned first two samples.
    body: &'a [u8],
    total: u16,
    read: u16,
    t: i64,
    v: u64,
    t_delta: u64,
    /// The value window as `trailing` zero bits under `sig` significant ones (`sig` in `1..=64`);
    /// Prometheus's iterator starts from leading = trailing = 0, the whole word.
    trailing: u32,
    sig: u32,
    error: Option<&'static str>,
}

impl<'a> XorIter<'a> {
    pub fn new(chunk: &'a [u8]) -> Self {
        let (total, body, error) = match chunk {
            [hi, lo, body @ ..] => (u16::from_be_bytes([*hi, *lo]), body, None),
            _ => (0, &[][..], Some("chunk shorter than its 2-byte header")),
        };
        XorIter {
            bits: BitCursor::new(&[]),
            body,
            total,
            read: 0,
            t: 0,
            v: 0,
            t_delta: 0,
            trailing: 0,
            sig: 64,
            error,
        }
    }

    /// Why iteration stopped before the count in the header, if it did.
    pub fn error(&self) -> Option<&str> {
        self.error
    }

    #[inline(always)]
    fn fail(&mut self, why: &'static str) -> Option<(i64, f64)> {
        self.error = Some(why);
        self.total = self.read;
        None
    }

    /// Advances past `skip` bits already decoded and one XOR-coded value (see [`write_xor_value`]) whose
    /// first bits are the top bits of `peeked`. At least 13 of them must be valid.
    #[inline(always)]
    fn read_value(&mut self, peeked: u64, skip: u32) -> Result<(), &'static str> {
        if peeked >> 63 == 0 {
            self.bits.advance(skip + 1);
            return Ok(());
        }
        let control = if (peeked >> 62) & 1 == 1 {
            let leading = ((peeked >> 57) & 31) as u32;
            let sig = match ((peeked >> 51) & 63) as u32 {
                0 => 64,
                s => s,
            };
            if leading + sig > 64 {
                return Err("corrupt XOR value window");
            }
            self.trailing = 64 - leading - sig;
            self.sig = sig;
            13
        } else {
            2
        };
        self.bits.advance(skip + control);
        let xor = self.bits.read(self.sig);
        self.v ^= xor << self.trailing;
        Ok(())
    }

    /// Samples 0 and 1, whose timestamps are byte-aligned varints. Inlined like the rest of `next` so
    /// the iterator's state can live in registers in the caller's loop.
    #[inline(always)]
    fn next_head(&mut self) -> Option<(i64, f64)> {
        if self.read == 0 {
            let mut pos = 0;
            let t0 = match read_varint(self.body, &mut pos) {
                Ok(t) => t,
                Err(e) => return self.fail(e),
            };
            let Some(v0) = self.body.get(pos..).and_then(|s| s.first_chunk::<8>()) else {
                return self.fail(TRUNCATED);
            };
            self.t = t0;
            self.v = u64::from_be_bytes(*v0);
            self.body = &self.body[pos + 8..];
        } else {
            let mut pos = 0;
            self.t_delta = match read_uvarint(self.body, &mut pos) {
                Ok(d) => d,
                Err(e) => return self.fail(e),
            };
            self.t = self.t.wrapping_add(self.t_delta as i64);
            self.bits = BitCursor::new(&self.body[pos..]);
            if let Err(e) = self.read_value(self.bits.peek(), 0) {
                return self.fail(e);
            }
            if self.bits.overrun() {
                return self.fail(TRUNCATED);
            }
        }
        self.read += 1;
        Some((self.t, f64::from_bits(self.v)))
    }
}

impl Iterator for XorIter<'_> {
    type Item = (i64, f64);

    #[inline(always)]
    fn next(&mut self) -> Option<(i64, f64)> {
        // Samples 2 and later in one comparison: samples 0 and 1 wrap to above every count.
        if self.read.wrapping_sub(2) >= self.total.saturating_sub(2) {
            if self.read >= self.total {
                return None;
            }
            return self.next_head();
        }
        let w = self.bits.peek();
        if w >> 62 == 0 {
            // Regular scrape, unchanged value: `0` `0`.
            self.bits.advance(2);
        } else {
            // The value's first bits, and how many timestamp bits precede them.
            let (value, skip) = if w >> 63 == 0 {
                (w << 1, 1)
            } else {
                // `10` + 14 bits, `110` + 17, `1110` + 20, `1111` + 64.
                let (size, field) = match (!w).leading_zeros() {
                    1 => (14, 16),
                    2 => (17, 20),
                    3 => (20, 24),
                    _ => (64, 68),
                };
                if size < 64 {
                    let dod = dod_from_field((w << (field - size)) >> (64 - size), size);
                    self.t_delta = self.t_delta.wrapping_add(dod as u64);
                    (w << field, field)
                } else {
                    self.bits.advance(4);
                    let dod = self.bits.read(64);
                    self.t_delta = self.t_delta.wrapping_add(dod);
                    (self.bits.peek(), 0)
                }
            };
            if let Err(e) = self.read_value(value, skip) {
                return self.fail(e);
            }
        }
        if self.bits.overrun() {
            return self.fail(TRUNCATED);
        }
        self.t = self.t.wrapping_add(self.t_delta as i64);
        self.read += 1;
        Some((self.t, f64::from_bits(self.v)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::from(self.total - self.read);
        (0, Some(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::strategies::series;
    use crate::model::STALE_NAN_BITS;
    use proptest::prelude::*;

    fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
        let mut enc = XorEncoder::new();
        for &(t, v) in samples {
            enc.append(t, v);
        }
        enc.into_bytes()
    }

    fn decode(chunk: &[u8]) -> (Vec<(i64, u64)>, Option<String>) {
        let mut it = XorIter::new(chunk);
        let samples = it.by_ref().map(|(t, v)| (t, v.to_bits())).collect();
        (samples, it.error().map(str::to_owned))
    }

    fn bits_of(samples: &[(i64, f64)]) -> Vec<(i64, u64)> {
        samples.iter().map(|&(t, v)| (t, v.to_bits())).collect()
    }

    // Expected bytes below were worked out from the layout in chunks.md / xor.go, independently of this
    // encoder. Sample 3's value opens a window: `11`, leading zeros 1 (`00001`), 11 significant bits
    // (`001011`), then 0x7ff; sample 4 reuses it (`10` + 11 bits) after a dod of +1 (`10` + 14 bits).
    #[test]
    fn known_bytes_small_chunk() {
        let three = [(1000, 1.0), (2000, 1.0), (3000, 2.0)];
        let expected = [
            0x00, 0x03, // count
            0xd0, 0x0f, // t0 = 1000, zigzag varint
            0x3f, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // v0 = 1.0
            0xe8, 0x07, // t1 - t0 = 1000, uvarint
            0x30, 0x97, 0xff,
            0xc0, // `0` (v1 same), `0` (dod 0), `11 00001 001011 11111111111`, padding
        ];
        assert_eq!(encode(&three), expected);
        let four = [(1000, 1.0), (2000, 1.0), (3000, 2.0), (4001, 4.0)];
        let expected = [
            0x00, 0x04, 0xd0, 0x0f, 0x3f, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe8, 0x07,
            0x30, 0x97, 0xff, 0xe0, 0x00, 0x60, 0x02,
        ];
        assert_eq!(encode(&four), expected);
        assert_eq!(decode(&expected), (bits_of(&four), None));
    }

    /// Negative t0, the leading-zero clamp (XORs of 1.0000000001 and 1.0000000002 have ≥ 32 leading
    /// zeros), a 20-bit, a negative 17-bit and a 64-bit delta-of-delta, and the staleness marker.
    #[test]
    fn known_bytes_wide_fields() {
        let samples = [
            (-5, 0.5),
            (10, 1.0000000001),
            (25, 1.0000000002),
            (70040, 1.0000000002),
            (120055, f64::from_bits(STALE_NAN_BITS)),
            (1_000_000_120_055, -2.5),
        ];
        let expected = [
            0x00, 0x06, 0x09, 0x3f, 0xe0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0f, 0xd7, 0x94,
            0x00, 0x00, 0x00, 0x01, 0xb7, 0xce, 0x80, 0x00, 0x00, 0x00, 0x16, 0xc2, 0x9e, 0x11,
            0x17, 0x06, 0xd8, 0xf0, 0x61, 0xfa, 0x00, 0x00, 0x00, 0x00, 0x00, 0x6d, 0xf3, 0x9f,
            0x00, 0x00, 0x00, 0xe8, 0xd4, 0xa4, 0x4c, 0xa1, 0xc1, 0xfd, 0xff, 0xa0, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x10,
        ];
        assert_eq!(encode(&samples), expected);
        assert_eq!(decode(&expected), (bits_of(&samples), None));
    }

    /// Windows wider than one peek: XORs with 58 to 64 significant bits, a `10` reusing such a window,
    /// and a `10` before any `11`, which Prometheus reads as a whole 64-bit word.
    #[test]
    fn wide_value_windows() {
        for sig in 58..=64u32 {
            let delta = (1u64 << (sig - 1)) | 1;
            let v0 = 0x0123_4567_89ab_cdefu64;
            let samples = [
                (0, f64::from_bits(v0)),
                (15, f64::from_bits(v0 ^ delta)),
                (30, f64::from_bits(v0 ^ delta ^ (delta | 0b10))),
                (46, f64::from_bits(v0)),
            ];
            assert_eq!(
                decode(&encode(&samples)),
                (bits_of(&samples), None),
                "sig {sig}"
            );
        }
        let mut chunk = vec![0x00, 0x02, 0x00];
        chunk.extend_from_slice(&1.5f64.to_bits().to_be_bytes());
        chunk.push(15);
        let mut free = 0;
        let x = 0x8000_0000_0000_0001u64;
        write_bits(&mut chunk, &mut free, 0b10, 2);
        write_bits(&mut chunk, &mut free, x, 64);
        assert_eq!(
            decode(&chunk),
            (
                vec![(0, 1.5f64.to_bits()), (15, 1.5f64.to_bits() ^ x)],
                None
            )
        );
    }

    #[test]
    fn dod_field_boundaries_round_trip() {
        // Each bucket's edges: 14 bits hold [-8191, 8192], 17 bits [-65535, 65536], 20 bits
        // [-524287, 524288]; one past either edge moves to the next bucket.
        for dod in [
            8192, -8191, 8193, -8192, 65536, -65535, 65537, -65536, 524288, -524287, 524289,
            -524288,
        ] {
            let base = 1_000_000i64;
            let samples = [
                (0, 1.0),
                (base, 1.0),
                (2 * base + dod, 1.0),
                (3 * base + 2 * dod, 1.0),
            ];
            assert_eq!(
                decode(&encode(&samples)),
                (bits_of(&samples), None),
                "dod {dod}"
            );
        }
    }

    #[test]
    fn empty_and_single_sample() {
        let enc = XorEncoder::default();
        assert_eq!(enc.bytes(), [0, 0]);
        assert_eq!(
            (enc.num_samples(), enc.first_t(), enc.last_t(), enc.last_v()),
            (0, None, None, None)
        );
        assert_eq!(enc.size_bytes(), 0);
        assert_eq!(decode(enc.bytes()), (vec![], None));

        let mut enc = XorEncoder::new();
        enc.append(i64::MIN, f64::NEG_INFINITY);
        assert_eq!(enc.num_samples(), 1);
        assert_eq!(enc.first_t(), Some(i64::MIN));
        assert_eq!(enc.last_t(), Some(i64::MIN));
        assert_eq!(enc.last_v(), Some(f64::NEG_INFINITY));
        assert_eq!(
            decode(enc.bytes()),
            (vec![(i64::MIN, f64::NEG_INFINITY.to_bits())], None)
        );
    }

    #[test]
    fn full_chunk_of_65535_samples() {
        let samples: Vec<(i64, f64)> = (0..65535i64)
            .map(|i| {
                (
                    i * 15_000 + (i * 7919) % 13,
                    ((i * 31) % 1000) as f64 / 100.0,
                )
            })
            .collect();
        let bytes = encode(&samples);
        assert_eq!(xor_num_samples(&bytes), 65535);
        assert_eq!(decode(&bytes), (bits_of(&samples), None));
    }

    #[test]
    fn encoder_stays_small() {
        assert!(
            std::mem::size_of::<XorEncoder>() <= 56,
            "{}",
            std::mem::size_of::<XorEncoder>()
        );
        let mut enc = XorEncoder::new();
        for i in 0..120 {
            enc.append(i * 15_000, 100.0);
        }
        // Growth adds a quarter or 32 bytes, never doubles.
        assert!(
            enc.size_bytes() <= enc.bytes().len() + 32 + MAX_SAMPLE_BYTES,
            "{}",
            enc.size_bytes()
        );
        assert_eq!(enc.into_bytes().capacity(), 43);
    }

    #[test]
    fn short_or_corrupt_headers() {
        for chunk in [&[][..], &[0x00][..]] {
            let mut it = XorIter::new(chunk);
            assert_eq!(it.next(), None);
            assert!(it.error().is_some());
        }
        // A count larger than the data holds.
        let mut it = XorIter::new(&[0x00, 0x05, 0x02]);
        assert_eq!(it.by_ref().count(), 0);
        assert!(it.error().is_some());
        assert_eq!(xor_num_samples(&[0x01]), 0);
        assert_eq!(xor_num_samples(&[0x01, 0x02, 0x03]), 0x0102);
    }

    /// The layout read field by field, one `BitReader::read` per field, as a yardstick for the
    /// iterator's single-peek decoding: the samples before the first error, and whether there was one.
    fn decode_field_by_field(chunk: &[u8]) -> (Vec<(i64, u64)>, bool) {
        let mut out = Vec::new();
        let [hi, lo, body @ ..] = chunk else {
            return (out, true);
        };
        let total = usize::from(u16::from_be_bytes([*hi, *lo]));
        if total == 0 {
            return (out, false);
        }
        let mut pos = 0;
        let Ok(mut t) = read_varint(body, &mut pos) else {
            return (out, true);
        };
        let Some(v0) = body.get(pos..pos + 8) else {
            return (out, true);
        };
        let mut v = u64::from_be_bytes(v0.try_into().unwrap_or_default());
        out.push((t, v));
        pos += 8;
        if total == 1 {
            return (out, false);
        }
        let Ok(mut delta) = read_uvarint(body, &mut pos) else {
            return (out, true);
        };
        let mut br = BitReader::new(&body[pos..]);
        let (mut leading, mut trailing) = (0u64, 0u64);
        for i in 1..total {
            if i > 1 {
                let mut ones = 0;
                while ones < 4 && br.read(1) == 1 {
                    ones += 1;
                }
                let dod = match ones {
                    0 => 0,
                    4 => br.read(64) as i64,
                    _ => {
                        let size = [14, 17, 20][ones - 1];
                        let bits = br.read(size);
                        if bits > 1 << (size - 1) {
                            bits as i64 - (1 << size)
                        } else {
                            bits as i64
                        }
                    }
                };
                delta = delta.wrapping_add(dod as u64);
            }
            if br.read(1) == 1 {
                if br.read(1) == 1 {
                    leading = br.read(5);
                    let sig = match br.read(6) {
                        0 => 64,
                        s => s,
                    };
                    if leading + sig > 64 {
                        return (out, true);
                    }
                    trailing = 64 - leading - sig;
                }
                let sig = 64 - leading - trailing;
                v ^= br.read(sig as u32) << trailing;
            }
            if br.overrun() {
                return (out, true);
            }
            t = t.wrapping_add(delta as i64);
            out.push((t, v));
        }
        (out, false)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Valid chunks, cut anywhere and with bytes flipped: the iterator yields what the field by
        /// field reader does and fails where it does.
        #[test]
        fn agrees_with_field_by_field_reading(
            samples in series(130),
            cut in any::<prop::sample::Index>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        ) {
            let mut bytes = encode(&samples);
            for (at, x) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= x;
            }
            bytes.truncate(bytes.len() - cut.index(bytes.len().min(24)));
            let (got, err) = decode(&bytes);
            prop_assert_eq!((got, err.is_some()), decode_field_by_field(&bytes));
        }

        #[test]
        fn round_trip(samples in series(300)) {
            let mut enc = XorEncoder::new();
            for (i, &(t, v)) in samples.iter().enumerate() {
                enc.append(t, v);
                // The chunk is complete after every append.
                if i % 17 == 0 {
                    prop_assert_eq!(decode(enc.bytes()), (bits_of(&samples[..=i]), None));
                }
            }
            prop_assert_eq!(enc.num_samples(), samples.len());
            prop_assert_eq!(enc.first_t(), samples.first().map(|s| s.0));
            prop_assert_eq!(enc.last_t(), samples.last().map(|s| s.0));
            prop_assert_eq!(enc.last_v().map(f64::to_bits), samples.last().map(|s| s.1.to_bits()));
            prop_assert!(enc.size_bytes() >= enc.bytes().len());
            prop_assert_eq!(decode(&enc.clone().into_bytes()), (bits_of(&samples), None));
        }

        #[test]
        fn truncated_input_reports_error(samples in series(60), cut in any::<prop::sample::Index>()) {
            let bytes = encode(&samples);
            let len = cut.index(bytes.len());
            let (got, err) = decode(&bytes[..len]);
            prop_assert!(err.is_some(), "cut at {} of {}", len, bytes.len());
            prop_assert!(got.len() < samples.len());
            prop_assert_eq!(&got[..], &bits_of(&samples)[..got.len()]);
        }

        #[test]
        fn corrupt_input_never_panics(
            samples in series(60),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = encode(&samples);
            for (at, x) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= x;
            }
            let mut it = XorIter::new(&bytes);
            let n = it.by_ref().count();
            prop_assert!(n <= xor_num_samples(&bytes));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let n = XorIter::new(&bytes).count();
            prop_assert!(n <= xor_num_samples(&bytes));
            let (got, err) = decode(&bytes);
            prop_assert_eq!((got, err.is_some()), decode_field_by_field(&bytes));
        }
    }
}
