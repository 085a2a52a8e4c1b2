//! Terminals for `create`/`exec` with `--console-socket`: a host pty whose master goes to the
//! caller's socket with SCM_RIGHTS (as runc does) and whose slave the stand-in relays to the
//! guest's terminal.
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::Context;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

/// A host pty: the master (for the caller) and the slave (for the stand-in).
pub struct HostPty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

impl HostPty {
    /// Opens a pty pair, the slave in raw mode: the guest's terminal does the line discipline,
    /// the host one only carries bytes.
    pub fn open() -> anyhow::Result<HostPty> {
        let pty = nix::pty::openpty(None, None).context("opening a pty")?;
        let mut t = rustix::termios::tcgetattr(&pty.slave).context("tcgetattr of the pty")?;
        t.make_raw();
        rustix::termios::tcsetattr(&pty.slave, rustix::termios::OptionalActions::Now, &t)
            .context("raw mode on the pty")?;
        Ok(HostPty {
            master: pty.master,
            slave: pty.slave,
        })
    }

    /// Sends the master to the Unix socket at `socket` (SCM_RIGHTS) and closes it here.
    pub fn send_master(self, socket: &Path) -> anyhow::Result<OwnedFd> {
        let conn = UnixStream::connect(socket)
            .with_context(|| format!("connecting to the console socket {}", socket.display()))?;
        // runc sends the pty's name as the message body; callers only use the fd.
        let name = b"/dev/ptmx";
        let fds = [self.master.as_raw_fd()];
        sendmsg::<()>(
            conn.as_raw_fd(),
            &[IoSlice::new(name)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .with_context(|| format!("sending the pty to {}", socket.display()))?;
        Ok(self.slave)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{recvmsg, ControlMessageOwned};
    use std::io::{IoSliceMut, Read, Write};
    use std::os::fd::FromRawFd;

    #[test]
    fn master_reaches_the_console_socket_and_bytes_flow() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("console.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let pty = HostPty::open().unwrap();
        let slave = pty.send_master(&sock).unwrap();
        let (conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .unwrap();
        let fd = msg
            .cmsgs()
            .unwrap()
            .find_map(|c| match c {
                ControlMessageOwned::ScmRights(f) => f.first().copied(),
                _ => None,
            })
            .expect("an fd");
        // SAFETY: the fd was just received with SCM_RIGHTS and is owned by nobody else.
        let mut master = unsafe { std::fs::File::from_raw_fd(fd) };
        let mut slave = std::fs::File::from(slave);
        master.write_all(b"x").unwrap();
        let mut got = [0u8; 1];
        slave.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"x", "raw mode: no echo or line buffering");
    }
}
