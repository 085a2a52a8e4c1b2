#!/bin/sh
# Containers end to end: boots sandpod-vmm (test initramfs: busybox in /bin) and drives the
# agent's container API with sandpod-agentctl. Rootfs: busybox with its applets, made in the guest
# under /run/ctr/<name>/rootfs. Prints `check <name> ok|FAIL` lines and ends with
# `container-check: N failed`. SANDPOD_DIR: where the build outputs are (default /sandpod).
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/container-check.XXXXXX)
uds=$work/v.sock

vmm_serve "$uds" "file:$work/console.txt" </dev/null 2>"$work/vmm.err" &
vmm=$!
use_agent "$uds"
agent_up_or_exit "$work/console.txt" "$work/vmm.err"
# Every busybox applet on the guest's PATH (the test initramfs links only a few).
$ctl exec -- /bin/busybox --install -s /bin
grep 'switch_root' "$work/console.txt"
check switch-root grep -q 'sandpod-agent switch_root ms=' "$work/console.txt"

# mkroot NAME: a busybox rootfs at /run/ctr/NAME/rootfs, with /marker naming it.
mkroot() {
  r=/run/ctr/$1/rootfs
  $ctl exec -- sh -c "mkdir -p $r/bin $r/proc $r/sys $r/dev $r/tmp $r/work $r/root && \
    cp /bin/busybox $r/bin/busybox && /bin/busybox --install -s $r/bin && echo rootfs-$1 >$r/marker"
}
$ctl exec -- sh -c 'mkdir -p /run/ctr/shared && echo shared-data >/run/ctr/shared/file'

# spec FILE ARGS_JSON: config.json; knobs: TTY RO HOST ENVJ CWD USERJ (reset after each use).
spec() {
  [ -n "${USERJ:-}" ] || USERJ='{"uid": 0, "gid": 0}'
  [ -n "${ENVJ:-}" ] || ENVJ='["PATH=/bin", "HOME=/root"]'
  [ -n "${TTY:-}" ] || TTY=false
  [ -n "${RO:-}" ] || RO=false
  [ -n "${HOST:-}" ] || HOST=ctr
  [ -n "${CWD:-}" ] || CWD=/
  cat >"$1" <<EOF
{
  "ociVersion": "1.0.2",
  "process": {
    "terminal": $TTY,
    "user": $USERJ,
    "args": $2,
    "env": $ENVJ,
    "cwd": "$CWD"
  },
  "root": {"path": "rootfs", "readonly": $RO},
  "hostname": "$HOST",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    {"destination": "/data", "type": "bind", "source": "/run/ctr/shared", "options": ["rbind", "ro"]}
  ],
  "linux": {
    "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"},
                   {"type": "mount"}]
  }
}
EOF
  unset TTY RO HOST ENVJ CWD USERJ
}
# run NAME ARGS_JSON: create+start with stdout/stderr attached, wait, remove; output in $out,
# status in $rc.
run() {
  mkroot "$1"
  spec "$work/$1.json" "$2"
  out=$($ctl create-container --id "$1" --spec "$work/$1.json" --rootfs "/run/ctr/$1/rootfs" \
    --stdout --stderr --start 2>"$work/$1.err"); rc=$?
  $ctl remove-container "$1" 2>>"$work/$1.err"
  echo "[$1] rc=$rc out: $out"; grep -v 'created, init pid' "$work/$1.err" | sed "s/^/[$1] err: /"
}

run echo '["echo", "hello from a container"]'
check echo-output test "$out" = "hello from a container"
check exit-0 test "$rc" = 0
run exit1 '["sh", "-c", "echo before-exit; exit 1"]'
check exit-1 test "$rc:$out" = "1:before-exit"
ENVJ='["PATH=/bin", "FOO=bar baz"]' CWD=/work run env '["sh", "-c", "echo \"$FOO\"; pwd"]'
check env-and-cwd test "$out" = "bar baz
/work"
USERJ='{"uid": 1000, "gid": 1001, "additionalGids": [10, 20]}' run user '["sh", "-c", "id -u; id -g; id -G"]'
check user-ids test "$out" = "1000
1001
1001 10 20"
HOST=box-1 run host '["hostname"]'
check hostname-from-spec test "$out" = "box-1"
guest_host=$($ctl exec -- hostname)
check guest-hostname-untouched test "$guest_host" != "box-1"
run rw '["sh", "-c", "touch /newfile; echo rc=$?"]'
check rw-rootfs-writable test "$out" = "rc=0"
RO=true run ro '["sh", "-c", "touch /newfile; echo rc=$?; cat /data/file"]'
check ro-rootfs-refuses-writes has "$out" "rc=1"
check ro-rootfs-bind-mount-readable has "$out" "^shared-data$"
check ro-rootfs-nothing-written sh -c "! $ctl exec -- test -e /run/ctr/ro/rootfs/newfile"
run pidns '["sh", "-c", "echo pid=$$; ps -o pid,comm"]'
check pid-ns-init-is-pid-1 has "$out" "^pid=1$"
check pid-ns-ps-only-own test "$(printf '%s\n' "$out" | grep -cE '^ *[0-9]+ ')" -le 2
check pid-ns-no-agent hasnt "$out" "init"
TTY=true run tty '["sh", "-c", "tty; echo done"]'
check terminal-tty has "$out" "^/dev/pts/[0-9]*.$"
check terminal-crlf has "$out" "^done.$"

