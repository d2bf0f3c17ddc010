//! The flow API end to end in-process: OTLP logs in (JSON and protobuf), REST answers out, checked
//! against golden records and against the OpenAPI document.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use prost::Message;
use serde_json::{json, Value};
use strata_store::flows::FlowRecord;
use tower::ServiceExt;

use crate::server::AppState;

const T0_S: i64 = 1_764_194_400;
const T0: i64 = T0_S * 1_000_000_000;
const FIXTURE: &str = include_str!("../../tests/fixtures/flows.otlp.json");

struct TestServer {
    state: Arc<AppState>,
    api: Router,
    otlp: Router,
    _dir: tempfile::TempDir,
}

fn server() -> TestServer {
    server_with(|_| {})
}

fn server_with(adjust: impl FnOnce(&mut crate::config::Config)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = crate::config::Config::default();
    // The golden records are dated; keep them whatever the clock says.
    cfg.flows.retention = "0".into();
    cfg.flows.writer_heap_bytes = 15_000_000;
    adjust(&mut cfg);
    let storage = Arc::new(strata_store::Storage::open(dir.path(), cfg.metrics_config()).unwrap());
    let state = AppState::new(storage, cfg);
    TestServer {
        api: crate::server::router(state.clone()),
        otlp: crate::otlp::http::router(state.clone()),
        state,
        _dir: dir,
    }
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, String, Vec<u8>) {
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        status,
        ct,
        r.into_body().collect().await.unwrap().to_bytes().to_vec(),
    )
}

impl TestServer {
    async fn export(
        &self,
        tenant: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Vec<u8>) {
        let req = Request::post("/v1/logs")
            .header("content-type", content_type)
            .header("x-scope-orgid", tenant)
            .body(Body::from(body))
            .unwrap();
        let (s, _, b) = call(&self.otlp, req).await;
        (s, b)
    }

    async fn get(&self, tenant: &str, uri: &str) -> (StatusCode, Value) {
        let req = Request::get(uri)
            .header("x-scope-orgid", tenant)
            .body(Body::empty())
            .unwrap();
        let (s, ct, b) = call(&self.api, req).await;
        assert!(ct.starts_with("application/json"), "{uri}: {ct}");
        (s, serde_json::from_slice(&b).unwrap())
    }

    fn commit(&self) {
        self.state.flows.commit_all().unwrap();
    }
}

/// A URL with the golden records' hour as its window.
fn url(path: &str, params: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("start", &T0_S.to_string());
    q.append_pair("end", &(T0_S + 3600).to_string());
    for (k, v) in params {
        q.append_pair(k, v);
    }
    format!("{path}?{}", q.finish())
}

