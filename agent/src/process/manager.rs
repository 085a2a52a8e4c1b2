//! ExecProcess, WaitProcess, SignalProcess, CloseStdin and ResizeTerminal, over the reaper, the
//! process table and the stream broker.
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use sandpod_protocol::stream::validate_exec_id;
use sandpod_protocol::{StreamKind, StreamToken};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::{oneshot, watch};

use super::creds::CredsPlan;
use super::error::ProcessError;
use super::exit::ExitStatus;
use super::launched::{Launched, ParentStdio};
use super::reaper::{Reaper, SignalOutcome};
use super::spawn::{spawn_error, ChildStdio, ExecSpec};
use super::table::ProcessEntry;
use crate::ids::Registry;
use crate::stdio::broker::StreamBroker;
use crate::stdio::pty::Pty;
use crate::stdio::{pump, HostStream};

/// How long ExecProcess waits for the streams it was told to expect.
pub const STREAM_ATTACH_TIMEOUT: Duration = Duration::from_secs(10);

/// The agent's processes. Cheap to clone.
#[derive(Clone)]
pub struct ProcessManager {
    reaper: Reaper,
    table: Registry<ProcessEntry>,
    broker: StreamBroker,
    attach_timeout: Duration,
}

/// The streams a spec expects, in a fixed order.
pub fn expected_streams(spec: &ExecSpec) -> Vec<StreamKind> {
    // The protocol's rule: with a terminal, one tty stream.
    sandpod_protocol::StreamSet {
        stdin: spec.stdin,
        stdout: spec.stdout,
        stderr: spec.stderr,
    }
    .kinds(spec.process.terminal)
}

fn piped_if(wanted: bool) -> Stdio {
    if wanted {
        Stdio::piped()
    } else {
        Stdio::null()
    }
}

/// Forks and execs (blocking).
fn start(reaper: Reaper, spec: &ExecSpec, creds: CredsPlan) -> Result<Launched, ProcessError> {
    let spawn_err = |e: std::io::Error| ProcessError::Spawn {
        exec_id: spec.exec_id.clone(),
        message: spawn_error(spec, &e),
    };
    let (stdio, pty) = if spec.process.terminal {
        let (pty, slave) = Pty::open().map_err(|e| ProcessError::Spawn {
            exec_id: spec.exec_id.clone(),
            message: format!("opening a pty: {e}"),
        })?;
        let dup = |f: &std::fs::File| f.try_clone().map(Stdio::from).map_err(spawn_err);
        let stdio = ChildStdio {
            stdin: dup(&slave)?,
            stdout: dup(&slave)?,
            stderr: dup(&slave)?,
        };
        (stdio, Some(pty))
        // `slave` is dropped here; the command drops its copies after the spawn: the child
        // then holds the only slave descriptors, and the master reads EOF when it is gone.
    } else {
        let stdio = ChildStdio {
            stdin: piped_if(spec.stdin),
            stdout: piped_if(spec.stdout),
            stderr: piped_if(spec.stderr),
        };
        (stdio, None)
    };
    let mut cmd = spec.command(stdio, creds);
    let (mut child, exit) = reaper.spawn(&mut cmd).map_err(spawn_err)?;
    Ok(Launched {
        pid: child.id() as i32,
        exit,
        stdio: ParentStdio::take_from(&mut child),
        pty,
    })
}

impl ProcessManager {
    pub fn new(reaper: Reaper, broker: StreamBroker) -> Self {
        ProcessManager {
            reaper,
            table: Registry::default(),
            broker,
            attach_timeout: STREAM_ATTACH_TIMEOUT,
        }
    }

    /// The reaper, for launchers that start children themselves.
    pub fn reaper(&self) -> Reaper {
        self.reaper
    }

    /// Starts a process once its streams are attached; returns its pid.
    pub async fn exec(&self, spec: ExecSpec) -> Result<i32, ProcessError> {
        validate_exec_id(&spec.exec_id)
            .map_err(|e| ProcessError::InvalidArgument(e.to_string()))?;
        spec.check()
            .map_err(|e| ProcessError::InvalidArgument(format!("exec {}: {e}", spec.exec_id)))?;
        let creds = spec
            .process
            .creds
            .plan()
            .map_err(ProcessError::PermissionDenied)?;
        let reaper = self.reaper;
        let (pid, ()) = self
            .launch(spec, move |spec| Ok((start(reaper, spec, creds)?, ())))
            .await?;
        Ok(pid)
    }

