//! Test support: a fake hybrid-vsock VMM socket, for host-side tests without a VM.
//!
//! It listens on `uds`, answers `CONNECT <port>\n` with `OK 1\n` and splices the connection to
//! the Unix socket `<uds>_<port>` (where `sandpod-agent --test-serve unix://<uds>` listens), and
//! closes the connection without a reply when nothing listens there, as a VMM does when the
//! guest refuses.
use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// The running fake; stops on drop.
pub struct FakeHybridVsock {
    task: tokio::task::JoinHandle<()>,
}

impl FakeHybridVsock {
    /// Starts serving `uds` (inside a tokio runtime).
    pub fn start(uds: &Path) -> io::Result<FakeHybridVsock> {
        Self::serve(UnixListener::bind(uds)?, uds)
    }

    /// Serves a listener already bound at `uds` (say, by sandpod-vmm's own `bind_listener`,
    /// which replaces a stale socket file), inside a tokio runtime.
    pub fn from_std(
        listener: std::os::unix::net::UnixListener,
        uds: &Path,
    ) -> io::Result<FakeHybridVsock> {
        listener.set_nonblocking(true)?;
        Self::serve(UnixListener::from_std(listener)?, uds)
    }

    fn serve(listener: UnixListener, uds: &Path) -> io::Result<FakeHybridVsock> {
        let uds = uds.to_path_buf();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(splice(conn, uds.clone()));
            }
        });
        Ok(FakeHybridVsock { task })
    }
}

impl Drop for FakeHybridVsock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn splice(conn: UnixStream, uds: PathBuf) {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    if reader.read_line(&mut line).await.is_err() {
        return;
    }
    let Some(port) = line
        .strip_prefix("CONNECT ")
        .and_then(|p| p.trim_end().parse::<u32>().ok())
    else {
        return;
    };
    let target = sandpod_protocol::ports::uds_port_path(&uds, port);
    let Ok(mut guest) = UnixStream::connect(target).await else {
        return;
    };
    // The client sends nothing between CONNECT and OK: the reader holds no buffered bytes.
    let mut host = reader.into_inner();
    if host.write_all(b"OK 1\n").await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut host, &mut guest).await;
}
