//! Faults as the kernel reports them, as root between two namespaces: retransmits under packet
//! loss (nftables drops a quarter of the data segments), a connection reset by its peer, a
//! connect that times out (SYNs dropped), and a connection opened before the programs were
//! loaded, which is tracked from its first segment after, with the socket's own counters. Loss comes from nftables because this
//! kernel has no `sch_netem`.
//!
//! Needs root, `ip` and `nft`; skips loudly without them, fails under `STRATA_REQUIRE_ALL=1`.

#[macro_use]
mod lab;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lab::{monotonic_ns, say, EventLog, Lab, SERVER_V4};
use strata_agent::events::{ConnectionClosed, Event, Outcome, Role};
use strata_agent::flow_table::FlowTable;

const LOSSY_PORT: u16 = 8081;
const EARLY_PORT: u16 = 8082;
const RESET_PORT: u16 = 8083;
/// SYNs to this port are dropped: connects time out.
const BLACKHOLE_PORT: u16 = 81;
const LOSSY_BYTES: usize = 256 * 1024;
const EARLY_BYTES: usize = 1000;

/// Drops one in four data-carrying segments to the lossy port (handshakes pass, so the loss
/// shows as data retransmits), and every packet to the blackhole port.
const FAULTS: &str = "table inet strata_faults {
  chain input {
    type filter hook input priority filter; policy accept;
    tcp dport 81 drop
    tcp dport 8081 meta length > 200 numgen random mod 4 == 0 drop
  }
}
";

