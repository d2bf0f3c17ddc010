//! The running agent: loads and attaches the kernel programs, then moves data one way —
//! ring-buffer events and per-interval socket counters → identity → flow records, golden-signal
//! metrics and spans → the OTLP exporter — until told to stop, then flushes and detaches.
//! Also serves the agent's own `/metrics` and health endpoints.

use std::collections::BTreeMap;

use crate::hash::FastMap;
use std::collections::hash_map::Entry;
use std::future::Future;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::clock::{monotonic_now_ns, Clock, SystemClock};
use crate::config::AgentConfig;
use crate::error::{Error, Result};
use crate::event_reader::{self, EventReaderConfig, EventReaderStats};
use crate::events::{Endpoints, Event, Role};
use crate::exporter::{Exporter, ExporterStats};
use crate::flow_records::IdentitySource;
use crate::flow_records::{self, FlowAggregator};
use crate::flow_table::{spawn_tracker, FlowBatch, FlowTrackerConfig};
use crate::golden_metrics::GoldenMetrics;
use crate::identity::{Identity, Resolver, WORLD};
use crate::kernel_features::{mount_tracefs_if_absent, HostPaths, KernelFeatures};
use crate::loader::{HookState, Probes};
use crate::self_metrics;
use crate::spans::{self, SpanBatch};

/// Spans are flushed to the exporter this often; the exporter batches further.
const SPAN_FLUSH: Duration = Duration::from_secs(1);
/// How long start-up waits for the first pod and node lists, so early flows are named.
const IDENTITY_SYNC: Duration = Duration::from_secs(15);
/// The kernel's loss counters are read this often for `/metrics`.
const COUNTER_REFRESH: Duration = Duration::from_secs(5);
/// Close summaries waiting for the flow tracker: when full, the newest are dropped and counted
/// in `strata_agent_events_dropped_total{reason="tracker_full"}`.
const CLOSES_CAPACITY: usize = 65_536;

/// What the agent did, for its `/metrics`.
#[derive(Debug, Default)]
pub struct AgentStats {
    pub connections_closed: AtomicU64,
    pub http_exchanges: AtomicU64,
    pub dns_responses: AtomicU64,
    pub own_events_ignored: AtomicU64,
    pub closes_dropped: AtomicU64,
    pub flow_batches: AtomicU64,
    pub flow_records: AtomicU64,
    pub flows_dropped: AtomicU64,
    pub spans: AtomicU64,
    pub metric_series: AtomicU64,
    pub metric_series_dropped: AtomicU64,
    pub tracker_scans_skipped: AtomicU64,
    pub tracker_refresh_failures: AtomicU64,
    pub tracker_closes_dropped: AtomicU64,
    pub sock_map_entries: AtomicU64,
    pub sock_map_capacity: AtomicU64,
}

/// Everything `/metrics` and the health endpoints read.
pub struct Observed {
    pub agent: AgentStats,
    pub hooks: Mutex<BTreeMap<String, String>>,
    pub kernel_counters: Mutex<BTreeMap<&'static str, u64>>,
    /// Each kernel program's recursion misses (`Probes::recursion_misses`).
    pub program_misses: Mutex<BTreeMap<&'static str, u64>>,
    pub reader: Mutex<Option<Arc<EventReaderStats>>>,
    pub exporter: Mutex<Option<Arc<ExporterStats>>>,
    pub identity: Mutex<Option<Resolver>>,
}

impl std::fmt::Debug for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed")
            .field("agent", &self.agent)
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

impl Observed {
    fn new() -> Arc<Observed> {
        Arc::new(Observed {
            agent: AgentStats::default(),
            hooks: Mutex::new(BTreeMap::new()),
            kernel_counters: Mutex::new(BTreeMap::new()),
            program_misses: Mutex::new(BTreeMap::new()),
            reader: Mutex::new(None),
            exporter: Mutex::new(None),
            identity: Mutex::new(None),
        })
    }

    /// At least one hook is attached: the agent observes something.
    pub fn ready(&self) -> bool {
        self.hooks.lock().values().any(|state| state == "attached")
    }
}

/// The cgroup id (its directory's inode) of this process, from `/proc/self/cgroup`; `None` in the
/// root cgroup, which every unconfined process on the host shares with the agent.
fn own_cgroup_id(cgroup2: &Path) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let relative = text.lines().find_map(|line| line.strip_prefix("0::"))?;
    if relative.trim_matches('/').is_empty() {
        return None;
    }
    let path = cgroup2.join(relative.trim_start_matches('/'));
    Some(std::fs::metadata(path).ok()?.ino())
}

