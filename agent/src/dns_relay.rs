//! The guest half of the DNS relay for Docker's embedded DNS (user-defined networks).
//!
//! Docker gives a container on a user-defined network a resolv.conf with `nameserver
//! 127.0.0.11` and answers on 127.0.0.11:53 in the container's network namespace on the host.
//! Here the container's namespace is the VM's, where 127.0.0.11 is the guest's own loopback, so
//! the agent listens there (UDP, [`LISTEN_ADDR`]) and hands each query to the host: one stream
//! connection to the host's [`DNS_PORT`] per query, the query framed ([`sandpod_protocol::dns`]),
//! the framed reply read back and sent to the query's source. It runs only when CreateSandbox
//! asks (`dns_relay`: the host's runtime saw the container use Docker's DNS, and its monitor
//! listens, `runtime/src/sandbox/dns_relay.rs`); otherwise nothing listens there in the guest.
//! A refused connection drops the query (debug log only).
//!
//! Bounds: datagrams of a DNS header to [`MAX_MESSAGE`] bytes (others dropped), at most
//! [`MAX_IN_FLIGHT`] queries at once (more dropped: the resolver retries), [`REPLY_TIMEOUT`] per
//! query, a reply only with the query's id; warnings at most once per [`WARN_EVERY`].
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sandpod_protocol::dns::{self, MAX_MESSAGE};
use sandpod_protocol::DNS_PORT;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use crate::transport::Transport;

/// Docker's embedded DNS address, in the guest.
pub const LISTEN_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 11), 53));
/// Queries relayed at once; more are dropped.
pub const MAX_IN_FLIGHT: usize = 16;
/// How long a query may take (connecting to the host included).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// At most one warning per this period; the rest are debug lines.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

/// Why a query got no reply.
#[derive(Debug, Error)]
pub enum RelayError {
    /// Nothing listens on the host's port: the relay is off for this sandbox.
    #[error("the host's DNS relay is off")]
    Off,
    #[error("connecting to the host's DNS relay: {0}")]
    Connect(io::Error),
    #[error("talking to the host's DNS relay: {0}")]
    Io(#[from] io::Error),
    #[error("the host's DNS relay sent a frame of {0} bytes")]
    BadLength(usize),
    #[error("the host's DNS relay replied with another id")]
    WrongId,
    #[error("no reply from the host's DNS relay within {REPLY_TIMEOUT:?}")]
    Timeout,
}

impl RelayError {
    fn connect(e: io::Error) -> RelayError {
        // Hybrid vsock: the VMM resets a connection to a host port nobody listens on. Test mode:
        // no socket file, or nobody accepting on it.
        match e.kind() {
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::NotFound => RelayError::Off,
            _ => RelayError::Connect(e),
        }
    }
}

/// Warnings at most once per [`WARN_EVERY`] (a container can make every query fail).
#[derive(Default)]
struct Warnings {
    last: Mutex<Option<Instant>>,
}

impl Warnings {
    fn report(&self, e: &RelayError) {
        if matches!(e, RelayError::Off) {
            tracing::debug!("DNS query dropped: {e}");
            return;
        }
        let now = Instant::now();
        let due = {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|t| now.duration_since(t) >= WARN_EVERY);
            if due {
                *last = Some(now);
            }
            due
        };
        if due {
            tracing::warn!("DNS query dropped: {e} (further ones for {WARN_EVERY:?} at debug)");
        } else {
            tracing::debug!("DNS query dropped: {e}");
        }
    }
}

/// The relay's UDP socket and the way to the host.
pub struct DnsRelay {
    socket: Arc<UdpSocket>,
    transport: Transport,
}

