//! `strata-trace-load`: a generator of realistic traces sent over OTLP/gRPC, and the read-side probes of
//! the trace benchmark (`docs/benchmarks.md`, "Trace store").
//!
//! Traces: 30 services × 3 instances (11 resource attributes each), 5–50 spans per trace in a random
//! tree, 10–30 span attributes drawn from 40 keys (low-cardinality enums, numbers, booleans and
//! high-cardinality ids) and written in an order fixed per service (whatever the seed), as an instrumented code path
//! writes its attributes; 3% error spans, 10% of spans with an exception event, start times spread
//! over the hour before the run. Deterministic for a seed.
//!
//! ```text
//! strata-trace-load ingest --otlp http://127.0.0.1:4317 --spans 10000000 [--connections 4]
//!     [--batch 1000] [--ids ids.txt] [--seed 1]          # spans/s; keeps every 1000th trace id
//!     [--encode-first]                                   # every request body generated and encoded
//!                                                        # before the clock starts
//! strata-trace-load generate --spans 1000000             # the generator alone, for its own cost
//! strata-trace-load query --url http://127.0.0.1:9080 --ids ids.txt [--rounds 5]
//!                                                        # trace by id (first and repeated) and search latency
//! ```

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use bytes::BufMut;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1 as otlp;
use prost::Message;

const SERVICES: usize = 30;
const INSTANCES: usize = 3;
const ROUTES: &[&str] = &[
    "/",
    "/cart",
    "/checkout",
    "/login",
    "/logout",
    "/product/{id}",
    "/search",
    "/api/orders",
    "/api/orders/{id}",
    "/api/users/{id}",
    "/api/payments",
    "/api/inventory",
    "/healthz",
    "/metrics",
    "/api/recommendations",
    "/api/ads",
    "/api/shipping/quote",
    "/api/currency",
    "/api/reviews",
    "/static/{file}",
];
const METHODS: &[&str] = &["GET", "GET", "GET", "POST", "PUT", "DELETE"];
const STATUSES: &[i64] = &[200, 200, 200, 200, 201, 204, 301, 400, 404, 500, 503];
const DB: &[&str] = &["postgresql", "redis", "mysql", "mongodb"];

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1e6 < p
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

fn s(v: impl Into<String>) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    })
}
fn i(v: i64) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::IntValue(v)),
    })
}
fn kv(k: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: k.into(),
        value,
    }
}

fn resource(service: usize, instance: usize) -> Resource {
    let name = format!("svc-{service:02}");
    Resource {
        attributes: vec![
            kv("service.name", s(name.clone())),
            kv("service.namespace", s(format!("team-{}", service % 5))),
            kv(
                "service.version",
                s(format!("1.{}.{}", service % 4, instance)),
            ),
            kv("service.instance.id", s(format!("{name}-{instance}"))),
            kv("k8s.pod.name", s(format!("{name}-7d9f8b-{instance:05x}"))),
            kv("k8s.namespace.name", s(format!("ns-{}", service % 5))),
            kv(
                "k8s.node.name",
                s(format!("node-{}", (service + instance) % 8)),
            ),
            kv("host.name", s(format!("node-{}", (service + instance) % 8))),
            kv("cloud.region", s(["eu-west-1", "us-east-1"][service % 2])),
            kv("telemetry.sdk.name", s("opentelemetry")),
            kv(
                "telemetry.sdk.language",
                s(["go", "java", "python", "rust"][service % 4]),
            ),
        ],
        ..Default::default()
    }
}

