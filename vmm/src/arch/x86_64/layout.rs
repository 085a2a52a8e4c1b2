//! Guest physical memory layout.
//!
//! ```text
//! 0x0000_0500  GDT                     0x0000_0520  IDT (empty)
//! 0x0000_7000  zero page (boot_params) 0x0000_8ff0  boot stack top
//! 0x0000_9000  PML4  0x0000_a000 PDPTE  0x0000_b000 PDE (identity map of the first 1 GiB)
//! 0x0002_0000  kernel command line
//! 0x0009_fc00  EBDA: MP table          (0x9fc00..0x100000 reserved in e820)
//! 0x0010_0000  RAM ... kernel (at its ELF physical address) ... initrd (top of low RAM)
//! 0xc000_0000  32-bit MMIO gap (devices, IOAPIC 0xfec0_0000, LAPIC 0xfee0_0000, KVM TSS)
//! 0x1_0000_0000  RAM above 4 GiB (when the guest has more than 3 GiB)
//! ```

use vm_memory::GuestAddress;

/// GDT address.
pub const BOOT_GDT_START: u64 = 0x500;
/// IDT address.
pub const BOOT_IDT_START: u64 = 0x520;
/// Zero page (Linux `boot_params`) address.
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer of the boot vCPU.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// PML4 address.
pub const PML4_START: u64 = 0x9000;
/// PDPTE address.
pub const PDPTE_START: u64 = 0xa000;
/// PDE address.
pub const PDE_START: u64 = 0xb000;
/// Kernel command line address.
pub const CMDLINE_START: u64 = 0x20000;
/// Kernel command line capacity, including the NUL (x86 COMMAND_LINE_SIZE).
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// Start of the Extended BIOS Data Area, where the MP table goes.
pub const EBDA_START: u64 = 0x9fc00;
/// Start of high memory (above the legacy ISA hole).
pub const HIMEM_START: u64 = 0x10_0000;
/// Start of the 32-bit MMIO gap: RAM below it, devices in it.
pub const MMIO_GAP_START: u64 = 0xc000_0000;
/// End of the 32-bit MMIO gap (4 GiB): RAM resumes here.
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// KVM's TSS (three pages) inside the MMIO gap.
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;
/// KVM's identity map page, just below the TSS.
pub const KVM_IDENTITY_MAP_ADDRESS: u64 = 0xfffb_c000;
/// IOAPIC MMIO base.
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// Local APIC MMIO base.
pub const APIC_START: u64 = 0xfee0_0000;
/// Highest address an initrd may end at (Linux's default `initrd_addr_max`).
pub const INITRD_ADDR_MAX: u64 = 0x7fff_ffff;

/// `addr` for a 32-bit address field of a boot structure (zero page, MP table). Meant for
/// layout constants: evaluated in a `const`, an address above 4 GiB fails the build.
#[allow(clippy::cast_possible_truncation)] // in range: asserted first
pub const fn addr32(addr: u64) -> u32 {
    assert!(
        addr <= u32::MAX as u64,
        "boot structure address above 4 GiB"
    );
    addr as u32
}

/// A RAM region of the guest: where it sits in guest physical memory and where it sits in the
/// memory file that backs all of guest RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamRegion {
    /// Guest physical start.
    pub guest: GuestAddress,
    /// Size in bytes.
    pub size: u64,
    /// Offset in the backing memory file.
    pub file_offset: u64,
}

/// Splits `mem_size` bytes of RAM around the 32-bit MMIO gap.
pub fn ram_regions(mem_size: u64) -> Vec<RamRegion> {
    let low = mem_size.min(MMIO_GAP_START);
    let mut regions = vec![RamRegion {
        guest: GuestAddress(0),
        size: low,
        file_offset: 0,
    }];
    if mem_size > MMIO_GAP_START {
        regions.push(RamRegion {
            guest: GuestAddress(MMIO_GAP_END),
            size: mem_size - MMIO_GAP_START,
            file_offset: MMIO_GAP_START,
        });
    }
    regions
}

/// End (exclusive) of RAM below the MMIO gap.
pub fn low_ram_end(mem_size: u64) -> u64 {
    mem_size.min(MMIO_GAP_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_memory_is_one_region() {
        let r = ram_regions(128 << 20);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].guest, GuestAddress(0));
        assert_eq!(r[0].size, 128 << 20);
    }

    #[test]
    fn large_memory_skips_the_gap() {
        let r = ram_regions(4 << 30);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].size, MMIO_GAP_START);
        assert_eq!(r[1].guest, GuestAddress(MMIO_GAP_END));
        assert_eq!(r[1].size, (4 << 30) - MMIO_GAP_START);
        assert_eq!(r[1].file_offset, MMIO_GAP_START);
        assert_eq!(low_ram_end(4 << 30), MMIO_GAP_START);
    }

    // Checked at compile time.
    const _: () = {
        assert!(BOOT_IDT_START >= BOOT_GDT_START + 4 * 8);
        assert!(ZERO_PAGE_START + 4096 <= BOOT_STACK_POINTER);
        assert!(BOOT_STACK_POINTER < PML4_START);
        assert!(PDE_START + 4096 <= CMDLINE_START);
        assert!(CMDLINE_START + CMDLINE_MAX_SIZE as u64 <= EBDA_START);
        assert!(KVM_IDENTITY_MAP_ADDRESS > APIC_START);
        assert!(KVM_TSS_ADDRESS + 3 * 4096 <= MMIO_GAP_END);
    };
}
