//! Small builders for the OTLP messages the agent exports: attribute values, the agent's
//! resource and scope. The messages themselves are `opentelemetry-proto`'s types.

use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::identity::Identity;

/// The instrumentation scope of everything the agent emits.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "strata-agent".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..InstrumentationScope::default()
    }
}

pub fn string(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
    }
}

pub fn int(key: &str, value: u64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(
                i64::try_from(value).unwrap_or(i64::MAX),
            )),
        }),
    }
}

pub fn string_list<I, S>(key: &str, values: I) -> KeyValue
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: values
                    .into_iter()
                    .map(|value| AnyValue {
                        value: Some(any_value::Value::StringValue(value.into())),
                    })
                    .collect(),
            })),
        }),
    }
}

/// A count per numeric code, as the flow schema's `counts` kind: keys are codes in decimal.
pub fn counts<'a>(key: &str, counts: impl IntoIterator<Item = (&'a u16, &'a u64)>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: counts
                    .into_iter()
                    .map(|(code, count)| int(&code.to_string(), *count))
                    .collect(),
            })),
        }),
    }
}

/// Pushes `key = value` unless the value is empty: absent fields are left out.
pub fn push_string(attributes: &mut Vec<KeyValue>, key: &str, value: &str) {
    if !value.is_empty() {
        attributes.push(string(key, value));
    }
}

/// Pushes `key = value` unless the value is zero: absent numbers are left out.
pub fn push_int(attributes: &mut Vec<KeyValue>, key: &str, value: u64) {
    if value != 0 {
        attributes.push(int(key, value));
    }
}

/// The resource of flow records and metrics: the observing node.
pub fn node_resource(node: &str) -> Resource {
    Resource {
        attributes: vec![
            string("service.name", "strata-agent"),
            string("host.name", node),
            string("observer.node", node),
            string("k8s.node.name", node),
        ],
        ..Resource::default()
    }
}

/// The resource of spans observed at one end: the service that end belongs to, in the
/// OpenTelemetry semantic conventions for Kubernetes.
pub fn service_resource(end: &Identity) -> Resource {
    let mut attributes = vec![string("service.name", service_name(end))];
    push_string(&mut attributes, "service.namespace", &end.namespace);
    push_string(&mut attributes, "k8s.namespace.name", &end.namespace);
    push_string(&mut attributes, "k8s.pod.name", &end.pod);
    push_string(&mut attributes, "k8s.node.name", &end.node);
    if !end.workload.is_empty() {
        let kind_key = match end.workload_kind.as_str() {
            "Deployment" => "k8s.deployment.name",
            "StatefulSet" => "k8s.statefulset.name",
            "DaemonSet" => "k8s.daemonset.name",
            "Job" => "k8s.job.name",
            "CronJob" => "k8s.cronjob.name",
            "ReplicaSet" => "k8s.replicaset.name",
            _ => "k8s.workload.name",
        };
        attributes.push(string(kind_key, end.workload.clone()));
    }
    push_string(&mut attributes, "process.executable.name", &end.process);
    attributes.push(string("telemetry.sdk.name", "strata-agent"));
    Resource {
        attributes,
        ..Resource::default()
    }
}

/// `service.name` of an end: its workload, else its pod, process or external name.
pub fn service_name(end: &Identity) -> String {
    [&end.workload, &end.pod, &end.process, &end.name]
        .into_iter()
        .find(|value| !value.is_empty())
        .cloned()
        .unwrap_or_else(|| "unknown".to_owned())
}
