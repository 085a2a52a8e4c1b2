//! Guest memory in a snapshot: the guest memory file (the memfd every mapping shares) copied
//! at the same offsets into a sparse file, holding only pages that are not all zeros, and
//! copied back into a new VM's memfd on restore. The new memfd is the VM's own (a vhost-user
//! back end such as virtiofsd maps it shared, which a copy-on-write mapping of the template
//! would not allow), and only the pages the template's guest touched cost memory.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use nix::unistd::{lseek, Whence};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

use crate::kvm::memory::{copy_between_files, GuestMem};

const PAGE: usize = 4096;
/// Bytes copied per read.
const CHUNK: usize = 1 << 20;

/// What a copy moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Copied {
    /// Bytes of data written (non-zero pages).
    pub bytes: u64,
}

/// The memfd behind `mem` (all regions share it) and its size.
pub fn memory_file(mem: &GuestMem) -> std::io::Result<(&File, u64)> {
    let region = mem
        .iter()
        .next()
        .ok_or_else(|| invalid("no guest memory"))?;
    let file = region
        .file_offset()
        .ok_or_else(|| invalid("guest memory without a file"))?
        .file();
    let size = file.metadata()?.len();
    Ok((file, size))
}

fn invalid(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string())
}

/// The data extents of `file` below `size` (SEEK_DATA / SEEK_HOLE): holes were never written.
fn data_extents(file: &File, size: u64) -> std::io::Result<Vec<(u64, u64)>> {
    let mut extents = Vec::new();
    let mut pos: u64 = 0;
    while pos < size {
        let at = i64::try_from(pos).map_err(|_| invalid("offset"))?;
        let start = match lseek(file.as_fd(), at, Whence::SeekData) {
            Ok(s) => u64::try_from(s).map_err(|_| invalid("offset"))?,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(e) => return Err(e.into()),
        };
        if start >= size {
            break;
        }
        let at = i64::try_from(start).map_err(|_| invalid("offset"))?;
        let end = u64::try_from(lseek(file.as_fd(), at, Whence::SeekHole)?)
            .map_err(|_| invalid("offset"))?
            .min(size);
        extents.push((start, end));
        pos = end;
    }
    Ok(extents)
}

/// Copies the non-zero pages of `from`'s data extents (below `size`) to the same offsets of
/// `to` (both `size` bytes long): what [`save`] keeps.
fn copy_pages(from: &File, to: &File, size: u64) -> std::io::Result<Copied> {
    let mut copied = Copied::default();
    let mut buf = vec![0u8; CHUNK];
    for (start, end) in data_extents(from, size)? {
        let mut pos = start;
        while pos < end {
            let want = usize::try_from((end - pos).min(CHUNK as u64)).unwrap_or(CHUNK);
            let got = from.read_at(&mut buf[..want], pos)?;
            if got == 0 {
                return Err(invalid("memory file shorter than its size"));
            }
            let mut off = 0;
            while off < got {
                let n = PAGE.min(got - off);
                let page = &buf[off..off + n];
                if page.iter().any(|&b| b != 0) {
                    to.write_all_at(page, pos + off as u64)?;
                    copied.bytes += n as u64;
                }
                off += n;
            }
            pos += got as u64;
        }
    }
    Ok(copied)
}

/// Saves guest memory into `out` (a new, empty file).
pub fn save(mem: &GuestMem, out: &File) -> std::io::Result<Copied> {
    let (memfd, size) = memory_file(mem)?;
    out.set_len(size)?;
    let copied = copy_pages(memfd, out, size)?;
    out.sync_all()?;
    Ok(copied)
}

