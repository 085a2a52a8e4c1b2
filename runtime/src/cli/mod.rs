//! The `sandpod` command line: runc's global flags and commands, translated onto
//! [`crate::container`], plus the hidden modes the runtime re-executes itself in (the sandbox
//! monitor, the stand-in of a guest process).
mod check;
mod commands;
mod exec;
mod info;
mod inspect;
mod logging;
mod monitor;
mod resources;
mod run;
mod signal;
mod template;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::container::standin::StandinArgs;
use crate::container::RuntimeOptions;
use crate::hypervisor::CacheMode;
use crate::paths::DEFAULT_ROOT;

pub use logging::env_filter;

/// Run OCI containers in KVM microVMs (runc-compatible command line).
#[derive(Parser, Debug)]
#[command(name = "sandpod", version = crate::VERSION, long_version = LONG_VERSION, about)]
pub struct Cli {
    /// Root directory for the containers' state.
    #[arg(long, global = true, default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Log file (the monitor, the stand-ins and the guest log there too); default: standard error.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format: text or json (runc's JSON lines).
    #[arg(long, global = true, default_value = "text")]
    pub log_format: String,
    /// Log at debug level, the sandbox's monitor and sandpod-vmm too (SANDPOD_LOG, else
    /// RUST_LOG, sets a finer filter: tracing's EnvFilter syntax, e.g. "sandpod_runtime=debug").
    #[arg(long, global = true)]
    pub debug: bool,
    /// The config file (default: $SANDPOD_CONFIG, else /etc/sandpod/config.toml if it exists).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Run sandpod-vmm without its jail (as root, in the host's namespaces): debugging only, a
    /// warning is logged (the config file's `[jail] enabled = false` does the same).
    #[arg(long, global = true)]
    pub no_jail: bool,
    /// Accepted for runc compatibility; containers' cgroups live in the guest.
    #[arg(long, global = true, hide = true)]
    pub systemd_cgroup: bool,
    /// Accepted for runc compatibility (rootless mode is not supported: sandpod needs root).
    #[arg(long, global = true, hide = true)]
    pub rootless: Option<String>,
    /// Accepted for runc compatibility.
    #[arg(long, global = true, hide = true)]
    pub criu: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// `--version`, runc's lines (the runtime-spec version included).
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nspec: 1.2.0 (runtime-spec, as oci-spec 0.10)"
);

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container (its VM booted, its process not started).
    Create(commands::CreateArgs),
    /// Start a created container's process.
    Start { id: String },
    /// Print a container's state as JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to a container's process, or with --all to all of them.
    Kill(commands::KillArgs),
    /// Delete a container: its VM stopped, its state removed.
    Delete(commands::DeleteArgs),
    /// Run a new process in a running container.
    Exec(Box<exec::ExecArgs>),
    /// List a container's processes.
    Ps(inspect::PsArgs),
    /// List the containers.
    List(inspect::ListArgs),
    /// Print a container's statistics and OOM events as JSON lines.
    Events(inspect::EventsArgs),
    /// Freeze a container's processes.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change a container's resource limits.
    Update(Box<resources::UpdateArgs>),
    /// Print what this runtime supports (runc's JSON).
    Features,
    /// Check that this host can run Sandpod's microVMs (one line per check).
    Check,
    /// Write a default config.json for a new bundle.
    Spec(commands::SpecArgs),
    /// Not supported: a container in a microVM cannot be checkpointed.
    Checkpoint(commands::Unsupported),
    /// Not supported: a container in a microVM cannot be restored from a checkpoint.
    Restore(commands::Unsupported),
    /// Create and run a container with this terminal's stdio; exit with its status (128+N if
    /// signal N killed it). Everything is removed afterwards.
    Run(run::RunArgs),
    /// Manage the VM templates sandboxes start from (snapshots of a booted guest).
    #[command(subcommand)]
    Template(template::TemplateCommand),
    /// (internal) Own a sandbox's VM: started by create/run, not by hand.
    #[command(hide = true)]
    Monitor { state_dir: PathBuf },
    /// (internal) Stand for a guest process on the host: started by create/exec/run.
    #[command(hide = true)]
    Standin(StandinArgs),
    /// (internal) Start sandpod-vmm in its jail: started by the monitor, not by hand.
    #[command(hide = true)]
    Jail { plan: PathBuf },
}

/// The bytes of `path`, or of standard input for `-` (runc's `--process -`, `--resources -`).
fn read_file_or_stdin(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b).context("reading stdin")?;
        return Ok(b);
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Options of the commands that create a sandbox.
#[derive(clap::Args, Debug, Clone)]
pub struct VmArgs {
    /// virtio-fs cache mode of the shared rootfs: auto, always or never (default: the config
    /// file's, else auto).
    #[arg(long, value_parser = clap::value_parser!(CacheMode))]
    pub virtiofs_cache: Option<CacheMode>,
    /// Seconds to wait for the VM's agent (default: the config file's, else 60).
    #[arg(long)]
    pub boot_timeout: Option<u64>,
}

