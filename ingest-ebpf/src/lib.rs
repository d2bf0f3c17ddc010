//! Owns the kernel programs (C, CO-RE), the kernel↔user event ABI as `#[repr(C)]` mirrors with size
//! assertions, and building and embedding the object. Knows nothing of identity, OTLP or the store.
