//! Queue configuration as the driver writes it through the transport, turned into a
//! validated [`virtio_queue::Queue`] on activation, a checked descriptor-chain pop, and the
//! drain loop the devices' request queues share ([`drain_queue`]).

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

/// The end of a [`drain_queue`] call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Chains returned to the driver (whatever the number of passes).
    pub used: usize,
    /// The batch limit was reached: chains may be left, and the driver's notifications are
    /// still off (the caller must come back on its own, e.g. by re-arming its eventfd).
    pub batch_full: bool,
}

/// Serves every available chain: the driver's notifications off (it adds chains without
/// kicking while we are at work), each chain popped ([`pop_chain`]), handed to `serve`, which
/// returns its used length, and returned ([`add_used`]); then `after_pass(queue, n)` with the
/// `n` chains used in that pass (e.g. an interrupt per pass: [`notify_used`]), notifications
/// back on, and another pass if chains arrived in between (they would otherwise wait for the
/// next kick).
///
/// `batch`: stop once that many chains (>= 1) are used, after the `after_pass` of that pass,
/// notifications left off ([`Drained::batch_full`]). No interrupt is signalled here: the
/// caller decides from [`Drained::used`]. `Err` (from the queue, a chain, `serve` or
/// `after_pass`) returns at once, the chain in hand not used: the device must be marked broken.
pub fn drain_queue(
    queue: &mut Queue,
    mem: &GuestMem,
    indirect: bool,
    batch: Option<usize>,
    mut serve: impl FnMut(&Chain) -> Result<u32, String>,
    mut after_pass: impl FnMut(&mut Queue, usize) -> Result<(), String>,
) -> Result<Drained, String> {
    let mut used = 0;
    loop {
        queue.disable_notification(mem).map_err(|e| e.to_string())?;
        let mut pass_used = 0;
        let mut batch_full = false;
        while let Some(chain) = pop_chain(queue, mem, indirect)? {
            let len = serve(&chain)?;
            add_used(queue, mem, chain.head, len)?;
            used += 1;
            pass_used += 1;
            if batch.is_some_and(|b| used >= b) {
                batch_full = true;
                break;
            }
        }
        after_pass(queue, pass_used)?;
        if batch_full || !queue.enable_notification(mem).map_err(|e| e.to_string())? {
            return Ok(Drained { used, batch_full });
        }
    }
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

    /// `n` one-descriptor chains from descriptor `first` on (each a distinct buffer).
    fn chains(first: u16, n: u16) -> Vec<RawDescriptor> {
        (first..first + n)
            .map(|i| {
                RawDescriptor::from(SplitDescriptor::new(
                    0x8000 + 0x100 * u64::from(i),
                    0x100,
                    0,
                    0,
                ))
            })
            .collect()
    }

    /// The used ring's (head, len) entries so far.
    fn used_ring(mq: &MockSplitQueue<'_, GuestMem>) -> Vec<(u32, u32)> {
        let n = u16::from_le(mq.used().idx().load());
        (0..n)
            .map(|i| {
                let e = mq.used().ring().ref_at(usize::from(i)).unwrap().load();
                (e.id(), e.len())
            })
            .collect()
    }

    /// Whether the device asks the driver not to kick (VRING_USED_F_NO_NOTIFY, no EVENT_IDX).
    fn notifications_off(m: &GuestMem, mq: &MockSplitQueue<'_, GuestMem>) -> bool {
        let flags: u16 = vm_memory::Bytes::read_obj(m, mq.used_addr()).unwrap();
        u16::from_le(flags) & 1 != 0
    }

    #[test]
    fn drains_every_chain_including_those_added_meanwhile() {
        let m = mem();
        let mq = MockSplitQueue::new(&m, 16);
        mq.add_desc_chains(&chains(0, 2), 0).unwrap();
        let mut q = config_of(&mq, 16).build(&m).unwrap();
        let mut served = Vec::new();
        let mut passes = Vec::new();
        let serve = |c: &Chain| {
            served.push(c.head);
            if c.head == 0 {
                // Added while serving: taken in this pass.
                mq.add_desc_chains(&chains(2, 1), 2).unwrap();
            }
            Ok(u32::from(c.head) * 10)
        };
        let after_pass = |_: &mut Queue, n: usize| {
            if passes.is_empty() {
                // Added after the last pop, before notifications are back on: another pass.
                mq.add_desc_chains(&chains(3, 2), 3).unwrap();
            }
            passes.push(n);
            Ok(())
        };
        let d = drain_queue(&mut q, &m, false, None, serve, after_pass).unwrap();
        assert_eq!(
            d,
            Drained {
                used: 5,
                batch_full: false
            }
        );
        assert_eq!(served, [0, 1, 2, 3, 4]);
        assert_eq!(passes, [3, 2]);
        assert_eq!(used_ring(&mq), [(0, 0), (1, 10), (2, 20), (3, 30), (4, 40)]);
        assert!(!notifications_off(&m, &mq));
        // Nothing left: one empty pass.
        let mut passes = Vec::new();
        let d = drain_queue(
            &mut q,
            &m,
            false,
            None,
            |_| Ok(0),
            |_, n| {
                passes.push(n);
                Ok(())
            },
        );
        assert_eq!(d, Ok(Drained::default()));
        assert_eq!(passes, [0]);
    }

    #[test]
    fn drain_stops_at_the_batch_limit() {
        let m = mem();
        let mq = MockSplitQueue::new(&m, 16);
        mq.add_desc_chains(&chains(0, 5), 0).unwrap();
        let mut q = config_of(&mq, 16).build(&m).unwrap();
        let mut passes = Vec::new();
        let d = drain_queue(
            &mut q,
            &m,
            false,
            Some(3),
            |_| Ok(1),
            |_, n| {
                passes.push(n);
                Ok(())
            },
        );
        assert_eq!(
            d,
            Ok(Drained {
                used: 3,
                batch_full: true
            })
        );
        assert_eq!(passes, [3]);
        assert_eq!(used_ring(&mq), [(0, 1), (1, 1), (2, 1)]);
        // Left off: the caller comes back on its own.
        assert!(notifications_off(&m, &mq));
        // The rest on the next call; the limit counts across passes, not per pass.
        let mut passes = Vec::new();
        let after_pass = |_: &mut Queue, n: usize| {
            if passes.is_empty() {
                mq.add_desc_chains(&chains(5, 3), 5).unwrap();
            }
            passes.push(n);
            Ok(())
        };
        let d = drain_queue(&mut q, &m, false, Some(3), |_| Ok(2), after_pass);
        assert_eq!(
            d,
            Ok(Drained {
                used: 3,
                batch_full: true
            })
        );
        assert_eq!(passes, [2, 1]);
        let d = drain_queue(&mut q, &m, false, Some(3), |_| Ok(3), |_, _| Ok(()));
        assert_eq!(
            d,
            Ok(Drained {
                used: 2,
                batch_full: false
            })
        );
        assert_eq!(used_ring(&mq).len(), 8);
        assert!(!notifications_off(&m, &mq));
    }

    #[test]
    fn drain_errors_propagate() {
        let m = mem();
        let mq = MockSplitQueue::new(&m, 16);
        mq.add_desc_chains(&chains(0, 3), 0).unwrap();
        let mut q = config_of(&mq, 16).build(&m).unwrap();
        let mut served = 0;
        let serve = |c: &Chain| {
            served += 1;
            match c.head {
                1 => Err("bad chain".to_string()),
                _ => Ok(0),
            }
        };
        let d = drain_queue(&mut q, &m, false, None, serve, |_, _| {
            panic!("no pass ends")
        });
        assert_eq!(d, Err("bad chain".to_string()));
        assert_eq!(served, 2);
        // The failed chain is not used.
        assert_eq!(used_ring(&mq), [(0, 0)]);
        // An after_pass error too.
        let d = drain_queue(&mut q, &m, false, None, |_| Ok(0), |_, _| Err("irq".into()));
        assert_eq!(d, Err("irq".to_string()));
        // And a corrupted queue's.
        mq.avail().idx().store(u16::to_le(200));
        let d = drain_queue(&mut q, &m, false, None, |_| Ok(0), |_, _| Ok(()));
        assert!(d.is_err());
    }
}