/// One attribute of the 40-key pool, by key index.
fn attribute(r: &mut Rng, key: usize) -> KeyValue {
    match key {
        0 => kv("http.method", s(*r.pick(METHODS))),
        1 => kv("http.route", s(*r.pick(ROUTES))),
        2 => kv("http.status_code", i(*r.pick(STATUSES))),
        3 => kv(
            "http.url",
            s(format!(
                "https://shop.example.com{}?id={}",
                r.pick(ROUTES),
                r.below(100_000)
            )),
        ),
        4 => kv("user.id", s(format!("u{}", r.below(1_000_000)))),
        5 => kv("request.id", s(format!("{:016x}", r.next()))),
        6 => kv(
            "net.peer.name",
            s(format!("10.0.{}.{}", r.below(16), r.below(256))),
        ),
        7 => kv("net.peer.port", i(r.range(1024, 65535) as i64)),
        8 => kv("db.system", s(*r.pick(DB))),
        9 => kv(
            "db.statement",
            s(format!("SELECT * FROM t{} WHERE id = ?", r.below(50))),
        ),
        10 => kv("rpc.system", s("grpc")),
        11 => kv("rpc.method", s(format!("Method{}", r.below(30)))),
        12 => kv("messaging.system", s("kafka")),
        13 => kv("thread.id", i(r.below(64) as i64)),
        14 => kv("code.function", s(format!("handler_{}", r.below(200)))),
        15 => kv(
            "cache.hit",
            Some(AnyValue {
                value: Some(any_value::Value::BoolValue(r.chance(0.7))),
            }),
        ),
        16 => kv("payload.bytes", i(r.below(200_000) as i64)),
        17 => kv("retry.count", i(r.below(3) as i64)),
        18 => kv(
            "sampling.ratio",
            Some(AnyValue {
                value: Some(any_value::Value::DoubleValue(0.25)),
            }),
        ),
        19 => kv("session.id", s(format!("{:012x}", r.next() >> 16))),
        20 => kv("tenant", s(format!("tenant-{}", r.below(20)))),
        21 => kv("feature.flag", s(["on", "off"][r.below(2)])),
        22 => kv("order.items", i(r.below(20) as i64)),
        23 => kv("currency", s(["EUR", "USD", "GBP", "JPY"][r.below(4)])),
        24 => kv(
            "http.user_agent",
            s(format!(
                "Mozilla/5.0 (X11; Linux x86_64) Chrome/{}.0",
                100 + r.below(30)
            )),
        ),
        25 => kv("http.request_content_length", i(r.below(10_000) as i64)),
        26 => kv("http.response_content_length", i(r.below(100_000) as i64)),
        27 => kv("net.transport", s("ip_tcp")),
        28 => kv("component", s(["http", "grpc", "db", "cache"][r.below(4)])),
        29 => kv("span.type", s(["web", "db", "cache", "queue"][r.below(4)])),
        30 => kv("error.kind", s(["", "timeout", "refused"][r.below(3)])),
        31 => kv("peer.service", s(format!("svc-{:02}", r.below(SERVICES)))),
        32 => kv("process.pid", i(r.range(100, 40_000) as i64)),
        33 => kv("queue.depth", i(r.below(500) as i64)),
        34 => kv("product.id", s(format!("p{}", r.below(50_000)))),
        35 => kv("region.zone", s(format!("zone-{}", r.below(6)))),
        36 => kv("experiment", s(format!("exp-{}", r.below(12)))),
        37 => kv("build.sha", s(format!("{:07x}", r.below(64) * 99_991))),
        38 => kv("http.scheme", s("https")),
        _ => kv(
            "client.address",
            s(format!("203.0.{}.{}", r.below(256), r.below(256))),
        ),
    }
}

struct Generator {
    rng: Rng,
    resources: Vec<Resource>,
    /// Per service, the order its spans write attribute keys in: the position of each key.
    key_orders: Vec<[usize; 40]>,
    window_start_ns: u64,
}

impl Generator {
    fn new(seed: u64) -> Generator {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        // A service's code sets its attributes in the same order whoever runs the generator: the
        // orders come from a seed of their own, the same for every connection.
        let mut code = Rng(0x005e_ed0f_c0de);
        let key_orders = (0..SERVICES)
            .map(|_| {
                let mut keys: [usize; 40] = std::array::from_fn(|k| k);
                for a in 0..40 {
                    keys.swap(a, a + code.below(40 - a));
                }
                let mut position = [0; 40];
                for (p, &k) in keys.iter().enumerate() {
                    position[k] = p;
                }
                position
            })
            .collect();
        Generator {
            rng,
            key_orders,
            resources: (0..SERVICES * INSTANCES)
                .map(|x| resource(x / INSTANCES, x % INSTANCES))
                .collect(),
            window_start_ns: now - 3_600_000_000_000,
        }
    }

