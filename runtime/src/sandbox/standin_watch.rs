//! The monitor's watch over the host processes that stand in for guest processes
//! (`crate::container::standin`): each registers on the monitor's socket and keeps the connection
//! open for its whole life. When a stand-in's connection ends without it having said that its
//! guest process exited — it was SIGKILLed, or crashed — the guest process is killed too, so
//! nothing runs in the VM that no host process stands for.
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::layout::Layout;
use crate::agent_client::{AgentClient, ClientConfig, HybridVsockConnector};
use sandpod_protocol::ErrorChain;

/// What a stand-in sends first, as one JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The guest process it stands for.
    pub exec_id: String,
}

/// The line a stand-in sends once its guest process has ended.
pub const EXITED: &[u8] = b"exited\n";
/// Longest registration line accepted.
const MAX_LINE: u64 = 512;
/// How long the monitor tries to reach the agent to kill an orphaned guest process.
const KILL_DEADLINE: Duration = Duration::from_secs(10);

/// The listener; stops (and removes its socket) on drop.
pub struct StandinWatch {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl StandinWatch {
    /// Listens on the sandbox's monitor socket.
    pub fn bind(layout: &Layout) -> anyhow::Result<StandinWatch> {
        let path = layout.monitor_socket();
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("listening on {}", path.display()))?;
        let vsock = layout.vsock();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(watch(conn, vsock.clone()));
            }
        });
        Ok(StandinWatch { path, task })
    }
}

impl Drop for StandinWatch {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn watch(conn: UnixStream, vsock: PathBuf) {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    if (&mut reader)
        .take(MAX_LINE)
        .read_line(&mut line)
        .await
        .is_err()
    {
        return;
    }
    let Ok(reg) = serde_json::from_str::<Registration>(line.trim_end()) else {
        tracing::warn!(
            "monitor socket: malformed registration {:?}",
            line.escape_debug().to_string()
        );
        return;
    };
    let mut rest = Vec::new();
    let _ = (&mut reader).take(64).read_to_end(&mut rest).await;
    if rest.starts_with(EXITED) {
        tracing::debug!(exec_id = reg.exec_id, "stand-in ended after its process");
        return;
    }
    tracing::warn!(
        exec_id = reg.exec_id,
        "the host process standing for guest process {} is gone: killing the guest process",
        reg.exec_id
    );
    let config = ClientConfig {
        connect_deadline: KILL_DEADLINE,
        ..ClientConfig::default()
    };
    match AgentClient::connect(HybridVsockConnector::new(vsock), config).await {
        Ok(client) => {
            if let Err(e) = client.signal_process(&reg.exec_id, 9).await {
                tracing::debug!(
                    exec_id = reg.exec_id,
                    "SIGKILL after the stand-in died: {}",
                    ErrorChain(&e)
                );
            }
        }
        Err(e) => tracing::warn!(
            "cannot reach the agent to kill {}: {}",
            reg.exec_id,
            ErrorChain(&e)
        ),
    }
}

/// A stand-in's registration; dropping it without [`Registered::exited`] makes the monitor kill
/// the guest process (as does the stand-in's death).
pub struct Registered {
    conn: UnixStream,
}

impl Registered {
    /// Registers `exec_id` with the monitor of `layout`'s sandbox.
    pub async fn register(layout: &Layout, exec_id: &str) -> anyhow::Result<Registered> {
        let path = layout.monitor_socket();
        let mut conn = UnixStream::connect(&path)
            .await
            .with_context(|| format!("connecting to the sandbox monitor at {}", path.display()))?;
        let mut line = serde_json::to_vec(&Registration {
            exec_id: exec_id.to_string(),
        })?;
        line.push(b'\n');
        conn.write_all(&line).await?;
        Ok(Registered { conn })
    }

    /// Tells the monitor the guest process has ended.
    pub async fn exited(mut self) {
        let _ = self.conn.write_all(EXITED).await;
        let _ = self.conn.shutdown().await;
    }
}
