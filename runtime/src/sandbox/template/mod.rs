//! VM templates: a sandbox's VM restored from a snapshot of a guest booted up to "agent ready"
//! instead of booted (issue 14). One template per [`key`] (kernel, initramfs, VMM, vCPUs,
//! memory, command line, devices), made on first use by [`build`] (or `sandpod template
//! build`), kept in the state root's [`store`], used by [`start`] with a fall-back to a cold
//! boot. A restore takes the template's [`spare`] memory when one is ready, with its
//! [`hot_pages`] already allocated. Only sandboxes without a network device use one (the NIC's MAC is read when the guest
//! probes it).
pub mod build;
pub mod extents;
pub mod hot_pages;
#[cfg(test)]
mod hot_pages_tests;
pub mod key;
pub mod spare;
#[cfg(test)]
mod spare_tests;
pub mod start;
pub mod store;
#[cfg(test)]
pub(crate) mod store_tests;

pub use key::{KeyInputs, TemplateKey};
pub use start::StartKind;
pub use store::{Template, TemplateStore};
