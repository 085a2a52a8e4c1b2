use super::*;
use crate::kvm::vcpu_state::VcpuState;
use kvm_bindings::{kvm_irqchip, kvm_msr_entry};

fn vcpu(rip: u64) -> VcpuState {
    VcpuState {
        mp_state: Default::default(),
        regs: kvm_bindings::kvm_regs {
            rip,
            ..Default::default()
        },
        sregs: Default::default(),
        xsave: Default::default(),
        xcrs: Default::default(),
        debug_regs: Default::default(),
        lapic: Default::default(),
        msrs: vec![kvm_msr_entry {
            index: 0x10,
            data: 42,
            ..Default::default()
        }],
        events: Default::default(),
        tsc_khz: Some(2_000_000),
    }
}

fn snapshot() -> Snapshot {
    let chip = |chip_id| kvm_irqchip {
        chip_id,
        ..Default::default()
    };
    Snapshot {
        vmm_version: crate::VERSION.to_string(),
        mem_bytes: 256 << 20,
        vm: VmState {
            irqchips: vec![chip(0), chip(1), chip(2)],
            pit: Default::default(),
            clock: Default::default(),
        },
        vcpus: vec![vcpu(0x1000), vcpu(0x2000)],
        devices: vec![TransportState {
            device_type: 19,
            status: 0xf,
            device_features_sel: 1,
            driver_features_sel: 1,
            driver_features: 1 << 32,
            queue_sel: 2,
            config_generation: 0,
            interrupt_status: 1,
            needs_reset: false,
            queues: Vec::new(),
        }],
        serial: SavedSerial::default(),
    }
}

#[test]
fn a_snapshot_round_trips() {
    let bytes = snapshot().encode().unwrap();
    let back = Snapshot::decode(&bytes).unwrap();
    assert_eq!(back.vcpus.len(), 2);
    assert_eq!(back.vcpus[1].regs.rip, 0x2000);
    assert_eq!(back.vcpus[0].msrs[0].data, 42);
    assert_eq!(back.devices, snapshot().devices);
    assert_eq!(back.mem_bytes, 256 << 20);
    back.check_fits(2, 256 << 20, 1).unwrap();
}

#[test]
fn a_damaged_file_is_an_error_never_a_panic() {
    let good = snapshot().encode().unwrap();
    // Truncated anywhere, header included.
    for len in [0, 7, 20, HEADER_LEN, HEADER_LEN + 1, good.len() - 1] {
        assert!(Snapshot::decode(&good[..len]).is_err(), "{len}");
    }
    // Any flipped byte: magic, version, length, digest or payload.
    for i in (0..good.len()).step_by(7) {
        let mut bad = good.clone();
        bad[i] ^= 0x40;
        assert!(Snapshot::decode(&bad).is_err(), "byte {i}");
    }
    // Extra bytes after the payload.
    let mut long = good.clone();
    long.push(0);
    assert!(Snapshot::decode(&long).is_err());
}

/// A hostile file with a valid header and digest over a payload of its choosing.
fn forged(payload: &[u8], version: u32) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(payload));
    out.extend_from_slice(payload);
    out
}

#[test]
fn a_forged_payload_is_checked_too() {
    // Garbage with a correct digest.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for len in [0usize, 1, 16, 300, 5000] {
        let payload: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed.to_le_bytes()[0]
            })
            .collect();
        assert!(Snapshot::decode(&forged(&payload, FORMAT_VERSION)).is_err());
    }
    // Well-formed but out of bounds: no vCPU, too many MSRs, irqchips out of order.
    let mut s = snapshot();
    s.vcpus.clear();
    let p = postcard::to_stdvec(&s).unwrap();
    assert!(Snapshot::decode(&forged(&p, FORMAT_VERSION)).is_err());
    let mut s = snapshot();
    s.vcpus[0].msrs = vec![kvm_msr_entry::default(); MAX_MSRS + 1];
    let p = postcard::to_stdvec(&s).unwrap();
    assert!(Snapshot::decode(&forged(&p, FORMAT_VERSION)).is_err());
    let mut s = snapshot();
    s.vm.irqchips.swap(0, 2);
    let p = postcard::to_stdvec(&s).unwrap();
    assert!(Snapshot::decode(&forged(&p, FORMAT_VERSION)).is_err());
    // Another format version.
    let p = postcard::to_stdvec(&snapshot()).unwrap();
    assert!(Snapshot::decode(&forged(&p, FORMAT_VERSION + 1)).is_err());
    assert!(Snapshot::decode(&forged(&p, FORMAT_VERSION)).is_ok());
    // A length field over the bound.
    let mut huge = forged(&p, FORMAT_VERSION);
    huge[12..20].copy_from_slice(&(MAX_PAYLOAD + 1).to_le_bytes());
    assert!(Snapshot::decode(&huge).is_err());
}

#[test]
fn a_snapshot_of_another_vm_does_not_fit() {
    let s = snapshot();
    assert!(s.check_fits(1, 256 << 20, 1).is_err());
    assert!(s.check_fits(2, 128 << 20, 1).is_err());
    assert!(s.check_fits(2, 256 << 20, 2).is_err());
    let mut other = snapshot();
    other.vmm_version = "0.0.0-other".into();
    assert!(other.check_fits(2, 256 << 20, 1).is_err());
}

#[test]
fn files_are_written_and_read_back() {
    let dir = std::env::temp_dir().join(format!("sandpod-snap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let target = save::SnapshotTarget::create(&dir).unwrap();
    drop(target);
    // Freshly created files are empty: not a snapshot.
    assert!(matches!(
        read_state(&dir),
        Err(SnapshotError::Invalid { .. })
    ));
    let f = std::fs::File::create(dir.join(SNAPSHOT_STATE_FILE)).unwrap();
    write_state(&snapshot(), &f, &dir).unwrap();
    assert_eq!(read_state(&dir).unwrap().vcpus.len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(read_state(&dir), Err(SnapshotError::Io { .. })));
}
