//! sandpod-vmm boots our guest to the agent inside the KVM test host, ends with the documented
//! status on guest power-off, reboot and crash, and rejects bad input with a one-line error;
//! its own confinement (seccomp filters on every thread, not dumpable) in
//! tests/kvm-host/guest/vmm-seccomp-check.sh.
mod common;

use common::{assert_checks, host, run, text};

const KERNEL: &str = "/sandpod/guest/vmlinux";
const INITRD: &str = "/sandpod/guest/initramfs.cpio";

/// A shell line that boots sandpod-vmm with `args` and prints `vmm-exit=<status>` after it.
fn boot(vcpus: u32, mem_mib: u32, after_ready: &str) -> String {
    format!(
        "timeout -k 5 120 sandpod-vmm --kernel {KERNEL} --initrd {INITRD} --vcpus {vcpus} \
         --mem-mib {mem_mib} --cmdline 'console=ttyS0 reboot=k panic=-1 quiet \
         sandpod.after_ready={after_ready}'; echo \"vmm-exit=$?\""
    )
}

fn field(output: &str, key: &str) -> Option<u64> {
    output
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| v.parse().ok())
}

fn boots_with(vcpus: u32, mem_mib: u64) {
    let host = host();
    let out = run(
        &host,
        &["sh", "-c", &boot(vcpus, mem_mib as u32, "poweroff")],
    );
    let t = text(&out);
    assert!(t.contains("sandpod-agent ready "), "no ready line:\n{t}");
    assert_eq!(field(&t, "cpus="), Some(vcpus as u64), "CPU count:\n{t}");
    let mem_kib = field(&t, "mem_total_kib=").unwrap_or_else(|| panic!("no MemTotal:\n{t}"));
    // MemTotal is RAM minus what the kernel reserves for itself: within 25 % below what we gave.
    assert!(
        mem_kib <= mem_mib * 1024,
        "MemTotal {mem_kib} KiB > {mem_mib} MiB:\n{t}"
    );
    assert!(
        mem_kib >= mem_mib * 1024 * 3 / 4,
        "MemTotal {mem_kib} KiB << {mem_mib} MiB:\n{t}"
    );
    assert!(
        t.contains("vmm-exit=0"),
        "power-off must end the VMM with 0:\n{t}"
    );
}

#[test]
fn boots_1_vcpu_128_mib() {
    boots_with(1, 128);
}

#[test]
fn boots_2_vcpus_512_mib() {
    boots_with(2, 512);
}

#[test]
fn reboot_and_crash_end_the_vmm_with_their_status() {
    let host = host();
    // An unknown after_ready value makes the agent (PID 1) exit: the kernel panics and, with
    // panic=-1, resets without a request: a crash.
    let script = format!("{}; {}", boot(1, 128, "reboot"), boot(1, 128, "explode"));
    let out = run(&host, &["sh", "-c", &script]);
    let t = text(&out);
    let statuses: Vec<&str> = t.lines().filter(|l| l.starts_with("vmm-exit=")).collect();
    assert_eq!(
        statuses,
        ["vmm-exit=3", "vmm-exit=2"],
        "reboot → 3, crash → 2:\n{t}"
    );
}

#[test]
fn bad_input_gives_a_one_line_error() {
    let host = host();
    let cases = [
        (
            "missing-kernel",
            "--kernel /nonexistent/vmlinux --initrd /sandpod/guest/initramfs.cpio",
        ),
        (
            "non-elf-kernel",
            "--kernel /sandpod/guest/initramfs.cpio --initrd /sandpod/guest/initramfs.cpio",
        ),
        (
            "initrd-too-big",
            "--kernel /sandpod/guest/vmlinux --initrd /tmp/big --mem-mib 32",
        ),
        (
            "mem-zero",
            "--kernel /sandpod/guest/vmlinux --initrd /sandpod/guest/initramfs.cpio --mem-mib 0",
        ),
        (
            "vcpus-zero",
            "--kernel /sandpod/guest/vmlinux --initrd /sandpod/guest/initramfs.cpio --vcpus 0",
        ),
        (
            "vcpus-too-many",
            "--kernel /sandpod/guest/vmlinux --initrd /sandpod/guest/initramfs.cpio --vcpus 4096",
        ),
    ];
    let mut script = String::from("head -c 64M /dev/zero >/tmp/big\n");
    for (name, args) in &cases {
        script.push_str(&format!(
            "timeout -k 5 60 sandpod-vmm {args} >/dev/null 2>/tmp/err; rc=$?; \
             echo \"case {name} rc=$rc lines=$(grep -c . /tmp/err)\"; sed 's/^/  /' /tmp/err\n"
        ));
    }
    let out = run(&host, &["sh", "-c", &script]);
    let t = text(&out);
    for (name, _) in &cases {
        let line = t
            .lines()
            .find(|l| l.starts_with(&format!("case {name} ")))
            .unwrap_or_else(|| panic!("case {name} did not report:\n{t}"));
        let rc = field(line, "rc=").unwrap_or(0);
        assert!(
            rc != 0 && rc != 124 && rc != 137,
            "{name}: rc {rc} (0 = accepted, 124/137 = hang):\n{t}"
        );
        assert_eq!(
            field(line, "lines="),
            Some(1),
            "{name}: not a one-line error:\n{t}"
        );
    }
}

#[test]
fn vmm_threads_are_confined_by_seccomp() {
    let host = host();
    let out = run(
        &host,
        &[
            "sh",
            "-c",
            "timeout -k 5 600 /sandpod/scripts/vmm-seccomp-check.sh",
        ],
    );
    // The agent, block, virtio-fs and a whole container work under the filters; every thread
    // has one; each kind's forbidden syscall kills the VMM with SIGSYS; --no-seccomp has none;
    // no core dump, guest RAM MADV_DONTDUMP.
    assert_checks(
        &out,
        "vmm-seccomp-check",
        &[
            "virtiofsd-listening",
            "agent-health-under-filters",
            "exec-under-filters",
            "exec-stdin-roundtrip-1m",
            "blk-write-read",
            "virtiofs-read-write",
            "every-thread-filtered",
            "filtered-thread-kinds",
            "guest-ram-dontdump",
            "clean-exit-under-filters",
            "core-dumps-work-here",
            "installed-logged-per-kind",
            "vmm-no-core-dump",
            "violation-vcpu-sigsys",
            "violation-main-sigsys",
            "violation-spawner-sigsys",
            "violation-device-sigsys",
            "no-seccomp-unfiltered",
            "no-seccomp-warns",
            "container-run-under-filters",
            "container-vmm-filtered",
            "container-nothing-left",
        ],
    );
}
