#!/usr/bin/env bash
# `make bench`: Sandpod's benchmarks, measured side by side in one KVM test host run.
# Prints `bench <name> key=value …` lines (medians; ratios ours/theirs).
source "$(dirname "$0")/lib.sh"
RUNS=${SANDPOD_BENCH_RUNS:-10}
VSOCK_MIB=${SANDPOD_BENCH_VSOCK_MIB:-256}
PODS=${SANDPOD_BENCH_PODS:-10}
FS_RUNS=${SANDPOD_BENCH_FS_RUNS:-3}
BLK_MIB=${SANDPOD_BENCH_BLK_MIB:-256}

# median [DECIMALS]: the median of stdin's numbers (nan if none), the mean of the middle two
# printed with DECIMALS digits (default 0).
median() { sort -n | awk -v d="${1:-0}" '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else printf "%." d "f\n", (a[NR/2]+a[NR/2+1])/2}'; }

raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
# (Every bench of the list in one test-host run: allow it 90 minutes.)
SANDPOD_TESTHOST_TIMEOUT=${SANDPOD_TESTHOST_TIMEOUT:-5400} SANDPOD_TESTHOST_NOBUILD=1 "$REPO_ROOT/tests/kvm-host/run" -- sh -c \
  "/sandpod/scripts/boot-bench.sh $RUNS 1 128 sandpod qemu sandpod-noseccomp qemu; /sandpod/scripts/vmm-overhead.sh 5; \
   /sandpod/scripts/snapshot-check.sh 5 >/tmp/snapshot-check.out; grep '^bench restore_ms' /tmp/snapshot-check.out; \
   /sandpod/scripts/burst-check.sh 10 >/tmp/burst-check.out; grep '^bench ' /tmp/burst-check.out; \
   /sandpod/scripts/vsock-bench.sh $VSOCK_MIB $RUNS; /sandpod/scripts/blk-bench.sh $RUNS $BLK_MIB; /sandpod/scripts/run-bench.sh $RUNS; \
   /sandpod/scripts/docker-bench.sh $RUNS; /sandpod/scripts/net-bench.sh 3 16; /sandpod/scripts/fs-bench.sh $FS_RUNS; /sandpod/scripts/vmm-io-bench.sh $FS_RUNS sandpod qemu; /sandpod/scripts/shim-bench.sh $RUNS $PODS; \
   HANDLER=kata SCENARIOS=pod-start ROUNDS=$RUNS ARGV_LOG= CRI_TIMEOUT=3000 /sandpod/scripts/cri-check.sh" |
  tee "$raw" >&2

ours=$(awk '$1=="boot" && $2=="sandpod" && $3!="fail" {print $3}' "$raw" | median)
theirs=$(awk '$1=="boot" && $2=="qemu" && $3!="fail" {print $3}' "$raw" | median)
fails=$(awk '$1=="boot" && $3=="fail"' "$raw" | wc -l)
ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { if (b > 0 && a > 0) printf "%.2f", a / b; else print "nan" }')
echo "bench boot_ms sandpod=$ours qemu=$theirs ratio=$ratio runs=$RUNS vcpus=1 mem_mib=128 failed=$fails"
# What the VMM's seccomp filters cost at boot: the same VMM with --no-seccomp, in the same runs.
off=$(awk '$1=="boot" && $2=="sandpod-noseccomp" && $3!="fail" {print $3}' "$raw" | median)
cost=$(awk -v a="$ours" -v b="$off" 'BEGIN { if (b > 0 && a > 0) printf "%.3f", a / b; else print "nan" }')
echo "bench boot_seccomp_ms filters=$ours no_seccomp=$off ratio=$cost runs=$RUNS"
rss=$(sed -n 's/^overhead rss_kib=\([0-9]*\) .*/\1/p' "$raw" | median)
pss=$(sed -n 's/^overhead .*pss_kib=\([0-9]*\)/\1/p' "$raw" | median)
echo "bench vmm_overhead_kib rss=$rss pss=$pss"
# A VM restored from a template vs a cold boot, VMM start to the agent answering (medians, one
# line from snapshot-check.sh).
grep '^bench restore_ms' "$raw" || echo "bench restore_ms template=nan cold=nan ratio=nan (snapshot-check failed)"
# Ten `sandpod run`s at once from one template, and the PSS of the ten idle pods (burst-check.sh).
grep '^bench pod_burst' "$raw" || echo "bench pod_burst n=10 wall_ms=nan (burst-check failed)"
grep '^bench idle_pod_pss_mib pods=' "$raw" || echo "bench idle_pod_pss_mib pods=10 per_pod=nan (burst-check failed)"

