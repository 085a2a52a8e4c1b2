#!/bin/sh
# Kubernetes' CRI against containerd 1.6's CRI plugin in the KVM test host, through the runtime
# handler HANDLER (runc: io.containerd.runc.v2, the control; kata: io.containerd.kata.v2, i.e.
# containerd-shim-kata-v2 from /sandpod/bin): containerd started with a CRI configuration of its
# own, the offline busybox and pause images imported into its k8s.io namespace, then the CRI
# client sandpod-cri (tests/src/bin/sandpod-cri.rs, playing kubelet) runs its scenarios (pods with
# two containers, five pods at once, bad input, the pod-start bench); then a leak check and
# containerd stopped. Prints `check <name> ok|FAIL` lines (sandpod-cri's own too) and ends with
# `cri-check.sh: N failed`.
#
#   HANDLER    runc (default) or kata
#   SCENARIOS  sandpod-cri's scenarios (default: version pod net five bad-input pod-start)
#   ROUNDS     pod-start rounds (default 3)
#   T          seconds one CRI call or engine command may take (default 240)
#   CRI_TIMEOUT  seconds the scenarios' sandpod-cri run may take (default 700)
#   CRI_ARGS   more sandpod-cri options (e.g. --print-json; --pid-namespace container or --image
#              NAME: controls under which checks must fail)
#   ARGV_LOG   the file every shim command line containerd runs is logged to (default
#              /run/sandpod-cri/shim-argv.log; empty: no logging wrapper), summarized at the end
#
# What the test host needs for the CRI (found out here): no systemd, so cgroupfs (runc's
# SystemdCgroup = false, the default) with the pods' cgroup parents under /sys/fs/cgroup/sandpod-cri;
# restrict_oom_score_adj (no CAP_SYS_RESOURCE for raising oom_score_adj); no AppArmor; a CNI
# bridge network (the plugins of /usr/lib/cni; RunPodSandbox needs an IP on eth0), its host-local
# leases under /run/sandpod-cri/ipam; the pause image: busybox `sleep 2147483647`
# (scripts/build-image-tar.sh), which StopPodSandbox's SIGKILL stops.
. "$(dirname "$0")/lib.sh"
HANDLER=${HANDLER:-runc}
SCENARIOS=${SCENARIOS:-version pod net five bad-input pod-start}
ROUNDS=${ROUNDS:-3}
T=${T:-240}
CRI=/run/sandpod-cri
ARGV_LOG=${ARGV_LOG-$CRI/shim-argv.log}
IMG=docker.io/sandpod-test/busybox:latest
PAUSE_IMG=docker.io/sandpod-test/pause:latest
BRIDGE=sandpodcri0
work=$(mktemp -d /tmp/cri.XXXXXX)
script_start=$(date +%s)
took() { echo "($(( $(date +%s) - script_start )) s)"; }
# containerd finds the shims (containerd-shim-runc-v2, containerd-shim-kata-v2) on its PATH.
export PATH="$dir/bin:$PATH"
case $HANDLER in
  runc|kata) ;;
  *) echo "HANDLER must be runc or kata, not '$HANDLER'"; exit 2 ;;
esac
echo "cri-check: HANDLER=$HANDLER, scenarios: $SCENARIOS"
rm -rf "$CRI" && mkdir -p "$CRI/net.d" "$CRI/ipam"
test_host_config

# --- shim command lines -------------------------------------------------------------------------
# With ARGV_LOG: a wrapper per shim, first on containerd's PATH, that logs its command line (and
# the address variables containerd sets) and execs the real shim.
if [ -n "$ARGV_LOG" ]; then
  mkdir -p "$CRI/wrap"
  for shim in containerd-shim-runc-v2 containerd-shim-kata-v2; do
    real=$(command -v "$shim") || continue
    cat >"$CRI/wrap/$shim" <<EOF
#!/bin/sh
echo "$shim \$* (TTRPC_ADDRESS=\${TTRPC_ADDRESS:-} GRPC_ADDRESS=\${GRPC_ADDRESS:-})" >>$ARGV_LOG
exec $real "\$@"
EOF
    chmod 0755 "$CRI/wrap/$shim"
  done
  export PATH="$CRI/wrap:$PATH"
