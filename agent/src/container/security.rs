//! THE CALL SITES OF THE SECURITY MODULES (branch `agentsec`: `cgroups`, `capabilities`,
//! `seccomp`, `rlimits`, `paths`). Every place where the container setup applies a security
//! setting goes through one function here, in runc's order; until those modules land these
//! functions only log what they would apply. Wiring them in means editing this file only:
//!
//! | step | function | runs in | agentsec call |
//! | --- | --- | --- | --- |
//! | 1 | [`join_cgroup`] | agent, right after the clone, before the helper gets its config | `cgroups::ContainerCgroup::create(id, resources)?` then `.add_process(pid)` |
//! | 2 | [`apply_rlimits`] | helper, first step of the setup | `rlimits::apply(&cfg.rlimits)` |
//! | 3 | [`apply_paths`] | init helper, after mounts and pivot_root | `paths::apply(&cfg.masked_paths, &cfg.readonly_paths)` |
//! | 4 | [`prepare_final`] | helper, before Ready (init) / before exec (exec) | `seccomp::compile(seccomp)` |
//! | 5 | [`apply_final`] | helper, after setuid (keepcaps), right before execve | nnp (prctl), `capabilities::apply(caps)`, `seccomp::apply(&program)` |
//! | – | [`oom_killed`], [`kill_all`], [`remove_cgroup`] | agent: WaitProcess, RemoveContainer | `.oom_killed()`, `.kill_all()`, `.remove()` |
use std::sync::Arc;

use oci_spec::runtime::LinuxResources;

use super::config::SecurityConfig;

/// The container's cgroup, as the agent holds it. Becomes `cgroups::ContainerCgroup`.
#[derive(Debug)]
pub struct CgroupHandle {
    pub container_id: String,
}

/// Step 1 (agent): creates the container's cgroup and moves the helper (`pid`, agent's pid
/// namespace) into it, before it runs any setup. For an exec, `existing` is the container's
/// cgroup and only the process is added.
pub fn join_cgroup(
    container_id: &str,
    resources: Option<&LinuxResources>,
    existing: Option<&CgroupHandle>,
    pid: i32,
) -> anyhow::Result<Option<CgroupHandle>> {
    // agentsec: let cg = cgroups::ContainerCgroup::create(container_id, resources)?;
    //           cg.add_process(pid)?;   (exec: existing.add_process(pid))
    tracing::debug!(
        pid,
        has_resources = resources.is_some(),
        joins_existing = existing.is_some(),
        "container {container_id}: cgroup not applied (cgroups module pending)"
    );
    Ok(None)
}

/// Step 2 (helper): resource limits.
pub fn apply_rlimits(cfg: &SecurityConfig) -> anyhow::Result<()> {
    // agentsec: rlimits::apply(&cfg.rlimits)?;
    let _ = &cfg.rlimits;
    Ok(())
}

/// Step 3 (init helper, after the mounts and pivot_root, before the read-only remount).
pub fn apply_paths(cfg: &SecurityConfig) -> anyhow::Result<()> {
    // agentsec: paths::apply(&cfg.masked_paths, &cfg.readonly_paths)?;
    let _ = (&cfg.masked_paths, &cfg.readonly_paths);
    Ok(())
}

/// What step 4 prepares for step 5 (the compiled seccomp program).
#[derive(Debug, Default)]
pub struct Prepared {
    // agentsec: seccomp: Option<seccomp::Program>,
}

/// Step 4 (helper, while errors can still fail CreateContainer / ExecProcess cleanly).
pub fn prepare_final(cfg: &SecurityConfig) -> anyhow::Result<Prepared> {
    // agentsec: let seccomp = cfg.seccomp.as_ref().map(seccomp::compile).transpose()?;
    let _ = &cfg.seccomp;
    Ok(Prepared::default())
}

/// Whether the helper must keep its capabilities across setuid (PR_SET_KEEPCAPS) for step 5.
pub fn needs_keepcaps(cfg: &SecurityConfig) -> bool {
    cfg.capabilities.is_some()
}

/// Step 5 (helper): after setgroups/setgid/setuid (with keepcaps), right before execve.
pub fn apply_final(cfg: &SecurityConfig, prepared: Prepared) -> anyhow::Result<()> {
    // agentsec: if cfg.no_new_privileges { prctl(PR_SET_NO_NEW_PRIVS, 1) }
    //           if let Some(c) = &cfg.capabilities { capabilities::apply(c)? }
    //           if let Some(p) = &prepared.seccomp { seccomp::apply(p)? }
    let _ = (cfg.no_new_privileges, &cfg.capabilities, prepared);
    Ok(())
}

/// WaitProcess of a container's init: did its cgroup see an OOM kill?
pub fn oom_killed(cgroup: Option<&CgroupHandle>) -> bool {
    // agentsec: cgroup.map_or(false, |c| c.oom_killed())
    let _ = cgroup;
    false
}

/// RemoveContainer of a container without its own pid namespace: SIGKILL every process of its
/// cgroup (cgroup.kill). Returns false when that is not possible (no cgroup).
pub fn kill_all(cgroup: Option<&CgroupHandle>) -> bool {
    // agentsec: if let Some(c) = cgroup { c.kill_all(); return true }
    let _ = cgroup;
    false
}

/// RemoveContainer, once its processes are gone (an exec may still hold a clone of the handle:
/// the cgroup itself is empty by then).
pub fn remove_cgroup(cgroup: Option<Arc<CgroupHandle>>) -> anyhow::Result<()> {
    // agentsec: if let Some(c) = cgroup { c.remove()? }
    let _ = cgroup;
    Ok(())
}
