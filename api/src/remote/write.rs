//! Remote write: content negotiation, decoding of 1.0 and 2.0 bodies, validation into a
//! [`WriteBatch`], and the sender-side encoders used by tests and the load generator.
//!
//! Validation follows the 1.0 spec ("Labels") with the Prometheus 2.x name rules, and is stricter than
//! Prometheus 2.42's receiver in one respect: 2.42 re-sorts unsorted labels and lets the head reject
//! duplicates, while we refuse both with a 400 that names the series, because the spec says senders
//! MUST sort and a silent re-sort hides a broken sender. Like 2.42, a series without `__name__` is
//! accepted (only an empty label set is refused); empty label values are dropped, since Prometheus
//! treats an empty value as an absent label.

use std::collections::HashSet;

use prost::Message;
use strata_store::{
    Exemplar, Label, Labels, Metadata, MetricType, Sample, SeriesWrite, WriteBatch, METRIC_NAME,
};

use super::{
    check_encoding, compress, decompress, is_valid_label_name, is_valid_metric_name,
    labels_to_proto, prompb, write_v2, DecodeLimits, RemoteError,
};

/// Which remote write message a body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteVersion {
    /// `prometheus.WriteRequest`
    V1,
    /// `io.prometheus.write.v2.Request`
    V2,
}

/// A validated write request and the counts a 2.0 receiver must report in the
/// `X-Prometheus-Remote-Write-{Samples,Histograms,Exemplars}-Written` headers.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedWrite {
    pub version: WriteVersion,
    pub batch: WriteBatch,
    pub samples: usize,
    pub exemplars: usize,
    /// Always 0 until native histograms are stored: a request carrying one is refused whole.
    pub histograms: usize,
}

/// Decodes and validates a remote write body. `content_type` and `encoding` are the raw header values
/// (`None` when absent: 1.0 and snappy are assumed, as Prometheus does for old senders).
pub fn decode_write(
    body: &[u8],
    content_type: Option<&str>,
    encoding: Option<&str>,
    limits: &DecodeLimits,
) -> Result<DecodedWrite, RemoteError> {
    let version = write_version(content_type, encoding)?;
    let raw = decompress(body, limits)?;
    match version {
        WriteVersion::V1 => {
            let req = prompb::WriteRequest::decode(raw.as_slice()).map_err(|source| {
                RemoteError::Protobuf {
                    message: "prometheus.WriteRequest",
                    source,
                }
            })?;
            validate_v1(req, limits)
        }
        WriteVersion::V2 => {
            let req = write_v2::Request::decode(raw.as_slice()).map_err(|source| {
                RemoteError::Protobuf {
                    message: "io.prometheus.write.v2.Request",
                    source,
                }
            })?;
            validate_v2(req, limits)
        }
    }
}

/// Which message a request carries, from its `Content-Type` and `Content-Encoding` headers (415 when
/// neither remote write version nor snappy).
pub fn write_version(
    content_type: Option<&str>,
    encoding: Option<&str>,
) -> Result<WriteVersion, RemoteError> {
    let version = negotiate_version(content_type)?;
    check_encoding(encoding)?;
    Ok(version)
}

/// Picks the message from `Content-Type` (spec 2.0 "Content-Type"): `application/x-protobuf` alone or
/// with `proto=prometheus.WriteRequest` is 1.0, `proto=io.prometheus.write.v2.Request` is 2.0, anything
/// else is refused with 415 so that a 2.0 sender can fall back.
fn negotiate_version(content_type: Option<&str>) -> Result<WriteVersion, RemoteError> {
    let Some(ct) = content_type.map(str::trim).filter(|ct| !ct.is_empty()) else {
        return Ok(WriteVersion::V1);
    };
    let unsupported = || RemoteError::UnsupportedContentType(ct.to_string());
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case("application/x-protobuf") {
        return Err(unsupported());
    }
    let mut version = WriteVersion::V1;
    for param in parts.map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=').ok_or_else(unsupported)?;
        if key.trim().eq_ignore_ascii_case("proto") {
            version = match value.trim().trim_matches('"') {
                "prometheus.WriteRequest" => WriteVersion::V1,
                "io.prometheus.write.v2.Request" => WriteVersion::V2,
                _ => return Err(unsupported()),
            };
        }
    }
    Ok(version)
}

