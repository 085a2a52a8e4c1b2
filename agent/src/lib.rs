//! The Sandpod guest agent, PID 1 of every Sandpod microVM.
//!
//! `init` brings the guest up (mounts, console, ready line, power control), then `serve` runs the
//! host's API: `rpc` (ttrpc on vsock port 1024) over `process` (spawning, reaping, signals) and
//! `sandbox`, `stdio` (stream connections on port 1026) and `logging` (to the host's port 1025).
pub mod cmdline;
pub mod container;
pub mod guest;
pub mod init;
pub mod logging;
pub mod process;
pub mod rpc;
pub mod sandbox;
pub mod serve;
pub mod stdio;
pub mod transport;

/// The agent's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
