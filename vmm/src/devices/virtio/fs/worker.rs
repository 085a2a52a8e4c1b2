//! The device thread's handler: turns the back end's used-buffer signals (its call eventfds)
//! into virtio-mmio interrupts, and notices the back end hanging up.
//!
//! The back end cannot raise the guest's IRQ directly: Linux's virtio-mmio interrupt handler
//! reads InterruptStatus and ignores the interrupt unless the used-ring bit is set, so the
//! VMM owns the call eventfds, and for each signal sets the bit and then triggers the irqfd.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use crate::devices::virtio::epoll_helper::{epoll_add, EpollHandler};
use crate::devices::virtio::Interrupt;

const TOKEN_SOCKET: u64 = 0;
/// epoll token of queue `i`'s call eventfd: `TOKEN_CALL + i`.
const TOKEN_CALL: u64 = 1;

/// The device thread's handler: the call eventfds (one per queue) and the back end's
/// connection (watched for hang-up only).
pub struct CallHandler {
    tag: String,
    epoll: Epoll,
    calls: Vec<EventFd>,
    socket: OwnedFd,
    interrupt: Arc<Interrupt>,
}

impl CallHandler {
    /// A handler for the device tagged `tag`: `calls` are the eventfds the back end signals,
    /// `socket` its connection.
    pub fn new(
        tag: String,
        calls: Vec<EventFd>,
        socket: OwnedFd,
        interrupt: Arc<Interrupt>,
    ) -> io::Result<CallHandler> {
        let epoll = Epoll::new()?;
        epoll_add(
            &epoll,
            socket.as_raw_fd(),
            EventSet::READ_HANG_UP,
            TOKEN_SOCKET,
        )?;
        for (token, call) in (TOKEN_CALL..).zip(&calls) {
            epoll_add(&epoll, call.as_raw_fd(), EventSet::IN, token)?;
        }
        Ok(CallHandler {
            tag,
            epoll,
            calls,
            socket,
            interrupt,
        })
    }

    fn on_call(&self, index: u64) {
        let Some(call) = usize::try_from(index).ok().and_then(|i| self.calls.get(i)) else {
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

impl EpollHandler for CallHandler {
    fn epoll(&self) -> &Epoll {
        &self.epoll
    }

    /// A signalled call or the hang-up only ever marks the device broken: the thread keeps
    /// running (the driver's reset stops it).
    fn handle_event(&mut self, token: u64, _events: EventSet) -> Result<(), String> {
        match token.checked_sub(TOKEN_CALL) {
            Some(index) => self.on_call(index),
            None => self.hung_up(),
        }
        Ok(())
    }
}
