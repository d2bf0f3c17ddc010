//! Traces end to end against a running `strata`: the OpenTelemetry Python SDK sends with both OTLP
//! exporters and every span, attribute, event and link is read back through the Tempo API in protobuf;
//! acknowledged spans survive `kill -9`; hostile OTLP input is refused while the server keeps serving.

use std::collections::HashMap;
use std::process::Command;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1 as otlp;
use prost::Message;
use serde_json::Value as Json;
use strata_api::tempo::TraceByIdResponse;
use strata_tests::{http, otel_python, Strata};

const BIN: &str = env!("CARGO_BIN_EXE_strata-e2e");

fn fetch_trace(s: &Strata, tenant: &str, trace_id: &str) -> Option<otlp::TracesData> {
    let r = http()
        .get(s.url(&format!("/tempo/api/v2/traces/{trace_id}")))
        .header("accept", "application/protobuf")
        .header("x-scope-orgid", tenant)
        .send()
        .unwrap();
    if r.status().as_u16() == 404 {
        return None;
    }
    assert!(r.status().is_success(), "{}", r.status());
    TraceByIdResponse::decode(r.bytes().unwrap()).unwrap().trace
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The Python value the SDK was given, as OTLP encodes it.
fn expected_value(v: &Json) -> any_value::Value {
    match v {
        Json::String(s) => any_value::Value::StringValue(s.clone()),
        Json::Bool(b) => any_value::Value::BoolValue(*b),
        Json::Number(n) if n.is_i64() => any_value::Value::IntValue(n.as_i64().unwrap()),
        Json::Number(n) => any_value::Value::DoubleValue(n.as_f64().unwrap()),
        Json::Array(a) => any_value::Value::ArrayValue(ArrayValue {
            values: a
                .iter()
                .map(|x| AnyValue {
                    value: Some(expected_value(x)),
                })
                .collect(),
        }),
        other => panic!("unexpected attribute value {other}"),
    }
}

fn assert_attributes(what: &str, got: &[KeyValue], want: &Json) {
    let want = want.as_object().unwrap();
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for kv in got {
        let w = want
            .get(&kv.key)
            .unwrap_or_else(|| panic!("{what}: unexpected attribute {}", kv.key));
        assert_eq!(
            kv.value.as_ref().and_then(|v| v.value.clone()),
            Some(expected_value(w)),
            "{what}: attribute {}",
            kv.key
        );
    }
}

fn string_attr<'a>(r: &'a Option<Resource>, key: &str) -> Option<&'a str> {
    r.as_ref()?
        .attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

