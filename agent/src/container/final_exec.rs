//! The last steps of a container helper, common to a container's init and an exec: find the
//! binary, then umask, credentials, the final security steps, and execve. Runs in the helper
//! (single-threaded, inside the container's namespaces and root).
use std::convert::Infallible;
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::errno::Errno;
use nix::sys::signal::{signal, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::stat::Mode;

use super::config::SecurityConfig;
use super::security::{self, Prepared};
use crate::process::ProcessSpec;

/// PATH when the spec's env has none (runc's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Finds args[0] as execvp would, but with the PATH of the process's own env: a name with a
/// '/' is taken as is (relative to the cwd), else the first executable regular file in PATH.
pub fn find_executable(cfg: &ProcessSpec) -> Result<PathBuf, String> {
    let name = &cfg.args[0];
    if name.contains('/') {
        let p = Path::new(name);
        return match std::fs::metadata(p) {
            Ok(m) if m.is_file() => Ok(p.to_path_buf()),
            Ok(_) => Err(format!("exec: {name:?}: not a regular file")),
            Err(e) => Err(format!("exec: {name:?}: {e}")),
        };
    }
    let path = cfg
        .env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(name);
        if let Ok(m) = std::fs::metadata(&candidate) {
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(format!(
        "exec: {name:?}: executable file not found in $PATH"
    ))
}

/// Signal state a container process starts with: nothing blocked, SIGPIPE at its default
/// (the Rust runtime ignores it, and an ignored signal stays ignored across exec).
pub fn reset_signals() -> anyhow::Result<()> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .context("clearing the signal mask")?;
    // SAFETY: installing SIG_DFL runs no handler code; single-threaded helper.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.context("SIGPIPE default")?;
    Ok(())
}

/// The C strings of argv and envp.
pub struct ExecArgs {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

impl ExecArgs {
    pub fn new(path: &Path, cfg: &ProcessSpec) -> anyhow::Result<Self> {
        let c = |s: &str| CString::new(s).with_context(|| format!("{s:?} contains a NUL byte"));
        Ok(ExecArgs {
            path: c(&path.to_string_lossy())?,
            argv: cfg.args.iter().map(|a| c(a)).collect::<Result<_, _>>()?,
            envp: cfg.env.iter().map(|e| c(e)).collect::<Result<_, _>>()?,
        })
    }
}

/// umask, credentials, final security steps, execve. Returns only on failure; the error names
/// the binary and errno.
pub fn finish(
    cfg: &ProcessSpec,
    security_cfg: &SecurityConfig,
    prepared: Prepared,
    exec: &ExecArgs,
) -> anyhow::Result<Infallible> {
    nix::sys::stat::umask(Mode::from_bits_truncate(cfg.umask.unwrap_or(0o022) as _));
    // Step 5 needs the permitted set after the setuid (see `security::apply_final`).
    let keepcaps = cfg.creds.uid != 0;
    if keepcaps {
        nix::sys::prctl::set_keepcaps(true).context("PR_SET_KEEPCAPS")?;
    }
    // The helper runs as root: always a switch.
    cfg.creds
        .switch()
        .apply_in_child()
        .map_err(|e| anyhow::Error::new(e.errno()).context(cfg.creds.failed_step(e)))?;
    if keepcaps {
        nix::sys::prctl::set_keepcaps(false).context("clearing PR_SET_KEEPCAPS")?;
    }
    // A cwd only the user can enter: retry now that we are the user (runc does the same).
    if std::env::set_current_dir(&cfg.cwd).is_err() {
        std::env::set_current_dir(&cfg.cwd)
            .with_context(|| format!("chdir {}", cfg.cwd.display()))?;
    }
    security::apply_final(security_cfg, prepared)?;
    let err = nix::unistd::execve(&exec.path, &exec.argv, &exec.envp).unwrap_err();
    Err(exec_error(&cfg.args[0], err))
}

fn exec_error(name: &str, errno: Errno) -> anyhow::Error {
    anyhow::anyhow!("exec {name:?}: {} ({errno:?})", errno.desc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::process_spec::tests::process;

    fn cfg(arg0: &str, env: &[&str]) -> ProcessSpec {
        ProcessSpec {
            env: env.iter().map(|s| s.to_string()).collect(),
            ..process(&[arg0])
        }
    }

    #[test]
    fn path_of_the_process_env_is_searched() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("tool");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("PATH=/nonexistent:{}", dir.path().display());
        assert_eq!(find_executable(&cfg("tool", &[&path])).unwrap(), bin);
        let err = find_executable(&cfg("tool", &["PATH=/nonexistent"])).unwrap_err();
        assert_eq!(err, "exec: \"tool\": executable file not found in $PATH");
        // Not executable: not found either.
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(find_executable(&cfg("tool", &[&path])).is_err());
        assert!(find_executable(&cfg("/nonexistent/x", &[]))
            .unwrap_err()
            .contains("/nonexistent/x"));
    }

    #[test]
    fn exec_errors_name_binary_and_errno() {
        let e = exec_error("/bin/x", Errno::EACCES).to_string();
        assert!(e.contains("/bin/x") && e.contains("EACCES"), "{e}");
    }
}
