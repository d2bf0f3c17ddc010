//! Dense encodings for immutable blocks, designed to be small *after* the block writer zstd-compresses
//! many series' columns together: byte-aligned varints whose common values (a zero delta-of-delta, an
//! unchanged counter slope) repeat as identical bytes that zstd folds away.
//!
//! Timestamps and values are separate self-describing columns so the block writer can store one
//! timestamp column for all series of a scrape target that share it. Every column starts with a kind
//! byte and its sample count as a uvarint:
//!
//! - timestamps, [`TS_DOD`]: `t0`, `t1 - t0`, then each delta-of-delta, all zigzag varints
//!   (wrapping arithmetic, so any `i64` sequence round-trips).
//! - values, [`VALUES_CONST`]: one raw `f64` (little-endian bits) repeated `n` times.
//! - values, [`VALUES_DECIMAL_DELTA`] / [`VALUES_DECIMAL_DOD`]: every value is `m * 10^exp` with an
//!   `i64` mantissa, checked to convert back bit-exactly (the VictoriaMetrics idea). Layout: `exp` (one
//!   zigzag byte), the GCD `g` of the differences (uvarint), `m0` (zigzag), a packing width byte `w`,
//!   then the mantissa deltas, or the first delta and the delta-of-deltas, divided by `g` and zigzagged:
//!   as uvarints if `w` is 0, else as `w`-bit fields (MSB first, zero-padded to a byte). Then the
//!   exceptions: a uvarint count and, per exception, the gap to the previous exception's index
//!   (uvarint) and the raw `f64` bits (8 bytes LE). An exception's mantissa slot repeats the previous
//!   mantissa. Exceptions
//!   carry what has no decimal form: NaN, the staleness marker, ±Inf, -0.0, extreme magnitudes.
//! - values, [`VALUES_XOR`]: `v0` as 64 raw bits then Prometheus's XOR value coding, zero-padded to a
//!   byte; the fallback for arbitrary binary fractions.
//!
//! A dense chunk ([`encode_dense`]) is [`DENSE_V1`], a timestamp column, then a value column of the same
//! length. The encoder picks the smallest value kind for each column.

use super::bits::{
    read_uvarint, read_varint, unzigzag, write_bits, write_uvarint, write_varint, zigzag, BitReader,
};
use super::xor::{read_xor_value, write_xor_value};

/// Kind byte of a dense chunk: a timestamp column followed by a value column.
pub const DENSE_V1: u8 = 0x01;
/// Kind byte of a delta-of-delta timestamp column.
pub const TS_DOD: u8 = 0x10;
pub const VALUES_CONST: u8 = 0x20;
pub const VALUES_DECIMAL_DELTA: u8 = 0x21;
pub const VALUES_DECIMAL_DOD: u8 = 0x22;
pub const VALUES_XOR: u8 = 0x23;

/// Largest count a column may declare. Bounds what a corrupt count can make the decoder allocate for a
/// constant column; a block's series segment (31 days at 1 s is 2.7M samples) stays below it.
pub const MAX_COLUMN_SAMPLES: usize = 1 << 24;

/// `10^0 ..= 10^22`: the powers of ten that are exact in an `f64`, so `m * 10^e` and `m / 10^e` are
/// single correctly rounded operations.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];
const MAX_EXP: i32 = 22;

/// Encodes samples (timestamps increasing) as one dense chunk.
pub fn encode_dense(samples: &[(i64, f64)]) -> Vec<u8> {
    let ts: Vec<i64> = samples.iter().map(|s| s.0).collect();
    let vs: Vec<f64> = samples.iter().map(|s| s.1).collect();
    let mut out = Vec::with_capacity(16 + samples.len() * 2);
    out.push(DENSE_V1);
    encode_timestamps_into(&ts, &mut out);
    encode_values_into(&vs, &mut out);
    out
}

/// Decodes a dense chunk, appending its samples to `out`.
pub fn decode_dense(bytes: &[u8], out: &mut Vec<(i64, f64)>) -> Result<(), String> {
    let Some((&kind, body)) = bytes.split_first() else {
        return Err("empty dense chunk".into());
    };
    if kind != DENSE_V1 {
        return Err(format!("unknown dense chunk kind {kind:#04x}"));
    }
    let mut ts = Vec::new();
    let used = decode_timestamps_prefix(body, &mut ts)?;
    let mut vs = Vec::with_capacity(ts.len());
    decode_values(&body[used..], &mut vs)?;
    if vs.len() != ts.len() {
        return Err(format!("{} timestamps but {} values", ts.len(), vs.len()));
    }
    out.reserve(ts.len());
    out.extend(ts.into_iter().zip(vs));
    Ok(())
}

