//! Prometheus remote write (1.0 and 2.0) and remote read on the wire: the protobuf messages, snappy
//! block compression, content negotiation, request limits, and validation of what senders send into a
//! [`strata_store::WriteBatch`]. Knows nothing of HTTP routing or storage: the handler passes bodies and
//! headers in, and gets model types (or a [`RemoteError`] with its HTTP status) back.
//!
//! Specs: `prometheus/docs:docs/specs/prw/remote_write_spec.md` (1.0),
//! `remote_write_spec_2_0.md` (2.0), `prometheus:docs/querying/remote_read_api.md`.

mod borrowed;
pub mod prompb;
mod read;
pub(crate) mod write;
pub mod write_v2;

pub use borrowed::{decode_write_v1_borrowed, BorrowedSeries, BorrowedWrite};
pub use read::{
    decode_chunked_frame, decode_read, decode_read_response, encode_chunked_frame,
    encode_read_request, encode_read_samples, ReadQuery, ReadRequestDecoded, ResponseType,
    XorChunk, CHUNKED_READ_CONTENT_TYPE,
};
pub use write::{
    decode_write, encode_write_v1, encode_write_v2, write_version, DecodedWrite, WriteVersion,
};

/// `Content-Type` of a remote write 2.0 body.
pub const CONTENT_TYPE_V2: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
/// `Content-Type` of a remote write 1.0 body and of remote read requests and SAMPLES answers.
pub const CONTENT_TYPE_PROTOBUF: &str = "application/x-protobuf";

/// Bounds on what one request may make us allocate and store. Every field is enforced before the work
/// it bounds: sizes before decompressing or decoding, counts and lengths while validating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Compressed body as received.
    pub max_body_bytes: usize,
    /// Body after snappy decompression (read from the snappy header before allocating).
    pub max_decompressed_bytes: usize,
    /// Series in one write request.
    pub max_series: usize,
    /// Labels of one series (or one exemplar).
    pub max_labels_per_series: usize,
    pub max_label_name_len: usize,
    pub max_label_value_len: usize,
    /// Queries in one remote read request.
    pub max_read_queries: usize,
    /// Matchers of one remote read query.
    pub max_matchers_per_query: usize,
}

impl DecodeLimits {
    /// Prometheus sends at most 2000 samples (`max_samples_per_send`) per request, a few hundred KiB;
    /// 16 MiB leaves room for large batching senders (vmagent, the OTel collector) without letting one
    /// request hold the heap.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 16 << 20;
    /// Label-heavy bodies compress about 4–8×; 64 MiB admits any body under the compressed limit
    /// that is not a decompression bomb.
    pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 64 << 20;
    pub const DEFAULT_MAX_SERIES: usize = 100_000;
    /// kube-state-metrics `*_labels` series carry the most labels seen in practice, rarely past 60.
    pub const DEFAULT_MAX_LABELS_PER_SERIES: usize = 128;
    /// Cortex and Mimir default to 1024/2048; a longer value is almost always a mistake
    /// (a stack trace or a URL with a query string) that would bloat the index.
    pub const DEFAULT_MAX_LABEL_NAME_LEN: usize = 1024;
    pub const DEFAULT_MAX_LABEL_VALUE_LEN: usize = 4096;
    pub const DEFAULT_MAX_READ_QUERIES: usize = 1_000;
    pub const DEFAULT_MAX_MATCHERS_PER_QUERY: usize = 64;
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            max_decompressed_bytes: Self::DEFAULT_MAX_DECOMPRESSED_BYTES,
            max_series: Self::DEFAULT_MAX_SERIES,
            max_labels_per_series: Self::DEFAULT_MAX_LABELS_PER_SERIES,
            max_label_name_len: Self::DEFAULT_MAX_LABEL_NAME_LEN,
            max_label_value_len: Self::DEFAULT_MAX_LABEL_VALUE_LEN,
            max_read_queries: Self::DEFAULT_MAX_READ_QUERIES,
            max_matchers_per_query: Self::DEFAULT_MAX_MATCHERS_PER_QUERY,
        }
    }
}