/// Every span the script reported is stored with every field it was given.
fn check_sent(s: &Strata, tenant: &str, sent: &[Json]) {
    let mut by_trace: HashMap<&str, Vec<&Json>> = HashMap::new();
    for span in sent {
        by_trace
            .entry(span["trace_id"].as_str().unwrap())
            .or_default()
            .push(span);
    }
    for (trace_id, spans) in by_trace {
        let got = fetch_trace(s, tenant, trace_id)
            .unwrap_or_else(|| panic!("trace {trace_id} not found"));
        let mut stored = HashMap::new();
        for rs in &got.resource_spans {
            for ss in &rs.scope_spans {
                for sp in &ss.spans {
                    stored.insert(hex(&sp.span_id), (rs, ss, sp));
                }
            }
        }
        assert_eq!(stored.len(), spans.len(), "trace {trace_id}");
        for want in spans {
            let id = want["span_id"].as_str().unwrap();
            let (rs, ss, sp) = stored[id];
            let what = format!("span {id} ({})", want["name"]);
            assert_eq!(hex(&sp.trace_id), trace_id);
            assert_eq!(sp.name, want["name"].as_str().unwrap(), "{what}");
            assert_eq!(
                hex(&sp.parent_span_id),
                want["parent_span_id"].as_str().unwrap(),
                "{what}"
            );
            // The Python SDK numbers kinds INTERNAL=0, SERVER=1, CLIENT=2; OTLP adds UNSPECIFIED=0 first.
            assert_eq!(
                i64::from(sp.kind),
                want["kind"].as_i64().unwrap() + 1,
                "{what}"
            );
            assert_eq!(
                sp.start_time_unix_nano,
                want["start"].as_u64().unwrap(),
                "{what}"
            );
            assert_eq!(
                sp.end_time_unix_nano,
                want["end"].as_u64().unwrap(),
                "{what}"
            );
            let status = sp.status.clone().unwrap_or_default();
            // Python: UNSET=0, OK=1, ERROR=2, as OTLP.
            assert_eq!(
                i64::from(status.code),
                want["status_code"].as_i64().unwrap(),
                "{what}"
            );
            assert_eq!(
                status.message,
                want["status_message"].as_str().unwrap(),
                "{what}"
            );
            assert_attributes(&what, &sp.attributes, &want["attributes"]);
            let events = want["events"].as_array().unwrap();
            assert_eq!(sp.events.len(), events.len(), "{what}");
            for (e, w) in sp.events.iter().zip(events) {
                assert_eq!(e.name, w["name"].as_str().unwrap());
                assert_eq!(e.time_unix_nano, w["time"].as_u64().unwrap());
                assert_attributes(
                    &format!("{what} event {}", e.name),
                    &e.attributes,
                    &w["attributes"],
                );
            }
            let links = want["links"].as_array().unwrap();
            assert_eq!(sp.links.len(), links.len(), "{what}");
            for (l, w) in sp.links.iter().zip(links) {
                assert_eq!(hex(&l.trace_id), w["trace_id"].as_str().unwrap());
                assert_eq!(hex(&l.span_id), w["span_id"].as_str().unwrap());
                assert_attributes(&format!("{what} link"), &l.attributes, &w["attributes"]);
            }
            assert_eq!(
                string_attr(&rs.resource, "service.name"),
                want["service"].as_str(),
                "{what}"
            );
            assert_eq!(
                string_attr(&rs.resource, "deployment.environment"),
                Some("ci"),
                "{what}"
            );
            let scope = ss.scope.clone().unwrap_or_default();
            assert_eq!(
                [scope.name.as_str(), scope.version.as_str()],
                [
                    want["scope"][0].as_str().unwrap(),
                    want["scope"][1].as_str().unwrap()
                ]
            );
        }
    }
}

#[test]
fn otel_python_sdk_traces_read_back_through_the_tempo_api() {
    let Some(py) = otel_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(BIN, dir.path(), &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/otel/send_traces.py");
    for (protocol, endpoint, service) in [
        ("grpc", s.otlp_grpc_endpoint(), "shop-grpc"),
        (
            "http",
            format!("http://127.0.0.1:{}", s.otlp_http_port),
            "shop-http",
        ),
    ] {
        let out = Command::new(&py)
            .args([script, protocol, &endpoint, service, "team-otel"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{protocol}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sent: Vec<Json> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(sent.len(), 4);
        check_sent(&s, "team-otel", &sent);
        // another tenant sees none of it
        assert!(fetch_trace(&s, "default", sent[1]["trace_id"].as_str().unwrap()).is_none());
        // Grafana's search editor finds the failing span
        let q = format!(
            r#"{{resource.service.name="{service}-db" && name="scan orders" && status=error}}"#
        );
        let r: Json = http()
            .get(s.url("/tempo/api/search"))
            .query(&[("q", q.as_str()), ("limit", "20"), ("spss", "3")])
            .header("x-scope-orgid", "team-otel")
            .send()
            .unwrap()
            .json()
            .unwrap();
        let traces = r["traces"].as_array().unwrap();
        assert_eq!(traces.len(), 1, "{r}");
        assert_eq!(traces[0]["rootServiceName"], service);
        assert_eq!(traces[0]["rootTraceName"], "GET /checkout");
        assert_eq!(
            traces[0]["spanSets"][0]["spans"][0]["spanID"],
            sent[3]["span_id"]
        );
    }
    // after a restart the spans come from blocks
    let mut s = s;
    s.terminate();
    s.restart();
    let r: Json = http()
        .get(s.url("/tempo/api/search"))
        .query(&[("q", "{ }"), ("limit", "100")])
        .header("x-scope-orgid", "team-otel")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["traces"].as_array().unwrap().len(), 4, "{r}");
}

fn request(trace: u8, spans: usize) -> ExportTraceServiceRequest {
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
    };
    ExportTraceServiceRequest {
        resource_spans: vec![otlp::ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "killed")],
                ..Default::default()
            }),
            scope_spans: vec![otlp::ScopeSpans {
                scope: None,
                spans: (0..spans)
                    .map(|i| otlp::Span {
                        trace_id: vec![trace; 16],
                        span_id: vec![i as u8 + 1; 8],
                        parent_span_id: if i == 0 { vec![] } else { vec![1; 8] },
                        name: format!("op-{i}"),
                        start_time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                        end_time_unix_nano: 1_700_000_000_100_000_000,
                        attributes: vec![kv("i", &i.to_string())],
                        ..Default::default()
                    })
                    .collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

#[test]
fn kill_9_loses_no_acknowledged_span() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Strata::start(BIN, dir.path(), &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = TraceServiceClient::connect(s.otlp_grpc_endpoint())
            .await
            .unwrap();
        for t in 1..=50u8 {
            let r = client.export(request(t, 5)).await.expect("acknowledged");
            assert!(r
                .into_inner()
                .partial_success
                .is_none_or(|p| p.rejected_spans == 0));
        }
    });
    s.kill9();
    s.restart();
    for t in 1..=50u8 {
        let got =
            fetch_trace(&s, "default", &hex(&[t; 16])).unwrap_or_else(|| panic!("trace {t} lost"));
        let n: usize = got
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        assert_eq!(n, 5, "trace {t}");
    }
}

