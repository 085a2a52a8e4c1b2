//! Device threads are created by a thread of their own, the spawner, not by the vCPU thread
//! that activates the device: a thread inherits its creator's seccomp filters, so a device
//! thread created by a vCPU would be held to the vCPU's list as well as its own (and the
//! vCPU's list would need thread creation and every device syscall). The spawner's list is
//! the device threads' plus thread creation; each new thread installs the device filter
//! before it runs anything.
//!
//! A vCPU thread [`enter`]s the spawner once; [`spawn`] then hands the new thread to it.
//! Without one (unit tests, embedders that do not run [`crate::Vmm::run`]) [`spawn`] creates
//! the thread directly.

use std::cell::RefCell;
use std::io;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::{SeccompError, SeccompFilters, ThreadKind};

type Job = Box<dyn FnOnce() + Send>;

/// What a thread needs to hand new device threads to the spawner.
#[derive(Clone)]
pub struct SpawnerHandle {
    jobs: Sender<Job>,
    filters: Arc<SeccompFilters>,
}

impl std::fmt::Debug for SpawnerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnerHandle").finish_non_exhaustive()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<SpawnerHandle>> = const { RefCell::new(None) };
}

/// Starts the spawner thread; returns once its filter is installed. It ends when every
/// [`SpawnerHandle`] is dropped.
pub fn start(filters: Arc<SeccompFilters>) -> Result<SpawnerHandle, StartError> {
    let (jobs, queue) = mpsc::channel::<Job>();
    let (ready_tx, ready_rx) = mpsc::sync_channel(1);
    let f = filters.clone();
    std::thread::Builder::new()
        .name("spawner".into())
        .spawn(move || {
            let installed = f.apply(ThreadKind::Spawner);
            let ok = installed.is_ok();
            let _ = ready_tx.send(installed);
            if ok {
                for job in queue {
                    // Debug only; at the first device start, after every filter is in place.
                    f.debug_violation(ThreadKind::Spawner);
                    job();
                }
            }
        })
        .map_err(StartError::Thread)?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(SpawnerHandle { jobs, filters }),
        Ok(Err(e)) => Err(StartError::Seccomp(e)),
        Err(_) => Err(StartError::Thread(io::Error::other(
            "the spawner thread died",
        ))),
    }
}

/// The spawner could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No thread.
    #[error("cannot start the device thread spawner: {0}")]
    Thread(io::Error),
    /// Its filter could not be installed.
    #[error(transparent)]
    Seccomp(SeccompError),
}

/// Makes [`spawn`] on this thread go through `handle`.
pub fn enter(handle: SpawnerHandle) {
    CURRENT.with(|c| *c.borrow_mut() = Some(handle));
}

/// Forgets the spawner this thread [`enter`]ed (the main thread, once it has restored a
/// snapshot's devices: the spawner ends when its last handle goes).
pub fn leave() {
    CURRENT.with(|c| c.borrow_mut().take());
}

/// Starts a device thread `name` running `f`: through the spawner this thread [`enter`]ed
/// (the new thread installs the device filter first), else directly.
pub fn spawn<T, F>(name: &str, f: F) -> io::Result<JoinHandle<T>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let builder = std::thread::Builder::new().name(name.to_owned());
    let Some(handle) = CURRENT.with(|c| c.borrow().clone()) else {
        return builder.spawn(f);
    };
    let filters = handle.filters;
    let (reply_tx, reply_rx) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let spawned = builder.spawn(move || {
            if let Err(e) = filters.apply(ThreadKind::Device) {
                // Fail closed: a device thread never serves the guest unfiltered.
                tracing::error!("{e}; stopping the VMM");
                std::process::exit(1);
            }
            filters.debug_violation(ThreadKind::Device);
            f()
        });
        let _ = reply_tx.send(spawned);
    });
    let gone = || io::Error::other("the device thread spawner is gone");
    handle.jobs.send(job).map_err(|_| gone())?;
    reply_rx.recv().map_err(|_| gone())?
}
