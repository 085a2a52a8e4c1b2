//! Sandpod's host-side runtime: the sandbox (one microVM: [`sandbox`], [`hypervisor`]), the
//! containers on it ([`container`]), their stdio ([`io`]), the agent client, and the front ends:
//! the runc-compatible CLI ([`cli`]) and the containerd shim v2. [`network`] mirrors the pod's
//! network namespace onto taps for the VM (not wired in yet).
pub mod agent_client;
pub mod bundle;
pub mod cli;
pub mod config;
pub mod container;
pub mod hypervisor;
pub mod io;
pub mod log_file;
pub mod network;
pub mod paths;
pub mod sandbox;
pub mod shim;

/// The runtime's version, as printed by `sandpod --version` and the shim.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
