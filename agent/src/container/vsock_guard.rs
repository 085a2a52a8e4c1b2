//! AF_VSOCK refused to containers: a seccomp filter of our own, installed in every container
//! process (init and exec) besides the spec's profile, unless the spec's annotation
//! [`ALLOW_VSOCK_ANNOTATION`] is `"true"`.
//!
//! vsock is the guest's line to the host: the agent's ttrpc API and stdio streams (which accept
//! the host's CID only, and there is no vsock loopback in the guest kernel) and the host's log
//! port 1025, which any guest process could otherwise connect to and write forged "guest" log
//! lines into (the host drops lines without the agent's log token, see
//! `runtime/src/agent_client/logs.rs`). A container has no business on any of these, so it
//! cannot even create the socket: `socket(AF_VSOCK, …)` and `socketpair(AF_VSOCK, …)` fail with
//! EPERM (what Docker's default profile answers too). When several seccomp filters are installed
//! the kernel applies the most restrictive answer, so the spec's profile cannot re-allow it.
//!
//! ```text
//! arch != x86_64, or an x32 syscall number   -> EPERM (not inspected: refused; the guest kernel
//!                                               has neither IA32 nor x32 syscalls anyway)
//! nr == socket or socketpair, and (u32)args[0] == AF_VSOCK -> EPERM
//! otherwise                                  -> ALLOW
//! ```
//!
//! `args[0]` is compared on its low 32 bits: the kernel takes the family as an `int`, so high
//! bits cannot smuggle AF_VSOCK past the filter.
use std::collections::HashMap;

use super::seccomp::{
    jump, stmt, Program, AUDIT_ARCH_X86_64, BPF_JMP_JEQ_K, BPF_JMP_JGE_K, BPF_LD_W_ABS, BPF_RET_K,
    DATA_ARCH, DATA_ARG0_LO, DATA_NR, RET_ALLOW, RET_ERRNO, X32_SYSCALL_BIT,
};

/// The annotation that lets a container use AF_VSOCK (value `"true"`).
pub const ALLOW_VSOCK_ANNOTATION: &str = "io.sandpod.allow-vsock";

