//! The Linux zero page (`boot_params`) with its e820 memory map, and initrd placement.

use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use vm_memory::{GuestAddress, GuestMemoryBackend};

use super::layout::{
    addr32, low_ram_end, CMDLINE_START, EBDA_START, HIMEM_START, INITRD_ADDR_MAX, MMIO_GAP_END,
    MMIO_GAP_START, ZERO_PAGE_START,
};
use super::BootError;

/// `boot_flag` magic.
pub const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
/// `header` magic: "HdrS".
pub const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
/// `type_of_loader`: undefined/other boot loader.
pub const KERNEL_LOADER_OTHER: u8 = 0xff;
/// `kernel_alignment`: 16 MiB.
pub const KERNEL_MIN_ALIGNMENT_BYTES: u32 = 0x100_0000;
/// e820 usable RAM.
pub const E820_RAM: u32 = 1;
/// e820 reserved.
pub const E820_RESERVED: u32 = 2;
/// Entries the zero page can hold.
const E820_MAX_ENTRIES: usize = 128;
const PAGE_SIZE: u64 = 4096;

/// One e820 entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    /// Start address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Type (1 = RAM, 2 = reserved).
    pub kind: u32,
}

/// The e820 map for a guest with `mem_size` bytes of RAM: low RAM up to the EBDA, the
/// EBDA/VGA/BIOS area reserved, RAM from 1 MiB up to the MMIO gap, and RAM above 4 GiB.
pub fn e820_map(mem_size: u64) -> Vec<E820Entry> {
    let mut map = vec![
        E820Entry {
            addr: 0,
            size: EBDA_START,
            kind: E820_RAM,
        },
        E820Entry {
            addr: EBDA_START,
            size: HIMEM_START - EBDA_START,
            kind: E820_RESERVED,
        },
    ];
    let low_end = low_ram_end(mem_size);
    if low_end > HIMEM_START {
        map.push(E820Entry {
            addr: HIMEM_START,
            size: low_end - HIMEM_START,
            kind: E820_RAM,
        });
    }
    if mem_size > MMIO_GAP_START {
        map.push(E820Entry {
            addr: MMIO_GAP_END,
            size: mem_size - MMIO_GAP_START,
            kind: E820_RAM,
        });
    }
    map
}

/// Where to put an initrd of `size` bytes: page-aligned, as high as possible below the top of
/// low RAM (and Linux's `initrd_addr_max`), and above `kernel_end`.
pub fn initrd_address(mem_size: u64, kernel_end: u64, size: u64) -> Result<u64, BootError> {
    let top = low_ram_end(mem_size).min(INITRD_ADDR_MAX + 1);
    let floor = kernel_end.div_ceil(PAGE_SIZE) * PAGE_SIZE;
    let avail = top.saturating_sub(floor);
    if size > avail {
        return Err(BootError::InitrdTooLarge { size, avail });
    }
    Ok((top - size) & !(PAGE_SIZE - 1))
}

/// Initrd location in guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitrdInfo {
    /// Guest physical address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
}

/// The command line's address, in the zero page's 32-bit field.
const CMDLINE_PTR: u32 = addr32(CMDLINE_START);

fn field32(what: &'static str, value: u64) -> Result<u32, BootError> {
    u32::try_from(value).map_err(|_| BootError::FieldTooLarge { what, value })
}

/// Builds the zero page.
pub fn build_boot_params(
    mem_size: u64,
    cmdline_size: usize,
    initrd: Option<InitrdInfo>,
) -> Result<boot_params, BootError> {
    let mut params = boot_params::default();
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT_BYTES;
    params.hdr.cmd_line_ptr = CMDLINE_PTR;
    params.hdr.cmdline_size =
        u32::try_from(cmdline_size).map_err(|_| BootError::FieldTooLarge {
            what: "command line size",
            value: cmdline_size as u64,
        })?;
    if let Some(initrd) = initrd {
        // initrd_address keeps both below 2 GiB, so they fit the 32-bit fields.
        params.hdr.ramdisk_image = field32("initrd address", initrd.addr)?;
        params.hdr.ramdisk_size = field32("initrd size", initrd.size)?;
    }
    let map = e820_map(mem_size);
    let entries = u8::try_from(map.len())
        .ok()
        .filter(|&n| usize::from(n) <= E820_MAX_ENTRIES)
        .ok_or(BootError::TooManyE820Entries(map.len()))?;
    for (i, e) in map.iter().enumerate() {
        params.e820_table[i] = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind,
        };
    }
    params.e820_entries = entries;
    Ok(params)
}

