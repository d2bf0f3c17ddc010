//! The catalog: small transactional state in sled — which blocks are live (the source of truth: a block
//! directory not listed here is debris from an interrupted write or compaction), and the series registry
//! (every series ever persisted with the time range it has data for).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::Labels;

/// What the catalog records about a block; mirrors its `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockEntry {
    pub id: String,
    pub min_time: i64,
    /// Exclusive.
    pub max_time: i64,
    pub num_series: u64,
    pub num_samples: u64,
    pub size_bytes: u64,
    pub level: u32,
}

pub struct Catalog {
    db: sled::Db,
    blocks: sled::Tree,
    series: sled::Tree,
}

impl Catalog {
    pub fn open(dir: &Path) -> Result<Catalog> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::LowSpace)
            .open()?;
        let blocks = db.open_tree("blocks")?;
        let series = db.open_tree("series")?;
        Ok(Catalog { db, blocks, series })
    }

    pub fn blocks(&self) -> Result<Vec<BlockEntry>> {
        let mut out = Vec::new();
        for kv in self.blocks.iter() {
            let (k, v) = kv?;
            let e: BlockEntry = serde_json::from_slice(&v).map_err(|e| {
                Error::corrupt(
                    "catalog/blocks",
                    format!("entry {:?}: {e}", String::from_utf8_lossy(&k)),
                )
            })?;
            out.push(e);
        }
        out.sort_by_key(|b| (b.min_time, b.max_time));
        Ok(out)
    }

    /// Adds `added` and removes `removed` atomically, then flushes: after this returns, a restart sees
    /// exactly the new set of blocks.
    pub fn replace_blocks(&self, added: &[BlockEntry], removed: &[String]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for id in removed {
            batch.remove(id.as_bytes());
        }
        for e in added {
            let v = serde_json::to_vec(e)
                .map_err(|e| Error::corrupt("catalog/blocks", e.to_string()))?;
            batch.insert(e.id.as_bytes(), v);
        }
        self.blocks.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// Records that these series have data in `[min_t, max_t]`, widening earlier ranges.
    pub fn register_series<'a>(
        &self,
        series: impl Iterator<Item = &'a Labels>,
        min_t: i64,
        max_t: i64,
    ) -> Result<()> {
        let mut batch = sled::Batch::default();
        for labels in series {
            let key = encode_labels(labels);
            let (lo, hi) = match self.series.get(&key)? {
                Some(v) if v.len() == 16 => {
                    let lo = i64::from_le_bytes(v[..8].try_into().unwrap_or_default());
                    let hi = i64::from_le_bytes(v[8..].try_into().unwrap_or_default());
                    (lo.min(min_t), hi.max(max_t))
                }
                _ => (min_t, max_t),
            };
            let mut v = Vec::with_capacity(16);
            v.extend_from_slice(&lo.to_le_bytes());
            v.extend_from_slice(&hi.to_le_bytes());
            batch.insert(key, v);
        }
        self.series.apply_batch(batch)?;
        Ok(())
    }

    /// Number of series ever persisted.
    pub fn registered_series(&self) -> usize {
        self.series.len()
    }

    /// Forgets series whose data ended before `t` (retention dropped it).
    pub fn expire_series_before(&self, t: i64) -> Result<usize> {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for kv in self.series.iter() {
            let (k, v) = kv?;
            if v.len() == 16 && i64::from_le_bytes(v[8..].try_into().unwrap_or_default()) < t {
                batch.remove(k);
                n += 1;
            }
        }
        self.series.apply_batch(batch)?;
        Ok(n)
    }

    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}

fn encode_labels(labels: &Labels) -> Vec<u8> {
    let mut k = Vec::new();
    for l in labels.iter() {
        k.extend_from_slice(l.name.as_bytes());
        k.push(0xff);
        k.extend_from_slice(l.value.as_bytes());
        k.push(0xff);
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, min: i64) -> BlockEntry {
        BlockEntry {
            id: id.into(),
            min_time: min,
            max_time: min + 10,
            num_series: 1,
            num_samples: 2,
            size_bytes: 3,
            level: 1,
        }
    }

    #[test]
    fn block_set_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Catalog::open(dir.path()).unwrap();
            c.replace_blocks(&[entry("b", 10), entry("a", 0)], &[])
                .unwrap();
            c.replace_blocks(&[entry("c", 0)], &["a".into(), "b".into()])
                .unwrap();
        }
        let c = Catalog::open(dir.path()).unwrap();
        assert_eq!(c.blocks().unwrap(), vec![entry("c", 0)]);
    }

    #[test]
    fn series_registry_widens_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(dir.path()).unwrap();
        let a = Labels::from_pairs([("__name__", "a")]);
        let b = Labels::from_pairs([("__name__", "b")]);
        c.register_series([&a, &b].into_iter(), 0, 100).unwrap();
        c.register_series([&a].into_iter(), 100, 200).unwrap();
        assert_eq!(c.registered_series(), 2);
        assert_eq!(c.expire_series_before(150).unwrap(), 1);
        assert_eq!(c.registered_series(), 1);
    }
}
