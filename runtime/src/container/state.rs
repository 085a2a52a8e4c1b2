//! A container's state on disk (`<sandbox>/containers/<id>/state.json`) and the OCI state that
//! `sandpod state` prints, so that create, start, kill and delete can run in separate processes.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::sandbox::process::ProcessIdent;
use crate::sandbox::state::write_json_atomic;
use crate::sandbox::Layout;

/// The runtime-spec version Sandpod implements (oci-spec 0.10's).
pub const OCI_VERSION: &str = "1.2.0";

/// Lifecycle status, as `runc state` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// How a container's init ended (`exit.json`, written by its stand-in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The status its stand-in exits with: the code, or 128+N for signal N.
    pub status: u8,
    /// The container's cgroup in the guest saw an OOM kill.
    pub oom_killed: bool,
}

/// What `state.json` of a container holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    /// The sandbox (VM) it runs in.
    pub sandbox_id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// The status last recorded; [`ContainerState::status`] corrects it for processes that ended.
    pub status: Status,
    /// The host process that stands for the init (the pid callers wait for).
    pub standin: Option<ProcessIdent>,
    /// The init's pid in the guest (kept here only; never signalled on the host).
    pub guest_pid: Option<u32>,
    /// RFC 3339 creation time.
    pub created: String,
    pub annotations: BTreeMap<String, String>,
    /// The owner's user name (runc: empty for root).
    pub owner: String,
    /// The spec's hooks, run on the host (poststart after start, poststop after delete).
    pub hooks: Option<oci_spec::runtime::Hooks>,
}

impl ContainerState {
    pub fn path(layout: &Layout, id: &str) -> PathBuf {
        layout.container_dir(id).join("state.json")
    }

    pub fn exit_path(layout: &Layout, id: &str) -> PathBuf {
        layout.container_dir(id).join("exit.json")
    }

    /// Reads container `id` of the sandbox in `layout`.
    pub fn load(layout: &Layout, id: &str) -> anyhow::Result<ContainerState> {
        let p = Self::path(layout, id);
        let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", p.display()))
    }

    pub fn save(&self, layout: &Layout) -> anyhow::Result<()> {
        let dir = layout.container_dir(&self.id);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let p = Self::path(layout, &self.id);
        write_json_atomic(&p, self).with_context(|| format!("writing {}", p.display()))
    }

    /// How the init ended, if its stand-in recorded it.
    pub fn exit(layout: &Layout, id: &str) -> Option<ExitRecord> {
        let bytes = std::fs::read(Self::exit_path(layout, id)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The current status: a container whose init ended (recorded, or its stand-in is gone) is
    /// stopped whatever was recorded before.
    pub fn status(&self, layout: &Layout) -> Status {
        match self.status {
            Status::Created | Status::Running | Status::Paused => {
                let gone = !self.standin.is_some_and(|s| s.alive());
                if gone || Self::exit(layout, &self.id).is_some() {
                    Status::Stopped
                } else {
                    self.status
                }
            }
            s => s,
        }
    }

    /// The OCI state of the container (runc's fields).
    pub fn oci(&self, layout: &Layout) -> OciState {
        let status = self.status(layout);
        let pid = match status {
            Status::Created | Status::Running | Status::Paused => {
                self.standin.map(|s| s.pid).unwrap_or(0)
            }
            _ => 0,
        };
        OciState {
            oci_version: OCI_VERSION.into(),
            id: self.id.clone(),
            pid,
            status: status.as_str().into(),
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            annotations: self.annotations.clone(),
            owner: self.owner.clone(),
        }
    }
}

/// The state JSON of the runtime spec, with runc's additions (rootfs, created, owner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciState {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
    pub owner: String,
}

/// The container ids under a state root (each sandbox directory holding a container state).
pub fn list(root: &Path) -> Vec<(Layout, String)> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if crate::sandbox::validate_id(&name).is_err() {
            continue;
        }
        let layout = Layout::new(root, &name);
        let Ok(cs) = std::fs::read_dir(layout.dir.join("containers")) else {
            continue;
        };
        for c in cs.flatten() {
            if let Some(cid) = c.file_name().to_str() {
                if ContainerState::path(&layout, cid).is_file() {
                    out.push((layout.clone(), cid.to_string()));
                }
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopped_once_the_standin_is_gone_and_pid_zero() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path(), "c1");
        let mut s = ContainerState {
            id: "c1".into(),
            sandbox_id: "c1".into(),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            status: Status::Running,
            standin: ProcessIdent::of(std::process::id()),
            guest_pid: Some(7),
            created: "2026-01-01T00:00:00Z".into(),
            annotations: BTreeMap::new(),
            owner: String::new(),
            hooks: None,
        };
        s.save(&layout).unwrap();
        let l = ContainerState::load(&layout, "c1").unwrap();
        assert_eq!(l, s);
        assert_eq!(l.status(&layout), Status::Running);
        let oci = l.oci(&layout);
        assert_eq!(oci.pid, std::process::id() as i32);
        let json = serde_json::to_value(&oci).unwrap();
        assert_eq!(json["ociVersion"], OCI_VERSION);
        assert_eq!(json["status"], "running");
        assert!(json.get("annotations").is_none());
        // A recorded exit makes it stopped.
        std::fs::write(
            ContainerState::exit_path(&layout, "c1"),
            br#"{"status":3,"oom_killed":false}"#,
        )
        .unwrap();
        assert_eq!(l.status(&layout), Status::Stopped);
        assert_eq!(l.oci(&layout).pid, 0);
        // So does a stand-in that is gone.
        std::fs::remove_file(ContainerState::exit_path(&layout, "c1")).unwrap();
        s.standin = Some(ProcessIdent {
            pid: i32::MAX,
            start_time: 1,
        });
        assert_eq!(s.status(&layout), Status::Stopped);
        assert_eq!(list(d.path()).len(), 1);
    }
}
