//! The namespaces a container gets: new ones (clone flags of the container helper) and existing
//! ones it joins (setns).
//!
//! The network namespace is the VM's: Sandpod's sandbox boundary is the VM, and the pod's
//! network is the guest's, so a `network` entry without a path is ignored (no new, empty network
//! namespace); one with a path is joined. User and time namespaces are not supported.
use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::sched::{setns, CloneFlags};
use serde::{Deserialize, Serialize};

/// The namespace types Sandpod handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NsKind {
    Mount,
    Uts,
    Ipc,
    Pid,
    Cgroup,
    Net,
}

impl NsKind {
    /// Every kind, in the order an exec joins them (mount last but one: after it, /proc is the
    /// container's; pid is joined by the agent, see `launch`).
    pub const JOIN_ORDER: [NsKind; 6] = [
        NsKind::Cgroup,
        NsKind::Ipc,
        NsKind::Uts,
        NsKind::Net,
        NsKind::Pid,
        NsKind::Mount,
    ];

    pub fn flag(self) -> CloneFlags {
        match self {
            NsKind::Mount => CloneFlags::CLONE_NEWNS,
            NsKind::Uts => CloneFlags::CLONE_NEWUTS,
            NsKind::Ipc => CloneFlags::CLONE_NEWIPC,
            NsKind::Pid => CloneFlags::CLONE_NEWPID,
            NsKind::Cgroup => CloneFlags::CLONE_NEWCGROUP,
            NsKind::Net => CloneFlags::CLONE_NEWNET,
        }
    }

    /// Its name under /proc/<pid>/ns/.
    pub fn proc_name(self) -> &'static str {
        match self {
            NsKind::Mount => "mnt",
            NsKind::Uts => "uts",
            NsKind::Ipc => "ipc",
            NsKind::Pid => "pid",
            NsKind::Cgroup => "cgroup",
            NsKind::Net => "net",
        }
    }
}

/// An existing namespace to join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsJoin {
    pub kind: NsKind,
    pub path: PathBuf,
}

/// The clone flags that create the `new` namespaces, except the cgroup namespace: its root is
/// the creator's cgroup at the time it is made, and the helper is moved into the container's
/// cgroup only after the clone. [`unshare_cgroup`] makes it later, in the helper, so that the
/// container sees its own cgroup as `/` (`0::/` in /proc/self/cgroup), as under runc.
pub fn clone_flags(new: &[NsKind]) -> CloneFlags {
    new.iter()
        .filter(|k| **k != NsKind::Cgroup)
        .fold(CloneFlags::empty(), |flags, k| flags | k.flag())
}

/// The helper's new cgroup namespace, if `new` has one: call it once the agent has put the
/// helper in the container's cgroup (the agent does that before it sends the config).
pub fn unshare_cgroup(new: &[NsKind]) -> anyhow::Result<()> {
    if new.contains(&NsKind::Cgroup) {
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).context("unshare(CLONE_NEWCGROUP)")?;
    }
    Ok(())
}

/// Opens a namespace file.
pub fn open_ns(path: &Path) -> anyhow::Result<File> {
    File::open(path).with_context(|| format!("opening namespace {}", path.display()))
}

/// Joins an opened namespace (setns).
pub fn join(kind: NsKind, ns: impl AsFd, what: &Path) -> anyhow::Result<()> {
    setns(ns, kind.flag()).with_context(|| {
        format!(
            "joining the {} namespace {}",
            kind.proc_name(),
            what.display()
        )
    })
}

/// Joins every namespace of `joins` except the pid namespace (joined by the agent before
/// cloning; setns to a pid namespace only affects children). Single-threaded callers only
/// (joining a mount namespace needs it).
pub fn join_all(joins: &[NsJoin]) -> anyhow::Result<()> {
    for kind in NsKind::JOIN_ORDER {
        for j in joins
            .iter()
            .filter(|j| j.kind == kind && kind != NsKind::Pid)
        {
            join(kind, open_ns(&j.path)?, &j.path)?;
        }
    }
    Ok(())
}
