//! The flow record: one connection (or UDP 5-tuple) summarised over an interval, with the identity of
//! both ends. `docs/flow-schema.md` is the reference; the table in [`FIELDS`] is the one place a field's
//! name, kind and meaning are declared, and everything else (the OTLP mapping, the index schema, the
//! JSON answers, the filter language's names) is derived from it, so the vocabularies cannot drift.

use std::net::IpAddr;

/// How a field's value is represented. The same kind drives its OTLP attribute type, its index mapping
/// and its JSON rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// UTF-8 text; empty means absent. A key field (see [`is_key_field`]).
    Str,
    /// Unsigned integer; 0 means absent or none. A fast column (`dst.port`: a key field).
    U64,
    /// Unix time in nanoseconds. A fast column.
    Time,
    /// IPv4 or IPv6 address; filters take an address or a CIDR prefix. A key field.
    Ip,
    /// Several texts, each matched exactly (e.g. HTTP methods seen). A key field.
    StrList,
    /// Several texts kept with the record but not indexed (e.g. trace ids, DNS answers).
    StoredList,
    /// Counts per code (HTTP status code → responses). Filters compare against the codes seen.
    Counts,
}

/// One field of the schema.
#[derive(Debug, Clone, Copy)]
pub struct FieldDef {
    /// The field's name: OTLP attribute key, filter-language name and JSON key at once.
    pub name: &'static str,
    pub kind: FieldKind,
    /// Unit, when the value has one.
    pub unit: &'static str,
    pub doc: &'static str,
}

/// An owned value of some field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Str(String),
    U64(u64),
    Time(i64),
    Ip(Option<IpAddr>),
    List(Vec<String>),
    Counts(Vec<(u64, u64)>),
}

impl FieldValue {
    pub fn as_field_ref(&self) -> FieldRef<'_> {
        match self {
            FieldValue::Str(s) => FieldRef::Str(s),
            FieldValue::U64(v) => FieldRef::U64(*v),
            FieldValue::Time(v) => FieldRef::Time(*v),
            FieldValue::Ip(v) => FieldRef::Ip(*v),
            FieldValue::List(v) => FieldRef::List(v),
            FieldValue::Counts(v) => FieldRef::Counts(v),
        }
    }
}

