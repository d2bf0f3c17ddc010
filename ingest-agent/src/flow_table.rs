//! Reads the kernel's per-socket statistics on a timer and turns cumulative counters into deltas
//! per interval, adding the last delta of each closed connection from its close summary; clears
//! entries whose socket vanished without a close (idle past a limit). HTTP exchanges the kernel
//! counted per socket come the same way, as counts per (method, status, role) and latency bucket.
//! The kernel map sits behind
//! [`SockStatsSource`] and time behind [`Clock`], so the logic is tested with fakes.

use std::collections::HashMap;
use std::time::Duration;

use strata_ebpf::abi;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::error::Result;
use crate::events::{ConnectionClosed, Endpoints, Role};
use crate::http::Method;

/// Where per-socket statistics come from: the kernel map in production, a fake in tests.
pub trait SockStatsSource {
    /// Brings the open sockets' counters up to date before a read; when it fails they stay as
    /// of each socket's last state change, and the read goes on.
    fn refresh(&mut self) -> Result<()> {
        Ok(())
    }
    fn read_all(&mut self) -> Result<Vec<(u64, abi::SockStats)>>;
    fn remove(&mut self, sock_id: u64) -> Result<()>;
    /// Starts the next interval of the HTTP slots' latency maximum; called after each read.
    fn advance_http_epoch(&mut self) -> Result<()> {
        Ok(())
    }
}

/// HTTP exchanges of one (method, status, role) on one socket over one interval, as the kernel
/// counted them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCounts {
    pub role: Role,
    pub method: Method,
    pub status: u16,
    pub count: u64,
    pub latency_sum_ns: u64,
    /// The largest latency of the interval, µs.
    pub latency_max_us: u32,
    /// Exchanges per latency bucket: the bounds of the `http.*.request.duration` histograms,
    /// then above the last.
    pub buckets: [u64; abi::HTTP_BUCKETS],
}

impl HttpCounts {
    /// What `now` counted since `before`, a read of the same slot; `None` when nothing.
    fn since(now: &abi::HttpSlot, before: &abi::HttpSlot) -> Option<HttpCounts> {
        if now.status == 0 {
            return None;
        }
        let method = Method::from_abi(now.method)?;
        // A slot keeps its combination for the socket's life; another one, or a count that
        // went back, is a new entry for the socket (evicted and tracked again): from zero.
        let same = before.status == now.status
            && before.method == now.method
            && before.role == now.role
            && before.count <= now.count;
        let zero = abi::HttpSlot::default();
        let before = if same { before } else { &zero };
        let count = now.count - before.count;
        if count == 0 {
            return None;
        }
        Some(HttpCounts {
            role: Role::from_abi(now.role),
            method,
            status: now.status,
            count: u64::from(count),
            latency_sum_ns: now.latency_sum_ns.wrapping_sub(before.latency_sum_ns),
            latency_max_us: now.latency_max_us,
            buckets: std::array::from_fn(|i| {
                u64::from(now.buckets[i].wrapping_sub(before.buckets[i]))
            }),
        })
    }
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
    /// Mean of the smoothed RTTs sampled in the interval (the latest one when none was), and the
    /// minimum RTT, when known.
    pub srtt_us: Option<u32>,
    pub min_rtt_us: Option<u32>,
    /// False for the final delta of a closed connection.
    pub open: bool,
    /// HTTP exchanges the kernel counted on the socket in the interval.
    pub http: Vec<HttpCounts>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Seen {
    opened_ns: u64,
    bytes_sent: u64,
    bytes_received: u64,
    segs_out: u64,
    segs_in: u64,
    retransmits: u64,
    rtt_samples: u32,
    srtt_sum_us: u32,
    http: [abi::HttpSlot; abi::HTTP_SLOTS],
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
            rtt_samples: stats.rtt_samples,
            srtt_sum_us: stats.srtt_sum_us,
            http: stats.http,
        }
    }

    fn http_since(&self, previous: &Seen) -> Vec<HttpCounts> {
        self.http
            .iter()
            .zip(&previous.http)
            .filter_map(|(now, before)| HttpCounts::since(now, before))
            .collect()
    }

    /// Whether `self` is the same socket as `known`, read again. The kernel's counters are the
    /// socket's own totals since it opened, so they never go back; an entry the kernel evicted and
    /// tracks again mid-connection comes back without its open time (0) and with totals that
    /// continue. A different open time, or totals that went back, is a new socket at a reused
    /// address.
    fn continues(&self, known: &Seen) -> bool {
        (self.opened_ns == known.opened_ns || self.opened_ns == 0)
            && known.bytes_sent <= self.bytes_sent
            && known.bytes_received <= self.bytes_received
    }

    /// The mean smoothed RTT of the samples taken since `previous`, else `latest`: a snapshot at
    /// the end of the interval would miss the rise that a lost segment causes and that decays
    /// within a few round trips.
    fn srtt_since(&self, previous: &Seen, latest: u32) -> Option<u32> {
        let samples = self.rtt_samples.wrapping_sub(previous.rtt_samples);
        if samples == 0 {
            return (latest != 0).then_some(latest);
        }
        Some(self.srtt_sum_us.wrapping_sub(previous.srtt_sum_us) / samples)
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
    /// The refresh before the read failed: open sockets' counters may lag.
    pub refresh_failed: bool,
}

