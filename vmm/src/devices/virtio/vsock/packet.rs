//! The virtio-vsock packet header (virtio spec 5.10.6), parsed and serialized explicitly in
//! little endian, and moving packets in and out of descriptor chains.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::sys::socket::{recv, send, MsgFlags};

use crate::devices::virtio::chain::{Chain, ChainBytes};
use crate::kvm::memory::GuestMem;

/// Header size on the wire.
pub const HDR_SIZE: usize = 44;
/// Largest payload accepted from the guest (Linux sends at most 64 KiB per packet).
pub const MAX_PKT_PAYLOAD: u32 = 64 * 1024;

/// Stream socket type.
pub const TYPE_STREAM: u16 = 1;

/// Connection request.
pub const OP_REQUEST: u16 = 1;
/// Connection accepted.
pub const OP_RESPONSE: u16 = 2;
/// Connection reset / refused.
pub const OP_RST: u16 = 3;
/// Half or full close; see the SHUTDOWN_* flags.
pub const OP_SHUTDOWN: u16 = 4;
/// Data.
pub const OP_RW: u16 = 5;
/// Here is my credit.
pub const OP_CREDIT_UPDATE: u16 = 6;
/// Tell me your credit.
pub const OP_CREDIT_REQUEST: u16 = 7;

/// SHUTDOWN flag: the sender will receive no more data.
pub const SHUTDOWN_RCV: u32 = 1;
/// SHUTDOWN flag: the sender will send no more data.
pub const SHUTDOWN_SEND: u32 = 2;

/// The host's CID.
pub const HOST_CID: u64 = 2;

/// A packet header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Source CID.
    pub src_cid: u64,
    /// Destination CID.
    pub dst_cid: u64,
    /// Source port.
    pub src_port: u32,
    /// Destination port.
    pub dst_port: u32,
    /// Payload length.
    pub len: u32,
    /// Socket type (1 = stream).
    pub type_: u16,
    /// Operation.
    pub op: u16,
    /// Operation flags.
    pub flags: u32,
    /// Sender's receive buffer size.
    pub buf_alloc: u32,
    /// Bytes the sender has consumed from its receive buffer.
    pub fwd_cnt: u32,
}

fn le_u64(b: &[u8; HDR_SIZE], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn le_u32(b: &[u8; HDR_SIZE], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u16(b: &[u8; HDR_SIZE], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

impl Header {
    /// Parses the wire format.
    pub fn parse(b: &[u8; HDR_SIZE]) -> Header {
        Header {
            src_cid: le_u64(b, 0),
            dst_cid: le_u64(b, 8),
            src_port: le_u32(b, 16),
            dst_port: le_u32(b, 20),
            len: le_u32(b, 24),
            type_: le_u16(b, 28),
            op: le_u16(b, 30),
            flags: le_u32(b, 32),
            buf_alloc: le_u32(b, 36),
            fwd_cnt: le_u32(b, 40),
        }
    }

    /// Serializes to the wire format.
    pub fn to_bytes(&self) -> [u8; HDR_SIZE] {
        let mut b = [0u8; HDR_SIZE];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.type_.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }
}

/// A malformed chain: the device must be marked broken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PacketError {
    /// The chain cannot be mapped (address outside guest memory, bad descriptor).
    #[error("bad descriptor chain: {0}")]
    Chain(String),
    /// The chain's readable part is shorter than a header.
    #[error("packet of {0} bytes is shorter than its header")]
    Short(usize),
    /// The header's len exceeds the limit or the chain.
    #[error(
        "payload length {len} is invalid ({avail} bytes in the chain, limit {MAX_PKT_PAYLOAD})"
    )]
    BadLen {
        /// Header len.
        len: u32,
        /// Readable bytes after the header.
        avail: usize,
    },
    /// The rx buffer cannot even hold a header.
    #[error("rx buffer of {0} bytes cannot hold a header")]
    RxTooSmall(usize),
    /// A payload too long for the header's 32-bit length.
    #[error("payload of {0} bytes is too long for a packet")]
    TooLong(usize),
}

/// Reads a tx packet's header (possibly spread over several descriptors) and validates its
/// length; the payload stays in guest memory, as a reader of exactly `len` bytes.
pub fn read_packet<'a>(
    chain: &Chain,
    mem: &'a GuestMem,
) -> Result<(Header, ChainBytes<'a>), PacketError> {
    let mut reader = chain
        .reader(mem)
        .map_err(|e| PacketError::Chain(e.to_string()))?;
    let total = reader.available_bytes();
    let mut hdr = [0u8; HDR_SIZE];
    if total < HDR_SIZE {
        return Err(PacketError::Short(total));
    }
    reader
        .read_exact(&mut hdr)
        .map_err(|e| PacketError::Chain(e.to_string()))?;
    let header = Header::parse(&hdr);
    let avail = total - HDR_SIZE;
    if header.len > MAX_PKT_PAYLOAD || header.len as usize > avail {
        return Err(PacketError::BadLen {
            len: header.len,
            avail,
        });
    }
    reader.truncate(header.len as usize);
    Ok((header, reader))
}

