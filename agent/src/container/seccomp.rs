//! The spec's `linux.seccomp`, compiled to a classic-BPF seccomp filter for x86_64.
//!
//! Argument conditions are compiled by `seccompiler` (rust-vmm); the filter around them is ours,
//! because an OCI profile gives every rule its own action. Layout:
//!
//! ```text
//! arch != x86_64, or an x32 syscall number        -> foreign-arch action
//! for each syscall named:  nr == N ?
//!     for each conditional rule (spec order): conditions hold -> its action
//!     the unconditional rule's action, else the default action
//! otherwise                                       -> default action
//! ```
//!
//! The foreign-arch action is the default action when that denies (errno, trap, kill), else
//! KILL_PROCESS: 32-bit (x86, x32) syscalls have their own numbers, which this filter does not
//! map, so they are refused rather than let through. Syscall names unknown to x86_64 are skipped
//! (as runc skips names libseccomp does not know); an unsupported action (NOTIFY) is an error.
use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};
use seccompiler::{BpfProgram, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};
use tracing::debug;

pub(super) const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
pub(super) const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// offsetof(struct seccomp_data, nr), (…, arch) and (…, args[0]) (its low 32 bits: x86_64 is
/// little-endian).
pub(super) const DATA_NR: u32 = 0;
pub(super) const DATA_ARCH: u32 = 4;
pub(super) const DATA_ARG0_LO: u32 = 16;
const BPF_MAXINSNS: usize = 4096;
const MAX_ERRNO: u32 = 4095;

/// BPF_LD | BPF_W | BPF_ABS (BPF_LD and BPF_W are 0).
pub(super) const BPF_LD_W_ABS: u16 = 0x20;
pub(super) const BPF_JMP_JA: u16 = 0x05;
pub(super) const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
pub(super) const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
pub(super) const BPF_RET_K: u16 = 0x06;

pub(super) const RET_KILL_THREAD: u32 = 0x0000_0000;
pub(super) const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub(super) const RET_TRAP: u32 = 0x0003_0000;
pub(super) const RET_ERRNO: u32 = 0x0005_0000;
pub(super) const RET_TRACE: u32 = 0x7ff0_0000;
pub(super) const RET_LOG: u32 = 0x7ffc_0000;
pub(super) const RET_ALLOW: u32 = 0x7fff_0000;

/// A compiled filter, ready for `apply`.
#[derive(Debug, Clone)]
pub struct Program {
    filter: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
}

impl Program {
    /// A program of ours (not from a spec): `filter` as is, no flags.
    pub(super) fn from_filter(filter: Vec<libc::sock_filter>) -> Program {
        Program { filter, flags: 0 }
    }

    /// The instructions.
    #[cfg(test)]
    pub(super) fn instructions(&self) -> &[libc::sock_filter] {
        &self.filter
    }

    /// Number of BPF instructions.
    pub fn len(&self) -> usize {
        self.filter.len()
    }

    /// Whether the program has no instruction (never true for a compiled one).
    pub fn is_empty(&self) -> bool {
        self.filter.is_empty()
    }
}

/// One rule of a syscall: conditions (None: unconditional) and the action's return value.
type Rule = (Option<SeccompRule>, u32);

/// Compiles the spec's profile.
pub fn compile(spec: &LinuxSeccomp) -> Result<Program> {
    let default = action_value(spec.default_action(), spec.default_errno_ret())
        .context("seccomp defaultAction")?;
    let foreign = match spec.default_action() {
        LinuxSeccompAction::ScmpActAllow
        | LinuxSeccompAction::ScmpActLog
        | LinuxSeccompAction::ScmpActTrace => RET_KILL_PROCESS,
        _ => default,
    };
    let mut rules: BTreeMap<u32, Vec<Rule>> = BTreeMap::new();
    let mut skipped = 0usize;
    for (i, sc) in spec.syscalls().iter().flatten().enumerate() {
        let action = action_value(sc.action(), sc.errno_ret())
            .with_context(|| format!("seccomp syscalls[{i}] ({})", sc.names().join(",")))?;
        if action == default {
            // libseccomp refuses a rule whose action is the default; runc skips it.
            continue;
        }
        let conds = conditions(sc).with_context(|| format!("seccomp syscalls[{i}] args"))?;
        for name in sc.names() {
            let Ok(sysno) = name.parse::<syscalls::Sysno>() else {
                debug!(syscall = %name, "seccomp: syscall unknown on x86_64, skipped");
                skipped += 1;
                continue;
            };
            let nr = u32::try_from(sysno.id()).context("syscall number")?;
            let entry = rules.entry(nr).or_default();
            match &conds {
                None => entry.push((None, action)),
                Some(list) => entry.extend(list.iter().map(|r| (Some(r.clone()), action))),
            }
        }
    }
    let filter = assemble(&rules, default, foreign)?;
    let flags = spec
        .flags()
        .iter()
        .flatten()
        .map(|f| match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            // Only meaningful with a notify listener, which is not supported.
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 0,
        })
        .fold(0, |a, b| a | b);
    debug!(
        instructions = filter.len(),
        syscalls = rules.len(),
        skipped,
        "seccomp profile compiled"
    );
    Ok(Program { filter, flags })
}