/// A socket as the table last knew it.
#[derive(Clone, Copy, Debug)]
struct Tracked {
    seen: Seen,
    /// Scans in a row that did not find the socket in the kernel map.
    missed_scans: u32,
    /// Its close summary was reported; the entry stays only to recognise a scan that still
    /// reads the kernel entry, which the kernel deletes just after emitting the summary.
    closed: bool,
}

/// How many scans a socket that left the kernel map is remembered for. The kernel deletes the
/// entry when it emits the close summary, and a scan may run before the tracker has read that
/// summary from the ring: without the last counters the scan saw, the close would report the
/// connection's whole life again.
const GONE_GRACE_SCANS: u32 = 3;

#[derive(Debug)]
pub struct FlowTable {
    seen: HashMap<u64, Tracked>,
    idle_after_ns: u64,
}

impl FlowTable {
    /// `idle_after_ns`: an entry untouched this long is taken for a socket whose close we missed
    /// (the LRU keeps it otherwise until pressure evicts it). The kernel's refresh, which each
    /// scan runs before its read, marks every open socket seen, idle or not; without it (the
    /// iterator not attached) a socket that was only idle comes back on its next byte, without
    /// its role and open time, so this should be long (minutes).
    pub fn new(idle_after_ns: u64) -> FlowTable {
        FlowTable {
            seen: HashMap::new(),
            idle_after_ns,
        }
    }

    /// Reads every entry, returns what changed since the last scan, and clears idle entries.
    pub fn scan(&mut self, source: &mut dyn SockStatsSource, now_ns: u64) -> Result<Scan> {
        let refresh_failed = source.refresh().is_err();
        let entries = source.read_all()?;
        source.advance_http_epoch()?;
        let mut scan = Scan {
            entries: entries.len(),
            refresh_failed,
            ..Scan::default()
        };
        let mut present = HashMap::with_capacity(entries.len());
        for (sock_id, stats) in &entries {
            let current = Seen::of(stats);
            let known = self
                .seen
                .get(sock_id)
                .filter(|known| current.continues(&known.seen))
                .copied();
            if let Some(known) = known.filter(|known| known.closed) {
                // Read between the close summary and the kernel's delete: already reported.
                present.insert(*sock_id, known);
                continue;
            }
            let previous = known.map(|known| known.seen).unwrap_or_default();
            if let Some(delta) = delta(*sock_id, stats, &previous, &current, true) {
                scan.deltas.push(delta);
            }
            if now_ns.saturating_sub(stats.last_seen_ns) > self.idle_after_ns {
                source.remove(*sock_id)?;
                scan.cleared_idle += 1;
            } else {
                present.insert(
                    *sock_id,
                    Tracked {
                        seen: current,
                        missed_scans: 0,
                        closed: false,
                    },
                );
            }
        }
        // Sockets gone from the map were closed (their summary comes as an event, perhaps
        // after this scan) or evicted: remembered for a few scans, then forgotten.
        for (sock_id, mut gone) in self.seen.drain() {
            gone.missed_scans += 1;
            if gone.missed_scans <= GONE_GRACE_SCANS {
                present.entry(sock_id).or_insert(gone);
            }
        }
        self.seen = present;
        Ok(scan)
    }

