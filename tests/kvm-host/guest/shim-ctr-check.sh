#!/bin/sh
# containerd 1.6 with Sandpod's shim v2 (`ctr run --runtime io.containerd.kata.v2`, i.e.
# /sandpod/bin/containerd-shim-kata-v2 found on containerd's PATH), in the KVM test host: run
# --rm with exact output, exit codes, a terminal and stdin; a detached task's exec (with and
# without a terminal), ps, metrics, pause/resume, kill (one process, all, SIGKILL → 137) and
# delete; a pod (CRI annotations: one VM and one shim for two containers; its VM's memory from
# Kata's annotation, and an out-of-range one refused); an OOM kill
# (TaskOOM, 137); containerd SIGKILLed and restarted, then stopped and restarted, while a task
# runs (still listed, exec, kill, delete); a SIGKILLed shim (containerd sees the exit, and
# delete leaves no VM process, mount or state). Every scenario is
# followed by a leak check (no sandpod-vmm, virtiofsd, sandpod monitor or shim process, no mount
# or state directory under /run/sandpod*, no task bundle).
# Prints `check <name> ok|FAIL` lines and ends with `shim-ctr-check.sh: N failed`.
. "$(dirname "$0")/engines-lib.sh"

RT=io.containerd.kata.v2
# containerd looks the shim up on its PATH (as containerd-shim-kata-v2 for runtime ...kata.v2).
export PATH="$dir/bin:$PATH"
echo "shim-ctr-check: runtime $RT, shim $(command -v containerd-shim-kata-v2)"
# cr NAME ARGS...: `ctr run --runtime $RT ARGS`, see x.
cr() { n=$1; shift; x "$n" ctr run --runtime "$RT" "$@"; }
# c NAME ARGS...: `ctr ARGS`, see x.
c() { n=$1; shift; x "$n" ctr "$@"; }
# in_pty NAME ROWS COLS CMD: the shell command CMD on a new pty of ROWS x COLS (util-linux
# `script`); its output without carriage returns in $work/NAME.out. ctr, unlike docker without
# -i, always copies its stdin to the task: script, its stdin at EOF (/dev/null), types a NUL on
# the raw pty, which the container's terminal echoes as "^@" (under runc too: see the control
# below). That echo is dropped wherever it lands: it is timed by the terminal, not the program,
# and comes before or after the program's first line.
in_pty() {
  n=$1; r=$2; cl=$3; shift 3
  x "$n" script -qefc "stty rows $r cols $cl; $*" /dev/null
  tr -d '\r\000' <"$work/$n.out" | sed 's/\^@//g' >"$work/$n.out.tmp" && mv "$work/$n.out.tmp" "$work/$n.out"
}
# task_is ID STATUS: `ctr task ls` shows task ID in STATUS.
task_is() { ctr tasks ls | grep -Eq "^$1 +[0-9]+ +$2"; }
# leak_check NAME: the check NAME-nothing-left (what the scenario left, before any clean-up).
leak_check() { check "$1-nothing-left" nothing_left; }
shim_pid() { pgrep -f "containerd-shim-kata-v2 .*-id $1( |\$)" | head -1; }
SIZE='i=0; s=; while [ $i -lt 100 ]; do s=$(stty size 2>/dev/null); case "$s" in [1-9]*" "[1-9]*) break ;; esac; sleep 0.1; i=$((i+1)); done; echo "$s"'

group start
check containerd-starts start_containerd
check ctr-import-image load_ctr_image
echo "ctr images: $(ctr images ls -q | tr '\n' ' ')"
# Every event containerd publishes, for the event checks (ended with the script).
timeout -k 5 3000 ctr events >"$work/events.txt" 2>&1 &
events_pid=$!
group_end
# event TOPIC ID [PATTERN]: `ctr events` printed TOPIC for container ID (and PATTERN).
event() { grep "$1 " "$work/events.txt" | grep "\"container_id\":\"$2\"" | grep -q -- "${3:-}"; }

