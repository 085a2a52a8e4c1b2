//! Sandpod's virtual machine monitor.
//!
//! Boots an uncompressed ELF Linux kernel (`vmlinux`) with an initramfs on KVM, 64-bit direct
//! boot, with a serial console and an i8042 controller for the guest's reboot. Built on the
//! rust-vmm crates. This crate is a library and the `sandpod-vmm` binary, which the runtime
//! starts as a process of its own with `--config vm.json` (a [`VmConfig`], the
//! `sandpod-vmconfig` crate).
//!
//! ```no_run
//! use sandpod_vmm::{Vmm, VmConfig};
//! let mut config = VmConfig::new("/path/to/vmlinux");
//! config.initrd = Some("/path/to/initramfs.cpio".into());
//! let mut vmm = Vmm::new(config)?;
//! let reason = vmm.run()?;
//! std::process::exit(reason.exit_code());
//! # Ok::<(), sandpod_vmm::Error>(())
//! ```

// A cast that may truncate or lose a sign is a try_from with an error, or an #[allow] with the
// reason it is in range (the rest of the workspace's lints: [workspace.lints] in Cargo.toml).
#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

pub mod arch;
pub mod cli;
pub mod config;
pub mod device_manager;
pub mod devices;
pub mod error;
pub mod exit;
pub mod kvm;
pub mod loader;
pub mod seccomp;
pub mod snapshot;
pub mod vmm;

pub use config::{ConsoleConfig, DiskConfig, FsConfig, VmConfig, VsockConfig};
pub use error::{Error, Result};
pub use exit::{ExitReason, ExitState};
pub use vmm::Vmm;

/// The VMM's version, as printed by `sandpod-vmm --version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
