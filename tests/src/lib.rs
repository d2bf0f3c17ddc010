//! End-to-end tests across binaries: the `strata` server as a child process, real clients (Prometheus,
//! promtool, node_exporter), crash and restart. Helpers here start processes and skip loudly when a tool
//! or privilege is missing (and fail instead under `STRATA_REQUIRE_ALL=1`).
