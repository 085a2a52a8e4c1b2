//! Containers on a sandbox: create (from a bundle, with its stdio), start, kill, delete, exec,
//! and the inspection and resource commands, each usable from a separate process (state on
//! disk, [`state`]). A host process stands for each guest process ([`standin`]). `sandpod`'s
//! runc commands and `run` are thin translations onto these functions.
pub mod exec;
pub mod foreground;
pub mod hooks;
pub mod lifecycle;
pub mod resources;
pub mod standin;
pub mod state;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::Config;
use crate::hypervisor::CacheMode;

pub use lifecycle::{create, delete, kill, start, CreateOptions};
pub use state::{ContainerState, OciState, Status};

/// The global options every command shares (runc's global flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// State root (`--root`).
    pub root: PathBuf,
    /// The runtime log (`--log`); the monitor and stand-ins append to it too.
    pub log: Option<PathBuf>,
    /// `text` or `json` (runc's JSON lines).
    pub log_format: String,
    pub debug: bool,
    /// This executable (re-executed as the monitor and the stand-ins).
    pub self_exe: PathBuf,
    /// The config file's settings (or the defaults).
    pub config: Config,
}

/// How the VM of a new sandbox is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmOptions {
    pub cache: CacheMode,
    pub boot_timeout: Duration,
}

/// How long a command waits to reach the agent of a running sandbox.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
