//! `containerd-shim-kata-v2`: the containerd shim v2 for runtime handler "kata".
use anyhow::bail;
use clap::Parser;

/// containerd shim v2 running each pod in a Sandpod microVM.
#[derive(Parser, Debug)]
#[command(name = "containerd-shim-kata-v2", version = sandpod_runtime::VERSION, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    bail!("the shim is not implemented yet; only --version works")
}
