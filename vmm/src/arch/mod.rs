//! Architecture-specific guest setup. Only x86_64 is supported.

#[cfg(target_arch = "x86_64")]
pub mod x86_64;
#[cfg(not(target_arch = "x86_64"))]
compile_error!("sandpod-vmm supports x86_64 hosts only");
