//! The syscalls each kind of VMM thread may make, as seccompiler rules (x86_64).
//!
//! Found by reading the code paths each thread runs once the guest is running, then running
//! the VMM (boot, vsock, block, virtio-fs, a container) with the filters in log mode
//! (`SANDPOD_VMM_SECCOMP=log`) and reading the kernel's audit lines. Anything else kills the
//! process (SIGSYS). `ioctl`, `socket`, `tgkill`, `prctl` and `seccomp` are allowed with given
//! arguments only; `openat` fails with EACCES (below).
//!
//! A thread inherits its creator's filters and a syscall must pass every filter stacked on a
//! thread, so the spawner's list includes the device threads' (they are its children).
//!
//! `openat` is the exception: no thread may open files (but the console's rotation), yet
//! glibc's malloc opens `/proc/sys/vm/overcommit_memory` the first time it trims a thread's
//! heap (found in the test host: a `vsock` thread's free(), at an unpredictable moment). So
//! every list allows `openat` and a second filter per thread, [`deny_open_rules`], answers it
//! EACCES (the kernel takes the strongest action of the stacked filters: errno beats allow);
//! glibc copes with the failure.

use std::collections::BTreeMap;

use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};

use super::{SeccompError, ThreadKind};

/// Syscall number → rules (an empty list: allowed whatever the arguments).
pub type Rules = BTreeMap<i64, Vec<SeccompRule>>;

const KVMIO: u32 = 0xAE;
vmm_sys_util::ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
vmm_sys_util::ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_bindings::kvm_regs);
// <linux/if_tun.h>: _IOW('T', 208, unsigned int).
vmm_sys_util::ioctl_iow_nr!(TUNSETOFFLOAD, u32::from(b'T'), 208, libc::c_uint);

/// The ioctl request numbers a kind of thread may use.
pub fn ioctls(kind: ThreadKind) -> Vec<u64> {
    let fionbio = libc::FIONBIO;
    match kind {
        // KVM_RUN; KVM_GET_REGS for the report of a KVM internal error; FIONBIO when the
        // vsock device is activated (its listener made non-blocking); TUNSETOFFLOAD when the
        // net device is activated (the offloads the driver accepted).
        // (The tap's other ioctls run before the filters are installed.)
        ThreadKind::Vcpu => vec![KVM_RUN(), KVM_GET_REGS(), fionbio, TUNSETOFFLOAD()],
        // Accepted vsock clients are made non-blocking.
        ThreadKind::Device | ThreadKind::Spawner => vec![fionbio],
        ThreadKind::Main => vec![],
    }
}

/// Every thread: memory, locks, time, logs to stderr, signal return, thread exit.
const COMMON: &[i64] = &[
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_clock_gettime,
    libc::SYS_gettid,
    libc::SYS_getrandom,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_close,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sigaltstack,
    libc::SYS_restart_syscall,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// vCPU threads: KVM_RUN and the exits' device emulation. Activation and reset of virtio
/// devices run here (the driver's status write): eventfds, an epoll set, the vhost-user
/// messages to virtiofsd (sendmsg/recvmsg with fds), duplicated fds, and handing the device
/// thread to the spawner (futex).
const VCPU: &[i64] = &[
    libc::SYS_read,
    libc::SYS_eventfd2,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_fcntl,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
];

/// Device threads: the epoll loop, eventfds, the block image (read/write at an offset,
/// fdatasync), vsock's Unix sockets (accept, connect to `PATH_P`, send/recv, shutdown), the
/// net device's tap (read, writev, epoll_ctl to drop and restore its EPOLLIN interest).
const DEVICE: &[i64] = &[
    libc::SYS_epoll_create1,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_ctl,
    libc::SYS_read,
    libc::SYS_readv,
    libc::SYS_lseek,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_accept4,
    libc::SYS_connect,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_shutdown,
    libc::SYS_fcntl,
    libc::SYS_eventfd2,
];

/// The spawner: creating threads (the device threads start under its filter).
const SPAWNER: &[i64] = &[
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_sched_getaffinity,
];

/// The main thread after setup (waiting, kicking and joining the vCPUs, tearing the VM down:
/// the virtio-fs rings are taken back, the disk images unlocked, the vsock socket removed if
/// it is still ours) and the signal thread.
const MAIN: &[i64] = &[
    libc::SYS_rt_sigtimedwait,
    libc::SYS_flock,
    libc::SYS_fcntl,
    libc::SYS_statx,
    libc::SYS_newfstatat,
    libc::SYS_getpid,
    libc::SYS_nanosleep,
    libc::SYS_clock_nanosleep,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_read,
];

/// The console file's rotation (on the vCPU thread that writes the UART): rename, then a new
/// file opened exactly as [`crate::devices::legacy::console_sink`] opens it.
const CONSOLE_FILE: &[i64] = &[libc::SYS_rename, libc::SYS_renameat, libc::SYS_renameat2];

/// The flags the console file is (re)created with (`File::options().write().create()
/// .truncate()`, std adds O_CLOEXEC).
pub const CONSOLE_OPEN_FLAGS: i32 =
    libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC;

/// What decides a kind's list besides the kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleOptions {
    /// The console goes to a file (rotated by the vCPU threads).
    pub console_file: bool,
    /// Template mode: the VM may end with a snapshot (see [`SNAPSHOT_MAIN`]).
    pub snapshot: bool,
}

