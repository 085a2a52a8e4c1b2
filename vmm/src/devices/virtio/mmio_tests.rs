use std::sync::Mutex;

use super::*;
use crate::devices::virtio::test_utils::{
    guest_mem, negotiate, rd, setup_queue, transport, wr, MockDevice, MockLog,
};

struct Fixture {
    t: MmioTransport,
    log: Arc<Mutex<MockLog>>,
    irq: EventFd,
    notify: Vec<EventFd>,
}

fn fixture() -> Fixture {
    let log = Arc::new(Mutex::new(MockLog::default()));
    let rig = transport(Box::new(MockDevice(log.clone())), guest_mem(0x10_0000));
    Fixture {
        t: rig.t,
        log,
        irq: rig.irq,
        notify: rig.notify,
    }
}

/// [`negotiate`] with the driver's high feature word only.
fn negotiate_hi(t: &mut MmioTransport, features_hi: u32) {
    negotiate(t, u64::from(features_hi) << 32);
}

/// A queue of `size` entries with its rings at 16 KiB·(index + 1), as the driver sets it up.
fn setup(t: &mut MmioTransport, index: u32, size: u32) {
    wr(t, 0x30, index);
    assert_eq!(rd(t, 0x34), 256);
    setup_queue(t, index, size, 0x4000 * (u64::from(index) + 1));
}

const DRIVER_OK_ALL: u32 =
    STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK;

#[test]
fn identification_registers() {
    let mut f = fixture();
    assert_eq!(rd(&mut f.t, 0x00), 0x7472_6976);
    assert_eq!(rd(&mut f.t, 0x04), 2);
    assert_eq!(rd(&mut f.t, 0x08), 19);
    assert_eq!(rd(&mut f.t, 0x0c), VENDOR_ID);
    wr(&mut f.t, 0x14, 0);
    assert_eq!(rd(&mut f.t, 0x10), 1 << 3);
    wr(&mut f.t, 0x14, 1);
    assert_eq!(rd(&mut f.t, 0x10), 1); // VIRTIO_F_VERSION_1
    wr(&mut f.t, 0x14, 2);
    assert_eq!(rd(&mut f.t, 0x10), 0);
    // Non-32-bit register accesses read zero.
    let mut b = [0xffu8; 2];
    f.t.read(0, &mut b);
    assert_eq!(b, [0, 0]);
    // Config space: any width.
    let mut b = [0u8; 8];
    f.t.read(0x100, &mut b);
    assert_eq!(u64::from_le_bytes(b), 0x1122_3344_5566_7788);
    assert_eq!(rd(&mut f.t, 0x104), 0x1122_3344);
    assert_eq!(rd(&mut f.t, 0xfc), 0);
    assert_eq!(rd(&mut f.t, 0xb0), u32::MAX);
}

#[test]
fn full_negotiation_activates_and_reset_stops() {
    let mut f = fixture();
    negotiate_hi(&mut f.t, 1);
    assert_ne!(rd(&mut f.t, 0x70) & STATUS_FEATURES_OK, 0);
    setup(&mut f.t, 0, 128);
    setup(&mut f.t, 1, 256);
    wr(&mut f.t, 0x70, DRIVER_OK_ALL);
    assert_eq!(rd(&mut f.t, 0x70), DRIVER_OK_ALL);
    assert!(f.t.is_activated());
    assert_eq!(
        f.log.lock().unwrap().activations,
        vec![(1u64 << 32, vec![128, 256])]
    );
    // Queue registers are frozen after DRIVER_OK.
    wr(&mut f.t, 0x30, 0);
    wr(&mut f.t, 0x44, 0);
    assert_eq!(rd(&mut f.t, 0x44), 1);
    // Notifications reach the queue's eventfd; bad indices are ignored.
    wr(&mut f.t, QUEUE_NOTIFY, 1);
    wr(&mut f.t, QUEUE_NOTIFY, 7);
    assert_eq!(f.notify[1].read().unwrap(), 1);
    assert!(f.notify[0].read().is_err());
    // Interrupt status and ACK.
    f.t.interrupt.signal_used().unwrap();
    assert_eq!(f.irq.read().unwrap(), 1);
    assert_eq!(rd(&mut f.t, 0x60), 1);
    wr(&mut f.t, 0x64, 1);
    assert_eq!(rd(&mut f.t, 0x60), 0);
    // Reset.
    let resets = f.log.lock().unwrap().resets;
    wr(&mut f.t, 0x70, 0);
    assert_eq!(f.log.lock().unwrap().resets, resets + 1);
    assert_eq!(rd(&mut f.t, 0x70), 0);
    wr(&mut f.t, 0x30, 0);
    assert_eq!(rd(&mut f.t, 0x44), 0);
    assert!(!f.t.is_activated());
}

#[test]
fn legacy_or_unknown_features_are_refused() {
    let mut f = fixture();
    negotiate_hi(&mut f.t, 0);
    assert_eq!(rd(&mut f.t, 0x70) & STATUS_FEATURES_OK, 0);
    // DRIVER_OK without FEATURES_OK does not activate.
    wr(
        &mut f.t,
        0x70,
        STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_DRIVER_OK,
    );
    assert!(!f.t.is_activated());
    let mut f = fixture();
    negotiate_hi(&mut f.t, 1 | 2);
    assert_eq!(rd(&mut f.t, 0x70) & STATUS_FEATURES_OK, 0);
}

