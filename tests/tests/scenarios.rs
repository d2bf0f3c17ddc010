//! The connectivity scenarios users bring, answered by Strata alone, as root: pods on a
//! node, a fixture Kubernetes API, the agent and the store; faults injected midway; answers read
//! through PromQL, the flow search, Tempo and `/api/v1/diagnose`.
//!
//! 1. HTTP golden signals by identity: `tenant-jobs/resumes → tenant-jobs/core-api` among noisy
//!    workloads; core-api starts answering a share of requests with 500.
//! 2. A transient network fault towards an external destination known by its DNS name: for a
//!    window, its link drops 10% of packets each way and queues the rest for 60 ms.
//! 3. From a latency spike to the trace: core-api answers slower; the latency histogram's
//!    exemplars open traces with the agent's server span.
//! 4. The resolver fails: a workload's lookups of an external name answer SERVFAIL for a window.
//!
//! Needs root, `ip`, `nft`, `python3`, cgroup2 and kernel BTF; skips loudly without them and fails
//! under `STRATA_REQUIRE_ALL=1`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use strata_dashboards::PanelQuery;
use strata_tests::cluster::{serve, sum, Cluster};
use strata_tests::pods::{Pod, APP};
use strata_tests::{http, Peer};

const STRATA: &str = env!("CARGO_BIN_EXE_strata-e2e");
const AGENT: &str = env!("CARGO_BIN_EXE_strata-agent-e2e");
/// Length of each phase of a scenario.
const PHASE: Duration = Duration::from_secs(15);
/// How long the congested path of scenario 2 holds a packet.
const FAULT_DELAY: Duration = Duration::from_millis(60);
/// The agent's export interval in these tests, plus the store's flow commit and slack.
const SETTLE: Duration = Duration::from_secs(8);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