#[test]
fn hostile_otlp_input_is_refused_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(BIN, dir.path(), &[]);
    let c = http();
    // garbage protobuf
    let r = c
        .post(s.otlp_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(vec![0x0a, 0xff, 0xff, 0x01, 0x02])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // values nested deeper than any decoder accepts
    let mut v = AnyValue {
        value: Some(any_value::Value::IntValue(1)),
    };
    for _ in 0..200 {
        v = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![v] })),
        };
    }
    let mut deep = request(1, 1);
    deep.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(KeyValue {
            key: "deep".into(),
            value: Some(v),
        });
    let r = c
        .post(s.otlp_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(deep.encode_to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // a huge attribute value
    let mut huge = request(2, 1);
    huge.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(KeyValue {
            key: "big".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("x".repeat(2 << 20))),
            }),
        });
    let r = c
        .post(s.otlp_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(huge.encode_to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // wrong ids: a partial success naming the reason
    let r = c.post(s.otlp_url("/v1/traces")).header("content-type", "application/json").body(serde_json::to_vec(&serde_json::json!({
        "resourceSpans": [{ "scopeSpans": [{ "spans": [
            { "traceId": hex(&[3; 16]), "spanId": hex(&[1; 8]), "name": "ok", "startTimeUnixNano": "1", "endTimeUnixNano": 2 },
            { "traceId": hex(&[3; 16]), "spanId": "0102", "name": "bad" }
        ]}]}]
    })).unwrap()).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Json = r.json().unwrap();
    // int64: a string in OTLP/JSON, though decoders take a number too
    let rejected = &body["partialSuccess"]["rejectedSpans"];
    assert_eq!(rejected.to_string().trim_matches('"'), "1", "{body}");
    assert!(body["partialSuccess"]["errorMessage"]
        .as_str()
        .unwrap()
        .contains("span id"));
    // still serving, and the good span is there
    assert!(fetch_trace(&s, "default", &hex(&[3; 16])).is_some());
    assert!(fetch_trace(&s, "default", &hex(&[1; 16])).is_none());
    assert_eq!(
        c.get(s.url("/tempo/api/echo"))
            .send()
            .unwrap()
            .text()
            .unwrap(),
        "echo"
    );
    let r = c.get(s.url("/tempo/api/v2/traces/zz")).send().unwrap();
    assert_eq!(r.status().as_u16(), 400);
}
