//! Remote write into a real `strata` process: acknowledged samples survive `kill -9`, bad input gets the
//! right 4xx with a reason while the server keeps serving, tenants stay apart, and the series, labels and
//! remote-read APIs return what was written.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_api::remote;
use strata_store::{Labels, Sample, SeriesWrite, WriteBatch};
use strata_tests::{http, Strata};

const BIN: &str = env!("CARGO_BIN_EXE_strata-e2e");

fn batch(instance: usize, from: i64, n: i64) -> WriteBatch {
    WriteBatch {
        series: (0..20)
            .map(|i| SeriesWrite {
                labels: Labels::from_pairs([
                    ("__name__", format!("load_metric_{}", i % 4)),
                    ("instance", format!("host-{instance}")),
                    ("idx", i.to_string()),
                ]),
                samples: (0..n)
                    .map(|k| Sample::new(from + k * 1000, (from / 1000 + k) as f64 * 1.5))
                    .collect(),
                exemplars: vec![],
            })
            .collect(),
        metadata: vec![],
    }
}

fn post_write(
    client: &reqwest::blocking::Client,
    url: &str,
    body: Vec<u8>,
    tenant: Option<&str>,
) -> reqwest::blocking::Response {
    let mut req = client
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body);
    if let Some(t) = tenant {
        req = req.header("X-Scope-OrgID", t);
    }
    req.send().expect("send")
}

/// Posts a body the server refuses before reading it all. The server answers 413 and closes the
/// connection; a client still writing then sees a broken pipe instead of the answer (HTTP/1.1 has no
/// way around that race without `100-continue`), so a few fresh connections are tried.
fn post_refused_early(url: &str, body: Vec<u8>) -> reqwest::blocking::Response {
    let mut last = None;
    for _ in 0..5 {
        let sent = http()
            .post(url)
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body.clone())
            .send();
        match sent {
            Ok(r) => return r,
            Err(e) => last = Some(e),
        }
    }
    panic!("no answer in 5 tries: {last:?}");
}

fn series_count(
    client: &reqwest::blocking::Client,
    s: &Strata,
    matcher: &str,
    tenant: Option<&str>,
) -> usize {
    let mut req = client
        .get(s.url("/prometheus/api/v1/series"))
        .query(&[("match[]", matcher)]);
    if let Some(t) = tenant {
        req = req.header("X-Scope-OrgID", t);
    }
    let v: serde_json::Value = req.send().unwrap().json().unwrap();
    assert_eq!(v["status"], "success", "{v}");
    v["data"].as_array().unwrap().len()
}