/// Names ends through the resolver.
impl IdentitySource for Resolver {
    /// A socket on this node: the pod its cgroup belongs to; else the pod or DNS name its address
    /// is known by (a host-network pod; a service a client reached by name that happens to run
    /// here); else the host process.
    fn local(&self, cgroup_id: u64, addr: IpAddr) -> Identity {
        let identity = Resolver::local(self, cgroup_id);
        if identity.is_pod() {
            return identity;
        }
        let by_address = Resolver::remote(self, addr, monotonic_now_ns());
        if by_address.is_pod() || (by_address.is_external() && by_address.name != WORLD) {
            by_address
        } else {
            identity
        }
    }

    fn remote(&self, addr: IpAddr) -> Identity {
        Resolver::remote(self, addr, monotonic_now_ns())
    }
}

/// How long a resolved identity is reused before the resolver is asked again: long enough that
/// a busy connection's exchanges cost no lookup, short enough that a pod or name change shows
/// within a second.
const IDENTITY_REUSE_NS: u64 = 1_000_000_000;

/// Identities of the ends seen lately, handed out as shared values: an HTTP exchange of a known
/// pair then costs no resolver lookup and no copy, and the metrics find its series by the `Arc`s.
#[derive(Default)]
struct RecentIdentities {
    local: FastMap<(u64, IpAddr), (Arc<Identity>, u64)>,
    remote: FastMap<IpAddr, (Arc<Identity>, u64)>,
}

impl RecentIdentities {
    /// Both ends of an exchange seen at a local socket of `cgroup_id`, lent rather than cloned:
    /// the per-event path then touches no reference count.
    fn ends(
        &mut self,
        resolver: &Resolver,
        cgroup_id: u64,
        endpoints: &Endpoints,
        now_ns: u64,
    ) -> (&Arc<Identity>, &Arc<Identity>) {
        let (local_addr, remote_addr) = (endpoints.local.ip(), endpoints.remote.ip());
        let local = reuse(&mut self.local, (cgroup_id, local_addr), now_ns, || {
            IdentitySource::local(resolver, cgroup_id, local_addr)
        });
        let remote = reuse(&mut self.remote, remote_addr, now_ns, || {
            IdentitySource::remote(resolver, remote_addr)
        });
        (local, remote)
    }

    /// Forgets what DNS answers may have renamed.
    fn forget_addresses(&mut self) {
        self.remote.clear();
        self.local.clear();
    }

    fn drop_expired(&mut self, now_ns: u64) {
        let fresh =
            |(_, at): &mut (Arc<Identity>, u64)| now_ns.saturating_sub(*at) < IDENTITY_REUSE_NS;
        self.local.retain(|_, entry| fresh(entry));
        self.remote.retain(|_, entry| fresh(entry));
    }
}

/// The identity of `key` resolved within the last `IDENTITY_REUSE_NS`, else resolved now.
fn reuse<K: std::hash::Hash + Eq>(
    recent: &mut FastMap<K, (Arc<Identity>, u64)>,
    key: K,
    now_ns: u64,
    resolve: impl FnOnce() -> Identity,
) -> &Arc<Identity> {
    match recent.entry(key) {
        Entry::Occupied(entry) => {
            let (identity, at) = entry.into_mut();
            if now_ns.saturating_sub(*at) >= IDENTITY_REUSE_NS {
                *identity = Arc::new(resolve());
                *at = now_ns;
            }
            identity
        }
        Entry::Vacant(entry) => &entry.insert((Arc::new(resolve()), now_ns)).0,
    }
}

/// The per-event and per-interval work, kept apart from the plumbing so it reads top-down.
struct Pipeline {
    node: String,
    clock: SystemClock,
    resolver: Resolver,
    recent: RecentIdentities,
    flows: FlowAggregator,
    metrics: GoldenMetrics,
    spans: SpanBatch,
    exporter: Exporter,
    observed: Arc<Observed>,
    /// The agent's own cgroup, whose traffic (its exports) is not observed.
    own_cgroup: Option<u64>,
}

