//! Starting, waiting on and signalling the processes the host asks for.
pub mod creds;
pub mod error;
pub mod exit;
pub mod launched;
pub mod manager;
pub mod process_spec;
pub mod reaper;
pub mod spawn;
pub mod table;

pub use error::ProcessError;
pub use exit::ExitStatus;
pub use launched::{Launched, ParentStdio};
pub use manager::{parse_signal, ProcessManager};
pub use process_spec::ProcessSpec;
pub use reaper::{Reaper, SignalOutcome};
pub use spawn::ExecSpec;
