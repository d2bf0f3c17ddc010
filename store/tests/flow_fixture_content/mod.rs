//! The records of the flow store fixtures (`tests/fixtures/vN/flows/`): every field kind, both address
//! families, records with and without the stored-only fields. Never change them: old fixtures must
//! keep reading back as these.

use std::net::IpAddr;

use strata_store::flows::FlowRecord;

/// The fixture's partition starts here (an hour boundary, Unix ns).
pub const T0: i64 = 1_764_194_400_000_000_000;

/// Record `i` of the fixture, `i` in `0..RECORDS`, ending `i` seconds after [`T0`].
pub fn record(i: u64) -> FlowRecord {
    let mut r = FlowRecord::default();
    r.src.ip = Some(if i % 5 == 4 {
        IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, i as u16 + 1])
    } else {
        IpAddr::from([10, 0, 0, i as u8 + 1])
    });
    r.src.port = 40_000 + i;
    r.src.namespace = format!("ns-{}", i % 2);
    r.src.workload = format!("client-{}", i % 3);
    r.src.workload_kind = "Deployment".into();
    r.src.pod = format!("client-{}-{i}", i % 3);
    r.src.node = format!("node-{}", i % 2);
    r.observer_node = r.src.node.clone();
    r.ip_family = if i % 5 == 4 { "ipv6" } else { "ipv4" }.into();
    r.interval_end = T0 + i as i64 * 1_000_000_000;
    r.interval_start = r.interval_end - 10_000_000_000;
    r.bytes_tx = 100 + 17 * i;
    r.bytes_rx = 5000 + 31 * i;
    r.packets_tx = 1 + i % 4;
    r.packets_rx = 2 + i % 3;
    if i.is_multiple_of(3) {
        r.protocol = "udp".into();
        r.dst.ip = Some(IpAddr::from([10, 96, 0, 10]));
        r.dst.port = 53;
        r.dst.namespace = "kube-system".into();
        r.dst.workload = "coredns".into();
        r.dns.query = format!("svc-{}.example.com", i % 4);
        r.dns.qtype = "A".into();
        r.dns.rcode = if i.is_multiple_of(6) {
            "NXDOMAIN"
        } else {
            "NOERROR"
        }
        .into();
        if !i.is_multiple_of(6) {
            r.dns.answers = vec!["192.0.2.1".into(), format!("192.0.2.{}", i + 2)];
        }
        r.dns.latency_us = 250 + i;
    } else {
        r.protocol = "tcp".into();
        r.dst.ip = Some(IpAddr::from([10, 1, 0, (i % 4) as u8 + 1]));
        r.dst.port = 8080;
        r.dst.namespace = "prod".into();
        r.dst.workload = "core-api".into();
        r.dst.workload_kind = "StatefulSet".into();
        r.dst.pod = format!("core-api-{}", i % 4);
        r.dst.node = "node-9".into();
        r.tcp.flags = 0x1a;
        r.tcp.srtt_us = 300 + 7 * i;
        r.tcp.srtt_min_us = 200;
        r.tcp.retransmits = i % 4;
        r.tcp.connect = if i.is_multiple_of(7) { "refused" } else { "ok" }.into();
        r.http.requests = 1 + i % 4;
        r.http.methods = if i.is_multiple_of(2) {
            vec!["GET".into()]
        } else {
            vec!["GET".into(), "POST".into()]
        };
        r.http.responses_2xx = r.http.requests;
        r.http.status = vec![(200, r.http.requests)];
        if i % 4 == 1 {
            r.http.responses_5xx = 1;
            r.http.status.push((503, 1));
        }
        r.http.latency_sum_us = 900 * r.http.requests;
        r.http.latency_max_us = 1200;
        r.http.trace_ids = vec![format!("{:032x}", 0xabc0 + i)];
        r.verdict = "forwarded".into();
    }
    r
}

pub const RECORDS: u64 = 60;

/// Records `0..40` are in the partition's two segments (committed after 20 and 40), `40..60` only in
/// the WAL.
pub const COMMITTED: [u64; 2] = [20, 40];
