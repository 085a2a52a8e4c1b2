//! Guest RAM: one memfd (so vhost-user back ends can map it later) split into regions around
//! the 32-bit MMIO gap, mapped with vm-memory and registered with KVM.

use std::fs::File;
use std::sync::Arc;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use nix::sys::memfd::{memfd_create, MFdFlags};
use vm_memory::{FileOffset, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::arch::x86_64::layout::ram_regions;

/// Guest memory type used throughout the VMM.
pub type GuestMem = GuestMemoryMmap<()>;

/// Errors creating guest memory.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// memfd_create failed.
    #[error("cannot create the guest memory file: {0}")]
    Memfd(nix::Error),
    /// ftruncate failed.
    #[error("cannot size the guest memory file to {size} bytes")]
    Truncate {
        /// Requested size.
        size: u64,
        /// Error.
        source: std::io::Error,
    },
    /// fstat of a prepared memory file failed.
    #[error("cannot read the guest memory file's length: {0}")]
    Stat(std::io::Error),
    /// A prepared memory file of another length than the VM's memory.
    #[error("a guest memory file of {len} bytes, the VM has {want}")]
    Size {
        /// The file's length.
        len: u64,
        /// The VM's memory size.
        want: u64,
    },
    /// mmap failed.
    #[error("cannot map guest memory")]
    Mmap(#[from] vm_memory::mmap::FromRangesError),
    /// A region larger than this host's address space.
    #[error("guest memory of {0} bytes does not fit the address space")]
    TooLarge(u64),
    /// madvise(MADV_DONTDUMP) failed.
    #[error("cannot keep guest memory out of core dumps: {0}")]
    DontDump(std::io::Error),
    /// KVM_SET_USER_MEMORY_REGION failed.
    #[error("cannot register guest memory with KVM: {0}")]
    Register(kvm_ioctls::Error),
}

/// Creates `mem_size` bytes of guest RAM backed by a memfd, left out of core dumps
/// (MADV_DONTDUMP).
pub fn create_guest_memory(mem_size: u64) -> Result<GuestMem, MemoryError> {
    let fd =
        memfd_create(c"sandpod-guest-ram", MFdFlags::MFD_CLOEXEC).map_err(MemoryError::Memfd)?;
    let file = File::from(fd);
    file.set_len(mem_size)
        .map_err(|source| MemoryError::Truncate {
            size: mem_size,
            source,
        })?;
    map_guest_memory(file, mem_size)
}

/// Maps `file` (exactly `mem_size` bytes long, open for reading and writing) shared as guest
/// RAM, as [`create_guest_memory`] maps its memfd: a file prepared with the guest's memory in
/// it, which becomes this VM's own.
pub fn map_guest_memory(file: File, mem_size: u64) -> Result<GuestMem, MemoryError> {
    let len = file.metadata().map_err(MemoryError::Stat)?.len();
    if len != mem_size {
        return Err(MemoryError::Size {
            len,
            want: mem_size,
        });
    }
    let file = Arc::new(file);
    let ranges = ram_regions(mem_size)
        .into_iter()
        .map(|r| {
            let size = usize::try_from(r.size).map_err(|_| MemoryError::TooLarge(mem_size))?;
            let offset = FileOffset::from_arc(file.clone(), r.file_offset);
            Ok((r.guest, size, Some(offset)))
        })
        .collect::<Result<Vec<_>, MemoryError>>()?;
    let mem = GuestMemoryMmap::from_ranges_with_files(ranges)?;
    for region in mem.iter() {
        let len = usize::try_from(region.len()).map_err(|_| MemoryError::TooLarge(mem_size))?;
        crate::seccomp::dump::dont_dump(region.as_ptr(), len).map_err(MemoryError::DontDump)?;
    }
    Ok(mem)
}

/// A range of guest physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRange {
    /// First byte.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
}

const PAGE_SIZE: u64 = 4096;

/// The guest memory file behind `len` bytes at guest address `addr`, and the file offset of
/// `addr`: the range must lie inside one region (every region maps the one memfd).
fn memory_file_range(mem: &GuestMem, addr: u64, len: u64) -> std::io::Result<(&File, u64)> {
    let invalid =
        |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, why.to_string());
    let end = addr
        .checked_add(len)
        .ok_or_else(|| invalid("range past the address space"))?;
    let region = mem
        .find_region(vm_memory::GuestAddress(addr))
        .ok_or_else(|| invalid("range outside guest memory"))?;
    let region_start = region.start_addr().0;
    if end > region_start + region.len() {
        return Err(invalid("range across guest memory regions"));
    }
    let file = region
        .file_offset()
        .ok_or_else(|| invalid("guest memory without a file"))?;
    Ok((file.file(), file.start() + (addr - region_start)))
}