fn workloads(v: &Value) -> Vec<&str> {
    v["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["src.workload"].as_str().unwrap())
        .collect()
}

/// Exports an OTLP/JSON logs request to tenant `team-a`; the status and the answer's JSON.
async fn export_json(s: &TestServer, request: &Value) -> (StatusCode, Value) {
    let (code, body) = s
        .export(
            "team-a",
            "application/json",
            serde_json::to_vec(request).unwrap(),
        )
        .await;
    (code, serde_json::from_slice(&body).unwrap())
}

/// `partialSuccess.rejectedLogRecords`, which OTLP/JSON may write as a number or a string.
fn rejected(v: &Value) -> i64 {
    let r = &v["partialSuccess"]["rejectedLogRecords"];
    r.as_i64()
        .or_else(|| r.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

async fn golden_server() -> TestServer {
    golden_server_with(|_| {}).await
}

async fn golden_server_with(adjust: impl FnOnce(&mut crate::config::Config)) -> TestServer {
    let s = server_with(adjust);
    let (code, body) = s
        .export("team-a", "application/json", FIXTURE.as_bytes().to_vec())
        .await;
    assert_eq!(code, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    // The application log line is refused, the three flows are kept.
    assert_eq!(rejected(&v), 1, "{v}");
    assert!(
        v["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("not a flow record"),
        "{v}"
    );
    s.commit();
    s
}

#[tokio::test]
async fn golden_records_in_queries_out() {
    let s = golden_server().await;
    let (code, v) = s.get("team-a", &url("/api/v1/flows", &[])).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(workloads(&v), ["web", "notifier", "report-builder"]);
    // The first golden record, field for field.
    let expected = json!({
        "src.ip": "10.0.1.7", "src.port": 40512, "src.namespace": "tenant-jobs",
        "src.workload": "report-builder", "src.workload_kind": "Job", "src.pod": "report-builder-x1",
        "dst.ip": "10.0.4.2", "dst.port": 8080, "dst.namespace": "prod", "dst.workload": "core-api",
        "dst.workload_kind": "Deployment", "protocol": "tcp", "ip_family": "ipv4",
        "observer.node": "node-a",
        "interval.start": (T0 + 50_000_000_000).to_string(),
        "interval.end": (T0 + 60_000_000_000).to_string(),
        "bytes_tx": 1834, "bytes_rx": 52011, "packets_tx": 9, "packets_rx": 40,
        "tcp.flags": 27, "tcp.srtt_us": 412, "tcp.srtt_min_us": 380, "tcp.connect": "ok",
        "http.requests": 3, "http.responses_2xx": 2, "http.responses_5xx": 1,
        "http.status": {"200": 2, "503": 1},
        "http.latency_sum_us": 90000, "http.latency_max_us": 61000,
        "http.methods": ["GET", "POST"],
        "http.trace_ids": ["4bf92f3577b34da6a3ce929d0e0e4736"],
    });
    assert_eq!(v["flows"][2], expected);

    let cases: &[(&str, &[&str])] = &[
        (
            r#"src.namespace="tenant-jobs" and dst.workload="core-api" and http.status>=500"#,
            &["report-builder"],
        ),
        (r#"dst.name=~".*twilio.*""#, &["notifier"]),
        (
            r#"tcp.retransmits>0 or dns.rcode="NXDOMAIN""#,
            &["web", "notifier"],
        ),
        (
            r#"not (protocol="udp" or dst.port=443)"#,
            &["report-builder"],
        ),
        (
            r#"observer.node="node-a" and dst.ip="10.0.0.0/8""#,
            &["web", "report-builder"],
        ),
        (r#"src.workload="nobody""#, &[]),
    ];
    for (filter, expected) in cases {
        let (code, v) = s
            .get("team-a", &url("/api/v1/flows", &[("query", filter)]))
            .await;
        assert_eq!(code, StatusCode::OK, "{filter}: {v}");
        assert_eq!(workloads(&v), *expected, "{filter}");
    }

    let (_, v) = s
        .get(
            "team-a",
            &url("/api/v1/flows", &[("order", "asc"), ("limit", "2")]),
        )
        .await;
    assert_eq!(workloads(&v), ["report-builder", "notifier"]);

    // Outside the window: nothing.
    let (_, v) = s
        .get(
            "team-a",
            &format!("/api/v1/flows?start={}&end={}", T0_S - 7200, T0_S - 3600),
        )
        .await;
    assert_eq!(workloads(&v), Vec::<&str>::new());
}

#[tokio::test]
async fn ndjson_streams_one_record_per_line() {
    let s = golden_server().await;
    let req = Request::get(url("/api/v1/flows", &[("order", "asc")]))
        .header("x-scope-orgid", "team-a")
        .header("accept", "application/x-ndjson")
        .body(Body::empty())
        .unwrap();
    let (code, ct, body) = call(&s.api, req).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(ct, "application/x-ndjson");
    let lines: Vec<Value> = String::from_utf8(body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<_> = lines
        .iter()
        .map(|f| f["src.workload"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["report-builder", "notifier", "web"]);
}

#[tokio::test]
async fn bad_filters_answer_400_with_the_position() {
    let s = golden_server().await;
    for (filter, position, expected) in [
        ("src.namespace=", 14, "value"),
        (r#"src.namespace="a" and (dst.port=1"#, 33, "`)`"),
        ("bogus.field=1", 0, "flow field"),
        (r#"bytes_tx=~"x""#, 8, "operator"),
    ] {
        let (code, v) = s
            .get("team-a", &url("/api/v1/flows", &[("query", filter)]))
            .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{filter}");
        assert_eq!(v["position"], json!(position), "{filter}: {v}");
        assert!(
            v["expected"].as_str().unwrap().contains(expected),
            "{filter}: {v}"
        );
        assert!(v["error"].as_str().unwrap().contains("position"), "{v}");
        let (code, v) = s
            .get(
                "team-a",
                &url("/api/v1/flows/aggregate", &[("query", filter)]),
            )
            .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{filter}");
        assert_eq!(v["position"], json!(position));
    }
    for uri in [
        url("/api/v1/flows", &[("limit", "0")]),
        url("/api/v1/flows", &[("limit", "many")]),
        url("/api/v1/flows", &[("order", "sideways")]),
        "/api/v1/flows?start=10&end=5".to_owned(),
        "/api/v1/flows?start=yesterday".to_owned(),
        url("/api/v1/flows/aggregate", &[("agg", "sum(src.workload)")]),
        url("/api/v1/flows/aggregate", &[("agg", "median(bytes_tx)")]),
        url("/api/v1/flows/aggregate", &[("by", "a,b,c,d,e")]),
        url("/api/v1/flows/aggregate", &[("by", "src.ip")]),
        url("/api/v1/flows/values", &[]),
        url("/api/v1/flows/values", &[("field", "bytes_tx")]),
    ] {
        let (code, v) = s.get("team-a", &uri).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{uri}: {v}");
        assert!(v["error"].is_string(), "{uri}: {v}");
    }
    let (code, _) = s.get("../etc", &url("/api/v1/flows", &[])).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    // Still serving.
    let (code, v) = s.get("team-a", &url("/api/v1/flows", &[])).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(workloads(&v).len(), 3);
}

#[tokio::test]
async fn aggregates_fields_and_values() {
    let s = golden_server().await;
    let (code, v) = s
        .get(
            "team-a",
            &url(
                "/api/v1/flows/aggregate",
                &[
                    ("by", "src.workload,dst.workload"),
                    ("agg", "sum(bytes_tx)|count"),
                    ("agg", "max(tcp.srtt_us)"),
                    ("top", "2"),
                ],
            ),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({
            "by": ["src.workload", "dst.workload"],
            "aggs": ["sum(bytes_tx)", "count", "max(tcp.srtt_us)"],
            "groups": [
                {"key": {"src.workload": "notifier", "dst.workload": ""},
                 "values": {"sum(bytes_tx)": 5000, "count": 1, "max(tcp.srtt_us)": 91000}},
                {"key": {"src.workload": "report-builder", "dst.workload": "core-api"},
                 "values": {"sum(bytes_tx)": 1834, "count": 1, "max(tcp.srtt_us)": 412}},
            ]
        })
    );
    let (_, v) = s
        .get(
            "team-a",
            &url("/api/v1/flows/aggregate", &[("query", "protocol=tcp")]),
        )
        .await;
    assert_eq!(v["groups"], json!([{"key": {}, "values": {"count": 2}}]));

    let (_, v) = s.get("team-a", "/api/v1/flows/fields").await;
    let fields = v["fields"].as_array().unwrap();
    assert_eq!(fields.len(), strata_store::flows::FIELDS.len());
    assert!(fields
        .iter()
        .any(|f| f["name"] == "tcp.retransmits" && f["type"] == "uint"));

    let (_, v) = s
        .get(
            "team-a",
            &url(
                "/api/v1/flows/values",
                &[("field", "src.workload"), ("prefix", "n")],
            ),
        )
        .await;
    assert_eq!(v, json!({"field": "src.workload", "values": ["notifier"]}));
    let (_, v) = s
        .get(
            "team-a",
            &url("/api/v1/flows/values", &[("field", "http.methods")]),
        )
        .await;
    assert_eq!(v["values"], json!(["GET", "POST"]));
}

#[tokio::test]
async fn tenants_see_only_their_flows() {
    let s = golden_server().await;
    let records: Vec<FlowRecord> = (0..5)
        .map(|i| {
            let mut r = FlowRecord::default();
            r.src.workload = format!("other-{i}");
            r.interval_end = T0 + (i + 1) * 1_000_000_000;
            r
        })
        .collect();
    let pb = super::otlp::export_request(&records).encode_to_vec();
    let (code, body) = s.export("team-b", "application/x-protobuf", pb).await;
    assert_eq!(code, StatusCode::OK);
    let resp = opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse::decode(
        &body[..],
    )
    .unwrap();
    assert_eq!(resp.partial_success, None);
    s.commit();
    let (_, b) = s.get("team-b", &url("/api/v1/flows", &[])).await;
    assert_eq!(workloads(&b).len(), 5);
    assert!(workloads(&b).iter().all(|w| w.starts_with("other-")));
    let (_, a) = s.get("team-a", &url("/api/v1/flows", &[])).await;
    assert_eq!(workloads(&a).len(), 3);
    let (_, none) = s.get("default", &url("/api/v1/flows", &[])).await;
    assert_eq!(workloads(&none).len(), 0);
    let (_, v) = s
        .get(
            "team-c",
            &url("/api/v1/flows/values", &[("field", "src.workload")]),
        )
        .await;
    assert_eq!(v["values"], json!([]));
}

#[tokio::test]
async fn bad_otlp_payloads_are_refused_and_store_nothing() {
    let s = server();
    // Undecodable: 400, nothing stored.
    let (code, _) = s
        .export("team-a", "application/x-protobuf", vec![0xff, 0xff, 0xff])
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (code, _) = s
        .export(
            "team-a",
            "application/json",
            b"{\"resourceLogs\": 3}".to_vec(),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    // Decodable, but every record is wrong: refused one by one through partial_success.
    let mut bad = serde_json::from_str::<Value>(FIXTURE).unwrap();
    let records = bad["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
        .as_array_mut()
        .unwrap();
    records[0]["attributes"][1] = json!({"key": "src.port", "value": {"stringValue": "http"}});
    records[1]["attributes"][0] = json!({"key": "src.ip", "value": {"stringValue": "10.0.0.300"}});
    records[2]["attributes"][1] = json!({"key": "src.ip", "value": {"intValue": "-1"}});
    let (code, v) = export_json(&s, &bad).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(rejected(&v), 4, "{v}");
    assert!(
        v["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("src.port"),
        "{v}"
    );
    // Well-typed but out of range: the store refuses the record, and says why.
    let mut bad = serde_json::from_str::<Value>(FIXTURE).unwrap();
    let records = &mut bad["resourceLogs"][0]["scopeLogs"][0]["logRecords"];
    let mut one = records[1].clone();
    one["attributes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"key": "src.port", "value": {"intValue": "70000"}}));
    *records = json!([one]);
    let (code, v) = export_json(&s, &bad).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(rejected(&v), 1, "{v}");
    assert_eq!(
        v["partialSuccess"]["errorMessage"], "src.port is not a port number",
        "{v}"
    );
    // A resource attribute of the wrong type refuses its whole resource.
    let mut bad = serde_json::from_str::<Value>(FIXTURE).unwrap();
    bad["resourceLogs"][0]["resource"]["attributes"][0] =
        json!({"key": "observer.node", "value": {"intValue": "3"}});
    let (_, body) = s
        .export(
            "team-a",
            "application/json",
            serde_json::to_vec(&bad).unwrap(),
        )
        .await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(rejected(&v), 4, "{v}");
    s.commit();
    let (_, v) = s.get("team-a", &url("/api/v1/flows", &[])).await;
    assert_eq!(workloads(&v).len(), 0);
    // And the server keeps serving: the good fixture is taken.
    let (code, _) = s
        .export("team-a", "application/json", FIXTURE.as_bytes().to_vec())
        .await;
    assert_eq!(code, StatusCode::OK);
    s.commit();
    let (_, v) = s.get("team-a", &url("/api/v1/flows", &[])).await;
    assert_eq!(workloads(&v).len(), 3);
}

/// A small validator of the OpenAPI schema subset the document uses.
fn conforms(schema: &Value, v: &Value, doc: &Value) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let path = r.trim_start_matches("#/");
        let target = path.split('/').fold(doc, |d, k| &d[k]);
        return conforms(target, v, doc);
    }
    if let Some(options) = schema["oneOf"].as_array() {
        let n = options
            .iter()
            .filter(|o| conforms(o, v, doc).is_ok())
            .count();
        return if n == 1 {
            Ok(())
        } else {
            Err(format!("{v} matches {n} of oneOf"))
        };
    }
    let ok = match schema["type"].as_str() {
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        _ => true,
    };
    if !ok {
        return Err(format!("{v} is not {}", schema["type"]));
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(v) {
            return Err(format!("{v} not in {allowed:?}"));
        }
    }
    if let Some(obj) = v.as_object() {
        for r in schema["required"].as_array().into_iter().flatten() {
            if !obj.contains_key(r.as_str().unwrap()) {
                return Err(format!("missing {r} in {v}"));
            }
        }
        for (k, x) in obj {
            match schema["properties"].get(k) {
                Some(p) => conforms(p, x, doc).map_err(|e| format!("{k}: {e}"))?,
                None if schema["additionalProperties"].is_object() => {
                    conforms(&schema["additionalProperties"], x, doc)
                        .map_err(|e| format!("{k}: {e}"))?
                }
                None if schema["properties"].is_object() => {
                    return Err(format!("undocumented property {k}"))
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for x in arr {
            conforms(items, x, doc)?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn openapi_document_matches_the_server() {
    let doc: Value =
        serde_yaml::from_str(include_str!("../../openapi/flows.yaml")).expect("valid YAML");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
    documented.sort_unstable();
    let mut served = super::ROUTES.to_vec();
    served.sort_unstable();
    assert_eq!(
        documented, served,
        "every route documented, every documented path served"
    );

    let s = golden_server().await;
    for (path, item) in paths {
        let op = &item["get"];
        assert!(op.is_object(), "{path}: only GET is served");
        // Call with every documented example parameter.
        let mut q = form_urlencoded::Serializer::new(String::new());
        for p in op["parameters"].as_array().into_iter().flatten() {
            let p = match p["$ref"].as_str() {
                Some(r) => r
                    .trim_start_matches("#/")
                    .split('/')
                    .fold(&doc, |d, k| &d[k]),
                None => p,
            };
            if p["in"] == "query" {
                if let Some(ex) = p["example"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| p["example"].as_i64().map(|n| n.to_string()))
                {
                    q.append_pair(p["name"].as_str().unwrap(), &ex);
                }
            }
        }
        let uri = format!("{path}?{}", q.finish());
        let (code, v) = s.get("team-a", &uri).await;
        assert_eq!(code, StatusCode::OK, "{uri}: {v}");
        let schema = &op["responses"]["200"]["content"]["application/json"]["schema"];
        conforms(schema, &v, &doc).unwrap_or_else(|e| panic!("{uri}: {e}"));
        // Every documented error answer has the documented shape.
        if let Some(bad) = op["responses"].get("400") {
            let uri = format!("{path}?query=%28&field=nope&by=nope");
            let (code, v) = s.get("team-a", &uri).await;
            assert_eq!(code, StatusCode::BAD_REQUEST, "{uri}");
            let bad = match bad["$ref"].as_str() {
                Some(r) => r
                    .trim_start_matches("#/")
                    .split('/')
                    .fold(&doc, |d, k| &d[k]),
                None => bad,
            };
            conforms(&bad["content"]["application/json"]["schema"], &v, &doc)
                .unwrap_or_else(|e| panic!("{uri}: {e}"));
        }
    }
    // The records' shape too, with data in it.
    let (_, v) = s.get("team-a", &url("/api/v1/flows", &[])).await;
    assert_eq!(workloads(&v).len(), 3);
    conforms(
        &doc["paths"]["/api/v1/flows"]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"],
        &v,
        &doc,
    )
    .unwrap();
}

#[tokio::test]
async fn flow_queries_wait_for_a_slot_and_answer_503_past_the_timeout() {
    let s = golden_server_with(|cfg| {
        cfg.flows.max_concurrent_queries = 1;
        cfg.flows.query_timeout = "300ms".into();
    })
    .await;
    let uris = [
        url("/api/v1/flows", &[]),
        url("/api/v1/flows/aggregate", &[("by", "src.workload")]),
        url("/api/v1/flows/values", &[("field", "src.workload")]),
    ];
    // The only slot is taken: every kind of flow query waits, then gives up.
    let held = s.state.flow_queries.clone().acquire_owned().await.unwrap();
    for uri in &uris {
        let started = std::time::Instant::now();
        let (code, v) = s.get("team-a", uri).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{uri}: {v}");
        let message = v["error"].as_str().unwrap();
        assert!(message.contains("flows.query_timeout"), "{message}");
        assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    }
    let req = Request::get(uris[0].as_str())
        .header("x-scope-orgid", "team-a")
        .header("accept", "application/x-ndjson")
        .body(Body::empty())
        .unwrap();
    let (code, _, _) = call(&s.api, req).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    // Once the slot is free the same queries answer, and give their slot back.
    drop(held);
    for uri in &uris {
        let (code, v) = s.get("team-a", uri).await;
        assert_eq!(code, StatusCode::OK, "{uri}: {v}");
    }
    let (_, v) = s.get("team-a", &uris[0]).await;
    assert_eq!(workloads(&v).len(), 3);
    assert_eq!(s.state.flow_queries.available_permits(), 1);
}

#[test]
fn flow_query_limits_are_validated() {
    let mut cfg = crate::config::Config::default();
    cfg.flows.query_timeout = "soon".into();
    assert!(cfg.validate().is_err());
    let mut cfg = crate::config::Config::default();
    cfg.flows.max_concurrent_queries = 0;
    assert!(cfg.validate().is_err());
}

#[tokio::test]
async fn the_flow_store_counters_are_in_the_self_metrics() {
    let s = golden_server().await;
    let text = crate::self_metrics::render_text(&s.state);
    let value = |name: &str| {
        let prefix = format!("{name}{{tenant=\"team-a\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
    };
    assert_eq!(value("strata_flow_records_appended_total"), 3);
    assert!(value("strata_flow_commits_total") >= 1);
    assert_eq!(value("strata_flow_partitions_dropped_total"), 0);
    assert_eq!(value("strata_flow_partitions_merged_total"), 0);
    assert!(text.contains("# TYPE strata_flow_records_rejected_total counter"));
}
