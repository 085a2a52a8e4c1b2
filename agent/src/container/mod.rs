//! Containers from OCI runtime specs, runc-style (CreateContainer, StartContainer,
//! RemoveContainer, ExecProcess with a container_id).
//!
//! The agent is multithreaded (tokio), so it runs no setup code between fork and exec: `launch`
//! clones a helper with the container's namespace flags that execs `/proc/self/exe` in a helper
//! mode at once (its stdio from `helper_stdio`); the helper (`helper`, then `helper_init` or
//! `helper_exec`), single-threaded and PID 1 of the new pid namespace, gets its config
//! (`config`, made from the spec by `spec`) over a sync socket (`sync`) and does the setup:
//! `spec_mounts`, `rootfs`, `devices`, `terminal`, and last `final_exec` (binary lookup,
//! credentials, exec). The security modules (`capabilities`, `masked_paths`, `rlimits`,
//! `seccomp`, `vsock_guard`, the cgroups) are called from the functions of `security` only.
//! `manager` keeps the containers; the init process itself is a process of the agent's process
//! table (exec id = container id).
pub mod capabilities;
pub mod cgroup_parent;
pub mod cgroup_stats;
pub mod cgroups;
pub mod config;
pub mod device_filter;
pub mod device_rules;
pub mod devices;
pub mod error;
pub mod final_exec;
pub mod helper;
pub mod helper_exec;
pub mod helper_init;
pub mod helper_stdio;
pub mod launch;
pub mod manager;
pub mod masked_paths;
pub mod namespaces;
pub mod procinfo;
pub mod rlimits;
pub mod rootfs;
pub mod seccomp;
pub mod securejoin;
pub mod security;
pub mod spec;
pub mod spec_mounts;
pub mod sync;
pub mod terminal;
#[cfg(test)]
pub(crate) mod testutil;
pub mod vsock_guard;

pub use error::ContainerError;
pub use manager::{ContainerManager, CreateRequest};
