//! Loads the kernel object with aya and attaches each hook on its own: a hook the kernel lacks,
//! or one that fails to load, is logged with what is lost without it and skipped; the rest run
//! (degraded mode, never a crash). Dropping [`Probes`] detaches every link and unloads.
//! Hands out the maps, and runs the iterator that refreshes `sock_stats` before each read; knows
//! nothing of what the events mean.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use aya::maps::{HashMap as KernelHashMap, Map, MapData, PerCpuArray, RingBuf};
use aya::programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, Iter, TracePoint};
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
}

impl LoaderConfig {
    pub const DEFAULT_RING_BUFFER_BYTES: u32 = 8 << 20;
    pub const DEFAULT_SOCK_STATS_CAPACITY: u32 = 65_536;
    pub const DEFAULT_DNS_PENDING_CAPACITY: u32 = 16_384;

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
        }
    }
}

/// Each attachment the agent makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    InetSockSetState,
    TcpRetransmitSkb,
    /// The iterator over `sock_stats` that refreshes live sockets' counters before each read.
    SockStatsRefresh,
    CgroupIngress,
    CgroupEgress,
}

enum AttachPoint {
    Tracepoint {
        category: &'static str,
        name: &'static str,
    },
    /// An iterator over the elements of a map (`iter/bpf_map_elem`), run on demand.
    MapIterator(&'static str),
    Cgroup(CgroupSkbAttachType),
}

impl Hook {
    pub const ALL: [Hook; 5] = [
        Hook::InetSockSetState,
        Hook::TcpRetransmitSkb,
        Hook::SockStatsRefresh,
        Hook::CgroupIngress,
        Hook::CgroupEgress,
    ];

    fn program(self) -> &'static str {
        match self {
            Hook::InetSockSetState => program::INET_SOCK_SET_STATE,
            Hook::TcpRetransmitSkb => program::TCP_RETRANSMIT_SKB,
            Hook::SockStatsRefresh => program::SOCK_STATS_REFRESH,
            Hook::CgroupIngress => program::CGROUP_INGRESS,
            Hook::CgroupEgress => program::CGROUP_EGRESS,
        }
    }

    fn attach_point(self) -> AttachPoint {
        let tracepoint = |category, name| AttachPoint::Tracepoint { category, name };
        match self {
            Hook::InetSockSetState => tracepoint("sock", "inet_sock_set_state"),
            Hook::TcpRetransmitSkb => tracepoint("tcp", "tcp_retransmit_skb"),
            Hook::SockStatsRefresh => AttachPoint::MapIterator(map::SOCK_STATS),
            Hook::CgroupIngress => AttachPoint::Cgroup(CgroupSkbAttachType::Ingress),
            Hook::CgroupEgress => AttachPoint::Cgroup(CgroupSkbAttachType::Egress),
        }
    }

    /// Tracepoint and iterator programs read kernel structs through CO-RE and need kernel BTF
    /// (an iterator also to be loaded at all); the cgroup_skb programs read only packets.
    fn needs_btf(self) -> bool {
        !matches!(self.attach_point(), AttachPoint::Cgroup(_))
    }

