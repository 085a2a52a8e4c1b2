//! CPU count and memory of the guest, from /proc.
use std::fs;

/// What the guest kernel sees of its machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestInfo {
    /// Online CPUs (`processor` entries of /proc/cpuinfo).
    pub cpus: usize,
    /// `MemTotal` of /proc/meminfo, in KiB.
    pub mem_total_kib: u64,
}

/// Counts the `processor` lines of a /proc/cpuinfo text.
pub fn count_cpus(cpuinfo: &str) -> usize {
    cpuinfo
        .lines()
        .filter(|l| l.split(':').next().map(str::trim) == Some("processor"))
        .count()
}

/// The `MemTotal` value (KiB) of a /proc/meminfo text.
pub fn mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

impl GuestInfo {
    /// Reads /proc/cpuinfo and /proc/meminfo (proc must be mounted).
    pub fn read() -> anyhow::Result<Self> {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo")?;
        let meminfo = fs::read_to_string("/proc/meminfo")?;
        Ok(GuestInfo {
            cpus: count_cpus(&cpuinfo),
            mem_total_kib: mem_total_kib(&meminfo)
                .ok_or_else(|| anyhow::anyhow!("no MemTotal in /proc/meminfo"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_processors() {
        let text = "processor\t: 0\nvendor_id\t: AuthenticAMD\n\nprocessor\t: 1\nflags\t: fpu\n";
        assert_eq!(count_cpus(text), 2);
        assert_eq!(count_cpus(""), 0);
    }

    #[test]
    fn reads_mem_total() {
        let text = "MemTotal:         115876 kB\nMemFree:          100000 kB\n";
        assert_eq!(mem_total_kib(text), Some(115876));
        assert_eq!(mem_total_kib("MemFree: 1 kB\n"), None);
    }
}