# A missing binary fails CreateContainer, naming it; an unexecutable one fails StartContainer.
mkroot missing; spec "$work/missing.json" '["nope-not-here"]'
err=$($ctl create-container --id missing --spec "$work/missing.json" --rootfs /run/ctr/missing/rootfs 2>&1); rc=$?
echo "[missing] rc=$rc: $err"
check missing-binary-create-fails test "$rc" != 0
check missing-binary-named has "$err" 'exec: "nope-not-here": executable file not found in \$PATH'
check missing-binary-not-left sh -c "! $ctl remove-container missing 2>/dev/null"
mkroot badexec; $ctl exec -- sh -c 'printf "garbage" >/run/ctr/badexec/rootfs/bin/bad; chmod 755 /run/ctr/badexec/rootfs/bin/bad'
spec "$work/badexec.json" '["bad"]'
$ctl create-container --id badexec --spec "$work/badexec.json" --rootfs /run/ctr/badexec/rootfs 2>/dev/null
err=$($ctl start-container badexec 2>&1); rc=$?
echo "[badexec] start rc=$rc: $err"
check exec-failure-start-fails test "$rc" != 0
check exec-failure-named has "$err" '"bad".*ENOEXEC'
$ctl remove-container badexec

# A long-running container: SIGKILL through SignalProcess gives 137; exec into it, remove it.
mkroot long; HOST=inside spec "$work/long.json" '["sleep", "1000"]'
$ctl create-container --id long --spec "$work/long.json" --rootfs /run/ctr/long/rootfs 2>/dev/null
$ctl start-container long; check start-separately test $? = 0
check start-twice-refused sh -c "! $ctl start-container long 2>/dev/null"
out=$($ctl exec --container long -- sh -c 'hostname; cat /marker; echo pid=$$; cat /proc/1/cmdline | tr "\0" " "'); echo "[long] exec: $out"
check exec-sees-hostname has "$out" "^inside$"
check exec-sees-rootfs has "$out" "^rootfs-long$"
check exec-in-pid-ns has "$out" "^sleep 1000 $"
out=$($ctl exec --container long --cwd /work --user 1000:1000 -- sh -c 'pwd; id -u'); echo "[long] exec as 1000: $out"
check exec-cwd-user test "$out" = "/work
1000"
out=$($ctl exec --container long --tty -- tty </dev/null); echo "[long] exec tty: $out"
check exec-tty has "$out" "^/dev/pts/[0-9]*.$"
inside=$($ctl exec --container long -- grep -c ' /proc ' /proc/mounts)
outside=$($ctl exec -- grep -c /run/ctr/long /proc/mounts)
echo "[long] mounts of /proc inside: $inside; agent's mounts under the rootfs: $outside"
check mount-ns-inside test "$inside" -ge 1
check mount-ns-not-in-agent test "$outside" = 0
($ctl exec --container long -- sleep 2000; echo "exec-rc=$?" >"$work/bg.rc") &
sleep 2
before=$($ctl exec -- ps -o args | grep -c '^sleep [12]000')
$ctl signal long 9; $ctl wait long; rc=$?
check sigkill-137 test "$rc" = 137
$ctl remove-container long; check remove test $? = 0
sleep 1
after=$($ctl exec -- ps -o args | grep -c '^sleep [12]000')
echo "[long] sleep processes before the kill: $before, after remove: $after"
check processes-before test "$before" = 2
check remove-no-processes-left test "$after" = 0
check remove-exec-killed grep -q 'exec-rc=137' "$work/bg.rc"
check remove-twice-refused sh -c "! $ctl remove-container long 2>/dev/null"
check remove-no-mounts-left test "$($ctl exec -- grep -c /run/ctr/ /proc/mounts)" = 0
# Remove before start: the blocked init goes too.
mkroot unstarted; spec "$work/unstarted.json" '["sleep", "1000"]'
$ctl create-container --id unstarted --spec "$work/unstarted.json" --rootfs /run/ctr/unstarted/rootfs 2>/dev/null
check unstarted-blocked test "$($ctl exec -- ps -o args | grep -c sandpod-container-helper)" = 1
$ctl remove-container unstarted
check remove-unstarted test "$($ctl exec -- ps -o args | grep -c sandpod-container-helper)" = 0

kill -TERM "$vmm"; wait "$vmm"
if grep -qi "panicked\|error" "$work/vmm.err"; then echo "vmm stderr:"; cat "$work/vmm.err"; fi
finish container-check
