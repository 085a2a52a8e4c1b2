# Helpers for the container-engine checks (sourced by docker-check.sh, podman-ctr-check.sh and
# docker-bench.sh; sources lib.sh for `check`, `finish`, out_is, err_has, rc_is): containerd,
# dockerd and podman set up in the KVM test host (no systemd there), the offline busybox image
# loaded, the OCI runtime under test chosen by RUNTIME, leak checks and a clean-up of every
# container.
#
#   RUNTIME   kata (default: /sandpod/bin/sandpod), runc (/usr/sbin/runc) or an absolute path
#   ARGV_LOG  if set, every engine calls the runtime through a wrapper that appends
#             "<engine> <argv...>" to this file, then execs the runtime (argv_summary prints it)
#   T         timeout in seconds for one engine command (default 240)
#   DOCKERD_NET, PODMAN_NET: see below (default: full networking, which works in the test host)
#
# What the test host needs for the engines (found out here):
#   - containerd: started by hand (no systemd) with a config that only disables the CRI plugin
#     (not used; faster start); socket /run/containerd/containerd.sock. dockerd uses it (as
#     Debian's docker.service does) instead of starting its own, so containers survive a dockerd
#     restart (live-restore) and ctr sees the same daemon.
#   - dockerd: its own daemon.json (runtimes, overlay2), pid file and data in the default places
#     (/var/lib/docker on the throw-away root disk). Full networking works (docker0, iptables,
#     docker-proxy; the test host's init loads br_netfilter, veth, bridge); so does podman's CNI
#     bridge.
#   - podman: containers.conf with cgroup_manager = "cgroupfs" (no systemd), events_logger =
#     "file" and log_driver = "k8s-file" (no journald), via CONTAINERS_CONF.
#   - cgroup v2 is mounted at /sys/fs/cgroup by the test host's init: enough for all three.
. "$(dirname "$0")/lib.sh"
IMAGE_TAR=${IMAGE_TAR:-$dir/images/busybox.tar}
IMG=sandpod-test/busybox:latest
# The names the same tarball gets: docker from manifest.json's RepoTags, podman and ctr from
# index.json's io.containerd.image.name annotation.
DOCKER_IMG=$IMG
PODMAN_IMG=docker.io/$IMG
CTR_IMG=docker.io/$IMG
RUNTIME=${RUNTIME:-kata}
ARGV_LOG=${ARGV_LOG:-}
T=${T:-240}
ENG=/run/sandpod-engines
mkdir -p "$ENG"
test_host_config
work=$(mktemp -d /tmp/engines.XXXXXX)
script_start=$(date +%s)

