//! Child reaping for an agent that is PID 1 and also waits on the processes it starts.
//!
//! One task reaps every child with `waitpid(-1, WNOHANG)` whenever SIGCHLD arrives (tokio's
//! signal handling: no blocked signals, no polling). A reaped pid that the agent started is
//! handed to its waiter; any other (an orphan reparented to PID 1) is just reaped.
//!
//! No exit status is lost or stolen, because reaping and spawning exclude each other: the
//! registry lock is held across `waitpid` and across fork+exec+registration. So a child cannot
//! be reaped before its waiter is registered, and std's own `waitpid` on a child whose exec
//! failed cannot race with ours. Consequently every child of the agent must be started through
//! [`Reaper::spawn`]: `std::process::Command::output()`/`status()` and `tokio::process` would
//! have their children taken by the reaper.
//!
//! A process has one set of children, so the registry is process-wide: several `Reaper` handles
//! (say, one per test runtime) share it, and whichever reaps a child hands its status over.
use std::collections::HashMap;
use std::io;
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

use super::exit::ExitStatus;

type Waiters = HashMap<i32, oneshot::Sender<ExitStatus>>;

/// The waiters of every child this process started and has not reaped yet.
static WAITERS: Mutex<Option<Waiters>> = Mutex::new(None);

/// Reaps the agent's children; see the module docs. A handle: cheap to copy.
#[derive(Clone, Copy, Debug)]
pub struct Reaper {
    _started: (),
}

/// What signalling a registered child did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalOutcome {
    Sent,
    /// The child has already been reaped (its pid may be reused: nothing was sent).
    AlreadyReaped,
}

impl Reaper {
    /// Starts the reaping task. Must be called inside a tokio runtime.
    pub fn start() -> io::Result<Reaper> {
        let reaper = Reaper { _started: () };
        // Registered before the first round: a SIGCHLD from then on wakes the task.
        let mut sigchld = signal(SignalKind::child())?;
        let task = reaper;
        tokio::spawn(async move {
            loop {
                task.reap_ready();
                if sigchld.recv().await.is_none() {
                    break;
                }
            }
        });
        Ok(reaper)
    }

    fn lock(&self) -> MutexGuard<'static, Option<Waiters>> {
        // A poisoned lock only means a panic elsewhere; the map itself stays consistent.
        WAITERS.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spawns `cmd` and registers the child; the receiver gets its exit status once reaped.
    /// Blocks for the fork+exec: call it from a blocking context.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<(Child, oneshot::Receiver<ExitStatus>)> {
        let mut guard = self.lock();
        let child = cmd.spawn()?;
        let (tx, rx) = oneshot::channel();
        waiters(&mut guard).insert(child.id() as i32, tx);
        Ok((child, rx))
    }

    /// Like [`Reaper::spawn`] for children started by other means (the container helper's
    /// clone): `start` runs under the registry lock and returns the new child's pid, so the
    /// child cannot be reaped before its waiter is registered.
    pub fn spawn_with(
        &self,
        start: impl FnOnce() -> io::Result<i32>,
    ) -> io::Result<(i32, oneshot::Receiver<ExitStatus>)> {
        let mut guard = self.lock();
        let pid = start()?;
        let (tx, rx) = oneshot::channel();
        waiters(&mut guard).insert(pid, tx);
        Ok((pid, rx))
    }

    /// Sends `sig` to a child started by [`Reaper::spawn`], unless it has been reaped already
    /// (checked under the lock, so the pid cannot have been reused meanwhile).
    pub fn signal(&self, pid: i32, sig: Signal) -> nix::Result<SignalOutcome> {
        let mut guard = self.lock();
        if !waiters(&mut guard).contains_key(&pid) {
            return Ok(SignalOutcome::AlreadyReaped);
        }
        kill(Pid::from_raw(pid), sig)?;
        Ok(SignalOutcome::Sent)
    }

    /// Reaps every child that has ended, without blocking.
    fn reap_ready(&self) {
        let mut guard = self.lock();
        let waiters = waiters(&mut guard);
        loop {
            let (pid, status) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, ExitStatus::Exited(code)),
                Ok(WaitStatus::Signaled(pid, sig, _core)) => {
                    (pid, ExitStatus::Signaled(sig as i32))
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                // Stops and continues are not asked for (no WUNTRACED/WCONTINUED).
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!("waitpid: {e}");
                    break;
                }
            };
            match waiters.remove(&pid.as_raw()) {
                Some(tx) => {
                    tracing::debug!(pid = pid.as_raw(), "child ended: {status}");
                    // The waiter may be gone (nobody waits any more): nothing to do then.
                    let _ = tx.send(status);
                }
                None => tracing::debug!(pid = pid.as_raw(), "reaped orphan: {status}"),
            }
        }
    }
}

fn waiters<'a>(guard: &'a mut MutexGuard<'static, Option<Waiters>>) -> &'a mut Waiters {
    guard.get_or_insert_with(HashMap::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_exit_codes_and_signals() {
        let reaper = Reaper::start().unwrap();
        let (_c, rx) = reaper
            .spawn(Command::new("sh").args(["-c", "exit 7"]))
            .unwrap();
        assert_eq!(rx.await.unwrap(), ExitStatus::Exited(7));

        let (child, rx) = reaper.spawn(Command::new("sleep").arg("100")).unwrap();
        let pid = child.id() as i32;
        assert_eq!(reaper.signal(pid, Signal::SIGKILL), Ok(SignalOutcome::Sent));
        assert_eq!(rx.await.unwrap(), ExitStatus::Signaled(9));
        assert_eq!(
            reaper.signal(pid, Signal::SIGKILL),
            Ok(SignalOutcome::AlreadyReaped)
        );
    }

    #[tokio::test]
    async fn failed_exec_is_an_error_not_a_panic() {
        let reaper = Reaper::start().unwrap();
        for _ in 0..20 {
            let err = reaper
                .spawn(&mut Command::new("/nonexistent/sandpod-test"))
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound);
        }
    }
}
