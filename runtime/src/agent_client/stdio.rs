//! Process stdio streams: one hybrid-vsock connection to the agent's stdio port per stream.
use sandpod_protocol::{StreamHeader, StreamKind, StreamSet, StreamToken, STDIO_PORT};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::task::JoinHandle;

use super::client::AgentClient;
use super::connector::HybridVsockConnector;
use super::error::AgentError;

/// Connects to the agent's stdio port and sends `header`; the stream then carries the raw bytes:
/// write to a `stdin` stream (shut down its write side for EOF), read a `stdout`/`stderr` stream
/// to EOF, both on a `tty` stream. The agent closes a stream whose header's token is not the one
/// of the process's ExecProcess/CreateContainer request (the stream then reads EOF at once).
pub async fn open_stream(
    connector: &HybridVsockConnector,
    header: &StreamHeader,
) -> Result<UnixStream, AgentError> {
    let mut stream = connector.connect(STDIO_PORT).await?;
    stream
        .write_all(header.to_line().as_bytes())
        .await
        .map_err(AgentError::StreamIo)?;
    Ok(stream)
}

/// Copies this process's stdio to and from the `streams` of `exec_id` (one `tty` stream in
/// terminal mode), presenting `token` (the process's stream token, as in its request). stdin is
/// copied by a detached task: it may never end (a terminal), and the process's exit does not
/// wait for it. The returned tasks end when the output streams do.
pub async fn attach_stdio(
    client: &AgentClient,
    exec_id: &str,
    streams: StreamSet,
    tty: bool,
    token: &StreamToken,
) -> Result<Vec<JoinHandle<std::io::Result<u64>>>, AgentError> {
    let mut outputs = Vec::new();
    for kind in streams.kinds(tty) {
        let s = client.open_stream(exec_id, kind, token).await?;
        match kind {
            StreamKind::Tty => {
                let (from, to) = s.into_split();
                if streams.stdin {
                    // No EOF on a terminal: the end of our stdin is not a ^D typed by a user.
                    tokio::spawn(async move {
                        let mut to = to;
                        let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut to).await;
                    });
                }
                outputs.push(tokio::spawn(copy_out(from, tokio::io::stdout())));
            }
            StreamKind::Stdin => {
                tokio::spawn(copy_stdin(s));
            }
            StreamKind::Stdout => outputs.push(tokio::spawn(copy_out(s, tokio::io::stdout()))),
            StreamKind::Stderr => outputs.push(tokio::spawn(copy_out(s, tokio::io::stderr()))),
        }
    }
    Ok(outputs)
}

/// This process's stdin to `to`, then EOF (shutdown of the write side).
async fn copy_stdin(mut to: impl AsyncWrite + Unpin) {
    let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut to).await;
    let _ = to.shutdown().await;
}

/// Read size for a process's output: one read and one write per 256 KiB the socket holds,
/// instead of tokio::io::copy's 8 KiB (tokio's stdout hands every write to a blocking thread).
const OUTPUT_CHUNK: usize = 256 * 1024;

async fn copy_out(
    from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
) -> std::io::Result<u64> {
    let mut from = tokio::io::BufReader::with_capacity(OUTPUT_CHUNK, from);
    let r = tokio::io::copy_buf(&mut from, &mut to).await;
    let _ = to.flush().await;
    r
}
