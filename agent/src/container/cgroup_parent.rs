//! The parent of all container cgroups, `<root>/sandpod`: made with the containers' controllers
//! enabled, by the guest's agent at boot ([`prepare`], before a template's snapshot, so every
//! clone finds it ready) and otherwise by the first container ([`ensure`]).
//!
//! At boot the parent also gets an allow-all device program and the default rules' program is
//! loaded (once: see `device_filter`). The kernel switches its cgroup device hook on and off (a
//! code patch on every CPU, slow in a VM) as the number of attached device programs leaves or
//! reaches zero: with one program always attached, a container's create and remove no longer
//! flip it. An allow-all
//! program restricts nothing: an access must be allowed by every program on the cgroup's path,
//! and the container's own program decides.
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tracing::{debug, warn};

use super::cgroups::{self, write_file, CONTROLLERS, SANDPOD_GROUP};
use super::device_filter;
use super::device_rules::DeviceRules;

/// Makes `<root>/sandpod` (if missing) with those of [`CONTROLLERS`] that `available` (the
/// root's cgroup.controllers) has enabled in the root's and its subtree_control; returns it.
pub fn ensure(root: &Path, available: &[String]) -> Result<PathBuf> {
    let wanted: Vec<&str> = CONTROLLERS
        .iter()
        .copied()
        .filter(|c| available.iter().any(|a| a == c))
        .collect();
    enable_controllers(root, &wanted);
    let parent = root.join(SANDPOD_GROUP);
    match fs::create_dir(&parent) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("mkdir {}", parent.display())),
    }
    enable_controllers(&parent, &wanted);
    Ok(parent)
}

/// At boot in the guest: [`ensure`]s the parent, attaches the allow-all device program to it
/// and loads the default rules' program (see the module docs). Failures are logged: the first
/// container does the same work again, and reports what still fails.
pub fn prepare() {
    let began = std::time::Instant::now();
    let root = cgroups::root();
    let prepared = cgroups::read_controllers(root)
        .and_then(|available| ensure(root, &available))
        .and_then(|parent| {
            let allow_all = DeviceRules {
                default_allow: true,
                exceptions: Vec::new(),
            };
            device_filter::attach(&parent, &allow_all)?;
            device_filter::preload(&DeviceRules::from_spec(&[])?)
        });
    match prepared {
        Ok(()) => debug!(
            ms = began.elapsed().as_millis(),
            "the containers' parent cgroup is ready"
        ),
        Err(e) => warn!("preparing the containers' parent cgroup: {e:#}"),
    }
}

/// Enables each controller in `dir`'s subtree_control that is not enabled yet, one by one so
/// that one the kernel refuses does not stop the others (a limit that needs it then fails with a
/// clear error). Enabled ones are not written again: every write to subtree_control makes the
/// kernel re-check the whole subtree's css sets, under its global cgroup locks.
fn enable_controllers(dir: &Path, controllers: &[&str]) {
    let enabled = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    for c in controllers {
        if enabled.split_whitespace().any(|e| e == *c) {
            continue;
        }
        if let Err(e) = write_file(dir, "cgroup.subtree_control", &format!("+{c}")) {
            warn!(dir = %dir.display(), controller = c, error = %e, "cannot enable controller");
        }
    }
}
