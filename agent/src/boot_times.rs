//! When the guest's boot reached each of the agent's steps (the guest's CLOCK_BOOTTIME in ms;
//! 0 until known), reported to the host in CreateSandboxResponse for its boot-phase log line.
//! A guest restored from a template reports 0s instead: these are the template's boot times
//! (see `clone::CloneGate::boot_times`).
use std::sync::atomic::{AtomicU64, Ordering};

static INIT: AtomicU64 = AtomicU64::new(0);
static SWITCH_ROOT: AtomicU64 = AtomicU64::new(0);
static READY: AtomicU64 = AtomicU64::new(0);
static SERVING: AtomicU64 = AtomicU64::new(0);

/// The times recorded so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BootTimes {
    pub init_ms: u64,
    pub switch_root_ms: u64,
    pub ready_ms: u64,
    pub serving_ms: u64,
}

/// PID 1 started at `boot_ms`; its switch_root took `switch_root_ms`.
pub fn mark_init(boot_ms: u64, switch_root_ms: u64) {
    INIT.store(boot_ms, Ordering::Relaxed);
    SWITCH_ROOT.store(switch_root_ms, Ordering::Relaxed);
}

/// The ready line was printed at `boot_ms`.
pub fn mark_ready(boot_ms: u64) {
    READY.store(boot_ms, Ordering::Relaxed);
}

/// The API is served from `boot_ms` on.
pub fn mark_serving(boot_ms: u64) {
    SERVING.store(boot_ms, Ordering::Relaxed);
}

pub fn snapshot() -> BootTimes {
    BootTimes {
        init_ms: INIT.load(Ordering::Relaxed),
        switch_root_ms: SWITCH_ROOT.load(Ordering::Relaxed),
        ready_ms: READY.load(Ordering::Relaxed),
        serving_ms: SERVING.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_reported() {
        mark_init(900, 150);
        mark_ready(1100);
        mark_serving(1300);
        assert_eq!(
            snapshot(),
            BootTimes {
                init_ms: 900,
                switch_root_ms: 150,
                ready_ms: 1100,
                serving_ms: 1300
            }
        );
    }
}
