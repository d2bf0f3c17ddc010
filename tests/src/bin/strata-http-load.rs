//! `strata-http-load`: an HTTP/1.1 keep-alive load generator and a minimal server to aim it at, for
//! measuring what observing loopback HTTP traffic costs (`tests/bench/agent-overhead.sh`).
//!
//! ```text
//! strata-http-load serve --listen 127.0.0.1:18080 [--threads 1] [--body-bytes 2] [--work-us 0]
//! strata-http-load load --url http://127.0.0.1:18080/ [--connections 16] [--rate R]
//!     [--duration 10] [--warmup 1] [--threads 1] [--traceparent [--trace-flags 01]]
//!     [--header 'Name: value']...
//! ```
//!
//! `serve` answers every request with `200 OK` and a body of `--body-bytes` bytes, keeps connections
//! open (unless the request says `Connection: close`), answers pipelined requests in order, and on
//! SIGTERM or SIGINT prints `{"served":N,...}` as one JSON line. `--work-us` keeps its thread busy
//! that many microseconds per request before answering, as an application computing its answer
//! would; without it the server does almost nothing per request.
//!
//! `load` opens `--connections` keep-alive connections, each with one request in flight at a time.
//! Without `--rate` it is a closed loop: every connection sends its next request as soon as the
//! response arrives (the maximum rate). With `--rate R` it is an open loop: request `i` is due at
//! `i / R` seconds after the start and goes to connection `i % connections`; a connection that falls
//! behind sends at once until it has caught up. Requests are counted and timed for `--duration`
//! seconds after `--warmup` seconds; at the end every connection waits for the response it is owed,
//! so each request sent is answered (`requests_total` counts them all, warm-up included). Latency
//! is from the write of the request to the last byte of the response, in microseconds (not from
//! when a late request was due: with `--rate`, compare the achieved `rps` too). The result
//! is one JSON line on stdout. `--traceparent` adds a W3C `traceparent` header with a new trace id
//! to every request, as an instrumented client would; `--trace-flags` sets its flags (`00`: a trace
//! the client did not sample). `--header` (repeatable) adds a header line to
//! every request, to give requests the size of a real client's (a browser's are 300–700 bytes).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const USAGE: &str = "usage:
  strata-http-load serve --listen ADDR [--threads 1] [--body-bytes 2] [--work-us 0]
  strata-http-load load --url http://HOST:PORT/PATH [--connections 16] [--rate REQ_PER_S]
      [--duration SECONDS] [--warmup SECONDS] [--threads 1] [--traceparent [--trace-flags HH]]
      [--header 'NAME: VALUE']...";

/// Flags that take no value.
const SWITCHES: &[&str] = &["traceparent"];

/// Longest request or response head either side accepts.
const MAX_HEAD: usize = 16 * 1024;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve_main(&Flags::parse(&args[1..])?),
        Some("load") => load_main(&Flags::parse(&args[1..])?),
        _ => bail!("{USAGE}"),
    }
}

/// `--name value` pairs.
struct Flags(Vec<(String, String)>);

