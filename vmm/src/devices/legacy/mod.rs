//! Legacy PC devices: the 16550A serial port (its output capped by [`console_sink`]) and a
//! minimal i8042 keyboard controller.

pub mod console_sink;
pub mod i8042;
pub mod serial;

pub use i8042::I8042;
pub use serial::{EventFdTrigger, SerialDevice};
