#!/bin/sh
# Runs inside the KVM test host. virtio-blk sequential read throughput:
#   kata: `busybox dd if=/dev/vda of=/dev/null bs=1M iflag=direct` in a sandpod-vmm guest whose
#         disk (`--disk IMG,ro`) is a MIB MiB raw image (with iflag=direct the guest's page
#         cache is bypassed: every byte crosses the device; a busybox without it gets the
#         guest's caches dropped before each run instead);
#   host: `dd if=IMG of=/dev/null bs=1M` on the test host, reading the same image file.
# The image is in the test host's page cache in both cases (read once before the runs), so the
# comparison is the device path (guest driver, queue, VMM thread, copy from the host page cache
# into guest memory) against a plain copy from the host page cache. Times are taken around dd
# where it runs (the guest's clock in the guest; GNU dd's own on the host), so the agentctl
# exec round trip is not counted.
#   blk-bench.sh [RUNS] [MIB] [VMM...]
# VMM: binary names in $SANDPOD_DIR/bin (default sandpod-vmm), one VM each, all booted before
# the runs and read in turn (with the host) RUNS times, so that two VMMs compare in one run.
# Prints `blk_read kata <mib_s>` (sandpod-vmm), `blk_read kata@<vmm> <mib_s>` (another binary),
# `blk_read host <mib_s>` lines, `blk_read <label> fail` when a read fails, and at the end per
# VMM `blk_cpu <vmm> read_ms=<guest dd wall time, all runs> blk_thread_ms=<its virtio-blk
# thread's CPU time> vcpu_ms=<its vCPU threads'>` and `blk_stats <vmm> reads=N ...` (the
# device's counters).
runs=${1:-5}
mib=${2:-256}
if [ $# -ge 2 ]; then shift 2; else shift $#; fi
[ $# -gt 0 ] || set -- sandpod-vmm
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/blk-bench.XXXXXX)
img=$work/bench.img
dd if=/dev/urandom of="$img" bs=1M count="$mib" 2>/dev/null
cat "$img" >/dev/null

# MiB/s from GNU dd's summary line (`N bytes (...) copied, S s, ...`); empty if it is missing.
mib_s() {
  sed -n 's/^\([0-9]*\) bytes .* copied, \([0-9.]*\) s.*/\1 \2/p' | tail -1 |
    awk '$2 > 0 { printf "%.1f\n", $1 / 1048576 / $2 }'
}

vms=""
n=0
for bin in "$@"; do
  n=$((n + 1))
  uds=$work/v$n.sock
  SANDPOD_LOG=warn,sandpod_vmm::devices::virtio::block=debug vmm_bin=$bin vmm_quiet=1 vmm_serve "$uds" none --disk "$img,ro" </dev/null 2>"$work/vmm$n.err" &
  vms="$vms $!"
  use_agent "$uds"
  $ctl health >/dev/null 2>&1 || { echo "blk-bench: $bin: agent unreachable"; cat "$work/vmm$n.err"; }
done
# busybox dd with iflag=direct, or the guest's caches dropped before each run.
use_agent "$work/v1.sock"
if $ctl exec -- busybox dd if=/dev/vda of=/dev/null bs=1M count=1 iflag=direct >/dev/null 2>&1; then
  direct="iflag=direct"; drop=""
else
  direct=""; drop="echo 3 > /proc/sys/vm/drop_caches; "
  echo "blk-bench: busybox dd has no iflag=direct: dropping the guest's caches before each read"
fi

# The guest's busybox dd prints no time: the guest's clock around it (date +%s%N, or
# /proc/uptime's hundredths if busybox's date has no %N).
bytes=$((mib * 1048576))
if $ctl exec -- busybox date +%s%N 2>/dev/null | grep -qE '^[0-9]{16,}$'; then
  now="busybox date +%s%N"
else
  now="busybox awk '{ printf \"%.0f\", \$1 * 1000000000 }' /proc/uptime"
  echo "blk-bench: busybox date has no %N: timing with /proc/uptime (10 ms)"
fi

# CPU ticks (utime + stime) of the VMM's threads whose name matches the awk regex $2.
ticks() {
  for t in /proc/"$1"/task/*; do
    awk -v re="$2" -v c="$(cat "$t/comm")" 'c ~ re { print $14 + $15 }' "$t/stat"
  done | awk '{ s += $1 } END { print s + 0 }'
}
n=0
for vm in $vms; do
  n=$((n + 1))
  echo "$(ticks "$vm" '^virtio-blk$') $(ticks "$vm" '^vcpu')" >"$work/ticks$n"
done

i=0
while [ "$i" -lt "$runs" ]; do
  n=0
  for bin in "$@"; do
    n=$((n + 1))
    label=kata
    [ "$bin" = sandpod-vmm ] || label=kata@$bin
    use_agent "$work/v$n.sock"
    $ctl exec -- /bin/busybox sh -c "export PATH=/bin; ${drop}t0=\$($now); busybox dd if=/dev/vda of=/dev/null bs=1M $direct && echo elapsed_ns=\$(( \$($now) - t0 ))" >"$work/dd.out" 2>&1
    v=$(awk -v b="$bytes" -v r="$mib+0 records in" '$0 == r { ok = 1 } /^elapsed_ns=/ { split($0, kv, "="); ns = kv[2] } END { if (ok && ns > 0) printf "%.1f\n", b / 1048576 / (ns / 1e9) }' "$work/dd.out")
    echo "blk_read $label ${v:-fail}"
    [ -n "$v" ] || sed "s/^/blk-bench: $label: /" "$work/dd.out"
    sed -n 's/^elapsed_ns=//p' "$work/dd.out" >>"$work/ns$n"
  done
  dd if="$img" of=/dev/null bs=1M >"$work/dd.out" 2>&1
  v=$(mib_s <"$work/dd.out")
  echo "blk_read host ${v:-fail}"
  [ -n "$v" ] || sed "s/^/blk-bench: host: /" "$work/dd.out"
  i=$((i + 1))
done
# Where the guest's read time went: the VMM's device thread and vCPU threads (CPU time over all
# the runs) against the runs' summed wall time.
n=0
for vm in $vms; do
  n=$((n + 1))
  hz=$(getconf CLK_TCK)
  read -r b0 c0 <"$work/ticks$n"
  awk -v bin="$(echo "$@" | cut -d' ' -f"$n")" -v b="$(( $(ticks "$vm" '^virtio-blk$') - b0 ))" \
    -v c="$(( $(ticks "$vm" '^vcpu') - c0 ))" -v hz="$hz" \
    '{ s += $1 } END { printf "blk_cpu %s read_ms=%d blk_thread_ms=%d vcpu_ms=%d\n", bin, s / 1e6, b * 1000 / hz, c * 1000 / hz }' "$work/ns$n"
done
for vm in $vms; do kill "$vm"; done
for vm in $vms; do wait "$vm" 2>/dev/null; done
n=0
for bin in "$@"; do
  n=$((n + 1))
  # The device's request counters (reads: how the guest split the MiB reads).
  sed -n "s/.*virtio-blk .*stopped: /blk_stats $bin /p" "$work/vmm$n.err"
  if grep -qi "panicked\|error" "$work/vmm$n.err"; then echo "blk-bench: $bin stderr:"; cat "$work/vmm$n.err"; fi
done
rm -rf "$work"
