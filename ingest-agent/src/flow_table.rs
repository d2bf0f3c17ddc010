//! Reads the kernel's per-socket statistics on a timer and turns cumulative counters into deltas
//! per interval; clears entries whose socket vanished without a close (idle past a limit).
//! The kernel map sits behind [`SockStatsSource`], so the logic is tested with a fake.

use std::collections::HashMap;

use strata_ebpf::abi;

use crate::error::Result;
use crate::events::{ConnectionClosed, Endpoints, Role};

/// Where per-socket statistics come from: the kernel map in production, a fake in tests.
pub trait SockStatsSource {
    fn read_all(&mut self) -> Result<Vec<(u64, abi::SockStats)>>;
    fn remove(&mut self, sock_id: u64) -> Result<()>;
}

/// Counters of one socket over one interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowDelta {
    pub sock_id: u64,
    pub cgroup_id: u64,
    pub endpoints: Endpoints,
    pub role: Role,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub segs_out: u64,
    pub segs_in: u64,
    pub retransmits: u64,
    /// Latest smoothed and minimum RTT, when sampled.
    pub srtt_us: Option<u32>,
    pub min_rtt_us: Option<u32>,
    /// False for the final delta of a closed connection.
    pub open: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Seen {
    opened_ns: u64,
    bytes_sent: u64,
    bytes_received: u64,
    segs_out: u64,
    segs_in: u64,
    retransmits: u64,
}

impl Seen {
    fn of(stats: &abi::SockStats) -> Seen {
        Seen {
            opened_ns: stats.opened_ns,
            bytes_sent: stats.bytes_sent,
            bytes_received: stats.bytes_received,
            segs_out: u64::from(stats.segs_out),
            segs_in: u64::from(stats.segs_in),
            retransmits: u64::from(stats.retransmits),
        }
    }
}

/// The result of one scan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Sockets whose counters moved since the previous scan.
    pub deltas: Vec<FlowDelta>,
    /// Entries in the kernel map, for its fill ratio.
    pub entries: usize,
    /// Entries removed because nothing touched them for `idle_after_ns`.
    pub cleared_idle: usize,
}

#[derive(Debug)]
pub struct FlowTable {
    seen: HashMap<u64, Seen>,
    idle_after_ns: u64,
}

impl FlowTable {
    /// `idle_after_ns`: an entry untouched this long is taken for a socket whose close we missed
    /// (the LRU keeps it otherwise until pressure evicts it). A socket that was only idle comes
    /// back on its next byte, without its role and open time, so this should be long (minutes).
    pub fn new(idle_after_ns: u64) -> FlowTable {
        FlowTable {
            seen: HashMap::new(),
            idle_after_ns,
        }
    }

    /// Reads every entry, returns what changed since the last scan, and clears idle entries.
    pub fn scan(&mut self, source: &mut dyn SockStatsSource, now_ns: u64) -> Result<Scan> {
        let entries = source.read_all()?;
        let mut scan = Scan {
            entries: entries.len(),
            ..Scan::default()
        };
        let mut present = HashMap::with_capacity(entries.len());
        for (sock_id, stats) in &entries {
            let current = Seen::of(stats);
            // A different open time under the same id is a new socket at a reused address.
            let previous = self
                .seen
                .get(sock_id)
                .filter(|previous| previous.opened_ns == current.opened_ns)
                .copied()
                .unwrap_or_default();
            if let Some(delta) = delta(*sock_id, stats, &previous, &current, true) {
                scan.deltas.push(delta);
            }
            if now_ns.saturating_sub(stats.last_seen_ns) > self.idle_after_ns {
                source.remove(*sock_id)?;
                scan.cleared_idle += 1;
            } else {
                present.insert(*sock_id, current);
            }
        }
        // Sockets gone from the map were closed (their summary comes as an event) or evicted.
        self.seen = present;
        Ok(scan)
    }

    /// The last delta of a closed connection, from its close summary; forgets the socket.
    pub fn close(&mut self, closed: &ConnectionClosed) -> FlowDelta {
        let previous = self.seen.remove(&closed.sock_id).unwrap_or_default();
        let previous = if previous.opened_ns == closed.opened_ns.unwrap_or(0) {
            previous
        } else {
            Seen::default()
        };
        FlowDelta {
            sock_id: closed.sock_id,
            cgroup_id: closed.cgroup_id,
            endpoints: closed.endpoints,
            role: closed.role,
            bytes_sent: closed.bytes_sent.saturating_sub(previous.bytes_sent),
            bytes_received: closed
                .bytes_received
                .saturating_sub(previous.bytes_received),
            segs_out: u64::from(closed.segs_out).saturating_sub(previous.segs_out),
            segs_in: u64::from(closed.segs_in).saturating_sub(previous.segs_in),
            retransmits: u64::from(closed.retransmits).saturating_sub(previous.retransmits),
            srtt_us: closed.srtt_us,
            min_rtt_us: closed.min_rtt_us,
            open: false,
        }
    }

    pub fn tracked(&self) -> usize {
        self.seen.len()
    }
}