fn secs(ms: i64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

/// Steady HTTP load from `pod` to `url` until dropped.
fn load(pod: &Pod, url: &str, seconds: u64, traced: bool) -> Peer {
    let seconds = seconds.to_string();
    let mut argv = vec!["python3", APP, "http-load", url, &seconds, "20"];
    if traced {
        argv.push("--traceparent");
    }
    Peer(pod.spawn(&argv))
}

fn admin(pod: &Pod, server: &str, settings: &str) {
    let url = format!("http://{server}/admin?{settings}");
    pod.run(&["python3", APP, "http-client", &url, "1"]);
}

/// `GET /api/v1/diagnose` for the window.
fn diagnose(cluster: &Cluster, src: &str, dst: &str, start: i64, end: i64) -> Value {
    let response = http()
        .get(cluster.strata.url("/api/v1/diagnose"))
        .query(&[
            ("src", src),
            ("dst", dst),
            ("start", &secs(start)),
            ("end", &secs(end)),
        ])
        .send()
        .expect("diagnose");
    assert!(response.status().is_success(), "{:?}", response.text());
    response.json().expect("diagnosis JSON")
}

/// The diagnosis of `tenant-jobs/notifications → api.twilio.com` (scenarios 2 and 4).
fn diagnose_twilio(cluster: &Cluster, start: i64, end: i64) -> Value {
    diagnose(
        cluster,
        "tenant-jobs/notifications",
        "api.twilio.com",
        start,
        end,
    )
}

/// A PromQL instant query at `at` (ms); the first sample's value.
fn value_at(cluster: &Cluster, expr: &str, at: i64) -> Option<f64> {
    let body: Value = http()
        .get(cluster.strata.url("/prometheus/api/v1/query"))
        .query(&[("query", expr), ("time", &secs(at))])
        .send()
        .ok()?
        .json()
        .ok()?;
    body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// `GET /api/v1/flows` for `query` over `[start, end]` (ms).
fn search_flows(cluster: &Cluster, query: &str, start: i64, end: i64) -> Vec<Value> {
    let body: Value = http()
        .get(cluster.strata.url("/api/v1/flows"))
        .query(&[
            ("query", query),
            ("start", &secs(start)),
            ("end", &secs(end)),
            ("limit", "1000"),
        ])
        .send()
        .expect("flows")
        .json()
        .expect("flows JSON");
    body["flows"].as_array().cloned().unwrap_or_default()
}

/// The diagnosis names `layer` as at fault, with a claim containing `claim` and a flow query
/// mentioning `flows_mention`, and the `innocent` layers not at fault.
fn assert_blames(
    verdict: &Value,
    layer: &str,
    claim: &str,
    flows_mention: &str,
    innocent: &[&str],
) {
    assert_eq!(verdict["verdict"], verdict_name(layer), "{verdict:#}");
    let claims = verdict["layers"][layer]["claims"].to_string();
    assert!(claims.contains(claim), "{claims}");
    assert!(
        verdict["layers"][layer]["flows"]
            .as_str()
            .is_some_and(|q| q.contains(flows_mention)),
        "{verdict:#}"
    );
    for other in innocent {
        assert_ne!(verdict["layers"][other]["status"], "fault", "{verdict:#}");
    }
}

/// The verdict that blames a layer.
fn verdict_name(layer: &str) -> &str {
    match layer {
        "tcp" => "network",
        "http" => "application",
        other => other,
    }
}

/// The queries of the panels `shown` picks, with `vars` substituted, that run but return no
/// data over `[start, end]` (ms), as "dashboard / panel: expression".
fn panels_without_data(
    cluster: &Cluster,
    vars: &[(&str, &str)],
    shown: impl Fn(&PanelQuery) -> bool,
    start: i64,
    end: i64,
) -> Vec<String> {
    let (mut checked, mut empty) = (0, Vec::new());
    for query in strata_dashboards::panel_queries(vars) {
        if !shown(&query) {
            continue;
        }
        checked += 1;
        let body: Value = http()
            .get(cluster.strata.url("/prometheus/api/v1/query_range"))
            .query(&[
                ("query", query.expr.as_str()),
                ("start", &secs(start)),
                ("end", &secs(end)),
                ("step", "5"),
            ])
            .send()
            .expect("panel query")
            .json()
            .expect("panel JSON");
        assert_eq!(
            body["status"], "success",
            "{} / {}: {body}",
            query.dashboard, query.panel
        );
        if body["data"]["result"].as_array().is_none_or(Vec::is_empty) {
            empty.push(format!(
                "{} / {}: {}",
                query.dashboard, query.panel, query.expr
            ));
        }
    }
    assert!(checked > 0, "no panel chosen");
    empty
}

fn sleep_until(at: Instant) {
    std::thread::sleep(at.saturating_duration_since(Instant::now()));
}

#[test]
fn http_errors_and_latency_are_the_application() {
    let Some((cluster, pods)) = Cluster::start(
        STRATA,
        AGENT,
        &[
            ("tenant-jobs", "resumes", "Deployment"),
            ("tenant-jobs", "core-api", "Deployment"),
            ("billing", "invoices", "Deployment"),
            ("billing", "ledger", "StatefulSet"),
        ],
    ) else {
        return;
    };
    let (resumes, core_api, invoices, ledger) = (&pods[0], &pods[1], &pods[2], &pods[3]);
    let core = format!("{}:8080", core_api.ip);
    let _core = serve(core_api, &["python3", APP, "http-server", "8080"]);
    let _ledger = serve(ledger, &["python3", APP, "http-server", "8080"]);
    let total = 4 * PHASE.as_secs() + 2;
    let _noise = load(
        invoices,
        &format!("http://{}:8080/work", ledger.ip),
        total,
        false,
    );
    let _traffic = load(resumes, &format!("http://{core}/work"), total, true);

    // Healthy, then a third of the requests fail, healthy again, then every answer is 250 ms slower.
    let begin = Instant::now();
    let t0 = now_ms();
    sleep_until(begin + PHASE);
    admin(resumes, &core, "fail_ratio=0.34");
    let failing_from = now_ms();
    sleep_until(begin + 2 * PHASE);
    admin(resumes, &core, "fail_ratio=0");
    let failing_until = now_ms();
    sleep_until(begin + 3 * PHASE);
    admin(resumes, &core, "sleep_ms=250");
    let slow_from = now_ms();
    sleep_until(begin + 4 * PHASE);
    let slow_until = now_ms();
    std::thread::sleep(SETTLE);

    // Rate, errors and latency for exactly the pair.
    let pair = r#"src_namespace="tenant-jobs",src_workload="resumes",dst_namespace="tenant-jobs",dst_workload="core-api""#;
    let rate = format!("sum(rate(http_server_request_duration_seconds_count{{{pair}}}[10s]))");
    let rps = value_at(&cluster, &rate, failing_from).expect("request rate");
    assert!((10.0..=30.0).contains(&rps), "about 20 requests/s: {rps}");
    let errors = format!(
        r#"sum(rate(http_server_request_duration_seconds_count{{{pair},http_response_status_code="500"}}[5s])) or vector(0)"#
    );
    assert_eq!(
        value_at(&cluster, &errors, failing_from - 2000),
        Some(0.0),
        "no 5xx before the fault"
    );
    let during = value_at(&cluster, &errors, failing_until - 1000).expect("error rate");
    assert!(during >= 3.0, "a third of 20/s fail: {during}");
    // The rise starts when the fault started: the first second with a 5xx.
    let step = 1.0;
    let body: Value = http()
        .get(cluster.strata.url("/prometheus/api/v1/query_range"))
        .query(&[
            (
                "query",
                format!(r#"sum(http_server_request_duration_seconds_count{{{pair},http_response_status_code="500"}})"#),
            ),
            ("start", secs(t0)),
            ("end", secs(slow_until)),
            ("step", step.to_string()),
        ])
        .send()
        .expect("query_range")
        .json()
        .expect("JSON");
    let first = body["data"]["result"][0]["values"][0][0]
        .as_f64()
        .expect("a 5xx series")
        * 1000.0;
    let lag = first as i64 - failing_from;
    assert!(
        (-1000..=4000).contains(&lag),
        "5xx first seen {lag} ms after the fault began"
    );
    let noisy = r#"sum(http_server_request_duration_seconds_count{src_workload="invoices",dst_workload="ledger",http_response_status_code="500"}) or vector(0)"#;
    assert_eq!(
        value_at(&cluster, noisy, slow_until),
        Some(0.0),
        "the noisy pair never failed"
    );
    let p95 = format!(
        "histogram_quantile(0.95, sum by (le) (rate(http_server_request_duration_seconds_bucket{{{pair}}}[10s])))"
    );
    let before = value_at(&cluster, &p95, slow_from - 1000).expect("p95 before");
    let after = value_at(&cluster, &p95, slow_until).expect("p95 after");
    assert!(before < 0.1 && after >= 0.25, "p95 {before} → {after}");

    // The verdicts, with their evidence.
    let errors = diagnose(
        &cluster,
        "tenant-jobs/resumes",
        "tenant-jobs/core-api",
        failing_from,
        failing_until,
    );
    assert_eq!(errors["verdict"], "application", "{errors:#}");
    assert_eq!(errors["layers"]["tcp"]["status"], "healthy", "{errors:#}");
    assert_eq!(errors["layers"]["http"]["status"], "fault", "{errors:#}");
    let error_ratio = &errors["layers"]["http"]["evidence"][1];
    assert_eq!(error_ratio["signal"], "error_ratio");
    assert!(
        error_ratio["value"].as_f64().is_some_and(|v| v > 0.2),
        "{error_ratio:#}"
    );
    assert!(error_ratio["promql"]
        .as_str()
        .is_some_and(|q| q.contains("core-api")));
    let slow = diagnose(
        &cluster,
        "tenant-jobs/resumes",
        "tenant-jobs/core-api",
        slow_from,
        slow_until,
    );
    assert_eq!(slow["verdict"], "application", "{slow:#}");
    let claims = slow["layers"]["http"]["claims"].to_string();
    assert!(claims.contains("p95 latency rose"), "{claims}");
    let healthy = diagnose(
        &cluster,
        "billing/invoices",
        "billing/ledger",
        failing_from,
        failing_until,
    );
    assert_eq!(healthy["verdict"], "healthy", "{healthy:#}");

    // The HTTP, TCP and service-map dashboards show this scenario: every panel that is not about
    // something it never did (external destinations, failed connections) returns data.
    let vars = [
        ("namespace", "tenant-jobs"),
        ("workload", "core-api"),
        ("src_namespace", "tenant-jobs"),
        ("src_workload", "resumes"),
        ("side", "server"),
        ("__rate_interval", "30s"),
        ("__interval", "5s"),
        ("__range", "60s"),
    ];
    let not_shown = [
        "external",
        "failed",
        "errors by name",
        "service map (tempo)",
    ];
    let empty = panels_without_data(
        &cluster,
        &vars,
        |query| {
            ["strata-http", "strata-tcp", "strata-service-map"]
                .contains(&query.dashboard_uid.as_str())
                && !not_shown
                    .iter()
                    .any(|word| query.panel.to_lowercase().contains(word))
        },
        t0,
        slow_until,
    );
    assert!(empty.is_empty(), "panels without data: {empty:#?}");

    // Scenario 3: the slow requests' exemplars open traces holding the agent's server span.
    let trace_ids: Vec<String> = slow["layers"]["http"]["exemplar_trace_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|id| id.as_str().map(str::to_owned))
        .collect();
    assert!(!trace_ids.is_empty(), "{slow:#}");
    for id in &trace_ids {
        let trace: Value = http()
            .get(cluster.strata.url(&format!("/tempo/api/v2/traces/{id}")))
            .send()
            .expect("trace")
            .json()
            .expect("trace JSON");
        let text = trace.to_string();
        assert!(text.contains("SPAN_KIND_SERVER"), "trace {id}: {trace:#}");
        assert!(
            text.contains("core-api"),
            "trace {id} names the service: {trace:#}"
        );
    }
    let slowest = &trace_ids[0];
    let trace: Value = http()
        .get(
            cluster
                .strata
                .url(&format!("/tempo/api/v2/traces/{slowest}")),
        )
        .send()
        .expect("trace")
        .json()
        .expect("trace JSON");
    let server_span = trace["trace"]["resourceSpans"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["scopeSpans"].as_array().into_iter().flatten())
        .flat_map(|s| s["spans"].as_array().into_iter().flatten())
        .find(|span| span["kind"] == "SPAN_KIND_SERVER")
        .expect("server span")
        .clone();
    let start: u64 = server_span["startTimeUnixNano"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("start");
    let end: u64 = server_span["endTimeUnixNano"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("end");
    assert!(
        end - start >= 250_000_000,
        "the slowest exemplar's span took {} ms",
        (end - start) / 1_000_000
    );
}

#[test]
fn a_lossy_path_to_an_external_api_is_the_network() {
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
    let (twilio, _dns) = cluster.external_service_behind_link(client, dns, "api.twilio.com");
    let _api = serve(&twilio, &["python3", APP, "http-server", "80"]);

    let total = 3 * PHASE.as_secs() + 2;
    let _traffic = load(client, "http://api.twilio.com:80/work", total, false);
    let begin = Instant::now();
    sleep_until(begin + PHASE);
    // The fault of a congested path: 10% of packets dropped each way, and a queue that holds the
    // rest. Loss alone would leave the RTT flat, since TCP takes no RTT sample from a
    // retransmitted segment; the queue's delay is what the RTT shows.
    cluster.node.impair(&twilio, 10, FAULT_DELAY);
    let lossy_from = now_ms();
    sleep_until(begin + 2 * PHASE);
    cluster.node.impair(&twilio, 0, Duration::ZERO);
    let lossy_until = now_ms();
    sleep_until(begin + 3 * PHASE);
    let healed_until = now_ms();
    std::thread::sleep(SETTLE);

    // Retransmits rise in the window and only there.
    let pair =
        r#"src_namespace="tenant-jobs",src_workload="notifications",dst_name="api.twilio.com""#;
    let retransmits = |at: i64| {
        value_at(
            &cluster,
            &format!("sum(increase(network_tcp_retransmits_total{{{pair}}}[14s]))"),
            at,
        )
    };
    let before = retransmits(lossy_from).unwrap_or(0.0);
    let during = retransmits(lossy_until).expect("retransmits in the window");
    let after = retransmits(healed_until).unwrap_or(0.0);
    assert!(during >= 5.0, "10% loss retransmits: {during}");
    assert!(
        before <= 1.0 && after <= 1.0,
        "only in the window: before {before}, after {after}"
    );
    // The RTT rises in the window and only there.
    let mean = |metric: &str, at: i64| {
        let expr = format!(
            "sum(increase({metric}_sum{{{pair}}}[14s])) / sum(increase({metric}_count{{{pair}}}[14s]))"
        );
        value_at(&cluster, &expr, at)
    };
    let rtt = |at: i64| mean("network_tcp_rtt_seconds", at).expect("the path's RTT");
    let (rtt_before, rtt_during, rtt_after) =
        (rtt(lossy_from), rtt(lossy_until), rtt(healed_until));
    let queued = FAULT_DELAY.as_secs_f64();
    eprintln!(
        "retransmits {before} / {during} / {after}; mean RTT {rtt_before} / {rtt_during} / {rtt_after} s"
    );
    // The forwarder that plays the link adds its own latency when the machine is busy (tests run
    // side by side): the rise is measured against the windows around it.
    assert!(
        rtt_during >= queued / 2.0
            && rtt_during >= 2.0 * rtt_before
            && rtt_during >= 2.0 * rtt_after,
        "mean RTT {rtt_before} s, then {rtt_during} s behind a {queued} s queue, then {rtt_after} s"
    );
    let latency = |at: i64| {
        mean("http_client_request_duration_seconds", at).expect("the caller's request latency")
    };
    let (latency_before, latency_during, latency_after) = (
        latency(lossy_from),
        latency(lossy_until),
        latency(healed_until),
    );
    eprintln!("mean request latency {latency_before} / {latency_during} / {latency_after} s");
    // Every answer crosses the queue once; retransmission timeouts add to that.
    assert!(
        latency_during >= queued
            && latency_during >= 3.0 * latency_before
            && latency_during >= 3.0 * latency_after,
        "mean request latency {latency_before} s, then {latency_during} s under loss, then {latency_after} s"
    );

    // The flow search finds the lossy flows by the DNS name.
    let query =
        r#"src.workload="notifications" and dst.name="api.twilio.com" and tcp.retransmits>0"#;
    let flows = search_flows(&cluster, query, lossy_from - 2000, lossy_until + 3000);
    assert!(sum(&flows, "tcp.retransmits") >= 5, "{flows:#?}");
    assert!(flows
        .iter()
        .all(|f| f["dst.name"] == "api.twilio.com" && f["src.namespace"] == "tenant-jobs"));

    let verdict = diagnose_twilio(&cluster, lossy_from, lossy_until);
    // The caller's requests got slower too, which the HTTP layer reports; the network comes first.
    assert_blames(&verdict, "tcp", "retransmitted", "api.twilio.com", &["dns"]);
    let healed = diagnose_twilio(&cluster, lossy_until, healed_until);
    assert_ne!(healed["verdict"], "network", "{healed:#}");
}

#[test]
fn a_failing_resolver_is_dns() {
    let Some((mut cluster, pods)) = Cluster::start(
        STRATA,
        AGENT,
        &[
            ("tenant-jobs", "notifications", "Deployment"),
            ("tenant-jobs", "resumes", "Deployment"),
            ("kube-system", "coredns", "Deployment"),
        ],
    ) else {
        return;
    };
    let (client, other, dns) = (&pods[0], &pods[1], &pods[2]);
    let (twilio, resolver) = cluster.external_service(client, dns, "api.twilio.com");
    cluster.node.resolver(other, dns.ip);
    let _api = serve(&twilio, &["python3", APP, "http-server", "80"]);
    let zone = |answer: &str| format!("api.twilio.com={answer}");
    let resolver_with = |zone: &str| serve(dns, &["python3", APP, "dns-server", "53", zone]);

    // Every request looks the name up again, as a client without a DNS cache does.
    let total = (3 * PHASE.as_secs() + 2).to_string();
    let each = |pod: &Pod, url: &str| {
        Peer(pod.spawn(&[
            "python3",
            APP,
            "http-load",
            url,
            &total,
            "5",
            "--connect-each",
        ]))
    };
    let _traffic = each(client, "http://api.twilio.com:80/work");
    // Background for the DNS and TCP dashboards: a misspelt name (NXDOMAIN), and connects
    // refused by an external and by an in-cluster destination.
    let _misspelt = each(other, "http://api.twillio.com:80/");
    let _closed_external = each(other, "http://api.twilio.com:81/");
    let _closed_internal = each(other, &format!("http://{}:53/", dns.ip));
    let begin = Instant::now();
    let t0 = now_ms();
    sleep_until(begin + PHASE);
    drop(resolver);
    let failing = resolver_with(&zone("SERVFAIL"));
    let failing_from = now_ms();
    sleep_until(begin + 2 * PHASE);
    drop(failing);
    let _healed = resolver_with(&zone(&twilio.ip.to_string()));
    let failing_until = now_ms();
    sleep_until(begin + 3 * PHASE);
    let healed_until = now_ms();
    std::thread::sleep(SETTLE);

    // The share of the caller's lookups that failed rises in the window and only there.
    let src = r#"src_namespace="tenant-jobs",src_workload="notifications""#;
    let failed_share = |at: i64| {
        value_at(
            &cluster,
            &format!(
                r#"(sum(increase(dns_lookup_duration_seconds_count{{{src},dns_response_code!="NOERROR"}}[14s])) or vector(0)) / sum(increase(dns_lookup_duration_seconds_count{{{src}}}[14s]))"#
            ),
            at,
        )
        .expect("lookups in every window")
    };
    let (before, during, after) = (
        failed_share(failing_from),
        failed_share(failing_until),
        failed_share(healed_until),
    );
    assert!(
        before <= 0.05 && during >= 0.8 && after <= 0.05,
        "failed lookups: {before}, then {during}, then {after}"
    );

    // The flow search finds the failed lookups by name and response code.
    let flows = search_flows(
        &cluster,
        r#"src.workload="notifications" and dns.query="api.twilio.com" and dns.rcode="SERVFAIL""#,
        failing_from - 2000,
        failing_until + 3000,
    );
    assert!(flows.len() >= 10, "SERVFAIL lookups found: {}", flows.len());
    assert!(flows
        .iter()
        .all(|f| f["src.namespace"] == "tenant-jobs" && f["dst.workload"] == "coredns"));

    // The diagnosis names DNS, backs it with the failure share and a flow query, and does not
    // blame the network or the application, which never saw the requests.
    let verdict = diagnose_twilio(&cluster, failing_from, failing_until);
    assert_blames(
        &verdict,
        "dns",
        "DNS lookups failed",
        "api.twilio.com",
        &["tcp", "http"],
    );
    let healed = diagnose_twilio(&cluster, failing_until, healed_until);
    assert_eq!(healed["verdict"], "healthy", "{healed:#}");

    // The DNS dashboard, and the TCP and HTTP panels about external destinations and failed
    // connections, which scenario 1 leaves out, show this scenario.
    let vars = [
        ("namespace", "kube-system"),
        ("workload", "coredns"),
        ("src_namespace", "tenant-jobs"),
        ("src_workload", ".*"),
        ("side", "client"),
        ("__rate_interval", "30s"),
        ("__interval", "5s"),
        ("__range", "60s"),
    ];
    let empty = panels_without_data(
        &cluster,
        &vars,
        |query| {
            let title = query.panel.to_lowercase();
            query.dashboard_uid == "strata-dns"
                || (["strata-tcp", "strata-http"].contains(&query.dashboard_uid.as_str())
                    && (title.contains("external") || title.contains("failed")))
        },
        t0,
        healed_until,
    );
    assert!(empty.is_empty(), "panels without data: {empty:#?}");
}
