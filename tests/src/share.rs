//! The share disk: an ext4 image of the build outputs plus the command to run, attached
//! read-only to the L2 and mounted at `/sandpod`. Made fresh for every run so the L2 always
//! sees the current build.
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// Quotes one word for a POSIX shell.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// A random token that marks the command's exit line, so the command's own output cannot fake it.
pub fn nonce() -> String {
    let mut buf = [0u8; 8];
    let ok = fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok();
    if !ok {
        buf = (std::process::id() as u64 ^ nanos()).to_le_bytes();
    }
    buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The line the L2 prints after the command, with its exit status after the `=`.
pub fn exit_marker(nonce: &str) -> String {
    format!("SANDPOD-TESTHOST-EXIT-{nonce}=")
}

/// The line the L2 prints every [`HEARTBEAT_SECS`] while the command runs, so that a frozen test
/// host is told apart from a quiet command (the runner drops these lines from the output).
pub fn heartbeat_marker(nonce: &str) -> String {
    format!("SANDPOD-TESTHOST-ALIVE-{nonce}")
}

/// Seconds between two heartbeats.
pub const HEARTBEAT_SECS: u64 = 15;

/// The script the L2's init runs: a heartbeat in the background, the command (stdout and stderr
/// to the console), then the exit marker.
pub fn command_script(argv: &[String], nonce: &str) -> String {
    let words: Vec<String> = argv.iter().map(|a| shell_quote(a)).collect();
    format!(
        "cd /sandpod\n(while :; do sleep {HEARTBEAT_SECS}; echo {}; done) </dev/null &\n\
         heartbeat=$!\n{} 2>&1\nrc=$?\nkill $heartbeat 2>/dev/null\necho \"{}$rc\"\n",
        heartbeat_marker(nonce),
        words.join(" "),
        exit_marker(nonce)
    )
}

fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => 4096 + tree_size(&e.path()),
            _ => e.metadata().map(|m| m.len() + 4096).unwrap_or(0),
        })
        .sum()
}

/// Stages `share_dir` (hard links where possible) plus `.testhost/cmd` in `run_dir` and packs it
/// into `run_dir/share.img`. Returns the image path.
pub fn make_share_disk(share_dir: &Path, run_dir: &Path, script: &str) -> anyhow::Result<PathBuf> {
    let staging = run_dir.join("share");
    fs::create_dir_all(&staging)?;
    if share_dir.is_dir() {
        let src = format!("{}/.", share_dir.display());
        let linked = Command::new("cp")
            .arg("-al")
            .arg(&src)
            .arg(&staging)
            .status();
        if !matches!(linked, Ok(s) if s.success()) {
            let copied = Command::new("cp")
                .arg("-a")
                .arg(&src)
                .arg(&staging)
                .status()?;
            if !copied.success() {
                bail!(
                    "copying {} to {} failed",
                    share_dir.display(),
                    staging.display()
                );
            }
        }
    }
    fs::create_dir_all(staging.join(".testhost"))?;
    fs::write(staging.join(".testhost/cmd"), script)?;
    let mib = tree_size(&staging) * 5 / 4 / (1024 * 1024) + 32;
    let img = run_dir.join("share.img");
    let out = Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-L",
            "sandpod-share",
            "-E",
            "root_owner=0:0",
            "-d",
        ])
        .arg(&staging)
        .arg(&img)
        .arg(format!("{mib}M"))
        .output()
        .context("running mkfs.ext4 (install e2fsprogs)")?;
    if !out.status.success() {
        bail!(
            "mkfs.ext4 failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let _ = fs::remove_dir_all(&staging);
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_words_for_sh() {
        assert_eq!(shell_quote("uname"), "uname");
        assert_eq!(shell_quote("-a"), "-a");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$HOME;rm"), "'$HOME;rm'");
    }

    #[test]
    fn script_runs_command_then_marker() {
        let s = command_script(&["sh".into(), "-c".into(), "exit 3".into()], "abc");
        assert_eq!(
            s,
            "cd /sandpod\n(while :; do sleep 15; echo SANDPOD-TESTHOST-ALIVE-abc; done) </dev/null &\n\
             heartbeat=$!\nsh -c 'exit 3' 2>&1\nrc=$?\nkill $heartbeat 2>/dev/null\n\
             echo \"SANDPOD-TESTHOST-EXIT-abc=$rc\"\n"
        );
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(nonce(), nonce());
        assert_eq!(nonce().len(), 16);
    }
}
