//! `sandpod-vmm`: command-line front end of the VMM library.
use anyhow::bail;
use clap::Parser;

/// Sandpod microVM monitor.
#[derive(Parser, Debug)]
#[command(name = "sandpod-vmm", version = sandpod_vmm::VERSION, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let _cli = Cli::parse();
    bail!("booting a guest is not implemented yet (see the VMM issue); only --version works")
}
