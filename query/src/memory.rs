//! An in-memory [`MetricsReader`]: series kept in a sorted map. It backs the PromQL conformance runner
//! and unit tests, and suits small embedded uses; it is not a storage engine (no WAL, no compression).

use std::collections::BTreeMap;
use std::sync::RwLock;

use strata_store::{
    Labels, Matcher, Metadata, MetricsReader, Sample, SeriesExemplars, SeriesSamples,
};

#[derive(Debug, Default)]
pub struct MemoryReader {
    series: RwLock<BTreeMap<Labels, Vec<Sample>>>,
}

impl MemoryReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds samples to a series, keeping its samples sorted by time; a sample at an existing
    /// timestamp replaces the old one.
    pub fn append(&self, labels: Labels, samples: impl IntoIterator<Item = Sample>) {
        let mut map = self.series.write().unwrap_or_else(|e| e.into_inner());
        let stored = map.entry(labels).or_default();
        for s in samples {
            match stored.binary_search_by(|x| x.t.cmp(&s.t)) {
                Ok(i) => stored[i] = s,
                Err(i) => stored.insert(i, s),
            }
        }
    }

    /// Removes every series.
    pub fn clear(&self) {
        self.series
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn matching<'a>(
        map: &'a BTreeMap<Labels, Vec<Sample>>,
        selectors: &'a [Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> impl Iterator<Item = &'a Labels> + 'a {
        map.iter()
            .filter(move |(labels, samples)| {
                let matched = selectors.is_empty()
                    || selectors
                        .iter()
                        .any(|sel| sel.iter().all(|m| m.matches_labels(labels)));
                matched && samples.iter().any(|s| s.t >= mint && s.t <= maxt)
            })
            .map(|(labels, _)| labels)
    }
}

impl MetricsReader for MemoryReader {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> strata_store::Result<Vec<SeriesSamples>> {
        let map = self.series.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for (labels, samples) in map.iter() {
            if !matchers.iter().all(|m| m.matches_labels(labels)) {
                continue;
            }
            let lo = samples.partition_point(|s| s.t < mint);
            let hi = samples.partition_point(|s| s.t <= maxt);
            if lo < hi {
                out.push(SeriesSamples {
                    labels: labels.clone(),
                    samples: samples[lo..hi].to_vec(),
                });
            }
        }
        Ok(out)
    }

    fn series(
        &self,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> strata_store::Result<Vec<Labels>> {
        let map = self.series.read().unwrap_or_else(|e| e.into_inner());
        Ok(Self::matching(&map, selectors, mint, maxt)
            .cloned()
            .collect())
    }

    fn label_names(
        &self,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> strata_store::Result<Vec<String>> {
        let map = self.series.read().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<String> = Self::matching(&map, selectors, mint, maxt)
            .flat_map(|l| l.iter().map(|l| l.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn label_values(
        &self,
        name: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> strata_store::Result<Vec<String>> {
        let map = self.series.read().unwrap_or_else(|e| e.into_inner());
        let mut values: Vec<String> = Self::matching(&map, selectors, mint, maxt)
            .filter_map(|l| l.get(name).map(str::to_string))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }

    fn exemplars(
        &self,
        _: &[Vec<Matcher>],
        _: i64,
        _: i64,
    ) -> strata_store::Result<Vec<SeriesExemplars>> {
        Ok(Vec::new())
    }

    fn metadata(&self, _: Option<&str>) -> strata_store::Result<Vec<(String, Metadata)>> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_store::MatchOp;

    #[test]
    fn select_filters_by_matchers_and_range() {
        let r = MemoryReader::new();
        r.append(
            Labels::from_pairs([("__name__", "a"), ("job", "x")]),
            [Sample::new(0, 1.0), Sample::new(10, 2.0)],
        );
        r.append(
            Labels::from_pairs([("__name__", "a"), ("job", "y")]),
            [Sample::new(20, 3.0)],
        );
        let m = [Matcher::new(MatchOp::Equal, "__name__", "a").unwrap()];
        let got = r.select(&m, 5, 15).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].samples, vec![Sample::new(10, 2.0)]);
        let m = [Matcher::new(MatchOp::Regex, "job", "x|y").unwrap()];
        assert_eq!(r.select(&m, 0, 100).unwrap().len(), 2);
    }
}
