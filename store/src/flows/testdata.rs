//! Deterministic flow records for the store's unit tests.

use std::net::IpAddr;

use super::record::FlowRecord;

/// `n` varied records ending one second apart from `t0_ns` on.
pub fn sample_records(n: usize, t0_ns: i64) -> Vec<FlowRecord> {
    (0..n)
        .map(|i| {
            let mut r = FlowRecord::default();
            r.src.ip = Some(IpAddr::from([10, 0, (i / 250) as u8, (i % 250) as u8 + 1]));
            r.src.port = 30_000 + i as u64;
            r.src.namespace = format!("ns-{}", i % 3);
            r.src.workload = format!("client-{}", i % 5);
            r.src.workload_kind = "Deployment".into();
            r.src.pod = format!("client-{}-abc{i}", i % 5);
            r.src.node = format!("node-{}", i % 2);
            r.dst.port = if i % 4 == 0 { 53 } else { 8080 };
            r.protocol = if i % 4 == 0 { "udp" } else { "tcp" }.into();
            r.ip_family = "ipv4".into();
            r.observer_node = r.src.node.clone();
            r.interval_end = t0_ns + i as i64 * 1_000_000_000;
            r.interval_start = r.interval_end - 10_000_000_000;
            r.bytes_tx = 100 * (i as u64 + 1);
            r.bytes_rx = 1000 + i as u64;
            r.packets_tx = 1 + i as u64 % 7;
            r.packets_rx = 2 + i as u64 % 5;
            if i % 4 == 0 {
                r.dst.ip = Some(IpAddr::from([10, 96, 0, 10]));
                r.dst.namespace = "kube-system".into();
                r.dst.workload = "coredns".into();
                r.dns.query = format!("svc-{}.example.com", i % 6);
                r.dns.qtype = "A".into();
                r.dns.rcode = if i % 8 == 0 { "NXDOMAIN" } else { "NOERROR" }.into();
                r.dns.answers = vec!["192.0.2.1".into()];
                r.dns.latency_us = 300 + i as u64;
            } else if i % 7 == 0 {
                r.dst.ip = Some(IpAddr::from([203, 0, 113, 9]));
                r.dst.name = "api.twilio.com".into();
                r.tcp.connect = "ok".into();
                r.tcp.flags = 0x1b;
            } else {
                r.dst.ip = Some(IpAddr::from([10, 1, 0, (i % 9) as u8]));
                r.dst.namespace = "prod".into();
                r.dst.workload = format!("server-{}", i % 3);
                r.dst.workload_kind = "StatefulSet".into();
                r.tcp.connect = if i % 11 == 0 { "refused" } else { "ok" }.into();
                r.tcp.retransmits = if i % 5 == 0 { i as u64 % 4 } else { 0 };
                r.tcp.srtt_us = 200 + i as u64 * 3;
                r.tcp.srtt_min_us = 150;
                r.tcp.flags = 0x1b;
                r.http.requests = 1 + i as u64 % 3;
                r.http.methods = vec!["GET".into()];
                if i % 6 == 1 {
                    r.http.responses_5xx = 1;
                    r.http.status = vec![(200, r.http.requests - 1), (503, 1)];
                } else {
                    r.http.responses_2xx = r.http.requests;
                    r.http.status = vec![(200, r.http.requests)];
                }
                r.http.status.retain(|&(_, n)| n > 0);
                r.http.latency_sum_us = 1000 * r.http.requests;
                r.http.latency_max_us = 1500;
                r.http.trace_ids = vec![format!("{:032x}", i + 1)];
            }
            r
        })
        .collect()
}
