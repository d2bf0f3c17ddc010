//! The `strata-agent` binary, built inside the end-to-end test package so its tests can start it as
//! a child process (`CARGO_BIN_EXE_strata-agent-e2e`). Same entry point as the agent's own binary.

fn main() -> anyhow::Result<()> {
    strata_agent::cli::main()
}
