//! OpenMetrics and Prometheus text exposition parsing.
