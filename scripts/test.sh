#!/usr/bin/env bash
# `make test`: every stage in order, each with its duration (scripts/stage). The two cached
# builds that need nothing of the others — the guest kernel (C, cached under
# ~/.cache/sandpod/guest-kernel) and the KVM test host image (debootstrap: mostly network and
# disk) — start at once in the background, so that the cores are never idle while a stage waits
# (tests that sleep, libFuzzer's one thread, links, the agent's one-unit LTO, downloads).
# Each runs in a session of its own (one process group to stop) at nice 10; where the kernel
# schedules by autogroup (sched_autogroup_enabled, as on these machines) a new session is a
# group of its own that gets a fair share whatever its nice, so the stages beside them take
# longer while the total is what matters. `artifacts` and `testhost-image` then wait for them (a
# cache hit when they are done) and print how long each took and, if it failed, its log.
# Stopping this script stops them.
source "$(dirname "$0")/lib.sh"
set +e
cd "$REPO_ROOT"
STAGE=$REPO_ROOT/scripts/stage
logs=$BUILD_DIR/logs
mkdir -p "$logs"

declare -A bg_pid bg_start
# bg [--idle] NAME CMD...: runs CMD in the background in a session of its own (one process
# group, so that stopping it stops all it started), its output in build/logs/NAME.log. At nice
# 10; with --idle, its autogroup's nice is 19 too, so that it only takes what the foreground
# leaves of the CPU.
bg() {
  local idle=0 name
  [ "$1" = --idle ] && { idle=1; shift; }
  name=$1; shift
  bg_start[$name]=$(date +%s)
  setsid -w sh -c 'if [ "$0" = 1 ]; then echo 19 >/proc/self/autogroup 2>/dev/null; exec nice -n 19 "$@"; fi
    exec nice -n 10 "$@"' "$idle" "$@" >"$logs/$name.log" 2>&1 &
  bg_pid[$name]=$!
  log "started $name in the background (log: ${logs#"$REPO_ROOT"/}/$name.log)"
}
# bg_wait NAME: waits for it; prints how long it ran (until its log's last write), and its log
# if it failed.
bg_wait() {
  local name=$1 rc
  wait "${bg_pid[$name]}"; rc=$?
  unset "bg_pid[$name]"
  log "background $name: $([ $rc = 0 ] && echo ok || echo "FAILED ($rc)") in $(( $(stat -c %Y "$logs/$name.log") - bg_start[$name] )) s"
  [ $rc = 0 ] || { tail -80 "$logs/$name.log" >&2; return $rc; }
}
stop_bg() {
  local p
  for p in "${bg_pid[@]}"; do kill -- "-$p" 2>/dev/null; done
  return 0
}
trap stop_bg EXIT

bg kernel make -s kernel
bg testhost-build make -s testhost

"$STAGE" lint make -s lint || exit
"$STAGE" unit-tests make -s unit || exit
bg_wait kernel || exit
"$STAGE" artifacts make -s artifacts || exit
bg_wait testhost-build || exit
"$STAGE" testhost-image make -s testhost || exit
# Each test host keeps about two thirds of a core busy (its guests sleep and wait): fuzzing,
# which needs nothing of them, takes the rest of the two cores meanwhile, at idle priority.
bg --idle fuzz "$STAGE" fuzz make -s fuzz
"$STAGE" testhost-tests make -s integration; rc=$?
bg_wait fuzz; fuzz_rc=$?
cat "$logs/fuzz.log"
[ $rc = 0 ] && exit $fuzz_rc
exit $rc