impl DnsRelay {
    /// Listens on `addr` (the guest: [`LISTEN_ADDR`]); queries go to the host through
    /// `transport` (vsock CID 2, or `<base>_1027` in test mode).
    pub async fn bind(addr: SocketAddr, transport: Transport) -> io::Result<DnsRelay> {
        Ok(DnsRelay {
            socket: Arc::new(UdpSocket::bind(addr).await?),
            transport,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Relays queries for ever.
    pub async fn run(self) {
        let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let warnings = Arc::new(Warnings::default());
        // One byte more than the largest query: a datagram filling it was longer (truncated).
        let mut buf = vec![0u8; MAX_MESSAGE + 1];
        loop {
            let (n, from) = match self.socket.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!("receiving a DNS query: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if !dns::valid_len(n) {
                tracing::debug!("DNS query of {n} bytes or more from {from} dropped");
                continue;
            }
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                tracing::debug!("DNS query from {from} dropped: {MAX_IN_FLIGHT} in flight");
                continue;
            };
            let query = buf[..n].to_vec();
            let socket = self.socket.clone();
            let transport = self.transport.clone();
            let warnings = warnings.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let reply = tokio::time::timeout(REPLY_TIMEOUT, exchange(&transport, &query))
                    .await
                    .unwrap_or(Err(RelayError::Timeout));
                match reply {
                    Ok(reply) => {
                        if let Err(e) = socket.send_to(&reply, from).await {
                            tracing::debug!("sending a DNS reply to {from}: {e}");
                        }
                    }
                    Err(e) => warnings.report(&e),
                }
            });
        }
    }
}

/// In the guest: relays Docker's embedded DNS address to the host, in the background. A failure
/// to listen is logged, never fatal.
pub fn spawn(transport: Transport) {
    tokio::spawn(async move {
        match DnsRelay::bind(LISTEN_ADDR, transport).await {
            Ok(relay) => {
                tracing::debug!("relaying DNS queries to {LISTEN_ADDR} to the host");
                relay.run().await;
            }
            Err(e) => tracing::warn!("cannot listen on {LISTEN_ADDR} for the DNS relay: {e}"),
        }
    });
}

/// One query: a connection to the host, the query framed, the framed reply with the query's id.
async fn exchange(transport: &Transport, query: &[u8]) -> Result<Vec<u8>, RelayError> {
    let framed = dns::frame(query).ok_or(RelayError::BadLength(query.len()))?;
    let mut conn = transport
        .connect_host(DNS_PORT)
        .await
        .map_err(RelayError::connect)?;
    conn.write_all(&framed).await?;
    let reply = read_frame(&mut conn).await?;
    if dns::message_id(&reply) != dns::message_id(query) {
        return Err(RelayError::WrongId);
    }
    Ok(reply)
}

