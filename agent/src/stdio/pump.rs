//! Tasks that move bytes between a process and its host streams.
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, watch};

use crate::process::ExitStatus;

/// End of terminal input (VEOF, ^D) as the line discipline understands it by default.
pub const VEOF: u8 = 0x04;

/// Read size for process output: whatever the pipe holds (up to its 64 KiB) goes to the host
/// in one write, so one vsock packet, instead of tokio::io::copy's 8 KiB pieces (each packet
/// costs a notification and an interrupt, which dominate under nested virtualization).
pub const OUTPUT_CHUNK: usize = 64 * 1024;

/// Copies process output to the host until EOF, then ends the host stream's write side: the
/// host reads EOF exactly when the process (and whatever inherited the descriptor) closed it.
pub fn output<R, W>(what: String, from: R, mut to: W) -> tokio::task::JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut from = tokio::io::BufReader::with_capacity(OUTPUT_CHUNK, from);
        if let Err(e) = tokio::io::copy_buf(&mut from, &mut to).await {
            tracing::debug!("{what}: {e}");
        }
        let _ = to.shutdown().await;
    })
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
        let mut buf = vec![0u8; 32 * 1024];
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
