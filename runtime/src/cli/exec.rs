//! `sandpod exec`: runc's flags onto a runtime-spec process.
use std::path::PathBuf;

use anyhow::{bail, Context};
use oci_spec::runtime::{Process, User};

use crate::container::exec::ExecOptions;
use crate::container::RuntimeOptions;
use crate::io::IoConfig;

#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// A runtime-spec `process` JSON file (`-` for standard input); replaces the other flags.
    #[arg(long, short)]
    pub process: Option<PathBuf>,
    /// Return once the process started.
    #[arg(long, short)]
    pub detach: bool,
    /// Write the pid of the process that stands for it to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Where to send the master of its terminal (SCM_RIGHTS).
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Allocate a terminal.
    #[arg(long, short)]
    pub tty: bool,
    /// Working directory.
    #[arg(long)]
    pub cwd: Option<String>,
    /// KEY=VALUE added to the environment (repeatable).
    #[arg(long, short)]
    pub env: Vec<String>,
    /// UID[:GID].
    #[arg(long, short)]
    pub user: Option<String>,
    /// Additional groups (repeatable).
    #[arg(long = "additional-gids", short = 'g')]
    pub additional_gids: Vec<u32>,
    /// Accepted; an exec gets the container's capabilities.
    #[arg(long, short)]
    pub cap: Vec<String>,
    /// Accepted; an exec gets the container's no_new_privileges.
    #[arg(long)]
    pub no_new_privs: bool,
    /// Accepted for runc compatibility.
    #[arg(long, hide = true)]
    pub apparmor: Option<String>,
    #[arg(long, hide = true)]
    pub process_label: Option<String>,
    #[arg(long, hide = true)]
    pub cgroup: Option<String>,
    #[arg(long, hide = true)]
    pub ignore_paused: bool,
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// The container id.
    pub id: String,
    /// The command and its arguments (without --process).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

fn parse_user(s: &str) -> anyhow::Result<(u32, u32)> {
    let (u, g) = s.split_once(':').unwrap_or((s, "0"));
    let uid = u
        .parse()
        .with_context(|| format!("--user {s:?}: expected UID[:GID]"))?;
    let gid = g
        .parse()
        .with_context(|| format!("--user {s:?}: expected UID[:GID]"))?;
    Ok((uid, gid))
}

/// The process to run: the `--process` file, or the flags.
pub fn process(a: &ExecArgs) -> anyhow::Result<Process> {
    if let Some(p) = &a.process {
        let bytes = super::read_file_or_stdin(p)?;
        return serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not a valid runtime-spec process", p.display()));
    }
    if a.command.is_empty() {
        bail!("exec needs a command (or --process)");
    }
    let mut user = User::default();
    if let Some(u) = &a.user {
        let (uid, gid) = parse_user(u)?;
        user.set_uid(uid);
        user.set_gid(gid);
    }
    if !a.additional_gids.is_empty() {
        user.set_additional_gids(Some(a.additional_gids.clone()));
    }
    let mut env =
        vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()];
    env.extend(a.env.iter().cloned());
    let mut p = Process::default();
    p.set_terminal(Some(a.tty))
        .set_user(user)
        .set_args(Some(a.command.clone()))
        .set_env(Some(env))
        .set_cwd(a.cwd.clone().unwrap_or_else(|| "/".into()).into())
        .set_capabilities(None)
        .set_rlimits(None)
        .set_no_new_privileges(a.no_new_privs.then_some(true));
    Ok(p)
}

pub async fn exec(rt: &RuntimeOptions, a: &ExecArgs) -> anyhow::Result<u8> {
    if a.preserve_fds > 0 {
        bail!("--preserve-fds: host fds cannot be passed into a container in a microVM");
    }
    let process = process(a)?;
    let io = match &a.console_socket {
        Some(s) => IoConfig::ConsoleSocket(s.clone()),
        None => IoConfig::Inherit,
    };
    crate::container::exec::exec(
        rt,
        ExecOptions {
            id: a.id.clone(),
            process,
            detach: a.detach,
            pid_file: a.pid_file.clone(),
            io,
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn flags_make_a_process_and_a_bad_file_is_an_error() {
        let cli = crate::cli::Cli::try_parse_from([
            "sandpod", "exec", "-t", "--cwd", "/tmp", "-e", "A=b", "-u", "1000:100", "c1", "sh",
            "-c", "id",
        ])
        .unwrap();
        let crate::cli::Command::Exec(a) = cli.command else {
            panic!()
        };
        let p = process(&a).unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["sh", "-c", "id"]);
        assert_eq!(p.user().uid(), 1000);
        assert_eq!(p.terminal(), Some(true));
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("p.json");
        std::fs::write(&f, "{not json").unwrap();
        let cli = crate::cli::Cli::try_parse_from([
            "sandpod",
            "exec",
            "--process",
            f.to_str().unwrap(),
            "c1",
        ])
        .unwrap();
        let crate::cli::Command::Exec(a) = cli.command else {
            panic!()
        };
        let e = process(&a).unwrap_err().to_string();
        assert!(e.contains("not a valid runtime-spec process"), "{e}");
    }
}
