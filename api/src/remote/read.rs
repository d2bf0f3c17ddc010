//! Remote read: decoding a `ReadRequest` into store matchers, and encoding both answer shapes, the
//! snappy-compressed SAMPLES `ReadResponse` and the framed STREAMED_XOR_CHUNKS stream
//! (`storage/remote/chunked.go`: uvarint length, big-endian CRC32-Castagnoli, message).

use prost::Message;
use strata_store::{Labels, MatchOp, Matcher, SeriesSamples};

use super::{compress, decompress, labels_to_proto, prompb, DecodeLimits, RemoteError};

/// `Content-Type` of a STREAMED_XOR_CHUNKS answer (sent without `Content-Encoding`).
pub const CHUNKED_READ_CONTENT_TYPE: &str =
    "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

/// One XOR chunk of a streamed answer: `(min_t_ms, max_t_ms, chunk bytes in the Prometheus TSDB format)`,
/// the time range inclusive.
pub type XorChunk = (i64, i64, Vec<u8>);

/// The answer shapes a client accepts, in its order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseType {
    Samples,
    StreamedXorChunks,
}

/// One query of a remote read request, with matchers ready for the store.
#[derive(Debug, Clone)]
pub struct ReadQuery {
    /// Inclusive millisecond range.
    pub start_ms: i64,
    pub end_ms: i64,
    pub matchers: Vec<Matcher>,
    pub hints: Option<prompb::ReadHints>,
}

#[derive(Debug, Clone)]
pub struct ReadRequestDecoded {
    pub queries: Vec<ReadQuery>,
    /// Known types only, in the client's order; empty when the client named none.
    pub accepted_response_types: Vec<ResponseType>,
}

impl ReadRequestDecoded {
    /// The first accepted type; SAMPLES when the client named none (`remote.proto`, `ReadRequest`).
    pub fn response_type(&self) -> ResponseType {
        self.accepted_response_types
            .first()
            .copied()
            .unwrap_or(ResponseType::Samples)
    }
}

/// Decodes a snappy-compressed `ReadRequest`.
pub fn decode_read(body: &[u8], limits: &DecodeLimits) -> Result<ReadRequestDecoded, RemoteError> {
    let raw = decompress(body, limits)?;
    let req =
        prompb::ReadRequest::decode(raw.as_slice()).map_err(|source| RemoteError::Protobuf {
            message: "prometheus.ReadRequest",
            source,
        })?;
    if req.queries.len() > limits.max_read_queries {
        return Err(RemoteError::TooMany {
            what: "queries",
            count: req.queries.len(),
            limit: limits.max_read_queries,
        });
    }
    let accepted_response_types: Vec<ResponseType> = req
        .accepted_response_types
        .iter()
        .filter_map(|t| match *t {
            prompb::response_type::SAMPLES => Some(ResponseType::Samples),
            prompb::response_type::STREAMED_XOR_CHUNKS => Some(ResponseType::StreamedXorChunks),
            _ => None,
        })
        .collect();
    if accepted_response_types.is_empty() && !req.accepted_response_types.is_empty() {
        return Err(RemoteError::UnsupportedResponseType(
            req.accepted_response_types,
        ));
    }
    let queries = req
        .queries
        .into_iter()
        .enumerate()
        .map(|(index, q)| {
            read_query(q, limits).map_err(|reason| RemoteError::InvalidQuery { index, reason })
        })
        .collect::<Result<_, _>>()?;
    Ok(ReadRequestDecoded {
        queries,
        accepted_response_types,
    })
}

