//! Process stdio streams: one hybrid-vsock connection to the agent's stdio port per stream.
use sandpod_protocol::{StreamHeader, STDIO_PORT};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use super::connector::HybridVsockConnector;
use super::error::AgentError;

/// Connects to the agent's stdio port and sends `header`; the stream then carries the raw bytes:
/// write to a `stdin` stream (shut down its write side for EOF), read a `stdout`/`stderr` stream
/// to EOF, both on a `tty` stream.
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
