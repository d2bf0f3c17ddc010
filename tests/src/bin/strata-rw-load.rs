//! `strata-rw-load`: replays a file of pre-encoded remote-write requests (from `strata-corpus
//! --requests`) against a remote-write URL, the same bytes for every receiver.
//!
//! N keep-alive connections; connection `c` sends the requests of the shards `s` with `s % N == c`
//! one after another in file order, so each series' samples arrive in time order as from a Prometheus
//! queue manager. 2xx counts as accepted; 4xx (except 429) as rejected, not retried; 5xx, 429 and
//! transport errors are retried with exponential backoff (30 ms doubling to 5 s, at most 10 tries) and
//! then counted as failed. Reports samples/s, request latency p50/p99/max and errors: a human summary on
//! stderr and one JSON object on stdout.
//!
//! Run:
//! ```text
//! cargo run --release -p strata-tests --bin strata-rw-load -- --file corpus.rw \
//!     --url http://127.0.0.1:8428/api/v1/write --connections 8 [--max-seconds 900] [--header K:V]
//! ```

use anyhow::{bail, Context, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str =
    "usage: strata-rw-load --file FILE --url URL [--connections 8] [--max-seconds 900] \
[--header NAME:VALUE]... [--limit-requests N]";

struct Record {
    shard: u32,
    samples: u32,
    body: &'static [u8],
}

#[derive(Default)]
struct Stats {
    requests_ok: u64,
    samples_ok: u64,
    requests_rejected: u64,
    samples_rejected: u64,
    requests_failed: u64,
    samples_failed: u64,
    retries: u64,
    bytes_sent: u64,
    latencies_us: Vec<u64>,
    status_counts: std::collections::BTreeMap<String, u64>,
    first_errors: Vec<String>,
}

fn load(path: &str, limit: usize) -> Result<(u32, Vec<Record>)> {
    let data: &'static [u8] = Box::leak(
        std::fs::read(path)
            .with_context(|| format!("reading {path}"))?
            .into_boxed_slice(),
    );
    if data.len() < 16 || &data[..8] != b"STRATARW" {
        bail!("{path}: not a strata-corpus request file");
    }
    let u32_at = |o: usize| u32::from_le_bytes(data[o..o + 4].try_into().expect("4 bytes"));
    if u32_at(8) != 1 {
        bail!("{path}: unsupported version {}", u32_at(8));
    }
    let shards = u32_at(12);
    let mut recs = Vec::new();
    let mut o = 16;
    while o < data.len() && recs.len() < limit {
        if o + 12 > data.len() {
            bail!("{path}: truncated record header at {o}");
        }
        let len = u32_at(o) as usize;
        let (shard, samples) = (u32_at(o + 4), u32_at(o + 8));
        o += 12;
        if o + len > data.len() {
            bail!("{path}: truncated record body at {o}");
        }
        recs.push(Record {
            shard,
            samples,
            body: &data[o..o + len],
        });
        o += len;
    }
    Ok((shards, recs))
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() -> Result<()> {
    let mut file = None;
    let mut url = None;
    let mut conns = 8usize;
    let mut max_seconds = 900u64;
    let mut limit = usize::MAX;
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            return Ok(());
        }
        let val = it
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--file" => file = Some(val),
            "--url" => url = Some(val),
            "--connections" => conns = val.parse().context("--connections")?,
            "--max-seconds" => max_seconds = val.parse().context("--max-seconds")?,
            "--limit-requests" => limit = val.parse().context("--limit-requests")?,
            "--header" => {
                let (k, v) = val.split_once(':').context("--header wants NAME:VALUE")?;
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
            _ => bail!("unknown flag {flag}\n{USAGE}"),
        }
    }
    let (file, url) = match (file, url) {
        (Some(f), Some(u)) => (f, u),
        _ => bail!("--file and --url are required\n{USAGE}"),
    };
    if !(url.starts_with("http://127.0.0.1:") || url.starts_with("http://localhost:")) {
        bail!("only http://127.0.0.1 / localhost receivers are allowed, got {url}");
    }
    let (shards, recs) = load(&file, limit)?;
    let conns = conns.clamp(1, shards.max(1) as usize);
    let total_samples: u64 = recs.iter().map(|r| r.samples as u64).sum();
    eprintln!(
        "{} requests, {} samples, {:.1} MB, {} shards → {} connections → {}",
        recs.len(),
        total_samples,
        recs.iter().map(|r| r.body.len()).sum::<usize>() as f64 / 1e6,
        shards,
        conns,
        url
    );
    let recs: &'static [Record] = Box::leak(recs.into_boxed_slice());
    let deadline = Instant::now() + Duration::from_secs(max_seconds);
    let timed_out = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut handles = Vec::new();
    for c in 0..conns {
        let url = url.clone();
        let headers = headers.clone();
        let timed_out = timed_out.clone();
        handles.push(std::thread::spawn(move || -> Result<Stats> {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(1)
                .tcp_nodelay(true)
                .build()?;
            let mut st = Stats::default();
            for r in recs.iter().filter(|r| r.shard as usize % conns == c) {
                if Instant::now() >= deadline {
                    timed_out.store(true, Ordering::Relaxed);
                    break;
                }
                let mut backoff = Duration::from_millis(30);
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let mut req = client
                        .post(&url)
                        .header("Content-Encoding", "snappy")
                        .header("Content-Type", "application/x-protobuf")
                        .header("User-Agent", "Prometheus/2.42.0")
                        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                        .body(r.body);
                    for (k, v) in &headers {
                        req = req.header(k.as_str(), v.as_str());
                    }
                    let t0 = Instant::now();
                    let res = req.send().map(|resp| {
                        let status = resp.status().as_u16();
                        let text = resp.text().unwrap_or_default();
                        (status, text)
                    });
                    st.latencies_us.push(t0.elapsed().as_micros() as u64);
                    st.bytes_sent += r.body.len() as u64;
                    let retry = match res {
                        Ok((s, _)) if (200..300).contains(&s) => {
                            st.requests_ok += 1;
                            st.samples_ok += r.samples as u64;
                            *st.status_counts.entry(s.to_string()).or_default() += 1;
                            break;
                        }
                        Ok((s, text)) => {
                            *st.status_counts.entry(s.to_string()).or_default() += 1;
                            if st.first_errors.len() < 5 {
                                st.first_errors.push(format!(
                                    "{s}: {}",
                                    text.chars().take(300).collect::<String>()
                                ));
                            }
                            if s == 429 || s >= 500 {
                                true
                            } else {
                                st.requests_rejected += 1;
                                st.samples_rejected += r.samples as u64;
                                break;
                            }
                        }
                        Err(e) => {
                            *st.status_counts.entry("transport".into()).or_default() += 1;
                            if st.first_errors.len() < 5 {
                                st.first_errors.push(format!("transport: {e}"));
                            }
                            true
                        }
                    };
                    if retry && attempt < 10 && Instant::now() + backoff < deadline {
                        st.retries += 1;
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    } else {
                        st.requests_failed += 1;
                        st.samples_failed += r.samples as u64;
                        break;
                    }
                }
            }
            Ok(st)
        }));
    }
    let mut all = Stats::default();
    for h in handles {
        let st = h
            .join()
            .map_err(|_| anyhow::anyhow!("sender thread panicked"))??;
        all.requests_ok += st.requests_ok;
        all.samples_ok += st.samples_ok;
        all.requests_rejected += st.requests_rejected;
        all.samples_rejected += st.samples_rejected;
        all.requests_failed += st.requests_failed;
        all.samples_failed += st.samples_failed;
        all.retries += st.retries;
        all.bytes_sent += st.bytes_sent;
        all.latencies_us.extend(st.latencies_us);
        for (k, v) in st.status_counts {
            *all.status_counts.entry(k).or_default() += v;
        }
        all.first_errors.extend(st.first_errors);
    }
    let secs = started.elapsed().as_secs_f64();
    all.latencies_us.sort_unstable();
    let report = serde_json::json!({
        "url": url,
        "connections": conns,
        "seconds": secs,
        "requests_ok": all.requests_ok,
        "samples_ok": all.samples_ok,
        "samples_per_second": all.samples_ok as f64 / secs,
        "requests_rejected": all.requests_rejected,
        "samples_rejected": all.samples_rejected,
        "requests_failed": all.requests_failed,
        "samples_failed": all.samples_failed,
        "retries": all.retries,
        "mb_sent": all.bytes_sent as f64 / 1e6,
        "latency_ms_p50": pct(&all.latencies_us, 0.50),
        "latency_ms_p99": pct(&all.latencies_us, 0.99),
        "latency_ms_max": pct(&all.latencies_us, 1.0),
        "status": all.status_counts,
        "timed_out": timed_out.load(Ordering::Relaxed),
        "first_errors": all.first_errors,
    });
    eprintln!(
        "{:.1}s: {} samples ok ({:.0}/s), {} rejected, {} failed, {} retries; latency p50 {:.2} ms, p99 {:.2} ms",
        secs,
        all.samples_ok,
        all.samples_ok as f64 / secs,
        all.samples_rejected,
        all.samples_failed,
        all.retries,
        pct(&all.latencies_us, 0.50),
        pct(&all.latencies_us, 0.99)
    );
    println!("{report}");
    Ok(())
}
