//! Flow records (`docs/flow-schema.md`): one per connection (or DNS exchange) and interval,
//! naming both ends by identity. Folds the flow tracker's per-socket deltas, connection
//! outcomes, HTTP exchanges and DNS responses of an interval by connection, oriented so that
//! `src` is the end that opened it. When both ends live on this node the kernel reports the
//! connection twice, once per socket; the two views merge into one record: bytes and packets
//! from one view (they are the same bytes), retransmits summed (each end counts only its own).

use std::collections::hash_map::Entry;
use std::collections::BTreeMap;

use crate::hash::FastMap;
use std::net::{IpAddr, SocketAddr};

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

use crate::dns::{self, AnswerData};
use crate::events::{
    ConnectionClosed, DnsResponse, Endpoints, HttpExchange, Outcome, Role, Transport,
};
use crate::flow_table::{FlowDelta, HttpCounts};
use crate::http::Method;
use crate::identity::Identity;
use crate::otlp;

/// Event name that tells the store a log record is a flow record.
pub const FLOW_EVENT_NAME: &str = "strata.flow";
/// At most this many trace ids per record (the schema's limit for `http.trace_ids`).
const MAX_TRACE_IDS: usize = 8;

/// Names the ends of a record: the resolver in the agent, a fake in tests.
pub trait IdentitySource {
    /// The end on this node owning a socket of cgroup `cgroup_id` bound to `addr`.
    fn local(&self, cgroup_id: u64, addr: IpAddr) -> Identity;
    /// An end elsewhere, by its address.
    fn remote(&self, addr: IpAddr) -> Identity;
}

/// The connection a record summarises, oriented: `src` opened it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: Transport,
    /// DNS exchanges sharing a UDP 5-tuple are told apart by their query id.
    pub dns_id: Option<u16>,
}

/// Which end of the connection a socket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Src = 0,
    Dst = 1,
}

/// Orients a socket's view. A socket whose role the kernel did not see (opened before the agent)
/// is taken as the client when its local port is the higher, ephemeral one.
fn orient(endpoints: &Endpoints, role: Role) -> (FlowKey, Side) {
    let local_is_src = match role {
        Role::Client => true,
        Role::Server => false,
        Role::Unknown => endpoints.local.port() > endpoints.remote.port(),
    };
    let (src, dst, side) = if local_is_src {
        (endpoints.local, endpoints.remote, Side::Src)
    } else {
        (endpoints.remote, endpoints.local, Side::Dst)
    };
    let key = FlowKey {
        src,
        dst,
        transport: endpoints.transport,
        dns_id: None,
    };
    (key, side)
}

/// One socket's TCP counters over the interval, from its own point of view.
#[derive(Clone, Debug, Default)]
struct TcpView {
    sent: u64,
    received: u64,
    segs_out: u64,
    segs_in: u64,
    retransmits: u64,
    srtt_us: Option<u32>,
    min_rtt_us: Option<u32>,
}

#[derive(Clone, Debug, Default)]
struct HttpView {
    requests: u64,
    status: BTreeMap<u16, u64>,
    latency_sum_us: u64,
    latency_max_us: u64,
    methods: MethodSet,
    trace_ids: Vec<String>,
}

/// Request methods seen, a bit per [`Method`]: adding one costs no string comparison.
#[derive(Clone, Copy, Debug, Default)]
struct MethodSet(u16);

impl MethodSet {
    fn insert(&mut self, method: Method) {
        self.0 |= 1 << method as u16;
    }

    /// Their names in alphabetical order, as records list them.
    fn names(self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Method::ALL
            .into_iter()
            .filter(|method| self.0 & 1 << *method as u16 != 0)
            .map(|method| method.as_str())
            .collect();
        names.sort_unstable();
        names
    }
}

#[derive(Clone, Debug, Default)]
struct DnsView {
    query: String,
    qtype: String,
    rcode: String,
    answers: Vec<String>,
    latency_us: u64,
}

#[derive(Clone, Debug, Default)]
struct Accum {
    /// The cgroup of the socket at each end that lives on this node.
    cgroups: [Option<u64>; 2],
    tcp: [Option<TcpView>; 2],
    http: [Option<HttpView>; 2],
    dns: [Option<DnsView>; 2],
    /// How the connection ended, when it did in this interval.
    outcome: Option<Outcome>,
    /// It carried data or completed its handshake.
    established: bool,
}

impl Accum {
    fn seen_at(&mut self, side: Side, cgroup_id: u64) {
        self.cgroups[side as usize] = Some(cgroup_id);
    }
}

