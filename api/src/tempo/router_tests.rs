//! The Tempo API in-process through the router, with the requests Grafana's Tempo data source sends
//! (`reference/tempo-api.md` §1): spans go in through [`super::ingest`] (the OTLP listeners' hook) and
//! come back through HTTP.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1 as otlp;
use prost::Message;
use serde_json::{json, Value as Json};
use tower::ServiceExt;

use super::TraceByIdResponse;
use crate::config::Config;
use crate::server::{router, AppState};

pub fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
    }
}

pub fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

const T0: u64 = 1_700_000_000_000_000_000;

/// A checkout trace: frontend server span → client span → cart server span (error, 150 ms) with an
/// event and a link, across two resources.
pub fn checkout_trace(trace: u8) -> Vec<otlp::ResourceSpans> {
    let tid = vec![trace; 16];
    let span = |id: u8, parent: Option<u8>, name: &str, kind: i32, start_ms: u64, dur_ms: u64| {
        otlp::Span {
            trace_id: tid.clone(),
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: name.into(),
            kind,
            start_time_unix_nano: T0 + start_ms * 1_000_000,
            end_time_unix_nano: T0 + (start_ms + dur_ms) * 1_000_000,
            ..Default::default()
        }
    };
    let mut root = span(1, None, "GET /checkout", 2, 0, 300);
    root.attributes = vec![
        kv("http.method", s("GET")),
        kv("http.status_code", any_value::Value::IntValue(200)),
    ];
    let mut client = span(2, Some(1), "POST /cart", 3, 10, 200);
    client.attributes = vec![kv("peer.service", s("cart"))];
    let mut cart = span(3, Some(2), "update-cart", 2, 20, 150);
    cart.status = Some(otlp::Status {
        code: 2,
        message: "out of stock".into(),
    });
    cart.attributes = vec![
        kv("http.status_code", any_value::Value::IntValue(500)),
        kv("ratio", any_value::Value::DoubleValue(0.25)),
        kv("retry", any_value::Value::BoolValue(true)),
        kv(
            "items",
            any_value::Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(s("a")),
                }],
            }),
        ),
        kv(
            "nested",
            any_value::Value::KvlistValue(KeyValueList {
                values: vec![kv("k", s("v"))],
            }),
        ),
        kv("raw", any_value::Value::BytesValue(vec![0, 1, 2])),
    ];
    cart.events = vec![otlp::span::Event {
        time_unix_nano: T0 + 30_000_000,
        name: "exception".into(),
        attributes: vec![kv("exception.message", s("no stock"))],
        dropped_attributes_count: 1,
    }];
    cart.links = vec![otlp::span::Link {
        trace_id: vec![0xaa; 16],
        span_id: vec![0xbb; 8],
        trace_state: "k=v".into(),
        attributes: vec![kv("link.kind", s("follows"))],
        dropped_attributes_count: 0,
        flags: 0x100,
    }];
    let resource = |svc: &str| Resource {
        attributes: vec![kv("service.name", s(svc)), kv("host.name", s("node-1"))],
        ..Default::default()
    };
    let scope = Some(InstrumentationScope {
        name: "shop".into(),
        version: "1.2".into(),
        ..Default::default()
    });
    vec![
        otlp::ResourceSpans {
            resource: Some(resource("frontend")),
            scope_spans: vec![otlp::ScopeSpans {
                scope: scope.clone(),
                spans: vec![root, client],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        },
        otlp::ResourceSpans {
            resource: Some(resource("cart")),
            scope_spans: vec![otlp::ScopeSpans {
                scope,
                spans: vec![cart],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        },
    ]
}

pub fn app(dir: &std::path::Path) -> (Arc<AppState>, axum::Router) {
    let cfg = Config::default();
    let storage = Arc::new(
        strata_store::Storage::open_with_traces(dir, cfg.metrics_config(), cfg.traces_config())
            .unwrap(),
    );
    let state = AppState::new(storage, cfg);
    (state.clone(), router(state))
}

async fn call(app: &axum::Router, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, Vec<u8>) {
    let mut req = Request::get(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = r.status();
    let body = http_body_util::BodyExt::collect(r.into_body())
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, body)
}

async fn get_json(app: &axum::Router, uri: &str) -> Json {
    let (st, body) = call(app, uri, &[]).await;
    assert_eq!(
        st,
        StatusCode::OK,
        "{uri}: {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).unwrap()
}

fn sorted(mut rs: Vec<otlp::ResourceSpans>) -> Vec<otlp::ResourceSpans> {
    rs.sort_by(|a, b| format!("{:?}", a.resource).cmp(&format!("{:?}", b.resource)));
    rs
}

#[tokio::test]
async fn grafana_trace_by_id_v2_protobuf_then_v1_after_404() {
    let dir = tempfile::tempdir().unwrap();
    let (state, app) = app(dir.path());
    let sent = checkout_trace(0x11);
    let r = super::ingest(&state, "default", sent.clone()).unwrap();
    assert_eq!((r.accepted, r.rejected), (3, 0));
    let id = "11".repeat(16);
    let proto = [("accept", "application/protobuf")];
    let (st, body) = call(&app, &format!("/tempo/api/v2/traces/{id}"), &proto).await;
    assert_eq!(st, StatusCode::OK);
    let v2 = TraceByIdResponse::decode(body.as_slice()).unwrap();
    assert_eq!(v2.status, 0);
    assert_eq!(
        sorted(v2.trace.unwrap().resource_spans),
        sorted(sent.clone())
    );
    // Grafana's fallback path: an unknown id is 404 on v2, then v1 is asked and answers 404 too.
    let (st, _) = call(
        &app,
        &format!("/tempo/api/v2/traces/{}", "22".repeat(16)),
        &proto,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = call(
        &app,
        &format!("/tempo/api/traces/{}", "22".repeat(16)),
        &proto,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // v1 protobuf is OTLP TracesData
    let (st, body) = call(&app, &format!("/tempo/api/traces/{id}"), &proto).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        sorted(
            otlp::TracesData::decode(body.as_slice())
                .unwrap()
                .resource_spans
        ),
        sorted(sent.clone())
    );
    // start/end: a window around the trace finds it, one a day later does not
    let t0s = T0 / 1_000_000_000;
    let (st, _) = call(
        &app,
        &format!(
            "/tempo/api/v2/traces/{id}?start={}&end={}",
            t0s - 60,
            t0s + 60
        ),
        &proto,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = call(
        &app,
        &format!(
            "/tempo/api/v2/traces/{id}?start={}&end={}",
            t0s + 86_400,
            t0s + 86_460
        ),
        &proto,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // ids without leading zeros are left-padded
    let short = super::trace_id_hex(&[0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(short, "102030405060708");
    let (st, _) = call(&app, "/tempo/api/v2/traces/not-hex", &proto).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // the same after the trace was cut into a block and the store reopened
    state.storage.close();
    drop(app);
    drop(state);
    let (_, app) = self::app(dir.path());
    let (st, body) = call(&app, &format!("/tempo/api/v2/traces/{id}"), &proto).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        sorted(
            TraceByIdResponse::decode(body.as_slice())
                .unwrap()
                .trace
                .unwrap()
                .resource_spans
        ),
        sorted(sent)
    );
}

#[tokio::test]
async fn trace_json_is_tempo_shaped() {
    let dir = tempfile::tempdir().unwrap();
    let (state, app) = app(dir.path());
    super::ingest(&state, "default", checkout_trace(0x11)).unwrap();
    let id = "11".repeat(16);
    let v1 = get_json(&app, &format!("/tempo/api/traces/{id}")).await;
    let v2 = get_json(&app, &format!("/tempo/api/v2/traces/{id}")).await;
    assert_eq!(v1["batches"], v2["trace"]["resourceSpans"]);
    let batches = v1["batches"].as_array().unwrap();
    let cart = batches
        .iter()
        .find(|b| b["resource"]["attributes"][0]["value"]["stringValue"] == "cart")
        .unwrap();
    let span = &cart["scopeSpans"][0]["spans"][0];
    assert_eq!(span["traceId"], "EREREREREREREREREREREQ==");
    assert_eq!(span["spanId"], "AwMDAwMDAwM=");
    assert_eq!(span["parentSpanId"], "AgICAgICAgI=");
    assert_eq!(span["kind"], "SPAN_KIND_SERVER");
    assert_eq!(
        span["status"],
        json!({ "code": "STATUS_CODE_ERROR", "message": "out of stock" })
    );
    assert_eq!(span["startTimeUnixNano"], (T0 + 20_000_000).to_string());
    assert_eq!(
        span["attributes"][0],
        json!({ "key": "http.status_code", "value": { "intValue": "500" } })
    );
    assert_eq!(
        span["attributes"][4]["value"],
        json!({ "kvlistValue": { "values": [{ "key": "k", "value": { "stringValue": "v" } }] } })
    );
    assert_eq!(
        span["attributes"][5]["value"],
        json!({ "bytesValue": "AAEC" })
    );
    assert_eq!(span["events"][0]["name"], "exception");
    assert_eq!(span["events"][0]["droppedAttributesCount"], 1);
    assert_eq!(span["links"][0]["traceState"], "k=v");
    assert_eq!(
        cart["scopeSpans"][0]["scope"],
        json!({ "name": "shop", "version": "1.2" })
    );
}

#[tokio::test]
async fn grafana_search_editor_query_and_response_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (state, app) = app(dir.path());
    super::ingest(&state, "default", checkout_trace(0x11)).unwrap();
    super::ingest(&state, "default", checkout_trace(0x12)).unwrap();
    state
        .storage
        .traces_for_write("default")
        .unwrap()
        .cut(i64::MAX, true)
        .unwrap();
    super::ingest(&state, "default", checkout_trace(0x13)).unwrap();
    let q =
        r#"{resource.service.name="cart" && name="update-cart" && status=error && duration>100ms}"#;
    let uri = format!(
        "/tempo/api/search?q={}&limit=20&spss=3&start={}&end={}",
        form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>(),
        T0 / 1_000_000_000 - 3600,
        T0 / 1_000_000_000 + 3600
    );
    let r = get_json(&app, &uri).await;
    let traces = r["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 3, "{r}");
    let t = traces
        .iter()
        .find(|t| t["traceID"] == "11".repeat(16))
        .unwrap();
    let span = json!({
        "spanID": "0303030303030303",
        "name": "update-cart",
        "startTimeUnixNano": (T0 + 20_000_000).to_string(),
        "durationNanos": "150000000",
        "attributes": [
            { "key": "resource.service.name", "value": { "stringValue": "cart" } },
            { "key": "status", "value": { "stringValue": "error" } },
        ],
    });
    let spanset = json!({ "spans": [span], "matched": 1 });
    assert_eq!(
        t,
        &json!({
            "traceID": "11".repeat(16),
            "rootServiceName": "frontend",
            "rootTraceName": "GET /checkout",
            "startTimeUnixNano": T0.to_string(),
            "durationMs": 300,
            "spanSet": spanset,
            "spanSets": [spanset],
            "serviceStats": { "frontend": { "spanCount": 2 }, "cart": { "spanCount": 1, "errorCount": 1 } },
        })
    );
    assert!(r["metrics"]["inspectedBytes"].is_string());
    // a duration bound that excludes the span, limit and spss, minDuration, legacy tags
    let q2 = form_urlencoded::byte_serialize(br#"{ name = "update-cart" && duration > 200ms }"#)
        .collect::<String>();
    assert_eq!(
        get_json(&app, &format!("/tempo/api/search?q={q2}")).await["traces"],
        json!([])
    );
    let r = get_json(&app, "/tempo/api/search?q=%7B%7D&limit=1&spss=1").await;
    assert_eq!(r["traces"].as_array().unwrap().len(), 1);
    assert_eq!(r["traces"][0]["spanSets"][0]["matched"], 3);
    assert_eq!(
        r["traces"][0]["spanSets"][0]["spans"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        get_json(&app, "/tempo/api/search?minDuration=400ms").await["traces"],
        json!([])
    );
    let r = get_json(&app, "/tempo/api/search?tags=service.name%3Dcar").await;
    assert_eq!(r["traces"].as_array().unwrap().len(), 3);
    let r = get_json(
        &app,
        "/tempo/api/search?q=%7B%20span.retry%20%3D%20true%20%7D%20%7C%20count()%20%3E%200",
    )
    .await;
    assert_eq!(r["traces"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn bad_search_requests_are_400_with_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let (_, app) = app(dir.path());
    let (st, body) = call(&app, "/tempo/api/search?q=%7B%20.a%20%3D%20%7D", &[]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        String::from_utf8_lossy(&body).contains("col 8"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    for uri in [
        "/tempo/api/search?q=%7B%7D&tags=a%3Db",
        "/tempo/api/search?limit=0",
        "/tempo/api/search?minDuration=5parsecs",
        "/tempo/api/search?minDuration=2s&maxDuration=1s",
        "/tempo/api/search?start=yesterday",
        "/tempo/api/v2/search/tag/%7B/values",
    ] {
        assert_eq!(
            call(&app, uri, &[]).await.0,
            StatusCode::BAD_REQUEST,
            "{uri}"
        );
    }
    assert_eq!(
        call(&app, "/tempo/api/echo", &[]).await,
        (StatusCode::OK, b"echo".to_vec())
    );
    assert_eq!(call(&app, "/tempo/ready", &[]).await.0, StatusCode::OK);
    let bi = get_json(&app, "/tempo/api/status/buildinfo").await;
    assert_eq!(bi["version"], super::TEMPO_COMPAT_VERSION);
}

#[tokio::test]
async fn tag_and_value_autocomplete() {
    let dir = tempfile::tempdir().unwrap();
    let (state, app) = app(dir.path());
    super::ingest(&state, "default", checkout_trace(0x11)).unwrap();
    state
        .storage
        .traces_for_write("default")
        .unwrap()
        .cut(i64::MAX, true)
        .unwrap();
    super::ingest(&state, "default", checkout_trace(0x12)).unwrap();
    let v2 = get_json(&app, "/tempo/api/v2/search/tags?limit=5000").await;
    let scope = |name: &str| {
        v2["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["tags"]
            .clone()
    };
    assert_eq!(scope("resource"), json!(["host.name", "service.name"]));
    assert!(scope("span")
        .as_array()
        .unwrap()
        .contains(&json!("http.status_code")));
    assert!(scope("intrinsic")
        .as_array()
        .unwrap()
        .contains(&json!("rootServiceName")));
    let only = get_json(&app, "/tempo/api/v2/search/tags?scope=resource").await;
    assert_eq!(only["scopes"].as_array().unwrap().len(), 1);
    let v1 = get_json(&app, "/tempo/api/search/tags").await;
    assert!(v1["tagNames"]
        .as_array()
        .unwrap()
        .contains(&json!("peer.service")));
    // q narrows tag names to spans matching the filter
    let q = form_urlencoded::byte_serialize(br#"{ resource.service.name = "frontend" }"#)
        .collect::<String>();
    let f = get_json(&app, &format!("/tempo/api/v2/search/tags?q={q}")).await;
    let span_tags = f["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "span")
        .unwrap()["tags"]
        .clone();
    assert!(
        !span_tags.as_array().unwrap().contains(&json!("ratio")),
        "{f}"
    );
    let vals = get_json(
        &app,
        "/tempo/api/v2/search/tag/resource.service.name/values",
    )
    .await;
    assert_eq!(
        vals["tagValues"],
        json!([{ "type": "string", "value": "cart" }, { "type": "string", "value": "frontend" }])
    );
    let vals = get_json(
        &app,
        "/tempo/api/v2/search/tag/span.http.status_code/values",
    )
    .await;
    assert_eq!(
        vals["tagValues"],
        json!([{ "type": "int", "value": "200" }, { "type": "int", "value": "500" }])
    );
    let vals = get_json(&app, "/tempo/api/v2/search/tag/status/values").await;
    assert_eq!(
        vals["tagValues"][1],
        json!({ "type": "keyword", "value": "ok" })
    );
    let vals = get_json(
        &app,
        &format!("/tempo/api/v2/search/tag/span.http.status_code/values?q={q}"),
    )
    .await;
    assert_eq!(
        vals["tagValues"],
        json!([{ "type": "int", "value": "200" }])
    );
    let vals = get_json(&app, "/tempo/api/v2/search/tag/name/values").await;
    assert_eq!(vals["tagValues"].as_array().unwrap().len(), 3);
    // a q still being typed falls back to all values
    let vals = get_json(
        &app,
        "/tempo/api/v2/search/tag/.service.name/values?q=%7B%20.x%20%3D%20%7D",
    )
    .await;
    assert_eq!(vals["tagValues"].as_array().unwrap().len(), 2);
    let vals = get_json(&app, "/tempo/api/search/tag/service.name/values").await;
    assert_eq!(vals["tagValues"], json!(["cart", "frontend"]));
}

#[tokio::test]
async fn tenants_are_isolated_and_bad_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (state, app) = app(dir.path());
    super::ingest(&state, "team-a", checkout_trace(0x11)).unwrap();
    let id = "11".repeat(16);
    let a = [("x-scope-orgid", "team-a")];
    let b = [("x-scope-orgid", "team-b")];
    assert_eq!(
        call(&app, &format!("/tempo/api/v2/traces/{id}"), &a)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, &format!("/tempo/api/v2/traces/{id}"), &b)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&app, &format!("/tempo/api/v2/traces/{id}"), &[])
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (_, body) = call(&app, "/tempo/api/search?q=%7B%7D", &b).await;
    assert_eq!(
        serde_json::from_slice::<Json>(&body).unwrap()["traces"],
        json!([])
    );
    assert_eq!(
        call(&app, "/tempo/api/search", &[("x-scope-orgid", "../x")])
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    // huge values and deep nesting refuse the request; wrong ids are partial rejections
    let mut huge = checkout_trace(0x12);
    huge[0].scope_spans[0].spans[0]
        .attributes
        .push(kv("big", s(&"x".repeat(1 << 20))));
    assert!(matches!(
        super::ingest(&state, "team-a", huge),
        Err(super::IngestError::InvalidArgument(_))
    ));
    let mut deep = checkout_trace(0x12);
    let mut v = AnyValue {
        value: Some(s("leaf")),
    };
    for _ in 0..64 {
        v = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![v] })),
        };
    }
    deep[0].scope_spans[0].spans[0].attributes.push(KeyValue {
        key: "deep".into(),
        value: Some(v),
    });
    assert!(matches!(
        super::ingest(&state, "team-a", deep),
        Err(super::IngestError::InvalidArgument(_))
    ));
    let mut wrong = checkout_trace(0x12);
    wrong[0].scope_spans[0].spans[0].trace_id = vec![1, 2, 3];
    let r = super::ingest(&state, "team-a", wrong).unwrap();
    assert_eq!((r.accepted, r.rejected), (2, 1));
    assert!(r.reason.contains("trace id"));
    assert_eq!(call(&app, "/tempo/api/echo", &a).await.0, StatusCode::OK);
}

#[tokio::test]
async fn span_metrics_and_service_graph_reach_the_metrics_store() {
    let dir = tempfile::tempdir().unwrap();
    let (state, app) = app(dir.path());
    super::ingest(&state, "default", checkout_trace(0x11)).unwrap();
    super::span_metrics::flush(&state, super::now_ms());
    let q = |expr: &str| {
        format!(
            "/prometheus/api/v1/query?query={}",
            form_urlencoded::byte_serialize(expr.as_bytes()).collect::<String>()
        )
    };
    let r = get_json(
        &app,
        &q(r#"traces_service_graph_request_total{client="frontend",server="cart"}"#),
    )
    .await;
    assert_eq!(r["data"]["result"][0]["value"][1], "1", "{r}");
    let r = get_json(
        &app,
        &q(r#"traces_service_graph_request_failed_total{client="frontend",server="cart"}"#),
    )
    .await;
    assert_eq!(r["data"]["result"][0]["value"][1], "1", "{r}");
    let r = get_json(
        &app,
        &q(r#"traces_service_graph_request_total{client="user",server="frontend"}"#),
    )
    .await;
    assert_eq!(r["data"]["result"][0]["value"][1], "1", "{r}");
    let r = get_json(
        &app,
        &q(r#"sum(traces_spanmetrics_calls_total{span_kind="SPAN_KIND_SERVER"})"#),
    )
    .await;
    assert_eq!(r["data"]["result"][0]["value"][1], "2", "{r}");
    let r = get_json(
        &app,
        &q(r#"traces_spanmetrics_latency_bucket{service="cart",le="0.256"}"#),
    )
    .await;
    assert_eq!(r["data"]["result"][0]["value"][1], "1", "{r}");
    let ex = get_json(&app, &format!("/prometheus/api/v1/query_exemplars?query=traces_service_graph_request_total&start={}&end={}", 0, 4_000_000_000u64)).await;
    let labels = &ex["data"][0]["exemplars"][0]["labels"];
    assert_eq!(labels["traceID"], "11".repeat(16), "{ex}");
}
