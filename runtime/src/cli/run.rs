//! `sandpod run [--bundle DIR] ID`: like `runc run` — a sandbox VM for one container, the caller's
//! stdio (or terminal) attached, its exit status returned, everything torn down afterwards
//! (success, failure, Ctrl-C or SIGTERM alike).
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};

use super::stdio::{attach, Attached};
use super::{Cli, VmArgs};
use crate::agent_client::{ExitStatus, StreamSet};
use crate::bundle::Bundle;
use crate::paths::RuntimePaths;
use crate::sandbox::{Sandbox, SandboxOptions, Status};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The bundle directory (config.json and the rootfs it names).
    #[arg(long, short, default_value = ".")]
    pub bundle: PathBuf,
    /// Write the container init's guest pid to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Seconds a container gets after a forwarded SIGINT/SIGTERM/SIGHUP before it is killed.
    #[arg(long, default_value_t = 10)]
    pub kill_after: u64,
    #[command(flatten)]
    pub vm: VmArgs,
    /// The container id.
    pub id: String,
}

pub async fn run(cli: &Cli, args: &RunArgs) -> anyhow::Result<u8> {
    // Everything about the input is checked before anything is created.
    crate::sandbox::validate_id(&args.id)?;
    let bundle = Bundle::load(&args.bundle)?;
    let paths = RuntimePaths::discover()?;
    let opts = SandboxOptions {
        root: cli.root.clone(),
        id: args.id.clone(),
        bundle,
        paths,
        log: cli.log.clone(),
        cache: args.vm.virtiofs_cache,
        boot_timeout: Duration::from_secs(args.vm.boot_timeout),
        self_exe: std::env::current_exe().context("locating the sandpod binary")?,
    };
    let terminal = opts.bundle.terminal();
    // Signals are caught from here on, so a Ctrl-C during boot also tears down.
    let mut signals = Signals::new()?;
    let sandbox = tokio::select! {
        s = Sandbox::create(opts) => s?,
        sig = signals.recv() => anyhow::bail!("interrupted by signal {sig} while creating the sandbox (removed)"),
    };
    let mut sandbox = sandbox;
    let result = run_container(&mut sandbox, args, terminal, &mut signals).await;
    let teardown = sandbox.destroy().await;
    let code = result?;
    teardown.context("removing the sandbox")?;
    Ok(code)
}

async fn run_container(
    sandbox: &mut Sandbox,
    args: &RunArgs,
    terminal: bool,
    signals: &mut Signals,
) -> anyhow::Result<u8> {
    let id = args.id.clone();
    let streams = StreamSet {
        stdin: true,
        stdout: true,
        stderr: !terminal,
    };
    let client = sandbox.client.clone();
    let (pid, streams) = tokio::try_join!(
        async {
            client
                .create_container(
                    &id,
                    sandbox.guest_spec.clone(),
                    &sandbox.guest_rootfs,
                    streams,
                )
                .await
                .context("creating the container")
        },
        async {
            attach(&client, &id, terminal)
                .await
                .context("attaching stdio")
        },
    )?;
    sandbox.state.guest_pid = Some(pid);
    sandbox.set_status(Status::Created)?;
    if let Some(p) = &args.pid_file {
        std::fs::write(p, format!("{pid}")).with_context(|| format!("writing {}", p.display()))?;
    }
    client
        .start_container(&id)
        .await
        .context("starting the container")?;
    sandbox.set_status(Status::Running)?;
    let Attached { output, _raw_mode } = streams;

    let kill_after = Duration::from_secs(args.kill_after);
    let mut deadline: Option<tokio::time::Instant> = None;
    let wait = client.wait_container(&id, None);
    tokio::pin!(wait);
    let status = loop {
        let kill_timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            st = &mut wait => break st.context("waiting for the container (did the VM stop?)")?,
            sig = signals.recv() => {
                let again = deadline.is_some() && matches!(sig, 2 | 15);
                let forward = if again { 9 } else { sig };
                tracing::info!(signal = forward, "forwarding a signal to the container");
                if let Err(e) = client.signal_process(&id, forward).await {
                    tracing::warn!("forwarding signal {forward}: {e}");
                }
                if matches!(sig, 1 | 2 | 15) && deadline.is_none() {
                    deadline = Some(tokio::time::Instant::now() + kill_after);
                }
            }
            _ = kill_timer => {
                tracing::warn!("the container ignored the signal for {kill_after:?}: killing it");
                deadline = Some(tokio::time::Instant::now() + Duration::from_secs(3600));
                if let Err(e) = client.signal_process(&id, 9).await {
                    tracing::warn!("SIGKILL: {e}");
                }
            }
        }
    };
    let (status, oom_killed) = status;
    if oom_killed {
        eprintln!("sandpod: container {id} was killed by the OOM killer (memory limit reached)");
        tracing::warn!("container {id}: OOM kill in its cgroup");
    }
    sandbox.set_status(Status::Stopped)?;
    // The output streams end once every process holding them is gone: bounded all the same.
    if tokio::time::timeout(Duration::from_secs(5), output)
        .await
        .is_err()
    {
        tracing::warn!("container output did not end within 5 s of its exit");
    }
    Ok(match status {
        ExitStatus::Exited(c) => u8::try_from(c.clamp(0, 255)).unwrap_or(255),
        ExitStatus::Signaled(s) => u8::try_from(128 + s.clamp(0, 127)).unwrap_or(255),
    })
}

/// The signals `run` forwards to the container.
struct Signals {
    streams: Vec<(u32, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        let mut streams = Vec::new();
        for (n, kind) in [
            (1, SignalKind::hangup()),
            (2, SignalKind::interrupt()),
            (3, SignalKind::quit()),
            (10, SignalKind::user_defined1()),
            (12, SignalKind::user_defined2()),
            (15, SignalKind::terminate()),
        ] {
            streams.push((n, signal(kind).context("installing a signal handler")?));
        }
        Ok(Signals { streams })
    }

    /// The next signal's number.
    async fn recv(&mut self) -> u32 {
        std::future::poll_fn(|cx| {
            for (n, s) in self.streams.iter_mut() {
                if s.poll_recv(cx).is_ready() {
                    return std::task::Poll::Ready(*n);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
}