# --- one-shot tasks ---------------------------------------------------------------------------
group run
cr echo --rm "$CTR_IMG" s-echo echo hi
check shim-run-echo-exact eval 'rc_is 0 && out_is echo hi'
# The VM monitor logs to containerd's log FIFO, the guest's logs with it.
check shim-guest-logs-in-containerd-log grep -q 'INFO guest' "$ENG/containerd.log"
grep 'INFO guest' "$ENG/containerd.log" | head -2
leak_check shim-run-echo
cr exit3 --rm "$CTR_IMG" s-exit3 sh -c 'exit 3'
check shim-exit-code-3 rc_is 3
leak_check shim-exit-codes
printf 'data\nmore data\n' >"$work/stdin.txt"
STDIN=$work/stdin.txt cr stdin --rm "$CTR_IMG" s-stdin cat
check shim-stdin-cat-exact eval 'rc_is 0 && out_is stdin "data
more data"'
head -c 262144 /dev/urandom >"$work/blob"
STDIN=$work/blob cr stdinbig --rm "$CTR_IMG" s-stdinbig sha256sum
check shim-stdin-256k-intact eval 'rc_is 0 && out_is stdinbig "$(sha256sum <"$work/blob")"'
# All output is there when the task's exit is reported (ctr exits on Wait).
cr bigout --rm "$CTR_IMG" s-bigout seq 1 50000
check shim-output-complete-at-exit eval 'rc_is 0 && [ "$(wc -l <"$work/bigout.out")" = 50000 ] && [ "$(tail -1 "$work/bigout.out")" = 50000 ]'
leak_check shim-stdin
in_pty tty 33 111 ctr run --runtime "$RT" --rm -t "$CTR_IMG" s-tty sh -c "'[ -t 0 ] && echo stdin-tty; $SIZE'"
check shim-tty-t-pty-and-size eval 'rc_is 0 && out_is tty "stdin-tty
33 111"'
leak_check shim-tty
# The control (runc, containerd's default runtime): what the terminal shows there.
x ttyrunc script -qefc "stty rows 33 cols 111; ctr run --rm -t $CTR_IMG s-tty-runc sh -c '[ -t 0 ] && echo stdin-tty'" /dev/null
echo "runc control: $(od -c "$work/ttyrunc.out" | head -3 | tr '\n' ' ')"
group_end