/// Samples of all series matching `name=~"load_metric_.*"` via remote read (SAMPLES).
fn read_all(client: &reqwest::blocking::Client, s: &Strata) -> Vec<(String, Vec<(i64, f64)>)> {
    let req = remote::prompb::ReadRequest {
        queries: vec![remote::prompb::Query {
            start_timestamp_ms: 0,
            end_timestamp_ms: i64::MAX / 4,
            matchers: vec![remote::prompb::LabelMatcher {
                r#type: remote::prompb::matcher_type::RE,
                name: "__name__".into(),
                value: "load_metric_.*".into(),
            }],
            hints: None,
        }],
        accepted_response_types: vec![],
    };
    let body = remote::encode_read_request(&req).unwrap();
    let resp = client
        .post(s.url("/prometheus/api/v1/read"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let decoded =
        remote::decode_read_response(&resp.bytes().unwrap(), &remote::DecodeLimits::default())
            .unwrap();
    decoded.results[0]
        .timeseries
        .iter()
        .map(|ts| {
            let name = ts
                .labels
                .iter()
                .map(|l| format!("{}={}", l.name, l.value))
                .collect::<Vec<_>>()
                .join(",");
            (
                name,
                ts.samples.iter().map(|x| (x.timestamp, x.value)).collect(),
            )
        })
        .collect()
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Strata::start(BIN, dir.path(), &[]);
    let url = s.url("/prometheus/api/v1/write");
    // Four writers stream batches; each records the highest timestamp acknowledged per instance.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<i64>>> = Arc::new(Mutex::new(vec![-1; 4]));
    let sent = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (stop, acked, sent, url) = (stop.clone(), acked.clone(), sent.clone(), url.clone());
            std::thread::spawn(move || {
                let client = http();
                for round in 0..100_000i64 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let from = round * 10_000;
                    let body = remote::encode_write_v1(&batch(w, from, 10)).unwrap();
                    match client
                        .post(&url)
                        .header("Content-Type", "application/x-protobuf")
                        .header("Content-Encoding", "snappy")
                        .body(body)
                        .send()
                    {
                        Ok(r) if r.status() == 204 => {
                            acked.lock().unwrap()[w] = from + 9_000;
                            sent.fetch_add(200, Ordering::Relaxed);
                        }
                        _ => break,
                    }
                }
            })
        })
        .collect();
    // Let the load run, then kill the server in the middle of it.
    strata_tests::wait_for(Duration::from_secs(60), || {
        (sent.load(Ordering::Relaxed) > 20_000).then_some(())
    })
    .expect("writers made no progress");
    s.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    s.restart();
    let data = read_all(&http(), &s);
    for (w, &last) in acked.iter().enumerate() {
        assert!(last > 0, "writer {w} never got an acknowledgement");
        let expected_per_series = (last / 1000 + 1) as usize;
        let inst = format!("instance=host-{w}");
        let series: Vec<_> = data.iter().filter(|(n, _)| n.contains(&inst)).collect();
        assert_eq!(series.len(), 20, "instance {w}: series lost");
        for (name, samples) in series {
            // Everything acknowledged is there; unacknowledged tail samples may be there too.
            assert!(
                samples.len() >= expected_per_series,
                "{name}: {} samples, {expected_per_series} acknowledged",
                samples.len()
            );
            for (i, (t, v)) in samples.iter().take(expected_per_series).enumerate() {
                assert_eq!(*t, i as i64 * 1000, "{name}");
                assert_eq!(*v, (i as f64) * 1.5, "{name}");
            }
        }
    }
}

#[test]
fn bad_input_gets_4xx_with_a_reason_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(BIN, dir.path(), &[]);
    let client = http();
    let url = s.url("/prometheus/api/v1/write");
    let good = remote::encode_write_v1(&batch(0, 0, 5)).unwrap();
    assert_eq!(post_write(&client, &url, good.clone(), None).status(), 204);

    let raw = |ts: Vec<remote::prompb::TimeSeries>| {
        use prost::Message;
        let bytes = remote::prompb::WriteRequest {
            timeseries: ts,
            metadata: vec![],
        }
        .encode_to_vec();
        snap::raw::Encoder::new().compress_vec(&bytes).unwrap()
    };
    let series = |labels: &[(&str, &str)]| remote::prompb::TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| remote::prompb::Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: vec![remote::prompb::Sample {
            value: 1.0,
            timestamp: 1,
        }],
        ..Default::default()
    };
    let huge = "x".repeat(10 << 20);
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "truncated snappy",
            good[..good.len() / 2].to_vec(),
            400,
            "snappy",
        ),
        (
            "garbage protobuf",
            snap::raw::Encoder::new().compress_vec(&[0xff; 64]).unwrap(),
            400,
            "protobuf",
        ),
        (
            "empty label name",
            raw(vec![series(&[("", "v"), ("__name__", "m")])]),
            400,
            "label",
        ),
        (
            "10 MB label value",
            raw(vec![series(&[("__name__", "m"), ("big", &huge)])]),
            400,
            "limit",
        ),
        (
            "unsorted labels",
            raw(vec![series(&[("job", "a"), ("__name__", "m")])]),
            400,
            "sorted",
        ),
        ("body over the limit", vec![0u8; 17 << 20], 413, ""),
    ];
    for (what, body, status, needle) in cases {
        let r = if status == 413 {
            post_refused_early(&url, body)
        } else {
            post_write(&client, &url, body, None)
        };
        let code = r.status().as_u16();
        let text = r.text().unwrap_or_default();
        assert_eq!(code, status, "{what}: {text}");
        assert!(
            text.to_lowercase().contains(needle),
            "{what}: reason {text:?} should mention {needle:?}"
        );
        // A fresh connection: after a 413 the server may close the one the oversized body was on.
        assert!(
            http()
                .get(s.url("/-/healthy"))
                .send()
                .unwrap()
                .status()
                .is_success(),
            "server died after {what}"
        );
    }
    // Re-sending: each series's newest sample is an exact duplicate (accepted), the 4 older ones are
    // out of order: 400 naming the reason; the server still serves the earlier data.
    let r = post_write(&client, &url, good, None);
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("out of order"));
    assert_eq!(
        series_count(&client, &s, "{__name__=~\"load_metric_.*\"}", None),
        20
    );
    // Nothing from the refused requests was stored.
    assert_eq!(series_count(&client, &s, "{__name__=\"m\"}", None), 0);
    let metrics = client
        .get(s.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("strata_samples_rejected_total{reason=\"out_of_order\"} 80"),
        "{metrics}"
    );
}

