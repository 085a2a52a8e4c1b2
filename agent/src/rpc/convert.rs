//! Protobuf requests to the agent's own types, and back.
use sandpod_protocol::agent::{CreateSandboxRequest, ExecProcessRequest, WaitProcessResponse};

use crate::process::creds::Credentials;
use crate::process::{ExecSpec, ExitStatus};
use crate::sandbox::{MountSpec, SandboxSpec};

pub fn exec_spec(req: ExecProcessRequest) -> ExecSpec {
    ExecSpec {
        exec_id: req.exec_id,
        args: req.args,
        env: req.env,
        cwd: req.cwd,
        creds: Credentials {
            uid: req.uid,
            gid: req.gid,
            additional_gids: req.additional_gids,
        },
        terminal: req.terminal,
        stdin: req.stdin,
        stdout: req.stdout,
        stderr: req.stderr,
    }
}

pub fn sandbox_spec(req: CreateSandboxRequest) -> SandboxSpec {
    SandboxSpec {
        hostname: req.hostname,
        dns_servers: req.dns_servers,
        dns_search: req.dns_search,
        mounts: req
            .mounts
            .into_iter()
            .map(|m| MountSpec {
                source: m.source,
                target: m.target,
                fstype: m.fstype,
                options: m.options,
            })
            .collect(),
    }
}

pub fn wait_response(status: ExitStatus) -> WaitProcessResponse {
    let mut resp = WaitProcessResponse::new();
    match status {
        ExitStatus::Exited(code) => resp.set_exit_code(code),
        ExitStatus::Signaled(sig) => resp.set_signal(sig),
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_and_exit_are_distinct() {
        let r = wait_response(ExitStatus::Signaled(15));
        assert!(r.has_signal() && !r.has_exit_code());
        assert_eq!(r.signal(), 15);
        let r = wait_response(ExitStatus::Exited(0));
        assert!(r.has_exit_code() && !r.has_signal());
        assert_eq!(r.exit_code(), 0);
    }
}
