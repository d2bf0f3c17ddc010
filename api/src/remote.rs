//! Prometheus remote write and remote read wire formats.