    /// One trace: (service instance, span) pairs.
    fn trace(&mut self) -> (Vec<u8>, Vec<(usize, otlp::Span)>) {
        let r = &mut self.rng;
        let key_orders = &self.key_orders;
        let trace_id: Vec<u8> = [r.next().to_be_bytes(), r.next().to_be_bytes()].concat();
        let n = r.range(5, 50);
        let start = self.window_start_ns + (r.next() % 3_600_000_000_000);
        let mut spans: Vec<(usize, otlp::Span)> = Vec::with_capacity(n);
        for k in 0..n {
            let (inst, parent, kind, pstart, pdur) = if k == 0 {
                (r.below(SERVICES * INSTANCES), vec![], 2, start, 0u64)
            } else {
                let p = r.below(k);
                let (pi, ps) = &spans[p];
                let pdur = ps.end_time_unix_nano - ps.start_time_unix_nano;
                let same = r.chance(0.5);
                let inst = if same {
                    *pi
                } else {
                    r.below(SERVICES * INSTANCES)
                };
                let kind = if same { *r.pick(&[1, 3]) } else { 2 };
                (
                    inst,
                    ps.span_id.clone(),
                    kind,
                    ps.start_time_unix_nano,
                    pdur,
                )
            };
            // log-uniform durations from 100 µs to ~3 s; children fit in their parent
            let dur = if k == 0 {
                100_000u64 << r.below(15)
            } else {
                (pdur / 2).max(1) >> r.below(4)
            } + r.below(100_000) as u64;
            let offset = if pdur > dur {
                r.next() % (pdur - dur)
            } else {
                0
            };
            let nattrs = r.range(10, 30);
            let mut keys: Vec<usize> = (0..40).collect();
            for a in 0..nattrs {
                let j = a + r.below(40 - a);
                keys.swap(a, j);
            }
            // Which keys is random; their order is the service's (an OTel SDK keeps a code
            // path's attributes in the order it sets them).
            let order = &key_orders[inst / INSTANCES];
            keys[..nattrs].sort_by_key(|&k| order[k]);
            let attributes: Vec<KeyValue> =
                keys[..nattrs].iter().map(|&k| attribute(r, k)).collect();
            let error = r.chance(0.03);
            let events = if r.chance(0.1) {
                vec![otlp::span::Event {
                    time_unix_nano: pstart + offset + dur / 2,
                    name: "exception".into(),
                    attributes: vec![
                        kv("exception.type", s("TimeoutError")),
                        kv(
                            "exception.message",
                            s(format!("deadline exceeded after {}ms", dur / 1_000_000)),
                        ),
                    ],
                    dropped_attributes_count: 0,
                }]
            } else {
                vec![]
            };
            let span = otlp::Span {
                trace_id: trace_id.clone(),
                span_id: r.next().to_be_bytes().to_vec(),
                parent_span_id: parent,
                name: format!("{} {}", r.pick(METHODS), r.pick(ROUTES)),
                kind,
                start_time_unix_nano: pstart + offset,
                end_time_unix_nano: pstart + offset + dur,
                attributes,
                events,
                status: error.then(|| otlp::Status {
                    code: 2,
                    message: "internal error".into(),
                }),
                ..Default::default()
            };
            spans.push((inst, span));
        }
        (trace_id, spans)
    }

