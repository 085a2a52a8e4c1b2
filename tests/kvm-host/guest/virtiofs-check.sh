#!/bin/sh
# virtio-fs end to end: virtiofsd (sandboxed, --cache auto) shares a host directory, sandpod-vmm
# boots with --fs, and the guest (sandpod-agentctl exec + busybox) mounts it and uses it; every
# result is checked on the other side. Then: the VMM's exit ends virtiofsd, and a virtiofsd that
# dies under a running VM leaves the VMM running (the device is marked broken).
# Prints `check <name> ok|FAIL` lines, a `virtiofs read_mib_s=…` figure, and ends with
# `virtiofs-check: N failed`. SANDPOD_DIR: the build outputs (default /sandpod, as in the test host).
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/virtiofs-check.XXXXXX)
shared=$work/shared
tag=sandpodfs
wait_for() { # tenths of a second, then a command
  n=$1; shift
  while [ "$n" -gt 0 ] && ! "$@"; do sleep 0.1; n=$((n - 1)); done
  "$@"
}
alive() { kill -0 "$1" 2>/dev/null; }
exited() { ! alive "$1"; }

# start_virtiofsd SOCKET SANDBOX: starts virtiofsd in the background, sets $vfsd; fails if it
# does not listen within 10 s.
start_virtiofsd() {
  "$dir/bin/virtiofsd" --socket-path="$1" --shared-dir="$shared" --cache=auto \
    --sandbox="$2" --log-level=info </dev/null 2>>"$work/virtiofsd.err" &
  vfsd=$!
  wait_for 100 test -S "$1" && alive "$vfsd"
}

# boot SOCKET UDS CONSOLE STDERR: sandpod-vmm with the virtio-fs and vsock devices; sets $vmm.
boot() {
  vmm_serve "$2" "file:$3" --fs "tag=$tag,socket=$1" </dev/null 2>"$4" &
  vmm=$!
}

mkdir -p "$shared/many"
printf 'hello from the host\n' >"$shared/host.txt"
head -c 10485760 /dev/urandom >"$shared/big-host.bin"
head -c 67108864 /dev/urandom >"$shared/big64.bin"
i=1; while [ $i -le 200 ]; do : >"$shared/many/f$i"; i=$((i + 1)); done

echo "virtiofsd $("$dir/bin/virtiofsd" --version 2>&1)"
sandbox=namespace
if ! start_virtiofsd "$work/vfs.sock" namespace; then
  echo "virtiofsd --sandbox namespace did not start: $(tail -3 "$work/virtiofsd.err")"
  kill "$vfsd" 2>/dev/null; rm -f "$work/vfs.sock"
  sandbox=chroot
  start_virtiofsd "$work/vfs.sock" chroot
fi
echo "virtiofsd sandbox: $sandbox"
check virtiofsd-listening alive "$vfsd"

boot "$work/vfs.sock" "$work/v.sock" "$work/console.txt" "$work/vmm.err"
use_agent "$work/v.sock"
wait_for 600 sh -c "$ctl health >/dev/null 2>&1"
check agent-up sh -c "$ctl health >/dev/null 2>&1"
gsh "/bin/busybox --install -s /bin" 2>/dev/null

out=$(gsh "mount -t virtiofs $tag /mnt && grep ' /mnt ' /proc/mounts" 2>&1)
echo "guest mount: $out"
check guest-mount sh -c "echo '$out' | grep -q '^$tag /mnt virtiofs '"

out=$(gsh "cat /mnt/host.txt" 2>&1)
check host-file-read-in-guest test "$out" = "hello from the host"

gsh "printf 'written by the guest\n' >/mnt/guest.txt"
check guest-file-read-on-host test "$(cat "$shared/guest.txt" 2>&1)" = "written by the guest"

host_sum=$(sha256sum <"$shared/big-host.bin" | cut -d' ' -f1)
guest_sum=$(gsh "sha256sum /mnt/big-host.bin" 2>&1 | cut -d' ' -f1)
echo "10 MiB host to guest: host $host_sum guest $guest_sum"
check sha256-host-to-guest test "$host_sum" = "$guest_sum"

guest_sum=$(gsh "head -c 10485760 /dev/urandom >/mnt/big-guest.bin && sha256sum /mnt/big-guest.bin" 2>&1 | cut -d' ' -f1)
host_sum=$(sha256sum <"$shared/big-guest.bin" | cut -d' ' -f1)
echo "10 MiB guest to host: guest $guest_sum host $host_sum ($(stat -c %s "$shared/big-guest.bin") bytes)"
check sha256-guest-to-host test "$host_sum" = "$guest_sum" -a "$(stat -c %s "$shared/big-guest.bin")" = 10485760