/// Encodes a timestamp column.
pub fn encode_timestamps(ts: &[i64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + ts.len());
    encode_timestamps_into(ts, &mut out);
    out
}

fn encode_timestamps_into(ts: &[i64], out: &mut Vec<u8>) {
    out.push(TS_DOD);
    write_uvarint(out, ts.len() as u64);
    let Some((&t0, rest)) = ts.split_first() else {
        return;
    };
    write_varint(out, t0);
    let mut prev = t0;
    let mut prev_delta = 0i64;
    for (i, &t) in rest.iter().enumerate() {
        let delta = t.wrapping_sub(prev);
        write_varint(
            out,
            if i == 0 {
                delta
            } else {
                delta.wrapping_sub(prev_delta)
            },
        );
        prev = t;
        prev_delta = delta;
    }
}

/// Decodes a whole timestamp column, appending to `out`.
pub fn decode_timestamps(bytes: &[u8], out: &mut Vec<i64>) -> Result<(), String> {
    let used = decode_timestamps_prefix(bytes, out)?;
    if used != bytes.len() {
        return Err(format!(
            "{} bytes after the timestamp column",
            bytes.len() - used
        ));
    }
    Ok(())
}

/// Decodes the timestamp column at the start of `bytes`; returns the bytes it used.
fn decode_timestamps_prefix(bytes: &[u8], out: &mut Vec<i64>) -> Result<usize, String> {
    let Some((&kind, _)) = bytes.split_first() else {
        return Err("empty timestamp column".into());
    };
    if kind != TS_DOD {
        return Err(format!("unknown timestamp column kind {kind:#04x}"));
    }
    let mut pos = 1;
    // Each timestamp takes at least one byte.
    let n = read_count(bytes, &mut pos, bytes.len())?;
    out.reserve(n);
    let mut t = 0i64;
    let mut delta = 0i64;
    for i in 0..n {
        let x = read_varint(bytes, &mut pos)?;
        match i {
            0 => t = x,
            1 => {
                delta = x;
                t = t.wrapping_add(delta);
            }
            _ => {
                delta = delta.wrapping_add(x);
                t = t.wrapping_add(delta);
            }
        }
        out.push(t);
    }
    Ok(pos)
}

/// Reads a column's sample count, rejecting counts the remaining bytes cannot hold.
fn read_count(bytes: &[u8], pos: &mut usize, limit: usize) -> Result<usize, String> {
    let n = read_uvarint(bytes, pos)?;
    if n > limit.min(MAX_COLUMN_SAMPLES) as u64 {
        return Err(format!(
            "column claims {n} samples, more than its {} bytes can hold",
            bytes.len()
        ));
    }
    Ok(n as usize)
}

/// Encodes a value column, choosing the smallest kind.
pub fn encode_values(vs: &[f64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + vs.len() * 2);
    encode_values_into(vs, &mut out);
    out
}

fn encode_values_into(vs: &[f64], out: &mut Vec<u8>) {
    if let Some(first) = vs.first() {
        if vs.iter().all(|v| v.to_bits() == first.to_bits()) {
            out.push(VALUES_CONST);
            write_uvarint(out, vs.len() as u64);
            out.extend_from_slice(&first.to_bits().to_le_bytes());
            return;
        }
    } else {
        out.push(VALUES_CONST);
        write_uvarint(out, 0);
        return;
    }
    let decimal = encode_decimal(vs);
    // XOR only wins on values with long binary fractions, where decimal needs many digits or exceptions;
    // skip the extra pass when decimal is already within two bytes a sample.
    let decimal_len = decimal.as_ref().map_or(usize::MAX, Vec::len);
    if decimal_len > 2 * vs.len() + 16 {
        let xor = encode_xor_values(vs);
        if xor.len() < decimal_len {
            out.extend_from_slice(&xor);
            return;
        }
    }
    if let Some(decimal) = decimal {
        out.extend_from_slice(&decimal);
    }
}