/// Reads one frame: a length of a DNS header to [`MAX_MESSAGE`] bytes, and that many bytes.
pub async fn read_frame(r: &mut (impl AsyncRead + Unpin + ?Sized)) -> Result<Vec<u8>, RelayError> {
    let len = usize::from(r.read_u16().await?);
    if !dns::valid_len(len) {
        return Err(RelayError::BadLength(len));
    }
    let mut msg = vec![0; len];
    r.read_exact(&mut msg).await?;
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    fn query(id: u8) -> Vec<u8> {
        let mut q = vec![id, 0x42, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x01a\x00\x00\x01\x00\x01");
        q
    }

    /// The fake host: answers each framed query with the query, QR bit set, and the id
    /// changed first if `wrong_id`. Returns the queries it got.
    fn fake_host(
        listener: UnixListener,
        wrong_id: bool,
    ) -> tokio::sync::mpsc::UnboundedReceiver<Vec<u8>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (mut c, _) = listener.accept().await.unwrap();
                let q = read_frame(&mut c).await.unwrap();
                let mut reply = q.clone();
                reply[2] |= 0x80;
                if wrong_id {
                    reply[0] ^= 0xff;
                }
                c.write_all(&dns::frame(&reply).unwrap()).await.unwrap();
                let _ = tx.send(q);
            }
        });
        rx
    }

    struct Setup {
        _dir: tempfile::TempDir,
        host_path: std::path::PathBuf,
        relay: SocketAddr,
        client: UdpSocket,
    }

    async fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("v");
        let host_path = Transport::unix_path(&base, DNS_PORT);
        let relay = DnsRelay::bind("127.0.0.1:0".parse().unwrap(), Transport::Unix { base })
            .await
            .unwrap();
        let addr = relay.local_addr().unwrap();
        tokio::spawn(relay.run());
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        Setup {
            _dir: dir,
            host_path,
            relay: addr,
            client,
        }
    }

    async fn ask(s: &Setup, q: &[u8], wait: Duration) -> Option<Vec<u8>> {
        s.client.send_to(q, s.relay).await.unwrap();
        let mut buf = vec![0; 8192];
        let n = tokio::time::timeout(wait, s.client.recv(&mut buf))
            .await
            .ok()?
            .unwrap();
        Some(buf[..n].to_vec())
    }

    #[tokio::test]
    async fn relays_a_query_to_the_host_and_its_reply_to_the_sender() {
        let s = setup().await;
        let mut got = fake_host(UnixListener::bind(&s.host_path).unwrap(), false);
        let q = query(7);
        let reply = ask(&s, &q, Duration::from_secs(5)).await.expect("a reply");
        assert_eq!(got.recv().await.unwrap(), q);
        assert_eq!(reply[..2], q[..2]);
        assert_eq!(reply[2], q[2] | 0x80);
        assert_eq!(reply[3..], q[3..]);
    }

    #[tokio::test]
    async fn without_the_host_queries_are_dropped_and_the_relay_goes_on() {
        let s = setup().await;
        assert_eq!(ask(&s, &query(1), Duration::from_millis(300)).await, None);
        let _got = fake_host(UnixListener::bind(&s.host_path).unwrap(), false);
        let reply = ask(&s, &query(2), Duration::from_secs(5)).await;
        assert_eq!(reply.expect("a reply once the host listens")[0], 2);
    }

    #[tokio::test]
    async fn bad_datagrams_and_replies_with_another_id_are_dropped() {
        let s = setup().await;
        let mut got = fake_host(UnixListener::bind(&s.host_path).unwrap(), false);
        // Too long, too short: never sent to the host.
        for bad in [vec![9; MAX_MESSAGE + 1], vec![9; 11]] {
            s.client.send_to(&bad, s.relay).await.unwrap();
        }
        let q = query(3);
        assert!(ask(&s, &q, Duration::from_secs(5)).await.is_some());
        assert_eq!(
            got.recv().await.unwrap(),
            q,
            "a bad datagram reached the host"
        );
        assert!(got.try_recv().is_err());

        let s = setup().await;
        let _got = fake_host(UnixListener::bind(&s.host_path).unwrap(), true);
        assert_eq!(ask(&s, &query(4), Duration::from_millis(500)).await, None);
    }

    #[tokio::test]
    async fn frames_outside_the_bounds_are_refused() {
        let mut long = &[0x10u8, 0x01][..];
        assert!(matches!(
            read_frame(&mut long).await,
            Err(RelayError::BadLength(4097))
        ));
        let mut short = &[0u8, 11][..];
        assert!(matches!(
            read_frame(&mut short).await,
            Err(RelayError::BadLength(11))
        ));
        let mut cut = &[0u8, 12, 1, 2][..];
        assert!(matches!(read_frame(&mut cut).await, Err(RelayError::Io(_))));
    }

    #[test]
    fn a_refused_connection_means_the_relay_is_off() {
        for kind in [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::NotFound,
        ] {
            assert!(matches!(RelayError::connect(kind.into()), RelayError::Off));
        }
        assert!(matches!(
            RelayError::connect(io::ErrorKind::PermissionDenied.into()),
            RelayError::Connect(_)
        ));
    }
}
