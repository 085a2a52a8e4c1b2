#!/bin/sh
# Runs inside the KVM test host. Boots sandpod-vmm (1 vCPU, 128 MiB) with the agent left serving,
# waits for the ready line, and prints the VMM's own memory: RSS and PSS of every mapping except
# the guest RAM (the memfd named "sandpod-guest-ram"). Repeats RUNS times.
#   vmm-overhead.sh [RUNS]
# Prints `overhead rss_kib=<n> pss_kib=<n>` per run.
. "$(dirname "$0")/lib.sh"
runs=${1:-3}
i=0
while [ "$i" -lt "$runs" ]; do
  log=$(mktemp)
  # (No vsock: the production initramfs, 1 vCPU, 128 MiB.)
  vmm_initrd=initramfs.cpio vmm_mem_mib=128 vmm_quiet=1 vmm_serve "" "file:$log" --vcpus 1 \
    </dev/null >/dev/null 2>&1 &
  pid=$!
  n=0
  until grep -q 'sandpod-agent ready' "$log" 2>/dev/null; do
    sleep 0.2; n=$((n + 1))
    [ "$n" -gt 600 ] && break
  done
  sleep 1
  awk '/^[0-9a-f]+-[0-9a-f]+ / { guest = ($0 ~ /sandpod-guest-ram/) }
       /^Rss:/ { if (!guest) rss += $2 }
       /^Pss:/ { if (!guest) pss += $2 }
       END { printf "overhead rss_kib=%d pss_kib=%d\n", rss, pss }' "/proc/$pid/smaps"
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  rm -f "$log"
  i=$((i + 1))
done
