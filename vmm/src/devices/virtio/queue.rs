//! Queue configuration as the driver writes it through the transport, turned into a
//! validated [`virtio_queue::Queue`] on activation, and a checked descriptor-chain pop.

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestAddress;

use super::chain::{Chain, ChainRules};
use super::Interrupt;
use crate::kvm::memory::GuestMem;

/// One queue's registers, as last written by the driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueConfig {
    /// QueueNumMax.
    pub max_size: u16,
    /// QueueNum (0 until written; then the driver's value, validated on activation).
    pub size: u16,
    /// QueueReady.
    pub ready: bool,
    /// Descriptor table address.
    pub desc: u64,
    /// Available (driver) ring address.
    pub avail: u64,
    /// Used (device) ring address.
    pub used: u64,
}

impl QueueConfig {
    /// A queue with `max_size` entries at most.
    pub fn new(max_size: u16) -> Self {
        QueueConfig {
            max_size,
            size: max_size,
            ..Default::default()
        }
    }

    /// Back to the reset state.
    pub fn reset(&mut self) {
        *self = QueueConfig::new(self.max_size);
    }

    /// Builds the queue, checking size (power of two, <= max), alignment and that the rings
    /// lie inside guest memory.
    pub fn build(&self, mem: &GuestMem) -> Result<Queue, String> {
        if !self.ready {
            return Err("not ready".into());
        }
        let mut q = Queue::new(self.max_size).map_err(|e| format!("max size: {e}"))?;
        q.try_set_size(self.size)
            .map_err(|e| format!("size {} (max {}): {e}", self.size, self.max_size))?;
        q.try_set_desc_table_address(GuestAddress(self.desc))
            .map_err(|e| format!("descriptor table {:#x}: {e}", self.desc))?;
        q.try_set_avail_ring_address(GuestAddress(self.avail))
            .map_err(|e| format!("available ring {:#x}: {e}", self.avail))?;
        q.try_set_used_ring_address(GuestAddress(self.used))
            .map_err(|e| format!("used ring {:#x}: {e}", self.used))?;
        q.set_ready(true);
        if !q.is_valid(mem) {
            return Err("rings are not inside guest memory".into());
        }
        Ok(q)
    }
}

/// Pops the next available chain and walks it under the rules of [`Chain::walk`]
/// (`indirect`: VIRTIO_RING_F_INDIRECT_DESC negotiated). `Err` means the driver corrupted the
/// queue (e.g. an available index too far ahead) or the chain: the device must be marked
/// broken.
pub fn pop_chain(
    queue: &mut Queue,
    mem: &GuestMem,
    indirect: bool,
) -> Result<Option<Chain>, String> {
    let mut iter = queue.iter(mem).map_err(|e| e.to_string())?;
    let Some(head) = iter.next().map(|c| c.head_index()) else {
        return Ok(None);
    };
    let rules = ChainRules {
        desc_table: GuestAddress(queue.desc_table()),
        queue_size: queue.size(),
        indirect,
    };
    Chain::walk(mem, rules, head)
        .map(Some)
        .map_err(|e| format!("descriptor chain at {head}: {e}"))
}

/// Returns a used chain to the driver.
pub fn add_used(queue: &mut Queue, mem: &GuestMem, head: u16, len: u32) -> Result<(), String> {
    queue.add_used(mem, head, len).map_err(|e| e.to_string())
}

/// Signals the used-buffer interrupt if the driver wants one now (EVENT_IDX may say it does
/// not).
pub fn notify_used(queue: &mut Queue, mem: &GuestMem, interrupt: &Interrupt) -> Result<(), String> {
    if queue.needs_notification(mem).map_err(|e| e.to_string())? {
        interrupt
            .signal_used()
            .map_err(|e| format!("interrupt: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;

    use crate::devices::virtio::test_utils::{guest_mem, queue_config};

    fn mem() -> GuestMem {
        guest_mem(0x10_0000)
    }

    fn config_of(mq: &MockSplitQueue<'_, GuestMem>, size: u16) -> QueueConfig {
        queue_config(mq, 256, size)
    }

    #[test]
    fn validates_configuration() {
        let m = mem();
        let mq = MockSplitQueue::new(&m, 16);
        assert!(config_of(&mq, 16).build(&m).is_ok());
        assert!(config_of(&mq, 0).build(&m).is_err());
        assert!(config_of(&mq, 12).build(&m).is_err());
        assert!(config_of(&mq, 512).build(&m).is_err());
        let mut c = config_of(&mq, 16);
        c.ready = false;
        assert!(c.build(&m).is_err());
        let mut c = config_of(&mq, 16);
        c.desc += 1;
        assert!(c.build(&m).is_err());
        let mut c = config_of(&mq, 16);
        c.used = 0x10_0000 - 8;
        assert!(c.build(&m).is_err());
        let mut c = config_of(&mq, 16);
        c.avail = u64::MAX - 1;
        assert!(c.build(&m).is_err());
        c.reset();
        assert_eq!(c, QueueConfig::new(256));
    }

    #[test]
    fn pops_chains_and_detects_corruption() {
        let m = mem();
        let mq = MockSplitQueue::new(&m, 16);
        let descs = [
            RawDescriptor::from(SplitDescriptor::new(0x8000, 0x100, 0, 0)),
            RawDescriptor::from(SplitDescriptor::new(0x9000, 0x100, 0, 0)),
        ];
        mq.add_desc_chains(&descs, 0).unwrap();
        let mut q = config_of(&mq, 16).build(&m).unwrap();
        let c = pop_chain(&mut q, &m, false).unwrap().unwrap();
        assert_eq!(c.head, 0);
        add_used(&mut q, &m, c.head, 0).unwrap();
        let c = pop_chain(&mut q, &m, false).unwrap().unwrap();
        assert_eq!(c.head, 1);
        assert!(pop_chain(&mut q, &m, false).unwrap().is_none());
        assert!(add_used(&mut q, &m, 99, 0).is_err());
        // The driver claims far more available entries than the queue holds.
        mq.avail().idx().store(u16::to_le(200));
        assert!(pop_chain(&mut q, &m, false).is_err());
    }
}
