//! This process's stdio on a guest process's streams: stdin, stdout and stderr each on their own
//! stream, or one `tty` stream in terminal mode with the terminal in raw mode and its size
//! followed (SIGWINCH). The stand-in of a container or exec process runs this on the stdio it
//! was given.
use std::os::fd::AsFd;

use sandpod_protocol::ErrorChain;
use tokio::task::JoinHandle;

use crate::agent_client::{attach_stdio, AgentClient, AgentError, StreamSet, StreamToken};

/// Streams attached to a guest process.
pub struct Attached {
    /// Ends when all output streams reached EOF.
    pub output: JoinHandle<()>,
    /// Restores the caller's terminal on drop (terminal mode on a tty only).
    pub _raw_mode: Option<RawMode>,
}

/// Opens the `streams` of `id` (those its request asked for), presenting `token`, and starts
/// copying ([`attach_stdio`]); in terminal mode the terminal goes raw and its size is followed.
pub async fn attach(
    client: &AgentClient,
    id: &str,
    terminal: bool,
    streams: StreamSet,
    token: &StreamToken,
) -> Result<Attached, AgentError> {
    let outputs = attach_stdio(client, id, streams, terminal, token).await?;
    let raw = if terminal { RawMode::enable() } else { None };
    if raw.is_some() {
        follow_window_size(client.clone(), id.to_string());
    }
    let output = tokio::spawn(async move {
        for o in outputs {
            let _ = o.await;
        }
    });
    Ok(Attached {
        output,
        _raw_mode: raw,
    })
}

/// Sends the caller's terminal size now and after every SIGWINCH (the agent retries nothing:
/// a failed resize is logged).
fn follow_window_size(client: AgentClient, id: String) {
    tokio::spawn(async move {
        let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        // The container may not exist yet: retry the first resize briefly.
        for _ in 0..50 {
            if resize(&client, &id).await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        while winch.recv().await.is_some() {
            if let Err(e) = resize(&client, &id).await {
                tracing::debug!("terminal resize: {}", ErrorChain(&e));
            }
        }
    });
}

async fn resize(client: &AgentClient, id: &str) -> Result<(), AgentError> {
    let Ok(ws) = rustix::termios::tcgetwinsize(std::io::stdout().as_fd()) else {
        return Ok(());
    };
    client
        .resize_terminal(id, u32::from(ws.ws_row), u32::from(ws.ws_col))
        .await
}

/// The caller's terminal in raw mode (keys, Ctrl-C included, go to the container's terminal).
pub struct RawMode {
    saved: rustix::termios::Termios,
}

impl RawMode {
    /// Raw mode on stdin if it is a terminal.
    fn enable() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let fd = stdin.as_fd();
        if !rustix::termios::isatty(fd) {
            return None;
        }
        let saved = rustix::termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(fd, rustix::termios::OptionalActions::Now, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let stdin = std::io::stdin();
        let _ = rustix::termios::tcsetattr(
            stdin.as_fd(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}
