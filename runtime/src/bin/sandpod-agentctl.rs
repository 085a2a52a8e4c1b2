//! `sandpod-agentctl`: talk to a Sandpod guest agent by hand (and from the VM-level tests):
//! health, guest details, running a process in the guest with this terminal's stdio, and
//! containers (create/start/remove, exec into one).
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sandpod_runtime::agent_client::proto::ExecProcessRequest;
use sandpod_runtime::agent_client::{
    attach_stdio, AgentClient, ClientConfig, ExitStatus, HybridVsockConnector, StreamKind,
    StreamSet, StreamToken,
};

/// Talk to the agent of a Sandpod microVM through the VMM's hybrid-vsock socket.
#[derive(Parser, Debug)]
#[command(
    name = "sandpod-agentctl",
    version = sandpod_runtime::VERSION,
    after_help = "Logs go to stderr: SANDPOD_LOG (else RUST_LOG) sets the filter, default warn."
)]
struct Cli {
    /// The VMM's vsock Unix socket (sandpod-vmm --vsock-uds).
    #[arg(long, value_name = "PATH")]
    uds: PathBuf,
    /// Seconds to keep trying to reach the agent (the VM may still be booting).
    #[arg(long, default_value_t = 30)]
    connect_timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print `ok <agent version>` once the agent answers.
    Health,
    /// Print the guest's kernel release, CPU count and memory.
    Details,
    /// A guest restored from a VM template: reseed its RNG with 64 fresh bytes from this host
    /// and set its clock to this host's; prints `clock_step_ms=N` (how far its clock moved).
    ResumeClone,
    /// Run a process in the guest (or, with --container, in a started container) with this
    /// process's stdin, stdout and stderr; exit with its status (128+N if killed by signal N).
    Exec(ExecArgs),
    /// Create a container from an OCI config.json (read here) with its rootfs at a guest path.
    /// With stream flags, stays attached: copies the streams and exits with the init's status.
    CreateContainer {
        #[arg(long)]
        id: String,
        /// The bundle's config.json (a file on this host).
        #[arg(long, value_name = "FILE")]
        spec: PathBuf,
        /// Absolute guest path of the root file system.
        #[arg(long, value_name = "GUEST_PATH")]
        rootfs: String,
        #[arg(long)]
        stdin: bool,
        #[arg(long)]
        stdout: bool,
        #[arg(long)]
        stderr: bool,
        /// Start it right after creating it (StartContainer).
        #[arg(long)]
        start: bool,
    },
    /// Let a created container's init exec.
    StartContainer { id: String },
    /// Kill what is left of a container and forget it.
    RemoveContainer { id: String },
    /// Wait for a process (or a container's init: exec id = container id); exit with its
    /// status (128+N if killed by signal N).
    Wait { exec_id: String },
    /// Send a signal (a number) to a process or container init.
    Signal { exec_id: String, signal: u32 },
    /// Open one stdio stream of a process by hand (security tests: a stream must present the
    /// process's token, which only the host that made the request knows). Copies what the stream
    /// carries to stdout until it ends, then prints `stream closed after N bytes` on stderr.
    OpenStream {
        exec_id: String,
        /// stdin, stdout, stderr or tty.
        kind: String,
        /// The token to present (32 lowercase hex digits); default: a fresh random one.
        #[arg(long)]
        token: Option<String>,
    },
}

/// A fresh stream token for a request and its streams.
fn new_token() -> anyhow::Result<StreamToken> {
    StreamToken::generate().context("drawing a stream token")
}