impl VmArgs {
    fn options(&self, config: &Config) -> crate::container::VmOptions {
        let h = &config.hypervisor;
        crate::container::VmOptions {
            cache: self.virtiofs_cache.or(config.cache()).unwrap_or_default(),
            boot_timeout: std::time::Duration::from_secs(
                self.boot_timeout.or(h.boot_timeout_secs).unwrap_or(60),
            ),
        }
    }
}

impl clap::builder::ValueParserFactory for CacheMode {
    type Parser = clap::builder::ValueParser;
    fn value_parser() -> Self::Parser {
        clap::builder::ValueParser::new(|s: &str| s.parse::<CacheMode>())
    }
}

fn runtime_options(cli: &Cli, mut config: Config) -> anyhow::Result<RuntimeOptions> {
    if cli.no_jail {
        config.jail.enabled = false;
    }
    Ok(RuntimeOptions {
        config,
        root: cli.root.clone(),
        log: cli.log.clone(),
        log_format: cli.log_format.clone(),
        debug: cli.debug,
        self_exe: std::env::current_exe().context("locating the sandpod binary")?,
    })
}

/// `sandpod`'s main.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The jail's step runs single-threaded, before anything else (no config, no log set-up):
    // its errors go to standard error, which the monitor relays to the log.
    if let Command::Jail { plan } = &cli.command {
        return match crate::sandbox::jail::exec::run(plan) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("sandpod jail: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sandpod: {}", sandpod_protocol::ErrorChain(&e));
            return ExitCode::FAILURE;
        }
    };
    let _guard = match logging::init(&cli, config.runtime.log_level.as_deref()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("sandpod: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // The stand-in's session and namespace come before any thread exists.
    if let Command::Standin(args) = &cli.command {
        if let Err(e) = crate::container::standin::prepare(args) {
            return fail(&cli, &e);
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail(
                &cli,
                &anyhow::Error::new(e).context("starting the async runtime"),
            )
        }
    };
    let result = rt.block_on(dispatch(&cli, config));
    // A stdin copy may still block on the terminal: do not wait for it.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(&cli, &e),
    }
}

/// Reports a fatal error once: to standard error and, with `--log`, as the log's last error line
/// (where containerd and Docker read the reason from). The internal modes only log it: a
/// stand-in's stderr is its container's, the monitor's is the log file itself.
fn fail(cli: &Cli, e: &anyhow::Error) -> ExitCode {
    let msg = format!("{e:#}");
    let internal = matches!(cli.command, Command::Monitor { .. } | Command::Standin(_));
    if cli.log.is_some() {
        tracing::error!("{msg}");
    }
    if !(internal && cli.log.is_some()) {
        eprintln!("sandpod: {msg}");
    }
    ExitCode::FAILURE
}

async fn dispatch(cli: &Cli, config: Config) -> anyhow::Result<u8> {
    let rt = runtime_options(cli, config)?;
    let c = crate::container::lifecycle::load;
    match &cli.command {
        Command::Create(a) => commands::create(&rt, a).await,
        Command::Start { id } => crate::container::start(&rt, id).await.map(|()| 0),
        Command::State { id } => {
            let (layout, state) = c(&rt, id)?;
            println!("{}", serde_json::to_string_pretty(&state.oci(&layout))?);
            Ok(0)
        }
        Command::Kill(a) => commands::kill(&rt, a).await,
        Command::Delete(a) => crate::container::delete(&rt, &a.id, a.force)
            .await
            .map(|()| 0),
        Command::Exec(a) => exec::exec(&rt, a).await,
        Command::Ps(a) => inspect::ps(&rt, a).await,
        Command::List(a) => inspect::list(&rt, a),
        Command::Events(a) => inspect::events(&rt, a).await,
        Command::Pause { id } => crate::container::resources::pause(&rt, id)
            .await
            .map(|()| 0),
        Command::Resume { id } => crate::container::resources::resume(&rt, id)
            .await
            .map(|()| 0),
        Command::Update(a) => resources::update(&rt, a).await,
        Command::Features => {
            println!("{}", serde_json::to_string_pretty(&info::features())?);
            Ok(0)
        }
        Command::Check => Ok(check::run(&rt)),
        Command::Spec(a) => info::write_spec(&a.bundle).map(|()| 0),
        Command::Checkpoint(_) => {
            anyhow::bail!("checkpoint is not supported: the container runs in a microVM (sandpod)")
        }
        Command::Restore(_) => {
            anyhow::bail!("restore is not supported: the container runs in a microVM (sandpod)")
        }
        Command::Run(a) => run::run(&rt, a).await,
        Command::Template(c) => template::run(&rt, c).await,
        Command::Monitor { state_dir } => monitor::monitor(cli, state_dir).await,
        Command::Standin(a) => crate::container::standin::run(&rt, a).await,
        Command::Jail { .. } => anyhow::bail!("sandpod jail runs before the async runtime"),
    }
}
