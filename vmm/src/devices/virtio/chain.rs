//! Descriptor chains as the devices see them: walked once from guest memory under the rules
//! of the negotiated features, and kept as a snapshot the device reads and writes through.
//!
//! virtio-queue's own chain iterator follows an indirect descriptor whether or not
//! VIRTIO_RING_F_INDIRECT_DESC was negotiated, restarts its length limit at the indirect
//! table's size (up to 65535 entries, one guest memory read each) and ends a broken chain
//! silently. Here, every rule is checked and a violation is an error (the device is marked
//! DEVICE_NEEDS_RESET):
//!
//! * an indirect descriptor needs VIRTIO_RING_F_INDIRECT_DESC, must not also have NEXT, must
//!   not sit inside an indirect table, and its table is a non-empty multiple of 16 bytes;
//! * a chain has at most the queue's size of descriptors, indirect ones included (virtio
//!   1.2, 2.7.5.3.1: "A driver MUST NOT create a descriptor chain longer than the Queue Size
//!   of the device"), so a walk costs at most 2 × queue size + 1 reads;
//! * a `next` index must lie inside its table, and the table inside guest memory.
//!
//! The devices then use only the snapshot: a guest that rewrites descriptors behind our back
//! cannot make us walk anything we did not check.

use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, Permissions};

use virtio_queue::desc::split::Descriptor;

use crate::kvm::memory::GuestMem;

/// Feature bit: the driver may use indirect descriptor tables.
pub const VIRTIO_RING_F_INDIRECT_DESC: u32 = 28;

/// Size of one descriptor in a table.
const DESC_SIZE: u64 = 16;

/// Why a chain is refused.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadChain {
    /// An indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC.
    #[error("indirect descriptor, but VIRTIO_RING_F_INDIRECT_DESC was not negotiated")]
    IndirectNotNegotiated,
    /// An indirect descriptor inside an indirect table.
    #[error("indirect descriptor inside an indirect table")]
    NestedIndirect,
    /// An indirect descriptor that also has NEXT.
    #[error("indirect descriptor with the NEXT flag")]
    IndirectWithNext,
    /// An indirect table whose length is 0 or not a multiple of 16.
    #[error("indirect table of {0} bytes")]
    BadIndirectLen(u32),
    /// More descriptors than the queue size.
    #[error("descriptor chain longer than the queue size ({0})")]
    TooLong(u16),
    /// A `next` index outside its table.
    #[error("descriptor index {index} outside a table of {size}")]
    IndexOutOfRange {
        /// The index.
        index: u16,
        /// The table's entries.
        size: u32,
    },
    /// A descriptor (of the ring or an indirect table) outside guest memory.
    #[error("descriptor at {0:#x} is outside guest memory")]
    DescOutsideMemory(u64),
    /// A buffer outside guest memory.
    #[error("buffer {addr:#x}+{len:#x} is outside guest memory")]
    BufferOutsideMemory {
        /// Address.
        addr: u64,
        /// Length.
        len: u32,
    },
    /// Fewer bytes in the chain than asked for.
    #[error("{wanted} bytes asked, {left} left in the chain")]
    Short {
        /// Bytes asked.
        wanted: usize,
        /// Bytes left.
        left: usize,
    },
}

/// One descriptor chain, walked and checked.
#[derive(Clone, Debug)]
pub struct Chain {
    /// The head's index (what goes in the used ring).
    pub head: u16,
    /// The descriptors in chain order (an indirect table's replace its descriptor).
    pub descs: Vec<Descriptor>,
}

/// How to walk: the table, its size and whether indirect tables are allowed.
#[derive(Clone, Copy, Debug)]
pub struct ChainRules {
    /// Guest address of the descriptor table.
    pub desc_table: GuestAddress,
    /// The queue size (entries of the table, and the longest chain).
    pub queue_size: u16,
    /// VIRTIO_RING_F_INDIRECT_DESC negotiated.
    pub indirect: bool,
}

fn read_desc(mem: &GuestMem, table: GuestAddress, index: u16) -> Result<Descriptor, BadChain> {
    let addr = table.0.wrapping_add(u64::from(index) * DESC_SIZE);
    table
        .checked_add(u64::from(index) * DESC_SIZE)
        .and_then(|a| mem.read_obj::<Descriptor>(a).ok())
        .ok_or(BadChain::DescOutsideMemory(addr))
}

