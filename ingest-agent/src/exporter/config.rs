//! The exporter's settings as written in the agent's TOML file (`[exporter]`, `[exporter.retry]`),
//! checked by [`ExporterConfig::validate`] and resolved into `Settings` for the senders.
//! Durations use the Prometheus syntax the store's config uses: `250ms`, `5s`, `1m30s`, `0`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};

use crate::config::duration::parse as parse_duration;
use crate::error::{Error, Result};

/// Where and how the agent sends its OTLP signals.
///
/// ```toml
/// [exporter]
/// endpoint = "http://127.0.0.1:4317"  # the store's OTLP gRPC listener; http only (no TLS in this build)
/// tenant = ""                         # sent as X-Scope-OrgID when not empty
/// headers = {}                        # extra gRPC metadata, e.g. { authorization = "Bearer …" }
/// compression = "gzip"                # request compression: "gzip", "zstd" (a third of gzip's CPU; the store and OTel Collectors accept it) or "none"
/// timeout = "10s"                     # one export attempt, connecting included
/// max_batch_items = 4096              # log records, data points or spans in one request
/// flush_interval = "1s"               # longest an item waits for its batch to fill
/// queue_capacity = 32                 # full batches waiting per signal; when full the oldest is dropped
///
/// [exporter.retry]
/// initial_backoff = "1s"              # first wait after a retryable failure; doubles, with ±50% jitter
/// max_backoff = "30s"                 # longest wait between two attempts
/// max_elapsed = "5m"                  # a batch still failing this long after its first attempt is dropped; "0" never retries
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ExporterConfig {
    /// The store's OTLP gRPC endpoint, `http://host:port`.
    pub endpoint: String,
    /// The tenant the agent writes as (`X-Scope-OrgID`); empty sends no tenant header.
    pub tenant: String,
    /// Extra gRPC metadata sent with every request (lower-case ASCII names).
    pub headers: BTreeMap<String, String>,
    /// How requests are compressed: `gzip`, `zstd` or `none`.
    pub compression: String,
    /// One export attempt, connecting included.
    pub timeout: String,
    /// Log records, metric data points or spans in one request; larger inputs are split.
    pub max_batch_items: usize,
    /// Longest an item waits for its batch to fill before the batch is sent as it is.
    pub flush_interval: String,
    /// Full batches waiting per signal. When full, the oldest batch is dropped and counted.
    pub queue_capacity: usize,
    pub retry: RetryConfig,
}

/// Exponential backoff with jitter between attempts of one batch.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// First wait after a retryable failure; each further wait doubles, up to `max_backoff`.
    pub initial_backoff: String,
    pub max_backoff: String,
    /// A batch still failing this long after its first attempt is dropped; `0` never retries.
    pub max_elapsed: String,
}

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4317";
pub const DEFAULT_TIMEOUT: &str = "10s";
/// Keeps one request near a megabyte of flow records, far below the store's per-request limits
/// (`traces.max_spans_per_request`, `limits.max_decompressed_bytes`).
pub const DEFAULT_MAX_BATCH_ITEMS: usize = 4096;
pub const DEFAULT_FLUSH_INTERVAL: &str = "1s";
/// 32 full batches of 4096 items: about 130k flow records, tens of megabytes, per signal.
pub const DEFAULT_QUEUE_CAPACITY: usize = 32;
pub const DEFAULT_INITIAL_BACKOFF: &str = "1s";
pub const DEFAULT_MAX_BACKOFF: &str = "30s";
pub const DEFAULT_MAX_ELAPSED: &str = "5m";

impl Default for ExporterConfig {
    fn default() -> Self {
        ExporterConfig {
            endpoint: DEFAULT_ENDPOINT.into(),
            tenant: String::new(),
            headers: BTreeMap::new(),
            compression: "gzip".into(),
            timeout: DEFAULT_TIMEOUT.into(),
            max_batch_items: DEFAULT_MAX_BATCH_ITEMS,
            flush_interval: DEFAULT_FLUSH_INTERVAL.into(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            retry: RetryConfig::default(),
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff: DEFAULT_INITIAL_BACKOFF.into(),
            max_backoff: DEFAULT_MAX_BACKOFF.into(),
            max_elapsed: DEFAULT_MAX_ELAPSED.into(),
        }
    }
}

/// The validated settings, durations parsed.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub endpoint: String,
    pub metadata: MetadataMap,
    /// `None`: requests go uncompressed.
    pub compression: Option<CompressionEncoding>,
    pub timeout: Duration,
    pub max_batch_items: usize,
    pub flush_interval: Duration,
    pub queue_capacity: usize,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub max_elapsed: Duration,
}

