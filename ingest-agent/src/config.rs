//! The agent's configuration: one versioned TOML file (`deny_unknown_fields`), named defaults,
//! `STRATA_AGENT_*` environment overrides, and `validate()` at start-up with errors naming the
//! key. The reference is `docs/config.md`.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::exporter::ExporterConfig;
use crate::golden_metrics::MetricsConfig;
use crate::identity::IdentityConfig;
use crate::loader::LoaderConfig;

/// Durations in the config file are Prometheus-style strings: `10s`, `1m30s`, `250ms`.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Parses a Prometheus-style duration (`250ms`, `90s`, `1h30m`, `0`), as the store's config does.
    pub fn parse(text: &str) -> Option<Duration> {
        let text = text.trim();
        if text == "0" {
            return Some(Duration::ZERO);
        }
        if text.is_empty() {
            return None;
        }
        let mut total_ms: u64 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return None;
            }
            let count: u64 = rest[..digits].parse().ok()?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit_ms: u64 = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "w" => 7 * 86_400_000,
                "y" => 365 * 86_400_000,
                _ => return None,
            };
            total_ms = total_ms.checked_add(count.checked_mul(unit_ms)?)?;
            rest = &rest[unit_len..];
        }
        Some(Duration::from_millis(total_ms))
    }

    /// The shortest Prometheus-style text for a duration (whole milliseconds).
    pub fn format(duration: Duration) -> String {
        let ms = duration.as_millis();
        if ms == 0 {
            "0".to_owned()
        } else if ms.is_multiple_of(3_600_000) {
            format!("{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) {
            format!("{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) {
            format!("{}s", ms / 1000)
        } else {
            format!("{ms}ms")
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not a duration like 10s or 250ms"))
        })
    }

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*duration))
    }
}

/// The config file format version this build reads.
pub const CONFIG_VERSION: u32 = 1;
/// Default address of the agent's own `/metrics` and health endpoints.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9471";

/// The agent's whole configuration (`strata-agent.toml`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    pub version: u32,
    /// This node's name; empty takes `$NODE_NAME` (the Kubernetes downward API), else the host
    /// name.
    pub node_name: String,
    /// Flow records and metrics are exported every interval.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// The agent's own `/metrics`, `/-/healthy` and `/-/ready`; empty disables.
    pub listen: String,
    /// Leave out the agent's own connections (its exports), which would otherwise observe
    /// themselves.
    pub ignore_own_traffic: bool,
    /// Connections and DNS exchanges summarised per interval; past it, new flows are dropped and
    /// counted.
    pub max_flows_per_interval: usize,
    /// Spans held before they go to the exporter: at every flush (each second), or as soon as this
    /// many wait.
    pub max_spans_per_flush: usize,
    pub kernel: KernelConfig,
    pub exporter: ExporterConfig,
    pub identity: IdentityConfig,
    pub metrics: MetricsConfig,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            version: CONFIG_VERSION,
            node_name: String::new(),
            interval: Duration::from_secs(10),
            listen: DEFAULT_LISTEN.to_owned(),
            ignore_own_traffic: true,
            max_flows_per_interval: 100_000,
            max_spans_per_flush: 20_000,
            kernel: KernelConfig::default(),
            exporter: ExporterConfig::default(),
            identity: IdentityConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

/// `[kernel]`: sizes of the kernel maps and the RTT sampling rate.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct KernelConfig {
    /// Ring buffer for events, bytes; a power of two and a multiple of the page size.
    pub ring_buffer_bytes: u32,
    /// Sockets tracked at once; the least recently used are evicted (and counted) past it.
    pub sock_stats_capacity: u32,
    /// DNS queries waiting for their answer.
    pub dns_pending_capacity: u32,
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            ring_buffer_bytes: LoaderConfig::DEFAULT_RING_BUFFER_BYTES,
            sock_stats_capacity: LoaderConfig::DEFAULT_SOCK_STATS_CAPACITY,
            dns_pending_capacity: LoaderConfig::DEFAULT_DNS_PENDING_CAPACITY,
        }
    }
}

impl KernelConfig {
    pub fn loader(&self) -> LoaderConfig {
        LoaderConfig {
            ring_buffer_bytes: self.ring_buffer_bytes,
            sock_stats_capacity: self.sock_stats_capacity,
            dns_pending_capacity: self.dns_pending_capacity,
        }
    }
}