    /// The last delta of a closed connection, from its close summary.
    pub fn close(&mut self, closed: &ConnectionClosed) -> FlowDelta {
        let last = Seen {
            opened_ns: closed.opened_ns.unwrap_or(0),
            bytes_sent: closed.bytes_sent,
            bytes_received: closed.bytes_received,
            segs_out: u64::from(closed.segs_out),
            segs_in: u64::from(closed.segs_in),
            retransmits: u64::from(closed.retransmits),
            rtt_samples: closed.rtt_samples,
            srtt_sum_us: closed.srtt_sum_us,
            http: closed.http,
        };
        let previous = self
            .seen
            .get(&closed.sock_id)
            .filter(|known| !known.closed && last.continues(&known.seen))
            .map(|known| known.seen)
            .unwrap_or_default();
        self.seen.insert(
            closed.sock_id,
            Tracked {
                seen: last,
                missed_scans: 0,
                closed: true,
            },
        );
        FlowDelta {
            sock_id: closed.sock_id,
            cgroup_id: closed.cgroup_id,
            endpoints: closed.endpoints,
            role: closed.role,
            bytes_sent: last.bytes_sent.saturating_sub(previous.bytes_sent),
            bytes_received: last.bytes_received.saturating_sub(previous.bytes_received),
            segs_out: last.segs_out.saturating_sub(previous.segs_out),
            segs_in: last.segs_in.saturating_sub(previous.segs_in),
            retransmits: last.retransmits.saturating_sub(previous.retransmits),
            srtt_us: last.srtt_since(&previous, closed.srtt_us.unwrap_or(0)),
            min_rtt_us: closed.min_rtt_us,
            open: false,
            http: last.http_since(&previous),
        }
    }

    /// Open sockets the table follows (not those only remembered after their close).
    pub fn tracked(&self) -> usize {
        self.seen
            .values()
            .filter(|known| !known.closed && known.missed_scans == 0)
            .count()
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
        role: Role::from_abi(stats.role),
        bytes_sent: current.bytes_sent.saturating_sub(previous.bytes_sent),
        bytes_received: current
            .bytes_received
            .saturating_sub(previous.bytes_received),
        segs_out: current.segs_out.saturating_sub(previous.segs_out),
        segs_in: current.segs_in.saturating_sub(previous.segs_in),
        retransmits: current.retransmits.saturating_sub(previous.retransmits),
        srtt_us: current.srtt_since(previous, stats.srtt_us),
        min_rtt_us: nonzero(stats.min_rtt_us),
        open,
        http: current.http_since(previous),
    })
}

/// One interval of flow counters, from the tracker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowBatch {
    /// When the scan ran (monotonic ns).
    pub at_ns: u64,
    /// Open sockets that moved, then connections closed since the previous batch.
    pub deltas: Vec<FlowDelta>,
    /// Entries in the kernel map at the scan, for its fill ratio.
    pub entries: usize,
    pub cleared_idle: usize,
    /// Close summaries dropped because too many waited for the next batch.
    pub closes_dropped: u64,
    /// Scans skipped because the consumer had not taken the previous batches.
    pub scans_skipped: u64,
    /// Scans whose refresh of the open sockets' counters failed (0 or 1 per batch).
    pub refresh_failures: u64,
}

