#!/bin/sh
# Container limits and security settings enforced in the guest, through sandpod-agentctl:
# cgroup v2 memory (OOM kill) and pids limits, an exec joining the container's cgroup, the cgroup
# removed with the container, capabilities (CAP_MKNOD dropped; none without a capabilities spec),
# no_new_privileges, seccomp (mkdir denied with EPERM), masked and read-only paths, rlimits, the
# cgroup namespace rooted at the container's cgroup, the device cgroup (BPF), the helper not
# dumpable before exec, no vsock from containers (nor a guest-local vsock path at all), stdio
# streams refused without the process's token. Prints `check <name> ok|FAIL` lines and ends with
# `container-security-check: N failed`. SANDPOD_DIR: the build outputs (/sandpod).
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/container-security-check.XXXXXX)
uds=$work/v.sock

vmm_serve "$uds" "file:$work/console.txt" </dev/null 2>"$work/vmm.err" &
vmm=$!
use_agent "$uds"
agent_up_or_exit "$work/console.txt" "$work/vmm.err"
$ctl exec -- /bin/busybox --install -s /bin
cg=/sys/fs/cgroup/sandpod

mkroot() {
  r=/run/ctr/$1/rootfs
  $ctl exec -- sh -c "mkdir -p $r/bin $r/proc $r/sys $r/dev $r/tmp $r/etc && \
    cp /bin/busybox /bin/sandpod-vsock-probe $r/bin/ && /bin/busybox --install -s $r/bin"
}

