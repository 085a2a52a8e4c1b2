//! The host side of hybrid vsock (Firecracker's scheme) on Unix sockets.
//!
//! * Host-initiated: a client connects to `uds_path` and writes `CONNECT <port>\n`; once the
//!   guest accepts, it reads `OK <host_port>\n` and then talks to guest port `<port>`.
//! * Guest-initiated: a guest connection to host port P is a connection to the Unix socket
//!   `<uds_path>_<P>`, which some host program listens on.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};

/// Longest accepted `CONNECT <port>\n` line.
pub const MAX_CONNECT_LINE: usize = 32;
/// How long a host client has to send its CONNECT line, and the guest to answer it.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Removes the listening socket file when dropped (if it is still the one we created).
#[derive(Debug)]
pub struct UdsCleanup {
    path: PathBuf,
    ino: (u64, u64),
}

impl Drop for UdsCleanup {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Binds the hybrid vsock listener at `path`. A stale socket file (nobody listening) is
/// replaced; a live one, or a file that is not a socket, is an error.
pub fn bind_listener(path: &Path) -> io::Result<(UnixListener, UdsCleanup)> {
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket",
            ));
        }
        match UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another process is listening on it",
                ))
            }
            Err(_) => {
                tracing::info!("vsock: replacing stale socket {}", path.display());
                std::fs::remove_file(path)?;
            }
        }
    }
    let listener = UnixListener::bind(path)?;
    listener.set_nonblocking(true)?;
    let m = std::fs::symlink_metadata(path)?;
    Ok((
        listener,
        UdsCleanup {
            path: path.to_path_buf(),
            ino: (m.dev(), m.ino()),
        },
    ))
}

/// Connects to `<uds_path>_<port>` without blocking (a full backlog fails instead of
/// stalling the device thread).
pub fn connect_host_port(uds_path: &Path, port: u32) -> io::Result<UnixStream> {
    let name = sandpod_vmconfig::uds_port_path(uds_path, port);
    let addr = UnixAddr::new(name.as_path()).map_err(io::Error::from)?;
    let fd: OwnedFd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)?;
    connect(fd.as_raw_fd(), &addr).map_err(io::Error::from)?;
    Ok(UnixStream::from(fd))
}

/// What a pending host client's handshake produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Handshake {
    /// It wants guest port N.
    Connect(u32),
    /// The line is not complete yet.
    Pending,
    /// Bad line, EOF or error: close it.
    Failed(String),
}

/// A host client that has not sent its CONNECT line yet.
#[derive(Debug)]
pub struct PendingClient {
    /// The client.
    pub stream: UnixStream,
    /// When it is dropped if still pending.
    pub deadline: Instant,
    line: Vec<u8>,
}

impl PendingClient {
    /// A freshly accepted client.
    pub fn new(stream: UnixStream) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        Ok(PendingClient {
            stream,
            deadline: Instant::now() + CONNECT_TIMEOUT,
            line: Vec::with_capacity(MAX_CONNECT_LINE),
        })
    }

    /// Reads what is available of the line, one byte at a time so that nothing after the
    /// newline (the client's first data for the guest) is consumed.
    pub fn poll(&mut self) -> Handshake {
        let mut b = [0u8; 1];
        loop {
            match self.stream.read(&mut b) {
                Ok(0) => return Handshake::Failed("closed before CONNECT".into()),
                Ok(_) if b[0] == b'\n' => return parse_connect(&self.line),
                Ok(_) if self.line.len() + 1 >= MAX_CONNECT_LINE => {
                    return Handshake::Failed("CONNECT line too long".into())
                }
                Ok(_) => self.line.push(b[0]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Handshake::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Handshake::Failed(e.to_string()),
            }
        }
    }
}

/// Parses `CONNECT <port>` (decimal, an optional trailing `\r` tolerated).
pub fn parse_connect(line: &[u8]) -> Handshake {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let parsed = std::str::from_utf8(line)
        .ok()
        .and_then(|l| l.strip_prefix("CONNECT "))
        .filter(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
        .and_then(|p| p.parse::<u32>().ok());
    match parsed {
        Some(port) => Handshake::Connect(port),
        None => Handshake::Failed(format!(
            "bad CONNECT line {:?}",
            String::from_utf8_lossy(line)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("sandpod-vsock-{}-{name}", std::process::id()))
    }

    #[test]
    fn parses_connect_lines() {
        assert_eq!(parse_connect(b"CONNECT 1024"), Handshake::Connect(1024));
        assert_eq!(parse_connect(b"CONNECT 52\r"), Handshake::Connect(52));
        for bad in [
            &b"CONNECT"[..],
            b"CONNECT ",
            b"CONNECT -1",
            b"CONNECT 4294967296",
            b"connect 1",
            b"CONNECT 1 2",
            b"CONNECT +1",
            b"\xff",
        ] {
            assert!(
                matches!(parse_connect(bad), Handshake::Failed(_)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn handshake_keeps_following_data() {
        let (mut client, server) = UnixStream::pair().unwrap();
        let mut p = PendingClient::new(server).unwrap();
        assert_eq!(p.poll(), Handshake::Pending);
        client.write_all(b"CONNECT 10").unwrap();
        assert_eq!(p.poll(), Handshake::Pending);
        client.write_all(b"24\nDATA").unwrap();
        assert_eq!(p.poll(), Handshake::Connect(1024));
        let mut rest = [0u8; 4];
        p.stream.read_exact(&mut rest).unwrap();
        assert_eq!(&rest, b"DATA");
    }

    #[test]
    fn handshake_limits() {
        let (mut client, server) = UnixStream::pair().unwrap();
        let mut p = PendingClient::new(server).unwrap();
        client.write_all(&[b'9'; 40]).unwrap();
        assert!(matches!(p.poll(), Handshake::Failed(_)));
        let (client, server) = UnixStream::pair().unwrap();
        let mut p = PendingClient::new(server).unwrap();
        drop(client);
        assert!(matches!(p.poll(), Handshake::Failed(_)));
    }

    #[test]
    fn listener_replaces_stale_sockets_only() {
        let path = tmp("stale");
        let _ = std::fs::remove_file(&path);
        let (l, guard) = bind_listener(&path).unwrap();
        // Live: refused.
        assert_eq!(
            bind_listener(&path).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
        // Stale (the listener is gone but the file stays): replaced.
        drop(l);
        std::mem::forget(guard);
        let (_l, guard) = bind_listener(&path).unwrap();
        drop(guard);
        assert!(!path.exists());
        // Not a socket: left alone.
        std::fs::write(&path, b"x").unwrap();
        assert!(bind_listener(&path).is_err());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn connects_to_port_sockets() {
        let path = tmp("out");
        let port_path = sandpod_vmconfig::uds_port_path(&path, 1025);
        let _ = std::fs::remove_file(&port_path);
        assert!(connect_host_port(&path, 1025).is_err());
        let l = UnixListener::bind(&port_path).unwrap();
        let mut s = connect_host_port(&path, 1025).unwrap();
        let (mut acc, _) = l.accept().unwrap();
        s.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        acc.read_exact(&mut b).unwrap();
        std::fs::remove_file(&port_path).unwrap();
    }
}
