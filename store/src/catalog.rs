//! The catalog: small transactional state in sled — which blocks are live (the source of truth: a block
//! directory not listed here is debris from an interrupted write or compaction), and the series registry:
//! for each live block, the series it holds, as sorted 64-bit label hashes, delta-coded and compressed.
//! One entry per block rather than per series, because sled spends ~170 bytes of disk per entry — more
//! than a 2-hour block spends on the samples of a series.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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
    /// Label hashes of the block's series, sorted (kept in the `series` tree, not in this JSON).
    #[serde(skip)]
    pub series: Vec<u64>,
}

pub struct Catalog {
    db: sled::Db,
    blocks: sled::Tree,
    series: sled::Tree,
}

impl Catalog {
    pub fn open(dir: &Path) -> Result<Catalog> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let db = open_db(dir)?;
        let blocks = db.open_tree("blocks")?;
        let series = db.open_tree("series")?;
        let c = Catalog { db, blocks, series };
        c.drop_orphans()?;
        Ok(c)
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
    /// exactly the new set of blocks. The series registry is updated first; an entry left behind by a
    /// crash between the two steps names a block that does not exist and is dropped at the next open.
    pub fn replace_blocks(&self, added: &[BlockEntry], removed: &[String]) -> Result<()> {
        let mut series = sled::Batch::default();
        for id in removed {
            series.remove(id.as_bytes());
        }
        for e in added {
            series.insert(e.id.as_bytes(), encode_hashes(&e.series));
        }
        self.series.apply_batch(series)?;
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

    /// Distinct series held by the live blocks.
    pub fn registered_series(&self) -> Result<usize> {
        let mut all = std::collections::HashSet::new();
        for kv in self.series.iter() {
            let (k, v) = kv?;
            if self.blocks.contains_key(&k)? {
                all.extend(decode_hashes(&v).map_err(|e| Error::corrupt("catalog/series", e))?);
            }
        }
        Ok(all.len())
    }

    /// Drops registry entries of blocks that are not live (left by a crash mid-replace).
    fn drop_orphans(&self) -> Result<()> {
        let mut batch = sled::Batch::default();
        for kv in self.series.iter() {
            let (k, _) = kv?;
            if !self.blocks.contains_key(&k)? {
                batch.remove(k);
            }
        }
        self.series.apply_batch(batch)?;
        Ok(())
    }

    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}

/// Opens the sled database, waiting out a previous handle's file lock: sled releases it from a background
/// thread after the last handle is dropped, so a store reopened in the same process (a tenant closed and
/// opened again) can find it still held for a moment. Another process holding it is an error after 5 s.
fn open_db(dir: &Path) -> Result<sled::Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::Config::new()
            .path(dir)
            .mode(sled::Mode::LowSpace)
            .open()
        {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return Ok(other?),
        }
    }
}

/// Sorted hashes as delta varints, zstd-compressed.
fn encode_hashes(hashes: &[u64]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(hashes.len() * 8);
    let mut prev = 0u64;
    for &h in hashes {
        crate::encoding::put_uvarint(&mut raw, h.wrapping_sub(prev));
        prev = h;
    }
    zstd::bulk::compress(&raw, 3).unwrap_or(raw)
}

fn decode_hashes(bytes: &[u8]) -> std::result::Result<Vec<u64>, String> {
    let raw = zstd::stream::decode_all(bytes).map_err(|e| e.to_string())?;
    let mut d = crate::encoding::Decoder::new(&raw);
    let mut out = Vec::new();
    let mut prev = 0u64;
    while !d.is_empty() {
        prev = prev.wrapping_add(d.uvarint().map_err(|e| e.to_string())?);
        out.push(prev);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, min: i64, series: Vec<u64>) -> BlockEntry {
        BlockEntry {
            id: id.into(),
            min_time: min,
            max_time: min + 10,
            num_series: series.len() as u64,
            num_samples: 2,
            size_bytes: 3,
            level: 1,
            series,
        }
    }

    #[test]
    fn block_set_and_registry_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Catalog::open(dir.path()).unwrap();
            c.replace_blocks(
                &[entry("b", 10, vec![1, 5]), entry("a", 0, vec![1, 2])],
                &[],
            )
            .unwrap();
            assert_eq!(c.registered_series().unwrap(), 3);
            c.replace_blocks(
                &[entry("c", 0, vec![2, u64::MAX])],
                &["a".into(), "b".into()],
            )
            .unwrap();
        }
        let c = Catalog::open(dir.path()).unwrap();
        let blocks = c.blocks().unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].id, "c");
        assert_eq!(c.registered_series().unwrap(), 2);
    }

    #[test]
    fn orphaned_registry_entries_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Catalog::open(dir.path()).unwrap();
            let mut b = sled::Batch::default();
            b.insert("ghost", encode_hashes(&[1, 2, 3]));
            c.series.apply_batch(b).unwrap();
            c.flush().unwrap();
        }
        let c = Catalog::open(dir.path()).unwrap();
        assert_eq!(c.series.len(), 0);
        assert_eq!(c.registered_series().unwrap(), 0);
    }
}
