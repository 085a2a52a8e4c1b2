//! The stdio of `sandpod run` on this host, without KVM (sandpod-fake-vmm, as in
//! cli_lifecycle.rs): a stdin, stdout or stderr that is the null device gets no stream (the
//! guest process has its own /dev/null there), the others still flow. Each scenario ends with
//! the leak check.
//!
//! Needs root, the busybox bundle and virtiofsd (`make unit` builds them first).
mod cli_env;

use std::io::Write;
use std::process::Stdio;

use cli_env::{text, Env};

/// A shell command printing what the container shell's fds 0–2 are (`/dev/null`, a socket, a
/// pipe…), a line each, to its fd `to`.
fn show_fds(to: u8) -> String {
    format!("for f in 0 1 2; do echo \"fd$f $(readlink /proc/$$/fd/$f)\" >&{to}; done")
}

#[test]
fn null_stdin_and_stdout_get_no_stream_and_stderr_still_flows() {
    let env = Env::new();
    // `cat` ends at once: its stdin is the guest's /dev/null.
    let script = format!("cat; echo out; echo err >&2; {}; exit 4", show_fds(2));
    let b = env.bundle("b", &["sh", "-c", &script], |_| {});
    let out = env
        .cmd()
        .args(["run", "--bundle", b.to_str().unwrap(), "n1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.starts_with("err\n"), "{err}");
    assert!(err.contains("fd0 /dev/null\n"), "{err}");
    assert!(err.contains("fd1 /dev/null\n"), "{err}");
    assert!(!err.contains("fd2 /dev/null"), "stderr is a stream: {err}");
    env.assert_nothing_left();
}

#[test]
fn a_piped_stdin_reaches_the_container_with_a_null_stderr() {
    let env = Env::new();
    let script = format!("tr a-z A-Z; {}", show_fds(1));
    let b = env.bundle("b", &["sh", "-c", &script], |_| {});
    let mut child = env
        .cmd()
        .args(["run", "--bundle", b.to_str().unwrap(), "p1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let o = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{o}");
    assert!(o.starts_with("HELLO\n"), "{o}");
    assert!(!o.contains("fd0 /dev/null"), "stdin is a stream: {o}");
    assert!(!o.contains("fd1 /dev/null"), "stdout is a stream: {o}");
    assert!(o.contains("fd2 /dev/null\n"), "{o}");
    env.assert_nothing_left();
}