impl ExporterConfig {
    /// Checks every key; the error names the first bad one and why.
    pub fn validate(&self) -> Result<()> {
        self.settings().map(|_| ())
    }

    pub(crate) fn settings(&self) -> Result<Settings> {
        let endpoint = self.endpoint.trim();
        match endpoint.split_once("://") {
            Some(("http", rest)) if !rest.is_empty() => {}
            Some(("https", _)) => {
                return Err(invalid(
                    "exporter.endpoint",
                    "https needs TLS, which this build lacks; use http://",
                ))
            }
            _ => {
                return Err(invalid(
                    "exporter.endpoint",
                    format!("{endpoint:?} is not a URL like {DEFAULT_ENDPOINT}"),
                ))
            }
        }
        tonic::transport::Endpoint::from_shared(endpoint.to_owned()).map_err(|err| {
            invalid(
                "exporter.endpoint",
                format!("{endpoint:?} is not a valid URL: {err}"),
            )
        })?;

        let mut metadata = MetadataMap::new();
        for (name, value) in &self.headers {
            let key = format!("exporter.headers.{name}");
            let lower = name.to_ascii_lowercase();
            if lower.starts_with("grpc-") || RESERVED_HEADERS.contains(&lower.as_str()) {
                return Err(invalid(&key, "is set by the gRPC transport itself"));
            }
            if lower.ends_with("-bin") {
                return Err(invalid(&key, "binary metadata is not supported"));
            }
            let name = AsciiMetadataKey::from_bytes(lower.as_bytes())
                .map_err(|_| invalid(&key, "is not a valid header name"))?;
            let value = AsciiMetadataValue::try_from(value.as_str())
                .map_err(|_| invalid(&key, "the value is not printable ASCII"))?;
            metadata.insert(name, value);
        }
        if !self.tenant.is_empty() {
            if self
                .headers
                .keys()
                .any(|name| name.eq_ignore_ascii_case(TENANT_HEADER))
            {
                return Err(invalid(
                    "exporter.tenant",
                    "set either exporter.tenant or an X-Scope-OrgID header, not both",
                ));
            }
            let tenant = AsciiMetadataValue::try_from(self.tenant.as_str())
                .map_err(|_| invalid("exporter.tenant", "is not printable ASCII"))?;
            metadata.insert(TENANT_HEADER, tenant);
        }

        let timeout = positive_duration("exporter.timeout", &self.timeout, "10s")?;
        let flush_interval =
            positive_duration("exporter.flush_interval", &self.flush_interval, "1s")?;
        if self.max_batch_items == 0 {
            return Err(invalid("exporter.max_batch_items", "must be at least 1"));
        }
        if self.queue_capacity == 0 {
            return Err(invalid("exporter.queue_capacity", "must be at least 1"));
        }
        let initial_backoff = positive_duration(
            "exporter.retry.initial_backoff",
            &self.retry.initial_backoff,
            "1s",
        )?;
        let max_backoff =
            positive_duration("exporter.retry.max_backoff", &self.retry.max_backoff, "30s")?;
        if max_backoff < initial_backoff {
            return Err(invalid(
                "exporter.retry.max_backoff",
                "must not be shorter than exporter.retry.initial_backoff",
            ));
        }
        let max_elapsed = parse_duration(&self.retry.max_elapsed).ok_or_else(|| {
            invalid(
                "exporter.retry.max_elapsed",
                format!("{:?} is not a duration like 5m", self.retry.max_elapsed),
            )
        })?;

        let compression = match self.compression.as_str() {
            "gzip" => Some(CompressionEncoding::Gzip),
            "zstd" => Some(CompressionEncoding::Zstd),
            "none" => None,
            other => {
                return Err(invalid(
                    "exporter.compression",
                    format!("{other:?} is not one of \"gzip\", \"zstd\", \"none\""),
                ))
            }
        };
        Ok(Settings {
            endpoint: endpoint.to_owned(),
            metadata,
            compression,
            timeout,
            max_batch_items: self.max_batch_items,
            flush_interval,
            queue_capacity: self.queue_capacity,
            initial_backoff,
            max_backoff,
            max_elapsed,
        })
    }
}

/// The store reads the tenant from this header, as Cortex, Mimir and Tempo do.
const TENANT_HEADER: &str = "x-scope-orgid";

