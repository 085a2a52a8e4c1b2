//! The host process that stands for a guest process (a container's init, or an exec).
//!
//! Callers of a runc-style runtime (containerd's runc shim, conmon, Docker) take the pid in
//! `--pid-file`, wait for it and signal it. For a process in a VM that pid is this stand-in: it
//! lives exactly as long as the guest process, relays the stdio it was given (pipes, FIFOs,
//! files, /dev/null, a pty slave) to and from the agent's streams, forwards the signals it can
//! catch, and exits with the guest process's status (128+N for signal N). It registers with the
//! sandbox monitor, which kills the guest process if the stand-in dies without saying it ended
//! (SIGKILL), so nothing runs in the VM unseen.
//!
//! It is `sandpod standin …` re-executed by `create`/`exec`/`run` with fd 3 a control socket:
//! the creator writes `attach` (the stand-in opens the streams, registers, answers `attached` or
//! `error <text>`), then `go` once the guest process exists (or closes the socket to abort).
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use sandpod_protocol::ErrorChain;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::foreground::Signals;
use super::state::{ContainerState, ExitRecord};
use super::RuntimeOptions;
use crate::agent_client::{
    AgentClient, ClientConfig, HybridVsockConnector, StreamSet, StreamToken,
};
use crate::io::relay::attach;
use crate::io::StandinStdio;
use crate::sandbox::process::ProcessIdent;
use crate::sandbox::standin_watch::Registered;
use crate::sandbox::state::write_json_atomic;
use crate::sandbox::Layout;

/// The control socket's fd in the stand-in.
const CONTROL_FD: RawFd = 3;
/// How long the creator waits for the stand-in to attach the streams.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long output may take to drain after the guest process ended.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Signals a stand-in forwards to its guest process (SIGWINCH resizes the terminal instead).
pub const FORWARDED: [i32; 7] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGTERM,
];

/// What a stand-in stands for (its command line).
#[derive(clap::Args, Debug, Clone, PartialEq, Eq, Default)]
pub struct StandinArgs {
    /// The sandbox the process runs in.
    #[arg(long)]
    pub sandbox: String,
    /// The container the process belongs to.
    #[arg(long)]
    pub container: String,
    /// The guest process (the container id for its init).
    #[arg(long)]
    pub exec_id: String,
    /// Terminal mode: one tty stream, the stdio a terminal.
    #[arg(long)]
    pub tty: bool,
    /// Make a new network namespace for the sandbox, held by this process.
    #[arg(long)]
    pub new_netns: bool,
    /// No stdin stream: the guest process reads /dev/null (the creator's, so the stand-in's,
    /// stdin is the null device: [`crate::io::IoConfig::streams`]).
    #[arg(long)]
    pub no_stdin: bool,
    /// No stdout stream: the guest process writes to /dev/null.
    #[arg(long)]
    pub no_stdout: bool,
    /// No stderr stream: the guest process writes to /dev/null.
    #[arg(long)]
    pub no_stderr: bool,
}

impl StandinArgs {
    /// The streams the stand-in opens (the process's request asked for the same).
    pub fn streams(&self) -> StreamSet {
        StreamSet {
            stdin: !self.no_stdin,
            stdout: !self.no_stdout,
            stderr: !self.no_stderr,
        }
    }

    /// Records `streams` (what the process's request asks for) in the stand-in's arguments.
    pub fn with_streams(self, streams: StreamSet) -> StandinArgs {
        StandinArgs {
            no_stdin: !streams.stdin,
            no_stdout: !streams.stdout,
            no_stderr: !streams.stderr,
            ..self
        }
    }
}

/// A spawned stand-in, seen from its creator.
pub struct Standin {
    pub child: Child,
    pub ident: ProcessIdent,
    control: BufReader<tokio::net::UnixStream>,
    /// It said `ready`.
    ready: bool,
}

