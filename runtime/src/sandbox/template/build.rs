//! Making a template: a VM booted exactly like a sandbox's (same jail, monitor, virtiofsd on an
//! empty share, vsock socket) in a state directory of its own under the store
//! (`.templates/b-<short key>/`), with `snapshot_to` set and [`TEMPLATE_CMDLINE_FLAG`] on its
//! command line: its agent, once listening, asks the VMM for a snapshot, which saves it and
//! exits with [`EXIT_SNAPSHOT_SAVED`]. The two files are then moved into the template. Whatever
//! happens, the build's VM, mounts and directory are removed.
//!
//! [`TEMPLATE_CMDLINE_FLAG`]: crate::hypervisor::vmm::TEMPLATE_CMDLINE_FLAG
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sandpod_vmconfig::{VmConfig, EXIT_SNAPSHOT_SAVED, SNAPSHOT_MEMORY_FILE, SNAPSHOT_STATE_FILE};
use tokio::process::Child;

use super::key::{unsuitable, KeyInputs};
use super::store::{Template, TemplateStore};
use crate::agent_client::LogToken;
use crate::sandbox::layout::Layout;
use crate::sandbox::lifecycle::{console_tail, teardown, SandboxConfig};
use crate::sandbox::monitor::VmExit;
use crate::sandbox::process::ProcessIdent;
use crate::sandbox::share::prepare_share;
use crate::sandbox::state::{now_rfc3339, SandboxState};
use crate::sandbox::vm_start::{sandbox_vm, start_monitor, VmMode};

/// A template build gets this many boot timeouts: booting, zeroing the guest's free memory,
/// writing the snapshot.
const TEMPLATE_BUILD_BOOT_TIMEOUTS: u32 = 3;

/// The template a sandbox (`cfg`, whose VM is `vm` in host paths) starts from: the one there
/// is, else one made now. None (the sandbox boots cold) when its VM cannot use one (debug), when
/// the last build of its key failed within [`FAILED_RETRY`](super::store::FAILED_RETRY)
/// (debug), or when making it fails (warning).
pub(crate) async fn template_for(cfg: &SandboxConfig, vm: &VmConfig) -> Option<Template> {
    if let Some(why) = unsuitable(vm) {
        tracing::debug!(sandbox = %cfg.id, "no VM template: {why}; booting cold");
        return None;
    }
    let inputs = match KeyInputs::of(vm, &cfg.paths.vmm) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!("no VM template (reading the VM's files: {e}); booting cold");
            return None;
        }
    };
    let store = TemplateStore::new(&cfg.root);
    if let Ok(t) = store.check(&inputs) {
        return Some(t);
    }
    if let Some(why) = store.recently_failed(&inputs.key()) {
        tracing::debug!("no VM template: its last build failed ({why}); booting cold");
        return None;
    }
    match ensure(cfg, &store, &inputs, false).await {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!("no VM template, booting cold: {e:#}");
            None
        }
    }
}

/// The template of `inputs`, made now if there is none. `retry`: build even if the last build
/// failed recently (else that is the error).
pub async fn ensure(
    cfg: &SandboxConfig,
    store: &TemplateStore,
    inputs: &KeyInputs,
    retry: bool,
) -> anyhow::Result<Template> {
    let key = inputs.key();
    store
        .ensure(inputs, retry, |into| async move {
            tracing::info!(
                "making the VM template {key} ({} vCPUs, {} MiB; once per kernel, initramfs, \
                 VMM and VM size)",
                inputs.vm.vcpus,
                inputs.vm.mem_mib
            );
            build(cfg, store, inputs, &into).await
        })
        .await
}

/// The inputs of the template the sandbox `cfg` would use (its VM without a network device).
pub fn inputs_for(cfg: &SandboxConfig) -> anyhow::Result<KeyInputs> {
    let vm = sandbox_vm(cfg, &Layout::new(&cfg.root, &cfg.id), None).vm_config();
    KeyInputs::of(&vm, &cfg.paths.vmm).context("reading the VM's files (kernel, initramfs, VMM)")
}

fn empty_state(id: &str) -> SandboxState {
    SandboxState {
        id: id.to_string(),
        monitor: None,
        created: now_rfc3339(),
        mounts: Vec::new(),
        host_cgroup: None,
        netns: None,
    }
}

