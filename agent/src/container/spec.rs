//! The OCI runtime spec (config.json) checked and translated into the helper's [`InitConfig`].
//! Every refusal happens here, in the agent, with a message naming the offending field.
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};

use super::config::{DeviceConfig, InitConfig, MountConfig, SecurityConfig};
use super::error::ContainerError;
use super::namespaces::{NsJoin, NsKind};
use super::rootfs::DEFAULT_PROPAGATION;
use super::vsock_guard;
use crate::mount_flags;
use crate::process::creds::Credentials;
use crate::process::ProcessSpec;

/// What CreateContainer asked for, translated.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    pub init: InitConfig,
    /// A pid namespace to join by path (the agent joins it before cloning).
    pub join_pid_ns: Option<PathBuf>,
    /// The spec, for what the agent itself applies (cgroup resources) and execs inherit.
    pub spec: Spec,
}

fn invalid(msg: impl Into<String>) -> ContainerError {
    ContainerError::InvalidArgument(msg.into())
}

/// Parses the spec's JSON.
pub fn parse(json: &[u8]) -> Result<Spec, ContainerError> {
    serde_json::from_slice(json).map_err(|e| invalid(format!("oci_spec: {e}")))
}

/// Checks and translates `spec` for container `id` with its root at `rootfs`.
pub fn translate(id: &str, spec: Spec, rootfs: &Path) -> Result<Translated, ContainerError> {
    if !rootfs.is_absolute() {
        return Err(invalid(format!(
            "rootfs {rootfs:?} is not an absolute path"
        )));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("oci_spec: process is missing"))?;
    let user = process.user();
    let process_cfg = ProcessSpec {
        args: process.args().clone().unwrap_or_default(),
        env: process.env().clone().unwrap_or_default(),
        cwd: process.cwd().clone(),
        creds: Credentials {
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
        },
        umask: user.umask(),
        terminal: process.terminal().unwrap_or(false),
    };
    process_cfg
        .check()
        .map_err(|e| invalid(format!("oci_spec: process.{e}")))?;
    let linux = spec.linux().clone().unwrap_or_default();

    let mut new_namespaces = Vec::new();
    let mut join_namespaces = Vec::new();
    let mut join_pid_ns = None;
    for ns in linux.namespaces().clone().unwrap_or_default() {
        let kind = match ns.typ() {
            LinuxNamespaceType::Mount => NsKind::Mount,
            LinuxNamespaceType::Uts => NsKind::Uts,
            LinuxNamespaceType::Ipc => NsKind::Ipc,
            LinuxNamespaceType::Pid => NsKind::Pid,
            LinuxNamespaceType::Cgroup => NsKind::Cgroup,
            LinuxNamespaceType::Network => NsKind::Net,
            other => {
                return Err(invalid(format!(
                    "oci_spec: {other} namespaces are not supported"
                )))
            }
        };
        match (ns.path(), kind) {
            (Some(path), NsKind::Pid) => join_pid_ns = Some(path.clone()),
            (Some(path), _) => join_namespaces.push(NsJoin {
                kind,
                path: path.clone(),
            }),
            // The VM's network is the pod's: no new, empty network namespace.
            (None, NsKind::Net) => {}
            (None, _) => new_namespaces.push(kind),
        }
    }
    if !new_namespaces.contains(&NsKind::Mount) {
        return Err(invalid(
            "oci_spec: a new mount namespace is required (linux.namespaces has no \"mount\")",
        ));
    }
    let hostname = spec.hostname().clone().filter(|h| !h.is_empty());
    if hostname.is_some() && !new_namespaces.contains(&NsKind::Uts) {
        return Err(invalid(
            "oci_spec: hostname is set but the container has no new uts namespace",
        ));
    }
    let rootfs_propagation = match linux.rootfs_propagation().as_deref() {
        None | Some("") => DEFAULT_PROPAGATION,
        Some(p) => mount_flags::propagation(p)
            .ok_or_else(|| invalid(format!("oci_spec: linux.rootfsPropagation {p:?}")))?,
    };
    let mounts = spec
        .mounts()
        .clone()
        .unwrap_or_default()
        .iter()
        .map(mount_config)
        .collect::<Result<Vec<_>, _>>()?;
    let devices = linux
        .devices()
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|d| DeviceConfig {
            path: d.path().clone(),
            kind: d.typ().as_str().chars().next().unwrap_or('c'),
            major: d.major() as u64,
            minor: d.minor() as u64,
            mode: d.file_mode().unwrap_or(0o666),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        })
        .collect();
    let security = SecurityConfig {
        rlimits: process.rlimits().clone().unwrap_or_default(),
        capabilities: process.capabilities().clone(),
        no_new_privileges: process.no_new_privileges().unwrap_or(false),
        seccomp: linux.seccomp().clone(),
        masked_paths: linux.masked_paths().clone().unwrap_or_default(),
        readonly_paths: linux.readonly_paths().clone().unwrap_or_default(),
        allow_vsock: vsock_guard::allowed_by(spec.annotations().as_ref()),
    };
    let readonly_rootfs = spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false);
    let init = InitConfig {
        container_id: id.to_string(),
        rootfs: rootfs.to_path_buf(),
        readonly_rootfs,
        rootfs_propagation: rootfs_propagation.bits(),
        new_namespaces,
        join_namespaces,
        hostname,
        mounts,
        devices,
        process: process_cfg,
        security,
    };
    Ok(Translated {
        init,
        join_pid_ns,
        spec,
    })
}

/// One spec mount. Type `cgroup` becomes `cgroup2`: the guest has the unified hierarchy only.
fn mount_config(m: &Mount) -> Result<MountConfig, ContainerError> {
    let dest = m.destination();
    if !dest.is_absolute() {
        return Err(invalid(format!(
            "oci_spec: mount destination {dest:?} is not absolute"
        )));
    }
    let opts = mount_flags::parse(&m.options().clone().unwrap_or_default())
        .map_err(|e| invalid(format!("oci_spec: mount {}: {e}", dest.display())))?;
    let typ = m.typ().clone().unwrap_or_default();
    let bind = opts.bind || typ == "bind";
    let fstype = match typ.as_str() {
        _ if bind => String::new(),
        "cgroup" => "cgroup2".to_string(),
        "" => {
            return Err(invalid(format!(
                "oci_spec: mount {} has no type",
                dest.display()
            )))
        }
        t => t.to_string(),
    };
    let source = m
        .source()
        .as_ref()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| fstype.clone());
    if bind && !Path::new(&source).is_absolute() {
        return Err(invalid(format!(
            "oci_spec: bind mount {} has source {source:?}, not an absolute guest path",
            dest.display()
        )));
    }
    let mut flags = opts.flags;
    if bind {
        flags |= nix::mount::MsFlags::MS_BIND;
    }
    Ok(MountConfig {
        destination: dest.clone(),
        source,
        fstype,
        bind,
        flags: flags.bits(),
        propagation: opts.propagation.iter().map(|p| p.bits()).collect(),
        data: opts.data,
    })
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
