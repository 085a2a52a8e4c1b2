//! The agent is untrusted: what the client keeps of its StatsContainer and ListProcesses answers
//! is bounded here (counts, lengths), and text that someone may print (comm, cmdline, state,
//! memory.stat keys) has its control characters escaped, so a hostile guest can neither grow
//! the host's memory without limit nor drive the terminal of whoever reads the output.
use std::collections::HashMap;

use sandpod_protocol::agent::{ProcessInfo, StatsContainerResponse};

/// Most processes kept from ListProcesses.
pub const MAX_PROCESSES: usize = 4096;
/// Longest cmdline kept, in bytes (after escaping).
pub const MAX_CMDLINE: usize = 4096;
/// Longest comm kept, in bytes (Linux's is 15; escaping may lengthen it).
pub const MAX_COMM: usize = 64;
/// Longest state kept, in bytes (the agent sends one letter).
pub const MAX_STATE: usize = 8;
/// Most memory.stat entries kept.
pub const MAX_MEMORY_STAT: usize = 256;
/// Longest memory.stat key kept, in bytes.
pub const MAX_STAT_KEY: usize = 64;

/// Invisible characters that reorder text on a terminal (Unicode bidirectional controls).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with control characters (and bidi controls) escaped (`\n`, `\u{1b}`), cut to at most
/// `max` bytes without splitting a character or an escape.
pub fn printable(text: &str, max: usize) -> String {
    printable_prefix(text, max).0
}

/// [`printable`], and how many bytes of `text` it covers.
fn printable_prefix(text: &str, max: usize) -> (String, usize) {
    let mut out = String::with_capacity(text.len().min(max));
    for (i, c) in text.char_indices() {
        let piece: String = if c.is_control() || is_bidi_control(c) {
            c.escape_default().collect()
        } else {
            c.to_string()
        };
        if out.len() + piece.len() > max {
            return (out, i);
        }
        out.push_str(&piece);
    }
    (out, text.len())
}

/// Linux's highest possible pid (`PID_MAX_LIMIT` on 64-bit).
pub const PID_MAX_LIMIT: u32 = 4_194_304;

/// A guest pid the agent answered, range-checked (it is kept in state and shown, never used on
/// the host): None outside 1..=[`PID_MAX_LIMIT`].
pub fn guest_pid(pid: u32) -> Option<u32> {
    (1..=PID_MAX_LIMIT).contains(&pid).then_some(pid)
}

/// Longest text of the agent's kept in an error message, in bytes (after escaping).
pub const MAX_AGENT_MESSAGE: usize = 2048;

/// Text of the agent's that goes into a host error message (a ttrpc status message):
/// [`printable`] within [`MAX_AGENT_MESSAGE`], and when cut, ` […N more bytes]` after it. It
/// can neither forge lines nor drive a terminal (docker prints these errors), nor be megabytes
/// long.
pub fn agent_message(text: &str) -> String {
    let (mut out, covered) = printable_prefix(text, MAX_AGENT_MESSAGE);
    if covered < text.len() {
        out.push_str(&format!(" […{} more bytes]", text.len() - covered));
    }
    out
}

/// One process of ListProcesses, its text made printable and bounded (unknown fields dropped).
pub fn bound_process(p: &ProcessInfo) -> ProcessInfo {
    let mut out = ProcessInfo::new();
    out.pid = p.pid;
    out.ppid = p.ppid;
    out.uid = p.uid;
    out.state = printable(&p.state, MAX_STATE);
    out.comm = printable(&p.comm, MAX_COMM);
    out.cmdline = printable(&p.cmdline, MAX_CMDLINE);
    out
}

/// ListProcesses's answer: at most [`MAX_PROCESSES`], each bounded. Also returns how many were
/// dropped.
pub fn bound_processes(processes: &[ProcessInfo]) -> (Vec<ProcessInfo>, usize) {
    let kept: Vec<ProcessInfo> = processes
        .iter()
        .take(MAX_PROCESSES)
        .map(bound_process)
        .collect();
    let dropped = processes.len() - kept.len();
    (kept, dropped)
}