impl Chain {
    /// Walks the chain starting at `head` under `rules`.
    pub fn walk(mem: &GuestMem, rules: ChainRules, head: u16) -> Result<Chain, BadChain> {
        let max = usize::from(rules.queue_size);
        let mut descs = Vec::new();
        let mut table = rules.desc_table;
        let mut table_size = u32::from(rules.queue_size);
        let mut in_indirect = false;
        let mut index = head;
        loop {
            if u32::from(index) >= table_size {
                return Err(BadChain::IndexOutOfRange {
                    index,
                    size: table_size,
                });
            }
            let desc = read_desc(mem, table, index)?;
            if desc.refers_to_indirect_table() {
                if !rules.indirect {
                    return Err(BadChain::IndirectNotNegotiated);
                }
                if in_indirect {
                    return Err(BadChain::NestedIndirect);
                }
                if desc.has_next() {
                    return Err(BadChain::IndirectWithNext);
                }
                let len = desc.len();
                if len == 0 || u64::from(len) % DESC_SIZE != 0 {
                    return Err(BadChain::BadIndirectLen(len));
                }
                // At most u32::MAX / 16 entries; longer than the queue is refused below.
                table_size = len / 16;
                table = desc.addr();
                in_indirect = true;
                index = 0;
                continue;
            }
            if descs.len() == max {
                return Err(BadChain::TooLong(rules.queue_size));
            }
            descs.push(desc);
            if !desc.has_next() {
                return Ok(Chain { head, descs });
            }
            index = desc.next();
        }
    }

    /// A reader of the device-readable descriptors' bytes, each checked to be in guest memory.
    pub fn reader<'a>(&self, mem: &'a GuestMem) -> Result<ChainBytes<'a>, BadChain> {
        ChainBytes::new(mem, self, false)
    }

    /// A writer to the device-writable descriptors' bytes, each checked to be in guest memory.
    pub fn writer<'a>(&self, mem: &'a GuestMem) -> Result<ChainBytes<'a>, BadChain> {
        ChainBytes::new(mem, self, true)
    }
}

/// The bytes of a chain's readable (or writable) descriptors as one stream.
#[derive(Clone, Debug)]
pub struct ChainBytes<'a> {
    mem: &'a GuestMem,
    /// (address, length) of the buffers not consumed yet; the first one partly.
    segs: std::collections::VecDeque<(GuestAddress, usize)>,
    left: usize,
}

impl<'a> ChainBytes<'a> {
    fn new(mem: &'a GuestMem, chain: &Chain, writable: bool) -> Result<Self, BadChain> {
        let access = if writable {
            Permissions::Write
        } else {
            Permissions::Read
        };
        let mut segs = std::collections::VecDeque::new();
        let mut left = 0usize;
        for d in chain.descs.iter().filter(|d| d.is_write_only() == writable) {
            let outside = BadChain::BufferOutsideMemory {
                addr: d.addr().0,
                len: d.len(),
            };
            let len = usize::try_from(d.len()).map_err(|_| outside.clone())?;
            if len == 0 {
                continue;
            }
            if !mem.check_range(d.addr(), len, access) {
                return Err(outside);
            }
            left = left.checked_add(len).ok_or(outside)?;
            segs.push_back((d.addr(), len));
        }
        Ok(ChainBytes { mem, segs, left })
    }

    /// Bytes left.
    pub fn available_bytes(&self) -> usize {
        self.left
    }

    /// Runs `op(addr, from, to)` over the next `len` bytes, buffer by buffer.
    fn advance(
        &mut self,
        len: usize,
        mut op: impl FnMut(GuestAddress, usize, usize) -> Result<(), ()>,
    ) -> Result<(), BadChain> {
        if len > self.left {
            return Err(BadChain::Short {
                wanted: len,
                left: self.left,
            });
        }
        let mut done = 0;
        while done < len {
            let Some((addr, seg_len)) = self.segs.front_mut() else {
                break;
            };
            let n = (*seg_len).min(len - done);
            let fail = BadChain::BufferOutsideMemory {
                addr: addr.0,
                len: u32::try_from(n).unwrap_or(u32::MAX),
            };
            op(*addr, done, done + n).map_err(|()| fail)?;
            done += n;
            self.left -= n;
            // n fits the buffer, which is inside guest memory: no overflow.
            *addr = GuestAddress(addr.0.wrapping_add(n as u64));
            *seg_len -= n;
            if *seg_len == 0 {
                self.segs.pop_front();
            }
        }
        Ok(())
    }

    /// Fills `buf` from the stream.
    pub fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), BadChain> {
        let mem = self.mem;
        self.advance(buf.len(), |addr, from, to| {
            mem.read_slice(&mut buf[from..to], addr).map_err(|_| ())
        })
    }

    /// Writes all of `data` to the stream.
    pub fn write_all(&mut self, data: &[u8]) -> Result<(), BadChain> {
        let mem = self.mem;
        self.advance(data.len(), |addr, from, to| {
            mem.write_slice(&data[from..to], addr).map_err(|_| ())
        })
    }
}

#[path = "chain_io.rs"]
mod io;

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
