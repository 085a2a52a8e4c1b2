//! The sandbox monitor: a small long-lived process per sandbox (`sandpod` re-executed in a hidden
//! mode) that owns the VM. It starts virtiofsd and sandpod-vmm as its children (they die with it:
//! PR_SET_PDEATHSIG), receives the guest's logs and writes them to the runtime log with their
//! level, and when the VMM ends — or on SIGTERM — stops virtiofsd and records how the VM ended.
//! create, start and delete can then run in separate, short-lived processes.
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};

use super::layout::Layout;
use super::process::ProcessIdent;
use super::state::write_json_atomic;
use crate::agent_client::LogReceiver;

/// How long virtiofsd may take to create its socket.
const VIRTIOFSD_SOCKET_WAIT: Duration = Duration::from_secs(10);
/// How long the VMM and virtiofsd get after SIGTERM before SIGKILL.
const CHILD_GRACE: Duration = Duration::from_secs(5);

/// What the monitor starts, written by the creator to `monitor.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorPlan {
    /// sandpod-vmm's program and arguments.
    pub vmm: Vec<PathBuf>,
    /// virtiofsd's program and arguments, and the socket it creates.
    pub virtiofsd: Option<(Vec<PathBuf>, PathBuf)>,
    /// Where the VMM forwards the guest's log connections (`<vsock uds>_1025`).
    pub guest_log_socket: PathBuf,
}

/// The VM's processes, as started (`children.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Children {
    pub vmm: Option<ProcessIdent>,
    pub virtiofsd: Option<ProcessIdent>,
}

/// How the VMM ended (`vm-exit.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmExit {
    /// sandpod-vmm's exit code (0 power-off, 2 guest reset/panic, ...), if it exited.
    pub code: Option<i32>,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// Why the monitor stopped it, if it did.
    pub stopped_because: Option<String>,
}

fn command(argv: &[PathBuf]) -> anyhow::Result<Command> {
    let (prog, args) = argv.split_first().context("empty command line")?;
    let mut c = std::process::Command::new(prog);
    c.args(args).stdin(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which is
    // async-signal-safe; it touches no memory of the parent.
    unsafe {
        c.pre_exec(|| {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(Command::from(c))
}

fn spawn(argv: &[PathBuf], log: &std::fs::File) -> anyhow::Result<(Child, ProcessIdent)> {
    let mut c = command(argv)?;
    c.stdout(log.try_clone()?).stderr(log.try_clone()?);
    let child = c
        .spawn()
        .with_context(|| format!("starting {}", argv[0].display()))?;
    let pid = child.id().context("child has no pid")?;
    let ident = ProcessIdent::of(pid).context("reading the child's start time")?;
    Ok((child, ident))
}

async fn wait_for_socket(child: &mut Child, socket: &Path) -> anyhow::Result<()> {
    let end = Instant::now() + VIRTIOFSD_SOCKET_WAIT;
    while !socket.exists() {
        if let Some(st) = child.try_wait()? {
            bail!("virtiofsd exited before creating its socket ({st})");
        }
        if Instant::now() >= end {
            bail!(
                "virtiofsd did not create {} within {VIRTIOFSD_SOCKET_WAIT:?}",
                socket.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

async fn stop(child: &mut Child, name: &str) -> Option<std::process::ExitStatus> {
    if let Ok(Some(st)) = child.try_wait() {
        return Some(st);
    }
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    match tokio::time::timeout(CHILD_GRACE, child.wait()).await {
        Ok(st) => st.ok(),
        Err(_) => {
            tracing::warn!("{name} ignored SIGTERM for {CHILD_GRACE:?}; killing it");
            let _ = child.kill().await;
            child.wait().await.ok()
        }
    }
}

/// The monitor's main: runs until the VM is gone. `log` is the runtime log file (its stdout and
/// stderr are already there).
pub async fn run_monitor(layout: &Layout, log: &std::fs::File) -> anyhow::Result<()> {
    let plan: MonitorPlan = serde_json::from_slice(
        &std::fs::read(layout.monitor_plan()).context("reading monitor.json")?,
    )
    .context("parsing monitor.json")?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;

    let _guest_logs = LogReceiver::bind(&plan.guest_log_socket)
        .with_context(|| format!("listening on {}", plan.guest_log_socket.display()))?;
    let mut children = Children::default();
    let mut fsd = None;
    if let Some((argv, socket)) = &plan.virtiofsd {
        let (mut child, ident) = spawn(argv, log)?;
        children.virtiofsd = Some(ident);
        write_json_atomic(&layout.children(), &children)?;
        if let Err(e) = wait_for_socket(&mut child, socket).await {
            stop(&mut child, "virtiofsd").await;
            return Err(e);
        }
        fsd = Some(child);
    }
    let (mut vmm, ident) = match spawn(&plan.vmm, log) {
        Ok(v) => v,
        Err(e) => {
            if let Some(c) = fsd.as_mut() {
                stop(c, "virtiofsd").await;
            }
            return Err(e);
        }
    };
    children.vmm = Some(ident);
    write_json_atomic(&layout.children(), &children)?;
    tracing::info!(vmm_pid = ident.pid, "VM started");

    let mut stopped_because = None;
    let status = loop {
        let fsd_exit = async {
            match fsd.as_mut() {
                Some(c) => c.wait().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            st = vmm.wait() => break st.ok(),
            st = fsd_exit => {
                tracing::error!("virtiofsd exited while the VM runs ({st:?}); stopping the VM");
                fsd = None;
                stopped_because = Some("virtiofsd exited".to_string());
                break stop(&mut vmm, "sandpod-vmm").await;
            }
            _ = term.recv() => stopped_because = Some("SIGTERM".into()),
            _ = int.recv() => stopped_because = Some("SIGINT".into()),
            _ = hup.recv() => stopped_because = Some("SIGHUP".into()),
        }
        if let Some(why) = &stopped_because {
            tracing::info!("stopping the VM ({why})");
            break stop(&mut vmm, "sandpod-vmm").await;
        }
    };
    if let Some(c) = fsd.as_mut() {
        stop(c, "virtiofsd").await;
    }
    use std::os::unix::process::ExitStatusExt;
    let exit = VmExit {
        code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        stopped_because,
    };
    tracing::info!(code = ?exit.code, signal = ?exit.signal, "VM ended");
    write_json_atomic(&layout.vm_exit(), &exit)?;
    Ok(())
}