/// Decodes a whole value column, appending to `out`.
pub fn decode_values(bytes: &[u8], out: &mut Vec<f64>) -> Result<(), String> {
    let Some((&kind, _)) = bytes.split_first() else {
        return Err("empty value column".into());
    };
    let mut pos = 1;
    match kind {
        VALUES_CONST => {
            let n = read_count(bytes, &mut pos, MAX_COLUMN_SAMPLES)?;
            if n == 0 {
                return expect_end(bytes, pos);
            }
            let Some(raw) = bytes.get(pos..).and_then(|s| s.first_chunk::<8>()) else {
                return Err("constant column lacks its value".into());
            };
            out.resize(out.len() + n, f64::from_bits(u64::from_le_bytes(*raw)));
            expect_end(bytes, pos + 8)
        }
        VALUES_DECIMAL_DELTA | VALUES_DECIMAL_DOD => decode_decimal(bytes, kind, out),
        VALUES_XOR => {
            // Each value after the first takes at least one bit.
            let n = read_count(bytes, &mut pos, bytes.len().saturating_mul(8))?;
            let start = out.len();
            out.reserve(n);
            let mut br = BitReader::new(&bytes[pos..]);
            if n > 0 {
                let mut v = br.read(64);
                out.push(f64::from_bits(v));
                let (mut leading, mut trailing) = (0, 0);
                for _ in 1..n {
                    read_xor_value(&mut br, &mut v, &mut leading, &mut trailing)?;
                    out.push(f64::from_bits(v));
                }
            }
            if br.overrun() {
                out.truncate(start);
                return Err("XOR column ends early".into());
            }
            debug_assert_eq!(out.len() - start, n);
            expect_end(bytes, pos + br.consumed_bytes())
        }
        _ => Err(format!("unknown value column kind {kind:#04x}")),
    }
}

fn expect_end(bytes: &[u8], pos: usize) -> Result<(), String> {
    if pos == bytes.len() {
        Ok(())
    } else {
        Err(format!(
            "{} unexpected bytes after the column",
            bytes.len().saturating_sub(pos)
        ))
    }
}

fn encode_xor_values(vs: &[f64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + vs.len() * 8);
    out.push(VALUES_XOR);
    write_uvarint(&mut out, vs.len() as u64);
    let Some((first, rest)) = vs.split_first() else {
        return out;
    };
    let mut prev = first.to_bits();
    out.extend_from_slice(&prev.to_be_bytes());
    let (mut free, mut leading, mut trailing) = (0u8, 0xffu8, 0u8);
    for v in rest {
        let v = v.to_bits();
        write_xor_value(&mut out, &mut free, prev, v, &mut leading, &mut trailing);
        prev = v;
    }
    out
}

/// `m * 10^exp` as an `f64`; the one conversion both encoder (to verify) and decoder use, so a value
/// the encoder accepts decodes to the same bits.
#[inline]
fn decimal_to_f64(m: i64, exp: i32) -> f64 {
    if exp >= 0 {
        m as f64 * POW10[exp.min(MAX_EXP) as usize]
    } else {
        m as f64 / POW10[(-exp).min(MAX_EXP) as usize]
    }
}

/// Beyond this magnitude `round() as i64` would saturate.
const I64_LIMIT: f64 = 9.2e18;

/// The shortest decimal form `(m, exp)` of `v` that converts back bit-exactly, if any.
fn to_decimal(v: f64) -> Option<(i64, i32)> {
    if !v.is_finite() {
        return None;
    }
    let bits = v.to_bits();
    if v.abs() < I64_LIMIT {
        for k in 0..=MAX_EXP {
            let scaled = v * POW10[k as usize];
            if scaled.abs() >= I64_LIMIT {
                break;
            }
            let m = scaled.round() as i64;
            if decimal_to_f64(m, -k).to_bits() == bits {
                return Some((m, -k));
            }
        }
        return None;
    }
    // Integral floats beyond i64: strip as many powers of ten as convert back exactly.
    for e in (1..=MAX_EXP).rev() {
        let m = (v / POW10[e as usize]).round();
        if m.abs() < I64_LIMIT && decimal_to_f64(m as i64, e).to_bits() == bits {
            return Some((m as i64, e));
        }
    }
    None
}

/// Mantissas of `vs` at a common exponent; values without a form at that exponent become exceptions.
struct Scaled {
    exp: i32,
    mantissas: Vec<i64>,
    exceptions: Vec<(usize, u64)>,
}