fi

# --- containerd with the CRI plugin -------------------------------------------------------------
cat >"$CRI/containerd.toml" <<EOF
version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMG"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata]
      runtime_type = "io.containerd.kata.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CRI/net.d"
EOF
cat >"$CRI/net.d/10-sandpod-cri.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "sandpod-cri", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$CRI/ipam", "ranges": [[{"subnet": "10.89.77.0/24"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}}]}
EOF

# ctr_t ARG...: ctr ARGs, killed after 60 s (a hung containerd fails the check instead of hanging it).
ctr_t() { timeout -k 5 60 ctr "$@"; }
containerd_pid=
start_containerd() {
  if ctr_t version >/dev/null 2>&1; then echo "a containerd is already running"; return 1; fi
  for p in bridge host-local loopback; do
    [ -x "/usr/lib/cni/$p" ] || { echo "no CNI plugin /usr/lib/cni/$p"; return 1; }
  done
  containerd --config "$CRI/containerd.toml" >>"$CRI/containerd.log" 2>&1 &
  containerd_pid=$!
  wait_for 120 ctr_t version || { echo "containerd did not answer in 120 s:"; tail -20 "$CRI/containerd.log"; return 1; }
  # The CRI plugin loaded (it is skipped, not fatal, when its configuration fails).
  ctr_t plugins ls | grep -Eq '^io\.containerd\.grpc\.v1 +cri .* ok *$' ||
    { echo "CRI plugin not loaded:"; ctr_t plugins ls | grep -w cri; grep -i cri "$CRI/containerd.log" | tail -10; return 1; }
}
# stop_containerd: SIGTERM; fails if it took a SIGKILL (after 60 s).
stop_containerd() {
  [ -n "$containerd_pid" ] || return 1
  kill -TERM "$containerd_pid" 2>/dev/null
  sc_ok=0
  wait_for 60 sh -c "! kill -0 $containerd_pid" ||
    { echo "containerd still there after 60 s: SIGKILL"; kill -KILL "$containerd_pid"; sc_ok=1; }
  wait "$containerd_pid" 2>/dev/null
  containerd_pid=
  return "$sc_ok"
}
# import_images: both images into the k8s.io namespace (the CRI plugin's), where they are listed.
import_images() {
  for tar in "$dir/images/busybox.tar" "$dir/images/pause.tar"; do
    timeout -k 5 "$T" ctr -n k8s.io images import "$tar" >"$work/import.out" 2>&1 ||
      { echo "import $tar failed:"; cat "$work/import.out"; return 1; }
  done
  images=$(ctr_t -n k8s.io images ls -q)
  for i in "$IMG" "$PAUSE_IMG"; do
    printf '%s\n' "$images" | grep -qx "$i" || { echo "$i not in the k8s.io images: $images"; return 1; }
  done
}

