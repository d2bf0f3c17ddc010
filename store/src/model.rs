//! The Prometheus data model as the store sees it: label sets, float samples (with the staleness
//! marker), exemplars, metric metadata, and label matchers.

use std::cmp::Ordering;
use std::fmt;
use std::hash::Hash;

use regex::Regex;

use crate::error::{Error, Result};

/// The metric name label.
pub const METRIC_NAME: &str = "__name__";

/// Bit pattern of Prometheus's staleness marker (`value.StaleNaN`). Any other NaN is an ordinary value.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as a float.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// True only for the exact staleness bit pattern.
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A label set, sorted by name with unique names. Series identity in the store.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// Builds a label set from pairs in any order; later duplicates win and empty values are dropped
    /// (Prometheus treats an empty value as an absent label).
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        let mut labels: Vec<Label> = pairs
            .into_iter()
            .map(|(n, v)| Label::new(n, v))
            .filter(|l| !l.value.is_empty())
            .collect();
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        labels.dedup_by(|later, earlier| {
            if later.name == earlier.name {
                std::mem::swap(&mut earlier.value, &mut later.value);
                true
            } else {
                false
            }
        });
        Labels(labels)
    }

    /// Wraps labels already sorted by name, unique and non-empty (checked in debug builds).
    pub fn from_sorted(labels: Vec<Label>) -> Self {
        debug_assert!(
            labels.windows(2).all(|w| w[0].name < w[1].name),
            "labels not sorted/unique"
        );
        Labels(labels)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    /// A 128-bit hash (XXH3) of the label set, used as its identity in the head: at 128 bits the chance
    /// that two of even a billion label sets collide is about 10^-21, so lookups need not compare
    /// labels — which, with interned strings, cost a cache miss per label.
    pub fn identity_hash(&self) -> u128 {
        hash_label_pairs(self.0.iter().map(|l| (l.name.as_str(), l.value.as_str())))
    }

    /// Bytes of heap and inline storage this label set holds (for memory accounting).
    pub fn size_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.0.capacity() * std::mem::size_of::<Label>()
            + self
                .0
                .iter()
                .map(|l| l.name.capacity() + l.value.capacity())
                .sum::<usize>()
    }
}

impl Ord for Labels {
    /// Prometheus's `labels.Compare`: pairwise by name then value; a prefix sorts first.
    fn cmp(&self, other: &Self) -> Ordering {
        for (a, b) in self.0.iter().zip(other.0.iter()) {
            match a.name.cmp(&b.name).then_with(|| a.value.cmp(&b.value)) {
                Ordering::Equal => continue,
                o => return o,
            }
        }
        self.0.len().cmp(&other.0.len())
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        f.write_str("}")
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The identity hash of a label set given as sorted, unique pairs with no empty value: the same for a
/// [`Labels`] and for the same pairs borrowed from a request body.
pub fn hash_label_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u128 {
    thread_local! {
        // One-shot XXH3 over a copy is several times faster than feeding the streaming hasher a few
        // bytes at a time; the buffer is reused so hashing allocates nothing.
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.clear();
        for (name, value) in pairs {
            buf.extend_from_slice(name.as_bytes());
            buf.push(0xff);
            buf.extend_from_slice(value.as_bytes());
            buf.push(0xff);
        }
        xxhash_rust::xxh3::xxh3_128(&buf)
    })
}

/// What the ingest path needs of a series' label set: its identity, and the labels themselves only when
/// the series is new. Decoders can hand over labels borrowed from a request body, so a sample of a known
/// series costs no allocation.
pub trait SeriesLabels {
    fn identity_hash(&self) -> u128;
    fn to_labels(&self) -> Labels;
}

impl SeriesLabels for Labels {
    fn identity_hash(&self) -> u128 {
        Labels::identity_hash(self)
    }
    fn to_labels(&self) -> Labels {
        self.clone()
    }
}

/// Label pairs borrowed from a request body: sorted by name, unique, with no empty value (checked in
/// debug builds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelPairs<'a>(pub &'a [(&'a str, &'a str)]);

impl SeriesLabels for LabelPairs<'_> {
    fn identity_hash(&self) -> u128 {
        debug_assert!(
            self.0.windows(2).all(|w| w[0].0 < w[1].0) && self.0.iter().all(|p| !p.1.is_empty())
        );
        hash_label_pairs(self.0.iter().copied())
    }
    fn to_labels(&self) -> Labels {
        Labels::from_sorted(self.0.iter().map(|&(n, v)| Label::new(n, v)).collect())
    }
}

/// One series of an append, however its labels were decoded.
pub struct SeriesInput<'s> {
    pub labels: &'s dyn SeriesLabels,
    pub samples: &'s [Sample],
    pub exemplars: &'s [Exemplar],
}

/// One float sample: milliseconds since the epoch and a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t: i64,
    pub v: f64,
}

impl Sample {
    pub fn new(t: i64, v: f64) -> Self {
        Sample { t, v }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub labels: Labels,
    pub value: f64,
    pub t: i64,
}

/// Metric family type, numbered as in Prometheus's remote-write `MetricMetadata.MetricType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MetricType {
    #[default]
    Unknown,
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
}

impl MetricType {
    pub fn from_i32(v: i32) -> Self {
        match v {
            1 => MetricType::Counter,
            2 => MetricType::Gauge,
            3 => MetricType::Histogram,
            4 => MetricType::GaugeHistogram,
            5 => MetricType::Summary,
            6 => MetricType::Info,
            7 => MetricType::StateSet,
            _ => MetricType::Unknown,
        }
    }

    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The name the Prometheus HTTP API uses in `/api/v1/metadata`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Unknown => "unknown",
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            _ => MetricType::Unknown,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Metadata {
    pub metric_type: MetricType,
    pub help: String,
    pub unit: String,
}

/// Samples, exemplars of one series in one write.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesWrite {
    pub labels: Labels,
    pub samples: Vec<Sample>,
    pub exemplars: Vec<Exemplar>,
}

