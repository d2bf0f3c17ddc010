//! The `strata` binary.

/// glibc's malloc spent ~45% of ingest CPU in a profile (per-label strings of remote-write bodies,
/// freed from other threads); mimalloc's thread-local free lists cut that to a fraction.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    strata_api::cli::main()
}