    /// What the agent cannot see while this hook is missing, for the log line.
    pub fn loses(self) -> &'static str {
        match self {
            Hook::InetSockSetState => {
                "TCP connection opens, closes, failed connects and exact bytes at close"
            }
            Hook::TcpRetransmitSkb => "TCP retransmits",
            Hook::SockStatsRefresh => {
                "bytes and sampled RTT of open connections between state changes (both at close \
                 remain)"
            }
            Hook::CgroupIngress => "HTTP and DNS seen arriving (server requests, client responses)",
            Hook::CgroupEgress => "HTTP and DNS seen leaving (client requests, server responses)",
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.attach_point() {
            AttachPoint::Tracepoint { category, name } => write!(f, "tracepoint {category}:{name}"),
            AttachPoint::MapIterator(map) => write!(f, "iterator over {map}"),
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
    /// The link of the `sock_stats` iterator, from which each run is created.
    refresh_link: Option<OwnedFd>,
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
        let wakeup = config.wakeup_bytes();
        // EbpfLoader::new() takes BTF from /sys/kernel/btf/vmlinux; it is never replaced with
        // `btf(None)`, which would silently skip the CO-RE relocations.
        let ebpf = EbpfLoader::new()
            .map_max_entries(map::EVENTS, config.ring_buffer_bytes)
            .map_max_entries(map::SOCK_STATS, config.sock_stats_capacity)
            .map_max_entries(map::DNS_PENDING, config.dns_pending_capacity)
            .override_global(global::RINGBUF_WAKEUP_BYTES, &wakeup, true)
            .load(object::object())
            .map_err(|err| Error::Load(Box::new(err)))?;
        // Parsed kernel BTF is tens of MiB: kept only while attaching.
        let btf = features
            .btf
            .then(|| {
                Btf::from_sys_fs()
                    .map_err(
                        |err| tracing::warn!(error = %err, "kernel BTF unreadable: no iterator"),
                    )
                    .ok()
            })
            .flatten();
        let mut probes = Probes {
            ebpf,
            hooks: BTreeMap::new(),
            programs: BTreeMap::new(),
            refresh_link: None,
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
        if let AttachPoint::MapIterator(map_name) = hook.attach_point() {
            let Some(btf) = btf else {
                return HookState::Unavailable("kernel BTF unreadable".into());
            };
            return match self.attach_map_iterator(hook, map_name, btf) {
                Ok(link) => {
                    self.refresh_link = Some(link);
                    self.programs.insert(hook, hook.program());
                    HookState::Attached
                }
                Err(why) => HookState::Failed(why),
            };
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
            AttachPoint::MapIterator(_) => unreachable!("handled above"),
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

    /// Loads `hook`'s iterator program and links it to the map `map_name`; on failure, unloads
    /// the program again.
    fn attach_map_iterator(
        &mut self,
        hook: Hook,
        map_name: &str,
        btf: &Btf,
    ) -> std::result::Result<OwnedFd, String> {
        // A copy of the map's descriptor: the program is borrowed mutably next.
        let map_fd = match self.ebpf.map(map_name) {
            Some(Map::HashMap(data) | Map::LruHashMap(data)) => data
                .fd()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|err| format!("{map_name}: {err}"))?,
            _ => return Err(format!("map {map_name} is not a hash map in the object")),
        };
        let program: &mut Iter = self
            .ebpf
            .program_mut(hook.program())
            .ok_or_else(|| format!("program {} not in the object", hook.program()))?
            .try_into()
            .map_err(|err: aya::programs::ProgramError| err.to_string())?;
        program
            .load("bpf_map_elem", btf)
            .map_err(|err| describe_program_error(&err))?;
        let linked = program
            .fd()
            .map_err(|err| err.to_string())
            .and_then(|prog_fd| {
                link_map_iterator(prog_fd.as_fd(), map_fd.as_fd())
                    .map_err(|err| format!("BPF_LINK_CREATE: {err}"))
            });
        if linked.is_err() {
            let _ = program.unload();
        }
        linked
    }

    /// The program attached for `hook`, if attached.
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
        let refresh = match &self.refresh_link {
            Some(link) => Some(link.try_clone().map_err(|err| Error::Program {
                program: program::SOCK_STATS_REFRESH,
                message: format!("duplicating its link: {err}"),
            })?),
            None => None,
        };
        Ok(KernelSockStats {
            map,
            http_epoch,
            epoch: 0,
            refresh,
            refresh_failed: false,
            refreshed: None,
        })
    }

    /// For each loaded program, the runs the kernel skipped because a BPF program was already
    /// running on that CPU, or instrumentation was held off there while the agent itself operated
    /// on a map through `bpf(2)`: events lost before any program could count them (kernel 5.12+;
    /// empty before).
    pub fn recursion_misses(&self) -> BTreeMap<&'static str, u64> {
        self.programs
            .values()
            .filter_map(|&name| {
                let fd = self.ebpf.program(name)?.fd().ok()?;
                Some((name, program_recursion_misses(fd.as_fd()).ok()??))
            })
            .collect()
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

/// `bpf(2)` commands and the iterator attach type (include/uapi/linux/bpf.h), for the calls aya
/// does not make: linking an iterator to a map, creating a run of it, and reading a program's
/// recursion misses.
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_ITER_CREATE: libc::c_long = 33;
const BPF_TRACE_ITER: u32 = 28;

/// `union bpf_attr` for BPF_LINK_CREATE of an iterator: the program, the attach type, and
/// `union bpf_iter_link_info` (the map's fd) by address and length.
#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    iter_info: u64,
    iter_info_len: u32,
    _pad: u32,
}

/// `union bpf_attr` for BPF_ITER_CREATE.
#[repr(C)]
struct IterCreateAttr {
    link_fd: u32,
    flags: u32,
}

/// `union bpf_attr` for BPF_OBJ_GET_INFO_BY_FD: the object, and the buffer for its info.
#[repr(C)]
struct InfoByFdAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `struct bpf_prog_info` up to and including `recursion_misses` (kernel 5.12+), as 64-bit words:
/// the field is the last of them. Its pointer fields stay zero, so the kernel copies nothing else.
const PROG_INFO_WORDS: usize = 27;

/// Calls `bpf(cmd, attr)`; its non-negative return value.
fn bpf_syscall<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, exclusively borrowed `#[repr(C)]` prefix of `union bpf_attr`
    // for `cmd`, passed with its exact size; the kernel reads at most that many bytes and
    // zero-fills the rest of its copy.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            std::mem::size_of::<T>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// A program's `recursion_misses`; `None` from a kernel whose program info ends before it.
fn program_recursion_misses(program: BorrowedFd<'_>) -> io::Result<Option<u64>> {
    let mut info = [0u64; PROG_INFO_WORDS];
    let mut attr = InfoByFdAttr {
        bpf_fd: u32::try_from(program.as_raw_fd()).expect("descriptors are positive"),
        info_len: std::mem::size_of_val(&info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    // The kernel writes at most `info_len` bytes into `info` and sets `info_len` to what it wrote.
    bpf_syscall(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    let complete = attr.info_len as usize >= std::mem::size_of_val(&info);
    Ok(complete.then_some(info[PROG_INFO_WORDS - 1]))
}

/// Calls `bpf(cmd, attr)` for a command that returns a new file descriptor.
fn bpf_fd_syscall<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<OwnedFd> {
    let rc = bpf_syscall(cmd, attr)?;
    let fd = i32::try_from(rc).map_err(|_| io::Error::other("bpf(2) returned no descriptor"))?;
    // SAFETY: on success these commands return a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Links an `iter/bpf_map_elem` program to a map; the link lives as long as its descriptor.
fn link_map_iterator(program: BorrowedFd<'_>, map: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let fd = |fd: BorrowedFd<'_>| u32::try_from(fd.as_raw_fd()).expect("descriptors are positive");
    let mut info = fd(map); // union bpf_iter_link_info: { __u32 map_fd; } map;
    let mut attr = LinkCreateAttr {
        prog_fd: fd(program),
        target_fd: 0,
        attach_type: BPF_TRACE_ITER,
        flags: 0,
        iter_info: std::ptr::from_mut(&mut info) as u64,
        iter_info_len: std::mem::size_of::<u32>() as u32,
        _pad: 0,
    };
    bpf_fd_syscall(BPF_LINK_CREATE, &mut attr)
}

/// One run of an iterator: the program runs for each element as the run is read, to its end;
/// what it writes is handed over as it comes. The kernel pauses a run that has gone a million
/// elements without output with EAGAIN, and reading again resumes it.
fn run_iterator(link: &OwnedFd, mut output: impl FnMut(&[u8])) -> io::Result<()> {
    let mut attr = IterCreateAttr {
        link_fd: u32::try_from(link.as_raw_fd()).expect("descriptors are positive"),
        flags: 0,
    };
    let mut run = File::from(bpf_fd_syscall(BPF_ITER_CREATE, &mut attr)?);
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        match run.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => output(&chunk[..n]),
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) => {}
            Err(err) => return Err(err),
        }
    }
}

/// Load errors carry the verifier's log; keep its end, where the reason is.
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

/// The kernel's `sock_stats` map, the epoch of its HTTP slots' latency maximum, and the
/// iterator that refreshes the live sockets' counters in it.
pub struct KernelSockStats {
    map: KernelHashMap<MapData, u64, SockStatsValue>,
    http_epoch: aya::maps::Array<MapData, u32>,
    epoch: u32,
    /// Its link, when attached; without it counters move only at state changes and the close.
    refresh: Option<OwnedFd>,
    /// A refresh failed before (logged once; the next success says so).
    refresh_failed: bool,
    /// The entries the latest refresh wrote out, for the read that follows it.
    refreshed: Option<Vec<(u64, abi::SockStats)>>,
}

/// One entry as the refresh writes it: its key, then its value.
const REFRESH_RECORD: usize = size_of::<u64>() + size_of::<abi::SockStats>();

fn parse_record(record: &[u8]) -> Option<(u64, abi::SockStats)> {
    let (key, value) = record.split_at(size_of::<u64>());
    Some((
        u64::from_ne_bytes(key.try_into().ok()?),
        abi::read_plain(value)?,
    ))
}

/// Entries out of the refresh's output as it arrives, without holding the output: a record split
/// between two reads waits for its rest.
#[derive(Default)]
struct RefreshedEntries {
    entries: Vec<(u64, abi::SockStats)>,
    partial: Vec<u8>,
}

impl RefreshedEntries {
    fn push(&mut self, mut bytes: &[u8]) {
        if !self.partial.is_empty() {
            let take = (REFRESH_RECORD - self.partial.len()).min(bytes.len());
            self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.partial.len() < REFRESH_RECORD {
                return;
            }
            self.entries
                .extend(parse_record(&std::mem::take(&mut self.partial)));
        }
        let whole = bytes.len() - bytes.len() % REFRESH_RECORD;
        let records = bytes[..whole].chunks_exact(REFRESH_RECORD);
        self.entries.extend(records.filter_map(parse_record));
        self.partial.extend_from_slice(&bytes[whole..]);
    }

    fn finish(self) -> io::Result<Vec<(u64, abi::SockStats)>> {
        if !self.partial.is_empty() {
            return Err(io::Error::other(format!(
                "the output ends {} bytes into an entry of {REFRESH_RECORD}",
                self.partial.len()
            )));
        }
        Ok(self.entries)
    }
}

impl fmt::Debug for KernelSockStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelSockStats").finish_non_exhaustive()
    }
}

impl SockStatsSource for KernelSockStats {
    /// Runs the iterator over the map, which refreshes each entry and writes it out for the
    /// read. A failure is logged when it starts and when it ends.
    fn refresh(&mut self) -> Result<()> {
        self.refreshed = None;
        let Some(link) = &self.refresh else {
            return Ok(());
        };
        let mut refreshed = RefreshedEntries::default();
        let outcome = run_iterator(link, |bytes| refreshed.push(bytes))
            .and_then(|()| refreshed.finish())
            .map(|entries| self.refreshed = Some(entries));
        match &outcome {
            Ok(()) if self.refresh_failed => tracing::info!("sock_stats refresh works again"),
            Err(err) if !self.refresh_failed => {
                tracing::warn!(error = %err, "sock_stats refresh failed; live counters may lag");
            }
            _ => {}
        }
        self.refresh_failed = outcome.is_err();
        outcome.map_err(|err| Error::Program {
            program: program::SOCK_STATS_REFRESH,
            message: err.to_string(),
        })
    }

