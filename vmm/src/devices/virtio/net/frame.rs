//! Ethernet frames in descriptor chains (virtio 1.2, 5.1.6): the 12-byte `virtio_net_hdr_v1`
//! then the frame, spread over the chain's buffers however the driver likes.
//!
//! A tx chain is device-readable only; it is copied into the worker's frame buffer (bounded
//! by [`MAX_FRAME_LEN`], never sized by the guest) and its header checked against what was
//! negotiated before the frame goes to the tap. An rx chain is device-writable only and must
//! hold at least a header. Anything else is a [`FrameError`]: the worker drops the chain (used
//! length 0) and goes on. Chains that cannot even be walked (loops, too long, indirect) are
//! refused earlier, by `chain.rs`, and mark the device broken.

use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6,
};

use crate::devices::virtio::chain::{BadChain, Chain, ChainBytes};
use crate::kvm::memory::GuestMem;

/// Size of `virtio_net_hdr_v1` (with `num_buffers`).
pub const HDR_LEN: usize = 12;
/// An Ethernet header: the shortest frame a tap takes.
pub const ETH_HLEN: usize = 14;
/// Longest frame, header included: a 64 KiB GSO packet, its Ethernet header and ours.
pub const MAX_FRAME_LEN: usize = 65562;

const _: () =
    assert!(std::mem::size_of::<virtio_bindings::virtio_net::virtio_net_hdr_v1>() == HDR_LEN);

/// A chain the device drops.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// A tx chain with a device-writable descriptor.
    #[error("tx chain with a device-writable descriptor")]
    WritableInTx,
    /// An rx chain with a device-readable descriptor.
    #[error("rx chain with a device-readable descriptor")]
    ReadableInRx,
    /// A buffer outside guest memory (or a short read or write).
    #[error(transparent)]
    Chain(#[from] BadChain),
    /// Shorter than a header and an Ethernet header.
    #[error("tx frame of {0} bytes (header included) is too short")]
    TooShort(usize),
    /// Longer than [`MAX_FRAME_LEN`].
    #[error("tx frame of {0} bytes (header included) is longer than {MAX_FRAME_LEN}")]
    TooLong(usize),
    /// An rx chain that cannot hold a header.
    #[error("rx chain of {0} bytes cannot hold a header")]
    RxTooSmall(usize),
    /// A header asking for what was not negotiated, or inconsistent.
    #[error("tx header: {0}")]
    BadHeader(&'static str),
}

/// What tx headers may ask for: the offloads the driver negotiated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxOffloads {
    /// VIRTIO_NET_F_CSUM: partial checksums (NEEDS_CSUM).
    pub csum: bool,
    /// VIRTIO_NET_F_HOST_TSO4.
    pub tso4: bool,
    /// VIRTIO_NET_F_HOST_TSO6.
    pub tso6: bool,
}

impl TxOffloads {
    /// The offloads in the negotiated `features`.
    pub fn from_features(features: u64) -> Self {
        let has = |bit: u32| features & (1u64 << bit) != 0;
        TxOffloads {
            csum: has(VIRTIO_NET_F_CSUM),
            tso4: has(VIRTIO_NET_F_HOST_TSO4),
            tso6: has(VIRTIO_NET_F_HOST_TSO6),
        }
    }
}

fn le16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// Checks a tx header (`hdr`, [`HDR_LEN`] bytes) for a frame of `frame_len` bytes after it.
pub fn check_tx_header(hdr: &[u8], frame_len: usize, o: TxOffloads) -> Result<(), FrameError> {
    let flags = u32::from(hdr[0]);
    let gso_type = u32::from(hdr[1]);
    let (gso_size, csum_start, csum_offset) = (le16(hdr, 4), le16(hdr, 6), le16(hdr, 8));
    if flags & !VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
        return Err(FrameError::BadHeader("unknown flags"));
    }
    if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
        if !o.csum {
            return Err(FrameError::BadHeader(
                "NEEDS_CSUM without VIRTIO_NET_F_CSUM",
            ));
        }
        // Both fields are 16 bits: no overflow in usize.
        if csum_start + csum_offset + 2 > frame_len {
            return Err(FrameError::BadHeader("checksum outside the frame"));
        }
    }
    match gso_type {
        VIRTIO_NET_HDR_GSO_NONE => return Ok(()),
        VIRTIO_NET_HDR_GSO_TCPV4 if o.tso4 => {}
        VIRTIO_NET_HDR_GSO_TCPV6 if o.tso6 => {}
        _ => return Err(FrameError::BadHeader("GSO type not negotiated")),
    }
    if gso_size == 0 {
        return Err(FrameError::BadHeader("GSO without a segment size"));
    }
    Ok(())
}

/// Copies a tx chain (header and frame) into `buf` and checks it; returns its length.
pub fn read_tx(
    chain: &Chain,
    mem: &GuestMem,
    offloads: TxOffloads,
    buf: &mut [u8],
) -> Result<usize, FrameError> {
    if chain.descs.iter().any(|d| d.is_write_only()) {
        return Err(FrameError::WritableInTx);
    }
    let mut reader = chain.reader(mem)?;
    let len = reader.available_bytes();
    if len < HDR_LEN + ETH_HLEN {
        return Err(FrameError::TooShort(len));
    }
    if len > MAX_FRAME_LEN.min(buf.len()) {
        return Err(FrameError::TooLong(len));
    }
    reader.read_exact(&mut buf[..len])?;
    check_tx_header(&buf[..HDR_LEN], len - HDR_LEN, offloads)?;
    Ok(len)
}

/// An rx chain's writable bytes, checked.
pub struct RxChain<'a> {
    writer: ChainBytes<'a>,
}

impl<'a> RxChain<'a> {
    /// Checks an rx chain: device-writable only, in guest memory, room for a header.
    pub fn new(chain: &Chain, mem: &'a GuestMem) -> Result<Self, FrameError> {
        if chain.descs.iter().any(|d| !d.is_write_only()) {
            return Err(FrameError::ReadableInRx);
        }
        let writer = chain.writer(mem)?;
        if writer.available_bytes() < HDR_LEN {
            return Err(FrameError::RxTooSmall(writer.available_bytes()));
        }
        Ok(RxChain { writer })
    }

    /// Bytes the chain holds, header included.
    pub fn capacity(&self) -> usize {
        self.writer.available_bytes()
    }

    /// Writes `frame` (a frame from the tap: header first, at most [`Self::capacity`] and
    /// [`MAX_FRAME_LEN`] bytes) with `num_buffers` set to 1; returns the used length.
    pub fn write(mut self, frame: &mut [u8]) -> Result<u32, FrameError> {
        let len = frame.len();
        if len > self.capacity() || len > MAX_FRAME_LEN {
            return Err(FrameError::RxTooSmall(self.capacity()));
        }
        if len < HDR_LEN {
            return Err(FrameError::TooShort(len));
        }
        // The tap leaves num_buffers alone; without VIRTIO_NET_F_MRG_RXBUF it must be 1.
        frame[HDR_LEN - 2..HDR_LEN].copy_from_slice(&1u16.to_le_bytes());
        self.writer.write_all(frame)?;
        // len <= MAX_FRAME_LEN.
        Ok(u32::try_from(len).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