/// Whether the spec's annotations allow AF_VSOCK.
pub fn allowed_by(annotations: Option<&HashMap<String, String>>) -> bool {
    annotations
        .and_then(|a| a.get(ALLOW_VSOCK_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// The filter (see the module docs).
pub fn program() -> Program {
    let deny = RET_ERRNO | libc::EPERM as u32;
    let socket = libc::SYS_socket as u32;
    let socketpair = libc::SYS_socketpair as u32;
    Program::from_filter(vec![
        /* 0 */ stmt(BPF_LD_W_ABS, DATA_ARCH),
        /* 1 */ jump(BPF_JMP_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        /* 2 */ stmt(BPF_RET_K, deny),
        /* 3 */ stmt(BPF_LD_W_ABS, DATA_NR),
        /* 4 */ jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1),
        /* 5 */ stmt(BPF_RET_K, deny),
        /* 6 */ jump(BPF_JMP_JEQ_K, socket, 1, 0),
        /* 7 */ jump(BPF_JMP_JEQ_K, socketpair, 0, 3),
        /* 8 */ stmt(BPF_LD_W_ABS, DATA_ARG0_LO),
        /* 9 */ jump(BPF_JMP_JEQ_K, libc::AF_VSOCK as u32, 0, 1),
        /* 10 */ stmt(BPF_RET_K, deny),
        /* 11 */ stmt(BPF_RET_K, RET_ALLOW),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::capabilities::set_no_new_privs;
    use crate::container::seccomp::{apply, BPF_JMP_JA};
    use crate::container::testutil::in_child;

    /// Runs a classic-BPF seccomp program on (arch, nr, args[0]) as the kernel would: the
    /// instructions our filters use (LD W ABS, JA, JEQ K, JGE K, RET K), anything else panics.
    fn run(prog: &[libc::sock_filter], arch: u32, nr: u32, arg0: u64) -> u32 {
        let word = |off: u32| match off {
            DATA_NR => nr,
            DATA_ARCH => arch,
            DATA_ARG0_LO => arg0 as u32,
            20 => (arg0 >> 32) as u32,
            other => panic!("load of seccomp_data offset {other}"),
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = prog.get(pc).expect("ran off the end of the program");
            pc += 1;
            match i.code {
                BPF_LD_W_ABS => acc = word(i.k),
                BPF_RET_K => return i.k,
                BPF_JMP_JA => pc += i.k as usize,
                BPF_JMP_JEQ_K | BPF_JMP_JGE_K => {
                    let hit = if i.code == BPF_JMP_JEQ_K {
                        acc == i.k
                    } else {
                        acc >= i.k
                    };
                    pc += usize::from(if hit { i.jt } else { i.jf });
                }
                other => panic!("unexpected BPF opcode {other:#x}"),
            }
        }
    }

    const EPERM: u32 = RET_ERRNO | libc::EPERM as u32;

    #[test]
    fn refuses_vsock_sockets_only() {
        let p = program();
        let f = p.instructions();
        let x86 = AUDIT_ARCH_X86_64;
        let (socket, pair) = (libc::SYS_socket as u32, libc::SYS_socketpair as u32);
        let vsock = libc::AF_VSOCK as u64;
        assert_eq!(run(f, x86, socket, vsock), EPERM);
        assert_eq!(run(f, x86, pair, vsock), EPERM);
        // High bits do not hide the family (the kernel reads an int).
        assert_eq!(run(f, x86, socket, vsock | 0xffff_ffff_0000_0000), EPERM);
        for family in [
            libc::AF_UNIX,
            libc::AF_INET,
            libc::AF_INET6,
            libc::AF_NETLINK,
        ] {
            assert_eq!(run(f, x86, socket, family as u64), RET_ALLOW, "{family}");
            assert_eq!(run(f, x86, pair, family as u64), RET_ALLOW, "{family}");
        }
        // Other syscalls, even with 40 as their first argument, pass.
        for nr in [
            libc::SYS_read,
            libc::SYS_connect,
            libc::SYS_bind,
            libc::SYS_openat,
        ] {
            assert_eq!(run(f, x86, nr as u32, vsock), RET_ALLOW, "{nr}");
        }
        // What the filter cannot inspect is refused: another arch, x32 numbers.
        assert_eq!(run(f, 0x4000_0003, 102, vsock), EPERM);
        assert_eq!(run(f, x86, X32_SYSCALL_BIT | socket, vsock), EPERM);
    }

    #[test]
    fn annotation() {
        let mut a = HashMap::new();
        assert!(!allowed_by(None));
        assert!(!allowed_by(Some(&a)));
        a.insert(ALLOW_VSOCK_ANNOTATION.to_string(), "yes".to_string());
        assert!(!allowed_by(Some(&a)));
        a.insert(ALLOW_VSOCK_ANNOTATION.to_string(), "true".to_string());
        assert!(allowed_by(Some(&a)));
    }

    /// socket(2) of `family`: Ok, or the errno.
    fn socket_errno(family: libc::c_int) -> Result<(), i32> {
        // SAFETY: socket(2) takes plain integers; the descriptor it returns is closed at once.
        let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        // SAFETY: `fd` is ours, open, and used nowhere else.
        unsafe { libc::close(fd) };
        Ok(())
    }

    /// The kernel's answer under the filter: EPERM for AF_VSOCK (not EAFNOSUPPORT, what a host
    /// without vsock answers: the test tells the filter from a missing transport), the rest as
    /// before.
    #[test]
    fn the_kernel_refuses_vsock_sockets_under_the_filter() {
        let before_unix = socket_errno(libc::AF_UNIX);
        assert_eq!(before_unix, Ok(()));
        assert_ne!(socket_errno(libc::AF_VSOCK), Err(libc::EPERM));
        let result = in_child(|| {
            set_no_new_privs().map_err(|e| format!("{e:#}"))?;
            apply(&program()).map_err(|e| format!("{e:#}"))?;
            match socket_errno(libc::AF_VSOCK) {
                Err(libc::EPERM) => {}
                other => return Err(format!("socket(AF_VSOCK) under the filter: {other:?}")),
            }
            socket_errno(libc::AF_UNIX).map_err(|e| format!("socket(AF_UNIX): errno {e}"))
        });
        assert_eq!(result, Ok(()));
    }
}