fn delta(
    sock_id: u64,
    stats: &abi::SockStats,
    previous: &Seen,
    current: &Seen,
    open: bool,
) -> Option<FlowDelta> {
    if previous == current {
        return None;
    }
    let nonzero = |value: u32| (value != 0).then_some(value);
    Some(FlowDelta {
        sock_id,
        cgroup_id: stats.cgroup_id,
        endpoints: Endpoints::from(&stats.tuple),
        role: match stats.role {
            abi::role::CLIENT => Role::Client,
            abi::role::SERVER => Role::Server,
            _ => Role::Unknown,
        },
        bytes_sent: current.bytes_sent.saturating_sub(previous.bytes_sent),
        bytes_received: current
            .bytes_received
            .saturating_sub(previous.bytes_received),
        segs_out: current.segs_out.saturating_sub(previous.segs_out),
        segs_in: current.segs_in.saturating_sub(previous.segs_in),
        retransmits: current.retransmits.saturating_sub(previous.retransmits),
        srtt_us: nonzero(stats.srtt_us),
        min_rtt_us: nonzero(stats.min_rtt_us),
        open,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{abi_address, Outcome, Transport};
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct FakeMap {
        entries: BTreeMap<u64, abi::SockStats>,
        removed: Vec<u64>,
    }

    impl SockStatsSource for FakeMap {
        fn read_all(&mut self) -> Result<Vec<(u64, abi::SockStats)>> {
            Ok(self.entries.iter().map(|(k, v)| (*k, *v)).collect())
        }
        fn remove(&mut self, sock_id: u64) -> Result<()> {
            self.entries.remove(&sock_id);
            self.removed.push(sock_id);
            Ok(())
        }
    }

    fn stats(opened_ns: u64, sent: u64, received: u64, last_seen_ns: u64) -> abi::SockStats {
        let mut stats = abi::SockStats {
            opened_ns,
            bytes_sent: sent,
            bytes_received: received,
            last_seen_ns,
            cgroup_id: 11,
            role: abi::role::CLIENT,
            ..abi::SockStats::default()
        };
        stats.tuple.local_addr = abi_address("10.0.0.2".parse().unwrap());
        stats.tuple.remote_addr = abi_address("10.0.0.1".parse().unwrap());
        stats.tuple.local_port = 40_000;
        stats.tuple.remote_port = 80;
        stats.tuple.protocol = abi::IPPROTO_TCP;
        stats
    }

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn reports_deltas_between_scans_and_nothing_when_idle() {
        let mut map = FakeMap::default();
        let mut table = FlowTable::new(60 * SECOND);
        map.entries.insert(1, stats(5, 100, 1_000, 10));
        let first = table.scan(&mut map, 20).unwrap();
        assert_eq!(first.entries, 1);
        assert_eq!(first.deltas.len(), 1);
        assert_eq!(
            (first.deltas[0].bytes_sent, first.deltas[0].bytes_received),
            (100, 1_000)
        );
        assert_eq!(first.deltas[0].endpoints.transport, Transport::Tcp);

        map.entries.insert(1, stats(5, 150, 1_000, 30));
        let second = table.scan(&mut map, 40).unwrap();
        assert_eq!(second.deltas[0].bytes_sent, 50);
        assert_eq!(second.deltas[0].bytes_received, 0);

        let third = table.scan(&mut map, 50).unwrap();
        assert!(third.deltas.is_empty(), "no movement, no delta");
    }

    #[test]
    fn a_reused_socket_address_starts_from_zero() {
        let mut map = FakeMap::default();
        let mut table = FlowTable::new(60 * SECOND);
        map.entries.insert(1, stats(5, 100, 0, 10));
        table.scan(&mut map, 20).unwrap();
        map.entries.insert(1, stats(500, 30, 0, 510));
        let scan = table.scan(&mut map, 520).unwrap();
        assert_eq!(scan.deltas[0].bytes_sent, 30);
    }

    #[test]
    fn idle_entries_are_cleared_from_the_kernel_map() {
        let mut map = FakeMap::default();
        let mut table = FlowTable::new(10 * SECOND);
        map.entries.insert(1, stats(5, 1, 1, SECOND));
        map.entries.insert(2, stats(5, 1, 1, 20 * SECOND));
        let scan = table.scan(&mut map, 21 * SECOND).unwrap();
        assert_eq!(scan.cleared_idle, 1);
        assert_eq!(map.removed, vec![1]);
        assert_eq!(table.tracked(), 1);
    }

    #[test]
    fn close_reports_what_the_last_scan_did_not() {
        let mut map = FakeMap::default();
        let mut table = FlowTable::new(60 * SECOND);
        map.entries.insert(7, stats(5, 100, 200, 10));
        table.scan(&mut map, 20).unwrap();
        let closed = ConnectionClosed {
            sock_id: 7,
            cgroup_id: 11,
            endpoints: Endpoints::from(&stats(5, 0, 0, 0).tuple),
            role: Role::Client,
            outcome: Outcome::Closed,
            opened_ns: Some(5),
            established_ns: Some(6),
            closed_ns: 30,
            bytes_sent: 120,
            bytes_received: 260,
            segs_out: 3,
            segs_in: 4,
            retransmits: 0,
            srtt_us: Some(50),
            min_rtt_us: Some(40),
        };
        let last = table.close(&closed);
        assert_eq!((last.bytes_sent, last.bytes_received), (20, 60));
        assert!(!last.open);
        assert_eq!(table.tracked(), 0);
    }
}
