#!/bin/sh
# Runs inside the KVM test host: `sandpod run` vs `runc run` of the same busybox bundle running
# `true`, alternating, RUNS times each; then one idle container (`sleep`) under sandpod and the
# PSS of its processes (VMM incl. the guest memory it touched, virtiofsd, the monitor).
#   run-bench.sh [RUNS]
# Also `sandpod --no-jail` (the VMM unjailed, its seccomp filters still on) in the same rounds:
# what the jail costs; and `sandpod-copy`, the jailed run with the template's spare memory
# removed first: the restore copies the template's memory itself, as it did before spares.
# All three log at the same level (info, each to its own file: the phases are the jailed runs').
# Every start waits first for the background refill of the spare (`wait_refills`): the test host
# has one CPU, where a host with more would refill on another while the next start runs.
# Prints `phases <key>=<ms> ...` per jailed run (`--log`: the boot-phase line), `run sandpod <ms>|fail`, `run runc <ms>|fail`, `run sandpod-nojail <ms>|fail`, `run sandpod-copy <ms>|fail` and
# `idle vmm_kib=<n> virtiofsd_kib=<n> monitor_kib=<n>`.
set -u
runs=${1:-10}
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/run-bench.XXXXXX)
cp -a "$dir/bundles/busybox" "$work/bundle"
jq '.process.args = ["true"]' "$dir/bundles/busybox/config.json" >"$work/bundle/config.json"
ms() { echo $(( $(date +%s%N) / 1000000 )); }

i=0
while [ "$i" -lt "$runs" ]; do
  for rt in sandpod runc sandpod-nojail sandpod-copy; do
    wait_refills
    [ $rt = sandpod-copy ] && rm -f /run/sandpod-bench/.templates/*/memory.spare
    t0=$(ms)
    if [ $rt = sandpod ]; then
      SANDPOD_LOG=info "$dir/bin/sandpod" --root /run/sandpod-bench --log "$work/log" run --bundle "$work/bundle" "b$i" </dev/null >/dev/null 2>"$work/err"
    elif [ $rt = sandpod-nojail ]; then
      SANDPOD_LOG=info "$dir/bin/sandpod" --root /run/sandpod-bench --log "$work/log.nojail" --no-jail run --bundle "$work/bundle" "n$i" </dev/null >/dev/null 2>"$work/err"
    elif [ $rt = sandpod-copy ]; then
      SANDPOD_LOG=info "$dir/bin/sandpod" --root /run/sandpod-bench --log "$work/log.copy" run --bundle "$work/bundle" "c$i" </dev/null >/dev/null 2>"$work/err"
    else
      runc --root /run/runc-bench run --bundle "$work/bundle" "b$i" </dev/null >/dev/null 2>"$work/err"
    fi
    rc=$?
    t1=$(ms)
    if [ $rc -eq 0 ]; then echo "run $rt $((t1 - t0))"; else echo "run $rt fail ($rc: $(head -c 300 "$work/err"))"; fi
  done
  i=$((i + 1))
done
# The phases of each jailed run (the runtime's info line, see runtime/src/sandbox/boot_phases.rs).
# (SANDPOD_LOG=info: the VMM, which inherits it, logs its set-up time, `VM ready in N ms`.)
sed -n -e 's/.*boot phases ms: /phases /p' -e 's/.*VM ready in \([0-9]*\) ms.*/phases vmm: setup=\1/p' "$work/log" 2>/dev/null

jq '.process.args = ["sleep","1000"]' "$dir/bundles/busybox/config.json" >"$work/bundle/config.json"
"$dir/bin/sandpod" --root /run/sandpod-bench run --bundle "$work/bundle" idle </dev/null >/dev/null 2>"$work/err" &
runner=$!
n=0
running() { "$dir/bin/sandpod" --root /run/sandpod-bench state idle 2>/dev/null | grep -q '"status": "running"'; }
while [ $n -lt 600 ] && ! running; do sleep 0.1; n=$((n + 1)); done
sleep 3
# The VMM runs jailed: `sandpod jail <state>/jail.json` (outside) and its child, the VMM (PID 1
# of its namespace, its command line in jail paths); both count.
jail=$(pgrep -f "sandpod jail /run/sandpod-bench/idle/")
vmm="$jail $(pgrep -P "${jail:-0}")"
fsd=$(pgrep -f "virtiofsd .*/run/sandpod-bench/idle/")
mon=$(pgrep -f "sandpod .*monitor /run/sandpod-bench/idle")
standin=$(pgrep -f "sandpod .*standin --sandbox idle ")
echo "idle vmm_kib=$(pss $vmm) virtiofsd_kib=$(pss $fsd) monitor_kib=$(pss $mon) standin_kib=$(pss $standin) pids=$(echo $vmm $fsd $mon $standin | tr ' ' ,)"
kill -TERM $runner
# (`sandpod run` exits 137: sleep, as the container's init, ignores SIGTERM and is killed.)
wait $runner
exit 0
