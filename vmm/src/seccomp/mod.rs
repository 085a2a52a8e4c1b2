//! The VMM's own confinement: a seccomp filter per kind of thread (Firecracker's per-thread
//! filters are the model), and guest memory kept out of core dumps.
//!
//! | kind | threads | installed |
//! | --- | --- | --- |
//! | [`ThreadKind::Vcpu`] | `vcpuN` | by the thread, before its first KVM_RUN |
//! | [`ThreadKind::Device`] | `vsock`, `virtio-blk`, `virtio-fs`, `virtio-net` | by the thread, before its epoll loop |
//! | [`ThreadKind::Spawner`] | `spawner` (creates the device threads) | by the thread, at start |
//! | [`ThreadKind::Main`] | the main thread, `signals` | after setup, before the vCPUs enter the guest |
//!
//! Each thread gets two filters: its list, and one answering `openat` with EACCES (see
//! [`rules`]: glibc's malloc may open a /proc file at any time).
//!
//! The vCPUs wait until every filter is in place (theirs, the spawner's, main's) before the
//! guest's first instruction. Violations kill the process (SIGSYS). The lists and why each
//! syscall is there: [`rules`]. `no_seccomp` in the [`crate::VmConfig`] (`--no-seccomp`)
//! turns them off (a warning is logged); `SANDPOD_VMM_SECCOMP=log` only logs violations (to
//! the kernel's audit log), to find a missing syscall.

pub mod dump;
pub mod rules;
pub mod spawner;

use std::fmt;
use std::str::FromStr;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

pub use rules::RuleOptions;

/// Environment variable: `log` makes violations logged instead of fatal (development only).
pub const MODE_ENV: &str = "SANDPOD_VMM_SECCOMP";

/// A kind of VMM thread, each with its own filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ThreadKind {
    /// vCPU threads.
    Vcpu,
    /// Virtio device threads (the epoll loops).
    Device,
    /// The thread that creates device threads.
    Spawner,
    /// The main thread after setup, and the signal thread.
    Main,
}

impl ThreadKind {
    /// Every kind.
    pub const ALL: [ThreadKind; 4] = [
        ThreadKind::Vcpu,
        ThreadKind::Device,
        ThreadKind::Spawner,
        ThreadKind::Main,
    ];
}

impl fmt::Display for ThreadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ThreadKind::Vcpu => "vcpu",
            ThreadKind::Device => "device",
            ThreadKind::Spawner => "spawner",
            ThreadKind::Main => "main",
        })
    }
}

impl FromStr for ThreadKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ThreadKind::ALL
            .into_iter()
            .find(|k| k.to_string() == s)
            .ok_or_else(|| format!("unknown thread kind {s:?} (vcpu, device, spawner or main)"))
    }
}

/// What a filter does with a syscall outside its list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Kill the process (SIGSYS): the normal mode.
    Kill,
    /// Allow it and log it to the audit log (development: finding what a thread needs).
    Log,
}

impl Mode {
    /// The mode `SANDPOD_VMM_SECCOMP` asks for (`log`; anything else: [`Mode::Kill`]).
    pub fn from_env() -> Mode {
        match std::env::var(MODE_ENV) {
            Ok(v) if v == "log" => Mode::Log,
            _ => Mode::Kill,
        }
    }

    fn action(self) -> SeccompAction {
        match self {
            Mode::Kill => SeccompAction::KillProcess,
            Mode::Log => SeccompAction::Log,
        }
    }
}

/// Errors building or installing a filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// A rule or filter could not be built.
    #[error("cannot build the seccomp rules: {0}")]
    Build(seccompiler::BackendError),
    /// The filter could not be compiled to BPF.
    #[error("cannot compile the {kind} seccomp filter: {source}")]
    Compile {
        /// Which filter.
        kind: ThreadKind,
        /// Error.
        source: seccompiler::BackendError,
    },
    /// The filter could not be installed on the thread.
    #[error("cannot install the {kind} seccomp filter: {source}")]
    Install {
        /// Which filter.
        kind: ThreadKind,
        /// Error.
        source: seccompiler::Error,
    },
}

