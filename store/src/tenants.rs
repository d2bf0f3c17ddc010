//! Tenancy: one metrics store per tenant under `<data_dir>/<tenant>/`, opened on first use. A tenant's
//! data lives only under its own directory, so no read can cross tenants.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::metrics::{MetricsConfig, MetricsStore, StoreStats};
use crate::traces::{TraceStore, TracesConfig};

pub const DEFAULT_TENANT: &str = "default";

/// Tenant ids become directory names: only a safe alphabet, never `.` or `..`.
pub fn validate_tenant(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 150
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidTenant(id.to_owned()))
    }
}

pub struct Storage {
    data_dir: PathBuf,
    cfg: MetricsConfig,
    metrics: RwLock<HashMap<String, Arc<MetricsStore>>>,
    stats: Arc<StoreStats>,
    traces_cfg: TracesConfig,
    traces: RwLock<HashMap<String, Arc<TraceStore>>>,
}

impl Storage {
    /// Opens every tenant already on disk (so their WAL is replayed and maintenance runs).
    pub fn open(data_dir: &Path, cfg: MetricsConfig) -> Result<Storage> {
        Storage::open_with_traces(data_dir, cfg, TracesConfig::default())
    }

    pub fn open_with_traces(
        data_dir: &Path,
        cfg: MetricsConfig,
        traces_cfg: TracesConfig,
    ) -> Result<Storage> {
        fs::create_dir_all(data_dir).map_err(|e| Error::io(data_dir, e))?;
        let s = Storage {
            data_dir: data_dir.to_owned(),
            cfg,
            metrics: RwLock::new(HashMap::new()),
            stats: Arc::new(StoreStats::default()),
            traces_cfg,
            traces: RwLock::new(HashMap::new()),
        };
        for e in fs::read_dir(data_dir).map_err(|e| Error::io(data_dir, e))? {
            let e = e.map_err(|err| Error::io(data_dir, err))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().join("metrics").is_dir() && validate_tenant(&name).is_ok() {
                s.metrics_for_write(&name)?;
            }
            if e.path().join("traces").is_dir() && validate_tenant(&name).is_ok() {
                s.traces_for_write(&name)?;
            }
        }
        Ok(s)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn stats(&self) -> &Arc<StoreStats> {
        &self.stats
    }

    /// The tenant's store, created when absent.
    pub fn metrics_for_write(&self, tenant: &str) -> Result<Arc<MetricsStore>> {
        let base = self.data_dir.join(tenant);
        open_once(&self.metrics, tenant, || {
            MetricsStore::open(
                &base.join("metrics"),
                &base.join("catalog"),
                self.cfg.clone(),
                self.stats.clone(),
            )
        })
    }

    /// The tenant's store if it has ever written anything.
    pub fn metrics_for_read(&self, tenant: &str) -> Result<Option<Arc<MetricsStore>>> {
        validate_tenant(tenant)?;
        Ok(self.metrics.read().get(tenant).cloned())
    }

    pub fn tenants(&self) -> Vec<(String, Arc<MetricsStore>)> {
        sorted(&self.metrics)
    }

    pub fn close(&self) {
        for (_, s) in self.tenants() {
            s.close();
        }
        for (_, s) in self.trace_tenants() {
            s.close();
        }
    }

    /// The tenant's trace store, created when absent.
    pub fn traces_for_write(&self, tenant: &str) -> Result<Arc<TraceStore>> {
        let dir = self.data_dir.join(tenant).join("traces");
        open_once(&self.traces, tenant, || {
            TraceStore::open(&dir, self.traces_cfg.clone())
        })
    }

    /// The tenant's trace store if it has ever stored a span.
    pub fn traces_for_read(&self, tenant: &str) -> Result<Option<Arc<TraceStore>>> {
        validate_tenant(tenant)?;
        Ok(self.traces.read().get(tenant).cloned())
    }

    pub fn trace_tenants(&self) -> Vec<(String, Arc<TraceStore>)> {
        sorted(&self.traces)
    }
}

/// The tenant's entry of `map`, opened (once, under the write lock) when absent.
fn open_once<T>(
    map: &RwLock<HashMap<String, Arc<T>>>,
    tenant: &str,
    open: impl FnOnce() -> Result<T>,
) -> Result<Arc<T>> {
    validate_tenant(tenant)?;
    if let Some(s) = map.read().get(tenant) {
        return Ok(s.clone());
    }
    let mut map = map.write();
    if let Some(s) = map.get(tenant) {
        return Ok(s.clone());
    }
    let store = Arc::new(open()?);
    map.insert(tenant.to_owned(), store.clone());
    Ok(store)
}

fn sorted<T>(map: &RwLock<HashMap<String, Arc<T>>>) -> Vec<(String, Arc<T>)> {
    let mut v: Vec<_> = map
        .read()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Labels, Matcher, MetricsReader, Sample, SeriesWrite, WriteBatch};

    #[test]
    fn tenants_are_isolated_and_reopened() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Storage::open(dir.path(), MetricsConfig::default()).unwrap();
            let b = WriteBatch {
                series: vec![SeriesWrite {
                    labels: Labels::from_pairs([("__name__", "x")]),
                    samples: vec![Sample::new(1, 1.0)],
                    exemplars: vec![],
                }],
                metadata: vec![],
            };
            s.metrics_for_write("team-a").unwrap().append(&b).unwrap();
            assert!(s.metrics_for_read("team-b").unwrap().is_none());
            assert!(s.metrics_for_write("../etc").is_err());
            s.close();
        }
        let s = Storage::open(dir.path(), MetricsConfig::default()).unwrap();
        let a = s.metrics_for_read("team-a").unwrap().unwrap();
        assert_eq!(
            a.select(&[Matcher::equal("__name__", "x")], 0, 10)
                .unwrap()
                .len(),
            1
        );
        assert!(s.metrics_for_read("default").unwrap().is_none());
    }
}
