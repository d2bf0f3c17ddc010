//! The `strata` binary.

fn main() -> anyhow::Result<()> {
    strata_api::cli::main()
}