impl Pipeline {
    fn on_event(&mut self, event: &Event) {
        let stats = &self.observed.agent;
        match event {
            Event::ConnectionClosed(closed) => {
                stats.connections_closed.fetch_add(1, Ordering::Relaxed);
                self.flows.add_close(closed);
            }
            Event::Http(exchange) => {
                stats.http_exchanges.fetch_add(1, Ordering::Relaxed);
                self.flows.add_http(exchange);
                let (local, remote) = self.recent.ends(
                    &self.resolver,
                    exchange.cgroup_id,
                    &exchange.endpoints,
                    exchange.response_ns,
                );
                let at = self.clock.unix_ns(exchange.response_ns);
                self.metrics.observe_http(exchange, local, remote, at);
                if let Some(span) = spans::span_of(exchange, &self.clock, remote) {
                    if self.spans.push(local, span) {
                        // a full batch goes now, not at the next tick: at a high span rate the
                        // exporter's queue, not this batch, bounds what is held (and counts drops)
                        self.flush_spans();
                    }
                }
            }
            Event::Dns(response) => {
                stats.dns_responses.fetch_add(1, Ordering::Relaxed);
                // Answers the client received teach the names of the addresses it will use.
                if response.role == Role::Client {
                    if let Ok(message) = &response.message {
                        self.resolver.observe_dns(message, response.response_ns);
                        self.recent.forget_addresses();
                    }
                }
                self.flows.add_dns(response);
            }
        }
    }

    fn on_batch(&mut self, batch: FlowBatch) {
        let stats = &self.observed.agent;
        stats.flow_batches.fetch_add(1, Ordering::Relaxed);
        stats
            .tracker_scans_skipped
            .fetch_add(batch.scans_skipped, Ordering::Relaxed);
        stats
            .tracker_refresh_failures
            .fetch_add(batch.refresh_failures, Ordering::Relaxed);
        stats
            .tracker_closes_dropped
            .fetch_add(batch.closes_dropped, Ordering::Relaxed);
        stats
            .sock_map_entries
            .store(batch.entries as u64, Ordering::Relaxed);
        let end_ns = self.clock.unix_ns(batch.at_ns);
        for delta in &batch.deltas {
            if Some(delta.cgroup_id) == self.own_cgroup {
                stats.own_events_ignored.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.flows.add_delta(delta);
            if delta.http.is_empty() {
                continue;
            }
            let (local, remote) = self.recent.ends(
                &self.resolver,
                delta.cgroup_id,
                &delta.endpoints,
                batch.at_ns,
            );
            for counts in &delta.http {
                stats
                    .http_exchanges
                    .fetch_add(counts.count, Ordering::Relaxed);
                self.metrics
                    .observe_http_counts(counts, local, remote, end_ns);
            }
        }
        self.recent.drop_expired(batch.at_ns);
        let records = self.flows.emit(end_ns, &self.resolver);
        for record in &records {
            self.metrics.observe_record(record, end_ns);
        }
        stats
            .flow_records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        stats
            .flows_dropped
            .store(self.flows.dropped(), Ordering::Relaxed);
        if !records.is_empty() {
            self.exporter
                .logs(vec![flow_records::to_resource_logs(&self.node, &records)]);
        }
        let metrics = self.metrics.collect(&self.node, end_ns);
        stats
            .metric_series
            .store(self.metrics.series() as u64, Ordering::Relaxed);
        stats
            .metric_series_dropped
            .store(self.metrics.dropped(), Ordering::Relaxed);
        self.exporter.metrics(vec![metrics]);
    }

    fn flush_spans(&mut self) {
        let stats = &self.observed.agent;
        stats
            .spans
            .fetch_add(self.spans.len() as u64, Ordering::Relaxed);
        if !self.spans.is_empty() {
            self.exporter.spans(self.spans.drain());
        }
    }
}

/// Runs the agent until `shutdown` completes. Fails only when nothing can be observed at all
/// (the kernel object does not load) or the configuration is invalid; a missing hook degrades.
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    config.validate()?;
    let observed = Observed::new();
    let server = match config.listen.as_str() {
        "" => None,
        listen => Some(self_metrics::serve(listen, Arc::clone(&observed)).await?),
    };
    let result = observe(config, Arc::clone(&observed), shutdown).await;
    if let Some(server) = server {
        server.abort();
    }
    result
}

