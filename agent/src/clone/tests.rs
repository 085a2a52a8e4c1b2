//! The clone gate with fake kernel calls (nothing here reseeds or sets the host's clock).
use std::sync::atomic::AtomicBool;

use super::*;

/// Records the calls; `fail` makes add_entropy fail.
#[derive(Default)]
pub(crate) struct FakeOps {
    pub calls: Arc<Mutex<Vec<String>>>,
    pub fail: bool,
}

/// CLOCK_REALTIME as the fake reports it before being set: 2020-09-13T12:26:40Z.
pub(crate) const FAKE_OLD_NS: i128 = 1_600_000_000_000_000_000;

impl CloneOps for FakeOps {
    fn add_entropy(&self, entropy: &[u8]) -> io::Result<()> {
        if self.fail {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        self.calls
            .lock()
            .unwrap()
            .push(format!("add_entropy {}", entropy.len()));
        Ok(())
    }
    fn reseed_crng(&self) -> io::Result<()> {
        self.calls.lock().unwrap().push("reseed".into());
        Ok(())
    }
    fn realtime_ns(&self) -> io::Result<i128> {
        self.calls.lock().unwrap().push("get_time".into());
        Ok(FAKE_OLD_NS)
    }
    fn set_realtime_ns(&self, ns: u64) -> io::Result<()> {
        self.calls.lock().unwrap().push(format!("set_time {ns}"));
        Ok(())
    }
}

/// A pending gate over a fake, with its call log and a flag set by the resume hook.
pub(crate) fn pending_gate() -> (CloneGate, Arc<Mutex<Vec<String>>>, Arc<AtomicBool>) {
    let ops = FakeOps::default();
    let calls = ops.calls.clone();
    let resumed = Arc::new(AtomicBool::new(false));
    let flag = resumed.clone();
    let gate = CloneGate::pending(
        Box::new(ops),
        Box::new(move || {
            assert!(!flag.swap(true, Ordering::SeqCst), "hook ran twice");
        }),
    );
    (gate, calls, resumed)
}

const NEW_NS: u64 = 1_600_000_005_250_000_000;

#[test]
fn a_booted_guest_is_never_gated_and_refuses_resume() {
    let gate = CloneGate::off();
    assert!(!gate.is_clone());
    gate.check().unwrap();
    let e = gate.resume(&[7; 32], NEW_NS).unwrap_err();
    assert!(matches!(e, CloneError::NotPending(_)), "{e}");
}

#[test]
fn pending_until_one_resume_then_open() {
    let (gate, calls, resumed) = pending_gate();
    assert!(gate.is_clone());
    let e = gate.check().unwrap_err();
    assert_eq!(e.to_string(), PENDING_MESSAGE);
    assert!(!resumed.load(Ordering::SeqCst));

    assert_eq!(gate.resume(&[7; 64], NEW_NS).unwrap(), 5250);
    gate.check().unwrap();
    assert!(resumed.load(Ordering::SeqCst));
    assert_eq!(
        *calls.lock().unwrap(),
        [
            "add_entropy 64".to_string(),
            "reseed".into(),
            "get_time".into(),
            format!("set_time {NEW_NS}"),
        ]
    );
    // Once only.
    let e = gate.resume(&[7; 64], NEW_NS).unwrap_err();
    assert!(matches!(e, CloneError::NotPending(_)), "{e}");
    assert_eq!(calls.lock().unwrap().len(), 4);
    // Shared by every copy (the service is cloned per call).
    gate.clone().check().unwrap();
}

#[test]
fn entropy_length_bounds() {
    let (gate, calls, _) = pending_gate();
    for len in [0, 1, 31, 513, 4096] {
        let e = gate.resume(&vec![1; len], NEW_NS).unwrap_err();
        assert!(matches!(e, CloneError::InvalidArgument(_)), "{len}: {e}");
        assert!(e.to_string().contains(&format!("{len} bytes")), "{e}");
    }
    let e = gate.resume(&[1; 32], 0).unwrap_err();
    assert!(matches!(e, CloneError::InvalidArgument(_)), "{e}");
    // Nothing was called, and the guest is still pending.
    assert!(calls.lock().unwrap().is_empty());
    assert!(gate.check().is_err());
    check_request(&[1; MIN_ENTROPY], 1).unwrap();
    check_request(&[1; MAX_ENTROPY], 1).unwrap();
    gate.resume(&[1; MAX_ENTROPY], NEW_NS).unwrap();
}

#[test]
fn a_failed_resume_stays_pending_and_may_be_retried() {
    let ops = FakeOps {
        fail: true,
        ..Default::default()
    };
    let gate = CloneGate::pending(Box::new(ops), Box::new(|| panic!("must not run")));
    let e = gate.resume(&[1; 32], NEW_NS).unwrap_err();
    assert!(matches!(e, CloneError::Failed { .. }), "{e}");
    assert!(e.to_string().contains("RNDADDENTROPY"), "{e}");
    assert!(matches!(gate.check(), Err(CloneError::Pending)));
    // Retried: fails the same way, not "resumed already".
    let e = gate.resume(&[1; 32], NEW_NS).unwrap_err();
    assert!(matches!(e, CloneError::Failed { .. }), "{e}");
}

#[test]
fn a_clone_reports_no_boot_times() {
    let (gate, _, _) = pending_gate();
    assert_eq!(gate.boot_times(), BootTimes::default());
    gate.resume(&[1; 32], NEW_NS).unwrap();
    assert_eq!(gate.boot_times(), BootTimes::default());
}

#[test]
fn clock_step_in_ms() {
    assert_eq!(step_ms(1_000_000_000, 3_500_000_000), 2500);
    assert_eq!(step_ms(3_500_000_000, 1_000_000_000), -2500);
    assert_eq!(step_ms(0, 999_999), 0);
    assert_eq!(step_ms(i128::MIN / 2, u64::MAX), i64::MAX);
    assert_eq!(step_ms(i128::MAX / 2, 0), i64::MIN);
}
