//! virtio-blk (device type 2) on a raw disk image.
//!
//! One request queue; the image is opened and checked before the VM is built ([`disk`]),
//! requests are parsed and validated in [`request`] and served on the device's own thread
//! ([`worker`]), woken by the queue's ioeventfd, with data moved by [`iov`]. Features:
//! VIRTIO_RING_F_EVENT_IDX, VIRTIO_BLK_F_SEG_MAX,
//! VIRTIO_BLK_F_FLUSH (fdatasync; without it negotiated, every write is synced: write-through)
//! and VIRTIO_BLK_F_RO for read-only disks (writes to them fail with IOERR whatever the
//! driver negotiated). GET_ID answers the image's file name; other request types get UNSUPP.

pub mod disk;
pub mod iov;
pub mod request;
pub mod worker;

use virtio_queue::QueueT;

use super::device::{read_config_bytes, ActivateError, Activation, VirtioDevice};
use super::epoll_helper::DeviceThread;
use super::{TYPE_BLOCK, VIRTIO_RING_F_EVENT_IDX};
use disk::DiskImage;
use worker::{queue_epoll, Stats, Worker};

/// Size of the request queue. 512 so that seg_max (below) lets a 1 MiB request of 4 KiB pages
/// that are not contiguous in guest memory (256 segments) go in one chain: with 256 entries
/// (seg_max 254) the guest split 10 to 37 % of blk-bench's 1 MiB O_DIRECT reads in two.
pub const QUEUE_SIZE: u16 = 512;
const QUEUE_SIZES: [u16; 1] = [QUEUE_SIZE];
/// Most data segments in a request (seg_max): what fits the queue with the header and status.
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;

/// Feature: seg_max in the configuration space is valid.
pub const VIRTIO_BLK_F_SEG_MAX: u32 = 2;
/// Feature: the disk is read-only.
pub const VIRTIO_BLK_F_RO: u32 = 5;
/// Feature: VIRTIO_BLK_T_FLUSH is supported.
pub const VIRTIO_BLK_F_FLUSH: u32 = 9;

/// Bytes of configuration space served: capacity (le64), size_max (le32, unused), seg_max
/// (le32). The rest reads as zero.
const CONFIG_LEN: usize = 16;

/// The block device.
pub struct Block {
    disk: DiskImage,
    config: [u8; CONFIG_LEN],
    running: Option<DeviceThread<Worker>>,
}

impl Block {
    /// A device serving `disk`.
    pub fn new(disk: DiskImage) -> Self {
        let mut config = [0u8; CONFIG_LEN];
        config[..8].copy_from_slice(&disk.capacity().to_le_bytes());
        config[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        Block {
            disk,
            config,
            running: None,
        }
    }

    fn serial(&self) -> String {
        let s = self.disk.serial();
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        String::from_utf8_lossy(&s[..end]).into_owned()
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        TYPE_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn device_features(&self) -> u64 {
        let ro = if self.disk.read_only() {
            1 << VIRTIO_BLK_F_RO
        } else {
            0
        };
        (1 << VIRTIO_BLK_F_SEG_MAX)
            | (1 << VIRTIO_BLK_F_FLUSH)
            | (1 << VIRTIO_RING_F_EVENT_IDX)
            | ro
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        tracing::debug!("virtio-blk: ignoring config write at {offset:#x}");
    }

    fn activate(&mut self, features: u64, a: Activation) -> Result<(), ActivateError> {
        self.reset();
        let (Ok([mut queue]), Ok([queue_evt])) = (
            <[_; 1]>::try_from(a.queues),
            <[_; 1]>::try_from(a.queue_evts),
        ) else {
            return Err(ActivateError::BadQueue {
                index: 0,
                why: "virtio-blk has exactly 1 queue".into(),
            });
        };
        queue.set_event_idx(features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0);
        let worker = Worker {
            mem: a.mem,
            queue,
            epoll: queue_epoll(&queue_evt).map_err(ActivateError::Start)?,
            queue_evt,
            interrupt: a.interrupt.clone(),
            disk: self.disk.handle().map_err(ActivateError::Start)?,
            capacity: self.disk.capacity(),
            serial: *self.disk.serial(),
            write_through: features & (1 << VIRTIO_BLK_F_FLUSH) == 0,
            stats: Stats::default(),
        };
        let thread = DeviceThread::spawn("virtio-blk", "virtio-blk".into(), worker, a.interrupt)
            .map_err(ActivateError::Start)?;
        self.running = Some(thread);
        tracing::debug!(
            "virtio-blk {}: activated, {} sectors, features {features:#x}",
            self.serial(),
            self.disk.capacity()
        );
        Ok(())
    }

    fn reset(&mut self) {
        if let Some(worker) = self.running.take().and_then(|mut thread| thread.stop()) {
            tracing::debug!("virtio-blk {}: stopped: {}", self.serial(), worker.stats);
        }
    }
}

#[cfg(test)]
#[path = "device_tests.rs"]
mod tests;
