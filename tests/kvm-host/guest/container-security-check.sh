#!/bin/sh
# Container limits and security settings enforced in the guest, through sandpod-agentctl:
# cgroup v2 memory (OOM kill) and pids limits, an exec joining the container's cgroup, the cgroup
# removed with the container, capabilities (CAP_MKNOD dropped), no_new_privileges, seccomp (mkdir
# denied with EPERM), masked and read-only paths, rlimits. Prints `check <name> ok|FAIL` lines
# and ends with `container-security-check: N failed`. SANDPOD_DIR: the build outputs (/sandpod).
set -u
dir=${SANDPOD_DIR:-/sandpod}
work=$(mktemp -d /tmp/container-security-check.XXXXXX)
uds=$work/v.sock
failed=0
check() { # name, then a command
  name=$1; shift
  if "$@"; then echo "check $name ok"; else echo "check $name FAIL"; failed=$((failed + 1)); fi
}
has() { printf '%s\n' "$1" | grep -q -- "$2"; }  # text, pattern

"$dir/bin/sandpod-vmm" --kernel "$dir/guest/vmlinux" --initrd "$dir/guest/initramfs-test.cpio" \
  --mem-mib 256 --vsock-uds "$uds" --console "file:$work/console.txt" \
  --cmdline "console=ttyS0 reboot=k panic=-1 sandpod.after_ready=serve" </dev/null 2>"$work/vmm.err" &
vmm=$!
ctl="$dir/bin/sandpod-agentctl --uds $uds"
$ctl health >/dev/null 2>&1 || { echo "agent unreachable"; cat "$work/console.txt" "$work/vmm.err"; exit 1; }
$ctl exec -- /bin/busybox --install -s /bin
cg=/sys/fs/cgroup/sandpod

mkroot() {
  r=/run/ctr/$1/rootfs
  $ctl exec -- sh -c "mkdir -p $r/bin $r/proc $r/sys $r/dev $r/tmp $r/etc && \
    cp /bin/busybox $r/bin/busybox && /bin/busybox --install -s $r/bin"
}

CAPS_ALL='"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_MKNOD", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_SYS_CHROOT"'
# spec FILE ARGS_JSON: config.json; knobs (reset after each use): CAPS (capability names),
# NNP (true/false), RLIMITS (JSON array), LINUX_EXTRA (JSON members added to "linux").
spec() {
  caps=${CAPS:-$CAPS_ALL}
  cat >"$1" <<EOF
{
  "ociVersion": "1.0.2",
  "process": {
    "terminal": false,
    "user": {"uid": 0, "gid": 0},
    "args": $2,
    "env": ["PATH=/bin"],
    "cwd": "/",
    "capabilities": {"bounding": [$caps], "effective": [$caps], "permitted": [$caps]},
    "noNewPrivileges": ${NNP:-false},
    "rlimits": ${RLIMITS:-[]}
  },
  "root": {"path": "rootfs", "readonly": false},
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
    {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}
  ],
  "linux": {
    ${LINUX_EXTRA:-}${LINUX_EXTRA:+,}
    "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]
  }
}
EOF
  unset CAPS NNP RLIMITS LINUX_EXTRA
}
# create NAME ARGS_JSON: a created and started container, output to $work/NAME.out/.err.
create() {
  mkroot "$1"
  spec "$work/$1.json" "$2"
  $ctl create-container --id "$1" --spec "$work/$1.json" --rootfs "/run/ctr/$1/rootfs" \
    --stdout --stderr --start >"$work/$1.out" 2>"$work/$1.err"; rc=$?
  out=$(cat "$work/$1.out")
  echo "[$1] rc=$rc out: $(head -c 400 "$work/$1.out" | tr '\n' '|') err: $(grep -v 'created, init pid' "$work/$1.err" | head -c 400 | tr '\n' '|')"
}
remove() { $ctl remove-container "$1" 2>>"$work/$1.err"; }

