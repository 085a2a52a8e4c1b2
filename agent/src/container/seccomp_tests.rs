use super::*;
use crate::container::capabilities::set_no_new_privs;
use crate::container::testutil::in_child;

fn profile(json: &str) -> LinuxSeccomp {
    serde_json::from_str(json).expect("seccomp json")
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Applies `json` in a forked child (with no_new_privs), then runs `body` there.
fn run_filtered(json: &str, body: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let program = compile(&profile(json)).expect("compile");
    in_child(move || {
        set_no_new_privs().map_err(|e| format!("{e:#}"))?;
        apply(&program).map_err(|e| format!("{e:#}"))?;
        body()
    })
}

const DENY_MKDIR: &str = r#"{
    "defaultAction": "SCMP_ACT_ALLOW",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [
        {"names": ["mkdir", "mkdirat", "no_such_syscall"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        {"names": ["getppid"], "action": "SCMP_ACT_ALLOW"}
    ]
}"#;

#[test]
fn deny_mkdir_with_eperm_other_syscalls_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let result = run_filtered(DENY_MKDIR, || {
        let target = d.join("made");
        match std::fs::create_dir(&target) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
            other => return Err(format!("mkdir under the filter: {other:?}")),
        }
        std::fs::write(d.join("file"), "ok").map_err(|e| format!("write: {e}"))?;
        let back = std::fs::read_to_string(d.join("file")).map_err(|e| format!("read: {e}"))?;
        if back != "ok" {
            return Err(format!("read back {back:?}"));
        }
        std::fs::remove_file(d.join("file")).map_err(|e| format!("unlink: {e}"))?;
        Ok(())
    });
    assert_eq!(result, Ok(()));
    assert!(!dir.path().join("made").exists());
    // Outside the child, mkdir still works: the filter stayed there.
    std::fs::create_dir(dir.path().join("made")).unwrap();
}

#[test]
fn argument_conditions_and_errno_values() {
    let json = r#"{
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["dup"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
             "args": [{"index": 0, "value": 2, "valueTwo": 2, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["dup2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 9,
             "args": [{"index": 1, "value": 100, "op": "SCMP_CMP_GE"},
                      {"index": 1, "value": 50, "op": "SCMP_CMP_EQ"}]}
        ]
    }"#;
    let result = run_filtered(json, || {
        // SAFETY: plain libc calls (the whole block) on fds this child owns.
        unsafe {
            if libc::dup(0) != -1 || errno() != libc::EACCES {
                return Err(format!("dup(0) not denied (errno {})", errno()));
            }
            let fd = libc::dup(1);
            if fd < 0 {
                return Err(format!("dup(1) denied (errno {})", errno()));
            }
            libc::close(fd);
            *libc::__errno_location() = 0;
            if libc::getpriority(libc::PRIO_USER, 0) != -1 || errno() != libc::EINVAL {
                return Err(format!(
                    "getpriority(PRIO_USER) not denied (errno {})",
                    errno()
                ));
            }
            *libc::__errno_location() = 0;
            libc::getpriority(libc::PRIO_PROCESS, 0);
            if errno() != 0 {
                return Err(format!(
                    "getpriority(PRIO_PROCESS) denied (errno {})",
                    errno()
                ));
            }
            // Two conditions on one argument: either one denies (runc's OR).
            for target in [50, 120] {
                if libc::dup2(1, target) != -1 || errno() != libc::EBADF {
                    return Err(format!("dup2(1, {target}) not denied (errno {})", errno()));
                }
            }
            let fd = libc::dup2(1, 60);
            if fd != 60 {
                return Err(format!("dup2(1, 60) denied (errno {})", errno()));
            }
            libc::close(fd);
        }
        Ok(())
    });
    assert_eq!(result, Ok(()));
}

#[test]
fn default_deny_allowlist() {
    let json = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "syscalls": [
            {"names": ["write", "exit", "exit_group", "close", "rt_sigreturn", "munmap",
                       "brk", "mmap", "sigaltstack", "rt_sigprocmask", "futex"],
             "action": "SCMP_ACT_ALLOW"}
        ]
    }"#;
    let result = run_filtered(json, || {
        // SAFETY: getppid (through syscall(), which sets errno) and mkdir with a C string.
        let (ppid, mkdir) = unsafe {
            let ppid = libc::syscall(libc::SYS_getppid) as i32;
            let ppid_errno = errno();
            let rc = libc::mkdir(c"/tmp/sandpod-seccomp-never".as_ptr(), 0o700);
            ((ppid, ppid_errno), (rc, errno()))
        };
        if ppid != (-1, libc::ENOSYS) || mkdir != (-1, libc::ENOSYS) {
            return Err(format!(
                "not denied with ENOSYS: getppid {ppid:?}, mkdir {mkdir:?}"
            ));
        }
        Ok(())
    });
    assert_eq!(result, Ok(()));
}