gsh "ls /mnt/many" >"$work/ls-guest.txt" 2>&1
ls "$shared/many" >"$work/ls-host.txt"
echo "ls of 200 files in the guest: $(wc -l <"$work/ls-guest.txt") names"
check ls-200-files sh -c "[ \$(wc -l <'$work/ls-guest.txt') = 200 ] && cmp -s '$work/ls-guest.txt' '$work/ls-host.txt'"

gsh "mkdir /mnt/newdir && mv /mnt/guest.txt /mnt/newdir/renamed.txt && rm /mnt/many/f1"
check mkdir-on-host test -d "$shared/newdir"
check rename-on-host sh -c "[ ! -e '$shared/guest.txt' ] && [ \"\$(cat '$shared/newdir/renamed.txt')\" = 'written by the guest' ]"
check unlink-on-host sh -c "[ ! -e '$shared/many/f1' ] && [ \$(ls '$shared/many' | wc -l) = 199 ]"

printf 'late host file\n' >"$shared/late.txt"
check host-change-seen-in-guest test "$(gsh "cat /mnt/late.txt" 2>&1)" = "late host file"

# Rough read throughput: 64 MiB the guest has not cached yet (the host has), timed in the
# guest with /proc/uptime (10 ms steps) around busybox dd.
out=$(gsh "a=\$(cut -d' ' -f1 /proc/uptime); dd if=/mnt/big64.bin of=/dev/null bs=1M 2>/dev/null && \
  echo \$a \$(cut -d' ' -f1 /proc/uptime)" 2>&1)
echo "guest reads 64 MiB: uptime before and after: $out"
mib_s=$(echo "$out" | awk 'NF == 2 && $2 > $1 { printf "%.1f", 64 / ($2 - $1) }')
echo "virtiofs read_mib_s=${mib_s:-?}"
check read-64m test -n "$mib_s"
check sha256-64m test "$(gsh "sha256sum /mnt/big64.bin" 2>&1 | cut -d' ' -f1)" = "$(sha256sum <"$shared/big64.bin" | cut -d' ' -f1)"

# No busy polling: the virtio-fs thread (and the VMM) idle while nothing happens.
fs_ticks() {
  for t in /proc/"$vmm"/task/*; do
    [ "$(cat "$t/comm")" = virtio-fs ] && awk '{print $14 + $15}' "$t/stat"
  done
}
t0=$(fs_ticks); sleep 2; t1=$(fs_ticks)
echo "virtio-fs thread CPU while idle for 2 s: $((t1 - t0)) ticks"
check idle-no-busy-poll test -n "$t0" -a $((t1 - t0)) -le 5

# The VMM's exit (here SIGTERM) closes the connection: virtiofsd exits on its own.
kill -TERM "$vmm"; wait "$vmm"; rc=$?
echo "sandpod-vmm exited $rc (143 = SIGTERM)"
check vmm-sigterm test "$rc" = 143
wait_for 100 exited "$vfsd"
check virtiofsd-exits-with-vm exited "$vfsd"
wait "$vfsd" 2>/dev/null; echo "virtiofsd exit status: $?"

# A back end that dies under a running VM: the VMM logs it, keeps running and stays usable.
start_virtiofsd "$work/vfs2.sock" "$sandbox"
boot "$work/vfs2.sock" "$work/w.sock" "$work/console2.txt" "$work/vmm2.err"
use_agent "$work/w.sock"
wait_for 600 sh -c "$ctl health >/dev/null 2>&1"
gsh "mount -t virtiofs $tag /mnt && cat /mnt/host.txt" >/dev/null 2>&1
kill -KILL "$vfsd"; wait "$vfsd" 2>/dev/null
wait_for 50 grep -q "hung up" "$work/vmm2.err"
check backend-death-logged grep -q "virtio-fs $tag: the vhost-user back end hung up" "$work/vmm2.err"
check vmm-survives-backend-death sh -c "alive() { kill -0 \$1 2>/dev/null; }; alive $vmm && [ \"\$($ctl exec -- /bin/busybox echo still here 2>&1)\" = 'still here' ]"
kill -TERM "$vmm"; wait "$vmm"; rc=$?
check vmm-sigterm-after-backend-death test "$rc" = 143

for f in "$work/vmm.err" "$work/vmm2.err"; do
  if grep -qi "panicked" "$f"; then echo "vmm stderr:"; cat "$f"; fi
done
grep -i "virtio" "$work/console.txt" | head -5
finish virtiofs-check
