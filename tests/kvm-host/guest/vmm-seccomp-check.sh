#!/bin/sh
# sandpod-vmm's own confinement: a seccomp filter on every thread (`Seccomp: 2`), the guest's
# devices working under them (vsock + agent exec, virtio-blk, virtio-fs through virtiofsd, and a
# whole `sandpod run` of the busybox bundle), each `--debug-seccomp-violation` kind killing the
# VMM with SIGSYS, `--no-seccomp` turning them off, and the VMM not dumpable (no core dump; guest
# RAM marked MADV_DONTDUMP).
# Prints `check <name> ok|FAIL` lines and ends with `vmm-seccomp-check: N failed`.
# SANDPOD_VMM_SECCOMP=log (passed on to the VMMs): violations are only logged (development).
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/vmm-seccomp-check.XXXXXX)
wait_for() { # tenths of a second, then a command
  n=$1; shift
  while [ "$n" -gt 0 ] && ! "$@"; do sleep 0.1; n=$((n - 1)); done
  "$@"
}
alive() { kill -0 "$1" 2>/dev/null; }
healthy() { "$ctl_bin" --uds "$1" health 2>/dev/null | grep -q '^ok '; }
# seccomp_modes PID: "comm=N" for each thread (N: 0 none, 2 filter).
seccomp_modes() {
  for t in /proc/"$1"/task/*; do
    echo "$(cat "$t/comm")=$(awk '/^Seccomp:/ {print $2}' "$t/status")"
  done
}
# all_modes_are N: every thread in $modes has seccomp mode N.
all_modes_are() { [ -n "$modes" ] && ! echo "$modes" | grep -qv "=$1\$"; }
has_thread() { echo "$modes" | grep -q "^$1="; }
has_threads() { for t in "$@"; do has_thread "$t" || return 1; done; }
dmesg_start=$(dmesg 2>/dev/null | wc -l) # the audit lines printed at the end are this run's

# --- VM 1: every device, filters on ---------------------------------------------------------
shared=$work/shared
mkdir -p "$shared"
echo "hello from the host" >"$shared/host.txt"
start_virtiofsd() { # SANDBOX: sets $vfsd; fails if it does not listen within 10 s
  "$dir/bin/virtiofsd" --socket-path="$work/vfs.sock" --shared-dir="$shared" --cache=auto \
    --sandbox="$1" --log-level=error </dev/null 2>>"$work/virtiofsd.err" &
  vfsd=$!
  wait_for 100 test -S "$work/vfs.sock" && alive "$vfsd"
}
if ! start_virtiofsd namespace; then
  kill "$vfsd" 2>/dev/null; rm -f "$work/vfs.sock"
  start_virtiofsd chroot
fi
check virtiofsd-listening alive "$vfsd"
head -c 8388608 /dev/zero >"$work/disk.img"
uds=$work/v.sock
vmm_serve "$uds" "file:$work/console.txt" --vcpus 2 --disk "$work/disk.img" \
  --fs "tag=shared,socket=$work/vfs.sock" </dev/null 2>"$work/vmm.err" &
vmm=$!
check agent-health-under-filters wait_for 600 healthy "$uds"
use_agent "$uds"
out=$(timeout 120 $ctl exec -- echo hello from the guest 2>&1); echo "exec: $out"
check exec-under-filters test "$out" = "hello from the guest"
head -c 1000000 /dev/urandom >"$work/in.bin"
timeout 120 $ctl exec -- cat <"$work/in.bin" >"$work/out.bin" 2>/dev/null
check exec-stdin-roundtrip-1m cmp -s "$work/in.bin" "$work/out.bin"
out=$(gsh "echo sandpod-blk | dd of=/dev/vda bs=512 conv=sync,fsync 2>/dev/null && dd if=/dev/vda bs=11 count=1 2>/dev/null")
echo "blk: $out; on the host: $(head -c 10 "$work/disk.img")"
check blk-write-read eval '[ "$out" = sandpod-blk ] && [ "$(head -c 10 "$work/disk.img")" = sandpod-bl ]'
out=$(gsh "mount -t virtiofs shared /mnt && cat /mnt/host.txt && echo from-guest >/mnt/guest.txt && sync" 2>&1)
echo "virtio-fs: $out; on the host: $(cat "$shared/guest.txt" 2>&1)"
check virtiofs-read-write eval '[ "$out" = "hello from the host" ] && [ "$(cat "$shared/guest.txt")" = from-guest ]'
modes=$(seccomp_modes "$vmm")
echo "threads: $(echo $modes)"
check every-thread-filtered all_modes_are 2
check filtered-thread-kinds has_threads sandpod-vmm signals spawner vcpu0 vcpu1 vsock virtio-blk virtio-fs
# Not dumpable: guest RAM is VM_DONTDUMP ("dd") and SIGABRT leaves no core (a plain process does).
dd_flags=$(awk '/sandpod-guest-ram/ {m = 1; next} m && /^VmFlags:/ {print; m = 0}' /proc/"$vmm"/smaps)
echo "guest RAM mappings: $dd_flags"
check guest-ram-dontdump eval 'echo "$dd_flags" | grep -q " dd" && ! echo "$dd_flags" | grep -v " dd" | grep -q .'
kill -TERM "$vmm"; reap "$vmm"
echo "sandpod-vmm exited $rc (143 = SIGTERM)"
check clean-exit-under-filters eval '[ $rc = 143 ] && [ ! -e "$uds" ]'
kill "$vfsd" 2>/dev/null
grep -i "panicked\|error\|seccomp" "$work/vmm.err" | head -5

# --- core dumps: none from the VMM --------------------------------------------------------------
old_pattern=$(cat /proc/sys/kernel/core_pattern)
mkdir -p "$work/cores"
if echo "$work/cores/core.%p" >/proc/sys/kernel/core_pattern 2>/dev/null; then
  (ulimit -c unlimited; exec sleep 60) &
  plain=$!; sleep 0.5; kill -ABRT $plain; wait $plain 2>/dev/null
  ls "$work/cores"
  check core-dumps-work-here test -e "$work/cores/core.$plain"
  # (With debug logs: each kind's "installed" line, and the debug paths under the filters.)
  (ulimit -c unlimited; export SANDPOD_LOG=debug; vmm_serve "$work/c.sock" none </dev/null 2>"$work/core.err") &
  vmm=$!
  wait_for 600 healthy "$work/c.sock"
  logged_kinds() { for k in vcpu spawner main device; do grep -q "seccomp filters installed ($k)" "$work/core.err" || return 1; done; }
  check installed-logged-per-kind logged_kinds
  kill -ABRT $vmm; reap $vmm
  echo "sandpod-vmm after SIGABRT: exit $rc; cores: $(ls "$work/cores" | tr '\n' ' ')"
  check vmm-no-core-dump eval '[ $rc = 134 ] && [ ! -e "$work/cores/core.$vmm" ]'
  echo "$old_pattern" >/proc/sys/kernel/core_pattern
else
  echo "core_pattern not writable: core dump checks skipped"
fi

# --- the debug trigger: each kind's forbidden syscall kills the VMM -----------------------------
for kind in vcpu main spawner device; do
  (vmm_after_ready=poweroff; vmm_serve "$work/d-$kind.sock" none --debug-seccomp-violation "$kind" \
    </dev/null 2>"$work/d-$kind.err") &
  pid=$!
  # The device threads start when the guest's drivers do: give it time to boot.
  i=0; while [ $i -lt 900 ] && alive $pid; do sleep 0.1; i=$((i + 1)); done
  alive $pid && kill -KILL $pid
  reap $pid
  echo "--debug-seccomp-violation $kind: exit $rc (159 = SIGSYS) after $((i / 10)) s $(tail -1 "$work/d-$kind.err")"
  check "violation-$kind-sigsys" test "$rc" = 159
done

# --- --no-seccomp: no filters -------------------------------------------------------------------
vmm_serve "$work/n.sock" none --no-seccomp </dev/null 2>"$work/n.err" &
vmm=$!
wait_for 600 healthy "$work/n.sock"
modes=$(seccomp_modes "$vmm")
echo "--no-seccomp threads: $(echo $modes)"
check no-seccomp-unfiltered all_modes_are 0
check no-seccomp-warns grep -q "seccomp filters disabled" "$work/n.err"
kill -TERM $vmm; reap $vmm

# --- a container: `sandpod run` (the runtime's vm.json, virtio-fs rootfs, vsock) -----------------
if [ -d "$dir/bundles/busybox" ] && [ -x "$dir/bin/sandpod" ]; then
  ours=$failed
  . "$(dirname "$0")/containers-lib.sh" # its own $work, and the count from 0 again
  mkbundle echo "$(args '["sh","-c","echo hello sandpod; echo written > /w.txt"]')"
  run echo
  check container-run-under-filters eval "rc_is 0 && out_is echo 'hello sandpod' && [ \"\$(cat $work/echo/rootfs/w.txt)\" = written ]"
  mkbundle sleeper "$(args '["sleep","60"]')"
  "$dir/bin/sandpod" --root "$ROOT" run --kill-after 2 --bundle "$work/sleeper" sleeper </dev/null >/dev/null 2>&1 &
  runner=$!
  cvmm=
  i=0; while [ $i -lt 600 ] && [ -z "$cvmm" ]; do sleep 0.1; cvmm=$(pgrep -nf "sandpod-vmm --config"); i=$((i + 1)); done
  wait_for 300 eval "sandpod state sleeper 2>/dev/null | grep -q '\"status\": \"running\"'"
  modes=$( [ -n "$cvmm" ] && seccomp_modes "$cvmm")
  echo "container VMM threads: $(echo $modes)"
  check container-vmm-filtered eval 'all_modes_are 2 && has_thread virtio-fs && has_thread vsock'
  kill -TERM $runner; reap $runner
  check container-nothing-left wait_for 100 nothing_left
  failed=$((failed + ours))
else
  echo "no busybox bundle or sandpod binary: container check skipped"
fi

echo "seccomp audit lines:"
dmesg 2>/dev/null | tail -n +"$((dmesg_start + 1))" | grep -i "type=1326" | sed 's/.*audit: //' | head -40
finish vmm-seccomp-check
