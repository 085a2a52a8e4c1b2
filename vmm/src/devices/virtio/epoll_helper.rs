//! A virtio device's thread, the same for every device model: one epoll loop with a stop
//! eventfd, spawned on activation, stopped and joined on reset (or drop). Modelled on Cloud
//! Hypervisor's `epoll_helper`: the device supplies an [`EpollHandler`] (its epoll set with its
//! own fds registered, and what to do on each event); [`DeviceThread`] owns the stop eventfd,
//! the waiting, the error paths and the thread.
//!
//! The loop: [`EpollHandler::start`] once, then wait (no polling: the handler's timeout, none
//! by default). The stop eventfd ends the thread at once; every other event goes to
//! [`EpollHandler::handle_event`], and after each wake-up [`EpollHandler::after_wake`] runs.
//! An `Err` from the handler or a failed wait marks the device DEVICE_NEEDS_RESET and ends the
//! thread; the driver's reset then joins it.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::thread::JoinHandle;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::Interrupt;

/// epoll token of the stop eventfd: a handler's own tokens must be different.
pub const STOP_TOKEN: u64 = u64::MAX;
/// Most events taken from one wait.
const MAX_EVENTS: usize = 64;

/// What a device's thread does. `Err(why)` from a method: the device is broken (the driver
/// corrupted a queue, or the host side failed); the thread marks it and ends.
pub trait EpollHandler: Send + 'static {
    /// The epoll set the thread waits on, with the device's fds in it. The stop eventfd is
    /// added by [`DeviceThread::spawn`] under [`STOP_TOKEN`].
    fn epoll(&self) -> &Epoll;

    /// How long the next wait may last, in milliseconds (-1: until an event).
    fn timeout_ms(&self) -> i32 {
        -1
    }

    /// Runs once on the thread, before the first wait.
    fn start(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// One event (never the stop eventfd's): its token and what happened.
    fn handle_event(&mut self, token: u64, events: EventSet) -> Result<(), String>;

    /// Runs after the events of each wake-up (and after a wait that timed out).
    fn after_wake(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// Adds `fd` to `epoll` for `events`, reported with `token`.
pub fn epoll_add(epoll: &Epoll, fd: RawFd, events: EventSet, token: u64) -> io::Result<()> {
    epoll.ctl(ControlOperation::Add, fd, EpollEvent::new(events, token))
}

/// A running device thread; [`DeviceThread::stop`] (also on drop) stops and joins it.
pub struct DeviceThread<H> {
    name: String,
    stop: EventFd,
    handle: Option<JoinHandle<H>>,
}

impl<H: EpollHandler> DeviceThread<H> {
    /// Starts the thread `name` running `handler`'s loop. `label` prefixes the reasons given
    /// when the thread marks the device broken on `interrupt`. Fails (nothing started) if the
    /// stop eventfd or the thread cannot be created.
    pub fn spawn(
        name: &str,
        label: String,
        handler: H,
        interrupt: Arc<Interrupt>,
    ) -> io::Result<Self> {
        let stop = EventFd::new(libc::EFD_NONBLOCK)?;
        epoll_add(handler.epoll(), stop.as_raw_fd(), EventSet::IN, STOP_TOKEN)?;
        // Through the spawner (seccomp: the thread gets the device filter).
        let handle =
            crate::seccomp::spawner::spawn(name, move || run(handler, &label, &interrupt))?;
        Ok(DeviceThread {
            name: name.to_owned(),
            stop,
            handle: Some(handle),
        })
    }
}

impl<H> DeviceThread<H> {
    /// Stops the thread (if it still runs) and waits for it. Returns the handler, with
    /// whatever it counted; `None` if it was already stopped or the thread panicked (logged).
    pub fn stop(&mut self) -> Option<H> {
        let handle = self.handle.take()?;
        let _ = self.stop.write(1);
        match handle.join() {
            Ok(handler) => Some(handler),
            Err(_) => {
                tracing::error!("{}: device thread panicked", self.name);
                None
            }
        }
    }
}

impl<H> Drop for DeviceThread<H> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The thread's body: the loop, then the handler back to whoever joins.
fn run<H: EpollHandler>(mut handler: H, label: &str, interrupt: &Interrupt) -> H {
    if let Err(why) = event_loop(&mut handler) {
        interrupt.mark_broken(&format!("{label}: {why}"));
    }
    handler
}

/// `Ok` when stopped, `Err` when the device broke.
fn event_loop<H: EpollHandler>(handler: &mut H) -> Result<(), String> {
    handler.start()?;
    let mut events = [EpollEvent::default(); MAX_EVENTS];
    loop {
        let n = match handler.epoll().wait(handler.timeout_ms(), &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("epoll: {e}")),
        };
        for ev in &events[..n] {
            if ev.data() == STOP_TOKEN {
                return Ok(());
            }
            handler.handle_event(ev.data(), ev.event_set())?;
        }
        handler.after_wake()?;
    }
}

#[cfg(test)]
#[path = "epoll_helper_tests.rs"]
mod tests;