/// One flow record, field by field as `docs/flow-schema.md` names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub src_identity: Identity,
    pub dst_identity: Identity,
    pub protocol: &'static str,
    pub observer_node: String,
    pub interval_start_ns: u64,
    pub interval_end_ns: u64,
    pub bytes_tx: u64,
    pub bytes_rx: u64,
    pub packets_tx: u64,
    pub packets_rx: u64,
    pub tcp_flags: u64,
    pub tcp_retransmits: u64,
    pub tcp_srtt_us: u64,
    pub tcp_srtt_min_us: u64,
    pub tcp_connect: &'static str,
    /// The connection ended in this interval (closed, reset or failed to connect). Not exported:
    /// it drives the connection counters.
    pub ended: bool,
    pub http_requests: u64,
    pub http_status: BTreeMap<u16, u64>,
    pub http_latency_sum_us: u64,
    pub http_latency_max_us: u64,
    pub http_methods: Vec<&'static str>,
    pub http_trace_ids: Vec<String>,
    pub dns_query: String,
    pub dns_qtype: String,
    pub dns_rcode: String,
    pub dns_answers: Vec<String>,
    pub dns_latency_us: u64,
}

/// TCP flag bits of the schema's `tcp.flags`.
mod flag {
    pub const FIN: u64 = 1;
    pub const SYN: u64 = 2;
    pub const RST: u64 = 4;
    pub const ACK: u64 = 16;
}

impl FlowRecord {
    /// A record with no counts yet.
    pub fn new(src: SocketAddr, dst: SocketAddr, protocol: &'static str) -> FlowRecord {
        FlowRecord {
            src,
            dst,
            src_identity: Identity::default(),
            dst_identity: Identity::default(),
            protocol,
            observer_node: String::new(),
            interval_start_ns: 0,
            interval_end_ns: 0,
            bytes_tx: 0,
            bytes_rx: 0,
            packets_tx: 0,
            packets_rx: 0,
            tcp_flags: 0,
            tcp_retransmits: 0,
            tcp_srtt_us: 0,
            tcp_srtt_min_us: 0,
            tcp_connect: "",
            ended: false,
            http_requests: 0,
            http_status: BTreeMap::new(),
            http_latency_sum_us: 0,
            http_latency_max_us: 0,
            http_methods: Vec::new(),
            http_trace_ids: Vec::new(),
            dns_query: String::new(),
            dns_qtype: String::new(),
            dns_rcode: String::new(),
            dns_answers: Vec::new(),
            dns_latency_us: 0,
        }
    }

    fn ip_family(&self) -> &'static str {
        match self.src.ip() {
            IpAddr::V4(_) => "ipv4",
            IpAddr::V6(_) => "ipv6",
        }
    }

    /// Responses with a status in `class` (1 for 1xx, …).
    pub fn responses(&self, class: u16) -> u64 {
        self.http_status
            .iter()
            .filter(|(code, _)| **code / 100 == class)
            .map(|(_, count)| count)
            .sum()
    }

    pub fn to_log_record(&self) -> LogRecord {
        let mut a = Vec::with_capacity(32);
        a.push(otlp::string("src.ip", self.src.ip().to_string()));
        otlp::push_int(&mut a, "src.port", u64::from(self.src.port()));
        push_identity(&mut a, "src", &self.src_identity);
        a.push(otlp::string("dst.ip", self.dst.ip().to_string()));
        otlp::push_int(&mut a, "dst.port", u64::from(self.dst.port()));
        push_identity(&mut a, "dst", &self.dst_identity);
        a.push(otlp::string("protocol", self.protocol));
        a.push(otlp::string("ip_family", self.ip_family()));
        otlp::push_string(&mut a, "observer.node", &self.observer_node);
        otlp::push_int(&mut a, "interval.start", self.interval_start_ns);
        a.push(otlp::int("interval.end", self.interval_end_ns));
        otlp::push_int(&mut a, "bytes_tx", self.bytes_tx);
        otlp::push_int(&mut a, "bytes_rx", self.bytes_rx);
        otlp::push_int(&mut a, "packets_tx", self.packets_tx);
        otlp::push_int(&mut a, "packets_rx", self.packets_rx);
        otlp::push_int(&mut a, "tcp.flags", self.tcp_flags);
        otlp::push_int(&mut a, "tcp.retransmits", self.tcp_retransmits);
        otlp::push_int(&mut a, "tcp.srtt_us", self.tcp_srtt_us);
        otlp::push_int(&mut a, "tcp.srtt_min_us", self.tcp_srtt_min_us);
        otlp::push_string(&mut a, "tcp.connect", self.tcp_connect);
        otlp::push_int(&mut a, "http.requests", self.http_requests);
        for class in 1..=5 {
            let key = format!("http.responses_{class}xx");
            otlp::push_int(&mut a, &key, self.responses(class));
        }
        if !self.http_status.is_empty() {
            a.push(otlp::counts("http.status", &self.http_status));
        }
        otlp::push_int(&mut a, "http.latency_sum_us", self.http_latency_sum_us);
        otlp::push_int(&mut a, "http.latency_max_us", self.http_latency_max_us);
        if !self.http_methods.is_empty() {
            a.push(otlp::string_list(
                "http.methods",
                self.http_methods.iter().copied(),
            ));
        }
        if !self.http_trace_ids.is_empty() {
            a.push(otlp::string_list(
                "http.trace_ids",
                self.http_trace_ids.iter().cloned(),
            ));
        }
        otlp::push_string(&mut a, "dns.query", &self.dns_query);
        otlp::push_string(&mut a, "dns.qtype", &self.dns_qtype);
        otlp::push_string(&mut a, "dns.rcode", &self.dns_rcode);
        if !self.dns_answers.is_empty() {
            a.push(otlp::string_list(
                "dns.answers",
                self.dns_answers.iter().cloned(),
            ));
        }
        otlp::push_int(&mut a, "dns.latency_us", self.dns_latency_us);
        LogRecord {
            time_unix_nano: self.interval_end_ns,
            observed_time_unix_nano: self.interval_end_ns,
            event_name: FLOW_EVENT_NAME.to_owned(),
            attributes: a,
            ..LogRecord::default()
        }
    }
}

