//! Owns query evaluation: PromQL over the metrics store's read traits, the TraceQL subset and the flow
//! filter language. Knows nothing of HTTP or wire formats; reads storage only through `strata-store` traits.