/// A borrowed view of some field's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldRef<'a> {
    Str(&'a str),
    U64(u64),
    Time(i64),
    Ip(Option<IpAddr>),
    List(&'a [String]),
    Counts(&'a [(u64, u64)]),
}

impl FieldRef<'_> {
    /// Absent values are left out of answers, of the WAL and of the index.
    pub fn is_empty(&self) -> bool {
        match self {
            FieldRef::Str(s) => s.is_empty(),
            FieldRef::U64(v) => *v == 0,
            FieldRef::Time(v) => *v == 0,
            FieldRef::Ip(v) => v.is_none(),
            FieldRef::List(v) => v.is_empty(),
            FieldRef::Counts(v) => v.is_empty(),
        }
    }

    pub fn to_owned_value(&self) -> FieldValue {
        match *self {
            FieldRef::Str(s) => FieldValue::Str(s.to_owned()),
            FieldRef::U64(v) => FieldValue::U64(v),
            FieldRef::Time(v) => FieldValue::Time(v),
            FieldRef::Ip(v) => FieldValue::Ip(v),
            FieldRef::List(v) => FieldValue::List(v.to_vec()),
            FieldRef::Counts(v) => FieldValue::Counts(v.to_vec()),
        }
    }
}

/// One end of a flow. `src` is the side that opened the connection (for UDP: sent the first datagram).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Endpoint {
    pub ip: Option<IpAddr>,
    pub port: u64,
    pub namespace: String,
    pub workload: String,
    pub workload_kind: String,
    pub pod: String,
    pub node: String,
    pub process: String,
    /// External ends only: the DNS name the client resolved, else a configured CIDR label, else `world`.
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tcp {
    /// TCP flags seen in either direction, OR-ed (FIN=0x01 SYN=0x02 RST=0x04 PSH=0x08 ACK=0x10 URG=0x20
    /// ECE=0x40 CWR=0x80).
    pub flags: u64,
    pub retransmits: u64,
    pub srtt_us: u64,
    pub srtt_min_us: u64,
    /// `ok`, `refused`, `timeout` or `reset`; empty when the connect was not observed.
    pub connect: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Http {
    pub requests: u64,
    pub responses_1xx: u64,
    pub responses_2xx: u64,
    pub responses_3xx: u64,
    pub responses_4xx: u64,
    pub responses_5xx: u64,
    /// Status code → responses, sorted by code.
    pub status: Vec<(u64, u64)>,
    pub latency_sum_us: u64,
    pub latency_max_us: u64,
    pub methods: Vec<String>,
    pub trace_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dns {
    pub query: String,
    pub qtype: String,
    pub rcode: String,
    pub answers: Vec<String>,
    pub latency_us: u64,
}

/// One flow record. See `docs/flow-schema.md`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowRecord {
    pub src: Endpoint,
    pub dst: Endpoint,
    pub protocol: String,
    pub ip_family: String,
    pub observer_node: String,
    pub interval_start: i64,
    pub interval_end: i64,
    pub bytes_tx: u64,
    pub bytes_rx: u64,
    pub packets_tx: u64,
    pub packets_rx: u64,
    pub tcp: Tcp,
    pub http: Http,
    pub dns: Dns,
    pub verdict: String,
    pub drop_reason: String,
}

trait AsFieldRef {
    fn as_field_ref(&self) -> FieldRef<'_>;
}

/// Moves a value of the right kind into a field; a value of another kind is handed back.
trait AssignFrom: Sized {
    fn assign(&mut self, v: FieldValue) -> Result<(), FieldValue>;
}

/// Ties a Rust field type to its variant of [`FieldRef`] and [`FieldValue`].
macro_rules! field_type {
    ($t:ty, $variant:ident, |$r:ident| $borrow:expr) => {
        impl AsFieldRef for $t {
            fn as_field_ref(&self) -> FieldRef<'_> {
                let $r = self;
                FieldRef::$variant($borrow)
            }
        }
        impl AssignFrom for $t {
            fn assign(&mut self, v: FieldValue) -> Result<(), FieldValue> {
                match v {
                    FieldValue::$variant(x) => {
                        *self = x;
                        Ok(())
                    }
                    v => Err(v),
                }
            }
        }
    };
}

field_type!(String, Str, |s| s);
field_type!(u64, U64, |v| *v);
field_type!(i64, Time, |v| *v);
field_type!(Option<IpAddr>, Ip, |v| *v);
field_type!(Vec<String>, List, |v| v);

impl AsFieldRef for Vec<(u64, u64)> {
    fn as_field_ref(&self) -> FieldRef<'_> {
        FieldRef::Counts(self)
    }
}
impl AssignFrom for Vec<(u64, u64)> {
    fn assign(&mut self, v: FieldValue) -> Result<(), FieldValue> {
        match v {
            FieldValue::Counts(mut c) => {
                // Kept sorted by code, so equal records compare equal whatever order they came in.
                c.sort_unstable();
                *self = c;
                Ok(())
            }
            v => Err(v),
        }
    }
}

