//! `strata-flow-bench`: a generator of realistic flow records and the flow store benchmark.
//!
//! The generated cluster: 30 namespaces, 400 workloads (Deployments, StatefulSets, DaemonSets, Jobs)
//! with 1–8 pods each on 20 nodes, a service graph where each workload calls 1–6 others, 200 external
//! DNS names, and DNS lookups to CoreDNS. Sources are Zipf-skewed (s = 1.1), so a few workloads make
//! most of the traffic; bytes are log-uniform over six decades; 2 % of flows retransmit, 1 % fail to
//! connect, 2 % of HTTP responses are 5xx, 5 % of lookups are NXDOMAIN. Record `i` is a pure function
//! of `i` and the seed, so every subcommand sees the same records.
//!
//! ```text
//! strata-flow-bench ingest --url http://127.0.0.1:4318/v1/logs --records N [--senders 2] [--batch 2000]
//!     [--encode-first]                                  # every request body encoded before the
//!                                                       # clock starts: the senders only send
//! strata-flow-bench direct --dir DIR --records N          # into a FlowStore in-process, no OTLP,
//!     [--writer-threads T] [--writer-heap-mib M]        # then merges the partitions as the server
//!     [--zstd-level L]
//!                                                       # would; options: the `[flows]` settings
//! strata-flow-bench ndjson --records N                    # the same records as NDJSON on stdout
//! strata-flow-bench query  --url http://127.0.0.1:9080 [--runs 50]
//! strata-flow-bench decode --records N [--batch 5000] [--rounds 3]   # the OTLP decode alone
//! ```
//! Common options: `--t0 UNIX_SECONDS` (start of the data, default: now − span) and `--span-secs S`
//! (default 21600: six hourly partitions). Results are one JSON object on stdout (except `ndjson`).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use prost::Message;
use serde_json::json;
use strata_api::flows::json::record_json;
use strata_api::flows::otlp::export_request;
use strata_store::flows::{now_ns, FlowConfig, FlowRecord, FlowStore};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NS: i64 = 1_000_000_000;

/// splitmix64: a small, fast, deterministic generator.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

struct Workload {
    namespace: String,
    name: String,
    kind: &'static str,
    pods: Vec<(String, String, IpAddr)>,
    port: u64,
    calls: Vec<usize>,
    external: Vec<usize>,
}

struct Cluster {
    workloads: Vec<Workload>,
    /// Cumulative Zipf weights over workloads, for picking a source.
    zipf: Vec<f64>,
    external: Vec<(String, IpAddr)>,
    coredns: usize,
}

const NAMESPACES: usize = 30;
const WORKLOADS: usize = 400;
const NODES: u64 = 20;
const EXTERNAL: usize = 200;

impl Cluster {
    fn new(seed: u64) -> Cluster {
        let mut rng = Rng::new(seed);
        let kinds = ["Deployment", "StatefulSet", "DaemonSet", "Job"];
        let mut workloads: Vec<Workload> = (0..WORKLOADS)
            .map(|w| {
                let kind = match rng.below(100) {
                    0..=69 => kinds[0],
                    70..=84 => kinds[1],
                    85..=94 => kinds[2],
                    _ => kinds[3],
                };
                let name = format!(
                    "svc-{w:03}-{}",
                    ["api", "worker", "db", "cache", "web"][w % 5]
                );
                let pods = (0..1 + rng.below(8))
                    .map(|p| {
                        (
                            format!("{name}-{:05x}-{p}", rng.below(1 << 20)),
                            format!("node-{:02}", rng.below(NODES)),
                            IpAddr::from([10, (w / 200) as u8 + 1, (w % 200) as u8, p as u8 + 10]),
                        )
                    })
                    .collect();
                Workload {
                    namespace: format!("team-{:02}", w % NAMESPACES),
                    name,
                    kind,
                    pods,
                    port: *rng.pick(&[8080, 8080, 8080, 443, 5432, 6379, 9092]),
                    calls: Vec::new(),
                    external: Vec::new(),
                }
            })
            .collect();
        for w in workloads.iter_mut() {
            let n = 1 + rng.below(6) as usize;
            w.calls = (0..n)
                .map(|_| rng.below(WORKLOADS as u64) as usize)
                .collect();
            if rng.chance(300) {
                w.external = (0..1 + rng.below(3))
                    .map(|_| rng.below(EXTERNAL as u64) as usize)
                    .collect();
            }
        }
        let coredns = 0;
        workloads[coredns].namespace = "kube-system".into();
        workloads[coredns].name = "coredns".into();
        workloads[coredns].port = 53;
        let providers = [
            "api.twilio.com",
            "api.stripe.com",
            "s3.amazonaws.com",
            "sqs.amazonaws.com",
            "storage.googleapis.com",
            "api.github.com",
            "hooks.slack.com",
            "api.sendgrid.com",
        ];
        let external = (0..EXTERNAL)
            .map(|e| {
                let name = if e < providers.len() {
                    providers[e].to_owned()
                } else {
                    format!("api{}.partner-{}.example.com", e % 7, e)
                };
                (
                    name,
                    IpAddr::from([203, 0, (e / 250) as u8 + 113, (e % 250) as u8 + 1]),
                )
            })
            .collect();
        let mut zipf = Vec::with_capacity(WORKLOADS);
        let mut acc = 0.0;
        for rank in 1..=WORKLOADS {
            acc += 1.0 / (rank as f64).powf(1.1);
            zipf.push(acc);
        }
        Cluster {
            workloads,
            zipf,
            external,
            coredns,
        }
    }

