//! Owns the node agent: loading and attaching the kernel programs, reading their maps and ring buffers,
//! resolving service identity, aggregating, and exporting over OTLP. Knows nothing of storage formats.
//!
//! The path of data, top-down: [`kernel_features`] says what the host offers; [`loader`] loads and
//! attaches what it can; [`event_reader`] drains the ring into [`events`] (decoded with [`http`]
//! and [`dns`]); [`flow_table`] scans the per-socket kernel counters on a timer and, with the
//! close summaries, turns them into per-interval deltas; [`identity`] names both ends of each;
//! [`clock`] turns the kernel's monotonic timestamps into wall time.

pub mod agent;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dns;
pub mod error;
pub mod event_reader;
pub mod events;
pub mod exporter;
pub mod flow_records;
pub mod flow_table;
pub mod golden_metrics;
pub mod hash;
pub mod http;
pub mod identity;
pub mod kernel_features;
pub mod loader;
pub mod otlp;
pub mod self_metrics;
pub mod spans;

pub use error::{Error, Result};
