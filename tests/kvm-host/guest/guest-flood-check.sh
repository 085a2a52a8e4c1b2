#!/bin/sh
# A hostile guest flooding what reaches host files: (1) guest root writes far more to the serial
# console than the VM's console_limits allow (small limits in vm.json, so the flood fits the
# test host's speed): console.log and console.log.1 stay at the cap, the drop marker appears,
# the VMM's RSS stays flat; (2) a process in a container that stole the agent's log token (read
# here from the monitor's plan, as a compromised guest could read it from the agent) floods the
# host's guest-log port: the runtime's log keeps at most the limiter's budget and reports the
# drops. Prints `check <name> ok|FAIL` lines, ends with `guest-flood-check: N failed`.
. "$(dirname "$0")/containers-lib.sh"

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
line=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA

# (1) The console.
cat >"$work/vm.json" <<EOF
{"kernel": "$dir/guest/vmlinux", "initrd": "$dir/guest/initramfs-test.cpio", "mem_mib": 256,
 "cmdline": "console=ttyS0 reboot=k panic=-1 sandpod.after_ready=serve",
 "console": {"file": "$work/console.log"},
 "console_limits": {"max_file_bytes": 4096, "bytes_per_sec": 1000, "burst_bytes": 8192},
 "vsock": {"guest_cid": 3, "uds_path": "$work/v.sock"}}
EOF
"$dir/bin/sandpod-vmm" --config "$work/vm.json" </dev/null 2>"$work/vmm.err" &
vmm=$!
use_agent "$work/v.sock"
agent_up_or_exit
flood() { # N lines of ~100 bytes to the guest's serial port, as guest root
  $ctl exec -- /bin/busybox sh -c "i=0; while [ \$i -lt $1 ]; do echo $line; i=\$((i+1)); done >/dev/ttyS0"
}
flood 200
rss0=$(rss_kib $vmm)
flood 1000
sleep 2
$ctl exec -- /bin/busybox sh -c 'echo after-the-flood >/dev/ttyS0'
sleep 1
rss1=$(rss_kib $vmm)
size() { stat -c %s "$1" 2>/dev/null || echo 0; }
echo "console: $(size "$work/console.log") + $(size "$work/console.log.1") bytes kept of ~120000 written; VmRSS $rss0 -> $rss1 KiB"
check console-file-capped-and-rotated eval "[ $(size "$work/console.log") -le 4096 ] && [ $(size "$work/console.log.1") -gt 0 ] && [ $(size "$work/console.log.1") -le 4096 ]"
check console-drops-marked grep -qh 'bytes of console output dropped' "$work/console.log" "$work/console.log.1"
check console-flood-rss-flat eval "[ $((rss1 - rss0)) -lt 16384 ]"
kill $vmm; wait $vmm 2>/dev/null

# (2) The guest log port, with the stolen token.
cp "$dir/bin/sandpod-vsock-probe" "$work/" 2>/dev/null
mkbundle logger "$(args '["sleep","600"]') | .annotations[\"io.sandpod.allow-vsock\"] = \"true\""
cp "$dir/bin/sandpod-vsock-probe" "$work/logger/rootfs/bin/"
sandpod --log "$work/sandpod.log" create --bundle "$work/logger" logger </dev/null >"$work/logger.out" 2>"$work/logger.err" &&
  sandpod --log "$work/sandpod.log" start logger || echo "logger: $(cat "$work/logger.err")"
token=$(jq -r .log_token "$ROOT/logger/monitor.json")
start=$(date +%s)
sandpod exec logger sh -c "(echo 'log-token $token'; i=0; while [ \$i -lt 20000 ]; do
  echo '{\"level\":\"info\",\"msg\":\"flood-line\",\"target\":\"evil\"}'; i=\$((i+1)); done) |
  sandpod-vsock-probe 2 1025 -" >"$work/flood.out" 2>&1
elapsed=$(( $(date +%s) - start ))
sleep 2  # the first drops are reported at once, later ones every 10 s
kept=$(grep -c 'flood-line' "$work/sandpod.log")
budget=$((1000 + 100 * (elapsed + 1)))
echo "log flood: $(cat "$work/flood.out" | tr '\n' ' '); $kept of 20000 lines kept in $elapsed s (budget $budget)"
check log-flood-connected grep -q 'sent: ' "$work/flood.out"
check log-flood-bounded eval "[ $kept -gt 0 ] && [ $kept -le $budget ]"
check log-flood-drops-reported grep -q 'lines dropped (rate limit)' "$work/sandpod.log"
sandpod delete --force logger
check nothing-left-after-floods nothing_left
finish