/// The payload of a guest packet, moved to a host socket or a buffer without an intermediate
/// copy (in guest memory; a byte slice in tests and fuzz targets).
pub trait TxPayload {
    /// Bytes left.
    fn remaining(&self) -> usize;
    /// Sends what the socket takes (non-blocking, no SIGPIPE) and consumes it.
    fn send_to(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize>;
    /// Appends every byte left to `dst` and consumes them.
    fn append_to(&mut self, dst: &mut VecDeque<u8>) -> io::Result<()>;
}

impl TxPayload for ChainBytes<'_> {
    fn remaining(&self) -> usize {
        self.available_bytes()
    }

    fn send_to(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        ChainBytes::send_to(self, fd)
    }

    fn append_to(&mut self, dst: &mut VecDeque<u8>) -> io::Result<()> {
        ChainBytes::append_to(self, dst).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl TxPayload for &[u8] {
    fn remaining(&self) -> usize {
        self.len()
    }

    fn send_to(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT;
        let n = send(fd.as_raw_fd(), self, flags).map_err(io::Error::from)?;
        *self = &self[n..];
        Ok(n)
    }

    fn append_to(&mut self, dst: &mut VecDeque<u8>) -> io::Result<()> {
        dst.extend(*self);
        *self = &[];
        Ok(())
    }
}

/// Where host data for the guest goes: the payload space of an rx buffer (or a byte vector
/// in tests and fuzz targets).
pub trait RxSink {
    /// How many payload bytes fit.
    fn room(&self) -> usize;
    /// Receives at most `max` bytes from the socket (non-blocking) into the payload space;
    /// `Ok(0)` is the end of the stream.
    fn recv_from(&mut self, fd: BorrowedFd<'_>, max: usize) -> io::Result<usize>;
}

/// An [`RxSink`] of `room` bytes collecting the payload in a vector.
#[derive(Debug, Default)]
pub struct VecSink {
    /// Payload room.
    pub room: usize,
    /// What was received.
    pub data: Vec<u8>,
}

impl RxSink for VecSink {
    fn room(&self) -> usize {
        self.room - self.data.len()
    }

    fn recv_from(&mut self, fd: BorrowedFd<'_>, max: usize) -> io::Result<usize> {
        let start = self.data.len();
        self.data.resize(start + max.min(self.room()), 0);
        let got = recv(
            fd.as_raw_fd(),
            &mut self.data[start..],
            MsgFlags::MSG_DONTWAIT,
        );
        self.data.truncate(start + *got.as_ref().unwrap_or(&0));
        got.map_err(io::Error::from)
    }
}

/// An rx chain: its header space and a writer to fill its payload space.
pub struct RxBuffer<'a> {
    header: ChainBytes<'a>,
    payload: ChainBytes<'a>,
    len: usize,
}

impl<'a> RxBuffer<'a> {
    /// Maps the writable part of an rx chain.
    pub fn new(chain: &Chain, mem: &'a GuestMem) -> Result<Self, PacketError> {
        let mut payload = chain
            .writer(mem)
            .map_err(|e| PacketError::Chain(e.to_string()))?;
        if payload.available_bytes() < HDR_SIZE {
            return Err(PacketError::RxTooSmall(payload.available_bytes()));
        }
        let mut header = payload.clone();
        header.truncate(HDR_SIZE);
        payload
            .skip(HDR_SIZE)
            .map_err(|e| PacketError::Chain(e.to_string()))?;
        Ok(RxBuffer {
            header,
            payload,
            len: 0,
        })
    }

    /// How many payload bytes fit.
    pub fn payload_room(&self) -> usize {
        self.payload.available_bytes()
    }

    /// Copies `data` into the payload space (after what is there); it must fit.
    pub fn put(&mut self, data: &[u8]) -> Result<(), PacketError> {
        let size = HDR_SIZE + self.len + self.payload_room();
        let too_small = |_| PacketError::RxTooSmall(size);
        self.payload.write_all(data).map_err(too_small)?;
        self.len += data.len();
        Ok(())
    }

    /// Writes the header, its `len` set to the payload bytes put or received; returns the
    /// bytes written (the used length).
    pub fn finish(mut self, mut header: Header) -> Result<u32, PacketError> {
        let too_long = |_| PacketError::TooLong(self.len);
        header.len = u32::try_from(self.len).map_err(too_long)?;
        let used = u32::try_from(HDR_SIZE + self.len).map_err(too_long)?;
        let io = |e: crate::devices::virtio::chain::BadChain| PacketError::Chain(e.to_string());
        self.header.write_all(&header.to_bytes()).map_err(io)?;
        Ok(used)
    }
}

impl RxSink for RxBuffer<'_> {
    fn room(&self) -> usize {
        self.payload_room()
    }

    fn recv_from(&mut self, fd: BorrowedFd<'_>, max: usize) -> io::Result<usize> {
        let got = self.payload.recv_from(fd, max)?;
        self.len += got;
        Ok(got)
    }
}

#[cfg(test)]
#[path = "packet_tests.rs"]
mod tests;