    /// The common part of every way of starting a process: holds the exec id, waits for the
    /// streams the spec expects, runs `start` (blocking: it forks) and registers what it
    /// started under the exec id, with its stdio wired to the streams. `start` may hand back
    /// something of its own (`T`, e.g. a container's sync channel).
    pub async fn launch<T, F>(&self, spec: ExecSpec, start: F) -> Result<(i32, T), ProcessError>
    where
        T: Send + 'static,
        F: FnOnce(&ExecSpec) -> Result<(Launched, T), ProcessError> + Send + 'static,
    {
        validate_exec_id(&spec.exec_id)
            .map_err(|e| ProcessError::InvalidArgument(e.to_string()))?;
        let kinds = expected_streams(&spec);
        // Streams attach only with the host's token: without one, nothing to compare with.
        let token = if kinds.is_empty() {
            None
        } else {
            Some(StreamToken::parse(&spec.stream_token).map_err(|e| {
                ProcessError::InvalidArgument(format!("exec {}: stream_{e}", spec.exec_id))
            })?)
        };
        let reservation = self
            .table
            .reserve(&spec.exec_id)
            .map_err(|_| ProcessError::AlreadyExists(spec.exec_id.clone()))?;
        let began = std::time::Instant::now();
        let streams = match &token {
            None => Vec::new(),
            Some(token) => self
                .broker
                .take(&spec.exec_id, &kinds, token, self.attach_timeout)
                .await
                .map_err(|missing| ProcessError::StreamsMissing {
                    exec_id: spec.exec_id.clone(),
                    what: missing
                        .0
                        .iter()
                        .map(|k| format!("the {k} stream"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    secs: self.attach_timeout.as_secs(),
                })?,
        };
        tracing::debug!(
            streams_ms = began.elapsed().as_millis(),
            "exec {}: its streams are here",
            spec.exec_id
        );
        let (spec, started) = tokio::task::spawn_blocking(move || {
            let started = start(&spec);
            (spec, started)
        })
        .await
        .map_err(|e| ProcessError::Internal(format!("spawn task: {e}")))?;
        let (launched, extra) = started?;
        let pid = launched.pid;

        let (exit_tx, exit) = watch::channel(None);
        let exit_rx = launched.exit;
        tokio::spawn(async move {
            if let Ok(status) = exit_rx.await {
                let _ = exit_tx.send(Some(status));
            }
        });
        let pty = launched.pty;
        let stdin_closer = match wire_stdio(
            &spec,
            launched.stdio,
            pty.clone(),
            kinds,
            streams,
            exit.clone(),
        ) {
            Ok(closer) => closer,
            Err(e) => {
                // Unregistered, the process would run unseen: end it (the reaper reaps it).
                let _ = self.reaper.signal(pid, Signal::SIGKILL);
                return Err(e);
            }
        };
        let entry = Arc::new(ProcessEntry::new(
            spec.exec_id.clone(),
            pid,
            exit,
            stdin_closer,
            pty,
        ));
        reservation.fill(entry);
        // argv[0] only: arguments may carry secrets.
        tracing::info!(
            pid,
            "exec {} started: {}",
            spec.exec_id,
            spec.process.args[0]
        );
        Ok((pid, extra))
    }

    /// The running process `exec_id` (its pid and exit status).
    pub fn get(&self, exec_id: &str) -> Result<Arc<ProcessEntry>, ProcessError> {
        self.table
            .get(exec_id)
            .ok_or_else(|| ProcessError::NotFound(exec_id.to_string()))
    }

    /// Forgets `entry` without waiting for it (RemoveContainer).
    pub fn forget(&self, entry: &Arc<ProcessEntry>) {
        self.table.remove_entry(&entry.exec_id, entry);
    }

    /// Waits for `exec_id` to end; the process is then forgotten.
    pub async fn wait(&self, exec_id: &str) -> Result<ExitStatus, ProcessError> {
        let entry = self.get(exec_id)?;
        let status = entry.wait().await?;
        self.table.remove_entry(exec_id, &entry);
        tracing::info!(pid = entry.pid, "exec {exec_id} ended: {status}");
        Ok(status)
    }

    /// Sends signal number `signo` to `exec_id`.
    pub fn signal(&self, exec_id: &str, signo: u32) -> Result<(), ProcessError> {
        let sig = parse_signal(signo)?;
        let entry = self.get(exec_id)?;
        match self.reaper.signal(entry.pid, sig) {
            Ok(SignalOutcome::Sent) => Ok(()),
            Ok(SignalOutcome::AlreadyReaped) => Err(ProcessError::Exited(exec_id.to_string())),
            Err(e) => Err(ProcessError::Internal(format!(
                "exec {exec_id}: kill({}, {sig}): {e}",
                entry.pid
            ))),
        }
    }

    /// Closes the stdin of `exec_id` (a terminal gets VEOF). Without stdin, a no-op.
    pub async fn close_stdin(&self, exec_id: &str) -> Result<(), ProcessError> {
        let entry = self.get(exec_id)?;
        if let Some(closer) = entry.take_stdin_closer() {
            let _ = closer.send(());
        } else if let Some(pty) = &entry.pty {
            let mut pty = pty.clone();
            pty.write_all(&[pump::VEOF])
                .await
                .map_err(|e| ProcessError::Internal(format!("exec {exec_id}: {e}")))?;
        }
        Ok(())
    }

    /// Resizes the terminal of `exec_id`.
    pub fn resize(&self, exec_id: &str, rows: u32, cols: u32) -> Result<(), ProcessError> {
        let entry = self.get(exec_id)?;
        let pty = entry
            .pty
            .as_ref()
            .ok_or_else(|| ProcessError::NoTerminal(exec_id.to_string()))?;
        let (Ok(rows), Ok(cols)) = (u16::try_from(rows), u16::try_from(cols)) else {
            return Err(ProcessError::InvalidArgument(format!(
                "terminal size {rows}x{cols} is out of range"
            )));
        };
        pty.resize(rows, cols)
            .map_err(|e| ProcessError::Internal(format!("exec {exec_id}: TIOCSWINSZ: {e}")))
    }

    /// SIGKILLs every process; returns how many were signalled.
    pub fn kill_all(&self) -> usize {
        let entries = self.table.all();
        let mut n = 0;
        for (_, e) in &entries {
            if let Ok(SignalOutcome::Sent) = self.reaper.signal(e.pid, Signal::SIGKILL) {
                n += 1;
            }
        }
        n
    }
}

/// A signal number of the API as a signal (SignalProcess).
pub fn parse_signal(signo: u32) -> Result<Signal, ProcessError> {
    i32::try_from(signo)
        .ok()
        .and_then(|n| Signal::try_from(n).ok())
        .ok_or_else(|| ProcessError::InvalidArgument(format!("{signo} is not a signal")))
}

/// Starts the pumps between the child and its host streams; returns the stdin closer.
fn wire_stdio(
    spec: &ExecSpec,
    mut child: ParentStdio,
    pty: Option<Pty>,
    kinds: Vec<StreamKind>,
    streams: Vec<HostStream>,
    exit: watch::Receiver<Option<ExitStatus>>,
) -> Result<Option<oneshot::Sender<()>>, ProcessError> {
    let id = &spec.exec_id;
    let io_err = |e: std::io::Error| ProcessError::Internal(format!("exec {id}: stdio: {e}"));
    let mut closer = None;
    if let Some(pty) = pty {
        match streams.into_iter().next() {
            Some(stream) => {
                let (from_host, to_host) = tokio::io::split(stream);
                pump::output(format!("{id} tty out"), pty.clone(), to_host);
                let (tx, rx) = oneshot::channel();
                pump::input(
                    format!("{id} tty in"),
                    from_host,
                    pty,
                    rx,
                    exit,
                    Some(pump::VEOF),
                );
                closer = Some(tx);
            }
            // Nobody reads the terminal: drain it so the process never blocks on output.
            None => {
                pump::output(format!("{id} tty drain"), pty, tokio::io::sink());
            }
        }
        return Ok(closer);
    }
    for (kind, stream) in kinds.into_iter().zip(streams) {
        match kind {
            StreamKind::Stdin => {
                let pipe_fd = child.stdin.take().expect("stdin is piped");
                let to_child = pipe::Sender::from_owned_fd(pipe_fd).map_err(io_err)?;
                let (tx, rx) = oneshot::channel();
                pump::input(
                    format!("{id} stdin"),
                    stream,
                    to_child,
                    rx,
                    exit.clone(),
                    None,
                );
                closer = Some(tx);
            }
            StreamKind::Stdout | StreamKind::Stderr => {
                let fd = if kind == StreamKind::Stdout {
                    child.stdout.take().expect("stdout is piped")
                } else {
                    child.stderr.take().expect("stderr is piped")
                };
                let from_child = pipe::Receiver::from_owned_fd(fd).map_err(io_err)?;
                pump::output(format!("{id} {kind}"), from_child, stream);
            }
            StreamKind::Tty => unreachable!("tty streams only in terminal mode"),
        }
    }
    Ok(closer)
}