guest_ms=$(sed -n 's/^vsock guest_ms=\([0-9]*\) .*/\1/p' "$raw")
pipe_ms=$(sed -n 's/^vsock .*pipe_ms=\([0-9]*\) .*/\1/p' "$raw")
bytes_ok=$(sed -n 's/^vsock .*bytes_ok=\(.*\)/\1/p' "$raw")
awk -v mib="$VSOCK_MIB" -v g="${guest_ms:-0}" -v p="${pipe_ms:-0}" -v ok="${bytes_ok:-no}" 'BEGIN {
  if (g > 0 && p > 0) printf "bench vsock_mib_s sandpod=%.1f host_pipe=%.1f ratio=%.2f mib=%d intact=%s\n", mib * 1000 / g, mib * 1000 / p, p / g, mib, ok
  else print "bench vsock_mib_s sandpod=nan host_pipe=nan ratio=nan (vsock-bench failed)" }'
# virtio-blk: sequential O_DIRECT read in the guest vs dd of the same image on the host (both
# from the host page cache; higher is better: ratio kata/host).
k=$(awk '$1=="blk_read" && $2=="kata" && $3!="fail" {print $3}' "$raw" | median 1)
h=$(awk '$1=="blk_read" && $2=="host" && $3!="fail" {print $3}' "$raw" | median 1)
awk -v a="$k" -v b="$h" -v n="$RUNS" -v m="$BLK_MIB" 'BEGIN { printf "bench blk_read_mib_s kata=%s host=%s ratio=%s runs=%d mib=%d\n", a, b, (a > 0 && b > 0) ? sprintf("%.3f", a / b) : "nan", n, m }'
echo "bench exec_ms median=$(awk '$1=="exec" {print $2}' "$raw" | median) runs=$RUNS"

ours=$(awk '$1=="run" && $2=="sandpod" && $3!="fail" {print $3}' "$raw" | median)
theirs=$(awk '$1=="run" && $2=="runc" && $3!="fail" {print $3}' "$raw" | median)
fails=$(awk '$1=="run" && $3=="fail"' "$raw" | wc -l)
ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { if (b > 0 && a > 0) printf "%.1f", a / b; else print "nan" }')
echo "bench run_true_ms sandpod=$ours runc=$theirs ratio=$ratio runs=$RUNS failed=$fails"
# Where a `sandpod run`'s start goes, phase by phase (medians of the jailed runs' log lines).
awk '$1=="phases" { p = ""; for (i = 2; i <= NF; i++) { if ($i ~ /:$/) { p = substr($i, 1, length($i) - 1) "_"; continue } if (split($i, kv, "=") == 2 && kv[2] ~ /^[0-9]+$/) print p kv[1], kv[2] } }' "$raw" |
  sort -k1,1 -k2,2n | awk '{ v[$1] = v[$1] " " $2; n[$1]++ } END {
    line = "bench boot_phases_ms"
    split("prepare monitor vm_to_agent create_sandbox network create_container total monitor_virtiofsd_ready monitor_vmm_started vmm_setup guest_init guest_switch_root guest_init_to_serving", order, " ")
    for (j = 1; j <= 13; j++) { k = order[j]; if (!(k in n)) continue; split(substr(v[k], 2), a, " "); line = line " " k "=" a[int((n[k] + 1) / 2)] }
    print line }'
# What the VMM's jail costs: `sandpod --no-jail` in the same rounds.
off=$(awk '$1=="run" && $2=="sandpod-nojail" && $3!="fail" {print $3}' "$raw" | median)
cost=$(awk -v a="$ours" -v b="$off" 'BEGIN { if (b > 0 && a > 0) printf "%.3f", a / b; else print "nan" }')
echo "bench run_true_jail_ms jailed=$ours no_jail=$off ratio=$cost runs=$RUNS"
# What the template's spare memory saves: the jailed run with the spare removed first (the
# restore copies the template's memory), in the same rounds.
copy=$(awk '$1=="run" && $2=="sandpod-copy" && $3!="fail" {print $3}' "$raw" | median)
gain=$(awk -v a="$ours" -v b="$copy" 'BEGIN { if (b > 0 && a > 0) printf "%.2f", a / b; else print "nan" }')
echo "bench run_true_spare_ms spare=$ours copy=$copy ratio=$gain runs=$RUNS"
awk '$1=="idle" {
  for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
  printf "bench idle_pod_pss_mib vmm=%.1f virtiofsd=%.1f monitor=%.1f standin=%.1f total=%.1f\n", v["vmm_kib"]/1024, v["virtiofsd_kib"]/1024, v["monitor_kib"]/1024, v["standin_kib"]/1024, (v["vmm_kib"]+v["virtiofsd_kib"]+v["monitor_kib"]+v["standin_kib"])/1024 }' "$raw"