# --- a detached task ----------------------------------------------------------------------------
group detached
cr d1 -d "$CTR_IMG" s-d1 sh -c 'echo started; while :; do sleep 1; done'
check shim-run-d eval 'rc_is 0 && task_is s-d1 RUNNING'
c exec1 task exec --exec-id x1 s-d1 sh -c 'echo hi; exit 6'
check shim-exec-exact-and-exit-code eval 'rc_is 6 && out_is exec1 hi'
# (Not the container's init: pid 1 of a pid namespace ignores its own SIGKILL.)
c execkill task exec --exec-id x4 s-d1 sh -c 'kill -KILL $$'
check shim-exec-killed-by-signal-137 rc_is 137
in_pty exect 21 77 ctr task exec -t --exec-id x2 s-d1 sh -c "'[ -t 0 ] && echo stdin-tty; $SIZE; exit 4'"
check shim-exec-t-pty-size-and-exit eval 'rc_is 4 && out_is exect "stdin-tty
21 77"'
c ps task ps s-d1
check shim-task-ps eval 'rc_is 0 && grep -Eq "^ *[0-9]+ " "$work/ps.out"'
c metrics task metrics s-d1
check shim-task-metrics eval 'rc_is 0 && grep -Eq "^memory.usage +[1-9]" "$work/metrics.out" && grep -Eq "^pids.current +[1-9]" "$work/metrics.out"'
c pause task pause s-d1
check shim-pause eval 'rc_is 0 && task_is s-d1 PAUSED'
c resume task resume s-d1
check shim-resume eval 'rc_is 0 && task_is s-d1 RUNNING'
c exec2 task exec --exec-id x3 s-d1 echo after-resume
check shim-exec-after-resume eval 'rc_is 0 && out_is exec2 after-resume'
c kill task kill -s SIGKILL s-d1
check shim-kill-sigkill eval 'rc_is 0 && wait_for 60 task_is s-d1 STOPPED'
c rm1 task rm s-d1
check shim-killed-exit-137 eval 'rc_is 0 && err_has rm1 "exit code 137"'
c crm1 containers rm s-d1
check shim-task-and-container-rm eval 'rc_is 0 && [ -z "$(ctr tasks ls -q)" ] && [ -z "$(ctr containers ls -q)" ]'
grep '"s-d1"' "$work/events.txt" | sed 's/^/event /'
check shim-events-published eval 'event /tasks/create s-d1 && event /tasks/start s-d1 && event /tasks/exec-added s-d1 '"'"'"exec_id":"x1"'"'"' && event /tasks/exec-started s-d1 '"'"'"exec_id":"x1"'"'"' && event /tasks/exit s-d1 '"'"'"id":"x1".*"exit_status":6'"'"' && event /tasks/paused s-d1 && event /tasks/resumed s-d1 && event /tasks/exit s-d1 '"'"'"id":"s-d1".*"exit_status":137'"'"' && event /tasks/delete s-d1'
leak_check shim-detached
cr d2 -d "$CTR_IMG" s-d2 sh -c 'sleep 1000 & sleep 1000'
c killall task kill -a -s SIGKILL s-d2
check shim-kill-all eval 'rc_is 0 && wait_for 60 task_is s-d2 STOPPED'
x rm2 sh -c 'ctr task rm s-d2; ctr containers rm s-d2'
check shim-kill-all-rm eval 'rc_is 0 && [ -z "$(ctr containers ls -q)" ]'
leak_check shim-kill-all
group_end

# --- a pod: CRI's annotations put two containers in one VM, served by one shim ----------------
group pod
if ctr run --help 2>&1 | grep -q -- '--annotation'; then
  # A VM size out of bounds fails the create, with the annotation named.
  cr podbad --rm --annotation io.kubernetes.cri.container-type=sandbox \
    --annotation io.kubernetes.cri.sandbox-id=s-podbad \
    --annotation io.katacontainers.config.hypervisor.default_memory=12 "$CTR_IMG" s-podbad true
  check shim-pod-bad-size-refused eval '! rc_is 0 && err_has podbad "invalid annotation io.katacontainers.config.hypervisor.default_memory"'
  x podbadrm sh -c 'ctr containers rm s-podbad 2>/dev/null; true'
  # The pod's VM: 384 MiB (the default is 256) from Kata's annotation.
  cr pod -d --annotation io.kubernetes.cri.container-type=sandbox \
    --annotation io.kubernetes.cri.sandbox-id=s-pod \
    --annotation io.katacontainers.config.hypervisor.default_memory=384 "$CTR_IMG" s-pod sleep 1000
  check shim-pod-sandbox eval 'rc_is 0 && task_is s-pod RUNNING'
  cr podmem --rm --annotation io.kubernetes.cri.container-type=container \
    --annotation io.kubernetes.cri.sandbox-id=s-pod "$CTR_IMG" s-podmem cat /proc/meminfo
  mt=$(awk '/^MemTotal:/ {print int($2 / 1024)}' "$work/podmem.out")
  echo "pod VM MemTotal: ${mt:-?} MiB"
  check shim-pod-vm-size-from-annotation eval 'rc_is 0 && [ "${mt:-0}" -gt 300 ] && [ "$mt" -le 384 ]'
  cr podc --rm --annotation io.kubernetes.cri.container-type=container \
    --annotation io.kubernetes.cri.sandbox-id=s-pod "$CTR_IMG" s-podc sh -c 'echo in-pod; exit 5'
  check shim-pod-member-runs eval 'rc_is 5 && out_is podc in-pod'
  echo "pod: $(pgrep -xc sandpod-vmm) VMM(s), $(pgrep -fc 'containerd-shim-kata-v2') shim(s)"
  check shim-pod-one-vm-one-shim eval '[ "$(pgrep -xc sandpod-vmm)" = 1 ] && [ "$(pgrep -fc containerd-shim-kata-v2)" = 1 ]'
  c podkill task kill -s SIGKILL s-pod
  x podrm sh -c 'timeout 60 sh -c "until ctr task ls | grep -Eq \"^s-pod +[0-9]+ +STOPPED\"; do sleep 0.2; done"; ctr task rm s-pod; ctr containers rm s-pod'
  check shim-pod-rm eval '[ -z "$(ctr containers ls -q)" ]'
  leak_check shim-pod
