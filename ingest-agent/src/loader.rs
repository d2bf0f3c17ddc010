//! Loads the kernel object with aya and attaches each hook on its own: a hook the kernel lacks,
//! or one that fails to load, is logged with what is lost without it and skipped; the rest run
//! (degraded mode, never a crash). Dropping [`Probes`] detaches every link and unloads.
//! Hands out the maps; knows nothing of what the events mean.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::time::Duration;

use aya::maps::{HashMap as KernelHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, TracePoint};
use aya::Btf;
use aya::{Ebpf, EbpfLoader};
use strata_ebpf::abi::{self, Counter};
use strata_ebpf::object::{self, global, map, program};

use crate::error::{Error, Result};
use crate::flow_table::SockStatsSource;
use crate::kernel_features::KernelFeatures;

/// Sizes and tunables of the kernel side.
#[derive(Clone, Debug)]
pub struct LoaderConfig {
    /// Ring buffer for events; a power of two, at least one page.
    pub ring_buffer_bytes: u32,
    /// Live TCP sockets tracked at once (LRU beyond).
    pub sock_stats_capacity: u32,
    /// DNS queries awaiting their response (LRU beyond).
    pub dns_pending_capacity: u32,
    /// Minimum spacing of RTT samples per socket.
    pub rtt_sample_interval: Duration,
    /// Attach the tp_btf programs where the kernel takes them (else only classic tracepoints).
    pub btf_tracepoints: bool,
}

impl LoaderConfig {
    pub const DEFAULT_RING_BUFFER_BYTES: u32 = 8 << 20;
    pub const DEFAULT_SOCK_STATS_CAPACITY: u32 = 65_536;
    pub const DEFAULT_DNS_PENDING_CAPACITY: u32 = 16_384;
    pub const DEFAULT_RTT_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

    pub fn validate(&self) -> Result<()> {
        if !self.ring_buffer_bytes.is_power_of_two() || self.ring_buffer_bytes < 4096 {
            return Err(Error::Config(format!(
                "ring_buffer_bytes = {}: must be a power of two of at least 4096",
                self.ring_buffer_bytes
            )));
        }
        if self.sock_stats_capacity == 0 || self.dns_pending_capacity == 0 {
            return Err(Error::Config(
                "sock_stats_capacity and dns_pending_capacity must be positive".into(),
            ));
        }
        Ok(())
    }

    /// A writer wakes the reader once a quarter of the ring is unread: early enough that the
    /// reader drains well before the ring fills, late enough to batch hundreds of records.
    fn wakeup_bytes(&self) -> u64 {
        u64::from(self.ring_buffer_bytes / 4)
    }
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            ring_buffer_bytes: Self::DEFAULT_RING_BUFFER_BYTES,
            sock_stats_capacity: Self::DEFAULT_SOCK_STATS_CAPACITY,
            dns_pending_capacity: Self::DEFAULT_DNS_PENDING_CAPACITY,
            rtt_sample_interval: Self::DEFAULT_RTT_SAMPLE_INTERVAL,
            btf_tracepoints: true,
        }
    }
}

/// Each attachment the agent makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    InetSockSetState,
    TcpRetransmitSkb,
    TcpProbe,
    CgroupIngress,
    CgroupEgress,
}

enum AttachPoint {
    Tracepoint {
        category: &'static str,
        name: &'static str,
    },
    Cgroup(CgroupSkbAttachType),
}

impl Hook {
    pub const ALL: [Hook; 5] = [
        Hook::InetSockSetState,
        Hook::TcpRetransmitSkb,
        Hook::TcpProbe,
        Hook::CgroupIngress,
        Hook::CgroupEgress,
    ];

