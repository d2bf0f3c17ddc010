//! The cgroup_skb packet parsing in C, fed exact frames through BPF_PROG_TEST_RUN: DNS responses
//! over IPv4 (with and without IP options) and IPv6, one larger than the capture, and packets
//! the programs must leave alone (a non-first fragment, another UDP port). No traffic, no
//! namespaces; the kernel gives each run a throwaway socket, so responses arrive without their
//! query, which also exercises the unmatched-response counter. The same way, bursts of records
//! show the ring's batched wakeup (nobody is woken below the threshold, the reader is past it)
//! and that records which do not fit are counted.
//!
//! Needs root; skips loudly without it, fails under `STRATA_REQUIRE_ALL=1`.

#[macro_use]
mod lab;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use lab::EventLog;
use strata_agent::dns::record_type;
use strata_agent::event_reader::EventReaderConfig;
use strata_agent::events::{DnsResponse, Event, Role};
use strata_agent::loader::Hook;
use strata_agent::loader::LoaderConfig;
use strata_ebpf::abi;

const RESOLVER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
const RESOLVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x53, 0, 0, 0, 0, 0x53);
const CLIENT_PORT: u16 = 40_053;

fn dns_response(id: u16, name: &str, answers: &[IpAddr]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&0x8180u16.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    let qtype = match answers.first() {
        Some(IpAddr::V6(_)) => record_type::AAAA,
        _ => record_type::A,
    };
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    for answer in answers {
        out.extend_from_slice(&[0xc0, 12]);
        let rdata = match answer {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        let rtype = if rdata.len() == 4 {
            record_type::A
        } else {
            record_type::AAAA
        };
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&30u32.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    out
}

fn udp(source_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&source_port.to_be_bytes());
    out.extend_from_slice(&CLIENT_PORT.to_be_bytes());
    out.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]); // checksum: not verified on this path
    out.extend_from_slice(payload);
    out
}

fn ethernet(ethertype: u16, packet: &[u8]) -> Vec<u8> {
    let mut out = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.extend_from_slice(packet);
    out
}

/// `options`: 32-bit words of IP options; `fragment_offset` in 8-byte units.
fn ipv4_frame(udp: &[u8], options: usize, fragment_offset: u16) -> Vec<u8> {
    let header_len = 20 + 4 * options;
    let mut ip = vec![0x40 | (header_len / 4) as u8, 0];
    ip.extend_from_slice(&((header_len + udp.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1]);
    ip.extend_from_slice(&fragment_offset.to_be_bytes());
    ip.extend_from_slice(&[64, 17, 0, 0]);
    ip.extend_from_slice(&RESOLVER_V4.octets());
    ip.extend_from_slice(&lab::CLIENT_V4.octets());
    ip.extend(std::iter::repeat_n(1u8, 4 * options)); // NOP options
    ip.extend_from_slice(udp);
    ethernet(0x0800, &ip)
}

fn ipv6_frame(udp: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[17, 64]);
    ip.extend_from_slice(&RESOLVER_V6.octets());
    ip.extend_from_slice(&lab::CLIENT_V6.octets());
    ip.extend_from_slice(udp);
    ethernet(0x86dd, &ip)
}

fn response_with_id(events: &[Event], id: u16) -> Option<&DnsResponse> {
    events.iter().find_map(|event| match event {
        Event::Dns(response)
            if response.dns_id == id && response.endpoints.local.port() == CLIENT_PORT =>
        {
            Some(response)
        }
        _ => None,
    })
}

#[test]
fn cgroup_programs_parse_crafted_dns_frames() {
    let features = or_skip!(lab::preconditions(&[]));
    let mut probes = or_skip!(lab::attach_all(&features));
    let log = EventLog::start(&mut probes);

    let v4_answer: IpAddr = "192.0.2.10".parse().unwrap();
    let v6_answer: IpAddr = "2001:db8::10".parse().unwrap();
    let many: Vec<IpAddr> = (1..=60u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(192, 0, 2, i)))
        .collect();
    let frames = [
        ipv4_frame(
            &udp(53, &dns_response(0x0101, "a.strata.test", &[v4_answer])),
            0,
            0,
        ),
        ipv4_frame(
            &udp(53, &dns_response(0x0202, "b.strata.test", &[v4_answer])),
            2,
            0,
        ),
        ipv6_frame(&udp(
            53,
            &dns_response(0x0303, "c.strata.test", &[v6_answer]),
        )),
        ipv4_frame(
            &udp(53, &dns_response(0x0404, "d.strata.test", &[v4_answer])),
            0,
            10,
        ),
        ipv4_frame(
            &udp(5353, &dns_response(0x0505, "e.strata.test", &[v4_answer])),
            0,
            0,
        ),
        ipv4_frame(
            &udp(53, &dns_response(0x0606, "f.strata.test", &many)),
            0,
            0,
        ),
    ];
    for frame in &frames {
        let verdict = probes
            .run_on_frame(Hook::CgroupIngress, frame, 1)
            .expect("test run");
        assert_eq!(verdict, 1, "observers never drop");
    }

    log.wait_until(Duration::from_secs(3), |events| {
        [0x0101, 0x0202, 0x0303, 0x0606]
            .iter()
            .all(|id| response_with_id(events, *id).is_some())
    });
    // A few more reader ticks, for anything that should not have come.
    std::thread::sleep(Duration::from_millis(200));
    let events = log.wait_until(Duration::ZERO, |_| true);

    let plain = response_with_id(&events, 0x0101).expect("plain IPv4 response");
    assert_eq!(
        plain.role,
        Role::Client,
        "arriving responses are the resolver's side"
    );
    assert_eq!(plain.endpoints.remote, SocketAddr::from((RESOLVER_V4, 53)));
    assert_eq!(
        plain.endpoints.local,
        SocketAddr::from((lab::CLIENT_V4, CLIENT_PORT))
    );
    assert_eq!(
        plain.query_ns, None,
        "a fresh socket per run: its query was never seen"
    );
    let message = plain.message.as_ref().expect("parses");
    assert_eq!(
        message.question.as_ref().map(|q| q.name.as_str()),
        Some("a.strata.test")
    );
    assert_eq!(message.addresses().collect::<Vec<_>>(), vec![v4_answer]);

    let with_options = response_with_id(&events, 0x0202).expect("IPv4 with options");
    assert_eq!(
        with_options.message.as_ref().map(|m| m.addresses().count()),
        Ok(1),
        "payload found past the IP options"
    );

    let v6 = response_with_id(&events, 0x0303).expect("IPv6 response");
    assert_eq!(v6.endpoints.remote, SocketAddr::from((RESOLVER_V6, 53)));
    assert_eq!(
        v6.message
            .as_ref()
            .map(|m| m.addresses().collect::<Vec<_>>()),
        Ok(vec![v6_answer])
    );

    let large = response_with_id(&events, 0x0606).expect("response beyond the capture");
    let message = large.message.as_ref().expect("header and question fit");
    assert!(message.truncated, "60 answers do not fit in 512 bytes");
    assert!(message.addresses().count() > 20);

    assert!(
        response_with_id(&events, 0x0404).is_none(),
        "non-first fragment ignored"
    );
    assert!(response_with_id(&events, 0x0505).is_none(), "not DNS port");

    let counters = probes.counters().expect("counters");
    assert!(counters["dns_unmatched"] >= 4, "{counters:?}");
    assert_eq!(counters["ringbuf_lost_dns"], 0, "{counters:?}");
    assert_eq!(log.decode_errors(), 0);
    lab::assert_detached_on_drop(probes);
}

