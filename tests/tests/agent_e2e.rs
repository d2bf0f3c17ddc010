//! The node agent end to end, as root: pods are network namespaces on a bridge, each process in
//! a cgroup laid out as the kubelet lays it out; a fixture Kubernetes API serves those pods; the
//! `strata-agent` binary watches the traffic and exports to a `strata` server. Every assertion
//! goes through the store's public APIs: flow search, PromQL, exemplars and Tempo.
//!
//! Needs root, `ip`, `nft`, `python3`, cgroup2 and kernel BTF; skips loudly without them and fails
//! under `STRATA_REQUIRE_ALL=1`.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use strata_tests::cluster::{now_s, serve, sum, Cluster, NODE};
use strata_tests::pods::APP;
use strata_tests::{http, wait_for};

const STRATA: &str = env!("CARGO_BIN_EXE_strata-e2e");
const AGENT: &str = env!("CARGO_BIN_EXE_strata-agent-e2e");

fn b64(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn http_and_tcp_golden_signals_by_workload() {
    let Some((cluster, pods)) = Cluster::start(
        STRATA,
        AGENT,
        &[
            ("tenant-jobs", "resumes", "Deployment"),
            ("tenant-jobs", "core-api", "Deployment"),
        ],
    ) else {
        return;
    };
    let (resumes, core_api) = (&pods[0], &pods[1]);
    let core_ip = core_api.ip.to_string();
    let _http = serve(core_api, &["python3", APP, "http-server", "8080"]);
    let _sink = serve(core_api, &["python3", APP, "tcp-sink", "9000", "12345"]);

    // TCP bytes in both directions, exactly.
    let received = resumes.run(&["python3", APP, "tcp-send", &core_ip, "9000", "70000"]);
    assert_eq!(received.trim(), "12345");
    // HTTP: slow successes with trace context, then failures.
    let url = format!("http://{core_ip}:8080/work?sleep_ms=100");
    let traced = resumes.run(&["python3", APP, "http-client", &url, "5", "--traceparent"]);
    let failing = format!("http://{core_ip}:8080/work?status=500");
    resumes.run(&["python3", APP, "http-client", &failing, "3"]);

    let pair = r#"src.namespace="tenant-jobs" and src.workload="resumes" and dst.namespace="tenant-jobs" and dst.workload="core-api""#;
    let tcp = cluster.flows_until(&format!("{pair} and dst.port=9000"), |flows| {
        sum(flows, "bytes_tx") >= 70_000 && sum(flows, "bytes_rx") >= 12_345
    });
    assert_eq!(sum(&tcp, "bytes_tx"), 70_000, "{tcp:#?}");
    assert_eq!(sum(&tcp, "bytes_rx"), 12_345, "{tcp:#?}");
    let first = &tcp[0];
    assert_eq!(first["src.pod"], resumes.name.as_str());
    assert_eq!(first["dst.pod"], core_api.name.as_str());
    assert_eq!(first["src.workload_kind"], "Deployment");
    assert_eq!(first["dst.ip"], core_ip.as_str());
    assert_eq!(first["protocol"], "tcp");
    assert_eq!(first["observer.node"], NODE);
    assert!(
        tcp.iter().any(|flow| flow["tcp.connect"] == "ok"),
        "{tcp:#?}"
    );

    let http_flows = cluster.flows_until(&format!("{pair} and dst.port=8080"), |flows| {
        sum(flows, "http.requests") >= 8
    });
    assert_eq!(sum(&http_flows, "http.requests"), 8);
    assert_eq!(sum(&http_flows, "http.responses_2xx"), 5);
    assert_eq!(sum(&http_flows, "http.responses_5xx"), 3);
    let errors = cluster.flows(&format!("{pair} and http.status>=500"));
    assert!(
        !errors.is_empty(),
        "the status filter finds the failing flows"
    );

    // Golden signals through PromQL, for exactly the pair.
    let labels = r#"src_namespace="tenant-jobs",src_workload="resumes",dst_namespace="tenant-jobs",dst_workload="core-api""#;
    for side in ["server", "client"] {
        let ok = format!(
            r#"sum(http_{side}_request_duration_seconds_count{{{labels},http_response_status_code="200"}})"#
        );
        assert_eq!(cluster.promql_until(&ok, |v| v >= 5.0), 5.0, "{ok}");
        let failed = format!(
            r#"sum(http_{side}_request_duration_seconds_count{{{labels},http_response_status_code="500"}})"#
        );
        assert_eq!(cluster.promql_until(&failed, |v| v >= 3.0), 3.0, "{failed}");
    }
    let mean = format!(
        r#"sum(http_server_request_duration_seconds_sum{{{labels},http_response_status_code="200"}}) / sum(http_server_request_duration_seconds_count{{{labels},http_response_status_code="200"}})"#
    );
    let mean = cluster.promql(&mean).expect("mean latency");
    assert!(
        (0.1..1.0).contains(&mean),
        "the server sleeps 100 ms: mean {mean}"
    );
    let slow = format!(
        r#"sum(http_server_request_duration_seconds_bucket{{{labels},http_response_status_code="200",le="0.075"}})"#
    );
    assert_eq!(
        cluster.promql(&slow),
        Some(0.0),
        "none of the slow requests is under 75 ms"
    );
    let bytes =
        format!(r#"sum(network_tcp_bytes_total{{{labels},network_io_direction="transmit"}})"#);
    assert!(cluster.promql_until(&bytes, |v| v >= 70_000.0) >= 70_000.0);

    // Every traced request became a server span under the client's id, and a client span.
    let sent: Vec<Value> = traced
        .lines()
        .map(|line| serde_json::from_str(line).expect("client line"))
        .collect();
    assert_eq!(sent.len(), 5);
    for request in &sent {
        let trace_id = request["trace_id"].as_str().expect("trace id");
        let parent_id = request["parent_id"].as_str().expect("parent id");
        let trace: Value = wait_for(Duration::from_secs(30), || {
            let response = http()
                .get(
                    cluster
                        .strata
                        .url(&format!("/tempo/api/v2/traces/{trace_id}")),
                )
                .send()
                .ok()?;
            response
                .status()
                .is_success()
                .then(|| response.json().ok())?
        })
        .unwrap_or_else(|| panic!("trace {trace_id} not found"));
        let spans: Vec<(&Value, &Value)> = trace["trace"]["resourceSpans"]
            .as_array()
            .expect("resourceSpans")
            .iter()
            .flat_map(|resource| {
                resource["scopeSpans"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|scope| scope["spans"].as_array().into_iter().flatten())
                    .map(move |span| (&resource["resource"], span))
            })
            .collect();
        let server = spans
            .iter()
            .find(|(_, span)| span["kind"] == "SPAN_KIND_SERVER")
            .unwrap_or_else(|| panic!("no server span in {trace:#}"));
        assert_eq!(
            server.1["parentSpanId"],
            b64(parent_id).as_str(),
            "{trace:#}"
        );
        let service = server.0["attributes"]
            .as_array()
            .expect("resource attributes")
            .iter()
            .find(|kv| kv["key"] == "service.name")
            .map(|kv| kv["value"]["stringValue"].clone());
        assert_eq!(service, Some(Value::from("core-api")));
        let client = spans
            .iter()
            .find(|(_, span)| span["kind"] == "SPAN_KIND_CLIENT")
            .unwrap_or_else(|| panic!("no client span in {trace:#}"));
        assert_eq!(client.1["spanId"], b64(parent_id).as_str(), "{trace:#}");
    }

    // The latency histogram's exemplars open those traces.
    let trace_ids: BTreeSet<&str> = sent.iter().filter_map(|r| r["trace_id"].as_str()).collect();
    let now = now_s();
    let exemplars: Value = http()
        .get(cluster.strata.url("/prometheus/api/v1/query_exemplars"))
        .query(&[
            (
                "query",
                format!("http_server_request_duration_seconds_bucket{{{labels}}}"),
            ),
            ("start", (now - 600).to_string()),
            ("end", (now + 60).to_string()),
        ])
        .send()
        .expect("exemplars")
        .json()
        .expect("exemplar JSON");
    let found: BTreeSet<String> = exemplars["data"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|series| series["exemplars"].as_array().into_iter().flatten())
        .filter_map(|exemplar| exemplar["labels"]["trace_id"].as_str().map(str::to_owned))
        .collect();
    assert!(
        found.iter().any(|id| trace_ids.contains(id.as_str())),
        "exemplars {found:?} name none of {trace_ids:?}"
    );

    // The agent counts what it loses at every stage, so a loss is never silent. (It watches the
    // whole host, so how much it loses here depends on what else runs; the benchmark measures it.)
    let metrics = cluster.agent_metrics().expect("agent metrics");
    for series in [
        r#"strata_agent_lost_total{stage="reader",reason="channel_full"}"#,
        r#"strata_agent_lost_total{stage="flows",reason="interval_full"}"#,
        r#"strata_agent_export_dropped_total{signal="logs",reason="queue_full"}"#,
    ] {
        assert!(
            metrics.lines().any(|line| line.starts_with(series)),
            "{series} missing"
        );
    }
    assert!(
        metrics.contains("strata_agent_kernel_counter_total{counter="),
        "the kernel's loss counters are exported"
    );
    // and the runs the kernel skipped before a program could count anything, per program
    for program in ["strata_inet_sock_set_state", "strata_cgroup_ingress"] {
        let series =
            format!(r#"strata_agent_program_recursion_misses_total{{program="{program}"}}"#);
        assert!(
            metrics.lines().any(|line| line.starts_with(&series)),
            "{series} missing"
        );
    }
}

#[test]
fn network_faults_show_as_retransmits_rtt_and_failed_connects() {
    let Some((mut cluster, pods)) = Cluster::start(
        STRATA,
        AGENT,
        &[
            ("tenant-jobs", "notifications", "Deployment"),
            ("tenant-jobs", "ledger", "StatefulSet"),
            ("tenant-jobs", "blackhole", "Deployment"),
        ],
    ) else {
        return;
    };
    let (client, server, blackhole) = (&pods[0], &pods[1], &pods[2]);
    let server_ip = server.ip.to_string();

    // A clean transfer, then the same with 10% of the client's packets lost.
    let _clean = serve(server, &["python3", APP, "tcp-sink", "9001", "100"]);
    client.run(&["python3", APP, "tcp-send", &server_ip, "9001", "2000000"]);
    cluster.node.lose_from(client, 10);
    let _lossy = serve(server, &["python3", APP, "tcp-sink", "9002", "100"]);
    client.run(&["python3", APP, "tcp-send", &server_ip, "9002", "2000000"]);
    cluster.node.lose_from(client, 0);
    // The same transfer from a pod whose link delays what it sends by 50 ms.
    let far = cluster.add_delayed_pod(
        "tenant-jobs",
        "reports",
        "Deployment",
        Duration::from_millis(50),
    );
    let _slow = serve(server, &["python3", APP, "tcp-sink", "9003", "100"]);
    far.run(&["python3", APP, "tcp-send", &server_ip, "9003", "200000"]);

    let pair = r#"src.workload="notifications" and dst.workload="ledger""#;
    let clean = cluster.flows_until(&format!("{pair} and dst.port=9001"), |f| {
        sum(f, "bytes_tx") >= 2_000_000
    });
    assert!(
        sum(&clean, "tcp.retransmits") <= 2,
        "a clean link barely retransmits: {clean:#?}"
    );
    let lossy = cluster.flows_until(&format!("{pair} and dst.port=9002"), |f| {
        sum(f, "bytes_tx") >= 2_000_000
    });
    assert!(
        sum(&lossy, "tcp.retransmits") >= 10,
        "10% loss retransmits: {lossy:#?}"
    );
    assert!(!cluster
        .flows(&format!("{pair} and tcp.retransmits>0"))
        .is_empty());
    let clean_srtt = clean
        .iter()
        .filter_map(|f| f["tcp.srtt_us"].as_u64())
        .max()
        .unwrap_or(0);
    assert!(
        (1..20_000).contains(&clean_srtt),
        "RTT over a veth: {clean_srtt} us"
    );
    let lossy_srtt = lossy
        .iter()
        .filter_map(|f| f["tcp.srtt_us"].as_u64())
        .max()
        .unwrap_or(0);
    assert!(lossy_srtt > 0, "{lossy:#?}");

    let labels = r#"src_workload="notifications",dst_workload="ledger""#;
    let retransmits = format!("sum(network_tcp_retransmits_total{{{labels}}})");
    assert!(cluster.promql_until(&retransmits, |v| v >= 10.0) >= 10.0);
    let rtt = format!("sum(network_tcp_rtt_seconds_count{{{labels}}})");
    assert!(
        cluster.promql_until(&rtt, |v| v >= 2.0) >= 2.0,
        "one RTT observation per connection and interval"
    );
    let near = format!(r#"sum(network_tcp_rtt_seconds_bucket{{{labels},le="0.025"}})"#);
    assert!(
        cluster.promql(&near).unwrap_or(0.0) >= 1.0,
        "a veth's RTT is under 25 ms"
    );
    let far_labels = r#"src_workload="reports",dst_workload="ledger""#;
    let far_count = format!("sum(network_tcp_rtt_seconds_count{{{far_labels}}})");
    assert!(cluster.promql_until(&far_count, |v| v >= 1.0) >= 1.0);
    let far_near = format!(r#"sum(network_tcp_rtt_seconds_bucket{{{far_labels},le="0.025"}})"#);
    assert_eq!(
        cluster.promql(&far_near),
        Some(0.0),
        "none of the delayed RTTs is under 25 ms"
    );

    // Refused: nothing listens. Timeout: the SYN-ACKs never come back.
    assert_eq!(
        client
            .run(&["python3", APP, "connect", &server_ip, "9999", "5"])
            .trim(),
        "refused"
    );
    cluster.node.lose_from(blackhole, 100);
    cluster.node.sysctl(client, "net.ipv4.tcp_syn_retries=1");
    let blackhole_ip = blackhole.ip.to_string();
    let _listener = serve(blackhole, &["python3", APP, "tcp-sink", "9004", "0"]);
    assert_eq!(
        client
            .run(&["python3", APP, "connect", &blackhole_ip, "9004", "30"])
            .trim(),
        "timeout"
    );
    let refused = cluster.flows_until(&format!(r#"{pair} and tcp.connect="refused""#), |f| {
        !f.is_empty()
    });
    assert_eq!(refused[0]["dst.port"], 9999);
    let timeout = cluster.flows_until(
        r#"src.workload="notifications" and dst.workload="blackhole" and tcp.connect="timeout""#,
        |f| !f.is_empty(),
    );
    assert_eq!(timeout[0]["dst.port"], 9004);
    let outcomes =
        r#"sum by (outcome) (network_tcp_connections_total{src_workload="notifications"})"#;
    let refused_count =
        r#"sum(network_tcp_connections_total{src_workload="notifications",outcome="refused"})"#;
    assert!(
        cluster.promql_until(refused_count, |v| v >= 1.0) >= 1.0,
        "{:?}",
        cluster.promql(outcomes)
    );
    let timeout_count =
        r#"sum(network_tcp_connections_total{src_workload="notifications",outcome="timeout"})"#;
    assert!(cluster.promql_until(timeout_count, |v| v >= 1.0) >= 1.0);
}

#[test]
fn dns_names_external_destinations() {
    let Some((mut cluster, pods)) = Cluster::start(
        STRATA,
        AGENT,
        &[
            ("tenant-jobs", "notifications", "Deployment"),
            ("kube-system", "coredns", "Deployment"),
        ],
    ) else {
        return;
    };
    let (client, dns) = (&pods[0], &pods[1]);
    let (external, _dns) = cluster.external_service(client, dns, "api.twilio.com");
    let external_ip: Ipv4Addr = external.ip;
    let _api = serve(&external, &["python3", APP, "tcp-sink", "443", "4096"]);

    assert_eq!(
        client
            .run(&["python3", APP, "resolve", "api.twilio.com"])
            .trim(),
        external_ip.to_string()
    );
    assert_eq!(
        client
            .run(&["python3", APP, "resolve", "nope.example.com"])
            .trim(),
        "NXDOMAIN"
    );
    let received = client.run(&[
        "python3",
        APP,
        "tcp-send",
        &external_ip.to_string(),
        "443",
        "5000",
    ]);
    assert_eq!(received.trim(), "4096");

    let lookups = cluster.flows_until(
        r#"src.workload="notifications" and dst.workload="coredns" and dns.query="api.twilio.com""#,
        |f| !f.is_empty(),
    );
    let answered = lookups
        .iter()
        .find(|f| f["dns.qtype"] == "A")
        .expect("an A lookup");
    assert_eq!(answered["dns.rcode"], "NOERROR");
    assert_eq!(answered["protocol"], "udp");
    assert_eq!(answered["dst.namespace"], "kube-system");
    assert!(answered["dns.answers"]
        .as_array()
        .is_some_and(|a| a.contains(&Value::from(external_ip.to_string()))));
    let nx = cluster.flows_until(
        r#"src.workload="notifications" and dns.rcode="NXDOMAIN""#,
        |f| !f.is_empty(),
    );
    assert_eq!(nx[0]["dns.query"], "nope.example.com");

    let external_flows = cluster.flows_until(
        r#"src.workload="notifications" and dst.name="api.twilio.com""#,
        |f| sum(f, "bytes_tx") >= 5000,
    );
    assert_eq!(sum(&external_flows, "bytes_tx"), 5000);
    assert_eq!(sum(&external_flows, "bytes_rx"), 4096);
    assert!(!cluster.flows(r#"dst.name=~".*twilio.*""#).is_empty());

    let nxdomain = r#"sum(dns_lookup_duration_seconds_count{src_workload="notifications",dns_response_code="NXDOMAIN"})"#;
    assert!(cluster.promql_until(nxdomain, |v| v >= 1.0) >= 1.0);
    let external_bytes = r#"sum(network_tcp_bytes_total{src_workload="notifications",dst_name="api.twilio.com",network_io_direction="transmit"})"#;
    assert_eq!(
        cluster.promql_until(external_bytes, |v| v >= 5000.0),
        5000.0
    );
}