/// HTTP/2 and gRPC headers the transport writes; a configured copy would corrupt requests.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "te",
    "user-agent",
    "content-encoding",
    "connection",
    "host",
];

fn invalid(key: &str, reason: impl std::fmt::Display) -> Error {
    Error::Config(format!("key `{key}`: {reason}"))
}

fn positive_duration(key: &str, value: &str, example: &str) -> Result<Duration> {
    match parse_duration(value) {
        Some(duration) if !duration.is_zero() => Ok(duration),
        Some(_) => Err(invalid(key, "must be longer than 0")),
        None => Err(invalid(
            key,
            format!("{value:?} is not a duration like {example}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> ExporterConfig {
        toml::from_str(toml_text).expect("parses")
    }

    fn rejection(config: &ExporterConfig) -> String {
        config.validate().expect_err("invalid").to_string()
    }

    #[test]
    fn defaults_are_valid_and_resolve() {
        let settings = ExporterConfig::default().settings().expect("valid");
        assert_eq!(settings.timeout, Duration::from_secs(10));
        assert_eq!(settings.flush_interval, Duration::from_secs(1));
        assert_eq!(settings.max_elapsed, Duration::from_secs(300));
        assert_eq!(settings.compression, Some(CompressionEncoding::Gzip));
        assert!(settings.metadata.is_empty());
        assert_eq!(config(""), ExporterConfig::default());
    }

    #[test]
    fn reads_every_key_from_toml() {
        let parsed = config(
            r#"
            endpoint = "http://store:4317"
            tenant = "team-a"
            headers = { authorization = "Bearer x" }
            compression = "zstd"
            timeout = "2s"
            max_batch_items = 100
            flush_interval = "250ms"
            queue_capacity = 3
            [retry]
            initial_backoff = "100ms"
            max_backoff = "1s"
            max_elapsed = "0"
            "#,
        );
        let settings = parsed.settings().expect("valid");
        assert_eq!(settings.endpoint, "http://store:4317");
        assert_eq!(settings.metadata.get("x-scope-orgid").unwrap(), "team-a");
        assert_eq!(settings.metadata.get("authorization").unwrap(), "Bearer x");
        assert_eq!(settings.compression, Some(CompressionEncoding::Zstd));
        assert_eq!(settings.flush_interval, Duration::from_millis(250));
        assert_eq!(settings.max_elapsed, Duration::ZERO);
        assert_eq!(
            (settings.max_batch_items, settings.queue_capacity),
            (100, 3)
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<ExporterConfig>("batch_size = 10").expect_err("unknown key");
        assert!(err.to_string().contains("batch_size"), "{err}");
    }

    #[test]
    fn errors_name_the_key() {
        let bad = |edit: fn(&mut ExporterConfig)| {
            let mut config = ExporterConfig::default();
            edit(&mut config);
            rejection(&config)
        };
        assert!(bad(|c| c.endpoint = "127.0.0.1:4317".into()).contains("`exporter.endpoint`"));
        assert!(bad(|c| c.endpoint = "https://store:4317".into()).contains("TLS"));
        assert!(bad(|c| c.timeout = "10".into()).contains("`exporter.timeout`"));
        assert!(bad(|c| c.compression = "brotli".into()).contains("`exporter.compression`"));
        assert!(bad(|c| c.flush_interval = "0".into()).contains("`exporter.flush_interval`"));
        assert!(bad(|c| c.max_batch_items = 0).contains("`exporter.max_batch_items`"));
        assert!(bad(|c| c.queue_capacity = 0).contains("`exporter.queue_capacity`"));
        assert!(
            bad(|c| c.retry.max_backoff = "10ms".into()).contains("`exporter.retry.max_backoff`")
        );
        assert!(
            bad(|c| c.retry.max_elapsed = "soon".into()).contains("`exporter.retry.max_elapsed`")
        );
        assert!(bad(|c| c.tenant = "tenant\n".into()).contains("`exporter.tenant`"));
        assert!(bad(|c| {
            c.headers.insert("grpc-timeout".into(), "1S".into());
        })
        .contains("`exporter.headers.grpc-timeout`"));
        assert!(bad(|c| {
            c.headers.insert("bad header".into(), "x".into());
        })
        .contains("`exporter.headers.bad header`"));
        assert!(bad(|c| {
            c.tenant = "a".into();
            c.headers.insert("X-Scope-OrgID".into(), "b".into());
        })
        .contains("`exporter.tenant`"));
    }

    #[test]
    fn durations_use_the_store_syntax() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration(""), None);
    }
}
