#!/bin/sh
# Runs inside the KVM test host, against containerd 1.6 (started here): `ctr run --rm IMG true`
# with Sandpod's shim v2 (io.containerd.kata.v2, /sandpod/bin/containerd-shim-kata-v2 on
# containerd's PATH) vs containerd's runc shim (io.containerd.runc.v2), alternating, RUNS times
# each; then PODS idle pods (`ctr run -d ... sleep`, one VM each) and the whole system's PSS of
# their host processes (shims, the VMMs and their jails, virtiofsd, monitors), per pod.
#   shim-bench.sh [RUNS [PODS]]
# Prints `ctr_run kata|runc <ms>|fail` and
# `density pods=N shim_kib=.. vmm_kib=.. virtiofsd_kib=.. monitor_kib=.. total_kib=..` (sums
# over the N pods), or `density fail (...)`.
RUNTIME=kata
. "$(dirname "$0")/engines-lib.sh"
runs=${1:-10}
pods=${2:-10}
export PATH="$dir/bin:$PATH"
ms() { echo $(( $(date +%s%N) / 1000000 )); }
start_containerd >/dev/null || { echo "shim-bench: containerd did not start"; exit 1; }
load_ctr_image >/dev/null || { echo "shim-bench: ctr images import failed"; exit 1; }

i=0
while [ "$i" -lt "$runs" ]; do
  for rt in kata runc; do
    t0=$(ms)
    if timeout -k 5 300 ctr run --rm --runtime "io.containerd.$rt.v2" "$CTR_IMG" "b-$rt-$i" true \
      </dev/null >/dev/null 2>"$work/err"; then
      echo "ctr_run $rt $(( $(ms) - t0 ))"
    else
      echo "ctr_run $rt fail ($(head -c 300 "$work/err"))"
    fi
  done
  i=$((i + 1))
done

# pss PIDS...: their summed Pss in KiB.
i=0
while [ "$i" -lt "$pods" ]; do
  timeout -k 5 300 ctr run -d --runtime io.containerd.kata.v2 "$CTR_IMG" "idle-$i" sleep 100000 \
    </dev/null >/dev/null 2>"$work/err" || echo "shim-bench: pod idle-$i: $(head -c 300 "$work/err")"
  i=$((i + 1))
done
running=$(ctr tasks ls | grep -c '^idle-[0-9]* .*RUNNING')
sleep 5
# (comm is at most 15 characters: containerd-shim-kata-v2 is "containerd-shim"; runc's shim
# is not running now, the one-shot runs are gone.)
shim=$(pgrep -x containerd-shim)
jails=$(pgrep -f "sandpod jail ")
vmm="$jails $(for j in $jails; do pgrep -P "$j"; done)"
fsd=$(pgrep -x virtiofsd)
mon=$(pgrep -f "sandpod.* monitor ")
if [ "$running" = "$pods" ]; then
  s=$(pss $shim) v=$(pss $vmm) f=$(pss $fsd) m=$(pss $mon)
  echo "density pods=$pods shim_kib=$s vmm_kib=$v virtiofsd_kib=$f monitor_kib=$m total_kib=$((s + v + f + m)) procs=$(echo $shim $vmm $fsd $mon | wc -w)"
else
  echo "density fail ($running of $pods pods running)"
fi
cleanup_all
stop_containerd
exit 0