    fn source(&self, rng: &mut Rng) -> usize {
        let total = *self.zipf.last().expect("workloads");
        let x = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * total;
        self.zipf.partition_point(|&c| c < x).min(WORKLOADS - 1)
    }

    /// Record `i` of `n` spread evenly over `[t0, t0 + span)`.
    fn record(&self, i: u64, n: u64, t0_ns: i64, span_ns: i64) -> FlowRecord {
        let mut rng = Rng::new(i.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5bd1_e995);
        let mut r = FlowRecord::default();
        let s = &self.workloads[self.source(&mut rng)];
        let (pod, node, ip) = rng.pick(&s.pods).clone();
        r.src.namespace = s.namespace.clone();
        r.src.workload = s.name.clone();
        r.src.workload_kind = s.kind.into();
        r.src.pod = pod;
        r.src.node = node.clone();
        r.src.ip = Some(ip);
        r.src.port = 32768 + rng.below(28000);
        r.observer_node = node;
        r.ip_family = "ipv4".into();
        let end = t0_ns + (i as i128 * span_ns as i128 / n.max(1) as i128) as i64;
        r.interval_end = end;
        r.interval_start = end - 10 * NS;
        let what = rng.below(100);
        if what < 10 {
            // A DNS lookup.
            let d = &self.workloads[self.coredns];
            r.dst.namespace = d.namespace.clone();
            r.dst.workload = d.name.clone();
            r.dst.workload_kind = d.kind.into();
            r.dst.ip = Some(IpAddr::from([10, 96, 0, 10]));
            r.dst.port = 53;
            r.protocol = "udp".into();
            let target = rng.pick(&self.external).0.clone();
            r.dns.query = target;
            r.dns.qtype = if rng.chance(800) { "A" } else { "AAAA" }.into();
            if rng.chance(50) {
                r.dns.rcode = "NXDOMAIN".into();
            } else {
                r.dns.rcode = "NOERROR".into();
                r.dns.answers = vec![format!("203.0.113.{}", 1 + rng.below(250))];
            }
            r.dns.latency_us = 200 + rng.below(3000);
            r.bytes_tx = 40 + rng.below(40);
            r.bytes_rx = 80 + rng.below(200);
            r.packets_tx = 1;
            r.packets_rx = 1;
            return r;
        }
        r.protocol = "tcp".into();
        if what < 25 && !s.external.is_empty() {
            let (name, eip) = &self.external[*rng.pick(&s.external)];
            r.dst.name = name.clone();
            r.dst.ip = Some(*eip);
            r.dst.port = 443;
        } else {
            let d = &self.workloads[*rng.pick(&s.calls)];
            let (dpod, dnode, dip) = rng.pick(&d.pods).clone();
            r.dst.namespace = d.namespace.clone();
            r.dst.workload = d.name.clone();
            r.dst.workload_kind = d.kind.into();
            r.dst.pod = dpod;
            r.dst.node = dnode;
            r.dst.ip = Some(dip);
            r.dst.port = d.port;
            if d.port == 8080 && rng.chance(600) {
                let requests = 1 + rng.below(50);
                let errors = if rng.chance(20) {
                    1 + rng.below(requests)
                } else {
                    0
                };
                r.http.requests = requests;
                r.http.responses_2xx = requests - errors;
                r.http.responses_5xx = errors;
                r.http.status = [(200, requests - errors), (503, errors)]
                    .into_iter()
                    .filter(|&(_, n)| n > 0)
                    .collect();
                r.http.methods = if rng.chance(700) {
                    vec!["GET".into()]
                } else {
                    vec!["GET".into(), "POST".into()]
                };
                r.http.latency_max_us = 500 + rng.below(200_000);
                r.http.latency_sum_us = r.http.latency_max_us * requests / 2;
                if rng.chance(100) {
                    r.http.trace_ids = vec![format!("{:016x}{:016x}", rng.next(), rng.next())];
                }
            }
        }
        // Log-uniform over six decades.
        let bytes = |rng: &mut Rng| 10f64.powf(1.0 + (rng.below(6000) as f64) / 1000.0) as u64;
        r.bytes_tx = bytes(&mut rng);
        r.bytes_rx = bytes(&mut rng);
        r.packets_tx = r.bytes_tx / 1400 + 1;
        r.packets_rx = r.bytes_rx / 1400 + 1;
        r.tcp.flags = 0x18;
        r.tcp.srtt_us = 50 + rng.below(5000);
        r.tcp.srtt_min_us = r.tcp.srtt_us / 2 + 1;
        if rng.chance(20) {
            r.tcp.retransmits = 1 + rng.below(10);
        }
        if rng.chance(100) {
            r.tcp.flags |= 0x02;
            r.tcp.connect = if rng.chance(10) {
                (*rng.pick(&["refused", "timeout", "reset"])).into()
            } else {
                "ok".into()
            };
        }
        r
    }
}

