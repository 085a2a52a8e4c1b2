//! The Sandpod guest agent, PID 1 of every Sandpod microVM.
//!
//! `init` brings the guest up (mounts, console, ready line, child reaping, power control).
//! The ttrpc API and the container machinery land with their issues.
pub mod cmdline;
pub mod guest;
pub mod init;

/// The agent's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