fn install_faults(netns: &str) {
    let mut nft = Command::new("ip")
        .args(["netns", "exec", netns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("run nft");
    nft.stdin
        .take()
        .expect("nft stdin")
        .write_all(FAULTS.as_bytes())
        .expect("write ruleset");
    assert!(
        nft.wait().expect("nft exits").success(),
        "nft rejected the ruleset"
    );
}

#[test]
fn kernel_reports_retransmits_resets_timeouts_and_late_sockets() {
    let features = or_skip!(lab::preconditions(&["ip", "nft"]));
    let cgroup2 = features.cgroup2.clone().expect("checked by preconditions");
    let lab = Lab::create(&cgroup2);
    install_faults(&lab.server_ns);
    let client_cgroup = lab.cgroup_id("client");
    let server_cgroup = lab.cgroup_id("server");
    let mut server = lab.spawn_peer("server", &lab.server_ns);
    server.wait_for("ready");
    let mut client = lab.spawn_peer("client", &lab.client_ns);
    let early: SocketAddr = client
        .wait_for("early")
        .parse()
        .expect("early local address");

    // Loaded only now: the early connection exists before any program saw it.
    let mut probes = or_skip!(lab::attach_all(&features));
    let log = EventLog::start(&mut probes);
    client.send("loaded");
    client.wait_for("early-sent");
    server.wait_for("early-read");

    // Both sockets are first seen at the segment that carried the bytes (the packet programs track
    // a socket they meet with a payload), and the scan's refresh reads their counters.
    let mut sock_stats = probes.take_sock_stats().expect("sock_stats map");
    let deadline = Instant::now() + Duration::from_secs(2);
    let (scan, late_client) = loop {
        let scan = FlowTable::new(Duration::from_secs(300).as_nanos() as u64)
            .scan(&mut sock_stats, monotonic_ns())
            .expect("scan sock_stats");
        let acknowledged = scan
            .deltas
            .iter()
            .find(|delta| delta.endpoints.local == early && delta.bytes_sent == EARLY_BYTES as u64);
        if let Some(late_client) = acknowledged.cloned() {
            break (scan, late_client);
        }
        assert!(
            Instant::now() < deadline,
            "early connection {early} not tracked with its bytes: {scan:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(late_client.role, Role::Unknown, "its open was never seen");
    assert_eq!(late_client.cgroup_id, client_cgroup);
    assert_eq!(
        late_client.endpoints.remote,
        SocketAddr::from((SERVER_V4, EARLY_PORT))
    );
    let late_server = scan
        .deltas
        .iter()
        .find(|delta| delta.endpoints.remote == early)
        .expect("server end of the early connection tracked");
    assert_eq!(late_server.cgroup_id, server_cgroup);
    assert_eq!(late_server.role, Role::Unknown);
    assert_eq!(late_server.bytes_received, EARLY_BYTES as u64);

    let lossy: SocketAddr = client.wait_for("lossy").parse().expect("lossy local");
    let reset: SocketAddr = client.wait_for("reset").parse().expect("reset local");
    let timed_out: SocketAddr = client.wait_for("timeout").parse().expect("timeout local");
    client.wait_for("holding");
    client.send("close");
    client.wait_for("closed");
    client.finish();
    server.send("quit");
    server.finish();

    // A failed connect leaves getsockname() with no address, only the port: match on what
    // the client could know.
    let same_end = |seen: SocketAddr, reported: SocketAddr| {
        seen.port() == reported.port()
            && (reported.ip().is_unspecified() || seen.ip() == reported.ip())
    };
    let find = |events: &[Event], local: SocketAddr| -> Option<ConnectionClosed> {
        events.iter().find_map(|event| match event {
            Event::ConnectionClosed(closed)
                if same_end(closed.endpoints.local, local) && closed.cgroup_id == client_cgroup =>
            {
                Some(closed.clone())
            }
            _ => None,
        })
    };
    let server_end_of = |events: &[Event], remote: SocketAddr| -> Option<ConnectionClosed> {
        events.iter().find_map(|event| match event {
            Event::ConnectionClosed(closed)
                if closed.endpoints.remote == remote && closed.cgroup_id == server_cgroup =>
            {
                Some(closed.clone())
            }
            _ => None,
        })
    };
    let events = log.wait_until(Duration::from_secs(5), |events| {
        [lossy, reset, timed_out, early]
            .iter()
            .all(|local| find(events, *local).is_some())
            && server_end_of(events, early).is_some()
    });
    let counters = probes.counters().expect("counters");
    let close = |local: SocketAddr| {
        find(&events, local).unwrap_or_else(|| {
            let ours: Vec<&Event> = events
                .iter()
                .filter(|e| lab::cgroup_of(e) == client_cgroup)
                .collect();
            // Any cgroup: an event with the wrong cgroup would not be among ours.
            let same_port: Vec<&Event> = events
                .iter()
                .filter(|e| format!("{e:?}").contains(&format!(":{}", local.port())))
                .collect();
            panic!(
                "no close for {local}: ours {ours:#?}; any event naming port {}: {same_port:#?}; \
                 kernel counters {counters:?}",
                local.port()
            )
        })
    };

    let lossy = close(lossy);
    assert_eq!(lossy.outcome, Outcome::Closed);
    assert_eq!(lossy.bytes_sent, LOSSY_BYTES as u64);
    assert!(
        lossy.retransmits > 0,
        "a quarter of the segments were dropped: {lossy:?}"
    );
    let (srtt, min_rtt) = (
        lossy.srtt_us.expect("srtt"),
        lossy.min_rtt_us.expect("min rtt"),
    );
    assert!(min_rtt <= srtt, "min {min_rtt} µs above smoothed {srtt} µs");

    let reset = close(reset);
    assert_eq!(reset.outcome, Outcome::Reset);
    assert_eq!(reset.role, Role::Client);

    let timed_out = close(timed_out);
    assert_eq!(timed_out.outcome, Outcome::ConnectTimedOut);
    assert!(timed_out.outcome.is_failed_connect());
    assert_eq!(
        timed_out.endpoints.remote,
        SocketAddr::from((SERVER_V4, BLACKHOLE_PORT))
    );
    assert_eq!(timed_out.established_ns, None);
    assert_eq!(timed_out.endpoints.local.ip(), lab::CLIENT_V4);

    let late = close(early);
    assert_eq!(late.role, Role::Unknown);
    assert_eq!(late.opened_ns, None);
    assert_eq!(late.bytes_sent, EARLY_BYTES as u64);
    assert_eq!(late.outcome, Outcome::Closed);
    let late_server = server_end_of(&events, early).expect("server end of the early connection");
    assert_eq!(late_server.role, Role::Unknown);
    assert_eq!(late_server.bytes_received, EARLY_BYTES as u64);

    assert_eq!(counters["ringbuf_lost_connection"], 0, "{counters:?}");
    assert_eq!(log.decode_errors(), 0);
    drop(sock_stats);
    lab::assert_detached_on_drop(probes);
    drop(lab);
}

// ---- the peer processes ----------------------------------------------------------------------

/// Runs inside a namespace as a separate process; see `Lab::spawn_peer`.
#[test]
#[ignore = "helper process that kernel_reports_retransmits_resets_timeouts_and_late_sockets spawns"]
fn peer() {
    lab::run_peer(|role, commands| match role {
        "server" => run_server(commands),
        "client" => run_client(commands),
        other => panic!("unknown peer role {other}"),
    });
}

/// Reads until the peer closes; returns the byte count.
fn drain(mut stream: TcpStream) -> u64 {
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0u64;
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    total
}

fn run_server(commands: &mpsc::Receiver<String>) {
    let bind = |port| TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)).expect("bind");
    let (lossy, early, reset) = (bind(LOSSY_PORT), bind(EARLY_PORT), bind(RESET_PORT));
    std::thread::spawn(move || {
        for stream in lossy.incoming().map_while(Result::ok) {
            std::thread::spawn(move || drain(stream));
        }
    });
    std::thread::spawn(move || {
        for mut stream in early.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut buf = vec![0u8; EARLY_BYTES];
                stream.read_exact(&mut buf).expect("early bytes");
                say("early-read");
                drain(stream);
            });
        }
    });
    std::thread::spawn(move || {
        for mut stream in reset.incoming().map_while(Result::ok) {
            let mut ping = [0u8; 4];
            stream.read_exact(&mut ping).expect("ping");
            abort(stream);
        }
    });
    say("ready");
    lab::await_command(commands, "quit");
}

