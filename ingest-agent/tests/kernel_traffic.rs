//! Loads and attaches every hook as root, then drives real traffic between two network
//! namespaces joined by a veth pair, each peer a separate process in its own child cgroup, and
//! checks what the kernel reports: connection opens and closes with addresses, ports and cgroup
//! ids; bytes both ways; a refused connect; HTTP method, path, status, latency and traceparent on
//! both ends; DNS name, type, response code, answers and latency; live per-socket counters.
//!
//! Needs root, `ip` (iproute2), kernel BTF, tracefs and a cgroup2 mount. Without them it skips
//! with a loud message, and fails instead under `STRATA_REQUIRE_ALL=1`. Namespaces, cgroups and
//! peer processes are removed even when an assertion fails.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use strata_agent::dns::{record_type, Rcode};
use strata_agent::event_reader::{self, EventReaderConfig};
use strata_agent::events::{ConnectionClosed, DnsResponse, Event, HttpExchange, Outcome, Role};
use strata_agent::flow_table::FlowTable;
use strata_agent::http::{Method, TraceParent};
use strata_agent::kernel_features::{mount_tracefs_if_absent, HostPaths, KernelFeatures};
use strata_agent::loader::{HookState, LoaderConfig, Probes};

// Documentation ranges (RFC 5737, RFC 3849): they exist only inside the test's namespaces.
const SERVER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 5, 0, 0, 0, 0, 1);
const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 5, 0, 0, 0, 0, 2);
const HTTP_PORT: u16 = 8080;
/// Nothing listens here: connects are refused.
const CLOSED_PORT: u16 = 9;
const DNS_PORT: u16 = 53;
const DNS_NAME: &str = "api.strata.test";
const DNS_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);
const MISSING_NAME: &str = "missing.strata.test";
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
/// The server sleeps this long before answering `/fail`.
const SLOW_ANSWER: Duration = Duration::from_millis(100);
const PEER_ENV: &str = "STRATA_TEST_PEER";
const NETNS_ENV: &str = "STRATA_TEST_NETNS";

fn require_all() -> bool {
    std::env::var("STRATA_REQUIRE_ALL").as_deref() == Ok("1")
}

macro_rules! skip {
    ($($why:tt)*) => {{
        let why = format!($($why)*);
        assert!(!require_all(), "STRATA_REQUIRE_ALL=1, but {why}");
        eprintln!("\n*** SKIPPED kernel_traffic: {why} ***\n");
        return;
    }};
}

