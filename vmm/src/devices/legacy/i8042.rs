//! A minimal i8042 keyboard controller at ports 0x60-0x64.
//!
//! Its job is the guest's reboot: Linux (`reboot=k`) writes 0xFE ("pulse reset line") to port
//! 0x64, which this device reports through its reset callback. Beyond that it answers just
//! enough of the controller and keyboard protocol for Linux's i8042/atkbd drivers to probe
//! quickly instead of waiting on timeouts: the status port reads 0x10 ("keyboard not
//! inhibited", else Linux warns "Keylock active") when idle, the data port 0 when empty; there is
//! no AUX (mouse) port. Port 0x61 (normally handled in-kernel by KVM's PIT)
//! reads 0.

use std::collections::VecDeque;

use vmm_sys_util::eventfd::EventFd;

use crate::devices::bus::BusDevice;

/// First port.
pub const I8042_PORT: u64 = 0x60;
/// Number of ports (0x60..=0x64).
pub const I8042_LEN: u64 = 5;
/// Keyboard IRQ.
pub const I8042_KBD_IRQ: u32 = 1;

const OFS_DATA: u64 = 0;
const OFS_STATUS: u64 = 4;

const CMD_READ_CTR: u8 = 0x20;
const CMD_WRITE_CTR: u8 = 0x60;
const CMD_AUX_DISABLE: u8 = 0xa7;
const CMD_AUX_ENABLE: u8 = 0xa8;
const CMD_AUX_TEST: u8 = 0xa9;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_KBD_TEST: u8 = 0xab;
const CMD_READ_OUTP: u8 = 0xd0;
const CMD_WRITE_OUTP: u8 = 0xd1;
const CMD_AUX_LOOP: u8 = 0xd3;
const CMD_AUX_SEND: u8 = 0xd4;
/// Pulse the reset line: reboot.
pub const CMD_RESET_CPU: u8 = 0xfe;

const SB_OUT_DATA_AVAIL: u8 = 0x01;
const SB_I8042_CMD_DATA: u8 = 0x08;
const SB_KBD_ENABLED: u8 = 0x10;
const CB_KBD_INT: u8 = 0x01;
const CB_POST_OK: u8 = 0x04;
const CB_AUX_DISABLED: u8 = 0x20;

const KBD_ACK: u8 = 0xfa;
const KBD_BAT_OK: u8 = 0xaa;
const KBD_ECHO: u8 = 0xee;
const KBD_CMD_SETLEDS: u8 = 0xed;
const KBD_CMD_SETSET: u8 = 0xf0;
const KBD_CMD_GETID: u8 = 0xf2;
const KBD_CMD_SETREP: u8 = 0xf3;
const KBD_CMD_RESET: u8 = 0xff;
const BUF_CAP: usize = 16;

/// The controller.
pub struct I8042 {
    status: u8,
    control: u8,
    outp: u8,
    /// Controller command waiting for its data byte.
    pending_cmd: Option<u8>,
    /// Keyboard command waiting for its parameter byte.
    pending_kbd: Option<u8>,
    buf: VecDeque<u8>,
    on_reset: Box<dyn FnMut() + Send>,
    kbd_irq: Option<EventFd>,
}

impl I8042 {
    /// A controller calling `on_reset` when the guest asks for a reset, raising `kbd_irq`
    /// (IRQ 1) for keyboard data.
    pub fn new(on_reset: Box<dyn FnMut() + Send>, kbd_irq: Option<EventFd>) -> Self {
        I8042 {
            status: SB_KBD_ENABLED,
            control: CB_POST_OK | CB_KBD_INT,
            outp: 0x01,
            pending_cmd: None,
            pending_kbd: None,
            buf: VecDeque::new(),
            on_reset,
            kbd_irq,
        }
    }

    fn push(&mut self, b: u8) {
        if self.buf.len() < BUF_CAP {
            self.buf.push_back(b);
        }
        self.status |= SB_OUT_DATA_AVAIL;
    }

    fn kbd_interrupt(&self) {
        if self.control & CB_KBD_INT != 0 && !self.buf.is_empty() {
            if let Some(evt) = &self.kbd_irq {
                let _ = evt.write(1);
            }
        }
    }

    fn reset(&mut self) {
        (self.on_reset)();
    }

    fn command(&mut self, cmd: u8) {
        self.status |= SB_I8042_CMD_DATA;
        match cmd {
            CMD_READ_CTR => self.push(self.control),
            CMD_WRITE_CTR | CMD_WRITE_OUTP | CMD_AUX_LOOP | CMD_AUX_SEND => {
                self.pending_cmd = Some(cmd)
            }
            CMD_AUX_DISABLE => self.control |= CB_AUX_DISABLED,
            CMD_AUX_ENABLE => self.control &= !CB_AUX_DISABLED,
            // "Clock line stuck low": there is no AUX port.
            CMD_AUX_TEST => self.push(0x01),
            CMD_SELF_TEST => self.push(0x55),
            CMD_KBD_TEST => self.push(0x00),
            CMD_READ_OUTP => self.push(self.outp),
            CMD_RESET_CPU => self.reset(),
            // Pulse output lines 0xf0-0xff: bit 0 clear pulses the reset line.
            0xf0..=0xff if cmd & 1 == 0 => self.reset(),
            _ => {}
        }
    }

