//! The server's configuration: one versioned TOML file (`deny_unknown_fields`), named defaults, `STRATA_*`
//! environment overrides, command-line flags over both, and `validate()` with errors that name the key.
//! Reference: `docs/config.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The config file format version this build reads.
pub const CONFIG_VERSION: u32 = 1;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub version: u32,
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub limits: LimitsConfig,
    pub metrics: MetricsStoreConfig,
    pub traces: TracesStoreConfig,
    pub flows: FlowsStoreConfig,
    pub agent: AgentSection,
}

/// `[agent]`: the node agent running inside the server (the all-in-one `strata up`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSection {
    /// `auto` runs it when the server runs as root, `on` always (failing to start it is then an
    /// error), `off` never.
    pub mode: String,
    /// The agent's own TOML file (`strata-agent --config`); its exporter endpoint defaults to
    /// this server's OTLP gRPC listener.
    pub config: Option<PathBuf>,
}

impl Default for AgentSection {
    fn default() -> Self {
        AgentSection {
            mode: "auto".into(),
            config: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The one HTTP listener: Prometheus API, remote write/read, operations endpoints.
    pub listen: String,
    /// OTLP gRPC listener; empty disables it.
    pub otlp_grpc_listen: String,
    /// OTLP HTTP listener; empty disables it.
    pub otlp_http_listen: String,
    /// Log format: `text` or `json`.
    pub log_format: String,
    /// Seconds between background maintenance runs (cut head, compact, retention).
    pub maintenance_interval_secs: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest compressed request body accepted (HTTP 413 past it).
    pub max_body_bytes: usize,
    /// Largest body after decompression.
    pub max_decompressed_bytes: usize,
    /// Series in one write request.
    pub max_series_per_request: usize,
    pub max_labels_per_series: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    /// Series one metadata request (`/series`, `/labels`, remote read) may return; 0 = unlimited.
    pub max_series_per_query: usize,
    /// Samples a query may hold in memory at once.
    pub max_samples_per_query: usize,
    /// Seconds before a query is cancelled.
    pub query_timeout_secs: u64,
    /// Queries evaluated at once; more wait.
    pub max_concurrent_queries: usize,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsStoreConfig {
    /// Width of a block cut from the head, e.g. `2h`.
    pub block_range: String,
    /// Age past which blocks are deleted, e.g. `15d`; `0` keeps data forever.
    pub retention: String,
    /// Total block bytes past which the oldest blocks are deleted; 0 = no limit.
    pub retention_bytes: u64,
    /// How much older than a series' newest sample a sample may be and still be accepted, e.g. `10m`;
    /// `0` rejects out-of-order samples as Prometheus does.
    pub out_of_order_window: String,
    /// Exemplars kept in memory per tenant.
    pub max_exemplars: usize,
    /// fsync the WAL before acknowledging writes. Turn off only for benchmarks.
    pub wal_fsync: bool,
    /// Bytes of decompressed block pages kept in memory for queries, shared by all tenants.
    pub page_cache_bytes: u64,
}

/// The trace store and the Tempo API (`[traces]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TracesStoreConfig {
    /// Blocks whose newest span is older than this are deleted; `0` keeps traces forever.
    pub retention: String,
    /// A trace goes from memory into a block once no span arrived for it for this long.
    pub trace_idle: String,
    /// The in-memory traces are all cut into a block past this many bytes.
    pub max_head_bytes: usize,
    /// How long an append waits for room in a head holding twice `max_head_bytes` before it is
    /// refused (OTLP `UNAVAILABLE`, HTTP 503).
    pub head_full_wait: String,
    /// Spans that would grow one trace past this are refused (OTLP partial success).
    pub max_trace_bytes: usize,
    /// Largest attribute value accepted; a larger one refuses the request (400).
    pub max_attribute_value_bytes: usize,
    /// Spans in one OTLP request; more refuses it (429).
    pub max_spans_per_request: usize,
    /// Traces one search or autocomplete request evaluates at most.
    pub max_search_inspected_traces: u64,
    /// Largest `limit` a search may ask for.
    pub max_search_limit: usize,
    /// fsync the trace WAL before acknowledging. Turn off only for benchmarks.
    pub wal_fsync: bool,
    /// Memory for decompressed block pages kept between trace lookups and searches; 0 keeps none.
    pub page_cache_bytes: usize,
    /// Generate span metrics and service graph series into the metrics store.
    pub generate_metrics: bool,
}

impl Default for TracesStoreConfig {
    fn default() -> Self {
        TracesStoreConfig {
            retention: "14d".into(),
            trace_idle: "30s".into(),
            max_head_bytes: 256 << 20,
            head_full_wait: "5s".into(),
            max_trace_bytes: 16 << 20,
            max_attribute_value_bytes: 64 << 10,
            max_spans_per_request: 100_000,
            max_search_inspected_traces: 1_000_000,
            max_search_limit: 10_000,
            wal_fsync: true,
            page_cache_bytes: 128 << 20,
            generate_metrics: true,
        }
    }
}

impl Config {
    /// The trace store settings (call after [`validate`](Self::validate)).
    pub fn traces_config(&self) -> strata_store::traces::TracesConfig {
        let t = &self.traces;
        strata_store::traces::TracesConfig {
            trace_idle_secs: (parse_duration_ms(&t.trace_idle).unwrap_or(30_000) / 1000).max(1)
                as u64,
            max_head_bytes: t.max_head_bytes,
            head_full_wait: std::time::Duration::from_millis(
                parse_duration_ms(&t.head_full_wait).unwrap_or(5_000).max(0) as u64,
            ),
            max_trace_bytes: t.max_trace_bytes,
            page_cache_bytes: t.page_cache_bytes,
            retention_secs: (parse_duration_ms(&t.retention).unwrap_or(0) / 1000) as u64,
            wal_fsync: t.wal_fsync,
            ..Default::default()
        }
    }

    fn validate_traces(&self) -> Result<(), ConfigError> {
        let t = &self.traces;
        for (key, v) in [
            ("traces.retention", &t.retention),
            ("traces.trace_idle", &t.trace_idle),
            ("traces.head_full_wait", &t.head_full_wait),
        ] {
            parse_duration_ms(v)
                .ok_or_else(|| err(key, format!("{v:?} is not a duration like 30s")))?;
        }
        for (key, v) in [
            ("traces.max_head_bytes", t.max_head_bytes),
            ("traces.max_trace_bytes", t.max_trace_bytes),
            (
                "traces.max_attribute_value_bytes",
                t.max_attribute_value_bytes,
            ),
            ("traces.max_spans_per_request", t.max_spans_per_request),
            ("traces.max_search_limit", t.max_search_limit),
        ] {
            if v == 0 {
                return Err(err(key, "must be greater than 0"));
            }
        }
        if t.max_search_inspected_traces == 0 {
            return Err(err(
                "traces.max_search_inspected_traces",
                "must be greater than 0",
            ));
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: CONFIG_VERSION,
            data_dir: PathBuf::from("strata-data"),
            server: ServerConfig::default(),
            limits: LimitsConfig::default(),
            metrics: MetricsStoreConfig::default(),
            traces: TracesStoreConfig::default(),
            flows: FlowsStoreConfig::default(),
            agent: AgentSection::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "0.0.0.0:9080".into(),
            otlp_grpc_listen: "0.0.0.0:4317".into(),
            otlp_http_listen: "0.0.0.0:4318".into(),
            log_format: "text".into(),
            maintenance_interval_secs: 60,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let d = crate::remote::DecodeLimits::default();
        LimitsConfig {
            max_body_bytes: d.max_body_bytes,
            max_decompressed_bytes: d.max_decompressed_bytes,
            max_series_per_request: d.max_series,
            max_labels_per_series: d.max_labels_per_series,
            max_label_name_length: d.max_label_name_len,
            max_label_value_length: d.max_label_value_len,
            max_series_per_query: 0,
            max_samples_per_query: 50_000_000,
            query_timeout_secs: 120,
            max_concurrent_queries: 20,
        }
    }
}

impl Default for MetricsStoreConfig {
    fn default() -> Self {
        MetricsStoreConfig {
            block_range: "2h".into(),
            retention: "15d".into(),
            retention_bytes: 0,
            out_of_order_window: "0".into(),
            max_exemplars: 100_000,
            wal_fsync: true,
            page_cache_bytes: strata_store::page_cache::DEFAULT_CAPACITY_BYTES,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FlowsStoreConfig {
    /// Width of a time partition (one index each), e.g. `1h`.
    pub partition: String,
    /// Age past which whole partitions are deleted, e.g. `7d`; `0` keeps flows forever.
    pub retention: String,
    /// How often written flows are committed to the indexes and become searchable.
    pub commit_interval: String,
    /// Indexing memory of one partition being written (at least 15 MB per writer thread).
    pub writer_heap_bytes: usize,
    /// Indexing threads of one partition being written.
    pub writer_threads: usize,
    /// Partitions written at once (each holds `writer_heap_bytes`).
    pub max_open_writers: usize,
    /// zstd level of the document store.
    pub zstd_level: i32,
    /// Memory for the key tables of flow partitions not being written, per tenant; the least
    /// recently queried are unloaded past it.
    pub key_cache_bytes: usize,
    /// fsync the flow WAL before acknowledging. Turn off only for benchmarks.
    pub wal_fsync: bool,
    /// Most records one search may return (`limit`).
    pub max_search_limit: usize,
    /// Most groups one aggregation may return (`top`).
    pub max_aggregate_top: usize,
    /// A flow search, aggregation or value lookup taking longer answers 503, e.g. `60s`.
    pub query_timeout: String,
    /// Flow queries evaluated at once; more wait for a slot within `query_timeout`.
    pub max_concurrent_queries: usize,
}

impl Default for FlowsStoreConfig {
    fn default() -> Self {
        FlowsStoreConfig {
            partition: "1h".into(),
            retention: "7d".into(),
            commit_interval: "5s".into(),
            writer_heap_bytes: 64 << 20,
            writer_threads: 1,
            max_open_writers: 4,
            zstd_level: 3,
            key_cache_bytes: 512 << 20,
            wal_fsync: true,
            max_search_limit: 100_000,
            max_aggregate_top: 10_000,
            query_timeout: "60s".into(),
            max_concurrent_queries: 8,
        }
    }
}

impl FlowsStoreConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let partition = parse_duration_ms(&self.partition).ok_or_else(|| {
            err(
                "flows.partition",
                format!("{:?} is not a duration like 1h", self.partition),
            )
        })?;
        if partition < 60_000 {
            return Err(err("flows.partition", "must be at least 1m"));
        }
        parse_duration_ms(&self.retention).ok_or_else(|| {
            err(
                "flows.retention",
                format!("{:?} is not a duration like 7d", self.retention),
            )
        })?;
        let commit = parse_duration_ms(&self.commit_interval).unwrap_or(0);
        if commit < 100 {
            return Err(err(
                "flows.commit_interval",
                format!(
                    "{:?} is not a duration of at least 100ms",
                    self.commit_interval
                ),
            ));
        }
        if self.writer_threads == 0 || self.max_open_writers == 0 {
            return Err(err(
                "flows.writer_threads",
                "flows.writer_threads and flows.max_open_writers must be at least 1",
            ));
        }
        if self.writer_heap_bytes < 15_000_000 * self.writer_threads {
            return Err(err(
                "flows.writer_heap_bytes",
                "must be at least 15000000 per writer thread",
            ));
        }
        if !(1..=22).contains(&self.zstd_level) {
            return Err(err("flows.zstd_level", "must be between 1 and 22"));
        }
        if self.max_search_limit == 0 || self.max_aggregate_top == 0 {
            return Err(err(
                "flows.max_search_limit",
                "flows.max_search_limit and flows.max_aggregate_top must be at least 1",
            ));
        }
        if parse_duration_ms(&self.query_timeout).unwrap_or(0) < 1 {
            return Err(err(
                "flows.query_timeout",
                format!("{:?} is not a duration like 60s", self.query_timeout),
            ));
        }
        if self.max_concurrent_queries == 0 {
            return Err(err("flows.max_concurrent_queries", "must be at least 1"));
        }
        Ok(())
    }

    /// How long a flow query may take (call after `validate`).
    pub fn query_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            parse_duration_ms(&self.query_timeout).unwrap_or(60_000) as u64
        )
    }

    /// The store's settings (call after `validate`).
    pub fn store_config(&self) -> strata_store::flows::FlowConfig {
        const NS_PER_MS: i64 = 1_000_000;
        strata_store::flows::FlowConfig {
            partition_ns: parse_duration_ms(&self.partition).unwrap_or(3_600_000) * NS_PER_MS,
            retention_ns: parse_duration_ms(&self.retention)
                .unwrap_or(0)
                .saturating_mul(NS_PER_MS),
            commit_interval: std::time::Duration::from_millis(
                parse_duration_ms(&self.commit_interval).unwrap_or(5000) as u64,
            ),
            writer_heap_bytes: self.writer_heap_bytes,
            writer_threads: self.writer_threads,
            max_open_writers: self.max_open_writers,
            zstd_level: self.zstd_level,
            key_cache_bytes: self.key_cache_bytes,
            wal: strata_store::wal::WalOptions {
                fsync: self.wal_fsync,
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("config key `{key}`: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

fn err(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

/// Parses a Prometheus-style duration (`90s`, `1h30m`, `15d`, `0`) into milliseconds, with the
/// same grammar as the agent's configuration.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    strata_agent::config::duration::parse(s).and_then(|d| i64::try_from(d.as_millis()).ok())
}

impl Config {
    /// Reads a config file (or the defaults when `path` is `None`), then applies `STRATA_*` variables.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| err("(file)", format!("cannot read {}: {e}", p.display())))?;
                Config::from_toml(&text)?
            }
            None => Config::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        Ok(cfg)
    }

    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let msg = e.message().to_owned();
            // toml reports unknown fields as "unknown field `x`, expected …": surface the key itself.
            let key = msg
                .strip_prefix("unknown field `")
                .and_then(|r| r.split('`').next())
                .map(str::to_owned)
                .unwrap_or_else(|| "(file)".into());
            err(&key, msg)
        })
    }

    /// Environment overrides: `STRATA_DATA_DIR`, `STRATA_LISTEN`, `STRATA_OTLP_GRPC_LISTEN`,
    /// `STRATA_OTLP_HTTP_LISTEN`, `STRATA_LOG_FORMAT`, `STRATA_RETENTION`, `STRATA_WAL_FSYNC`,
    /// `STRATA_AGENT`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("STRATA_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = get("STRATA_LISTEN") {
            self.server.listen = v;
        }
        if let Some(v) = get("STRATA_OTLP_GRPC_LISTEN") {
            self.server.otlp_grpc_listen = v;
        }
        if let Some(v) = get("STRATA_OTLP_HTTP_LISTEN") {
            self.server.otlp_http_listen = v;
        }
        if let Some(v) = get("STRATA_AGENT") {
            self.agent.mode = v;
        }
        if let Some(v) = get("STRATA_LOG_FORMAT") {
            self.server.log_format = v;
        }
        if let Some(v) = get("STRATA_RETENTION") {
            self.metrics.retention = v;
        }
        if let Some(v) = get("STRATA_WAL_FSYNC") {
            self.metrics.wal_fsync = match v.as_str() {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => {
                    return Err(err(
                        "metrics.wal_fsync",
                        format!("STRATA_WAL_FSYNC={v:?} is not true/false"),
                    ))
                }
            };
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.version != CONFIG_VERSION {
            return Err(err(
                "version",
                format!(
                    "this build reads version {CONFIG_VERSION}, the file says {}",
                    self.version
                ),
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(err("data_dir", "must not be empty"));
        }
        if !["auto", "on", "off"].contains(&self.agent.mode.as_str()) {
            return Err(err(
                "agent.mode",
                format!("{:?} is not one of auto, on, off", self.agent.mode),
            ));
        }
        for (key, addr) in [
            ("server.listen", &self.server.listen),
            ("server.otlp_grpc_listen", &self.server.otlp_grpc_listen),
            ("server.otlp_http_listen", &self.server.otlp_http_listen),
        ] {
            if addr.is_empty() && key != "server.listen" {
                continue;
            }
            addr.parse::<SocketAddr>()
                .map_err(|e| err(key, format!("{addr:?} is not host:port ({e})")))?;
        }
        if !matches!(self.server.log_format.as_str(), "text" | "json") {
            return Err(err("server.log_format", "must be \"text\" or \"json\""));
        }
        if self.server.maintenance_interval_secs == 0 {
            return Err(err(
                "server.maintenance_interval_secs",
                "must be at least 1",
            ));
        }
        let l = &self.limits;
        for (key, v) in [
            ("limits.max_body_bytes", l.max_body_bytes),
            ("limits.max_decompressed_bytes", l.max_decompressed_bytes),
            ("limits.max_series_per_request", l.max_series_per_request),
            ("limits.max_labels_per_series", l.max_labels_per_series),
            ("limits.max_label_name_length", l.max_label_name_length),
            ("limits.max_label_value_length", l.max_label_value_length),
            ("limits.max_samples_per_query", l.max_samples_per_query),
            ("limits.max_concurrent_queries", l.max_concurrent_queries),
        ] {
            if v == 0 {
                return Err(err(key, "must be greater than 0"));
            }
        }
        if l.query_timeout_secs == 0 {
            return Err(err("limits.query_timeout_secs", "must be greater than 0"));
        }
        if l.max_decompressed_bytes < l.max_body_bytes {
            return Err(err(
                "limits.max_decompressed_bytes",
                "must be at least limits.max_body_bytes",
            ));
        }
        let m = &self.metrics;
        let range = parse_duration_ms(&m.block_range).ok_or_else(|| {
            err(
                "metrics.block_range",
                format!("{:?} is not a duration like 2h", m.block_range),
            )
        })?;
        if range < 60_000 || 86_400_000 % range != 0 {
            return Err(err(
                "metrics.block_range",
                "must be at least 1m and divide a day evenly (e.g. 2h)",
            ));
        }
        parse_duration_ms(&m.retention).ok_or_else(|| {
            err(
                "metrics.retention",
                format!("{:?} is not a duration like 15d", m.retention),
            )
        })?;
        parse_duration_ms(&m.out_of_order_window).ok_or_else(|| {
            err(
                "metrics.out_of_order_window",
                format!("{:?} is not a duration like 10m", m.out_of_order_window),
            )
        })?;
        self.validate_traces()?;
        self.flows.validate()
    }

    pub fn decode_limits(&self) -> crate::remote::DecodeLimits {
        let l = &self.limits;
        crate::remote::DecodeLimits {
            max_body_bytes: l.max_body_bytes,
            max_decompressed_bytes: l.max_decompressed_bytes,
            max_series: l.max_series_per_request,
            max_labels_per_series: l.max_labels_per_series,
            max_label_name_len: l.max_label_name_length,
            max_label_value_len: l.max_label_value_length,
            ..Default::default()
        }
    }

    /// The store settings (call after [`validate`](Self::validate)).
    pub fn metrics_config(&self) -> strata_store::MetricsConfig {
        let m = &self.metrics;
        let block_range_ms = parse_duration_ms(&m.block_range).unwrap_or(7_200_000);
        let wal = strata_store::wal::WalOptions {
            fsync: m.wal_fsync,
            ..Default::default()
        };
        strata_store::MetricsConfig {
            block_range_ms,
            retention_ms: parse_duration_ms(&m.retention).unwrap_or(0),
            retention_bytes: m.retention_bytes,
            ooo_window_ms: parse_duration_ms(&m.out_of_order_window).unwrap_or(0),
            max_exemplars: m.max_exemplars,
            compaction_ranges_ms: vec![
                block_range_ms * 3,
                block_range_ms * 12,
                block_range_ms * 84,
            ],
            wal,
            page_cache_bytes: m.page_cache_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_toml("version = 1\n[server]\nlisten_addr = \"x\"\n").unwrap_err();
        assert_eq!(e.key, "listen_addr");
    }

    #[test]
    fn invalid_values_name_their_key() {
        let mut c = Config::from_toml("[server]\nlisten = \"nonsense\"\n").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "server.listen");
        c = Config::from_toml("[metrics]\nretention = \"15 days\"\n").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "metrics.retention");
        c = Config::from_toml("[metrics]\nblock_range = \"7m\"\n").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "metrics.block_range");
        c = Config::from_toml("[traces]\ntrace_idle = \"soon\"\n").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "traces.trace_idle");
        c = Config::from_toml("[traces]\nmax_spans_per_request = 0\n").unwrap();
        assert_eq!(
            c.validate().unwrap_err().key,
            "traces.max_spans_per_request"
        );
        c = Config::from_toml("version = 2").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "version");
    }

    #[test]
    fn env_overrides_file() {
        let mut c = Config::from_toml("data_dir = \"/a\"").unwrap();
        c.apply_env(|k| (k == "STRATA_DATA_DIR").then(|| "/b".to_string()))
            .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/b"));
        assert_eq!(
            c.apply_env(|k| (k == "STRATA_WAL_FSYNC").then(|| "maybe".into()))
                .unwrap_err()
                .key,
            "metrics.wal_fsync"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("15d"), Some(15 * 86_400_000));
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("0"), Some(0));
        assert_eq!(parse_duration_ms("5"), None);
        assert_eq!(parse_duration_ms("h"), None);
    }
}
