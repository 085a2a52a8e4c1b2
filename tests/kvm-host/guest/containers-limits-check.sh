#!/bin/sh
# `sandpod run` in the KVM test host, the spec's limits and security settings enforced in the guest
# (cgroup v2 memory/pids, capabilities, seccomp, masked paths), and bad bundles: each gives a clear
# error and leaves no process, mount, socket or state directory behind.
# Prints `check <name> ok|FAIL` lines and ends with `containers-limits-check.sh: N failed`.
. "$(dirname "$0")/containers-lib.sh"

# memory.max: 32 MiB; `tail /dev/zero` keeps growing its line buffer until the OOM killer stops it.
mkbundle oom "$(args '["tail","/dev/zero"]') | .linux.resources.memory = {\"limit\": 33554432}"
run oom
check memory-max-oom-kill eval "rc_is 137 && err_has oom 'OOM'"

# pids.max: 8 processes; the ninth fork fails.
mkbundle pids "$(args '["sh","-c","for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 3 & done; wait; echo done"]') | .linux.resources.pids = {\"limit\": 8}"
run pids
check pids-max-limits-forks eval "err_has pids 'fork'"

# Capabilities: without CAP_MKNOD, mknod fails; with the default set it works (control).
mkbundle mknod_ok "$(args '["sh","-c","mknod /tmp/null2 c 1 3 && echo made"]')"
run mknod_ok
check mknod-with-cap-mknod eval "rc_is 0 && out_is mknod_ok made"
mkbundle mknod_denied "$(args '["sh","-c","mknod /tmp/null2 c 1 3 && echo made"]')
  | .process.capabilities |= with_entries(.value |= map(select(. != \"CAP_MKNOD\")))"
run mknod_denied
check mknod-without-cap-mknod eval "! rc_is 0 && err_has mknod_denied 'not permitted'"

# seccomp: mkdir/mkdirat denied with EPERM, other calls allowed.
mkbundle seccomp "$(args '["sh","-c","touch /tmp/f && echo touched; mkdir /tmp/d && echo made-dir"]')
  | .linux.seccomp = {\"defaultAction\":\"SCMP_ACT_ALLOW\",\"architectures\":[\"SCMP_ARCH_X86_64\"],
     \"syscalls\":[{\"names\":[\"mkdir\",\"mkdirat\"],\"action\":\"SCMP_ACT_ERRNO\",\"errnoRet\":1}]}"
run seccomp
check seccomp-denies-mkdir eval "! rc_is 0 && out_is seccomp touched && err_has seccomp 'not permitted'"

# maskedPaths: /proc/timer_list and /proc/keys read as empty (/proc/kcore, also masked, is not in
# the guest kernel: skipped); readonlyPaths: /proc/sys not writable.
mkbundle masked "$(args '["sh","-c","echo timer=$(wc -c </proc/timer_list) keys=$(wc -c </proc/keys); echo 1 >/proc/sys/kernel/domainname && echo wrote-sys"]')"
run masked
check masked-paths eval "grep -q 'timer=0 keys=0' $work/masked.out && ! grep -q wrote-sys $work/masked.out"
mkbundle unmasked "$(args '["sh","-c","echo timer=$(wc -c </proc/timer_list)"]') | .linux.maskedPaths = []"
run unmasked
check unmasked-control eval "grep -q 'timer=[1-9]' $work/unmasked.out"

# rlimits: RLIMIT_NOFILE from the spec.
mkbundle rlimit "$(args '["sh","-c","ulimit -n; ulimit -H -n"]') | .process.rlimits = [{\"type\":\"RLIMIT_NOFILE\",\"hard\":200,\"soft\":123}]"
run rlimit
check rlimit-nofile eval "rc_is 0 && out_is rlimit '123
200'"

check nothing-left-after-limits nothing_left

# Bad bundles: clear errors, nothing left behind.
mkdir -p "$work/noconfig/rootfs"
run noconfig
check no-config-json eval "! rc_is 0 && err_has noconfig 'no config.json' && nothing_left"

mkbundle badjson '.'
echo '{"ociVersion": "1.0.2", "process": ' >"$work/badjson/config.json"
run badjson
check invalid-json eval "! rc_is 0 && err_has badjson 'not a valid OCI runtime spec' && nothing_left"

mkbundle norootfs '.root.path = "missing-rootfs"'
run norootfs
check missing-rootfs eval "! rc_is 0 && err_has norootfs 'missing-rootfs' && nothing_left"

mkbundle badns '.linux.namespaces += [{"type":"bogus"}]'
run badns
check unknown-namespace eval "! rc_is 0 && err_has badns 'bogus' && nothing_left"

mkbundle nobinary "$(args '["/bin/no-such-binary"]')"
run nobinary
check missing-binary eval "! rc_is 0 && err_has nobinary 'no-such-binary' && nothing_left"

finish
