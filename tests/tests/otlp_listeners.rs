//! The OTLP listeners of a running `strata`: gRPC and HTTP both answer, refuse what they must with the
//! protocol's own error shapes, and keep serving afterwards.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use strata_tests::{http, Strata};

const BIN: &str = env!("CARGO_BIN_EXE_strata-e2e");

#[test]
fn grpc_and_http_listeners_answer_with_protocol_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(BIN, dir.path(), &[]);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = TraceServiceClient::connect(s.otlp_grpc_endpoint())
            .await
            .expect("gRPC listener accepts connections");
        let mut req = tonic::Request::new(ExportTraceServiceRequest::default());
        req.metadata_mut()
            .insert("x-scope-orgid", "no/slashes".parse().unwrap());
        let status = client.export(req).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("tenant"), "{status:?}");
    });

    let c = http();
    let r = c
        .post(s.otlp_url("/v1/logs"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["code"], 3, "{v}");
    let r = c
        .post(s.otlp_url("/v1/traces"))
        .header("content-type", "text/csv")
        .body("a,b")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    // The main listener still serves.
    let r = c.get(s.url("/-/ready")).send().unwrap();
    assert!(r.status().is_success());
}

/// OTLP metrics over gRPC and over HTTP/JSON (on the Prometheus path) are queryable with PromQL under
/// their Prometheus names.
#[test]
fn otlp_metrics_are_queryable_with_promql() {
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::metrics::v1::{
        metric::Data, number_data_point, AggregationTemporality, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, Sum,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;

    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(BIN, dir.path(), &[]);
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
    };
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "checkout")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "http.server.requests".into(),
                    unit: "{request}".into(),
                    data: Some(Data::Sum(Sum {
                        data_points: vec![NumberDataPoint {
                            attributes: vec![kv("http.route", "/cart")],
                            time_unix_nano: (now_s - 10) * 1_000_000_000,
                            value: Some(number_data_point::Value::AsInt(42)),
                            ..Default::default()
                        }],
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let resp = rt.block_on(async {
        // zstd, as the agent can be set to send and OTel Collectors do (gzip is the default)
        let mut client = MetricsServiceClient::connect(s.otlp_grpc_endpoint())
            .await
            .unwrap()
            .send_compressed(tonic::codec::CompressionEncoding::Zstd);
        client.export(req).await.unwrap().into_inner()
    });
    assert!(resp.partial_success.is_none(), "{resp:?}");

    // OTLP/JSON as a collector's otlphttp exporter would send it, int64 as a string.
    let json = format!(
        r#"{{"resourceMetrics":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"cart"}}}}]}},
        "scopeMetrics":[{{"metrics":[{{"name":"queue.depth","gauge":{{"dataPoints":[
        {{"timeUnixNano":"{}","asInt":"7"}}]}}}}]}}]}}]}}"#,
        (now_s - 5) * 1_000_000_000
    );
    let c = http();
    let r = c
        .post(s.url("/prometheus/api/v1/otlp/v1/metrics"))
        .header("content-type", "application/json")
        .body(json)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());

    let query = |q: &str| -> serde_json::Value {
        c.get(s.url("/prometheus/api/v1/query"))
            .query(&[("query", q)])
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let v = query("http_server_requests_total");
    assert_eq!(
        v["data"]["result"][0]["metric"],
        serde_json::json!({"__name__": "http_server_requests_total", "http_route": "/cart", "job": "checkout"}),
        "{v}"
    );
    assert_eq!(v["data"]["result"][0]["value"][1], "42", "{v}");
    let v = query("queue_depth{job=\"cart\"}");
    assert_eq!(v["data"]["result"][0]["value"][1], "7", "{v}");
}
