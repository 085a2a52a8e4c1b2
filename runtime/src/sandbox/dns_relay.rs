//! The host half of the DNS relay for Docker's embedded DNS (user-defined networks).
//!
//! Docker answers a container's DNS queries on 127.0.0.11:53 inside the container's network
//! namespace on the host (an iptables DNAT there to a dockerd socket), and writes `nameserver
//! 127.0.0.11` into the resolv.conf it bind-mounts into the container. The container runs in the
//! VM, whose 127.0.0.11 is the guest's own loopback: the agent listens there and sends each
//! query to host port [`DNS_PORT`] (`agent/src/dns_relay.rs`), which the VMM forwards to the Unix
//! socket `<vsock uds>_1027`. The monitor listens there ([`DnsRelay`]) when the creator asked for
//! it ([`uses_docker_dns`]) and sends each query from a UDP socket made in the pod's network
//! namespace to 127.0.0.11:53, where Docker answers it, and the reply back.
//!
//! Everything from the guest is hostile: only the datagram's payload is taken from it (the
//! destination is always [`DNS_SERVER`]); frames shorter than a DNS header or longer than
//! [`MAX_MESSAGE`] close the connection, as do queries over the rate limit ([`RATE`] per second,
//! burst [`BURST`], per sandbox), a connection idle for [`IDLE_TIMEOUT`], a reply not received
//! within [`REPLY_TIMEOUT`] and UDP errors (ICMP port unreachable: nothing listens). At most
//! [`MAX_CONNECTIONS`] connections at once; more are closed at once. Only replies from
//! [`DNS_SERVER`] with the query's id are relayed.
use std::fs::File;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oci_spec::runtime::Spec;
use sandpod_protocol::dns::{self, HEADER_LEN, MAX_MESSAGE};
pub use sandpod_protocol::DNS_PORT;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{UdpSocket, UnixListener};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Docker's embedded DNS server, in the pod's network namespace: every query goes there.
pub const DNS_SERVER: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 11), 53));
/// Guest connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// Queries per second relayed for one sandbox (on average) ...
pub const RATE: u32 = 200;
/// ... and at once after a quiet period.
pub const BURST: u32 = 200;
/// How long Docker's server gets to answer.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may take to send its next frame (or to take a reply).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest resolv.conf read (a host file Docker wrote).
const MAX_RESOLV_CONF: u64 = 64 * 1024;
/// Where a container's resolver configuration is.
const RESOLV_CONF: &str = "/etc/resolv.conf";

#[derive(Debug, Error)]
pub enum DnsRelayError {
    #[error("opening the network namespace {path}: {source}")]
    OpenNetns { path: PathBuf, source: io::Error },
    #[error("listening on {path}: {source}")]
    Listen { path: PathBuf, source: io::Error },
    #[error("entering the pod's network namespace: {0}")]
    Setns(nix::Error),
    #[error("making a UDP socket in the pod's network namespace: {0}")]
    Socket(io::Error),
    #[error("the thread making a UDP socket in the pod's network namespace failed")]
    Thread,
}