/// Installs the filter on the calling thread. Needs no_new_privs set first, or CAP_SYS_ADMIN.
pub fn apply(program: &Program) -> Result<()> {
    if program.filter.is_empty() {
        bail!("empty seccomp program");
    }
    let prog = libc::sock_fprog {
        len: u16::try_from(program.filter.len()).context("seccomp program too long")?,
        filter: program.filter.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `program.filter`, alive and unmodified for the call; the kernel
    // copies the instructions and keeps no pointer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            program.flags,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        let hint = if e.raw_os_error() == Some(libc::EACCES) {
            " (no_new_privs not set and no CAP_SYS_ADMIN)"
        } else {
            ""
        };
        return Err(e).context(format!("seccomp(SET_MODE_FILTER){hint}"));
    }
    debug!(
        instructions = program.filter.len(),
        "seccomp filter installed"
    );
    Ok(())
}

/// The filter return value of an action.
fn action_value(action: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<u32> {
    use LinuxSeccompAction as A;
    let data = |what: &str| -> Result<u32> {
        let v = errno_ret.unwrap_or(libc::EPERM as u32);
        if v > MAX_ERRNO {
            bail!("{what} {v} is out of range (0..={MAX_ERRNO})");
        }
        Ok(v)
    };
    Ok(match action {
        A::ScmpActKill | A::ScmpActKillThread => RET_KILL_THREAD,
        A::ScmpActKillProcess => RET_KILL_PROCESS,
        A::ScmpActTrap => RET_TRAP,
        A::ScmpActErrno => RET_ERRNO | data("errnoRet")?,
        A::ScmpActTrace => RET_TRACE | data("trace value")?,
        A::ScmpActLog => RET_LOG,
        A::ScmpActAllow => RET_ALLOW,
        A::ScmpActNotify => bail!("action SCMP_ACT_NOTIFY is not supported"),
    })
}

/// A syscall entry's args as rules: None when it has none. All conditions in one rule (AND),
/// except when several test the same argument: then one rule each (OR), as runc does.
fn conditions(sc: &LinuxSyscall) -> Result<Option<Vec<SeccompRule>>> {
    let args = match sc.args() {
        Some(a) if !a.is_empty() => a,
        _ => return Ok(None),
    };
    let conds = args.iter().map(condition).collect::<Result<Vec<_>>>()?;
    let mut seen = [0usize; 6];
    for a in args {
        seen[a.index()] += 1;
    }
    let rules = if seen.iter().any(|&n| n > 1) {
        conds
            .into_iter()
            .map(|c| SeccompRule::new(vec![c]))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![SeccompRule::new(conds)?]
    };
    Ok(Some(rules))
}

fn condition(arg: &LinuxSeccompArg) -> Result<SeccompCondition> {
    use LinuxSeccompOperator as O;
    let index = u8::try_from(arg.index())
        .ok()
        .filter(|i| *i <= 5)
        .with_context(|| format!("argument index {} is out of range (0..=5)", arg.index()))?;
    let (op, value) = match arg.op() {
        O::ScmpCmpEq => (SeccompCmpOp::Eq, arg.value()),
        O::ScmpCmpNe => (SeccompCmpOp::Ne, arg.value()),
        O::ScmpCmpLt => (SeccompCmpOp::Lt, arg.value()),
        O::ScmpCmpLe => (SeccompCmpOp::Le, arg.value()),
        O::ScmpCmpGt => (SeccompCmpOp::Gt, arg.value()),
        O::ScmpCmpGe => (SeccompCmpOp::Ge, arg.value()),
        // libseccomp: (arg & value) == valueTwo.
        O::ScmpCmpMaskedEq => (
            SeccompCmpOp::MaskedEq(arg.value()),
            arg.value_two().unwrap_or(0),
        ),
    };
    Ok(SeccompCondition::new(
        index,
        SeccompCmpArgLen::Qword,
        op,
        value,
    )?)
}

pub(super) fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

pub(super) fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Builds the whole filter (see the module doc).
fn assemble(
    rules: &BTreeMap<u32, Vec<Rule>>,
    default: u32,
    foreign: u32,
) -> Result<Vec<libc::sock_filter>> {
    let mut out = vec![
        stmt(BPF_LD_W_ABS, DATA_ARCH),
        jump(BPF_JMP_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(BPF_RET_K, foreign),
        stmt(BPF_LD_W_ABS, DATA_NR),
        jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET_K, foreign),
    ];
    for (nr, list) in rules {
        let mut body: Vec<libc::sock_filter> = Vec::new();
        for (rule, action) in list {
            if let Some(rule) = rule {
                let bpf: BpfProgram = rule.clone().into();
                body.extend(bpf.iter().map(|i| jump(i.code, i.k, i.jt, i.jf)));
                body.push(stmt(BPF_RET_K, *action));
            }
        }
        let fallback = list
            .iter()
            .find(|(r, _)| r.is_none())
            .map_or(default, |(_, a)| *a);
        body.push(stmt(BPF_RET_K, fallback));
        out.push(jump(BPF_JMP_JEQ_K, *nr, 1, 0));
        out.push(stmt(BPF_JMP_JA, u32::try_from(body.len())?));
        out.extend(body);
    }
    out.push(stmt(BPF_RET_K, default));
    if out.len() > BPF_MAXINSNS {
        bail!(
            "seccomp profile compiles to {} BPF instructions, over the kernel's {BPF_MAXINSNS}",
            out.len()
        );
    }
    Ok(out)
}

#[cfg(test)]
#[path = "seccomp_tests.rs"]
mod tests;
