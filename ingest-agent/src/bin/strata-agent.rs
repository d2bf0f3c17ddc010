//! `strata-agent`: the node agent on its own, one privileged process per node.

fn main() -> anyhow::Result<()> {
    strata_agent::cli::main()
}