else
  echo "ctr run has no --annotation: pod scenario skipped"
fi
group_end

# --- OOM: the guest cgroup's kill reaches containerd as TaskOOM, then the exit (137) -----------
group oom
cr oom --rm --memory-limit 33554432 "$CTR_IMG" s-oom sh -c 'x=0123456789abcdef; while :; do x=$x$x; done'
check shim-oom-exit-137 rc_is 137
check shim-oom-event-published wait_for 30 event /tasks/oom s-oom
leak_check shim-oom
group_end

# --- containerd restarted (SIGKILLed, then stopped) while a task runs: the shim lives on -------
group containerd-restart
cr r1 -d "$CTR_IMG" s-r1 sh -c 'while :; do sleep 1; done'
check shim-restart-task-running eval 'rc_is 0 && task_is s-r1 RUNNING'
rpid=$(shim_pid s-r1)
kill -KILL "$containerd_pid"; wait "$containerd_pid" 2>/dev/null; containerd_pid=
check containerd-sigkilled-and-started start_containerd
# (`ctr events` ended with containerd.)
timeout -k 5 3000 ctr events >>"$work/events.txt" 2>&1 &
events_pid=$!
check shim-restart-task-still-listed eval 'wait_for 60 task_is s-r1 RUNNING && [ "$(shim_pid s-r1)" = "$rpid" ]'
c rexec task exec --exec-id rx1 s-r1 sh -c 'echo after-restart; exit 7'
check shim-restart-exec eval 'rc_is 7 && out_is rexec after-restart'
stop_containerd
check containerd-stopped-and-started start_containerd
timeout -k 5 3000 ctr events >>"$work/events.txt" 2>&1 &
events_pid=$!
check shim-restart-twice-still-listed wait_for 60 task_is s-r1 RUNNING
c rkill task kill -s SIGKILL s-r1
check shim-restart-kill eval 'rc_is 0 && wait_for 60 task_is s-r1 STOPPED'
x rrm sh -c 'ctr task rm s-r1 && ctr containers rm s-r1'
check shim-restart-delete eval 'rc_is 0 && err_has rrm "exit code 137" && [ -z "$(ctr containers ls -q)" ]'
leak_check shim-restart
group_end

# --- the shim dies: containerd cleans up through `shim delete` --------------------------------
group dead-shim
cr dead -d "$CTR_IMG" s-dead sleep 1000
spid=$(shim_pid s-dead)
echo "shim of s-dead: pid ${spid:-none}; VMM: $(pgrep -x sandpod-vmm | tr '\n' ' ')"
check shim-dead-running eval 'rc_is 0 && [ -n "$spid" ] && task_is s-dead RUNNING'
[ -n "$spid" ] && kill -KILL "$spid"
# containerd runs `containerd-shim-kata-v2 ... delete` and publishes the exit (137) itself.
check shim-dead-exit-published wait_for 120 event /tasks/exit s-dead '"exit_status":137'
x deadrm sh -c 'ctr task rm s-dead; ctr containers rm s-dead'
check shim-dead-rm eval '[ -z "$(ctr tasks ls -q)" ] && [ -z "$(ctr containers ls -q)" ]'
leak_check shim-dead
group_end

kill "$events_pid" 2>/dev/null
stop_containerd
finish "$(basename "$0")" "$(took)"
