//! The guest agent's logs: JSON lines the agent sends to host port 1025, which the VMM forwards
//! to `<uds>_1025`; re-emitted through `tracing` with target "guest".
//!
//! Who connects: the VMM forwards every guest connection to host port 1025, not only the
//! agent's. Containers cannot create AF_VSOCK sockets (the agent's seccomp guard, unless the
//! spec's `io.sandpod.allow-vsock` annotation allows them), but guest processes the host runs
//! and such containers can, and would otherwise write forged "guest" lines. So the host draws a
//! [`LogToken`], listens with [`LogReceiver::listen_with_token`] and hands the token to the
//! agent in CreateSandbox (`log_token`): from then on the agent starts each log connection with
//! `log-token <token>` (resending what it logged before), and the receiver drops every
//! connection that does not. [`LogReceiver::listen`] (no token) takes every connection: for
//! tests and tools that never call CreateSandbox.
//!
//! Caps ([`LogLimits`], one [`LogLimiter`] per receiver): lines over a rate (100 lines/s, burst
//! 1000; 64 KiB/s, burst 1 MiB) are dropped and counted; at most 4 connections are read at once
//! and, with a token, at most 4 more may be waiting to present it, for 5 s each.
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sandpod_protocol::{LogToken, LOG_PORT};
use serde::Deserialize;
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Level;

use super::connector::HybridVsockConnector;
pub use super::log_limiter::{LogLimiter, LogLimits};

/// One parsed log line of the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestLogLine {
    pub level: Level,
    pub msg: String,
    /// The agent's tracing target (module path).
    pub target: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LogLineError {
    #[error("not a JSON log line: {0}")]
    Json(String),
    #[error("unknown log level {0:?}")]
    Level(String),
}

#[derive(Deserialize)]
struct RawLine {
    level: String,
    msg: String,
    #[serde(default)]
    target: String,
}

/// Parses `{"level":"info","msg":"...","target":"..."}`.
pub fn parse_log_line(line: &str) -> Result<GuestLogLine, LogLineError> {
    let raw: RawLine =
        serde_json::from_str(line.trim_end()).map_err(|e| LogLineError::Json(e.to_string()))?;
    let level = match raw.level.to_ascii_lowercase().as_str() {
        "error" => Level::ERROR,
        "warn" | "warning" => Level::WARN,
        "info" => Level::INFO,
        "debug" => Level::DEBUG,
        "trace" => Level::TRACE,
        _ => return Err(LogLineError::Level(raw.level)),
    };
    Ok(GuestLogLine {
        level,
        msg: raw.msg,
        target: raw.target,
    })
}

/// Emits a guest line through `tracing` at its level, target "guest".
pub fn emit(line: &GuestLogLine) {
    // Guest text, escaped: a newline or control character in it cannot forge a host log line.
    let t = line.target.escape_debug().to_string();
    let m = line.msg.escape_debug().to_string();
    match line.level {
        Level::ERROR => tracing::error!(target: "guest", guest_target = t, "{m}"),
        Level::WARN => tracing::warn!(target: "guest", guest_target = t, "{m}"),
        Level::INFO => tracing::info!(target: "guest", guest_target = t, "{m}"),
        Level::DEBUG => tracing::debug!(target: "guest", guest_target = t, "{m}"),
        _ => tracing::trace!(target: "guest", guest_target = t, "{m}"),
    }
}

type Sink = Arc<dyn Fn(GuestLogLine) + Send + Sync>;

/// Listens on `<uds>_1025` for the agent's log connections. Stops (and removes the socket) on
/// drop.
pub struct LogReceiver {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
    limiter: Arc<LogLimiter>,
}

/// What every connection of one receiver shares.
#[derive(Clone)]
struct Conn {
    sink: Sink,
    token: Option<Arc<LogToken>>,
    /// Connections yet to present the token.
    pending: Arc<Semaphore>,
    /// Connections being read.
    reading: Arc<Semaphore>,
    limiter: Arc<LogLimiter>,
}

impl Conn {
    /// A slot for a new connection (a pending one with a token), or None: the connection is
    /// closed. Debug only: any guest process allowed vsock could repeat this.
    fn admit(&self) -> Option<OwnedSemaphorePermit> {
        let slots = if self.token.is_some() {
            &self.pending
        } else {
            &self.reading
        };
        let permit = slots.clone().try_acquire_owned().ok();
        if permit.is_none() {
            tracing::debug!(target: "guest", "guest log connection closed: too many at once");
        }
        permit
    }
}

impl LogReceiver {
    /// Listens where the VMM behind `connector` forwards the agent's log connections
    /// (`<uds>_1025`), emitting lines with [`emit`]. Takes every connection: see the module
    /// docs for [`LogReceiver::listen_with_token`].
    pub fn listen(connector: &HybridVsockConnector) -> io::Result<LogReceiver> {
        Self::bind(connector.host_port_path(LOG_PORT))
    }

