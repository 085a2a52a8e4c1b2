#!/bin/sh
# Docker 20.10 scenarios against the OCI runtime chosen by RUNTIME (kata: /sandpod/bin/sandpod,
# the default; runc: the control that proves the checks right), in the KVM test host:
# run/exit codes/settings/stdin/terminal/read-only/volumes, networking on the default bridge
# (DOCKERD_NET=full, the default), limits, a detached container's whole
# life (ps, logs, exec, top, stats, update, pause, kill, stop, rm -f) and a dockerd restart with
# --live-restore. Each scenario group ends with a clean-up and a leak check and prints its time.
# Prints `check <name> ok|FAIL` lines and ends with `docker-check.sh: N failed`.
. "$(dirname "$0")/engines-lib.sh"

echo "docker-check: RUNTIME=$RUNTIME ($RUNTIME_BIN), docker runtime '$DOCKER_RUNTIME', network $DOCKERD_NET"
# dr NAME ARGS...: `docker run --runtime <runtime under test> ARGS`, see x.
dr() { n=$1; shift; x "$n" docker run --runtime "$DOCKER_RUNTIME" "$@"; }
# d NAME ARGS...: `docker ARGS`, see x.
d() { n=$1; shift; x "$n" docker "$@"; }
line() { sed -n "$2p" "$work/$1.out"; }
inspect() { docker inspect -f "$2" "$1" 2>&1; }
# in_pty ROWS COLS CMD: runs the shell command CMD on a new pty of ROWS x COLS (util-linux
# `script`); its output, without carriage returns, in $work/$n.out.
in_pty() {
  n=$1; r=$2; c=$3; shift 3
  x "$n" script -qefc "stty rows $r cols $c; $*" /dev/null
  tr -d '\r' <"$work/$n.out" >"$work/$n.out.tmp" && mv "$work/$n.out.tmp" "$work/$n.out"
}
# A shell snippet printing the terminal's size once it is set: Docker 20.10 sets it with a resize
# right after the process started (a race, also under runc), so wait up to 10 s for it.
SIZE='i=0; s=; while [ $i -lt 100 ]; do s=$(stty size 2>/dev/null); case "$s" in [1-9]*" "[1-9]*) break ;; esac; sleep 0.1; i=$((i+1)); done; echo "$s"'
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

group start
check dockerd-starts start_dockerd
check docker-load-image load_docker_image
echo "docker images: $(docker images --format '{{.Repository}}:{{.Tag}} {{.ID}}' | tr '\n' ' ')"
group_end

# --- one-shot containers ----------------------------------------------------------------------
group run
dr echo --rm "$IMG" echo hi
check run-echo-exact eval 'rc_is 0 && out_is echo hi && [ ! -s "$work/echo.err" ]'
dr exit3 --rm "$IMG" sh -c 'exit 3'
check exit-code-3 rc_is 3
# A process killed by a signal: 128+9. (Not as the pid namespace's init: the kernel ignores a
# SIGKILL that the init sends itself; so the host's pid namespace, i.e. the VM's for kata.)
dr exit137 --rm --pid host "$IMG" sh -c 'kill -9 $$; echo survived'
check exit-code-137-sigkill eval 'rc_is 137 && [ ! -s "$work/exit137.out" ]'
# ... and the init of a pid namespace does survive its own SIGKILL.
dr pid1kill --rm "$IMG" sh -c 'kill -9 $$; echo survived pid $$'
check pid1-survives-own-sigkill eval 'rc_is 0 && out_is pid1kill "survived pid 1"'
dr settings --rm -e FOO=bar -w /tmp -u 1000:1000 --hostname h1 "$IMG" sh -c 'echo "$FOO"; pwd; id -u; id -g; hostname'
check env-e-foo-bar eval 'rc_is 0 && [ "$(line settings 1)" = bar ]'
check workdir-w-tmp eval 'rc_is 0 && [ "$(line settings 2)" = /tmp ]'
check user-u-1000-1000 eval 'rc_is 0 && [ "$(line settings 3)" = 1000 ] && [ "$(line settings 4)" = 1000 ]'
check hostname-h1 eval 'rc_is 0 && [ "$(line settings 5)" = h1 ] && [ "$(wc -l <"$work/settings.out")" = 5 ]'
printf 'data\nmore data\n' >"$work/stdin.txt"
STDIN=$work/stdin.txt dr stdin --rm -i "$IMG" cat
check stdin-i-cat-exact eval 'rc_is 0 && out_is stdin "data
more data"'
head -c 262144 /dev/urandom >"$work/blob"
STDIN=$work/blob dr stdinbig --rm -i "$IMG" sha256sum
check stdin-256k-intact eval 'rc_is 0 && out_is stdinbig "$(sha256sum <"$work/blob")"'
in_pty tty 33 111 docker run --rm -t --runtime "$DOCKER_RUNTIME" "$IMG" sh -c "'[ -t 0 ] && echo stdin-tty; [ -t 1 ] && echo stdout-tty; $SIZE'"
check tty-t-pty-and-size eval 'rc_is 0 && out_is tty "stdin-tty
stdout-tty
33 111"'
dr ro --rm --read-only "$IMG" sh -c 'touch /x 2>&1; echo rc=$?; echo ok >/dev/shm/y && cat /dev/shm/y'
check read-only-rootfs eval 'rc_is 0 && out_is ro "touch: /x: Read-only file system
rc=1
ok"'
mkdir -p "$work/vol"
echo from-host >"$work/vol/in"
dr vol --rm -v "$work/vol:/data" "$IMG" sh -c 'cat /data/in; echo from-container >/data/out'
check volume-host-to-container eval 'rc_is 0 && out_is vol from-host'
check volume-container-to-host eval '[ "$(cat "$work/vol/out" 2>&1)" = from-container ]'
group_end

