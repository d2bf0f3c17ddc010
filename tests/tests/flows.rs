//! Flow records over OTLP into a real `strata` process: every acknowledged record survives `kill -9`
//! mid-ingest (and none is stored twice), and the REST flow API answers from what was recovered.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use strata_api::flows::otlp::export_request;
use strata_store::flows::{now_ns, FlowRecord};
use strata_tests::{http, Strata};

const BIN: &str = env!("CARGO_BIN_EXE_strata-e2e");
const WRITERS: usize = 3;
const BATCH: u64 = 200;

/// Writer `w`'s batch starting at sequence number `from`; the sequence number is in `bytes_tx`.
fn batch(w: usize, from: u64) -> Vec<FlowRecord> {
    let now = now_ns();
    (0..BATCH)
        .map(|k| {
            let mut r = FlowRecord::default();
            r.src.namespace = "load".into();
            r.src.workload = format!("writer-{w}");
            r.dst.workload = format!("server-{}", k % 7);
            r.protocol = "tcp".into();
            r.bytes_tx = from + k;
            r.interval_end = now;
            r.interval_start = now - 1_000_000_000;
            r
        })
        .collect()
}

/// How many records of writer `w` with a sequence number up to `last` the server holds.
fn count(s: &Strata, w: usize, last: u64) -> u64 {
    let now_s = now_ns() / 1_000_000_000;
    let filter = format!(r#"src.workload="writer-{w}" and bytes_tx<={last}"#);
    let v: serde_json::Value = http()
        .get(s.url("/api/v1/flows/aggregate"))
        .query(&[
            ("query", filter.as_str()),
            ("agg", "count"),
            ("start", &(now_s - 3600).to_string()),
            ("end", &(now_s + 3600).to_string()),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    v["groups"][0]["values"]["count"].as_u64().unwrap_or(0)
}

#[test]
fn acknowledged_flows_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Strata::start(BIN, dir.path(), &[]);
    let url = s.otlp_url("/v1/logs");
    let stop = Arc::new(AtomicBool::new(false));
    // Per writer, the highest sequence number acknowledged.
    let acked: Arc<Mutex<Vec<Option<u64>>>> = Arc::new(Mutex::new(vec![None; WRITERS]));
    let sent = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (stop, acked, sent, url) = (stop.clone(), acked.clone(), sent.clone(), url.clone());
            std::thread::spawn(move || {
                let client = http();
                for round in 0..10_000u64 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let from = round * BATCH;
                    let body = export_request(&batch(w, from)).encode_to_vec();
                    match client
                        .post(&url)
                        .header("Content-Type", "application/x-protobuf")
                        .body(body)
                        .send()
                    {
                        Ok(r) if r.status() == 200 => {
                            acked.lock().unwrap()[w] = Some(from + BATCH - 1);
                            sent.fetch_add(BATCH, Ordering::Relaxed);
                        }
                        _ => break,
                    }
                }
            })
        })
        .collect();
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
    for (w, last) in acked.into_iter().enumerate() {
        let last = last.unwrap_or_else(|| panic!("writer {w} never got an acknowledgement"));
        // Everything acknowledged is there, exactly once.
        assert_eq!(count(&s, w, last), last + 1, "writer {w}");
    }
    // A search answers from the recovered data too.
    let v: serde_json::Value = http()
        .get(s.url("/api/v1/flows"))
        .query(&[("query", r#"src.workload="writer-0""#), ("limit", "5")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["flows"].as_array().unwrap().len(), 5, "{v}");
    // A clean shutdown after recovery loses nothing either.
    assert!(s.terminate().success());
}
