//! virtio-blk requests (virtio 1.2, section 5.2.6): a descriptor chain turned into a validated
//! [`Request`], or the reason it cannot be served.
//!
//! The chain is read as two byte streams, whatever the descriptor boundaries: the
//! device-readable part (a 16-byte header `{le32 type, le32 reserved, le64 sector}`, then the
//! data of a write) followed by the device-writable part (the data of a read or GET_ID, then
//! the one-byte status). Everything the guest controls is checked here: descriptor order and
//! count, every address range against guest memory, the data direction for the request type,
//! the length (multiple of 512) and the sector range against the disk's capacity, all with
//! checked arithmetic. A chain without a usable status byte cannot be answered: that is a
//! [`ChainError`] and the device must be marked broken. Anything else is answered with
//! VIRTIO_BLK_S_IOERR ([`Invalid`]) or VIRTIO_BLK_S_UNSUPP.

use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, Permissions};

use crate::kvm::memory::GuestMem;

/// Sector size: the unit of `sector` and of capacity.
pub const SECTOR_SIZE: u64 = 512;
/// Size of the request header.
pub const HEADER_SIZE: usize = 16;
/// Length of a GET_ID answer (the serial, zero padded).
pub const ID_BYTES: usize = 20;

/// Read.
pub const VIRTIO_BLK_T_IN: u32 = 0;
/// Write.
pub const VIRTIO_BLK_T_OUT: u32 = 1;
/// Flush the write cache.
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
/// Device id (serial).
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;

/// Status: done.
pub const VIRTIO_BLK_S_OK: u8 = 0;
/// Status: failed (including malformed requests).
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
/// Status: request type not supported.
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

/// One guest memory range of a descriptor (or part of one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Guest physical address.
    pub addr: GuestAddress,
    /// Length in bytes.
    pub len: u32,
}

/// A descriptor as the device sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    /// The memory range.
    pub seg: Segment,
    /// Device-writable (VIRTQ_DESC_F_WRITE).
    pub write: bool,
}

impl Desc {
    /// A descriptor from virtio-queue's.
    pub fn from_queue(d: &virtio_queue::desc::split::Descriptor) -> Self {
        Desc {
            seg: Segment {
                addr: d.addr(),
                len: d.len(),
            },
            write: d.is_write_only(),
        }
    }
}

/// What the request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// Read `data` from `sector`.
    In,
    /// Write `data` at `sector`.
    Out,
    /// Make completed writes durable.
    Flush,
    /// Write the serial to `data`.
    GetId,
    /// Any other type: answered VIRTIO_BLK_S_UNSUPP.
    Unsupported(u32),
}

/// A validated request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The operation.
    pub kind: RequestKind,
    /// First sector (In/Out).
    pub sector: u64,
    /// The data buffers: device-readable for Out, device-writable for In and GetId, inside
    /// guest memory. Empty for the other kinds.
    pub data: Vec<Segment>,
    /// Their total length (a multiple of 512 for In/Out; at most 2^32 as the chain is).
    pub data_len: u64,
}

/// A chain that cannot be answered at all: the driver broke the protocol and the device must
/// be marked broken (DEVICE_NEEDS_RESET).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    /// More descriptors than any valid request needs.
    #[error("descriptor chain longer than {0} descriptors")]
    TooLong(usize),
    /// A device-readable descriptor after a device-writable one (virtio 2.7.4.2).
    #[error("device-readable descriptor after a device-writable one")]
    ReadableAfterWritable,
    /// The chain does not end with a device-writable byte for the status.
    #[error("no device-writable status byte at the end of the chain")]
    NoStatus,
    /// The status byte is not in guest memory.
    #[error("status byte at {0:#x} is outside guest memory")]
    StatusOutsideMemory(u64),
}

/// A request answered with VIRTIO_BLK_S_IOERR.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Invalid {
    /// Fewer device-readable bytes than a header.
    #[error("{0} device-readable bytes, shorter than the 16-byte header")]
    ShortHeader(u64),
    /// A buffer outside guest memory.
    #[error("buffer {addr:#x}+{len:#x} is outside guest memory")]
    OutsideMemory {
        /// Address.
        addr: u64,
        /// Length.
        len: u32,
    },
    /// Data in the wrong direction (e.g. device-readable data on a read).
    #[error("request type {kind} with {readable} readable data bytes and {writable} writable")]
    Direction {
        /// Request type.
        kind: u32,
        /// Device-readable bytes after the header.
        readable: u64,
        /// Device-writable bytes before the status.
        writable: u64,
    },
    /// Data length not a multiple of 512.
    #[error("data length {0} is not a multiple of 512")]
    Unaligned(u64),
    /// Sector range beyond the end of the disk (or overflowing).
    #[error("sectors {sector}+{len} bytes beyond the capacity of {capacity} sectors")]
    OutOfRange {
        /// First sector.
        sector: u64,
        /// Length in bytes.
        len: u64,
        /// Capacity in sectors.
        capacity: u64,
    },
}

/// A parsed chain: where its status byte goes, and the request or why it is refused.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    /// Guest address of the status byte (checked to be in guest memory).
    pub status: GuestAddress,
    /// Bytes of the chain's device-writable part, status excluded.
    pub writable_len: u64,
    /// The request, or why it is answered IOERR.
    pub request: Result<Request, Invalid>,
}

