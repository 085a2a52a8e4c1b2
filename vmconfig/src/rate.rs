//! Rate limits on what a guest writes to the host: a token bucket and a gate for "at most once
//! per interval" log lines, pure arithmetic on the [`Instant`]s the caller passes, and the
//! [`Clock`] the callers read them from (tests drive it by hand). Used by the VMM's console sink
//! and the runtime's guest log receiver.

use std::time::{Duration, Instant};

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The time, for the token buckets (tests drive it by hand). `Sync` so one clock can serve
/// limiters shared between threads.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Instant;
}

/// The monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A token bucket: holds at most `burst` tokens, refilled at `per_sec` tokens a second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_sec: u64,
    burst: u64,
    tokens: u64,
    /// Refill credit below one token, in token-nanoseconds.
    carry: u128,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(per_sec: u64, burst: u64, now: Instant) -> Self {
        TokenBucket {
            per_sec,
            burst,
            tokens: burst,
            carry: 0,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        self.last = self.last.max(now);
        let credit = self.carry + elapsed.saturating_mul(u128::from(self.per_sec));
        let whole = u64::try_from(credit / NANOS_PER_SEC).unwrap_or(u64::MAX);
        self.carry = credit % NANOS_PER_SEC;
        self.tokens = self.tokens.saturating_add(whole).min(self.burst);
        if self.tokens == self.burst {
            self.carry = 0;
        }
    }

    /// The tokens available at `now`.
    pub fn available(&mut self, now: Instant) -> u64 {
        self.refill(now);
        self.tokens
    }

    /// Takes `n` tokens if there are that many at `now`.
    pub fn try_take(&mut self, n: u64, now: Instant) -> bool {
        self.refill(now);
        if self.tokens < n {
            return false;
        }
        self.tokens -= n;
        true
    }

    /// Takes up to `n` tokens at `now`; returns how many it took.
    pub fn take_up_to(&mut self, n: u64, now: Instant) -> u64 {
        self.refill(now);
        let taken = n.min(self.tokens);
        self.tokens -= taken;
        taken
    }
}

/// Opens at most once per `interval`: for log lines about dropped output.
#[derive(Debug, Clone)]
pub struct IntervalGate {
    interval: Duration,
    last: Option<Instant>,
}

impl IntervalGate {
    /// A gate that opens at the first [`IntervalGate::ready`].
    pub fn new(interval: Duration) -> Self {
        IntervalGate {
            interval,
            last: None,
        }
    }

    /// Whether the gate opens at `now` (then it stays shut for `interval`).
    pub fn ready(&mut self, now: Instant) -> bool {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_at_its_rate_up_to_its_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 20, t0);
        assert!(b.try_take(20, t0));
        assert!(!b.try_take(1, t0));
        // 10 a second: 0.25 s gives 2 (2.5), the half carries over.
        let t1 = t0 + Duration::from_millis(250);
        assert_eq!(b.available(t1), 2);
        assert_eq!(b.available(t0 + Duration::from_millis(300)), 3);
        assert_eq!(b.take_up_to(100, t0 + Duration::from_millis(300)), 3);
        // Never more than the burst, however long it waited.
        assert_eq!(b.available(t0 + Duration::from_secs(3600)), 20);
        // Time going backwards gives nothing.
        assert_eq!(b.take_up_to(20, t0 + Duration::from_secs(3600)), 20);
        assert_eq!(b.available(t0), 0);
    }

    #[test]
    fn a_flood_gets_at_most_burst_plus_rate_times_time() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, 5000, t0);
        let mut taken = 0;
        for ms in 0..10_000u64 {
            taken += b.take_up_to(1_000_000, t0 + Duration::from_millis(ms));
        }
        // 5000 at first, 1000/s for 9.999 s.
        assert_eq!(taken, 5000 + 9999);
    }

    #[test]
    fn gate_opens_once_per_interval() {
        let t0 = Instant::now();
        let mut g = IntervalGate::new(Duration::from_secs(10));
        assert!(g.ready(t0));
        assert!(!g.ready(t0 + Duration::from_secs(9)));
        assert!(g.ready(t0 + Duration::from_secs(10)));
        assert!(!g.ready(t0 + Duration::from_secs(19)));
    }
}
