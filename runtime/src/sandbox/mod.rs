//! A sandbox: one microVM with its virtio-fs share and agent, and the state on disk that lets
//! separate runtime processes create, use and delete it. See [`lifecycle`] for the steps and
//! [`monitor`] for the process that owns the VM.
pub mod layout;
pub mod lifecycle;
pub mod monitor;
pub mod process;
pub mod shared_dir;
pub mod state;

pub use layout::{validate_id, Layout};
pub use lifecycle::{destroy, Sandbox, SandboxOptions};
pub use state::{SandboxState, Status};
