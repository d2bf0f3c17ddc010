//! A full per-socket map, as root: with `sock_stats` shrunk to a few entries, opening many
//! connections makes the LRU evict live sockets; their closes are then counted as missing
//! instead of vanishing, and the map never holds more than its capacity.
//!
//! Needs root; skips loudly without it, fails under `STRATA_REQUIRE_ALL=1`.

#[macro_use]
mod lab;

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::Duration;

use strata_agent::flow_table::FlowTable;
use strata_agent::loader::LoaderConfig;

const CAPACITY: u32 = 8;
const CONNECTIONS: usize = 64;

#[test]
fn evictions_from_a_full_socket_map_are_counted() {
    let features = or_skip!(lab::preconditions(&[]));
    let config = LoaderConfig {
        sock_stats_capacity: CAPACITY,
        ..LoaderConfig::default()
    };
    let mut probes = or_skip!(lab::attach_all_with(&features, &config));

    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind loopback");
    let address = listener.local_addr().expect("address");
    let clients: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| TcpStream::connect(address).expect("connect"))
        .collect();
    let servers: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| listener.accept().expect("accept").0)
        .collect();

    let mut sock_stats = probes.take_sock_stats().expect("sock_stats map");
    let scan = FlowTable::new(u64::MAX)
        .scan(&mut sock_stats, lab::monotonic_ns())
        .expect("scan");
    assert!(
        scan.entries <= CAPACITY as usize,
        "{} entries in a map of {CAPACITY}",
        scan.entries
    );

    drop(clients);
    for mut server in servers {
        server
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let _ = server.read(&mut [0u8; 1]); // sees the client's FIN
    }
    // 128 sockets through 8 slots: at least 120 were evicted before their close. The last
    // closes (LAST_ACK -> CLOSE) may come a moment after the reads.
    let expected = (2 * CONNECTIONS) as u64 - u64::from(CAPACITY);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let (missing, counters) = loop {
        let counters = probes.counters().expect("counters");
        let missing = counters["sock_stats_missing"];
        if missing >= expected || std::time::Instant::now() > deadline {
            break (missing, counters);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Every attached program reports its recursion misses: runs the kernel skipped (a close
    // among them would be lost before any counter saw it).
    let misses = probes.recursion_misses();
    for hook in probes.hooks().keys() {
        if let Some(program) = probes
            .program_of(*hook)
            .filter(|_| probes.is_attached(*hook))
        {
            assert!(
                misses.contains_key(program),
                "no recursion misses read for {program}: {misses:?}"
            );
        }
    }
    assert!(
        missing >= expected,
        "only {missing} closes of evicted sockets counted; kernel counters {counters:?}, \
         programs' recursion misses {misses:?}"
    );
    drop(sock_stats);
    lab::assert_detached_on_drop(probes);
}