#[derive(Clone, Debug)]
pub struct FlowTrackerConfig {
    pub interval: Duration,
    pub idle_after: Duration,
    /// Close deltas held between two batches.
    pub max_pending_closes: usize,
    /// Batches waiting for the consumer.
    pub batch_capacity: usize,
}

impl Default for FlowTrackerConfig {
    fn default() -> Self {
        FlowTrackerConfig {
            interval: Duration::from_secs(10),
            idle_after: Duration::from_secs(600),
            max_pending_closes: 65_536,
            batch_capacity: 4,
        }
    }
}

/// Scans `source` every `interval` and folds in the close summaries arriving on `closes`.
///
/// Batches: `batch_capacity`; when full: the scan is skipped and counted in the next batch —
/// nothing is lost, because the kernel counters keep accumulating and the next scan's deltas
/// include them. Pending closes: `max_pending_closes`; when full: dropped and counted. Scans run
/// on the blocking pool: they are one syscall per entry. Stops when the batch receiver is dropped.
pub fn spawn_tracker<S, C>(
    source: S,
    clock: C,
    closes: mpsc::Receiver<ConnectionClosed>,
    config: &FlowTrackerConfig,
) -> (mpsc::Receiver<FlowBatch>, JoinHandle<()>)
where
    S: SockStatsSource + Send + 'static,
    C: Clock + Send + 'static,
{
    let (tx, rx) = mpsc::channel(config.batch_capacity.max(1));
    let handle = tokio::spawn(track(source, clock, closes, tx, config.clone()));
    (rx, handle)
}

