//! The kernel↔user ABI: `#[repr(C)]` mirrors of `bpf/abi.h`, field for field, with the same size
//! and offset assertions the C side makes. Nothing here interprets the data; decoding into domain
//! types belongs to the agent.

use core::mem::{offset_of, size_of};

/// Must equal `STRATA_ABI_VERSION` in `bpf/abi.h`.
pub const ABI_VERSION: u32 = 3;

/// `strata_event_header.kind`.
pub mod event_kind {
    pub const CONN_CLOSED: u32 = 1;
    pub const HTTP_EXCHANGE: u32 = 2;
    pub const DNS_MESSAGE: u32 = 3;
}

/// Which end of the conversation the observed socket is.
pub mod role {
    pub const UNKNOWN: u8 = 0;
    pub const CLIENT: u8 = 1;
    pub const SERVER: u8 = 2;
}

/// TCP states as the kernel numbers them (`include/net/tcp_states.h`).
pub mod tcp_state {
    pub const ESTABLISHED: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const SYN_RECV: u8 = 3;
    pub const FIN_WAIT1: u8 = 4;
    pub const FIN_WAIT2: u8 = 5;
    pub const TIME_WAIT: u8 = 6;
    pub const CLOSE: u8 = 7;
    pub const CLOSE_WAIT: u8 = 8;
    pub const LAST_ACK: u8 = 9;
    pub const LISTEN: u8 = 10;
    pub const CLOSING: u8 = 11;
}

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

pub const HTTP_REQUEST_CAPTURE: usize = 512;
pub const HTTP_RESPONSE_CAPTURE: usize = 16;
pub const DNS_CAPTURE: usize = 512;
/// Bytes of a request's first segment the kernel searches for `traceparent`.
pub const HTTP_TRACEPARENT_SCAN: usize = 2048;
/// Bytes of a traceparent's value carried on their own when it lies past the request's capture.
pub const TRACEPARENT_CAPTURE: usize = 64;

/// `STRATA_HTTP_METHOD_*`: request methods as the kernel classifies them; 0 is none.
pub mod http_method {
    pub const GET: u8 = 1;
    pub const HEAD: u8 = 2;
    pub const POST: u8 = 3;
    pub const PUT: u8 = 4;
    pub const DELETE: u8 = 5;
    pub const CONNECT: u8 = 6;
    pub const OPTIONS: u8 = 7;
    pub const TRACE: u8 = 8;
    pub const PATCH: u8 = 9;
}

/// HTTP slots per socket in `sock_stats`, and latency buckets per slot (the 14 bounds of the
/// `http.*.request.duration` histograms, and above).
pub const HTTP_SLOTS: usize = 3;
pub const HTTP_BUCKETS: usize = 15;

/// Slots of the per-CPU `counters` array.
pub const COUNTER_SLOTS: u32 = 16;

/// What each slot of `counters` counts; `slot()` is the index the C side uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    RingbufLostConn,
    RingbufLostHttp,
    RingbufLostDns,
    SockStatsUpdateFailed,
    SockStatsMissing,
    DnsPendingUpdateFailed,
    DnsUnmatched,
    HttpStorageFailed,
    HttpUnanswered,
    KernelReadFailed,
    PacketReadFailed,
    ScratchMissing,
    HttpUncounted,
}

impl Counter {
    pub const ALL: [Counter; 13] = [
        Counter::RingbufLostConn,
        Counter::RingbufLostHttp,
        Counter::RingbufLostDns,
        Counter::SockStatsUpdateFailed,
        Counter::SockStatsMissing,
        Counter::DnsPendingUpdateFailed,
        Counter::DnsUnmatched,
        Counter::HttpStorageFailed,
        Counter::HttpUnanswered,
        Counter::KernelReadFailed,
        Counter::PacketReadFailed,
        Counter::ScratchMissing,
        Counter::HttpUncounted,
    ];

