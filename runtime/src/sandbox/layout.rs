//! The files of a sandbox's state directory, `<root>/<id>/`.
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Longest sandbox id: the state directory holds Unix sockets, whose paths are limited to 107
/// bytes (`/run/sandpod/<64 chars>/vsock.sock_1025` fits).
pub const MAX_ID_LEN: usize = 64;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid container id {id:?}: use 1 to {MAX_ID_LEN} characters out of A-Z a-z 0-9 . _ - (not starting with . or -)")]
pub struct InvalidId {
    pub id: String,
}

/// Checks a container/sandbox id: it names a directory and the agent's process.
pub fn validate_id(id: &str) -> Result<(), InvalidId> {
    // The agent's exec-id rules (the container's init has exec id = container id), shorter.
    let ok = sandpod_protocol::stream::validate_exec_id(id).is_ok()
        && id.len() <= MAX_ID_LEN
        && !id.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(InvalidId { id: id.to_string() })
    }
}

/// Paths of one sandbox's state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(root: &Path, id: &str) -> Layout {
        Layout { dir: root.join(id) }
    }
    /// The sandbox's state (JSON).
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    /// What the monitor starts (JSON), written before it runs.
    pub fn monitor_plan(&self) -> PathBuf {
        self.dir.join("monitor.json")
    }
    /// The VM's processes as the monitor started them (JSON).
    pub fn children(&self) -> PathBuf {
        self.dir.join("children.json")
    }
    /// How the VMM ended (JSON), written by the monitor.
    pub fn vm_exit(&self) -> PathBuf {
        self.dir.join("vm-exit.json")
    }
    /// The VMM's hybrid-vsock socket.
    pub fn vsock(&self) -> PathBuf {
        self.dir.join("vsock.sock")
    }
    /// virtiofsd's vhost-user socket.
    pub fn virtiofsd_socket(&self) -> PathBuf {
        self.dir.join("virtiofsd.sock")
    }
    /// The guest's serial console.
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    /// The monitor's log (with the guest's logs) unless the caller named another file.
    pub fn default_log(&self) -> PathBuf {
        self.dir.join("sandpod.log")
    }
    /// The directory virtiofsd shares with the guest.
    pub fn shared(&self) -> PathBuf {
        self.dir.join("shared")
    }
    /// A container's directory in the share.
    pub fn container_shared(&self, container_id: &str) -> PathBuf {
        self.shared().join(container_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "web-1", "c_2.x", &"f".repeat(64)] {
            assert_eq!(validate_id(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".", "..", "-x", "a/b", "a b", "ü", &"f".repeat(65)] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn socket_paths_fit_sun_path() {
        let l = Layout::new(
            Path::new(crate::paths::DEFAULT_ROOT),
            &"f".repeat(MAX_ID_LEN),
        );
        let p = format!("{}_1025", l.vsock().display());
        assert!(p.len() <= 107, "{} bytes", p.len());
    }
}
