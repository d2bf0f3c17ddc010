//! Decodes ring-buffer records (the `strata_ebpf::abi` layouts) into domain events: connection
//! summaries with a classified outcome, HTTP exchanges with parsed heads, DNS responses with
//! parsed answers. Pure: bytes in, values out, so all of it is tested without a kernel.
//! Timestamps stay CLOCK_MONOTONIC nanoseconds, as the kernel wrote them.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use strata_ebpf::abi::{self, event_kind, tcp_state};

use crate::dns;
use crate::error::{Error, Result};
use crate::http::{self, RequestHead, StatusLine};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Tcp,
    Udp,
    Other(u8),
}

/// Both ends of a socket, from its own point of view. IPv4-mapped addresses are shown as IPv4,
/// so an IPv4 peer of a dual-stack socket looks the same in every event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Endpoints {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub transport: Transport,
}

impl From<&abi::FlowTuple> for Endpoints {
    fn from(tuple: &abi::FlowTuple) -> Self {
        let addr = |octets: [u8; 16]| Ipv6Addr::from(octets).to_canonical();
        Endpoints {
            local: SocketAddr::new(addr(tuple.local_addr), tuple.local_port),
            remote: SocketAddr::new(addr(tuple.remote_addr), tuple.remote_port),
            transport: match tuple.protocol {
                abi::IPPROTO_TCP => Transport::Tcp,
                abi::IPPROTO_UDP => Transport::Udp,
                other => Transport::Other(other),
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Client,
    Server,
    Unknown,
}

impl Role {
    pub fn from_abi(role: u8) -> Role {
        match role {
            abi::role::CLIENT => Role::Client,
            abi::role::SERVER => Role::Server,
            _ => Role::Unknown,
        }
    }
}

/// How a connection ended. The first group are connects that never got a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Connect answered by RST: nothing listens there.
    Refused,
    /// Connect gave up retransmitting its SYN.
    ConnectTimedOut,
    /// Connect failed on an ICMP unreachable.
    Unreachable,
    /// Connect abandoned by the application before an answer.
    Aborted,
    /// Connect failed with another error, as errno.
    ConnectFailed(i32),
    /// A server-side handshake that never completed.
    HandshakeFailed,
    /// Established, then closed without error.
    Closed,
    /// Established, then reset (RST received, or written after the peer left).
    Reset,
    /// Established, then gave up retransmitting.
    TimedOut,
    /// Established, then failed with another error, as errno.
    Failed(i32),
}

// Linux errno values the kernel leaves in sk->sk_err.
const EPIPE: i32 = 32;
const ENETUNREACH: i32 = 101;
const ECONNRESET: i32 = 104;
const ETIMEDOUT: i32 = 110;
const ECONNREFUSED: i32 = 111;
const EHOSTUNREACH: i32 = 113;

impl Outcome {
    /// From the state before TCP_CLOSE and the socket error at that moment: tcp_reset() and
    /// tcp_write_err() set sk_err before they close the socket.
    pub fn classify(old_state: u8, sk_err: i32) -> Outcome {
        match old_state {
            tcp_state::SYN_SENT => match sk_err {
                0 => Outcome::Aborted,
                ECONNREFUSED => Outcome::Refused,
                ETIMEDOUT => Outcome::ConnectTimedOut,
                EHOSTUNREACH | ENETUNREACH => Outcome::Unreachable,
                other => Outcome::ConnectFailed(other),
            },
            tcp_state::SYN_RECV => Outcome::HandshakeFailed,
            _ => match sk_err {
                0 => Outcome::Closed,
                ECONNRESET | EPIPE => Outcome::Reset,
                ETIMEDOUT => Outcome::TimedOut,
                other => Outcome::Failed(other),
            },
        }
    }

    /// A connect that never got a connection.
    pub fn is_failed_connect(&self) -> bool {
        matches!(
            self,
            Outcome::Refused
                | Outcome::ConnectTimedOut
                | Outcome::Unreachable
                | Outcome::Aborted
                | Outcome::ConnectFailed(_)
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionClosed {
    /// The kernel socket address; unique only among open sockets.
    pub sock_id: u64,
    pub cgroup_id: u64,
    pub endpoints: Endpoints,
    pub role: Role,
    pub outcome: Outcome,
    /// Open and established times; `None` for sockets first seen mid-connection.
    pub opened_ns: Option<u64>,
    pub established_ns: Option<u64>,
    pub closed_ns: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub segs_out: u32,
    pub segs_in: u32,
    pub retransmits: u32,
    pub srtt_us: Option<u32>,
    pub min_rtt_us: Option<u32>,
    /// The kernel's running count and (wrapping) sum of sampled smoothed RTTs.
    pub rtt_samples: u32,
    pub srtt_sum_us: u32,
    /// HTTP exchanges the kernel counted on the socket, as at the close.
    pub http: [abi::HttpSlot; abi::HTTP_SLOTS],
}

impl ConnectionClosed {
    /// Time from connect (or SYN) to ESTABLISHED.
    pub fn handshake(&self) -> Option<Duration> {
        Some(Duration::from_nanos(
            self.established_ns?.checked_sub(self.opened_ns?)?,
        ))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpExchange {
    pub cgroup_id: u64,
    pub sock_cookie: u64,
    pub endpoints: Endpoints,
    pub role: Role,
    pub request_ns: u64,
    pub response_ns: u64,
    /// `None` when the captured bytes hold no complete HTTP/1.x request line.
    pub request: Option<RequestHead>,
    /// `None` when the captured bytes hold no valid status line.
    pub status: Option<StatusLine>,
    /// The request's first segment was longer than the capture.
    pub request_truncated: bool,
}

impl HttpExchange {
    /// Server: request in to response out. Client: request out to response in.
    pub fn latency(&self) -> Duration {
        Duration::from_nanos(self.response_ns.saturating_sub(self.request_ns))
    }

    /// For tests: `GET /work` answered with `status` after `latency_ns` on a server socket
    /// (10.0.0.2:80, the client 10.0.0.3:40000), no trace context.
    #[cfg(test)]
    pub(crate) fn served(status: u16, latency_ns: u64) -> HttpExchange {
        HttpExchange {
            cgroup_id: 1,
            sock_cookie: 2,
            endpoints: Endpoints {
                local: "10.0.0.2:80".parse().unwrap(),
                remote: "10.0.0.3:40000".parse().unwrap(),
                transport: Transport::Tcp,
            },
            role: Role::Server,
            request_ns: 0,
            response_ns: latency_ns,
            request: crate::http::parse_request_head(
                b"GET /work HTTP/1.1\r\nHost: core-api\r\n\r\n",
            ),
            status: crate::http::parse_status_line(format!("HTTP/1.1 {status} X\r\n").as_bytes()),
            request_truncated: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsResponse {
    pub cgroup_id: u64,
    pub endpoints: Endpoints,
    /// Client: the response arrived at the resolver's socket. Server: it left the server's.
    pub role: Role,
    pub dns_id: u16,
    /// `None` when the query was not seen (agent started late, or the pending map evicted it).
    pub query_ns: Option<u64>,
    pub response_ns: u64,
    pub message: Result<dns::Message, dns::DnsError>,
}

impl DnsResponse {
    pub fn latency(&self) -> Option<Duration> {
        Some(Duration::from_nanos(
            self.response_ns.checked_sub(self.query_ns?)?,
        ))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    ConnectionClosed(ConnectionClosed),
    Http(HttpExchange),
    Dns(DnsResponse),
}

/// Decodes one ring-buffer record.
pub fn decode(record: &[u8]) -> Result<Event> {
    let header: abi::EventHeader = abi::read_plain(record).ok_or(Error::ShortRecord {
        kind: 0,
        len: record.len(),
    })?;
    let short = || Error::ShortRecord {
        kind: header.kind,
        len: record.len(),
    };
    match header.kind {
        event_kind::CONN_CLOSED => {
            let raw: abi::ConnClosed = abi::read_plain(record).ok_or_else(short)?;
            Ok(Event::ConnectionClosed(connection_closed(&raw)))
        }
        event_kind::HTTP_EXCHANGE => {
            let raw: abi::HttpExchange =
                abi::read_plain_truncated(record, abi::HTTP_EXCHANGE_FIXED_LEN)
                    .ok_or_else(short)?;
            let present = record.len() - abi::HTTP_EXCHANGE_FIXED_LEN;
            Ok(Event::Http(http_exchange(&raw, present)))
        }
        event_kind::DNS_MESSAGE => {
            let raw: abi::DnsMessage =
                abi::read_plain_truncated(record, abi::DNS_MESSAGE_FIXED_LEN).ok_or_else(short)?;
            let present = record.len() - abi::DNS_MESSAGE_FIXED_LEN;
            Ok(Event::Dns(dns_response(&raw, present)))
        }
        other => Err(Error::UnknownEventKind(other)),
    }
}

fn nonzero<T: Default + PartialEq>(value: T) -> Option<T> {
    (value != T::default()).then_some(value)
}

fn connection_closed(raw: &abi::ConnClosed) -> ConnectionClosed {
    let stats = &raw.stats;
    ConnectionClosed {
        sock_id: raw.sock_id,
        cgroup_id: stats.cgroup_id,
        endpoints: Endpoints::from(&stats.tuple),
        role: Role::from_abi(stats.role),
        outcome: Outcome::classify(raw.old_state, raw.sk_err),
        opened_ns: nonzero(stats.opened_ns),
        established_ns: nonzero(stats.established_ns),
        closed_ns: raw.closed_ns,
        bytes_sent: stats.bytes_sent,
        bytes_received: stats.bytes_received,
        segs_out: stats.segs_out,
        segs_in: stats.segs_in,
        retransmits: stats.retransmits,
        srtt_us: nonzero(stats.srtt_us),
        min_rtt_us: nonzero(stats.min_rtt_us),
        rtt_samples: stats.rtt_samples,
        srtt_sum_us: stats.srtt_sum_us,
        http: stats.http,
    }
}

/// `present`: bytes of the variable tail the record actually carried; lengths claimed by the
/// kernel are never trusted past it.
fn http_exchange(raw: &abi::HttpExchange, present: usize) -> HttpExchange {
    let request_len = usize::from(raw.request_len)
        .min(present)
        .min(raw.request.len());
    let response_len = usize::from(raw.response_len).min(raw.response.len());
    let mut request = http::parse_request_head(&raw.request[..request_len]);
    if let Some(head) = request.as_mut().filter(|head| head.traceparent.is_none()) {
        head.traceparent = carried_traceparent(raw);
    }
    HttpExchange {
        cgroup_id: raw.cgroup_id,
        sock_cookie: raw.sock_cookie,
        endpoints: Endpoints::from(&raw.tuple),
        role: Role::from_abi(raw.role),
        request_ns: raw.request_ns,
        response_ns: raw.response_ns,
        request,
        status: http::parse_status_line(&raw.response[..response_len]),
        request_truncated: raw.request_payload_len as usize > request_len,
    }
}

/// The `traceparent` value the kernel carried on its own, found in the request's first segment past
/// the head's capture: its bytes up to the end of the line.
fn carried_traceparent(raw: &abi::HttpExchange) -> Option<http::TraceParent> {
    let bytes = &raw.traceparent[..usize::from(raw.traceparent_len).min(raw.traceparent.len())];
    let end = bytes
        .iter()
        .position(|&byte| byte == b'\r' || byte == b'\n')
        .unwrap_or(bytes.len());
    http::TraceParent::parse(std::str::from_utf8(&bytes[..end]).ok()?)
}

fn dns_response(raw: &abi::DnsMessage, present: usize) -> DnsResponse {
    let len = usize::from(raw.payload_len)
        .min(present)
        .min(raw.payload.len());
    DnsResponse {
        cgroup_id: raw.cgroup_id,
        endpoints: Endpoints::from(&raw.tuple),
        role: Role::from_abi(raw.role),
        dns_id: raw.dns_id,
        query_ns: nonzero(raw.query_ns),
        response_ns: raw.response_ns,
        message: dns::parse(&raw.payload[..len]),
    }
}

/// The address as the kernel stores it: IPv4 mapped into IPv6.
pub fn abi_address(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_ebpf::abi::plain_bytes;

    fn tuple(local: &str, remote: &str, protocol: u8) -> abi::FlowTuple {
        let local: SocketAddr = local.parse().unwrap();
        let remote: SocketAddr = remote.parse().unwrap();
        abi::FlowTuple {
            local_addr: abi_address(local.ip()),
            remote_addr: abi_address(remote.ip()),
            local_port: local.port(),
            remote_port: remote.port(),
            family: if local.is_ipv4() {
                abi::AF_INET
            } else {
                abi::AF_INET6
            },
            protocol,
            _pad: 0,
        }
    }

    #[test]
    fn decodes_a_refused_connect() {
        let mut raw = abi::ConnClosed::default();
        raw.header.kind = event_kind::CONN_CLOSED;
        raw.sock_id = 0xffff_8880_1234_0000;
        raw.closed_ns = 2_000;
        raw.stats.tuple = tuple("10.0.0.2:40000", "10.0.0.1:9", abi::IPPROTO_TCP);
        raw.stats.cgroup_id = 42;
        raw.stats.opened_ns = 1_000;
        raw.stats.role = abi::role::CLIENT;
        raw.old_state = tcp_state::SYN_SENT;
        raw.sk_err = ECONNREFUSED;
        let Event::ConnectionClosed(closed) = decode(plain_bytes(&raw)).expect("decodes") else {
            panic!("wrong kind");
        };
        assert_eq!(closed.outcome, Outcome::Refused);
        assert!(closed.outcome.is_failed_connect());
        assert_eq!(closed.role, Role::Client);
        assert_eq!(closed.cgroup_id, 42);
        assert_eq!(closed.endpoints.local, "10.0.0.2:40000".parse().unwrap());
        assert_eq!(closed.endpoints.remote, "10.0.0.1:9".parse().unwrap());
        assert_eq!(closed.endpoints.transport, Transport::Tcp);
        assert_eq!(closed.established_ns, None);
        assert_eq!(closed.handshake(), None);
    }

    #[test]
    fn outcomes_follow_state_and_error() {
        use tcp_state::*;
        assert_eq!(
            Outcome::classify(SYN_SENT, ETIMEDOUT),
            Outcome::ConnectTimedOut
        );
        assert_eq!(
            Outcome::classify(SYN_SENT, ECONNRESET),
            Outcome::ConnectFailed(ECONNRESET)
        );
        assert_eq!(Outcome::classify(ESTABLISHED, ETIMEDOUT), Outcome::TimedOut);
        assert!(!Outcome::TimedOut.is_failed_connect());
        assert_eq!(
            Outcome::classify(SYN_SENT, EHOSTUNREACH),
            Outcome::Unreachable
        );
        assert_eq!(Outcome::classify(SYN_SENT, 0), Outcome::Aborted);
        assert_eq!(Outcome::classify(SYN_RECV, 0), Outcome::HandshakeFailed);
        assert_eq!(Outcome::classify(FIN_WAIT2, 0), Outcome::Closed);
        assert_eq!(Outcome::classify(LAST_ACK, 0), Outcome::Closed);
        assert_eq!(Outcome::classify(ESTABLISHED, ECONNRESET), Outcome::Reset);
        assert_eq!(Outcome::classify(CLOSE_WAIT, EPIPE), Outcome::Reset);
        assert_eq!(Outcome::classify(ESTABLISHED, 12), Outcome::Failed(12));
        assert!(!Outcome::Closed.is_failed_connect());
    }

    #[test]
    fn ipv6_and_mapped_addresses_come_out_canonical() {
        let endpoints = Endpoints::from(&tuple("[fd00::2]:5000", "[fd00::1]:80", abi::IPPROTO_TCP));
        assert_eq!(endpoints.remote, "[fd00::1]:80".parse().unwrap());
        let mut mapped = tuple("10.1.1.1:1", "10.1.1.2:2", abi::IPPROTO_UDP);
        mapped.family = abi::AF_INET6; // a dual-stack socket talking IPv4
        let endpoints = Endpoints::from(&mapped);
        assert_eq!(endpoints.local, "10.1.1.1:1".parse().unwrap());
        assert_eq!(endpoints.transport, Transport::Udp);
    }

    fn http_record(request: &[u8], response: &[u8], role: u8) -> Vec<u8> {
        // The kernel keeps only the first bytes of the response: version and code.
        let response = &response[..response.len().min(abi::HTTP_RESPONSE_CAPTURE)];
        let mut raw = abi::HttpExchange {
            header: abi::EventHeader {
                kind: event_kind::HTTP_EXCHANGE,
                _pad: 0,
            },
            cgroup_id: 7,
            sock_cookie: 99,
            request_ns: 1_000_000,
            response_ns: 101_000_000,
            tuple: tuple("10.0.0.1:8080", "10.0.0.2:40000", abi::IPPROTO_TCP),
            role,
            _pad: 0,
            request_len: request.len() as u16,
            response_len: response.len() as u16,
            _pad2: 0,
            request_payload_len: request.len() as u32,
            traceparent_len: 0,
            _pad3: [0; 3],
            traceparent: [0; abi::TRACEPARENT_CAPTURE],
            response: [0; abi::HTTP_RESPONSE_CAPTURE],
            request: [0; abi::HTTP_REQUEST_CAPTURE],
        };
        raw.response[..response.len()].copy_from_slice(response);
        raw.request[..request.len()].copy_from_slice(request);
        // The kernel writes only the used part of the request tail.
        plain_bytes(&raw)[..abi::HTTP_EXCHANGE_FIXED_LEN + request.len()].to_vec()
    }

    #[test]
    fn decodes_a_variable_length_http_exchange() {
        let request = b"GET /checkout HTTP/1.1\r\nHost: shop\r\ntraceparent: \
            00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n";
        let record = http_record(
            request,
            b"HTTP/1.1 500 Internal Server Error\r\n",
            abi::role::SERVER,
        );
        let Event::Http(exchange) = decode(&record).expect("decodes") else {
            panic!("wrong kind");
        };
        let head = exchange.request.as_ref().expect("request parsed");
        assert_eq!(head.method, http::Method::Get);
        assert_eq!(head.path(), "/checkout");
        assert_eq!(head.host.as_deref(), Some("shop"));
        assert!(head.traceparent.is_some());
        assert_eq!(exchange.status.as_ref().map(|s| s.code), Some(500));
        assert_eq!(exchange.role, Role::Server);
        assert_eq!(exchange.latency(), Duration::from_millis(100));
        assert!(!exchange.request_truncated);
    }

    #[test]
    fn a_traceparent_past_the_capture_comes_from_its_own_field() {
        let value = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nX-Next: 1";
        let head = b"GET /a HTTP/1.1\r\nHost: shop\r\nAuthorization: Bearer abc";
        let mut record = http_record(head, b"HTTP/1.1 200 OK\r\n", abi::role::SERVER);
        let field = std::mem::offset_of!(abi::HttpExchange, traceparent);
        record[field..field + value.len()].copy_from_slice(value);
        let len_at = std::mem::offset_of!(abi::HttpExchange, traceparent_len);
        for (len, parsed) in [(value.len(), true), (40, false), (0, false)] {
            record[len_at] = len as u8;
            let Event::Http(exchange) = decode(&record).expect("decodes") else {
                panic!("wrong kind");
            };
            let traceparent = exchange.request.expect("request line").traceparent;
            assert_eq!(traceparent.is_some(), parsed, "carried {len} bytes");
            if let Some(traceparent) = traceparent {
                assert_eq!(traceparent.trace_id[0], 0x4b);
                assert!(traceparent.sampled());
            }
        }
    }

    #[test]
    fn a_request_length_beyond_the_record_is_not_trusted() {
        let mut record = http_record(
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n",
            abi::role::CLIENT,
        );
        record.truncate(record.len() - 2); // lost the blank line
        let Event::Http(exchange) = decode(&record).expect("decodes") else {
            panic!("wrong kind");
        };
        let head = exchange.request.expect("request line still complete");
        assert!(!head.headers_complete);
        assert!(decode(&record[..abi::HTTP_EXCHANGE_FIXED_LEN - 1]).is_err());
    }

    #[test]
    fn decodes_a_dns_response_with_latency() {
        let payload = dns::tests::response(
            0x1234,
            0,
            "api.strata.test",
            dns::record_type::A,
            &["10.200.5.77".parse().unwrap()],
        );
        let mut raw = abi::DnsMessage {
            header: abi::EventHeader {
                kind: event_kind::DNS_MESSAGE,
                _pad: 0,
            },
            cgroup_id: 5,
            query_ns: 10,
            response_ns: 2_010,
            tuple: tuple("10.0.0.2:53000", "10.0.0.1:53", abi::IPPROTO_UDP),
            dns_id: 0x1234,
            dns_flags: 0x8180,
            payload_len: payload.len() as u16,
            role: abi::role::CLIENT,
            _pad: 0,
            payload: [0; abi::DNS_CAPTURE],
        };
        raw.payload[..payload.len()].copy_from_slice(&payload);
        let record = &plain_bytes(&raw)[..abi::DNS_MESSAGE_FIXED_LEN + payload.len()];
        let Event::Dns(response) = decode(record).expect("decodes") else {
            panic!("wrong kind");
        };
        assert_eq!(response.latency(), Some(Duration::from_nanos(2_000)));
        let message = response.message.expect("parsed");
        assert_eq!(
            message.question.as_ref().map(|q| q.name.as_str()),
            Some("api.strata.test")
        );
        assert_eq!(
            message.addresses().collect::<Vec<_>>(),
            vec!["10.200.5.77".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn unknown_and_short_records_are_errors() {
        assert!(matches!(decode(&[1, 0, 0]), Err(Error::ShortRecord { .. })));
        assert!(matches!(
            decode(&[9, 0, 0, 0, 0, 0, 0, 0]),
            Err(Error::UnknownEventKind(9))
        ));
        assert!(matches!(
            decode(&[1, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(Error::ShortRecord { kind: 1, .. })
        ));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// The kernel is trusted for layout, not for lengths: no record may panic the decoder.
            #[test]
            fn never_panics_on_arbitrary_records(
                kind in 0u32..5,
                body in proptest::collection::vec(any::<u8>(), 0..800),
            ) {
                let mut record = kind.to_le_bytes().to_vec();
                record.extend_from_slice(&[0; 4]);
                record.extend_from_slice(&body);
                let _ = decode(&record);
            }
        }
    }
}