/// Declares the schema once: the field table, index-based accessors, and the name lookup.
macro_rules! flow_fields {
    ($( $name:literal => $($path:ident).+ : $kind:ident, $unit:literal, $doc:literal; )*) => {
        /// Every field of a flow record, in a fixed order (the index is the field's id in the WAL).
        pub const FIELDS: &[FieldDef] = &[
            $( FieldDef { name: $name, kind: FieldKind::$kind, unit: $unit, doc: $doc }, )*
        ];

        /// Per field, in [`FIELDS`] order: its reader and its writer.
        #[allow(clippy::type_complexity)]
        static ACCESSORS: &[(
            for<'a> fn(&'a FlowRecord) -> FieldRef<'a>,
            fn(&mut FlowRecord, FieldValue) -> Result<(), FieldValue>,
        )] = &[
            $( {
                fn get(r: &FlowRecord) -> FieldRef<'_> {
                    r.$($path).+.as_field_ref()
                }
                fn set(r: &mut FlowRecord, v: FieldValue) -> Result<(), FieldValue> {
                    r.$($path).+.assign(v)
                }
                (get, set)
            }, )*
        ];

        impl FlowRecord {
            /// The value of field number `i` of [`FIELDS`].
            #[inline]
            pub fn field(&self, i: usize) -> FieldRef<'_> {
                match ACCESSORS.get(i) {
                    Some((get, _)) => get(self),
                    None => {
                        debug_assert!(false, "field index {i} out of range");
                        FieldRef::Str("")
                    }
                }
            }

            /// Calls `f` with each field's number and value, in [`FIELDS`] order: one pass over the
            /// record with no lookup per field, for the walks made per record as it is taken in.
            #[inline]
            pub fn for_each_field<'a>(&'a self, mut f: impl FnMut(usize, FieldRef<'a>)) {
                let mut i = 0usize;
                $(
                    f(i, self.$($path).+.as_field_ref());
                    i += 1;
                )*
                debug_assert_eq!(i, FIELDS.len());
            }

            /// Sets field number `i`; a value of the wrong kind is handed back.
            pub fn set_field(&mut self, i: usize, v: FieldValue) -> Result<(), FieldValue> {
                match ACCESSORS.get(i) {
                    Some((_, set)) => set(self, v),
                    None => Err(v),
                }
            }
        }
    };
}

flow_fields! {
    "src.ip" => src.ip: Ip, "", "Address of the end that opened the connection.";
    "src.port" => src.port: U64, "", "Port of the opening end.";
    "src.namespace" => src.namespace: Str, "", "Kubernetes namespace of the opening end.";
    "src.workload" => src.workload: Str, "", "Owning workload (Deployment, StatefulSet, DaemonSet, Job, …) name.";
    "src.workload_kind" => src.workload_kind: Str, "", "Kind of the owning workload.";
    "src.pod" => src.pod: Str, "", "Pod name.";
    "src.node" => src.node: Str, "", "Node the end runs on.";
    "src.process" => src.process: Str, "", "Process name or systemd unit, for host processes outside pods.";
    "src.name" => src.name: Str, "", "External ends: resolved DNS name, else CIDR label, else `world`.";
    "dst.ip" => dst.ip: Ip, "", "Address of the accepting end.";
    "dst.port" => dst.port: U64, "", "Port of the accepting end.";
    "dst.namespace" => dst.namespace: Str, "", "Kubernetes namespace of the accepting end.";
    "dst.workload" => dst.workload: Str, "", "Owning workload name of the accepting end.";
    "dst.workload_kind" => dst.workload_kind: Str, "", "Kind of the accepting end's workload.";
    "dst.pod" => dst.pod: Str, "", "Pod name of the accepting end.";
    "dst.node" => dst.node: Str, "", "Node of the accepting end.";
    "dst.process" => dst.process: Str, "", "Process name or systemd unit of the accepting end.";
    "dst.name" => dst.name: Str, "", "External ends: resolved DNS name, else CIDR label, else `world`.";
    "protocol" => protocol: Str, "", "Transport protocol: `tcp` or `udp`.";
    "ip_family" => ip_family: Str, "", "`ipv4` or `ipv6`.";
    "observer.node" => observer_node: Str, "", "Node whose agent observed the flow.";
    "interval.start" => interval_start: Time, "ns", "Start of the summarised interval, Unix nanoseconds.";
    "interval.end" => interval_end: Time, "ns", "End of the summarised interval, Unix nanoseconds; the record's time.";
    "bytes_tx" => bytes_tx: U64, "By", "Payload bytes sent by src to dst in the interval.";
    "bytes_rx" => bytes_rx: U64, "By", "Payload bytes sent by dst to src in the interval.";
    "packets_tx" => packets_tx: U64, "", "Packets sent by src to dst.";
    "packets_rx" => packets_rx: U64, "", "Packets sent by dst to src.";
    "tcp.flags" => tcp.flags: U64, "", "TCP flags seen, OR-ed: FIN=1 SYN=2 RST=4 PSH=8 ACK=16 URG=32 ECE=64 CWR=128.";
    "tcp.retransmits" => tcp.retransmits: U64, "", "Segments retransmitted in the interval.";
    "tcp.srtt_us" => tcp.srtt_us: U64, "us", "Smoothed RTT at the end of the interval.";
    "tcp.srtt_min_us" => tcp.srtt_min_us: U64, "us", "Smallest smoothed RTT seen in the interval.";
    "tcp.connect" => tcp.connect: Str, "", "How the connection went: `ok`, `refused`, `timeout`, `reset`, `unreachable`, `aborted` or `failed`.";
    "http.requests" => http.requests: U64, "", "HTTP/1.x requests seen.";
    "http.responses_1xx" => http.responses_1xx: U64, "", "Responses with a 1xx status.";
    "http.responses_2xx" => http.responses_2xx: U64, "", "Responses with a 2xx status.";
    "http.responses_3xx" => http.responses_3xx: U64, "", "Responses with a 3xx status.";
    "http.responses_4xx" => http.responses_4xx: U64, "", "Responses with a 4xx status.";
    "http.responses_5xx" => http.responses_5xx: U64, "", "Responses with a 5xx status.";
    "http.status" => http.status: Counts, "", "Responses per status code; filters compare against the codes seen.";
    "http.latency_sum_us" => http.latency_sum_us: U64, "us", "Sum of request-to-response latencies.";
    "http.latency_max_us" => http.latency_max_us: U64, "us", "Largest request-to-response latency.";
    "http.methods" => http.methods: StrList, "", "Request methods seen.";
    "http.trace_ids" => http.trace_ids: StoredList, "", "A few W3C trace ids from `traceparent` headers (the agent keeps at most 8).";
    "dns.query" => dns.query: Str, "", "Queried name (no trailing dot).";
    "dns.qtype" => dns.qtype: Str, "", "Query type: `A`, `AAAA`, `CNAME`, `SRV`, …";
    "dns.rcode" => dns.rcode: Str, "", "Response code: `NOERROR`, `NXDOMAIN`, `SERVFAIL`, …; empty without a response.";
    "dns.answers" => dns.answers: StoredList, "", "Answer data (addresses or names).";
    "dns.latency_us" => dns.latency_us: U64, "us", "Query-to-response latency.";
    "verdict" => verdict: Str, "", "`forwarded` or `dropped`, when known.";
    "drop_reason" => drop_reason: Str, "", "Why the flow was dropped, when known.";
}

