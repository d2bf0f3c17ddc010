//! Protobuf messages of remote write 2.0, package `io.prometheus.write.v2`
//! (`prompb/io/prometheus/write/v2/types.proto`). Strings live once in `Request.symbols`; everything
//! else refers to them by index. Field numbers must match the original exactly.

pub use super::prompb::{BucketSpan, Histogram, HistogramCount, HistogramZeroCount};

/// `io.prometheus.write.v2.Request`. Fields 1–3 are reserved so that a 1.0 decoder reads a 2.0 body
/// as an empty `WriteRequest` instead of garbage.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    /// `symbols[0]` must be the empty string, so that a zero reference means "unset".
    #[prost(string, repeated, tag = "4")]
    pub symbols: Vec<String>,
    #[prost(message, repeated, tag = "5")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Name/value pairs of symbol references, sorted by name; always an even count.
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub histograms: Vec<Histogram>,
    #[prost(message, repeated, tag = "4")]
    pub exemplars: Vec<Exemplar>,
    #[prost(message, optional, tag = "5")]
    pub metadata: Option<Metadata>,
    /// Milliseconds; 0 means unset. Not used by Strata yet.
    #[prost(int64, tag = "6")]
    pub created_timestamp: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    #[prost(double, tag = "2")]
    pub value: f64,
    /// Milliseconds; 0 means unset.
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
    /// Newer senders put the created (start) timestamp here; 0 means unset. Not used by Strata yet.
    #[prost(int64, tag = "3")]
    pub start_timestamp: i64,
}

/// Per-series metadata. `type` uses the same numbers as 1.0's `MetricType` (UNSPECIFIED 0 … STATESET 7).
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Metadata {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(uint32, tag = "3")]
    pub help_ref: u32,
    #[prost(uint32, tag = "4")]
    pub unit_ref: u32,
}
