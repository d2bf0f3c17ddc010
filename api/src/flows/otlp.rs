//! Flow records from OTLP log records, as `docs/flow-schema.md` maps them: a log record is a flow when
//! its `event_name` (or, from older SDKs, its `event.name` attribute) is `strata.flow`; every attribute
//! named like a schema field sets that field, resource attributes first and record attributes over them;
//! `interval.end` falls back to the record's `time_unix_nano`.

use std::net::IpAddr;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use strata_store::flows::record::field_index;
use strata_store::flows::{FieldKind, FieldValue, FlowRecord, FIELDS};

use crate::protowire::{Reader, WireError};

/// The event name that marks a log record as a flow record.
pub const FLOW_EVENT_NAME: &str = "strata.flow";

/// The flows of one export request, and what was refused.
#[derive(Debug, Default)]
pub struct DecodedFlows {
    pub records: Vec<FlowRecord>,
    pub rejected: i64,
    /// Why the first refused record was refused.
    pub first_error: Option<String>,
}

impl DecodedFlows {
    fn refuse(&mut self, n: usize, why: impl FnOnce() -> String) {
        self.rejected += n as i64;
        if self.first_error.is_none() {
            self.first_error = Some(why());
        }
    }
}

/// Decodes an `ExportLogsServiceRequest` straight from its protobuf bytes into flow records: keys are
/// matched and values converted where they lie in the body, so the only allocations are the records'
/// own strings. Fields the flow mapping does not read (bodies, scopes, trace ids) are skipped unread.
/// A body that is not valid protobuf is an error for the whole request; a record that is not a valid
/// flow is refused alone.
pub fn decode_protobuf(body: &[u8]) -> Result<DecodedFlows, WireError> {
    let mut out = DecodedFlows::default();
    // A flow takes 500–800 bytes of protobuf: room for most requests without growing the vector
    // (which would copy every record and touch fresh pages).
    out.records.reserve(body.len() / 448);
    let mut scratch = Scratch::default();
    each_message(
        body,
        "opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest",
        1,
        |rl| resource_logs(rl, &mut scratch, &mut out),
    )?;
    Ok(out)
}

/// Splits an export request already decoded into OTLP messages (OTLP/JSON, gRPC) into flow records and
/// refusals, through the same mapping as [`decode_protobuf`].
pub fn decode(req: &ExportLogsServiceRequest) -> Result<DecodedFlows, WireError> {
    decode_protobuf(&req.encode_to_vec())
}

/// An OTLP `AnyValue` as it lies in the body; arrays and key-value lists stay undecoded until a field
/// needs them.
#[derive(Debug, Clone, Copy, PartialEq)]
enum AnyRef<'a> {
    Empty,
    Str(&'a str),
    Bool,
    Int(i64),
    Double,
    Array(&'a [u8]),
    Kvlist(&'a [u8]),
    Bytes,
}

impl AnyRef<'_> {
    fn describe(&self) -> &'static str {
        match self {
            AnyRef::Empty => "an empty value",
            AnyRef::Str(_) => "a string",
            AnyRef::Bool => "a bool",
            AnyRef::Int(_) => "an int",
            AnyRef::Double => "a double",
            AnyRef::Array(_) => "an array",
            AnyRef::Kvlist(_) => "a kvlist",
            AnyRef::Bytes => "bytes",
        }
    }
}

/// Why a record is not stored: the body is not protobuf (the whole request fails), or the record is
/// not a valid flow (it alone is refused).
enum Refusal {
    Wire(WireError),
    Record(String),
}

impl From<WireError> for Refusal {
    fn from(e: WireError) -> Self {
        Refusal::Wire(e)
    }
}

impl From<String> for Refusal {
    fn from(e: String) -> Self {
        Refusal::Record(e)
    }
}

/// Buffers reused from record to record.
#[derive(Default)]
struct Scratch<'a> {
    attributes: Vec<(&'a [u8], AnyRef<'a>)>,
    resource: Vec<(usize, FieldValue)>,
}

