//! The host side of a disk: a raw image file (or block device), opened and checked before the
//! VM is built, and the I/O between it and guest memory.
//!
//! Data moves directly between the file and guest memory (one `preadv(2)`/`pwritev(2)` per
//! request on the mapped guest pages, see [`super::iov`]): no buffer sized by the guest.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};
use vm_memory::GuestMemoryError;

use super::iov::{transfer, Direction};
use super::request::{Segment, ID_BYTES, SECTOR_SIZE};
use crate::config::DiskConfig;
use crate::kvm::memory::GuestMem;

/// Why a disk image cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// open(2) failed (missing, no permission, ...).
    #[error("{0}")]
    Open(io::Error),
    /// The path is a directory.
    #[error("it is a directory")]
    Directory,
    /// Neither a regular file nor a block device.
    #[error("not a regular file or block device")]
    NotAFile,
    /// Its size cannot be read.
    #[error("cannot read its size: {0}")]
    Size(io::Error),
    /// Another process holds a conflicting lock (e.g. another VMM uses it read-write).
    #[error("it is in use by another process (locked): {0}")]
    Locked(nix::Error),
}

/// An open disk image.
#[derive(Debug)]
pub struct DiskImage {
    file: Flock<File>,
    capacity: u64,
    read_only: bool,
    serial: [u8; ID_BYTES],
}

impl DiskImage {
    /// Opens `config.path` (read-only with `config.read_only`), takes an advisory lock
    /// (shared when read-only, exclusive otherwise) and computes the capacity in sectors, a
    /// size that is not a multiple of 512 being rounded down (with a warning).
    pub fn open(config: &DiskConfig) -> Result<DiskImage, DiskError> {
        let path = &config.path;
        let mut file = OpenOptions::new()
            .read(true)
            .write(!config.read_only)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EISDIR) => DiskError::Directory,
                _ => DiskError::Open(e),
            })?;
        let ft = file.metadata().map_err(DiskError::Size)?.file_type();
        if ft.is_dir() {
            return Err(DiskError::Directory);
        }
        if !ft.is_file() && !ft.is_block_device() {
            return Err(DiskError::NotAFile);
        }
        // The end offset works for block devices too (their metadata size is 0).
        let size = file.seek(SeekFrom::End(0)).map_err(DiskError::Size)?;
        let how = if config.read_only {
            FlockArg::LockSharedNonblock
        } else {
            FlockArg::LockExclusiveNonblock
        };
        let file = Flock::lock(file, how).map_err(|(_, e)| DiskError::Locked(e))?;
        let capacity = size / SECTOR_SIZE;
        if !size.is_multiple_of(SECTOR_SIZE) {
            tracing::warn!(
                "disk image {}: size {size} is not a multiple of 512; the guest sees {capacity} \
                 sectors ({} bytes), the last {} bytes are not accessible",
                path.display(),
                capacity * SECTOR_SIZE,
                size % SECTOR_SIZE
            );
        }
        Ok(DiskImage {
            file,
            capacity,
            read_only: config.read_only,
            serial: serial_from_path(path),
        })
    }

    /// Capacity in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Whether the guest may only read.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// The serial answered to GET_ID (zero padded).
    pub fn serial(&self) -> &[u8; ID_BYTES] {
        &self.serial
    }

    /// A handle for the device thread (same open file, same lock).
    pub fn handle(&self) -> io::Result<DiskIo> {
        Ok(DiskIo {
            file: self.file.try_clone()?,
            read_only: self.read_only,
        })
    }
}

/// The serial: the image's file name, cut to 20 bytes, bytes other than printable ASCII
/// replaced by `_`.
pub fn serial_from_path(path: &Path) -> [u8; ID_BYTES] {
    let mut id = [0u8; ID_BYTES];
    let name = path
        .file_name()
        .map(|n| n.as_encoded_bytes())
        .unwrap_or(b"");
    for (dst, &b) in id.iter_mut().zip(name) {
        *dst = if b.is_ascii_graphic() { b } else { b'_' };
    }
    id
}

/// An I/O failure on the host side of a request.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The disk is read-only.
    #[error("write to a read-only disk")]
    ReadOnly,
    /// The image file failed (or ended early).
    #[error("disk image I/O")]
    File(#[from] io::Error),
    /// Guest memory access failed (checked before, so this means the file failed mid-way).
    #[error("guest memory")]
    Memory(#[from] GuestMemoryError),
}

/// The device thread's access to the image. Requests are validated before they get here.
#[derive(Debug)]
pub struct DiskIo {
    file: File,
    read_only: bool,
}

impl DiskIo {
    /// Reads from byte `offset` of the image into the guest buffers `data`.
    pub fn read(&mut self, mem: &GuestMem, offset: u64, data: &[Segment]) -> Result<(), IoError> {
        transfer(&self.file, mem, offset, data, Direction::Read)
    }

    /// Writes the guest buffers `data` at byte `offset` of the image.
    pub fn write(&mut self, mem: &GuestMem, offset: u64, data: &[Segment]) -> Result<(), IoError> {
        if self.read_only {
            return Err(IoError::ReadOnly);
        }
        transfer(&self.file, mem, offset, data, Direction::Write)
    }

    /// Makes completed writes durable (fdatasync). Nothing to do on a read-only disk.
    pub fn flush(&mut self) -> Result<(), IoError> {
        if !self.read_only {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn temp(name: &str, size: usize) -> PathBuf {
        let p = std::env::temp_dir().join(format!("spblk-{}-{name}", std::process::id()));
        std::fs::write(&p, vec![7u8; size]).unwrap();
        p
    }

    fn cfg(path: &Path, read_only: bool) -> DiskConfig {
        DiskConfig {
            path: path.into(),
            read_only,
        }
    }

    #[test]
    fn capacity_rounds_down() {
        let p = temp("odd", 4096 + 100);
        let d = DiskImage::open(&cfg(&p, true)).unwrap();
        assert_eq!(d.capacity(), 8);
        assert!(d.read_only());
        drop(d);
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn open_errors_are_clear() {
        let e = DiskImage::open(&cfg(Path::new("/nonexistent/disk.img"), false)).unwrap_err();
        assert!(e.to_string().contains("No such file"), "{e}");
        let e = DiskImage::open(&cfg(&std::env::temp_dir(), true)).unwrap_err();
        assert_eq!(e.to_string(), "it is a directory");
        let e = DiskImage::open(&cfg(Path::new("/dev/null"), true)).unwrap_err();
        assert_eq!(e.to_string(), "not a regular file or block device");
    }

    #[test]
    fn read_write_lock_conflicts() {
        let p = temp("lock", 1024);
        let rw = DiskImage::open(&cfg(&p, false)).unwrap();
        let e = DiskImage::open(&cfg(&p, true)).unwrap_err();
        assert!(e.to_string().contains("in use by another process"), "{e}");
        drop(rw);
        let ro1 = DiskImage::open(&cfg(&p, true)).unwrap();
        let _ro2 = DiskImage::open(&cfg(&p, true)).unwrap();
        assert!(DiskImage::open(&cfg(&p, false)).is_err());
        drop(ro1);
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn serial_is_the_file_name() {
        let s = serial_from_path(Path::new("/var/lib/rootfs.img"));
        assert_eq!(&s[..10], b"rootfs.img");
        assert!(s[10..].iter().all(|&b| b == 0));
        let s = serial_from_path(Path::new("/a/a-very-long-disk-image-name.raw"));
        assert_eq!(&s, b"a-very-long-disk-ima");
        let s = serial_from_path(Path::new("/x/d isk\u{e9}"));
        assert_eq!(&s[..7], b"d_isk__");
    }
}
