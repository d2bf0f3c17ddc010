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

/// The editor's and autocomplete's requests exactly as Grafana sends them (methods, parameter forms),
/// answered with the exact bodies Prometheus gives for the same data.
#[test]
fn grafana_lookups_golden() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(BIN, dir.path(), &[]);
    write_counters(&s);
    // A histogram bucket series with one exemplar, as an instrumented service sends it.
    let batch = WriteBatch {
        series: vec![SeriesWrite {
            labels: Labels::from_pairs([
                ("__name__", "request_latency_seconds_bucket"),
                ("job", "a"),
                ("le", "0.5"),
            ]),
            samples: vec![Sample::new(1_700_000_030_000, 3.0)],
            exemplars: vec![strata_store::Exemplar {
                labels: Labels::from_pairs([("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")]),
                value: 0.31,
                t: 1_700_000_030_500,
            }],
        }],
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
    let client = http();
    let get = |path: &str, q: &[(&str, &str)]| -> serde_json::Value {
        let r = client.get(s.url(path)).query(q).send().unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.json().unwrap()
    };
    let ok = |data: serde_json::Value| json!({"status": "success", "data": data});
    // Integer seconds, as Grafana's metadata calls send them, and its 40,000 limit.
    let range = [("start", "1700000000"), ("end", "1700000600")];
    assert_eq!(
        get(
            "/prometheus/api/v1/label/__name__/values",
            &[range[0], range[1], ("limit", "40000")]
        ),
        ok(json!([
            "http_requests_total",
            "request_latency_seconds_bucket"
        ]))
    );
    assert_eq!(
        get(
            "/prometheus/api/v1/labels",
            &[range[0], range[1], ("limit", "40000")]
        ),
        ok(json!(["__name__", "job", "le"]))
    );
    assert_eq!(
        get(
            "/prometheus/api/v1/labels",
            &[("match[]", "http_requests_total"), range[0], range[1]]
        ),
        ok(json!(["__name__", "job"]))
    );
    assert_eq!(
        get(
            "/prometheus/api/v1/label/job/values",
            &[
                ("match[]", "{__name__=\"request_latency_seconds_bucket\"}"),
                range[0],
                range[1]
            ]
        ),
        ok(json!(["a"]))
    );
    // Series: POST form (Grafana's default method), the fallback client's default matcher.
    let v: serde_json::Value = client
        .post(s.url("/prometheus/api/v1/series"))
        .form(&[
            ("match[]", "{__name__!=\"\",job=\"b\"}"),
            range[0],
            range[1],
            ("limit", "40000"),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        v,
        ok(json!([{"__name__": "http_requests_total", "job": "b"}]))
    );
    // Exemplars as a panel asks for them (start/end aligned to the step), and the support probe with
    // milliseconds read as seconds (an empty answer, not an error).
    assert_eq!(
        get(
            "/prometheus/api/v1/query_exemplars",
            &[
                ("query", "request_latency_seconds_bucket"),
                ("start", "1700000000"),
                ("end", "1700000060")
            ]
        ),
        ok(json!([{
            "seriesLabels": {"__name__": "request_latency_seconds_bucket", "job": "a", "le": "0.5"},
            "exemplars": [{
                "labels": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"},
                "value": "0.31",
                "timestamp": 1_700_000_030.5
            }]
        }]))
    );
    assert_eq!(
        get(
            "/prometheus/api/v1/query_exemplars",
            &[
                ("query", "test"),
                ("start", "1700000000000"),
                ("end", "1700000600000")
            ]
        ),
        ok(json!([]))
    );
    // Recording-rule expansion: no rules, in Prometheus's shape.
    assert_eq!(
        get("/prometheus/api/v1/rules", &[]),
        ok(json!({"groups": []}))
    );
}