impl Flags {
    fn parse(args: &[String]) -> Result<Flags> {
        let mut pairs = Vec::new();
        let mut rest = args.iter();
        while let Some(flag) = rest.next() {
            let Some(name) = flag.strip_prefix("--") else {
                bail!("unexpected argument {flag:?}\n{USAGE}");
            };
            let value = if SWITCHES.contains(&name) {
                "true".to_owned()
            } else {
                rest.next()
                    .with_context(|| format!("--{name} needs a value\n{USAGE}"))?
                    .clone()
            };
            pairs.push((name.to_owned(), value));
        }
        Ok(Flags(pairs))
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every value of a repeatable flag, in order.
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn switch(&self, name: &str) -> bool {
        self.text(name).is_some()
    }

    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T> {
        match self.text(name) {
            None => Ok(default),
            Some(text) => text
                .parse()
                .ok()
                .with_context(|| format!("--{name} {text:?} is not a number")),
        }
    }

    fn reject_unknown(&self, known: &[&str]) -> Result<()> {
        for (name, _) in &self.0 {
            if !known.contains(&name.as_str()) {
                bail!("unknown flag --{name}\n{USAGE}");
            }
        }
        Ok(())
    }
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    builder.enable_all().build().context("starting the runtime")
}

/// The end of the head (`\r\n\r\n`) in `buf`, as the offset just past it.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// The value of header `name` (ASCII case-insensitive) in a head, trimmed.
fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a [u8]> {
    head.split(|&byte| byte == b'\n').skip(1).find_map(|line| {
        let colon = line.iter().position(|&byte| byte == b':')?;
        if !line[..colon].eq_ignore_ascii_case(name.as_bytes()) {
            return None;
        }
        Some(line[colon + 1..].trim_ascii())
    })
}

fn content_length(head: &[u8]) -> Result<usize> {
    match header(head, "content-length") {
        None => Ok(0),
        Some(value) => std::str::from_utf8(value)
            .ok()
            .and_then(|text| text.parse().ok())
            .context("bad Content-Length"),
    }
}

fn serve_main(flags: &Flags) -> Result<()> {
    flags.reject_unknown(&["listen", "threads", "body-bytes", "work-us"])?;
    let listen: SocketAddr = flags
        .text("listen")
        .context("--listen is required")?
        .parse()
        .context("--listen must be HOST:PORT")?;
    let threads = flags.number("threads", 1usize)?;
    let body_bytes = flags.number("body-bytes", 2usize)?;
    let work = Duration::from_micros(flags.number("work-us", 0u64)?);
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {body_bytes}\r\n\r\n"
    )
    .into_bytes();
    response.extend(std::iter::repeat_n(b'o', body_bytes));
    let response: &'static [u8] = Box::leak(response.into_boxed_slice());
    let served = Arc::new(AtomicU64::new(0));
    let connections = Arc::new(AtomicU64::new(0));
    runtime(threads)?.block_on(async {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        eprintln!("strata-http-load: serving on {listen}");
        let accept = async {
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        eprintln!("strata-http-load: accept: {err}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                connections.fetch_add(1, Ordering::Relaxed);
                let served = Arc::clone(&served);
                tokio::spawn(async move {
                    if let Err(err) = serve_connection(stream, response, work, &served).await {
                        eprintln!("strata-http-load: connection: {err:#}");
                    }
                });
            }
        };
        tokio::select! {
            () = accept => {}
            () = shutdown_signal() => {}
        }
        anyhow::Ok(())
    })?;
    println!(
        "{}",
        json!({
            "mode": "serve",
            "listen": listen.to_string(),
            "served": served.load(Ordering::Relaxed),
            "connections": connections.load(Ordering::Relaxed),
        })
    );
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Answers the requests of one connection until the peer closes it or asks to.
/// Keeps the thread busy for `work`, as an application computing its answer would: the server's
/// CPU per request, against which the agent's cost per request is measured.
fn busy_for(work: Duration) {
    if work.is_zero() {
        return;
    }
    let start = Instant::now();
    while start.elapsed() < work {
        std::hint::spin_loop();
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    response: &'static [u8],
    work: Duration,
    served: &AtomicU64,
) -> Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(4096);
    let mut out = Vec::with_capacity(4096);
    loop {
        let mut consumed = 0;
        let mut close = false;
        // Every complete request in the buffer is answered, in order, with one write.
        while let Some(end) = head_end(&buf[consumed..]) {
            let head = &buf[consumed..consumed + end];
            let total = end + content_length(head)?;
            if buf.len() - consumed < total {
                break;
            }
            close = header(head, "connection")
                .is_some_and(|value| value.eq_ignore_ascii_case(b"close"));
            consumed += total;
            busy_for(work);
            out.extend_from_slice(response);
            served.fetch_add(1, Ordering::Relaxed);
            if close {
                break;
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        if close {
            return Ok(());
        }
        buf.drain(..consumed);
        if buf.len() > MAX_HEAD && head_end(&buf).is_none() {
            bail!("request head longer than {MAX_HEAD} bytes");
        }
        if read_more(&mut stream, &mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// Appends what the socket has to `buf`; 0 at end of stream.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let len = buf.len();
    buf.resize(len + 8192, 0);
    let read = stream.read(&mut buf[len..]).await;
    buf.truncate(len + *read.as_ref().unwrap_or(&0));
    read
}

/// The bytes of each request: a fixed head, or one with a fresh `traceparent` per request.
struct Requests {
    /// Request line and headers, without the blank line that ends the head.
    head: Vec<u8>,
    traceparent: bool,
    /// The traceparent's flags, two hex digits.
    trace_flags: String,
}

impl Requests {
    /// Request `k` of connection `connection`, in `out`.
    fn write(&self, connection: usize, k: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.head);
        if self.traceparent {
            let seed = (connection as u64) << 40 ^ k;
            let (high, low, parent) = (mix(seed), mix(seed ^ 1 << 63), mix(seed ^ 1 << 62));
            let line = format!(
                "traceparent: 00-{high:016x}{low:016x}-{:016x}-{}\r\n",
                parent.max(1),
                self.trace_flags
            );
            out.extend_from_slice(line.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// splitmix64's finaliser: distinct, well-spread ids from a counter.
fn mix(seed: u64) -> u64 {
    let mut x = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn parse_url(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs"))?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        bail!("{url}: no host");
    }
    Ok((authority.to_owned(), path.to_owned()))
}

#[derive(Clone, Copy)]
struct Schedule {
    /// Requests per second over all connections; `None` for a closed loop.
    rate: Option<f64>,
    connections: usize,
    start: Instant,
    measure_from: Instant,
    stop_at: Instant,
}

impl Schedule {
    /// When request `k` of connection `c` is due.
    fn due(&self, connection: usize, k: u64) -> Option<Instant> {
        let rate = self.rate?;
        let index = k as f64 * self.connections as f64 + connection as f64;
        Some(self.start + Duration::from_secs_f64(index / rate))
    }
}

#[derive(Default)]
struct ConnectionResult {
    /// Latencies (µs) of the requests answered inside the measured window.
    latencies_us: Vec<u32>,
    /// Every request answered, warm-up included.
    answered: u64,
    errors: u64,
    first_error: Option<String>,
}

fn load_main(flags: &Flags) -> Result<()> {
    flags.reject_unknown(&[
        "url",
        "connections",
        "rate",
        "duration",
        "warmup",
        "threads",
        "traceparent",
        "trace-flags",
        "header",
    ])?;
    let url = flags.text("url").context("--url is required")?.to_owned();
    let connections = flags.number("connections", 16usize)?.max(1);
    let rate = match flags.text("rate") {
        None => None,
        Some(_) => Some(flags.number("rate", 0f64)?),
    };
    if rate.is_some_and(|rate| rate <= 0.0 || !rate.is_finite()) {
        bail!("--rate must be positive");
    }
    let duration = flags.number("duration", 10f64)?;
    let warmup = flags.number("warmup", 1f64)?;
    if duration <= 0.0 || warmup < 0.0 {
        bail!("--duration must be positive and --warmup not negative");
    }
    let threads = flags.number("threads", 1usize)?;
    let traceparent = flags.switch("traceparent");
    let trace_flags = flags.text("trace-flags").unwrap_or("01").to_owned();
    if trace_flags.len() != 2 || !trace_flags.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("--trace-flags {trace_flags:?} is not two hex digits");
    }
    let mut extra_headers = String::new();
    for line in flags.all("header") {
        if !line.contains(':') || line.contains(['\r', '\n']) {
            bail!("--header {line:?} is not one `Name: value` line");
        }
        extra_headers.push_str(line);
        extra_headers.push_str("\r\n");
    }
    let (authority, path) = parse_url(&url)?;
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: strata-http-load\r\n{extra_headers}"
    )
    .into_bytes();
    // with the blank line that ends it (a traceparent line adds 70 bytes)
    let requests_head_len = head.len() + 2;

    let (results, elapsed) = runtime(threads)?.block_on(async {
        let addr = tokio::net::lookup_host(&authority)
            .await
            .with_context(|| format!("resolving {authority}"))?
            .next()
            .with_context(|| format!("{authority} has no address"))?;
        let requests = Arc::new(Requests {
            head: head.clone(),
            traceparent,
            trace_flags,
        });
        let mut streams = Vec::with_capacity(connections);
        for _ in 0..connections {
            let stream = TcpStream::connect(addr)
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            stream.set_nodelay(true)?;
            streams.push(stream);
        }
        let start = Instant::now();
        let schedule = Schedule {
            rate,
            connections,
            start,
            measure_from: start + Duration::from_secs_f64(warmup),
            stop_at: start + Duration::from_secs_f64(warmup + duration),
        };
        let failed = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = streams
            .into_iter()
            .enumerate()
            .map(|(connection, stream)| {
                let requests = Arc::clone(&requests);
                let failed = Arc::clone(&failed);
                tokio::spawn(async move {
                    run_connection(connection, stream, &requests, schedule, &failed).await
                })
            })
            .collect();
        let mut results = Vec::with_capacity(tasks.len());
        for task in tasks {
            results.push(task.await.context("a connection task panicked")?);
        }
        anyhow::Ok((results, start.elapsed()))
    })?;

    let mut latencies: Vec<u32> = Vec::new();
    let (mut answered, mut errors, mut first_error) = (0u64, 0u64, None);
    for result in results {
        latencies.extend_from_slice(&result.latencies_us);
        answered += result.answered;
        errors += result.errors;
        first_error = first_error.or(result.first_error);
    }
    latencies.sort_unstable();
    let quantile = |q: f64| -> u32 {
        if latencies.is_empty() {
            return 0;
        }
        let rank = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len());
        latencies[rank - 1]
    };
    let requests = latencies.len() as u64;
    println!(
        "{}",
        json!({
            "mode": "load",
            "url": url,
            "connections": connections,
            "threads": threads,
            "traceparent": traceparent,
            "request_head_bytes": requests_head_len,
            "target_rate": rate,
            "warmup_s": warmup,
            "duration_s": duration,
            "requests": requests,
            "rps": (requests as f64 / duration).round(),
            "requests_total": answered,
            "elapsed_total_s": elapsed.as_secs_f64(),
            "errors": errors,
            "first_error": first_error,
            "cpu_s": own_cpu_seconds(),
            "latency_us": {
                "p50": quantile(0.5),
                "p90": quantile(0.9),
                "p99": quantile(0.99),
                "p999": quantile(0.999),
                "max": latencies.last().copied().unwrap_or(0),
            },
        })
    );
    if answered == 0 {
        bail!("no request was answered");
    }
    Ok(())
}

/// User plus system CPU time of this process so far.
fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given, which is zeroed and large enough.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

async fn run_connection(
    connection: usize,
    mut stream: TcpStream,
    requests: &Requests,
    schedule: Schedule,
    failed: &AtomicBool,
) -> ConnectionResult {
    let mut result = ConnectionResult::default();
    let mut buf = Vec::with_capacity(4096);
    let mut request = Vec::with_capacity(256);
    let mut k = 0u64;
    while !failed.load(Ordering::Relaxed) {
        if let Some(due) = schedule.due(connection, k) {
            if due >= schedule.stop_at {
                break;
            }
            tokio::time::sleep_until(due.into()).await;
        }
        let sent = Instant::now();
        if sent >= schedule.stop_at {
            break;
        }
        requests.write(connection, k, &mut request);
        k += 1;
        match exchange(&mut stream, &request, &mut buf).await {
            Ok(()) => {
                result.answered += 1;
                let done = Instant::now();
                if sent >= schedule.measure_from && done <= schedule.stop_at {
                    let micros = done.duration_since(sent).as_micros();
                    result
                        .latencies_us
                        .push(u32::try_from(micros).unwrap_or(u32::MAX));
                }
            }
            Err(err) => {
                result.errors += 1;
                result.first_error.get_or_insert_with(|| format!("{err:#}"));
                // One broken connection ends the run: the figures would no longer be comparable.
                failed.store(true, Ordering::Relaxed);
            }
        }
    }
    let _ = stream.shutdown().await;
    result
}

/// Writes one request and reads its whole response (`Content-Length` framing).
async fn exchange(stream: &mut TcpStream, request: &[u8], buf: &mut Vec<u8>) -> Result<()> {
    stream.write_all(request).await.context("writing")?;
    buf.clear();
    loop {
        if let Some(end) = head_end(buf) {
            let head = &buf[..end];
            if !head.starts_with(b"HTTP/1.") || head.get(9) != Some(&b'2') {
                let line = head.split(|&byte| byte == b'\r').next().unwrap_or_default();
                bail!("unexpected response {:?}", String::from_utf8_lossy(line));
            }
            if header(head, "transfer-encoding").is_some() {
                bail!("chunked responses are not supported; the server must send Content-Length");
            }
            let total = end + content_length(head)?;
            while buf.len() < total {
                if read_more(stream, buf).await.context("reading")? == 0 {
                    bail!("connection closed inside a response body");
                }
            }
            if buf.len() > total {
                bail!("more bytes than one response: the server sent what was not asked for");
            }
            return Ok(());
        }
        if buf.len() > MAX_HEAD {
            bail!("response head longer than {MAX_HEAD} bytes");
        }
        if read_more(stream, buf).await.context("reading")? == 0 {
            bail!("connection closed before a response");
        }
    }
}
