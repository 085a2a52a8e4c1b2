#!/usr/bin/env bash
# `make test`: every stage in order, each with its duration (scripts/stage). The two cached
# builds that do not need the others and mostly wait on something else than this job's cargo
# builds — the guest kernel (C, cached under ~/.cache/sandpod/guest-kernel) and the KVM test
# host image (debootstrap, network and disk) — start at once in the background, at a lower CPU
# priority: they fill the cores that lint, the unit tests and fuzzing leave idle (tests that
# wait, libFuzzer's one thread, links and the agent's one-unit LTO). `artifacts` and
# `testhost-image` then wait for them (a cache hit when they are done) and print how long each
# took and, if it failed, its log. Stopping this script stops them.
source "$(dirname "$0")/lib.sh"
set +e
cd "$REPO_ROOT"
STAGE=$REPO_ROOT/scripts/stage
logs=$BUILD_DIR/logs
mkdir -p "$logs"

declare -A bg_pid bg_start
# bg NAME CMD...: runs CMD in the background (nice 10), its output in build/logs/NAME.log.
bg() {
  local name=$1; shift
  bg_start[$name]=$(date +%s)
  # A process group of its own, so that stopping it stops all it started.
  setsid -w nice -n 10 "$@" >"$logs/$name.log" 2>&1 &
  bg_pid[$name]=$!
  log "started $name in the background (log: ${logs#"$REPO_ROOT"/}/$name.log)"
}
# bg_wait NAME: waits for it; prints its time, and its log if it failed.
bg_wait() {
  local name=$1 rc
  wait "${bg_pid[$name]}"; rc=$?
  unset "bg_pid[$name]"
  log "background $name: $([ $rc = 0 ] && echo ok || echo "FAILED ($rc)") after $(( $(date +%s) - bg_start[$name] )) s"
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
"$STAGE" fuzz make -s fuzz || exit
bg_wait kernel || exit
"$STAGE" artifacts make -s artifacts || exit
bg_wait testhost-build || exit
"$STAGE" testhost-image make -s testhost || exit
"$STAGE" testhost-tests make -s integration
