//! Sample codecs of the metrics store. Owns the byte layouts of chunks, not where they live:
//!
//! - [`xor`]: Prometheus's XOR chunk, byte-compatible with `tsdb/chunkenc/xor.go`. The head appends to it
//!   and remote read can ship it unchanged.
//! - [`dense`]: denser, self-describing column encodings for immutable blocks, meant to be zstd-compressed
//!   across many series by the block writer.
//!
//! Decoders treat their input as untrusted: truncated or corrupt bytes give an error, never a panic.

mod bits;
pub mod dense;
#[cfg(test)]
mod strategies;
pub mod xor;

pub use dense::{
    decode_dense, decode_timestamps, decode_values, encode_dense, encode_timestamps, encode_values,
};
pub use xor::{xor_num_samples, XorEncoder, XorIter};
