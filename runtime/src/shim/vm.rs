//! The pod's VM: booted for the pod's first container with the settings of the config file,
//! sized by its spec and annotations, in the host cgroup its cgroupsPath names (as the CLI's `create` does).
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::pod;
use super::task::Settings;
use crate::bundle::Bundle;
use crate::config::Config;
use crate::hypervisor::VmSize;
use crate::paths::RuntimePaths;
use crate::sandbox::host_cgroup;
use crate::sandbox::host_limits::HostLimits;
use crate::sandbox::jail::JailIds;
use crate::sandbox::{reserve, Sandbox, SandboxConfig};

/// Boots the pod's VM for the container `id` whose bundle is `bundle`.
pub async fn boot(
    s: &Settings,
    id: &str,
    bundle: &Bundle,
    config: &Config,
) -> anyhow::Result<Sandbox> {
    let h = &config.hypervisor;
    let paths = RuntimePaths::discover(h)?;
    let self_exe = pod::sandpod_exe().context(
        "the sandpod binary (the VM's monitor) is not beside the shim nor on PATH; set \
         SANDPOD_BIN",
    )?;
    let size = VmSize::for_sandbox(&bundle.spec, h)?;
    let host_cgroup = host_cgroup_for(&bundle.spec, size);
    let cfg = SandboxConfig {
        root: s.root.clone(),
        id: id.to_string(),
        size,
        hostname: bundle.spec.hostname().clone(),
        paths,
        log: std::env::var_os("SANDPOD_SHIM_VM_LOG")
            .map(PathBuf::from)
            .or_else(containerd_log_fifo),
        log_format: "text".into(),
        debug: s.debug,
        cache: config.cache().unwrap_or_default(),
        boot_timeout: Duration::from_secs(h.boot_timeout_secs.unwrap_or(60)),
        self_exe,
        host_cgroup: host_cgroup.clone(),
        jail: config.jail.enabled.then_some(JailIds {
            uid: config.jail.uid,
            gid: config.jail.gid,
        }),
        netns: pod_netns(&bundle.spec),
        dns_relay: crate::sandbox::dns_relay::uses_docker_dns(&bundle.spec),
        template: config.template(),
    };
    let layout = match reserve(&s.root, id) {
        Ok(l) => l,
        Err(e) => {
            if let Some(cg) = &host_cgroup {
                let _ = host_cgroup::remove(cg);
            }
            return Err(e);
        }
    };
    tracing::info!(sandbox = id, "booting the pod's VM");
    // A failed create removes the host cgroup with the rest.
    let mut sb = Sandbox::create(&cfg, layout).await?;
    sb.started_up();
    Ok(sb)
}

/// The pod's network namespace: the spec's by path (CRI's, set up by the CNI plugin before the
/// sandbox is created). A new one (no path: `ctr run` without CNI) would be empty, and none at
/// all is the host's: the guest gets only `lo` in both cases.
fn pod_netns(spec: &oci_spec::runtime::Spec) -> Option<PathBuf> {
    use oci_spec::runtime::LinuxNamespaceType;
    spec.linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Network)?
        .path()
        .clone()
}

/// containerd's `log` FIFO in the shim's working directory (the pod's first bundle), which
/// containerd copies into its own log, as it does the shim's: the VM monitor logs there, the
/// guest's logs with it. None when it is not a FIFO (the shim run by hand). The sandbox and the
/// monitor open it with [`crate::log_file::open_append`]: never blocking, an error if nobody
/// reads it.
fn containerd_log_fifo() -> Option<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let p = std::env::current_dir().ok()?.join("log");
    let meta = std::fs::symlink_metadata(&p).ok()?;
    meta.file_type().is_fifo().then_some(p)
}

/// The sandbox's host cgroup, as the CLI makes it: the spec's cgroupsPath on a unified (v2)
/// host, with the limits the VM's size and the spec give (the VMM, virtiofsd and the monitor go
/// there; it is removed with the sandbox). Without one, or if it cannot be made (logged), none.
fn host_cgroup_for(spec: &oci_spec::runtime::Spec, size: VmSize) -> Option<PathBuf> {
    let p = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())?;
    if !host_cgroup::unified_host() {
        tracing::info!(
            "cgroupsPath {} ignored: the host's cgroup hierarchy is not unified",
            p.display()
        );
        return None;
    }
    let path = match host_cgroup::host_path(
        std::path::Path::new(host_cgroup::CGROUP_ROOT),
        &p.to_string_lossy(),
    ) {
        Ok(path) => path,
        Err(e) => {
            tracing::warn!("no host cgroup for the sandbox: {e:#}");
            return None;
        }
    };
    if let Err(e) = host_cgroup::create(&path) {
        tracing::warn!("no host cgroup for the sandbox: {e:#}");
        return None;
    }
    if let Err(e) = HostLimits::for_sandbox(size, spec).apply(&path) {
        tracing::warn!("no host cgroup for the sandbox: {e:#}");
        let _ = host_cgroup::remove(&path);
        return None;
    }
    Some(path)
}