    /// A request of at least `batch` spans, grouped by service instance; returns it with its trace ids.
    fn request(&mut self, batch: usize) -> (ExportTraceServiceRequest, usize, Vec<Vec<u8>>) {
        let mut by_instance: Vec<Vec<otlp::Span>> = vec![Vec::new(); SERVICES * INSTANCES];
        let mut n = 0;
        let mut ids = Vec::new();
        while n < batch {
            let (id, spans) = self.trace();
            ids.push(id);
            n += spans.len();
            for (inst, sp) in spans {
                by_instance[inst].push(sp);
            }
        }
        let resource_spans = by_instance
            .into_iter()
            .enumerate()
            .filter(|(_, v)| !v.is_empty())
            .map(|(inst, spans)| otlp::ResourceSpans {
                resource: Some(self.resources[inst].clone()),
                scope_spans: vec![otlp::ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "io.opentelemetry.http".into(),
                        version: "1.30.0".into(),
                        ..Default::default()
                    }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect();
        (ExportTraceServiceRequest { resource_spans }, n, ids)
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn num(args: &[String], name: &str, default: u64) -> Result<u64> {
    arg(args, name).map_or(Ok(default), |v| {
        v.parse().with_context(|| format!("{name} {v:?}"))
    })
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ingest") => ingest(&args),
        Some("generate") => generate(&args),
        Some("query") => query(&args),
        _ => bail!("usage: strata-trace-load ingest|generate|query … (see the source's header)"),
    }
}

fn generate(args: &[String]) -> Result<()> {
    let total = num(args, "--spans", 1_000_000)?;
    let mut g = Generator::new(num(args, "--seed", 1)?);
    let t = Instant::now();
    let (mut spans, mut bytes) = (0u64, 0u64);
    while spans < total {
        let (req, n, _) = g.request(1000);
        bytes += req.encoded_len() as u64;
        spans += n as u64;
    }
    let secs = t.elapsed().as_secs_f64();
    eprintln!("generated {spans} spans in {secs:.1}s: {:.0} spans/s on one core, {:.0} protobuf bytes/span", spans as f64 / secs, bytes as f64 / spans as f64);
    Ok(())
}

/// A request body as it goes on the wire, with its span count and trace ids.
struct Body {
    bytes: Vec<u8>,
    spans: usize,
    ids: Vec<Vec<u8>>,
}

impl Generator {
    fn body(&mut self, batch: usize) -> Body {
        let (req, spans, ids) = self.request(batch);
        Body {
            bytes: req.encode_to_vec(),
            spans,
            ids,
        }
    }
}

/// Sends request bodies encoded beforehand as `TraceService/Export` calls: the encoding is the
/// sender's, done when the caller chooses, not inside the gRPC client.
#[derive(Clone, Copy, Default)]
struct EncodedCodec;

struct EncodedEncoder;
struct ResponseDecoder;

impl tonic::codec::Codec for EncodedCodec {
    type Encode = Vec<u8>;
    type Decode = ExportTraceServiceResponse;
    type Encoder = EncodedEncoder;
    type Decoder = ResponseDecoder;
    fn encoder(&mut self) -> EncodedEncoder {
        EncodedEncoder
    }
    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

impl tonic::codec::Encoder for EncodedEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for ResponseDecoder {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<ExportTraceServiceResponse>, tonic::Status> {
        ExportTraceServiceResponse::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("bad ExportTraceServiceResponse: {e}")))
    }
}

/// One `TraceService/Export` call of an encoded body; retried as an OTel SDK retries while the server
/// answers `UNAVAILABLE` or `RESOURCE_EXHAUSTED` (its head waiting for a block to be written).
async fn export(
    grpc: &mut tonic::client::Grpc<tonic::transport::Channel>,
    body: &[u8],
) -> Result<()> {
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    let mut tries = 0;
    loop {
        grpc.ready().await?;
        let call = grpc
            .unary(
                tonic::Request::new(body.to_vec()),
                path.clone(),
                EncodedCodec,
            )
            .await;
        match call {
            Ok(r) => {
                if let Some(p) = r.into_inner().partial_success {
                    if p.rejected_spans > 0 {
                        bail!("{} spans rejected: {}", p.rejected_spans, p.error_message);
                    }
                }
                return Ok(());
            }
            Err(e)
                if tries < 100
                    && matches!(
                        e.code(),
                        tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                    ) =>
            {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50 << tries.min(5))).await;
            }
            Err(e) => bail!("export failed: {e}"),
        }
    }
}

