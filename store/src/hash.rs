//! A fast hasher for maps whose keys come from our own data (not from a party that could choose keys
//! to collide): one xxh3 call per `write`, seeded by the state so far. SipHash, the standard maps'
//! default, is built against hash flooding and cost most of the lookups it served (trace dictionaries,
//! flow field names and keys); `xxhash_rust`'s own builder copies its secret per hasher.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

#[derive(Default, Clone, Copy)]
pub struct Xxh3Hasher(u64);

impl std::hash::Hasher for Xxh3Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }
    fn write_u8(&mut self, b: u8) {
        self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(29) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
    fn finish(&self) -> u64 {
        let h = self.0;
        h ^ (h >> 32)
    }
}

pub type FastBuildHasher = BuildHasherDefault<Xxh3Hasher>;
pub type FastMap<K, V> = HashMap<K, V, FastBuildHasher>;