# ours vs theirs (medians) of `<tag> kata|runc <ms>` lines.
pair() {
  k=$(awk -v t="$1" '$1==t && $2=="kata" && $3!="fail" {print $3}' "$raw" | median)
  r=$(awk -v t="$1" '$1==t && $2=="runc" && $3!="fail" {print $3}' "$raw" | median)
  f=$(awk -v t="$1" '$1==t && $3=="fail"' "$raw" | wc -l)
  ratio=$(awk -v a="$k" -v b="$r" 'BEGIN { if (b > 0 && a > 0) printf "%.1f", a / b; else print "nan" }')
  echo "bench $2 kata=$k runc=$r ratio=$ratio runs=$RUNS failed=$f"
}
pair docker_run docker_run_ms
pair docker_exec docker_exec_ms
pair ctr_run ctr_run_ms
pair pod_start pod_start_ms
# Network: throughput container -> host (higher is better: ratio kata/runc) and request/response
# latency host -> container (medians).
k=$(awk '$1=="net_mbit" && $2=="kata" && $3!="fail" {print $3}' "$raw" | median 1)
r=$(awk '$1=="net_mbit" && $2=="runc" && $3!="fail" {print $3}' "$raw" | median 1)
f=$(awk '$1=="net_mbit" && $3=="fail"' "$raw" | wc -l)
awk -v a="$k" -v b="$r" -v f="$f" 'BEGIN { printf "bench net_mbit kata=%s runc=%s ratio=%s failed=%d\n", a, b, (a > 0 && b > 0) ? sprintf("%.2f", a / b) : "nan", f }'
pair net_rr net_rr_us
# The container's rootfs: kata (virtio-fs, the default cache mode) vs runc on the same files
# (fs-bench.sh): a 64 MiB sequential read (MiB/s, higher is better) and 2000 small files
# unpacked, found and read (ms).
k=$(awk '$1=="fs_read" && $2=="kata" && $3!="fail" {print $3}' "$raw" | median 1)
r=$(awk '$1=="fs_read" && $2=="runc" && $3!="fail" {print $3}' "$raw" | median 1)
f=$(awk '$1=="fs_read" && $3=="fail"' "$raw" | wc -l)
awk -v a="$k" -v b="$r" -v f="$f" -v n="$FS_RUNS" 'BEGIN { printf "bench fs_read_mib_s kata=%s runc=%s ratio=%s runs=%d failed=%d\n", a, b, (a > 0 && b > 0) ? sprintf("%.2f", a / b) : "nan", n, f }'
RUNS=$FS_RUNS pair fs_small fs_small_files_ms
# (What the small files cost under kata: the virtio-fs interrupts, about one per request.)
echo "bench fs_small_files_irqs kata=$(awk '$1=="fs_irqs" && $2=="kata" {print $3}' "$raw" | median) runs=$FS_RUNS"
# virtio-fs and virtio-blk through our VMM vs QEMU's (same guest kernel, workload, virtiofsd,
# share and disk image): whether the VMM is what the figures against runc and the host wait on.
vmmio() { # VMM FIELD: the median of the FIELD=N values of `vmmio VMM ...` lines
  awk -v v="$1" -v f="$2=" '$1=="vmmio" && $2==v && $3!="fail" { for (i = 3; i <= NF; i++) if (index($i, f) == 1) print substr($i, length(f) + 1) }' "$raw" | median
}
f=$(awk '$1=="vmmio" && $3=="fail"' "$raw" | wc -l)
# vmm_pair NAME FIELD MIB: `bench NAME sandpod=… qemu=… ratio=…`, in MiB/s (MIB read in FIELD
# ms, ratio sandpod/qemu) or, without MIB, in ms (ratio sandpod/qemu: below 1 is faster).
vmm_pair() {
  awk -v name="$1" -v s="$(vmmio sandpod "$2")" -v q="$(vmmio qemu "$2")" -v mib="${3:-}" -v f="$f" -v n="$FS_RUNS" 'BEGIN {
    if (mib != "") { s = (s > 0) ? mib * 1000 / s : 0; q = (q > 0) ? mib * 1000 / q : 0; fmt = "%.1f" } else fmt = "%d"
    printf "bench %s sandpod=%s qemu=%s ratio=%s runs=%d failed=%d\n", name, (s > 0) ? sprintf(fmt, s) : "nan",
      (q > 0) ? sprintf(fmt, q) : "nan", (s > 0 && q > 0) ? sprintf("%.2f", s / q) : "nan", n, f }'
}
vmm_pair fs_vmm_read_mib_s fs_read_ms 64
vmm_pair fs_vmm_small_files_ms fs_small_ms
vmm_pair blk_vmm_read_mib_s blk_read_ms 256
echo "bench fs_vmm_small_files_irqs sandpod=$(vmmio sandpod fs_irqs) qemu=$(vmmio qemu fs_irqs) runs=$FS_RUNS"
awk '$1=="density" && $2!="fail" {
  for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
  n = v["pods"]
  printf "bench pod_density pods=%d pss_mib_per_pod=%.1f shim=%.1f vmm=%.1f virtiofsd=%.1f monitor=%.1f\n", n, v["total_kib"]/1024/n, v["shim_kib"]/1024/n, v["vmm_kib"]/1024/n, v["virtiofsd_kib"]/1024/n, v["monitor_kib"]/1024/n }
  $1=="density" && $2=="fail" { print "bench pod_density fail " $0 }' "$raw"
