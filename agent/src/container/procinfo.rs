//! ListProcesses: what /proc shows of a container's processes (pid, ppid, effective uid, state,
//! comm, cmdline). The parsing is pure; a process that is gone by the time it is read is skipped.
use std::fs;
use std::io::{ErrorKind, Read};
use std::path::Path;

/// Longest cmdline kept, in bytes.
pub const MAX_CMDLINE: usize = 4096;

/// One process, as ListProcesses reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub state: String,
    pub comm: String,
    pub cmdline: String,
}

/// (comm, state letter, ppid) of a /proc/<pid>/stat line. The comm is between the first '('
/// and the LAST ')': it may itself hold spaces and parentheses.
pub fn parse_stat(text: &str) -> Option<(String, String, u32)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let comm = text[open + 1..close].to_owned();
    let mut rest = text[close + 1..].split_whitespace();
    let state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    if state.chars().count() != 1 {
        return None;
    }
    Some((comm, state.to_owned(), ppid))
}

/// The effective uid of a /proc/<pid>/status text (`Uid: real effective saved fs`).
pub fn parse_euid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// /proc/<pid>/cmdline: NUL-separated arguments joined with spaces (trailing NULs dropped), at
/// most `max` bytes (cut at a character boundary), invalid UTF-8 replaced.
pub fn format_cmdline(raw: &[u8], max: usize) -> String {
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    let joined: Vec<u8> = raw.iter().map(|&b| if b == 0 { b' ' } else { b }).collect();
    let mut s = String::from_utf8_lossy(&joined).into_owned();
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Reads the process `pid` under `proc_root` (normally /proc). None if it has gone (or its
/// files cannot be parsed, as for a pid reused mid-read by a kernel thread).
pub fn read_process(proc_root: &Path, pid: u32) -> Option<ProcInfo> {
    let dir = proc_root.join(pid.to_string());
    let gone = |e: &std::io::Error| {
        e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
    };
    let read = |name: &str| match fs::read_to_string(dir.join(name)) {
        Ok(t) => Some(t),
        Err(e) => {
            if !gone(&e) {
                tracing::debug!(pid, file = name, error = %e, "cannot read a process file");
            }
            None
        }
    };
    let (comm, state, ppid) = parse_stat(&read("stat")?)?;
    let uid = parse_euid(&read("status")?)?;
    let mut raw = Vec::new();
    // One byte more than kept: enough to know it was cut, never the whole of a huge one.
    let cmdline = match fs::File::open(dir.join("cmdline"))
        .and_then(|f| f.take(MAX_CMDLINE as u64 + 1).read_to_end(&mut raw))
    {
        Ok(_) => format_cmdline(&raw, MAX_CMDLINE),
        Err(e) if gone(&e) => return None,
        Err(_) => String::new(),
    };
    Some(ProcInfo {
        pid,
        ppid,
        uid,
        state,
        comm,
        cmdline,
    })
}

/// Reads each pid (sorted, duplicates dropped), skipping those that vanished.
pub fn read_processes(proc_root: &Path, pids: &[i32]) -> Vec<ProcInfo> {
    let mut pids: Vec<u32> = pids.iter().filter_map(|&p| u32::try_from(p).ok()).collect();
    pids.sort_unstable();
    pids.dedup();
    pids.into_iter()
        .filter_map(|pid| read_process(proc_root, pid))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        let line = "26740 (cat) R 26738 26738 7305 0 -1 4194304 102 0 0 0";
        assert_eq!(parse_stat(line), Some(("cat".into(), "R".into(), 26738)));
        // A comm with spaces and parentheses: up to the last ')'.
        let line = "42 (my (odd) cmd) S 1 42 42 0 -1";
        assert_eq!(
            parse_stat(line),
            Some(("my (odd) cmd".into(), "S".into(), 1))
        );
        assert_eq!(
            parse_stat("7 (zombie) Z 0 0"),
            Some(("zombie".into(), "Z".into(), 0))
        );
        for bad in [
            "",
            "1 cat R 2",
            "1 (cat) R",
            "1 (cat) R x",
            "1 )cat( R 2",
            "1 (c) RS 2",
        ] {
            assert_eq!(parse_stat(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn effective_uid() {
        let status =
            "Name:\tsleep\nState:\tS (sleeping)\nUid:\t1000\t1001\t1000\t1000\nGid:\t0\t0\t0\t0\n";
        assert_eq!(parse_euid(status), Some(1001));
        assert_eq!(parse_euid("Name:\tx\n"), None);
        assert_eq!(parse_euid("Uid:\t5\n"), None);
    }

    #[test]
    fn cmdlines() {
        assert_eq!(format_cmdline(b"sleep\x001000\x00", 4096), "sleep 1000");
        assert_eq!(
            format_cmdline(b"sh\x00-c\x00echo hi", 4096),
            "sh -c echo hi"
        );
        assert_eq!(format_cmdline(b"", 4096), "");
        assert_eq!(format_cmdline(b"abcdef", 4), "abcd");
        // Cut at a character boundary, invalid UTF-8 replaced.
        assert_eq!(format_cmdline("aé".as_bytes(), 2), "a");
        assert_eq!(format_cmdline(b"a\xffb", 16), "a\u{fffd}b");
    }

    #[test]
    fn reads_this_process_and_skips_vanished_ones() {
        let me = std::process::id();
        let procs = read_processes(Path::new("/proc"), &[me as i32, me as i32, -1]);
        assert_eq!(procs.len(), 1, "{procs:?}");
        let p = &procs[0];
        assert_eq!(p.pid, me);
        assert_eq!(p.ppid, nix::unistd::getppid().as_raw() as u32);
        assert_eq!(p.uid, nix::unistd::geteuid().as_raw());
        assert_eq!(p.state.len(), 1);
        assert!(!p.comm.is_empty());
        let exe = std::env::args().next().unwrap();
        assert!(p.cmdline.starts_with(&exe), "{:?} vs {exe:?}", p.cmdline);
        // A fake /proc with a pid whose files are gone.
        let dir = tempfile::tempdir().unwrap();
        assert!(read_process(dir.path(), 12345).is_none());
        std::fs::create_dir(dir.path().join("7")).unwrap();
        std::fs::write(dir.path().join("7/stat"), "7 (x) S 1 7 7 0").unwrap();
        std::fs::write(dir.path().join("7/status"), "Uid:\t0\t0\t0\t0\n").unwrap();
        assert!(
            read_process(dir.path(), 7).is_none(),
            "cmdline gone: skipped"
        );
        std::fs::write(dir.path().join("7/cmdline"), b"x\0--flag\0").unwrap();
        let p = read_process(dir.path(), 7).unwrap();
        assert_eq!(p.cmdline, "x --flag");
        assert_eq!((p.ppid, p.uid), (1, 0));
    }
}
