//! The cgroup v2 device controller: a BPF_PROG_TYPE_CGROUP_DEVICE program made from the
//! container's [`DeviceRules`] (raw eBPF instructions, as runc's `devicefilter` writes them:
//! no compiler, no helpers, no maps) and attached to the container's cgroup with
//! BPF_CGROUP_DEVICE before any of its processes runs.
//!
//! The kernel runs the program on every device access (open, mknod) of a process in the cgroup
//! with a `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`, access_type
//! being `(BPF_DEVCG_ACC_* << 16) | BPF_DEVCG_DEV_*`; 0 refuses the access (EPERM). Layout:
//!
//! ```text
//! r2 = type (access_type & 0xffff); r3 = access (access_type >> 16); r4 = major; r5 = minor
//! for each exception:
//!     type != its type -> next
//!     default deny:  (access & its access) != access -> next   (all of it granted)
//!     default allow: (access & its access) == 0      -> next   (any of it denied)
//!     its major (unless any) != major -> next;  its minor (unless any) != minor -> next
//!     return !default
//! return default
//! ```
//!
//! The program is attached with BPF_F_ALLOW_MULTI: a nested cgroup may add its own programs,
//! which only restrict further (every program on the path must allow an access).
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use super::device_rules::{DevType, DeviceRules, ACC_ALL};

/// One eBPF instruction (`struct bpf_insn`): opcode, dst (low nibble) and src (high nibble)
/// registers, offset, immediate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

/// Opcodes used (class | op | source).
pub const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
pub const ALU32_AND_K: u8 = 0x54; // (u32) dst &= imm
pub const ALU32_RSH_K: u8 = 0x74; // (u32) dst >>= imm
pub const ALU32_MOV_K: u8 = 0xb4; // (u32) dst = imm
pub const ALU32_MOV_X: u8 = 0xbc; // (u32) dst = src
pub const JMP_JEQ_K: u8 = 0x15; // if dst == imm: pc += off
pub const JMP_JNE_K: u8 = 0x55; // if dst != imm: pc += off
pub const JMP_JNE_X: u8 = 0x5d; // if dst != src: pc += off
pub const JMP_EXIT: u8 = 0x95;

/// BPF_DEVCG_DEV_* of a device type.
fn bpf_type(t: DevType) -> i32 {
    match t {
        DevType::Block => 1,
        DevType::Char => 2,
    }
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// A number of the rules as an immediate (majors and minors have at most 20 bits; anything
/// that does not fit an i32 cannot equal a real device number and is made unmatchable).
fn imm(v: u32) -> Option<i32> {
    i32::try_from(v).ok()
}

/// The program for `rules` (see the module docs).
pub fn program(rules: &DeviceRules) -> Vec<Insn> {
    let mut out = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    let verdict = i32::from(!rules.default_allow);
    for e in &rules.exceptions {
        // Jumps to the next block are written with their target index, fixed up below.
        let mut block = vec![insn(JMP_JNE_K, 2, 0, 0, bpf_type(e.typ))];
        let access = e.access as i32;
        if rules.default_allow {
            block.push(insn(ALU32_MOV_X, 1, 3, 0, 0));
            block.push(insn(ALU32_AND_K, 1, 0, 0, access));
            block.push(insn(JMP_JEQ_K, 1, 0, 0, 0));
        } else if e.access != ACC_ALL {
            block.push(insn(ALU32_MOV_X, 1, 3, 0, 0));
            block.push(insn(ALU32_AND_K, 1, 0, 0, access));
            block.push(insn(JMP_JNE_X, 1, 3, 0, 0));
        }
        for (reg, want) in [(4u8, e.major), (5u8, e.minor)] {
            match want.map(imm) {
                None => {}
                Some(Some(v)) => block.push(insn(JMP_JNE_K, reg, 0, 0, v)),
                // Unmatchable: skip the block outright.
                Some(None) => block.push(insn(JMP_JNE_K, reg, 0, 0, -1)),
            }
        }
        block.push(insn(ALU32_MOV_K, 0, 0, 0, verdict));
        block.push(insn(JMP_EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if matches!(ins.code, JMP_JNE_K | JMP_JEQ_K | JMP_JNE_X) {
                // To the first instruction after the block.
                ins.off = i16::try_from(len - i - 1).expect("a block is a few instructions");
            }
        }
        out.extend(block);
    }
    out.push(insn(ALU32_MOV_K, 0, 0, 0, i32::from(rules.default_allow)));
    out.push(insn(JMP_EXIT, 0, 0, 0, 0));
    out
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;
/// Verifier log kept when a load fails.
const LOG_SIZE: usize = 64 * 1024;

/// The head of `union bpf_attr` for BPF_PROG_LOAD (the kernel takes a shorter attr than its
/// own: the rest is zero).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The head of `union bpf_attr` for BPF_PROG_ATTACH.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// bpf(2) with `attr`.
///
/// # Safety
/// `attr` must be the attr the kernel expects for `cmd`, and every pointer in it must point at
/// memory that is valid (and writable where the kernel writes) for the length it gives.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: the caller vouches for `attr`; its size is passed along.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Loads `insns` as a cgroup device program; on a refusal the error has the verifier's log.
pub(super) fn load(insns: &[Insn]) -> Result<OwnedFd> {
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..15].copy_from_slice(b"sandpod_devices");
    let mut log = vec![0u8; LOG_SIZE];
    let mut first_try = true;
    loop {
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: u32::try_from(insns.len()).context("device program too long")?,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name,
            ..Default::default()
        };
        if !first_try {
            attr.log_level = 1;
            attr.log_size = LOG_SIZE as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
        }
        // SAFETY: a BPF_PROG_LOAD attr: `insns` points at insn_cnt instructions, `license` at
        // a NUL-terminated string, `log_buf` (when set) at log_size writable bytes, all alive
        // for the call; the kernel copies them and keeps no pointer.
        match unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
            Ok(fd) => {
                let fd = i32::try_from(fd).context("bpf returned a bad descriptor")?;
                // SAFETY: a new descriptor the kernel just gave us, owned by nobody else.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
            // Again with the verifier's log, for the error message.
            Err(_) if first_try => first_try = false,
            Err(e) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]);
                return Err(e).context(format!(
                    "bpf(BPF_PROG_LOAD) of the device program; verifier: {}",
                    text.trim()
                ));
            }
        }
    }
}

