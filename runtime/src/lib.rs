//! Sandpod's host-side runtime: sandbox lifecycle, hypervisor control, the agent client, the
//! runc-compatible CLI and the containerd shim v2.
pub mod agent_client;
pub mod bundle;
pub mod cli;
pub mod hypervisor;
pub mod paths;
pub mod sandbox;

/// The runtime's version, as printed by `sandpod --version` and the shim.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
