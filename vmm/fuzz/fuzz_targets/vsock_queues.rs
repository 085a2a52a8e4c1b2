//! The vsock device's queue processing on hostile guest memory: the tx and rx descriptor
//! tables, available rings and buffers are all fuzz input. Drives `Worker::process_queues`
//! (the code the device thread runs on every notification) a few rounds; it may mark the
//! device broken (`Err`) but must never panic or touch memory outside the guest's regions.
//!
//! Input: [tx size exponent, rx size exponent, rounds (bit 7: EVENT_IDX negotiated), guest
//! memory...]. Region 0 holds the tx
//! queue (descriptors 0x0, available ring 0x1000, used ring 0x1400) and the rx queue (0x2000,
//! 0x3000, 0x3400); descriptors may point anywhere.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sandpod_vmm::devices::virtio::queue::QueueConfig;
use sandpod_vmm::devices::virtio::vsock::muxer::{MAX_CONTROL_PER_CONN, MAX_RSTS};
use sandpod_vmm::devices::virtio::vsock::rx_queue::RX_QUEUE_SIZE;
use sandpod_vmm::devices::virtio::vsock::worker::Worker;
use sandpod_vmm::devices::virtio::vsock::QUEUE_SIZE;
use sandpod_vmm::devices::virtio::Interrupt;
use sandpod_vmm_fuzz::{guest_memory, muxer};
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

fn queue_config(size_exp: u8, base: u64) -> QueueConfig {
    QueueConfig {
        max_size: QUEUE_SIZE,
        size: 1 << (size_exp % 9),
        ready: true,
        desc: base,
        avail: base + 0x1000,
        used: base + 0x1400,
    }
}

fn eventfd() -> EventFd {
    EventFd::new(libc::EFD_NONBLOCK).expect("eventfd")
}

fuzz_target!(|data: &[u8]| {
    let [tx_exp, rx_exp, rounds, memory @ ..] = data else {
        return;
    };
    let mem = guest_memory(memory);
    let rx = queue_config(*rx_exp, 0x2000)
        .build(&mem)
        .expect("valid rx queue");
    let tx = queue_config(*tx_exp, 0)
        .build(&mem)
        .expect("valid tx queue");
    let ev = Queue::new(QUEUE_SIZE).expect("event queue");
    let mut queues = vec![rx, tx, ev];
    for q in &mut queues {
        q.set_event_idx(rounds & 0x80 != 0);
    }
    let mut worker = Worker::new(
        mem,
        queues,
        (0..3).map(|_| eventfd()).collect(),
        Arc::new(Interrupt::new(eventfd())),
        muxer(),
    )
    .expect("worker");
    for _ in 0..=(rounds % 4) {
        let result = worker.process_queues();
        // Whatever the guest did, what waits for its rx buffers stays bounded.
        let m = &worker.muxer;
        let (control, rsts) = m.control_len();
        assert!(m.rx_queue_len() <= RX_QUEUE_SIZE);
        assert!(control <= usize::from(MAX_CONTROL_PER_CONN) * m.connection_count());
        assert!(rsts <= MAX_RSTS);
        if result.is_err() {
            break;
        }
    }
});
