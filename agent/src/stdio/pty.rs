//! Pseudo-terminals for terminal-mode processes.
//!
//! Opened with `posix_openpt(O_CLOEXEC)` and the slave with O_CLOEXEC (std's default) so that no
//! other child inherits either end: a leaked slave would keep the terminal open after its
//! process exits, and the output stream would never end.
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, PtyMaster};
use rustix::termios::{tcsetwinsize, Winsize};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The master side of a pty, usable from tokio. Clones share the terminal.
#[derive(Clone)]
pub struct Pty {
    master: Arc<AsyncFd<PtyMaster>>,
}

impl Pty {
    /// Opens a new pty; returns the master and the slave (for the child's stdio).
    pub fn open() -> io::Result<(Pty, File)> {
        let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
        grantpt(&master)?;
        unlockpt(&master)?;
        let slave_path = ptsname_r(&master)?;
        let slave = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(OFlag::O_NOCTTY.bits())
            .open(&slave_path)?;
        Ok((Self::register(master)?, slave))
    }

    /// Takes over the master of a pty opened elsewhere (a container's, opened by the container
    /// helper inside the container's /dev/pts and passed back over its sync socket).
    pub fn from_master(fd: OwnedFd) -> io::Result<Pty> {
        // SAFETY: `fd` is an owned, open descriptor. PtyMaster's contract (a pty master) is
        // checked right below with ptsname; a descriptor of another kind would only make the
        // terminal calls on it fail, never touch memory it does not own.
        let master = unsafe { PtyMaster::from_owned_fd(fd) };
        nix::pty::ptsname_r(&master)?;
        Self::register(master)
    }

    fn register(master: PtyMaster) -> io::Result<Pty> {
        let flags = OFlag::from_bits_truncate(fcntl(&master, FcntlArg::F_GETFL)?);
        fcntl(&master, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        // SAFETY: `master` owns its descriptor (an OwnedFd inside PtyMaster), which stays open
        // and unchanged until the AsyncFd that takes `master` over is dropped; nothing else
        // holds or closes it. (tokio has no safe constructor for a non-socket, non-pipe fd.)
        let master = unsafe { AsyncFd::register(master) }.map_err(io::Error::from)?;
        Ok(Pty {
            master: Arc::new(master),
        })
    }

    /// Sets the terminal size (TIOCSWINSZ); the foreground process group gets SIGWINCH.
    pub fn resize(&self, rows: u16, cols: u16) -> io::Result<()> {
        let size = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        Ok(tcsetwinsize(self.master.get_ref(), size)?)
    }
}

impl AsyncRead for Pty {
    /// Reads terminal output. EIO (every slave descriptor closed: the process is gone) is EOF.
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.master.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| Ok(nix::unistd::read(fd.get_ref(), unfilled)?)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.raw_os_error() == Some(Errno::EIO as i32) => {
                    return Poll::Ready(Ok(()))
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Pty {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.master.poll_write_ready(cx))?;
            match guard.try_io(|fd| Ok(nix::unistd::write(fd.get_ref(), buf)?)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// The master stays open (it carries output too): shutting down the input is a no-op.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn moves_bytes_both_ways_and_resizes() {
        let (mut pty, mut slave) = Pty::open().unwrap();
        slave.write_all(b"out").unwrap();
        let mut buf = [0u8; 3];
        pty.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"out");
        pty.write_all(b"in\n").await.unwrap();
        let mut line = [0u8; 3];
        slave.read_exact(&mut line).unwrap();
        assert_eq!(&line, b"in\n");
        pty.resize(40, 120).unwrap();
        let size = rustix::termios::tcgetwinsize(&slave).unwrap();
        assert_eq!((size.ws_row, size.ws_col), (40, 120));
    }

    #[tokio::test]
    async fn closed_slave_reads_as_eof() {
        let (mut pty, slave) = Pty::open().unwrap();
        drop(slave);
        let mut rest = Vec::new();
        pty.read_to_end(&mut rest).await.unwrap();
    }
}
