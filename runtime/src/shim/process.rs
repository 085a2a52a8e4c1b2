//! One process of a task, as containerd sees it: a container's init (exec id "") or an exec.
//! Its status and exit live here; Wait subscribes to the exit, which is only set once the
//! process's output has been copied (so a client has everything when Wait returns).
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::types::task::Status;
use tokio::sync::watch;

use std::sync::Arc;

use sandpod_protocol::ErrorChain;

use super::events::Events;
use super::io::{Relay, StdioPaths};
use crate::agent_client::AgentClient;
use crate::agent_client::ExitStatus;

/// How long output may take to reach its end after the process exited.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The status reported when the agent cannot say how a process ended (the VM went away).
pub const UNKNOWN_EXIT: u32 = 255;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// As a shell reports it: the exit code, or 128+N for signal N.
    pub status: u32,
    pub at: SystemTime,
}

/// containerd's exit status for what the agent reported (`None`: it could not say).
pub fn exit_code(status: Option<ExitStatus>) -> u32 {
    match status {
        Some(s) => u32::from(s.shell_code()),
        None => UNKNOWN_EXIT,
    }
}

/// A protobuf timestamp.
pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    ts.nanos = i32::try_from(d.subsec_nanos()).unwrap_or(0);
    ts
}

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcStatus {
    /// Exec: added, not started. Init: created, blocked before exec.
    Created,
    Running,
    Paused,
    Stopped,
}

impl ProcStatus {
    pub fn proto(self) -> Status {
        match self {
            ProcStatus::Created => Status::CREATED,
            ProcStatus::Running => Status::RUNNING,
            ProcStatus::Paused => Status::PAUSED,
            ProcStatus::Stopped => Status::STOPPED,
        }
    }
}

struct Inner {
    status: ProcStatus,
    pid: u32,
    relay: Option<Relay>,
}

/// A process of a task.
pub struct Proc {
    /// containerd's exec id ("" for the init).
    pub exec_id: String,
    /// The agent's id of the process (the container id for the init).
    pub agent_id: String,
    pub stdio: StdioPaths,
    inner: Mutex<Inner>,
    exit: watch::Sender<Option<Exit>>,
}