#[test]
fn kernel_reports_tcp_http_and_dns_between_namespaces() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip!("not root: loading eBPF and creating namespaces needs root");
    }
    if Command::new("ip").arg("-V").output().is_err() {
        skip!("`ip` (iproute2) is not installed");
    }
    let paths = HostPaths::default();
    if let Err(err) = mount_tracefs_if_absent(&paths) {
        skip!("no tracefs and could not mount it: {err}");
    }
    let features = KernelFeatures::detect(&paths);
    let Some(cgroup2) = features.cgroup2.clone() else {
        skip!("no cgroup2 hierarchy mounted");
    };
    if !features.btf {
        skip!("no kernel BTF at /sys/kernel/btf/vmlinux");
    }
    let mut probes = Probes::load(&LoaderConfig::default(), &features).expect("object loads");
    let missing: Vec<String> = probes
        .hooks()
        .iter()
        .filter(|(_, state)| **state != HookState::Attached)
        .map(|(hook, state)| format!("{hook}: {state:?}"))
        .collect();
    if !missing.is_empty() {
        skip!("hooks not attached on this kernel: {missing:?}");
    }

    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let _enter = runtime.enter();
    let ring = probes.take_event_ring().expect("event ring");
    let (mut rx, reader_stats, _reader) =
        event_reader::spawn(ring, &EventReaderConfig::default()).expect("reader");
    let events = Arc::new(Mutex::new(Vec::<Event>::new()));
    let sink = Arc::clone(&events);
    runtime.spawn(async move {
        while let Some(event) = rx.recv().await {
            sink.lock().expect("events lock").push(event);
        }
    });

    let lab = Lab::create(&cgroup2);
    let server_cgroup = lab.cgroup_id("server");
    let client_cgroup = lab.cgroup_id("client");
    let mut server = lab.spawn_peer("server", &lab.server_ns);
    server.wait_for("ready");
    let mut client = lab.spawn_peer("client", &lab.client_ns);
    let v4 = ClientReport::parse(&client.wait_for("http-v4"));
    let v6 = ClientReport::parse(&client.wait_for("http-v6"));
    client.wait_for("refused");
    let dns_local: SocketAddr = client.wait_for("dns").parse().expect("dns local address");
    client.wait_for("holding");

    // While the v4 connection is held open, its counters are live in the kernel map.
    let mut sock_stats = probes.take_sock_stats().expect("sock_stats map");
    let mut flow_table = FlowTable::new(Duration::from_secs(300).as_nanos() as u64);
    let scan = flow_table
        .scan(&mut sock_stats, monotonic_ns())
        .expect("scan sock_stats");
    let live = scan
        .deltas
        .iter()
        .find(|delta| delta.endpoints.local == v4.local)
        .unwrap_or_else(|| panic!("held connection {} not in sock_stats", v4.local));
    assert_eq!(live.role, Role::Client);
    assert_eq!(
        live.cgroup_id, client_cgroup,
        "socket cgroup, not the current task's"
    );
    assert_eq!(
        live.endpoints.remote,
        SocketAddr::from((SERVER_V4, HTTP_PORT))
    );
    assert_eq!(
        (live.bytes_sent, live.bytes_received),
        (v4.sent, v4.received)
    );
    assert!(live.open);
    let server_side = scan
        .deltas
        .iter()
        .find(|delta| delta.endpoints.remote == v4.local)
        .expect("server side of the held connection in sock_stats");
    assert_eq!(server_side.role, Role::Server);
    assert_eq!(server_side.cgroup_id, server_cgroup);
    assert_eq!(
        server_side.endpoints.local,
        SocketAddr::from((SERVER_V4, HTTP_PORT))
    );
    assert_eq!(
        (server_side.bytes_sent, server_side.bytes_received),
        (v4.received, v4.sent)
    );

    client.send("close");
    client.wait_for("closed");
    client.finish();
    let server_conns: Vec<String> = (0..2).map(|_| server.wait_for("server-conn")).collect();
    server.send("quit");
    server.finish();

    let expect = Expectations {
        v4,
        v6,
        dns_local,
        client_cgroup,
        server_cgroup,
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !expect.all_seen(&events.lock().expect("events lock")) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = events.lock().expect("events lock").clone();
    expect.check(&seen, &server_conns);

    let counters = probes.counters().expect("counters");
    for lost in [
        "ringbuf_lost_connection",
        "ringbuf_lost_http",
        "ringbuf_lost_dns",
    ] {
        assert_eq!(counters[lost], 0, "{lost}: {counters:?}");
    }
    assert_eq!(
        reader_stats
            .decode_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    drop(lab);
    drop(probes);
}

/// What the client reports about one HTTP connection.
#[derive(Clone, Copy, Debug)]
struct ClientReport {
    local: SocketAddr,
    sent: u64,
    received: u64,
}

impl ClientReport {
    fn parse(line: &str) -> ClientReport {
        let fields: BTreeMap<&str, &str> = line
            .split_whitespace()
            .filter_map(|field| field.split_once('='))
            .collect();
        ClientReport {
            local: fields["local"].parse().expect("local address"),
            sent: fields["sent"].parse().expect("sent"),
            received: fields["received"].parse().expect("received"),
        }
    }
}

struct Expectations {
    v4: ClientReport,
    v6: ClientReport,
    dns_local: SocketAddr,
    client_cgroup: u64,
    server_cgroup: u64,
}

impl Expectations {
    fn closes(events: &[Event]) -> impl Iterator<Item = &ConnectionClosed> {
        events.iter().filter_map(|event| match event {
            Event::ConnectionClosed(closed) => Some(closed),
            _ => None,
        })
    }

    fn exchanges(events: &[Event]) -> impl Iterator<Item = &HttpExchange> {
        events.iter().filter_map(|event| match event {
            Event::Http(exchange) => Some(exchange),
            _ => None,
        })
    }

    fn dns(events: &[Event]) -> impl Iterator<Item = &DnsResponse> {
        events.iter().filter_map(|event| match event {
            Event::Dns(response) => Some(response),
            _ => None,
        })
    }

    fn ours(&self, events: &[Event]) -> Vec<Event> {
        events
            .iter()
            .filter(|event| {
                let cgroup = match event {
                    Event::ConnectionClosed(closed) => closed.cgroup_id,
                    Event::Http(exchange) => exchange.cgroup_id,
                    Event::Dns(response) => response.cgroup_id,
                };
                cgroup == self.client_cgroup || cgroup == self.server_cgroup
            })
            .cloned()
            .collect()
    }

    /// Enough arrived to check: closes of both HTTP connections on both ends, the refused
    /// connect, four HTTP exchanges on v4 (two per end), and both DNS responses at the client.
    fn all_seen(&self, events: &[Event]) -> bool {
        let ours = self.ours(events);
        Self::closes(&ours).count() >= 5
            && Self::exchanges(&ours).count() >= 6
            && Self::dns(&ours)
                .filter(|r| r.cgroup_id == self.client_cgroup)
                .count()
                >= 2
    }

    fn check(&self, events: &[Event], server_conns: &[String]) {
        let ours = self.ours(events);
        let dump = || format!("{ours:#?}");
        let server_v4 = SocketAddr::from((SERVER_V4, HTTP_PORT));
        let server_v6 = SocketAddr::from((SERVER_V6, HTTP_PORT));

        // Client end of the IPv4 keep-alive connection.
        let close = |local: SocketAddr, remote: SocketAddr| {
            Self::closes(&ours)
                .find(|c| c.endpoints.local == local && c.endpoints.remote == remote)
                .unwrap_or_else(|| panic!("no close for {local} -> {remote}:\n{}", dump()))
                .clone()
        };
        let client_v4 = close(self.v4.local, server_v4);
        assert_eq!(client_v4.role, Role::Client);
        assert_eq!(client_v4.outcome, Outcome::Closed);
        assert_eq!(client_v4.cgroup_id, self.client_cgroup);
        assert_eq!(
            (client_v4.bytes_sent, client_v4.bytes_received),
            (self.v4.sent, self.v4.received)
        );
        assert!(client_v4.handshake().is_some(), "opened and established");
        assert!(client_v4.srtt_us.is_some() && client_v4.min_rtt_us.is_some());
        assert_eq!(client_v4.retransmits, 0, "clean link");

        // Server end: an IPv6 dual-stack socket, so its addresses are IPv4-mapped in the kernel.
        let server_end = close(server_v4, self.v4.local);
        assert_eq!(server_end.role, Role::Server);
        assert_eq!(server_end.outcome, Outcome::Closed);
        assert_eq!(server_end.cgroup_id, self.server_cgroup);
        assert_eq!(
            (server_end.bytes_sent, server_end.bytes_received),
            (self.v4.received, self.v4.sent)
        );
        let server_line = server_conns
            .iter()
            .find(|line| line.contains(&format!("peer=[::ffff:{}]", self.v4.local.ip())))
            .unwrap_or_else(|| panic!("server lacks the v4 connection: {server_conns:?}"));
        assert!(
            server_line.contains(&format!("read={} wrote={}", self.v4.sent, self.v4.received)),
            "{server_line}"
        );

        // IPv6 on both ends.
        let client_v6 = close(self.v6.local, server_v6);
        assert_eq!(client_v6.role, Role::Client);
        assert_eq!(
            (client_v6.bytes_sent, client_v6.bytes_received),
            (self.v6.sent, self.v6.received)
        );
        let server_v6_end = close(server_v6, self.v6.local);
        assert_eq!(server_v6_end.cgroup_id, self.server_cgroup);

        // The refused connect.
        let refused = Self::closes(&ours)
            .find(|c| c.endpoints.remote == SocketAddr::from((SERVER_V4, CLOSED_PORT)))
            .unwrap_or_else(|| panic!("no close for the refused connect:\n{}", dump()));
        assert_eq!(refused.outcome, Outcome::Refused);
        assert_eq!(refused.role, Role::Client);
        assert_eq!(refused.cgroup_id, self.client_cgroup);
        assert_eq!(refused.endpoints.local.ip(), IpAddr::V4(CLIENT_V4));
        assert_eq!(refused.established_ns, None);

        // HTTP on both ends of the v4 connection: GET /ok (200), GET /fail (500, slow).
        let exchange = |role: Role, path: &str| {
            Self::exchanges(&ours)
                .find(|x| {
                    x.role == role
                        && x.request.as_ref().is_some_and(|r| r.path() == path)
                        && (x.endpoints.local == self.v4.local
                            || x.endpoints.remote == self.v4.local)
                })
                .unwrap_or_else(|| panic!("no {role:?} exchange for {path}:\n{}", dump()))
                .clone()
        };
        let traceparent = TraceParent::parse(TRACEPARENT).expect("valid traceparent");
        for role in [Role::Client, Role::Server] {
            let (cgroup, local) = match role {
                Role::Client => (self.client_cgroup, self.v4.local),
                _ => (self.server_cgroup, server_v4),
            };
            let ok = exchange(role, "/ok");
            assert_eq!(ok.cgroup_id, cgroup);
            assert_eq!(ok.endpoints.local, local);
            let request = ok.request.as_ref().expect("parsed");
            assert_eq!(request.method, Method::Get);
            assert_eq!(request.host.as_deref(), Some(DNS_NAME));
            assert_eq!(request.traceparent, Some(traceparent));
            assert_eq!(ok.status.as_ref().map(|s| s.code), Some(200));

            let fail = exchange(role, "/fail");
            assert_eq!(fail.status.as_ref().map(|s| s.code), Some(500));
            assert!(
                fail.latency() >= SLOW_ANSWER,
                "{role:?} latency {:?} below the server's sleep",
                fail.latency()
            );
            assert!(fail.latency() < SLOW_ANSWER * 20, "{:?}", fail.latency());
        }
        let client_fail = exchange(Role::Client, "/fail").latency();
        let server_fail = exchange(Role::Server, "/fail").latency();
        assert!(
            client_fail >= server_fail,
            "the client waits at least as long as the server works: {client_fail:?} < {server_fail:?}"
        );
        assert!(
            Self::exchanges(&ours)
                .any(|x| x.role == Role::Client && x.endpoints.local == self.v6.local),
            "IPv6 exchange seen at the client:\n{}",
            dump()
        );

        // DNS at the resolver's socket.
        let answer = |name: &str| {
            Self::dns(&ours)
                .find(|r| {
                    r.role == Role::Client
                        && r.message
                            .as_ref()
                            .is_ok_and(|m| m.question.as_ref().is_some_and(|q| q.name == name))
                })
                .unwrap_or_else(|| panic!("no client DNS response for {name}:\n{}", dump()))
                .clone()
        };
        let found = answer(DNS_NAME);
        assert_eq!(found.cgroup_id, self.client_cgroup);
        assert_eq!(found.endpoints.local, self.dns_local);
        assert_eq!(
            found.endpoints.remote,
            SocketAddr::from((SERVER_V4, DNS_PORT))
        );
        assert_eq!(found.dns_id, 0x1234);
        assert!(found.latency().is_some(), "query seen, so latency known");
        let message = found.message.as_ref().expect("parsed");
        assert_eq!(message.rcode, Rcode::NoError);
        assert_eq!(
            message.question.as_ref().map(|q| q.qtype),
            Some(record_type::A)
        );
        assert_eq!(
            message.addresses().collect::<Vec<_>>(),
            vec![IpAddr::V4(DNS_ANSWER)]
        );
        let missing = answer(MISSING_NAME);
        let message = missing.message.as_ref().expect("parsed");
        assert_eq!(message.rcode, Rcode::NxDomain);
        assert_eq!(
            message.question.as_ref().map(|q| q.qtype),
            Some(record_type::AAAA)
        );
        assert!(
            Self::dns(&ours).any(|r| r.role == Role::Server && r.cgroup_id == self.server_cgroup)
        );
    }
}

fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Two namespaces joined by a veth pair, a cgroup per peer, and the peer processes. Drop tears
/// everything down, also while a failed assertion unwinds.
struct Lab {
    server_ns: String,
    client_ns: String,
    cgroup_dir: PathBuf,
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Lab {
    fn create(cgroup2: &Path) -> Lab {
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
    fn cgroup_id(&self, peer: &str) -> u64 {
        fs::metadata(self.cgroup_dir.join(peer))
            .expect("cgroup dir")
            .ino()
    }

    /// Starts this test binary's `peer` helper in `netns` and moves it into its cgroup before
    /// letting it open any socket (the socket's cgroup is fixed at creation).
    fn spawn_peer(&self, role: &str, netns: &str) -> Peer {
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

struct Peer {
    role: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("peer stdin open");
        writeln!(stdin, "{line}").expect("write to peer");
        stdin.flush().expect("flush peer stdin");
    }

    /// Waits for a line starting with `word`; returns the rest of it.
    fn wait_for(&mut self, word: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
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

    fn finish(mut self) {
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

// ---- the peer processes ----------------------------------------------------------------------

/// Runs inside a namespace as a separate process; see [`Lab::spawn_peer`].
#[test]
#[ignore = "helper process that kernel_reports_tcp_http_and_dns_between_namespaces spawns"]
fn peer() {
    let Ok(role) = std::env::var(PEER_ENV) else {
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
    match role.as_str() {
        "server" => run_server(&commands),
        "client" => run_client(&commands),
        other => panic!("unknown peer role {other}"),
    }
}

fn say(line: &str) {
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
struct Counting<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

fn run_server(commands: &mpsc::Receiver<String>) {
    // [::] is dual-stack: IPv4 clients arrive on an AF_INET6 socket as ::ffff:a.b.c.d.
    let listener = TcpListener::bind((Ipv6Addr::UNSPECIFIED, HTTP_PORT)).expect("bind http");
    let dns = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, DNS_PORT)).expect("bind dns");
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || serve_http(stream));
        }
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((len, from)) = dns.recv_from(&mut buf) {
            if let Some(response) = answer_dns(&buf[..len]) {
                let _ = dns.send_to(&response, from);
            }
        }
    });
    say("ready");
    while let Ok(command) = commands.recv() {
        if command == "quit" {
            break;
        }
    }
}

fn serve_http(stream: TcpStream) {
    let peer = stream.peer_addr().expect("peer address");
    let mut writer = stream.try_clone().expect("clone stream");
    let mut reader = BufReader::new(Counting {
        inner: stream,
        bytes: 0,
    });
    let mut wrote = 0u64;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            break;
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                break;
            }
        }
        let path = request_line.split(' ').nth(1).unwrap_or("/");
        let (status, body) = if path == "/fail" {
            std::thread::sleep(SLOW_ANSWER);
            ("500 Internal Server Error", "boom")
        } else {
            ("200 OK", "hello")
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        writer.write_all(response.as_bytes()).expect("respond");
        wrote += response.len() as u64;
    }
    let read = reader.get_ref().bytes;
    say(&format!(
        "server-conn peer={peer} read={read} wrote={wrote}"
    ));
}

fn encode_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD, one question
    encode_name(&mut out, name);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out
}

