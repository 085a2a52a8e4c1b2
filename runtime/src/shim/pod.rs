//! Pods: which containers share a VM (and so a shim). CRI marks a pod's containers with
//! annotations: the pod's sandbox (pause) container is `io.kubernetes.cri.container-type:
//! sandbox`; each other container is `container` and names its pod in
//! `io.kubernetes.cri.sandbox-id`. The sandbox container boots the VM; the others are created in
//! it, served by the sandbox's shim. A container without these annotations (`ctr run`) is a pod of
//! its own: sandbox id = container id.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The annotation naming a CRI container's kind.
pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// The annotation naming a CRI container's pod (its sandbox container's id).
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

/// Where the shim keeps its sandboxes' state directories: `<root>/<namespace>/<sandbox id>`
/// (`SANDPOD_SHIM_ROOT` overrides the root).
pub const DEFAULT_STATE_ROOT: &str = "/run/sandpod-shim";

/// A container's place in its pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodRole {
    /// A container of its own (no CRI annotations): it boots its VM.
    Standalone,
    /// A pod's sandbox container: it boots the pod's VM.
    Sandbox,
    /// A container in the pod whose sandbox container is `sandbox_id`.
    Member { sandbox_id: String },
}

impl PodRole {
    /// The role the annotations give container `id`. A `container` without a sandbox id, or
    /// naming itself, is standalone.
    pub fn classify(annotations: &HashMap<String, String>, id: &str) -> PodRole {
        match annotations.get(CONTAINER_TYPE).map(String::as_str) {
            Some("sandbox") => PodRole::Sandbox,
            Some("container") => match annotations.get(SANDBOX_ID) {
                Some(s) if !s.is_empty() && s != id => PodRole::Member {
                    sandbox_id: s.clone(),
                },
                _ => PodRole::Standalone,
            },
            _ => PodRole::Standalone,
        }
    }

    /// The id of the pod's sandbox (the VM's, and the key of the pod's shim socket).
    pub fn sandbox_id<'a>(&'a self, id: &'a str) -> &'a str {
        match self {
            PodRole::Member { sandbox_id } => sandbox_id,
            PodRole::Standalone | PodRole::Sandbox => id,
        }
    }

    /// Whether creating this container boots the VM.
    pub fn boots_vm(&self) -> bool {
        !matches!(self, PodRole::Member { .. })
    }
}

/// A pod member's namespaces joined by path (CRI gives the pause process's host
/// `/proc/<pid>/ns/{pid,ipc,uts}`) become the same namespaces of the sandbox container's init
/// in the guest (`sandbox_guest_pid`), where the pod's containers really run; the network
/// namespace stays (the VM's, see `guest_spec`). Any other kind joined by path is refused (the
/// error names it).
pub fn join_sandbox_namespaces(
    spec: &mut oci_spec::runtime::Spec,
    sandbox_guest_pid: u32,
) -> Result<(), String> {
    use oci_spec::runtime::LinuxNamespaceType as T;
    let Some(ns) = spec
        .linux_mut()
        .as_mut()
        .and_then(|l| l.namespaces_mut().as_mut())
    else {
        return Ok(());
    };
    for n in ns.iter_mut() {
        if n.path().is_none() {
            continue;
        }
        let name = match n.typ() {
            T::Pid => "pid",
            T::Ipc => "ipc",
            T::Uts => "uts",
            T::Network => continue,
            other => {
                return Err(format!(
                    "joining an existing {other:?} namespace is not possible: the container runs in the pod's VM"
                ))
            }
        };
        n.set_path(Some(PathBuf::from(format!(
            "/proc/{sandbox_guest_pid}/ns/{name}"
        ))));
    }
    Ok(())
}

/// The annotations of the bundle's config.json (empty if it cannot be read: the caller then
/// treats the container as standalone).
pub fn bundle_annotations(bundle: &Path) -> HashMap<String, String> {
    #[derive(serde::Deserialize)]
    struct Partial {
        #[serde(default)]
        annotations: HashMap<String, String>,
    }
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Partial>(&b).ok())
        .map(|p| p.annotations)
        .unwrap_or_default()
}