    /// Index into `counters`, as `STRATA_COUNTER_*` in `bpf/abi.h`.
    pub const fn slot(self) -> u32 {
        match self {
            Counter::RingbufLostConn => 0,
            Counter::RingbufLostHttp => 1,
            Counter::RingbufLostDns => 2,
            Counter::SockStatsUpdateFailed => 3,
            Counter::SockStatsMissing => 4,
            Counter::DnsPendingUpdateFailed => 5,
            Counter::DnsUnmatched => 6,
            Counter::HttpStorageFailed => 7,
            Counter::HttpUnanswered => 8,
            Counter::KernelReadFailed => 9,
            Counter::PacketReadFailed => 10,
            Counter::ScratchMissing => 11,
            Counter::HttpUncounted => 12,
        }
    }

    /// Stable name for metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::RingbufLostConn => "ringbuf_lost_connection",
            Counter::RingbufLostHttp => "ringbuf_lost_http",
            Counter::RingbufLostDns => "ringbuf_lost_dns",
            Counter::SockStatsUpdateFailed => "sock_stats_update_failed",
            Counter::SockStatsMissing => "sock_stats_missing",
            Counter::DnsPendingUpdateFailed => "dns_pending_update_failed",
            Counter::DnsUnmatched => "dns_unmatched",
            Counter::HttpStorageFailed => "http_storage_failed",
            Counter::HttpUnanswered => "http_unanswered",
            Counter::KernelReadFailed => "kernel_read_failed",
            Counter::PacketReadFailed => "packet_read_failed",
            Counter::ScratchMissing => "scratch_missing",
            Counter::HttpUncounted => "http_uncounted",
        }
    }
}

/// Types made only of integers and integer arrays, with no padding the C side leaves unwritten
/// in a way that matters: any byte pattern is a valid value.
///
/// # Safety
/// Implement only for `#[repr(C)]` structs whose fields are all integers or arrays of integers.
pub unsafe trait Plain: Copy + 'static {}

/// Reads a `T` from the start of `bytes`; `None` when `bytes` is shorter than `T`.
pub fn read_plain<T: Plain>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: the length is checked above, `T: Plain` accepts any bit pattern, and
    // `read_unaligned` makes no alignment assumption about the ring-buffer bytes.
    Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Reads a `T` from a record the kernel wrote short (a variable-length tail), zero-filling the
/// rest; `None` when `bytes` does not even cover `min_len`.
pub fn read_plain_truncated<T: Plain>(bytes: &[u8], min_len: usize) -> Option<T> {
    if bytes.len() < min_len {
        return None;
    }
    let mut value = core::mem::MaybeUninit::<T>::zeroed();
    let len = bytes.len().min(size_of::<T>());
    // SAFETY: all-zero is a valid `T: Plain`; we copy at most `size_of::<T>()` bytes into it.
    unsafe {
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), value.as_mut_ptr().cast::<u8>(), len);
        Some(value.assume_init())
    }
}

/// Views a value as its bytes, for tests that build records the way the kernel does.
pub fn plain_bytes<T: Plain>(value: &T) -> &[u8] {
    // SAFETY: `T: Plain` has no uninitialised bytes that matter to a reader and is `Copy`.
    unsafe { core::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
}

/// `struct strata_flow_tuple`: addresses IPv4-mapped, ports in host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowTuple {
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub local_port: u16,
    pub remote_port: u16,
    pub family: u16,
    pub protocol: u8,
    pub _pad: u8,
}

/// `struct strata_http_slot`: the HTTP exchanges of one (method, status, role) on one socket,
/// counted in the kernel since the slot was first used; counters wrap.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpSlot {
    /// 0: unused.
    pub status: u16,
    /// `http_method::*`.
    pub method: u8,
    /// `role::*` of the socket in these exchanges.
    pub role: u8,
    pub count: u32,
    pub latency_sum_ns: u64,
    /// The largest latency since `epoch` began.
    pub latency_max_us: u32,
    /// `http_epoch` at the latest exchange.
    pub epoch: u32,
    pub buckets: [u32; HTTP_BUCKETS],
    pub _pad: u32,
}

