#!/bin/sh
# Podman 4.3 (`podman --runtime PATH`) and containerd 1.6's ctr (`ctr run --runc-binary PATH`,
# i.e. the io.containerd.runc.v2 shim calling PATH) against the OCI runtime chosen by RUNTIME
# (kata: /sandpod/bin/sandpod, the default; runc: /usr/sbin/runc, the control), in the KVM test
# host: run --rm with exact output and exit codes, a detached container with exec, stop and rm.
# Each group ends with a clean-up and a leak check and prints its time.
# Prints `check <name> ok|FAIL` lines and ends with `podman-ctr-check.sh: N failed`.
. "$(dirname "$0")/engines-lib.sh"

podman_rt=$(runtime_path podman)
ctr_rt=$(runtime_path ctr)
# PODMAN_NET: default (podman's default network: a CNI bridge, the netns path in the spec) or
# none (--network=none: only lo).
PODMAN_NET=${PODMAN_NET:-default}
podman_net=
[ "$PODMAN_NET" = none ] && podman_net=--network=none
ARGV_NAMES="e1 e2 d1 x1"
echo "podman-ctr-check: RUNTIME=$RUNTIME ($RUNTIME_BIN), podman --runtime $podman_rt, ctr --runc-binary $ctr_rt"
# p NAME ARGS...: `podman --runtime <runtime under test> ARGS`, see x.
p() { n=$1; shift; x "$n" podman --runtime "$podman_rt" "$@"; }
pinspect() { podman --runtime "$podman_rt" inspect -f "$2" "$1" 2>&1; }

# --- podman -----------------------------------------------------------------------------------
group podman
podman_setup
check podman-load-image load_podman_image
echo "podman images: $(podman images --format '{{.Repository}}:{{.Tag}} {{.ID}}' | tr '\n' ' ')"
# The short name finds the loaded image (stored as docker.io/sandpod-test/busybox:latest).
p echo run --rm $podman_net "$IMG" echo hi
check podman-run-echo-exact eval 'rc_is 0 && out_is echo hi'
p exit3 run --rm $podman_net "$PODMAN_IMG" sh -c 'exit 3'
check podman-exit-code-3 rc_is 3
p p1 run -d --name p1 $podman_net "$PODMAN_IMG" sh -c 'trap "echo got-term; exit 0" TERM; echo started; while :; do sleep 1 & wait $!; done'
check podman-run-d eval 'rc_is 0 && [ "$(pinspect p1 "{{.State.Status}}")" = running ]'
wait_for 60 sh -c "podman logs p1 2>&1 | grep -q started"
p exec exec p1 echo hi
check podman-exec-exact eval 'rc_is 0 && out_is exec hi'
p exec5 exec p1 sh -c 'exit 5'
check podman-exec-exit-code-5 rc_is 5
p stop stop -t 30 p1
check podman-stop-sigterm eval 'rc_is 0 && [ "$(pinspect p1 "{{.State.Status}} {{.State.ExitCode}}")" = "exited 0" ] && podman logs p1 | grep -qx got-term'
p1_exited=$(pinspect p1 '{{.State.Status}}')
p rm rm p1
check podman-rm eval '[ "$p1_exited" = exited ] && rc_is 0 && [ -z "$(podman ps -aq)" ]'
if [ "$PODMAN_NET" = default ]; then  # podman's CNI bridge: the netns by path, mirrored into the VM under kata
  p pn run -d --name pn "$PODMAN_IMG" sh -c 'mkdir -p /www && echo hello-from-pn >/www/index.html && exec httpd -f -p 80 -h /www'
  pip=$(pinspect pn '{{.NetworkSettings.IPAddress}}')
  wait_for 30 sh -c "$HTTP_GET | grep -qx hello-from-pn" _ "$pip" 80
  x pget sh -c "$HTTP_GET" _ "$pip" 80
  check podman-net-host-to-container eval 'rc_is 0 && [ -n "$pip" ] && out_is pget hello-from-pn'
fi
group_end

# --- ctr --------------------------------------------------------------------------------------
group ctr
check containerd-starts start_containerd
check ctr-import-image load_ctr_image
echo "ctr images: $(ctr images ls -q | tr '\n' ' ')"
x ctrecho ctr run --runc-binary "$ctr_rt" --rm "$CTR_IMG" e1 echo hi
check ctr-run-echo-exact eval 'rc_is 0 && out_is ctrecho hi'
x ctrexit3 ctr run --runc-binary "$ctr_rt" --rm "$CTR_IMG" e2 sh -c 'exit 3'
check ctr-exit-code-3 rc_is 3
x ctrd ctr run -d --runc-binary "$ctr_rt" "$CTR_IMG" d1 sleep 1000
check ctr-run-d eval 'rc_is 0 && ctr tasks ls | grep -Eq "^d1 +[0-9]+ +RUNNING"'
x ctrexec ctr tasks exec --exec-id x1 d1 sh -c 'echo hi; exit 6'
check ctr-exec-exact-and-exit-code eval 'rc_is 6 && out_is ctrexec hi'
x ctrkill ctr tasks kill -s SIGKILL d1
check ctr-kill eval 'rc_is 0 && wait_for 30 sh -c "ctr tasks ls | grep -Eq \"^d1 +[0-9]+ +STOPPED\""'
x ctrrm sh -c 'ctr tasks rm d1 && ctr containers rm d1'
check ctr-task-and-container-rm eval 'rc_is 0 && [ -z "$(ctr tasks ls -q)" ] && [ -z "$(ctr containers ls -q)" ]'
group_end

stop_containerd
argv_summary
finish "$(basename "$0")" "$(took)"
