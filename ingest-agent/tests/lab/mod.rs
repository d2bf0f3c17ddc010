//! The bench shared by the root tests: two network namespaces joined by a veth pair, a child
//! cgroup per peer, peer processes (the same test binary re-run as a helper), the kernel side
//! loaded and attached, and the events it reports collected. Everything is torn down on drop,
//! also while a failed assertion unwinds.

#![allow(dead_code, reason = "each test binary uses its own part of the bench")]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use strata_agent::event_reader::{self, EventReaderConfig, EventReaderStats};
use strata_agent::events::Event;
use strata_agent::kernel_features::{mount_tracefs_if_absent, HostPaths, KernelFeatures};
use strata_agent::loader::{HookState, LoaderConfig, Probes};

// Documentation ranges (RFC 5737, RFC 3849): they exist only inside the test's namespaces.
pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 5, 0, 0, 0, 0, 1);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 5, 0, 0, 0, 0, 2);
const PEER_ENV: &str = "STRATA_TEST_PEER";
const NETNS_ENV: &str = "STRATA_TEST_NETNS";

pub fn require_all() -> bool {
    std::env::var("STRATA_REQUIRE_ALL").as_deref() == Ok("1")
}

/// Ends the test with a loud message, or fails it under `STRATA_REQUIRE_ALL=1`.
macro_rules! skip {
    ($($why:tt)*) => {{
        let why = format!($($why)*);
        assert!(!lab::require_all(), "STRATA_REQUIRE_ALL=1, but {why}");
        // libtest names each test's thread after the test.
        let test = std::thread::current().name().unwrap_or(module_path!()).to_owned();
        // Straight to the process's stderr: libtest captures eprintln! of passing tests.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("\n*** SKIPPED {test}: {why} ***\n").as_bytes(),
        );
        return;
    }};
}

/// The value of a `Result` whose error says why the test cannot run, or a loud skip with it.
macro_rules! or_skip {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(why) => skip!("{why}"),
        }
    };
}

/// What a root test needs before it can start, or why it cannot.
pub fn preconditions(tools: &[&str]) -> Result<KernelFeatures, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root: loading eBPF and creating namespaces needs root".into());
    }
    for tool in tools {
        if Command::new(tool).arg("-V").output().is_err() {
            return Err(format!("`{tool}` is not installed"));
        }
    }
    let paths = HostPaths::default();
    mount_tracefs_if_absent(&paths)
        .map_err(|err| format!("no tracefs and could not mount it: {err}"))?;
    let features = KernelFeatures::detect(&paths);
    if features.cgroup2.is_none() {
        return Err("no cgroup2 hierarchy mounted".into());
    }
    if !features.btf {
        return Err("no kernel BTF at /sys/kernel/btf/vmlinux".into());
    }
    Ok(features)
}

/// Loads the kernel side and requires every hook attached.
pub fn attach_all(features: &KernelFeatures) -> Result<Probes, String> {
    attach_all_with(features, &LoaderConfig::default())
}

pub fn attach_all_with(features: &KernelFeatures, config: &LoaderConfig) -> Result<Probes, String> {
    let probes = Probes::load(config, features)
        .map_err(|err| format!("kernel object did not load: {err}"))?;
    let missing: Vec<String> = probes
        .hooks()
        .iter()
        .filter(|(_, state)| **state != HookState::Attached)
        .map(|(hook, state)| format!("{hook}: {state:?}"))
        .collect();
    if missing.is_empty() {
        Ok(probes)
    } else {
        Err(format!("hooks not attached on this kernel: {missing:?}"))
    }
}

/// Events from the ring buffer, collected by a reader on its own runtime.
pub struct EventLog {
    _runtime: tokio::runtime::Runtime,
    events: Arc<Mutex<Vec<Event>>>,
    pub stats: Arc<EventReaderStats>,
}

impl EventLog {
    pub fn start(probes: &mut Probes) -> EventLog {
        Self::start_with(probes, &EventReaderConfig::default())
    }

    pub fn start_with(probes: &mut Probes, config: &EventReaderConfig) -> EventLog {
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        let ring = probes.take_event_ring().expect("event ring");
        let (mut rx, stats, _reader) = {
            let _enter = runtime.enter();
            event_reader::spawn(ring, config).expect("reader")
        };
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        runtime.spawn(async move {
            while let Some(batch) = rx.recv().await {
                sink.lock().expect("events lock").extend(batch);
            }
        });
        EventLog {
            _runtime: runtime,
            events,
            stats,
        }
    }