/// Gives the host back the whole pages inside `range`: a hole punched in the guest memory file,
/// so every mapping of it (the VMM's, KVM's, a vhost-user back end's) drops those pages and the
/// guest reads zeros there afterwards. Only for memory the guest will not use again (see
/// [`crate::loader::retained_initrd`]). Returns the bytes released.
pub fn discard(mem: &GuestMem, range: GuestRange) -> std::io::Result<u64> {
    let invalid =
        |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, why.to_string());
    let start = range.addr.div_ceil(PAGE_SIZE) * PAGE_SIZE;
    let end = range
        .addr
        .checked_add(range.len)
        .ok_or_else(|| invalid("range past the address space"))?
        / PAGE_SIZE
        * PAGE_SIZE;
    if end <= start {
        return Ok(0);
    }
    let (file, offset) = memory_file_range(mem, start, end - start)?;
    let (offset, len) = match (i64::try_from(offset), i64::try_from(end - start)) {
        (Ok(o), Ok(l)) => (o, l),
        _ => return Err(invalid("range too large")),
    };
    nix::fcntl::fallocate(
        file,
        nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
            | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
        offset,
        len,
    )?;
    Ok(end - start)
}

/// Copies `len` bytes of `from` at `from_offset` to `to` at `to_offset`, file to file in the
/// kernel (`std::io::copy` between files: copy_file_range, else sendfile), never through a
/// mapping. Into the guest memory file that spares a page fault per page and the zeroing of a
/// page about to be overwritten, which a read into the VMM's mapping of fresh memory costs.
/// Moves both files' positions (a guest memory file's position is used by nothing else: its
/// users map it or read it at offsets). Fails if `from` ends first.
pub fn copy_between_files(
    from: &File,
    from_offset: u64,
    to: &File,
    to_offset: u64,
    len: u64,
) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let (mut from, mut to) = (from, to);
    from.seek(SeekFrom::Start(from_offset))?;
    to.seek(SeekFrom::Start(to_offset))?;
    let n = std::io::copy(&mut from.take(len), &mut to)?;
    if n != len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("{n} of {len} bytes: the file ends first"),
        ));
    }
    Ok(())
}

/// Copies `len` bytes of `file` at `offset` into guest memory at guest address `addr` (inside
/// one region) with [`copy_between_files`]: how the initrd is loaded (the kernel's segments
/// stay with linux-loader: copying them this way measured no faster).
pub fn fill_from_file(
    mem: &GuestMem,
    addr: u64,
    file: &File,
    offset: u64,
    len: u64,
) -> std::io::Result<()> {
    let (memfd, memfd_offset) = memory_file_range(mem, addr, len)?;
    copy_between_files(file, offset, memfd, memfd_offset, len)
}