/// Everything that can be wrong with a remote write or read request. The message is sent to the client
/// as the plain-text body, so it names the offending series, label or limit.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("unsupported content type {0:?}: expected application/x-protobuf (remote write 1.0) or {CONTENT_TYPE_V2}")]
    UnsupportedContentType(String),
    #[error("unsupported content encoding {0:?}: only snappy is accepted")]
    UnsupportedEncoding(String),
    #[error("request body is {len} bytes, over the limit of {limit}")]
    BodyTooLarge { len: usize, limit: usize },
    #[error("decompressed body would be {len} bytes, over the limit of {limit}")]
    DecompressedTooLarge { len: usize, limit: usize },
    #[error("request has {count} {what}, over the limit of {limit}")]
    TooMany {
        what: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("snappy decompression failed (the body must use the snappy block format): {0}")]
    Snappy(String),
    #[error("snappy compression failed: {0}")]
    Compress(String),
    #[error("cannot decode {message} protobuf: {source}")]
    Protobuf {
        message: &'static str,
        #[source]
        source: prost::DecodeError,
    },
    /// `symbols[0]` of a 2.0 request is not the empty string.
    #[error("symbols[0] must be the empty string, got {0:?}")]
    FirstSymbolNotEmpty(String),
    /// A protobuf body the hot-path decoder could not read (what and where).
    #[error("{0}")]
    Malformed(String),
    #[error("series {index}: {reason}")]
    InvalidSeries { index: usize, reason: String },
    #[error("metadata {index}: {reason}")]
    InvalidMetadata { index: usize, reason: String },
    #[error("series {index}: native histograms are not supported yet")]
    NativeHistogram { index: usize },
    #[error("query {index}: {reason}")]
    InvalidQuery { index: usize, reason: String },
    #[error("none of the accepted response types {0:?} is supported")]
    UnsupportedResponseType(Vec<i32>),
    #[error("chunked read frame: {0}")]
    BadFrame(String),
}

impl RemoteError {
    /// The HTTP status this error is answered with. The one place that maps remote-protocol errors to
    /// HTTP: 415 makes a 2.0 sender fall back to 1.0, 413 tells it to send smaller batches, and 400
    /// tells it not to retry (spec 1.0 "Retries & Backoff").
    pub fn status(&self) -> u16 {
        match self {
            RemoteError::UnsupportedContentType(_) | RemoteError::UnsupportedEncoding(_) => 415,
            RemoteError::BodyTooLarge { .. }
            | RemoteError::DecompressedTooLarge { .. }
            | RemoteError::TooMany { .. } => 413,
            RemoteError::Compress(_) => 500,
            RemoteError::Snappy(_)
            | RemoteError::Protobuf { .. }
            | RemoteError::Malformed(_)
            | RemoteError::FirstSymbolNotEmpty(_)
            | RemoteError::InvalidSeries { .. }
            | RemoteError::InvalidMetadata { .. }
            | RemoteError::NativeHistogram { .. }
            | RemoteError::InvalidQuery { .. }
            | RemoteError::UnsupportedResponseType(_)
            | RemoteError::BadFrame(_) => 400,
        }
    }
}

/// Checks the `Content-Encoding` header: absent means snappy, as Prometheus's receiver assumes for
/// senders that predate the header.
fn check_encoding(encoding: Option<&str>) -> Result<(), RemoteError> {
    match encoding.map(str::trim) {
        None | Some("") => Ok(()),
        Some(e) if e.eq_ignore_ascii_case("snappy") => Ok(()),
        Some(e) => Err(RemoteError::UnsupportedEncoding(e.to_string())),
    }
}

/// A label set as protobuf labels (for the encoders of every message that carries one).
fn labels_to_proto(labels: &strata_store::Labels) -> Vec<prompb::Label> {
    labels
        .iter()
        .map(|l| prompb::Label {
            name: l.name.clone(),
            value: l.value.clone(),
        })
        .collect()
}

/// Decompresses a snappy *block* body, refusing before any allocation when the length the header
/// announces is over the limit.
pub fn decompress(body: &[u8], limits: &DecodeLimits) -> Result<Vec<u8>, RemoteError> {
    if body.len() > limits.max_body_bytes {
        return Err(RemoteError::BodyTooLarge {
            len: body.len(),
            limit: limits.max_body_bytes,
        });
    }
    let len = snap::raw::decompress_len(body).map_err(|e| RemoteError::Snappy(e.to_string()))?;
    if len > limits.max_decompressed_bytes {
        return Err(RemoteError::DecompressedTooLarge {
            len,
            limit: limits.max_decompressed_bytes,
        });
    }
    let mut out = vec![0; len];
    let n = snap::raw::Decoder::new()
        .decompress(body, &mut out)
        .map_err(|e| RemoteError::Snappy(e.to_string()))?;
    out.truncate(n);
    Ok(out)
}

fn compress(raw: &[u8]) -> Result<Vec<u8>, RemoteError> {
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .map_err(|e| RemoteError::Compress(e.to_string()))
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`: the Prometheus 2.x label name rule (UTF-8 names came with 3.0).
pub fn is_valid_label_name(name: &str) -> bool {
    let b = name.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {}
        _ => return false,
    }
    b[1..]
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`: the Prometheus 2.x metric name rule.
pub fn is_valid_metric_name(name: &str) -> bool {
    let b = name.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' || *c == b':' => {}
        _ => return false,
    }
    b[1..]
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
}

#[cfg(test)]
mod tests;
