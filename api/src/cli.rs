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
    /// Run the store with local storage (and the node agent once this build has one and runs as root).
    Up(Overrides),
    /// Run the store from a config file.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
        #[command(flatten)]
        overrides: Overrides,
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
    let cli = Cli::parse();
    match cli.command {
        Command::Up(o) => serve(None, o),
        Command::Serve { config, overrides } => serve(Some(config), overrides),
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
    let privileged = unsafe_free_is_root();
    tracing::info!(
        privileged,
        "node agent: not part of this build yet; running the store only"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(crate::server::run(cfg, crate::server::shutdown_signal()))
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