CAPS_ALL='"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_MKNOD", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_SYS_CHROOT"'
# spec FILE ARGS_JSON: config.json; knobs (reset after each use): CAPS (capability names),
# NOCAPS=1 (no process.capabilities at all), NNP (true/false), RLIMITS (JSON array), LINUX_EXTRA
# (JSON members added to "linux"), NS_EXTRA (namespace objects added), ANNOTATIONS (JSON members).
spec() {
  caps=${CAPS:-$CAPS_ALL}
  capline="\"capabilities\": {\"bounding\": [$caps], \"effective\": [$caps], \"permitted\": [$caps]},"
  [ -n "${NOCAPS:-}" ] && capline=
  cat >"$1" <<EOF
{
  "ociVersion": "1.0.2",
  "process": {
    "terminal": false,
    "user": {"uid": 0, "gid": 0},
    "args": $2,
    "env": ["PATH=/bin"],
    "cwd": "/",
    $capline
    "noNewPrivileges": ${NNP:-false},
    "rlimits": ${RLIMITS:-[]}
  },
  "root": {"path": "rootfs", "readonly": false},
  "annotations": {${ANNOTATIONS:-}},
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
    {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}
  ],
  "linux": {
    ${LINUX_EXTRA:-}${LINUX_EXTRA:+,}
    "namespaces": [${NS_EXTRA:-}${NS_EXTRA:+,} {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]
  }
}
EOF
  unset CAPS NOCAPS NNP RLIMITS LINUX_EXTRA NS_EXTRA ANNOTATIONS
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

# No process.capabilities: nothing at all, for uid 0 too (as runc), bounding set included.
NOCAPS=1 create nocaps '["sh", "-c", "grep -E ^Cap /proc/self/status; touch /tmp/f; chown 1:1 /tmp/f && echo chowned"]'
remove nocaps
for set in CapInh CapPrm CapEff CapBnd CapAmb; do
  check "no-caps-spec-$set-empty" has "$out" "^$set:[[:space:]]*0000000000000000$"
done
check no-caps-spec-chown-refused sh -c "! grep -q chowned $work/nocaps.out && grep -q 'Operation not permitted' $work/nocaps.err"

# A cgroup namespace is made after the cgroup join: the container sees its cgroup as the root,
# and so does a process exec'd into it.
NS_EXTRA='{"type": "cgroup"}' spec "$work/cgns.json" '["sh", "-c", "cat /proc/self/cgroup; sleep 1000"]'
mkroot cgns
$ctl create-container --id cgns --spec "$work/cgns.json" --rootfs /run/ctr/cgns/rootfs --stdout --start >"$work/cgns.out" 2>"$work/cgns.err" &
attached=$!
sleep 2
out=$($ctl exec --container cgns -- cat /proc/self/cgroup); echo "[cgns] init: $(head -c 100 "$work/cgns.out") exec: $out"
check cgroup-ns-init-sees-root test "$(head -n 1 "$work/cgns.out")" = "0::/"
check cgroup-ns-exec-sees-root test "$out" = "0::/"
check cgroup-ns-still-in-its-cgroup sh -c "$ctl exec -- cat $cg/cgns/cgroup.procs | grep -q ."
$ctl remove-container cgns; wait $attached

# The helper is not dumpable before its exec: an exec'd process of the same uid cannot read the
# waiting init's /proc/1/exe and environ (no CAP_SYS_PTRACE); once started (exec'd), it can.
mkroot dump
spec "$work/dump.json" '["sleep", "1000"]'
$ctl create-container --id dump --spec "$work/dump.json" --rootfs /run/ctr/dump/rootfs 2>/dev/null
peek='readlink /proc/1/exe || echo no-exe; cat /proc/1/environ >/dev/null && echo environ-readable'
before=$($ctl exec --container dump -- sh -c "$peek" 2>&1)
$ctl start-container dump
after=$($ctl exec --container dump -- sh -c "$peek" 2>&1)
echo "[dump] created: $(echo "$before" | tr '\n' '|') started: $(echo "$after" | tr '\n' '|')"
check helper-not-dumpable-before-exec eval 'has "$before" "^no-exe$" && has "$before" "environ.*ermission denied" && ! has "$before" environ-readable'
check init-dumpable-after-exec test "$after" = "/bin/busybox
environ-readable"
$ctl remove-container dump

# The device cgroup (BPF, runc's default allow-list): a node of a device not on the list can be
# made (mknod is allowed) but not opened; a linux.resources.devices rule opens it.
DEV='mknod /dev/cons c 5 1 && echo made; echo x >/dev/cons && echo wrote; echo x >/dev/null && echo null-ok'
create devdeny "[\"sh\", \"-c\", \"$DEV\"]"; remove devdeny
check device-cgroup-mknod-allowed has "$out" "^made$"
check device-cgroup-denies-console sh -c "! grep -q '^wrote' $work/devdeny.out && grep -q 'Operation not permitted' $work/devdeny.err"
check device-cgroup-allows-null has "$out" "^null-ok$"
LINUX_EXTRA='"resources": {"devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rw"}]}' \
  create devallow "[\"sh\", \"-c\", \"$DEV\"]"; remove devallow
check device-cgroup-rule-allows-console has "$out" "^wrote$"

# vsock: no guest-local path to the agent's ports (the kernel has no vsock loopback), and
# containers cannot even create an AF_VSOCK socket unless their spec allows it.
out=$($ctl exec -- sandpod-vsock-probe 1 1024 2>&1); echo "[vsock] guest process to 1:1024: $out"
check guest-vsock-loopback-off has "$out" "^connect: "
probes='for c in 1 2 3; do for p in 1024 1025 1026; do echo $c:$p $(sandpod-vsock-probe $c $p hello); done; done'
create vsock_denied "[\"sh\", \"-c\", \"$probes\"]"; remove vsock_denied
check vsock-refused-to-containers test "$(grep -c 'socket: EPERM' "$work/vsock_denied.out")" = 9
ANNOTATIONS='"io.sandpod.allow-vsock": "true"' create vsock_allowed "[\"sh\", \"-c\", \"$probes\"]"
remove vsock_allowed
check vsock-allowed-creates-sockets sh -c "! grep -q 'socket:' $work/vsock_allowed.out"
check vsock-allowed-still-reaches-nothing test "$(grep -c ' connect: ' "$work/vsock_allowed.out")" = 9

# Stdio streams: a stream without the process's token gets nothing of it (the thief's stream
# waits first; the real exec then takes only its own).
$ctl open-stream victim stdout >"$work/thief.out" 2>"$work/thief.err" &
thief=$!
sleep 1
out=$($ctl exec --id victim -- echo secret-output)
sleep 1; kill "$thief" 2>/dev/null; wait "$thief"
echo "[stream] victim: $out thief: $(cat "$work/thief.out" "$work/thief.err" | tr '\n' ' ')"
check stream-with-token-works test "$out" = secret-output
check stream-wrong-token-gets-nothing sh -c "! grep -q secret $work/thief.out && grep -q 'stream closed after 0 bytes' $work/thief.err"

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
finish container-security-check