/// Programs loaded so far, by their instructions: most containers have the same rules, and a
/// program is immutable once loaded, so one program serves every cgroup with those rules (the
/// verifier runs once). Bounded: past [`MAX_CACHED`] distinct programs the oldest is dropped
/// (the cgroups it is attached to keep their own reference).
static PROGRAMS: Mutex<Vec<(Vec<Insn>, Arc<OwnedFd>)>> = Mutex::new(Vec::new());
const MAX_CACHED: usize = 8;

/// The loaded program of `insns`, from [`PROGRAMS`] or loaded now.
fn loaded(insns: Vec<Insn>) -> Result<Arc<OwnedFd>> {
    let mut cache = PROGRAMS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, fd)) = cache.iter().find(|(i, _)| *i == insns) {
        return Ok(fd.clone());
    }
    let fd = Arc::new(load(&insns)?);
    if cache.len() >= MAX_CACHED {
        cache.remove(0);
    }
    cache.push((insns, fd.clone()));
    Ok(fd)
}

/// Loads the program of `rules` ahead of its first use (at boot, before a template's snapshot,
/// so that containers with the default rules find it loaded).
pub fn preload(rules: &DeviceRules) -> Result<()> {
    loaded(program(rules)).map(drop)
}

/// Attaches the program of `rules` (loaded once, see [`PROGRAMS`]) to the cgroup directory
/// `cgroup`.
pub fn attach(cgroup: &Path, rules: &DeviceRules) -> Result<()> {
    let insns = program(rules);
    let count = insns.len();
    let prog = loaded(insns)?;
    let dir = File::open(cgroup).with_context(|| format!("open {}", cgroup.display()))?;
    let mut attr = ProgAttachAttr {
        target_fd: u32::try_from(dir.as_raw_fd()).context("cgroup descriptor")?,
        attach_bpf_fd: u32::try_from(prog.as_raw_fd()).context("program descriptor")?,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    // SAFETY: a BPF_PROG_ATTACH attr with two descriptors we hold open for the call; no
    // pointers. The attachment keeps its own reference to the program.
    unsafe { bpf(BPF_PROG_ATTACH, &mut attr) }
        .with_context(|| format!("attaching the device program to {}", cgroup.display()))?;
    tracing::debug!(
        cgroup = %cgroup.display(),
        instructions = count,
        exceptions = rules.exceptions.len(),
        "device program attached"
    );
    Ok(())
}

#[cfg(test)]
#[path = "device_filter_tests.rs"]
mod tests;
