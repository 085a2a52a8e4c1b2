//! The filters compile, and installed ones really kill. A filter is installed in a child
//! process (this test binary run again for one `child_*` test, which does nothing otherwise):
//! a violation kills the whole process.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::Arc;

use vmm_sys_util::epoll::{Epoll, EpollEvent};
use vmm_sys_util::eventfd::EventFd;

use super::rules::{
    deny_open_rules, ioctls, rules, CONSOLE_OPEN_FLAGS, KVM_GET_REGS, KVM_RUN, TUNSETOFFLOAD,
};
use super::*;

const CHILD_ENV: &str = "SANDPOD_SECCOMP_TEST_CHILD";

fn filters() -> SeccompFilters {
    SeccompFilters::new(true, RuleOptions::default(), Mode::Kill).unwrap()
}

/// Runs the test `name` of this binary in a child process.
fn run_child(name: &str) -> std::process::ExitStatus {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            &format!("seccomp::tests::{name}"),
            "--exact",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    eprintln!("{name}: {}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{name}: {}", String::from_utf8_lossy(&out.stderr));
    out.status
}

fn in_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

fn assert_sigsys(name: &str) {
    let status = run_child(name);
    assert_eq!(status.signal(), Some(libc::SIGSYS), "{name}: {status:?}");
}

fn assert_ok(name: &str) {
    let status = run_child(name);
    assert!(status.success(), "{name}: {status:?}");
}

#[test]
fn every_kind_compiles_in_both_modes() {
    for mode in [Mode::Kill, Mode::Log] {
        for console_file in [false, true] {
            let f = SeccompFilters::new(
                true,
                RuleOptions {
                    console_file,
                    ..Default::default()
                },
                mode,
            )
            .unwrap();
            assert!(f.enabled());
            for kind in ThreadKind::ALL {
                let p = f.program(kind).unwrap();
                assert!(p.len() > 20, "{kind}: {} instructions", p.len());
            }
        }
    }
    let off = SeccompFilters::new(false, RuleOptions::default(), Mode::Kill).unwrap();
    assert!(!off.enabled());
    assert!(off.program(ThreadKind::Vcpu).is_none());
    // Disabled: installing is a no-op.
    off.apply(ThreadKind::Vcpu).unwrap();
}

#[test]
fn the_lists_are_what_each_kind_needs() {
    assert_eq!(KVM_RUN(), 0xae80);
    assert_eq!(KVM_GET_REGS(), 0x8090_ae81);
    assert_eq!(ioctls(ThreadKind::Vcpu)[..2], [KVM_RUN(), KVM_GET_REGS()]);
    // The net device's activation (on a vCPU thread) sets the tap's offloads.
    assert_eq!(TUNSETOFFLOAD(), libc::TUNSETOFFLOAD);
    assert!(ioctls(ThreadKind::Vcpu).contains(&TUNSETOFFLOAD()));
    assert!(!ioctls(ThreadKind::Device).contains(&TUNSETOFFLOAD()));
    assert!(ioctls(ThreadKind::Main).is_empty());
    let opts = RuleOptions::default();
    let vcpu = rules(ThreadKind::Vcpu, opts).unwrap();
    let device = rules(ThreadKind::Device, opts).unwrap();
    let spawner = rules(ThreadKind::Spawner, opts).unwrap();
    let main = rules(ThreadKind::Main, opts).unwrap();
    // Thread creation only in the spawner.
    for r in [&vcpu, &device, &main] {
        assert!(!r.contains_key(&libc::SYS_clone) && !r.contains_key(&libc::SYS_clone3));
    }
    // The spawner's children are held to its list too: it covers the device threads'.
    for nr in device.keys() {
        assert!(
            spawner.contains_key(nr),
            "syscall {nr} missing from the spawner"
        );
    }
    // Nobody may exec, open files (but the console's rotation), or make a forbidden call.
    for r in [&vcpu, &device, &spawner, &main] {
        for nr in [
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_open,
            libc::SYS_ptrace,
            libc::SYS_getppid,
            libc::SYS_mkdir,
        ] {
            assert!(!r.contains_key(&nr), "syscall {nr} allowed");
        }
    }
    // openat passes the lists, the deny-open filter answers it (but the console's).
    assert!(vcpu[&libc::SYS_openat].is_empty());
    let with_file = RuleOptions {
        console_file: true,
        ..Default::default()
    };
    assert!(deny_open_rules(ThreadKind::Vcpu, opts).unwrap()[&libc::SYS_openat].is_empty());
    assert_eq!(
        deny_open_rules(ThreadKind::Vcpu, with_file).unwrap()[&libc::SYS_openat].len(),
        1
    );
    assert!(deny_open_rules(ThreadKind::Device, with_file).unwrap()[&libc::SYS_openat].is_empty());
    assert!(rules(ThreadKind::Vcpu, with_file)
        .unwrap()
        .contains_key(&libc::SYS_rename));
    assert!(!vcpu.contains_key(&libc::SYS_rename));
}