/// Closes with SO_LINGER 0: the kernel sends RST instead of FIN.
fn abort(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a correctly sized `linger` option value.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
}

/// connect(2) with one SYN retry (about 3 s in all); returns the local address it was bound to.
fn connect_with_one_retry(to: SocketAddrV4) -> (SocketAddr, std::io::Error) {
    // SAFETY: plain socket(2); the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    let one: libc::c_int = 1;
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: to.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*to.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let mut local: libc::sockaddr_in = addr;
    let mut local_len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: valid fd, option and address buffers of the sizes passed.
    let error = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_SYNCNT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let rc = libc::connect(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, -1, "the blackhole accepted a connection");
        let error = std::io::Error::last_os_error();
        libc::getsockname(
            fd,
            (&mut local as *mut libc::sockaddr_in).cast(),
            &mut local_len,
        );
        libc::close(fd);
        error
    };
    let local = SocketAddr::from((
        Ipv4Addr::from(u32::from_be(local.sin_addr.s_addr)),
        u16::from_be(local.sin_port),
    ));
    (local, error)
}

fn run_client(commands: &mpsc::Receiver<String>) {
    let mut early = TcpStream::connect((SERVER_V4, EARLY_PORT)).expect("connect early");
    say(&format!("early {}", early.local_addr().expect("local")));
    lab::await_command(commands, "loaded");
    early.write_all(&[b'e'; EARLY_BYTES]).expect("early bytes");
    say("early-sent");

    let mut lossy = TcpStream::connect((SERVER_V4, LOSSY_PORT)).expect("connect lossy");
    let chunk = [b'x'; 16 * 1024];
    for _ in 0..LOSSY_BYTES / chunk.len() {
        lossy.write_all(&chunk).expect("lossy write");
    }
    lossy.shutdown(Shutdown::Write).expect("shutdown");
    drain(lossy.try_clone().expect("clone"));
    say(&format!("lossy {}", lossy.local_addr().expect("local")));
    drop(lossy);

    let mut reset = TcpStream::connect((SERVER_V4, RESET_PORT)).expect("connect reset");
    let local = reset.local_addr().expect("local");
    reset.write_all(b"ping").expect("ping");
    let mut buf = [0u8; 16];
    let err = reset.read(&mut buf).expect_err("the server resets");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    say(&format!("reset {local}"));
    drop(reset);

    let (local, error) = connect_with_one_retry(SocketAddrV4::new(SERVER_V4, BLACKHOLE_PORT));
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut, "{error}");
    say(&format!("timeout {local}"));

    say("holding");
    lab::await_command(commands, "close");
    drop(early);
    say("closed");
}