/// Parses and validates a request made of `descs` (at most `max_descs` of them) for a disk of
/// `capacity` sectors.
pub fn parse(
    descs: &[Desc],
    max_descs: usize,
    mem: &GuestMem,
    capacity: u64,
) -> Result<Parsed, ChainError> {
    if descs.len() > max_descs {
        return Err(ChainError::TooLong(max_descs));
    }
    let first_writable = descs.iter().position(|d| d.write).unwrap_or(descs.len());
    if descs[first_writable..].iter().any(|d| !d.write) {
        return Err(ChainError::ReadableAfterWritable);
    }
    let readable: Vec<Segment> = descs[..first_writable].iter().map(|d| d.seg).collect();
    let mut writable: Vec<Segment> = descs[first_writable..].iter().map(|d| d.seg).collect();
    // The status is the last byte of the last descriptor.
    let last = writable.last_mut().ok_or(ChainError::NoStatus)?;
    let status_off = last.len.checked_sub(1).ok_or(ChainError::NoStatus)?;
    let status = last
        .addr
        .checked_add(u64::from(status_off))
        .filter(|a| mem.check_range(*a, 1, Permissions::Write))
        .ok_or(ChainError::StatusOutsideMemory(
            last.addr.0.wrapping_add(u64::from(status_off)),
        ))?;
    last.len = status_off;
    writable.retain(|s| s.len > 0);
    let writable_len = total(&writable);
    let request = validate(&readable, writable, mem, capacity);
    Ok(Parsed {
        status,
        writable_len,
        request,
    })
}

fn total(segs: &[Segment]) -> u64 {
    segs.iter().map(|s| u64::from(s.len)).sum()
}

fn validate(
    readable: &[Segment],
    writable: Vec<Segment>,
    mem: &GuestMem,
    capacity: u64,
) -> Result<Request, Invalid> {
    let readable_iter = readable.iter().map(|s| (s, Permissions::Read));
    let writable_iter = writable.iter().map(|s| (s, Permissions::Write));
    for (s, access) in readable_iter.chain(writable_iter) {
        let in_memory =
            usize::try_from(s.len).is_ok_and(|len| mem.check_range(s.addr, len, access));
        if !in_memory {
            return Err(Invalid::OutsideMemory {
                addr: s.addr.0,
                len: s.len,
            });
        }
    }
    let (header, out_data) = split_at(readable, HEADER_SIZE as u64);
    let header_len = total(&header);
    if header_len < HEADER_SIZE as u64 {
        return Err(Invalid::ShortHeader(header_len));
    }
    let mut hdr = [0u8; HEADER_SIZE];
    let mut at = 0;
    for s in &header {
        let n = s.len as usize;
        mem.read_slice(&mut hdr[at..at + n], s.addr)
            .map_err(|_| Invalid::OutsideMemory {
                addr: s.addr.0,
                len: s.len,
            })?;
        at += n;
    }
    let type_ = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
    let sector = u64::from_le_bytes([
        hdr[8], hdr[9], hdr[10], hdr[11], hdr[12], hdr[13], hdr[14], hdr[15],
    ]);
    let (readable_len, writable_len) = (total(&out_data), total(&writable));
    let direction = Invalid::Direction {
        kind: type_,
        readable: readable_len,
        writable: writable_len,
    };
    let (kind, data) = match type_ {
        VIRTIO_BLK_T_IN if readable_len == 0 => (RequestKind::In, writable),
        VIRTIO_BLK_T_OUT if writable_len == 0 => (RequestKind::Out, out_data),
        VIRTIO_BLK_T_GET_ID if readable_len == 0 => (RequestKind::GetId, writable),
        VIRTIO_BLK_T_FLUSH => (RequestKind::Flush, Vec::new()),
        VIRTIO_BLK_T_IN | VIRTIO_BLK_T_OUT | VIRTIO_BLK_T_GET_ID => return Err(direction),
        other => (RequestKind::Unsupported(other), Vec::new()),
    };
    let data_len = total(&data);
    if matches!(kind, RequestKind::In | RequestKind::Out) {
        if !data_len.is_multiple_of(SECTOR_SIZE) {
            return Err(Invalid::Unaligned(data_len));
        }
        let end = sector
            .checked_add(data_len / SECTOR_SIZE)
            .filter(|&end| end <= capacity);
        if end.is_none() {
            return Err(Invalid::OutOfRange {
                sector,
                len: data_len,
                capacity,
            });
        }
    }
    Ok(Request {
        kind,
        sector,
        data,
        data_len,
    })
}

/// Splits a byte stream made of `segs` after `n` bytes.
fn split_at(segs: &[Segment], n: u64) -> (Vec<Segment>, Vec<Segment>) {
    let (mut head, mut tail) = (Vec::new(), Vec::new());
    let mut left = n;
    for s in segs {
        let len = u64::from(s.len);
        if left >= len {
            head.push(*s);
            left -= len;
        } else if left == 0 {
            tail.push(*s);
        } else {
            // left < len <= u32::MAX, and addr + len was checked to be in guest memory.
            #[allow(clippy::cast_possible_truncation)] // left < len, a u32
            let l = left as u32;
            head.push(Segment {
                addr: s.addr,
                len: l,
            });
            tail.push(Segment {
                addr: s.addr.unchecked_add(left),
                len: s.len - l,
            });
            left = 0;
        }
    }
    (head, tail)
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