impl Standin {
    /// Starts `sandpod standin` with `stdio` as its fds 0–2 (not waiting for it to be ready).
    pub fn spawn(
        rt: &RuntimeOptions,
        layout: &Layout,
        args: &StandinArgs,
        stdio: StandinStdio,
    ) -> anyhow::Result<Standin> {
        let (ours, theirs) =
            std::os::unix::net::UnixStream::pair().context("making the stand-in's socket")?;
        let mut cmd = Command::new(&rt.self_exe);
        cmd.arg("--root")
            .arg(&rt.root)
            .arg("--log")
            .arg(rt.log.clone().unwrap_or_else(|| layout.default_log()))
            .arg("--log-format")
            .arg(&rt.log_format);
        if rt.debug {
            cmd.arg("--debug");
        }
        cmd.args(["standin", "--sandbox", &args.sandbox, "--container"])
            .arg(&args.container)
            .arg("--exec-id")
            .arg(&args.exec_id);
        if args.tty {
            cmd.arg("--tty");
        }
        if args.new_netns {
            cmd.arg("--new-netns");
        }
        for (off, flag) in [
            (args.no_stdin, "--no-stdin"),
            (args.no_stdout, "--no-stdout"),
            (args.no_stderr, "--no-stderr"),
        ] {
            if off {
                cmd.arg(flag);
            }
        }
        if let StandinStdio::Pty(slave) = &stdio {
            cmd.stdin(Stdio::from(slave.try_clone()?))
                .stdout(Stdio::from(slave.try_clone()?))
                .stderr(Stdio::from(slave.try_clone()?));
        }
        let fd = theirs.as_raw_fd();
        // SAFETY: between fork and exec the closure only calls dup2(2) and fcntl(2), both
        // async-signal-safe, on fds this process owns; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if fd == CONTROL_FD {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, CONTROL_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting the stand-in {}", rt.self_exe.display()))?;
        drop(theirs);
        drop(stdio);
        let ident = ProcessIdent::of(child.id()).context("reading the stand-in's start time")?;
        ours.set_nonblocking(true)?;
        let control = BufReader::new(tokio::net::UnixStream::from_std(ours)?);
        Ok(Standin {
            child,
            ident,
            control,
            ready: false,
        })
    }

    /// Waits until the stand-in has its session and namespace (its first line, `ready`): the
    /// hooks that configure its network namespace run only after that.
    pub async fn ready(&mut self) -> anyhow::Result<()> {
        if self.ready {
            return Ok(());
        }
        let mut line = String::new();
        let read = tokio::time::timeout(ATTACH_TIMEOUT, self.control.read_line(&mut line)).await;
        match read {
            Ok(Ok(_)) if line == "ready\n" => {
                self.ready = true;
                Ok(())
            }
            Ok(_) => bail!("the stand-in process ended before it was ready (see the runtime log)"),
            Err(_) => bail!("the stand-in was not ready within {ATTACH_TIMEOUT:?}"),
        }
    }

    /// Has the stand-in open the guest process's streams (before the process is created: the
    /// agent waits for them), presenting `token` (the one of the process's request; it goes over
    /// the control socket, never on a command line).
    pub async fn attach(&mut self, token: &StreamToken) -> anyhow::Result<()> {
        self.ready().await?;
        self.control
            .get_mut()
            .write_all(format!("attach {token}\n").as_bytes())
            .await?;
        let mut line = String::new();
        let read = tokio::time::timeout(ATTACH_TIMEOUT, self.control.read_line(&mut line)).await;
        match read {
            Ok(Ok(_)) if line == "attached\n" => Ok(()),
            Ok(Ok(0)) | Ok(Err(_)) => bail!("the stand-in process ended before attaching"),
            Ok(Ok(_)) => bail!(
                "attaching stdio: {}",
                line.trim_end().strip_prefix("error ").unwrap_or(&line)
            ),
            Err(_) => bail!("the stand-in did not attach stdio within {ATTACH_TIMEOUT:?}"),
        }
    }

    /// Lets the stand-in wait for the guest process (which exists now).
    pub async fn go(mut self) -> anyhow::Result<Child> {
        self.control.get_mut().write_all(b"go\n").await?;
        self.control.get_mut().shutdown().await?;
        Ok(self.child)
    }

