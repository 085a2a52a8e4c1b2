//! Where the agent listens and how it reaches the host: vsock in the guest, Unix sockets named
//! like hybrid vsock's (`<base>_<port>`) in host-side test mode.
//!
//! Only the host may connect: every connection accepted on a vsock port (the ttrpc API and the
//! stdio streams) is checked for the peer's CID, and one that is not [`HOST_CID`] is closed and
//! logged. With the guest kernel's vsock loopback transport off (`guest-kernel-config/`) no guest
//! process can reach the agent's ports in the first place; the check keeps it so if a kernel
//! with loopback (or another transport) is ever used. The VMM sends every packet of a hybrid
//! vsock connection with source CID 2 (sandpod-vmm's `vsock/connection.rs`). Test mode's Unix
//! sockets have no CID: their access is the socket file's.
use std::io;
use std::path::{Path, PathBuf};

use sandpod_protocol::ports::HOST_CID;
use tokio::net::{UnixListener, UnixStream};
use tokio_vsock::{VsockAddr, VsockListener, VsockStream, VMADDR_CID_ANY};
use ttrpc::r#async::transport::Listener as TtrpcListener;

use crate::stdio::HostStream;

/// The agent's transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// AF_VSOCK: listen on any CID, reach the host at CID 2.
    Vsock,
    /// Test mode: port P is the Unix socket `<base>_P`, both for listening and for reaching the
    /// host, as a hybrid-vsock VMM names its host-side sockets.
    Unix { base: PathBuf },
}

impl Transport {
    /// Parses a `--test-serve` address: `unix:///path/base`.
    pub fn parse_test_addr(addr: &str) -> Result<Transport, String> {
        match addr.strip_prefix("unix://") {
            Some(path) if Path::new(path).is_absolute() => Ok(Transport::Unix {
                base: PathBuf::from(path),
            }),
            _ => Err(format!(
                "{addr:?}: expected unix:///absolute/path (the agent uses <path>_<port>)"
            )),
        }
    }

    /// The Unix socket path of `port` under `base`.
    pub fn unix_path(base: &Path, port: u32) -> PathBuf {
        sandpod_protocol::ports::uds_port_path(base, port)
    }

    /// The ttrpc address to serve `port` on.
    pub fn ttrpc_addr(&self, port: u32) -> String {
        match self {
            Transport::Vsock => format!("vsock://-1:{port}"),
            Transport::Unix { base } => {
                format!("unix://{}", Self::unix_path(base, port).display())
            }
        }
    }

    /// A ttrpc listener on `port` that hands the server the host's connections only.
    pub fn ttrpc_listener(&self, port: u32) -> io::Result<TtrpcListener> {
        self.prepare(port);
        Ok(match self {
            Transport::Vsock => {
                let l = VsockListener::bind(VsockAddr::new(VMADDR_CID_ANY, port))?;
                TtrpcListener::new(futures::stream::unfold(l, move |l| async move {
                    let next = accept_host(&l, port).await;
                    Some((next, l))
                }))
            }
            Transport::Unix { base } => {
                TtrpcListener::from(UnixListener::bind(Self::unix_path(base, port))?)
            }
        })
    }

    /// Removes a stale socket file left by an earlier run (test mode).
    pub fn prepare(&self, port: u32) {
        if let Transport::Unix { base } = self {
            let _ = std::fs::remove_file(Self::unix_path(base, port));
        }
    }

    /// Listens on `port` for plain stream connections.
    pub fn bind(&self, port: u32) -> io::Result<StreamListener> {
        self.prepare(port);
        Ok(match self {
            Transport::Vsock => {
                StreamListener::Vsock(VsockListener::bind(VsockAddr::new(VMADDR_CID_ANY, port))?)
            }
            Transport::Unix { base } => {
                StreamListener::Unix(UnixListener::bind(Self::unix_path(base, port))?)
            }
        })
    }

    /// Connects to the host's `port`.
    pub async fn connect_host(&self, port: u32) -> io::Result<HostStream> {
        Ok(match self {
            Transport::Vsock => {
                Box::new(VsockStream::connect(VsockAddr::new(HOST_CID, port)).await?)
            }
            Transport::Unix { base } => {
                Box::new(UnixStream::connect(Self::unix_path(base, port)).await?)
            }
        })
    }
}

/// A listener of either transport.
pub enum StreamListener {
    Vsock(VsockListener),
    Unix(UnixListener),
}

impl StreamListener {
    /// The next connection (vsock: the next one from the host; see [`accept_host`]).
    pub async fn accept(&self) -> io::Result<HostStream> {
        Ok(match self {
            StreamListener::Vsock(l) => {
                let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
                Box::new(accept_host(l, port).await?)
            }
            StreamListener::Unix(l) => Box::new(l.accept().await?.0),
        })
    }
}

/// Whether a vsock peer may connect to the agent: the host only.
pub fn peer_allowed(peer: &VsockAddr) -> bool {
    peer.cid() == HOST_CID
}

/// Accepts connections on `listener` (port `port`, for the log) until one comes from the host;
/// the others are closed at once and logged.
pub async fn accept_host(listener: &VsockListener, port: u32) -> io::Result<VsockStream> {
    loop {
        let (stream, peer) = listener.accept().await?;
        if peer_allowed(&peer) {
            return Ok(stream);
        }
        drop(stream);
        tracing::warn!(
            "refused a connection to port {port} from CID {} port {}: only the host (CID \
             {HOST_CID}) may connect",
            peer.cid(),
            peer.port()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_test_addresses() {
        let t = Transport::parse_test_addr("unix:///tmp/x/agent").unwrap();
        assert_eq!(
            t,
            Transport::Unix {
                base: "/tmp/x/agent".into()
            }
        );
        assert_eq!(t.ttrpc_addr(1024), "unix:///tmp/x/agent_1024");
        assert!(Transport::parse_test_addr("unix://rel").is_err());
        assert!(Transport::parse_test_addr("vsock://-1:1024").is_err());
        assert_eq!(Transport::Vsock.ttrpc_addr(1024), "vsock://-1:1024");
    }

    #[test]
    fn only_the_host_cid_is_allowed() {
        assert!(peer_allowed(&VsockAddr::new(2, 1234)));
        for cid in [0, 1, 3, 4, VMADDR_CID_ANY] {
            assert!(!peer_allowed(&VsockAddr::new(cid, 1234)), "cid {cid}");
        }
    }
}