    fn data(&mut self, b: u8) {
        self.status &= !SB_I8042_CMD_DATA;
        if let Some(cmd) = self.pending_cmd.take() {
            match cmd {
                CMD_WRITE_CTR => self.control = b,
                CMD_WRITE_OUTP => {
                    self.outp = b;
                    if b & 1 == 0 {
                        self.reset();
                    }
                }
                // Loopback answered as a keyboard byte, which Linux takes as "no AUX port".
                CMD_AUX_LOOP => self.push(b),
                _ => {} // CMD_AUX_SEND: no mouse, drop.
            }
            return;
        }
        if let Some(kcmd) = self.pending_kbd.take() {
            self.push(KBD_ACK);
            if kcmd == KBD_CMD_SETSET && b == 0 {
                self.push(0x02); // scan code set 2
            }
            self.kbd_interrupt();
            return;
        }
        match b {
            KBD_CMD_SETLEDS | KBD_CMD_SETSET | KBD_CMD_SETREP => {
                self.pending_kbd = Some(b);
                self.push(KBD_ACK);
            }
            KBD_CMD_GETID => {
                self.push(KBD_ACK);
                self.push(0xab);
                self.push(0x83);
            }
            KBD_CMD_RESET => {
                self.push(KBD_ACK);
                self.push(KBD_BAT_OK);
            }
            KBD_ECHO => self.push(KBD_ECHO),
            _ => self.push(KBD_ACK),
        }
        self.kbd_interrupt();
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let v = match offset {
            OFS_STATUS => self.status,
            OFS_DATA => {
                let v = self.buf.pop_front().unwrap_or(0);
                if self.buf.is_empty() {
                    self.status &= !SB_OUT_DATA_AVAIL;
                } else {
                    self.kbd_interrupt();
                }
                v
            }
            _ => 0,
        };
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = v;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&b) = data.first() else { return };
        match offset {
            OFS_STATUS => self.command(b),
            OFS_DATA => self.data(b),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn dev() -> (I8042, Arc<AtomicUsize>, EventFd) {
        let resets = Arc::new(AtomicUsize::new(0));
        let r = resets.clone();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let d = I8042::new(
            Box::new(move || {
                r.fetch_add(1, Ordering::SeqCst);
            }),
            Some(irq.try_clone().unwrap()),
        );
        (d, resets, irq)
    }

    fn rd(d: &mut I8042, ofs: u64) -> u8 {
        let mut b = [0xffu8];
        d.read(ofs, &mut b);
        b[0]
    }

    #[test]
    fn reset_command_is_detected() {
        let (mut d, resets, _) = dev();
        d.write(OFS_STATUS, &[0x20]);
        assert_eq!(resets.load(Ordering::SeqCst), 0);
        d.write(OFS_STATUS, &[CMD_RESET_CPU]);
        assert_eq!(resets.load(Ordering::SeqCst), 1);
        // Writing 0xfe to the data port is a keyboard byte, not a reset.
        d.write(OFS_DATA, &[0xfe]);
        assert_eq!(resets.load(Ordering::SeqCst), 1);
        // Output port write with bit 0 clear resets too.
        d.write(OFS_STATUS, &[CMD_WRITE_OUTP]);
        d.write(OFS_DATA, &[0x00]);
        assert_eq!(resets.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn idle_reads_are_zero() {
        let (mut d, _, _) = dev();
        assert_eq!(rd(&mut d, OFS_STATUS), SB_KBD_ENABLED);
        assert_eq!(rd(&mut d, OFS_DATA), 0);
        assert_eq!(rd(&mut d, 1), 0); // port 0x61
        let mut wide = [0xffu8; 4];
        d.read(OFS_DATA, &mut wide);
        assert_eq!(wide, [0; 4]);
        d.write(2, &[1]);
        d.write(OFS_DATA, &[]);
    }

    #[test]
    fn controller_protocol() {
        let (mut d, _, _) = dev();
        d.write(OFS_STATUS, &[CMD_READ_CTR]);
        assert_eq!(rd(&mut d, OFS_STATUS) & SB_OUT_DATA_AVAIL, 1);
        assert_eq!(rd(&mut d, OFS_DATA), CB_POST_OK | CB_KBD_INT);
        assert_eq!(rd(&mut d, OFS_STATUS) & SB_OUT_DATA_AVAIL, 0);
        d.write(OFS_STATUS, &[CMD_WRITE_CTR]);
        d.write(OFS_DATA, &[0x45]);
        d.write(OFS_STATUS, &[CMD_READ_CTR]);
        assert_eq!(rd(&mut d, OFS_DATA), 0x45);
        d.write(OFS_STATUS, &[CMD_SELF_TEST]);
        assert_eq!(rd(&mut d, OFS_DATA), 0x55);
        d.write(OFS_STATUS, &[CMD_AUX_LOOP]);
        d.write(OFS_DATA, &[0x5a]);
        assert_eq!(rd(&mut d, OFS_STATUS) & 0x20, 0, "loopback is not AUX data");
        assert_eq!(rd(&mut d, OFS_DATA), 0x5a);
    }

    #[test]
    fn keyboard_answers_and_interrupts() {
        let (mut d, _, irq) = dev();
        d.write(OFS_DATA, &[KBD_CMD_GETID]);
        assert!(irq.read().unwrap() >= 1);
        assert_eq!(rd(&mut d, OFS_DATA), KBD_ACK);
        assert_eq!(rd(&mut d, OFS_DATA), 0xab);
        assert_eq!(rd(&mut d, OFS_DATA), 0x83);
        d.write(OFS_DATA, &[KBD_CMD_SETLEDS]);
        d.write(OFS_DATA, &[0x00]);
        assert_eq!(rd(&mut d, OFS_DATA), KBD_ACK);
        assert_eq!(rd(&mut d, OFS_DATA), KBD_ACK);
        assert_eq!(rd(&mut d, OFS_STATUS) & SB_OUT_DATA_AVAIL, 0);
    }
}