async fn observe(
    config: AgentConfig,
    observed: Arc<Observed>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let paths = HostPaths::default();
    if let Err(err) = mount_tracefs_if_absent(&paths) {
        tracing::warn!(error = %err, "no tracefs: tracepoint hooks will be unavailable");
    }
    let features = KernelFeatures::detect(&paths);
    let mut probes = Probes::load(&config.kernel.loader(), &features)?;
    *observed.hooks.lock() = probes
        .hooks()
        .iter()
        .map(|(hook, state)| {
            let state = match state {
                HookState::Attached => "attached".to_owned(),
                HookState::Unavailable(_) => "unavailable".to_owned(),
                HookState::Failed(_) => "failed".to_owned(),
            };
            (hook.to_string(), state)
        })
        .collect();
    observed.agent.sock_map_capacity.store(
        u64::from(config.kernel.sock_stats_capacity),
        Ordering::Relaxed,
    );

    let node = config.node_name();
    let resolver = Resolver::start(&config.identity_config(&node)).await?;
    if !resolver.wait_synced(IDENTITY_SYNC).await {
        tracing::warn!(
            "the first pod and node lists did not arrive in time; ends are named as they arrive"
        );
    }
    *observed.identity.lock() = Some(resolver.clone());
    let exporter = Exporter::spawn(&config.exporter)?;
    *observed.exporter.lock() = Some(exporter.stats());

    let ring = probes.take_event_ring()?;
    let (mut events, reader_stats, _reader) =
        event_reader::spawn(ring, &EventReaderConfig::default())?;
    *observed.reader.lock() = Some(reader_stats);
    let clock = SystemClock::new();
    let (closes, closes_rx) = mpsc::channel(CLOSES_CAPACITY);
    let tracker_config = FlowTrackerConfig {
        interval: config.interval,
        ..FlowTrackerConfig::default()
    };
    let (mut batches, _tracker) =
        spawn_tracker(probes.take_sock_stats()?, clock, closes_rx, &tracker_config);

    let own_cgroup = match (&features.cgroup2, config.ignore_own_traffic) {
        (Some(root), true) => own_cgroup_id(root),
        _ => None,
    };
    tracing::info!(
        node = %node,
        endpoint = %config.exporter.endpoint,
        interval = ?config.interval,
        own_cgroup = ?own_cgroup,
        "agent running"
    );

    let mut pipeline = Pipeline {
        node: node.clone(),
        clock,
        resolver,
        recent: RecentIdentities::default(),
        flows: FlowAggregator::new(node, config.max_flows_per_interval),
        metrics: GoldenMetrics::new(config.metrics.clone()),
        spans: SpanBatch::new(config.max_spans_per_flush),
        exporter,
        observed: Arc::clone(&observed),
        own_cgroup,
    };
    let mut span_tick = tokio::time::interval(SPAN_FLUSH);
    let mut counter_tick = tokio::time::interval(COUNTER_REFRESH);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            batch = events.recv() => {
                let Some(batch) = batch else {
                    return Err(Error::Config("the ring-buffer reader stopped".into()));
                };
                for event in &batch {
                    if own_cgroup.is_some_and(|own| event_cgroup(event) == own) {
                        observed.agent.own_events_ignored.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if let Event::ConnectionClosed(closed) = event {
                        if closes.try_send(closed.clone()).is_err() {
                            observed.agent.closes_dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    pipeline.on_event(event);
                }
            }
            batch = batches.recv() => match batch {
                Some(batch) => pipeline.on_batch(batch),
                None => return Err(Error::Config("the flow tracker stopped".into())),
            },
            _ = span_tick.tick() => pipeline.flush_spans(),
            _ = counter_tick.tick() => {
                match probes.counters() {
                    Ok(counters) => *observed.kernel_counters.lock() = counters,
                    Err(err) => tracing::warn!(error = %err, "reading the kernel counters failed"),
                }
                *observed.program_misses.lock() = probes.recursion_misses();
            }
        }
    }
    tracing::info!("agent stopping: flushing the exporter");
    pipeline.flush_spans();
    let Pipeline { exporter, .. } = pipeline;
    exporter.shutdown(Duration::from_secs(5)).await;
    drop(probes);
    Ok(())
}

fn event_cgroup(event: &Event) -> u64 {
    match event {
        Event::ConnectionClosed(closed) => closed.cgroup_id,
        Event::Http(exchange) => exchange.cgroup_id,
        Event::Dns(response) => response.cgroup_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> Identity {
        Identity {
            name: name.into(),
            ..Identity::default()
        }
    }

    #[test]
    fn an_identity_is_reused_for_a_second_then_resolved_again() {
        let mut recent: FastMap<u8, (Arc<Identity>, u64)> = FastMap::default();
        let first = Arc::clone(reuse(&mut recent, 1, 0, || named("first")));
        let unresolvable = || -> Identity { panic!("resolved while fresh") };
        let again = reuse(&mut recent, 1, IDENTITY_REUSE_NS - 1, unresolvable);
        assert!(Arc::ptr_eq(&first, again), "the same shared value");
        let other = reuse(&mut recent, 2, IDENTITY_REUSE_NS - 1, || named("other"));
        assert_eq!(other.name, "other");
        let renamed = reuse(&mut recent, 1, IDENTITY_REUSE_NS, || named("renamed"));
        assert_eq!(renamed.name, "renamed");
        // Resolved at `IDENTITY_REUSE_NS`: fresh again from there.
        let kept = reuse(&mut recent, 1, 2 * IDENTITY_REUSE_NS - 1, unresolvable);
        assert_eq!(kept.name, "renamed");
    }
}
