//! Identity-mapped boot page tables: the first 1 GiB with 2 MiB pages.

use vm_memory::{Bytes, GuestAddress, GuestMemory};

use super::layout::{PDE_START, PDPTE_START, PML4_START};
use super::BootError;

/// Present | writable.
const PAGE_PRESENT_RW: u64 = 0x3;
/// Present | writable | page size (2 MiB page).
const PAGE_PRESENT_RW_PS: u64 = 0x83;

/// The three page-table pages (PML4, PDPT, PD) as 512 entries each.
pub fn boot_page_tables() -> [[u64; 512]; 3] {
    let mut pml4 = [0u64; 512];
    let mut pdpte = [0u64; 512];
    let mut pde = [0u64; 512];
    pml4[0] = PDPTE_START | PAGE_PRESENT_RW;
    pdpte[0] = PDE_START | PAGE_PRESENT_RW;
    for (i, e) in pde.iter_mut().enumerate() {
        *e = ((i as u64) << 21) | PAGE_PRESENT_RW_PS;
    }
    [pml4, pdpte, pde]
}

/// Writes the page tables and returns the CR3 value (the PML4 address).
pub fn write_page_tables<M: GuestMemory>(mem: &M) -> Result<u64, BootError> {
    let tables = boot_page_tables();
    for (table, start) in tables.iter().zip([PML4_START, PDPTE_START, PDE_START]) {
        let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_le_bytes()).collect();
        mem.write_slice(&bytes, GuestAddress(start))
            .map_err(BootError::write("page tables"))?;
    }
    Ok(PML4_START)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn maps_first_gib_identity() {
        let [pml4, pdpte, pde] = boot_page_tables();
        assert_eq!(pml4[0], 0xa003);
        assert!(pml4[1..].iter().all(|&e| e == 0));
        assert_eq!(pdpte[0], 0xb003);
        assert!(pdpte[1..].iter().all(|&e| e == 0));
        assert_eq!(pde[0], 0x83);
        assert_eq!(pde[1], 0x20_0083);
        assert_eq!(pde[511], (511 << 21) | 0x83);
        // Address 0x3fe0_1234 resolves to itself.
        let va: u64 = 0x3fe0_1234;
        let pd = pde[((va >> 21) & 0x1ff) as usize];
        assert_eq!((pd & !0x1f_ffff & !0xfff) | (va & 0x1f_ffff), va);
    }

    #[test]
    fn written_to_memory() {
        let mem: GuestMemoryMmap =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        assert_eq!(write_page_tables(&mem).unwrap(), 0x9000);
        assert_eq!(mem.read_obj::<u64>(GuestAddress(0x9000)).unwrap(), 0xa003);
        assert_eq!(mem.read_obj::<u64>(GuestAddress(0xa000)).unwrap(), 0xb003);
        assert_eq!(
            mem.read_obj::<u64>(GuestAddress(0xb000 + 8 * 3)).unwrap(),
            (3 << 21) | 0x83
        );
    }

    #[test]
    fn fails_cleanly_without_memory() {
        let mem: GuestMemoryMmap =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x9000)]).unwrap();
        assert!(write_page_tables(&mem).is_err());
    }
}
