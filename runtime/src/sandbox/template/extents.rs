//! The data extents of a sparse file (SEEK_DATA / SEEK_HOLE): where a template's memory, or a
//! VM's, holds pages; holes were never written.
use std::fs::File;

/// `file`'s data extents below `len`, as `(start, end)` byte offsets, in order.
pub fn data_extents(file: &File, len: u64) -> std::io::Result<Vec<(u64, u64)>> {
    use rustix::fs::SeekFrom as At;
    let mut extents = Vec::new();
    let mut pos = 0u64;
    while pos < len {
        let start = match rustix::fs::seek(file, At::Data(pos)) {
            Ok(s) if s < len => s,
            Ok(_) | Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(e.into()),
        };
        let end = rustix::fs::seek(file, At::Hole(start))?.min(len);
        if end <= start {
            break;
        }
        extents.push((start, end));
        pos = end;
    }
    Ok(extents)
}