/// Finds the field an attribute key names. Senders write a record's attributes in the same order
/// every time (the agent in schema order), so the fields just after the last one found are tried
/// first, by comparing names, before the lookup by hash.
#[derive(Default)]
struct FieldFinder {
    next: usize,
}

impl FieldFinder {
    /// Fields after the last one found that are compared before hashing.
    const AHEAD: usize = 6;

    fn find(&mut self, key: &[u8]) -> Option<usize> {
        let ahead = self.next..(self.next + Self::AHEAD).min(FIELDS.len());
        let i = ahead
            .into_iter()
            .find(|&i| FIELDS[i].name.as_bytes() == key)
            .or_else(|| std::str::from_utf8(key).ok().and_then(field_index))?;
        self.next = i + 1;
        Some(i)
    }
}

/// Calls `f` with the bytes of every occurrence of the message field `field` of `buf`.
fn each_message<'a, E: From<WireError>>(
    buf: &'a [u8],
    message: &'static str,
    field: u64,
    mut f: impl FnMut(&'a [u8]) -> Result<(), E>,
) -> Result<(), E> {
    let mut r = Reader::new(buf, message);
    while !r.done() {
        match r.key()? {
            (n, w) if n == field => f(r.bytes_of(w)?)?,
            (_, w) => r.skip(w)?,
        }
    }
    Ok(())
}

fn any_value(buf: &[u8]) -> Result<AnyRef<'_>, WireError> {
    let mut r = Reader::new(buf, "opentelemetry.proto.common.v1.AnyValue");
    let mut v = AnyRef::Empty;
    while !r.done() {
        // One of: the last value present wins, as in every protobuf decoder.
        v = match r.key()? {
            (1, w) => AnyRef::Str(r.str_of(w)?),
            (2, w) => r.varint_of(w).map(|_| AnyRef::Bool)?,
            (3, w) => AnyRef::Int(r.varint_of(w)? as i64),
            (4, w) => r.fixed64_of(w).map(|_| AnyRef::Double)?,
            (5, w) => AnyRef::Array(r.bytes_of(w)?),
            (6, w) => AnyRef::Kvlist(r.bytes_of(w)?),
            (7, w) => r.bytes_of(w).map(|_| AnyRef::Bytes)?,
            (_, w) => {
                r.skip(w)?;
                continue;
            }
        };
    }
    Ok(v)
}

/// A key-value pair; the key's bytes are checked as UTF-8 only where they are used as text (a key that
/// names a flow field is the field's name, so it is valid).
#[inline]
fn key_value(buf: &[u8]) -> Result<(&[u8], AnyRef<'_>), WireError> {
    key_value_short(buf).map_or_else(|| key_value_any(buf), Ok)
}

/// The layout every encoder writes for a short attribute: the key (field 1, under 128 bytes), then the
/// value (field 2, under 128 bytes) holding a string (under 126 bytes) or an int, nothing else. Read
/// without a field loop; `None` for any other layout and for invalid UTF-8, which [`key_value_any`]
/// reads (or reports, with its position).
#[inline]
fn key_value_short(buf: &[u8]) -> Option<(&[u8], AnyRef<'_>)> {
    let (&[0x0a, kn], rest) = buf.split_first_chunk::<2>()? else {
        return None;
    };
    let (key, rest) = rest
        .split_at_checked(usize::from(kn))
        .filter(|_| kn < 0x80)?;
    let (&[0x12, vn], value) = rest.split_first_chunk::<2>()? else {
        return None;
    };
    if vn >= 0x80 || value.len() != usize::from(vn) {
        return None;
    }
    let v = match value.split_first_chunk::<2>()? {
        (&[0x0a, sn], s) if usize::from(sn) == s.len() && sn < 0x80 => {
            return std::str::from_utf8(s).ok().map(|s| (key, AnyRef::Str(s)))
        }
        // A one- or two-byte int.
        (&[0x18, b0], []) if b0 < 0x80 => u64::from(b0),
        (&[0x18, b0], &[b1]) if b0 >= 0x80 && b1 < 0x80 => {
            u64::from(b0 & 0x7f) | (u64::from(b1) << 7)
        }
        _ => {
            // Longer ints and everything else: the value alone through the general reader.
            return any_value(value).ok().map(|v| (key, v));
        }
    };
    Some((key, AnyRef::Int(v as i64)))
}

