//! A task's stdio: containerd names FIFOs (or `file://` paths) for stdin, stdout and stderr;
//! the shim copies them to and from the guest process's streams on the agent's stdio port (one
//! `tty` stream in terminal mode).
//!
//! - Output: the FIFO is opened for writing once containerd's reader is there; when the reader
//!   goes away (a detached `ctr run -d` exits) the stream is still read to its end and dropped,
//!   so the guest process never blocks on a full pipe. The output task ends when the agent
//!   closes the stream (the process and every holder of its output ended).
//! - Input: the FIFO is opened for reading when containerd's writer opens it; its EOF, or
//!   CloseIO, ends the stream (the guest process reads EOF).
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::agent_client::{AgentClient, AgentError, StreamKind, StreamSet, StreamToken};

/// How long an output FIFO may lack its reader before the output is dropped.
const READER_WAIT: Duration = Duration::from_secs(30);
const BUF: usize = 32 * 1024;

/// A process's stdio as containerd gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

impl StdioPaths {
    /// The streams the agent is asked for: one per path given (no stderr in terminal mode).
    pub fn streams(&self) -> StreamSet {
        StreamSet {
            stdin: !self.stdin.is_empty(),
            stdout: !self.stdout.is_empty(),
            stderr: !self.stderr.is_empty() && !self.terminal,
        }
    }
}

/// The copying of one process's stdio.
pub struct Relay {
    /// Ends when every output stream did.
    pub output: JoinHandle<()>,
    /// Ends the input (after what the FIFO holds): CloseIO, or the process ended.
    stdin_close: Option<oneshot::Sender<()>>,
}

impl Relay {
    /// Closes the process's stdin once what was written so far is copied.
    pub fn close_stdin(&mut self) {
        if let Some(tx) = self.stdin_close.take() {
            let _ = tx.send(());
        }
    }
}

/// Opens the agent's streams of `exec_id` (presenting `token`) and starts copying them to and
/// from `paths`. Call before (or while) the agent creates the process: it waits for them.
pub async fn start(
    client: &AgentClient,
    exec_id: &str,
    paths: &StdioPaths,
    token: &StreamToken,
) -> Result<Relay, AgentError> {
    let streams = paths.streams();
    let mut outputs = Vec::new();
    let mut stdin_close = None;
    for kind in streams.kinds(paths.terminal) {
        let s = client.open_stream(exec_id, kind, token).await?;
        match kind {
            StreamKind::Tty => {
                let (from, to) = s.into_split();
                if streams.stdin {
                    let (tx, rx) = oneshot::channel();
                    stdin_close = Some(tx);
                    // No EOF on a terminal: the task just stops copying.
                    tokio::spawn(copy_in(paths.stdin.clone(), to, rx, false));
                    outputs.push(tokio::spawn(copy_out(from, paths.stdout.clone())));
                } else {
                    // The input side stays open (its end would type ^D on the terminal).
                    let path = paths.stdout.clone();
                    outputs.push(tokio::spawn(async move {
                        let _input = to;
                        copy_out(from, path).await
                    }));
                }
            }
            StreamKind::Stdin => {
                let (tx, rx) = oneshot::channel();
                stdin_close = Some(tx);
                tokio::spawn(copy_in(paths.stdin.clone(), s, rx, true));
            }
            StreamKind::Stdout => outputs.push(tokio::spawn(copy_out(s, paths.stdout.clone()))),
            StreamKind::Stderr => outputs.push(tokio::spawn(copy_out(s, paths.stderr.clone()))),
        }
    }
    let output = tokio::spawn(async move {
        for o in outputs {
            let _ = o.await;
        }
    });
    Ok(Relay {
        output,
        stdin_close,
    })
}

type Sink = Box<dyn AsyncWrite + Unpin + Send>;

/// Opens where output goes: a FIFO once it has a reader (`None` if none came), or a file for
/// `file://PATH` (appended to).
async fn open_sink(path: &str) -> Option<Sink> {
    if path.is_empty() {
        return None;
    }
    if let Some(file) = path.strip_prefix("file://") {
        return match tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .await
        {
            Ok(f) => Some(Box::new(f)),
            Err(e) => {
                tracing::warn!("opening the output file {file}: {e}");
                None
            }
        };
    }
    let end = tokio::time::Instant::now() + READER_WAIT;
    loop {
        match pipe::OpenOptions::new().open_sender(path) {
            Ok(s) => return Some(Box::new(s)),
            // No reader yet.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                if tokio::time::Instant::now() >= end {
                    tracing::warn!("no reader of {path} within {READER_WAIT:?}: output dropped");
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                tracing::warn!("opening the output FIFO {path}: {e}");
                return None;
            }
        }
    }
}

