//! Owns the protocols and the process: configuration, the HTTP server (Prometheus API, remote write and
//! read, operations endpoints), protocol codecs, tenancy, limits and the `strata` CLI. Knows nothing of
//! storage internals: it decodes requests into `strata-store` model types and reads through its traits.

pub mod openmetrics;
pub mod remote;