# memory.max: 32 MiB; tail keeps growing its line buffer on /dev/zero until the OOM killer.
LINUX_EXTRA='"resources": {"memory": {"limit": 33554432}}' create oom '["tail", "/dev/zero"]'
check memory-oom-sigkill test "$rc" = 137
events=$($ctl exec -- cat $cg/oom/memory.events); echo "[oom] memory.events: $(echo "$events" | tr '\n' ' ')"
check memory-oom-kill-counted has "$events" '^oom_kill [1-9]'
check memory-max-set test "$($ctl exec -- cat $cg/oom/memory.max)" = 33554432
remove oom
check cgroup-removed-with-container sh -c "! $ctl exec -- test -e $cg/oom"

# pids.max: 8; the shell and 7 sleeps fit, the other forks fail.
LINUX_EXTRA='"resources": {"pids": {"limit": 8}}' create pids \
  '["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 2 & done; wait; echo done"]'
check pids-max-fork-fails grep -qi "fork" "$work/pids.err"
check pids-max-event sh -c "$ctl exec -- cat $cg/pids/pids.events | grep -q '^max [1-9]'"
remove pids

# An exec joins the container's cgroup; cpu limits are written as converted.
LINUX_EXTRA='"resources": {"cpu": {"shares": 1024, "quota": 50000, "period": 100000}}' \
  spec "$work/long.json" '["sleep", "1000"]'
mkroot long
$ctl create-container --id long --spec "$work/long.json" --rootfs /run/ctr/long/rootfs --start 2>/dev/null
out=$($ctl exec --container long -- cat /proc/self/cgroup); echo "[long] exec cgroup: $out"
check exec-joins-container-cgroup test "$out" = "0::/sandpod/long"
check cpu-max-set test "$($ctl exec -- cat $cg/long/cpu.max)" = "50000 100000"
check cpu-weight-from-shares test "$($ctl exec -- cat $cg/long/cpu.weight)" = 100
$ctl remove-container long
check remove-kills-and-removes-cgroup sh -c "! $ctl exec -- test -e $cg/long"

# Capabilities: mknod works with CAP_MKNOD (control), fails without it.
create mknod_ok '["sh", "-c", "mknod /tmp/n c 1 3 && echo made"]'; remove mknod_ok
check mknod-with-cap-mknod test "$rc:$out" = "0:made"
CAPS='"CAP_CHOWN", "CAP_KILL", "CAP_SETUID", "CAP_SETGID"' \
  create mknod_denied '["sh", "-c", "mknod /tmp/n c 1 3 && echo made; grep ^CapBnd /proc/self/status"]'
remove mknod_denied
check mknod-without-cap-mknod grep -q "Operation not permitted" "$work/mknod_denied.err"
check bounding-set-is-the-spec has "$out" "^CapBnd:[[:space:]]*00000000000000e1$"

# no_new_privileges.
NNP=true create nnp '["grep", "^NoNewPrivs", "/proc/self/status"]'; remove nnp
check no-new-privs-set has "$out" "^NoNewPrivs:[[:space:]]*1$"
create nnp_off '["grep", "^NoNewPrivs", "/proc/self/status"]'; remove nnp_off
check no-new-privs-unset has "$out" "^NoNewPrivs:[[:space:]]*0$"

# seccomp: mkdir/mkdirat denied with EPERM, other syscalls fine (with and without nnp).
SECCOMP='"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
  "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}'
for nnp in true false; do
  NNP=$nnp LINUX_EXTRA=$SECCOMP create "seccomp_$nnp" \
    '["sh", "-c", "touch /tmp/f && echo touched; mkdir /tmp/d && echo made-dir; grep ^Seccomp: /proc/self/status"]'
  remove "seccomp_$nnp"
  check "seccomp-nnp-$nnp-denies-mkdir" grep -q "Operation not permitted" "$work/seccomp_$nnp.err"
  check "seccomp-nnp-$nnp-other-calls-work" has "$out" "^touched$"
  check "seccomp-nnp-$nnp-filter-mode" has "$out" "^Seccomp:[[:space:]]*2$"
