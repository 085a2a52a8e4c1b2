#!/bin/sh
# The agent's ttrpc API through sandpod-vmm's hybrid vsock, with sandpod-agentctl: 10 MiB through
# `cat` intact (sha256), SIGTERM to a sleeping process gives "signaled 15", 20 processes at once
# each with its own output and exit status, and a client whose VM goes away mid-stream (VMM
# SIGKILLed, guest powered off, guest kernel crashed with the agent) fails promptly with an error
# (exit 1), never hangs (every client runs under `timeout`: 124 would mean it hung).
# Prints `check <name> ok|FAIL` lines and ends with `agent-api-check: N failed`.
# SANDPOD_DIR: where the build outputs are (default /sandpod, as in the test host).
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/agent-api-check.XXXXXX)
now_ms() { echo $(($(date +%s%N) / 1000000)); }
boot() { # uds name; exec: run it in the background so that $! is the VMM itself
  vmm_serve "$work/$1.sock" "file:$work/$1.console" </dev/null 2>"$work/$1.vmm.err"
}
wait_for_line() { # file pattern: up to 30 s
  i=0; while [ $i -lt 300 ] && ! grep -q "$2" "$1" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
  grep -q "$2" "$1"
}
# Waits (up to 60 s) for the VMM to end, then reaps it: sets vmm_rc. (Ended: a zombie, or gone
# already, as the shell may reap it while it waits for a command substitution's child.)
wait_vmm() {
  i=0
  while [ $i -lt 600 ] && [ -e "/proc/$vmm" ] && [ "$(awk '{print $3}' "/proc/$vmm/stat" 2>/dev/null)" != Z ]; do
    sleep 0.1; i=$((i + 1))
  done
  [ $i -lt 600 ] || { echo "VMM $vmm still running after 60 s: killing it"; kill -KILL "$vmm"; }
  wait "$vmm"; vmm_rc=$?
}
# A client with an open stream (its process prints a line every 0.2 s, with stdin open too);
# `$2` (a command) ends the VM ($vmm). Checks that the client fails with exit 1 within 10 s of
# the VMM's exit. $1: check name prefix; $3: the VMM's uds name.
ends_mid_stream() {
  use_agent "$work/$3.sock"
  (while :; do echo in; sleep 0.2; done) |
    timeout -k 2 60 $ctl exec -- sh -c 'while :; do echo tick; sleep 0.2; done' \
      >"$work/$1.out" 2>"$work/$1.err" &
  client=$!
  check "$1-stream-open" wait_for_line "$work/$1.out" '^tick$'
  eval "$2"
  wait_vmm
  t0=$(now_ms)
  wait $client; rc=$?
  took=$(($(now_ms) - t0))
  echo "$1: VMM exit $vmm_rc; sandpod-agentctl exited $rc within ${took} ms of it: $(tail -1 "$work/$1.err")"
  check "$1-client-error" test "$rc" = 1
  check "$1-client-prompt" test "$took" -le 10000
  check "$1-client-message" grep -q '^sandpod-agentctl: ' "$work/$1.err"
}

# --- VM a: data, signals, parallel processes; then SIGKILLed mid-stream.
boot a &
vmm=$!
use_agent "$work/a.sock"
out=$(timeout 120 $ctl health 2>&1); echo "agentctl health: $out"
check health sh -c "echo '$out' | grep -q '^ok '"

head -c 10485760 /dev/urandom >"$work/in.bin"
t0=$(now_ms)
timeout 300 $ctl exec -- cat <"$work/in.bin" >"$work/out.bin" 2>"$work/cat.err"; rc=$?
took=$(($(now_ms) - t0))
sum_in=$(sha256sum <"$work/in.bin" | cut -d' ' -f1)
sum_out=$(sha256sum <"$work/out.bin" | cut -d' ' -f1)
echo "10 MiB through cat: exit $rc, $(wc -c <"$work/out.bin") bytes back in $took ms"
echo "  sha256 in  $sum_in"
echo "  sha256 out $sum_out"
check cat-10mib-exit test "$rc" = 0
check cat-10mib-size test "$(wc -c <"$work/out.bin")" = 10485760
check cat-10mib-sha256 test "$sum_in" = "$sum_out"