    /// Like [`LogReceiver::listen`], keeping only the connections that start with `token`'s
    /// line: give the agent the same token in CreateSandbox (`req.log_token =
    /// token.to_string()`). Until then the agent's lines wait (it resends them with the token).
    pub fn listen_with_token(
        connector: &HybridVsockConnector,
        token: LogToken,
    ) -> io::Result<LogReceiver> {
        Self::start(
            connector.host_port_path(LOG_PORT),
            Some(token),
            Arc::new(|l| emit(&l)),
        )
    }

    /// Listens at `path` (the VMM's `<uds>_1025`), emitting lines with [`emit`].
    pub fn bind(path: impl Into<PathBuf>) -> io::Result<LogReceiver> {
        Self::bind_with(path, |l| emit(&l))
    }

    /// Like [`LogReceiver::bind`], handing each parsed line to `sink`.
    pub fn bind_with(
        path: impl Into<PathBuf>,
        sink: impl Fn(GuestLogLine) + Send + Sync + 'static,
    ) -> io::Result<LogReceiver> {
        Self::start(path.into(), None, Arc::new(sink))
    }

    /// Like [`LogReceiver::bind_with`], keeping only connections that present `token`.
    pub fn bind_with_token(
        path: impl Into<PathBuf>,
        token: LogToken,
        sink: impl Fn(GuestLogLine) + Send + Sync + 'static,
    ) -> io::Result<LogReceiver> {
        Self::start(path.into(), Some(token), Arc::new(sink))
    }

    /// Like [`LogReceiver::bind_with`] (with `token`: [`LogReceiver::bind_with_token`]), capped
    /// by `limiter` (the others use [`LogLimits::default`]).
    pub fn bind_limited(
        path: impl Into<PathBuf>,
        token: Option<LogToken>,
        sink: impl Fn(GuestLogLine) + Send + Sync + 'static,
        limiter: Arc<LogLimiter>,
    ) -> io::Result<LogReceiver> {
        Self::start_limited(path.into(), token, Arc::new(sink), limiter)
    }

    fn start(path: PathBuf, token: Option<LogToken>, sink: Sink) -> io::Result<LogReceiver> {
        let limiter = Arc::new(LogLimiter::new(LogLimits::default()));
        Self::start_limited(path, token, sink, limiter)
    }

