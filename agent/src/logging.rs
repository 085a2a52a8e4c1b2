//! The agent's logs: tracing to the console, and forwarded to the host as JSON lines.
//!
//! Each event becomes `{"level":"info","msg":"...","target":"..."}\n` on a connection to the
//! host's [`LOG_PORT`] (vsock CID 2; in test mode `<base>_1025`). Forwarding never blocks the
//! agent: events go through a bounded queue and are dropped when it is full; while nobody
//! listens, the forwarder retries with backoff (the console, in the guest, has warnings and
//! errors only: see [`init`]).
//!
//! The log token: any guest process allowed AF_VSOCK (guest processes the host runs; containers
//! only with the `io.sandpod.allow-vsock` annotation, see `container::vsock_guard`) can connect
//! to the host's port 1025 too, so the host cannot tell the agent's connection by where it comes
//! from. Once CreateSandbox hands the agent a log token (through the API, which only the host
//! reaches), the forwarder opens a new connection whose first line is `log-token <token>`,
//! resends the lines it sent before (the last [`REPLAY_LINES`]: a host that checks the token
//! dropped them) and presents the token on every reconnection; the host's receiver drops every
//! connection that does not start with it (`runtime/src/agent_client/logs.rs`).
use std::collections::VecDeque;
use std::time::Duration;

use sandpod_protocol::{LogToken, LOG_PORT};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::transport::Transport;

/// Events queued for the host at most; more are dropped.
pub const QUEUE_LEN: usize = 1024;
/// The environment variable with the log filter (`EnvFilter` syntax; default `info`), as in every
/// Sandpod binary: `SANDPOD_LOG`, else `RUST_LOG`. In a VM, `SANDPOD_LOG=debug` on the kernel
/// command line (a parameter without a dot) is in the agent's environment.
pub use sandpod_protocol::LOG_ENV as FILTER_ENV;
/// Log target of the forwarder itself: never forwarded (that would feed itself).
const SELF_TARGET: &str = "sandpod_agent::logging";
/// Lines sent before the log token kept for resending with it.
pub const REPLAY_LINES: usize = 256;

/// One log line as sent to the host.
pub fn json_line(level: &str, msg: &str, target: &str) -> String {
    let mut line = serde_json::json!({
        "level": level.to_ascii_lowercase(),
        "msg": msg,
        "target": target,
    })
    .to_string();
    line.push('\n');
    line
}

/// The tracing layer that queues events for the host.
struct ForwardLayer {
    tx: mpsc::Sender<String>,
}

impl<S: Subscriber> Layer<S> for ForwardLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if meta.target() == SELF_TARGET {
            return;
        }
        let text = sandpod_protocol::log_text::event_text(event);
        // Full queue: drop the event rather than block (in test mode the console still has it).
        let _ = self
            .tx
            .try_send(json_line(meta.level().as_str(), &text, meta.target()));
    }
}

/// The queued events, waiting for [`LogForwarder::spawn`].
pub struct LogForwarder {
    rx: mpsc::Receiver<String>,
    token: watch::Sender<Option<LogToken>>,
}

/// Hands the forwarder its log token (CreateSandbox). Cheap to clone.
#[derive(Clone)]
pub struct LogAuth {
    token: watch::Sender<Option<LogToken>>,
}

impl LogAuth {
    /// A handle to no forwarder (unit tests of the API).
    #[cfg(test)]
    pub(crate) fn unconnected() -> Self {
        LogAuth {
            token: watch::channel(None).0,
        }
    }

    /// Sets the log token; the forwarder reconnects with it. Setting the same token again is
    /// fine; another one is refused (the host's receiver knows the first one only).
    pub fn set(&self, token: LogToken) -> Result<(), &'static str> {
        let mut result = Ok(());
        self.token.send_if_modified(|current| match current {
            Some(t) if *t == token => false,
            Some(_) => {
                result = Err("the log token is set already and cannot change");
                false
            }
            None => {
                *current = Some(token);
                true
            }
        });
        result
    }
}

/// Installs the global subscriber: console (stderr, events up to `console_max` only) plus the
/// host queue. Call once, early (no runtime needed); events are queued until the forwarder runs.
///
/// In the guest the console is a serial port, where every byte is a VM exit (two, with the
/// driver's status read): the guest's console gets warnings and errors only, the host gets
/// every event through the forwarder.
pub fn init(console_max: LevelFilter) -> LogForwarder {
    let (tx, rx) = mpsc::channel(QUEUE_LEN);
    let filter = sandpod_protocol::conventions::log_filter_from_env()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let console = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_filter(console_max);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(console)
        .with(ForwardLayer { tx })
        .try_init();
    LogForwarder {
        rx,
        token: watch::channel(None).0,
    }
}

