//! The host's handling of the guest's log stream (port 1025; the guest is untrusted): arbitrary
//! text parsed as log lines the way the monitor does, and the rate limiter fed a fuzzed
//! schedule. Checks that nothing panics, that what is emitted has no raw control character
//! (no forged host log lines, no terminal escapes) and that the limiter never admits more than
//! its burst plus its rate over the time that passed.
#![no_main]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sandpod_runtime::agent_client::log_limiter::{Clock, LogLimiter, LogLimits};
use sandpod_runtime::agent_client::logs::parse_log_line;

struct FakeClock(Mutex<Instant>);

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
}

fuzz_target!(|data: &[u8]| {
    let (schedule, text) = data.split_at(data.len().min(64));
    for line in String::from_utf8_lossy(text).split('\n') {
        if let Ok(l) = parse_log_line(line) {
            for field in [l.msg.escape_debug().to_string(), l.target.escape_debug().to_string()] {
                assert!(!field.chars().any(|c| c.is_control()), "{field:?}");
            }
        }
    }

    let limits = LogLimits {
        lines_per_sec: 10,
        burst_lines: 20,
        bytes_per_sec: 1000,
        burst_bytes: 4000,
        ..LogLimits::default()
    };
    let start = Instant::now();
    let clock = Arc::new(FakeClock(Mutex::new(start)));
    let limiter = LogLimiter::with_clock(limits, clock.clone());
    let (mut admitted, mut offered) = (0u64, 0u64);
    let mut elapsed = Duration::ZERO;
    for pair in schedule.chunks(2) {
        // A step of 0..255 ms, then a line of 0..255*16 bytes.
        elapsed += Duration::from_millis(u64::from(pair[0]));
        *clock.0.lock().unwrap() = start + elapsed;
        let len = usize::from(pair.get(1).copied().unwrap_or(0)) * 16;
        offered += 1;
        if limiter.admit(len) {
            admitted += 1;
        }
    }
    let budget = limits.burst_lines + limits.lines_per_sec * (elapsed.as_millis() as u64) / 1000 + 1;
    assert!(admitted <= budget, "{admitted} lines admitted, budget {budget}");
    assert_eq!(limiter.dropped(), offered - admitted);
});
