//! The runtime's configuration file (TOML): `--config FILE`, else `$SANDPOD_CONFIG`, else
//! `/etc/sandpod/config.toml` if it exists, else the built-in defaults. Command-line flags win
//! over the file; the `SANDPOD_VMM`-style variables win over its paths. Every key is optional
//! (see docs/config.toml.example); an unknown key is an error, so a typo is not silently ignored.
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::hypervisor::CacheMode;

/// Where the file is looked for when neither `--config` nor `$SANDPOD_CONFIG` names one.
pub const DEFAULT_CONFIG: &str = "/etc/sandpod/config.toml";
/// The variable naming a config file.
pub const CONFIG_ENV: &str = "SANDPOD_CONFIG";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("reading the config file {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("config file {path}: {what}")]
    Invalid { path: PathBuf, what: String },
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub hypervisor: HypervisorConfig,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub jail: JailConfig,
}

/// The default uid and gid the VMM runs as in its jail: `nobody`/`nogroup` (65534), which
/// owns no files and no login on Debian. Set a dedicated id if other host services run as
/// `nobody`: a process with the VMM's uid may signal it (it cannot ptrace it: the VMM is not
/// dumpable).
pub const DEFAULT_JAIL_ID: u32 = 65534;

/// `[jail]`: how sandpod-vmm is confined (see docs/architecture.md, "The VMM's jail").
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JailConfig {
    /// false runs the VMM unjailed, as root (a debugging switch; `sandpod --no-jail` too): the
    /// runtime logs a warning for each sandbox.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The VMM's uid (default 65534).
    #[serde(default = "default_jail_id")]
    pub uid: u32,
    /// The VMM's gid (default 65534).
    #[serde(default = "default_jail_id")]
    pub gid: u32,
}

fn yes() -> bool {
    true
}

fn default_jail_id() -> u32 {
    DEFAULT_JAIL_ID
}

impl Default for JailConfig {
    fn default() -> Self {
        JailConfig {
            enabled: true,
            uid: DEFAULT_JAIL_ID,
            gid: DEFAULT_JAIL_ID,
        }
    }
}

/// `[hypervisor]`: the VM's files and size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HypervisorConfig {
    /// sandpod-vmm (default: beside `sandpod`, then $PREFIX/libexec/sandpod).
    pub vmm: Option<PathBuf>,
    /// virtiofsd (same search).
    pub virtiofsd: Option<PathBuf>,
    /// The guest kernel (default: $PREFIX/share/sandpod/vmlinux).
    pub kernel: Option<PathBuf>,
    /// The guest initramfs (default: $PREFIX/share/sandpod/initramfs.cpio).
    pub initrd: Option<PathBuf>,
    /// vCPUs of a VM whose spec sets no CPU quota (default 1).
    pub default_vcpus: Option<u8>,
    /// Memory of a VM whose spec sets no memory limit, MiB (default 256).
    pub default_memory_mib: Option<u32>,
    /// virtio-fs cache mode: auto, always or never (default auto).
    pub virtiofs_cache: Option<String>,
    /// Seconds to wait for the guest's agent (default 60).
    pub boot_timeout_secs: Option<u64>,
    /// Start sandboxes by restoring a VM template (a snapshot of a booted guest, made on first
    /// use and cached under the state root) instead of booting them (default true; only
    /// sandboxes without a network device use one). `SANDPOD_TEMPLATE=0|1` overrides it.
    pub template: Option<bool>,
}

/// The variable that overrides `[hypervisor] template` (`0`/`false` or `1`/`true`).
pub const TEMPLATE_ENV: &str = "SANDPOD_TEMPLATE";

/// `[runtime]`: the runtime's own behaviour.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Log filter when neither `--debug` nor SANDPOD_LOG says (e.g. "info", "debug").
    pub log_level: Option<String>,
}

