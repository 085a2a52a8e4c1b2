# Common helpers of the scripts in tests/kvm-host/guest/ (sourced, first thing, by every one of
# them: `. "$(dirname "$0")/lib.sh"`; `make artifacts` copies them all to build/scripts/, which
# the test host shows at /sandpod/scripts/): where the build outputs are, `check` and `finish`
# (the output the integration tests parse), the sandpod-vmm command line of a test VM whose agent
# keeps serving, and the sandpod-agentctl helpers. containers-lib.sh and engines-lib.sh add their
# domain's helpers on top of these.
#
# SANDPOD_DIR: where the build outputs are (default /sandpod, as in the test host).
set -u
dir=${SANDPOD_DIR:-/sandpod}
failed=0

# --- checks ------------------------------------------------------------------------------------
# check NAME CMD...: runs CMD; prints `check NAME ok`, or `check NAME FAIL` and counts it in
# $failed. tests/integration/common.rs (assert_checks) looks for exactly these lines.
check() {
  name=$1; shift
  if "$@"; then echo "check $name ok"; else echo "check $name FAIL"; failed=$((failed + 1)); fi
}

# finish [SUMMARY [NOTE]]: prints the summary line `SUMMARY: N failed` (SUMMARY: the script's
# file name unless given; NOTE, if any, after a space) and returns 0 only if no check failed. The
# scripts end with it, so it is their exit status. assert_checks wants `SUMMARY: 0 failed`.
# shellcheck disable=SC2120 # (its arguments are optional)
finish() {
  echo "${1:-$(basename "$0")}: $failed failed${2:+ $2}"
  [ "$failed" -eq 0 ]
}

# reap PID [SECS]: waits for the background job PID, SIGKILLing it after SECS (default 60) so a
# hung process fails its check instead of hanging the script; its exit status is in $rc.
reap() {
  ( sleep "${2:-60}"; kill -KILL "$1" 2>/dev/null && echo "reap: $1 still running after ${2:-60} s: killed" ) &
  reap_watch=$!
  wait "$1"; rc=$?
  kill "$reap_watch" 2>/dev/null; wait "$reap_watch" 2>/dev/null
  return 0
}

# wait_for SECONDS CMD...: polls CMD every 0.2 s until it succeeds; fails after SECONDS.
wait_for() {
  wf_end=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$wf_end" ] || return 1
    sleep 0.2
  done
}

# test_host_config: /etc/sandpod/config.toml (unless there is one), read by every sandpod and
# shim the engines start, with boot_timeout_secs = BOOT_TIMEOUT (default 300) instead of the
# default 60. Engines start several sandboxes at once (the CRI's five pods, docker's groups) on
# the test host's one emulated CPU, ~100x slower than hardware, while another test host shares
# the machine: five cold boots at once took 41 s each on a quiet machine, over 60 s in a loaded
# CI run. burst-check.sh passes --boot-timeout 300 for the same reason.
test_host_config() {
  [ -e /etc/sandpod/config.toml ] && return 0
  mkdir -p /etc/sandpod
  printf '[hypervisor]\nboot_timeout_secs = %s\n' "${BOOT_TIMEOUT:-300}" >/etc/sandpod/config.toml
}

# wait_refills: waits (up to 60 s) for the background refills of the templates' spare memory
# (`sandpod template refill`, started after each restore, at the idle scheduling class) to end:
# bounded work by design, not a leak. One still running after that is reported by the caller's
# leak check.
wait_refills() {
  wr=0
  while pgrep -f "sandpod .*template refill" >/dev/null && [ $wr -lt 600 ]; do sleep 0.1; wr=$((wr + 1)); done
}

# pss PID...: the processes' summed PSS in KiB (a process gone meanwhile counts 0).
pss() {
  t=0
  for p in "$@"; do
    v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null)
    t=$((t + ${v:-0}))
  done
  echo $t
}

