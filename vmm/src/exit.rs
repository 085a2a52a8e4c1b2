//! How a VM ends: the [`ExitReason`] and the shared [`ExitState`] that vCPUs, devices and the
//! embedding program use to request the end of the VM.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Why the VM stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// The guest powered off: the agent's request on the power port, KVM_SYSTEM_EVENT_SHUTDOWN,
    /// or a halted vCPU without an in-kernel LAPIC. Exit status 0.
    PowerOff,
    /// The guest asked for a reboot on the power port. Exit status 3.
    Reboot,
    /// The guest reset without asking on the power port first (i8042 reset or
    /// KVM_SYSTEM_EVENT_RESET): with `panic=-1` that is how a kernel panic ends, e.g. when the
    /// agent (PID 1) dies. Exit status 2.
    Reset,
    /// The guest triple-faulted (KVM_EXIT_SHUTDOWN). Exit status 2.
    TripleFault,
    /// The guest reported a crash (KVM_SYSTEM_EVENT_CRASH). Exit status 2.
    GuestCrash,
    /// Stopped by a signal (SIGINT, SIGTERM). Exit status 128 + signal.
    Signal(i32),
    /// Stopped by the embedding program through [`ExitState::request`]. Exit status 0.
    Stopped,
    /// A VMM or KVM error (KVM_EXIT_INTERNAL_ERROR, failed entry, unexpected exit). Exit 1.
    Error(String),
    /// The guest asked for a snapshot (template mode, `snapshot_to`) and it was saved. Exit
    /// status [`sandpod_vmconfig::EXIT_SNAPSHOT_SAVED`] (4); a failed save is an `Error`.
    Snapshot,
}

impl ExitReason {
    /// Process exit status for this reason, as documented in `sandpod-vmm --help`.
    pub fn exit_code(&self) -> i32 {
        match self {
            ExitReason::PowerOff | ExitReason::Stopped => 0,
            ExitReason::Reboot => 3,
            ExitReason::Reset | ExitReason::TripleFault | ExitReason::GuestCrash => 2,
            ExitReason::Signal(sig) => 128 + sig,
            ExitReason::Error(_) => 1,
            ExitReason::Snapshot => sandpod_vmconfig::EXIT_SNAPSHOT_SAVED,
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::PowerOff => write!(f, "guest powered off"),
            ExitReason::Reboot => write!(f, "guest requested a reboot"),
            ExitReason::Reset => write!(f, "guest reset without a request (kernel panic?)"),
            ExitReason::TripleFault => write!(f, "guest triple fault (KVM shutdown exit)"),
            ExitReason::GuestCrash => write!(f, "guest crashed"),
            ExitReason::Signal(s) => write!(f, "stopped by signal {s}"),
            ExitReason::Stopped => write!(f, "stopped"),
            ExitReason::Error(e) => write!(f, "error: {e}"),
            ExitReason::Snapshot => write!(f, "snapshot saved at the guest's request"),
        }
    }
}

/// Shared between the VMM's threads: the first requested reason wins.
#[derive(Debug, Default)]
pub struct ExitState {
    reason: Mutex<Option<ExitReason>>,
    cond: Condvar,
    stopping: AtomicBool,
}

impl ExitState {
    /// A fresh state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests the end of the VM. Returns true if this request decided the reason.
    pub fn request(&self, reason: ExitReason) -> bool {
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        self.stopping.store(true, Ordering::SeqCst);
        if r.is_some() {
            return false;
        }
        *r = Some(reason);
        self.cond.notify_all();
        true
    }

    /// Whether the VM is stopping (vCPUs check this before each KVM_RUN).
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The reason, once one was requested.
    pub fn reason(&self) -> Option<ExitReason> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Blocks until a reason is requested, or `timeout` passes.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<ExitReason> {
        let guard = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = self
            .cond
            .wait_timeout_while(guard, timeout, |r| r.is_none())
            .unwrap_or_else(|e| e.into_inner());
        guard.clone()
    }

    /// Blocks until a reason is requested.
    pub fn wait(&self) -> ExitReason {
        let guard = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        let guard = self
            .cond
            .wait_while(guard, |r| r.is_none())
            .unwrap_or_else(|e| e.into_inner());
        guard.clone().unwrap_or(ExitReason::Stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn first_reason_wins() {
        let s = ExitState::new();
        assert!(!s.is_stopping());
        assert!(s.request(ExitReason::Reboot));
        assert!(!s.request(ExitReason::TripleFault));
        assert!(s.is_stopping());
        assert_eq!(s.wait(), ExitReason::Reboot);
    }

    #[test]
    fn wait_across_threads() {
        let s = Arc::new(ExitState::new());
        assert_eq!(s.wait_timeout(Duration::from_millis(1)), None);
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.request(ExitReason::Signal(15)));
        assert_eq!(s.wait(), ExitReason::Signal(15));
        assert!(t.join().unwrap());
    }

    #[test]
    fn exit_codes() {
        assert_eq!(ExitReason::Reboot.exit_code(), 3);
        assert_eq!(ExitReason::Reset.exit_code(), 2);
        assert_eq!(ExitReason::PowerOff.exit_code(), 0);
        assert_eq!(ExitReason::TripleFault.exit_code(), 2);
        assert_eq!(ExitReason::GuestCrash.exit_code(), 2);
        assert_eq!(ExitReason::Error("x".into()).exit_code(), 1);
        assert_eq!(ExitReason::Signal(15).exit_code(), 143);
        assert_eq!(ExitReason::Signal(2).exit_code(), 130);
        assert_eq!(ExitReason::Snapshot.exit_code(), 4);
    }
}