# --- networking (the default bridge: a veth per container, moved into the container's network
# namespace by Docker's libnetwork-setkey prestart hook; kata mirrors it into the VM) ------------
# (The guest kernel's sit0 placeholder is there too, down.) Printed: lo's state, how many other
# interfaces are up, how many routes there are.
NETQ='ip -o link show lo | grep -o "<[^>]*>"; ip -o link | grep -v ": lo:" | grep -c "[<,]UP[,>]"; ip route | wc -l'
if [ "$DOCKERD_NET" = full ]; then
  group network
  dr n1 -d --name n1 -p 8080:80 "$IMG" sh -c 'mkdir -p /www && echo hello-from-n1 >/www/index.html && exec httpd -f -p 80 -h /www'
  ip1=$(inspect n1 '{{.NetworkSettings.IPAddress}}')
  mac1=$(inspect n1 '{{.NetworkSettings.MacAddress}}')
  d n1addr exec n1 sh -c 'ip -o -4 addr show eth0; cat /sys/class/net/eth0/address; ip route'
  check net-eth0-has-docker-ip eval 'rc_is 0 && [ -n "$ip1" ] && grep -q " inet $ip1/16 " "$work/n1addr.out"'
  check net-eth0-has-docker-mac eval '[ -n "$mac1" ] && grep -qx "$mac1" "$work/n1addr.out"'
  check net-default-route-via-docker0 eval 'grep -q "^default via 172\.17\.0\.1 dev eth0" "$work/n1addr.out"'
  wait_for 60 sh -c "$HTTP_GET | grep -qx hello-from-n1" _ "$ip1" 80
  x hostget sh -c "$HTTP_GET" _ "$ip1" 80
  check net-host-to-container eval 'rc_is 0 && out_is hostget hello-from-n1'
  x pubget sh -c "$HTTP_GET" _ 127.0.0.1 8080
  check net-published-port eval 'rc_is 0 && out_is pubget hello-from-n1'
  dr c2c --rm "$IMG" sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | nc $ip1 80 | tail -n 1"
  check net-container-to-container eval 'rc_is 0 && out_is c2c hello-from-n1'
  # A hostile guest: 10 s of raw frames of random length and content out of eth0, half of them
  # with a random virtio-net header (PACKET_VNET_HDR); the VM's network still works after it.
  dr flood --rm -v "$dir/bin/sandpod-net-flood:/flood:ro" "$IMG" sh -c "/flood eth0 10 && printf 'GET / HTTP/1.0\r\n\r\n' | nc $ip1 80 | tail -n 1"
  check net-raw-frame-flood-then-still-works eval 'rc_is 0 && grep -q "^sent=[1-9]" "$work/flood.out" && [ "$(tail -n 1 "$work/flood.out")" = hello-from-n1 ]'
  # Container -> host: busybox httpd on the bridge's address serves 4 MiB of random bytes.
  gw=$(ip -o -4 addr show docker0 | awk '{print $4}' | cut -d/ -f1)
  mkdir -p "$work/www" && head -c 4194304 /dev/urandom >"$work/www/blob"
  busybox httpd -f -p "$gw:8081" -h "$work/www" & httpd_pid=$!
  dr tohost --rm "$IMG" sh -c "wget -q -O - http://$gw:8081/blob | sha256sum"
  kill "$httpd_pid" 2>/dev/null; wait "$httpd_pid" 2>/dev/null
  check net-container-to-host-4m-sha256 eval 'rc_is 0 && [ "$(cut -d" " -f1 "$work/tohost.out")" = "$(sha256sum "$work/www/blob" | cut -d" " -f1)" ]'
  # A user-defined network: Docker's embedded DNS resolves the other container's name.
  d netcreate network create spnet
  dr srv -d --name srv --network spnet "$IMG" sh -c 'mkdir -p /www && echo hello-from-srv >/www/index.html && exec httpd -f -p 80 -h /www'
  ipsrv=$(inspect srv '{{.NetworkSettings.Networks.spnet.IPAddress}}')
  # (busybox-static's wget and nc crash in getaddrinfo with Docker's resolv.conf here, under runc
  # too: the name is looked up with busybox's own nslookup, the page fetched from the address.)
  dr byip --rm --network spnet "$IMG" sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | nc $ipsrv 80 | tail -n 1"
  check net-user-defined-by-ip eval 'rc_is 0 && out_is byip hello-from-srv'
  dr byname --rm --network spnet "$IMG" sh -c 'a=$(nslookup srv | awk "/^Name:/ {n=1} n && /^Address/ {print \$2; exit}"); echo "$a"; printf "GET / HTTP/1.0\r\n\r\n" | nc "$a" 80 | tail -n 1'
  check net-user-defined-by-name eval 'rc_is 0 && out_is byname "$ipsrv
