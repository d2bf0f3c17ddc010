//! The PromQL query API as Grafana calls it: the data source health check, a range query with aligned
//! start/end/step, errors in Prometheus's envelope, and the resolution limit.

use serde_json::json;
use strata_api::remote;
use strata_store::{Labels, Sample, SeriesWrite, WriteBatch};
use strata_tests::{http, Strata};

const BIN: &str = env!("CARGO_BIN_EXE_strata-e2e");

fn write_counters(s: &Strata) {
    // Two series of a counter at 15 s for 10 minutes from t = 1,700,000,000 s.
    let base = 1_700_000_000_000i64;
    let batch = WriteBatch {
        series: ["a", "b"]
            .iter()
            .enumerate()
            .map(|(i, job)| SeriesWrite {
                labels: Labels::from_pairs([("__name__", "http_requests_total"), ("job", job)]),
                samples: (0..40)
                    .map(|k| Sample::new(base + k * 15_000, (k * (i as i64 + 1) * 15) as f64))
                    .collect(),
                exemplars: vec![],
            })
            .collect(),
        metadata: vec![],
    };
    let r = http()
        .post(s.url("/prometheus/api/v1/write"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .body(remote::encode_write_v1(&batch).unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
}

#[test]
fn grafana_health_check_and_queries() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(BIN, dir.path(), &[]);
    let client = http();
    // Grafana's "Save & test": POST form, instant query 1+1 at time=4.
    let v: serde_json::Value = client
        .post(s.url("/prometheus/api/v1/query"))
        .form(&[("query", "1+1"), ("time", "4")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        v,
        json!({"status": "success", "data": {"resultType": "scalar", "result": [4, "2"]}})
    );

    write_counters(&s);
    // A panel query: rate over aligned start/end with a float step, POST form.
    let r = client
        .post(s.url("/prometheus/api/v1/query_range"))
        .form(&[
            ("query", "sum by (job) (rate(http_requests_total[1m]))"),
            ("start", "1700000060"),
            ("end", "1700000300"),
            ("step", "60"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["data"]["resultType"], "matrix");
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 2);
    assert_eq!(result[0]["metric"], json!({"job": "a"}));
    let values = result[0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 5);
    assert_eq!(values[0][0], json!(1_700_000_060));
    // Counter a grows 15 every 15 s: 1 per second; b twice that.
    let num = |v: &serde_json::Value| v.as_str().unwrap().parse::<f64>().unwrap();
    assert!((num(&values[0][1]) - 1.0).abs() < 1e-9, "{}", values[0][1]);
    assert!((num(&result[1]["values"][0][1]) - 2.0).abs() < 1e-9);

    // Instant vector at a time with data; GET.
    let v: serde_json::Value = client
        .get(s.url("/prometheus/api/v1/query"))
        .query(&[
            ("query", "http_requests_total{job=\"b\"}"),
            ("time", "1700000100.5"),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        v["data"]["result"][0]["value"],
        json!([1_700_000_100.5, "180"])
    );

    // Errors in Prometheus's envelope.
    let r = client
        .get(s.url("/prometheus/api/v1/query"))
        .query(&[("query", "sum(")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["status"], "error");
    assert_eq!(v["errorType"], "bad_data");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid parameter \"query\""),
        "{v}"
    );
    let r = client
        .get(s.url("/prometheus/api/v1/query_range"))
        .query(&[
            ("query", "up"),
            ("start", "0"),
            ("end", "100000"),
            ("step", "1"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("11,000 points"));
    let v: serde_json::Value = client
        .get(s.url("/prometheus/api/v1/format_query"))
        .query(&[("query", "sum by(job)(rate(x[5m]))")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["data"], "sum by (job) (rate(x[5m]))");
    // Build info says plain Prometheus (no `features`), so Grafana picks the Prometheus flavour.
    let v: serde_json::Value = client
        .get(s.url("/prometheus/api/v1/status/buildinfo"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(v["data"]["version"].as_str().unwrap().starts_with("3."));
    assert!(v["data"].get("features").is_none());
}
