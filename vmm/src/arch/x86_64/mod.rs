//! x86_64 boot: memory layout, zero page and e820 map, MP table, page tables, GDT, registers
//! and MSRs for a 64-bit direct boot of an ELF `vmlinux`.

pub mod boot_params;
pub mod gdt;
pub mod layout;
pub mod mptable;
pub mod msr;
pub mod paging;
pub mod regs;

use vm_memory::GuestMemoryError;

/// Errors writing the boot structures into guest memory.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Writing a boot structure failed (address outside guest memory).
    #[error("cannot write the {what} into guest memory")]
    Write {
        /// Which structure.
        what: &'static str,
        /// Underlying error.
        source: GuestMemoryError,
    },
    /// The MP table does not fit in the space reserved for it.
    #[error("the MP table for {0} vCPUs does not fit below 1 MiB")]
    MpTableTooLarge(u8),
    /// A value does not fit its field in the zero page.
    #[error("the {what} ({value:#x}) does not fit its 32-bit zero page field")]
    FieldTooLarge {
        /// Which field.
        what: &'static str,
        /// The value.
        value: u64,
    },
    /// Too many e820 entries.
    #[error("too many e820 entries ({0})")]
    TooManyE820Entries(usize),
    /// The initrd does not fit in guest memory.
    #[error("initrd of {size} bytes does not fit in guest memory (at most {avail} bytes free between the kernel and the top of low memory)")]
    InitrdTooLarge {
        /// Initrd size.
        size: u64,
        /// Space available.
        avail: u64,
    },
}

impl BootError {
    pub(crate) fn write(what: &'static str) -> impl FnOnce(GuestMemoryError) -> BootError {
        move |source| BootError::Write { what, source }
    }
}
