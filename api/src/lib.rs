//! Owns the protocols and the process: configuration, the HTTP server (Prometheus API, remote write and
//! read, operations endpoints), the OTLP listeners, protocol codecs, tenancy, limits and the `strata` CLI. Knows nothing of
//! storage internals: it decodes requests into `strata-store` model types and reads through its traits.

pub mod allocator;
pub mod cli;
pub mod config;
pub mod diagnose;
pub mod flows;
pub mod import;
pub mod openmetrics;
pub mod otlp;
pub mod prometheus;
pub mod protowire;
pub mod remote;
pub mod self_metrics;
pub mod server;
pub mod tempo;

/// The Prometheus version whose API and PromQL semantics Strata answers as (`/status/buildinfo`).
pub const PROMETHEUS_COMPAT_VERSION: &str = "3.8.0";