/// A tiny authoritative answer: DNS_NAME/A has one address, every other name is NXDOMAIN.
fn answer_dns(query: &[u8]) -> Option<Vec<u8>> {
    let message = strata_agent::dns::parse(query).ok()?;
    let question = message.question?;
    let question_end = 12 + question.name.len() + 2 + 4;
    let found = question.name == DNS_NAME && question.qtype == record_type::A;
    let mut out = Vec::new();
    out.extend_from_slice(&message.id.to_be_bytes());
    out.extend_from_slice(&(if found { 0x8580u16 } else { 0x8583 }).to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, u8::from(found), 0, 0, 0, 0]);
    out.extend_from_slice(query.get(12..question_end)?);
    if found {
        out.extend_from_slice(&[0xc0, 12]);
        out.extend_from_slice(&record_type::A.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&60u32.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&DNS_ANSWER.octets());
    }
    Some(out)
}

/// Sends one request and reads its whole response; returns (bytes sent, bytes received).
fn http_exchange(stream: &mut TcpStream, path: &str) -> (u64, u64) {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {DNS_NAME}\r\ntraceparent: {TRACEPARENT}\r\n\
         User-Agent: strata-test\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("send request");
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).expect("read response");
        assert!(n > 0, "server closed mid-response");
        received.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&received);
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length: usize = text
                .lines()
                .find_map(|line| line.strip_prefix("Content-Length: "))
                .and_then(|value| value.trim().parse().ok())
                .expect("content length");
            if received.len() >= head_end + 4 + length {
                return (request.len() as u64, received.len() as u64);
            }
        }
    }
}

