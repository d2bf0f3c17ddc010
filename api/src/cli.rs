//! The `strata` command line: `up` (everything on this machine with defaults), `serve --config`, and
//! `import openmetrics` for backfills. The binary's `main` only calls [`main`].

use std::path::PathBuf;

use crate::config::Config;
use anyhow::Context;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Connectivity observability backend: metrics, flows and traces"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the store with local storage, and the node agent when running as root.
    Up(Overrides),
    /// Run the store from a config file.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Which layer is at fault between two ends: DNS, network or application.
    Diagnose {
        /// The calling end: namespace/workload.
        #[arg(long)]
        src: String,
        /// The called end: namespace/workload, or an external DNS name.
        #[arg(long)]
        dst: String,
        /// Window start (RFC 3339 or Unix seconds); default: 15 minutes before the end.
        #[arg(long)]
        start: Option<String>,
        /// Window end; default: now.
        #[arg(long)]
        end: Option<String>,
        /// The Strata server.
        #[arg(long, default_value = "http://127.0.0.1:9080")]
        url: String,
        /// Tenant (X-Scope-OrgID).
        #[arg(long)]
        tenant: Option<String>,
        /// Print the server's JSON answer as it is.
        #[arg(long)]
        json: bool,
    },
    /// Where a trace block's bytes go: bytes per span of each data column and index section.
    TraceBlockSizes {
        /// The block's directory (`<data dir>/<tenant>/traces/blocks/<id>`).
        block: PathBuf,
    },
    /// Backfill data into blocks.
    Import {
        #[command(subcommand)]
        format: ImportFormat,
    },
}

#[derive(Subcommand)]
enum ImportFormat {
    /// An OpenMetrics text file with timestamps (as `promtool tsdb create-blocks-from openmetrics`).
    Openmetrics {
        file: PathBuf,
        #[arg(long, default_value = "strata-data")]
        data_dir: PathBuf,
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Hide the progress bar.
        #[arg(long)]
        quiet: bool,
    },
}

/// Flags that override the config file and environment.
#[derive(Args, Default)]
struct Overrides {
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// HTTP listener, e.g. 0.0.0.0:9080.
    #[arg(long)]
    listen: Option<String>,
    #[arg(long)]
    otlp_grpc_listen: Option<String>,
    #[arg(long)]
    otlp_http_listen: Option<String>,
    /// Run the node agent in this process: auto (when root), on, off.
    #[arg(long, value_name = "MODE")]
    agent: Option<String>,
    /// The node agent's TOML file (see `strata-agent --help`).
    #[arg(long, value_name = "FILE")]
    agent_config: Option<PathBuf>,
}

impl Overrides {
    fn apply(self, cfg: &mut Config) {
        if let Some(v) = self.data_dir {
            cfg.data_dir = v;
        }
        if let Some(v) = self.listen {
            cfg.server.listen = v;
        }
        if let Some(v) = self.otlp_grpc_listen {
            cfg.server.otlp_grpc_listen = v;
        }
        if let Some(v) = self.otlp_http_listen {
            cfg.server.otlp_http_listen = v;
        }
        if let Some(v) = self.agent {
            cfg.agent.mode = v;
        }
        if let Some(v) = self.agent_config {
            cfg.agent.config = Some(v);
        }
    }
}