async fn track<S, C>(
    source: S,
    clock: C,
    mut closes: mpsc::Receiver<ConnectionClosed>,
    batches: mpsc::Sender<FlowBatch>,
    config: FlowTrackerConfig,
) where
    S: SockStatsSource + Send + 'static,
    C: Clock + Send + 'static,
{
    let idle_after_ns = u64::try_from(config.idle_after.as_nanos()).unwrap_or(u64::MAX);
    let mut state = Some((FlowTable::new(idle_after_ns), source));
    let mut pending = FlowBatch::default();
    let mut closes_open = true;
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate; the first scan is one interval in
    loop {
        tokio::select! {
            () = batches.closed() => return,
            close = closes.recv(), if closes_open => match close {
                Some(closed) => {
                    let Some((table, _)) = state.as_mut() else { return };
                    let last = table.close(&closed);
                    if pending.deltas.len() < config.max_pending_closes {
                        pending.deltas.push(last);
                    } else {
                        pending.closes_dropped += 1;
                    }
                }
                None => closes_open = false,
            },
            _ = ticker.tick() => {
                if batches.capacity() == 0 {
                    pending.scans_skipped += 1;
                    continue;
                }
                let Some((mut table, mut source)) = state.take() else { return };
                let now = clock.monotonic_ns();
                let scanned = tokio::task::spawn_blocking(move || {
                    let scan = table.scan(&mut source, now);
                    (table, source, scan)
                })
                .await;
                let Ok((table, source, scan)) = scanned else {
                    tracing::error!("flow table scan panicked; the tracker stops");
                    return;
                };
                state = Some((table, source));
                let scan = match scan {
                    Ok(scan) => scan,
                    Err(err) => {
                        tracing::warn!(error = %err, "reading sock_stats failed; retrying next interval");
                        continue;
                    }
                };
                let closed = std::mem::take(&mut pending);
                let mut deltas = scan.deltas;
                deltas.extend(closed.deltas);
                let batch = FlowBatch {
                    at_ns: now,
                    deltas,
                    entries: scan.entries,
                    cleared_idle: scan.cleared_idle,
                    closes_dropped: closed.closes_dropped,
                    scans_skipped: closed.scans_skipped,
                    refresh_failures: u64::from(scan.refresh_failed),
                };
                // Capacity was checked above and this task is the only sender.
                if batches.try_send(batch).is_err() {
                    return;
                }
            }
        }
    }
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
        /// Refreshes, reads, and the epoch advances after them, in order.
        calls: Vec<&'static str>,
        refresh_fails: bool,
    }

    impl SockStatsSource for FakeMap {
        fn refresh(&mut self) -> Result<()> {
            self.calls.push("refresh");
            if self.refresh_fails {
                return Err(crate::error::Error::Config("refresh failed".into()));
            }
            Ok(())
        }
        fn read_all(&mut self) -> Result<Vec<(u64, abi::SockStats)>> {
            self.calls.push("read");
            Ok(self.entries.iter().map(|(k, v)| (*k, *v)).collect())
        }
        fn remove(&mut self, sock_id: u64) -> Result<()> {
            self.entries.remove(&sock_id);
            self.removed.push(sock_id);
            Ok(())
        }
        fn advance_http_epoch(&mut self) -> Result<()> {
            self.calls.push("advance");
            Ok(())
        }
    }

    /// A slot as the kernel fills it: `latencies_us` counted in their buckets.
    fn slot(method: u8, status: u16, role: u8, latencies_us: &[u32]) -> abi::HttpSlot {
        let mut slot = abi::HttpSlot {
            status,
            method,
            role,
            ..abi::HttpSlot::default()
        };
        for &latency in latencies_us {
            let seconds = f64::from(latency) / 1e6;
            let bucket = crate::golden_metrics::HTTP_BUCKETS.partition_point(|b| *b < seconds);
            slot.buckets[bucket] += 1;
            slot.count += 1;
            slot.latency_sum_ns += u64::from(latency) * 1_000;
            slot.latency_max_us = slot.latency_max_us.max(latency);
        }
        slot
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

    /// The close summary of socket `sock_id` opened at 5 ns by `stats`.
    fn closed(sock_id: u64, sent: u64, received: u64) -> ConnectionClosed {
        ConnectionClosed {
            sock_id,
            cgroup_id: 11,
            endpoints: Endpoints::from(&stats(5, 0, 0, 0).tuple),
            role: Role::Client,
            outcome: Outcome::Closed,
            opened_ns: Some(5),
            established_ns: Some(6),
            closed_ns: 30,
            bytes_sent: sent,
            bytes_received: received,
            segs_out: 3,
            segs_in: 4,
            retransmits: 0,
            srtt_us: None,
            min_rtt_us: None,
            rtt_samples: 0,
            srtt_sum_us: 0,
            http: Default::default(),
        }
    }

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
    fn rtt_is_the_mean_of_the_interval_samples_across_the_sum_wrapping() {
        let mut map = FakeMap::default();
        let mut table = FlowTable::new(60 * SECOND);
        let sampled = |sent: u64, samples: u32, sum: u32, latest: u32| abi::SockStats {
            rtt_samples: samples,
            srtt_sum_us: sum,
            srtt_us: latest,
            ..stats(5, sent, 0, 10)
        };
        // A spike inside the interval that has decayed by its end still raises the mean.
        map.entries.insert(1, sampled(10, 4, u32::MAX - 999, 500));
        table.scan(&mut map, 20).unwrap();
        map.entries.insert(1, sampled(20, 8, 7_000, 500));
        let scan = table.scan(&mut map, 40).unwrap();
        assert_eq!(scan.deltas[0].srtt_us, Some(2_000), "(1000 + 7000) / 4");
        // Without a sample in the interval, the latest value stands.
        map.entries.insert(1, sampled(30, 8, 7_000, 450));
        let scan = table.scan(&mut map, 60).unwrap();
        assert_eq!(scan.deltas[0].srtt_us, Some(450));
        // The close summary continues the same sums.
        let closed = ConnectionClosed {
            srtt_us: Some(450),
            rtt_samples: 10,
            srtt_sum_us: 8_000,
            ..closed(1, 30, 0)
        };
        assert_eq!(table.close(&closed).srtt_us, Some(500));
    }

    #[test]
    fn a_failed_refresh_is_reported_and_the_scan_goes_on() {
        let mut map = FakeMap {
            refresh_fails: true,
            ..FakeMap::default()
        };
        map.entries.insert(1, stats(5, 100, 1_000, 10));
        let scan = FlowTable::new(60 * SECOND).scan(&mut map, 20).unwrap();
        assert!(scan.refresh_failed);
        assert_eq!(scan.deltas.len(), 1, "{scan:?}");
        assert_eq!(scan.deltas[0].bytes_sent, 100);
    }

    #[test]
    fn http_counted_in_the_kernel_is_reported_per_slot_and_interval() {
        use abi::http_method::{GET, POST};
        let mut map = FakeMap::default();
        let mut table = FlowTable::new(60 * SECOND);
        let mut entry = stats(5, 100, 1_000, 10);
        entry.http[0] = slot(GET, 200, abi::role::CLIENT, &[3_000, 40_000]);
        map.entries.insert(1, entry);
        let first = table.scan(&mut map, 20).unwrap();
        assert_eq!(
            map.calls,
            ["refresh", "read", "advance"],
            "counters are refreshed before the read, the epoch moves after it"
        );
        assert!(!first.refresh_failed);
        let counts = &first.deltas[0].http;
        assert_eq!(counts.len(), 1);
        assert_eq!(
            (counts[0].role, counts[0].method, counts[0].status),
            (Role::Client, Method::Get, 200)
        );
        assert_eq!(counts[0].count, 2);
        assert_eq!(counts[0].latency_sum_ns, 43_000_000);
        assert_eq!(counts[0].latency_max_us, 40_000);
        assert_eq!((counts[0].buckets[0], counts[0].buckets[3]), (1, 1));
        assert_eq!(counts[0].buckets.iter().sum::<u64>(), 2);

        // One more GET 200, a first POST 500 in another slot; the kernel restarted the first
        // slot's maximum at the new epoch.
        let mut next = entry;
        next.http[0] = slot(GET, 200, abi::role::CLIENT, &[3_000, 40_000, 7_000]);
        next.http[0].latency_max_us = 7_000;
        next.http[1] = slot(POST, 500, abi::role::CLIENT, &[900_000]);
        map.entries.insert(1, next);
        let second = table.scan(&mut map, 40).unwrap();
        let counts = &second.deltas[0].http;
        assert_eq!(counts.len(), 2);
        assert_eq!((counts[0].count, counts[0].latency_sum_ns), (1, 7_000_000));
        assert_eq!(counts[0].latency_max_us, 7_000);
        assert_eq!(counts[0].buckets[1], 1, "7 ms is in (5 ms, 10 ms]");
        assert_eq!((counts[1].method, counts[1].status), (Method::Post, 500));
        assert_eq!(counts[1].buckets[9], 1, "0.9 s is in (0.75 s, 1 s]");

        // The close reports what the last scan did not.
        let mut last = next;
        last.http[1] = slot(POST, 500, abi::role::CLIENT, &[900_000, 20_000]);
        let closed = ConnectionClosed {
            http: last.http,
            ..closed(1, 100, 1_000)
        };
        let rest = table.close(&closed);
        assert_eq!(rest.http.len(), 1);
        assert_eq!((rest.http[0].status, rest.http[0].count), (500, 1));
        assert_eq!(rest.http[0].latency_sum_ns, 20_000_000);
    }

    #[test]
    fn an_http_slot_tracked_again_after_eviction_counts_from_zero() {
        use abi::http_method::GET;
        let mut map = FakeMap::default();
        let mut table = FlowTable::new(60 * SECOND);
        let mut entry = stats(5, 100, 1_000, 10);
        entry.http[0] = slot(GET, 200, abi::role::SERVER, &[1_000, 1_000, 1_000]);
        map.entries.insert(1, entry);
        table.scan(&mut map, 20).unwrap();
        // Evicted and tracked again late: bytes continue, the slots start over.
        let mut again = stats(0, 150, 1_100, 30);
        again.http[0] = slot(GET, 200, abi::role::SERVER, &[2_000]);
        map.entries.insert(1, again);
        let scan = table.scan(&mut map, 40).unwrap();
        let counts = &scan.deltas[0].http;
        assert_eq!(counts.len(), 1);
        assert_eq!((counts[0].count, counts[0].role), (1, Role::Server));
        assert_eq!(counts[0].latency_sum_ns, 2_000_000);
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
        let closed = closed(7, 120, 260);
        let last = table.close(&closed);
        assert_eq!((last.bytes_sent, last.bytes_received), (20, 60));
        assert!(!last.open);
        assert_eq!(table.tracked(), 0);
    }

    #[test]
    fn a_close_read_after_the_entry_left_the_map_reports_only_the_rest() {
        let mut map = FakeMap::default();
        let mut table = FlowTable::new(60 * SECOND);
        map.entries.insert(7, stats(5, 100, 200, 10));
        table.scan(&mut map, 20).unwrap();
        // The kernel deleted the entry as it emitted the summary; a scan ran before the
        // tracker read the summary.
        map.entries.clear();
        assert!(table.scan(&mut map, 30).unwrap().deltas.is_empty());
        let last = table.close(&closed(7, 120, 260));
        assert_eq!((last.bytes_sent, last.bytes_received), (20, 60));
    }

    #[test]
    fn an_entry_read_after_its_close_was_reported_is_not_counted_again() {
        let mut map = FakeMap::default();
        let mut table = FlowTable::new(60 * SECOND);
        map.entries.insert(7, stats(5, 100, 200, 10));
        table.scan(&mut map, 20).unwrap();
        let last = table.close(&closed(7, 120, 260));
        assert_eq!((last.bytes_sent, last.bytes_received), (20, 60));
        // The scan read the entry before the kernel's delete.
        map.entries.insert(7, stats(5, 120, 260, 30));
        assert!(table.scan(&mut map, 40).unwrap().deltas.is_empty());
        // A new socket at the same address counts from zero.
        map.entries.insert(7, stats(50, 9, 0, 60));
        let scan = table.scan(&mut map, 70).unwrap();
        assert_eq!(scan.deltas[0].bytes_sent, 9);
    }

    #[test]
    fn sockets_gone_from_the_map_are_forgotten_after_a_few_scans() {
        let mut map = FakeMap::default();
        let mut table = FlowTable::new(60 * SECOND);
        map.entries.insert(7, stats(5, 100, 200, 10));
        table.scan(&mut map, 20).unwrap();
        map.entries.clear();
        for at in 0..=GONE_GRACE_SCANS {
            table.scan(&mut map, 30 + u64::from(at)).unwrap();
        }
        assert!(table.seen.is_empty());
        // A close that comes later still has its summary, counted from zero.
        let last = table.close(&closed(7, 120, 260));
        assert_eq!(last.bytes_sent, 120);
    }

    #[test]
    fn counters_that_went_back_start_from_zero() {
        let mut map = FakeMap::default();
        let mut table = FlowTable::new(60 * SECOND);
        map.entries.insert(7, stats(5, 100, 200, 10));
        table.scan(&mut map, 20).unwrap();
        map.entries.insert(7, stats(5, 30, 0, 30));
        let scan = table.scan(&mut map, 40).unwrap();
        assert_eq!(scan.deltas[0].bytes_sent, 30);
    }

    #[test]
    fn an_evicted_entry_tracked_again_continues_from_what_was_seen() {
        let mut map = FakeMap::default();
        let mut table = FlowTable::new(60 * SECOND);
        map.entries.insert(7, stats(5, 100, 200, 10));
        table.scan(&mut map, 20).unwrap();
        // Evicted, then tracked again from a segment: no open time, the socket's totals.
        map.entries.insert(7, stats(0, 130, 200, 30));
        let scan = table.scan(&mut map, 40).unwrap();
        assert_eq!(
            (scan.deltas[0].bytes_sent, scan.deltas[0].bytes_received),
            (30, 0)
        );
        let mut summary = closed(7, 150, 210);
        summary.opened_ns = None;
        let last = table.close(&summary);
        assert_eq!((last.bytes_sent, last.bytes_received), (20, 10));
    }

    mod tracker {
        use super::*;
        use crate::clock::ManualClock;
        use std::sync::{Arc, Mutex};

        /// A fake map shared with the test, so it can change between scans.
        #[derive(Clone, Default)]
        struct SharedMap(Arc<Mutex<FakeMap>>);

        impl SockStatsSource for SharedMap {
            fn read_all(&mut self) -> Result<Vec<(u64, abi::SockStats)>> {
                self.0.lock().unwrap().read_all()
            }
            fn remove(&mut self, sock_id: u64) -> Result<()> {
                self.0.lock().unwrap().remove(sock_id)
            }
        }

        #[tokio::test(start_paused = true)]
        async fn batches_scans_and_closes_each_interval() {
            let map = SharedMap::default();
            map.0
                .lock()
                .unwrap()
                .entries
                .insert(1, stats(5, 100, 0, 10));
            let (closes_tx, closes) = mpsc::channel(16);
            let config = FlowTrackerConfig {
                interval: Duration::from_secs(10),
                ..FlowTrackerConfig::default()
            };
            let (mut batches, _task) =
                spawn_tracker(map.clone(), ManualClock::default(), closes, &config);

            let first = batches.recv().await.expect("a batch");
            assert_eq!(first.entries, 1);
            assert_eq!(first.deltas.len(), 1);
            assert_eq!(first.deltas[0].bytes_sent, 100);

            // Socket 1 closes with 30 more bytes; its entry leaves the kernel map.
            map.0.lock().unwrap().entries.clear();
            closes_tx.send(closed(1, 130, 0)).await.unwrap();
            let second = batches.recv().await.expect("a batch");
            assert_eq!(second.entries, 0);
            assert_eq!(second.deltas.len(), 1);
            assert!(!second.deltas[0].open);
            assert_eq!(second.deltas[0].bytes_sent, 30);
        }

        #[tokio::test(start_paused = true)]
        async fn a_slow_consumer_skips_scans_without_losing_counts() {
            let map = SharedMap::default();
            map.0
                .lock()
                .unwrap()
                .entries
                .insert(1, stats(5, 100, 0, 10));
            let (_closes_tx, closes) = mpsc::channel(16);
            let config = FlowTrackerConfig {
                interval: Duration::from_secs(10),
                batch_capacity: 1,
                ..FlowTrackerConfig::default()
            };
            let (mut batches, _task) =
                spawn_tracker(map.clone(), ManualClock::default(), closes, &config);
            // Nobody reads for a while: one batch waits, the next scans are skipped.
            tokio::time::sleep(Duration::from_secs(35)).await;
            map.0
                .lock()
                .unwrap()
                .entries
                .insert(1, stats(5, 500, 0, 20));
            let first = batches.recv().await.expect("the waiting batch");
            assert_eq!(first.deltas[0].bytes_sent, 100);
            let next = batches.recv().await.expect("the next scan");
            assert!(next.scans_skipped >= 1, "{next:?}");
            assert_eq!(
                next.deltas[0].bytes_sent, 400,
                "the skipped intervals' bytes"
            );
        }
    }
}
