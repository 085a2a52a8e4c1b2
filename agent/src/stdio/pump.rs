//! Tasks that move bytes between a process and its host streams.
use std::io;
use std::os::fd::AsFd;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{oneshot, watch};

use super::pty::Pty;
use crate::process::ExitStatus;

/// End of terminal input (VEOF, ^D) as the line discipline understands it by default.
pub const VEOF: u8 = 0x04;

/// Largest write of process output to the host: whatever the pipe holds (up to its 64 KiB)
/// goes to the host in one write, so one vsock packet, instead of tokio::io::copy's 8 KiB
/// pieces (each packet costs a notification and an interrupt, which dominate under nested
/// virtualization).
pub const OUTPUT_CHUNK: usize = 64 * 1024;

/// Read size for host input (one read and one write per 64 KiB instead of per 32 KiB).
pub const INPUT_CHUNK: usize = 64 * 1024;

/// Process output: an async reader that can also say, without waiting, whether more bytes
/// are there already.
pub trait OutputSource: AsyncRead + Unpin + Send + 'static {
    /// Reads what is there now; `Ok(None)` when nothing is (or the source cannot tell).
    fn read_now(&mut self, _buf: &mut [u8]) -> io::Result<Option<usize>> {
        Ok(None)
    }
}

impl OutputSource for pipe::Receiver {
    fn read_now(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // The pipe is non-blocking (tokio's); tokio's own read would answer from its cached
        // readiness, cleared by the last short read, without asking the pipe.
        match rustix::io::read(self.as_fd(), buf) {
            Ok(n) => Ok(Some(n)),
            Err(rustix::io::Errno::AGAIN) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl OutputSource for Pty {}

/// Copies process output to the host until EOF, then ends the host stream's write side: the
/// host reads EOF exactly when the process (and whatever inherited the descriptor) closed it.
pub fn output<R, W>(what: String, mut from: R, mut to: W) -> tokio::task::JoinHandle<()>
where
    R: OutputSource,
    W: AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = copy_output(&mut from, &mut to).await {
            tracing::debug!("{what}: {e}");
        }
        let _ = to.shutdown().await;
    })
}

/// Copies `from` to `to` until EOF in writes of up to [`OUTPUT_CHUNK`] bytes. A writer that
/// writes small pieces (busybox's 4 KiB) and is still running when its write woke us gets the
/// CPU back (sched_yield) before we send what we read: what it adds meanwhile goes in the same
/// write, so one packet to the host instead of one per piece. Without a runnable writer the
/// yield returns at once.
async fn copy_output<R: OutputSource, W: AsyncWrite + Unpin>(
    from: &mut R,
    to: &mut W,
) -> io::Result<()> {
    let mut buf = vec![0u8; OUTPUT_CHUNK];
    loop {
        let mut len = from.read(&mut buf).await?;
        if len == 0 {
            return Ok(());
        }
        let mut eof = false;
        while len < buf.len() {
            std::thread::yield_now();
            match from.read_now(&mut buf[len..]) {
                Ok(Some(0)) => eof = true,
                Ok(Some(n)) => {
                    len += n;
                    continue;
                }
                // A failure shows again on the next read, after this data went out.
                Ok(None) | Err(_) => {}
            }
            break;
        }
        to.write_all(&buf[..len]).await?;
        if eof {
            return Ok(());
        }
    }
}

/// Resolves once the process has exited (or its status can no longer come).
async fn has_exited(exited: &mut watch::Receiver<Option<ExitStatus>>) {
    let _ = exited.wait_for(Option::is_some).await;
}

/// Why a stdin pump stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputEnd {
    /// The host ended its stream (or it failed).
    HostEof,
    /// CloseStdin.
    Closed,
    /// The process is gone.
    Exited,
}

/// Copies host input to the process until the host's EOF, CloseStdin (`close`) or the process's
/// exit; then drops `to`, which closes a pipe (the process reads EOF). For a terminal, `to` is
/// the pty and is not closed; `eof_byte` (VEOF) is written on CloseStdin instead.
pub fn input<R, W>(
    what: String,
    mut from: R,
    mut to: W,
    mut close: oneshot::Receiver<()>,
    mut exited: watch::Receiver<Option<ExitStatus>>,
    eof_byte: Option<u8>,
) -> tokio::task::JoinHandle<InputEnd>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut buf = vec![0u8; INPUT_CHUNK];
        let end = loop {
            tokio::select! {
                read = from.read(&mut buf) => match read {
                    Ok(0) => break InputEnd::HostEof,
                    Ok(n) => {
                        // A write blocked on a full pipe still gives way to CloseStdin and exit.
                        tokio::select! {
                            w = to.write_all(&buf[..n]) => if let Err(e) = w {
                                tracing::debug!("{what}: {e}");
                                break InputEnd::Exited;
                            },
                            _ = &mut close => break InputEnd::Closed,
                            _ = has_exited(&mut exited) => break InputEnd::Exited,
                        }
                    }
                    Err(e) => {
                        tracing::debug!("{what}: {e}");
                        break InputEnd::HostEof;
                    }
                },
                _ = &mut close => break InputEnd::Closed,
                _ = has_exited(&mut exited) => break InputEnd::Exited,
            }
        };
        if let (InputEnd::Closed, Some(b)) = (end, eof_byte) {
            let _ = to.write_all(&[b]).await;
        }
        let _ = to.shutdown().await;
        end
    })
}

#[cfg(test)]
#[path = "pump_tests.rs"]
mod tests;
