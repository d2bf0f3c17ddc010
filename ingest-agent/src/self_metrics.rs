//! The agent's own HTTP endpoints: `/metrics` in the Prometheus text format (events, losses
//! at every stage, kernel map fill, export results, identity cache sizes), `/-/healthy` and
//! `/-/ready` (ready once a kernel hook is attached).

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::task::JoinHandle;

use crate::agent::Observed;
use crate::error::{Error, Result};
use crate::exporter::DropReason;

/// Binds `listen` and serves until the returned task is aborted.
pub async fn serve(listen: &str, observed: Arc<Observed>) -> Result<JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|err| Error::io(format!("agent listen address {listen}"), err))?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "Strata agent is Healthy.\n" }))
        .route("/-/ready", get(ready))
        .with_state(observed);
    tracing::info!(listen, "agent endpoints: /metrics, /-/healthy, /-/ready");
    Ok(tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(error = %err, "agent endpoints stopped");
        }
    }))
}

async fn ready(State(observed): State<Arc<Observed>>) -> impl IntoResponse {
    let hooks = observed.hooks.lock().clone();
    let mut body = String::new();
    for (hook, state) in &hooks {
        let _ = writeln!(body, "{hook}: {state}");
    }
    if observed.ready() {
        (StatusCode::OK, format!("Strata agent is Ready.\n{body}"))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("No kernel hook is attached.\n{body}"),
        )
    }
}

async fn metrics(State(observed): State<Arc<Observed>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&observed),
    )
}

struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let escaped = val
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{key}=\"{escaped}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// The whole exposition.
pub fn render(observed: &Observed) -> String {
    let mut out = Text(String::new());
    let agent = &observed.agent;
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);

    out.family(
        "strata_agent_hook_attached",
        "gauge",
        "1 when the kernel hook is attached.",
    );
    for (hook, state) in observed.hooks.lock().iter() {
        let attached = u64::from(state == "attached");
        out.sample(
            "strata_agent_hook_attached",
            &[("hook", hook), ("state", state)],
            attached,
        );
    }
    out.family(
        "strata_agent_events_total",
        "counter",
        "Kernel events handled, by kind; `http` counts every exchange, sent through the ring \
         or counted in the kernel's per-socket slots.",
    );
    for (kind, counter) in [
        ("connection_closed", &agent.connections_closed),
        ("http", &agent.http_exchanges),
        ("dns", &agent.dns_responses),
    ] {
        out.sample(
            "strata_agent_events_total",
            &[("kind", kind)],
            load(counter),
        );
    }
    out.one(
        "strata_agent_own_events_ignored_total",
        "counter",
        "Events and socket deltas of the agent's own connections, left out.",
        load(&agent.own_events_ignored),
    );
    out.one(
        "strata_agent_sock_refresh_failures_total",
        "counter",
        "Scans of the kernel's socket map whose refresh of open sockets' counters failed; their \
         counters were as of each socket's last state change.",
        load(&agent.tracker_refresh_failures),
    );
    out.family(
        "strata_agent_lost_total",
        "counter",
        "Observations lost, by stage and reason.",
    );
    let mut lost = vec![
        ("tracker", "closes_full", load(&agent.closes_dropped)),
        (
            "tracker",
            "pending_closes_full",
            load(&agent.tracker_closes_dropped),
        ),
        (
            "tracker",
            "scan_skipped",
            load(&agent.tracker_scans_skipped),
        ),
        ("flows", "interval_full", load(&agent.flows_dropped)),
        (
            "metrics",
            "series_limit",
            load(&agent.metric_series_dropped),
        ),
    ];
    if let Some(reader) = observed.reader.lock().as_ref() {
        lost.push(("reader", "channel_full", load(&reader.dropped_channel_full)));
        lost.push(("reader", "decode_error", load(&reader.decode_errors)));
    }
    for (stage, reason, value) in lost {
        out.sample(
            "strata_agent_lost_total",
            &[("stage", stage), ("reason", reason)],
            value,
        );
    }
    out.family(
        "strata_agent_kernel_counter_total",
        "counter",
        "The kernel programs' own loss and failure counters (lost ring events, full maps, failed reads).",
    );
    for (name, value) in observed.kernel_counters.lock().iter() {
        out.sample(
            "strata_agent_kernel_counter_total",
            &[("counter", name)],
            *value,
        );
    }
    out.family(
        "strata_agent_program_recursion_misses_total",
        "counter",
        "Runs of a kernel program the kernel skipped, so the event it would have seen is lost \
         uncounted by the program: another BPF program was running on that CPU, or the agent's \
         own map operation had tracing held off there.",
    );
    for (program, value) in observed.program_misses.lock().iter() {
        out.sample(
            "strata_agent_program_recursion_misses_total",
            &[("program", program)],
            *value,
        );
    }
    out.one(
        "strata_agent_sock_map_entries",
        "gauge",
        "Sockets in the kernel's sock_stats map at the last scan.",
        load(&agent.sock_map_entries),
    );
    out.one(
        "strata_agent_sock_map_capacity",
        "gauge",
        "Capacity of the kernel's sock_stats map.",
        load(&agent.sock_map_capacity),
    );
    out.one(
        "strata_agent_flow_batches_total",
        "counter",
        "Intervals exported.",
        load(&agent.flow_batches),
    );
    out.one(
        "strata_agent_flow_records_total",
        "counter",
        "Flow records produced.",
        load(&agent.flow_records),
    );
    out.one(
        "strata_agent_spans_total",
        "counter",
        "Spans produced.",
        load(&agent.spans),
    );
    out.one(
        "strata_agent_metric_series",
        "gauge",
        "Golden-signal series held.",
        load(&agent.metric_series),
    );
    if let Some(exporter) = observed.exporter.lock().as_ref() {
        let signals = [
            ("logs", &exporter.logs),
            ("metrics", &exporter.metrics),
            ("spans", &exporter.spans),
        ];
        out.family(
            "strata_agent_export_items_total",
            "counter",
            "Items the store accepted a request of.",
        );
        for (signal, stats) in signals {
            out.sample(
                "strata_agent_export_items_total",
                &[("signal", signal)],
                load(&stats.sent_items),
            );
        }
        out.family(
            "strata_agent_export_requests_total",
            "counter",
            "Export requests the store answered OK.",
        );
        for (signal, stats) in signals {
            out.sample(
                "strata_agent_export_requests_total",
                &[("signal", signal)],
                load(&stats.sent_requests),
            );
        }
        out.family(
            "strata_agent_export_dropped_total",
            "counter",
            "Items dropped before the store took them.",
        );
        for (signal, stats) in signals {
            for reason in DropReason::ALL {
                let labels = [("signal", signal), ("reason", reason.as_str())];
                out.sample(
                    "strata_agent_export_dropped_total",
                    &labels,
                    stats.dropped(reason),
                );
            }
        }
        out.family(
            "strata_agent_export_rejected_total",
            "counter",
            "Items the store refused (partial success).",
        );
        for (signal, stats) in signals {
            out.sample(
                "strata_agent_export_rejected_total",
                &[("signal", signal)],
                load(&stats.rejected_items),
            );
        }
        out.family(
            "strata_agent_export_errors_total",
            "counter",
            "Failed export attempts.",
        );
        for (signal, stats) in signals {
            out.sample(
                "strata_agent_export_errors_total",
                &[("signal", signal)],
                load(&stats.export_errors),
            );
        }
        out.family(
            "strata_agent_export_queued_items",
            "gauge",
            "Items waiting to be exported.",
        );
        for (signal, stats) in signals {
            out.sample(
                "strata_agent_export_queued_items",
                &[("signal", signal)],
                load(&stats.queued_items),
            );
        }
    }
    if let Some(resolver) = observed.identity.lock().as_ref() {
        let stats = resolver.stats();
        out.family(
            "strata_agent_identity_cache_entries",
            "gauge",
            "Entries of the identity caches.",
        );
        for (cache, value) in [
            ("cgroups", stats.cgroups),
            ("pods", stats.pods),
            ("pod_ips", stats.pod_ips),
            ("nodes", stats.nodes),
            ("dns_names", stats.dns_names),
        ] {
            out.sample(
                "strata_agent_identity_cache_entries",
                &[("cache", cache)],
                value as u64,
            );
        }
        out.one(
            "strata_agent_identity_watch_errors_total",
            "counter",
            "Failed Kubernetes lists and watches (each retried).",
            stats.watch_errors,
        );
    }
    out.0
}
