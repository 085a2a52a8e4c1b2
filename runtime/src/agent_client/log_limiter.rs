//! Caps on the guest's log stream (the guest is untrusted: whatever it sends on port 1025 must
//! not flood the host's logs). One [`LogLimiter`] per sandbox, shared by all the connections of
//! its [`LogReceiver`](super::LogReceiver) (a guest can open many): a token bucket in lines a
//! second and one in bytes a second. Lines beyond them are dropped and counted, and the host
//! logs `guest log: N lines dropped (rate limit)` at most once per `report_interval` (and once
//! more when the receiver stops). The number of connections is bounded too ([`LogLimits`]).
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use sandpod_vmconfig::rate::{Clock, MonotonicClock};
use sandpod_vmconfig::rate::{IntervalGate, TokenBucket};

/// The caps on one sandbox's guest log stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Sustained lines a second.
    pub lines_per_sec: u64,
    /// Most lines at once after a quiet time.
    pub burst_lines: u64,
    /// Sustained bytes a second (a line costs its length and its newline).
    pub bytes_per_sec: u64,
    /// Most bytes at once after a quiet time.
    pub burst_bytes: u64,
    /// Most connections read at once (with a log token: connections that presented it); more
    /// are closed.
    pub max_connections: usize,
    /// With a log token: most connections at once that have not presented it yet; more are
    /// closed.
    pub max_pending: usize,
    /// With a log token: how long a connection has to present it before it is closed.
    pub token_deadline: Duration,
    /// Least time between two "lines dropped" reports.
    pub report_interval: Duration,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            lines_per_sec: 100,
            burst_lines: 1000,
            bytes_per_sec: 64 * 1024,
            burst_bytes: 1024 * 1024,
            max_connections: 4,
            max_pending: 4,
            token_deadline: Duration::from_secs(5),
            report_interval: Duration::from_secs(10),
        }
    }
}

struct State {
    lines: TokenBucket,
    bytes: TokenBucket,
    gate: IntervalGate,
    /// Lines dropped since the last report.
    unreported: u64,
    /// Lines dropped in all.
    dropped: u64,
}

/// The rate limit shared by all the log connections of one sandbox.
pub struct LogLimiter {
    limits: LogLimits,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl LogLimiter {
    /// A limiter on the monotonic clock.
    pub fn new(limits: LogLimits) -> Self {
        Self::with_clock(limits, Arc::new(MonotonicClock))
    }

    /// A limiter on `clock`.
    pub fn with_clock(limits: LogLimits, clock: Arc<dyn Clock>) -> Self {
        let now = clock.now();
        LogLimiter {
            state: Mutex::new(State {
                lines: TokenBucket::new(limits.lines_per_sec, limits.burst_lines, now),
                bytes: TokenBucket::new(limits.bytes_per_sec, limits.burst_bytes, now),
                gate: IntervalGate::new(limits.report_interval),
                unreported: 0,
                dropped: 0,
            }),
            limits,
            clock,
        }
    }

    /// The caps.
    pub fn limits(&self) -> &LogLimits {
        &self.limits
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a line of `len` bytes (without its newline) goes through now: it takes a line
    /// and `len + 1` bytes, or is dropped and counted. Reports the dropped lines when due.
    pub fn admit(&self, len: usize) -> bool {
        let now = self.clock.now();
        let cost = u64::try_from(len).unwrap_or(u64::MAX).saturating_add(1);
        let mut s = self.state();
        let keep = s.lines.available(now) >= 1 && s.bytes.available(now) >= cost;
        if keep {
            s.lines.try_take(1, now);
            s.bytes.try_take(cost, now);
        } else {
            s.dropped += 1;
            s.unreported += 1;
        }
        if s.unreported > 0 && s.gate.ready(now) {
            report(std::mem::take(&mut s.unreported));
        }
        keep
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.state().dropped
    }

    /// Reports the dropped lines not reported yet (when the receiver stops).
    pub fn report_pending(&self) {
        let n = std::mem::take(&mut self.state().unreported);
        if n > 0 {
            report(n);
        }
    }
}

fn report(n: u64) {
    tracing::warn!("guest log: {n} lines dropped (rate limit)");
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Instant;

    /// A clock the test moves.
    #[derive(Clone)]
    pub(crate) struct ManualClock(Arc<Mutex<Instant>>);

    impl ManualClock {
        pub(crate) fn new() -> Self {
            ManualClock(Arc::new(Mutex::new(Instant::now())))
        }

        pub(crate) fn advance(&self, d: Duration) {
            *self.0.lock().unwrap() += d;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    fn limits(lines: u64, burst_lines: u64, bytes: u64, burst_bytes: u64) -> LogLimits {
        LogLimits {
            lines_per_sec: lines,
            burst_lines,
            bytes_per_sec: bytes,
            burst_bytes,
            ..LogLimits::default()
        }
    }

    #[test]
    fn lines_beyond_the_line_budget_are_dropped_and_counted() {
        let clock = ManualClock::new();
        let l =
            LogLimiter::with_clock(limits(100, 1000, 1 << 30, 1 << 30), Arc::new(clock.clone()));
        let kept = (0..5000).filter(|_| l.admit(10)).count();
        assert_eq!((kept, l.dropped()), (1000, 4000));
        // A second later: 100 more.
        clock.advance(Duration::from_secs(1));
        let kept = (0..5000).filter(|_| l.admit(10)).count();
        assert_eq!((kept, l.dropped()), (100, 8900));
    }

    #[test]
    fn bytes_are_limited_too() {
        let clock = ManualClock::new();
        let l = LogLimiter::with_clock(limits(1 << 30, 1 << 30, 1000, 10_000), Arc::new(clock));
        // 1000-byte lines cost 1001: 9 fit in 10 000.
        let kept = (0..100).filter(|_| l.admit(1000)).count();
        assert_eq!((kept, l.dropped()), (9, 91));
        // A short line still fits in what is left.
        assert!(l.admit(5));
    }
}
