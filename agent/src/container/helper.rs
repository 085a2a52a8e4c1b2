//! The container helper's entry point: the agent binary re-executed (`/proc/self/exe`) in
//! container-init or container-exec mode by `launch`, with the sync socket on fd 3.
//!
//! The helper is single-threaded and has no log connection: anything that goes wrong is sent to
//! the agent as an `Error` message (which logs it and fails the RPC) before exiting 1.
use super::config::HelperConfig;
use super::launch::{EXEC_MODE, INIT_MODE};
use super::sync::{Msg, Received, SyncSocket};

/// Whether `args` (argv without argv[0]) asks for a helper mode.
pub fn is_helper(args: &[String]) -> bool {
    matches!(
        args.first().map(String::as_str),
        Some(INIT_MODE | EXEC_MODE)
    )
}

/// Runs the helper; never returns.
pub fn main() -> ! {
    // SAFETY: `launch` starts the helper with its end of the sync socket on this descriptor,
    // owned by nobody else in this process.
    let sync = unsafe { SyncSocket::from_inherited() };
    // Not dumpable until the final execve (which makes the container's binary dumpable again,
    // unless it is set-id): the container's other processes cannot ptrace the helper, nor open
    // its /proc/<pid>/{mem,exe,fd,environ,...} (the agent binary and its descriptors), as runc's
    // init does. A root process in the container with CAP_SYS_PTRACE still could: that is what
    // the capability means.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        fail(&sync, format!("PR_SET_DUMPABLE 0: {e}"));
    }
    // Close-on-exec from now on: the agent reads EOF exactly when the final exec succeeds.
    if let Err(e) = nix::fcntl::fcntl(
        sync.fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    ) {
        fail(&sync, format!("FD_CLOEXEC on the sync socket: {e}"));
    }
    let config = match sync.recv() {
        Ok(Received::Msg(Msg::Config(c), _)) => c,
        Ok(other) => fail(&sync, format!("expected the config, got {other:?}")),
        Err(e) => fail(&sync, format!("reading the config: {e}")),
    };
    let result = match config {
        HelperConfig::Init(cfg) => super::helper_init::run(&cfg, &sync),
        HelperConfig::Exec(cfg) => super::helper_exec::run(&cfg, &sync),
    };
    match result {
        Ok(never) => match never {},
        Err(e) => fail(&sync, format!("{e:#}")),
    }
}

/// Reports `message` to the agent and exits 1.
pub fn fail(sync: &SyncSocket, message: String) -> ! {
    if sync
        .send(
            &Msg::Error {
                message: message.clone(),
            },
            None,
        )
        .is_err()
    {
        eprintln!("sandpod container helper: {message}");
    }
    std::process::exit(1)
}
