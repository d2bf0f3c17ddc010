//! Owns the kernel programs (C, CO-RE), the kernel↔user event ABI as `#[repr(C)]` mirrors with size
//! assertions, and building and embedding the object. Knows nothing of identity, OTLP or the store.
//!
//! `bpf/` holds the C sources; `bpf/abi.h` and [`abi`] are the two halves of the one contract.
//! [`object`] embeds the built object and names what the loader finds in it.

pub mod abi;
pub mod object;