#[test]
fn thread_kinds_parse() {
    for kind in ThreadKind::ALL {
        assert_eq!(kind.to_string().parse::<ThreadKind>().unwrap(), kind);
    }
    assert!("vmm".parse::<ThreadKind>().is_err());
}

#[test]
fn a_forbidden_syscall_kills_the_process() {
    assert_sigsys("child_vcpu_getppid");
    assert_sigsys("child_vcpu_other_ioctl");
    assert_sigsys("child_device_inet_socket");
    assert_sigsys("child_main_other_signal");
}

#[test]
fn allowed_syscalls_pass() {
    assert_ok("child_vcpu_allowed");
    assert_ok("child_open_fails_with_eacces");
    assert_ok("child_vcpu_rotates_the_console_file");
    assert_ok("child_device_threads_through_the_spawner");
    assert_ok("child_net_device_under_the_filters");
}

#[test]
fn child_vcpu_getppid() {
    if in_child() {
        filters().apply(ThreadKind::Vcpu).unwrap();
        forbidden_syscall();
        unreachable!("getppid passed the vCPU filter");
    }
}

#[test]
fn child_vcpu_other_ioctl() {
    if in_child() {
        filters().apply(ThreadKind::Vcpu).unwrap();
        // SAFETY: TCGETS on fd 0 writes at most a termios into `t`, which is large enough.
        let _ = unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            libc::ioctl(0, libc::TCGETS, &mut t)
        };
        unreachable!("TCGETS passed the vCPU filter");
    }
}

#[test]
fn child_device_inet_socket() {
    if in_child() {
        filters().apply(ThreadKind::Device).unwrap();
        // Unix sockets are allowed.
        // SAFETY: socket() takes integers; the fd is closed at once.
        let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
        assert!(fd >= 0);
        // SAFETY: `fd` is ours.
        unsafe { libc::close(fd) };
        // SAFETY: as above.
        let _ = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        unreachable!("an AF_INET socket passed the device filter");
    }
}

#[test]
fn child_main_other_signal() {
    if in_child() {
        filters().apply(ThreadKind::Main).unwrap();
        // SAFETY: tgkill with signal 0 only checks that the thread exists.
        let _ = unsafe {
            libc::syscall(
                libc::SYS_tgkill,
                libc::getpid(),
                libc::syscall(libc::SYS_gettid),
                0,
            )
        };
        unreachable!("tgkill(0) passed the main filter");
    }
}

#[test]
fn child_vcpu_allowed() {
    if in_child() {
        filters().apply(ThreadKind::Vcpu).unwrap();
        // FIONBIO on a bad fd: allowed, fails with EBADF.
        let mut on: libc::c_int = 1;
        // SAFETY: FIONBIO reads an int from `on`.
        let rc = unsafe { libc::ioctl(-1, libc::FIONBIO, &mut on) };
        assert_eq!(rc, -1);
        let e = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        e.write(1).unwrap();
        assert_eq!(e.read().unwrap(), 1);
        let v: Vec<u8> = vec![1; 1 << 20];
        assert_eq!(v.len(), 1 << 20);
    }
}

#[test]
fn child_open_fails_with_eacces() {
    if in_child() {
        let dir = std::env::temp_dir().join(format!("sp-seccomp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let console = dir.join("console.log");
        let f = SeccompFilters::new(
            true,
            RuleOptions {
                console_file: true,
                ..Default::default()
            },
            Mode::Kill,
        )
        .unwrap();
        let thread = std::thread::spawn(move || {
            f.apply(ThreadKind::Device).unwrap();
            let e = std::fs::File::open("/proc/sys/vm/overcommit_memory").unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EACCES));
            let e = std::fs::File::create(dir.join("x")).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EACCES));
        });
        thread.join().unwrap();
        // A vCPU thread with a console file may (re)create it, with exactly its flags.
        let f = SeccompFilters::new(
            true,
            RuleOptions {
                console_file: true,
                ..Default::default()
            },
            Mode::Kill,
        )
        .unwrap();
        f.apply(ThreadKind::Vcpu).unwrap();
        let created = std::fs::File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&console);
        assert!(created.is_ok(), "{created:?}");
        let e = std::fs::File::open(&console).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EACCES));
        assert_ne!(CONSOLE_OPEN_FLAGS, libc::O_RDONLY | libc::O_CLOEXEC);
    }
}