/// Number of fields in the schema.
pub fn field_count() -> usize {
    FIELDS.len()
}

/// The index of a field in [`FIELDS`]. Looked up per OTLP attribute, so hashed, not scanned.
pub fn field_index(name: &str) -> Option<usize> {
    type ByName = crate::hash::FastMap<&'static str, usize>;
    static BY_NAME: std::sync::LazyLock<ByName> = std::sync::LazyLock::new(|| {
        FIELDS
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name, i))
            .collect()
    });
    BY_NAME.get(name).copied()
}

/// Whether field `i` belongs to a record's key: the identity of both ends and everything else a
/// record shares with many others (text, addresses, the service port). A partition stores each
/// distinct key once (`keys`); its records refer to it by number.
#[inline]
pub fn is_key_field(i: usize) -> bool {
    i < 64 && KEY_MASK >> i & 1 == 1
}

/// Bit `i` set when field `i` is a key field.
const KEY_MASK: u64 = {
    assert!(FIELDS.len() <= 64, "key fields are a 64-bit mask");
    let mut mask = 0u64;
    let mut i = 0;
    while i < FIELDS.len() {
        let f = &FIELDS[i];
        if matches!(f.kind, FieldKind::Str | FieldKind::StrList | FieldKind::Ip)
            || str_eq(f.name, "dst.port")
        {
            mask |= 1 << i;
        }
        i += 1;
    }
    mask
};

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Limits on one record, checked at ingest so a bad sender cannot blow up the index.
pub const MAX_STR_LEN: usize = 1024;
pub const MAX_LIST_LEN: usize = 64;

impl FlowRecord {
    /// Checks the invariants the store relies on; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        self.check_times()?;
        let mut verdict = Ok(());
        self.for_each_field(|i, v| {
            if verdict.is_ok() {
                verdict = check_field(i, v);
            }
        });
        verdict
    }
}

