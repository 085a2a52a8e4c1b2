#!/usr/bin/env bash
# `make bench`: Sandpod's benchmarks, measured side by side in one KVM test host run.
# Prints `bench <name> key=value …` lines (medians; ratios ours/theirs).
source "$(dirname "$0")/lib.sh"
RUNS=${SANDPOD_BENCH_RUNS:-10}

median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else printf "%d\n", (a[NR/2]+a[NR/2+1])/2}'; }

raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
SANDPOD_TESTHOST_NOBUILD=1 "$REPO_ROOT/tests/kvm-host/run" -- \
  /sandpod/scripts/boot-bench.sh "$RUNS" 1 128 qemu | tee "$raw" >&2

qemu_ms=$(awk '$1=="boot" && $2=="qemu" && $3!="fail" {print $3}' "$raw" | median)
fails=$(awk '$1=="boot" && $3=="fail"' "$raw" | wc -l)
echo "bench boot_ms qemu=$qemu_ms runs=$RUNS vcpus=1 mem_mib=128 failed=$fails"