/// The state root of `namespace`'s sandboxes.
pub fn state_root(namespace: &str) -> PathBuf {
    let base = std::env::var_os("SANDPOD_SHIM_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_ROOT));
    base.join(namespace)
}

/// Removes a namespace's state root once it is empty (so nothing is left after the last pod).
pub fn remove_root_if_empty(root: &Path) {
    // Fails (ENOTEMPTY, ENOENT) when it must not or need not be removed.
    let _ = std::fs::remove_dir(root);
}

/// The `sandpod` binary, which runs as the sandbox's monitor and the VMM's jail helper:
/// `$SANDPOD_BIN`, else beside this executable, else on PATH.
pub fn sandpod_exe() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SANDPOD_BIN") {
        return Some(PathBuf::from(p));
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("sandpod")))
        .filter(|p| p.is_file());
    beside.or_else(|| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("sandpod"))
                .find(|p| p.is_file())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn classifies_cri_annotations() {
        assert_eq!(PodRole::classify(&ann(&[]), "c"), PodRole::Standalone);
        let sb = ann(&[(CONTAINER_TYPE, "sandbox"), (SANDBOX_ID, "p")]);
        assert_eq!(PodRole::classify(&sb, "p"), PodRole::Sandbox);
        let member = ann(&[(CONTAINER_TYPE, "container"), (SANDBOX_ID, "p")]);
        let role = PodRole::classify(&member, "c");
        assert_eq!(
            role,
            PodRole::Member {
                sandbox_id: "p".into()
            }
        );
        assert_eq!(role.sandbox_id("c"), "p");
        assert!(!role.boots_vm());

        let mut spec: oci_spec::runtime::Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[
                {"type":"pid","path":"/proc/77/ns/pid"},{"type":"ipc","path":"/proc/77/ns/ipc"},
                {"type":"network","path":"/var/run/netns/cni-1"},{"type":"mount"}]}}"#,
        )
        .unwrap();
        join_sandbox_namespaces(&mut spec, 5).unwrap();
        let paths: Vec<Option<String>> = spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.path().as_ref().map(|p| p.display().to_string()))
            .collect();
        assert_eq!(
            paths,
            [
                Some("/proc/5/ns/pid".to_string()),
                Some("/proc/5/ns/ipc".to_string()),
                Some("/var/run/netns/cni-1".to_string()),
                None,
            ]
        );
        let mut cg: oci_spec::runtime::Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"cgroup","path":"/proc/7/ns/cgroup"}]}}"#,
        )
        .unwrap();
        assert!(join_sandbox_namespaces(&mut cg, 5)
            .unwrap_err()
            .contains("Cgroup"));
        // A container naming itself or no pod is its own pod.
        assert_eq!(PodRole::classify(&member, "p"), PodRole::Standalone);
        let orphan = ann(&[(CONTAINER_TYPE, "container")]);
        assert_eq!(PodRole::classify(&orphan, "c"), PodRole::Standalone);
        assert_eq!(PodRole::Standalone.sandbox_id("c"), "c");
        assert!(PodRole::Sandbox.boots_vm());
    }

    #[test]
    fn reads_a_bundles_annotations() {
        let d = tempfile::tempdir().unwrap();
        assert!(bundle_annotations(d.path()).is_empty());
        std::fs::write(
            d.path().join("config.json"),
            format!(r#"{{"ociVersion":"1.0.2","annotations":{{"{CONTAINER_TYPE}":"sandbox"}}}}"#),
        )
        .unwrap();
        let a = bundle_annotations(d.path());
        assert_eq!(a.get(CONTAINER_TYPE).map(String::as_str), Some("sandbox"));
    }
}

/// The `config_path` of CRI's runtime options (`runtimeoptions.v1.Options`, the type
/// containerd's CRI passes a runtime's `ConfigPath` in: field 2, a string), if `value` has one.
/// A malformed message is `None`.
pub fn runtime_options_config_path(type_url: &str, value: &[u8]) -> Option<PathBuf> {
    if !type_url.ends_with("runtimeoptions.v1.Options") {
        return None;
    }
    let mut rest = value;
    let varint = |b: &mut &[u8]| -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, tail) = b.split_first()?;
            *b = tail;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    };
    while !rest.is_empty() {
        let key = varint(&mut rest)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                varint(&mut rest)?;
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                rest = rest.get(n..)?;
            }
            2 => {
                let len = usize::try_from(varint(&mut rest)?).ok()?;
                let bytes = rest.get(..len)?;
                rest = &rest[len..];
                if field == 2 {
                    let s = std::str::from_utf8(bytes).ok()?;
                    return (!s.is_empty()).then(|| PathBuf::from(s));
                }
            }
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod options_tests {
    use super::*;

    #[test]
    fn reads_cri_runtime_options_config_path() {
        // type_url = "x" (field 1), config_path = "/etc/k.toml" (field 2).
        let mut v = vec![0x0a, 1, b'x', 0x12, 11];
        v.extend_from_slice(b"/etc/k.toml");
        let url = "runtimeoptions.v1.Options";
        assert_eq!(
            runtime_options_config_path(url, &v),
            Some(PathBuf::from("/etc/k.toml"))
        );
        assert_eq!(
            runtime_options_config_path("containerd.runc.v1.Options", &v),
            None
        );
        assert_eq!(runtime_options_config_path(url, &v[..8]), None);
        assert_eq!(runtime_options_config_path(url, &[]), None);
    }
}
