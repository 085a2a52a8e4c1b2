//! A started child as the process manager takes it over: its pid, exit receiver and the agent's
//! ends of its stdio. Built by the plain exec path (from a `std::process::Child`) and by the
//! container helper's launcher (from pipes it made itself).
use std::os::fd::OwnedFd;
use std::process::Child;

use tokio::sync::oneshot;

use super::exit::ExitStatus;
use crate::stdio::pty::Pty;

/// The agent's ends of a child's stdio pipes: `Some` for each stream the host attaches.
#[derive(Default)]
pub struct ParentStdio {
    /// Write end of the child's stdin.
    pub stdin: Option<OwnedFd>,
    /// Read end of the child's stdout.
    pub stdout: Option<OwnedFd>,
    /// Read end of the child's stderr.
    pub stderr: Option<OwnedFd>,
}

impl ParentStdio {
    /// Takes the piped stdio of a spawned `Child`.
    pub fn take_from(child: &mut Child) -> Self {
        ParentStdio {
            stdin: child.stdin.take().map(OwnedFd::from),
            stdout: child.stdout.take().map(OwnedFd::from),
            stderr: child.stderr.take().map(OwnedFd::from),
        }
    }
}

/// A started child (see the module docs).
pub struct Launched {
    pub pid: i32,
    pub exit: oneshot::Receiver<ExitStatus>,
    pub stdio: ParentStdio,
    /// The terminal of a terminal-mode process.
    pub pty: Option<Pty>,
}
