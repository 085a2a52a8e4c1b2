//! The files of a sandbox's state directory, `<root>/<id>/`.
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Longest sandbox id (Docker's and containerd's ids are 64 hex characters).
pub const MAX_ID_LEN: usize = 64;
/// Longest Unix socket path (sun_path holds 108 bytes with the terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;
/// The VMM's directory in the state directory (its sockets and console; the only host directory
/// the jailed VMM can write). One letter: Docker's state root and a 64-character id leave 9 bytes
/// for the longest socket path below the state directory.
pub const VM_DIR: &str = "j";
/// The longest socket path below the state directory: the hybrid-vsock socket of the log port
/// (`<uds>_1025`, the only host port a host process listens on; a guest connection to another
/// port finds no socket anyway).
const LONGEST_SOCKET_NAME: &str = "j/v_1025";

/// The state directory's sockets would not fit a Unix socket path.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("the state directory {dir} is too long for its Unix sockets ({len} bytes with {LONGEST_SOCKET_NAME}, at most {MAX_SOCKET_PATH}): use a shorter --root")]
pub struct PathTooLong {
    pub dir: PathBuf,
    pub len: usize,
}

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
    /// Checks that the sockets of this directory fit a Unix socket path (names are kept short
    /// for that: Docker's state root plus a 64-character id leaves little room).
    pub fn check_socket_paths(&self) -> Result<(), PathTooLong> {
        let len = self.dir.join(LONGEST_SOCKET_NAME).as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(PathTooLong {
                dir: self.dir.clone(),
                len,
            });
        }
        Ok(())
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
    /// The VMM's directory: its sockets and console (owned by the jail's uid when jailed).
    pub fn vm_dir(&self) -> PathBuf {
        self.dir.join(VM_DIR)
    }
    /// The VMM's hybrid-vsock socket (guest connections to host port P go to `v_P`).
    pub fn vsock(&self) -> PathBuf {
        self.vm_dir().join("v")
    }
    /// Where the VMM of a template's build saves the snapshot (`snapshot_to`; the jail's uid
    /// writes it).
    pub fn snapshot_dir(&self) -> PathBuf {
        self.vm_dir().join("s")
    }
    /// The template's files a restored VM starts from (`restore_from`: root's, read-only).
    pub fn restore_dir(&self) -> PathBuf {
        self.vm_dir().join("t")
    }
    /// The mount point of the jail's root (a tmpfs in the jail's own mount namespace; an empty
    /// directory on the host).
    pub fn jail_root(&self) -> PathBuf {
        self.dir.join("jail")
    }
    /// The jail's plan (JSON), read by `sandpod jail`.
    pub fn jail_plan(&self) -> PathBuf {
        self.dir.join("jail.json")
    }
    /// virtiofsd's vhost-user socket.
    pub fn virtiofsd_socket(&self) -> PathBuf {
        self.dir.join("fs.sock")
    }
    /// The monitor's socket where the processes standing in for guest processes register.
    pub fn monitor_socket(&self) -> PathBuf {
        self.dir.join("m.sock")
    }
    /// A container's own state directory (its state file and exit record).
    pub fn container_dir(&self, container_id: &str) -> PathBuf {
        self.dir.join("containers").join(container_id)
    }
    /// The guest's serial console (written by the VMM, in its directory).
    pub fn console_log(&self) -> PathBuf {
        self.vm_dir().join("console.log")
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
        // Docker 20.10's state root for a runtime named "kata", and a 64-character id.
        let docker = Path::new("/var/run/docker/runtime-kata/moby");
        let l = Layout::new(docker, &"f".repeat(MAX_ID_LEN));
        assert_eq!(l.check_socket_paths(), Ok(()));
        let p = sandpod_protocol::ports::uds_port_path(&l.vsock(), sandpod_protocol::LOG_PORT);
        let len = p.as_os_str().len();
        assert!(len <= MAX_SOCKET_PATH, "{len} bytes");
        assert_eq!(p, l.dir.join(LONGEST_SOCKET_NAME));
        let long = Layout::new(&docker.join("x".repeat(40)), &"f".repeat(MAX_ID_LEN));
        let e = long.check_socket_paths().unwrap_err();
        assert!(e.to_string().contains("shorter --root"), "{e}");
    }
}