    fn start_limited(
        path: PathBuf,
        token: Option<LogToken>,
        sink: Sink,
        limiter: Arc<LogLimiter>,
    ) -> io::Result<LogReceiver> {
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        let conn = Conn {
            sink,
            token: token.map(Arc::new),
            pending: Arc::new(Semaphore::new(limiter.limits().max_pending)),
            reading: Arc::new(Semaphore::new(limiter.limits().max_connections)),
            limiter: limiter.clone(),
        };
        let task = tokio::spawn(async move {
            // The connections' tasks end with this one (when the receiver is dropped).
            let mut tasks = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            if let Some(permit) = conn.admit() {
                                tasks.spawn(read_lines(stream, conn.clone(), permit));
                            }
                        }
                        Err(e) => {
                            tracing::warn!("guest log listener: {e}");
                            return;
                        }
                    },
                    Some(_) = tasks.join_next() => {}
                }
            }
        });
        Ok(LogReceiver {
            path,
            task,
            limiter,
        })
    }

    /// The rate limit of this receiver's connections.
    pub fn limiter(&self) -> &LogLimiter {
        &self.limiter
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Longest guest log line kept; the rest of a longer line is dropped (the guest is untrusted: a
/// line without an end must not grow the host's memory).
const MAX_LOG_LINE: usize = 16 * 1024;

/// Reads one line into `line` (without its newline), keeping at most [`MAX_LOG_LINE`] bytes of
/// it: Some(whether it was longer), or None at the end of the stream.
async fn read_line(
    reader: &mut BufReader<tokio::net::UnixStream>,
    line: &mut Vec<u8>,
) -> Option<bool> {
    line.clear();
    let mut truncated = false;
    loop {
        let buf = match reader.fill_buf().await {
            Ok([]) | Err(_) => return None,
            Ok(b) => b,
        };
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        let room = MAX_LOG_LINE.saturating_sub(line.len());
        truncated |= chunk.len() > room;
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = done.unwrap_or(buf.len());
        reader.consume(used);
        if done.is_some() {
            return Some(truncated);
        }
    }
}

async fn read_lines(stream: tokio::net::UnixStream, conn: Conn, permit: OwnedSemaphorePermit) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::with_capacity(256);
    let _permit = match &conn.token {
        None => permit,
        Some(token) => {
            // Not the agent's (or not yet: it reconnects with the token): dropped unread.
            // Debug only: any guest process allowed vsock could repeat this.
            let first = tokio::time::timeout(
                conn.limiter.limits().token_deadline,
                read_line(&mut reader, &mut line),
            )
            .await;
            let presented = first == Ok(Some(false))
                && std::str::from_utf8(&line).is_ok_and(|l| token.matches_log_line(l));
            if !presented {
                tracing::debug!(target: "guest", "guest log connection without the log token dropped");
                return;
            }
            drop(permit);
            let Ok(permit) = conn.reading.clone().try_acquire_owned() else {
                tracing::debug!(target: "guest", "guest log connection closed: too many at once");
                return;
            };
            permit
        }
    };
    loop {
        let Some(truncated) = read_line(&mut reader, &mut line).await else {
            return;
        };
        // Over the rate limit: dropped unparsed, counted (and reported) by the limiter.
        if !conn.limiter.admit(line.len()) {
            continue;
        }
        // Lines the agent should never send log at debug: a guest could send them in a loop.
        if truncated {
            tracing::debug!(target: "guest", "guest log line longer than {MAX_LOG_LINE} bytes dropped");
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        match parse_log_line(&text) {
            Ok(l) => (conn.sink)(l),
            Err(e) => {
                let start: String = text.chars().take(200).collect();
                tracing::debug!(target: "guest", "{e}: {start:?}");
            }
        }
    }
}

impl Drop for LogReceiver {
    fn drop(&mut self) {
        self.task.abort();
        self.limiter.report_pending();
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
#[path = "logs_limit_tests.rs"]
mod limit_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn parses_lines() {
        let l =
            parse_log_line(r#"{"level":"warn","msg":"disk \"x\" full","target":"a::b"}"#).unwrap();
        assert_eq!(
            l,
            GuestLogLine {
                level: Level::WARN,
                msg: "disk \"x\" full".into(),
                target: "a::b".into()
            }
        );
        let l = parse_log_line("{\"level\":\"ERROR\",\"msg\":\"m\"}\n").unwrap();
        assert_eq!((l.level, l.target.as_str()), (Level::ERROR, ""));
    }

    #[test]
    fn rejects_bad_lines() {
        assert!(matches!(
            parse_log_line("plain text"),
            Err(LogLineError::Json(_))
        ));
        assert!(matches!(
            parse_log_line(r#"{"msg":"no level"}"#),
            Err(LogLineError::Json(_))
        ));
        assert_eq!(
            parse_log_line(r#"{"level":"loud","msg":"m"}"#),
            Err(LogLineError::Level("loud".into()))
        );
    }

    #[tokio::test]
    async fn receives_lines_from_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.sock_1025");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let recv = LogReceiver::bind_with(&path, move |l| {
            let _ = tx.send(l);
        })
        .unwrap();
        let mut c = tokio::net::UnixStream::connect(&path).await.unwrap();
        c.write_all(b"{\"level\":\"info\",\"msg\":\"one\",\"target\":\"t\"}\ngarbage\n{\"level\":\"debug\",\"msg\":\"two\",\"target\":\"t\"}\n")
            .await
            .unwrap();
        assert_eq!(rx.recv().await.unwrap().msg, "one");
        let two = rx.recv().await.unwrap();
        assert_eq!((two.level, two.msg.as_str()), (Level::DEBUG, "two"));
        drop(recv);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn with_a_token_only_connections_presenting_it_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.sock_1025");
        let token = LogToken::generate().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let _recv = LogReceiver::bind_with_token(&path, token.clone(), move |l| {
            let _ = tx.send(l);
        })
        .unwrap();
        let line = |m: &str| format!("{{\"level\":\"error\",\"msg\":\"{m}\",\"target\":\"t\"}}\n");
        // A forger: plain lines, the token's line quoted in a message, another token, the
        // token's line too long to be one line: each connection is dropped unread.
        let wrong = LogToken::generate().unwrap();
        let inside_json = line(token.log_line().trim_end());
        let long = format!(
            "{}{}",
            token.log_line().trim_end(),
            " ".repeat(MAX_LOG_LINE)
        );
        for first in [line("forged"), inside_json, wrong.log_line(), long + "\n"] {
            let mut c = tokio::net::UnixStream::connect(&path).await.unwrap();
            c.write_all(first.as_bytes()).await.unwrap();
            c.write_all(line("forged-after").as_bytes()).await.unwrap();
            // Dropped: the receiver closes its side, this reads EOF.
            let mut rest = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut c, &mut rest)
                .await
                .unwrap();
        }
        // The agent: the token first, then its lines.
        let mut c = tokio::net::UnixStream::connect(&path).await.unwrap();
        c.write_all(format!("{}{}", token.log_line(), line("real")).as_bytes())
            .await
            .unwrap();
        let got = rx.recv().await.unwrap();
        assert_eq!(got.msg, "real", "a forged line got through first");
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn an_endless_line_is_dropped_not_buffered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.sock_1025");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let _recv = LogReceiver::bind_with(&path, move |l| {
            let _ = tx.send(l);
        })
        .unwrap();
        let mut c = tokio::net::UnixStream::connect(&path).await.unwrap();
        // A valid log line, only too long: it must be dropped, not parsed.
        let long = format!(
            "{{\"level\":\"info\",\"msg\":\"{}\",\"target\":\"t\"}}",
            "x".repeat(4 * MAX_LOG_LINE)
        );
        c.write_all(long.as_bytes()).await.unwrap();
        c.write_all(b"\n{\"level\":\"info\",\"msg\":\"after\",\"target\":\"t\"}\n")
            .await
            .unwrap();
        let next = rx.recv().await.unwrap();
        assert_eq!(next.msg, "after");
    }
}
