//! HTTP/1.x exchanges on real loopback connections, as root, through the ring reader and the flow
//! tracker: which exchanges the kernel counts in the socket's slots and which it sends through
//! the ring. Untraced requests are counted per (method, status, role) in three slots, and a fourth
//! combination is sent instead; a request carrying a sampled `traceparent` header is sent
//! whatever the case of the name and wherever its line starts in the scanned words, and is not
//! counted, its value carried on its own when it lies past the head's capture; a header that only
//! ends in "traceparent", one past the bytes the kernel searches, or one whose flags say unsampled
//! is not taken for one. Two requests pipelined before their responses count one exchange and one
//! unanswered request.
//!
//! Needs root; skips loudly without it, fails under `STRATA_REQUIRE_ALL=1`.

#[macro_use]
mod lab;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use strata_agent::events::{HttpExchange, Role};
use strata_agent::flow_table::{FlowDelta, HttpCounts};
use strata_agent::http::Method;
use strata_ebpf::abi;

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// Answers each request on a connection with the status its path names (`/status/NNN`).
fn serve(listener: TcpListener) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { return };
        std::thread::spawn(move || {
            let mut pending = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                    }
                    continue;
                };
                let head = String::from_utf8_lossy(&pending[..end]).into_owned();
                pending.drain(..end + 4);
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|path| path.strip_prefix("/status/"))
                    .unwrap_or("200")
                    .to_owned();
                let response = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
                if stream.write_all(response.as_bytes()).is_err() {
                    return;
                }
            }
        });
    }
}

/// Sends one request and waits for the response head.
fn exchange(stream: &mut TcpStream, request: &str) {
    stream.write_all(request.as_bytes()).expect("send request");
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).expect("read response");
        assert!(n > 0, "server closed");
        received.extend_from_slice(&buf[..n]);
    }
}

/// Reads two requests before answering both in one write: the second request reaches the socket
/// before the first response leaves.
fn serve_pipelined(listener: TcpListener) {
    let Ok((mut stream, _)) = listener.accept() else {
        return;
    };
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    while received.windows(4).filter(|w| *w == b"\r\n\r\n").count() < 2 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
    let response = "HTTP/1.1 202 X\r\nContent-Length: 0\r\n\r\n".repeat(2);
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.read(&mut buf); // until the client closes
}

fn request(method: &str, status: u16, headers: &str) -> String {
    format!("{method} /status/{status} HTTP/1.1\r\nHost: shop\r\n{headers}\r\n")
}

/// What the pipeline reported for one socket.
#[derive(Default, Debug)]
struct Seen {
    exchanges: Vec<HttpExchange>,
    counts: Vec<HttpCounts>,
    closed: bool,
}

impl Seen {
    /// Kernel counts summed per (method, status), all in the socket's `role`.
    fn counted(&self, role: Role, method: Method, status: u16) -> u64 {
        let counts = self.counts.iter().filter(|c| {
            assert_eq!(c.role, role, "{c:?}");
            c.method == method && c.status == status
        });
        counts.map(|c| c.count).sum()
    }
}