/// StatsContainer's answer: at most [`MAX_MEMORY_STAT`] memory.stat entries (the first by key
/// order), keys printable and bounded, unknown fields dropped. Also returns how many entries
/// were dropped.
pub fn bound_stats(stats: &StatsContainerResponse) -> (StatsContainerResponse, usize) {
    let mut keys: Vec<&String> = stats.memory_stat.keys().collect();
    keys.sort();
    let memory_stat: HashMap<String, u64> = keys
        .iter()
        .take(MAX_MEMORY_STAT)
        .map(|k| (printable(k, MAX_STAT_KEY), stats.memory_stat[*k]))
        .collect();
    let dropped = stats.memory_stat.len() - memory_stat.len();
    // Every figure as is, the map bounded, unknown fields dropped.
    let mut out = stats.clone();
    out.memory_stat = memory_stat;
    out.special_fields = Default::default();
    (out, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_pids_are_range_checked() {
        assert_eq!(guest_pid(1), Some(1));
        assert_eq!(guest_pid(PID_MAX_LIMIT), Some(PID_MAX_LIMIT));
        assert_eq!(guest_pid(0), None);
        assert_eq!(guest_pid(PID_MAX_LIMIT + 1), None);
        assert_eq!(guest_pid(u32::MAX), None);
    }

    #[test]
    fn printable_escapes_controls_and_bounds() {
        assert_eq!(printable("sleep 1000", 4096), "sleep 1000");
        assert_eq!(printable("a\nb\tc", 64), "a\\nb\\tc");
        assert_eq!(printable("\u{1b}[2Jx", 64), "\\u{1b}[2Jx");
        assert_eq!(printable("evil\u{202e}txt.exe", 64), "evil\\u{202e}txt.exe");
        assert_eq!(printable("é unicode ok", 64), "é unicode ok");
        // Cut at max bytes, never inside a character or an escape.
        assert_eq!(printable("abcdef", 4), "abcd");
        assert_eq!(printable("aé", 2), "a");
        assert_eq!(printable("ab\u{1b}", 8), "ab\\u{1b}");
        assert_eq!(printable("ab\u{1b}", 7), "ab");
        assert_eq!(
            printable(&"x".repeat(10_000), MAX_CMDLINE).len(),
            MAX_CMDLINE
        );
        assert_eq!(printable(&"\u{1}".repeat(10_000), 98).len(), 95);
    }

    #[test]
    fn agent_messages_are_escaped_and_cut() {
        assert_eq!(agent_message("no such file"), "no such file");
        assert_eq!(
            agent_message("bad\n\u{1b}[31mred\r\u{7}"),
            "bad\\n\\u{1b}[31mred\\r\\u{7}"
        );
        let long = format!("\u{1b}]0;owned\u{7}{}", "x".repeat(1_000_000));
        let m = agent_message(&long);
        assert!(m.len() <= MAX_AGENT_MESSAGE + 32, "{}", m.len());
        assert!(m.starts_with("\\u{1b}]0;owned\\u{7}xxx"), "{m}");
        assert!(m.ends_with(" more bytes]"), "{m}");
        assert!(!m.contains('\u{1b}') && !m.contains('\u{7}'));
    }

    fn process(pid: u32, comm: &str, cmdline: &str) -> ProcessInfo {
        let mut p = ProcessInfo::new();
        p.pid = pid;
        p.ppid = 1;
        p.uid = 1000;
        p.state = "S".into();
        p.comm = comm.into();
        p.cmdline = cmdline.into();
        p
    }

    #[test]
    fn processes_are_bounded() {
        let hostile: Vec<ProcessInfo> = (0..5000)
            .map(|i| process(i, &"c\u{7}".repeat(100), &"y".repeat(100_000)))
            .collect();
        let (kept, dropped) = bound_processes(&hostile);
        assert_eq!((kept.len(), dropped), (MAX_PROCESSES, 5000 - MAX_PROCESSES));
        for p in &kept {
            assert!(
                p.comm.len() <= MAX_COMM && !p.comm.contains('\u{7}'),
                "{}",
                p.comm
            );
            assert_eq!(p.cmdline.len(), MAX_CMDLINE);
        }
        assert_eq!(kept[4095].pid, 4095);
        let (kept, dropped) = bound_processes(&[process(7, "sleep", "sleep 1000")]);
        assert_eq!(dropped, 0);
        assert_eq!(kept, vec![process(7, "sleep", "sleep 1000")]);
        let mut odd = process(8, "x", "");
        odd.state = "RRRRRRRRRRRRRRRR\n".into();
        assert_eq!(bound_process(&odd).state, "RRRRRRRR");
    }

    #[test]
    fn memory_stat_is_bounded() {
        let mut s = StatsContainerResponse::new();
        s.pids_current = 3;
        s.memory_max = 42;
        for i in 0..1000 {
            s.memory_stat.insert(format!("key{i:04}"), i);
        }
        s.memory_stat.insert(format!("zz\n{}", "k".repeat(500)), 7);
        let (b, dropped) = bound_stats(&s);
        assert_eq!(
            (b.memory_stat.len(), dropped),
            (MAX_MEMORY_STAT, 1001 - 256)
        );
        // The first keys in order are the ones kept.
        assert_eq!(b.memory_stat["key0000"], 0);
        assert_eq!(b.memory_stat["key0255"], 255);
        assert!(!b.memory_stat.contains_key("key0256"));
        assert_eq!((b.pids_current, b.memory_max), (3, 42));

        let mut s = StatsContainerResponse::new();
        s.memory_stat
            .insert(format!("bad\u{1b}{}", "k".repeat(500)), 7);
        let (b, dropped) = bound_stats(&s);
        assert_eq!(dropped, 0);
        let key = b.memory_stat.keys().next().unwrap();
        assert!(
            key.starts_with("bad\\u{1b}kk") && key.len() <= MAX_STAT_KEY,
            "{key}"
        );
    }
}
