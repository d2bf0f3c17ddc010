//! `strata import openmetrics`: backfills an OpenMetrics text file straight into blocks, as
//! `promtool tsdb create-blocks-from openmetrics` does, showing progress.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::Context;
use strata_store::{Labels, Metadata, Sample, Storage};

use crate::openmetrics::{Dialect, Entry, Parser};

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportSummary {
    pub series: usize,
    pub samples: u64,
    pub blocks: usize,
}

/// Reads `file` (OpenMetrics, timestamps required) and writes its samples into `tenant`'s blocks.
pub fn import_openmetrics(
    storage: &Storage,
    tenant: &str,
    file: &Path,
    progress: bool,
) -> anyhow::Result<ImportSummary> {
    let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let total = f.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = if progress {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} parsing [{bar:40}] {bytes}/{total_bytes} ({eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut reader = BufReader::with_capacity(1 << 20, f);
    let mut parser = Parser::new(Dialect::OpenMetrics);
    let mut series: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    let mut metadata: Vec<(String, Metadata)> = Vec::new();
    let mut entries = Vec::new();
    let mut line = String::new();
    let mut samples = 0u64;
    let mut last: Option<Labels> = None;
    loop {
        line.clear();
        let n = reader.read_line(&mut line).context("read failed")?;
        if n == 0 {
            parser
                .finish(&mut entries)
                .context("invalid OpenMetrics input")?;
        } else {
            bar.inc(n as u64);
            parser
                .parse_line(line.trim_end_matches('\n'), &mut entries)
                .context("invalid OpenMetrics input")?;
        }
        for e in entries.drain(..) {
            match e {
                Entry::Sample {
                    labels, t_ms, v, ..
                } => {
                    let t = t_ms.context("every sample needs a timestamp to be imported")?;
                    samples += 1;
                    // Files list a series' samples together: avoid a map lookup per sample.
                    if last.as_ref() == Some(&labels) {
                        if let Some(s) = series.get_mut(&labels) {
                            s.push(Sample::new(t, v));
                            continue;
                        }
                    }
                    series
                        .entry(labels.clone())
                        .or_default()
                        .push(Sample::new(t, v));
                    last = Some(labels);
                }
                Entry::Metadata {
                    family,
                    metadata: m,
                } => metadata.push((family, m)),
            }
        }
        if n == 0 {
            break;
        }
    }
    bar.finish_and_clear();
    for s in series.values_mut() {
        s.sort_by_key(|x| x.t);
        s.dedup_by_key(|x| x.t);
    }
    let store = storage.metrics_for_write(tenant)?;
    let blocks = store.import(&series, &metadata)?;
    Ok(ImportSummary {
        series: series.len(),
        samples,
        blocks,
    })
}
