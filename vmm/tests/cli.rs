//! The binary's handling of bad input: one clear line on stderr, a non-zero exit, no hang, and
//! no KVM needed (input is checked before /dev/kvm is opened).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output};

fn vmm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sandpod-vmm"))
        .args(args)
        .output()
        .expect("run sandpod-vmm")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn temp_file(name: &str, content: &[u8]) -> PathBuf {
    let p = std::env::temp_dir().join(format!("sandpod-cli-{}-{name}", std::process::id()));
    std::fs::File::create(&p)
        .and_then(|mut f| f.write_all(content))
        .expect("write temp file");
    p
}

/// A minimal x86_64 ELF whose one PT_LOAD segment ends at 16 MiB + 1 MiB.
fn tiny_elf() -> Vec<u8> {
    let mut e = vec![0u8; 64 + 56];
    e[..4].copy_from_slice(b"\x7fELF");
    e[4] = 2;
    e[5] = 1;
    e[6] = 1;
    e[16] = 2;
    e[18] = 62;
    e[24..32].copy_from_slice(&0x100_0000u64.to_le_bytes());
    e[32..40].copy_from_slice(&64u64.to_le_bytes());
    e[52] = 64;
    e[54] = 56;
    e[56] = 1;
    e[64] = 1;
    e[64 + 24..64 + 32].copy_from_slice(&0x100_0000u64.to_le_bytes());
    e[64 + 40..64 + 48].copy_from_slice(&0x10_0000u64.to_le_bytes());
    e
}

fn assert_one_line_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, stderr: {err}");
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.starts_with("sandpod-vmm: "), "{err}");
    assert!(err.contains(needle), "{needle:?} not in {err:?}");
}

#[test]
fn missing_kernel() {
    let o = vmm(&["--kernel", "/nonexistent/vmlinux"]);
    assert_one_line_error(&o, "cannot read kernel /nonexistent/vmlinux");
}

#[test]
fn non_elf_kernel() {
    let k = temp_file("notelf", b"this is not a kernel");
    let o = vmm(&["--kernel", k.to_str().unwrap()]);
    assert_one_line_error(&o, "is not an ELF vmlinux");
    std::fs::remove_file(k).unwrap();
}

#[test]
fn zero_memory_and_zero_vcpus() {
    let k = temp_file("elf0", &tiny_elf());
    let k = k.to_str().unwrap();
    assert_one_line_error(
        &vmm(&["--kernel", k, "--mem-mib", "0"]),
        "0 MiB is too small",
    );
    assert_one_line_error(&vmm(&["--kernel", k, "--vcpus", "0"]), "at least 1 vCPU");
    assert_one_line_error(&vmm(&["--kernel", k, "--vcpus", "255"]), "at most 254");
    std::fs::remove_file(k).unwrap();
}

#[test]
fn initrd_larger_than_memory() {
    let k = temp_file("elf1", &tiny_elf());
    let i = temp_file("initrd", &vec![0u8; 33 << 20]);
    let o = vmm(&[
        "--kernel",
        k.to_str().unwrap(),
        "--initrd",
        i.to_str().unwrap(),
        "--mem-mib",
        "32",
    ]);
    assert_one_line_error(&o, "larger than guest memory");
    std::fs::remove_file(k).unwrap();
    std::fs::remove_file(i).unwrap();
}

#[test]
fn kernel_needs_more_memory() {
    let k = temp_file("elf2", &tiny_elf());
    let o = vmm(&["--kernel", k.to_str().unwrap(), "--mem-mib", "16"]);
    assert_one_line_error(&o, "needs at least 17 MiB of guest memory");
    std::fs::remove_file(k).unwrap();
}