// Template mode: what saving a vCPU (on its thread) and the VM (on the main thread) reads.
vmm_sys_util::ioctl_ior_nr!(KVM_GET_MP_STATE, KVMIO, 0x98, kvm_bindings::kvm_mp_state);
vmm_sys_util::ioctl_ior_nr!(KVM_GET_SREGS, KVMIO, 0x83, kvm_bindings::kvm_sregs);
vmm_sys_util::ioctl_ior_nr!(KVM_GET_XSAVE, KVMIO, 0xa4, kvm_bindings::kvm_xsave);
vmm_sys_util::ioctl_ior_nr!(KVM_GET_XCRS, KVMIO, 0xa6, kvm_bindings::kvm_xcrs);
vmm_sys_util::ioctl_ior_nr!(KVM_GET_DEBUGREGS, KVMIO, 0xa1, kvm_bindings::kvm_debugregs);
vmm_sys_util::ioctl_ior_nr!(KVM_GET_LAPIC, KVMIO, 0x8e, kvm_bindings::kvm_lapic_state);
vmm_sys_util::ioctl_iowr_nr!(KVM_GET_MSRS, KVMIO, 0x88, kvm_bindings::kvm_msrs);
vmm_sys_util::ioctl_ior_nr!(
    KVM_GET_VCPU_EVENTS,
    KVMIO,
    0x9f,
    kvm_bindings::kvm_vcpu_events
);
vmm_sys_util::ioctl_io_nr!(KVM_GET_TSC_KHZ, KVMIO, 0xa3);
vmm_sys_util::ioctl_iowr_nr!(KVM_GET_IRQCHIP, KVMIO, 0x62, kvm_bindings::kvm_irqchip);
vmm_sys_util::ioctl_ior_nr!(KVM_GET_PIT2, KVMIO, 0x9f, kvm_bindings::kvm_pit_state2);
vmm_sys_util::ioctl_ior_nr!(KVM_GET_CLOCK, KVMIO, 0x7c, kvm_bindings::kvm_clock_data);

/// The ioctls template mode adds to a kind's list: each vCPU saves itself, the main thread
/// the VM's irqchips, PIT and clock.
pub fn snapshot_ioctls(kind: ThreadKind) -> Vec<u64> {
    match kind {
        ThreadKind::Vcpu => vec![
            KVM_GET_MP_STATE(),
            KVM_GET_SREGS(),
            KVM_GET_XSAVE(),
            KVM_GET_XCRS(),
            KVM_GET_DEBUGREGS(),
            KVM_GET_LAPIC(),
            KVM_GET_MSRS(),
            KVM_GET_VCPU_EVENTS(),
            KVM_GET_TSC_KHZ(),
        ],
        ThreadKind::Main => vec![KVM_GET_IRQCHIP(), KVM_GET_PIT2(), KVM_GET_CLOCK()],
        ThreadKind::Device | ThreadKind::Spawner => vec![],
    }
}

/// Template mode, the main thread: writing the snapshot into the files opened at set-up
/// (memory read from the memfd at offsets, its extents found with SEEK_DATA/SEEK_HOLE, the
/// files sized and synced) and dropping the retained initrd (a punched hole, below).
const SNAPSHOT_MAIN: &[i64] = &[
    libc::SYS_lseek,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_ftruncate,
    libc::SYS_fsync,
];