struct Opts {
    args: Vec<String>,
}

impl Opts {
    fn get(&self, name: &str) -> Option<&str> {
        self.args
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.args.get(i + 1))
            .map(String::as_str)
    }
    fn flag(&self, name: &str) -> bool {
        self.args.iter().any(|a| a == name)
    }
    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| anyhow::anyhow!("{name}: {v:?} is not a number")),
        }
    }
}

struct Data {
    cluster: Arc<Cluster>,
    n: u64,
    t0_ns: i64,
    span_ns: i64,
}

fn data(o: &Opts) -> Result<Data> {
    let span_s: i64 = o.num("--span-secs", 21_600)?;
    let t0_s: i64 = o.num("--t0", now_ns() / NS - span_s)?;
    Ok(Data {
        cluster: Arc::new(Cluster::new(o.num("--seed", 1)?)),
        n: o.num("--records", 1_000_000)?,
        t0_ns: t0_s * NS,
        span_ns: span_s * NS,
    })
}

fn ingest(o: &Opts) -> Result<()> {
    let d = data(o)?;
    let url = o.get("--url").context("--url")?.to_owned();
    let senders: u64 = o.num("--senders", 2)?;
    let batch: u64 = o.num("--batch", 2000)?;
    let next = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let body = {
        let (cluster, n, t0, span) = (d.cluster.clone(), d.n, d.t0_ns, d.span_ns);
        move |from: u64| {
            let records: Vec<FlowRecord> = (from..(from + batch).min(n))
                .map(|i| cluster.record(i, n, t0, span))
                .collect();
            export_request(&records).encode_to_vec()
        }
    };
    // With --encode-first, the bodies by first record, made before the clock starts.
    let encoded: Arc<Vec<Vec<u8>>> = Arc::new(if o.flag("--encode-first") {
        (0..d.n).step_by(batch as usize).map(&body).collect()
    } else {
        Vec::new()
    });
    let start = Instant::now();
    let threads: Vec<_> = (0..senders)
        .map(|_| {
            let (next, bytes, url, body, encoded) =
                (next.clone(), bytes.clone(), url.clone(), body.clone(), encoded.clone());
            let n = d.n;
            std::thread::spawn(move || -> Result<Vec<u64>> {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(120))
                    .build()?;
                let mut latencies = Vec::new();
                loop {
                    let from = next.fetch_add(batch, Ordering::Relaxed);
                    if from >= n {
                        return Ok(latencies);
                    }
                    let body = match encoded.get((from / batch) as usize) {
                        Some(b) => b.clone(),
                        None => body(from),
                    };
                    bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                    let sent = Instant::now();
                    let r = client
                        .post(&url)
                        .header("content-type", "application/x-protobuf")
                        .body(body)
                        .send()?;
                    if !r.status().is_success() {
                        bail!("export answered {}: {}", r.status(), r.text().unwrap_or_default());
                    }
                    let v = opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse::decode(r.bytes()?)?;
                    if let Some(p) = v.partial_success {
                        if p.rejected_log_records > 0 {
                            bail!("{} records refused: {}", p.rejected_log_records, p.error_message);
                        }
                    }
                    latencies.push(sent.elapsed().as_micros() as u64);
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in threads {
        latencies.extend(t.join().expect("sender thread")?);
    }
    let secs = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{}",
        json!({
            "mode": "otlp", "records": d.n, "seconds": secs, "records_per_s": d.n as f64 / secs,
            "otlp_bytes_per_record": bytes.load(Ordering::Relaxed) as f64 / d.n as f64,
            "batch": batch, "senders": senders, "encode_first": o.flag("--encode-first"),
            "request_p50_ms": pct(0.5) as f64 / 1000.0, "request_p99_ms": pct(0.99) as f64 / 1000.0,
            "t0": d.t0_ns / NS, "span_secs": d.span_ns / NS,
        })
    );
    Ok(())
}

fn direct(o: &Opts) -> Result<()> {
    let d = data(o)?;
    let dir = o.get("--dir").context("--dir")?;
    let batch: u64 = o.num("--batch", 2000)?;
    let defaults = FlowConfig::default();
    let store = FlowStore::open(
        std::path::Path::new(dir),
        FlowConfig {
            retention_ns: 0,
            writer_threads: o.num("--writer-threads", defaults.writer_threads)?,
            writer_heap_bytes: o.num("--writer-heap-mib", defaults.writer_heap_bytes >> 20)? << 20,
            zstd_level: o.num("--zstd-level", defaults.zstd_level)?,
            ..defaults
        },
    )?;
    let start = Instant::now();
    let mut from = 0;
    let mut last_commit = Instant::now();
    while from < d.n {
        let records: Vec<FlowRecord> = (from..(from + batch).min(d.n))
            .map(|i| d.cluster.record(i, d.n, d.t0_ns, d.span_ns))
            .collect();
        let out = store.append(&records, now_ns())?;
        if out.rejected > 0 {
            bail!("refused: {:?}", out.first_error);
        }
        from += batch;
        if last_commit.elapsed() > store.config().commit_interval {
            store.commit()?;
            last_commit = Instant::now();
        }
    }
    store.commit()?;
    let secs = start.elapsed().as_secs_f64();
    // The store as it is once the data's last hour is over: the server's merge thread has merged
    // every partition into one segment.
    let merge_start = Instant::now();
    let after_the_data = d.t0_ns + d.span_ns + store.config().partition_ns;
    let merged = store.merge_closed_partitions(after_the_data)?;
    let merge_secs = merge_start.elapsed().as_secs_f64();
    store.close();
    let disk = dir_bytes(std::path::Path::new(dir));
    let mut space: Vec<_> = store.space_by_field()?.into_iter().collect();
    space.sort_by_key(|e| std::cmp::Reverse(e.1));
    for ((part, field), bytes) in space.iter().take(40) {
        eprintln!(
            "{part:>10} {field:<22} {:>8.2} B/record",
            *bytes as f64 / d.n as f64
        );
    }
    println!(
        "{}",
        json!({
            "mode": "direct", "records": d.n, "seconds": secs, "records_per_s": d.n as f64 / secs,
            "partitions": store.partition_count(), "merged": merged, "merge_seconds": merge_secs,
            "disk_bytes": disk,
            "bytes_per_record": disk as f64 / d.n as f64,
        })
    );
    Ok(())
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn ndjson(o: &Opts) -> Result<()> {
    use std::io::Write;
    let d = data(o)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    for i in 0..d.n {
        serde_json::to_writer(
            &mut out,
            &record_json(&d.cluster.record(i, d.n, d.t0_ns, d.span_ns)),
        )?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

fn timed(
    client: &reqwest::blocking::Client,
    url: &str,
    q: &[(&str, String)],
) -> Result<(f64, serde_json::Value)> {
    let t = Instant::now();
    let r = client.get(url).query(q).send()?;
    if !r.status().is_success() {
        bail!(
            "{url} answered {}: {}",
            r.status(),
            r.text().unwrap_or_default()
        );
    }
    let v: serde_json::Value = r.json()?;
    Ok((t.elapsed().as_secs_f64() * 1000.0, v))
}

fn query(o: &Opts) -> Result<()> {
    let d = data(o)?;
    let base = o
        .get("--url")
        .context("--url")?
        .trim_end_matches('/')
        .to_owned();
    let runs: u64 = o.num("--runs", 50)?;
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    let mut selective = Vec::new();
    let mut hits = 0u64;
    for k in 0..runs {
        // A workload pair that talks, taken from the records themselves, and one hour around it.
        let r = d.cluster.record(k * 7919 % d.n, d.n, d.t0_ns, d.span_ns);
        let filter = format!(
            r#"src.workload="{}" and dst.workload="{}""#,
            r.src.workload, r.dst.workload
        );
        let start = (r.interval_end / NS - 1800).max(d.t0_ns / NS);
        let (ms, v) = timed(
            &client,
            &format!("{base}/api/v1/flows"),
            &[
                ("query", filter),
                ("start", start.to_string()),
                ("end", (start + 3600).to_string()),
            ],
        )?;
        hits += v["flows"].as_array().map_or(0, |a| a.len() as u64);
        selective.push(ms);
    }
    let window = [
        ("start", (d.t0_ns / NS).to_string()),
        ("end", ((d.t0_ns + d.span_ns) / NS + 1).to_string()),
    ];
    let mut top = Vec::new();
    let mut groups = 0;
    for _ in 0..5 {
        let mut q = vec![
            ("by", "src.workload,dst.workload".to_owned()),
            ("agg", "sum(bytes_tx),count".to_owned()),
            ("top", "20".to_owned()),
        ];
        q.extend(window.iter().cloned());
        let (ms, v) = timed(&client, &format!("{base}/api/v1/flows/aggregate"), &q)?;
        groups = v["groups"].as_array().map_or(0, Vec::len);
        top.push(ms);
    }
    let mut count = window.to_vec();
    count.push(("agg", "count".to_owned()));
    let (_, v) = timed(&client, &format!("{base}/api/v1/flows/aggregate"), &count)?;
    let stored = v["groups"][0]["values"]["count"].as_u64().unwrap_or(0);
    let p = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 - 1.0) * q) as usize]
    };
    println!(
        "{}",
        json!({
            "mode": "query", "stored_records": stored, "selective_runs": runs,
            "selective_mean_hits": hits as f64 / runs as f64,
            "selective_p50_ms": p(&mut selective, 0.5), "selective_p90_ms": p(&mut selective, 0.9),
            "top20_groups": groups, "top20_p50_ms": p(&mut top, 0.5), "top20_max_ms": p(&mut top, 1.0),
        })
    );
    Ok(())
}

/// The OTLP/HTTP protobuf decode alone: request bodies of `--batch` records encoded first, then decoded
/// `--rounds` times over (the server's decode, without HTTP or the store).
fn decode(o: &Opts) -> Result<()> {
    let d = data(o)?;
    let batch: u64 = o.num("--batch", 5000)?;
    let rounds: u64 = o.num("--rounds", 3)?;
    let bodies: Vec<Vec<u8>> = (0..d.n)
        .step_by(batch as usize)
        .map(|from| {
            let records: Vec<FlowRecord> = (from..(from + batch).min(d.n))
                .map(|i| d.cluster.record(i, d.n, d.t0_ns, d.span_ns))
                .collect();
            export_request(&records).encode_to_vec()
        })
        .collect();
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let start = Instant::now();
        let mut decoded = 0;
        for b in &bodies {
            decoded += strata_api::flows::otlp::decode_protobuf(b)
                .map_err(|e| anyhow::anyhow!("{e:?}"))?
                .records
                .len();
        }
        anyhow::ensure!(
            decoded as u64 == d.n,
            "decoded {decoded} of {} records",
            d.n
        );
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!(
        "{}",
        json!({
            "mode": "decode", "records": d.n, "rounds": rounds,
            "best_us_per_record": best * 1e6 / d.n as f64,
        })
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = Opts {
        args: args.iter().skip(1).cloned().collect(),
    };
    match args.first().map(String::as_str) {
        Some("ingest") => ingest(&o),
        Some("direct") => direct(&o),
        Some("ndjson") => ndjson(&o),
        Some("query") => query(&o),
        Some("decode") => decode(&o),
        _ => bail!("usage: strata-flow-bench ingest|direct|ndjson|query|decode [options] (see the source's header)"),
    }
}