/// Restores `snapshot` (a memory file written by [`save`]) into `mem`, fresh from
/// `create_guest_memory`. Its length must be exactly the guest's memory size. Each data extent
/// is copied by the kernel ([`copy_between_files`]), not through a buffer here: [`save`]
/// already left out the zero pages.
pub fn restore(mem: &GuestMem, snapshot: &File) -> std::io::Result<Copied> {
    let (memfd, size) = memory_file(mem)?;
    let len = snapshot.metadata()?.len();
    if len != size {
        return Err(invalid(&format!(
            "memory file of {len} bytes, the VM has {size}"
        )));
    }
    let mut copied = Copied::default();
    let t0 = std::time::Instant::now();
    let extents = data_extents(snapshot, size)?;
    tracing::debug!(
        "memory file: {} data extents found in {} ms",
        extents.len(),
        t0.elapsed().as_millis()
    );
    for (start, end) in extents {
        copy_between_files(snapshot, start, memfd, start, end - start)?;
        copied.bytes += end - start;
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kvm::memory::create_guest_memory;
    use std::os::unix::fs::MetadataExt;
    use vm_memory::{Bytes, GuestAddress};

    /// An unlinked scratch file.
    fn temp() -> File {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("sandpod-mem-{}-{n}", std::process::id()));
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    #[test]
    fn save_keeps_only_written_pages_and_restore_brings_them_back() {
        let mem = create_guest_memory(32 << 20).unwrap();
        mem.write_obj(0x1122_3344u32, GuestAddress(0x1000)).unwrap();
        mem.write_slice(&[7u8; 3 * PAGE], GuestAddress(0x20_0000))
            .unwrap();
        // A page the guest wrote zeros to is not data.
        mem.write_slice(&[0u8; PAGE], GuestAddress(0x30_0000))
            .unwrap();
        let out = temp();
        let saved = save(&mem, &out).unwrap();
        assert_eq!(saved.bytes, 4 * PAGE as u64);
        assert_eq!(out.metadata().unwrap().len(), 32 << 20);
        assert!(out.metadata().unwrap().blocks() * 512 <= 64 * 1024);

        let back = create_guest_memory(32 << 20).unwrap();
        // (The extents restored are whole file-system blocks around the pages saved.)
        assert!(restore(&back, &out).unwrap().bytes >= 4 * PAGE as u64);
        assert_eq!(
            back.read_obj::<u32>(GuestAddress(0x1000)).unwrap(),
            0x1122_3344
        );
        let mut b = [0u8; 3 * PAGE];
        back.read_slice(&mut b, GuestAddress(0x20_0000)).unwrap();
        assert!(b.iter().all(|&x| x == 7));
        assert_eq!(back.read_obj::<u8>(GuestAddress(0x30_0000)).unwrap(), 0);
    }

    #[test]
    fn a_prepared_memory_file_becomes_the_guest_memory_as_it_is() {
        use crate::kvm::memory::map_guest_memory;
        use crate::snapshot::restore::{guest_memory, RestoreMemory};
        let f = temp();
        f.set_len(16 << 20).unwrap();
        f.write_all_at(&0x5566_7788u32.to_le_bytes(), 0x2000)
            .unwrap();
        let mem = guest_memory(RestoreMemory::Ready(f.try_clone().unwrap()), 16 << 20).unwrap();
        assert_eq!(
            mem.read_obj::<u32>(GuestAddress(0x2000)).unwrap(),
            0x5566_7788
        );
        // Shared: what the guest writes is in the file (virtiofsd maps the same).
        mem.write_obj(0xabu8, GuestAddress(0x3000)).unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, 0x3000).unwrap();
        assert_eq!(b[0], 0xab);
        for len in [0, 8 << 20, (16 << 20) + 4096] {
            let g = temp();
            g.set_len(len).unwrap();
            assert!(map_guest_memory(g, 16 << 20).is_err(), "{len}");
        }
    }

    #[test]
    fn a_memory_file_of_another_size_is_refused() {
        let mem = create_guest_memory(16 << 20).unwrap();
        for len in [0, 8 << 20, (16 << 20) + 1, 1 << 40] {
            let f = temp();
            f.set_len(len).unwrap();
            assert!(restore(&mem, &f).is_err(), "{len}");
        }
    }
}
