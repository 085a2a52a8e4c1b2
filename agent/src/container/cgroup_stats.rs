//! StatsContainer: a container cgroup's figures, read from its interface files (cpu.stat,
//! memory.*, pids.*). A file that is missing (its controller is not enabled for the cgroup) or
//! unreadable gives 0; the parsing is pure and tested on the kernel's formats.
use std::collections::HashMap;
use std::fs;
use std::path::Path;

use tracing::debug;

/// What StatsContainer reports (see agent.proto, StatsContainerResponse).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupStats {
    pub cpu_usage_usec: u64,
    pub cpu_user_usec: u64,
    pub cpu_system_usec: u64,
    pub cpu_nr_periods: u64,
    pub cpu_nr_throttled: u64,
    pub cpu_throttled_usec: u64,
    pub memory_current: u64,
    /// 0 = "max".
    pub memory_max: u64,
    pub memory_swap_current: u64,
    pub memory_stat: HashMap<String, u64>,
    pub memory_oom: u64,
    pub memory_oom_kill: u64,
    pub pids_current: u64,
    /// 0 = "max".
    pub pids_max: u64,
}

/// Most entries kept from a flat-keyed file (memory.stat has about 50).
const MAX_KEYS: usize = 512;

/// A flat-keyed file (`key value` lines: cpu.stat, memory.stat, memory.events). Lines that are
/// not a key and an unsigned number are skipped.
pub fn parse_flat_keyed(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let key = parts.next()?;
            let value = parts.next()?.parse::<u64>().ok()?;
            parts.next().is_none().then(|| (key.to_owned(), value))
        })
        .take(MAX_KEYS)
        .collect()
}

/// A single-value file (memory.current, pids.current): the number, 0 if it is not one.
pub fn parse_value(text: &str) -> u64 {
    text.trim().parse().unwrap_or(0)
}

/// A limit file (memory.max, pids.max): the number, 0 for "max" (or anything else).
pub fn parse_limit(text: &str) -> u64 {
    match text.trim() {
        "max" => 0,
        v => v.parse().unwrap_or(0),
    }
}

/// `frozen` of cgroup.events; None when the line is missing (no freezer: a root cgroup, or a
/// kernel before 5.2).
pub fn parse_frozen(events: &str) -> Option<bool> {
    events
        .lines()
        .filter_map(|l| l.strip_prefix("frozen "))
        .map(|v| v.trim() == "1")
        .next()
}

fn read(dir: &Path, name: &str) -> Option<String> {
    let file = dir.join(name);
    match fs::read_to_string(&file) {
        Ok(text) => Some(text),
        Err(e) => {
            debug!(file = %file.display(), error = %e, "cgroup file not read: 0");
            None
        }
    }
}

/// Reads the figures of the cgroup at `dir`.
pub fn read_stats(dir: &Path) -> CgroupStats {
    let keyed = |name: &str| {
        read(dir, name)
            .map(|t| parse_flat_keyed(&t))
            .unwrap_or_default()
    };
    let value = |name: &str| read(dir, name).map(|t| parse_value(&t)).unwrap_or(0);
    let limit = |name: &str| read(dir, name).map(|t| parse_limit(&t)).unwrap_or(0);
    let cpu = keyed("cpu.stat");
    let events = keyed("memory.events");
    let get = |m: &HashMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    CgroupStats {
        cpu_usage_usec: get(&cpu, "usage_usec"),
        cpu_user_usec: get(&cpu, "user_usec"),
        cpu_system_usec: get(&cpu, "system_usec"),
        cpu_nr_periods: get(&cpu, "nr_periods"),
        cpu_nr_throttled: get(&cpu, "nr_throttled"),
        cpu_throttled_usec: get(&cpu, "throttled_usec"),
        memory_current: value("memory.current"),
        memory_max: limit("memory.max"),
        memory_swap_current: value("memory.swap.current"),
        memory_stat: keyed("memory.stat"),
        memory_oom: get(&events, "oom"),
        memory_oom_kill: get(&events, "oom_kill"),
        pids_current: value("pids.current"),
        pids_max: limit("pids.max"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU_STAT: &str = "usage_usec 8571234\nuser_usec 6000000\nsystem_usec 2571234\n\
        core_sched.force_idle_usec 0\nnr_periods 120\nnr_throttled 7\nthrottled_usec 350000\n\
        nr_bursts 0\nburst_usec 0\n";

    #[test]
    fn flat_keyed_files() {
        let m = parse_flat_keyed(CPU_STAT);
        assert_eq!(m["usage_usec"], 8_571_234);
        assert_eq!(m["throttled_usec"], 350_000);
        assert_eq!(m["core_sched.force_idle_usec"], 0);
        // Malformed lines are skipped, not fatal.
        let m = parse_flat_keyed("anon 4096\nbroken\nfile x\nthree 1 2\n\nkernel 12\n");
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!((m["anon"], m["kernel"]), (4096, 12));
        assert!(parse_flat_keyed("").is_empty());
        // Bounded, whatever the file holds.
        let huge: String = (0..2000).map(|i| format!("k{i} {i}\n")).collect();
        assert_eq!(parse_flat_keyed(&huge).len(), MAX_KEYS);
    }

    #[test]
    fn values_and_limits() {
        assert_eq!(parse_value("123456\n"), 123_456);
        assert_eq!(parse_value(""), 0);
        assert_eq!(parse_limit("max\n"), 0);
        assert_eq!(parse_limit("67108864\n"), 67_108_864);
        assert_eq!(parse_limit("junk"), 0);
    }

    #[test]
    fn frozen_state() {
        assert_eq!(parse_frozen("populated 1\nfrozen 1\n"), Some(true));
        assert_eq!(parse_frozen("populated 0\nfrozen 0\n"), Some(false));
        assert_eq!(parse_frozen("populated 1\n"), None);
    }

    #[test]
    fn reads_a_cgroup_directory_and_missing_files_are_zero() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("cpu.stat"), CPU_STAT).unwrap();
        fs::write(d.join("memory.current"), "1048576\n").unwrap();
        fs::write(d.join("memory.max"), "max\n").unwrap();
        fs::write(d.join("memory.stat"), "anon 4096\nfile 8192\npgfault 33\n").unwrap();
        fs::write(
            d.join("memory.events"),
            "low 0\nhigh 0\nmax 4\noom 2\noom_kill 1\noom_group_kill 0\n",
        )
        .unwrap();
        fs::write(d.join("pids.current"), "3\n").unwrap();
        fs::write(d.join("pids.max"), "64\n").unwrap();
        let s = read_stats(d);
        assert_eq!(s.cpu_usage_usec, 8_571_234);
        assert_eq!(s.cpu_user_usec, 6_000_000);
        assert_eq!(s.cpu_system_usec, 2_571_234);
        assert_eq!((s.cpu_nr_periods, s.cpu_nr_throttled), (120, 7));
        assert_eq!(s.cpu_throttled_usec, 350_000);
        assert_eq!((s.memory_current, s.memory_max), (1_048_576, 0));
        assert_eq!(s.memory_swap_current, 0, "memory.swap.current is missing");
        assert_eq!(s.memory_stat.len(), 3);
        assert_eq!(s.memory_stat["file"], 8192);
        assert_eq!((s.memory_oom, s.memory_oom_kill), (2, 1));
        assert_eq!((s.pids_current, s.pids_max), (3, 64));

        let empty = tempfile::tempdir().unwrap();
        assert_eq!(read_stats(empty.path()), CgroupStats::default());
    }
}
