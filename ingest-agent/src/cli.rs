//! The `strata-agent` command line: flags over the TOML file, logging, signals. The binary's `main`
//! only calls [`main`].

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{duration, AgentConfig};
use crate::identity::KubernetesSource;
use anyhow::Context;
use clap::Parser;

/// Strata's node agent: watches every TCP connection, HTTP/1.x exchange and DNS query on this
/// node through eBPF, names both ends by service identity (Kubernetes namespace/workload, host
/// process, or the DNS name of an external service), and exports flow records, golden-signal
/// metrics and spans to a Strata store over OTLP gRPC.
///
/// Needs root (or CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_SYS_RESOURCE) and a kernel with
/// BTF. A missing hook degrades the agent and is logged; it never stops it.
///
/// Example: strata-agent --endpoint http://strata.monitoring:4317 --interval 10s
///
/// Settings come from the TOML file given with --config (reference: docs/config.md), then
/// from the flags and their STRATA_AGENT_* variables, which win.
#[derive(Debug, Parser)]
#[command(name = "strata-agent", version, verbatim_doc_comment)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "STRATA_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// The store's OTLP gRPC endpoint.
    #[arg(long, env = "STRATA_AGENT_ENDPOINT", value_name = "URL")]
    endpoint: Option<String>,
    /// How often flow records and metrics are exported, like 10s.
    #[arg(long, env = "STRATA_AGENT_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    interval: Option<Duration>,
    /// This node's name (default: $NODE_NAME, else the host name).
    #[arg(long, env = "STRATA_AGENT_NODE_NAME")]
    node_name: Option<String>,
    /// Address of the agent's /metrics and health endpoints; "" disables them.
    #[arg(long, env = "STRATA_AGENT_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// Tenant to write as (sent as X-Scope-OrgID).
    #[arg(long, env = "STRATA_AGENT_TENANT")]
    tenant: Option<String>,
    /// Where pod metadata comes from: auto, infer, disabled, or the API server's URL.
    #[arg(long, env = "STRATA_AGENT_KUBERNETES", value_name = "SOURCE")]
    kubernetes: Option<String>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "STRATA_AGENT_LOG_JSON")]
    log_json: bool,
    /// Check the configuration, print it, and exit.
    #[arg(long)]
    check_config: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    duration::parse(text).ok_or_else(|| format!("{text:?} is not a duration like 10s or 250ms"))
}

fn kubernetes_source(text: &str) -> KubernetesSource {
    match text {
        "auto" => KubernetesSource::Auto,
        "infer" => KubernetesSource::Infer,
        "disabled" | "off" | "none" => KubernetesSource::Disabled,
        url => KubernetesSource::Url(url.to_owned()),
    }
}

/// Parses the command line and runs the agent until SIGTERM or SIGINT.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    let mut config =
        AgentConfig::load(cli.config.as_deref()).context("reading the configuration")?;
    if let Some(endpoint) = cli.endpoint {
        config.exporter.endpoint = endpoint;
    }
    if let Some(interval) = cli.interval {
        config.interval = interval;
    }
    if let Some(node_name) = cli.node_name {
        config.node_name = node_name;
    }
    if let Some(listen) = cli.listen {
        config.listen = listen;
    }
    if let Some(tenant) = cli.tenant {
        config.exporter.tenant = tenant;
    }
    if let Some(kubernetes) = cli.kubernetes {
        config.identity.kubernetes = kubernetes_source(&kubernetes);
    }
    config.validate().context("invalid configuration")?;
    if cli.check_config {
        println!("{config:#?}");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        crate::agent::run(config, shutdown_signal())
            .await
            .context("the agent failed")
    })
}

/// SIGTERM (the kubelet) or SIGINT (a person at a terminal).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
