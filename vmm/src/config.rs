//! VM configuration: what to boot and with which resources. The types, their defaults, limits
//! and validation are the `sandpod-vmconfig` crate, shared with the runtime (which writes the
//! `--config` file); `crate::cli` builds the same [`VmConfig`] from flags.

pub use sandpod_vmconfig::*;