/// Registers every region of `mem` with the VM, one memory slot each.
pub fn register_guest_memory(vm: &VmFd, mem: &GuestMem) -> Result<(), MemoryError> {
    for (slot, region) in (0u32..).zip(mem.iter()) {
        let kvm_region = kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
        };
        // SAFETY: the region is a live mapping of `memory_size` bytes owned by `mem`, which the
        // VM keeps alive (and unchanged) for as long as the VM fd exists; slots do not overlap.
        unsafe { vm.set_user_memory_region(kvm_region) }.map_err(MemoryError::Register)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestAddress};

    #[test]
    fn memfd_backed_memory() {
        let mem = create_guest_memory(16 << 20).unwrap();
        assert_eq!(mem.num_regions(), 1);
        let r = mem.find_region(GuestAddress(0)).unwrap();
        assert!(r.file_offset().is_some());
        mem.write_obj(0xdead_beefu32, GuestAddress(0x1000)).unwrap();
        assert_eq!(
            mem.read_obj::<u32>(GuestAddress(0x1000)).unwrap(),
            0xdead_beef
        );
        // Left out of core dumps: VmFlags "dd" in smaps.
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let start = format!("\n{:x}-", r.as_ptr() as usize);
        let entry = smaps.split_once(start.as_str()).unwrap().1;
        let flags = entry.lines().find(|l| l.starts_with("VmFlags:")).unwrap();
        assert!(flags.split_whitespace().any(|f| f == "dd"), "{flags}");
        // Out-of-range accesses are errors, not crashes.
        assert!(mem.read_obj::<u32>(GuestAddress(16 << 20)).is_err());
    }

    /// KiB the memory file holds (its allocated 512-byte blocks).
    fn resident_kib(mem: &GuestMem) -> u64 {
        let r = mem.find_region(GuestAddress(0)).unwrap();
        let meta = r.file_offset().unwrap().file().metadata().unwrap();
        std::os::unix::fs::MetadataExt::blocks(&meta) / 2
    }

    #[test]
    fn discard_releases_whole_pages_inside_the_range_only() {
        let mem = create_guest_memory(16 << 20).unwrap();
        let data = vec![0xabu8; 64 << 10];
        mem.write_slice(&data, GuestAddress(0x10_0000)).unwrap();
        assert_eq!(resident_kib(&mem), 64);
        // Not page-aligned: the partial pages at both ends stay.
        let n = discard(
            &mem,
            GuestRange {
                addr: 0x10_0000 + 100,
                len: (64 << 10) - 200,
            },
        )
        .unwrap();
        assert_eq!(n, 14 * 4096);
        assert_eq!(resident_kib(&mem), 8);
        assert_eq!(
            mem.read_obj::<u8>(GuestAddress(0x10_0000 + 99)).unwrap(),
            0xab
        );
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x10_1000)).unwrap(), 0);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x10_f000)).unwrap(), 0xab);
        // Less than a page: nothing.
        let tiny = GuestRange {
            addr: 0x10_0001,
            len: 4096,
        };
        assert_eq!(discard(&mem, tiny).unwrap(), 0);
        // Outside memory, or wrapping: errors.
        for bad in [
            GuestRange {
                addr: 16 << 20,
                len: 1 << 20,
            },
            GuestRange {
                addr: (15 << 20) + 4096,
                len: 2 << 20,
            },
            GuestRange {
                addr: u64::MAX - 4096,
                len: 8192,
            },
        ] {
            assert!(discard(&mem, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn memory_above_the_gap_shares_one_file() {
        // Sparse: nothing is allocated until touched.
        let mem = create_guest_memory(4 << 30).unwrap();
        assert_eq!(mem.num_regions(), 2);
        let high = mem.find_region(GuestAddress(1 << 32)).unwrap();
        assert_eq!(high.len(), 1 << 30);
        assert_eq!(high.file_offset().unwrap().start(), 3 << 30);
        // The MMIO gap is not RAM.
        assert!(mem.find_region(GuestAddress(0xd000_0000)).is_none());
        mem.write_obj(7u8, GuestAddress((1 << 32) + 5)).unwrap();
        assert_eq!(mem.read_obj::<u8>(GuestAddress((1 << 32) + 5)).unwrap(), 7);
    }

    #[test]
    fn fill_from_file_copies_at_the_guest_address_and_checks_its_bounds() {
        let mem = create_guest_memory(16 << 20).unwrap();
        let path = std::env::temp_dir().join(format!("sandpod-fill-{}", std::process::id()));
        let data: Vec<u8> = (0..3 * 4096 + 100u32)
            .map(|i| (i % 251) as u8 + 1)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        // The file from byte 100 on, at an address that is not page-aligned.
        fill_from_file(&mem, 0x20_0010, &file, 100, 3 * 4096).unwrap();
        let mut back = vec![0u8; 3 * 4096];
        mem.read_slice(&mut back, GuestAddress(0x20_0010)).unwrap();
        assert_eq!(back, data[100..]);
        // Its neighbours are untouched.
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x20_000f)).unwrap(), 0);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x20_3010)).unwrap(), 0);
        // More than the file holds; past guest memory; wrapping.
        assert!(fill_from_file(&mem, 0x40_0000, &file, 100, 4 * 4096).is_err());
        assert!(fill_from_file(&mem, (16 << 20) - 4096, &file, 0, 8192).is_err());
        assert!(fill_from_file(&mem, u64::MAX - 10, &file, 0, 100).is_err());
    }
}
