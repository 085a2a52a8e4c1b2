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
