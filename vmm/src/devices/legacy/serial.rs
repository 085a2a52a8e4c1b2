//! COM1 (port 0x3f8, IRQ 4): vm-superio's 16550A with its interrupt raised through an EventFd
//! registered as a KVM irqfd. Output only; guest input is not wired yet.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};
use vm_superio::serial::{NoEvents, SerialState};
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::config::{ConsoleConfig, ConsoleLimits};
use crate::devices::bus::BusDevice;
use crate::devices::legacy::console_sink::ConsoleSink;

/// COM1 base port.
pub const COM1_PORT: u64 = 0x3f8;
/// COM1 port count.
pub const COM1_LEN: u64 = 8;
/// COM1 IRQ (GSI).
pub const COM1_IRQ: u32 = 4;

/// Raises an interrupt by writing to an EventFd (a KVM irqfd).
#[derive(Debug)]
pub struct EventFdTrigger(pub EventFd);

impl Trigger for EventFdTrigger {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// Where console output goes.
pub type ConsoleOut = Box<dyn Write + Send>;

/// Opens the console output for `console`, capped by `limits` (see [`ConsoleSink`]).
pub fn console_output(console: &ConsoleConfig, limits: &ConsoleLimits) -> io::Result<ConsoleOut> {
    Ok(match console {
        ConsoleConfig::Stdout => Box::new(ConsoleSink::stream(Box::new(io::stdout()), limits)),
        ConsoleConfig::File(path) => Box::new(ConsoleSink::file(path, limits)?),
        ConsoleConfig::None => Box::new(io::sink()),
    })
}

/// A snapshot's UART state: DLL, DLM, IER, IIR, LCR, LSR, MCR, MSR, SCR, then the input
/// FIFO (vm-superio's `SerialState`, which has no serde).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedSerial {
    /// The nine registers, in the order above.
    pub registers: [u8; 9],
    /// Bytes the guest has not read yet (at most the 64-byte FIFO: checked on restore).
    pub in_buffer: Vec<u8>,
}

/// The serial port as a bus device.
pub struct SerialDevice<T: Trigger = EventFdTrigger> {
    serial: Serial<T, NoEvents, ConsoleOut>,
    errors: u64,
}

impl<T: Trigger> SerialDevice<T> {
    /// A serial port raising `trigger` and writing to `out`.
    pub fn new(trigger: T, out: ConsoleOut) -> Self {
        SerialDevice {
            serial: Serial::new(trigger, out),
            errors: 0,
        }
    }

    /// A serial port in the state `saved` (a snapshot's); `None` if that state is invalid.
    pub fn from_saved(trigger: T, out: ConsoleOut, saved: &SavedSerial) -> Option<Self> {
        let state = SerialState {
            baud_divisor_low: saved.registers[0],
            baud_divisor_high: saved.registers[1],
            interrupt_enable: saved.registers[2],
            interrupt_identification: saved.registers[3],
            line_control: saved.registers[4],
            line_status: saved.registers[5],
            modem_control: saved.registers[6],
            modem_status: saved.registers[7],
            scratch: saved.registers[8],
            in_buffer: saved.in_buffer.clone(),
        };
        Serial::from_state(&state, trigger, NoEvents, out)
            .ok()
            .map(|serial| SerialDevice { serial, errors: 0 })
    }

    /// The UART's registers and input FIFO, for a snapshot.
    pub fn save(&self) -> SavedSerial {
        let s = self.serial.state();
        SavedSerial {
            registers: [
                s.baud_divisor_low,
                s.baud_divisor_high,
                s.interrupt_enable,
                s.interrupt_identification,
                s.line_control,
                s.line_status,
                s.modem_control,
                s.modem_status,
                s.scratch,
            ],
            in_buffer: s.in_buffer,
        }
    }

    /// Flushes buffered console output.
    pub fn flush(&mut self) {
        let _ = self.serial.writer_mut().flush();
    }
}