fn key_value_any(buf: &[u8]) -> Result<(&[u8], AnyRef<'_>), WireError> {
    let mut r = Reader::new(buf, "opentelemetry.proto.common.v1.KeyValue");
    let (mut key, mut value): (&[u8], _) = (b"", AnyRef::Empty);
    while !r.done() {
        match r.key()? {
            (1, w) => key = r.bytes_of(w)?,
            (2, w) => value = any_value(r.bytes_of(w)?)?,
            (_, w) => r.skip(w)?,
        }
    }
    Ok((key, value))
}

fn non_negative(key: &str, n: i64) -> Result<u64, String> {
    u64::try_from(n).map_err(|_| format!("attribute {key}: {n} is negative"))
}

/// Converts one attribute value into the value of a field of `kind`.
fn field_value(key: &str, kind: FieldKind, v: AnyRef<'_>) -> Result<FieldValue, Refusal> {
    let wrong = |expected: &str| {
        Refusal::Record(format!(
            "attribute {key}: expected {expected}, got {}",
            v.describe()
        ))
    };
    Ok(match (kind, v) {
        (FieldKind::Str, AnyRef::Str(s)) => FieldValue::Str(s.to_owned()),
        (FieldKind::Str, _) => return Err(wrong("a string")),
        (FieldKind::U64, AnyRef::Int(n)) => FieldValue::U64(non_negative(key, n)?),
        (FieldKind::U64, _) => return Err(wrong("an int")),
        (FieldKind::Time, AnyRef::Int(n)) => FieldValue::Time(n),
        (FieldKind::Time, _) => return Err(wrong("an int (Unix nanoseconds)")),
        (FieldKind::Ip, AnyRef::Str(s)) => FieldValue::Ip(Some(
            s.parse::<IpAddr>()
                .map_err(|_| format!("attribute {key}: {s:?} is not an IP address"))?,
        )),
        (FieldKind::Ip, _) => return Err(wrong("a string holding an IP address")),
        (FieldKind::StrList | FieldKind::StoredList, AnyRef::Array(a)) => {
            let mut values = Vec::new();
            each_message(a, "opentelemetry.proto.common.v1.ArrayValue", 1, |x| {
                match any_value(x)? {
                    AnyRef::Str(s) => values.push(s.to_owned()),
                    other => {
                        return Err(Refusal::Record(format!(
                            "attribute {key}: expected an array of strings, found {}",
                            other.describe()
                        )))
                    }
                }
                Ok(())
            })?;
            FieldValue::List(values)
        }
        (FieldKind::StrList | FieldKind::StoredList, _) => {
            return Err(wrong("an array of strings"))
        }
        (FieldKind::Counts, AnyRef::Kvlist(l)) => {
            let mut counts = Vec::new();
            each_message(l, "opentelemetry.proto.common.v1.KeyValueList", 1, |kv| {
                let (code, n) = key_value(kv)?;
                let code = std::str::from_utf8(code)
                    .ok()
                    .and_then(|c| c.parse::<u64>().ok())
                    .ok_or_else(|| {
                        format!(
                            "attribute {key}: key {:?} is not a number",
                            String::from_utf8_lossy(code)
                        )
                    })?;
                match n {
                    AnyRef::Int(n) => counts.push((code, non_negative(key, n)?)),
                    other => {
                        return Err(Refusal::Record(format!(
                            "attribute {key}: count of {code} is {}, expected an int",
                            other.describe()
                        )))
                    }
                }
                Ok(())
            })?;
            FieldValue::Counts(counts)
        }
        (FieldKind::Counts, _) => return Err(wrong("a kvlist of code → int")),
    })
}