/// `struct strata_sock_stats`, the value of `sock_stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockStats {
    pub tuple: FlowTuple,
    pub cgroup_id: u64,
    pub opened_ns: u64,
    pub established_ns: u64,
    pub last_seen_ns: u64,
    /// Payload bytes sent and received, from the socket's counters since it opened: as of its
    /// last state change or refresh (before each read of the map), exact in the close summary.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub last_rtt_sample_ns: u64,
    pub segs_out: u32,
    pub segs_in: u32,
    pub retransmits: u32,
    pub srtt_us: u32,
    pub min_rtt_us: u32,
    pub rtt_samples: u32,
    pub role: u8,
    pub state: u8,
    pub _pad: [u8; 2],
    /// Sum of the sampled `srtt_us`, wrapping; differences over `rtt_samples` give a mean.
    pub srtt_sum_us: u32,
    /// The HTTP request waiting for its response (kernel bookkeeping).
    pub http_request_ns: u64,
    pub http_request_seq: u32,
    pub http_method: u8,
    pub http_role: u8,
    pub http_capture: u8,
    pub http_slots_full: u8,
    /// HTTP exchanges counted in the kernel, per (method, status, role).
    pub http: [HttpSlot; HTTP_SLOTS],
}

/// `struct strata_event_header`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    pub kind: u32,
    pub _pad: u32,
}

/// `struct strata_conn_closed`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnClosed {
    pub header: EventHeader,
    pub sock_id: u64,
    pub closed_ns: u64,
    pub stats: SockStats,
    pub sk_err: i32,
    pub old_state: u8,
    pub _pad: [u8; 3],
}

/// `struct strata_http_exchange`; written to the ring with only `request_len` bytes of `request`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpExchange {
    pub header: EventHeader,
    pub cgroup_id: u64,
    pub sock_cookie: u64,
    pub request_ns: u64,
    pub response_ns: u64,
    pub tuple: FlowTuple,
    pub role: u8,
    pub _pad: u8,
    pub request_len: u16,
    pub response_len: u16,
    pub _pad2: u16,
    pub request_payload_len: u32,
    /// Bytes valid in `traceparent`; 0 when the value lies in `request`.
    pub traceparent_len: u8,
    pub _pad3: [u8; 3],
    pub traceparent: [u8; TRACEPARENT_CAPTURE],
    pub response: [u8; HTTP_RESPONSE_CAPTURE],
    pub request: [u8; HTTP_REQUEST_CAPTURE],
}

/// `struct strata_http_pending`, the socket storage of `http_pending` (kernel-only).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpPending {
    pub request_ns: u64,
    pub request_seq: u32,
    pub request_payload_len: u32,
    pub request_len: u16,
    pub role: u8,
    pub traceparent_len: u8,
    pub _pad: [u8; 4],
    pub traceparent: [u8; TRACEPARENT_CAPTURE],
    pub request: [u8; HTTP_REQUEST_CAPTURE],
}

/// `struct strata_dns_message`; written with only `payload_len` bytes of `payload`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsMessage {
    pub header: EventHeader,
    pub cgroup_id: u64,
    pub query_ns: u64,
    pub response_ns: u64,
    pub tuple: FlowTuple,
    pub dns_id: u16,
    pub dns_flags: u16,
    pub payload_len: u16,
    pub role: u8,
    pub _pad: u8,
    pub payload: [u8; DNS_CAPTURE],
}

/// `struct strata_dns_key`, the key of `dns_pending`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DnsKey {
    pub sock_cookie: u64,
    pub dns_id: u16,
    pub _pad: [u8; 6],
}

// SAFETY: each is `#[repr(C)]` and made of integers and integer arrays only.
unsafe impl Plain for FlowTuple {}
// SAFETY: as above.
unsafe impl Plain for HttpSlot {}
// SAFETY: as above.
unsafe impl Plain for SockStats {}
// SAFETY: as above.
unsafe impl Plain for EventHeader {}
// SAFETY: as above.
unsafe impl Plain for ConnClosed {}
// SAFETY: as above.
unsafe impl Plain for HttpExchange {}
// SAFETY: as above.
unsafe impl Plain for HttpPending {}
// SAFETY: as above.
unsafe impl Plain for DnsMessage {}
// SAFETY: as above.
unsafe impl Plain for DnsKey {}

// The same numbers as the `_Static_assert`s in bpf/abi.h.
const _: () = assert!(size_of::<FlowTuple>() == 40);
const _: () = assert!(offset_of!(FlowTuple, local_port) == 32);
const _: () = assert!(offset_of!(FlowTuple, family) == 36);
const _: () = assert!(offset_of!(FlowTuple, protocol) == 38);

