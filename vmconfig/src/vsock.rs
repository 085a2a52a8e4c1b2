//! A virtio-vsock device with hybrid vsock on Unix sockets: `--vsock-uds PATH [--vsock-cid N]`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// Default guest CID.
pub const DEFAULT_GUEST_CID: u32 = 3;
/// Longest hybrid vsock socket path: `<path>_<port>` must fit a Unix socket address (107
/// bytes) for the ports in use (at most five digits: `_65535`). Docker's state root with a
/// 64-character container id needs about 100.
pub const MAX_UDS_PATH: usize = 107 - "_65535".len();

/// A virtio-vsock device. Host clients connect to `uds_path` (and send `CONNECT <port>\n`);
/// guest connections to host port P go to the Unix socket `<uds_path>_<P>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VsockConfig {
    /// The guest's CID (3 or more).
    #[serde(default = "default_guest_cid")]
    pub guest_cid: u32,
    /// The listening socket's path.
    pub uds_path: PathBuf,
}

/// The Unix socket of host port `port` of the hybrid vsock device on `uds`: `<uds>_<port>`. The
/// VMM forwards the guest's connections to host port P there, and the agent serves port P there
/// when it runs on Unix sockets instead of vsock (tests). The one place this name is built.
pub fn uds_port_path(uds: &Path, port: u32) -> PathBuf {
    let mut name = uds.as_os_str().to_owned();
    name.push(format!("_{port}"));
    PathBuf::from(name)
}

fn default_guest_cid() -> u32 {
    DEFAULT_GUEST_CID
}

impl VsockConfig {
    /// A device with the default guest CID.
    pub fn new(uds_path: impl Into<PathBuf>) -> Self {
        VsockConfig {
            guest_cid: DEFAULT_GUEST_CID,
            uds_path: uds_path.into(),
        }
    }

    /// Checks the CID and the socket path's length (not the socket: the VMM binds it).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.guest_cid < 3 || self.guest_cid == u32::MAX {
            return Err(ConfigError::BadGuestCid(self.guest_cid));
        }
        let len = self.uds_path.as_os_str().len();
        if len == 0 || len > MAX_UDS_PATH {
            return Err(ConfigError::BadUdsPath);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let mut v = VsockConfig::new("/run/v.sock");
        assert_eq!(v.validate(), Ok(()));
        for cid in [0, 1, 2, u32::MAX] {
            v.guest_cid = cid;
            assert_eq!(v.validate(), Err(ConfigError::BadGuestCid(cid)));
        }
        v.guest_cid = 3;
        v.uds_path = "x".repeat(MAX_UDS_PATH + 1).into();
        assert_eq!(v.validate(), Err(ConfigError::BadUdsPath));
        v.uds_path = "x".repeat(MAX_UDS_PATH).into();
        assert_eq!(v.validate(), Ok(()));
        v.uds_path = PathBuf::new();
        assert_eq!(v.validate(), Err(ConfigError::BadUdsPath));
    }

    #[test]
    fn port_paths() {
        assert_eq!(
            uds_port_path(Path::new("/run/sandpod/c/vsock.sock"), 1025),
            Path::new("/run/sandpod/c/vsock.sock_1025")
        );
        // The longest path that validates still names a valid socket for every port.
        let longest = "x".repeat(MAX_UDS_PATH);
        let p = uds_port_path(Path::new(&longest), 65535);
        assert_eq!(p.as_os_str().len(), 107);
        assert!(p.to_str().unwrap().ends_with("x_65535"));
    }

    #[test]
    fn json_form() {
        let v: VsockConfig = serde_json::from_str(r#"{"uds_path":"/v"}"#).unwrap();
        assert_eq!(v, VsockConfig::new("/v"));
        let s = serde_json::to_string(&v).unwrap();
        assert_eq!(s, r#"{"guest_cid":3,"uds_path":"/v"}"#);
        assert!(serde_json::from_str::<VsockConfig>(r#"{"guest_cid":3}"#).is_err());
    }
}
