//! The agent's logs: tracing to the console, and forwarded to the host as JSON lines.
//!
//! Each event becomes `{"level":"info","msg":"...","target":"..."}\n` on a connection to the
//! host's [`LOG_PORT`] (vsock CID 2; in test mode `<base>_1025`). Forwarding never blocks the
//! agent: events go through a bounded queue and are dropped when it is full; while nobody
//! listens, the forwarder retries with backoff and the console still gets every event.
use std::fmt::Write as _;
use std::time::Duration;

use sandpod_protocol::LOG_PORT;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::transport::Transport;

/// Events queued for the host at most; more are dropped.
pub const QUEUE_LEN: usize = 1024;
/// The environment variable with the log filter (`EnvFilter` syntax); default `info`.
pub const FILTER_ENV: &str = "SANDPOD_AGENT_LOG";
/// Log target of the forwarder itself: never forwarded (that would feed itself).
const SELF_TARGET: &str = "sandpod_agent::logging";

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

/// Collects an event's message and fields into one text.
#[derive(Default)]
struct MessageVisitor {
    msg: String,
    fields: String,
}

impl Visit for MessageVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.msg, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
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
        let mut v = MessageVisitor::default();
        event.record(&mut v);
        v.msg.push_str(&v.fields);
        // Full queue: drop the event rather than block (the console still has it).
        let _ = self
            .tx
            .try_send(json_line(meta.level().as_str(), &v.msg, meta.target()));
    }
}

/// The queued events, waiting for [`LogForwarder::spawn`].
pub struct LogForwarder {
    rx: mpsc::Receiver<String>,
}

/// Installs the global subscriber: console (stderr) plus the host queue. Call once, early (no
/// runtime needed); events are queued until the forwarder runs.
pub fn init() -> LogForwarder {
    let (tx, rx) = mpsc::channel(QUEUE_LEN);
    let filter = EnvFilter::try_from_env(FILTER_ENV).unwrap_or_else(|_| EnvFilter::new("info"));
    let console = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(console)
        .with(ForwardLayer { tx })
        .try_init();
    LogForwarder { rx }
}

impl LogForwarder {
    /// Sends the queued events to the host from now on (a task of the current runtime).
    pub fn spawn(self, transport: Transport) {
        tokio::spawn(self.run(transport));
    }

    async fn run(mut self, transport: Transport) {
        let mut backoff = Duration::from_millis(100);
        let mut carry: Option<String> = None;
        loop {
            let mut conn = match transport.connect_host(LOG_PORT).await {
                Ok(c) => {
                    backoff = Duration::from_millis(100);
                    tracing::debug!("forwarding logs to the host");
                    c
                }
                Err(e) => {
                    tracing::debug!("no log listener on the host ({e}); retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            loop {
                let line = match carry.take() {
                    Some(l) => l,
                    None => match self.rx.recv().await {
                        Some(l) => l,
                        None => return,
                    },
                };
                if let Err(e) = conn.write_all(line.as_bytes()).await {
                    tracing::debug!("log connection lost: {e}");
                    carry = Some(line);
                    break;
                }
            }
        }
    }
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