const _: () = assert!(size_of::<HttpSlot>() == 88);
const _: () = assert!(offset_of!(HttpSlot, count) == 4);
const _: () = assert!(offset_of!(HttpSlot, latency_sum_ns) == 8);
const _: () = assert!(offset_of!(HttpSlot, latency_max_us) == 16);
const _: () = assert!(offset_of!(HttpSlot, epoch) == 20);
const _: () = assert!(offset_of!(HttpSlot, buckets) == 24);

const _: () = assert!(size_of::<SockStats>() == 408);
const _: () = assert!(offset_of!(SockStats, http_request_ns) == 128);
const _: () = assert!(offset_of!(SockStats, http) == 144);
const _: () = assert!(offset_of!(SockStats, cgroup_id) == 40);
const _: () = assert!(offset_of!(SockStats, bytes_sent) == 72);
const _: () = assert!(offset_of!(SockStats, segs_out) == 96);
const _: () = assert!(offset_of!(SockStats, srtt_us) == 108);
const _: () = assert!(offset_of!(SockStats, role) == 120);

const _: () = assert!(size_of::<EventHeader>() == 8);

const _: () = assert!(size_of::<ConnClosed>() == 440);
const _: () = assert!(offset_of!(ConnClosed, stats) == 24);
const _: () = assert!(offset_of!(ConnClosed, sk_err) == 432);
const _: () = assert!(offset_of!(ConnClosed, old_state) == 436);

const _: () = assert!(size_of::<HttpExchange>() == 688);
const _: () = assert!(offset_of!(HttpExchange, tuple) == 40);
const _: () = assert!(offset_of!(HttpExchange, role) == 80);
const _: () = assert!(offset_of!(HttpExchange, request_len) == 82);
const _: () = assert!(offset_of!(HttpExchange, request_payload_len) == 88);
const _: () = assert!(offset_of!(HttpExchange, traceparent_len) == 92);
const _: () = assert!(offset_of!(HttpExchange, traceparent) == 96);
const _: () = assert!(offset_of!(HttpExchange, response) == 160);
const _: () = assert!(offset_of!(HttpExchange, request) == 176);

const _: () = assert!(size_of::<HttpPending>() == 600);
const _: () = assert!(offset_of!(HttpPending, traceparent) == 24);
const _: () = assert!(offset_of!(HttpPending, request) == 88);

const _: () = assert!(size_of::<DnsMessage>() == 592);
const _: () = assert!(offset_of!(DnsMessage, tuple) == 32);
const _: () = assert!(offset_of!(DnsMessage, dns_id) == 72);
const _: () = assert!(offset_of!(DnsMessage, payload) == 80);

const _: () = assert!(size_of::<DnsKey>() == 16);

/// Bytes of an HTTP exchange record before its variable-length `request` tail.
pub const HTTP_EXCHANGE_FIXED_LEN: usize = offset_of!(HttpExchange, request);
/// Bytes of a DNS message record before its variable-length `payload` tail.
pub const DNS_MESSAGE_FIXED_LEN: usize = offset_of!(DnsMessage, payload);

#[cfg(test)]
mod tests {
    use super::*;