fn scale_to(vs: &[f64], forms: &[Option<(i64, i32)>], exp: i32) -> Scaled {
    let mut mantissas = Vec::with_capacity(vs.len());
    let mut exceptions = Vec::new();
    let mut prev = 0i64;
    for (i, (v, form)) in vs.iter().zip(forms).enumerate() {
        let m = form.and_then(|(m, e)| {
            let up = e.checked_sub(exp).filter(|d| (0..=18).contains(d))?;
            let m = m.checked_mul(10i64.pow(up as u32))?;
            (decimal_to_f64(m, exp).to_bits() == v.to_bits()).then_some(m)
        });
        match m {
            Some(m) => prev = m,
            None => exceptions.push((i, v.to_bits())),
        }
        mantissas.push(prev);
    }
    Scaled {
        exp,
        mantissas,
        exceptions,
    }
}

/// The best decimal column over candidate exponents, or `None` if no value has a decimal form.
fn encode_decimal(vs: &[f64]) -> Option<Vec<u8>> {
    let forms: Vec<Option<(i64, i32)>> = vs.iter().map(|&v| to_decimal(v)).collect();
    // Candidate exponents: each distinct one, most frequent first. A lower exponent admits every value
    // with fewer decimals; a higher one saves digits but turns the rest into exceptions.
    let mut counts = [0usize; (2 * MAX_EXP + 1) as usize];
    for (_, e) in forms.iter().flatten() {
        counts[(e + MAX_EXP) as usize] += 1;
    }
    let mut candidates: Vec<(usize, i32)> = counts
        .iter()
        .enumerate()
        .filter(|c| *c.1 > 0)
        .map(|(i, &c)| (c, i as i32 - MAX_EXP))
        .collect();
    if candidates.is_empty() {
        return None;
    }
    candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    // The lowest exponent (no avoidable exceptions) is always tried.
    let lowest = candidates.iter().map(|c| c.1).min().unwrap_or(0);
    candidates.truncate(4);
    if !candidates.iter().any(|c| c.1 == lowest) {
        candidates.push((0, lowest));
    }
    let mut best: Option<(f64, Vec<u8>)> = None;
    let mut scratch = Vec::new();
    for &(_, exp) in &candidates {
        let scaled = scale_to(vs, &forms, exp);
        for kind in [VALUES_DECIMAL_DELTA, VALUES_DECIMAL_DOD] {
            scratch.clear();
            let cost = write_decimal(&scaled, kind, &mut scratch);
            if best.as_ref().is_none_or(|b| cost < b.0) {
                best = Some((cost, scratch.clone()));
            }
        }
    }
    best.map(|b| b.1)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Order-0 entropy, in bytes, of the uvarint encoding of `values`.
fn varint_entropy_bytes(values: &[u64]) -> f64 {
    let mut counts = [0u32; 256];
    let mut total = 0u32;
    let mut scratch = Vec::with_capacity(10);
    for &v in values {
        scratch.clear();
        write_uvarint(&mut scratch, v);
        for &b in &scratch {
            counts[usize::from(b)] += 1;
        }
        total += scratch.len() as u32;
    }
    let total_f = f64::from(total);
    let bits: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| f64::from(c) * (total_f / f64::from(c)).log2())
        .sum();
    bits / 8.0
}

/// Writes a decimal column; returns its estimated size after zstd, to choose between candidates.
fn write_decimal(s: &Scaled, kind: u8, out: &mut Vec<u8>) -> f64 {
    let m = &s.mantissas;
    out.push(kind);
    write_uvarint(out, m.len() as u64);
    out.push(zigzag(i64::from(s.exp)) as u8);
    // Differences in wrapping arithmetic: any i64 mantissas round-trip.
    let mut diffs: Vec<i64> = m.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
    if kind == VALUES_DECIMAL_DOD {
        for i in (1..diffs.len()).rev() {
            diffs[i] = diffs[i].wrapping_sub(diffs[i - 1]);
        }
    }
    // A common divisor catches steps like 4096-byte pages or counters moving in tens.
    let g = diffs.iter().fold(0u64, |g, d| gcd(g, d.unsigned_abs()));
    let g = if g == 0 || g > i64::MAX as u64 { 1 } else { g };
    write_uvarint(out, g);
    write_varint(out, m.first().copied().unwrap_or(0));
    let quotients: Vec<u64> = diffs.iter().map(|&d| zigzag(d / g as i64)).collect();
    let width = 64 - quotients.iter().fold(0, |a, &q| a | q).leading_zeros();
    let packed_len = (width as usize * quotients.len()).div_ceil(8);
    // Noisy series (random increments, jittery gauges) carry ~log2(range) bits a sample, which fixed-width
    // packing stores without varint overhead; skewed ones (mostly zeros, rare jumps) compress better as
    // varints under zstd. Pack when packing beats the varints' order-0 entropy, a stand-in for zstd.
    let varints = varint_entropy_bytes(&quotients);
    let cost;
    if width > 0 && (packed_len as f64) < varints {
        cost = packed_len as f64;
        out.push(width as u8);
        let mut free = 0;
        for q in quotients {
            write_bits(out, &mut free, q, width);
        }
    } else {
        cost = varints;
        out.push(0);
        for q in quotients {
            write_uvarint(out, q);
        }
    }
    write_uvarint(out, s.exceptions.len() as u64);
    let mut last = 0;
    for &(i, bits) in &s.exceptions {
        write_uvarint(out, (i - last) as u64);
        out.extend_from_slice(&bits.to_le_bytes());
        last = i;
    }
    cost + 9.0 * s.exceptions.len() as f64
}