fn validate_v1(
    req: prompb::WriteRequest,
    limits: &DecodeLimits,
) -> Result<DecodedWrite, RemoteError> {
    check_series_count(req.timeseries.len(), limits)?;
    let mut out = DecodedWrite::empty(WriteVersion::V1);
    out.batch.series.reserve(req.timeseries.len());
    for (index, ts) in req.timeseries.into_iter().enumerate() {
        let invalid = |reason: String| RemoteError::InvalidSeries { index, reason };
        if !ts.histograms.is_empty() {
            return Err(RemoteError::NativeHistogram { index });
        }
        check_label_set(
            ts.labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str())),
            ts.labels.len(),
            limits,
            true,
        )
        .map_err(invalid)?;
        let labels =
            series_labels(ts.labels.into_iter().map(|l| (l.name, l.value))).map_err(invalid)?;
        let mut exemplars = Vec::with_capacity(ts.exemplars.len());
        for (j, e) in ts.exemplars.into_iter().enumerate() {
            check_label_set(
                e.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
                e.labels.len(),
                limits,
                false,
            )
            .map_err(|reason| invalid(format!("exemplar {j}: {reason}")))?;
            let labels = Labels::from_pairs(e.labels.into_iter().map(|l| (l.name, l.value)));
            exemplars.push(Exemplar {
                labels,
                value: e.value,
                t: e.timestamp,
            });
        }
        let samples: Vec<Sample> = ts
            .samples
            .iter()
            .map(|s| Sample::new(s.timestamp, s.value))
            .collect();
        out.push(SeriesWrite {
            labels,
            samples,
            exemplars,
        });
    }
    out.batch.metadata.reserve(req.metadata.len());
    for (index, m) in req.metadata.into_iter().enumerate() {
        if !is_valid_metric_name(&m.metric_family_name) {
            let reason = format!(
                "metric family name {:?} is invalid",
                excerpt(&m.metric_family_name)
            );
            return Err(RemoteError::InvalidMetadata { index, reason });
        }
        let metadata = Metadata {
            metric_type: MetricType::from_i32(m.r#type),
            help: m.help,
            unit: m.unit,
        };
        out.batch.metadata.push((m.metric_family_name, metadata));
    }
    Ok(out)
}