fn count_with_id(events: &[Event], id: u16) -> usize {
    events
        .iter()
        .filter(|event| matches!(event, Event::Dns(r) if r.dns_id == id))
        .count()
}

/// Records are written without waking the reader until a quarter of the ring is unread; past
/// that the kernel forces a wakeup. With the reader's tick an hour away, a burst bigger than the
/// threshold must still arrive at once, and a burst below it must wait.
#[test]
fn a_burst_past_the_threshold_wakes_the_reader() {
    let features = or_skip!(lab::preconditions(&[]));
    let config = LoaderConfig {
        ring_buffer_bytes: 1 << 20, // wakeup past 256 KiB unread
        ..LoaderConfig::default()
    };
    let mut probes = or_skip!(lab::attach_all_with(&features, &config));
    let log = EventLog::start_with(
        &mut probes,
        &EventReaderConfig {
            tick: Duration::from_secs(3600),
            ..EventReaderConfig::default()
        },
    );
    // The first tick of a tokio interval fires at once; let it pass before the bursts.
    std::thread::sleep(Duration::from_millis(100));

    let small = ipv4_frame(&udp(53, &dns_response(0x0a0a, "w.strata.test", &[])), 0, 0);
    probes
        .run_on_frame(Hook::CgroupIngress, &small, 10)
        .expect("test run");
    let quiet = log.wait_until(Duration::from_millis(300), |events| {
        count_with_id(events, 0x0a0a) > 0
    });
    assert_eq!(
        count_with_id(&quiet, 0x0a0a),
        0,
        "below the threshold nobody is woken"
    );

    // About 600 bytes a record: 1000 records pass 256 KiB unread.
    let many: Vec<IpAddr> = (1..=30u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(192, 0, 2, i)))
        .collect();
    let large = ipv4_frame(
        &udp(53, &dns_response(0x0b0b, "w.strata.test", &many)),
        0,
        0,
    );
    let started = Instant::now();
    probes
        .run_on_frame(Hook::CgroupIngress, &large, 1000)
        .expect("test run");
    let events = log.wait_until(Duration::from_secs(5), |events| {
        count_with_id(events, 0x0b0b) == 1000
    });
    assert_eq!(count_with_id(&events, 0x0b0b), 1000, "woken and drained");
    assert_eq!(
        count_with_id(&events, 0x0a0a),
        10,
        "the quiet records came along"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    lab::assert_detached_on_drop(probes);
}

/// Nobody reads a small ring: the kernel drops what does not fit and counts every record.
#[test]
fn records_that_do_not_fit_are_counted() {
    let features = or_skip!(lab::preconditions(&[]));
    let config = LoaderConfig {
        ring_buffer_bytes: 64 << 10,
        ..LoaderConfig::default()
    };
    let probes = or_skip!(lab::attach_all_with(&features, &config));
    let payload = dns_response(0x0c0c, "x.strata.test", &[]);
    let frame = ipv4_frame(&udp(53, &payload), 0, 0);
    const RUNS: u64 = 2000;
    probes
        .run_on_frame(Hook::CgroupIngress, &frame, RUNS as u32)
        .expect("test run");
    // A record is the fixed part plus the payload, behind an 8-byte ring header, 8-aligned.
    let record = (abi::DNS_MESSAGE_FIXED_LEN + payload.len() + 8).next_multiple_of(8) as u64;
    let fit = u64::from(config.ring_buffer_bytes) / record;
    let counters = probes.counters().expect("counters");
    // Other DNS on this host passes the root-attached programs too and can only add losses.
    assert!(
        counters["ringbuf_lost_dns"] >= RUNS - fit,
        "{RUNS} records of {record} bytes into a ring that holds {fit}: {counters:?}"
    );
    lab::assert_detached_on_drop(probes);
}
