//! `sandpod-fake-vmm`'s pieces: a stand-in for sandpod-vmm that runs the real agent
//! (`sandpod-agent --test-serve`) on the host instead of booting a guest, so that the runtime's
//! lifecycle (create/start/exec/kill/delete) can be tested without KVM. See
//! `src/bin/sandpod-fake-vmm.rs` for what it does and how it ends.
//!
//! - [`mounts`]: the private mount namespace with the sandbox's share at the guest's path;
//! - [`cgroup`]: the fake VM's own cgroup, holding the agent and (under `containers/`) the
//!   containers' cgroups, so that stopping the fake VM stops everything it ran.
pub mod cgroup;
pub mod mounts;

pub use cgroup::VmCgroup;