timeout 120 $ctl exec --id sleeper --print-status -- busybox sleep 1000 >"$work/sleep.out" 2>"$work/sleep.err" &
sleeper=$!
# The signal may come before the agent knows the process: retry until it is delivered.
i=0; until $ctl signal sleeper 15 2>"$work/signal.err"; do
  i=$((i + 1)); [ $i -ge 20 ] && break; sleep 0.5
done
wait $sleeper; rc=$?
echo "busybox sleep 1000 after SIGTERM: exit $rc, $(cat "$work/sleep.err")"
check sigterm-signal-delivered test $i -lt 20
check sigterm-status grep -qx 'status: signaled 15' "$work/sleep.err"
check sigterm-exit-143 test "$rc" = 143
$ctl signal no-such-process 15 2>"$work/signal-unknown.err"; rc=$?
echo "signal to an unknown exec id: exit $rc: $(cat "$work/signal-unknown.err")"
check signal-unknown-id-fails test "$rc" = 1

pids=""
k=1; while [ $k -le 20 ]; do
  (timeout 240 $ctl exec -- sh -c "echo out-$k; echo err-$k >&2; exit $k" \
     >"$work/p.$k.out" 2>"$work/p.$k.err"; echo $? >"$work/p.$k.rc") &
  pids="$pids $!"; k=$((k + 1))
done
for p in $pids; do wait "$p"; done
good=0; k=1; while [ $k -le 20 ]; do
  o=$(cat "$work/p.$k.out"); e=$(cat "$work/p.$k.err"); r=$(cat "$work/p.$k.rc")
  if [ "$o" = "out-$k" ] && [ "$e" = "err-$k" ] && [ "$r" = "$k" ]; then good=$((good + 1))
  else echo "parallel process $k: stdout '$o' stderr '$e' exit $r (want out-$k, err-$k, $k)"; fi
  k=$((k + 1))
done
echo "20 processes in parallel: $good with the right stdout, stderr and exit status"
check parallel-20 test "$good" = 20

ends_mid_stream vmm-sigkill 'kill -KILL $vmm' a
check vmm-sigkill-vmm-exit test "$vmm_rc" = 137

# --- VM b: the guest powers off (Sandpod's power port) while another client's stream is open.
boot b &
vmm=$!
out=$(timeout 120 $ctl_bin --uds "$work/b.sock" health 2>&1); echo "VM b health: $out"
power_off_b() { # through the power port, as the agent does: one 0 byte to I/O port 0x600
  timeout 60 $ctl_bin --uds "$work/b.sock" exec -- \
    sh -c 'head -c 1 /dev/zero | dd of=/dev/port bs=1 seek=1536 count=1 conv=notrunc' >/dev/null 2>&1
}
ends_mid_stream poweroff power_off_b b
check poweroff-vmm-exit test "$vmm_rc" = 0 # guest power-off

# --- VM c: the guest kernel crashes (and the agent, PID 1, with it) while a stream is open.
boot c &
vmm=$!
out=$(timeout 120 $ctl_bin --uds "$work/c.sock" health 2>&1); echo "VM c health: $out"
crash_c() {
  timeout 60 $ctl_bin --uds "$work/c.sock" exec -- sh -c 'echo c >/proc/sysrq-trigger' >/dev/null 2>&1
}
ends_mid_stream guest-crash crash_c c
check guest-crash-vmm-exit test "$vmm_rc" = 2 # guest reset without a request: a crash

for v in a b c; do
  if grep -qi "panicked" "$work/$v.vmm.err"; then echo "VMM $v stderr:"; cat "$work/$v.vmm.err"; fi
done
finish agent-api-check