impl FlowRecord {
    /// The part of [`Self::validate`] about the record's interval.
    pub fn check_times(&self) -> Result<(), String> {
        if self.interval_end <= 0 {
            return Err("interval.end is missing".into());
        }
        if self.interval_start > self.interval_end {
            return Err("interval.start is after interval.end".into());
        }
        Ok(())
    }
}

/// The limits of [`FlowRecord::validate`] on one (present) field.
#[inline]
pub(crate) fn check_field(i: usize, v: FieldRef<'_>) -> Result<(), String> {
    let name = FIELDS[i].name;
    match v {
        FieldRef::Str(s) if s.len() > MAX_STR_LEN => {
            Err(format!("{name} is longer than {MAX_STR_LEN} bytes"))
        }
        FieldRef::List(l) if l.len() > MAX_LIST_LEN => {
            Err(format!("{name} has more than {MAX_LIST_LEN} values"))
        }
        FieldRef::List(l) if l.iter().any(|s| s.len() > MAX_STR_LEN) => Err(format!(
            "{name} has a value longer than {MAX_STR_LEN} bytes"
        )),
        FieldRef::Counts(c) if c.len() > MAX_LIST_LEN => {
            Err(format!("{name} has more than {MAX_LIST_LEN} codes"))
        }
        FieldRef::U64(p) if p > 65535 && name.ends_with(".port") => {
            Err(format!("{name} is not a port number"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_reads_back_what_was_set() {
        let mut r = FlowRecord::default();
        for (i, f) in FIELDS.iter().enumerate() {
            let v = match f.kind {
                FieldKind::Str => FieldValue::Str(format!("v{i}")),
                FieldKind::U64 => FieldValue::U64(i as u64 + 1),
                FieldKind::Time => FieldValue::Time(i as i64 * 1000),
                FieldKind::Ip => FieldValue::Ip(Some(IpAddr::from([10, 0, 0, i as u8]))),
                FieldKind::StrList | FieldKind::StoredList => {
                    FieldValue::List(vec![format!("a{i}"), format!("b{i}")])
                }
                FieldKind::Counts => FieldValue::Counts(vec![(500, 2), (200, i as u64)]),
            };
            r.set_field(i, v.clone()).unwrap();
            let expected = match v {
                FieldValue::Counts(mut c) => {
                    c.sort_unstable();
                    FieldValue::Counts(c)
                }
                v => v,
            };
            assert_eq!(r.field(i).to_owned_value(), expected, "{}", f.name);
        }
        assert!(r.set_field(0, FieldValue::U64(1)).is_err());
        assert_eq!(field_index("dst.workload"), Some(12));
        assert_eq!(field_index("nope"), None);
    }

    #[test]
    fn schema_document_lists_every_field() {
        let doc = include_str!("../../../docs/flow-schema.md");
        let rows: Vec<Vec<&str>> = doc
            .lines()
            .filter(|l| {
                l.starts_with("| ")
                    && l.split('|')
                        .nth(1)
                        .is_some_and(|c| c.trim().parse::<usize>().is_ok())
            })
            .map(|l| l.split('|').map(str::trim).collect())
            .collect();
        assert_eq!(rows.len(), FIELDS.len(), "docs/flow-schema.md field table");
        for (i, (row, f)) in rows.iter().zip(FIELDS).enumerate() {
            let kind = match f.kind {
                FieldKind::Str => "string",
                FieldKind::U64 => "uint",
                FieldKind::Time => "time",
                FieldKind::Ip => "ip",
                FieldKind::StrList => "string list",
                FieldKind::StoredList => "string list, stored",
                FieldKind::Counts => "counts",
            };
            assert_eq!(row[1], i.to_string());
            assert_eq!(row[2], format!("`{}`", f.name));
            assert_eq!(row[3], kind, "{}", f.name);
            assert_eq!(row[4], f.unit, "{}", f.name);
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = FIELDS.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FIELDS.len());
        // Field ids are one byte in the WAL, and a record's field count one varint byte.
        assert!(FIELDS.len() < 128);
    }
}
