//! virtio-net (device type 1) on a tap interface.
//!
//! Two queues (rx 0, tx 1), one queue pair. Offered: VIRTIO_NET_F_CSUM and HOST_TSO4/6 (the
//! guest may send partial checksums and 64 KiB TCP segments: the tap's kernel side finishes
//! them), GUEST_CSUM and GUEST_TSO4/6 (the guest takes them: TUNSETOFFLOAD follows what it
//! accepts), MAC and MTU when configured, STATUS (link always up), EVENT_IDX.
//!
//! Not offered: MRG_RXBUF (each rx frame goes in one chain: with GUEST_TSO, Linux then posts
//! 64 KiB "big packet" chains), CTRL_VQ and everything behind it (rx filters, VLANs,
//! announce), MQ, UFO/USO, ECN, INDIRECT_DESC. The host side ([`tap`]), the frame checks
//! ([`frame`]) and the thread ([`worker`]) are in their own files.

pub mod frame;
pub mod tap;
pub mod worker;

use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
    VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MTU,
    VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP,
};
use virtio_queue::QueueT;

use super::device::{read_config_bytes, ActivateError, Activation, VirtioDevice};
use super::epoll_helper::DeviceThread;
use super::{TYPE_NET, VIRTIO_RING_F_EVENT_IDX};
use tap::{tun_offloads, TapBackend};
use worker::Worker;

/// Size of each queue.
pub const QUEUE_SIZE: u16 = 256;
const QUEUE_SIZES: [u16; 2] = [QUEUE_SIZE; 2];

/// Configuration space served: mac (6 bytes), status (le16), max_virtqueue_pairs (le16), mtu
/// (le16). The rest reads as zero.
pub const CONFIG_LEN: usize = 12;

/// The net device.
pub struct Net {
    backend: Box<dyn TapBackend>,
    mac: Option<[u8; 6]>,
    mtu: Option<u16>,
    config: [u8; CONFIG_LEN],
    running: Option<DeviceThread<Worker>>,
}

impl Net {
    /// A device on `backend`, telling the guest `mac` and `mtu` if given.
    pub fn new(backend: Box<dyn TapBackend>, mac: Option<[u8; 6]>, mtu: Option<u16>) -> Self {
        let mut config = [0u8; CONFIG_LEN];
        config[..6].copy_from_slice(&mac.unwrap_or_default());
        let link_up = u16::try_from(VIRTIO_NET_S_LINK_UP).unwrap_or(1);
        config[6..8].copy_from_slice(&link_up.to_le_bytes());
        config[8..10].copy_from_slice(&1u16.to_le_bytes());
        config[10..12].copy_from_slice(&mtu.unwrap_or(0).to_le_bytes());
        Net {
            backend,
            mac,
            mtu,
            config,
            running: None,
        }
    }

    /// Stops the thread (if it runs) and returns what it counted.
    pub fn stop(&mut self) -> Option<worker::Stats> {
        let stats = self.running.take()?.stop()?.stats;
        tracing::debug!("virtio-net {}: stopped: {stats}", self.backend.name());
        Some(stats)
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        TYPE_NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn device_features(&self) -> u64 {
        const ALWAYS: u64 = (1 << VIRTIO_NET_F_CSUM)
            | (1 << VIRTIO_NET_F_GUEST_CSUM)
            | (1 << VIRTIO_NET_F_GUEST_TSO4)
            | (1 << VIRTIO_NET_F_GUEST_TSO6)
            | (1 << VIRTIO_NET_F_HOST_TSO4)
            | (1 << VIRTIO_NET_F_HOST_TSO6)
            | (1 << VIRTIO_NET_F_STATUS)
            | (1 << VIRTIO_RING_F_EVENT_IDX);
        let mac = if self.mac.is_some() {
            1 << VIRTIO_NET_F_MAC
        } else {
            0
        };
        let mtu = if self.mtu.is_some() {
            1 << VIRTIO_NET_F_MTU
        } else {
            0
        };
        ALWAYS | mac | mtu
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        // The MAC is writable only in legacy devices.
        tracing::debug!("virtio-net: ignoring config write at {offset:#x}");
    }

    fn activate(&mut self, features: u64, mut a: Activation) -> Result<(), ActivateError> {
        self.reset();
        if a.queues.len() != QUEUE_SIZES.len() || a.queue_evts.len() != QUEUE_SIZES.len() {
            return Err(ActivateError::BadQueue {
                index: a.queues.len(),
                why: "virtio-net needs 2 queues".into(),
            });
        }
        let event_idx = features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;
        for q in &mut a.queues {
            q.set_event_idx(event_idx);
        }
        self.backend
            .set_offload(tun_offloads(features))
            .map_err(ActivateError::Start)?;
        let tap = self
            .backend
            .fd()
            .try_clone_to_owned()
            .map_err(ActivateError::Start)?;
        let worker = Worker::new(
            a.mem,
            a.queues,
            a.queue_evts,
            a.interrupt.clone(),
            tap,
            features,
        )
        .map_err(ActivateError::Start)?;
        let label = format!("virtio-net {}", self.backend.name());
        let thread = DeviceThread::spawn("virtio-net", label, worker, a.interrupt)
            .map_err(ActivateError::Start)?;
        self.running = Some(thread);
        tracing::debug!(
            "virtio-net {}: activated, features {features:#x}",
            self.backend.name()
        );
        Ok(())
    }

    fn reset(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
#[path = "device_tests.rs"]
mod device_tests;
#[cfg(test)]
pub(crate) mod test_utils;
#[cfg(test)]
#[path = "worker_tests.rs"]
mod worker_tests;
