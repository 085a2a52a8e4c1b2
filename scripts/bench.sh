#!/usr/bin/env bash
# `make bench`: Sandpod's benchmarks, measured side by side in one KVM test host run.
# Prints `bench <name> key=value …` lines (medians; ratios ours/theirs).
source "$(dirname "$0")/lib.sh"
RUNS=${SANDPOD_BENCH_RUNS:-10}

median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else printf "%d\n", (a[NR/2]+a[NR/2+1])/2}'; }

raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
SANDPOD_TESTHOST_NOBUILD=1 "$REPO_ROOT/tests/kvm-host/run" -- sh -c \
  "/sandpod/scripts/boot-bench.sh $RUNS 1 128 sandpod qemu; /sandpod/scripts/vmm-overhead.sh 5" |
  tee "$raw" >&2

ours=$(awk '$1=="boot" && $2=="sandpod" && $3!="fail" {print $3}' "$raw" | median)
theirs=$(awk '$1=="boot" && $2=="qemu" && $3!="fail" {print $3}' "$raw" | median)
fails=$(awk '$1=="boot" && $3=="fail"' "$raw" | wc -l)
ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { if (b > 0 && a > 0) printf "%.2f", a / b; else print "nan" }')
echo "bench boot_ms sandpod=$ours qemu=$theirs ratio=$ratio runs=$RUNS vcpus=1 mem_mib=128 failed=$fails"
rss=$(sed -n 's/^overhead rss_kib=\([0-9]*\) .*/\1/p' "$raw" | median)
pss=$(sed -n 's/^overhead .*pss_kib=\([0-9]*\)/\1/p' "$raw" | median)
echo "bench vmm_overhead_kib rss=$rss pss=$pss"