    /// Waits up to `timeout` for `done` to hold over the events so far; returns them either way.
    pub fn wait_until(&self, timeout: Duration, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.events.lock().expect("events lock").clone();
            if done(&events) || Instant::now() >= deadline {
                return events;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn decode_errors(&self) -> u64 {
        self.stats
            .decode_errors
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Drops the probes and checks the kernel no longer holds any of their programs: a program
/// stays loaded while any link to it exists, so this also proves every link was detached. A
/// tp_btf program goes once its trampoline's grace period has passed, so this waits a little.
pub fn assert_detached_on_drop(probes: Probes) {
    let ids = probes.program_ids();
    assert!(!ids.is_empty(), "programs were loaded");
    drop(probes);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let still: Vec<u32> = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .map(|info| info.id())
            .filter(|id| ids.contains(id))
            .collect();
        if still.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "programs still loaded 5 s after drop: {still:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

pub fn cgroup_of(event: &Event) -> u64 {
    match event {
        Event::ConnectionClosed(closed) => closed.cgroup_id,
        Event::Http(exchange) => exchange.cgroup_id,
        Event::Dns(response) => response.cgroup_id,
    }
}

pub fn monotonic_ns() -> u64 {
    use strata_agent::clock::Clock;
    strata_agent::clock::SystemClock::new().monotonic_ns()
}

/// Two namespaces joined by a veth pair, a cgroup per peer, and the peer processes. Drop tears
/// everything down, also while a failed assertion unwinds.
pub struct Lab {
    pub server_ns: String,
    pub client_ns: String,
    cgroup_dir: PathBuf,
}

pub fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Lab {
    pub fn create(cgroup2: &Path) -> Lab {
        let tag = std::process::id();
        let lab = Lab {
            server_ns: format!("strata-{tag}-srv"),
            client_ns: format!("strata-{tag}-cli"),
            cgroup_dir: cgroup2.join(format!("strata-test-{tag}")),
        };
        ip(&["netns", "add", &lab.server_ns]);
        ip(&["netns", "add", &lab.client_ns]);
        let (server_if, client_if) = (format!("vs{tag}"), format!("vc{tag}"));
        ip(&[
            "link",
            "add",
            &server_if,
            "netns",
            &lab.server_ns,
            "type",
            "veth",
            "peer",
            "name",
            &client_if,
            "netns",
            &lab.client_ns,
        ]);
        for (ns, dev, v4, v6) in [
            (&lab.server_ns, &server_if, SERVER_V4, SERVER_V6),
            (&lab.client_ns, &client_if, CLIENT_V4, CLIENT_V6),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", dev]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                dev,
                "nodad",
            ]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        for peer in ["server", "client"] {
            fs::create_dir_all(lab.cgroup_dir.join(peer)).expect("create child cgroup");
        }
        lab
    }

    /// cgroup v2 ids are the kernfs inode numbers of the cgroup directories.
    pub fn cgroup_id(&self, peer: &str) -> u64 {
        fs::metadata(self.cgroup_dir.join(peer))
            .expect("cgroup dir")
            .ino()
    }

    /// Starts this test binary's `peer` helper in `netns` and moves it into its cgroup before
    /// letting it open any socket (the socket's cgroup is fixed at creation).
    pub fn spawn_peer(&self, role: &str, netns: &str) -> Peer {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "peer",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(PEER_ENV, role)
            .env(NETNS_ENV, Path::new("/run/netns").join(netns))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn peer");
        let (lines_tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest may have written "test peer ... " on the same line first.
                if let Some(at) = line.find("PEER ") {
                    if lines_tx.send(line[at + 5..].to_owned()).is_err() {
                        return;
                    }
                }
            }
        });
        let mut peer = Peer {
            role: role.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
        };
        fs::write(
            self.cgroup_dir.join(role).join("cgroup.procs"),
            peer.child.id().to_string(),
        )
        .expect("move peer into its cgroup");
        peer.send("go");
        peer
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.server_ns, &self.client_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        // A cgroup can be removed once its processes are gone; give reaping a moment.
        for peer in ["server", "client", ""] {
            let dir = self.cgroup_dir.join(peer);
            for _ in 0..50 {
                if fs::remove_dir(&dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

pub struct Peer {
    role: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("peer stdin open");
        writeln!(stdin, "{line}").expect("write to peer");
        stdin.flush().expect("flush peer stdin");
    }

    /// Waits for a line starting with `word`; returns the rest of it.
    pub fn wait_for(&mut self, word: &str) -> String {
        // Generous: lossy transfers back off exponentially when a segment is lost repeatedly.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(word) {
                        return rest.trim().to_owned();
                    }
                }
                Err(err) => panic!("{} peer never said {word:?}: {err}", self.role),
            }
        }
    }

    pub fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().expect("wait for peer");
        assert!(status.success(), "{} peer failed: {status}", self.role);
    }
}

impl Drop for Peer {
    /// A peer still running here means the test failed early: stop it (our own child only).
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn say(line: &str) {
    println!("PEER {line}");
    std::io::stdout().flush().expect("flush stdout");
}

/// Threads spawned afterwards inherit the namespace of this thread.
fn enter_netns(path: &str) {
    let file = fs::File::open(path).expect("open netns");
    use std::os::fd::AsRawFd;
    // SAFETY: a valid namespace fd; CLONE_NEWNET changes only this thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

/// Counts bytes returned by `read`, as the kernel's sock_recv_length does.
pub struct Counting<R> {
    pub inner: R,
    pub bytes: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// The body of each test binary's `peer` helper test: returns at once unless spawned by
/// [`Lab::spawn_peer`]; otherwise waits until moved into its cgroup, enters its namespace and
/// runs `role` with the commands the test sends.
pub fn run_peer(role: impl FnOnce(&str, &mpsc::Receiver<String>)) {
    let Ok(name) = std::env::var(PEER_ENV) else {
        return;
    };
    let netns = std::env::var(NETNS_ENV).expect("netns path");
    let (commands_tx, commands) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if commands_tx.send(line).is_err() {
                return;
            }
        }
    });
    assert_eq!(commands.recv().as_deref(), Ok("go"));
    enter_netns(&netns);
    role(&name, &commands);
}

/// Blocks until the test sends `word` (or closes the peer's stdin).
pub fn await_command(commands: &mpsc::Receiver<String>, word: &str) {
    while let Ok(command) = commands.recv() {
        if command == word {
            return;
        }
    }
}

/// The user-space pipeline on the kernel side's outputs, wired as the agent wires it: the ring
/// reader, close summaries routed to the flow tracker (which scans `sock_stats` every 100 ms),
/// and HTTP exchanges from the ring handed to the test. Tasks run on `runtime`.
pub struct Tracked {
    pub batches: tokio::sync::mpsc::Receiver<strata_agent::flow_table::FlowBatch>,
    pub exchanges: tokio::sync::mpsc::UnboundedReceiver<strata_agent::events::HttpExchange>,
    _tasks: [tokio::task::JoinHandle<()>; 2],
}

pub fn track(probes: &mut Probes, runtime: &tokio::runtime::Runtime) -> Tracked {
    use strata_agent::flow_table::{spawn_tracker, FlowTrackerConfig};
    let _enter = runtime.enter();
    let ring = probes.take_event_ring().expect("ring");
    let sock_stats = probes.take_sock_stats().expect("sock_stats");
    let (mut events, _stats, reader) =
        event_reader::spawn(ring, &EventReaderConfig::default()).expect("reader");
    let (closes_tx, closes) = tokio::sync::mpsc::channel(1024);
    let (exchanges_tx, exchanges) = tokio::sync::mpsc::unbounded_channel();
    runtime.spawn(async move {
        while let Some(batch) = events.recv().await {
            for event in batch {
                match event {
                    Event::ConnectionClosed(closed) => {
                        if closes_tx.send(closed).await.is_err() {
                            return;
                        }
                    }
                    Event::Http(exchange) => {
                        let _ = exchanges_tx.send(exchange);
                    }
                    Event::Dns(_) => {}
                }
            }
        }
    });
    let config = FlowTrackerConfig {
        interval: Duration::from_millis(100),
        ..FlowTrackerConfig::default()
    };
    let clock = strata_agent::clock::SystemClock::new();
    let (batches, tracker) = spawn_tracker(sock_stats, clock, closes, &config);
    Tracked {
        batches,
        exchanges,
        _tasks: [reader, tracker],
    }
}