    /// Ends a stand-in whose guest process was never made.
    pub fn abort(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the stand-in does before its async runtime starts (single-threaded): a session of its
/// own (signals for the caller's terminal do not reach it; with a pty, that pty becomes its
/// controlling terminal so resizes send SIGWINCH), and the sandbox's network namespace.
pub fn prepare(args: &StandinArgs) -> anyhow::Result<()> {
    nix::unistd::setsid().context("setsid")?;
    if args.tty {
        // SAFETY: TIOCSCTTY on fd 0 takes an integer argument and touches no memory of ours;
        // failure (fd 0 is not a terminal) is harmless and only logged.
        let r = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
        if r != 0 {
            tracing::debug!("TIOCSCTTY on stdin: {}", std::io::Error::last_os_error());
        }
    }
    if args.new_netns {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .context("creating the sandbox's network namespace")?;
    }
    Ok(())
}

/// The stand-in's main (after [`prepare`]): returns its exit status.
pub async fn run(rt: &RuntimeOptions, args: &StandinArgs) -> anyhow::Result<u8> {
    // SAFETY: fd 3 was set up by `Standin::spawn` as this process's end of the control socket and
    // nothing else in this process owns it.
    let control = unsafe { OwnedFd::from_raw_fd(CONTROL_FD) };
    let control = std::os::unix::net::UnixStream::from(control);
    control.set_nonblocking(true)?;
    let (r, mut w) = tokio::net::UnixStream::from_std(control)?.into_split();
    // `prepare` (session, network namespace) is done: the creator may run its hooks.
    w.write_all(b"ready\n").await?;
    let mut lines = BufReader::new(r).lines();
    let token = match lines
        .next_line()
        .await?
        .as_deref()
        .map(|l| l.strip_prefix("attach "))
    {
        Some(Some(t)) => StreamToken::parse(t).context("the stream token from the creator")?,
        _ => return Ok(1),
    };
    let layout = Layout::new(&rt.root, &args.sandbox);
    let attached = async {
        let config = ClientConfig {
            connect_deadline: Duration::from_secs(10),
            ..ClientConfig::default()
        };
        let client = AgentClient::connect(HybridVsockConnector::new(layout.vsock()), config)
            .await
            .context("reaching the agent")?;
        let reg = Registered::register(&layout, &args.exec_id).await?;
        let streams = attach(&client, &args.exec_id, args.tty, args.streams(), &token).await?;
        anyhow::Ok((client, reg, streams))
    }
    .await;
    let (client, reg, streams) = match attached {
        Ok(a) => {
            w.write_all(b"attached\n").await?;
            a
        }
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            w.write_all(format!("error {msg}\n").as_bytes()).await?;
            return Ok(1);
        }
    };
    if lines.next_line().await.ok().flatten().as_deref() != Some("go") {
        // The creator gave up: the guest process does not exist.
        reg.exited().await;
        return Ok(1);
    }
    drop((lines, w));

    let mut signals = Signals::of(FORWARDED)?;
    let wait = client.wait_container(&args.exec_id, None);
    tokio::pin!(wait);
    let result = loop {
        let next_signal = signals.recv();
        tokio::select! {
            r = &mut wait => break r,
            sig = next_signal => {
                let sig = u32::try_from(sig).unwrap_or(15);
                tracing::debug!(exec_id = args.exec_id, signal = sig, "forwarding a signal");
                if let Err(e) = client.signal_process(&args.exec_id, sig).await {
                    tracing::warn!(
                        "forwarding signal {sig} to {}: {}",
                        args.exec_id,
                        ErrorChain(&e)
                    );
                }
            }
        }
    };
    let (status, oom_killed) = match result {
        Ok((st, oom)) => (st.shell_code(), oom),
        Err(e) => {
            tracing::error!(
                "waiting for {} (did the VM stop?): {}",
                args.exec_id,
                ErrorChain(&e)
            );
            (255, false)
        }
    };
    if args.exec_id == args.container {
        let record = ExitRecord { status, oom_killed };
        if let Err(e) = write_json_atomic(
            &ContainerState::exit_path(&layout, &args.container),
            &record,
        ) {
            tracing::debug!("recording the exit of {}: {e}", args.container);
        }
    } else {
        let _ = std::fs::remove_file(exec_standin_path(&layout, &args.container, &args.exec_id));
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, streams.output)
        .await
        .is_err()
    {
        tracing::warn!(
            "output of {} did not end within {DRAIN_TIMEOUT:?} of its exit",
            args.exec_id
        );
    }
    reg.exited().await;
    drop(streams._raw_mode);
    Ok(status)
}

fn exec_standin_path(layout: &Layout, container: &str, exec_id: &str) -> std::path::PathBuf {
    layout.container_dir(container).join("execs").join(exec_id)
}

/// Records an exec's stand-in for `ps` (by its creator, before the caller gets the pid: `ps`
/// right after `exec -d` lists it); the stand-in removes it when it ends.
pub fn record_exec_standin(layout: &Layout, container: &str, exec_id: &str, standin: ProcessIdent) {
    let p = exec_standin_path(layout, container, exec_id);
    let r = std::fs::create_dir_all(p.parent().unwrap_or(&p))
        .and_then(|()| write_json_atomic(&p, &standin));
    if let Err(e) = r {
        tracing::warn!("recording the stand-in of {exec_id}: {e}");
    }
}

/// The live stand-ins of the execs of container `id`.
pub fn exec_standins(layout: &Layout, id: &str) -> Vec<ProcessIdent> {
    let Ok(entries) = std::fs::read_dir(layout.container_dir(id).join("execs")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice::<ProcessIdent>(&b).ok())
        .filter(|p| p.alive())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: StandinArgs,
    }

    #[test]
    fn the_streams_go_on_the_command_line_and_back() {
        let base = StandinArgs {
            sandbox: "s".into(),
            container: "c".into(),
            exec_id: "c".into(),
            ..StandinArgs::default()
        };
        assert_eq!(base.streams(), StreamSet::ALL);
        let some = StreamSet {
            stdin: false,
            stdout: true,
            stderr: false,
        };
        let args = base.with_streams(some);
        assert_eq!(args.streams(), some);
        let parsed = Cli::try_parse_from([
            "standin",
            "--sandbox",
            "s",
            "--container",
            "c",
            "--exec-id",
            "c",
            "--no-stdin",
            "--no-stderr",
        ])
        .unwrap();
        assert_eq!(parsed.args, args);
    }
}