hello-from-srv"'
  dr nnone --rm --network none "$IMG" sh -c "$NETQ"
  check net-none-lo-only eval 'rc_is 0 && out_is nnone "<LOOPBACK,UP,LOWER_UP>
0
0"'
  cleanup_all
  d netrm network rm spnet
  check net-user-defined-removed rc_is 0
  group_end
fi

# --- limits -----------------------------------------------------------------------------------
group limits
# --pids-limit 10: sh + the subshell + at most 8 sleeps; the fork past the limit fails (read and
# echo are builtins: no fork needed to report).
dr pids --rm -m 64m --pids-limit 10 "$IMG" sh -c 'cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max
  (i=0; while [ $i -lt 30 ]; do sleep 60 & i=$((i+1)); echo $i >/tmp/n; done) 2>/dev/null
  read n </tmp/n; echo started=$n'
started=$(line pids 3 | sed -n 's/^started=//p')
check memory-max-64m-in-cgroup eval '[ "$(line pids 1)" = 67108864 ]'
check pids-max-10-in-cgroup eval '[ "$(line pids 2)" = 10 ]'
check pids-limit-stops-fork-bomb eval 'rc_is 0 && [ -n "$started" ] && [ "$started" -ge 1 ] && [ "$started" -le 9 ]'
# --memory 64m and a process that grows without bound: OOM-killed, exit 137, OOMKilled true.
dr oom --name oom -m 64m "$IMG" tail /dev/zero
oom_killed=$(inspect oom '{{.State.OOMKilled}} {{.State.ExitCode}}')
echo "oom: inspect OOMKilled ExitCode: $oom_killed"
check memory-oom-exit-137 rc_is 137
# containerd's runc shim takes OOMKilled from the host cgroup of the init's pid; a guest OOM kill
# does not show there, and Sandpod does not fake it (docs/oci-cli.md): kata's is "false 137".
[ "$RUNTIME" = kata ] || check memory-oom-killed-true eval '[ "$oom_killed" = "true 137" ]'
group_end

