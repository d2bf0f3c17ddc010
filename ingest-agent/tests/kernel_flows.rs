//! The user-space TCP pipeline on real kernel data, as root: ring-buffer closes routed into the
//! flow tracker, which scans `sock_stats` on a timer. A loopback connection's deltas, summed
//! over the batches, equal the bytes written and read, and its last delta comes from the close;
//! between state changes, the iterator the tracker runs before each scan refreshes the counters.
//!
//! Needs root; skips loudly without it, fails under `STRATA_REQUIRE_ALL=1`.

#[macro_use]
mod lab;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use strata_agent::flow_table::FlowDelta;
use strata_agent::loader::Hook;
use strata_ebpf::object::program;

const SENT: usize = 70_000;
const ANSWER: usize = 1_234;

#[test]
fn tracker_sums_to_the_bytes_of_a_connection() {
    let features = or_skip!(lab::preconditions(&[]));
    let mut probes = or_skip!(lab::attach_all(&features));
    assert_eq!(
        probes.program_of(Hook::SockStatsRefresh),
        Some(program::SOCK_STATS_REFRESH)
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut tracked = lab::track(&mut probes, &runtime);

    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let local: SocketAddr = client.local_addr().unwrap();
    let (mut server, _) = listener.accept().expect("accept");
    client.write_all(&vec![b'q'; SENT / 2]).expect("write");
    std::thread::sleep(Duration::from_millis(250)); // let a scan see the connection open
    client
        .write_all(&vec![b'q'; SENT - SENT / 2])
        .expect("write");
    let mut received = vec![0u8; SENT];
    server.read_exact(&mut received).expect("read");
    server.write_all(&vec![b'a'; ANSWER]).expect("answer");
    client
        .read_exact(&mut vec![0u8; ANSWER])
        .expect("read answer");
    drop(client);
    drop(server);

    let mut ours: Vec<FlowDelta> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !ours.iter().any(|delta| !delta.open) {
        if let Ok(Some(batch)) = runtime.block_on(async {
            tokio::time::timeout(Duration::from_millis(500), tracked.batches.recv()).await
        }) {
            ours.extend(
                batch
                    .deltas
                    .into_iter()
                    .filter(|delta| delta.endpoints.local == local),
            );
        }
    }
    assert!(
        ours.iter().any(|delta| delta.open),
        "seen open by a scan: {ours:#?}"
    );
    assert!(ours.iter().any(|delta| !delta.open), "closed: {ours:#?}");
    // The first half was sent 250 ms before the rest, with no state change between: scans of the
    // open connection counted it (the refresh), not only the close.
    let sent_open: u64 = ours
        .iter()
        .filter(|delta| delta.open)
        .map(|delta| delta.bytes_sent)
        .sum();
    assert!(sent_open >= (SENT / 2) as u64, "{ours:#?}");
    let sent: u64 = ours.iter().map(|delta| delta.bytes_sent).sum();
    let got: u64 = ours.iter().map(|delta| delta.bytes_received).sum();
    assert_eq!((sent, got), (SENT as u64, ANSWER as u64), "{ours:#?}");
    drop(tracked);
    lab::assert_detached_on_drop(probes);
}
