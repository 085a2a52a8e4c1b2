//! The VMM's jail, after Firecracker's jailer: sandpod-vmm runs in its own mount, IPC, UTS,
//! network and PID namespaces, pivoted into a tmpfs root holding only what it needs (KVM's
//! device, the kernel and initramfs, its own directory with its sockets and console,
//! virtiofsd's socket, the shared libraries of a dynamically linked VMM), as an unprivileged
//! uid/gid without any capability, with no_new_privs, not dumpable and with rlimits. The plan
//! ([`plan`]) is made by the runtime when it creates the sandbox; `sandpod jail` ([`exec`]),
//! started by the monitor in place of the VMM, carries it out. See docs/architecture.md, "The
//! VMM's jail".
pub mod exec;
pub mod plan;
pub mod program_copy;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

pub use plan::{
    Device, HostLibDir, JailIds, JailPlan, PlanInputs, Rlimits, KVM_DEVICE, LIBRARY_DIRS,
};

use super::layout::Layout;

/// How the monitor starts a jailed VMM (in `monitor.json`): `<helper> jail <plan>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailLaunch {
    /// `sandpod` (the runtime's own executable).
    pub helper: PathBuf,
    /// The plan (`<state>/jail.json`).
    pub plan: PathBuf,
    /// The jail's ids: the monitor hands it the sockets the VMM connects to.
    pub ids: JailIds,
}

impl JailLaunch {
    /// The command line the monitor starts.
    pub fn argv(&self) -> Vec<PathBuf> {
        vec![self.helper.clone(), "jail".into(), self.plan.clone()]
    }
}

/// The group of `dev` if it grants its group read and write access (and is not root's).
pub fn device_group(dev: &Path) -> Option<u32> {
    let m = std::fs::metadata(dev).ok()?;
    (m.gid() != 0 && m.permissions().mode() & 0o060 == 0o060).then_some(m.gid())
}

/// The host's library directories a dynamically linked `program` needs (none for a static one).
pub fn host_libs(program: &Path) -> anyhow::Result<Vec<HostLibDir>> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(program)
        .with_context(|| format!("opening {}", program.display()))?
        .take(64 * 1024)
        .read_to_end(&mut head)
        .with_context(|| format!("reading {}", program.display()))?;
    if !plan::elf_is_dynamic(&head) {
        return Ok(Vec::new());
    }
    let mut libs = Vec::new();
    for d in LIBRARY_DIRS {
        let p = Path::new(d);
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_symlink() => {
                libs.push(HostLibDir::Link(p.into(), std::fs::read_link(p)?))
            }
            Ok(m) if m.is_dir() => libs.push(HostLibDir::Dir(p.into())),
            _ => {}
        }
    }
    Ok(libs)
}

/// Prepares a sandbox's jail: the VMM's directory given to the jail's ids, the (empty) mount
/// point of its root, and the plan written to `<state>/jail.json`.
pub fn prepare(
    layout: &Layout,
    ids: JailIds,
    program: &Path,
    vm: &sandpod_vmconfig::VmConfig,
) -> anyhow::Result<JailPlan> {
    let libs = host_libs(program)?;
    // The jail runs the shared exec-only copy (see [`program_copy`]), bound read-only.
    let state_root = layout
        .dir
        .parent()
        .context("the sandbox's state directory has no parent")?;
    let program = &program_copy::exec_only_copy(state_root, program)?;
    let plan = JailPlan::new(&PlanInputs {
        ids,
        vm,
        program,
        vm_dir: &layout.vm_dir(),
        root: &layout.jail_root(),
        kvm_group: device_group(Path::new(KVM_DEVICE)),
        libs: &libs,
    })
    .context("planning the VMM's jail")?;
    let root = layout.jail_root();
    std::fs::create_dir(&root).with_context(|| format!("mkdir {}", root.display()))?;
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))?;
    let dir = layout.vm_dir();
    nix::unistd::chown(
        &dir,
        Some(nix::unistd::Uid::from_raw(ids.uid)),
        Some(nix::unistd::Gid::from_raw(ids.gid)),
    )
    .with_context(|| format!("chown {} to the jail's ids", dir.display()))?;
    super::state::write_json_atomic(&layout.jail_plan(), &plan)?;
    Ok(plan)
}

/// Gives a socket the VMM connects to (made by root) to the jail's ids, mode 0600.
pub fn hand_socket(path: &Path, ids: JailIds) -> anyhow::Result<()> {
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(ids.uid)),
        Some(nix::unistd::Gid::from_raw(ids.gid)),
    )
    .with_context(|| format!("chown {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod {}", path.display()))
}
