//! Where a container process's stdio goes on the host: this process's own stdio (inherited by
//! the stand-in: pipes, FIFOs, files or a terminal, as the caller passed them), or a host pty
//! handed to the caller's console socket. The stand-in relays it to the agent's streams.
pub mod console;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use crate::agent_client::StreamSet;

/// The stdio of a new container or exec process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoConfig {
    /// The caller's stdin, stdout and stderr (or its terminal, in terminal mode).
    Inherit,
    /// Terminal mode: a new host pty whose master is sent to this socket.
    ConsoleSocket(PathBuf),
}

impl IoConfig {
    /// The streams a process with this stdio gets. An inherited stdin, stdout or stderr that is
    /// the null device gets none: the guest process has its own /dev/null there, as under runc
    /// it would have the host's (reading gives EOF, writes are dropped), and no stream is
    /// opened, relayed and closed for it.
    pub fn streams(&self, terminal: bool) -> StreamSet {
        let all = StreamSet::for_stdio(terminal);
        match self {
            IoConfig::Inherit if !terminal => StreamSet {
                stdin: !is_null_device(std::io::stdin().as_fd()),
                stdout: !is_null_device(std::io::stdout().as_fd()),
                stderr: !is_null_device(std::io::stderr().as_fd()),
            },
            _ => all,
        }
    }
}

/// Is `fd` open on the null device (the character device 1:3, /dev/null)?
pub fn is_null_device(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fstat(fd).is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::CharacterDevice
            && rustix::fs::major(st.st_rdev) == 1
            && rustix::fs::minor(st.st_rdev) == 3
    })
}

/// The stdio the stand-in gets: its own fds 0, 1 and 2.
pub enum StandinStdio {
    Inherit,
    /// A pty slave on all three (and the stand-in's controlling terminal).
    Pty(OwnedFd),
}
pub mod relay;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_null_device_is_recognized_and_nothing_else() {
        let null = std::fs::File::open("/dev/null").unwrap();
        assert!(is_null_device(null.as_fd()));
        let zero = std::fs::File::open("/dev/zero").unwrap();
        assert!(!is_null_device(zero.as_fd()));
        let file = tempfile::tempfile().unwrap();
        assert!(!is_null_device(file.as_fd()));
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert!(!is_null_device(r.as_fd()));
    }

    #[test]
    fn a_console_socket_or_a_terminal_gets_its_streams() {
        let sock = IoConfig::ConsoleSocket("/x".into());
        assert_eq!(sock.streams(true), StreamSet::for_stdio(true));
        assert_eq!(sock.streams(false), StreamSet::for_stdio(false));
        assert_eq!(IoConfig::Inherit.streams(true), StreamSet::for_stdio(true));
    }
}
