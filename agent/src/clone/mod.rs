//! VM templates, the guest's side: a guest restored from a template snapshot is a clone of every
//! other guest restored from it (same RNG state, same clock, same everything the agent read at
//! boot). Such a guest is "clone pending" until the host's ResumeClone has reseeded its RNG from
//! fresh host entropy and set its clock; until then [`CloneGate::check`] refuses every RPC but
//! Health and ResumeClone (see `rpc::service`).
//!
//! The flow (`serve`): with `sandpod.template=1` the agent binds its ports, then asks the VMM for
//! a snapshot (`init::power::request_snapshot`); the template VM ends there, and every clone
//! goes on from that write, pending. The log forwarder does not connect before ResumeClone: a
//! vsock connection open at snapshot time would be reset in every clone. Its lines queue
//! meanwhile (bounded, see `logging`); the template's own boot lines are sent by each clone.
//!
//! What a clone re-reads: nothing the agent caches at boot differs per clone except the boot
//! times, which describe the template's boot: a clone reports them as 0 ("not known", see
//! [`CloneGate::boot_times`]). Guest details are read per call; hostname, DNS, log token and
//! network come with CreateSandbox / UpdateNetwork, after ResumeClone.
//!
//! The syscalls sit behind [`CloneOps`]: [`kernel::KernelOps`] in a template guest only (PID 1),
//! a fake in the unit tests; the host-side test mode never has a pending gate.
pub mod free_memory;
pub mod kernel;
#[cfg(test)]
pub(crate) mod tests;

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use thiserror::Error;

use crate::boot_times::BootTimes;

/// Fewest entropy bytes ResumeClone takes (256 bits: a full CRNG seed).
pub const MIN_ENTROPY: usize = 32;
/// Most entropy bytes ResumeClone takes.
pub const MAX_ENTROPY: usize = 512;

/// What every gated RPC answers while the clone is pending.
pub const PENDING_MESSAGE: &str =
    "this guest was restored from a template and has not been reseeded: call ResumeClone first";

/// The kernel calls that make a clone unique. Replaced by a fake in tests.
pub trait CloneOps: Send + Sync {
    /// Mixes `entropy` into the kernel's pool, crediting 8 bits per byte (RNDADDENTROPY).
    fn add_entropy(&self, entropy: &[u8]) -> io::Result<()>;
    /// Reseeds the CRNG from the pool now (RNDRESEEDCRNG).
    fn reseed_crng(&self) -> io::Result<()>;
    /// CLOCK_REALTIME, ns since the epoch (may be negative on a confused guest).
    fn realtime_ns(&self) -> io::Result<i128>;
    /// Sets CLOCK_REALTIME.
    fn set_realtime_ns(&self, ns: u64) -> io::Result<()>;
}