fn validate_v2(req: write_v2::Request, limits: &DecodeLimits) -> Result<DecodedWrite, RemoteError> {
    if let Some(first) = req.symbols.first().filter(|s| !s.is_empty()) {
        return Err(RemoteError::FirstSymbolNotEmpty(excerpt(first)));
    }
    check_series_count(req.timeseries.len(), limits)?;
    let symbols = &req.symbols;
    let mut out = DecodedWrite::empty(WriteVersion::V2);
    out.batch.series.reserve(req.timeseries.len());
    // 2.0 repeats metadata on every series of a family; keep the first, as 1.0 would send it once.
    let mut families_seen: HashSet<&str> = HashSet::new();
    for (index, ts) in req.timeseries.iter().enumerate() {
        let invalid = |reason: String| RemoteError::InvalidSeries { index, reason };
        if !ts.histograms.is_empty() {
            return Err(RemoteError::NativeHistogram { index });
        }
        let pairs = resolve_label_refs(&ts.labels_refs, symbols, limits).map_err(invalid)?;
        check_label_set(pairs.iter().copied(), pairs.len(), limits, true).map_err(invalid)?;
        let labels = series_labels(
            pairs
                .iter()
                .map(|(n, v)| ((*n).to_string(), (*v).to_string())),
        )
        .map_err(invalid)?;

        let mut exemplars = Vec::with_capacity(ts.exemplars.len());
        for (j, e) in ts.exemplars.iter().enumerate() {
            let in_exemplar = |reason: String| invalid(format!("exemplar {j}: {reason}"));
            let pairs = resolve_label_refs(&e.labels_refs, symbols, limits).map_err(in_exemplar)?;
            check_label_set(pairs.iter().copied(), pairs.len(), limits, false)
                .map_err(in_exemplar)?;
            exemplars.push(Exemplar {
                labels: Labels::from_pairs(pairs),
                value: e.value,
                t: e.timestamp,
            });
        }

        if let Some(md) = ts.metadata.filter(|m| *m != write_v2::Metadata::default()) {
            let help =
                symbol(symbols, md.help_ref).map_err(|r| invalid(format!("metadata help: {r}")))?;
            let unit =
                symbol(symbols, md.unit_ref).map_err(|r| invalid(format!("metadata unit: {r}")))?;
            let family = pairs
                .iter()
                .find(|(n, _)| *n == METRIC_NAME)
                .map(|(_, v)| *v)
                .filter(|v| !v.is_empty());
            if let Some(family) = family {
                if families_seen.insert(family) {
                    let metadata = Metadata {
                        metric_type: MetricType::from_i32(md.r#type),
                        help: help.to_string(),
                        unit: unit.to_string(),
                    };
                    out.batch.metadata.push((family.to_string(), metadata));
                }
            }
        }

        let samples: Vec<Sample> = ts
            .samples
            .iter()
            .map(|s| Sample::new(s.timestamp, s.value))
            .collect();
        out.push(SeriesWrite {
            labels,
            samples,
            exemplars,
        });
    }
    Ok(out)
}

impl DecodedWrite {
    fn empty(version: WriteVersion) -> Self {
        DecodedWrite {
            version,
            batch: WriteBatch::default(),
            samples: 0,
            exemplars: 0,
            histograms: 0,
        }
    }

    fn push(&mut self, series: SeriesWrite) {
        self.samples += series.samples.len();
        self.exemplars += series.exemplars.len();
        self.batch.series.push(series);
    }
}

pub(crate) fn check_series_count(count: usize, limits: &DecodeLimits) -> Result<(), RemoteError> {
    if count > limits.max_series {
        return Err(RemoteError::TooMany {
            what: "series",
            count,
            limit: limits.max_series,
        });
    }
    Ok(())
}

fn symbol(symbols: &[String], r: u32) -> Result<&str, String> {
    symbols.get(r as usize).map(String::as_str).ok_or_else(|| {
        format!(
            "symbol reference {r} is out of range ({} symbols)",
            symbols.len()
        )
    })
}

/// Turns 2.0 `labels_refs` into name/value pairs, counting before resolving so an oversized list
/// costs nothing.
fn resolve_label_refs<'s>(
    refs: &[u32],
    symbols: &'s [String],
    limits: &DecodeLimits,
) -> Result<Vec<(&'s str, &'s str)>, String> {
    if !refs.len().is_multiple_of(2) {
        return Err(format!(
            "labels_refs has odd length {}: it must hold name/value pairs",
            refs.len()
        ));
    }
    check_label_count(refs.len() / 2, limits)?;
    refs.chunks_exact(2)
        .map(|pair| Ok((symbol(symbols, pair[0])?, symbol(symbols, pair[1])?)))
        .collect()
}

fn check_label_count(count: usize, limits: &DecodeLimits) -> Result<(), String> {
    if count > limits.max_labels_per_series {
        return Err(format!(
            "{count} labels, over the limit of {}",
            limits.max_labels_per_series
        ));
    }
    Ok(())
}

/// Checks a label set as sent: count, name syntax, lengths, the metric name, and (for series) that names
/// are strictly increasing, which rules out both unsorted and duplicate names.
pub(crate) fn check_label_set<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
    count: usize,
    limits: &DecodeLimits,
    require_sorted: bool,
) -> Result<(), String> {
    check_label_count(count, limits)?;
    let mut prev: Option<&str> = None;
    for (name, value) in pairs {
        if name.is_empty() {
            return Err("label name is empty".to_string());
        }
        if name.len() > limits.max_label_name_len {
            return Err(format!(
                "label name {:?} is {} bytes, over the limit of {}",
                excerpt(name),
                name.len(),
                limits.max_label_name_len
            ));
        }
        if !is_valid_label_name(name) {
            return Err(format!("label name {:?} is invalid", excerpt(name)));
        }
        if value.len() > limits.max_label_value_len {
            return Err(format!(
                "label {name:?} value is {} bytes, over the limit of {}",
                value.len(),
                limits.max_label_value_len
            ));
        }
        if name == METRIC_NAME && !value.is_empty() && !is_valid_metric_name(value) {
            return Err(format!("metric name {:?} is invalid", excerpt(value)));
        }
        if require_sorted {
            if let Some(prev) = prev {
                if prev == name {
                    return Err(format!("duplicate label name {name:?}"));
                }
                if prev > name {
                    return Err(format!(
                        "labels are not sorted by name: {prev:?} comes before {name:?}"
                    ));
                }
            }
            prev = Some(name);
        }
    }
    Ok(())
}

