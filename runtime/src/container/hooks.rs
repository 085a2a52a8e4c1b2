//! OCI hooks, run on the host as runc runs them: each hook's path with its args and env, the
//! container's state JSON on stdin, killed after its timeout. createRuntime and prestart run once
//! the sandbox's host namespaces exist (the stand-in's pid is in the state) and before the VM
//! boots; poststart after start; poststop after delete. createContainer and startContainer
//! hooks would have to run in the container's namespaces, which are inside the VM: refused.
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks};
use thiserror::Error;

use super::state::OciState;

/// When no timeout is given (runc waits forever; a runtime that owns a VM should not).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Error)]
pub enum HookError {
    #[error("{kind} hook {path}: cannot start it")]
    Spawn {
        kind: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{kind} hook {path} failed: {status}{stderr}")]
    Failed {
        kind: &'static str,
        path: String,
        status: String,
        stderr: String,
    },
    #[error("{kind} hook {path} timed out after {timeout:?}")]
    Timeout {
        kind: &'static str,
        path: String,
        timeout: Duration,
    },
    #[error(
        "{kind} hooks run in the container's namespaces, which are inside the VM: not supported"
    )]
    InContainer { kind: &'static str },
}

/// Refuses the hooks that cannot run on the host.
pub fn check_supported(hooks: Option<&Hooks>) -> Result<(), HookError> {
    let Some(h) = hooks else { return Ok(()) };
    if h.create_container().as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(HookError::InContainer {
            kind: "createContainer",
        });
    }
    if h.start_container().as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(HookError::InContainer {
            kind: "startContainer",
        });
    }
    Ok(())
}

/// The hooks of one kind.
pub fn of_kind<'a>(hooks: Option<&'a Hooks>, kind: &'static str) -> &'a [Hook] {
    let Some(h) = hooks else { return &[] };
    #[allow(deprecated)]
    let list = match kind {
        "createRuntime" => h.create_runtime(),
        "prestart" => h.prestart(),
        "poststart" => h.poststart(),
        "poststop" => h.poststop(),
        _ => &None,
    };
    list.as_deref().unwrap_or(&[])
}

/// Runs the hooks of `kind` in order; the first failure stops them.
pub fn run(hooks: Option<&Hooks>, kind: &'static str, state: &OciState) -> Result<(), HookError> {
    let json = serde_json::to_vec(state).unwrap_or_default();
    for hook in of_kind(hooks, kind) {
        run_one(hook, kind, &json)?;
    }
    Ok(())
}

fn run_one(hook: &Hook, kind: &'static str, state: &[u8]) -> Result<(), HookError> {
    let path = hook.path().display().to_string();
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args() {
        // args[0] is the program's name (argv[0]), as in execve.
        if let Some((first, rest)) = args.split_first() {
            cmd.arg0(first).args(rest);
        }
    }
    if let Some(env) = hook.env() {
        cmd.env_clear();
        for kv in env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| HookError::Spawn {
        kind,
        path: path.clone(),
        source,
    })?;
    let stderr = drain_stderr(child.stderr.take());
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is not an error.
        let _ = stdin.write_all(state);
    }
    let timeout = hook
        .timeout()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|source| HookError::Spawn {
            kind,
            path: path.clone(),
            source,
        })? {
            break st;
        }
        if start.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HookError::Timeout {
                kind,
                path,
                timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if status.success() {
        return Ok(());
    }
    // A grandchild may keep the pipe open: what arrived by now is enough.
    let text = stderr
        .recv_timeout(Duration::from_millis(200))
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let stderr = if text.is_empty() {
        String::new()
    } else {
        format!(", stderr: {text}")
    };
    Err(HookError::Failed {
        kind,
        path,
        status: status.to_string(),
        stderr,
    })
}

/// Reads a hook's stderr on a thread of its own, so a chatty hook never blocks on a full pipe:
/// the first 4 KiB are kept (for the error), the rest is read and dropped.
fn drain_stderr(stderr: Option<std::process::ChildStderr>) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(mut e) = stderr {
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = Vec::new();
            let _ = (&mut e).take(4096).read_to_end(&mut buf);
            let _ = std::io::copy(&mut e, &mut std::io::sink());
            let _ = tx.send(buf);
        });
    }
    rx
}

use std::os::unix::process::CommandExt;

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks(json: &str) -> Hooks {
        serde_json::from_str(json).unwrap()
    }

    fn state() -> OciState {
        OciState {
            oci_version: "1.2.0".into(),
            id: "c1".into(),
            pid: 42,
            status: "creating".into(),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: String::new(),
            annotations: Default::default(),
            owner: String::new(),
        }
    }

    #[test]
    fn state_on_stdin_args_and_env() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let h = hooks(&format!(
            r#"{{"prestart":[{{"path":"/bin/sh","args":["sh","-c","cat > {0}; echo \"$0 $X\" >> {0}","zero"],"env":["X=y"]}}]}}"#,
            out.display()
        ));
        run(Some(&h), "prestart", &state()).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains("\"pid\":42"), "{text}");
        assert!(text.ends_with("zero y\n"), "{text}");
    }

    #[test]
    fn a_hook_writing_much_to_stderr_is_not_blocked() {
        // 1 MiB on stderr (a pipe holds 64 KiB) and success: no timeout.
        let h = hooks(
            r#"{"prestart":[{"path":"/bin/sh","args":["sh","-c","head -c 1048576 /dev/zero >&2"],"timeout":5}]}"#,
        );
        run(Some(&h), "prestart", &state()).unwrap();
    }

    #[test]
    fn failure_and_timeout_are_errors() {
        let h = hooks(
            r#"{"prestart":[{"path":"/bin/sh","args":["sh","-c","echo nope >&2; exit 3"]}]}"#,
        );
        let e = run(Some(&h), "prestart", &state()).unwrap_err().to_string();
        assert!(e.contains("exit status: 3") && e.contains("nope"), "{e}");
        let h = hooks(r#"{"poststart":[{"path":"/bin/sleep","args":["sleep","10"],"timeout":1}]}"#);
        let e = run(Some(&h), "poststart", &state()).unwrap_err();
        assert!(matches!(e, HookError::Timeout { .. }), "{e}");
        let h = hooks(r#"{"createContainer":[{"path":"/bin/true"}]}"#);
        assert!(check_supported(Some(&h)).is_err());
        assert!(check_supported(None).is_ok());
    }
}