    /// The C header is the other half of the contract: its constants must be the ones mirrored
    /// here. Read from the header text so a one-sided edit fails a test, not a production load.
    #[test]
    fn constants_match_the_c_header() {
        let header = include_str!("../bpf/abi.h");
        let define = |name: &str| -> u64 {
            let line = header
                .lines()
                .find(|line| {
                    line.trim_start()
                        .strip_prefix("#define ")
                        .and_then(|rest| rest.strip_prefix(name))
                        .is_some_and(|rest| rest.starts_with([' ', '\t']))
                })
                .unwrap_or_else(|| panic!("{name} missing from abi.h"));
            line.split_whitespace()
                .nth(2)
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("{name} has no numeric value"))
        };
        assert_eq!(define("STRATA_ABI_VERSION"), u64::from(ABI_VERSION));
        assert_eq!(
            define("STRATA_EVENT_CONN_CLOSED"),
            u64::from(event_kind::CONN_CLOSED)
        );
        assert_eq!(
            define("STRATA_EVENT_HTTP_EXCHANGE"),
            u64::from(event_kind::HTTP_EXCHANGE)
        );
        assert_eq!(
            define("STRATA_EVENT_DNS_MESSAGE"),
            u64::from(event_kind::DNS_MESSAGE)
        );
        assert_eq!(define("STRATA_ROLE_CLIENT"), u64::from(role::CLIENT));
        assert_eq!(define("STRATA_ROLE_SERVER"), u64::from(role::SERVER));
        assert_eq!(
            define("STRATA_HTTP_REQUEST_CAPTURE"),
            HTTP_REQUEST_CAPTURE as u64
        );
        assert_eq!(
            define("STRATA_HTTP_RESPONSE_CAPTURE"),
            HTTP_RESPONSE_CAPTURE as u64
        );
        assert_eq!(define("STRATA_DNS_CAPTURE"), DNS_CAPTURE as u64);
        assert_eq!(
            define("STRATA_HTTP_TRACEPARENT_SCAN"),
            HTTP_TRACEPARENT_SCAN as u64
        );
        assert_eq!(
            define("STRATA_TRACEPARENT_CAPTURE"),
            TRACEPARENT_CAPTURE as u64
        );
        assert_eq!(define("STRATA_HTTP_SLOTS"), HTTP_SLOTS as u64);
        assert_eq!(define("STRATA_HTTP_BUCKETS"), HTTP_BUCKETS as u64);
        for (name, method) in [
            ("GET", http_method::GET),
            ("HEAD", http_method::HEAD),
            ("POST", http_method::POST),
            ("PUT", http_method::PUT),
            ("DELETE", http_method::DELETE),
            ("CONNECT", http_method::CONNECT),
            ("OPTIONS", http_method::OPTIONS),
            ("TRACE", http_method::TRACE),
            ("PATCH", http_method::PATCH),
        ] {
            assert_eq!(
                define(&format!("STRATA_HTTP_METHOD_{name}")),
                u64::from(method)
            );
        }
        assert_eq!(define("STRATA_COUNTER_SLOTS"), u64::from(COUNTER_SLOTS));
        let c_names = [
            "STRATA_COUNTER_RINGBUF_LOST_CONN",
            "STRATA_COUNTER_RINGBUF_LOST_HTTP",
            "STRATA_COUNTER_RINGBUF_LOST_DNS",
            "STRATA_COUNTER_SOCK_STATS_UPDATE_FAILED",
            "STRATA_COUNTER_SOCK_STATS_MISSING",
            "STRATA_COUNTER_DNS_PENDING_UPDATE_FAILED",
            "STRATA_COUNTER_DNS_UNMATCHED",
            "STRATA_COUNTER_HTTP_STORAGE_FAILED",
            "STRATA_COUNTER_HTTP_UNANSWERED",
            "STRATA_COUNTER_KERNEL_READ_FAILED",
            "STRATA_COUNTER_PACKET_READ_FAILED",
            "STRATA_COUNTER_SCRATCH_MISSING",
            "STRATA_COUNTER_HTTP_UNCOUNTED",
        ];
        for (counter, c_name) in Counter::ALL.iter().zip(c_names) {
            assert_eq!(define(c_name), u64::from(counter.slot()), "{c_name}");
            assert!(counter.slot() < COUNTER_SLOTS);
        }
    }

    #[test]
    fn c_header_asserts_the_same_sizes() {
        let header = include_str!("../bpf/abi.h");
        for (c_type, size) in [
            ("strata_flow_tuple", size_of::<FlowTuple>()),
            ("strata_http_slot", size_of::<HttpSlot>()),
            ("strata_sock_stats", size_of::<SockStats>()),
            ("strata_event_header", size_of::<EventHeader>()),
            ("strata_conn_closed", size_of::<ConnClosed>()),
            ("strata_http_exchange", size_of::<HttpExchange>()),
            ("strata_http_pending", size_of::<HttpPending>()),
            ("strata_dns_message", size_of::<DnsMessage>()),
            ("strata_dns_key", size_of::<DnsKey>()),
        ] {
            let assertion = format!("sizeof(struct {c_type}) == {size}");
            assert!(header.contains(&assertion), "abi.h lacks `{assertion}`");
        }
    }

    /// Every field's offset in Rust, named as in C.
    fn rust_offsets() -> Vec<(String, usize)> {
        macro_rules! offsets {
            ($($c_type:literal => $ty:ty { $($field:ident),* $(,)? })*) => {
                vec![$($((format!("{}.{}", $c_type, stringify!($field)), offset_of!($ty, $field)),)*)*]
            };
        }
        offsets! {
            "strata_flow_tuple" => FlowTuple {
                local_addr, remote_addr, local_port, remote_port, family, protocol,
            }
            "strata_sock_stats" => SockStats {
                tuple, cgroup_id, opened_ns, established_ns, last_seen_ns, bytes_sent,
                bytes_received, last_rtt_sample_ns, segs_out, segs_in, retransmits, srtt_us,
                min_rtt_us, rtt_samples, role, state, srtt_sum_us, http_request_ns, http,
            }
            "strata_http_slot" => HttpSlot {
                status, method, role, count, latency_sum_ns, latency_max_us, epoch, buckets,
            }
            "strata_event_header" => EventHeader { kind }
            "strata_conn_closed" => ConnClosed {
                header, sock_id, closed_ns, stats, sk_err, old_state,
            }
            "strata_http_exchange" => HttpExchange {
                header, cgroup_id, sock_cookie, request_ns, response_ns, tuple, role,
                request_len, response_len, request_payload_len, traceparent_len, traceparent,
                response, request,
            }
            "strata_http_pending" => HttpPending {
                request_ns, request_seq, request_payload_len, request_len, role, traceparent_len,
                traceparent, request,
            }
            "strata_dns_message" => DnsMessage {
                header, cgroup_id, query_ns, response_ns, tuple, dns_id, dns_flags,
                payload_len, role, payload,
            }
            "strata_dns_key" => DnsKey { sock_cookie, dns_id }
        }
    }

    /// Each `STRATA_ABI_OFFSET(type, field, n)` in abi.h against the Rust layout, both ways:
    /// every C assertion matches Rust, and every Rust field is asserted in C.
    #[test]
    fn c_header_asserts_the_same_offsets() {
        let header = include_str!("../bpf/abi.h");
        let c_offsets: Vec<(String, usize)> = header
            .lines()
            .filter_map(|line| line.trim().strip_prefix("STRATA_ABI_OFFSET("))
            .map(|rest| {
                let args: Vec<&str> = rest
                    .trim_end_matches(';')
                    .trim_end_matches(')')
                    .split(',')
                    .map(str::trim)
                    .collect();
                let offset = args[2].parse().expect("numeric offset");
                (format!("{}.{}", args[0], args[1]), offset)
            })
            .collect();
        let rust = rust_offsets();
        for (field, offset) in &c_offsets {
            let mirrored = rust.iter().find(|(name, _)| name == field);
            assert_eq!(mirrored.map(|(_, o)| o), Some(offset), "{field}");
        }
        let missing: Vec<String> = rust
            .iter()
            .filter(|(field, _)| !c_offsets.iter().any(|(c, _)| c == field))
            .map(|(field, offset)| {
                format!("STRATA_ABI_OFFSET({}, {offset});", field.replace('.', ", "))
            })
            .collect();
        assert!(missing.is_empty(), "abi.h lacks:\n{}", missing.join("\n"));
    }

    #[test]
    fn truncated_records_are_zero_filled() {
        let mut record = ConnClosed::default();
        record.header.kind = event_kind::CONN_CLOSED;
        record.sock_id = 0x0102_0304_0506_0708;
        let bytes = plain_bytes(&record);
        let short: ConnClosed = read_plain_truncated(&bytes[..12], 8).expect("covers min");
        assert_eq!(short.header.kind, event_kind::CONN_CLOSED);
        assert_eq!(
            short.sock_id, 0x0506_0708,
            "only the low 4 bytes were present"
        );
        assert!(read_plain_truncated::<ConnClosed>(&bytes[..8], 16).is_none());
        assert!(read_plain::<ConnClosed>(&bytes[..159]).is_none());
        assert_eq!(read_plain::<ConnClosed>(bytes), Some(record));
    }
}