/// What the forwarder keeps between connections.
struct ForwardState {
    /// A line taken from the queue but not written yet.
    carry: Option<String>,
    /// Lines sent without the token (bounded), until they are resent with it.
    replay: VecDeque<String>,
    /// The token the current connection presented, if any.
    presented: Option<LogToken>,
}

impl LogForwarder {
    /// The handle that sets the log token (for the API).
    pub fn auth(&self) -> LogAuth {
        LogAuth {
            token: self.token.clone(),
        }
    }

    /// Sends the queued events to the host from now on (a task of the current runtime).
    pub fn spawn(self, transport: Transport) {
        tokio::spawn(self.run(transport));
    }

    async fn run(mut self, transport: Transport) {
        let mut token_rx = self.token.subscribe();
        let mut backoff = Duration::from_millis(100);
        let mut state = ForwardState {
            carry: None,
            replay: VecDeque::new(),
            presented: None,
        };
        loop {
            let mut conn = match transport.connect_host(LOG_PORT).await {
                Ok(c) => {
                    tracing::debug!("forwarding logs to the host");
                    c
                }
                Err(e) => {
                    tracing::debug!("no log listener on the host ({e}); retrying");
                    retry_wait(&mut backoff, &mut token_rx).await;
                    continue;
                }
            };
            let token = token_rx.borrow_and_update().clone();
            if let Some(t) = &token {
                let mut hello = t.log_line();
                for l in &state.replay {
                    hello.push_str(l);
                }
                if let Err(e) = conn.write_all(hello.as_bytes()).await {
                    tracing::debug!("log connection lost: {e}");
                    continue;
                }
                state.replay.clear();
                backoff = Duration::from_millis(100);
            }
            state.presented = token;
            if self
                .forward(&mut conn, &mut state, &mut token_rx)
                .await
                .is_none()
            {
                return;
            }
            // Lost without a token while none is set: a host that checks tokens dropped it (a
            // VM restored from a template, before CreateSandbox). Reconnecting at once would
            // only be dropped again: wait for the token, or back off.
            if state.presented.is_none() && token_rx.borrow().is_none() {
                retry_wait(&mut backoff, &mut token_rx).await;
            }
        }
    }

    /// Forwards queued lines on `conn` until it fails or a token arrives that the connection
    /// did not present (Some: reconnect), or the queue is closed (None: stop).
    async fn forward(
        &mut self,
        conn: &mut crate::stdio::HostStream,
        state: &mut ForwardState,
        token_rx: &mut watch::Receiver<Option<LogToken>>,
    ) -> Option<()> {
        loop {
            let line = match state.carry.take() {
                Some(l) => l,
                None => tokio::select! {
                    l = self.rx.recv() => l?,
                    changed = token_rx.changed(), if state.presented.is_none() => {
                        if changed.is_ok() && token_rx.borrow_and_update().is_some() {
                            tracing::debug!("log token set: reconnecting with it");
                            return Some(());
                        }
                        continue;
                    }
                },
            };
            if let Err(e) = conn.write_all(line.as_bytes()).await {
                tracing::debug!("log connection lost: {e}");
                state.carry = Some(line);
                return Some(());
            }
            if state.presented.is_none() {
                if state.replay.len() == REPLAY_LINES {
                    state.replay.pop_front();
                }
                state.replay.push_back(line);
            }
        }
    }
}

/// Waits `backoff` (then doubles it, up to 5 s) before the next connection; a new token cuts
/// the wait short (once: it is marked seen here).
async fn retry_wait(backoff: &mut Duration, token_rx: &mut watch::Receiver<Option<LogToken>>) {
    tokio::select! {
        _ = tokio::time::sleep(*backoff) => {}
        _ = token_rx.changed() => {
            token_rx.borrow_and_update();
        }
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(5));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_json_lines() {
        assert_eq!(
            json_line("INFO", "exec \"e1\" started", "sandpod_agent::process"),
            "{\"level\":\"info\",\"msg\":\"exec \\\"e1\\\" started\",\"target\":\"sandpod_agent::process\"}\n"
        );
        let v: serde_json::Value = serde_json::from_str(&json_line("WARN", "a\nb", "t")).unwrap();
        assert_eq!(v["msg"], "a\nb");
        assert_eq!(v["level"], "warn");
    }
}
