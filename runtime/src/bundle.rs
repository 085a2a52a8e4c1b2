//! An OCI bundle on the host: `config.json` plus the root file system it names, checked before
//! anything is created for it.
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use thiserror::Error;

/// Why a bundle cannot be used. Each names the bundle and what to fix.
#[derive(Debug, Error)]
pub enum BundleError {
    #[error("bundle {bundle}")]
    Dir {
        bundle: PathBuf,
        source: std::io::Error,
    },
    #[error("bundle {bundle}: no config.json")]
    NoConfig { bundle: PathBuf },
    #[error("bundle {bundle}: reading config.json")]
    Read {
        bundle: PathBuf,
        source: std::io::Error,
    },
    #[error("bundle {bundle}: config.json is not a valid OCI runtime spec")]
    Invalid {
        bundle: PathBuf,
        source: serde_json::Error,
    },
    #[error("bundle {bundle}: config.json: {what}")]
    Unsupported { bundle: PathBuf, what: String },
    #[error("bundle {bundle}: root file system {rootfs} is missing or not a directory")]
    Rootfs { bundle: PathBuf, rootfs: PathBuf },
}

/// A loaded, checked bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle directory, absolute.
    pub dir: PathBuf,
    pub spec: Spec,
    /// The spec's root.path, resolved against the bundle directory.
    pub rootfs: PathBuf,
    /// config.json as read (the agent gets the spec after the runtime rewrote its bind sources).
    pub raw_config: Vec<u8>,
}

impl Bundle {
    /// Loads `dir/config.json` and checks what the runtime depends on: a process with arguments,
    /// a root directory that exists, no namespace the sandbox cannot provide.
    pub fn load(dir: &Path) -> Result<Bundle, BundleError> {
        let bundle = Bundle::load_unchecked_namespaces(dir)?;
        bundle.check_namespaces()?;
        Ok(bundle)
    }

    /// [`Bundle::load`] without the namespace check: for a caller that first rewrites the
    /// namespace paths it can serve (the shim, for a pod's containers), then checks.
    pub fn load_unchecked_namespaces(dir: &Path) -> Result<Bundle, BundleError> {
        let dir = std::fs::canonicalize(dir).map_err(|source| BundleError::Dir {
            bundle: dir.to_path_buf(),
            source,
        })?;
        let config = dir.join("config.json");
        let raw_config = match std::fs::read(&config) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BundleError::NoConfig { bundle: dir })
            }
            Err(source) => {
                return Err(BundleError::Read {
                    bundle: dir,
                    source,
                })
            }
        };
        let spec: Spec =
            serde_json::from_slice(&raw_config).map_err(|source| BundleError::Invalid {
                bundle: dir.clone(),
                source,
            })?;
        let unsupported = |what: String| BundleError::Unsupported {
            bundle: dir.clone(),
            what,
        };
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| unsupported("no process section".into()))?;
        if process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(unsupported("process.args is empty".into()));
        }
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| unsupported("no root section".into()))?;
        let rootfs = if root.path().is_absolute() {
            root.path().clone()
        } else {
            dir.join(root.path())
        };
        if !rootfs.is_dir() {
            return Err(BundleError::Rootfs {
                bundle: dir,
                rootfs,
            });
        }
        Ok(Bundle {
            dir,
            spec,
            rootfs,
            raw_config,
        })
    }

    /// No namespace joined by path but the network one (Podman's, CRI's: the sandbox's on the
    /// host): a host namespace cannot be joined from the VM.
    pub fn check_namespaces(&self) -> Result<(), BundleError> {
        let spec = &self.spec;
        if let Some(ns) = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref()) {
            for n in ns {
                if n.path().is_some() && n.typ() != oci_spec::runtime::LinuxNamespaceType::Network {
                    return Err(BundleError::Unsupported {
                        bundle: self.dir.clone(),
                        what: format!(
                            "joining an existing {:?} namespace (path {}) is not possible: the container runs in its own VM",
                            n.typ(),
                            n.path().as_ref().map(|p| p.display().to_string()).unwrap_or_default()
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// process.terminal of the spec.
    pub fn terminal(&self) -> bool {
        self.spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false)
    }

    /// root.readonly of the spec.
    pub fn readonly_rootfs(&self) -> bool {
        self.spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},
        "root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"pid"},{"type":"mount"}]}}"#;

    fn bundle(config: Option<&str>, rootfs: bool) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        if let Some(c) = config {
            std::fs::write(d.path().join("config.json"), c).unwrap();
        }
        if rootfs {
            std::fs::create_dir(d.path().join("rootfs")).unwrap();
        }
        d
    }

    #[test]
    fn loads_a_minimal_bundle() {
        let d = bundle(Some(MINIMAL), true);
        let b = Bundle::load(d.path()).unwrap();
        assert!(b.rootfs.ends_with("rootfs"));
        assert!(!b.terminal());
    }

    #[test]
    fn each_broken_bundle_has_its_error() {
        let d = bundle(None, true);
        assert!(matches!(
            Bundle::load(d.path()),
            Err(BundleError::NoConfig { .. })
        ));
        let d = bundle(Some("{not json"), true);
        assert!(matches!(
            Bundle::load(d.path()),
            Err(BundleError::Invalid { .. })
        ));
        let d = bundle(Some(MINIMAL), false);
        assert!(matches!(
            Bundle::load(d.path()),
            Err(BundleError::Rootfs { .. })
        ));
        let bad_ns = MINIMAL.replace("\"mount\"", "\"bogus\"");
        let d = bundle(Some(&bad_ns), true);
        let e = Bundle::load(d.path()).unwrap_err();
        let chain = sandpod_protocol::ErrorChain(&e).to_string();
        assert!(chain.contains("bogus"), "{chain}");
        let no_args = MINIMAL.replace("[\"sh\"]", "[]");
        let d = bundle(Some(&no_args), true);
        assert!(matches!(
            Bundle::load(d.path()),
            Err(BundleError::Unsupported { .. })
        ));
        assert!(matches!(
            Bundle::load(Path::new("/nonexistent/bundle")),
            Err(BundleError::Dir { .. })
        ));
    }

    /// The cause is the error's source, not part of its message: printed with the chain, it
    /// appears once.
    #[test]
    fn the_cause_is_printed_once() {
        let e = Bundle::load(Path::new("/nonexistent/bundle")).unwrap_err();
        assert_eq!(e.to_string(), "bundle /nonexistent/bundle");
        let chain = sandpod_protocol::ErrorChain(&e).to_string();
        assert_eq!(
            chain.matches("No such file or directory").count(),
            1,
            "{chain}"
        );
        let d = bundle(Some("{not json"), true);
        let e = Bundle::load(d.path()).unwrap_err();
        let chain = format!("{:#}", anyhow::Error::new(e));
        assert!(
            chain.ends_with("config.json is not a valid OCI runtime spec: key must be a string at line 1 column 2"),
            "{chain}"
        );
    }
}