/// Sets the schema fields among `attributes` on `flow`; attributes that are not fields are skipped.
fn set_fields(flow: &mut FlowRecord, attributes: &[(&[u8], AnyRef<'_>)]) -> Result<(), Refusal> {
    let mut finder = FieldFinder::default();
    for &(key, v) in attributes {
        if let Some(i) = finder.find(key) {
            let v = field_value(FIELDS[i].name, FIELDS[i].kind, v)?;
            flow.set_field(i, v)
                .map_err(|_| format!("attribute {}: wrong kind", FIELDS[i].name))?;
        }
    }
    Ok(())
}

/// The schema fields of a resource, converted once for all its records.
fn resource_fields(buf: &[u8], into: &mut Vec<(usize, FieldValue)>) -> Result<(), Refusal> {
    let mut finder = FieldFinder::default();
    each_message(buf, "opentelemetry.proto.resource.v1.Resource", 1, |kv| {
        let (key, v) = key_value(kv)?;
        if let Some(i) = finder.find(key) {
            into.push((i, field_value(FIELDS[i].name, FIELDS[i].kind, v)?));
        }
        Ok(())
    })
}

fn resource_logs<'a>(
    buf: &'a [u8],
    scratch: &mut Scratch<'a>,
    out: &mut DecodedFlows,
) -> Result<(), WireError> {
    // The resource may come after its records on the wire: find both before converting any.
    let mut resources: Vec<&[u8]> = Vec::new();
    let mut scopes: Vec<&[u8]> = Vec::new();
    let mut r = Reader::new(buf, "opentelemetry.proto.logs.v1.ResourceLogs");
    while !r.done() {
        match r.key()? {
            (1, w) => resources.push(r.bytes_of(w)?),
            (2, w) => scopes.push(r.bytes_of(w)?),
            (_, w) => r.skip(w)?,
        }
    }
    scratch.resource.clear();
    let mut resource_error = None;
    for res in resources {
        match resource_fields(res, &mut scratch.resource) {
            Ok(()) => {}
            Err(Refusal::Wire(e)) => return Err(e),
            Err(Refusal::Record(e)) => {
                resource_error.get_or_insert(e);
            }
        }
    }
    for scope in scopes {
        each_message(scope, "opentelemetry.proto.logs.v1.ScopeLogs", 2, |rec| {
            if let Some(e) = &resource_error {
                out.refuse(1, || format!("resource {e}"));
                return Ok(());
            }
            // Filled where it lies (a record is most of a kilobyte): no moves.
            out.records.push(FlowRecord::default());
            let flow = out.records.last_mut().expect("pushed above");
            if let Err(refusal) = log_record(rec, scratch, flow) {
                out.records.pop();
                match refusal {
                    Refusal::Wire(e) => return Err(e),
                    Refusal::Record(e) => out.refuse(1, || e),
                }
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Reads one log record into `flow` (a default record).
fn log_record<'a>(
    buf: &'a [u8],
    scratch: &mut Scratch<'a>,
    flow: &mut FlowRecord,
) -> Result<(), Refusal> {
    let mut r = Reader::new(buf, "opentelemetry.proto.logs.v1.LogRecord");
    let (mut time, mut event_name) = (0u64, "");
    scratch.attributes.clear();
    while !r.done() {
        match r.key()? {
            (1, w) => time = r.fixed64_of(w)?,
            (6, w) => scratch.attributes.push(key_value(r.bytes_of(w)?)?),
            (12, w) => event_name = r.str_of(w)?,
            (_, w) => r.skip(w)?,
        }
    }
    let is_flow = event_name == FLOW_EVENT_NAME
        || scratch
            .attributes
            .iter()
            .any(|&(k, v)| k == b"event.name" && v == AnyRef::Str(FLOW_EVENT_NAME));
    if !is_flow {
        return Err(Refusal::Record(format!(
            "log record is not a flow record (event_name {event_name:?}; flows carry event_name {FLOW_EVENT_NAME:?}, see docs/flow-schema.md)"
        )));
    }
    for (i, v) in &scratch.resource {
        flow.set_field(*i, v.clone())
            .map_err(|_| format!("attribute {}: wrong kind", FIELDS[*i].name))?;
    }
    set_fields(flow, &scratch.attributes)?;
    if flow.interval_end == 0 {
        flow.interval_end = i64::try_from(time).unwrap_or(0);
    }
    if flow.interval_end == 0 {
        return Err(Refusal::Record(
            "flow record has neither interval.end nor time_unix_nano".into(),
        ));
    }
    // The store checks the record's invariants (`FlowRecord::validate`) as it takes it, and refuses
    // it alone.
    Ok(())
}

fn any(v: Any) -> Option<AnyValue> {
    Some(AnyValue { value: Some(v) })
}

/// The OTLP log record of a flow: the inverse of [`decode`] (what the agent sends).
pub fn to_log_record(r: &FlowRecord) -> LogRecord {
    use strata_store::flows::FieldRef;
    let attributes = FIELDS
        .iter()
        .enumerate()
        .filter_map(|(i, def)| {
            let v = r.field(i);
            if v.is_empty() {
                return None;
            }
            let value = match v {
                FieldRef::Str(s) => Any::StringValue(s.to_owned()),
                FieldRef::U64(n) => Any::IntValue(i64::try_from(n).unwrap_or(i64::MAX)),
                FieldRef::Time(t) => Any::IntValue(t),
                FieldRef::Ip(ip) => Any::StringValue(ip?.to_string()),
                FieldRef::List(l) => {
                    Any::ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
                        values: l
                            .iter()
                            .map(|s| AnyValue {
                                value: Some(Any::StringValue(s.clone())),
                            })
                            .collect(),
                    })
                }
                FieldRef::Counts(c) => {
                    Any::KvlistValue(opentelemetry_proto::tonic::common::v1::KeyValueList {
                        values: c
                            .iter()
                            .map(|(code, n)| KeyValue {
                                key: code.to_string(),
                                value: any(Any::IntValue(i64::try_from(*n).unwrap_or(i64::MAX))),
                            })
                            .collect(),
                    })
                }
            };
            Some(KeyValue {
                key: def.name.to_owned(),
                value: any(value),
            })
        })
        .collect();
    LogRecord {
        time_unix_nano: u64::try_from(r.interval_end).unwrap_or(0),
        event_name: FLOW_EVENT_NAME.to_owned(),
        attributes,
        ..Default::default()
    }
}

/// One export request carrying `records` under a single resource.
pub fn export_request(records: &[FlowRecord]) -> ExportLogsServiceRequest {
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: records.iter().map(to_log_record).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    use super::*;

    /// The short-attribute reader gives what the general one gives, whatever the layout.
    #[test]
    fn short_attributes_read_as_the_general_reader_reads_them() {
        let kv = |key: &str, v: Option<Any>| {
            KeyValue {
                key: key.into(),
                value: v.map(|v| AnyValue { value: Some(v) }),
            }
            .encode_to_vec()
        };
        let mut bodies = vec![
            kv("src.namespace", Some(Any::StringValue("shop".into()))),
            kv("k", Some(Any::StringValue("x".repeat(125)))),
            kv("k", Some(Any::StringValue("x".repeat(126)))),
            kv("k", Some(Any::StringValue("x".repeat(300)))),
            kv(&"k".repeat(127), Some(Any::StringValue("v".into()))),
            kv(&"k".repeat(128), Some(Any::StringValue("v".into()))),
            kv("k", Some(Any::StringValue(String::new()))),
            kv("k", None),
            kv("", Some(Any::IntValue(5))),
        ];
        for n in [0, 1, 127, 128, 16_383, 16_384, 1 << 40, -1, i64::MIN] {
            bodies.push(kv("bytes_tx", Some(Any::IntValue(n))));
        }
        bodies.push(kv("k", Some(Any::BoolValue(true))));
        bodies.push(kv("k", Some(Any::DoubleValue(1.5))));
        bodies.push(kv("k", Some(Any::BytesValue(vec![1, 2]))));
        bodies.push(kv(
            "k",
            Some(Any::ArrayValue(
                opentelemetry_proto::tonic::common::v1::ArrayValue {
                    values: vec![AnyValue {
                        value: Some(Any::StringValue("GET".into())),
                    }],
                },
            )),
        ));
        // Value before key; a field twice (the last wins); an unknown field; invalid UTF-8; a
        // two-byte int whose second byte says "more"; truncations.
        bodies.push(vec![0x12, 0x03, 0x18, 0x07, 0x00, 0x0a, 0x01, b'k']);
        bodies.push(vec![
            0x0a, 0x01, b'a', 0x0a, 0x01, b'b', 0x12, 0x02, 0x18, 0x01,
        ]);
        bodies.push(vec![0x0a, 0x01, b'k', 0x12, 0x02, 0x18, 0x01, 0x20, 0x01]);
        bodies.push(vec![0x0a, 0x01, b'k', 0x12, 0x03, 0x0a, 0x01, 0xff]);
        bodies.push(vec![0x0a, 0x01, b'k', 0x12, 0x03, 0x18, 0x81, 0x81]);
        let whole = kv("src.pod", Some(Any::StringValue("web-1".into())));
        for cut in 0..whole.len() {
            bodies.push(whole[..cut].to_vec());
        }
        for b in &bodies {
            let fast = key_value(b).map_err(|e| e.to_string());
            let general = key_value_any(b).map_err(|e| e.to_string());
            assert_eq!(fast, general, "{b:02x?}");
        }
    }

    fn record(i: u64) -> FlowRecord {
        let mut r = FlowRecord::default();
        r.src.ip = Some(IpAddr::from([10, 0, 0, i as u8]));
        r.src.port = 40_000 + i;
        r.src.namespace = "shop".into();
        r.src.workload = format!("web-{i}");
        r.dst.ip = "2001:db8::7".parse().ok();
        r.dst.port = 8080;
        r.dst.workload = "api".into();
        r.protocol = "tcp".into();
        r.interval_start = 1_764_194_400_000_000_000 + i as i64;
        r.interval_end = r.interval_start + 10_000_000_000;
        r.bytes_tx = 1234 * i;
        r.http.requests = 3;
        r.http.status = vec![(200, 2), (503, 1)];
        r.http.methods = vec!["GET".into(), "POST".into()];
        r.http.trace_ids = vec![format!("{i:032x}")];
        r.dns.answers = vec!["192.0.2.1".into()];
        r
    }

    fn kv(key: &str, v: Any) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: any(v),
        }
    }

    #[test]
    fn records_round_trip_through_protobuf() {
        let records: Vec<_> = (1..=20).map(record).collect();
        let body = export_request(&records).encode_to_vec();
        let out = decode_protobuf(&body).unwrap();
        assert_eq!(out.rejected, 0, "{:?}", out.first_error);
        assert_eq!(out.records, records);
    }

    #[test]
    fn resource_fields_apply_under_record_fields_wherever_the_resource_lies() {
        let mut log = to_log_record(&record(1));
        log.attributes.retain(|kv| kv.key != "src.namespace");
        // Fields the mapping does not read are skipped.
        log.body = any(Any::StringValue("ignored".into()));
        log.severity_text = "INFO".into();
        log.trace_id = vec![1; 16];
        let resource = Resource {
            attributes: vec![
                kv("src.namespace", Any::StringValue("from-resource".into())),
                kv("dst.workload", Any::StringValue("overridden".into())),
                kv("k8s.cluster.name", Any::IntValue(7)),
            ],
            ..Default::default()
        };
        let rl = ResourceLogs {
            resource: Some(resource),
            scope_logs: vec![ScopeLogs {
                log_records: vec![log],
                ..Default::default()
            }],
            ..Default::default()
        };
        // The same message with the resource written after its records.
        let mut reordered = Vec::new();
        for s in &rl.scope_logs {
            prost::encoding::message::encode(2, s, &mut reordered);
        }
        prost::encoding::message::encode(1, rl.resource.as_ref().unwrap(), &mut reordered);
        let mut body_after = Vec::new();
        prost::encoding::bytes::encode(1, &reordered, &mut body_after);
        let body_before = ExportLogsServiceRequest {
            resource_logs: vec![rl],
        }
        .encode_to_vec();
        for body in [body_before, body_after] {
            let out = decode_protobuf(&body).unwrap();
            assert_eq!(out.rejected, 0, "{:?}", out.first_error);
            let mut expected = record(1);
            expected.src.namespace = "from-resource".into();
            assert_eq!(out.records, vec![expected]);
        }
    }

    #[test]
    fn wrong_records_are_refused_one_by_one() {
        let mut not_flow = to_log_record(&record(1));
        not_flow.event_name = "app.log".into();
        let mut flow_by_attribute = to_log_record(&record(2));
        flow_by_attribute.event_name.clear();
        flow_by_attribute
            .attributes
            .push(kv("event.name", Any::StringValue(FLOW_EVENT_NAME.into())));
        let mut bad_port = to_log_record(&record(3));
        bad_port
            .attributes
            .push(kv("src.port", Any::StringValue("http".into())));
        let mut bad_list = to_log_record(&record(4));
        bad_list.attributes.push(kv(
            "http.methods",
            Any::ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
                values: vec![AnyValue {
                    value: Some(Any::IntValue(1)),
                }],
            }),
        ));
        let mut no_time = to_log_record(&record(5));
        no_time.attributes.retain(|kv| kv.key != "interval.end");
        no_time.time_unix_nano = 0;
        let mut time_only = to_log_record(&record(6));
        time_only.attributes.retain(|kv| kv.key != "interval.end");
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        not_flow,
                        flow_by_attribute,
                        bad_port,
                        bad_list,
                        no_time,
                        time_only,
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let out = decode_protobuf(&req.encode_to_vec()).unwrap();
        assert_eq!(out.records, vec![record(2), record(6)]);
        assert_eq!(out.rejected, 4);
        assert!(out
            .first_error
            .unwrap()
            .contains("log record is not a flow record (event_name \"app.log\""));
        let only = |log: &LogRecord| {
            let req = ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    scope_logs: vec![ScopeLogs {
                        log_records: vec![log.clone()],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            };
            decode(&req).unwrap().first_error.unwrap()
        };
        let logs = &req.resource_logs[0].scope_logs[0].log_records;
        assert_eq!(
            only(&logs[2]),
            "attribute src.port: expected an int, got a string"
        );
        assert_eq!(
            only(&logs[3]),
            "attribute http.methods: expected an array of strings, found an int"
        );
        assert_eq!(
            only(&logs[4]),
            "flow record has neither interval.end nor time_unix_nano"
        );
    }

    #[test]
    fn a_bad_resource_refuses_its_records_only() {
        let bad = ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("observer.node", Any::IntValue(3))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![to_log_record(&record(1)), to_log_record(&record(2))],
                ..Default::default()
            }],
            ..Default::default()
        };
        let good = ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![to_log_record(&record(3))],
                ..Default::default()
            }],
            ..Default::default()
        };
        let req = ExportLogsServiceRequest {
            resource_logs: vec![bad, good],
        };
        let out = decode_protobuf(&req.encode_to_vec()).unwrap();
        assert_eq!(out.records, vec![record(3)]);
        assert_eq!(out.rejected, 2);
        assert_eq!(
            out.first_error.unwrap(),
            "resource attribute observer.node: expected a string, got an int"
        );
    }

    #[test]
    fn bodies_that_are_not_protobuf_fail_whole() {
        let body = export_request(&[record(1), record(2)]).encode_to_vec();
        for cut in [1, body.len() / 2, body.len() - 1] {
            assert!(decode_protobuf(&body[..cut]).is_err(), "cut at {cut}");
        }
        let e = decode_protobuf(&[0xff, 0xff, 0xff]).unwrap_err();
        assert_eq!(
            e.message,
            "opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest"
        );
    }
}
