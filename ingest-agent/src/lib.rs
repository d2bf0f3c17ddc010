//! Owns the node agent: loading and attaching the kernel programs, reading their maps and ring buffers,
//! resolving service identity, aggregating, and exporting over OTLP. Knows nothing of storage formats.
