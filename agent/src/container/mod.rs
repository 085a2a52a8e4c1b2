//! Containers from OCI runtime specs, runc-style (CreateContainer, StartContainer,
//! RemoveContainer, ExecProcess with a container_id).
//!
//! The agent is multithreaded (tokio), so it runs no setup code between fork and exec: `launch`
//! clones a helper with the container's namespace flags that execs `/proc/self/exe` in a helper
//! mode at once; the helper (`helper`, `init`, `exec`), single-threaded and PID 1 of the new pid
//! namespace, gets its config (`config`, made from the spec by `spec`) over a sync socket
//! (`sync`) and does the setup: `mounts`, `rootfs`, `devices`, `terminal`, `process`. The
//! security modules are called from the functions of `security` only. `manager` keeps the
//! containers; the init process itself is a process of the agent's process table (exec id =
//! container id).
pub mod capabilities;
pub mod cgroup_stats;
pub mod cgroups;
pub mod config;
pub mod device_filter;
pub mod device_rules;
pub mod devices;
pub mod error;
pub mod exec;
pub mod helper;
pub mod init;
pub mod launch;
pub mod manager;
pub mod mounts;
pub mod namespaces;
pub mod paths;
pub mod process;
pub mod procinfo;
pub mod rlimits;
pub mod rootfs;
pub mod seccomp;
pub mod securejoin;
pub mod security;
pub mod spec;
pub mod stdio;
pub mod sync;
pub mod terminal;
#[cfg(test)]
pub(crate) mod testutil;
pub mod vsock_guard;

pub use error::ContainerError;
pub use manager::{ContainerManager, CreateRequest};
