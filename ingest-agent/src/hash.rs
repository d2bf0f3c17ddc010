//! The maps of the per-event path (recent identities, flows of the interval, metric series): keyed
//! by addresses and ports that the network chooses, so hashed with a per-process random seed, but
//! by foldhash rather than the standard library's SipHash, which took a tenth of the agent's user
//! space at 20k requests/s.

/// A `HashMap` with foldhash's randomly seeded hasher.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
