#!/bin/sh
# N sandboxes (default 10) started at once from one VM template (`sandpod run` of a sleeping
# container, N in the background together), after one start has made the template: all of them
# run, all were restored (the boot-phase lines say start=restored), each answers an exec-free
# check (`sandpod state` running); then the PSS of the N idle pods, and all are stopped with
# nothing left; then a corrupt template, its remaking and another initramfs's template (see
# below). Prints `bench pod_burst n=N wall_ms=…` (the start of the N runs to the moment all
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

# The template's spare memory: made again after the burst (nothing_left waited for the refills),
# taken by the next start, whose VMM maps it instead of copying the template's memory, and made
# again after that start.
mapped_count() { grep -c 'the prepared file mapped' "$work/sandpod.log"; }
spare=$(ls "$ROOT"/.templates/*/memory.spare 2>/dev/null | head -1)
check spare-ready test -n "$spare"
mapped=$(mapped_count)
mkbundle spare "$(args '["echo","hi"]')"
SANDPOD_LOG=info run spare
check spare-run sh -c "[ $rc = 0 ] && [ \"\$(cat '$work/spare.out')\" = hi ]"
check spare-mapped test "$(mapped_count)" = $((mapped + 1))
wait_refills
check spare-made-again test -f "$spare"
check spare-no-name-left sh -c "! find '$ROOT' -name memory.ready | grep -q ."

# The template's inputs and its files, through `sandpod run`:
# - a corrupt template (bytes of its state file overwritten, so its digest fails in the VMM):
#   the start warns, boots the same sandbox cold and removes the template;
# - the next start makes it again and is restored from it;
# - another initramfs (a copy: another file, so another key): a template of its own, the first
#   one kept.
restored_count() { grep -c 'boot phases ms: .*start=restored' "$work/sandpod.log"; }
made_count() { grep -c 'making the VM template' "$work/sandpod.log"; }
templates() { ls "$ROOT"/.templates/*/state.bin 2>/dev/null | wc -l; }
state=$(ls "$ROOT"/.templates/*/state.bin 2>/dev/null | head -1)
check template-present test -n "$state" -a "$(templates)" = 1
printf 'corrupt!' | dd of="$state" bs=1 seek=64 conv=notrunc 2>/dev/null
mkbundle corrupt "$(args '["echo","hi"]')"
SANDPOD_LOG=info run corrupt
check corrupt-template-run sh -c "[ $rc = 0 ] && [ \"\$(cat '$work/corrupt.out')\" = hi ]"
check corrupt-template-warned grep -q 'failed; booting it cold' "$work/sandpod.log"
check corrupt-template-booted-cold grep -q 'start=cold_after_failed_restore' "$work/sandpod.log"
check corrupt-template-removed test ! -e "$state"
made=$(made_count); restored=$(restored_count)
mkbundle remade "$(args '["echo","hi"]')"
SANDPOD_LOG=info run remade
check template-remade sh -c "[ $rc = 0 ] && [ $(made_count) = $((made + 1)) ] && [ -s '$state' ]"
check template-remade-restored test "$(restored_count)" = $((restored + 1))
cp "$dir/guest/initramfs.cpio" "$work/other-initramfs.cpio"
printf '[hypervisor]\ninitrd = "%s"\n' "$work/other-initramfs.cpio" >"$work/other.toml"
made=$(made_count); restored=$(restored_count)
mkbundle other "$(args '["echo","hi"]')"
SANDPOD_CONFIG=$work/other.toml SANDPOD_LOG=info run other
check other-initramfs-run sh -c "[ $rc = 0 ] && [ \"\$(cat '$work/other.out')\" = hi ]"
check other-initramfs-new-template test "$(made_count)" = $((made + 1)) -a "$(templates)" = 2
check other-initramfs-restored test "$(restored_count)" = $((restored + 1))
check nothing-left-after-templates nothing_left
finish burst-check