impl Config {
    /// Loads the file `explicit` names (which must exist), else `$SANDPOD_CONFIG`, else the
    /// default file if there is one.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let env = std::env::var_os(CONFIG_ENV).map(PathBuf::from);
        match explicit.map(Path::to_path_buf).or(env) {
            Some(p) => Self::read(&p),
            None if Path::new(DEFAULT_CONFIG).is_file() => Self::read(Path::new(DEFAULT_CONFIG)),
            None => Ok(Config::default()),
        }
    }

    /// Reads and checks one file.
    pub fn read(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let c: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |what: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            what,
        };
        if let Some(m) = &c.hypervisor.virtiofs_cache {
            m.parse::<CacheMode>().map_err(invalid)?;
        }
        if c.hypervisor.default_vcpus == Some(0) {
            return Err(invalid("default_vcpus must be at least 1".into()));
        }
        if c.hypervisor.default_memory_mib.is_some_and(|m| m < 64) {
            return Err(invalid("default_memory_mib must be at least 64".into()));
        }
        if c.jail.uid == 0 || c.jail.gid == 0 {
            return Err(invalid(
                "[jail] uid and gid must not be 0 (root): use enabled = false to debug unjailed"
                    .into(),
            ));
        }
        if c.hypervisor.boot_timeout_secs == Some(0) {
            return Err(invalid("boot_timeout_secs must be at least 1".into()));
        }
        Ok(c)
    }

    /// The virtio-fs cache mode the file sets (checked by [`Config::read`]).
    pub fn cache(&self) -> Option<CacheMode> {
        self.hypervisor.virtiofs_cache.as_ref()?.parse().ok()
    }

    /// Whether sandboxes start from VM templates: `$SANDPOD_TEMPLATE` if set (an unreadable
    /// value is logged and ignored), else the file's `template`, else true.
    pub fn template(&self) -> bool {
        let env = std::env::var(TEMPLATE_ENV).ok();
        template_setting(env.as_deref(), self.hypervisor.template)
    }
}

fn template_setting(env: Option<&str>, file: Option<bool>) -> bool {
    match env.map(str::trim) {
        Some("0" | "false" | "no" | "off") => false,
        Some("1" | "true" | "yes" | "on") => true,
        Some(other) => {
            tracing::warn!("{TEMPLATE_ENV}={other:?} ignored: use 0 or 1");
            file.unwrap_or(true)
        }
        None => file.unwrap_or(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.toml");
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    #[test]
    fn reads_every_key() {
        let (_d, p) = write(
            "[hypervisor]\nvmm = \"/opt/vmm\"\nkernel = \"/k\"\ndefault_vcpus = 2\n\
             default_memory_mib = 512\nvirtiofs_cache = \"never\"\nboot_timeout_secs = 30\n\
             [runtime]\nlog_level = \"debug\"\n[jail]\nuid = 4000\n",
        );
        let c = Config::read(&p).unwrap();
        assert_eq!(c.hypervisor.vmm.as_deref(), Some(Path::new("/opt/vmm")));
        assert_eq!(c.hypervisor.default_vcpus, Some(2));
        assert_eq!(c.cache(), Some(CacheMode::Never));
        assert_eq!(c.runtime.log_level.as_deref(), Some("debug"));
        assert_eq!(
            (c.jail.enabled, c.jail.uid, c.jail.gid),
            (true, 4000, 65534)
        );
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        let (_d, p) = write("[hypervisor]\nkernal = \"/k\"\n");
        let e = Config::read(&p).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e:?}");
        // The parser's message (naming the key) is the cause, printed after the file's name.
        let chain = sandpod_protocol::ErrorChain(&e).to_string();
        assert!(
            chain.starts_with(&format!("config file {}: ", p.display()))
                && chain.contains("kernal"),
            "{chain}"
        );
        let (_d, p) = write("[hypervisor]\nvirtiofs_cache = \"sometimes\"\n");
        assert!(Config::read(&p).is_err());
        let (_d, p) = write("[hypervisor]\ndefault_vcpus = 0\n");
        assert!(Config::read(&p).is_err());
        let (_d, p) = write("[jail]\nuid = 0\n");
        assert!(Config::read(&p).is_err());
        let (_d, p) = write("[jail]\nenabled = false\n");
        assert!(!Config::read(&p).unwrap().jail.enabled);
        assert!(Config::read(Path::new("/nonexistent/config.toml")).is_err());
        let (_d, p) = write("");
        assert_eq!(Config::read(&p).unwrap(), Config::default());
    }

    #[test]
    fn templates_are_on_unless_the_file_or_the_variable_says() {
        let (_d, p) = write("[hypervisor]\ntemplate = false\n");
        assert_eq!(Config::read(&p).unwrap().hypervisor.template, Some(false));
        assert!(template_setting(None, None));
        assert!(!template_setting(None, Some(false)));
        assert!(!template_setting(Some("0"), Some(true)));
        assert!(template_setting(Some("1"), Some(false)));
        assert!(!template_setting(Some("maybe"), Some(false)));
        assert!(template_setting(Some("maybe"), None));
    }
}