fn init_logging(json: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Parses the command line and runs the chosen command.
pub fn main() -> anyhow::Result<()> {
    crate::allocator::configure();
    let cli = Cli::parse();
    match cli.command {
        Command::Up(o) => serve(None, o),
        Command::Serve { config, overrides } => serve(Some(config), overrides),
        Command::Diagnose {
            src,
            dst,
            start,
            end,
            url,
            tenant,
            json,
        } => {
            let mut query = vec![("src", src), ("dst", dst)];
            query.extend(start.map(|v| ("start", v)));
            query.extend(end.map(|v| ("end", v)));
            let mut request = reqwest::blocking::Client::new()
                .get(format!("{}/api/v1/diagnose", url.trim_end_matches('/')))
                .query(&query);
            if let Some(tenant) = tenant {
                request = request.header("X-Scope-OrgID", tenant);
            }
            let response = request.send().context("asking the server")?;
            let status = response.status();
            let body: serde_json::Value = response.json().context("reading the answer")?;
            if !status.is_success() {
                anyhow::bail!(
                    "{status}: {}",
                    body["error"].as_str().unwrap_or("(no message)")
                );
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                print!("{}", crate::diagnose::render_text(&body));
            }
            Ok(())
        }
        Command::TraceBlockSizes { block } => {
            let b = strata_store::traces::Block::open(&block)
                .with_context(|| format!("opening {}", block.display()))?;
            let sizes = b.size_breakdown()?;
            let spans = b.meta.spans.max(1) as f64;
            let mut rows: Vec<_> = sizes.into_iter().collect();
            rows.sort_by_key(|(_, (_, stored))| std::cmp::Reverse(*stored));
            let total: u64 = rows.iter().map(|(_, (_, s))| s).sum();
            println!(
                "{} spans, {} traces, format version {}; {:.2} B/span in total",
                b.meta.spans,
                b.meta.traces,
                b.meta.format_version,
                total as f64 / spans
            );
            println!("{:>10} {:>10} {:>8}  part", "raw B", "stored B", "B/span");
            for (name, (raw, stored)) in rows {
                println!(
                    "{raw:>10} {stored:>10} {:>8.3}  {name}",
                    stored as f64 / spans
                );
            }
            Ok(())
        }
        Command::Import {
            format:
                ImportFormat::Openmetrics {
                    file,
                    data_dir,
                    tenant,
                    quiet,
                },
        } => {
            init_logging(false);
            let storage =
                strata_store::Storage::open(&data_dir, Config::default().metrics_config())?;
            let started = std::time::Instant::now();
            let s = crate::import::import_openmetrics(&storage, &tenant, &file, !quiet)?;
            storage.close();
            println!(
                "imported {} samples of {} series into {} blocks in {:.1}s",
                s.samples,
                s.series,
                s.blocks,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}

fn serve(config: Option<PathBuf>, overrides: Overrides) -> anyhow::Result<()> {
    let mut cfg = Config::load(config.as_deref())?;
    overrides.apply(&mut cfg);
    cfg.validate()?;
    init_logging(cfg.server.log_format == "json");
    let agent = agent_config(&cfg)?;
    if let Err(err) = write_grafana_provisioning(&cfg) {
        tracing::warn!(error = %err, "could not write the Grafana provisioning files");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async move {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let agent = agent.map(|(agent, required)| {
            let mut stopped = stopped.clone();
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            tokio::spawn(async move {
                let result = strata_agent::agent::run(agent, shutdown).await;
                match result {
                    Ok(()) => Ok(()),
                    Err(err) if required => Err(err),
                    Err(err) => {
                        tracing::warn!(error = %err, "node agent could not run; the store runs alone");
                        Ok(())
                    }
                }
            })
        });
        let shutdown = async move {
            crate::server::shutdown_signal().await;
            let _ = stop.send(true);
        };
        let served = crate::server::run(cfg, shutdown).await;
        if let Some(agent) = agent {
            match agent.await {
                Ok(Err(err)) => return Err(anyhow::Error::new(err).context("node agent failed")),
                Err(err) => return Err(anyhow::Error::new(err).context("node agent panicked")),
                Ok(Ok(())) => {}
            }
        }
        served
    })
}

/// The in-process agent's configuration and whether it must run, or `None` when it does not run.
fn agent_config(cfg: &Config) -> anyhow::Result<Option<(strata_agent::config::AgentConfig, bool)>> {
    let privileged = unsafe_free_is_root();
    let required = match cfg.agent.mode.as_str() {
        "off" => return Ok(None),
        "on" => true,
        _ if !privileged => {
            tracing::info!("node agent: not running as root; running the store only");
            return Ok(None);
        }
        _ => false,
    };
    let mut agent = strata_agent::config::AgentConfig::load(cfg.agent.config.as_deref())
        .context("agent.config")?;
    if cfg.agent.config.is_none() {
        // All in one process: the server's own /metrics is the place to look.
        agent.listen.clear();
    }
    if agent.exporter.endpoint == strata_agent::exporter::config::DEFAULT_ENDPOINT {
        if cfg.server.otlp_grpc_listen.is_empty() {
            anyhow::bail!("agent: the in-process agent exports over OTLP gRPC, but server.otlp_grpc_listen is empty");
        }
        agent.exporter.endpoint = format!("http://{}", local_address(&cfg.server.otlp_grpc_listen));
    }
    agent.validate().context("agent.config")?;
    Ok(Some((agent, required)))
}

/// Writes Grafana provisioning for this server into `<data_dir>/grafana/` (data sources pointing
/// here, and the dashboards) and says where, with the data source URLs.
fn write_grafana_provisioning(cfg: &Config) -> anyhow::Result<()> {
    let address = local_address(&cfg.server.listen).replace("127.0.0.1", "localhost");
    let base = format!("http://{address}");
    let root = cfg.data_dir.join("grafana");
    let dashboards = root.join("dashboards");
    let datasources = root.join("provisioning/datasources");
    let providers = root.join("provisioning/dashboards");
    for dir in [&dashboards, &datasources, &providers] {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    }
    let shipped = "http://strata:9080";
    std::fs::write(
        datasources.join("strata.yaml"),
        strata_dashboards::DATASOURCES_YAML.replace(shipped, &base),
    )?;
    let dashboards_dir = std::fs::canonicalize(&dashboards)?;
    std::fs::write(
        providers.join("strata.yaml"),
        strata_dashboards::DASHBOARD_PROVIDER_YAML.replace(
            "/var/lib/grafana/dashboards/strata",
            &dashboards_dir.display().to_string(),
        ),
    )?;
    for dashboard in strata_dashboards::DASHBOARDS {
        std::fs::write(
            dashboards.join(dashboard.file),
            dashboard.json.replace(shipped, &base),
        )?;
    }
    let provisioning = std::fs::canonicalize(root.join("provisioning"))?;
    println!(
        "Grafana: Prometheus data source {base}/prometheus, Tempo data source {base}/tempo\n\
         Grafana provisioning (data sources and dashboards): {} — start Grafana with \
         GF_PATHS_PROVISIONING={}",
        provisioning.display(),
        provisioning.display()
    );
    Ok(())
}

/// A listen address as a local client reaches it: `0.0.0.0:4317` → `127.0.0.1:4317`.
fn local_address(listen: &str) -> String {
    match listen.rsplit_once(':') {
        Some(("0.0.0.0" | "" | "[::]", port)) => format!("127.0.0.1:{port}"),
        _ => listen.to_owned(),
    }
}

/// True when running as root (the agent needs it); read from /proc to avoid `unsafe` FFI.
fn unsafe_free_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
