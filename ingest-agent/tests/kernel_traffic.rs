//! Loads and attaches every hook as root, then drives real traffic between two network
//! namespaces joined by a veth pair, each peer a separate process in its own child cgroup, and
//! checks what the kernel reports: connection opens and closes with addresses, ports and cgroup
//! ids; bytes both ways; a refused connect; HTTP method, path, status, latency and traceparent on
//! both ends (traced requests as records, an untraced one counted in the socket's slots); DNS name, type, response code, answers and latency; live per-socket counters.
//!
//! Needs root, `ip` (iproute2), kernel BTF, tracefs and a cgroup2 mount. Without them it skips
//! with a loud message, and fails instead under `STRATA_REQUIRE_ALL=1`. Namespaces, cgroups and
//! peer processes are removed even when an assertion fails.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

#[macro_use]
mod lab;

use lab::{monotonic_ns, say, Counting, EventLog, Lab, CLIENT_V4, SERVER_V4, SERVER_V6};
use strata_agent::clock::{Clock, SystemClock};
use strata_agent::dns::{record_type, Rcode};
use strata_agent::events::{
    ConnectionClosed, DnsResponse, Endpoints, Event, HttpExchange, Outcome, Role,
};
use strata_agent::flow_table::{FlowTable, SockStatsSource};
use strata_agent::http::{Method, TraceParent};
use strata_ebpf::abi;

const HTTP_PORT: u16 = 8080;
/// Nothing listens here: connects are refused.
const CLOSED_PORT: u16 = 9;
const DNS_PORT: u16 = 53;
const DNS_NAME: &str = "api.strata.test";
const DNS_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);
const MISSING_NAME: &str = "missing.strata.test";
/// The id of the query sent over IPv6.
const DNS_ID_V6: u16 = 0x9abc;
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
/// The server sleeps this long before answering `/fail`.
const SLOW_ANSWER: Duration = Duration::from_millis(100);
/// The interim response to `Expect: 100-continue`; the exchange must end at the final one.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
const UPLOAD: &[u8] = b"abcde";