fn push_identity(attributes: &mut Vec<KeyValue>, end: &str, identity: &Identity) {
    let fields = [
        ("namespace", &identity.namespace),
        ("workload", &identity.workload),
        ("workload_kind", &identity.workload_kind),
        ("pod", &identity.pod),
        ("node", &identity.node),
        ("process", &identity.process),
        ("name", &identity.name),
    ];
    for (field, value) in fields {
        otlp::push_string(attributes, &format!("{end}.{field}"), value);
    }
}

/// Flow records of a batch as one OTLP export: the observing node is the resource.
pub fn to_resource_logs(node: &str, records: &[FlowRecord]) -> ResourceLogs {
    ResourceLogs {
        resource: Some(otlp::node_resource(node)),
        scope_logs: vec![ScopeLogs {
            scope: Some(otlp::scope()),
            log_records: records.iter().map(FlowRecord::to_log_record).collect(),
            ..ScopeLogs::default()
        }],
        ..ResourceLogs::default()
    }
}

/// Folds one interval's observations into records.
#[derive(Debug)]
pub struct FlowAggregator {
    node: String,
    flows: FastMap<FlowKey, Accum>,
    // flows per interval: `max_flows`; when full: observations of new flows are dropped and
    // counted in `dropped`; flows already in the interval keep accumulating.
    max_flows: usize,
    dropped: u64,
    last_end_ns: Option<u64>,
}

impl FlowAggregator {
    pub fn new(node: impl Into<String>, max_flows: usize) -> FlowAggregator {
        FlowAggregator {
            node: node.into(),
            flows: FastMap::default(),
            max_flows: max_flows.max(1),
            dropped: 0,
            last_end_ns: None,
        }
    }

    /// Observations dropped because the interval already held `max_flows` flows.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Flows waiting for the next emission.
    pub fn pending(&self) -> usize {
        self.flows.len()
    }

    /// The flow of `key`, added unless the interval already holds `max_flows`; one hash lookup.
    fn entry(&mut self, key: FlowKey) -> Option<&mut Accum> {
        let full = self.flows.len() >= self.max_flows;
        match self.flows.entry(key) {
            Entry::Occupied(flow) => Some(flow.into_mut()),
            Entry::Vacant(_) if full => {
                self.dropped += 1;
                None
            }
            Entry::Vacant(flow) => Some(flow.insert(Accum::default())),
        }
    }

