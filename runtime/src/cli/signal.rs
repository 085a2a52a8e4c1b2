//! Signal names and numbers as `kill` takes them: `9`, `KILL`, `SIGKILL`, `sigkill`.
use anyhow::bail;

const NAMES: [(&str, u32); 31] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
];

/// Parses a signal; numbers 1–64 (real-time signals included).
pub fn parse(s: &str) -> anyhow::Result<u32> {
    if let Ok(n) = s.parse::<u32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        bail!("invalid signal {s:?}");
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if name == "SYS" {
        return Ok(31);
    }
    match NAMES.iter().find(|(n, _)| *n == name) {
        Some((_, v)) => Ok(*v),
        None => bail!("unknown signal {s:?}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_and_numbers() {
        assert_eq!(super::parse("9").unwrap(), 9);
        assert_eq!(super::parse("KILL").unwrap(), 9);
        assert_eq!(super::parse("SIGTERM").unwrap(), 15);
        assert_eq!(super::parse("sigusr1").unwrap(), 10);
        assert_eq!(super::parse("WINCH").unwrap(), 28);
        assert!(super::parse("0").is_err());
        assert!(super::parse("65").is_err());
        assert!(super::parse("FOO").is_err());
    }
}