    /// The entries the refresh wrote out, else (no iterator, or it failed) a walk of the map.
    fn read_all(&mut self) -> Result<Vec<(u64, abi::SockStats)>> {
        if let Some(entries) = self.refreshed.take() {
            return Ok(entries);
        }
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
    fn refreshed_entries_are_read_back_whole_or_not_at_all() {
        let mut stats = abi::SockStats {
            bytes_sent: 1234,
            ..abi::SockStats::default()
        };
        let mut output = Vec::new();
        for key in [7u64, 9] {
            stats.segs_in = key as u32;
            output.extend_from_slice(&key.to_ne_bytes());
            output.extend_from_slice(abi::plain_bytes(&stats));
        }
        // in reads of any size, records split between them
        for read in [1, 100, REFRESH_RECORD, output.len()] {
            let mut refreshed = RefreshedEntries::default();
            output.chunks(read).for_each(|bytes| refreshed.push(bytes));
            let entries = refreshed.finish().expect("two whole entries");
            assert_eq!(entries.len(), 2, "reads of {read}");
            assert_eq!((entries[1].0, entries[1].1.segs_in), (9, 9));
            assert_eq!(entries[0].1.bytes_sent, 1234);
        }
        let mut cut = RefreshedEntries::default();
        cut.push(&output[..output.len() - 1]);
        assert!(cut.finish().is_err());
        assert!(RefreshedEntries::default()
            .finish()
            .expect("none")
            .is_empty());
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
        assert!(Hook::SockStatsRefresh.needs_btf());
        assert!(!Hook::CgroupEgress.needs_btf());
    }
}
