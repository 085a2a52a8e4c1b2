//! `sandpod-testhost`: run a command inside the KVM test host (normally through
//! `tests/kvm-host/run`). Exits with the command's exit status; 124 when it hung, 125 when the
//! test host itself failed.
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use sandpod_testhost::{TestHost, TestHostConfig, TestHostError};

/// Run a command inside the KVM test host (QEMU-TCG L2 with a real /dev/kvm).
#[derive(Parser, Debug)]
#[command(name = "sandpod-testhost", version, about)]
struct Cli {
    /// Test host image directory (default: build or reuse it with build-image.sh).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Directory shown at /sandpod inside (default: the repository's build/).
    #[arg(long)]
    share: Option<PathBuf>,
    /// L2 memory in MiB.
    #[arg(long)]
    mem_mib: Option<u32>,
    /// L2 vCPUs (1 is the reliable choice: see docs/testing.md).
    #[arg(long)]
    smp: Option<u32>,
    /// Seconds the command may run.
    #[arg(long)]
    timeout: Option<u64>,
    /// Show the L2's boot console on stderr.
    #[arg(short, long)]
    verbose: bool,
    /// The command to run inside, and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn config(cli: &Cli) -> anyhow::Result<TestHostConfig> {
    if let Some(image) = &cli.image {
        std::env::set_var("SANDPOD_TESTHOST_IMAGE", image);
    }
    let mut cfg = TestHostConfig::from_env()?;
    if let Some(share) = &cli.share {
        cfg.share_dir = share.clone();
    }
    cfg.mem_mib = cli.mem_mib.unwrap_or(cfg.mem_mib);
    cfg.smp = cli.smp.unwrap_or(cfg.smp);
    if let Some(t) = cli.timeout {
        cfg.timeout = Duration::from_secs(t);
    }
    cfg.verbose |= cli.verbose;
    Ok(cfg)
}

fn main() {
    let cli = Cli::parse();
    let cfg = match config(&cli) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("sandpod-testhost: {e:#}");
            std::process::exit(125);
        }
    };
    let host = TestHost::new(cfg);
    match host.run_streaming(&cli.command, &mut std::io::stdout()) {
        Ok(outcome) => {
            eprintln!(
                "[testhost] L2 booted in {:.1} s; command exited {}",
                outcome.boot_time.as_secs_f64(),
                outcome.code
            );
            std::process::exit(outcome.code);
        }
        Err(e) => {
            eprintln!("sandpod-testhost: {e}");
            let code = if matches!(
                e,
                TestHostError::CommandTimeout(..)
                    | TestHostError::BootTimeout(..)
                    | TestHostError::Frozen(..)
            ) {
                124
            } else {
                125
            };
            std::process::exit(code);
        }
    }
}