impl<T: Trigger + Send> BusDevice for SerialDevice<T>
where
    T::E: std::fmt::Display,
{
    /// `offset` is below [`COM1_LEN`] (the bus's range check); the UART ignores other offsets.
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let offset = u8::try_from(offset).unwrap_or(u8::MAX);
        for b in data.iter_mut() {
            *b = self.serial.read(offset);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let offset = u8::try_from(offset).unwrap_or(u8::MAX);
        for &b in data {
            if let Err(e) = self.serial.write(offset, b) {
                self.errors += 1;
                if self.errors.is_power_of_two() {
                    tracing::warn!("serial console: {e} ({} errors so far)", self.errors);
                }
            }
        }
    }
}

/// A writer whose bytes tests read back (the console's output).
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Shared(pub(crate) std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_reach_output_and_raise_irq() {
        let out = Shared::default();
        let evt = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut dev = SerialDevice::new(
            EventFdTrigger(evt.try_clone().unwrap()),
            Box::new(out.clone()),
        );
        // Enable the THR-empty interrupt (IER bit 1), then send bytes.
        dev.write(1, &[0x2]);
        dev.write(0, b"hi\n");
        assert_eq!(&*out.0.lock().unwrap(), b"hi\n");
        assert!(evt.read().unwrap() >= 1);
        // LSR reports the transmitter empty.
        let mut lsr = [0u8];
        dev.read(5, &mut lsr);
        assert_eq!(lsr[0] & 0x60, 0x60);
        dev.flush();
    }

    #[test]
    fn saved_state_round_trips_and_a_bad_one_is_refused() {
        let evt = || EventFdTrigger(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let mut dev = SerialDevice::new(evt(), Box::new(io::sink()));
        dev.write(1, &[0x2]);
        dev.write(3, &[0x03]);
        dev.write(7, &[0x5a]);
        let saved = dev.save();
        let back = SerialDevice::from_saved(evt(), Box::new(io::sink()), &saved).unwrap();
        assert_eq!(back.save(), saved);
        let mut scratch = [0u8];
        let mut back = back;
        back.read(7, &mut scratch);
        assert_eq!(scratch[0], 0x5a);
        let too_much = SavedSerial {
            in_buffer: vec![0; 65],
            ..saved
        };
        assert!(SerialDevice::from_saved(evt(), Box::new(io::sink()), &too_much).is_none());
    }

    #[test]
    fn a_guest_flooding_the_uart_fills_no_more_than_the_caps() {
        let path = std::env::temp_dir().join(format!("sandpod-flood-{}", std::process::id()));
        let limits = ConsoleLimits {
            max_file_bytes: 4096,
            bytes_per_sec: 1,
            burst_bytes: 1024,
        };
        let evt = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let out = console_output(&ConsoleConfig::File(path.clone()), &limits).unwrap();
        let mut dev = SerialDevice::new(EventFdTrigger(evt), out);
        for _ in 0..1000 {
            dev.write(0, &[b'x'; 100]);
        }
        dev.flush();
        // The burst (plus a byte a second meanwhile), not the 100 000 bytes written.
        let len = std::fs::metadata(&path).unwrap().len();
        assert!((1024..2048).contains(&len), "{len}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn console_none_and_file() {
        let limits = ConsoleLimits::default();
        let mut sink = console_output(&ConsoleConfig::None, &limits).unwrap();
        sink.write_all(b"x").unwrap();
        let path = std::env::temp_dir().join(format!("sandpod-serial-{}", std::process::id()));
        {
            let mut f = console_output(&ConsoleConfig::File(path.clone()), &limits).unwrap();
            f.write_all(b"line\n").unwrap();
            f.flush().unwrap();
        }
        assert_eq!(std::fs::read(&path).unwrap(), b"line\n");
        std::fs::remove_file(&path).unwrap();
        assert!(
            console_output(&ConsoleConfig::File("/nonexistent/dir/x".into()), &limits).is_err()
        );
    }
}