    pub fn add_delta(&mut self, delta: &FlowDelta) {
        let (key, side) = orient(&delta.endpoints, delta.role);
        let Some(accum) = self.entry(key) else { return };
        accum.seen_at(side, delta.cgroup_id);
        if delta.bytes_sent + delta.bytes_received > 0 || delta.srtt_us.is_some() {
            accum.established = true;
        }
        let view = accum.tcp[side as usize].get_or_insert_with(TcpView::default);
        view.sent += delta.bytes_sent;
        view.received += delta.bytes_received;
        view.segs_out += delta.segs_out;
        view.segs_in += delta.segs_in;
        view.retransmits += delta.retransmits;
        if delta.srtt_us.is_some() {
            view.srtt_us = delta.srtt_us;
        }
        view.min_rtt_us = match (view.min_rtt_us, delta.min_rtt_us) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for counts in &delta.http {
            self.add_http_counts(delta, counts);
        }
    }

    /// HTTP exchanges the kernel counted on a socket, oriented by the socket's role in them.
    fn add_http_counts(&mut self, delta: &FlowDelta, counts: &HttpCounts) {
        let (key, side) = orient(&delta.endpoints, counts.role);
        let Some(accum) = self.entry(key) else { return };
        accum.seen_at(side, delta.cgroup_id);
        accum.established = true;
        let view = accum.http[side as usize].get_or_insert_with(HttpView::default);
        view.requests += counts.count;
        view.methods.insert(counts.method);
        *view.status.entry(counts.status).or_default() += counts.count;
        view.latency_sum_us = view
            .latency_sum_us
            .saturating_add(counts.latency_sum_ns / 1_000);
        view.latency_max_us = view.latency_max_us.max(u64::from(counts.latency_max_us));
    }

    pub fn add_close(&mut self, closed: &ConnectionClosed) {
        let (key, side) = orient(&closed.endpoints, closed.role);
        let Some(accum) = self.entry(key) else { return };
        accum.seen_at(side, closed.cgroup_id);
        if closed.established_ns.is_some() {
            accum.established = true;
        }
        // A failed connect seen by its client says more than the server's view of it.
        if accum.outcome.is_none() || side == Side::Src {
            accum.outcome = Some(closed.outcome);
        }
    }

    pub fn add_http(&mut self, exchange: &HttpExchange) {
        let (key, side) = orient(&exchange.endpoints, exchange.role);
        let Some(accum) = self.entry(key) else { return };
        accum.seen_at(side, exchange.cgroup_id);
        accum.established = true;
        let view = accum.http[side as usize].get_or_insert_with(HttpView::default);
        if let Some(request) = &exchange.request {
            view.requests += 1;
            view.methods.insert(request.method);
            if let Some(traceparent) = request
                .traceparent
                .as_ref()
                .filter(|traceparent| traceparent.sampled())
                .filter(|_| view.trace_ids.len() < MAX_TRACE_IDS)
            {
                let id = hex(&traceparent.trace_id);
                if !view.trace_ids.contains(&id) {
                    view.trace_ids.push(id);
                }
            }
        }
        if let Some(status) = &exchange.status {
            *view.status.entry(status.code).or_default() += 1;
            let latency = u64::try_from(exchange.latency().as_micros()).unwrap_or(u64::MAX);
            view.latency_sum_us = view.latency_sum_us.saturating_add(latency);
            view.latency_max_us = view.latency_max_us.max(latency);
        }
    }

    pub fn add_dns(&mut self, response: &DnsResponse) {
        let (mut key, side) = orient(&response.endpoints, response.role);
        key.dns_id = Some(response.dns_id);
        let Some(accum) = self.entry(key) else { return };
        accum.seen_at(side, response.cgroup_id);
        let mut view = DnsView {
            latency_us: response.latency().map_or(0, |latency| {
                u64::try_from(latency.as_micros()).unwrap_or(u64::MAX)
            }),
            ..DnsView::default()
        };
        if let Ok(message) = &response.message {
            if let Some(question) = &message.question {
                view.query.clone_from(&question.name);
                view.qtype = qtype_name(question.qtype);
            }
            if message.is_response() {
                view.rcode = message.rcode.as_str().to_owned();
            }
            view.answers = message
                .answers
                .iter()
                .filter_map(|answer| match &answer.data {
                    AnswerData::Address(addr) => Some(addr.to_string()),
                    AnswerData::Cname(name) => Some(name.clone()),
                    AnswerData::Other => None,
                })
                .take(64)
                .collect();
        }
        accum.dns[side as usize] = Some(view);
    }

