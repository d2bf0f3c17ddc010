//! Decompressed block pages, shared by the open blocks of a store and bounded in bytes. A dashboard
//! repeats its queries over the same blocks; without the cache each run decompresses its pages
//! again, and with one small cache per block a query over many series evicts its own pages before
//! it is done. Metrics blocks share the process's [`PageCache::global`]; a trace store has its own
//! cache of decoded row groups.
//!
//! Least recently used pages go first. Eviction runs when an insert passes the capacity and frees
//! down to seven eighths of it, so its sort is paid once per many inserts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

/// Capacity until [`PageCache::set_capacity`] is called: 256 MiB.
pub const DEFAULT_CAPACITY_BYTES: u64 = 256 << 20;

/// What a cached page costs in memory.
pub trait Weigh {
    fn weight(&self) -> u64;
}

impl Weigh for Arc<Vec<u8>> {
    fn weight(&self) -> u64 {
        self.len() as u64
    }
}

/// Which block's page: the block's key from [`PageCache::block_key`], and the page number.
type Key = (u64, u32);

struct Entry<V> {
    page: V,
    weight: u64,
    last_used: u64,
}

struct Pages<V> {
    entries: HashMap<Key, Entry<V>>,
    bytes: u64,
    clock: u64,
}

/// Pages of type `V`, by block and page number.
pub struct PageCache<V = Arc<Vec<u8>>> {
    pages: Mutex<Pages<V>>,
    capacity: AtomicU64,
    next_block: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Counters of a cache, for self-monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCacheStats {
    pub hits: u64,
    pub misses: u64,
    pub bytes: u64,
    pub pages: usize,
    pub capacity: u64,
}

impl PageCache {
    /// The process's cache, which metrics blocks use.
    pub fn global() -> &'static PageCache {
        static GLOBAL: OnceLock<PageCache> = OnceLock::new();
        GLOBAL.get_or_init(|| PageCache::new(DEFAULT_CAPACITY_BYTES))
    }
}

impl<V: Clone + Weigh> PageCache<V> {
    pub fn new(capacity_bytes: u64) -> PageCache<V> {
        PageCache {
            pages: Mutex::new(Pages {
                entries: HashMap::new(),
                bytes: 0,
                clock: 0,
            }),
            capacity: AtomicU64::new(capacity_bytes),
            next_block: AtomicU64::new(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Sets the bound; 0 keeps nothing. Pages over a lowered bound leave at the next insert.
    pub fn set_capacity(&self, bytes: u64) {
        self.capacity.store(bytes, Ordering::Relaxed);
    }

    /// A key for a newly opened block, never given out before in this process.
    pub fn block_key(&self) -> u64 {
        self.next_block.fetch_add(1, Ordering::Relaxed)
    }

    pub fn get(&self, block: u64, page: u32) -> Option<V> {
        let mut pages = self.pages.lock();
        pages.clock += 1;
        let now = pages.clock;
        match pages.entries.get_mut(&(block, page)) {
            Some(entry) => {
                entry.last_used = now;
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(entry.page.clone())
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    pub fn insert(&self, block: u64, page: u32, data: V) {
        let capacity = self.capacity.load(Ordering::Relaxed);
        let size = data.weight();
        if size > capacity {
            return;
        }
        let mut pages = self.pages.lock();
        pages.clock += 1;
        let now = pages.clock;
        let entry = Entry {
            page: data,
            weight: size,
            last_used: now,
        };
        if let Some(old) = pages.entries.insert((block, page), entry) {
            pages.bytes -= old.weight;
        }
        pages.bytes += size;
        if pages.bytes > capacity {
            evict(&mut pages, capacity - capacity / 8);
        }
    }

    /// Drops a block's pages, when the block is closed.
    pub fn forget_block(&self, block: u64) {
        let mut pages = self.pages.lock();
        let mut freed = 0;
        pages.entries.retain(|&(b, _), entry| {
            let keep = b != block;
            if !keep {
                freed += entry.weight;
            }
            keep
        });
        pages.bytes -= freed;
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.pages.lock().bytes
    }

    pub fn stats(&self) -> PageCacheStats {
        let pages = self.pages.lock();
        PageCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bytes: pages.bytes,
            pages: pages.entries.len(),
            capacity: self.capacity.load(Ordering::Relaxed),
        }
    }
}

/// Removes the least recently used pages until at most `target` bytes remain.
fn evict<V>(pages: &mut Pages<V>, target: u64) {
    let mut by_age: Vec<(u64, Key, u64)> = pages
        .entries
        .iter()
        .map(|(&key, entry)| (entry.last_used, key, entry.weight))
        .collect();
    by_age.sort_unstable();
    for (_, key, size) in by_age {
        if pages.bytes <= target {
            break;
        }
        pages.entries.remove(&key);
        pages.bytes -= size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(len: usize, fill: u8) -> Arc<Vec<u8>> {
        Arc::new(vec![fill; len])
    }

    #[test]
    fn stays_within_its_bytes_and_keeps_what_was_used_last() {
        let cache: PageCache = PageCache::new(1000);
        let block = cache.block_key();
        for i in 0..5 {
            cache.insert(block, i, page(200, i as u8));
        }
        assert_eq!(cache.stats().bytes, 1000);
        // Page 0 is used again, so page 1 is now the oldest.
        assert_eq!(cache.get(block, 0).unwrap()[0], 0);
        cache.insert(block, 5, page(200, 5));
        let stats = cache.stats();
        assert!(stats.bytes <= 1000 - 1000 / 8, "{stats:?}");
        assert!(cache.get(block, 0).is_some(), "recently used page kept");
        assert!(cache.get(block, 5).is_some(), "newest page kept");
        assert!(
            cache.get(block, 1).is_none(),
            "least recently used page evicted"
        );
    }

    #[test]
    fn blocks_do_not_share_pages_and_forgetting_one_frees_its_bytes() {
        let cache: PageCache = PageCache::new(1 << 20);
        let (a, b) = (cache.block_key(), cache.block_key());
        assert_ne!(a, b);
        cache.insert(a, 0, page(100, 1));
        cache.insert(b, 0, page(300, 2));
        assert_eq!(cache.get(a, 0).unwrap()[0], 1);
        assert_eq!(cache.get(b, 0).unwrap()[0], 2);
        cache.forget_block(b);
        assert!(cache.get(b, 0).is_none());
        assert_eq!(cache.stats().bytes, 100);
        // Inserting the same page again replaces it without counting it twice.
        cache.insert(a, 0, page(50, 3));
        assert_eq!(cache.stats().bytes, 50);
    }

    #[test]
    fn a_zero_capacity_keeps_nothing() {
        let cache: PageCache = PageCache::new(0);
        let block = cache.block_key();
        cache.insert(block, 0, page(10, 0));
        assert!(cache.get(block, 0).is_none());
        assert_eq!(cache.stats().bytes, 0);
    }
}
