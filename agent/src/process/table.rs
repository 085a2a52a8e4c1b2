//! A process of the agent's process table (a [`Registry`](crate::ids::Registry) by exec id).
use std::sync::Mutex;

use tokio::sync::{oneshot, watch};

use super::error::ProcessError;
use super::exit::ExitStatus;
use crate::stdio::pty::Pty;

/// A started process.
pub struct ProcessEntry {
    pub exec_id: String,
    pub pid: i32,
    exit: watch::Receiver<Option<ExitStatus>>,
    /// Stops the stdin pump (CloseStdin); `None` once used or without a stdin stream.
    stdin_closer: Mutex<Option<oneshot::Sender<()>>>,
    /// The terminal of a terminal-mode process.
    pub pty: Option<Pty>,
}

impl ProcessEntry {
    pub fn new(
        exec_id: String,
        pid: i32,
        exit: watch::Receiver<Option<ExitStatus>>,
        stdin_closer: Option<oneshot::Sender<()>>,
        pty: Option<Pty>,
    ) -> Self {
        ProcessEntry {
            exec_id,
            pid,
            exit,
            stdin_closer: Mutex::new(stdin_closer),
            pty,
        }
    }

    /// The exit status, once the process has been reaped.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }

    /// Waits until the process has been reaped.
    pub async fn wait(&self) -> Result<ExitStatus, ProcessError> {
        let mut rx = self.exit.clone();
        let status = rx.wait_for(Option::is_some).await.map_err(|_| {
            ProcessError::Internal(format!("exec {}: lost track of the process", self.exec_id))
        })?;
        Ok(status.expect("waited for Some"))
    }

    /// Takes the stdin closer (the first CloseStdin uses it).
    pub fn take_stdin_closer(&self) -> Option<oneshot::Sender<()>> {
        self.stdin_closer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}