#[test]
fn remote_write_2_0_reports_what_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(BIN, dir.path(), &[]);
    let client = http();
    let r = client
        .post(s.url("/prometheus/api/v1/write"))
        .header("Content-Type", remote::CONTENT_TYPE_V2)
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "2.0.0")
        .body(remote::encode_write_v2(&batch(7, 0, 4)).unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["x-prometheus-remote-write-samples-written"],
        "80"
    );
    assert_eq!(
        r.headers()["x-prometheus-remote-write-exemplars-written"],
        "0"
    );
    assert_eq!(series_count(&client, &s, "{instance=\"host-7\"}", None), 20);
    let r = client
        .post(s.url("/prometheus/api/v1/write"))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status(), 415);
}

#[test]
fn tenants_are_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(BIN, dir.path(), &[]);
    let client = http();
    let url = s.url("/prometheus/api/v1/write");
    assert_eq!(
        post_write(
            &client,
            &url,
            remote::encode_write_v1(&batch(1, 0, 3)).unwrap(),
            Some("team-a")
        )
        .status(),
        204
    );
    assert_eq!(
        series_count(&client, &s, "{instance=\"host-1\"}", Some("team-a")),
        20
    );
    assert_eq!(
        series_count(&client, &s, "{instance=\"host-1\"}", Some("team-b")),
        0
    );
    assert_eq!(series_count(&client, &s, "{instance=\"host-1\"}", None), 0);
    let r = post_write(
        &client,
        &url,
        remote::encode_write_v1(&batch(1, 0, 3)).unwrap(),
        Some("../etc"),
    );
    assert_eq!(r.status(), 400);
}

#[test]
fn series_labels_and_values_after_flush_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Strata::start(BIN, dir.path(), &[]);
    let client = http();
    let url = s.url("/prometheus/api/v1/write");
    for round in 0..3 {
        let b = batch(round, 0, 30);
        assert_eq!(
            post_write(&client, &url, remote::encode_write_v1(&b).unwrap(), None).status(),
            204
        );
    }
    let flushed: serde_json::Value = client
        .post(s.url("/prometheus/api/v1/admin/tsdb/flush"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(flushed["status"], "success");
    assert!(flushed["data"]["blocks"].as_u64().unwrap() >= 1);
    assert_eq!(s.terminate().code(), Some(0));
    s.restart();
    assert_eq!(
        series_count(&client, &s, "{__name__=\"load_metric_1\"}", None),
        15
    );
    let v: serde_json::Value = client
        .post(s.url("/prometheus/api/v1/labels"))
        .form(&[
            ("match[]", "{instance=\"host-2\"}"),
            ("start", "0"),
            ("end", "100"),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        v["data"],
        serde_json::json!(["__name__", "idx", "instance"])
    );
    let v: serde_json::Value = client
        .get(s.url("/prometheus/api/v1/label/instance/values"))
        .query(&[("match[]", "load_metric_0"), ("limit", "2")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["data"], serde_json::json!(["host-0", "host-1"]));
    assert_eq!(v["warnings"][0], "results truncated due to limit");
    let metrics = client
        .get(s.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("strata_block_series{tenant=\"default\"} 60"),
        "{metrics}"
    );
    let data = read_all(&client, &s);
    assert_eq!(data.len(), 60);
    assert!(data.iter().all(|(_, samples)| samples.len() == 30));
    // Outside the written range: nothing.
    let v: serde_json::Value = client
        .get(s.url("/prometheus/api/v1/series"))
        .query(&[
            ("match[]", "load_metric_0"),
            ("start", "1000"),
            ("end", "2000"),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 0);
    // A selector that matches everything is refused, as Prometheus does.
    let r = client
        .get(s.url("/prometheus/api/v1/series"))
        .query(&[("match[]", "{job=~\".*\"}")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
}
