//! THE CALL SITES OF THE SECURITY MODULES (`cgroups`, `capabilities`, `seccomp`, `rlimits`,
//! `masked_paths`). Every place where the container setup applies a security setting goes
//! through one function here, in runc's order:
//!
//! | step | function | runs in | call |
//! | --- | --- | --- | --- |
//! | 1 | [`join_cgroup`] | agent, right after the clone, before the helper gets its config | `cgroups::ContainerCgroup::create(id, resources)` then `.add_process(pid)` (an exec: the container's cgroup) |
//! | 2 | [`apply_rlimits`] | helper, first step of the setup | `rlimits::apply(&cfg.rlimits)` |
//! | 3 | [`apply_paths`] | init helper, after mounts and pivot_root | `masked_paths::apply(&cfg.masked_paths, &cfg.readonly_paths)` |
//! | 4 | [`prepare_final`] | helper, before Ready (init) / before exec (exec) | `seccomp::compile(seccomp)`, `vsock_guard::program()` |
//! | 5 | [`apply_final`] | helper, after setuid (keepcaps), right before execve | no_new_privs, `capabilities::apply(caps or none)`, `seccomp::apply` (the AF_VSOCK guard, then the spec's program) |
//! | – | [`oom_killed`], [`kill_all`], [`remove_cgroup`] | agent: WaitProcess, RemoveContainer | `.oom_killed()`, `.kill_all()`, `.remove()` |
//! | – | [`update_cgroup`] | agent: UpdateContainer | `.update(resources)` (same `plan` as step 1) |
use std::sync::Arc;

use anyhow::Context;
use oci_spec::runtime::{LinuxCapabilities, LinuxResources};

use super::cgroups::{self, ContainerCgroup};
use super::config::SecurityConfig;
use super::{capabilities, masked_paths, rlimits, seccomp, vsock_guard};

/// The container's cgroup, as the agent holds it.
pub type CgroupHandle = ContainerCgroup;

/// Step 1 (agent): creates the container's cgroup and moves the helper (`pid`, agent's pid
/// namespace) into it, before it runs any setup. For an exec, `existing` is the container's
/// cgroup and only the process is added (None is returned).
///
/// Without cgroup2 at /sys/fs/cgroup (host-side test mode without `SANDPOD_AGENT_CGROUP_ROOT`,
/// see [`cgroups::set_test_root`]), a container without limits runs
/// without a cgroup, with a warning; limits are then an error.
pub fn join_cgroup(
    container_id: &str,
    resources: Option<&LinuxResources>,
    existing: Option<&CgroupHandle>,
    pid: i32,
) -> anyhow::Result<Option<CgroupHandle>> {
    if let Some(cg) = existing {
        cg.add_process(pid)?;
        return Ok(None);
    }
    let root = cgroups::root();
    if !root.join("cgroup.controllers").exists() {
        let available = Vec::new();
        let limits = resources
            .map(|r| cgroups::plan(r, &available))
            .transpose()
            .with_context(|| format!("container {container_id}: no cgroup2 at {}", root.display()))?
            .unwrap_or_default();
        anyhow::ensure!(
            limits.is_empty(),
            "container {container_id}: no cgroup2 at {} for its limits",
            root.display()
        );
        tracing::warn!(
            "container {container_id}: no cgroup2 at {}: no cgroup",
            root.display()
        );
        return Ok(None);
    }
    let cg = ContainerCgroup::create(container_id, resources)?;
    let began = std::time::Instant::now();
    let added = cg.add_process(pid);
    tracing::debug!(
        ms = began.elapsed().as_millis(),
        "container {container_id}: its init moved into the cgroup"
    );
    if let Err(e) = added {
        if let Err(rm) = cg.remove() {
            tracing::warn!("container {container_id}: removing its cgroup: {rm:#}");
        }
        return Err(e);
    }
    Ok(Some(cg))
}

/// Step 2 (helper): resource limits.
pub fn apply_rlimits(cfg: &SecurityConfig) -> anyhow::Result<()> {
    rlimits::apply(&cfg.rlimits)
}