#[test]
fn bad_queue_config_marks_device_broken() {
    for (size, desc) in [
        (100u32, 0x4000u32),
        (512, 0x4000),
        (128, 0x4008),
        (128, 0xffff_f000),
    ] {
        let mut f = fixture();
        negotiate_hi(&mut f.t, 1);
        setup(&mut f.t, 0, 128);
        setup(&mut f.t, 1, size);
        wr(&mut f.t, 0x80, desc);
        wr(&mut f.t, 0x70, DRIVER_OK_ALL);
        assert!(!f.t.is_activated(), "size {size} desc {desc:#x}");
        let status = rd(&mut f.t, 0x70);
        assert_ne!(status & STATUS_DEVICE_NEEDS_RESET, 0);
        assert_eq!(rd(&mut f.t, 0x60) & INT_CONFIG, INT_CONFIG);
        // A reset clears it.
        wr(&mut f.t, 0x70, 0);
        assert_eq!(rd(&mut f.t, 0x70), 0);
    }
}

#[test]
fn queue_registers_need_features_ok() {
    let mut f = fixture();
    wr(&mut f.t, 0x70, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    wr(&mut f.t, 0x30, 0);
    wr(&mut f.t, 0x44, 1);
    assert_eq!(rd(&mut f.t, 0x44), 0);
    // Unknown queue index: reads zero, writes ignored.
    negotiate_hi(&mut f.t, 1);
    wr(&mut f.t, 0x30, 9);
    assert_eq!(rd(&mut f.t, 0x34), 0);
    wr(&mut f.t, 0x44, 1);
    assert_eq!(rd(&mut f.t, 0x44), 0);
    // Status may not drop bits without a reset.
    wr(&mut f.t, 0x70, STATUS_ACKNOWLEDGE);
    assert_ne!(rd(&mut f.t, 0x70) & STATUS_FEATURES_OK, 0);
}

#[test]
fn a_saved_transport_restores_where_the_used_rings_say() {
    use vm_memory::Bytes;
    let mut f = fixture();
    negotiate_hi(&mut f.t, 1);
    setup(&mut f.t, 0, 128);
    setup(&mut f.t, 1, 256);
    wr(&mut f.t, 0x70, DRIVER_OK_ALL);
    f.t.interrupt.signal_used().unwrap();
    let saved = f.t.save();
    assert_eq!(saved.status, DRIVER_OK_ALL);
    assert_eq!(saved.interrupt_status, 1);
    // The device had used 5 and 300 chains (the used rings' idx, at used + 2).
    let mem = f.t.mem.clone();
    mem.write_obj(5u16, GuestAddress(0x4000 + 0x2000 + 2))
        .unwrap();
    mem.write_obj(300u16, GuestAddress(0x8000 + 0x2000 + 2))
        .unwrap();

    let log = Arc::new(Mutex::new(MockLog::default()));
    let mut rig = transport(Box::new(MockDevice(log.clone())), mem.clone());
    rig.t.restore(&saved).unwrap();
    assert!(rig.t.is_activated());
    let l = log.lock().unwrap();
    assert_eq!(l.restoring, 1);
    assert_eq!(l.activations, vec![(1u64 << 32, vec![128, 256])]);
    assert_eq!(l.positions, vec![vec![5, 300]]);
    drop(l);
    // The pending interrupt is raised again; the registers read as before.
    assert_eq!(rig.irq.read().unwrap(), 1);
    assert_eq!(rd(&mut rig.t, 0x70), DRIVER_OK_ALL);
    assert_eq!(rd(&mut rig.t, 0x60), 1);
    assert_eq!(rig.t.save(), saved);
}

#[test]
fn a_restore_that_does_not_fit_the_device_is_refused() {
    let mut f = fixture();
    negotiate_hi(&mut f.t, 1);
    setup(&mut f.t, 0, 128);
    setup(&mut f.t, 1, 256);
    wr(&mut f.t, 0x70, DRIVER_OK_ALL);
    let good = f.t.save();
    let cases: Vec<TransportState> = vec![
        TransportState {
            device_type: 2,
            ..good.clone()
        },
        TransportState {
            queues: good.queues[..1].to_vec(),
            ..good.clone()
        },
        // A queue size that is not a power of two, rings outside memory, unoffered features.
        TransportState {
            queues: vec![
                QueueConfig {
                    size: 100,
                    ..good.queues[0]
                },
                good.queues[1],
            ],
            ..good.clone()
        },
        TransportState {
            queues: vec![
                QueueConfig {
                    used: 0x10_0000,
                    ..good.queues[0]
                },
                good.queues[1],
            ],
            ..good.clone()
        },
        TransportState {
            driver_features: 1 << 40,
            ..good.clone()
        },
    ];
    for bad in cases {
        let log = Arc::new(Mutex::new(MockLog::default()));
        let mut rig = transport(Box::new(MockDevice(log.clone())), f.t.mem.clone());
        assert!(rig.t.restore(&bad).is_err(), "{bad:?}");
        assert!(log.lock().unwrap().activations.is_empty(), "{bad:?}");
    }
    // A driver that had not started the device: restored, not activated.
    let log = Arc::new(Mutex::new(MockLog::default()));
    let mut rig = transport(Box::new(MockDevice(log.clone())), f.t.mem.clone());
    let idle = TransportState {
        status: STATUS_ACKNOWLEDGE | STATUS_DRIVER,
        ..good
    };
    rig.t.restore(&idle).unwrap();
    assert!(!rig.t.is_activated());
}
