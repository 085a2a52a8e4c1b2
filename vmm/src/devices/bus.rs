//! An address bus (port I/O or MMIO) dispatching guest accesses to devices by address range.
//! Accesses that hit no device are counted, logged rate-limited and ignored; reads of them
//! return all ones, as on real hardware with nothing decoding the address.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A device on a [`Bus`]. `offset` is relative to the start of the device's range.
pub trait BusDevice: Send {
    /// Guest read: fill `data`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Guest write.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// Errors adding a device.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// The range overlaps an existing device or is empty.
    #[error("bus range {base:#x}+{len:#x} is empty or overlaps another device")]
    Overlap {
        /// Range start.
        base: u64,
        /// Range length.
        len: u64,
    },
}

struct Entry {
    len: u64,
    device: Arc<Mutex<dyn BusDevice>>,
}

/// A bus: port I/O or MMIO.
pub struct Bus {
    name: &'static str,
    devices: BTreeMap<u64, Entry>,
    unknown: AtomicU64,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("name", &self.name)
            .field(
                "ranges",
                &self
                    .devices
                    .iter()
                    .map(|(b, e)| (*b, e.len))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Bus {
    /// An empty bus; `name` appears in logs ("pio", "mmio").
    pub fn new(name: &'static str) -> Self {
        Bus {
            name,
            devices: BTreeMap::new(),
            unknown: AtomicU64::new(0),
        }
    }

    /// Adds `device` at `[base, base + len)`.
    pub fn insert(
        &mut self,
        device: Arc<Mutex<dyn BusDevice>>,
        base: u64,
        len: u64,
    ) -> Result<(), BusError> {
        let overlap = || BusError::Overlap { base, len };
        let end = base.checked_add(len).ok_or_else(overlap)?;
        if len == 0 {
            return Err(overlap());
        }
        if let Some((b, e)) = self.devices.range(..end).next_back() {
            if b + e.len > base {
                return Err(overlap());
            }
        }
        self.devices.insert(base, Entry { len, device });
        Ok(())
    }

    fn find(&self, addr: u64, size: usize) -> Option<(&Entry, u64)> {
        let (base, entry) = self.devices.range(..=addr).next_back()?;
        let offset = addr - base;
        (offset.checked_add(size as u64)? <= entry.len).then_some((entry, offset))
    }

    fn note_unknown(&self, write: bool, addr: u64, len: usize) {
        let n = self.unknown.fetch_add(1, Ordering::Relaxed) + 1;
        // Rate limit: log the 1st, 2nd, 4th, 8th, ... unknown access.
        if n.is_power_of_two() {
            tracing::debug!(
                bus = self.name,
                "unhandled {} of {len} bytes at {addr:#x} ({n} unhandled so far)",
                if write { "write" } else { "read" }
            );
        }
    }

    /// Dispatches a read. Returns false (and fills `data` with 0xff) if no device is there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((entry, offset)) => {
                lock(&entry.device).read(offset, data);
                true
            }
            None => {
                data.fill(0xff);
                self.note_unknown(false, addr, data.len());
                false
            }
        }
    }

    /// Dispatches a write. Returns false if no device is there (the write is dropped).
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((entry, offset)) => {
                lock(&entry.device).write(offset, data);
                true
            }
            None => {
                self.note_unknown(true, addr, data.len());
                false
            }
        }
    }

    /// How many accesses hit no device.
    pub fn unknown_accesses(&self) -> u64 {
        self.unknown.load(Ordering::Relaxed)
    }
}

/// Locks a device, ignoring poisoning: a device that panicked keeps its last state.
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        writes: Vec<(u64, Vec<u8>)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(u8::try_from(offset).unwrap());
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.writes.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn dispatches_by_range() {
        let dev = Arc::new(Mutex::new(Recorder::default()));
        let mut bus = Bus::new("pio");
        bus.insert(dev.clone(), 0x3f8, 8).unwrap();
        let mut b = [0u8; 1];
        assert!(bus.read(0x3fd, &mut b));
        assert_eq!(b[0], 5);
        assert!(bus.write(0x3f8, b"x"));
        assert_eq!(dev.lock().unwrap().writes, vec![(0, vec![b'x'])]);
        assert_eq!(bus.unknown_accesses(), 0);
    }

    #[test]
    fn unknown_ports_read_ones_and_are_ignored() {
        let mut bus = Bus::new("pio");
        bus.insert(Arc::new(Mutex::new(Recorder::default())), 0x3f8, 8)
            .unwrap();
        let mut b = [0u8; 4];
        assert!(!bus.read(0x80, &mut b));
        assert_eq!(b, [0xff; 4]);
        assert!(!bus.write(0xcf8, &[1, 2, 3, 4]));
        // An access straddling the end of a device is not dispatched.
        let mut b = [0u8; 2];
        assert!(!bus.read(0x3ff, &mut b));
        assert!(!bus.read(0x400, &mut b));
        assert_eq!(bus.unknown_accesses(), 4);
    }

    #[test]
    fn rejects_overlaps() {
        let mut bus = Bus::new("mmio");
        let d = || -> Arc<Mutex<dyn BusDevice>> { Arc::new(Mutex::new(Recorder::default())) };
        bus.insert(d(), 0x1000, 0x100).unwrap();
        assert!(bus.insert(d(), 0x10ff, 1).is_err());
        assert!(bus.insert(d(), 0xf00, 0x101).is_err());
        assert!(bus.insert(d(), 0x1000, 0).is_err());
        assert!(bus.insert(d(), u64::MAX, 2).is_err());
        bus.insert(d(), 0x1100, 0x100).unwrap();
        bus.insert(d(), 0xf00, 0x100).unwrap();
    }
}
