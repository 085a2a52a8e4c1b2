//! The container's init, set up by the helper in its new namespaces (runc's order): the cgroup
//! namespace (now that the helper is in its cgroup), join the namespaces given by path, rlimits, rootfs propagation and self-bind, the spec's mounts, /dev,
//! pivot_root, terminal, masked/readonly paths, read-only root, hostname, the binary looked up,
//! `Ready`; then it blocks until the agent's `Start` and execs.
use std::convert::Infallible;

use anyhow::Context;
use nix::mount::MsFlags;
use nix::sys::stat::Mode;

use super::config::InitConfig;
use super::final_exec::{self, ExecArgs};
use super::sync::{Msg, Received, SyncSocket};
use super::{devices, namespaces, rootfs, security, spec_mounts, terminal};

/// Sets the container up, reports `Ready`, waits for `Start`, execs.
pub fn run(cfg: &InitConfig, sync: &SyncSocket) -> anyhow::Result<Infallible> {
    final_exec::reset_signals()?;
    // Device nodes and mount points get exactly the modes asked for.
    nix::sys::stat::umask(Mode::empty());
    // We are in the container's cgroup (the agent put us there before sending the config): the
    // new cgroup namespace is rooted at it.
    namespaces::unshare_cgroup(&cfg.new_namespaces)?;
    namespaces::join_all(&cfg.join_namespaces)?;
    security::apply_rlimits(&cfg.security)?;

    rootfs::prepare(
        &cfg.rootfs,
        MsFlags::from_bits_truncate(cfg.rootfs_propagation as _),
    )?;
    for m in &cfg.mounts {
        spec_mounts::mount_one(&cfg.rootfs, m)?;
    }
    devices::populate(&cfg.rootfs, &cfg.devices)?;
    rootfs::pivot(&cfg.rootfs)?;

    if cfg.process.terminal {
        terminal::setup(sync)?;
    } else {
        nix::unistd::setsid().context("setsid")?;
    }
    security::apply_paths(&cfg.security)?;
    if cfg.readonly_rootfs {
        rootfs::make_readonly()?;
    }
    if let Some(h) = &cfg.hostname {
        nix::unistd::sethostname(h).with_context(|| format!("sethostname {h:?}"))?;
    }
    std::env::set_current_dir(&cfg.process.cwd)
        .with_context(|| format!("chdir {}", cfg.process.cwd.display()))?;
    let binary = final_exec::find_executable(&cfg.process).map_err(anyhow::Error::msg)?;
    let exec = ExecArgs::new(&binary, &cfg.process)?;
    let prepared = security::prepare_final(&cfg.security)?;

    sync.send(&Msg::Ready, None).context("reporting ready")?;
    match sync.recv().context("waiting for StartContainer")? {
        Received::Msg(Msg::Start, _) => {}
        // The agent removed the container before starting it (or is gone).
        Received::Eof => std::process::exit(1),
        Received::Msg(other, _) => anyhow::bail!("expected Start, got {other:?}"),
    }
    final_exec::finish(&cfg.process, &cfg.security, prepared, &exec)
}
