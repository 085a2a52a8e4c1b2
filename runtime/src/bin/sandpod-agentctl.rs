//! `sandpod-agentctl`: talk to a Sandpod guest agent by hand (and from the VM-level tests):
//! health, guest details, and running a process in the guest with this terminal's stdio.
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sandpod_protocol::StreamKind;
use sandpod_runtime::agent_client::proto::ExecProcessRequest;
use sandpod_runtime::agent_client::{AgentClient, ClientConfig, ExitStatus, HybridVsockConnector};
use tokio::io::AsyncWriteExt;

/// Talk to the agent of a Sandpod microVM through the VMM's hybrid-vsock socket.
#[derive(Parser, Debug)]
#[command(name = "sandpod-agentctl", version = sandpod_runtime::VERSION)]
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
    /// Run a process in the guest with this process's stdin, stdout and stderr; exit with its
    /// status (128+N if killed by signal N).
    Exec {
        /// KEY=VALUE environment entries (default: PATH only).
        #[arg(long = "env", short = 'e')]
        env: Vec<String>,
        /// Working directory in the guest.
        #[arg(long, default_value = "/")]
        cwd: String,
        /// The process's exec id (default: a fresh one), for `signal --id`.
        #[arg(long)]
        id: Option<String>,
        /// Print how the process ended on stderr: `status: exited N` or `status: signaled N`.
        #[arg(long)]
        print_status: bool,
        /// Command and arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Send a signal to a process started with `exec --id`.
    Signal {
        /// The process's exec id.
        #[arg(long)]
        id: String,
        /// Signal number (e.g. 15 for SIGTERM).
        signal: u32,
    },
}

/// What `exec` runs and how.
struct ExecArgs {
    env: Vec<String>,
    cwd: String,
    id: Option<String>,
    print_status: bool,
    args: Vec<String>,
}

async fn exec(client: &AgentClient, a: ExecArgs) -> anyhow::Result<i32> {
    let ExecArgs {
        env,
        cwd,
        id,
        print_status,
        args,
    } = a;
    let exec_id = id.unwrap_or_else(|| format!("ctl-{}-{}", std::process::id(), rand_suffix()));
    let mut req = ExecProcessRequest::new();
    req.exec_id = exec_id.clone();
    req.args = args;
    req.env = if env.is_empty() {
        vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()]
    } else {
        env
    };
    req.cwd = cwd;
    req.stdin = true;
    req.stdout = true;
    req.stderr = true;
    let (stdin_s, stdout_s, stderr_s) = tokio::try_join!(
        client.open_stream(&exec_id, StreamKind::Stdin),
        client.open_stream(&exec_id, StreamKind::Stdout),
        client.open_stream(&exec_id, StreamKind::Stderr),
    )
    .context("opening the stdio streams")?;
    client
        .exec_process(&req)
        .await
        .context("starting the process")?;

    // stdin may never end (a terminal): it runs detached, the exit does not wait for it.
    tokio::spawn(async move {
        let mut stdin_s = stdin_s;
        let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut stdin_s).await;
        let _ = stdin_s.shutdown().await;
    });
    let out = tokio::spawn(async move {
        let mut s = stdout_s;
        let mut o = tokio::io::stdout();
        let r = tokio::io::copy(&mut s, &mut o).await;
        let _ = o.flush().await;
        r
    });
    let err = tokio::spawn(async move {
        let mut s = stderr_s;
        let mut e = tokio::io::stderr();
        let r = tokio::io::copy(&mut s, &mut e).await;
        let _ = e.flush().await;
        r
    });
    let status = client
        .wait_process(&exec_id)
        .await
        .context("waiting for the process")?;
    // The streams end (EOF) once the process and its children closed them.
    out.await?.context("copying stdout")?;
    err.await?.context("copying stderr")?;
    if print_status {
        match status {
            ExitStatus::Exited(code) => eprintln!("status: exited {code}"),
            ExitStatus::Signaled(sig) => eprintln!("status: signaled {sig}"),
        }
    }
    Ok(match status {
        ExitStatus::Exited(code) => code,
        ExitStatus::Signaled(sig) => 128_i32.saturating_add(sig),
    })
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
        Command::Details => {
            let d = client.guest_details().await?;
            println!(
                "kernel={} cpus={} mem_total_kib={}",
                d.kernel_release, d.cpus, d.mem_total_kib
            );
            Ok(0)
        }
        Command::Exec {
            env,
            cwd,
            id,
            print_status,
            args,
        } => {
            let a = ExecArgs {
                env,
                cwd,
                id,
                print_status,
                args,
            };
            exec(&client, a).await
        }
        Command::Signal { id, signal } => {
            client
                .signal_process(&id, signal)
                .await
                .with_context(|| format!("signalling {id}"))?;
            Ok(0)
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
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
