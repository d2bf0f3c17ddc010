//! The three connectivity scenarios users bring, answered by Strata alone, as root: pods on a
//! node, a fixture Kubernetes API, the agent and the store; faults injected midway; answers read
//! through PromQL, the flow search, Tempo and `/api/v1/diagnose`.
//!
//! 1. HTTP golden signals by identity: `tenant-jobs/resumes → tenant-jobs/core-api` among noisy
//!    workloads; core-api starts answering a share of requests with 500.
//! 2. A transient network fault towards an external destination known by its DNS name.
//! 3. From a latency spike to the trace: core-api answers slower; the latency histogram's
//!    exemplars open traces with the agent's server span.
//!
//! Needs root, `ip`, `nft`, `python3`, cgroup2 and kernel BTF; skips loudly without them and fails
//! under `STRATA_REQUIRE_ALL=1`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use strata_tests::cluster::{serve, sum, Cluster};
use strata_tests::pods::{Pod, APP};
use strata_tests::{http, Peer};

const STRATA: &str = env!("CARGO_BIN_EXE_strata-e2e");
const AGENT: &str = env!("CARGO_BIN_EXE_strata-agent-e2e");
/// Length of each phase of a scenario.
const PHASE: Duration = Duration::from_secs(15);
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
    let mut empty = Vec::new();
    for query in strata_dashboards::panel_queries(&vars) {
        let shown = ["strata-http", "strata-tcp", "strata-service-map"]
            .contains(&query.dashboard_uid.as_str())
            && !not_shown
                .iter()
                .any(|word| query.panel.to_lowercase().contains(word));
        if !shown {
            continue;
        }
        let body: Value = http()
            .get(cluster.strata.url("/prometheus/api/v1/query_range"))
            .query(&[
                ("query", query.expr.as_str()),
                ("start", &secs(t0)),
                ("end", &secs(slow_until)),
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
    let (twilio, _dns) = cluster.external_service(client, dns, "api.twilio.com");
    let _api = serve(&twilio, &["python3", APP, "http-server", "80"]);

    let total = 3 * PHASE.as_secs() + 2;
    let _traffic = load(client, "http://api.twilio.com:80/work", total, false);
    let begin = Instant::now();
    sleep_until(begin + PHASE);
    cluster.node.lose_from(client, 10);
    cluster.node.lose_from(&twilio, 10);
    let lossy_from = now_ms();
    sleep_until(begin + 2 * PHASE);
    cluster.node.lose_from(client, 0);
    cluster.node.lose_from(&twilio, 0);
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
    // The path's sockets report their round-trip time in every window. It need not rise: TCP
    // takes no RTT sample from a retransmitted segment, so random loss leaves it flat. The loss
    // shows to the caller as retransmission timeouts in its own request latency.
    let mean = |metric: &str, at: i64| {
        let expr = format!(
            "sum(increase({metric}_sum{{{pair}}}[14s])) / sum(increase({metric}_count{{{pair}}}[14s]))"
        );
        value_at(&cluster, &expr, at)
    };
    for at in [lossy_from, lossy_until, healed_until] {
        assert!(mean("network_tcp_rtt_seconds", at).is_some(), "RTT at {at}");
    }
    let latency = |at: i64| {
        mean("http_client_request_duration_seconds", at).expect("the caller's request latency")
    };
    let (latency_before, latency_during, latency_after) = (
        latency(lossy_from),
        latency(lossy_until),
        latency(healed_until),
    );
    assert!(
        latency_during >= 5.0 * latency_before && latency_during >= 5.0 * latency_after,
        "mean request latency {latency_before} s, then {latency_during} s under loss, then {latency_after} s"
    );

    // The flow search finds the lossy flows by the DNS name.
    let query =
        r#"src.workload="notifications" and dst.name="api.twilio.com" and tcp.retransmits>0"#;
    let flows: Value = http()
        .get(cluster.strata.url("/api/v1/flows"))
        .query(&[
            ("query", query),
            ("start", &secs(lossy_from - 2000)),
            ("end", &secs(lossy_until + 3000)),
        ])
        .send()
        .expect("flows")
        .json()
        .expect("flows JSON");
    let flows = flows["flows"].as_array().cloned().unwrap_or_default();
    assert!(sum(&flows, "tcp.retransmits") >= 5, "{flows:#?}");
    assert!(flows
        .iter()
        .all(|f| f["dst.name"] == "api.twilio.com" && f["src.namespace"] == "tenant-jobs"));

    let verdict = diagnose(
        &cluster,
        "tenant-jobs/notifications",
        "api.twilio.com",
        lossy_from,
        lossy_until,
    );
    assert_eq!(verdict["verdict"], "network", "{verdict:#}");
    let claims = verdict["layers"]["tcp"]["claims"].to_string();
    assert!(claims.contains("retransmitted"), "{claims}");
    assert!(verdict["layers"]["tcp"]["flows"]
        .as_str()
        .is_some_and(|q| q.contains("api.twilio.com")));
    assert_ne!(verdict["layers"]["dns"]["status"], "fault", "{verdict:#}");
    let healed = diagnose(
        &cluster,
        "tenant-jobs/notifications",
        "api.twilio.com",
        lossy_until,
        healed_until,
    );
    assert_ne!(healed["verdict"], "network", "{healed:#}");
}
