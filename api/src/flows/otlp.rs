//! Flow records from OTLP log records, as `docs/flow-schema.md` maps them: a log record is a flow when
//! its `event_name` (or, from older SDKs, its `event.name` attribute) is `strata.flow`; every attribute
//! named like a schema field sets that field, resource attributes first and record attributes over them;
//! `interval.end` falls back to the record's `time_unix_nano`.

use std::net::IpAddr;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use strata_store::flows::record::field_index;
use strata_store::flows::{FieldKind, FieldValue, FlowRecord, FIELDS};

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

fn describe(v: &Option<Any>) -> &'static str {
    match v {
        None => "an empty value",
        Some(Any::StringValue(_)) => "a string",
        Some(Any::BoolValue(_)) => "a bool",
        Some(Any::IntValue(_)) => "an int",
        Some(Any::DoubleValue(_)) => "a double",
        Some(Any::ArrayValue(_)) => "an array",
        Some(Any::KvlistValue(_)) => "a kvlist",
        Some(Any::BytesValue(_)) => "bytes",
    }
}

fn value_of(v: Option<&AnyValue>) -> &Option<Any> {
    static NONE: Option<Any> = None;
    v.map_or(&NONE, |a| &a.value)
}

fn non_negative(key: &str, n: i64) -> Result<u64, String> {
    u64::try_from(n).map_err(|_| format!("attribute {key}: {n} is negative"))
}

/// Converts one attribute value into the value of a field of `kind`.
fn field_value(key: &str, kind: FieldKind, v: &Option<Any>) -> Result<FieldValue, String> {
    let wrong =
        |expected: &str| format!("attribute {key}: expected {expected}, got {}", describe(v));
    Ok(match (kind, v) {
        (FieldKind::Str, Some(Any::StringValue(s))) => FieldValue::Str(s.clone()),
        (FieldKind::Str, _) => return Err(wrong("a string")),
        (FieldKind::U64, Some(Any::IntValue(n))) => FieldValue::U64(non_negative(key, *n)?),
        (FieldKind::U64, _) => return Err(wrong("an int")),
        (FieldKind::Time, Some(Any::IntValue(n))) => FieldValue::Time(*n),
        (FieldKind::Time, _) => return Err(wrong("an int (Unix nanoseconds)")),
        (FieldKind::Ip, Some(Any::StringValue(s))) => FieldValue::Ip(Some(
            s.parse::<IpAddr>()
                .map_err(|_| format!("attribute {key}: {s:?} is not an IP address"))?,
        )),
        (FieldKind::Ip, _) => return Err(wrong("a string holding an IP address")),
        (FieldKind::StrList | FieldKind::StoredList, Some(Any::ArrayValue(a))) => FieldValue::List(
            a.values
                .iter()
                .map(|x| match &x.value {
                    Some(Any::StringValue(s)) => Ok(s.clone()),
                    other => Err(format!(
                        "attribute {key}: expected an array of strings, found {}",
                        describe(other)
                    )),
                })
                .collect::<Result<_, _>>()?,
        ),
        (FieldKind::StrList | FieldKind::StoredList, _) => {
            return Err(wrong("an array of strings"))
        }
        (FieldKind::Counts, Some(Any::KvlistValue(l))) => FieldValue::Counts(
            l.values
                .iter()
                .map(|kv| {
                    let code = kv.key.parse::<u64>().map_err(|_| {
                        format!("attribute {key}: key {:?} is not a number", kv.key)
                    })?;
                    match value_of(kv.value.as_ref()) {
                        Some(Any::IntValue(n)) => Ok((code, non_negative(key, *n)?)),
                        other => Err(format!(
                            "attribute {key}: count of {code} is {}, expected an int",
                            describe(other)
                        )),
                    }
                })
                .collect::<Result<_, _>>()?,
        ),
        (FieldKind::Counts, _) => return Err(wrong("a kvlist of code → int")),
    })
}

/// The schema fields among `attributes`, converted; attributes that are not fields are skipped.
fn fields_of(attributes: &[KeyValue]) -> Result<Vec<(usize, FieldValue)>, String> {
    let mut out = Vec::new();
    for kv in attributes {
        if let Some(i) = field_index(&kv.key) {
            out.push((
                i,
                field_value(&kv.key, FIELDS[i].kind, value_of(kv.value.as_ref()))?,
            ));
        }
    }
    Ok(out)
}

fn is_flow(r: &LogRecord) -> bool {
    r.event_name == FLOW_EVENT_NAME
        || r.attributes.iter().any(|kv| {
            kv.key == "event.name"
                && matches!(value_of(kv.value.as_ref()), Some(Any::StringValue(s)) if s == FLOW_EVENT_NAME)
        })
}

fn flow_of(resource: &[(usize, FieldValue)], r: &LogRecord) -> Result<FlowRecord, String> {
    let mut flow = FlowRecord::default();
    for (i, v) in resource.iter().cloned().chain(fields_of(&r.attributes)?) {
        flow.set_field(i, v)
            .map_err(|_| format!("attribute {}: wrong kind", FIELDS[i].name))?;
    }
    if flow.interval_end == 0 {
        flow.interval_end = i64::try_from(r.time_unix_nano).unwrap_or(0);
    }
    if flow.interval_end == 0 {
        return Err("flow record has neither interval.end nor time_unix_nano".into());
    }
    flow.validate()?;
    Ok(flow)
}

/// Splits an export request into flow records and refusals.
pub fn decode(req: &ExportLogsServiceRequest) -> DecodedFlows {
    let mut out = DecodedFlows::default();
    for rl in &req.resource_logs {
        let records: Vec<&LogRecord> = rl
            .scope_logs
            .iter()
            .flat_map(|s| s.log_records.iter())
            .collect();
        let resource = match fields_of(rl.resource.as_ref().map_or(&[][..], |r| &r.attributes)) {
            Ok(f) => f,
            Err(e) => {
                out.refuse(records.len(), || format!("resource {e}"));
                continue;
            }
        };
        for r in records {
            if !is_flow(r) {
                out.refuse(1, || {
                    format!(
                        "log record is not a flow record (event_name {:?}; flows carry event_name {FLOW_EVENT_NAME:?}, see docs/flow-schema.md)",
                        r.event_name
                    )
                });
                continue;
            }
            match flow_of(&resource, r) {
                Ok(f) => out.records.push(f),
                Err(e) => out.refuse(1, || e),
            }
        }
    }
    out
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