    /// Drains the interval ending at `end_ns` (Unix ns) into records, naming both ends.
    pub fn emit(&mut self, end_ns: u64, names: &dyn IdentitySource) -> Vec<FlowRecord> {
        let start_ns = self.last_end_ns.replace(end_ns).unwrap_or(0);
        let mut records: Vec<FlowRecord> = self
            .flows
            .drain()
            .map(|(key, accum)| build(&key, accum, names))
            .collect();
        for record in &mut records {
            record.observer_node.clone_from(&self.node);
            record.interval_start_ns = start_ns;
            record.interval_end_ns = end_ns;
        }
        records.sort_by_key(|record| (record.src, record.dst));
        records
    }
}

fn build(key: &FlowKey, accum: Accum, names: &dyn IdentitySource) -> FlowRecord {
    let name = |side: Side, addr: SocketAddr| match accum.cgroups[side as usize] {
        Some(cgroup_id) => names.local(cgroup_id, addr.ip()),
        None => names.remote(addr.ip()),
    };
    let protocol = match key.transport {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
        Transport::Other(_) => "other",
    };
    let mut record = FlowRecord::new(key.src, key.dst, protocol);
    record.src_identity = name(Side::Src, key.src);
    record.dst_identity = name(Side::Dst, key.dst);
    let [src_tcp, dst_tcp] = &accum.tcp;
    // Bytes and packets from the opener's socket when it is here, else flipped from the
    // acceptor's; retransmits are each end's own, so they add.
    if let Some(view) = src_tcp {
        record.bytes_tx = view.sent;
        record.bytes_rx = view.received;
        record.packets_tx = view.segs_out;
        record.packets_rx = view.segs_in;
    } else if let Some(view) = dst_tcp {
        record.bytes_tx = view.received;
        record.bytes_rx = view.sent;
        record.packets_tx = view.segs_in;
        record.packets_rx = view.segs_out;
    }
    record.tcp_retransmits = accum
        .tcp
        .iter()
        .flatten()
        .map(|view| view.retransmits)
        .sum();
    let rtt_view = src_tcp
        .as_ref()
        .filter(|view| view.srtt_us.is_some())
        .or(dst_tcp.as_ref());
    if let Some(view) = rtt_view {
        record.tcp_srtt_us = view.srtt_us.map_or(0, u64::from);
        record.tcp_srtt_min_us = view.min_rtt_us.or(view.srtt_us).map_or(0, u64::from);
    }
    if key.transport == Transport::Tcp {
        if accum.established {
            record.tcp_flags |= flag::ACK;
        }
        record.tcp_connect = match accum.outcome {
            None if accum.established => "ok",
            None => "",
            Some(outcome) => {
                record.ended = true;
                let (connect, flags) = describe(outcome);
                record.tcp_flags |= flags;
                connect
            }
        };
    }
    // HTTP from the server's view when it is here: its latency excludes the network.
    let [src_http, dst_http] = accum.http;
    if let Some(view) = dst_http.or(src_http) {
        record.http_requests = view.requests;
        record.http_status = view.status;
        record.http_latency_sum_us = view.latency_sum_us;
        record.http_latency_max_us = view.latency_max_us;
        record.http_methods = view.methods.names();
        record.http_trace_ids = view.trace_ids;
    }
    // DNS from the client's view when it is here: its latency is what the client waited.
    let [src_dns, dst_dns] = accum.dns;
    if let Some(view) = src_dns.or(dst_dns) {
        record.dns_query = view.query;
        record.dns_qtype = view.qtype;
        record.dns_rcode = view.rcode;
        record.dns_answers = view.answers;
        record.dns_latency_us = view.latency_us;
    }
    record
}

/// The schema's `tcp.connect` word for an outcome, and the flags it implies.
fn describe(outcome: Outcome) -> (&'static str, u64) {
    match outcome {
        Outcome::Closed => ("ok", flag::FIN),
        Outcome::Refused => ("refused", flag::SYN | flag::RST),
        Outcome::ConnectTimedOut => ("timeout", flag::SYN),
        Outcome::Unreachable => ("unreachable", flag::SYN),
        Outcome::Aborted => ("aborted", flag::SYN),
        Outcome::ConnectFailed(_) => ("failed", flag::SYN),
        Outcome::HandshakeFailed => ("failed", flag::SYN),
        Outcome::Reset => ("reset", flag::RST),
        Outcome::TimedOut => ("timeout", 0),
        Outcome::Failed(_) => ("failed", 0),
    }
}