fn decode_decimal(bytes: &[u8], kind: u8, out: &mut Vec<f64>) -> Result<(), String> {
    let mut pos = 1;
    // Each mantissa takes at least one bit.
    let n = read_count(bytes, &mut pos, bytes.len().saturating_mul(8))?;
    let Some(&exp) = bytes.get(pos) else {
        return Err("decimal column lacks its exponent".into());
    };
    pos += 1;
    let exp = unzigzag(u64::from(exp));
    if !(-i64::from(MAX_EXP)..=i64::from(MAX_EXP)).contains(&exp) {
        return Err(format!("decimal exponent {exp} out of range"));
    }
    let exp = exp as i32;
    let g = read_uvarint(bytes, &mut pos)? as i64;
    let start = out.len();
    out.reserve(n);
    let mut m = read_varint(bytes, &mut pos)?;
    let Some(&width) = bytes.get(pos) else {
        return Err("decimal column lacks its packing width".into());
    };
    pos += 1;
    let width = u32::from(width);
    if width > 64 {
        return Err(format!("packing width {width} over 64 bits"));
    }
    let mut packed = None;
    if width > 0 {
        let len = (width as usize * n.saturating_sub(1)).div_ceil(8);
        let Some(data) = bytes.get(pos..pos + len) else {
            return Err("packed differences end early".into());
        };
        packed = Some(BitReader::new(data));
        pos += len;
    }
    if n > 0 {
        out.push(decimal_to_f64(m, exp));
        let mut delta = 0i64;
        for i in 1..n {
            let q = match packed.as_mut() {
                Some(br) => br.read(width),
                None => read_uvarint(bytes, &mut pos)?,
            };
            let x = unzigzag(q).wrapping_mul(g);
            if kind == VALUES_DECIMAL_DOD && i > 1 {
                delta = delta.wrapping_add(x);
            } else {
                delta = x;
            }
            m = m.wrapping_add(delta);
            out.push(decimal_to_f64(m, exp));
        }
    }
    let exceptions = read_uvarint(bytes, &mut pos)?;
    if exceptions > n as u64 {
        return Err(format!("{exceptions} exceptions for {n} values"));
    }
    let mut index = 0usize;
    for _ in 0..exceptions {
        let gap = read_uvarint(bytes, &mut pos)?;
        index = usize::try_from(gap)
            .ok()
            .and_then(|g| index.checked_add(g))
            .ok_or("exception index overflows")?;
        let Some(raw) = bytes.get(pos..).and_then(|s| s.first_chunk::<8>()) else {
            return Err("exception lacks its value".into());
        };
        pos += 8;
        let slot = out
            .get_mut(start + index)
            .ok_or("exception index beyond the column")?;
        *slot = f64::from_bits(u64::from_le_bytes(*raw));
    }
    expect_end(bytes, pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::strategies::{any_value, series};
    use crate::model::STALE_NAN_BITS;
    use proptest::prelude::*;

    fn round_trip(samples: &[(i64, f64)]) -> Vec<u8> {
        let bytes = encode_dense(samples);
        let mut out = vec![(7, 7.0)];
        decode_dense(&bytes, &mut out).unwrap_or_else(|e| panic!("{e}: {samples:?}"));
        let want: Vec<(i64, u64)> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
        let got: Vec<(i64, u64)> = out[1..].iter().map(|&(t, v)| (t, v.to_bits())).collect();
        assert_eq!(got, want);
        bytes
    }

    fn value_kind(samples: &[(i64, f64)]) -> u8 {
        let ts: Vec<i64> = samples.iter().map(|s| s.0).collect();
        let bytes = round_trip(samples);
        bytes[1 + encode_timestamps(&ts).len()]
    }

    fn scrapes(n: i64) -> impl Iterator<Item = i64> {
        (0..n).map(|i| 1_700_000_000_000 + i * 15_000)
    }

    #[test]
    fn constant_series_is_one_value() {
        let samples: Vec<_> = scrapes(480).map(|t| (t, 1.0)).collect();
        assert_eq!(value_kind(&samples), VALUES_CONST);
        let ts: Vec<i64> = samples.iter().map(|s| s.0).collect();
        assert_eq!(encode_values(&[1.0; 480]).len(), 1 + 2 + 8);
        // t0 (6 bytes), the interval (3 bytes), then one zero byte per regular step.
        assert_eq!(encode_timestamps(&ts).len(), 1 + 2 + 6 + 3 + 478);
    }

    #[test]
    fn two_decimal_counter_uses_mantissas() {
        let samples: Vec<_> = scrapes(480)
            .enumerate()
            .map(|(i, t)| (t, (1_234_567 + i as i64 * 1493) as f64 / 100.0))
            .collect();
        let values: Vec<f64> = samples.iter().map(|s| s.1).collect();
        let bytes = encode_values(&values);
        assert!(matches!(
            bytes[0],
            VALUES_DECIMAL_DELTA | VALUES_DECIMAL_DOD
        ));
        // Exponent -2 and a regular slope: one byte a sample (a constant delta over the GCD, or zero
        // delta-of-deltas).
        assert_eq!(bytes[3], 3);
        assert!(bytes.len() < 500, "{}", bytes.len());
        round_trip(&samples);
    }

    #[test]
    fn page_sized_gauge_divides_by_the_common_step() {
        let samples: Vec<_> = scrapes(120)
            .enumerate()
            .map(|(i, t)| (t, (1 << 30) as f64 + ((i * 7919) % 97) as f64 * 4096.0))
            .collect();
        let values: Vec<f64> = samples.iter().map(|s| s.1).collect();
        let bytes = encode_values(&values);
        assert_eq!(bytes[0], VALUES_DECIMAL_DELTA);
        // Every step is at most ±96 pages: one or two bytes each instead of three or four.
        assert!(bytes.len() < 120 * 2, "{}", bytes.len());
        round_trip(&samples);
    }

    #[test]
    fn noisy_differences_are_bit_packed() {
        let mut x = 12345u64;
        let samples: Vec<_> = scrapes(480)
            .map(|t| {
                // Random nanosecond durations, as `Duration::Seconds()` reports them.
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (t, ((x >> 40) % 5_000_000) as f64 / 1e9)
            })
            .collect();
        let values: Vec<f64> = samples.iter().map(|s| s.1).collect();
        let bytes = encode_values(&values);
        // kind, count (2 bytes), exponent -9, g = 1, m0 (4 bytes), then a width of 24 bits.
        assert_eq!(bytes[3], zigzag(-9) as u8);
        assert_eq!(bytes[9], 24, "{:?}", &bytes[..12]);
        assert!(bytes.len() < 480 * 3 + 16, "{}", bytes.len());
        round_trip(&samples);
        // A width over 64 bits is corrupt.
        let mut bad = bytes.clone();
        bad[9] = 65;
        assert!(decode_values(&bad, &mut Vec::new()).is_err());
    }

    #[test]
    fn special_values_are_exceptions() {
        let specials = [
            f64::from_bits(STALE_NAN_BITS),
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            1e300,
        ];
        let mut samples: Vec<_> = scrapes(100)
            .enumerate()
            .map(|(i, t)| (t, i as f64 * 0.5))
            .collect();
        for (i, &v) in specials.iter().enumerate() {
            samples[i * 17 + 3].1 = v;
        }
        assert!(matches!(
            value_kind(&samples),
            VALUES_DECIMAL_DELTA | VALUES_DECIMAL_DOD
        ));
        // Staleness at the end of a series, the usual place.
        let mut ending: Vec<_> = scrapes(50).map(|t| (t, 3.25)).collect();
        ending.push((ending[49].0 + 15_000, f64::from_bits(STALE_NAN_BITS)));
        round_trip(&ending);
    }

    #[test]
    fn binary_fractions_fall_back_to_xor() {
        let samples: Vec<_> = scrapes(200)
            .enumerate()
            .map(|(i, t)| (t, (i as f64 * 0.37).sin() / 3.0))
            .collect();
        assert_eq!(value_kind(&samples), VALUES_XOR);
    }

    #[test]
    fn extreme_mantissas_wrap_without_loss() {
        let samples = [
            (1, 9.0e18),
            (2, -9.0e18),
            (3, 9.0e18),
            (4, 1e20),
            (5, -1e22),
            (6, 5e-324),
            (7, f64::MIN),
            (8, 0.1),
        ];
        round_trip(&samples);
        assert_eq!(to_decimal(1e20), Some((1, 20)));
        assert_eq!(to_decimal(1.5e300), None);
        assert_eq!(to_decimal(0.1), Some((1, -1)));
        assert_eq!(to_decimal(-0.0), None);
        assert_eq!(to_decimal(f64::NAN), None);
    }

    #[test]
    fn edge_lengths() {
        round_trip(&[]);
        round_trip(&[(i64::MIN, f64::from_bits(STALE_NAN_BITS))]);
        round_trip(&[(i64::MIN, 1.5), (i64::MAX, -1.5)]);
        let long: Vec<_> = (0..65535i64)
            .map(|i| (i * 10_000 - 5_000_000, (i % 300) as f64 * 1.5))
            .collect();
        round_trip(&long);
    }

    #[test]
    fn unknown_kinds_and_trailing_bytes_are_errors() {
        let mut out = Vec::new();
        assert!(decode_dense(&[], &mut out).is_err());
        assert!(decode_dense(&[0x7f], &mut out).is_err());
        let mut bytes = encode_dense(&[(1, 1.0), (2, 2.0)]);
        bytes.push(0);
        assert!(decode_dense(&bytes, &mut out).is_err());
        let mut ts = Vec::new();
        assert!(decode_timestamps(&[TS_DOD, 0x05, 0x00], &mut ts).is_err());
        let mut vs = Vec::new();
        assert!(decode_values(&[VALUES_CONST, 0xff, 0xff, 0xff, 0xff, 0x0f], &mut vs).is_err());
        assert!(vs.is_empty());
    }

    /// A valid kind byte followed by anything, so decoders get past the first check.
    fn column_bytes() -> impl Strategy<Value = Vec<u8>> {
        let kinds = prop::sample::select(vec![
            TS_DOD,
            VALUES_CONST,
            VALUES_DECIMAL_DELTA,
            VALUES_DECIMAL_DOD,
            VALUES_XOR,
            0x00,
        ]);
        (kinds, proptest::collection::vec(any::<u8>(), 0..100)).prop_map(|(k, mut rest)| {
            rest.insert(0, k);
            rest
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn dense_round_trip(samples in series(400)) {
            round_trip(&samples);
        }

        #[test]
        fn columns_round_trip(
            ts in proptest::collection::vec(any::<i64>(), 0..300),
            vs in proptest::collection::vec(any_value(), 0..300),
        ) {
            let mut got_ts = Vec::new();
            decode_timestamps(&encode_timestamps(&ts), &mut got_ts).map_err(TestCaseError::fail)?;
            prop_assert_eq!(got_ts, ts);
            let mut got_vs = Vec::new();
            decode_values(&encode_values(&vs), &mut got_vs).map_err(TestCaseError::fail)?;
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&got_vs), bits(&vs));
        }

        #[test]
        fn truncated_input_is_an_error(samples in series(100), cut in any::<prop::sample::Index>()) {
            let bytes = encode_dense(&samples);
            let len = cut.index(bytes.len());
            prop_assert!(decode_dense(&bytes[..len], &mut Vec::new()).is_err());
        }

        #[test]
        fn corrupt_input_never_panics(
            samples in series(100),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = encode_dense(&samples);
            for (at, x) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= x;
            }
            let _ = decode_dense(&bytes, &mut Vec::new());
        }

        #[test]
        fn arbitrary_columns_never_panic(bytes in column_bytes()) {
            let _ = decode_timestamps(&bytes, &mut Vec::new());
            let _ = decode_values(&bytes, &mut Vec::new());
            let mut dense = bytes.clone();
            dense.insert(0, DENSE_V1);
            let _ = decode_dense(&dense, &mut Vec::new());
        }
    }
}
