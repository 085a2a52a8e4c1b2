//! The virtiofsd command line of a sandbox's shared directory.
use std::ffi::OsString;
use std::fmt;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// virtiofsd's `--cache`: how long the guest may cache metadata and data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// Cache until the host changes a file (close-to-open consistency).
    #[default]
    Auto,
    /// Cache without revalidation: fastest, only if nothing changes the share on the host.
    Always,
    /// No caching: every access goes to the host.
    Never,
}

impl FromStr for CacheMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(CacheMode::Auto),
            "always" => Ok(CacheMode::Always),
            "never" => Ok(CacheMode::Never),
            _ => Err(format!(
                "invalid virtio-fs cache mode {s:?}: expected auto, always or never"
            )),
        }
    }
}

impl fmt::Display for CacheMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CacheMode::Auto => "auto",
            CacheMode::Always => "always",
            CacheMode::Never => "never",
        })
    }
}

/// virtiofsd's `--modcaps`: what is taken from its default set.
pub const DROPPED_CAPS: &str = "-mknod:-setfcap";

/// Everything virtiofsd is started with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtiofsdCommand {
    /// The virtiofsd binary.
    pub virtiofsd: PathBuf,
    /// The vhost-user socket (the VMM's `FsConfig::socket`): the monitor binds it and hands
    /// virtiofsd the listening descriptor (`--fd`), so the VMM may connect before virtiofsd
    /// has started; the handshake waits in the socket's backlog.
    pub socket: PathBuf,
    /// The directory it shares.
    pub shared_dir: PathBuf,
    pub cache: CacheMode,
    /// `--log-level debug` instead of `warn` (`sandpod --debug`). Left out of the JSON when
    /// false, so `monitor.json` reads as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub debug: bool,
}

impl VirtiofsdCommand {
    /// The program's arguments: its own sandbox (namespaces + pivot_root into the shared
    /// directory) and seccomp filter stay on; submounts (the container rootfs bind mounts) are
    /// announced so the guest sees them as separate file systems with their own inode numbers.
    /// Capabilities it does not need to serve a container's rootfs are dropped: CAP_MKNOD (the
    /// guest cannot plant device nodes on the host; containers' own /dev is a guest tmpfs) and
    /// CAP_SETFCAP (no file capabilities set for the guest).
    /// `listen_fd`: the listening socket bound at [`Self::socket`], open in virtiofsd at that
    /// number.
    pub fn args(&self, listen_fd: RawFd) -> Vec<OsString> {
        vec![
            format!("--fd={listen_fd}").into(),
            "--shared-dir".into(),
            self.shared_dir.clone().into(),
            "--cache".into(),
            self.cache.to_string().into(),
            "--sandbox".into(),
            "namespace".into(),
            "--announce-submounts".into(),
            format!("--modcaps={DROPPED_CAPS}").into(),
            "--log-level".into(),
            if self.debug { "debug" } else { "warn" }.into(),
        ]
    }

    /// The whole command line: the program, then [`Self::args`].
    pub fn argv(&self, listen_fd: RawFd) -> Vec<PathBuf> {
        std::iter::once(self.virtiofsd.clone())
            .chain(self.args(listen_fd).into_iter().map(PathBuf::from))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_modes_round_trip() {
        for m in ["auto", "always", "never"] {
            assert_eq!(m.parse::<CacheMode>().unwrap().to_string(), m);
        }
        assert!("sometimes".parse::<CacheMode>().is_err());
    }

    #[test]
    fn sandboxing_stays_on() {
        let c = VirtiofsdCommand {
            virtiofsd: "/b/virtiofsd".into(),
            socket: "/s/fs.sock".into(),
            shared_dir: "/s/shared".into(),
            cache: CacheMode::Never,
            debug: false,
        };
        let a: Vec<String> = c
            .args(7)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        let j = a.join(" ");
        assert!(j.starts_with("--fd=7 "), "{j}");
        assert!(!j.contains("--socket-path"), "{j}");
        assert!(j.contains("--sandbox namespace"), "{j}");
        assert!(j.contains("--cache never"), "{j}");
        assert!(j.contains("--shared-dir /s/shared"), "{j}");
        assert!(j.contains("--modcaps=-mknod:-setfcap"), "{j}");
        assert!(j.contains("--log-level warn"), "{j}");
        let debug = VirtiofsdCommand { debug: true, ..c };
        let a: Vec<String> = debug
            .args(7)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert!(a.join(" ").contains("--log-level debug"), "{a:?}");
    }

    #[test]
    fn json_form() {
        let c = VirtiofsdCommand {
            virtiofsd: "/b/virtiofsd".into(),
            socket: "/s/fs.sock".into(),
            shared_dir: "/s/shared".into(),
            cache: CacheMode::Always,
            debug: false,
        };
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(
            s,
            r#"{"virtiofsd":"/b/virtiofsd","socket":"/s/fs.sock","shared_dir":"/s/shared","cache":"always"}"#
        );
        assert_eq!(serde_json::from_str::<VirtiofsdCommand>(&s).unwrap(), c);
        let debug = VirtiofsdCommand { debug: true, ..c };
        let s = serde_json::to_string(&debug).unwrap();
        assert!(s.ends_with(r#""cache":"always","debug":true}"#), "{s}");
        assert_eq!(serde_json::from_str::<VirtiofsdCommand>(&s).unwrap(), debug);
    }
}