/// Boots the template VM of `inputs` and moves its snapshot's files into `into`.
async fn build(
    cfg: &SandboxConfig,
    store: &TemplateStore,
    inputs: &KeyInputs,
    into: &Path,
) -> anyhow::Result<()> {
    let key = inputs.key();
    let layout = store.build_layout(&key);
    layout.check_socket_paths()?;
    let id = format!("template-{}", key.short());
    // Left by a build that died: the caller holds the key's lock, nobody else uses it.
    if layout.dir.exists() {
        tracing::info!(
            "removing what an earlier build left in {}",
            layout.dir.display()
        );
        let state = SandboxState::load(&layout.state()).unwrap_or_else(|_| empty_state(&id));
        teardown(&layout, &state)?;
    }
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir(&layout.dir)
            .with_context(|| format!("creating {}", layout.dir.display()))?;
        std::fs::set_permissions(&layout.dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let bcfg = SandboxConfig {
        id: id.clone(),
        hostname: None,
        host_cgroup: None,
        netns: None,
        dns_relay: false,
        template: false,
        ..cfg.clone()
    };
    let mut state = empty_state(&id);
    let mut monitor: Option<Child> = None;
    let r = build_steps(&bcfg, &layout, inputs, &mut state, &mut monitor, into).await;
    let clean = teardown(&layout, &state);
    if let Some(mut m) = monitor {
        let _ = m.wait().await;
    }
    match (r, clean) {
        (Err(e), Err(ce)) => {
            tracing::error!("cleaning up after the template's build: {ce:#}");
            Err(e)
        }
        (r, Ok(())) => r,
        (Ok(()), Err(ce)) => Err(ce.context("cleaning up after the template's build")),
    }
}

/// "; guest console:\n<its last lines>" or "; the guest console is empty".
fn console_suffix(layout: &Layout) -> String {
    let console = console_tail(layout);
    if console.is_empty() {
        "; the guest console is empty".into()
    } else {
        format!("; guest console:\n{console}")
    }
}

async fn build_steps(
    cfg: &SandboxConfig,
    layout: &Layout,
    inputs: &KeyInputs,
    state: &mut SandboxState,
    monitor: &mut Option<Child>,
    into: &Path,
) -> anyhow::Result<()> {
    state.save(&layout.state())?;
    let shared = prepare_share(layout, &mut state.mounts);
    state.save(&layout.state())?;
    shared.context("preparing the template VM's (empty) shared directory")?;
    // What is booted must be what the sandboxes restore (a runtime bug otherwise).
    let vm = sandbox_vm(cfg, layout, None).vm_config();
    let booted = KeyInputs::of(&vm, &cfg.paths.vmm)?;
    if booted != *inputs {
        bail!(
            "the template VM differs from the sandboxes' (a runtime bug): {booted:?} vs {inputs:?}"
        );
    }
    let token = LogToken::generate().context("drawing the log token")?;
    let child = start_monitor(cfg, layout, &token, None, VmMode::Snapshot)?;
    state.monitor = child.id().and_then(ProcessIdent::of);
    let child = monitor.insert(child);
    state.save(&layout.state())?;
    // A boot, then the guest zeroes its free memory and the VMM writes the snapshot: in the
    // test host each can take about as long as the boot.
    let deadline = cfg.boot_timeout * TEMPLATE_BUILD_BOOT_TIMEOUTS;
    if tokio::time::timeout(deadline, child.wait()).await.is_err() {
        bail!(
            "the template VM did not save its snapshot within {:?} (does this sandpod-vmm and \
             agent support templates?){}",
            deadline,
            console_suffix(layout)
        );
    }
    let exit = std::fs::read(layout.vm_exit())
        .ok()
        .and_then(|b| serde_json::from_slice::<VmExit>(&b).ok());
    match exit {
        // The VMM's own status 4 means the files are written and synced. (virtiofsd ends when
        // the VMM goes, so the monitor may record that it stopped the VM for that: a race
        // that does not matter once the VMM has said 4.)
        Some(x) if x.code == Some(EXIT_SNAPSHOT_SAVED) => {}
        Some(x) => bail!(
            "the template VM ended without a snapshot: {}{}",
            x.describe(),
            console_suffix(layout)
        ),
        None => bail!(
            "the template VM's monitor ended without recording how the VM ended (see the \
             runtime log){}",
            console_suffix(layout)
        ),
    }
    let snap = layout.snapshot_dir();
    for name in [SNAPSHOT_STATE_FILE, SNAPSHOT_MEMORY_FILE] {
        let (from, to): (PathBuf, PathBuf) = (snap.join(name), into.join(name));
        let m = std::fs::symlink_metadata(&from)
            .with_context(|| format!("the snapshot's {name} ({})", from.display()))?;
        if !m.file_type().is_file() {
            bail!("the snapshot's {name} is not a regular file");
        }
        std::fs::rename(&from, &to)
            .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}
