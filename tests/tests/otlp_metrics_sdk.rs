//! The OpenTelemetry Python SDK's metric exporters (gRPC and HTTP) as real OTLP senders: what they send
//! is queryable with PromQL under the names Prometheus's OTLP receiver would give it.

use std::process::Command;

use serde_json::Value;
use strata_tests::{http, otel_python, Strata};

const BIN: &str = env!("CARGO_BIN_EXE_strata-e2e");
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/otel/send_metrics.py");

fn query(s: &Strata, q: &str) -> Vec<Value> {
    let v: Value = http()
        .get(s.url("/prometheus/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["status"], "success", "{q}: {v}");
    v["data"]["result"].as_array().unwrap().clone()
}

fn value(s: &Strata, q: &str) -> f64 {
    let r = query(s, q);
    assert_eq!(r.len(), 1, "{q}: {r:?}");
    r[0]["value"][1].as_str().unwrap().parse().unwrap()
}

#[test]
fn sdk_metrics_arrive_over_grpc_and_http() {
    let Some(py) = otel_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(BIN, dir.path(), &[]);
    for (transport, endpoint, service) in [
        ("grpc", s.otlp_grpc_endpoint(), "cart-grpc"),
        (
            "http",
            format!("http://127.0.0.1:{}", s.otlp_http_port),
            "cart-http",
        ),
    ] {
        let out = Command::new(&py)
            .arg(SCRIPT)
            .args([transport, &endpoint, service])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{transport}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let job = format!("job=\"{service}\"");
        assert_eq!(
            value(
                &s,
                &format!("app_requests_total{{{job},http_route=\"/cart\"}}")
            ),
            5.0
        );
        assert_eq!(
            value(
                &s,
                &format!("app_requests_total{{{job},http_route=\"/pay\"}}")
            ),
            2.0
        );
        assert_eq!(value(&s, &format!("app_inflight{{{job}}}")), 2.0);
        assert_eq!(
            value(
                &s,
                &format!("app_temperature_celsius{{{job},room=\"lab\"}}")
            ),
            21.5
        );
        // Explicit buckets 0.1, 0.5, 1 over 0.05, 0.3, 0.3, 0.7, 2.0: cumulative 1, 3, 4, 5.
        for (le, count) in [("0.1", 1.0), ("0.5", 3.0), ("1", 4.0), ("+Inf", 5.0)] {
            assert_eq!(
                value(
                    &s,
                    &format!("rpc_duration_seconds_bucket{{{job},le=\"{le}\"}}")
                ),
                count,
                "le={le}"
            );
        }
        assert_eq!(
            value(&s, &format!("rpc_duration_seconds_count{{{job}}}")),
            5.0
        );
        assert!((value(&s, &format!("rpc_duration_seconds_sum{{{job}}}")) - 3.35).abs() < 1e-9);
        let q = format!("histogram_quantile(0.5, rpc_duration_seconds_bucket{{{job}}})");
        let median = value(&s, &q);
        assert!(median > 0.1 && median <= 0.5, "{median}");
        // Resource attributes other than the identity land on target_info.
        let info = query(&s, &format!("target_info{{{job}}}"));
        assert_eq!(info.len(), 1, "{info:?}");
        assert_eq!(info[0]["metric"]["instance"], "i-1");
        assert_eq!(info[0]["metric"]["telemetry_sdk_language"], "python");
    }
    // Metadata from the SDK's description and unit.
    let v: Value = http()
        .get(s.url("/prometheus/api/v1/metadata"))
        .query(&[("metric", "app_requests_total")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["data"]["app_requests_total"][0]["type"], "counter", "{v}");
    assert_eq!(
        v["data"]["app_requests_total"][0]["help"], "Requests served.",
        "{v}"
    );
}