#[derive(Debug, Error)]
pub enum CloneError {
    /// An RPC other than Health/ResumeClone while pending.
    #[error("{PENDING_MESSAGE}")]
    Pending,
    /// ResumeClone in a guest that is not a pending clone.
    #[error("ResumeClone: {0}")]
    NotPending(&'static str),
    #[error("ResumeClone: {0}")]
    InvalidArgument(String),
    #[error("ResumeClone: {what}: {source}")]
    Failed {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// The guest is not a clone (no template): nothing gated, ResumeClone refused.
const NOT_A_CLONE: u8 = 0;
/// A clone waiting for ResumeClone.
const PENDING: u8 = 1;
/// ResumeClone under way (still gated; a second ResumeClone is refused).
const RESUMING: u8 = 2;
/// Reseeded: nothing gated any more, ResumeClone refused.
const RESUMED: u8 = 3;

/// Runs once, after a successful ResumeClone (starts the log forwarder).
pub type OnResumed = Box<dyn FnOnce() + Send>;

struct Inner {
    phase: AtomicU8,
    ops: Option<Box<dyn CloneOps>>,
    on_resumed: Mutex<Option<OnResumed>>,
}

/// The clone state, shared by every copy of the service. Cheap to clone.
#[derive(Clone)]
pub struct CloneGate {
    inner: Arc<Inner>,
}

impl CloneGate {
    /// A guest that was booted, not restored (and the host-side test mode): never gated.
    pub fn off() -> Self {
        Self::new(NOT_A_CLONE, None, None)
    }

    /// A template guest: pending from the start (the template itself is never used, and its
    /// clones go on from its state), until ResumeClone succeeds with `ops`.
    pub fn pending(ops: Box<dyn CloneOps>, on_resumed: OnResumed) -> Self {
        Self::new(PENDING, Some(ops), Some(on_resumed))
    }

    fn new(phase: u8, ops: Option<Box<dyn CloneOps>>, on_resumed: Option<OnResumed>) -> Self {
        CloneGate {
            inner: Arc::new(Inner {
                phase: AtomicU8::new(phase),
                ops,
                on_resumed: Mutex::new(on_resumed),
            }),
        }
    }

    fn phase(&self) -> u8 {
        self.inner.phase.load(Ordering::Acquire)
    }

    /// Whether the guest is a clone (pending or resumed), i.e. restored from a template.
    pub fn is_clone(&self) -> bool {
        self.phase() != NOT_A_CLONE
    }

    /// Ok unless the guest is a clone not reseeded yet: the gate of every RPC but Health and
    /// ResumeClone.
    pub fn check(&self) -> Result<(), CloneError> {
        match self.phase() {
            PENDING | RESUMING => Err(CloneError::Pending),
            _ => Ok(()),
        }
    }

    /// The boot times to report in CreateSandboxResponse: a clone did not boot (it was
    /// restored), and the recorded times are the template's: all 0, "not known".
    pub fn boot_times(&self) -> BootTimes {
        if self.is_clone() {
            BootTimes::default()
        } else {
            crate::boot_times::snapshot()
        }
    }

    /// ResumeClone: reseeds the RNG with `entropy` and sets CLOCK_REALTIME to `realtime_ns`;
    /// returns how far the clock moved (ms, positive: forward). Once per clone; on a failure the
    /// clone stays pending and the host may retry.
    pub fn resume(&self, entropy: &[u8], realtime_ns: u64) -> Result<i64, CloneError> {
        match self.phase() {
            NOT_A_CLONE => {
                return Err(CloneError::NotPending(
                    "this guest was not restored from a template",
                ))
            }
            PENDING => {}
            RESUMING => return Err(CloneError::NotPending("a ResumeClone is under way")),
            _ => return Err(CloneError::NotPending("this clone was resumed already")),
        }
        check_request(entropy, realtime_ns)?;
        let Some(ops) = self.inner.ops.as_deref() else {
            return Err(CloneError::NotPending("no way to reseed this guest"));
        };
        if self
            .inner
            .phase
            .compare_exchange(PENDING, RESUMING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(CloneError::NotPending("a ResumeClone is under way"));
        }
        match reseed(ops, entropy, realtime_ns) {
            Ok(step_ms) => {
                self.inner.phase.store(RESUMED, Ordering::Release);
                tracing::info!(
                    entropy_bytes = entropy.len(),
                    clock_step_ms = step_ms,
                    "restored from a template: RNG reseeded, clock set"
                );
                let hook = self.inner.on_resumed.lock().ok().and_then(|mut h| h.take());
                if let Some(hook) = hook {
                    hook();
                }
                Ok(step_ms)
            }
            Err(e) => {
                self.inner.phase.store(PENDING, Ordering::Release);
                tracing::error!("{e}");
                Err(e)
            }
        }
    }
}

/// The request's checks: 32 to 512 entropy bytes, a time (0 is "not set" in proto3).
pub fn check_request(entropy: &[u8], realtime_ns: u64) -> Result<(), CloneError> {
    if !(MIN_ENTROPY..=MAX_ENTROPY).contains(&entropy.len()) {
        return Err(CloneError::InvalidArgument(format!(
            "entropy: {} bytes, expected {MIN_ENTROPY} to {MAX_ENTROPY}",
            entropy.len()
        )));
    }
    if realtime_ns == 0 {
        return Err(CloneError::InvalidArgument(
            "realtime_ns: not set (0)".to_string(),
        ));
    }
    Ok(())
}

/// Entropy first (the pool, then the CRNG from it), then the clock.
fn reseed(ops: &dyn CloneOps, entropy: &[u8], realtime_ns: u64) -> Result<i64, CloneError> {
    let failed = |what| move |source| CloneError::Failed { what, source };
    ops.add_entropy(entropy)
        .map_err(failed("RNDADDENTROPY on /dev/urandom"))?;
    ops.reseed_crng()
        .map_err(failed("RNDRESEEDCRNG on /dev/urandom"))?;
    let old = ops
        .realtime_ns()
        .map_err(failed("reading CLOCK_REALTIME"))?;
    ops.set_realtime_ns(realtime_ns)
        .map_err(failed("setting CLOCK_REALTIME"))?;
    Ok(step_ms(old, realtime_ns))
}

/// New minus old, in ms (truncated toward 0), saturated to i64.
pub fn step_ms(old_ns: i128, new_ns: u64) -> i64 {
    let ms = (i128::from(new_ns) - old_ns) / 1_000_000;
    i64::try_from(ms).unwrap_or(if ms < 0 { i64::MIN } else { i64::MAX })
}
