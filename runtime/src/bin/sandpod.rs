//! `sandpod`: the runc-compatible OCI command line.
use anyhow::bail;
use clap::Parser;

/// Run OCI containers in KVM microVMs.
#[derive(Parser, Debug)]
#[command(name = "sandpod", version = sandpod_runtime::VERSION, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    bail!("no commands are implemented yet; only --version works")
}