/// Writes the zero page at [`ZERO_PAGE_START`] and returns its address.
pub fn write_boot_params<M: GuestMemoryBackend>(
    mem: &M,
    params: &boot_params,
) -> Result<GuestAddress, BootError> {
    let addr = GuestAddress(ZERO_PAGE_START);
    LinuxBootConfigurator::write_bootparams::<M>(&BootParams::new(params, addr), mem).map_err(
        |_| BootError::Write {
            what: "zero page",
            source: vm_memory::GuestMemoryError::InvalidGuestAddress(addr),
        },
    )?;
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestMemoryMmap};

    #[test]
    fn e820_small_guest() {
        let m = e820_map(128 << 20);
        assert_eq!(
            m,
            vec![
                E820Entry {
                    addr: 0,
                    size: 0x9fc00,
                    kind: 1
                },
                E820Entry {
                    addr: 0x9fc00,
                    size: 0x60400,
                    kind: 2
                },
                E820Entry {
                    addr: 0x10_0000,
                    size: (128 << 20) - 0x10_0000,
                    kind: 1
                },
            ]
        );
    }

    #[test]
    fn e820_large_guest_has_high_ram() {
        let m = e820_map(6 << 30);
        assert_eq!(m.len(), 4);
        assert_eq!(m[2].addr + m[2].size, MMIO_GAP_START);
        assert_eq!(
            m[3],
            E820Entry {
                addr: 1 << 32,
                size: (6 << 30) - MMIO_GAP_START,
                kind: 1
            }
        );
        let ram: u64 = m.iter().filter(|e| e.kind == 1).map(|e| e.size).sum();
        assert_eq!(ram, (6 << 30) - (HIMEM_START - EBDA_START));
    }

    #[test]
    fn initrd_goes_high_and_aligned() {
        let mem = 128u64 << 20;
        let a = initrd_address(mem, 0x200_0000, 1_000_001).unwrap();
        assert_eq!(a % 4096, 0);
        assert!(a + 1_000_001 <= mem);
        assert!(a >= 0x200_0000);
        assert_eq!(a, (mem - 1_000_001) & !0xfff);
        // Large guests keep the initrd below 2 GiB.
        let a = initrd_address(8 << 30, 0x200_0000, 4096).unwrap();
        assert_eq!(a + 4096, 0x8000_0000);
    }

    #[test]
    fn initrd_too_large_is_an_error() {
        let err = initrd_address(64 << 20, 0x300_0000, 64 << 20).unwrap_err();
        assert!(matches!(err, BootError::InitrdTooLarge { avail, .. } if avail == (16 << 20)));
        assert!(initrd_address(64 << 20, 0x500_0000, 1).is_err());
    }

    #[test]
    fn boot_params_fields() {
        let p = build_boot_params(
            256 << 20,
            42,
            Some(InitrdInfo {
                addr: 0x0f00_0000,
                size: 1234,
            }),
        )
        .unwrap();
        let hdr = p.hdr;
        assert_eq!({ hdr.boot_flag }, 0xaa55);
        assert_eq!({ hdr.header }, 0x5372_6448);
        assert_eq!({ hdr.type_of_loader }, 0xff);
        assert_eq!({ hdr.kernel_alignment }, 0x100_0000);
        assert_eq!({ hdr.cmd_line_ptr }, 0x20000);
        assert_eq!({ hdr.cmdline_size }, 42);
        assert_eq!({ hdr.ramdisk_image }, 0x0f00_0000);
        assert_eq!({ hdr.ramdisk_size }, 1234);
        assert_eq!(p.e820_entries, 3);
        let e = p.e820_table[2];
        assert_eq!(
            ({ e.addr }, { e.size }, { e.r#type }),
            (0x10_0000, (256 << 20) - 0x10_0000, 1)
        );
    }

    #[test]
    fn fields_too_large_for_32_bits_are_errors() {
        let initrd = |addr, size| Some(InitrdInfo { addr, size });
        let e = build_boot_params(256 << 20, 42, initrd(1 << 32, 1)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the initrd address (0x100000000) does not fit its 32-bit zero page field"
        );
        let e = build_boot_params(256 << 20, 42, initrd(0, 1 << 32)).unwrap_err();
        assert!(matches!(
            e,
            BootError::FieldTooLarge {
                what: "initrd size",
                ..
            }
        ));
        let e = build_boot_params(256 << 20, usize::MAX, None).unwrap_err();
        assert!(matches!(
            e,
            BootError::FieldTooLarge {
                what: "command line size",
                ..
            }
        ));
    }

    #[test]
    fn zero_page_written_at_0x7000() {
        let mem: GuestMemoryMmap =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let p = build_boot_params(1 << 20, 1, None).unwrap();
        assert_eq!(write_boot_params(&mem, &p).unwrap(), GuestAddress(0x7000));
        // boot_flag lives at offset 0x1fe of the zero page.
        assert_eq!(
            mem.read_obj::<u16>(GuestAddress(0x7000 + 0x1fe)).unwrap(),
            0xaa55
        );
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x7000 + 0x1e8)).unwrap(), 2);
    }
}
