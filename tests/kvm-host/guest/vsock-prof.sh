#!/bin/sh
# vsock throughput diagnostics (not a test; see docs/benchmarks.md): MIB MiB guest to host
# (`busybox head`, then `dd bs=64k`), the same head into a guest-local pipe, host to guest, 5 execs; after each, the guest's virtio and
# timer interrupt counts and the VMM threads' CPU ticks (utime+stime).
#   tests/kvm-host/run -- /sandpod/scripts/vsock-prof.sh [MIB] [INITRAMFS in guest/] [VMM in bin/]
. "$(dirname "$0")/lib.sh"
mib=${1:-32}
initrd=${2:-initramfs-test.cpio}
vmm_bin=${3:-sandpod-vmm}
echo "=== vsock-prof: $mib MiB, $vmm_bin, $initrd"
work=$(mktemp -d /tmp/vprof.XXXXXX)
uds=$work/v.sock
vmm_initrd=$initrd vmm_quiet=1 vmm_serve "$uds" none </dev/null 2>"$work/vmm.err" &
vmm=$!
use_agent "$uds"
$ctl health
bytes=$((mib * 1024 * 1024))
ticks() { for t in /proc/$vmm/task/*; do printf '%s=%s ' "$(cat $t/comm)" "$(awk '{print $14 + $15}' $t/stat)"; done; echo; }
irqs() { $ctl exec -- cat /proc/interrupts | grep -i -E 'virtio|LOC|ttyS' | tr -s ' '; }
echo "--- before"; irqs; ticks
t0=$(date +%s%N)
got=$($ctl exec -- busybox head -c "$bytes" /dev/zero | wc -c)
echo "guest->host head: $got bytes in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
irqs; ticks
t0=$(date +%s%N)
got=$($ctl exec -- busybox dd if=/dev/zero bs=65536 count=$((mib * 16)) 2>/dev/null | wc -c)
echo "guest->host dd 64k: $got bytes in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
irqs; ticks
t0=$(date +%s%N)
$ctl exec -- busybox sh -c "busybox head -c $bytes /dev/zero | busybox cat >/dev/null"
echo "guest-local head | cat (no vsock): $(( ($(date +%s%N) - t0) / 1000000 )) ms"
irqs; ticks
t0=$(date +%s%N)
got=$(head -c "$bytes" /dev/zero | $ctl exec -- busybox wc -c)
echo "host->guest: $got bytes in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
irqs; ticks
t0=$(date +%s%N)
for i in 1 2 3 4 5; do $ctl exec -- busybox true; done
echo "5 execs: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
irqs; ticks
kill $vmm; wait $vmm 2>/dev/null