case $RUNTIME in
  kata) RUNTIME_BIN=$dir/bin/sandpod ;;
  runc) RUNTIME_BIN=$(command -v runc || echo /usr/sbin/runc) ;;
  /*) RUNTIME_BIN=$RUNTIME ;;
  *) echo "RUNTIME must be kata, runc or an absolute path, not '$RUNTIME'"; exit 2 ;;
esac

# took: "(N s)", the seconds since the script started (the note of its summary line).
took() { echo "($(( $(date +%s) - script_start )) s)"; }

# group NAME: starts a scenario group (prints how long the previous one took).
# group_end: ends the current one: clean-up of every container, then the leak check, as the check
# `<group>-nothing-left`.
group_name=
group() {
  group_name=$1; group_start=$(date +%s)
  echo "=== group $group_name"
}
group_end() {
  cleanup_all
  check "$group_name-nothing-left" nothing_left
  echo "=== group $group_name took $(( $(date +%s) - group_start )) s"
}

# x NAME CMD...: runs CMD with the timeout T, stdin from $STDIN (default /dev/null); stdout in
# $work/NAME.out, stderr in $work/NAME.err, exit status in $rc, time in $ms; prints one line.
x() {
  n=$1; shift
  t0=$(date +%s%N)
  timeout -k 5 "$T" "$@" <"${STDIN:-/dev/null}" >"$work/$n.out" 2>"$work/$n.err"
  rc=$?
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  echo "$n: exit $rc in $ms ms, stdout: $(head -c 300 "$work/$n.out" | tr '\n' '|') stderr: $(head -c 300 "$work/$n.err" | tr '\n' '|')"
}
out_has() { grep -q -- "$2" "$work/$1.out"; }

# runtime_path ENGINE: the runtime binary ENGINE is given. With ARGV_LOG: a wrapper with the same
# base name (podman derives runtime features from the name) in a directory of its own per engine,
# which logs "ENGINE ARGV..." and execs the runtime.
runtime_path() {
  [ -n "$ARGV_LOG" ] || { echo "$RUNTIME_BIN"; return; }
  w=$ENG/wrap/$1/$(basename "$RUNTIME_BIN")
  if [ ! -x "$w" ]; then
    mkdir -p "$(dirname "$w")"
    cat >"$w" <<EOF
#!/bin/sh
line=$1
for a in "\$@"; do
  case "\$a" in
    ''|*[!A-Za-z0-9_./:=,+@%-]*) line="\$line '\$a'" ;;
    *) line="\$line \$a" ;;
  esac
done
printf '%s\n' "\$line" >>$ARGV_LOG
# On create: the spec's hooks and namespaces too (what the runtime must honour).
bundle=; prev=; cmd=
for a in "\$@"; do
  case "\$prev" in --bundle|-b) bundle=\$a ;; esac
  case "\$a" in create|run) [ -z "\$cmd" ] && cmd=\$a ;; esac
  prev=\$a
done
if [ -n "\$cmd" ] && [ -f "\$bundle/config.json" ]; then
  printf '%s spec %s\n' $1 "\$(jq -c '{hooks: .hooks, namespaces: .linux.namespaces, terminal: .process.terminal}' "\$bundle/config.json")" >>$ARGV_LOG
fi
exec $RUNTIME_BIN "\$@"
EOF
    chmod 0755 "$w"
  fi
  echo "$w"
}

# argv_summary: the distinct runtime command lines in ARGV_LOG per engine, container ids
# (64 hex digits, or the names in ARGV_NAMES), digests and temporary names replaced by
# placeholders, with their counts.
ARGV_NAMES=${ARGV_NAMES:-}
argv_summary() {
  [ -n "$ARGV_LOG" ] && [ -f "$ARGV_LOG" ] || return 0
  echo "=== runtime command lines ($RUNTIME_BIN, $(grep -vc '^[a-z]* spec ' "$ARGV_LOG") calls, distinct forms with counts; 'spec': the bundle's hooks and namespaces at create)"
  names=
  for nm in $ARGV_NAMES; do names="$names -e s#\\b$nm\\b#<id>#g"; done
  sed -E $names -e 's/netns-[0-9a-f-]{36}/netns-<uuid>/g' -e 's/[0-9a-f]{64}/<id>/g' \
      -e 's#/tmp/pty[0-9]+/#/tmp/pty<n>/#g' -e 's/\b[0-9a-f]{12}\b/<id12>/g' \
      -e 's#/proc/[0-9]+/exe#/proc/<dockerd-pid>/exe#g' \
      -e 's#(/runc-process|/runtime-process|/exec-process-?)[0-9A-Za-z-]+#\1<n>#g' \
      -e 's#/tmp/engines\.[A-Za-z0-9]+#/tmp/engines.<w>#g' \
      -e 's/(ctr-[a-z0-9-]*-)[0-9]+/\1<n>/g' "$ARGV_LOG" |
    sort | uniq -c | sort -k2,2 -k1,1nr | sed 's/^/argv /'
}

# HTTP_GET: a shell script for `sh -c "$HTTP_GET" _ HOST PORT`: prints the body of GET / (busybox
# nc: the static busybox's wget crashes in getservbyname; nc with a numeric port looks nothing up).
HTTP_GET='printf "GET / HTTP/1.0\r\n\r\n" | timeout 20 busybox nc "$1" "$2" | tail -n 1'

# --- containerd -------------------------------------------------------------------------------
CONTAINERD_SOCK=/run/containerd/containerd.sock
containerd_pid=
start_containerd() {
  ctr version >/dev/null 2>&1 && return 0
  printf 'version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n' >"$ENG/containerd.toml"
  containerd --config "$ENG/containerd.toml" >>"$ENG/containerd.log" 2>&1 &
  containerd_pid=$!
  wait_for 120 ctr version || { echo "containerd did not answer in 120 s:"; tail -20 "$ENG/containerd.log"; return 1; }
}
stop_containerd() {
  [ -n "$containerd_pid" ] || return 0
  kill -TERM "$containerd_pid" 2>/dev/null
  wait_for 60 sh -c "! kill -0 $containerd_pid" || { echo "containerd still there after 60 s: SIGKILL"; kill -KILL "$containerd_pid"; }
  wait "$containerd_pid" 2>/dev/null
  containerd_pid=
}

# --- dockerd ----------------------------------------------------------------------------------
# The docker runtime name for RUNTIME: kata, or runc-path (a runtime entry with runc's path:
# Docker handles such an entry exactly as it will handle kata's; "runc" itself is reserved).
case $RUNTIME in
  kata) DOCKER_RUNTIME=kata ;;
  runc) DOCKER_RUNTIME=runc-path ;;
  *) DOCKER_RUNTIME=under-test ;;
esac
# DOCKERD_NET: full (default: the default bridge docker0, iptables, docker-proxy: all work in the
# test host) or none (--bridge=none, no iptables: containers only get lo).
DOCKERD_NET=${DOCKERD_NET:-full}
dockerd_pid=
write_daemon_json() {
  kata=$dir/bin/sandpod
  [ "$RUNTIME" = kata ] && kata=$(runtime_path docker)
  runc=/usr/sbin/runc
  [ "$RUNTIME" = runc ] && runc=$(runtime_path docker)
  other=
  [ "$DOCKER_RUNTIME" = under-test ] && other=",\"under-test\":{\"path\":\"$(runtime_path docker)\"}"
  net='"iptables":false,"ip6tables":false,"ip-masq":false,"bridge":"none",'
  [ "$DOCKERD_NET" = full ] && net=
  cat >"$ENG/daemon.json" <<EOF
{"runtimes":{"kata":{"path":"$kata"},"runc-path":{"path":"$runc"}$other},
 $net"storage-driver":"overlay2","log-driver":"json-file"}
EOF
}
# start_dockerd [FLAGS...]: dockerd on the shared containerd, until `docker info` answers.
start_dockerd() {
  start_containerd || return 1
  write_daemon_json
  dockerd --config-file "$ENG/daemon.json" --containerd "$CONTAINERD_SOCK" "$@" >>"$ENG/dockerd.log" 2>&1 &
  dockerd_pid=$!
  wait_for 180 docker info || { echo "dockerd did not answer in 180 s:"; tail -30 "$ENG/dockerd.log"; return 1; }
}
stop_dockerd() {
  [ -n "$dockerd_pid" ] || return 0
  kill -TERM "$dockerd_pid" 2>/dev/null
  wait_for 90 sh -c "! kill -0 $dockerd_pid" || { echo "dockerd still there after 90 s: SIGKILL"; kill -KILL "$dockerd_pid"; }
  wait "$dockerd_pid" 2>/dev/null
  dockerd_pid=
}

# --- podman -----------------------------------------------------------------------------------
podman_setup() {
  cat >"$ENG/containers.conf" <<'EOF'
[containers]
log_driver = "k8s-file"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  export CONTAINERS_CONF=$ENG/containers.conf
}

# --- images -----------------------------------------------------------------------------------
load_docker_image() {
  x docker-load docker load -i "$IMAGE_TAR"
  rc_is 0 && docker image inspect "$DOCKER_IMG" >/dev/null
}
load_podman_image() {
  x podman-load podman load -i "$IMAGE_TAR"
  rc_is 0 && podman image exists "$PODMAN_IMG"
}
load_ctr_image() {
  x ctr-import ctr images import "$IMAGE_TAR"
  rc_is 0 && ctr images ls -q | grep -qx "$CTR_IMG"
}

# --- clean-up and leak checks -----------------------------------------------------------------
# cleanup_all: removes every container of every engine that is running (docker, podman, ctr).
cleanup_all() {
  if [ -n "$dockerd_pid" ] && docker info >/dev/null 2>&1; then
    ids=$(docker ps -aq)
    [ -z "$ids" ] || timeout -k 5 "$T" docker rm -f $ids >/dev/null 2>&1 || echo "cleanup: docker rm -f failed"
  fi
  if command -v podman >/dev/null && [ -n "${CONTAINERS_CONF:-}" ]; then
    [ -z "$(podman ps -aq 2>/dev/null)" ] ||
      timeout -k 5 "$T" podman --runtime "$(runtime_path podman)" rm -f -a -t 2 >/dev/null 2>&1 || echo "cleanup: podman rm failed"
  fi
  if ctr version >/dev/null 2>&1; then
    for ns in $(ctr namespaces ls -q); do
      [ "$ns" = moby ] && continue # dockerd's own
      for t in $(ctr -n "$ns" tasks ls -q); do
        timeout -k 5 "$T" ctr -n "$ns" tasks kill -s SIGKILL "$t" >/dev/null 2>&1
        timeout -k 5 "$T" ctr -n "$ns" tasks rm -f "$t" >/dev/null 2>&1 || echo "cleanup: ctr tasks rm $t failed"
      done
      for c in $(ctr -n "$ns" containers ls -q); do
        timeout -k 5 "$T" ctr -n "$ns" containers rm "$c" >/dev/null 2>&1 || echo "cleanup: ctr containers rm $c failed"
      done
    done
  fi
}

# leaks: prints what is left of containers (nothing when all is clean): processes of the VM
# runtime (sandpod-vmm, virtiofsd, sandpod) and of the engines per container (shims, conmon,
# runc), mounts under /run/sandpod* and of container root file systems, state directories in
# the runtimes' roots.
leaks() {
  # (Process names as in /proc/PID/comm: at most 15 characters, containerd-shim-runc-v2 is
  # containerd-shim.)
  for p in sandpod-vmm virtiofsd sandpod containerd-shim conmon runc "runc:[2:INIT]"; do
    pgrep -x "$p" >/dev/null && { echo "process $p:"; pgrep -ax "$p"; }
  done
  grep -E ' /run/sandpod| /var/lib/docker/overlay2/[^ ]*/merged| /var/lib/containers/storage/overlay/[^ ]*/merged| /run/containerd/io\.containerd\.runtime\.v2\.task/' \
    /proc/self/mountinfo | sed 's/^/mount /'
  # A runtime's state: one directory per container under its --root (docker:
  # /run/docker/runtime-<name>/moby, ctr: /run/containerd/runc/<ns>, podman: /run/<name>).
  for r in /run/sandpod* /run/docker/runtime-*/* /run/containerd/runc/* /run/runc /run/kata; do
    [ -d "$r" ] && [ "$r" != "$ENG" ] || continue
    for s in "$r"/*; do
      [ -d "$s" ] || continue
      # The shim's root per containerd namespace (/run/sandpod-shim/<ns>) keeps the VM template
      # cache (.templates) and the jails' exec-only VMM binary (.vmm), by design, after its last
      # container: not a container's state.
      { [ -d "$s/.templates" ] || [ -d "$s/.vmm" ]; } &&
        [ -z "$(ls -A "$s" | grep -vx -e .templates -e .vmm)" ] && continue
      echo "state dir $s"
    done
  done
  for b in /run/containerd/io.containerd.runtime.v2.task/*/*; do [ -d "$b" ] && echo "bundle $b"; done
  # Networking: podman's container network namespaces and veths. (Not /run/docker/netns: dockerd
  # removes a container's netns in a garbage collection every 60 s, also under runc.)
  for n in /run/netns/*; do [ -e "$n" ] && echo "netns $n"; done
  ip -o link show type veth | sed 's/^/veth /'
  # Kata's mirroring: a tap (`tap<N>_kata`) or an ingress qdisc left in any network namespace.
  for n in /run/netns/* /run/docker/netns/*; do
    [ -e "$n" ] || continue
    nsenter --net="$n" ip -o link 2>/dev/null | grep -o '[a-z0-9]*_kata' | sed "s#^#tap in $n: #"
    nsenter --net="$n" tc qdisc show 2>/dev/null | grep ingress | sed "s#^#qdisc in $n: #"
  done
  true
}
# nothing_left: no leaks (waits up to 20 s for shims and the like to finish exiting).
nothing_left() {
  wait_refills
  nl_end=$(( $(date +%s) + 20 ))
  while [ -n "$(leaks)" ]; do
    if [ "$(date +%s)" -ge "$nl_end" ]; then echo "left behind:"; leaks; return 1; fi
    sleep 0.5
  done
}