/// Why a guest connection was closed (debug only: the guest can cause each at will).
#[derive(Debug, Error)]
pub enum Closed {
    #[error("a frame of {0} bytes")]
    BadLength(usize),
    #[error("over the rate limit ({RATE}/s)")]
    RateLimited,
    #[error("idle for {IDLE_TIMEOUT:?}")]
    Idle,
    #[error("no reply from {DNS_SERVER} within {REPLY_TIMEOUT:?}")]
    NoReply,
    #[error("a reply longer than {MAX_MESSAGE} bytes")]
    ReplyTooLong,
    #[error("guest connection: {0}")]
    Guest(io::Error),
    #[error("UDP to {DNS_SERVER}: {0}")]
    Udp(io::Error),
    #[error(transparent)]
    Socket(#[from] DnsRelayError),
}

/// A token bucket: `rate` tokens a second, at most `burst` saved; one per query.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    /// Tokens left, and when they were counted.
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32) -> TokenBucket {
        TokenBucket {
            rate: f64::from(rate),
            burst: f64::from(burst),
            state: Mutex::new((f64::from(burst), Instant::now())),
        }
    }

    /// Takes a token if there is one.
    pub fn admit(&self) -> bool {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(s.1).as_secs_f64();
        s.0 = (s.0 + elapsed * self.rate).min(self.burst);
        s.1 = s.1.max(now);
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The pod's network namespace, held open from the monitor's start (its path, such as
/// `/proc/<pid>/ns/net`, may name another namespace later).
#[derive(Debug, Clone)]
pub struct PodNetns(Arc<File>);

impl PodNetns {
    pub fn open(path: &Path) -> Result<PodNetns, DnsRelayError> {
        File::open(path)
            .map(|f| PodNetns(Arc::new(f)))
            .map_err(|source| DnsRelayError::OpenNetns {
                path: path.to_path_buf(),
                source,
            })
    }

    /// A UDP socket in the namespace, connected to [`DNS_SERVER`] (so only its datagrams are
    /// received): made on a short-lived thread that enters the namespace (`setns` changes only
    /// the calling thread's; the socket keeps its namespace wherever it is used).
    pub async fn dns_socket(&self) -> Result<UdpSocket, DnsRelayError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        crate::network::netns::spawn_in_netns(self.0.clone(), move |entered| {
            let made = entered
                .map_err(DnsRelayError::Setns)
                .and_then(|()| connected_socket().map_err(DnsRelayError::Socket));
            let _ = tx.send(made);
        })
        .map_err(|_| DnsRelayError::Thread)?;
        let socket = rx.await.map_err(|_| DnsRelayError::Thread)??;
        UdpSocket::from_std(socket).map_err(DnsRelayError::Socket)
    }
}

/// A non-blocking UDP socket of this thread's network namespace, connected to [`DNS_SERVER`].
fn connected_socket() -> io::Result<std::net::UdpSocket> {
    let s = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    s.connect(DNS_SERVER)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// What every connection of one relay shares.
struct Shared {
    netns: PodNetns,
    limiter: TokenBucket,
}

/// Listens on `<vsock uds>_1027` for the agent's DNS queries. Stops (and removes the socket) on
/// drop.
pub struct DnsRelay {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl DnsRelay {
    /// Listens at `path`, relaying to [`DNS_SERVER`] in `netns`.
    pub fn start(path: impl Into<PathBuf>, netns: PodNetns) -> Result<DnsRelay, DnsRelayError> {
        let limiter = TokenBucket::new(RATE, BURST);
        Self::start_with(path.into(), netns, limiter)
    }

    fn start_with(
        path: PathBuf,
        netns: PodNetns,
        limiter: TokenBucket,
    ) -> Result<DnsRelay, DnsRelayError> {
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(|source| DnsRelayError::Listen {
            path: path.clone(),
            source,
        })?;
        let shared = Arc::new(Shared { netns, limiter });
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let task = tokio::spawn(async move {
            // The connections' tasks end with this one (when the relay is dropped).
            let mut tasks = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            let Ok(permit) = slots.clone().try_acquire_owned() else {
                                tracing::debug!("DNS relay connection closed: {MAX_CONNECTIONS} open");
                                continue;
                            };
                            let shared = shared.clone();
                            tasks.spawn(async move {
                                if let Err(e) = serve_connection(stream, &shared).await {
                                    tracing::debug!("DNS relay connection closed: {e}");
                                }
                                drop(permit);
                            });
                        }
                        Err(e) => {
                            tracing::warn!("DNS relay listener: {e}");
                            return;
                        }
                    },
                    Some(_) = tasks.join_next() => {}
                }
            }
        });
        Ok(DnsRelay { path, task })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DnsRelay {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads one frame; None at the end of the stream (between frames).
async fn read_frame(conn: &mut (impl AsyncRead + Unpin)) -> Result<Option<Vec<u8>>, Closed> {
    let mut len = [0u8; 2];
    match conn.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(Closed::Guest(e)),
    }
    let len = usize::from(u16::from_be_bytes(len));
    if !dns::valid_len(len) {
        return Err(Closed::BadLength(len));
    }
    let mut msg = vec![0; len];
    conn.read_exact(&mut msg).await.map_err(Closed::Guest)?;
    Ok(Some(msg))
}

/// Serves one guest connection: framed queries in, framed replies out, until the guest closes
/// it or breaks a rule (see the module docs).
async fn serve_connection(
    mut conn: impl AsyncRead + AsyncWrite + Unpin,
    shared: &Shared,
) -> Result<(), Closed> {
    let mut socket = None;
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    loop {
        let query = match tokio::time::timeout(IDLE_TIMEOUT, read_frame(&mut conn)).await {
            Err(_) => return Err(Closed::Idle),
            Ok(frame) => match frame? {
                Some(q) => q,
                None => return Ok(()),
            },
        };
        if !shared.limiter.admit() {
            return Err(Closed::RateLimited);
        }
        let udp = match &mut socket {
            Some(s) => s,
            None => socket.insert(shared.netns.dns_socket().await?),
        };
        let reply = ask(udp, &query, &mut buf).await?;
        let framed = dns::frame(reply).ok_or(Closed::ReplyTooLong)?;
        tokio::time::timeout(IDLE_TIMEOUT, conn.write_all(&framed))
            .await
            .map_err(|_| Closed::Idle)?
            .map_err(Closed::Guest)?;
    }
}

/// Whether a datagram from `from` is the reply to `query`: from [`DNS_SERVER`], with a DNS
/// header and the query's id.
pub fn is_reply_to(query: &[u8], from: SocketAddr, reply: &[u8]) -> bool {
    from == DNS_SERVER
        && reply.len() >= HEADER_LEN
        && dns::message_id(reply) == dns::message_id(query)
}

/// Sends `query` to [`DNS_SERVER`] and waits for its reply (in `buf`).
async fn ask<'b>(socket: &UdpSocket, query: &[u8], buf: &'b mut [u8]) -> Result<&'b [u8], Closed> {
    socket.send(query).await.map_err(Closed::Udp)?;
    let deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
    loop {
        let (n, from) = tokio::time::timeout_at(deadline, socket.recv_from(buf))
            .await
            .map_err(|_| Closed::NoReply)?
            .map_err(Closed::Udp)?;
        if !is_reply_to(query, from, &buf[..n]) {
            tracing::debug!("DNS relay: ignored a datagram of {n} bytes from {from}");
            continue;
        }
        // `buf` is one byte longer than the longest reply relayed: a longer one filled it.
        if n > MAX_MESSAGE {
            return Err(Closed::ReplyTooLong);
        }
        return Ok(&buf[..n]);
    }
}

