//! How a process ended, as the agent reports it (WaitProcess) and as a shell reports it.
use std::fmt;

use crate::agent::WaitProcessResponse;

/// A process's end: an exit code, or the signal that killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It called exit(code) (0-255).
    Exited(i32),
    /// This signal killed it.
    Signaled(i32),
}

impl ExitStatus {
    /// From a wait status's parts (`std::process::ExitStatus::code()` and `signal()`): the
    /// code if there is one, else the signal; `None` if neither.
    pub fn from_parts(code: Option<i32>, signal: Option<i32>) -> Option<ExitStatus> {
        match (code, signal) {
            (Some(c), _) => Some(ExitStatus::Exited(c)),
            (None, Some(s)) => Some(ExitStatus::Signaled(s)),
            (None, None) => None,
        }
    }

    /// From a WaitProcess answer. The agent is untrusted: a signal outside Linux's range
    /// (1..=64) or an answer with neither field is an error (the message says which).
    pub fn from_wait_response(resp: &WaitProcessResponse) -> Result<ExitStatus, String> {
        if resp.has_exit_code() {
            Ok(ExitStatus::Exited(resp.exit_code()))
        } else if resp.has_signal() {
            match resp.signal() {
                sig @ 1..=64 => Ok(ExitStatus::Signaled(sig)),
                sig => Err(format!("signal {sig} out of range 1..=64")),
            }
        } else {
            Err("neither exit_code nor signal set".into())
        }
    }

    /// The status as a shell reports it: the exit code, or 128+N for signal N (0–255).
    pub fn shell_code(self) -> u8 {
        shell_code(Some(self))
    }
}

/// A process's status as a shell reports it (the code clamped to 0–255, 128+N for signal N;
/// 255 if unknown).
pub fn shell_code(status: Option<ExitStatus>) -> u8 {
    match status {
        Some(ExitStatus::Exited(c)) => u8::try_from(c.clamp(0, 255)).unwrap_or(255),
        Some(ExitStatus::Signaled(s)) => u8::try_from(128 + s.clamp(0, 127)).unwrap_or(255),
        None => 255,
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(code) => write!(f, "exit code {code}"),
            ExitStatus::Signaled(sig) => write!(f, "killed by signal {sig}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_codes() {
        assert_eq!(ExitStatus::Exited(3).shell_code(), 3);
        assert_eq!(ExitStatus::Signaled(9).shell_code(), 137);
        assert_eq!(ExitStatus::Exited(-1).shell_code(), 0);
        assert_eq!(ExitStatus::Exited(300).shell_code(), 255);
        assert_eq!(ExitStatus::Signaled(200).shell_code(), 255);
        assert_eq!(shell_code(None), 255);
    }

    #[test]
    fn from_parts() {
        assert_eq!(
            ExitStatus::from_parts(Some(1), None),
            Some(ExitStatus::Exited(1))
        );
        assert_eq!(
            ExitStatus::from_parts(None, Some(9)),
            Some(ExitStatus::Signaled(9))
        );
        assert_eq!(ExitStatus::from_parts(None, None), None);
    }

    #[test]
    fn from_wait_response() {
        let mut r = WaitProcessResponse::new();
        assert!(ExitStatus::from_wait_response(&r).is_err());
        r.set_exit_code(0);
        assert_eq!(
            ExitStatus::from_wait_response(&r),
            Ok(ExitStatus::Exited(0))
        );
        r.set_signal(15);
        assert_eq!(
            ExitStatus::from_wait_response(&r),
            Ok(ExitStatus::Signaled(15))
        );
        for bad in [0, 65, -1] {
            r.set_signal(bad);
            let e = ExitStatus::from_wait_response(&r).unwrap_err();
            assert!(e.contains("out of range"), "{e}");
        }
    }

    #[test]
    fn display() {
        assert_eq!(ExitStatus::Exited(2).to_string(), "exit code 2");
        assert_eq!(ExitStatus::Signaled(9).to_string(), "killed by signal 9");
    }
}