/// The rules of one kind of thread.
pub fn rules(kind: ThreadKind, opts: RuleOptions) -> Result<Rules, SeccompError> {
    let mut r = Rules::new();
    allow(&mut r, COMMON);
    match kind {
        ThreadKind::Vcpu => {
            allow(&mut r, VCPU);
            if opts.console_file {
                allow(&mut r, CONSOLE_FILE);
            }
        }
        ThreadKind::Device => allow(&mut r, DEVICE),
        ThreadKind::Spawner => {
            allow(&mut r, DEVICE);
            allow(&mut r, SPAWNER);
            // Naming the new thread; the device thread installing its own filter on top.
            allow_if(&mut r, libc::SYS_prctl, &[(0, as_arg(libc::PR_SET_NAME))])?;
            let nnp = as_arg(libc::PR_SET_NO_NEW_PRIVS);
            allow_if(&mut r, libc::SYS_prctl, &[(0, nnp)])?;
            let set_filter = u64::from(libc::SECCOMP_SET_MODE_FILTER);
            allow_if(&mut r, libc::SYS_seccomp, &[(0, set_filter)])?;
        }
        ThreadKind::Main => {
            allow(&mut r, MAIN);
            if opts.snapshot {
                allow(&mut r, SNAPSHOT_MAIN);
            }
            // Only the vCPU kick (the signal thread waits; nobody else signals).
            let kick = as_arg(crate::kvm::vcpu::kick_signal());
            allow_if(&mut r, libc::SYS_tgkill, &[(2, kick)])?;
        }
    }
    let punches_holes = matches!(kind, ThreadKind::Device | ThreadKind::Spawner)
        || (kind == ThreadKind::Main && opts.snapshot);
    if punches_holes {
        // Only hole punching (vsock gives the retained initrd's guest memory back; a
        // snapshot leaves it out).
        let punch = as_arg(libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE);
        allow_if(&mut r, libc::SYS_fallocate, &[(1, punch)])?;
    }
    if matches!(kind, ThreadKind::Device | ThreadKind::Spawner) {
        // Unix sockets only (vsock's connections to `PATH_P`).
        allow_if(&mut r, libc::SYS_socket, &[(0, as_arg(libc::AF_UNIX))])?;
    }
    let snapshot_ioctls = if opts.snapshot {
        snapshot_ioctls(kind)
    } else {
        Vec::new()
    };
    for req in ioctls(kind).into_iter().chain(snapshot_ioctls) {
        allow_if(&mut r, libc::SYS_ioctl, &[(1, req)])?;
    }
    // Decided by the deny-open filter.
    allow(&mut r, &[libc::SYS_openat]);
    Ok(r)
}

/// The second filter: `openat` fails with EACCES, but for the vCPU threads' console rotation
/// (exactly [`CONSOLE_OPEN_FLAGS`]) when the console is a file.
pub fn deny_open_rules(kind: ThreadKind, opts: RuleOptions) -> Result<Rules, SeccompError> {
    let mut r = Rules::new();
    if kind == ThreadKind::Vcpu && opts.console_file {
        let flags = u64::from(CONSOLE_OPEN_FLAGS.unsigned_abs());
        let other_flags =
            SeccompCondition::new(2, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, flags)
                .map_err(SeccompError::Build)?;
        let rule = SeccompRule::new(vec![other_flags]).map_err(SeccompError::Build)?;
        r.insert(libc::SYS_openat, vec![rule]);
    } else {
        allow(&mut r, &[libc::SYS_openat]);
    }
    Ok(r)
}

fn as_arg(v: i32) -> u64 {
    u64::from(v.unsigned_abs())
}

/// Allows each syscall whatever its arguments.
fn allow(rules: &mut Rules, syscalls: &[i64]) {
    for &nr in syscalls {
        rules.insert(nr, Vec::new());
    }
}

/// Allows `nr` when every `(argument index, value)` matches (a 32-bit compare), in addition
/// to the rules it already has (an unconditional allow stays unconditional).
fn allow_if(rules: &mut Rules, nr: i64, args: &[(u8, u64)]) -> Result<(), SeccompError> {
    let conditions = args
        .iter()
        .map(|&(index, value)| {
            SeccompCondition::new(index, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(SeccompError::Build)?;
    let rule = SeccompRule::new(conditions).map_err(SeccompError::Build)?;
    match rules.get_mut(&nr) {
        Some(existing) if existing.is_empty() => {}
        Some(existing) => existing.push(rule),
        None => {
            rules.insert(nr, vec![rule]);
        }
    }
    Ok(())
}