impl AgentConfig {
    /// Reads a config file, or the defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<AgentConfig> {
        let Some(path) = path else {
            return Ok(AgentConfig::default());
        };
        let text = std::fs::read_to_string(path).map_err(|err| Error::io(path, err))?;
        toml::from_str(&text).map_err(|err| Error::Config(format!("{}: {err}", path.display())))
    }

    /// Checks every key; the error names the first bad one and why.
    pub fn validate(&self) -> Result<()> {
        let err = |key: &str, why: &str| Err(Error::Config(format!("{key}: {why}")));
        if self.version != CONFIG_VERSION {
            return err(
                "version",
                &format!(
                    "this agent reads version {CONFIG_VERSION}, not {}",
                    self.version
                ),
            );
        }
        if self.interval < Duration::from_millis(100) {
            return err("interval", "must be at least 100ms");
        }
        if !self.listen.is_empty() && self.listen.parse::<std::net::SocketAddr>().is_err() {
            return err("listen", "must be an address like 0.0.0.0:9471, or empty");
        }
        if self.max_flows_per_interval == 0 {
            return err("max_flows_per_interval", "must be at least 1");
        }
        if self.max_spans_per_flush == 0 {
            return err("max_spans_per_flush", "must be at least 1");
        }
        if self.metrics.max_series == 0 {
            return err("metrics.max_series", "must be at least 1");
        }
        self.kernel
            .loader()
            .validate()
            .map_err(|why| Error::Config(format!("kernel.{why}")))?;
        self.exporter.validate()?;
        self.identity.validate()?;
        Ok(())
    }

    /// The node's name: configured, else `$NODE_NAME`, else the host name.
    pub fn node_name(&self) -> String {
        if !self.node_name.is_empty() {
            return self.node_name.clone();
        }
        if let Ok(name) = std::env::var("NODE_NAME") {
            if !name.is_empty() {
                return name;
            }
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .unwrap_or_else(|_| "localhost".to_owned())
    }

    /// The identity section with the node's name filled in.
    pub fn identity_config(&self, node: &str) -> IdentityConfig {
        let mut identity = self.identity.clone();
        if identity.node_name.is_empty() {
            identity.node_name = node.to_owned();
        }
        identity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_back() {
        for (text, expected) in [
            ("10s", Duration::from_secs(10)),
            ("250ms", Duration::from_millis(250)),
            ("1m30s", Duration::from_secs(90)),
            ("0", Duration::ZERO),
        ] {
            assert_eq!(duration::parse(text), Some(expected), "{text}");
        }
        assert_eq!(duration::format(Duration::from_secs(90)), "90s");
        assert_eq!(duration::format(Duration::from_secs(120)), "2m");
        for bad in ["", "10", "s", "10x", "-1s"] {
            assert_eq!(duration::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_defaults_are_valid() {
        AgentConfig::default()
            .validate()
            .expect("defaults validate");
    }

    #[test]
    fn a_file_overrides_defaults_and_unknown_keys_are_refused() {
        let config: AgentConfig = toml::from_str(
            "version = 1\ninterval = \"2s\"\nnode_name = \"node-a\"\n\
             [exporter]\nendpoint = \"http://10.0.0.1:4317\"\n[metrics]\nmax_series = 10\n",
        )
        .expect("parses");
        assert_eq!(config.interval, Duration::from_secs(2));
        assert_eq!(config.node_name(), "node-a");
        assert_eq!(config.exporter.endpoint, "http://10.0.0.1:4317");
        assert_eq!(config.metrics.max_series, 10);
        assert_eq!(config.listen, DEFAULT_LISTEN);
        let err = toml::from_str::<AgentConfig>("intervall = \"2s\"").expect_err("unknown key");
        assert!(err.to_string().contains("intervall"), "{err}");
        let err =
            toml::from_str::<AgentConfig>("interval = \"2 seconds\"").expect_err("bad duration");
        assert!(err.to_string().contains("not a duration"), "{err}");
    }

    #[test]
    fn validation_names_the_key() {
        let config = AgentConfig {
            interval: Duration::from_millis(10),
            ..AgentConfig::default()
        };
        let err = config.validate().expect_err("too short");
        assert!(err.to_string().contains("interval"), "{err}");
        let config = AgentConfig {
            listen: "nowhere".into(),
            ..AgentConfig::default()
        };
        assert!(config
            .validate()
            .expect_err("bad listen")
            .to_string()
            .contains("listen"));
    }
}