# has TEXT PATTERN / hasnt TEXT PATTERN: TEXT has (has no) line matching the grep PATTERN.
has() { printf '%s\n' "$1" | grep -q -- "$2"; }
hasnt() { ! printf '%s\n' "$1" | grep -q -- "$2"; }

# With a command's stdout in $work/NAME.out, stderr in $work/NAME.err and exit status in $rc (as
# containers-lib.sh's `run` and engines-lib.sh's `x` leave them; $work and $rc are the script's):
# shellcheck disable=SC2154
out_is() { [ "$(cat "$work/$1.out")" = "$2" ]; }  # NAME TEXT: stdout is exactly TEXT
err_has() { grep -q -- "$2" "$work/$1.err"; }     # NAME PATTERN: a stderr line matches
# shellcheck disable=SC2154
rc_is() { [ "$rc" = "$1" ]; }                     # CODE: the exit status was CODE

# --- the test VM -------------------------------------------------------------------------------
# vmm_serve UDS CONSOLE [ARG...]: execs sandpod-vmm: the guest kernel, the test initramfs (busybox
# in /bin, sandpod-vsock-probe), 256 MiB, the hybrid vsock on UDS (no vsock device if UDS is
# empty), the guest console to CONSOLE (`file:PATH` or `none`), the agent serving after its ready
# line (`sandpod.after_ready=serve`); ARGs are added (--disk, --fs, ...). It execs so that $! is
# the VMM itself: run it in the background or in a ( ) subshell, with the redirections wanted:
#   vmm_serve "$uds" "file:$work/console.txt" </dev/null 2>"$work/vmm.err" &
#   vmm=$!
# Knobs (shell variables, unset by default): vmm_bin (a binary in $dir/bin instead of
# sandpod-vmm), vmm_initrd (a file in $dir/guest instead of initramfs-test.cpio), vmm_mem_mib
# (instead of 256; set empty: no --mem-mib, the VMM's default), vmm_quiet=1 (`quiet` on the
# guest kernel command line), vmm_after_ready (instead of serve: poweroff, reboot), vmm_cmdline_extra
# (words added to the guest kernel command line, e.g. sandpod.template=1).
vmm_serve() {
  vs_uds=$1 vs_console=$2; shift 2
  vs_mem=${vmm_mem_mib-256}
  exec "$dir/bin/${vmm_bin:-sandpod-vmm}" --kernel "$dir/guest/vmlinux" \
    --initrd "$dir/guest/${vmm_initrd:-initramfs-test.cpio}" ${vs_mem:+--mem-mib "$vs_mem"} \
    ${vs_uds:+--vsock-uds "$vs_uds"} --console "$vs_console" "$@" \
    --cmdline "console=ttyS0 reboot=k panic=-1${vmm_quiet:+ quiet} sandpod.after_ready=${vmm_after_ready:-serve}${vmm_cmdline_extra:+ $vmm_cmdline_extra}"
}

# --- sandpod-agentctl ---------------------------------------------------------------------------
ctl_bin=$dir/bin/sandpod-agentctl
# use_agent UDS: points $ctl at the agent of the VM whose hybrid vsock is UDS (`$ctl health`,
# `$ctl exec -- CMD`, `$ctl create-container ...`).
use_agent() { ctl="$ctl_bin --uds $1"; }
# agent_up_or_exit FILE...: exits 1 with "agent unreachable" and FILEs (the console, the VMM's
# stderr) unless the agent answers `health`.
agent_up_or_exit() {
  $ctl health >/dev/null 2>&1 || { echo "agent unreachable"; cat "$@"; exit 1; }
}
# g APPLET [ARG...]: a busybox applet in the guest (killed after 120 s: a hang fails, exit 124).
g() { timeout -k 5 120 $ctl exec -- busybox "$@"; }
# gsh CMD: the shell command CMD in the guest (busybox's sh, its applets on PATH via /bin; killed
# after 120 s).
gsh() { timeout -k 5 120 $ctl exec -- /bin/busybox sh -c "export PATH=/bin; $1"; }
