//! A process run in a started container (ExecProcess with a container_id), set up by the helper
//! like `runc exec`: it starts in the container's pid namespace (see `launch`), joins the other
//! namespaces of the container's init through /proc/<pid>/ns/*, its root (chroot into
//! /proc/<pid>/root) and cwd, opens its terminal inside the container, and execs.
use std::convert::Infallible;
use std::path::PathBuf;

use anyhow::Context;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use super::config::ExecConfig;
use super::final_exec::{self, ExecArgs};
use super::namespaces::{self, NsKind};
use super::sync::{Msg, SyncSocket};
use super::{security, terminal};

pub fn run(cfg: &ExecConfig, sync: &SyncSocket) -> anyhow::Result<Infallible> {
    final_exec::reset_signals()?;
    let proc_dir = PathBuf::from(format!("/proc/{}", cfg.init_pid));
    // Everything opened through the agent's /proc before the first setns changes what it shows.
    let root = open(
        &proc_dir.join("root"),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening the container's root {}/root", proc_dir.display()))?;
    let mut opened = Vec::new();
    for kind in NsKind::JOIN_ORDER {
        if kind != NsKind::Pid && cfg.namespaces.contains(&kind) {
            let path = proc_dir.join("ns").join(kind.proc_name());
            opened.push((kind, namespaces::open_ns(&path)?, path));
        }
    }
    for (kind, file, path) in &opened {
        namespaces::join(*kind, file, path)?;
    }
    security::apply_rlimits(&cfg.security)?;
    nix::unistd::fchdir(&root).context("chdir to the container's root")?;
    nix::unistd::chroot(".").context("chroot into the container's root")?;
    std::env::set_current_dir(&cfg.process.cwd)
        .with_context(|| format!("chdir {}", cfg.process.cwd.display()))?;
    if cfg.process.terminal {
        terminal::setup(sync)?;
    } else {
        nix::unistd::setsid().context("setsid")?;
    }
    let binary = final_exec::find_executable(&cfg.process).map_err(anyhow::Error::msg)?;
    let exec = ExecArgs::new(&binary, &cfg.process)?;
    let prepared = security::prepare_final(&cfg.security)?;
    // Set up: from here on only the final steps and the exec (EOF) or their error follow.
    sync.send(&Msg::Ready, None).context("reporting ready")?;
    final_exec::finish(&cfg.process, &cfg.security, prepared, &exec)
}