# --- a detached container's life --------------------------------------------------------------
group detached
mkdir -p "$work/tick"
dr c1 -d --name c1 -m 128m -v "$work/tick:/data" "$IMG" sh -c 'trap "echo got-usr1" USR1
  trap "echo got-term; exit 0" TERM
  echo started; i=0
  while :; do i=$((i+1)); echo $i >/data/tick.new; mv /data/tick.new /data/tick; sleep 1 & wait $!; done'
c1=$(cat "$work/c1.out")
check run-d-prints-id eval 'rc_is 0 && [ ${#c1} = 64 ]'
wait_for 60 sh -c "docker logs c1 2>&1 | grep -q started"
# The leak check is not blind: it sees a running container.
check leak-check-sees-running eval '[ -n "$(leaks)" ]'
d ps ps --filter name=^c1$ --format '{{.Names}} {{.Status}} {{.Command}}'
check ps-shows-up eval 'rc_is 0 && grep -q "^c1 Up " "$work/ps.out" && [ "$(wc -l <"$work/ps.out")" = 1 ]'
check inspect-running eval '[ "$(inspect c1 "{{.State.Status}} {{.State.Running}}")" = "running true" ] && [ "$(inspect c1 "{{.State.Pid}}")" -gt 0 ]'
d logs logs c1
check logs-first-line eval 'rc_is 0 && [ "$(line logs 1)" = started ]'
d exec exec c1 echo hi
check exec-echo-exact eval 'rc_is 0 && out_is exec hi'
d exec5 exec c1 sh -c 'exit 5'
check exec-exit-code-5 rc_is 5
d execset exec -u 1000:1000 -w /tmp -e BAR=baz c1 sh -c 'echo "$BAR"; pwd; id -u; id -g'
check exec-user-workdir-env eval 'rc_is 0 && out_is execset "baz
/tmp
1000
1000"'
# Same container: its hostname (the short id) and its volume.
d exechost exec c1 sh -c 'hostname; cat /data/tick >/dev/null && echo tick-visible'
check exec-in-same-container eval 'rc_is 0 && out_is exechost "$(echo "$c1" | cut -c1-12)
tick-visible"'
STDIN=$work/stdin.txt d execi exec -i c1 cat
check exec-i-stdin eval 'rc_is 0 && out_is execi "data
more data"'
in_pty exect 21 77 docker exec -t c1 sh -c "'[ -t 0 ] && echo stdin-tty; $SIZE; exit 4'"
check exec-t-pty-size-and-exit eval 'rc_is 4 && out_is exect "stdin-tty
21 77"'
d top top c1
d stats stats --no-stream --format '{{.Name}} {{.MemUsage}}' c1
if [ "$RUNTIME" = kata ]; then
  # docker top lists the host processes of `runtime ps --format json`: for a container in a VM,
  # the stand-ins of its init and execs (docs/oci-cli.md). docker stats reads the host cgroup of
  # the init's pid: the sandbox's (stand-in, monitor, VMM with the guest memory it touched,
  # virtiofsd), which has no limit on the host — the container's limit is in the guest.
  check top-lists-processes eval 'rc_is 0 && head -1 "$work/top.out" | grep -q PID && grep -q "sandpod .*standin --sandbox $c1" "$work/top.out"'
  check stats-no-stream-vm-usage eval 'rc_is 0 && grep -Eq "^c1 [1-9][0-9.]*[kKMG]i?B / [0-9.]+[kKMGT]i?B$" "$work/stats.out"'
else
  check top-lists-processes eval 'rc_is 0 && head -1 "$work/top.out" | grep -q PID && grep -q "sh -c trap" "$work/top.out"'
  check stats-no-stream-mem-limit eval 'rc_is 0 && grep -Eq "^c1 [0-9.]+[kKMG]i?B / 128MiB$" "$work/stats.out"'