#[test]
fn kill_process_action() {
    let json = r#"{"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]}"#;
    let result = run_filtered(json, || {
        // SAFETY: getppid has no arguments.
        unsafe { libc::getppid() };
        Err("survived getppid".into())
    });
    assert_eq!(result, Err("child killed by SIGSYS".to_owned()));
}

#[test]
fn x32_syscalls_are_refused() {
    // The profile denies mkdir; its x32 number must not slip through (default ALLOW → kill).
    let result = run_filtered(DENY_MKDIR, || {
        // SAFETY: an invalid-pointer x32 mkdir never gets past the filter.
        unsafe { libc::syscall(X32_SYSCALL_BIT as libc::c_long | libc::SYS_mkdir, 0, 0) };
        Err("survived an x32 syscall".into())
    });
    assert_eq!(result, Err("child killed by SIGSYS".to_owned()));
}

#[test]
fn actions_and_errors() {
    assert_eq!(
        action_value(LinuxSeccompAction::ScmpActErrno, None).unwrap(),
        RET_ERRNO | 1
    );
    assert_eq!(
        action_value(LinuxSeccompAction::ScmpActErrno, Some(38)).unwrap(),
        RET_ERRNO | 38
    );
    assert_eq!(
        action_value(LinuxSeccompAction::ScmpActKill, None).unwrap(),
        RET_KILL_THREAD
    );
    assert!(action_value(LinuxSeccompAction::ScmpActErrno, Some(70000)).is_err());
    let err = compile(&profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
    ))
    .unwrap_err();
    assert!(format!("{err:#}").contains("SCMP_ACT_NOTIFY"), "{err:#}");
    // An unknown action does not parse.
    assert!(serde_json::from_str::<LinuxSeccomp>(
        r#"{"defaultAction":"SCMP_ACT_FOO","syscalls":[]}"#
    )
    .is_err());
    let err = compile(&profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["dup"],"action":"SCMP_ACT_ERRNO",
            "args":[{"index":6,"value":0,"op":"SCMP_CMP_EQ"}]}]}"#,
    ))
    .unwrap_err();
    assert!(format!("{err:#}").contains("index 6"), "{err:#}");
}

#[test]
fn program_shape() {
    // Default-action rules are dropped; unknown names skipped; one JEQ per known syscall.
    let p = compile(&profile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
            {"names":["read","write","bogus"],"action":"SCMP_ACT_ALLOW"},
            {"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#,
    ))
    .unwrap();
    let jeqs: Vec<u32> = p
        .filter
        .iter()
        .skip(6)
        .filter(|i| i.code == BPF_JMP_JEQ_K)
        .map(|i| i.k)
        .collect();
    assert_eq!(jeqs, vec![libc::SYS_read as u32, libc::SYS_write as u32]);
    assert_eq!(p.filter.last().unwrap().k, RET_ERRNO | 1);
    // Foreign arch under a denying default: the default.
    assert_eq!(p.filter[2].k, RET_ERRNO | 1);
    let allow = compile(&profile(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#)).unwrap();
    assert_eq!(allow.filter[2].k, RET_KILL_PROCESS);
    assert_eq!(allow.len(), 7);
}

#[test]
fn every_syscall_listed_still_fits_and_loads() {
    // Docker's default profile names ~370 syscalls; this names them all, under a denying default.
    let names: Vec<String> = syscalls::Sysno::iter()
        .map(|s| format!("\"{}\"", s.name()))
        .collect();
    let json = format!(
        r#"{{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{{"names":[{}],"action":"SCMP_ACT_ALLOW"}},
            {{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":18,
              "args":[{{"index":1,"value":511,"op":"SCMP_CMP_EQ"}}]}}]}}"#,
        names.join(",")
    );
    let p = compile(&profile(&json)).unwrap();
    assert!(
        p.len() > 3 * names.len() && p.len() <= BPF_MAXINSNS,
        "{}",
        p.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let result = run_filtered(&json, || {
        use std::os::unix::fs::DirBuilderExt;
        // mkdir is in both entries: its conditional ERRNO(18) rule comes first, then ALLOW.
        match std::fs::DirBuilder::new().mode(0o777).create(d.join("a")) {
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {}
            other => return Err(format!("mkdir mode 0777: {other:?}")),
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(d.join("b"))
            .map_err(|e| format!("mkdir mode 0700: {e}"))
    });
    assert_eq!(result, Ok(()));
    assert!(dir.path().join("b").is_dir());
}