/// A kind's two filters: its list (else kill), and `openat` answered EACCES.
#[derive(Clone, Debug)]
struct Programs {
    list: BpfProgram,
    deny_open: BpfProgram,
}

/// The compiled filters of each kind of thread, or none (`no_seccomp`).
#[derive(Clone, Debug)]
pub struct SeccompFilters {
    programs: Option<[Programs; 4]>,
    mode: Mode,
    violation: Option<ThreadKind>,
}

impl SeccompFilters {
    /// Compiles every kind's filter (`enabled` false: filters are off).
    pub fn new(enabled: bool, opts: RuleOptions, mode: Mode) -> Result<Self, SeccompError> {
        let programs = if enabled {
            let [v, d, s, m] = ThreadKind::ALL.map(|kind| compile(kind, opts, mode));
            Some([v?, d?, s?, m?])
        } else {
            None
        };
        Ok(SeccompFilters {
            programs,
            mode,
            violation: None,
        })
    }

    /// No filters at all.
    pub fn disabled() -> Self {
        SeccompFilters {
            programs: None,
            mode: Mode::Kill,
            violation: None,
        }
    }

    /// Whether filters are installed.
    pub fn enabled(&self) -> bool {
        self.programs.is_some()
    }

    /// The mode violations are handled in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The BPF program of `kind`'s list (None when disabled).
    pub fn program(&self, kind: ThreadKind) -> Option<&BpfProgram> {
        self.programs_of(kind).map(|p| &p.list)
    }

    /// The BPF program of `kind`'s `openat` filter (None when disabled).
    pub fn deny_open_program(&self, kind: ThreadKind) -> Option<&BpfProgram> {
        self.programs_of(kind).map(|p| &p.deny_open)
    }

    fn programs_of(&self, kind: ThreadKind) -> Option<&Programs> {
        let i = ThreadKind::ALL.iter().position(|k| *k == kind)?;
        self.programs.as_ref().map(|p| &p[i])
    }

    /// Debug only: make a thread of `kind` break its filter once every filter is installed.
    pub fn set_debug_violation(&mut self, kind: Option<ThreadKind>) {
        self.violation = kind;
    }

    /// Installs `kind`'s filters on the calling thread (nothing when disabled).
    pub fn apply(&self, kind: ThreadKind) -> Result<(), SeccompError> {
        let Some(p) = self.programs_of(kind) else {
            return Ok(());
        };
        for program in [&p.deny_open, &p.list] {
            seccompiler::apply_filter(program)
                .map_err(|source| SeccompError::Install { kind, source })?;
        }
        tracing::debug!("seccomp filters installed ({kind})");
        Ok(())
    }

    /// Debug only (`--debug-seccomp-violation`): if the calling thread, of kind `kind`, was
    /// chosen, it makes a syscall outside its filter (getppid): the process dies of SIGSYS.
    pub fn debug_violation(&self, kind: ThreadKind) {
        if self.violation == Some(kind) {
            tracing::warn!("seccomp: {kind} thread makes a forbidden syscall (debug trigger)");
            forbidden_syscall();
        }
    }
}

/// getppid: in no filter.
pub fn forbidden_syscall() -> i64 {
    // SAFETY: getppid takes no arguments, touches no memory and cannot fail.
    unsafe { libc::syscall(libc::SYS_getppid) }
}

fn compile(kind: ThreadKind, opts: RuleOptions, mode: Mode) -> Result<Programs, SeccompError> {
    let bpf = |filter: Result<SeccompFilter, seccompiler::BackendError>| {
        filter
            .map_err(SeccompError::Build)?
            .try_into()
            .map_err(|source| SeccompError::Compile { kind, source })
    };
    let list = bpf(SeccompFilter::new(
        rules::rules(kind, opts)?,
        mode.action(),
        SeccompAction::Allow,
        TargetArch::x86_64,
    ))?;
    let deny_open = bpf(SeccompFilter::new(
        rules::deny_open_rules(kind, opts)?,
        SeccompAction::Allow,
        SeccompAction::Errno(EACCES),
        TargetArch::x86_64,
    ))?;
    Ok(Programs { list, deny_open })
}

const EACCES: u32 = libc::EACCES.unsigned_abs();

#[cfg(test)]
mod tests;
