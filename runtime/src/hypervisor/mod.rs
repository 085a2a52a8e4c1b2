//! The processes behind a sandbox's VM: sandpod-vmm (its `VmConfig` and command) and virtiofsd
//! (its command line), and how big the VM is made for a spec.
pub mod sizing;
pub mod virtiofsd;
pub mod vmm;

pub use sizing::VmSize;
pub use virtiofsd::{CacheMode, VirtiofsdCommand};
pub use vmm::{SandboxVm, VmmCommand, VM_CONFIG_FILE};