    fn program(self) -> &'static str {
        match self {
            Hook::InetSockSetState => program::INET_SOCK_SET_STATE,
            Hook::TcpRetransmitSkb => program::TCP_RETRANSMIT_SKB,
            Hook::TcpProbe => program::TCP_PROBE,
            Hook::CgroupIngress => program::CGROUP_INGRESS,
            Hook::CgroupEgress => program::CGROUP_EGRESS,
        }
    }

    /// The tp_btf twin of a tracepoint program and its tracepoint, tried first: the kernel hands
    /// it the tracepoint's arguments without building the classic trace record.
    fn btf_program(self) -> Option<(&'static str, &'static str)> {
        match self {
            Hook::TcpProbe => Some((program::TCP_PROBE_BTF, "tcp_probe")),
            _ => None,
        }
    }

    fn attach_point(self) -> AttachPoint {
        let tracepoint = |category, name| AttachPoint::Tracepoint { category, name };
        match self {
            Hook::InetSockSetState => tracepoint("sock", "inet_sock_set_state"),
            Hook::TcpRetransmitSkb => tracepoint("tcp", "tcp_retransmit_skb"),
            Hook::TcpProbe => tracepoint("tcp", "tcp_probe"),
            Hook::CgroupIngress => AttachPoint::Cgroup(CgroupSkbAttachType::Ingress),
            Hook::CgroupEgress => AttachPoint::Cgroup(CgroupSkbAttachType::Egress),
        }
    }

    /// Tracepoint programs read kernel structs through CO-RE and need kernel BTF; the cgroup_skb
    /// programs read only packets.
    fn needs_btf(self) -> bool {
        matches!(self.attach_point(), AttachPoint::Tracepoint { .. })
    }

    /// What the agent cannot see while this hook is missing, for the log line.
    pub fn loses(self) -> &'static str {
        match self {
            Hook::InetSockSetState => {
                "TCP connection opens, closes, failed connects and exact bytes at close"
            }
            Hook::TcpRetransmitSkb => "TCP retransmits",
            Hook::TcpProbe => "bytes and sampled RTT of open connections (both at close remain)",
            Hook::CgroupIngress => "HTTP and DNS seen arriving (server requests, client responses)",
            Hook::CgroupEgress => "HTTP and DNS seen leaving (client requests, server responses)",
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.attach_point() {
            AttachPoint::Tracepoint { category, name } => write!(f, "tracepoint {category}:{name}"),
            AttachPoint::Cgroup(CgroupSkbAttachType::Ingress) => f.write_str("cgroup_skb/ingress"),
            AttachPoint::Cgroup(CgroupSkbAttachType::Egress) => f.write_str("cgroup_skb/egress"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookState {
    Attached,
    /// The kernel or host does not offer what the hook needs.
    Unavailable(String),
    /// It was there, but loading or attaching failed.
    Failed(String),
}

/// The loaded object and its attachments. Links live inside `ebpf`; dropping it detaches them.
pub struct Probes {
    ebpf: Ebpf,
    hooks: BTreeMap<Hook, HookState>,
    /// The program attached for each attached hook.
    programs: BTreeMap<Hook, &'static str>,
}

impl fmt::Debug for Probes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probes")
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

impl Probes {
    /// Loads the embedded object and attaches every hook the host allows.
    ///
    /// Fails only when the object as a whole cannot be loaded (its maps cannot be created);
    /// a single hook's failure is reported in [`Probes::hooks`] and logged.
    pub fn load(config: &LoaderConfig, features: &KernelFeatures) -> Result<Probes> {
        config.validate()?;
        if !features.btf {
            tracing::warn!(
                "no kernel BTF at /sys/kernel/btf/vmlinux: CO-RE tracepoint programs stay \
                 unloaded; TCP connection data is unavailable"
            );
        }
        let rtt_interval = u64::try_from(config.rtt_sample_interval.as_nanos()).unwrap_or(u64::MAX);
        let wakeup = config.wakeup_bytes();
        // EbpfLoader::new() takes BTF from /sys/kernel/btf/vmlinux; it is never replaced with
        // `btf(None)`, which would silently skip the CO-RE relocations.
        let ebpf = EbpfLoader::new()
            .map_max_entries(map::EVENTS, config.ring_buffer_bytes)
            .map_max_entries(map::SOCK_STATS, config.sock_stats_capacity)
            .map_max_entries(map::DNS_PENDING, config.dns_pending_capacity)
            .override_global(global::RTT_SAMPLE_INTERVAL_NS, &rtt_interval, true)
            .override_global(global::RINGBUF_WAKEUP_BYTES, &wakeup, true)
            .load(object::object())
            .map_err(|err| Error::Load(Box::new(err)))?;
        // Parsed kernel BTF is tens of MiB: kept only while attaching.
        let btf = (features.btf && config.btf_tracepoints)
            .then(|| {
                Btf::from_sys_fs()
                    .map_err(|err| tracing::warn!(error = %err, "kernel BTF unreadable: no tp_btf programs"))
                    .ok()
            })
            .flatten();
        let mut probes = Probes {
            ebpf,
            hooks: BTreeMap::new(),
            programs: BTreeMap::new(),
        };
        for hook in Hook::ALL {
            let state = probes.attach(hook, features, btf.as_ref());
            match &state {
                HookState::Attached => tracing::info!(%hook, "attached"),
                HookState::Unavailable(why) => tracing::warn!(
                    %hook, reason = %why, degraded = hook.loses(),
                    "hook unavailable; running without it"
                ),
                HookState::Failed(why) => tracing::error!(
                    %hook, error = %why, degraded = hook.loses(),
                    "hook failed to attach; running without it"
                ),
            }
            probes.hooks.insert(hook, state);
        }
        Ok(probes)
    }

    fn attach(&mut self, hook: Hook, features: &KernelFeatures, btf: Option<&Btf>) -> HookState {
        if hook.needs_btf() && !features.btf {
            return HookState::Unavailable("kernel BTF missing".into());
        }
        if let (Some((name, tracepoint)), Some(btf)) = (hook.btf_program(), btf) {
            match attach_btf_tracepoint(&mut self.ebpf, name, tracepoint, btf) {
                Ok(()) => {
                    self.programs.insert(hook, name);
                    return HookState::Attached;
                }
                Err(why) => tracing::info!(
                    %hook, reason = %why,
                    "tp_btf program not attached; using the classic tracepoint"
                ),
            }
        }
        let Some(program) = self.ebpf.program_mut(hook.program()) else {
            return HookState::Failed(format!("program {} not in the object", hook.program()));
        };
        let outcome = match hook.attach_point() {
            AttachPoint::Tracepoint { category, name } => {
                if !features.has_tracepoint(category, name) {
                    let why = match &features.tracefs {
                        Some(tracefs) => format!("not under {}", tracefs.display()),
                        None => "no tracefs mounted".to_owned(),
                    };
                    return HookState::Unavailable(why);
                }
                let program: &mut TracePoint = match program.try_into() {
                    Ok(program) => program,
                    Err(err) => return HookState::Failed(err.to_string()),
                };
                program
                    .load()
                    .and_then(|()| program.attach(category, name).map(drop))
            }
            AttachPoint::Cgroup(attach_type) => {
                let Some(root) = &features.cgroup2 else {
                    return HookState::Unavailable("no cgroup2 hierarchy mounted".into());
                };
                let cgroup = match File::open(root) {
                    Ok(cgroup) => cgroup,
                    Err(err) => return HookState::Failed(format!("{}: {err}", root.display())),
                };
                let program: &mut CgroupSkb = match program.try_into() {
                    Ok(program) => program,
                    Err(err) => return HookState::Failed(err.to_string()),
                };
                // Single: the kernel makes bpf_link attachments multi-attach already and rejects
                // the ALLOW_MULTI flag on them.
                program.load().and_then(|()| {
                    program
                        .attach(&cgroup, attach_type, CgroupAttachMode::Single)
                        .map(drop)
                })
            }
        };
        match outcome {
            Ok(()) => {
                self.programs.insert(hook, hook.program());
                HookState::Attached
            }
            Err(err) => HookState::Failed(describe_program_error(&err)),
        }
    }

    /// The program attached for `hook` (its tp_btf twin or the classic one), if attached.
    pub fn program_of(&self, hook: Hook) -> Option<&'static str> {
        self.programs.get(&hook).copied()
    }

    pub fn hooks(&self) -> &BTreeMap<Hook, HookState> {
        &self.hooks
    }

    /// Runs a loaded cgroup_skb hook `repeat` times on one crafted frame (Ethernet header first)
    /// through BPF_PROG_TEST_RUN: no traffic and no attachment involved, so packet parsing can
    /// be checked against exact bytes. The kernel gives each call a throwaway socket. Returns
    /// the verdict (1 lets the packet through).
    pub fn run_on_frame(&self, hook: Hook, frame: &[u8], repeat: u32) -> Result<u32> {
        use aya::TestRun;
        let failed = |why: String| Error::Program {
            program: hook.program(),
            message: why,
        };
        let program = self
            .ebpf
            .program(hook.program())
            .ok_or_else(|| failed("not in the object".into()))?;
        let program: &CgroupSkb = program
            .try_into()
            .map_err(|err: aya::programs::ProgramError| failed(err.to_string()))?;
        let options = aya::TestRunOptions {
            data_in: Some(frame),
            repeat: repeat.max(1),
            ..aya::TestRunOptions::default()
        };
        program
            .test_run(options)
            .map(|result| result.return_value)
            .map_err(|err| failed(describe_program_error(&err)))
    }

    /// Kernel ids of the loaded programs, to tell them apart from other loaders' programs.
    pub fn program_ids(&self) -> Vec<u32> {
        self.ebpf
            .programs()
            .filter_map(|(_, program)| program.info().ok())
            .map(|info| info.id())
            .collect()
    }

    pub fn is_attached(&self, hook: Hook) -> bool {
        self.hooks.get(&hook) == Some(&HookState::Attached)
    }

    /// The event ring buffer, for one reader. Taken out of the object: a second call fails.
    pub fn take_event_ring(&mut self) -> Result<RingBuf<MapData>> {
        let events = self
            .ebpf
            .take_map(map::EVENTS)
            .ok_or(Error::MissingMap(map::EVENTS))?;
        RingBuf::try_from(events).map_err(|err| Error::map(map::EVENTS, err))
    }

    /// The per-socket statistics map, for one flow table. Taken out like the ring.
    pub fn take_sock_stats(&mut self) -> Result<KernelSockStats> {
        let stats = self
            .ebpf
            .take_map(map::SOCK_STATS)
            .ok_or(Error::MissingMap(map::SOCK_STATS))?;
        let map = KernelHashMap::try_from(stats).map_err(|err| Error::map(map::SOCK_STATS, err))?;
        let epoch = self
            .ebpf
            .take_map(map::HTTP_EPOCH)
            .ok_or(Error::MissingMap(map::HTTP_EPOCH))?;
        let http_epoch =
            aya::maps::Array::try_from(epoch).map_err(|err| Error::map(map::HTTP_EPOCH, err))?;
        Ok(KernelSockStats {
            map,
            http_epoch,
            epoch: 0,
        })
    }

    /// Loss and failure counters, summed over CPUs.
    pub fn counters(&self) -> Result<BTreeMap<&'static str, u64>> {
        let counters = self
            .ebpf
            .map(map::COUNTERS)
            .ok_or(Error::MissingMap(map::COUNTERS))?;
        let array: PerCpuArray<_, u64> =
            PerCpuArray::try_from(counters).map_err(|err| Error::map(map::COUNTERS, err))?;
        Counter::ALL
            .iter()
            .map(|counter| {
                let per_cpu = array
                    .get(&counter.slot(), 0)
                    .map_err(|err| Error::map(map::COUNTERS, err))?;
                Ok((counter.name(), per_cpu.iter().sum()))
            })
            .collect()
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        // The links and programs go with `ebpf` right after this; say so for the operator.
        tracing::info!("detaching kernel programs");
    }
}

/// Load errors carry the verifier's log; keep its end, where the reason is.
/// Loads and attaches the tp_btf program `name` to `tracepoint`; on failure, unloads it again.
fn attach_btf_tracepoint(
    ebpf: &mut Ebpf,
    name: &str,
    tracepoint: &str,
    btf: &Btf,
) -> std::result::Result<(), String> {
    let program: &mut BtfTracePoint = ebpf
        .program_mut(name)
        .ok_or_else(|| format!("program {name} not in the object"))?
        .try_into()
        .map_err(|err: aya::programs::ProgramError| err.to_string())?;
    let attached = program
        .load(tracepoint, btf)
        .and_then(|()| program.attach().map(drop));
    attached.map_err(|err| {
        let _ = program.unload();
        describe_program_error(&err)
    })
}

fn describe_program_error(err: &aya::programs::ProgramError) -> String {
    const TAIL: usize = 2000;
    let text = err.to_string();
    if text.len() <= TAIL {
        return text;
    }
    let mut start = text.len() - TAIL;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// `Pod` wrapper so aya can copy [`abi::SockStats`] out of the map; the ABI crate stays free of
/// aya.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct SockStatsValue(abi::SockStats);

// SAFETY: `abi::SockStats` is `#[repr(C)]` plain integers (see `abi::Plain`), and the wrapper is
// transparent.
unsafe impl aya::Pod for SockStatsValue {}

/// The kernel's `sock_stats` map, and the epoch of its HTTP slots' latency maximum.
pub struct KernelSockStats {
    map: KernelHashMap<MapData, u64, SockStatsValue>,
    http_epoch: aya::maps::Array<MapData, u32>,
    epoch: u32,
}

impl fmt::Debug for KernelSockStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelSockStats").finish_non_exhaustive()
    }
}

