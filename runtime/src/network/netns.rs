//! Running netlink work inside a network namespace without changing the caller's: a thread of
//! its own enters the namespace (`setns(CLONE_NEWNET)` only affects the calling thread) and
//! runs a current-thread tokio runtime with an rtnetlink connection opened there. Sockets and
//! taps opened on that thread belong to the namespace and keep working from any thread.
use std::fs::File;
use std::future::Future;
use std::os::fd::AsFd;
use std::path::Path;

use nix::sched::{setns, CloneFlags};
use rtnetlink::Handle;
use tracing::debug;

use super::error::NetworkError;

/// Starts a thread that enters the network namespace `ns` (an open namespace file) and then
/// runs `work` with the outcome of the `setns`: on `Err` the thread is still in the caller's
/// namespace and `work` must do no namespace work. What `work` makes there (sockets, taps)
/// keeps the namespace wherever it is used. The one way this crate enters a namespace.
pub fn spawn_in_netns<R, F>(
    ns: impl AsFd + Send + 'static,
    work: F,
) -> std::io::Result<std::thread::JoinHandle<R>>
where
    R: Send + 'static,
    F: FnOnce(nix::Result<()>) -> R + Send + 'static,
{
    std::thread::Builder::new()
        .name("sandpod-netns".into())
        .spawn(move || work(setns(&ns, CloneFlags::CLONE_NEWNET)))
}

/// Runs `work` with a netlink handle in the network namespace at `netns` (a path such as
/// `/var/run/netns/X` or `/proc/PID/ns/net`) and returns what it returns. Blocks until done.
pub fn run_in_netns<T, F, Fut>(netns: &Path, work: F) -> Result<T, NetworkError>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, NetworkError>>,
{
    // Opened here, so the path is resolved in the caller's mount namespace and a bad path is
    // reported before any thread is started.
    let ns = File::open(netns).map_err(|source| NetworkError::OpenNetns {
        path: netns.to_path_buf(),
        source,
    })?;
    let path = netns.to_path_buf();
    let thread = spawn_in_netns(ns, move |entered| {
        entered.map_err(|source| NetworkError::Setns {
            path: path.clone(),
            source,
        })?;
        debug!(netns = %path.display(), "netlink thread entered the network namespace");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(NetworkError::Runtime)?;
        rt.block_on(async move {
            let (connection, handle, _) =
                rtnetlink::new_connection().map_err(NetworkError::Connection)?;
            let conn = tokio::spawn(connection);
            let result = work(handle).await;
            conn.abort();
            result
        })
    })
    .map_err(NetworkError::Thread)?;
    thread.join().map_err(|_| NetworkError::ThreadPanicked)?
}