/// Step 3 (init helper, after the mounts and pivot_root, before the read-only remount).
pub fn apply_paths(cfg: &SecurityConfig) -> anyhow::Result<()> {
    masked_paths::apply(&cfg.masked_paths, &cfg.readonly_paths)
}

/// What step 4 prepares for step 5: the compiled seccomp program of the spec and the AF_VSOCK
/// guard (unless the spec allows vsock).
#[derive(Debug, Default)]
pub struct Prepared {
    seccomp: Option<seccomp::Program>,
    vsock_guard: Option<seccomp::Program>,
}

/// Step 4 (helper, while errors can still fail CreateContainer / ExecProcess cleanly).
pub fn prepare_final(cfg: &SecurityConfig) -> anyhow::Result<Prepared> {
    let seccomp = cfg
        .seccomp
        .as_ref()
        .map(seccomp::compile)
        .transpose()
        .context("linux.seccomp")?;
    let vsock_guard = (!cfg.allow_vsock).then(vsock_guard::program);
    Ok(Prepared {
        seccomp,
        vsock_guard,
    })
}

/// The capabilities a process gets: the spec's, or none at all (every set empty, the bounding
/// set included) when `process.capabilities` is absent, as under runc, for root too.
pub fn capabilities_of(cfg: &SecurityConfig) -> LinuxCapabilities {
    cfg.capabilities
        .clone()
        .unwrap_or_else(capabilities::no_capabilities)
}

/// Installs the filters of step 5: the AF_VSOCK guard first (the spec's profile may deny
/// seccomp(2) itself), then the spec's. The kernel answers with the most restrictive of them.
fn install_filters(prepared: &Prepared) -> anyhow::Result<()> {
    if let Some(g) = &prepared.vsock_guard {
        seccomp::apply(g).context("the AF_VSOCK guard")?;
    }
    if let Some(p) = &prepared.seccomp {
        seccomp::apply(p).context("linux.seccomp")?;
    }
    Ok(())
}

/// Step 5 (helper): after setgroups/setgid/setuid (a non-root process keeps its permitted set
/// across setuid with PR_SET_KEEPCAPS: dropping the bounding set and installing a filter without
/// no_new_privileges need CAP_SETPCAP and CAP_SYS_ADMIN), right before execve.
/// Like runc: without no_new_privileges the seccomp filters go in while the process still holds
/// CAP_SYS_ADMIN, before the capabilities are set; with it, as the very last step.
pub fn apply_final(cfg: &SecurityConfig, prepared: Prepared) -> anyhow::Result<()> {
    if cfg.no_new_privileges {
        capabilities::set_no_new_privs()?;
    } else {
        capabilities::raise_effective()?;
        install_filters(&prepared)?;
    }
    capabilities::apply(&capabilities_of(cfg)).context("process.capabilities")?;
    if cfg.no_new_privileges {
        install_filters(&prepared)?;
    }
    Ok(())
}

/// WaitProcess of a container's init: did its cgroup see an OOM kill?
pub fn oom_killed(cgroup: Option<&CgroupHandle>) -> bool {
    cgroup.is_some_and(|c| c.oom_killed())
}

/// RemoveContainer: SIGKILL every process of the container's cgroup (cgroup.kill). Returns
/// false when that is not possible (no cgroup, or the kill failed).
pub fn kill_all(cgroup: Option<&CgroupHandle>) -> bool {
    let Some(c) = cgroup else { return false };
    match c.kill_all() {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!("killing the processes of {}: {e:#}", c.path().display());
            false
        }
    }
}

/// UpdateContainer: new limits for the container's cgroup, converted and checked as in step 1,
/// all checked before any is written.
pub fn update_cgroup(
    cgroup: &CgroupHandle,
    resources: &LinuxResources,
) -> Result<usize, cgroups::UpdateError> {
    cgroup.update(resources)
}

/// RemoveContainer, once its processes are gone.
pub fn remove_cgroup(cgroup: Option<Arc<CgroupHandle>>) -> anyhow::Result<()> {
    match cgroup {
        Some(c) => c.remove(),
        None => Ok(()),
    }
}
