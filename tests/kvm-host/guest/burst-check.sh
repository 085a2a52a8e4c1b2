#!/bin/sh
# N sandboxes (default 10) started at once from one VM template (`sandpod run` of a sleeping
# container, N in the background together), after one start has made the template: all of them
# run, all were restored (the boot-phase lines say start=restored), each answers an exec-free
# check (`sandpod state` running); then the PSS of the N idle pods, and all are stopped with
# nothing left. Prints `bench pod_burst n=N wall_ms=…` (the start of the N runs to the moment all
# are running) and `bench idle_pod_pss_mib pods=N vmm=… virtiofsd=… monitor=… standin=… total=…
# per_pod=…`, and ends with `burst-check: N failed`.
. "$(dirname "$0")/containers-lib.sh"
pods=${1:-10}  # (not n: containers-lib.sh's run sets n)
ms() { echo $(( $(date +%s%N) / 1000000 )); }
# The template first: this start makes it.
mkbundle warm "$(args '["true"]')"
SANDPOD_LOG=info run warm
check warm-start rc_is 0
i=1
while [ $i -le $pods ]; do mkbundle "b$i" "$(args '["sleep","1000"]')"; i=$((i + 1)); done
t0=$(ms)
i=1
while [ $i -le $pods ]; do
  # (Ten VMs at once on the test host's emulated CPUs: each may take longer than the default
  # 60 s to answer, and a restore that times out falls back to a cold boot.)
  SANDPOD_LOG=info "$dir/bin/sandpod" --root "$ROOT" --log "$work/burst.log" run --boot-timeout 300 --kill-after 2 \
    --bundle "$work/b$i" "b$i" </dev/null >"$work/b$i.out" 2>"$work/b$i.err" &
  i=$((i + 1))
done
all_running() {
  j=1
  while [ $j -le $pods ]; do
    sandpod state "b$j" 2>/dev/null | grep -q '"status": "running"' || return 1
    j=$((j + 1))
  done
}
wait_for 600 all_running; up=$?
wall=$(($(ms) - t0))
running=0
i=1
while [ $i -le $pods ]; do
  sandpod state "b$i" 2>/dev/null | grep -q '"status": "running"' && running=$((running + 1))
  i=$((i + 1))
done
restored=$(grep -c 'boot phases ms: .*start=restored' "$work/burst.log")
echo "burst: $running of $pods running after ${wall} ms; $restored restored; vm_to_agent ms: $(sed -n 's/.*boot phases ms: .*vm_to_agent=\([0-9]*\).*/\1/p' "$work/burst.log" | sort -n | tr '\n' ' ')"
grep -h 'WARN\|ERROR' "$work/burst.log" | head -5
check burst-all-running test "$up" = 0 -a "$running" = "$pods"
check burst-all-restored test "$restored" = "$pods"
echo "bench pod_burst n=$pods wall_ms=$wall running=$running restored=$restored"
sleep 3
vmm=""; fsd=""; mon=""; standin=""
i=1
while [ $i -le $pods ]; do
  jail=$(pgrep -f "sandpod jail $ROOT/b$i/")
  vmm="$vmm $jail $(pgrep -P "${jail:-0}")"
  fsd="$fsd $(pgrep -f "virtiofsd .*$ROOT/b$i/")"
  mon="$mon $(pgrep -f "sandpod .*monitor $ROOT/b$i\$")"
  standin="$standin $(pgrep -f "sandpod .*standin --sandbox b$i ")"
  i=$((i + 1))
done
# shellcheck disable=SC2086 # (lists of pids)
awk -v n="$pods" -v v="$(pss $vmm)" -v f="$(pss $fsd)" -v m="$(pss $mon)" -v s="$(pss $standin)" 'BEGIN {
  t = v + f + m + s
  printf "bench idle_pod_pss_mib pods=%d vmm=%.1f virtiofsd=%.1f monitor=%.1f standin=%.1f total=%.1f per_pod=%.1f\n", n, v/1024, f/1024, m/1024, s/1024, t/1024, t/1024/n }'
i=1
while [ $i -le $pods ]; do sandpod kill "b$i" KILL 2>/dev/null; i=$((i + 1)); done
wait
i=1
while [ $i -le $pods ]; do sandpod delete --force "b$i" 2>/dev/null; i=$((i + 1)); done
check nothing-left-after-burst nothing_left
finish burst-check
