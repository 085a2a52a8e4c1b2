//! Where a container process's stdio goes on the host: this process's own stdio (inherited by
//! the stand-in: pipes, FIFOs, files or a terminal, as the caller passed them), or a host pty
//! handed to the caller's console socket. The stand-in relays it to the agent's streams.
pub mod console;

use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// The stdio of a new container or exec process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoConfig {
    /// The caller's stdin, stdout and stderr (or its terminal, in terminal mode).
    Inherit,
    /// Terminal mode: a new host pty whose master is sent to this socket.
    ConsoleSocket(PathBuf),
}

/// The stdio the stand-in gets: its own fds 0, 1 and 2.
pub enum StandinStdio {
    Inherit,
    /// A pty slave on all three (and the stand-in's controlling terminal).
    Pty(OwnedFd),
}
pub mod relay;
