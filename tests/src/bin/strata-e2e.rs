//! The `strata` binary, built inside the end-to-end test package so its tests can start it as a child
//! process (`CARGO_BIN_EXE_strata-e2e`). Same entry point as `api/src/main.rs`.

fn main() -> anyhow::Result<()> {
    strata_api::cli::main()
}
