//! What the agent hands the container helper over its sync socket (serde JSON): everything the
//! helper needs, checked and translated from the OCI spec by `spec`, so that the helper decides
//! nothing on its own.
use std::path::PathBuf;

use oci_spec::runtime::{LinuxCapabilities, LinuxSeccomp, PosixRlimit};
use serde::{Deserialize, Serialize};

use super::namespaces::{NsJoin, NsKind};
use crate::process::ProcessSpec;

/// One mount of the spec, its options parsed (see `crate::mount_flags::parse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountConfig {
    /// Absolute path inside the container.
    pub destination: PathBuf,
    /// A guest path for bind mounts; for other types whatever mount(2) takes as source.
    pub source: String,
    /// Empty for bind mounts.
    pub fstype: String,
    /// A bind mount (`bind`/`rbind` option, or type `bind`).
    pub bind: bool,
    /// mount(2) flags (`MsFlags` bits), without the propagation ones.
    pub flags: u64,
    /// Propagation changes applied after the mount, in order (`MsFlags` bits).
    pub propagation: Vec<u64>,
    /// File-system data (`mode=755,size=65536k`).
    pub data: String,
}

/// A device node of `linux.devices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceConfig {
    /// Absolute path inside the container.
    pub path: PathBuf,
    /// `c`, `b` or `p`.
    pub kind: char,
    pub major: u64,
    pub minor: u64,
    /// Permission bits (default 0666).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The security settings of a container process, applied by the security modules (see
/// `security`). Kept in the OCI spec's own types: those modules take them as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecurityConfig {
    pub rlimits: Vec<PosixRlimit>,
    pub capabilities: Option<LinuxCapabilities>,
    pub no_new_privileges: bool,
    pub seccomp: Option<LinuxSeccomp>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    /// AF_VSOCK allowed (annotation `io.sandpod.allow-vsock: "true"`); otherwise refused by the
    /// `vsock_guard` filter.
    #[serde(default)]
    pub allow_vsock: bool,
}

/// Sets a container up (CreateContainer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitConfig {
    pub container_id: String,
    /// Absolute guest path of the root file system.
    pub rootfs: PathBuf,
    pub readonly_rootfs: bool,
    /// Propagation of the container's mount tree (`MsFlags` bits, e.g. MS_SLAVE|MS_REC).
    pub rootfs_propagation: u64,
    /// New namespaces: created by the clone, except the cgroup one, which the helper creates
    /// once it is in its cgroup (see `namespaces::clone_flags`).
    pub new_namespaces: Vec<NsKind>,
    /// Existing namespaces to join, except pid (joined by the agent before cloning).
    pub join_namespaces: Vec<NsJoin>,
    pub hostname: Option<String>,
    pub mounts: Vec<MountConfig>,
    pub devices: Vec<DeviceConfig>,
    pub process: ProcessSpec,
    pub security: SecurityConfig,
}

/// Runs a process in a started container (ExecProcess with a container_id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecConfig {
    pub exec_id: String,
    /// The container's init process (agent's pid namespace): its namespaces and root are joined.
    pub init_pid: i32,
    /// Namespaces to join from /proc/<init_pid>/ns/, except pid (see `launch`).
    pub namespaces: Vec<NsKind>,
    pub process: ProcessSpec,
    pub security: SecurityConfig,
}

/// The helper's two modes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum HelperConfig {
    Init(Box<InitConfig>),
    Exec(Box<ExecConfig>),
}
