//! Waiting in the foreground for a stand-in this process started (`run`, `exec` without
//! `--detach`): the signals this process gets go to the stand-in, which forwards them to the
//! guest process; after `kill_after` past an interrupt the stand-in is SIGKILLed, and the sandbox
//! monitor then kills the guest process.
use std::process::Child;
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};

use crate::agent_client::shell_code;
use crate::agent_client::ExitStatus;

use super::standin::FORWARDED;

/// The signals this process catches while it waits.
pub struct Signals {
    streams: Vec<(i32, tokio::signal::unix::Signal)>,
}

impl Signals {
    /// Installs the handlers for the signals a stand-in forwards and SIGWINCH (a stand-in in a
    /// session of its own does not see the caller's terminal resize); from here on these
    /// signals no longer kill this process.
    pub fn new() -> anyhow::Result<Signals> {
        Self::of(FORWARDED.iter().copied().chain([libc::SIGWINCH]))
    }

    /// Installs the handlers for `signals`.
    pub fn of(signals: impl IntoIterator<Item = i32>) -> anyhow::Result<Signals> {
        let mut streams = Vec::new();
        for n in signals {
            streams.push((
                n,
                signal(SignalKind::from_raw(n)).context("installing a signal handler")?,
            ));
        }
        Ok(Signals { streams })
    }

    /// The next signal's number.
    pub async fn recv(&mut self) -> i32 {
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

/// Creates a container with [`super::create`]; an interrupt (SIGINT, SIGTERM, SIGHUP) that
/// arrives meanwhile is acted on once create is done: the container is deleted again and the
/// result is an error. Nothing is left behind either way.
pub async fn create_or_undo(
    rt: &super::RuntimeOptions,
    opts: super::CreateOptions,
    signals: &mut Signals,
) -> anyhow::Result<Child> {
    let id = opts.id.clone();
    let create = super::create(rt, opts);
    tokio::pin!(create);
    let mut interrupted = None;
    let created = loop {
        tokio::select! {
            r = &mut create => break r,
            sig = signals.recv() => {
                if matches!(sig, libc::SIGINT | libc::SIGTERM | libc::SIGHUP) {
                    interrupted.get_or_insert(sig);
                }
            }
        }
    };
    let standin = created?;
    if let Some(sig) = interrupted {
        drop(standin);
        super::delete(rt, &id, true).await?;
        bail!("interrupted by signal {sig} while creating the container (removed)");
    }
    Ok(standin)
}

/// Waits for the stand-in `child`, passing signals on; returns its exit status (128+N if a
/// signal killed it).
pub async fn wait(
    child: Child,
    signals: &mut Signals,
    kill_after: Option<Duration>,
) -> anyhow::Result<u8> {
    let pid = Pid::from_raw(i32::try_from(child.id()).context("stand-in pid")?);
    let mut child = child;
    let waiter = tokio::task::spawn_blocking(move || child.wait());
    tokio::pin!(waiter);
    let mut deadline: Option<tokio::time::Instant> = None;
    let status = loop {
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            st = &mut waiter => break st.context("waiting for the stand-in")??,
            sig = signals.recv() => {
                if let Ok(s) = Signal::try_from(sig) {
                    let _ = kill(pid, s);
                }
                let interrupt = matches!(sig, libc::SIGHUP | libc::SIGINT | libc::SIGTERM);
                if let (true, None, Some(after)) = (interrupt, deadline, kill_after) {
                    deadline = Some(tokio::time::Instant::now() + after);
                }
            }
            _ = timer => {
                tracing::warn!("the container ignored the signal for {kill_after:?}: killing it");
                deadline = Some(tokio::time::Instant::now() + Duration::from_secs(3600));
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
    };
    use std::os::unix::process::ExitStatusExt;
    Ok(shell_code(ExitStatus::from_parts(
        status.code(),
        status.signal(),
    )))
}
