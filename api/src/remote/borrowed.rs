//! A remote write 1.0 decoder for the ingest hot path that borrows label names and values from the
//! decompressed body instead of allocating a `String` for each (prost's way): most samples belong to
//! series the head already has, so their labels are only hashed, never copied. It accepts exactly what
//! [`decode_write`](super::decode_write) accepts, with the same validation and messages.

use strata_store::{Exemplar, LabelPairs, Labels, Metadata, MetricType, Sample};

use super::write::{check_label_set, check_series_count, excerpt};
use super::{is_valid_metric_name, prompb, DecodeLimits, RemoteError};
use crate::protowire::{Reader, WireError, WIRE_I64, WIRE_LEN, WIRE_VARINT};

/// One series of a request; its labels are a range of [`BorrowedWrite::labels`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BorrowedSeries {
    pub labels: std::ops::Range<usize>,
    pub samples: Vec<Sample>,
    pub exemplars: Vec<Exemplar>,
}

/// A validated remote write 1.0 request whose label names and values borrow from the body. The pairs
/// of all series share one vector, so a request costs a handful of allocations, not one per series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BorrowedWrite<'a> {
    /// Every series' label pairs: sorted by name, unique, empty values left out.
    pub labels: Vec<(&'a str, &'a str)>,
    pub series: Vec<BorrowedSeries>,
    pub metadata: Vec<(String, Metadata)>,
    pub samples: usize,
    pub exemplars: usize,
}

impl<'a> BorrowedWrite<'a> {
    pub fn labels_of(&self, s: &BorrowedSeries) -> LabelPairs<'_> {
        LabelPairs(&self.labels[s.labels.clone()])
    }
}

impl From<WireError> for RemoteError {
    fn from(e: WireError) -> Self {
        RemoteError::Malformed(format!(
            "cannot decode prometheus.WriteRequest protobuf: {e}"
        ))
    }
}

fn label(buf: &[u8]) -> Result<(&str, &str), RemoteError> {
    let mut r = Reader::new(buf, "prometheus.Label");
    let (mut name, mut value) = ("", "");
    while !r.done() {
        match r.key()? {
            (1, w) => {
                r.expect(w, WIRE_LEN)?;
                name = r.str()?;
            }
            (2, w) => {
                r.expect(w, WIRE_LEN)?;
                value = r.str()?;
            }
            (_, w) => r.skip(w)?,
        }
    }
    Ok((name, value))
}

fn sample(buf: &[u8]) -> Result<Sample, RemoteError> {
    let mut r = Reader::new(buf, "prometheus.Sample");
    let mut s = Sample::new(0, 0.0);
    while !r.done() {
        match r.key()? {
            (1, w) => {
                r.expect(w, WIRE_I64)?;
                s.v = f64::from_bits(r.fixed64()?);
            }
            (2, w) => {
                r.expect(w, WIRE_VARINT)?;
                s.t = r.varint()? as i64;
            }
            (_, w) => r.skip(w)?,
        }
    }
    Ok(s)
}

/// Decodes and validates a decompressed remote write 1.0 body.
pub fn decode_write_v1_borrowed<'a>(
    raw: &'a [u8],
    limits: &DecodeLimits,
) -> Result<BorrowedWrite<'a>, RemoteError> {
    use prost::Message;
    let mut out = BorrowedWrite::default();
    let mut r = Reader::new(raw, "prometheus.WriteRequest");
    while !r.done() {
        match r.key()? {
            (1, w) => {
                r.expect(w, WIRE_LEN)?;
                let index = out.series.len();
                check_series_count(index + 1, limits)?;
                let ts = r.bytes()?;
                let series = time_series(ts, index, limits, &mut out.labels)?;
                out.samples += series.samples.len();
                out.exemplars += series.exemplars.len();
                out.series.push(series);
            }
            (3, w) => {
                r.expect(w, WIRE_LEN)?;
                let index = out.metadata.len();
                let m = prompb::MetricMetadata::decode(r.bytes()?).map_err(|source| {
                    RemoteError::Protobuf {
                        message: "prometheus.WriteRequest",
                        source,
                    }
                })?;
                if !is_valid_metric_name(&m.metric_family_name) {
                    let reason = format!(
                        "metric family name {:?} is invalid",
                        excerpt(&m.metric_family_name)
                    );
                    return Err(RemoteError::InvalidMetadata { index, reason });
                }
                out.metadata.push((
                    m.metric_family_name,
                    Metadata {
                        metric_type: MetricType::from_i32(m.r#type),
                        help: m.help,
                        unit: m.unit,
                    },
                ));
            }
            (_, w) => r.skip(w)?,
        }
    }
    Ok(out)
}

fn time_series<'a>(
    buf: &'a [u8],
    index: usize,
    limits: &DecodeLimits,
    labels: &mut Vec<(&'a str, &'a str)>,
) -> Result<BorrowedSeries, RemoteError> {
    use prost::Message;
    let invalid = |reason: String| RemoteError::InvalidSeries { index, reason };
    let mut r = Reader::new(buf, "prometheus.TimeSeries");
    let start = labels.len();
    let mut s = BorrowedSeries::default();
    while !r.done() {
        match r.key()? {
            (1, w) => {
                r.expect(w, WIRE_LEN)?;
                labels.push(label(r.bytes()?)?);
            }
            (2, w) => {
                r.expect(w, WIRE_LEN)?;
                s.samples.push(sample(r.bytes()?)?);
            }
            (3, w) => {
                r.expect(w, WIRE_LEN)?;
                let j = s.exemplars.len();
                let e = prompb::Exemplar::decode(r.bytes()?).map_err(|source| {
                    RemoteError::Protobuf {
                        message: "prometheus.WriteRequest",
                        source,
                    }
                })?;
                check_label_set(
                    e.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
                    e.labels.len(),
                    limits,
                    false,
                )
                .map_err(|reason| invalid(format!("exemplar {j}: {reason}")))?;
                s.exemplars.push(Exemplar {
                    labels: Labels::from_pairs(e.labels.into_iter().map(|l| (l.name, l.value))),
                    value: e.value,
                    t: e.timestamp,
                });
            }
            (4, _) => return Err(RemoteError::NativeHistogram { index }),
            (_, w) => r.skip(w)?,
        }
    }
    let sent = &labels[start..];
    check_label_set(sent.iter().copied(), sent.len(), limits, true).map_err(invalid)?;
    // An empty value means an absent label (as in Prometheus): drop those pairs in place.
    let mut kept = start;
    for i in start..labels.len() {
        if !labels[i].1.is_empty() {
            labels[kept] = labels[i];
            kept += 1;
        }
    }
    labels.truncate(kept);
    if kept == start {
        return Err(invalid("empty label set".to_string()));
    }
    s.labels = start..kept;
    Ok(s)
}
