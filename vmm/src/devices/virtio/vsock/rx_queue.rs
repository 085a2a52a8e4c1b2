//! The muxer's queue of connections with data waiting for the guest's rx buffers: bounded,
//! and rebuilt from the connection table when it would overflow (Firecracker's `MuxerRxQ`
//! as model).
//!
//! Each connection is in it at most once (the muxer's `rx_pending` flag) and leaves it when
//! it is removed, so while the queue is `synced` it holds exactly the connections whose
//! `rx_pending` is set. A guest that posts no rx buffers cannot make it grow: past
//! [`RX_QUEUE_SIZE`] entries a push is dropped and the queue marked out of sync; once it has
//! been drained, the muxer rebuilds it from the connection table (every connection with
//! `rx_pending` set), so no connection is forgotten.

use std::collections::VecDeque;

use super::muxer::Key;

/// Most connections queued at once (fewer than `MAX_CONNECTIONS`: beyond it, the queue is
/// rebuilt from the connection table).
pub const RX_QUEUE_SIZE: usize = 256;

/// A bounded FIFO of connection keys.
#[derive(Debug)]
pub struct RxQueue {
    keys: VecDeque<Key>,
    synced: bool,
}

impl Default for RxQueue {
    fn default() -> Self {
        RxQueue::new()
    }
}

impl RxQueue {
    /// An empty queue, in sync.
    pub fn new() -> Self {
        RxQueue {
            keys: VecDeque::with_capacity(RX_QUEUE_SIZE),
            synced: true,
        }
    }

    /// Rebuilds the queue from the keys of every connection waiting for rx (at most
    /// [`RX_QUEUE_SIZE`] of them fit; the queue stays out of sync if more are waiting).
    pub fn rebuild(keys: impl Iterator<Item = Key>) -> Self {
        let mut q = RxQueue::new();
        for key in keys {
            if !q.push(key) {
                break;
            }
        }
        q
    }

    /// Queues `key`; false (and out of sync) when the queue is full.
    pub fn push(&mut self, key: Key) -> bool {
        if self.keys.len() >= RX_QUEUE_SIZE {
            self.synced = false;
            return false;
        }
        self.keys.push_back(key);
        true
    }

    /// The first key.
    pub fn pop(&mut self) -> Option<Key> {
        self.keys.pop_front()
    }

    /// The first key, left in the queue.
    pub fn peek(&self) -> Option<Key> {
        self.keys.front().copied()
    }

    /// Drops `key` (a removed connection leaves no stale entry).
    pub fn remove(&mut self, key: Key) {
        self.keys.retain(|k| *k != key);
    }

    /// Whether every waiting connection is in the queue.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Whether the queue holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_out_of_sync_past_the_bound() {
        let mut q = RxQueue::new();
        for port in 0..u32::try_from(RX_QUEUE_SIZE).unwrap() {
            assert!(q.push((port, 1)));
        }
        assert!(q.is_synced());
        assert!(!q.push((9999, 1)));
        assert!(!q.is_synced());
        assert_eq!(q.len(), RX_QUEUE_SIZE);
        q.remove((0, 1));
        assert_eq!(q.peek(), Some((1, 1)));
        assert_eq!(q.len(), RX_QUEUE_SIZE - 1);
        let r = RxQueue::rebuild((0..10).map(|p| (p, 2)));
        assert!(r.is_synced() && r.len() == 10);
        let r = RxQueue::rebuild((0..1000).map(|p| (p, 2)));
        assert!(!r.is_synced() && r.len() == RX_QUEUE_SIZE);
    }
}
