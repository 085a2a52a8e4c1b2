//! The boot GDT and the KVM segment descriptors derived from it.

use kvm_bindings::kvm_segment;
use vm_memory::{Bytes, GuestAddress, GuestMemory};

use super::layout::{BOOT_GDT_START, BOOT_IDT_START};
use super::BootError;

/// Access/flags of the 64-bit code segment (present, DPL 0, code exec/read, L=1, G=1).
pub const CODE64_FLAGS: u16 = 0xa09b;
/// Access/flags of the data segment (present, DPL 0, data read/write, D/B=1, G=1).
pub const DATA_FLAGS: u16 = 0xc093;
/// Access/flags of the TSS (present, 64-bit busy TSS, G=1).
pub const TSS_FLAGS: u16 = 0x808b;

/// Entries of the boot GDT.
pub const BOOT_GDT_LEN: u16 = 4;
/// GDTR limit of the boot GDT (its size in bytes minus one).
pub const BOOT_GDT_LIMIT: u16 = 8 * BOOT_GDT_LEN - 1;
/// IDTR limit of the boot IDT: one (empty) 8-byte entry.
pub const BOOT_IDT_LIMIT: u16 = 8 - 1;

/// The boot GDT: null, code, data, TSS.
pub fn boot_gdt() -> [u64; BOOT_GDT_LEN as usize] {
    [
        gdt_entry(0, 0, 0),
        gdt_entry(CODE64_FLAGS, 0, 0xfffff),
        gdt_entry(DATA_FLAGS, 0, 0xfffff),
        gdt_entry(TSS_FLAGS, 0, 0xfffff),
    ]
}

/// Encodes a segment descriptor. `flags` holds the access byte in bits 0-7 and the G/DB/L/AVL
/// nibble in bits 12-15, as in Linux's `GDT_ENTRY`.
pub fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((u64::from(base) & 0xff00_0000) << (56 - 24))
        | ((u64::from(flags) & 0x0000_f0ff) << 40)
        | ((u64::from(limit) & 0x000f_0000) << (48 - 16))
        | ((u64::from(base) & 0x00ff_ffff) << 16)
        | (u64::from(limit) & 0x0000_ffff)
}

fn bit(entry: u64, n: u32) -> u8 {
    ((entry >> n) & 1) as u8
}

/// Decodes a GDT entry into the segment register state KVM expects, with selector
/// `index * 8`.
pub fn segment_from_gdt(entry: u64, index: u8) -> kvm_segment {
    let base = ((entry & 0xff00_0000_0000_0000) >> 32)
        | ((entry & 0x0000_00ff_0000_0000) >> 16)
        | ((entry & 0x0000_0000_ffff_0000) >> 16);
    let raw_limit = ((entry >> 32) & 0x000f_0000) as u32 | (entry & 0xffff) as u32;
    let g = bit(entry, 55);
    let limit = if g == 1 {
        (raw_limit << 12) | 0xfff
    } else {
        raw_limit
    };
    let present = bit(entry, 47);
    kvm_segment {
        base,
        limit,
        selector: u16::from(index) * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 0x3) as u8,
        db: bit(entry, 54),
        s: bit(entry, 44),
        l: bit(entry, 53),
        g,
        avl: bit(entry, 52),
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

/// Writes the boot GDT and an empty IDT into guest memory.
pub fn write_gdt_idt<M: GuestMemory>(mem: &M) -> Result<(), BootError> {
    for (i, entry) in boot_gdt().iter().enumerate() {
        mem.write_obj(*entry, GuestAddress(BOOT_GDT_START + 8 * i as u64))
            .map_err(BootError::write("GDT"))?;
    }
    mem.write_obj(0u64, GuestAddress(BOOT_IDT_START))
        .map_err(BootError::write("IDT"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_linux() {
        // Values from Firecracker / Linux GDT_ENTRY for the same flags.
        assert_eq!(gdt_entry(0, 0, 0), 0);
        assert_eq!(gdt_entry(CODE64_FLAGS, 0, 0xfffff), 0x00af_9b00_0000_ffff);
        assert_eq!(gdt_entry(DATA_FLAGS, 0, 0xfffff), 0x00cf_9300_0000_ffff);
        assert_eq!(gdt_entry(TSS_FLAGS, 0, 0xfffff), 0x008f_8b00_0000_ffff);
        assert_eq!(
            gdt_entry(0x0093, 0x1234_5678, 0xabcde),
            0x120a_9334_5678_bcde
        );
    }

    #[test]
    fn decodes_code_segment() {
        let s = segment_from_gdt(boot_gdt()[1], 1);
        assert_eq!(s.selector, 0x8);
        assert_eq!(s.base, 0);
        assert_eq!(s.limit, 0xffff_ffff);
        assert_eq!((s.type_, s.present, s.dpl, s.s), (0xb, 1, 0, 1));
        assert_eq!((s.l, s.db, s.g, s.avl, s.unusable), (1, 0, 1, 0, 0));
    }

    #[test]
    fn decodes_data_and_tss() {
        let d = segment_from_gdt(boot_gdt()[2], 2);
        assert_eq!((d.selector, d.type_, d.db, d.l, d.s), (0x10, 0x3, 1, 0, 1));
        let t = segment_from_gdt(boot_gdt()[3], 3);
        assert_eq!((t.selector, t.type_, t.s, t.present), (0x18, 0xb, 0, 1));
        let null = segment_from_gdt(0, 0);
        assert_eq!(null.unusable, 1);
    }

    #[test]
    fn base_round_trips() {
        let e = gdt_entry(0x0093, 0xdead_beef, 0x12345);
        let s = segment_from_gdt(e, 5);
        assert_eq!(s.base, 0xdead_beef);
        assert_eq!(s.limit, 0x12345);
        assert_eq!(s.selector, 40);
    }
}
