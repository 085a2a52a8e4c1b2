//! The vsock ports of the host <-> guest protocol.
//!
//! Guest side: the agent listens on [`AGENT_PORT`] and [`STDIO_PORT`] and accepts connections
//! from the host only (peer CID [`HOST_CID`]; the guest kernel has no vsock loopback), and
//! connects to the host (CID 2) on [`LOG_PORT`] and [`DNS_PORT`]. Host side (Firecracker-style hybrid vsock): the host reaches
//! a guest port through the VMM's Unix socket `uds` (`CONNECT <port>\n`), and the VMM forwards
//! the guest's connections to host port P to the Unix socket `<uds>_<P>` ([`uds_port_path`]).

/// `<uds>_<port>`, defined in `sandpod-vmconfig` (which the VMM uses without this crate).
pub use sandpod_vmconfig::uds_port_path;

/// The agent's ttrpc API.
pub const AGENT_PORT: u32 = 1024;
/// The agent's log stream: JSON lines from the guest to the host.
pub const LOG_PORT: u32 = 1025;
/// Process stdio streams: one connection per stream, opened by the host.
pub const STDIO_PORT: u32 = 1026;
/// The DNS relay: the agent forwards the queries sent to Docker's embedded DNS address
/// (127.0.0.11:53 in the guest) to the host, one framed query per connection ([`crate::dns`]).
pub const DNS_PORT: u32 = 1027;
/// The host's vsock CID, as seen from the guest.
pub const HOST_CID: u32 = 2;