fi
d update update --memory 96m c1
d memmax exec c1 cat /sys/fs/cgroup/memory.max
check update-memory-applied eval '[ "$(inspect c1 "{{.HostConfig.Memory}}")" = 100663296 ] && out_is memmax 100663296'
if [ "$RUNTIME" != kata ]; then
  d stats2 stats --no-stream --format '{{.Name}} {{.MemUsage}}' c1
  check stats-shows-updated-limit eval 'rc_is 0 && grep -Eq "^c1 [0-9.]+[kKMG]i?B / 96MiB$" "$work/stats2.out"'
fi
# pause: the tick (written every second) stands still, unpause: it moves on.
d pause pause c1
check pause eval 'rc_is 0 && [ "$(inspect c1 "{{.State.Status}}")" = paused ]'
t1=$(cat "$work/tick/tick"); sleep 3; t2=$(cat "$work/tick/tick")
echo "paused: tick $t1 then $t2 3 s later"
check paused-container-frozen eval '[ -n "$t1" ] && [ "$t1" = "$t2" ]'
d unpause unpause c1
check unpause eval 'rc_is 0 && [ "$(inspect c1 "{{.State.Status}}")" = running ]'
check unpaused-container-runs eval '[ -n "$t2" ] && wait_for 20 sh -c "[ \"\$(cat $work/tick/tick)\" -gt $t2 ]"'
d kill kill -s USR1 c1
check kill-usr1-delivered eval 'rc_is 0 && wait_for 30 sh -c "docker logs c1 | grep -qx got-usr1" && [ "$(inspect c1 "{{.State.Running}}")" = true ]'
t0=$(date +%s%N)
d stop stop -t 30 c1
stop_ms=$(ms_since "$t0")
check stop-sigterm-graceful eval 'rc_is 0 && [ "$(inspect c1 "{{.State.Running}} {{.State.ExitCode}}")" = "false 0" ] && docker logs c1 | grep -qx got-term && [ $stop_ms -lt 25000 ]'
# A container that ignores SIGTERM: SIGKILL after `stop -t 2`.
dr c2 -d --name c2 "$IMG" sh -c 'trap "" TERM; echo ready; while :; do sleep 1; done'
wait_for 60 sh -c "docker logs c2 2>&1 | grep -q ready"
t0=$(date +%s%N)
d stop2 stop -t 2 c2
stop2_ms=$(ms_since "$t0")
echo "stop -t 2 of a container ignoring SIGTERM: $stop2_ms ms"
check stop-t2-sigkill-after-timeout eval 'rc_is 0 && [ "$(inspect c2 "{{.State.ExitCode}}")" = 137 ] && [ $stop2_ms -ge 2000 ] && [ $stop2_ms -lt 30000 ]'
dr c3 -d --name c3 "$IMG" sleep 1000
c3_running=$(inspect c3 '{{.State.Running}}')
d rmf rm -f c3
check rm-f-running eval '[ "$c3_running" = true ] && rc_is 0 && [ -z "$(docker ps -aq --filter name=^c3$)" ]'
group_end

# --- dockerd restarted with --live-restore while a container runs -----------------------------
group live-restore
stop_dockerd
check dockerd-starts-live-restore start_dockerd --live-restore
dr c4 -d --name c4 "$IMG" sh -c 'trap "echo got-term; exit 0" TERM; echo up; while :; do sleep 1 & wait $!; done'
wait_for 60 sh -c "docker logs c4 2>&1 | grep -q up"
pid4=$(inspect c4 '{{.State.Pid}}')
stop_dockerd
check container-outlives-dockerd eval '[ "$pid4" -gt 0 ] && kill -0 "$pid4"'
check dockerd-restarts-live-restore start_dockerd --live-restore
check live-restored-running eval '[ "$(inspect c4 "{{.State.Status}} {{.State.Pid}}")" = "running $pid4" ]'
d exec4 exec c4 echo hi
check live-restored-exec eval 'rc_is 0 && out_is exec4 hi'
d stop4 stop -t 30 c4
check live-restored-stop eval 'rc_is 0 && [ "$(inspect c4 "{{.State.Running}} {{.State.ExitCode}}")" = "false 0" ] && docker logs c4 | grep -qx got-term'
group_end

stop_dockerd
stop_containerd
check engines-stopped eval '! pgrep -x dockerd && ! pgrep -x containerd'
argv_summary
finish "$(basename "$0")" "$(took)"