/// Query type mnemonics (RFC 1035, RFC 3596, RFC 2782, RFC 9460).
pub fn qtype_name(qtype: u16) -> String {
    match qtype {
        dns::record_type::A => "A".to_owned(),
        2 => "NS".to_owned(),
        dns::record_type::CNAME => "CNAME".to_owned(),
        6 => "SOA".to_owned(),
        12 => "PTR".to_owned(),
        15 => "MX".to_owned(),
        16 => "TXT".to_owned(),
        dns::record_type::AAAA => "AAAA".to_owned(),
        33 => "SRV".to_owned(),
        64 => "SVCB".to_owned(),
        65 => "HTTPS".to_owned(),
        255 => "ANY".to_owned(),
        other => format!("TYPE{other}"),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::http::{parse_request_head, parse_status_line};

    const CLIENT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 40_000);
    const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)), 8080);
    const CLIENT_CGROUP: u64 = 11;
    const SERVER_CGROUP: u64 = 22;

    /// Local ends are named by cgroup, remote ones by address.
    struct Names;

    impl IdentitySource for Names {
        fn local(&self, cgroup_id: u64, _addr: IpAddr) -> Identity {
            Identity {
                namespace: "ns".into(),
                workload: format!("local-{cgroup_id}"),
                ..Identity::default()
            }
        }
        fn remote(&self, addr: IpAddr) -> Identity {
            Identity {
                name: format!("remote-{addr}"),
                ..Identity::default()
            }
        }
    }

    fn endpoints(local: SocketAddr, remote: SocketAddr, transport: Transport) -> Endpoints {
        Endpoints {
            local,
            remote,
            transport,
        }
    }

    fn delta(role: Role, sent: u64, received: u64, retransmits: u64) -> FlowDelta {
        let (local, remote, cgroup_id) = match role {
            Role::Server => (SERVER, CLIENT, SERVER_CGROUP),
            _ => (CLIENT, SERVER, CLIENT_CGROUP),
        };
        FlowDelta {
            sock_id: cgroup_id,
            cgroup_id,
            endpoints: endpoints(local, remote, Transport::Tcp),
            role,
            bytes_sent: sent,
            bytes_received: received,
            segs_out: 3,
            segs_in: 2,
            retransmits,
            srtt_us: Some(if role == Role::Server { 900 } else { 400 }),
            min_rtt_us: Some(300),
            open: true,
            http: Vec::new(),
        }
    }

    fn exchange(role: Role, request: &str, status: &str, latency_ns: u64) -> HttpExchange {
        let (local, remote, cgroup_id) = match role {
            Role::Server => (SERVER, CLIENT, SERVER_CGROUP),
            _ => (CLIENT, SERVER, CLIENT_CGROUP),
        };
        HttpExchange {
            cgroup_id,
            sock_cookie: 7,
            endpoints: endpoints(local, remote, Transport::Tcp),
            role,
            request_ns: 1_000,
            response_ns: 1_000 + latency_ns,
            request: parse_request_head(request.as_bytes()),
            status: parse_status_line(status.as_bytes()),
            request_truncated: false,
        }
    }

    #[test]
    fn both_views_of_a_local_connection_make_one_record() {
        let mut flows = FlowAggregator::new("node-a", 16);
        flows.add_delta(&delta(Role::Client, 100, 5000, 1));
        flows.add_delta(&delta(Role::Server, 5000, 100, 2));
        let records = flows.emit(2_000, &Names);
        assert_eq!(records.len(), 1, "{records:#?}");
        let record = &records[0];
        assert_eq!((record.src, record.dst), (CLIENT, SERVER));
        assert_eq!(record.src_identity.workload, "local-11");
        assert_eq!(record.dst_identity.workload, "local-22");
        assert_eq!((record.bytes_tx, record.bytes_rx), (100, 5000));
        assert_eq!((record.packets_tx, record.packets_rx), (3, 2));
        assert_eq!(record.tcp_retransmits, 3, "each end counts its own");
        assert_eq!(record.tcp_srtt_us, 400, "the opener's RTT");
        assert_eq!(record.tcp_connect, "ok");
        assert!(!record.ended);
        assert_eq!(record.observer_node, "node-a");
        assert_eq!(
            (record.interval_start_ns, record.interval_end_ns),
            (0, 2_000)
        );
        assert_eq!(flows.pending(), 0);
        assert!(flows.emit(3_000, &Names).is_empty());
    }

    #[test]
    fn a_server_alone_flips_its_view_and_names_the_client_by_address() {
        let mut flows = FlowAggregator::new("node-a", 16);
        flows.add_delta(&delta(Role::Server, 5000, 100, 0));
        let record = &flows.emit(2_000, &Names)[0];
        assert_eq!((record.src, record.dst), (CLIENT, SERVER));
        assert_eq!((record.bytes_tx, record.bytes_rx), (100, 5000));
        assert_eq!((record.packets_tx, record.packets_rx), (2, 3));
        assert_eq!(record.src_identity.name, "remote-10.0.0.2");
        assert_eq!(record.dst_identity.workload, "local-22");
    }

    #[test]
    fn an_unknown_role_is_oriented_by_the_ephemeral_port() {
        let mut flows = FlowAggregator::new("n", 16);
        flows.add_delta(&delta(Role::Unknown, 10, 20, 0));
        let record = &flows.emit(1, &Names)[0];
        assert_eq!((record.src, record.dst), (CLIENT, SERVER));
    }

    #[test]
    fn a_refused_connect_is_a_record_that_ended() {
        let mut flows = FlowAggregator::new("n", 16);
        flows.add_close(&ConnectionClosed {
            sock_id: 1,
            cgroup_id: CLIENT_CGROUP,
            endpoints: endpoints(CLIENT, SERVER, Transport::Tcp),
            role: Role::Client,
            outcome: Outcome::Refused,
            opened_ns: Some(1),
            established_ns: None,
            closed_ns: 2,
            bytes_sent: 0,
            bytes_received: 0,
            segs_out: 1,
            segs_in: 1,
            retransmits: 0,
            srtt_us: None,
            min_rtt_us: None,
            rtt_samples: 0,
            srtt_sum_us: 0,
            http: Default::default(),
        });
        let record = &flows.emit(1, &Names)[0];
        assert_eq!(record.tcp_connect, "refused");
        assert!(record.ended);
        assert_eq!(record.tcp_flags, flag::SYN | flag::RST);
    }

    #[test]
    fn methods_are_listed_once_each_in_alphabetical_order() {
        let mut methods = MethodSet::default();
        for method in Method::ALL.into_iter().rev().chain([Method::Get]) {
            methods.insert(method);
        }
        assert_eq!(
            methods.names(),
            ["CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"]
        );
        assert!(MethodSet::default().names().is_empty());
    }

    #[test]
    fn http_comes_from_the_server_view_when_both_are_seen() {
        let mut flows = FlowAggregator::new("n", 16);
        let traced = "GET /a?x=1 HTTP/1.1\r\nHost: core-api\r\ntraceparent: \
                      00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n";
        flows.add_http(&exchange(
            Role::Client,
            traced,
            "HTTP/1.1 500 Oops\r\n",
            3_000_000,
        ));
        flows.add_http(&exchange(
            Role::Server,
            traced,
            "HTTP/1.1 500 Oops\r\n",
            2_000_000,
        ));
        flows.add_http(&exchange(
            Role::Server,
            "POST /b HTTP/1.1\r\n\r\n",
            "HTTP/1.1 200 OK\r\n",
            1_000_000,
        ));
        let record = &flows.emit(1, &Names)[0];
        assert_eq!(record.http_requests, 2);
        assert_eq!(record.http_status, BTreeMap::from([(200, 1), (500, 1)]));
        assert_eq!((record.responses(2), record.responses(5)), (1, 1));
        assert_eq!(record.http_latency_sum_us, 3_000);
        assert_eq!(record.http_latency_max_us, 2_000);
        assert_eq!(record.http_methods, ["GET", "POST"]);
        assert_eq!(record.http_trace_ids, ["0af7651916cd43dd8448eb211c80319c"]);
    }

    #[test]
    fn http_counted_in_the_kernel_adds_to_the_exchanges_of_the_record() {
        let mut flows = FlowAggregator::new("n", 16);
        let traced = "GET /a HTTP/1.1\r\ntraceparent: \
                      00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n";
        flows.add_http(&exchange(
            Role::Server,
            traced,
            "HTTP/1.1 200 OK\r\n",
            2_000_000,
        ));
        // The server socket's delta: bytes, and exchanges the kernel counted. Its role in them
        // orients the record even though the socket was first seen late.
        let mut server = delta(Role::Unknown, 500, 300, 0);
        server.endpoints = endpoints(SERVER, CLIENT, Transport::Tcp);
        server.cgroup_id = SERVER_CGROUP;
        let counts = |method, status, count, sum_ns, max_us| HttpCounts {
            role: Role::Server,
            method,
            status,
            count,
            latency_sum_ns: sum_ns,
            latency_max_us: max_us,
            buckets: [0; strata_ebpf::abi::HTTP_BUCKETS],
        };
        server.http = vec![
            counts(Method::Get, 200, 3, 9_000_000, 5_000),
            counts(Method::Delete, 404, 1, 500_000, 500),
        ];
        flows.add_delta(&server);
        let records = flows.emit(1, &Names);
        let record = records
            .iter()
            .find(|r| r.http_requests > 0)
            .expect("an HTTP record");
        assert_eq!((record.src, record.dst), (CLIENT, SERVER));
        assert_eq!(record.http_requests, 5);
        assert_eq!(record.http_status, BTreeMap::from([(200, 4), (404, 1)]));
        assert_eq!(record.http_latency_sum_us, 2_000 + 9_000 + 500);
        assert_eq!(record.http_latency_max_us, 5_000);
        assert_eq!(record.http_methods, ["DELETE", "GET"]);
        assert_eq!(record.http_trace_ids, ["0af7651916cd43dd8448eb211c80319c"]);
    }

    #[test]
    fn the_interval_cap_drops_new_flows_and_counts_them() {
        let mut flows = FlowAggregator::new("n", 1);
        flows.add_delta(&delta(Role::Client, 1, 1, 0));
        let mut other = delta(Role::Client, 1, 1, 0);
        other.endpoints.local.set_port(40_001);
        flows.add_delta(&other);
        flows.add_delta(&delta(Role::Client, 1, 1, 0));
        assert_eq!(flows.dropped(), 1);
        assert_eq!(flows.emit(1, &Names)[0].bytes_tx, 2);
    }

    /// Every attribute the agent sends is a field of `docs/flow-schema.md`, the schema the store
    /// enforces.
    #[test]
    fn every_exported_attribute_is_a_schema_field() {
        let schema = include_str!("../../docs/flow-schema.md");
        let fields: Vec<&str> = schema
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                (cells.len() > 3 && cells[1].parse::<u32>().is_ok())
                    .then(|| cells[2].trim_matches('`'))
            })
            .collect();
        assert!(fields.len() >= 50, "{fields:?}");
        let mut flows = FlowAggregator::new("n", 16);
        flows.add_delta(&delta(Role::Client, 1, 1, 1));
        flows.add_http(&exchange(
            Role::Server,
            "GET / HTTP/1.1\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n",
            "HTTP/1.1 200 OK\r\n",
            5,
        ));
        let mut record = flows.emit(1, &Names).remove(0);
        record.src_identity = Identity {
            namespace: "a".into(),
            workload: "b".into(),
            workload_kind: "c".into(),
            pod: "d".into(),
            node: "e".into(),
            process: "f".into(),
            name: "g".into(),
        };
        record.dst_identity = record.src_identity.clone();
        record.dns_query = "x".into();
        record.dns_qtype = "A".into();
        record.dns_rcode = "NOERROR".into();
        record.dns_answers = vec!["1.2.3.4".into()];
        record.dns_latency_us = 1;
        record.ended = true;
        let log = record.to_log_record();
        assert_eq!(log.event_name, FLOW_EVENT_NAME);
        assert_eq!(log.time_unix_nano, 1);
        for attribute in &log.attributes {
            assert!(
                fields.contains(&attribute.key.as_str()),
                "{} is not in the schema",
                attribute.key
            );
        }
        assert!(log.attributes.len() >= 40, "{}", log.attributes.len());
    }

    #[test]
    fn dns_exchanges_are_records_with_the_clients_view() {
        let query = [
            0x12, 0x34, 0x81, 0x83, 0, 1, 0, 0, 0, 0, 0, 0, 4, b'n', b'o', b'p', b'e', 3, b'c',
            b'o', b'm', 0, 0, 1, 0, 1,
        ];
        let resolver: SocketAddr = "10.0.0.10:53".parse().expect("addr");
        let response = DnsResponse {
            cgroup_id: CLIENT_CGROUP,
            endpoints: endpoints(CLIENT, resolver, Transport::Udp),
            role: Role::Client,
            dns_id: 0x1234,
            query_ns: Some(1_000),
            response_ns: 251_000,
            message: dns::parse(&query),
        };
        let mut flows = FlowAggregator::new("n", 16);
        flows.add_dns(&response);
        let record = &flows.emit(1, &Names)[0];
        assert_eq!(record.protocol, "udp");
        assert_eq!(record.dns_query, "nope.com");
        assert_eq!(record.dns_qtype, "A");
        assert_eq!(record.dns_rcode, "NXDOMAIN");
        assert_eq!(record.dns_latency_us, 250);
        assert_eq!(record.tcp_connect, "");
    }
}