fn ingest(args: &[String]) -> Result<()> {
    let endpoint = arg(args, "--otlp").unwrap_or_else(|| "http://127.0.0.1:4317".into());
    let total = num(args, "--spans", 1_000_000)?;
    let conns = num(args, "--connections", 4)?;
    let batch = num(args, "--batch", 1000)? as usize;
    let seed = num(args, "--seed", 1)?;
    let ids_path = arg(args, "--ids").unwrap_or_else(|| "trace-ids.txt".into());
    let encode_first = args.iter().any(|a| a == "--encode-first");
    // With --encode-first, each connection's bodies (its share of the spans) are generated and
    // encoded before the clock starts, so the sender's CPU goes to sending only.
    let mut ready: Vec<Vec<Body>> = (0..conns)
        .map(|c| {
            let mut bodies = Vec::new();
            if encode_first {
                let mut g = Generator::new(seed * 1000 + c);
                let (share, mut n) = (total.div_ceil(conns), 0u64);
                while n < share {
                    let b = g.body(batch);
                    n += b.spans as u64;
                    bodies.push(b);
                }
            }
            bodies
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let sent = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let ids: Vec<Vec<u8>> = rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..conns {
            let endpoint = endpoint.clone();
            let (sent, bytes) = (sent.clone(), bytes.clone());
            let mut bodies = std::mem::take(&mut ready[c as usize]).into_iter();
            tasks.push(tokio::spawn(async move {
                let channel = tonic::transport::Endpoint::from_shared(endpoint)?
                    .connect()
                    .await?;
                let mut grpc = tonic::client::Grpc::new(channel)
                    .max_decoding_message_size(64 << 20)
                    .max_encoding_message_size(64 << 20);
                let mut g = Generator::new(seed * 1000 + c);
                let mut kept = Vec::new();
                let mut traces = 0u64;
                loop {
                    let body = if encode_first {
                        match bodies.next() {
                            Some(b) => b,
                            None => break,
                        }
                    } else if sent.load(Ordering::Relaxed) < total {
                        g.body(batch)
                    } else {
                        break;
                    };
                    for id in body.ids.iter() {
                        if traces.is_multiple_of(1000) {
                            kept.push(id.clone());
                        }
                        traces += 1;
                    }
                    bytes.fetch_add(body.bytes.len() as u64, Ordering::Relaxed);
                    export(&mut grpc, &body.bytes).await?;
                    sent.fetch_add(body.spans as u64, Ordering::Relaxed);
                }
                anyhow::Ok(kept)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        anyhow::Ok(all)
    })?;
    let secs = start.elapsed().as_secs_f64();
    let n = sent.load(Ordering::Relaxed);
    let mut f = std::io::BufWriter::new(std::fs::File::create(&ids_path)?);
    for id in &ids {
        writeln!(
            f,
            "{}",
            id.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )?;
    }
    eprintln!(
        "sent {n} spans in {secs:.1}s over {conns} connections: {:.0} spans/s, {:.0} protobuf bytes/span; {} trace ids kept in {ids_path}",
        n as f64 / secs,
        bytes.load(Ordering::Relaxed) as f64 / n as f64,
        ids.len()
    );
    println!(
        "{{\"spans\":{n},\"seconds\":{secs:.2},\"spans_per_second\":{:.0}}}",
        n as f64 / secs
    );
    Ok(())
}

fn query(args: &[String]) -> Result<()> {
    let url = arg(args, "--url").unwrap_or_else(|| "http://127.0.0.1:9080".into());
    let ids_path = arg(args, "--ids").unwrap_or_else(|| "trace-ids.txt".into());
    let rounds = num(args, "--rounds", 5)?;
    let ids: Vec<String> = std::fs::read_to_string(&ids_path)?
        .lines()
        .map(str::to_owned)
        .collect();
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    // A server just started answers once it has opened its stores.
    let ready = Instant::now();
    while !c
        .get(format!("{url}/tempo/ready"))
        .send()
        .is_ok_and(|r| r.status().is_success())
    {
        if ready.elapsed() > Duration::from_secs(120) {
            bail!("{url} is not ready after 120 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let by_id = |first: &mut Vec<f64>| -> Result<()> {
        for id in &ids {
            let t = Instant::now();
            let r = c
                .get(format!("{url}/tempo/api/v2/traces/{id}"))
                .header("accept", "application/protobuf")
                .send()?;
            if !r.status().is_success() {
                bail!("trace {id}: {}", r.status());
            }
            let _ = r.bytes()?;
            first.push(t.elapsed().as_secs_f64() * 1e3);
        }
        Ok(())
    };
    let mut cold = Vec::new();
    by_id(&mut cold)?;
    let mut warm = Vec::new();
    for _ in 0..rounds {
        by_id(&mut warm)?;
    }
    eprintln!(
        "trace by id over {} ids: first lookup p50 {:.2} ms p99 {:.2} ms; repeated ({rounds} rounds) p50 {:.2} ms p99 {:.2} ms",
        ids.len(),
        percentile(&mut cold, 0.5),
        percentile(&mut cold, 0.99),
        percentile(&mut warm, 0.5),
        percentile(&mut warm, 0.99)
    );
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    for q in [
        r#"{resource.service.name="svc-07" && duration>100ms}"#,
        r#"{resource.service.name="svc-07" && name="GET /cart" && status=error && duration>100ms}"#,
        r#"{span.http.status_code=500}"#,
    ] {
        let mut lat = Vec::new();
        let mut found = 0;
        for _ in 0..rounds.max(3) {
            let t = Instant::now();
            let r: serde_json::Value = c
                .get(format!("{url}/tempo/api/search"))
                .query(&[
                    ("q", q),
                    ("limit", "20"),
                    ("start", &(now - 3600).to_string()),
                    ("end", &now.to_string()),
                ])
                .send()?
                .json()?;
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            found = r["traces"].as_array().map_or(0, Vec::len);
        }
        eprintln!(
            "search {q} over 1 h, limit 20: {found} traces, p50 {:.1} ms, max {:.1} ms",
            percentile(&mut lat, 0.5),
            percentile(&mut lat, 1.0)
        );
    }
    Ok(())
}
