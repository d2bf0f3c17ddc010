//! `strata-agent`: the node agent on its own, one privileged process per node.

/// As the `strata` binary: the agent allocates per event on every core, and glibc's allocator
/// was a quarter of its user-space time in the overhead benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    strata_agent::cli::main()
}