#[test]
fn bad_console_is_a_usage_error() {
    let o = vmm(&["--kernel", "/x", "--console", "tty"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("expected stdout, none or file:PATH"));
}

#[test]
fn help_documents_exit_status() {
    let o = vmm(&["--help"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Exit status:"));
    assert!(out.contains("143 stopped by SIGTERM"));
}

#[test]
fn bad_vsock_options() {
    let k = temp_file("elf3", &tiny_elf());
    let k = k.to_str().unwrap();
    let sock = std::env::temp_dir().join(format!("sandpod-cli-{}-v.sock", std::process::id()));
    let sock_s = sock.to_str().unwrap();
    assert_one_line_error(
        &vmm(&["--kernel", k, "--vsock-uds", sock_s, "--vsock-cid", "2"]),
        "guest CID 2 is reserved",
    );
    // A file that is not a socket is neither used nor removed.
    let f = temp_file("notsock", b"keep");
    assert_one_line_error(
        &vmm(&["--kernel", k, "--vsock-uds", f.to_str().unwrap()]),
        "is not a socket",
    );
    assert_eq!(std::fs::read(&f).unwrap(), b"keep");
    // A socket somebody listens on is not taken over.
    let _live = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    assert_one_line_error(
        &vmm(&["--kernel", k, "--vsock-uds", sock_s]),
        "another process is listening",
    );
    assert!(sock.exists());
    // --vsock-cid needs --vsock-uds: a usage error.
    assert_eq!(
        vmm(&["--kernel", k, "--vsock-cid", "5"]).status.code(),
        Some(2)
    );
    for p in [PathBuf::from(k), f, sock] {
        std::fs::remove_file(p).unwrap();
    }
}

#[test]
fn bad_fs_options() {
    let k = temp_file("elf5", &tiny_elf());
    let k = k.to_str().unwrap();
    // Malformed options are usage errors (clap), with the reason.
    for (opt, why) in [
        ("socket=/s", "tag=TAG is missing"),
        ("tag=t,socket=/s,queue-size=100", "not a power of two"),
        ("tag=t,socket=/s,cache=auto", "unknown key"),
    ] {
        let o = vmm(&["--kernel", k, "--fs", opt]);
        assert_eq!(o.status.code(), Some(2), "{opt}: {}", stderr(&o));
        assert!(stderr(&o).contains(why), "{opt}: {}", stderr(&o));
    }
    // A missing back end socket: one clear line, before KVM is touched.
    let o = vmm(&[
        "--kernel",
        k,
        "--fs",
        "tag=shared,socket=/nonexistent/vfs.sock",
    ]);
    assert_one_line_error(
        &o,
        "virtio-fs shared: cannot connect to the vhost-user-fs socket /nonexistent/vfs.sock (is virtiofsd running?): No such file or directory",
    );
    // A file that is not a socket.
    let f = temp_file("notsock-fs", b"keep");
    let opt = format!("tag=shared,socket={}", f.display());
    assert_one_line_error(&vmm(&["--kernel", k, "--fs", &opt]), "not a Unix socket");
    // A socket nobody listens on (its daemon died).
    let sock = std::env::temp_dir().join(format!("sandpod-cli-{}-fs.sock", std::process::id()));
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let opt = format!("tag=shared,socket={}", sock.display());
    assert_one_line_error(&vmm(&["--kernel", k, "--fs", &opt]), "Connection refused");
    // Two devices with one tag.
    let o = vmm(&["--kernel", k, "--fs", &opt, "--fs", &opt]);
    assert_one_line_error(&o, "tag shared used twice");
    for p in [PathBuf::from(k), f, sock] {
        std::fs::remove_file(p).unwrap();
    }
}

#[test]
fn bad_disks() {
    let k = temp_file("elf4", &tiny_elf());
    let k = k.to_str().unwrap();
    assert_one_line_error(
        &vmm(&["--kernel", k, "--disk", "/nonexistent/disk.img"]),
        "cannot use disk image /nonexistent/disk.img: No such file or directory",
    );
    let dir = std::env::temp_dir();
    assert_one_line_error(
        &vmm(&["--kernel", k, "--disk", dir.to_str().unwrap()]),
        "is a directory",
    );
    assert_one_line_error(
        &vmm(&["--kernel", k, "--disk", "/dev/null,ro"]),
        "cannot use disk image /dev/null: not a regular file or block device",
    );
    // A good disk before a bad one does not help.
    let img = temp_file("disk.img", &[0u8; 4096]);
    let img = img.to_str().unwrap();
    assert_one_line_error(
        &vmm(&[
            "--kernel",
            k,
            "--disk",
            img,
            "--disk",
            "/nonexistent/b.img,ro",
        ]),
        "/nonexistent/b.img",
    );
    // Option errors are usage errors, with the expected syntax.
    let o = vmm(&["--kernel", k, "--disk", &format!("{img},rw")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("expected PATH or PATH,ro"),
        "{}",
        stderr(&o)
    );
    let o = vmm(&["--kernel", k, "--disk", ",ro"]);
    assert_eq!(o.status.code(), Some(2));
    std::fs::remove_file(k).unwrap();
    std::fs::remove_file(img).unwrap();
}

#[test]
fn config_file() {
    let k = temp_file("elf6", &tiny_elf());
    let k = k.to_str().unwrap();
    // The same input errors as with flags, one line each.
    let json = format!(r#"{{"kernel":"{k}","mem_mib":16}}"#);
    let c = temp_file("vm16.json", json.as_bytes());
    let c = c.to_str().unwrap();
    assert_one_line_error(
        &vmm(&["--config", c]),
        "needs at least 17 MiB of guest memory",
    );
    let json = format!(r#"{{"kernel":"{k}","vcpus":0}}"#);
    let c0 = temp_file("vm0.json", json.as_bytes());
    assert_one_line_error(&vmm(&["--config", c0.to_str().unwrap()]), "at least 1 vCPU");
    // Not a configuration: where and why.
    let bad = temp_file("vmbad.json", b"{\"kernel\":\"/k\",\n \"disk\":[]}");
    assert_one_line_error(
        &vmm(&["--config", bad.to_str().unwrap()]),
        "unknown field `disk`",
    );
    assert_one_line_error(
        &vmm(&["--config", "/nonexistent/vm.json"]),
        "cannot read the VM configuration /nonexistent/vm.json",
    );
    // A file or flags, not both: a usage error.
    let o = vmm(&["--config", c, "--mem-mib", "64"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));
    for p in [PathBuf::from(k), PathBuf::from(c), c0, bad] {
        std::fs::remove_file(p).unwrap();
    }
}