# --- leaks --------------------------------------------------------------------------------------
# cri_leaks: prints what is left of the pods (nothing when all is clean): shims and runtime
# processes, mounts (root file systems, the sandboxes' /dev/shm, network namespaces), the bundles
# and the CRI plugin's state per pod and container, network namespaces, veths, IP leases, cgroups.
cri_leaks() {
  # (Process names as in /proc/PID/comm: at most 15 characters: containerd-shim-*-v2 is
  # containerd-shim.)
  for p in containerd-shim sandpod-vmm virtiofsd sandpod runc "runc:[2:INIT]"; do
    pgrep -x "$p" >/dev/null && { echo "process $p:"; pgrep -ax "$p"; }
  done
  grep -E ' /run/containerd/| /run/netns/| /run/sandpod| /var/lib/containerd/' /proc/self/mountinfo | sed 's/^/mount /'
  for s in /run/containerd/io.containerd.runtime.v2.task/k8s.io/* /run/containerd/runc/k8s.io/* \
           /run/containerd/io.containerd.grpc.v1.cri/sandboxes/* /run/containerd/io.containerd.grpc.v1.cri/containers/* \
           /var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/* /var/lib/containerd/io.containerd.grpc.v1.cri/containers/*; do
    [ -e "$s" ] && echo "state $s"
  done
  for n in /run/netns/*; do [ -e "$n" ] && echo "netns $n"; done
  ip -o link show type veth | sed 's/^/veth /'
  # Kata's mirroring: a tap (`tap<N>_kata`) or an ingress qdisc left in any network namespace.
  for n in /run/netns/*; do
    [ -e "$n" ] || continue
    nsenter --net="$n" ip -o link 2>/dev/null | grep -o '[a-z0-9]*_kata' | sed "s#^#tap in $n: #"
    nsenter --net="$n" tc qdisc show 2>/dev/null | grep ingress | sed "s#^#qdisc in $n: #"
  done
  for a in "$CRI"/ipam/*/*; do
    case ${a##*/} in lock|last_reserved_ip.*) ;; *) [ -e "$a" ] && echo "ip lease $a" ;; esac
  done
  [ -d /sys/fs/cgroup/sandpod-cri ] && find /sys/fs/cgroup/sandpod-cri -type d | sed 's/^/cgroup /'
  true
}
# nothing_left: no leaks (waits up to 30 s for shims and the like to finish exiting).
nothing_left() {
  wait_refills
  nl_end=$(( $(date +%s) + 30 ))
  while [ -n "$(cri_leaks)" ]; do
    if [ "$(date +%s)" -ge "$nl_end" ]; then echo "left behind:"; cri_leaks; return 1; fi
    sleep 0.5
  done
}

# sees_running: the leak check sees each kind of thing a running pod leaves, whatever its runtime
# (what containerd and CNI make for it: its shim, mounts, state, network namespace, veth, lease).
sees_running() {
  sr=$(cri_leaks)
  for k in "process containerd-shim" "mount " "state " "netns " "veth " "ip lease "; do
    printf '%s\n' "$sr" | grep -q "^$k" || { echo "the leak check misses a running pod's '$k':"; printf '%s\n' "$sr"; return 1; }
  done
}

# cri NAME SCENARIO...: sandpod-cri's SCENARIOs (they print their own check lines); $rc: its
# exit status, non-zero if any of them failed.
CRI_ARGS=${CRI_ARGS:-}
cri() {
  n=$1; shift
  # shellcheck disable=SC2086 # (CRI_ARGS: a list)
  timeout -k 10 "${CRI_TIMEOUT:-700}" "$dir/bin/sandpod-cri" --handler "$HANDLER" --call-timeout "$T" \
    --rounds "$ROUNDS" --work-dir "$work" $CRI_ARGS "$@"
  rc=$?
  echo "sandpod-cri $n: exit $rc"
}

# --- the run ------------------------------------------------------------------------------------
check containerd-starts-with-cri start_containerd
check cri-images-imported import_images
echo "k8s.io images: $(ctr_t -n k8s.io images ls -q | tr '\n' ' ')"

# The leak check can fail: it sees a running pod.
cri hold hold
check leak-check-sees-running-pod eval 'rc_is 0 && sees_running'
cri remove-all remove-all
check held-pod-removed rc_is 0

# shellcheck disable=SC2086 # (SCENARIOS: a list)
cri scenarios $SCENARIOS
check sandpod-cri-all-passed rc_is 0

check cri-nothing-left nothing_left
check containerd-stopped stop_containerd
# The bridge is the network's, not a pod's: removed with the rest of the set-up.
ip link del "$BRIDGE" 2>/dev/null

if [ -n "$ARGV_LOG" ] && [ -f "$ARGV_LOG" ]; then
  echo "=== shim command lines ($(wc -l <"$ARGV_LOG") calls, distinct forms with counts)"
  sed -E 's/[0-9a-f]{64}/<id>/g' "$ARGV_LOG" | sort | uniq -c | sed 's/^/shim-argv /'
fi
if [ "$failed" -gt 0 ]; then
  echo "=== containerd log (last 40 lines)"
  tail -40 "$CRI/containerd.log"
fi
rm -rf "$work"
finish "$(basename "$0")" "$(took)"
