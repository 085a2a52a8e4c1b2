//! The `sandpod` command line: runc's global flags and commands (run, delete, ...), plus the
//! hidden `monitor` mode the runtime re-executes itself in to own a sandbox's VM.
mod logging;
mod monitor;
mod run;
mod stdio;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::hypervisor::CacheMode;
use crate::paths::DEFAULT_ROOT;

/// Run OCI containers in KVM microVMs (runc-compatible command line).
#[derive(Parser, Debug)]
#[command(name = "sandpod", version = crate::VERSION, about)]
pub struct Cli {
    /// Root directory for the containers' state.
    #[arg(long, global = true, default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Log file (the monitor and the guest log there too); default: standard error.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, global = true, default_value = "text")]
    pub log_format: String,
    /// Log at debug level.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Accepted for runc compatibility; cgroups live in the guest.
    #[arg(long, global = true, hide = true)]
    pub systemd_cgroup: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create and run a container in its own microVM, with this terminal's stdio; exit with the
    /// container's status (128+N if signal N killed it). Everything is removed afterwards.
    Run(run::RunArgs),
    /// Delete a container: stop its VM and remove its state.
    Delete {
        /// Accepted for runc compatibility: delete always stops the VM.
        #[arg(long, short)]
        force: bool,
        id: String,
    },
    /// (internal) Own a sandbox's VM: started by create/run, not by hand.
    #[command(hide = true)]
    Monitor { state_dir: PathBuf },
}

/// Options shared by the commands that create a sandbox.
#[derive(clap::Args, Debug, Clone)]
pub struct VmArgs {
    /// virtio-fs cache mode of the shared rootfs: auto, always or never.
    #[arg(long, default_value = "auto", value_parser = clap::value_parser!(CacheMode))]
    pub virtiofs_cache: CacheMode,
    /// Seconds to wait for the VM's agent.
    #[arg(long, default_value_t = 60)]
    pub boot_timeout: u64,
}

impl clap::builder::ValueParserFactory for CacheMode {
    type Parser = clap::builder::ValueParser;
    fn value_parser() -> Self::Parser {
        clap::builder::ValueParser::new(|s: &str| s.parse::<CacheMode>())
    }
}

/// `sandpod`'s main.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let _guard = match logging::init(&cli) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("sandpod: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sandpod: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(dispatch(cli));
    // A stdin copy may still block on the terminal: do not wait for it.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("sandpod: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Run(ref args) => run::run(&cli, args).await,
        Command::Delete { ref id, force: _ } => {
            crate::sandbox::destroy(&cli.root, id)?;
            Ok(0)
        }
        Command::Monitor { ref state_dir } => monitor::monitor(&cli, state_dir).await,
    }
}