#[test]
fn kernel_reports_tcp_http_and_dns_between_namespaces() {
    let features = or_skip!(lab::preconditions(&["ip"]));
    let mut probes = or_skip!(lab::attach_all(&features));
    let log = EventLog::start(&mut probes);
    let cgroup2 = features.cgroup2.clone().expect("checked by preconditions");

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
    let dns6_local: SocketAddr = client.wait_for("dns6").parse().expect("dns local address");
    client.wait_for("holding");

    // While the v4 connection is held open, its counters are live in the kernel map: the scan's
    // refresh reads them from both sockets, exact.
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
        live.bytes_sent, v4.sent,
        "the last response acknowledged the requests"
    );
    assert_eq!(live.bytes_received, v4.received, "every response: {live:?}");
    assert!(live.open);
    assert!(
        live.srtt_us.is_some_and(|srtt| srtt > 0),
        "the refresh sampled the RTT of the live connection: {live:?}"
    );
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
        (v4.received, v4.sent),
        "{server_side:?}"
    );

    // Idle but open, the held connection stays tracked: each read marks an open socket seen, so
    // scans that clear entries idle for 100 ms keep both its ends (the second one after nothing
    // moved at all, not even a delayed ACK).
    let mut strict = FlowTable::new(Duration::from_millis(100).as_nanos() as u64);
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(150));
        strict
            .scan(&mut sock_stats, monotonic_ns())
            .expect("scan sock_stats");
    }
    sock_stats
        .refresh()
        .expect("the refresh runs and writes whole entries");
    let entries = sock_stats.read_all().expect("read sock_stats");
    let tracked = |local: SocketAddr, remote: SocketAddr| {
        entries.iter().any(|(_, stats)| {
            let ends = Endpoints::from(&stats.tuple);
            ends.local == local && ends.remote == remote
        })
    };
    assert!(
        tracked(v4.local, server_side.endpoints.local)
            && tracked(server_side.endpoints.local, v4.local),
        "the idle connection's entries were cleared"
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
        dns6_local,
        client_cgroup,
        server_cgroup,
    };
    let seen = log.wait_until(Duration::from_secs(5), |events| expect.all_seen(events));
    expect.check(&seen, &server_conns);

    let counters = probes.counters().expect("counters");
    for lost in [
        "ringbuf_lost_connection",
        "ringbuf_lost_http",
        "ringbuf_lost_dns",
    ] {
        assert_eq!(counters[lost], 0, "{lost}: {counters:?}");
    }
    assert_eq!(log.decode_errors(), 0);
    drop(sock_stats);
    lab::assert_detached_on_drop(probes);
    drop(lab);
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
    dns6_local: SocketAddr,
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
    /// connect, the four traced HTTP exchanges on v4 and two on v6 (both ends each; the
    /// untraced upload is counted in the kernel, not sent), and the three DNS responses at the
    /// client.
    fn all_seen(&self, events: &[Event]) -> bool {
        let ours = self.ours(events);
        Self::closes(&ours).count() >= 5
            && Self::exchanges(&ours).count() >= 6
            && Self::dns(&ours)
                .filter(|r| r.cgroup_id == self.client_cgroup)
                .count()
                >= 3
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
            // Kernel timestamps are CLOCK_MONOTONIC: converted, they land seconds ago at most.
            let at = SystemClock::new().wall_time(ok.request_ns);
            let age = SystemTime::now()
                .duration_since(at)
                .expect("not in the future");
            assert!(age < Duration::from_secs(60), "request {age:?} ago");
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
        // The upload carries no traceparent: each end's kernel counted it in the socket's
        // slots, which the close summary carries, and sent no exchange. The traced GETs went
        // to the ring only, so no slot holds them.
        assert!(
            !Self::exchanges(&ours)
                .any(|x| x.request.as_ref().is_some_and(|r| r.method == Method::Post)),
            "the untraced upload is not sent:\n{}",
            dump()
        );
        for (end, role) in [
            (&client_v4, abi::role::CLIENT),
            (&server_end, abi::role::SERVER),
        ] {
            let used: Vec<_> = end.http.iter().filter(|slot| slot.status != 0).collect();
            assert_eq!(used.len(), 1, "{role}: {:?}", end.http);
            let upload = used[0];
            assert_eq!(
                upload.status, 201,
                "{role}: the exchange ends at the final response, not at 100 Continue"
            );
            assert_eq!(
                (upload.method, upload.role, upload.count),
                (abi::http_method::POST, role, 1)
            );
            assert!(upload.latency_sum_ns > 0);
            assert_eq!(upload.buckets.iter().sum::<u32>(), 1);
            assert_eq!(
                u64::from(upload.latency_max_us),
                upload.latency_sum_ns / 1_000
            );
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

        // Over IPv6 the same way.
        let v6 = Self::dns(&ours)
            .find(|r| r.role == Role::Client && r.dns_id == DNS_ID_V6)
            .unwrap_or_else(|| panic!("no client DNS response over IPv6:\n{}", dump()));
        assert_eq!(v6.endpoints.local, self.dns6_local);
        assert_eq!(v6.endpoints.remote, SocketAddr::from((SERVER_V6, DNS_PORT)));
        assert!(v6.latency().is_some());
        assert_eq!(
            v6.message
                .as_ref()
                .map(|m| m.addresses().collect::<Vec<_>>()),
            Ok(vec![IpAddr::V4(DNS_ANSWER)])
        );

        // At the server: query in to response out, on its own socket and cgroup.
        let served = Self::dns(&ours)
            .find(|r| r.role == Role::Server && r.dns_id == 0x1234)
            .unwrap_or_else(|| panic!("no server-side DNS response:\n{}", dump()));
        assert_eq!(served.cgroup_id, self.server_cgroup);
        assert_eq!(
            served.endpoints.local,
            SocketAddr::from((SERVER_V4, DNS_PORT))
        );
        assert!(
            served.latency().is_some(),
            "the server saw the query arrive"
        );
    }
}

// ---- the peer processes ----------------------------------------------------------------------