fn run_client(commands: &mpsc::Receiver<String>) {
    let mut v4 = TcpStream::connect((SERVER_V4, HTTP_PORT)).expect("connect v4");
    let (sent_ok, received_ok) = http_exchange(&mut v4, "/ok");
    let (sent_fail, received_fail) = http_exchange(&mut v4, "/fail");
    say(&format!(
        "http-v4 local={} sent={} received={}",
        v4.local_addr().expect("local"),
        sent_ok + sent_fail,
        received_ok + received_fail
    ));

    let mut v6 = TcpStream::connect((SERVER_V6, HTTP_PORT)).expect("connect v6");
    let (sent, received) = http_exchange(&mut v6, "/ok");
    say(&format!(
        "http-v6 local={} sent={sent} received={received}",
        v6.local_addr().expect("local")
    ));
    drop(v6);

    let refused = TcpStream::connect((SERVER_V4, CLOSED_PORT)).expect_err("nothing listens");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    say("refused");

    let resolver = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind resolver");
    resolver
        .connect((SERVER_V4, DNS_PORT))
        .expect("connect resolver");
    resolver
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 512];
    for (id, name, qtype) in [
        (0x1234, DNS_NAME, record_type::A),
        (0x5678, MISSING_NAME, record_type::AAAA),
    ] {
        resolver
            .send(&dns_query(id, name, qtype))
            .expect("send query");
        let len = resolver.recv(&mut buf).expect("dns answer");
        let answer = strata_agent::dns::parse(&buf[..len]).expect("answer parses");
        assert_eq!(answer.id, id);
    }
    say(&format!("dns {}", resolver.local_addr().expect("local")));

    say("holding");
    while let Ok(command) = commands.recv() {
        if command == "close" {
            break;
        }
    }
    drop(v4);
    say("closed");
}