async fn attach(
    client: &AgentClient,
    exec_id: &str,
    streams: StreamSet,
    tty: bool,
    token: &StreamToken,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<std::io::Result<u64>>>> {
    attach_stdio(client, exec_id, streams, tty, token)
        .await
        .context("opening the stdio streams")
}

/// Waits for `exec_id` and for its output streams to end; returns the shell-style status.
async fn finish(
    client: &AgentClient,
    exec_id: &str,
    outputs: Vec<tokio::task::JoinHandle<std::io::Result<u64>>>,
    print_status: bool,
) -> anyhow::Result<i32> {
    let status = client
        .wait_process(exec_id)
        .await
        .context("waiting for the process")?;
    // The streams end (EOF) once the process and its children closed them.
    for o in outputs {
        o.await?.context("copying output")?;
    }
    if print_status {
        match status {
            ExitStatus::Exited(code) => eprintln!("status: exited {code}"),
            ExitStatus::Signaled(sig) => eprintln!("status: signaled {sig}"),
        }
    }
    Ok(i32::from(status.shell_code()))
}

fn parse_user(user: &str) -> anyhow::Result<(u32, u32)> {
    let (u, g) = user.split_once(':').unwrap_or((user, user));
    Ok((
        u.parse().with_context(|| format!("uid {u:?}"))?,
        g.parse().with_context(|| format!("gid {g:?}"))?,
    ))
}

#[derive(clap::Args, Debug)]
struct ExecArgs {
    /// KEY=VALUE environment entries (default: PATH only).
    #[arg(long = "env", short = 'e')]
    env: Vec<String>,
    /// Working directory in the guest.
    #[arg(long, default_value = "/")]
    cwd: String,
    /// Run inside this container (its namespaces, root, cgroup).
    #[arg(long, value_name = "ID")]
    container: Option<String>,
    /// Run on a pseudo-terminal (one `tty` stream: this process's stdin in, its stdout out).
    #[arg(long)]
    tty: bool,
    /// uid:gid of the process.
    #[arg(long, value_name = "UID:GID")]
    user: Option<String>,
    /// The process's exec id (default: a fresh one), for `signal` and `wait`.
    #[arg(long)]
    id: Option<String>,
    /// Print how the process ended on stderr: `status: exited N` or `status: signaled N`.
    #[arg(long)]
    print_status: bool,
    /// Command and arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

async fn exec(client: &AgentClient, a: ExecArgs) -> anyhow::Result<i32> {
    let exec_id =
        a.id.unwrap_or_else(|| format!("ctl-{}-{}", std::process::id(), rand_suffix()));
    let mut req = ExecProcessRequest::new();
    req.exec_id = exec_id.clone();
    req.args = a.args;
    req.env = if a.env.is_empty() {
        vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()]
    } else {
        a.env
    };
    req.cwd = a.cwd;
    req.container_id = a.container.unwrap_or_default();
    req.terminal = a.tty;
    if let Some(user) = &a.user {
        (req.uid, req.gid) = parse_user(user)?;
    }
    req.stdin = true;
    req.stdout = true;
    req.stderr = true;
    let token = new_token()?;
    req.stream_token = token.to_string();
    let (outputs, started) = tokio::join!(
        attach(client, &exec_id, StreamSet::ALL, a.tty, &token),
        client.exec_process(&req)
    );
    started.context("starting the process")?;
    let outputs = outputs.context("opening the stdio streams")?;
    finish(client, &exec_id, outputs, a.print_status).await
}

struct CreateArgs {
    id: String,
    spec: PathBuf,
    rootfs: String,
    streams: StreamSet,
    start: bool,
}

async fn create_container(client: &AgentClient, a: CreateArgs) -> anyhow::Result<i32> {
    let json = std::fs::read(&a.spec).with_context(|| format!("reading {}", a.spec.display()))?;
    let tty = serde_json::from_slice::<serde_json::Value>(&json)
        .with_context(|| format!("parsing {}", a.spec.display()))?
        .pointer("/process/terminal")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let token = new_token()?;
    let (outputs, created) = tokio::join!(
        attach(client, &a.id, a.streams, tty, &token),
        client.create_container(&a.id, json, &a.rootfs, a.streams, &token)
    );
    let pid = created.context("creating the container")?;
    let outputs = outputs.context("opening the stdio streams")?;
    eprintln!(
        "sandpod-agentctl: container {} created, init pid {pid}",
        a.id
    );
    if a.start {
        client
            .start_container(&a.id)
            .await
            .context("starting the container")?;
    }
    if a.streams == StreamSet::default() {
        return Ok(0);
    }
    finish(client, &a.id, outputs, false).await
}

async fn open_stream(
    client: &AgentClient,
    exec_id: &str,
    kind: &str,
    token: Option<String>,
) -> anyhow::Result<i32> {
    let kind: StreamKind = kind.parse()?;
    let token = match token {
        Some(t) => StreamToken::parse(&t)?,
        None => new_token()?,
    };
    let mut stream = client.open_stream(exec_id, kind, &token).await?;
    let n = tokio::io::copy(&mut stream, &mut tokio::io::stdout()).await?;
    eprintln!("stream closed after {n} bytes");
    Ok(0)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000)
        .unwrap_or(0)
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let config = ClientConfig {
        connect_deadline: Duration::from_secs(cli.connect_timeout),
        ..ClientConfig::default()
    };
    let client = AgentClient::connect(HybridVsockConnector::new(&cli.uds), config)
        .await
        .with_context(|| format!("connecting to the agent through {}", cli.uds.display()))?;
    match cli.command {
        Command::Health => {
            let h = client.health().await?;
            println!("ok {}", h.version);
            Ok(0)
        }
        Command::ResumeClone => {
            use std::io::Read;
            let mut entropy = [0u8; 64];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut entropy))
                .context("reading /dev/urandom")?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the host's clock is before 1970")?;
            let now_ns = u64::try_from(now.as_nanos()).context("the host's clock")?;
            let step = client.resume_clone(&entropy, now_ns).await?;
            println!("clock_step_ms={step}");
            Ok(0)
        }
        Command::Details => {
            let d = client.guest_details().await?;
            println!(
                "kernel={} cpus={} mem_total_kib={}",
                d.kernel_release, d.cpus, d.mem_total_kib
            );
            Ok(0)
        }
        Command::Exec(a) => exec(&client, a).await,
        Command::CreateContainer {
            id,
            spec,
            rootfs,
            stdin,
            stdout,
            stderr,
            start,
        } => {
            let a = CreateArgs {
                id,
                spec,
                rootfs,
                streams: StreamSet {
                    stdin,
                    stdout,
                    stderr,
                },
                start,
            };
            create_container(&client, a).await
        }
        Command::StartContainer { id } => {
            client.start_container(&id).await?;
            Ok(0)
        }
        Command::RemoveContainer { id } => {
            client.remove_container(&id).await?;
            Ok(0)
        }
        Command::Wait { exec_id } => {
            Ok(i32::from(client.wait_process(&exec_id).await?.shell_code()))
        }
        Command::Signal { exec_id, signal } => {
            client.signal_process(&exec_id, signal).await?;
            Ok(0)
        }
        Command::OpenStream {
            exec_id,
            kind,
            token,
        } => open_stream(&client, &exec_id, &kind, token).await,
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(sandpod_runtime::cli::env_filter("warn"))
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sandpod-agentctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("sandpod-agentctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
