//! The processes behind a sandbox's VM: sandpod-vmm and virtiofsd, with their command lines, and
//! how big the VM is made for a spec.
pub mod sizing;
pub mod virtiofsd;
pub mod vmm;

pub use sizing::VmSize;
pub use virtiofsd::{CacheMode, VirtiofsdCommand};
pub use vmm::VmmCommand;