/// Runs inside a namespace as a separate process; see `Lab::spawn_peer`.
#[test]
#[ignore = "helper process that kernel_reports_tcp_http_and_dns_between_namespaces spawns"]
fn peer() {
    lab::run_peer(|role, commands| match role {
        "server" => run_server(commands),
        "client" => run_client(commands),
        other => panic!("unknown peer role {other}"),
    });
}

fn run_server(commands: &mpsc::Receiver<String>) {
    // [::] is dual-stack: IPv4 clients arrive on an AF_INET6 socket as ::ffff:a.b.c.d.
    let listener = TcpListener::bind((Ipv6Addr::UNSPECIFIED, HTTP_PORT)).expect("bind http");
    let dns = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, DNS_PORT)).expect("bind dns");
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
    lab::await_command(commands, "quit");
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
        let mut expects_continue = false;
        let mut body_len = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                break;
            }
            let lower = header.to_ascii_lowercase();
            expects_continue |= lower.starts_with("expect: 100-continue");
            if let Some(value) = lower.strip_prefix("content-length:") {
                body_len = value.trim().parse().expect("content length");
            }
        }
        if expects_continue {
            writer.write_all(CONTINUE).expect("100 Continue");
            wrote += CONTINUE.len() as u64;
        }
        let mut request_body = vec![0u8; body_len];
        reader.read_exact(&mut request_body).expect("request body");
        let path = request_line.split(' ').nth(1).unwrap_or("/");
        let (status, body) = match path {
            "/fail" => {
                std::thread::sleep(SLOW_ANSWER);
                ("500 Internal Server Error", "boom")
            }
            "/upload" => ("201 Created", "stored"),
            _ => ("200 OK", "hello"),
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
    (request.len() as u64, read_response(stream))
}

/// POST with `Expect: 100-continue`: head, wait for 100 Continue, body, final response.
fn upload_after_continue(stream: &mut TcpStream) -> (u64, u64) {
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: {DNS_NAME}\r\nContent-Length: {}\r\n\
         Expect: 100-continue\r\n\r\n",
        UPLOAD.len()
    );
    stream.write_all(head.as_bytes()).expect("send head");
    let mut interim = vec![0u8; CONTINUE.len()];
    stream.read_exact(&mut interim).expect("100 Continue");
    assert_eq!(interim, CONTINUE);
    stream.write_all(UPLOAD).expect("send body");
    let received = read_response(stream);
    (
        (head.len() + UPLOAD.len()) as u64,
        (CONTINUE.len() as u64) + received,
    )
}

/// Reads one response with a Content-Length body; returns the bytes read.
fn read_response(stream: &mut TcpStream) -> u64 {
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
                return received.len() as u64;
            }
        }
    }
}

fn run_client(commands: &mpsc::Receiver<String>) {
    let mut v4 = TcpStream::connect((SERVER_V4, HTTP_PORT)).expect("connect v4");
    let (sent_ok, received_ok) = http_exchange(&mut v4, "/ok");
    let (sent_fail, received_fail) = http_exchange(&mut v4, "/fail");
    let (sent_upload, received_upload) = upload_after_continue(&mut v4);
    say(&format!(
        "http-v4 local={} sent={} received={}",
        v4.local_addr().expect("local"),
        sent_ok + sent_fail + sent_upload,
        received_ok + received_fail + received_upload
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

    let resolver6 = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).expect("bind resolver");
    resolver6
        .connect((SERVER_V6, DNS_PORT))
        .expect("connect resolver");
    resolver6
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    resolver6
        .send(&dns_query(DNS_ID_V6, DNS_NAME, record_type::A))
        .expect("send query");
    let len = resolver6.recv(&mut buf).expect("dns answer");
    assert_eq!(
        strata_agent::dns::parse(&buf[..len]).map(|m| m.id),
        Ok(DNS_ID_V6)
    );
    say(&format!("dns6 {}", resolver6.local_addr().expect("local")));

    say("holding");
    lab::await_command(commands, "close");
    drop(v4);
    say("closed");
}
