//! Sandpod's virtual machine monitor.
//!
//! The VMM is built on the rust-vmm crates; booting lands with the VMM issue. This crate is a
//! library (the runtime embeds it) and the `sandpod-vmm` binary.

/// The VMM's version, as printed by `sandpod-vmm --version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
