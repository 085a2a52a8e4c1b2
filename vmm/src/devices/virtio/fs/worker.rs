//! The device thread: turns the back end's used-buffer signals (its call eventfds) into
//! virtio-mmio interrupts, and notices the back end hanging up.
//!
//! The back end cannot raise the guest's IRQ directly: Linux's virtio-mmio interrupt handler
//! reads InterruptStatus and ignores the interrupt unless the used-ring bit is set, so the
//! VMM owns the call eventfds, and for each signal sets the bit and then triggers the irqfd.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use crate::devices::virtio::Interrupt;

const TOKEN_STOP: u64 = 0;
const TOKEN_SOCKET: u64 = 1;
const TOKEN_CALL: u64 = 2;

/// The running thread; stopping it is [`CallWorker::stop`] (also on drop).
pub struct CallWorker {
    stop: EventFd,
    handle: Option<JoinHandle<()>>,
}

impl CallWorker {
    /// Starts the thread `name` for `calls` (one eventfd per queue) and the back end's
    /// connection `socket` (watched for hang-up only).
    pub fn spawn(
        name: String,
        tag: String,
        calls: Vec<EventFd>,
        socket: OwnedFd,
        interrupt: Arc<Interrupt>,
    ) -> io::Result<CallWorker> {
        let stop = EventFd::new(libc::EFD_NONBLOCK)?;
        let epoll = Epoll::new()?;
        let add = |fd: i32, events: EventSet, token: u64| {
            epoll.ctl(ControlOperation::Add, fd, EpollEvent::new(events, token))
        };
        add(stop.as_raw_fd(), EventSet::IN, TOKEN_STOP)?;
        add(socket.as_raw_fd(), EventSet::READ_HANG_UP, TOKEN_SOCKET)?;
        for (i, call) in calls.iter().enumerate() {
            add(call.as_raw_fd(), EventSet::IN, TOKEN_CALL + i as u64)?;
        }
        let loop_ = Loop {
            tag,
            epoll,
            calls,
            socket,
            interrupt,
        };
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || loop_.run())?;
        Ok(CallWorker {
            stop,
            handle: Some(handle),
        })
    }

    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            let _ = self.stop.write(1);
            if handle.join().is_err() {
                tracing::error!("virtio-fs: device thread panicked");
            }
        }
    }
}

impl Drop for CallWorker {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Loop {
    tag: String,
    epoll: Epoll,
    calls: Vec<EventFd>,
    socket: OwnedFd,
    interrupt: Arc<Interrupt>,
}

impl Loop {
    fn run(self) {
        let mut events = vec![EpollEvent::default(); 8];
        loop {
            let n = match self.epoll.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.interrupt
                        .mark_broken(&format!("virtio-fs {}: epoll: {e}", self.tag));
                    return;
                }
            };
            for ev in &events[..n] {
                match ev.data() {
                    TOKEN_STOP => return,
                    TOKEN_SOCKET => self.hung_up(),
                    t => self.on_call((t - TOKEN_CALL) as usize),
                }
            }
        }
    }

    fn on_call(&self, index: usize) {
        let Some(call) = self.calls.get(index) else {
            return;
        };
        // Several signals since the last read collapse into one interrupt.
        if call.read().is_ok() {
            if let Err(e) = self.interrupt.signal_used() {
                self.interrupt
                    .mark_broken(&format!("virtio-fs {}: irqfd: {e}", self.tag));
            }
        }
    }

    /// The back end closed the connection (virtiofsd exited or crashed): the device is
    /// broken until a reset, which fails too (no reconnection).
    fn hung_up(&self) {
        tracing::error!("virtio-fs {}: the vhost-user back end hung up", self.tag);
        let _ = self.epoll.ctl(
            ControlOperation::Delete,
            self.socket.as_raw_fd(),
            EpollEvent::default(),
        );
        self.interrupt
            .mark_broken(&format!("virtio-fs {}: back end disconnected", self.tag));
    }
}
