#!/bin/sh
# Runs inside the KVM test host. vsock benchmarks over sandpod-vmm's hybrid vsock and the agent:
#   vsock throughput: MIB MiB of guest stdout streamed to the host (agentctl exec of
#   `busybox head -c`), against the same bytes through a host-local pipe;
#   exec round trip: `sandpod-agentctl exec -- busybox true` in the booted VM, RUNS times.
#   vsock-bench.sh [MIB] [RUNS]
# Prints `vsock guest_ms=<ms> pipe_ms=<ms> mib=<n>` and `exec <ms>` lines.
mib=${1:-256}
runs=${2:-10}
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/vsock-bench.XXXXXX)
uds=$work/v.sock
vmm_quiet=1 vmm_serve "$uds" none </dev/null 2>"$work/vmm.err" &
vmm=$!
use_agent "$uds"
$ctl health >/dev/null || { echo "vsock-bench: agent unreachable"; cat "$work/vmm.err"; kill $vmm; exit 1; }
bytes=$((mib * 1024 * 1024))
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

t0=$(date +%s%N)
got=$($ctl exec -- busybox head -c "$bytes" /dev/zero | wc -c)
guest_ms=$(ms "$t0")
t0=$(date +%s%N)
head -c "$bytes" /dev/zero | cat | wc -c >/dev/null
pipe_ms=$(ms "$t0")
echo "vsock guest_ms=$guest_ms pipe_ms=$pipe_ms mib=$mib bytes_ok=$([ "$got" = "$bytes" ] && echo yes || echo "no($got)")"

i=0
while [ "$i" -lt "$runs" ]; do
  t0=$(date +%s%N)
  $ctl exec -- busybox true
  echo "exec $(ms "$t0")"
  i=$((i + 1))
done
kill "$vmm"
wait "$vmm" 2>/dev/null
rm -rf "$work"