done
check seccomp-mkdir-not-made test "$(cat "$work/seccomp_true.out" "$work/seccomp_false.out" | grep -c made-dir)" = 0

# maskedPaths and readonlyPaths. A control container without them sees /proc/timer_list and
# /proc/tty; /proc/kcore is not in the guest kernel (a missing path is skipped, as runc).
SHOW='echo timer=$(wc -c </proc/timer_list) keys=$(wc -c </proc/keys); echo tty=$(ls /proc/tty | wc -l)'
create paths_control "[\"sh\", \"-c\", \"$SHOW\"]"; remove paths_control
check masked-paths-control eval 'has "$out" "^timer=[1-9][0-9]* " && has "$out" "^tty=[1-9]"'
LINUX_EXTRA='"maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/tty", "/no/such/path"],
  "readonlyPaths": ["/proc/sys", "/etc", "/no/such/dir"]' \
  create paths "[\"sh\", \"-c\", \"$SHOW; echo 1 >/proc/sys/kernel/domainname && echo wrote-sys; touch /etc/x && echo wrote-etc; touch /tmp/ok && echo wrote-tmp; touch /proc/tty/x || echo tty-ro\"]"
remove paths
check masked-files-empty has "$out" "^timer=0 keys=0$"
check masked-dir-empty has "$out" "^tty=0$"
check masked-dir-read-only has "$out" "^tty-ro$"
check readonly-proc-sys sh -c "grep -q 'domainname: Read-only file system' $work/paths.err && ! grep -q wrote-sys $work/paths.out"
check readonly-etc sh -c "! grep -q wrote-etc $work/paths.out && grep -q '/etc/x: Read-only file system' $work/paths.err"
check writable-elsewhere has "$out" "^wrote-tmp$"

# rlimits.
RLIMITS='[{"type": "RLIMIT_NOFILE", "hard": 200, "soft": 123}, {"type": "RLIMIT_CORE", "hard": 0, "soft": 0}]' \
  create rlimit '["sh", "-c", "ulimit -n; ulimit -H -n; ulimit -c"]'; remove rlimit
check rlimit-nofile test "$out" = "123
200
0"

# A bad profile fails CreateContainer with a clear error, leaving no cgroup behind.
mkroot badseccomp
LINUX_EXTRA='"seccomp": {"defaultAction": "SCMP_ACT_NOTIFY"}' spec "$work/bad.json" '["true"]'
err=$($ctl create-container --id badseccomp --spec "$work/bad.json" --rootfs /run/ctr/badseccomp/rootfs 2>&1); rc=$?
echo "[badseccomp] rc=$rc: $err"
check bad-seccomp-refused eval 'test "$rc" != 0 && has "$err" SCMP_ACT_NOTIFY'
mkroot badmem
LINUX_EXTRA='"resources": {"memory": {"limit": -7}}' spec "$work/badmem.json" '["true"]'
err=$($ctl create-container --id badmem --spec "$work/badmem.json" --rootfs /run/ctr/badmem/rootfs 2>&1); rc=$?
echo "[badmem] rc=$rc: $err"
check bad-memory-limit-refused eval 'test "$rc" != 0 && has "$err" "-7"'
check bad-specs-leave-no-cgroup sh -c "! $ctl exec -- test -e $cg/badmem"
check no-cgroups-left test -z "$($ctl exec -- find $cg -mindepth 1 -type d)"

kill -TERM "$vmm"; wait "$vmm"
if grep -qi "panicked" "$work/vmm.err" "$work/console.txt"; then echo "panics:"; grep -i panicked "$work/vmm.err" "$work/console.txt"; fi
echo "container-security-check: $failed failed"
[ $failed -eq 0 ]