/// Copies a stream to `path` until the stream ends; output nobody reads any more is dropped.
async fn copy_out(mut from: impl AsyncRead + Unpin, path: String) {
    let mut sink = open_sink(&path).await;
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(s) = sink.as_mut() {
            if let Err(e) = s.write_all(&buf[..n]).await {
                tracing::debug!("output to {path} stopped ({e}): dropping the rest");
                sink = None;
            }
        }
    }
    if let Some(mut s) = sink {
        let _ = s.flush().await;
    }
}

/// Opens the stdin FIFO for reading, waiting for containerd's writer (blocking open); `close`
/// before that gives up (the blocked open is woken by opening the FIFO for writing).
async fn open_source(path: &str, close: &mut oneshot::Receiver<()>) -> Option<pipe::Receiver> {
    if path.is_empty() {
        return None;
    }
    let p = path.to_string();
    let mut opening = tokio::task::spawn_blocking(move || std::fs::File::open(p));
    tokio::select! {
        r = &mut opening => match r {
            Ok(Ok(f)) => pipe::Receiver::from_file(f)
                .map_err(|e| tracing::warn!("stdin {path}: {e}"))
                .ok(),
            Ok(Err(e)) => {
                tracing::warn!("opening the stdin FIFO {path}: {e}");
                None
            }
            Err(_) => None,
        },
        _ = close => {
            // Wakes the blocked open (a reader waiting in open counts as a reader).
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path);
            let _ = opening.await;
            None
        }
    }
}

/// Copies the stdin FIFO to the stream until its EOF or `close` (then what the FIFO still
/// holds); with `eof`, shuts the stream's write side down so the process reads EOF. Without
/// (a terminal, whose input's end the agent turns into ^D), the stream stays open until `close`
/// (the process ended), as runc's shim leaves a console open when its stdin FIFO ends.
async fn copy_in(
    path: String,
    mut to: impl AsyncWrite + Unpin,
    mut close: oneshot::Receiver<()>,
    eof: bool,
) {
    let mut closed = false;
    match open_source(&path, &mut close).await {
        None => closed = true,
        Some(mut from) => {
            let mut buf = vec![0u8; BUF];
            loop {
                tokio::select! {
                    biased;
                    r = from.read(&mut buf) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if to.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    },
                    _ = &mut close => {
                        drain(&mut from, &mut to, &mut buf).await;
                        closed = true;
                        break;
                    }
                }
            }
        }
    }
    if eof {
        let _ = to.shutdown().await;
    } else if !closed {
        let _ = close.await;
    }
}

/// Copies what the FIFO holds now, without waiting for more.
async fn drain(from: &mut pipe::Receiver, to: &mut (impl AsyncWrite + Unpin), buf: &mut [u8]) {
    loop {
        match from.try_read(buf) {
            Ok(0) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_follow_the_paths() {
        let p = StdioPaths {
            stdin: "/f/0".into(),
            stdout: "/f/1".into(),
            stderr: "/f/2".into(),
            terminal: false,
        };
        assert_eq!(p.streams(), StreamSet::ALL);
        let t = StdioPaths {
            terminal: true,
            ..p.clone()
        };
        assert!(!t.streams().stderr);
        let none = StdioPaths::default();
        assert!(none.streams().kinds(false).is_empty());
    }

    #[tokio::test]
    async fn output_to_a_fifo_and_dropped_without_reader() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("out");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let reader = pipe::OpenOptions::new().open_receiver(&fifo).unwrap();
        let (mut w, r) = tokio::io::duplex(64);
        let task = tokio::spawn(copy_out(r, fifo.display().to_string()));
        w.write_all(b"hello\n").await.unwrap();
        let mut reader = reader;
        let mut got = [0u8; 6];
        reader.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello\n");
        // The reader goes: the rest is read and dropped, and the copy ends with the stream.
        drop(reader);
        w.write_all(&[b'x'; 200_000]).await.unwrap();
        drop(w);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn input_until_eof_or_close() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("in");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let (w, mut r) = tokio::io::duplex(1024);
        let (_tx, rx) = oneshot::channel();
        let task = tokio::spawn(copy_in(fifo.display().to_string(), w, rx, true));
        let f = fifo.clone();
        let writer = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut w = std::fs::OpenOptions::new().write(true).open(f).unwrap();
            w.write_all(b"data\n").unwrap();
        });
        writer.await.unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"data\n");
        task.await.unwrap();
        // Closed before any writer came: the blocked open is abandoned.
        let (w, mut r) = tokio::io::duplex(1024);
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(copy_in(fifo.display().to_string(), w, rx, true));
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send(()).unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        assert!(got.is_empty());
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