#[test]
fn child_vcpu_rotates_the_console_file() {
    if in_child() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("sp-seccomp-rot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("console.log");
        let limits = sandpod_vmconfig::ConsoleLimits {
            max_file_bytes: 4096,
            ..Default::default()
        };
        // Created at setup; written (and rotated) by a vCPU thread.
        let mut sink =
            crate::devices::legacy::console_sink::ConsoleSink::file(&path, &limits).unwrap();
        let f = SeccompFilters::new(
            true,
            RuleOptions {
                console_file: true,
                ..Default::default()
            },
            Mode::Kill,
        )
        .unwrap();
        std::thread::spawn(move || {
            f.apply(ThreadKind::Vcpu).unwrap();
            for _ in 0..3 {
                sink.write_all(&[b'x'; 3000]).unwrap();
            }
            sink.flush().unwrap();
        })
        .join()
        .unwrap();
        let rotated = crate::devices::legacy::console_sink::rotated_path(&path);
        assert!(std::fs::symlink_metadata(rotated).is_ok());
    }
}

#[test]
fn child_device_threads_through_the_spawner() {
    if in_child() {
        let filters = Arc::new(filters());
        let handle = spawner::start(filters.clone()).unwrap();
        let vcpu = std::thread::spawn(move || {
            filters.apply(ThreadKind::Vcpu).unwrap();
            spawner::enter(handle);
            let t = spawner::spawn("virtio-test", || {
                let epoll = Epoll::new().unwrap();
                let e = EventFd::new(libc::EFD_NONBLOCK).unwrap();
                e.write(1).unwrap();
                let mut events = [EpollEvent::default(); 4];
                epoll.wait(0, &mut events).unwrap();
                e.read().unwrap()
            })
            .unwrap();
            t.join().unwrap()
        });
        assert_eq!(vcpu.join().unwrap(), 1);
    }
}

/// The net device activated on a vCPU thread (TUNSETOFFLOAD, the worker spawned) and its
/// worker (tap reads and writev, EPOLLIN dropped and restored) under their filters.
#[test]
fn child_net_device_under_the_filters() {
    use crate::devices::virtio::net::test_utils::{frame, peer_read, FakeTap};
    use crate::devices::virtio::net::Net;
    use crate::devices::virtio::test_utils::{activation, eventfds, guest_mem, DriverQueue};
    use crate::devices::virtio::{Interrupt, VirtioDevice};
    use vm_memory::{Bytes, GuestAddress};

    if !in_child() {
        return;
    }
    let filters = Arc::new(filters());
    let handle = spawner::start(filters.clone()).unwrap();
    let mem = guest_mem(16 << 20);
    let evts = eventfds(2);
    let mut rx = DriverQueue::new(&mem, 0, 256, evts[0].try_clone().unwrap());
    let mut tx = DriverQueue::new(&mem, 0x1_0000, 256, evts[1].try_clone().unwrap());
    let queues = vec![
        rx.config(256).build(&mem).unwrap(),
        tx.config(256).build(&mem).unwrap(),
    ];
    let interrupt = Arc::new(Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).unwrap()));
    let a = activation(&mem, queues, &evts, &interrupt);
    let (tap, peer, _) = FakeTap::new();
    let vcpu = std::thread::spawn(move || {
        filters.apply(ThreadKind::Vcpu).unwrap();
        spawner::enter(handle);
        // The real tap's offload ioctl is allowed (EBADF on a bad fd).
        // SAFETY: TUNSETOFFLOAD takes its argument by value; fd -1 fails with EBADF.
        let rc = unsafe { libc::ioctl(-1, libc::TUNSETOFFLOAD, libc::c_ulong::from(0u32)) };
        assert_eq!(rc, -1);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EBADF)
        );
        let mut dev = Net::new(Box::new(tap), None, None);
        dev.activate(1 << 32, a).unwrap();
        dev
    });
    let mut dev = vcpu.join().unwrap();
    // Guest to tap.
    mem.write_slice(&frame(60, 1), GuestAddress(0x10_0000))
        .unwrap();
    tx.add(&[(0x10_0000, 72, false)]);
    tx.kick();
    tx.wait_all_used("tx not used");
    assert_eq!(peer_read(&peer), Some(frame(60, 1)));
    // Tap to guest: the worker drops the tap's EPOLLIN (no buffer), then restores it.
    nix::unistd::write(&peer, &frame(80, 2)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    rx.add(&[(0x20_0000, 2048, true)]);
    rx.kick();
    assert_eq!(rx.next_used("rx not used").len(), 92);
    let stats = dev.stop().unwrap();
    assert_eq!((stats.tx_frames, stats.rx_frames), (1, 1));
}
