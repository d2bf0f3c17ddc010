//! Flow records as JSON objects whose keys are the schema's field names (`docs/flow-schema.md`).
//! Absent values are left out; times are strings of decimal nanoseconds, as OTLP/JSON writes 64-bit
//! integers, because JSON numbers lose precision past 2^53.

use serde_json::{Map, Value};
use strata_store::flows::{FieldRef, FlowRecord, FIELDS};

pub fn record_json(r: &FlowRecord) -> Value {
    let mut m = Map::new();
    for (i, def) in FIELDS.iter().enumerate() {
        let v = r.field(i);
        if v.is_empty() {
            continue;
        }
        let json = match v {
            FieldRef::Str(s) => Value::String(s.to_owned()),
            FieldRef::U64(n) => Value::from(n),
            FieldRef::Time(t) => Value::String(t.to_string()),
            FieldRef::Ip(ip) => ip.map_or(Value::Null, |ip| Value::String(ip.to_string())),
            FieldRef::List(l) => Value::from(l.to_vec()),
            FieldRef::Counts(c) => Value::Object(
                c.iter()
                    .map(|(code, n)| (code.to_string(), Value::from(*n)))
                    .collect(),
            ),
        };
        m.insert(def.name.to_owned(), json);
    }
    Value::Object(m)
}