impl Proc {
    pub fn new(exec_id: &str, agent_id: &str, stdio: StdioPaths) -> Proc {
        Proc {
            exec_id: exec_id.to_string(),
            agent_id: agent_id.to_string(),
            stdio,
            inner: Mutex::new(Inner {
                status: ProcStatus::Created,
                pid: 0,
                relay: None,
            }),
            exit: watch::channel(None).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn status(&self) -> ProcStatus {
        self.lock().status
    }

    /// Sets the status, unless the process already stopped (an exit is final).
    pub fn set_status(&self, status: ProcStatus) {
        let mut i = self.lock();
        if i.status != ProcStatus::Stopped {
            i.status = status;
        }
    }

    pub fn pid(&self) -> u32 {
        self.lock().pid
    }

    pub fn set_pid(&self, pid: u32) {
        self.lock().pid = pid;
    }

    pub fn exit(&self) -> Option<Exit> {
        *self.exit.borrow()
    }

    /// Keeps the process's stdio relay (for CloseIO) and takes its output task (awaited on exit).
    pub fn attach(&self, mut relay: Relay) -> tokio::task::JoinHandle<()> {
        let output = std::mem::replace(&mut relay.output, tokio::spawn(async {}));
        self.lock().relay = Some(relay);
        output
    }

    /// CloseIO: the process's stdin ends once what containerd wrote is copied.
    pub fn close_stdin(&self) {
        if let Some(r) = self.lock().relay.as_mut() {
            r.close_stdin();
        }
    }

    /// Records the exit, once the output is copied (bounded wait), and wakes the waiters.
    pub async fn exited(&self, code: u32, output: Option<tokio::task::JoinHandle<()>>) -> Exit {
        let at = SystemTime::now();
        if let Some(o) = output {
            if tokio::time::timeout(DRAIN_TIMEOUT, o).await.is_err() {
                tracing::warn!(
                    "output of {} did not end within {DRAIN_TIMEOUT:?} of its exit",
                    self.agent_id
                );
            }
        }
        let exit = Exit { status: code, at };
        {
            let mut i = self.lock();
            i.status = ProcStatus::Stopped;
            if let Some(r) = i.relay.as_mut() {
                r.close_stdin();
            }
        }
        self.exit.send_replace(Some(exit));
        exit
    }

    /// Waits for the exit.
    pub async fn wait(&self) -> Exit {
        let mut rx = self.exit.subscribe();
        loop {
            if let Some(e) = *rx.borrow_and_update() {
                return e;
            }
            if rx.changed().await.is_err() {
                // The sender lives as long as `self`: unreachable, but never hang.
                return Exit {
                    status: UNKNOWN_EXIT,
                    at: SystemTime::now(),
                };
            }
        }
    }
}

/// Waits for the process in the guest, records its exit once its output is copied, and
/// publishes TaskExit (after TaskOOM when the kernel OOM-killed in the container's cgroup).
pub fn spawn_waiter(
    client: AgentClient,
    container_id: String,
    proc: Arc<Proc>,
    output: tokio::task::JoinHandle<()>,
    events: Arc<Events>,
) {
    tokio::spawn(async move {
        let (status, oom_killed) = match client.wait_container(&proc.agent_id, None).await {
            Ok((s, oom)) => (Some(s), oom),
            Err(e) => {
                tracing::error!("waiting for {}: {}", proc.agent_id, ErrorChain(&e));
                (None, false)
            }
        };
        let is_init = proc.exec_id.is_empty();
        // The container's cgroup in the guest saw an OOM kill: containerd (and Docker's
        // OOMKilled) learn it from TaskOOM, published before the exit as runc's shim does.
        if is_init && oom_killed {
            tracing::info!(container = container_id, "OOM-killed");
            events.oom(&container_id).await;
        }
        let exit = proc.exited(exit_code(status), Some(output)).await;
        let id = if is_init {
            container_id.as_str()
        } else {
            proc.exec_id.as_str()
        };
        tracing::info!(
            container = container_id,
            process = id,
            status = exit.status,
            "exited"
        );
        events.exit(&container_id, id, proc.pid(), exit).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_as_containerd_wants_them() {
        assert_eq!(exit_code(Some(ExitStatus::Exited(3))), 3);
        assert_eq!(exit_code(Some(ExitStatus::Signaled(9))), 137);
        assert_eq!(exit_code(Some(ExitStatus::Signaled(15))), 143);
        assert_eq!(exit_code(None), UNKNOWN_EXIT);
        let ts = timestamp(SystemTime::UNIX_EPOCH + Duration::from_millis(1500));
        assert_eq!((ts.seconds, ts.nanos), (1, 500_000_000));
    }

    #[tokio::test]
    async fn wait_returns_after_the_output_and_the_status_is_final() {
        let p = std::sync::Arc::new(Proc::new("", "c1", StdioPaths::default()));
        assert_eq!(p.status(), ProcStatus::Created);
        p.set_status(ProcStatus::Running);
        let waiter = tokio::spawn({
            let p = p.clone();
            async move { p.wait().await }
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let output = tokio::spawn(async move {
            let _ = rx.await;
        });
        let exiting = tokio::spawn({
            let p = p.clone();
            async move { p.exited(137, Some(output)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(p.exit().is_none(), "no exit before the output ended");
        tx.send(()).unwrap();
        let e = exiting.await.unwrap();
        assert_eq!(waiter.await.unwrap(), e);
        assert_eq!(e.status, 137);
        p.set_status(ProcStatus::Running);
        assert_eq!(p.status(), ProcStatus::Stopped);
        assert_eq!(p.wait().await, e);
    }
}