fn read_query(q: prompb::Query, limits: &DecodeLimits) -> Result<ReadQuery, String> {
    if q.matchers.len() > limits.max_matchers_per_query {
        return Err(format!(
            "{} matchers, over the limit of {}",
            q.matchers.len(),
            limits.max_matchers_per_query
        ));
    }
    let matchers = q
        .matchers
        .into_iter()
        .map(|m| {
            let op = match m.r#type {
                prompb::matcher_type::EQ => MatchOp::Equal,
                prompb::matcher_type::NEQ => MatchOp::NotEqual,
                prompb::matcher_type::RE => MatchOp::Regex,
                prompb::matcher_type::NRE => MatchOp::NotRegex,
                other => {
                    return Err(format!(
                        "unknown matcher type {other} for label {:?}",
                        m.name
                    ))
                }
            };
            Matcher::new(op, m.name, m.value).map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    Ok(ReadQuery {
        start_ms: q.start_timestamp_ms,
        end_ms: q.end_timestamp_ms,
        matchers,
        hints: q.hints,
    })
}

/// Encodes the SAMPLES answer: one `QueryResult` per query, in the request's order, snappy-compressed.
pub fn encode_read_samples(results: &[Vec<SeriesSamples>]) -> Result<Vec<u8>, RemoteError> {
    let resp = prompb::ReadResponse {
        results: results
            .iter()
            .map(|series| prompb::QueryResult {
                timeseries: series
                    .iter()
                    .map(|s| prompb::TimeSeries {
                        labels: labels_to_proto(&s.labels),
                        samples: s
                            .samples
                            .iter()
                            .map(|x| prompb::Sample {
                                value: x.v,
                                timestamp: x.t,
                            })
                            .collect(),
                        exemplars: Vec::new(),
                        histograms: Vec::new(),
                    })
                    .collect(),
            })
            .collect(),
    };
    compress(&resp.encode_to_vec())
}

/// Appends one STREAMED_XOR_CHUNKS frame to `out`: uvarint length of the message, its CRC32-Castagnoli
/// (big-endian), then a `ChunkedReadResponse` with the given series. Each chunk is
/// `(min_t_ms, max_t_ms, XOR chunk bytes in the Prometheus TSDB format)`.
pub fn encode_chunked_frame(
    out: &mut Vec<u8>,
    query_index: i64,
    series: &[(Labels, Vec<XorChunk>)],
) {
    let msg = prompb::ChunkedReadResponse {
        chunked_series: series
            .iter()
            .map(|(labels, chunks)| prompb::ChunkedSeries {
                labels: labels_to_proto(labels),
                chunks: chunks
                    .iter()
                    .map(|(min_t, max_t, data)| prompb::Chunk {
                        min_time_ms: *min_t,
                        max_time_ms: *max_t,
                        r#type: prompb::chunk_encoding::XOR,
                        data: data.clone(),
                    })
                    .collect(),
            })
            .collect(),
        query_index,
    };
    let data = msg.encode_to_vec();
    prost::encoding::encode_varint(data.len() as u64, out);
    out.extend_from_slice(&crc32c::crc32c(&data).to_be_bytes());
    out.extend_from_slice(&data);
}

/// Reads one frame from the front of `buf`, as a remote-read client does. Returns the message and the
/// bytes consumed, or `None` when `buf` holds only part of a frame. Frames over
/// `limits.max_decompressed_bytes` are refused.
pub fn decode_chunked_frame(
    buf: &[u8],
    limits: &DecodeLimits,
) -> Result<Option<(prompb::ChunkedReadResponse, usize)>, RemoteError> {
    let mut cursor = buf;
    let len = match prost::encoding::decode_varint(&mut cursor) {
        Ok(len) => len,
        // A varint is at most 10 bytes: a shorter buffer may just be incomplete.
        Err(_) if buf.len() < 10 => return Ok(None),
        Err(e) => return Err(RemoteError::BadFrame(format!("bad length: {e}"))),
    };
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > limits.max_decompressed_bytes {
        return Err(RemoteError::BadFrame(format!(
            "frame of {len} bytes is over the limit of {}",
            limits.max_decompressed_bytes
        )));
    }
    let header = buf.len() - cursor.len();
    if cursor.len() < 4 || cursor.len() - 4 < len {
        return Ok(None);
    }
    let want = u32::from_be_bytes([cursor[0], cursor[1], cursor[2], cursor[3]]);
    let data = &cursor[4..4 + len];
    let got = crc32c::crc32c(data);
    if got != want {
        return Err(RemoteError::BadFrame(format!(
            "checksum mismatch: frame says {want:#010x}, data has {got:#010x}"
        )));
    }
    let msg =
        prompb::ChunkedReadResponse::decode(data).map_err(|source| RemoteError::Protobuf {
            message: "prometheus.ChunkedReadResponse",
            source,
        })?;
    Ok(Some((msg, header + 4 + len)))
}

/// Encodes a snappy-compressed `ReadRequest`, as a remote-read client sends it.
pub fn encode_read_request(req: &prompb::ReadRequest) -> Result<Vec<u8>, RemoteError> {
    compress(&req.encode_to_vec())
}

/// Decodes a snappy-compressed SAMPLES `ReadResponse`, as a remote-read client does.
pub fn decode_read_response(
    body: &[u8],
    limits: &DecodeLimits,
) -> Result<prompb::ReadResponse, RemoteError> {
    let raw = decompress(body, limits)?;
    prompb::ReadResponse::decode(raw.as_slice()).map_err(|source| RemoteError::Protobuf {
        message: "prometheus.ReadResponse",
        source,
    })
}
