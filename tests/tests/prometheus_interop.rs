//! Interop with the real thing: Prometheus 2.42 (Debian) scrapes `prometheus-node-exporter` and
//! remote-writes to Strata; then Strata's series API and remote read answer exactly what Prometheus's own
//! API answers for the same range, and `promtool query series/labels` works against Strata.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strata_api::remote::{self, prompb};
use strata_tests::{free_port, http, require_tool, wait_for, Peer, Strata};

const BIN: &str = env!("CARGO_BIN_EXE_strata-e2e");

type SeriesMap = BTreeMap<Vec<(String, String)>, Vec<(i64, u64)>>;

fn remote_read(client: &reqwest::blocking::Client, url: &str, start: i64, end: i64) -> SeriesMap {
    let req = prompb::ReadRequest {
        queries: vec![prompb::Query {
            start_timestamp_ms: start,
            end_timestamp_ms: end,
            matchers: vec![prompb::LabelMatcher {
                r#type: prompb::matcher_type::EQ,
                name: "job".into(),
                value: "node".into(),
            }],
            hints: None,
        }],
        accepted_response_types: vec![],
    };
    let resp = client
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Read-Version", "0.1.0")
        .body(remote::encode_read_request(&req).unwrap())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "remote read at {url}");
    let decoded =
        remote::decode_read_response(&resp.bytes().unwrap(), &remote::DecodeLimits::default())
            .unwrap();
    decoded.results[0]
        .timeseries
        .iter()
        .map(|ts| {
            (
                ts.labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect(),
                ts.samples
                    .iter()
                    .map(|s| (s.timestamp, s.value.to_bits()))
                    .collect(),
            )
        })
        .collect()
}

fn series_api(
    client: &reqwest::blocking::Client,
    base: &str,
    start: i64,
    end: i64,
) -> Vec<serde_json::Value> {
    let v: serde_json::Value = client
        .get(format!("{base}/api/v1/series"))
        .query(&[
            ("match[]", "{job=\"node\"}"),
            ("start", &format!("{:.3}", start as f64 / 1000.0)),
            ("end", &format!("{:.3}", end as f64 / 1000.0)),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["status"], "success", "{v}");
    let mut out = v["data"].as_array().unwrap().clone();
    out.sort_by_key(|x| x.to_string());
    out
}

#[test]
fn prometheus_remote_write_of_node_exporter_reads_back_identically() {
    let why = "Prometheus 2.42 interop (apt-get install prometheus prometheus-node-exporter)";
    let (Some(prom), Some(node_exporter), Some(promtool)) = (
        require_tool("prometheus", why),
        require_tool("prometheus-node-exporter", why),
        require_tool("promtool", why),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let strata = Strata::start(BIN, &dir.path().join("strata"), &[]);
    let ne_port = free_port();
    let _ne = Peer(
        Command::new(node_exporter)
            .arg(format!("--web.listen-address=127.0.0.1:{ne_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let prom_port = free_port();
    let config = format!(
        "global:\n  scrape_interval: 2s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{ne_port}']\nremote_write:\n  - url: {}\n    queue_config:\n      batch_send_deadline: 1s\n      max_samples_per_send: 1000\n",
        strata.url("/prometheus/api/v1/write")
    );
    let cfg_path = dir.path().join("prometheus.yml");
    std::fs::write(&cfg_path, config).unwrap();
    let _prom = Peer(
        Command::new(prom)
            .arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("prom").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = http();
    let prom_base = format!("http://127.0.0.1:{prom_port}");
    wait_for(Duration::from_secs(60), || {
        client
            .get(format!("{prom_base}/-/ready"))
            .send()
            .ok()
            .filter(|r| r.status().is_success())
    })
    .expect("prometheus did not start");
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Let it scrape several times, then compare a closed window both sides have fully seen.
    std::thread::sleep(Duration::from_secs(14));
    let end = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 2_000;
    let strata_base = strata.url("/prometheus");
    let matched = wait_for(Duration::from_secs(60), || {
        let ours = remote_read(&client, &format!("{strata_base}/api/v1/read"), start, end);
        let theirs = remote_read(&client, &format!("{prom_base}/api/v1/read"), start, end);
        (!theirs.is_empty() && ours == theirs).then_some((ours, theirs))
    });
    let ours = remote_read(&client, &format!("{strata_base}/api/v1/read"), start, end);
    let theirs = remote_read(&client, &format!("{prom_base}/api/v1/read"), start, end);
    let (ours, _) = matched.unwrap_or_else(|| {
        let missing: Vec<_> = theirs.keys().filter(|k| !ours.contains_key(*k)).take(5).collect();
        let differing: Vec<_> = theirs.iter().filter(|(k, v)| ours.get(*k).is_some_and(|o| o != *v)).map(|(k, _)| k).take(5).collect();
        panic!(
            "Strata ({} series) and Prometheus ({} series) disagree; missing {missing:?}, differing {differing:?}",
            ours.len(),
            theirs.len()
        )
    });
    assert!(
        ours.len() >= 100,
        "node_exporter gave only {} series",
        ours.len()
    );
    let samples: usize = ours.values().map(Vec::len).sum();
    assert!(samples >= ours.len() * 3, "too few samples: {samples}");
    assert_eq!(
        series_api(&client, &strata_base, start, end),
        series_api(&client, &prom_base, start, end)
    );

    // promtool, pointed at Strata.
    let out = Command::new(&promtool)
        .args([
            "query",
            "series",
            &strata_base,
            "--match",
            "up{job=\"node\"}",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool query series: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("__name__=\"up\"") && text.contains("job=\"node\""),
        "promtool said: {text}"
    );
    let out = Command::new(&promtool)
        .args(["query", "labels", &strata_base, "job"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool query labels: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "node");
}
