//! A sandbox: one microVM with its virtio-fs share and agent, and the state on disk that lets
//! separate runtime processes create, use and delete it. It knows nothing of bundles or
//! container states (that is `crate::container`). See [`lifecycle`] for the steps and
//! [`monitor`] for what owns the VM.
pub mod boot_phases;
pub mod dns_relay;
pub mod host_cgroup;
pub mod host_limits;
pub mod jail;
pub mod layout;
pub mod lifecycle;
pub mod monitor;
pub mod network;
pub mod process;
pub mod share;
pub mod standin_watch;
pub mod state;
pub mod template;
pub mod vm_start;

pub use layout::{validate_id, Layout};
pub use lifecycle::{destroy, reserve, Sandbox, SandboxConfig};
pub use state::SandboxState;