/// Builds the series' label set from pairs already checked to be sorted and unique.
fn series_labels(pairs: impl Iterator<Item = (String, String)>) -> Result<Labels, String> {
    let labels: Vec<Label> = pairs
        .filter(|(_, v)| !v.is_empty())
        .map(|(name, value)| Label { name, value })
        .collect();
    if labels.is_empty() {
        return Err("empty label set".to_string());
    }
    Ok(Labels::from_sorted(labels))
}

/// Keeps error messages short when the offending string is huge.
pub(crate) fn excerpt(s: &str) -> String {
    const MAX_CHARS: usize = 64;
    match s.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

/// Encodes a batch as a snappy-compressed 1.0 `WriteRequest`, the body a Prometheus sender would POST.
/// A value of -0.0 arrives as 0.0: prost skips fields equal to their default, and -0.0 == 0.0.
pub fn encode_write_v1(batch: &WriteBatch) -> Result<Vec<u8>, RemoteError> {
    let req = prompb::WriteRequest {
        timeseries: batch
            .series
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
                exemplars: s
                    .exemplars
                    .iter()
                    .map(|e| prompb::Exemplar {
                        labels: labels_to_proto(&e.labels),
                        value: e.value,
                        timestamp: e.t,
                    })
                    .collect(),
                histograms: Vec::new(),
            })
            .collect(),
        metadata: batch
            .metadata
            .iter()
            .map(|(family, m)| prompb::MetricMetadata {
                r#type: m.metric_type.as_i32(),
                metric_family_name: family.clone(),
                help: m.help.clone(),
                unit: m.unit.clone(),
            })
            .collect(),
    };
    compress(&req.encode_to_vec())
}

/// Encodes a batch as a snappy-compressed 2.0 `Request`. Metadata rides on the first series whose
/// metric name equals the family name (2.0 has no family-level metadata); metadata for a family with
/// no such series in the batch is not sent.
pub fn encode_write_v2(batch: &WriteBatch) -> Result<Vec<u8>, RemoteError> {
    let mut symbols = SymbolTable::default();
    let mut metadata_sent: HashSet<&str> = HashSet::new();
    let mut timeseries = Vec::with_capacity(batch.series.len());
    for s in &batch.series {
        let metadata = s
            .labels
            .metric_name()
            .and_then(|name| batch.metadata.iter().find(|(family, _)| family == name))
            .filter(|(family, _)| metadata_sent.insert(family.as_str()))
            .map(|(_, m)| write_v2::Metadata {
                r#type: m.metric_type.as_i32(),
                help_ref: symbols.intern(&m.help),
                unit_ref: symbols.intern(&m.unit),
            });
        timeseries.push(write_v2::TimeSeries {
            labels_refs: symbols.refs(&s.labels),
            samples: s
                .samples
                .iter()
                .map(|x| write_v2::Sample {
                    value: x.v,
                    timestamp: x.t,
                    start_timestamp: 0,
                })
                .collect(),
            histograms: Vec::new(),
            exemplars: s
                .exemplars
                .iter()
                .map(|e| write_v2::Exemplar {
                    labels_refs: symbols.refs(&e.labels),
                    value: e.value,
                    timestamp: e.t,
                })
                .collect(),
            metadata,
            created_timestamp: 0,
        });
    }
    let req = write_v2::Request {
        symbols: symbols.symbols,
        timeseries,
    };
    compress(&req.encode_to_vec())
}

/// 2.0's string table, with `""` at index 0 as the spec requires.
struct SymbolTable {
    symbols: Vec<String>,
    index: std::collections::HashMap<String, u32>,
}

impl Default for SymbolTable {
    fn default() -> Self {
        SymbolTable {
            symbols: vec![String::new()],
            index: [(String::new(), 0)].into_iter().collect(),
        }
    }
}

impl SymbolTable {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&r) = self.index.get(s) {
            return r;
        }
        let r = u32::try_from(self.symbols.len()).unwrap_or(u32::MAX);
        self.symbols.push(s.to_string());
        self.index.insert(s.to_string(), r);
        r
    }

    fn refs(&mut self, labels: &Labels) -> Vec<u32> {
        labels
            .iter()
            .flat_map(|l| [self.intern(&l.name), self.intern(&l.value)])
            .collect()
    }
}
