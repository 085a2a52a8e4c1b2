//! `containerd-shim-kata-v2`: the containerd shim v2 (runtime `io.containerd.kata.v2`) that runs
//! each pod in a Sandpod microVM. One shim process serves a pod: its sandbox (or only)
//! container boots the VM, the pod's other containers are created in it.
//!
//! - [`bootstrap`]: the binary's actions (start, delete, serve), on the containerd-shim crate;
//! - [`service`]: the Task API, translated onto [`task`]: the pod's containers and processes;
//! - [`process`]: one process's status and exit, [`io`]: its stdio FIFOs relayed to the agent;
//! - [`rootfs`]: the task's rootfs mounts on the host, [`pod`]: which containers share a VM;
//! - [`vm`]: the pod's VM, [`events`]: the task events, [`stats`]: cgroup v2 metrics.
//!
//! The host side reuses the CLI's layers: `crate::sandbox` boots and destroys the VM (its monitor
//! owns the VMM and virtiofsd) and shares the rootfs over virtio-fs; `crate::agent_client` talks
//! to the agent. The shim needs no stand-in processes: containerd waits on the shim.
pub mod bootstrap;
pub mod create;
pub mod events;
pub mod io;
pub mod pod;
pub mod process;
pub mod rootfs;
pub mod service;
pub mod stats;
pub mod task;
pub mod vm;

/// Runs the shim (the binary's `main`).
pub fn main() -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("containerd-shim-kata-v2: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(bootstrap::run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("containerd-shim-kata-v2: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
