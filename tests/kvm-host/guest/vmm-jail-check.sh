#!/bin/sh
# sandpod-vmm's jail with a real VM (`sandpod create/start/exec/delete` of a sleeper): the VMM
# (the only child of `sandpod jail`) has no capability in any set, the jail's uid and gid,
# no_new_privs, is not dumpable, is PID 1 of its own PID namespace and has its own mount, network,
# IPC and UTS namespaces; its root holds only the jail's entries (no share, no host /etc), all
# read-only but its own directory, and none of the jail's mounts shows on the host; its rlimits;
# on a cgroup v2 host its cgroup is the spec's cgroupsPath with the sandbox's limits (memory,
# pids, the spec's CPU quota); it dies with the monitor; nothing is left after delete.
# Prints `check <name> ok|FAIL` lines, ends with `vmm-jail-check.sh: N failed`.
. "$(dirname "$0")/containers-lib.sh"

JAIL_UID=65534
JAIL_GID=65534
CG=/sandpod-jail-check
id=jcheck
mkbundle $id "$(args '["sleep","600"]') | .linux.cgroupsPath = \"$CG\" |
  .linux.resources.cpu = {\"quota\": 50000, \"period\": 100000}"

started() {
  sandpod --log "$work/sandpod.log" create --bundle "$work/$id" $id </dev/null >"$work/$id.out" 2>"$work/$id.err" &&
    sandpod start $id 2>>"$work/$id.err" || { echo "starting: $(cat "$work/$id.err")"; return 1; }
  i=0
  while [ $i -lt 600 ] && ! sandpod state $id 2>/dev/null | grep '"status": "running"' >/dev/null; do
    sleep 0.1; i=$((i + 1))
  done
  sandpod state $id | grep '"status": "running"' >/dev/null
}
check jail-container-running started
check exec-in-jailed-vm eval "[ \"\$(sandpod exec $id echo hi)\" = hi ]"

jailer=$(pgrep -f "$ROOT/$id/jail.json" | head -1)
vmm=$(tr -d ' ' <"/proc/$jailer/task/$jailer/children" 2>/dev/null)
echo "sandpod jail: pid ${jailer:-none}; its child: ${vmm:-none}: $(tr '\0' ' ' <"/proc/$vmm/cmdline" 2>/dev/null)"
field() { awk -v f="$1:" '$1 == f { $1 = ""; sub(/^ /, ""); print }' "/proc/$vmm/status"; }

check vmm-is-the-jails-child eval "[ -n \"$vmm\" ] && tr '\0' ' ' </proc/$vmm/cmdline | grep -q '^/sandpod-vmm --config /vm.json'"
no_caps() {
  for f in CapEff CapPrm CapInh CapBnd CapAmb; do
    v=$(field $f); echo "$f $v"
    [ "$v" = 0000000000000000 ] || return 1
  done
}
check vmm-no-capabilities no_caps
check vmm-jail-uid-gid eval "echo \"Uid \$(field Uid) Gid \$(field Gid) Groups \$(field Groups)\";
  [ \"\$(field Uid)\" = \"$JAIL_UID $JAIL_UID $JAIL_UID $JAIL_UID\" ] &&
  [ \"\$(field Gid)\" = \"$JAIL_GID $JAIL_GID $JAIL_GID $JAIL_GID\" ]"
check vmm-no-new-privs eval "[ \"\$(field NoNewPrivs)\" = 1 ]"
# A non-dumpable process's /proc files belong to root, not to its uid.
check vmm-not-dumpable eval "[ \"\$(stat -c %u /proc/$vmm/status)\" = 0 ]"
own_ns() {
  for n in mnt net ipc uts; do
    [ "$(readlink "/proc/$vmm/ns/$n")" != "$(readlink "/proc/self/ns/$n")" ] || { echo "$n shared"; return 1; }
  done
  [ "$(readlink "/proc/$vmm/ns/pid")" != "$(readlink /proc/self/ns/pid)" ] || { echo "pid shared"; return 1; }
  echo "NSpid $(field NSpid)"
  [ "$(field NSpid | awk '{ print $NF }')" = 1 ]
}
check vmm-own-namespaces-pid-1 own_ns
jail_root() {
  entries=$(ls -A "/proc/$vmm/root/" | tr '\n' ' ')
  echo "the VMM's root: $entries"
  for e in dev kernel initrd vm vm.json sandpod-vmm fs0.sock; do
    case " $entries " in *" $e "*) ;; *) echo "missing $e"; return 1 ;; esac
  done
  # (The VMM is static-pie (make build): no host library directory is bound for it.)
  for e in $entries; do
    case $e in dev|kernel|initrd|vm|vm.json|sandpod-vmm|fs0.sock) ;;
      *) echo "unexpected $e"; return 1 ;;
    esac
  done
  [ "$(ls -A "/proc/$vmm/root/dev")" = kvm ] &&
    [ ! -e "/proc/$vmm/root/vm/../shared" ] && [ ! -e "/proc/$vmm/root/etc" ]
}
check jail-root-only-the-jails-entries jail_root
# The VMM binary in the jail: the state root's one exec-only copy (root's, mode 0111, so the
# jail's uid can neither read nor write it), bound read-only (jail-read-only-but-vm-dir); that it
# is unreadable is what makes the VMM non-dumpable (vmm-not-dumpable).
shared_binary() {
  copy=$(ls "$ROOT"/.vmm/*/sandpod-vmm)
  echo "in the jail: $(stat -Lc '%a %u %i' "/proc/$vmm/root/sandpod-vmm"); shared: $(stat -c '%a %u %i' $copy)"
  [ "$(stat -Lc '%a %u %i' "/proc/$vmm/root/sandpod-vmm")" = "$(stat -c '111 0 %i' $copy)" ]
}
check jail-vmm-binary-shared-exec-only shared_binary
only_vm_dir_writable() {
  awk '{ print $5, $6 }' "/proc/$vmm/mountinfo"
  awk '$5 != "/vm" && $6 !~ /^ro(,|$)/ { bad = 1 } END { exit bad }' "/proc/$vmm/mountinfo" &&
    awk '$5 == "/vm" && $6 ~ /^rw,/ && $6 ~ /nosuid/ && $6 ~ /nodev/ && $6 ~ /noexec/ { ok = 1 } END { exit !ok }' "/proc/$vmm/mountinfo"
}
check jail-read-only-but-vm-dir only_vm_dir_writable
check jail-mounts-not-on-host eval "! grep -q \"$ROOT/$id/jail\" /proc/self/mountinfo"
rlimits() {
  grep -E 'open files|core file|file size' "/proc/$vmm/limits"
  # 256 MiB of guest RAM (the default VM) + 1 MiB.
  grep -Eq 'Max open files +4096 +4096' "/proc/$vmm/limits" &&
    grep -Eq 'Max core file size +0 +0' "/proc/$vmm/limits" &&
    grep -Eq 'Max file size +269484032 +269484032' "/proc/$vmm/limits"
}
check vmm-rlimits rlimits

cgroup_limits() {
  fs=$(stat -fc %T /sys/fs/cgroup)
  echo "/sys/fs/cgroup: $fs; the VMM's cgroup: $(cat "/proc/$vmm/cgroup" | tr '\n' ' ')"
  if [ "$fs" != cgroup2fs ]; then
    echo "not a unified cgroup v2 host: no host cgroup, no limits (the runtime logs it)"
    grep -q 'not unified' "$work/sandpod.log"
    return
  fi
  d=/sys/fs/cgroup$CG
  echo "memory.max $(cat $d/memory.max) pids.max $(cat $d/pids.max) cpu.max $(cat $d/cpu.max)"
  # 256 MiB VM + 128 MiB overhead; 256 + 1 vCPU tasks; the spec's quota and period.
  [ "$(cat "/proc/$vmm/cgroup")" = "0::$CG" ] && [ "$(cat $d/memory.max)" = 402653184 ] &&
    [ "$(cat $d/pids.max)" = 257 ] && [ "$(cat $d/cpu.max)" = "50000 100000" ]
}
check host-cgroup-limits cgroup_limits

# The VM dies with its monitor (PR_SET_PDEATHSIG down the chain: monitor → sandpod jail → VMM).
monitor=$(jq -r '.monitor.pid' "$ROOT/$id/state.json")
dies_with_monitor() {
  kill -9 "$monitor"
  i=0
  while [ $i -lt 100 ] && [ -e "/proc/$vmm" ]; do sleep 0.1; i=$((i + 1)); done
  [ ! -e "/proc/$vmm" ] && [ ! -e "/proc/$jailer" ]
}
check vmm-dies-with-monitor dies_with_monitor
sandpod delete --force $id 2>"$work/delete.err" || cat "$work/delete.err"
check nothing-left-after-jail-checks eval "nothing_left && ! pgrep -f 'sandpod-vmm --config /vm.json' &&
  [ ! -e /sys/fs/cgroup$CG ]"
finish