/// One decoded, validated write (a remote-write request, an OTLP export, an import batch).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    pub series: Vec<SeriesWrite>,
    /// Metric family name → metadata.
    pub metadata: Vec<(String, Metadata)>,
}

impl WriteBatch {
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

/// A label matcher. Regexes are fully anchored, as in Prometheus.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Matcher {
    pub fn new(op: MatchOp, name: impl Into<String>, value: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let value = value.into();
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                Regex::new(&format!("^(?s:{value})$"))
                    .map_err(|e| Error::InvalidMatcher(format!("{name}=~{value:?}: {e}")))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name,
            op,
            value,
            re,
        })
    }

    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Matcher {
            name: name.into(),
            op: MatchOp::Equal,
            value: value.into(),
            re: None,
        }
    }

    /// Does a label value (empty when the label is absent) satisfy the matcher?
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => self.value == value,
            MatchOp::NotEqual => self.value != value,
            MatchOp::Regex => self.re.as_ref().is_some_and(|r| r.is_match(value)),
            MatchOp::NotRegex => !self.re.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }

    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matches(labels.get(&self.name).unwrap_or(""))
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        };
        write!(f, "{}{}{:?}", self.name, op, self.value)
    }
}

/// A series and its samples in a time range, as read for a query.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSamples {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// Exemplars of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesExemplars {
    pub labels: Labels,
    pub exemplars: Vec<Exemplar>,
}

/// What queries need from the metrics store: the seam between `query`/`api` and storage.
/// Every method takes an inclusive millisecond range `[mint, maxt]`.
pub trait MetricsReader: Send + Sync {
    /// Series matching all matchers with their samples in range, sorted by labels. Series with no
    /// sample in range are left out.
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<SeriesSamples>>;

    /// The series [`select`](MetricsReader::select) returns, in the same order, handed to `f` one at a
    /// time so that only one series' samples need be in memory. An error from `f` stops the walk and
    /// is returned. The default collects the selection first.
    fn select_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        f: &mut dyn FnMut(SeriesSamples) -> Result<()>,
    ) -> Result<()> {
        for s in self.select(matchers, mint, maxt)? {
            f(s)?;
        }
        Ok(())
    }

    /// Label sets of series matching any of the selectors (each a conjunction of matchers) that have
    /// data overlapping the range, sorted and unique. An empty `selectors` matches every series.
    fn series(&self, selectors: &[Vec<Matcher>], mint: i64, maxt: i64) -> Result<Vec<Labels>>;

    /// Sorted label names of the series `series` would return. Derived from `series` unless an
    /// implementation has a faster way.
    fn label_names(&self, selectors: &[Vec<Matcher>], mint: i64, maxt: i64) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .series(selectors, mint, maxt)?
            .iter()
            .flat_map(|l| l.iter().map(|x| x.name.clone()).collect::<Vec<_>>())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Sorted values of one label over the series `series` would return. Derived from `series` unless
    /// an implementation has a faster way.
    fn label_values(
        &self,
        name: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        let mut values: Vec<String> = self
            .series(selectors, mint, maxt)?
            .iter()
            .filter_map(|l| l.get(name).map(str::to_owned))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }

    /// Exemplars of matching series in range.
    fn exemplars(
        &self,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesExemplars>>;

    /// Metadata by metric family name.
    fn metadata(&self, metric: Option<&str>) -> Result<Vec<(String, Metadata)>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_sort_and_dedup() {
        let l = Labels::from_pairs([("b", "1"), ("a", "2"), ("b", "3"), ("c", "")]);
        assert_eq!(l.as_slice(), &[Label::new("a", "2"), Label::new("b", "3")]);
        assert_eq!(l.get("b"), Some("3"));
        assert_eq!(l.get("c"), None);
    }

    #[test]
    fn label_order_matches_prometheus() {
        let a = Labels::from_pairs([("a", "1")]);
        let b = Labels::from_pairs([("a", "1"), ("b", "1")]);
        let c = Labels::from_pairs([("a", "2")]);
        assert!(a < b && b < c);
    }

    #[test]
    fn regex_matchers_are_anchored() {
        let m = Matcher::new(MatchOp::Regex, "job", "node|api").unwrap();
        assert!(m.matches("node") && m.matches("api") && !m.matches("nodes"));
        let m = Matcher::new(MatchOp::NotRegex, "job", "n.*").unwrap();
        assert!(!m.matches("node") && m.matches(""));
        assert!(Matcher::new(MatchOp::Regex, "job", "(").is_err());
    }

    #[test]
    fn borrowed_and_owned_labels_hash_alike() {
        let owned = Labels::from_pairs([("__name__", "up"), ("job", "node")]);
        let borrowed = LabelPairs(&[("__name__", "up"), ("job", "node")]);
        assert_eq!(
            SeriesLabels::identity_hash(&owned),
            borrowed.identity_hash()
        );
        assert_eq!(borrowed.to_labels(), owned);
        let other = LabelPairs(&[("__name__", "upj"), ("ob", "node")]);
        assert_ne!(other.identity_hash(), borrowed.identity_hash());
    }

    #[test]
    fn stale_nan_is_distinct_from_nan() {
        assert!(is_stale_nan(stale_nan()));
        assert!(!is_stale_nan(f64::NAN));
    }
}
