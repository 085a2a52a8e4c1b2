//! KVM: opening `/dev/kvm` with clear errors, VM and vCPU setup, guest memory and CPUID.

pub mod cpuid;
pub mod memory;
pub mod vcpu;
pub mod vcpu_state;
pub mod vm;
pub mod vm_state;

use std::io;
use std::path::Path;

use kvm_ioctls::{Cap, Kvm};

/// The KVM device.
pub const KVM_DEV: &str = "/dev/kvm";
/// Present when the host's KVM is PVM (kvm_pvm), which needs a PVM-enabled guest kernel.
pub const PVM_MODULE_DIR: &str = "/sys/module/kvm_pvm";

/// KVM capabilities the VMM cannot work without.
pub const REQUIRED_CAPS: &[(Cap, &str)] = &[
    (Cap::Irqchip, "KVM_CAP_IRQCHIP"),
    (Cap::Irqfd, "KVM_CAP_IRQFD"),
    (Cap::Ioeventfd, "KVM_CAP_IOEVENTFD"),
    (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
    (Cap::SetTssAddr, "KVM_CAP_SET_TSS_ADDR"),
    (Cap::SetIdentityMapAddr, "KVM_CAP_SET_IDENTITY_MAP_ADDR"),
    (Cap::Pit2, "KVM_CAP_PIT2"),
    (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
    (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
];

/// Errors from KVM.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    /// No /dev/kvm.
    #[error("{0} not found: this host has no KVM")]
    NoKvm(String),
    /// /dev/kvm exists but cannot be opened by this user.
    #[error("no permission to open {0} (add the user to the kvm group or run as root)")]
    Permission(String),
    /// The host's KVM is PVM.
    #[error("this host runs PVM (kvm_pvm); it needs a PVM guest kernel")]
    Pvm,
    /// Opening /dev/kvm failed otherwise.
    #[error("cannot open {path}")]
    Open {
        /// Device path.
        path: String,
        /// Underlying error.
        source: io::Error,
    },
    /// Unexpected KVM API version.
    #[error("unsupported KVM API version {0} (expected 12)")]
    ApiVersion(i32),
    /// A required capability is missing.
    #[error("KVM lacks a required capability: {0}")]
    MissingCap(&'static str),
    /// More vCPUs than KVM allows.
    #[error("{requested} vCPUs requested but KVM allows at most {max}")]
    TooManyVcpus {
        /// Requested.
        requested: u8,
        /// KVM's maximum.
        max: usize,
    },
    /// An ioctl failed.
    #[error("{op} failed")]
    Ioctl {
        /// What was attempted.
        op: &'static str,
        /// Error.
        source: kvm_ioctls::Error,
    },
}

impl KvmError {
    /// Maps an ioctl error with the name of the operation.
    pub fn ioctl(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> KvmError {
        move |source| KvmError::Ioctl { op, source }
    }
}

/// Checks the host before opening KVM: the device exists and is not PVM.
pub fn check_host(dev: &Path, pvm_module: &Path) -> Result<(), KvmError> {
    if !dev.exists() {
        return Err(KvmError::NoKvm(dev.display().to_string()));
    }
    if pvm_module.exists() {
        return Err(KvmError::Pvm);
    }
    Ok(())
}

/// Opens `/dev/kvm` and checks the API version and required capabilities.
pub fn open_kvm() -> Result<Kvm, KvmError> {
    open_kvm_at(Path::new(KVM_DEV), Path::new(PVM_MODULE_DIR))
}

/// Like [`open_kvm`] with explicit paths.
pub fn open_kvm_at(dev: &Path, pvm_module: &Path) -> Result<Kvm, KvmError> {
    check_host(dev, pvm_module)?;
    let path = dev.display().to_string();
    let c_path = std::ffi::CString::new(dev.as_os_str().as_encoded_bytes())
        .map_err(|_| KvmError::NoKvm(path.clone()))?;
    let kvm = Kvm::new_with_path(c_path).map_err(|e| match e.errno() {
        libc::EACCES | libc::EPERM => KvmError::Permission(path),
        libc::ENOENT | libc::ENODEV | libc::ENXIO => KvmError::NoKvm(path),
        _ => KvmError::Open {
            path,
            source: io::Error::from_raw_os_error(e.errno()),
        },
    })?;
    let version = kvm.get_api_version();
    if version != kvm_bindings::KVM_API_VERSION as i32 {
        return Err(KvmError::ApiVersion(version));
    }
    for (cap, name) in REQUIRED_CAPS {
        if !kvm.check_extension(*cap) {
            return Err(KvmError::MissingCap(name));
        }
    }
    Ok(kvm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_device() {
        let err = check_host(Path::new("/nonexistent/kvm"), Path::new("/nonexistent")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/nonexistent/kvm not found: this host has no KVM"
        );
    }

    #[test]
    fn pvm_host() {
        let dir = std::env::temp_dir();
        // Any existing path stands in for /sys/module/kvm_pvm.
        let err = check_host(&dir, &dir).unwrap_err();
        assert_eq!(
            err.to_string(),
            "this host runs PVM (kvm_pvm); it needs a PVM guest kernel"
        );
        assert!(check_host(&dir, Path::new("/nonexistent")).is_ok());
    }

    #[test]
    fn permission_message() {
        assert!(KvmError::Permission("/dev/kvm".into())
            .to_string()
            .starts_with("no permission to open /dev/kvm"));
    }
}
