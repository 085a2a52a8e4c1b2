//! CreateSandbox and DestroySandbox: hostname, DNS, sandbox-wide mounts.
//!
//! In the guest (PID 1) every part is applied. In host-side test mode (`--test-serve`, not PID 1,
//! usually not root) the hostname and the mounts are validated and logged but NOT applied, and
//! resolv.conf is written to the test directory instead of /etc.
pub mod readahead;
pub mod resolv;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::mount::{mount, umount2, MntFlags};
use thiserror::Error;

use crate::mount_flags;

/// Where CreateSandbox's effects go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxMode {
    /// The real guest: set the hostname, write /etc/resolv.conf, mount.
    Guest,
    /// Host-side tests: only write `resolv_conf`; skip hostname and mounts.
    Test { resolv_conf: PathBuf },
}

/// One sandbox-wide mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub source: String,
    pub target: String,
    pub fstype: String,
    pub options: Vec<String>,
}

/// CreateSandbox's request, checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SandboxSpec {
    pub hostname: String,
    pub dns_servers: Vec<String>,
    pub dns_search: Vec<String>,
    pub mounts: Vec<MountSpec>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SandboxError {
    #[error("the sandbox already exists")]
    AlreadyExists,
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Failed(String),
}

#[derive(Default)]
struct State {
    created: bool,
    /// Targets mounted by CreateSandbox, in mount order.
    mounted: Vec<String>,
}

/// The sandbox's state. Cheap to clone.
#[derive(Clone)]
pub struct Sandbox {
    mode: SandboxMode,
    state: Arc<Mutex<State>>,
}

fn check(spec: &SandboxSpec) -> Result<(), SandboxError> {
    let h = &spec.hostname;
    if h.len() > 64
        || h.chars()
            .any(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
    {
        return Err(SandboxError::InvalidArgument(format!(
            "hostname {h:?}: expected at most 64 characters out of [A-Za-z0-9.-]"
        )));
    }
    for m in &spec.mounts {
        if !Path::new(&m.target).is_absolute() {
            return Err(SandboxError::InvalidArgument(format!(
                "mount target {:?} is not an absolute path",
                m.target
            )));
        }
    }
    Ok(())
}

fn mount_one(m: &MountSpec) -> Result<(), SandboxError> {
    let opts = mount_flags::parse(&m.options)
        .map_err(|e| SandboxError::InvalidArgument(format!("mount {}: {e}", m.target)))?;
    std::fs::create_dir_all(&m.target)
        .map_err(|e| SandboxError::Failed(format!("creating mount point {}: {e}", m.target)))?;
    let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
    let fstype = (!m.fstype.is_empty()).then_some(m.fstype.as_str());
    let failed = |e: nix::Error| {
        SandboxError::Failed(format!(
            "mount -t {} {} {}: {e}",
            m.fstype, m.source, m.target
        ))
    };
    mount(
        Some(m.source.as_str()),
        m.target.as_str(),
        fstype,
        opts.flags,
        data,
    )
    .map_err(failed)?;
    for p in opts.propagation {
        mount(
            None::<&str>,
            m.target.as_str(),
            None::<&str>,
            p,
            None::<&str>,
        )
        .map_err(failed)?;
    }
    Ok(())
}

impl Sandbox {
    pub fn new(mode: SandboxMode) -> Self {
        Sandbox {
            mode,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// Sets the sandbox up (blocking: mounts and file writes).
    pub fn create(&self, spec: &SandboxSpec) -> Result<(), SandboxError> {
        check(spec)?;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.created {
            return Err(SandboxError::AlreadyExists);
        }
        let resolv = resolv::render(&spec.dns_servers, &spec.dns_search)
            .map_err(SandboxError::InvalidArgument)?;
        let resolv_path = match &self.mode {
            SandboxMode::Guest => PathBuf::from("/etc/resolv.conf"),
            SandboxMode::Test { resolv_conf } => resolv_conf.clone(),
        };
        if let Some(text) = resolv {
            if let Some(dir) = resolv_path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            std::fs::write(&resolv_path, text).map_err(|e| {
                SandboxError::Failed(format!("writing {}: {e}", resolv_path.display()))
            })?;
        }
        match self.mode {
            SandboxMode::Guest => {
                if !spec.hostname.is_empty() {
                    nix::unistd::sethostname(&spec.hostname).map_err(|e| {
                        SandboxError::Failed(format!("sethostname {:?}: {e}", spec.hostname))
                    })?;
                }
                for m in &spec.mounts {
                    mount_one(m)?;
                    state.mounted.push(m.target.clone());
                    if m.fstype == "virtiofs" {
                        let kb = readahead::VIRTIOFS_READ_AHEAD_KB;
                        if let Err(e) =
                            readahead::set_read_ahead(Path::new("/sys"), Path::new(&m.target), kb)
                        {
                            tracing::warn!("read-ahead of {} not set to {kb} KiB: {e}", m.target);
                        }
                    }
                }
            }
            SandboxMode::Test { .. } => tracing::info!(
                "test mode: not setting hostname {:?} nor mounting {} mount(s)",
                spec.hostname,
                spec.mounts.len()
            ),
        }
        state.created = true;
        Ok(())
    }

    /// Undoes CreateSandbox's mounts (reverse order, lazily: busy mounts go when unused).
    pub fn destroy(&self) -> Result<(), SandboxError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut errors = Vec::new();
        while let Some(target) = state.mounted.pop() {
            if let Err(e) = umount2(target.as_str(), MntFlags::MNT_DETACH) {
                errors.push(format!("umount {target}: {e}"));
            }
        }
        state.created = false;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SandboxError::Failed(errors.join("; ")))
        }
    }

    /// True in the real guest.
    pub fn is_guest(&self) -> bool {
        self.mode == SandboxMode::Guest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_mode_writes_resolv_conf_and_refuses_a_second_create() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        let sb = Sandbox::new(SandboxMode::Test {
            resolv_conf: path.clone(),
        });
        let spec = SandboxSpec {
            hostname: "pod-1".into(),
            dns_servers: vec!["10.0.0.2".into()],
            dns_search: vec!["cluster.local".into()],
            mounts: vec![],
        };
        sb.create(&spec).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("nameserver 10.0.0.2\nsearch cluster.local\n"));
        assert_eq!(sb.create(&spec), Err(SandboxError::AlreadyExists));
        sb.destroy().unwrap();
        sb.create(&spec).unwrap();
    }

    #[test]
    fn rejects_bad_hostname_and_relative_mount_target() {
        let sb = Sandbox::new(SandboxMode::Test {
            resolv_conf: "/nonexistent/x".into(),
        });
        let bad_host = SandboxSpec {
            hostname: "bad host".into(),
            ..Default::default()
        };
        assert!(matches!(
            sb.create(&bad_host),
            Err(SandboxError::InvalidArgument(_))
        ));
        let bad_mount = SandboxSpec {
            mounts: vec![MountSpec {
                source: "tmpfs".into(),
                target: "rel".into(),
                fstype: "tmpfs".into(),
                options: vec![],
            }],
            ..Default::default()
        };
        assert!(matches!(
            sb.create(&bad_mount),
            Err(SandboxError::InvalidArgument(_))
        ));
    }
}
