//! Reaching a guest vsock port through a Firecracker-style hybrid vsock Unix socket.
//!
//! The host connects to the VMM's socket `uds`, writes `CONNECT <port>\n` and reads
//! `OK <assigned_host_port>\n`; from then on the connection carries the guest listener's bytes.
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::error::ConnectError;

/// Default limit for the whole handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest accepted reply line.
const MAX_REPLY: usize = 64;

/// Connects to guest ports through the VMM's hybrid vsock socket.
#[derive(Debug, Clone)]
pub struct HybridVsockConnector {
    uds: PathBuf,
    handshake_timeout: Duration,
}

impl HybridVsockConnector {
    pub fn new(uds: impl Into<PathBuf>) -> Self {
        HybridVsockConnector {
            uds: uds.into(),
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }

    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The VMM's socket.
    pub fn uds(&self) -> &Path {
        &self.uds
    }

    /// Where the VMM forwards the guest's connections to host port `port`: `<uds>_<port>`.
    pub fn host_port_path(&self, port: u32) -> PathBuf {
        sandpod_protocol::ports::uds_port_path(&self.uds, port)
    }

    /// Opens a connection to the guest's `port`.
    pub async fn connect(&self, port: u32) -> Result<UnixStream, ConnectError> {
        let mut stream =
            UnixStream::connect(&self.uds)
                .await
                .map_err(|source| ConnectError::Socket {
                    path: self.uds.clone(),
                    source,
                })?;
        let timeout = self.handshake_timeout;
        match tokio::time::timeout(timeout, handshake(&mut stream, port)).await {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ConnectError::Timeout { port, timeout }),
        }
    }
}

async fn handshake(stream: &mut UnixStream, port: u32) -> Result<(), ConnectError> {
    let io_err = |source: io::Error| ConnectError::Io { port, source };
    stream
        .write_all(format!("CONNECT {port}\n").as_bytes())
        .await
        .map_err(io_err)?;
    // Byte by byte: whatever follows the reply line belongs to the guest's protocol.
    let mut reply = Vec::with_capacity(16);
    loop {
        let mut b = [0u8; 1];
        let n = stream.read(&mut b).await.map_err(io_err)?;
        if n == 0 {
            return Err(ConnectError::Closed { port });
        }
        if b[0] == b'\n' {
            break;
        }
        reply.push(b[0]);
        if reply.len() > MAX_REPLY {
            return Err(ConnectError::Refused {
                port,
                reply: String::from_utf8_lossy(&reply).into_owned(),
            });
        }
    }
    let reply = String::from_utf8_lossy(&reply).into_owned();
    if reply == "OK" || reply.starts_with("OK ") {
        tracing::trace!(port, "hybrid vsock: {reply}");
        Ok(())
    } else {
        Err(ConnectError::Refused { port, reply })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::UnixListener;

    /// A fake VMM socket whose single connection is handled by `behave` (given the request line).
    async fn fake_vmm<F, Fut>(behave: F) -> (tempfile::TempDir, HybridVsockConnector)
    where
        F: FnOnce(String, UnixStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let dir = tempfile::tempdir().unwrap();
        let uds = dir.path().join("vsock.sock");
        let listener = UnixListener::bind(&uds).unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            reader.read_line(&mut line).await.unwrap();
            behave(line, reader.into_inner()).await;
        });
        (dir, HybridVsockConnector::new(uds))
    }

    #[tokio::test]
    async fn ok_reply_gives_the_stream() {
        let (_dir, conn) = fake_vmm(|line, mut s| async move {
            assert_eq!(line, "CONNECT 1024\n");
            s.write_all(b"OK 1073741824\nguest bytes").await.unwrap();
        })
        .await;
        let mut stream = conn.connect(1024).await.unwrap();
        let mut rest = String::new();
        stream.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "guest bytes");
    }

    #[tokio::test]
    async fn non_ok_reply_is_refused() {
        let (_dir, conn) = fake_vmm(|_, mut s| async move {
            s.write_all(b"FAILURE no listener\n").await.unwrap();
        })
        .await;
        match conn.connect(1024).await {
            Err(ConnectError::Refused { port: 1024, reply }) => {
                assert_eq!(reply, "FAILURE no listener")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn silence_times_out() {
        let (_dir, conn) = fake_vmm(|_, s| async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(s);
        })
        .await;
        let conn = conn.with_handshake_timeout(Duration::from_millis(100));
        match conn.connect(1026).await {
            Err(ConnectError::Timeout { port: 1026, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn close_during_handshake_is_an_error() {
        let (_dir, conn) = fake_vmm(|_, s| async move { drop(s) }).await;
        match conn.connect(1024).await {
            Err(ConnectError::Closed { port: 1024 }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn missing_socket_is_an_error() {
        let conn = HybridVsockConnector::new("/nonexistent/sandpod/vsock.sock");
        assert!(matches!(
            conn.connect(1024).await,
            Err(ConnectError::Socket { .. })
        ));
        assert_eq!(
            conn.host_port_path(1025),
            PathBuf::from("/nonexistent/sandpod/vsock.sock_1025")
        );
    }
}
