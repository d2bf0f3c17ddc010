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