impl SockStatsSource for KernelSockStats {
    fn read_all(&mut self) -> Result<Vec<(u64, abi::SockStats)>> {
        let mut entries = Vec::new();
        for entry in self.map.iter() {
            // An entry deleted between key walk and lookup is skipped by aya; any other error
            // ends this scan, and the next tick retries.
            let (key, SockStatsValue(stats)) =
                entry.map_err(|err| Error::map(map::SOCK_STATS, err))?;
            entries.push((key, stats));
        }
        Ok(entries)
    }

    fn remove(&mut self, sock_id: u64) -> Result<()> {
        match self.map.remove(&sock_id) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(err) => Err(Error::map(map::SOCK_STATS, err)),
        }
    }

    fn advance_http_epoch(&mut self) -> Result<()> {
        self.epoch = self.epoch.wrapping_add(1);
        self.http_epoch
            .set(0, self.epoch, 0)
            .map_err(|err| Error::map(map::HTTP_EPOCH, err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flow tracker scans on the blocking pool, so the kernel map must move across threads.
    #[test]
    fn the_kernel_map_can_feed_the_flow_tracker() {
        fn sendable<T: Send + 'static>() {}
        sendable::<KernelSockStats>();
    }

    #[test]
    fn default_config_is_valid_and_wakes_at_a_quarter() {
        let config = LoaderConfig::default();
        config.validate().expect("defaults are valid");
        assert_eq!(config.wakeup_bytes(), 2 << 20);
    }

    #[test]
    fn ring_size_must_be_a_power_of_two() {
        let config = LoaderConfig {
            ring_buffer_bytes: 3 << 20,
            ..LoaderConfig::default()
        };
        let err = config.validate().expect_err("not a power of two");
        assert!(err.to_string().contains("ring_buffer_bytes"), "{err}");
    }

    #[test]
    fn every_hook_names_its_program_and_what_it_costs_to_lose() {
        for hook in Hook::ALL {
            assert!(hook.program().starts_with("strata_"));
            assert!(!hook.loses().is_empty());
            assert!(!hook.to_string().is_empty());
        }
        assert!(Hook::TcpProbe.needs_btf());
        assert!(!Hook::CgroupEgress.needs_btf());
    }
}