/// Whether the container uses Docker's embedded DNS: its spec bind-mounts a file at
/// `/etc/resolv.conf` whose source (an absolute host path Docker wrote) has a `nameserver
/// 127.0.0.11` line. The file is read bounded, only if it is a regular file.
pub fn uses_docker_dns(spec: &Spec) -> bool {
    let Some(mounts) = spec.mounts() else {
        return false;
    };
    mounts
        .iter()
        .filter(|m| m.destination() == Path::new(RESOLV_CONF))
        .filter(|m| {
            m.typ().as_deref() == Some("bind")
                || m.options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind")
        })
        .filter_map(|m| m.source().as_deref())
        .filter(|src| src.is_absolute())
        .any(|src| read_bounded(src).is_some_and(|text| names_docker_dns(&text)))
}

/// A regular file's first [`MAX_RESOLV_CONF`] bytes (opened non-blocking: a FIFO there does not
/// hang the caller).
fn read_bounded(path: &Path) -> Option<String> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    f.take(MAX_RESOLV_CONF).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Whether resolv.conf `text` has a `nameserver 127.0.0.11` line.
fn names_docker_dns(text: &str) -> bool {
    text.lines().any(|l| {
        let mut words = l.split_whitespace();
        words.next() == Some("nameserver") && words.next() == Some("127.0.0.11")
    })
}

#[cfg(test)]
#[path = "dns_relay_tests.rs"]
mod tests;