#[test]
fn kernel_counts_untraced_exchanges_and_sends_traced_ones() {
    let features = or_skip!(lab::preconditions(&[]));
    let mut probes = or_skip!(lab::attach_all(&features));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut tracked = lab::track(&mut probes, &runtime);

    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let server = listener.local_addr().unwrap();
    std::thread::spawn(move || serve(listener));

    // Connection A, no trace context: three combinations fill the slots, a fourth is sent, and
    // one of the first three is still counted once the slots are full.
    let mut a = TcpStream::connect(server).expect("connect");
    let a_local: SocketAddr = a.local_addr().unwrap();
    for _ in 0..3 {
        exchange(&mut a, &request("GET", 200, ""));
    }
    exchange(&mut a, &request("POST", 404, "Content-Length: 0\r\n"));
    exchange(&mut a, &request("HEAD", 200, ""));
    exchange(&mut a, &request("DELETE", 500, ""));
    exchange(&mut a, &request("GET", 200, ""));
    drop(a);

    // Connection B: traced requests, the header's line starting at every offset of a scan step
    // (64 bytes) and across its end, in three spellings, and after another line starting with
    // `t`; then look-alikes that are not trace context.
    let mut b = TcpStream::connect(server).expect("connect");
    let b_local: SocketAddr = b.local_addr().unwrap();
    let mut traced = 0;
    for pad in 0..72 {
        let headers = format!(
            "X-Pad: {}\r\ntraceparent: {TRACEPARENT}\r\n",
            "p".repeat(pad)
        );
        exchange(&mut b, &request("GET", 200, &headers));
        traced += 1;
    }
    for name in ["Traceparent", "TRACEPARENT"] {
        exchange(
            &mut b,
            &request("GET", 200, &format!("{name}: {TRACEPARENT}\r\n")),
        );
        traced += 1;
    }
    exchange(
        &mut b,
        &request(
            "GET",
            200,
            &format!("tracestate: rojo=00f067aa0ba902b7\r\ntraceparent: {TRACEPARENT}\r\n"),
        ),
    );
    traced += 1;
    // sampled with another flag set, and after a tab and no space
    let flags_03 = TRACEPARENT.replace("-01", "-03");
    for headers in [
        format!("traceparent: {flags_03}\r\n"),
        format!("traceparent:\t{TRACEPARENT}\r\n"),
        format!("traceparent:{TRACEPARENT}\r\n"),
        // past the head's capture (as after a long Authorization line): the value comes on its own
        format!(
            "Authorization: Bearer {}\r\ntraceparent: {TRACEPARENT}\r\n",
            "t".repeat(1200)
        ),
    ] {
        exchange(&mut b, &request("GET", 200, &headers));
        traced += 1;
    }
    let untraced = [
        format!("X-Traceparent: {TRACEPARENT}\r\n"),
        format!(
            "X-Pad: {}\r\ntraceparent: {TRACEPARENT}\r\n",
            "p".repeat(abi::HTTP_TRACEPARENT_SCAN)
        ),
        "Accept: */*\r\n".to_owned(),
        "tracestate: rojo=00f067aa0ba902b7\r\nTE: trailers\r\n".to_owned(),
        // trace context the caller did not sample: counted like none, no span
        format!("traceparent: {}\r\n", TRACEPARENT.replace("-01", "-00")),
        format!("traceparent:  {}\r\n", TRACEPARENT.replace("-01", "-02")),
    ];
    for headers in &untraced {
        exchange(&mut b, &request("GET", 201, headers));
    }
    drop(b);

    // Connection C: two requests in two segments, then both responses.
    let pipelined = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let c_server = pipelined.local_addr().unwrap();
    let c_thread = std::thread::spawn(move || serve_pipelined(pipelined));
    let mut c = TcpStream::connect(c_server).expect("connect");
    c.set_nodelay(true).expect("nodelay");
    let c_local: SocketAddr = c.local_addr().unwrap();
    c.write_all(request("GET", 202, "").as_bytes())
        .expect("first request");
    std::thread::sleep(Duration::from_millis(20)); // a segment of its own
    exchange(&mut c, &request("GET", 202, ""));
    drop(c);
    c_thread.join().expect("pipelined server");

    // Each connection's client socket and server socket, by (local, remote).
    let ends = [
        (a_local, server),
        (server, a_local),
        (b_local, server),
        (server, b_local),
        (c_local, c_server),
        (c_server, c_local),
    ];
    let mut seen: [Seen; 6] = Default::default();
    let find =
        |local: SocketAddr, remote: SocketAddr| ends.iter().position(|e| *e == (local, remote));
    let deadline = Instant::now() + Duration::from_secs(10);
    let done = |seen: &[Seen; 6]| {
        seen.iter().all(|s| s.closed)
            && seen[2].exchanges.len() + seen[3].exchanges.len() >= 2 * traced
    };
    while Instant::now() < deadline && !done(&seen) {
        if let Ok(Some(batch)) = runtime.block_on(async {
            tokio::time::timeout(Duration::from_millis(500), tracked.batches.recv()).await
        }) {
            for delta in batch.deltas {
                let Some(at) = find(delta.endpoints.local, delta.endpoints.remote) else {
                    continue;
                };
                let FlowDelta { http, open, .. } = delta;
                seen[at].counts.extend(http);
                seen[at].closed |= !open;
            }
        }
        while let Ok(exchange) = tracked.exchanges.try_recv() {
            if let Some(at) = find(exchange.endpoints.local, exchange.endpoints.remote) {
                seen[at].exchanges.push(exchange);
            }
        }
    }
    assert!(seen.iter().all(|s| s.closed), "{seen:#?}");

    // A, on both ends: GET 200 ×4, POST 404 and HEAD 200 counted; DELETE 500 sent, with its head.
    for (end, role) in [(&seen[0], Role::Client), (&seen[1], Role::Server)] {
        assert_eq!(end.counted(role, Method::Get, 200), 4, "{end:#?}");
        assert_eq!(end.counted(role, Method::Post, 404), 1, "{end:#?}");
        assert_eq!(end.counted(role, Method::Head, 200), 1, "{end:#?}");
        assert_eq!(end.counted(role, Method::Delete, 500), 0, "{end:#?}");
        assert_eq!(end.exchanges.len(), 1, "{end:#?}");
        let sent = &end.exchanges[0];
        assert_eq!(sent.role, role);
        let request = sent.request.as_ref().expect("parsed");
        assert_eq!(request.method, Method::Delete);
        assert_eq!(request.path(), "/status/500");
        assert_eq!(sent.status.as_ref().map(|s| s.code), Some(500));
    }

    // B, on both ends: every traced request sent with its trace context and not counted; the
    // look-alikes counted, each in its latency bucket.
    for (end, role) in [(&seen[2], Role::Client), (&seen[3], Role::Server)] {
        assert_eq!(end.exchanges.len(), traced, "{end:#?}");
        assert!(
            end.exchanges
                .iter()
                .all(|x| x.role == role
                    && x.request.as_ref().is_some_and(|r| r.traceparent.is_some()))
        );
        assert_eq!(end.counted(role, Method::Get, 200), 0, "{end:#?}");
        assert_eq!(
            end.counted(role, Method::Get, 201),
            untraced.len() as u64,
            "{end:#?}"
        );
        assert!(
            end.counts
                .iter()
                .all(|c| c.buckets.iter().sum::<u64>() == c.count && c.latency_sum_ns > 0),
            "{end:#?}"
        );
    }
    assert_eq!(abi::HTTP_SLOTS, 3, "the test fills three slots");

    // C, on both ends: the latest request answered, the one before it unanswered.
    for (end, role) in [(&seen[4], Role::Client), (&seen[5], Role::Server)] {
        assert_eq!(end.counted(role, Method::Get, 202), 1, "{end:#?}");
        assert!(end.exchanges.is_empty(), "{end:#?}");
    }
    let counters = probes.counters().expect("kernel counters");
    assert_eq!(counters["http_unanswered"], 2, "{counters:?}");
    assert_eq!(counters["http_uncounted"], 0, "{counters:?}");
    drop(tracked);
    lab::assert_detached_on_drop(probes);
}
