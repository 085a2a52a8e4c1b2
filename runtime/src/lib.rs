//! Sandpod's host-side runtime: sandbox lifecycle, hypervisor control, the agent client, the
//! runc-compatible CLI and the containerd shim v2. The pieces land with their issues.
pub mod agent_client;

/// The runtime's version, as printed by `sandpod --version` and the shim.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
