#!/bin/sh
# Boots sandpod-vmm with two virtio-blk disks on raw images, a read-write one (4 MiB of random
# bytes) and a read-only one (1 MiB + 300 bytes: the guest must see 1 MiB), and checks from the
# guest (sandpod-agentctl exec + busybox) and from the host: serials (GET_ID), sizes, the
# read-only flag, reads (sha256 of the whole device), a write at an offset that reaches the
# image file after the guest's sync and reads back after the guest drops its cache, FLUSH
# requests actually sent, writes to the read-only disk refused with the image unchanged, an
# idle device thread, and the images after the VMM exits.
# Prints `check <name> ok|FAIL` lines and ends with `blk-check: N failed`.
# SANDPOD_DIR: where the build outputs are (default /sandpod, as in the test host).
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/blk-check.XXXXXX)
uds=$work/v.sock
sha() { sha256sum | cut -d' ' -f1; }

head -c 4194304 /dev/urandom >"$work/data.img"
head -c 1048876 /dev/urandom >"$work/ro.img"
head -c 65536 /dev/urandom >"$work/pattern.bin"
data_sha=$(sha <"$work/data.img")
ro_sha=$(sha <"$work/ro.img")
ro_sha_1m=$(head -c 1048576 "$work/ro.img" | sha)
# What data.img must hold after the guest writes the pattern at sector 2048 (1 MiB).
cp "$work/data.img" "$work/expected.img"
dd if="$work/pattern.bin" of="$work/expected.img" bs=512 seek=2048 conv=notrunc 2>/dev/null
expected_sha=$(sha <"$work/expected.img")
[ "$expected_sha" != "$data_sha" ] || { echo "pattern did not change the image"; exit 1; }

SANDPOD_LOG=warn,sandpod_vmm::devices::virtio::block=debug \
  vmm_serve "$uds" "file:$work/console.txt" --disk "$work/data.img" --disk "$work/ro.img,ro" \
  </dev/null 2>"$work/vmm.err" &
vmm=$!
use_agent "$uds"

out=$($ctl health 2>&1); echo "agentctl health: $out"
check agent-up sh -c "echo '$out' | grep -q '^ok '"

# Which vdX is which: the serial (GET_ID) is the image's file name.
g sh -c 'for d in /sys/block/vd*; do echo "${d##*/} $(cat $d/serial)"; done' >"$work/serials" 2>&1
echo "guest disks (name serial):"; cat "$work/serials"
data_dev=$(awk '$2 == "data.img" { print $1 }' "$work/serials")
ro_dev=$(awk '$2 == "ro.img" { print $1 }' "$work/serials")
check serials-get-id test -n "$data_dev" -a -n "$ro_dev"
data_dev=/dev/${data_dev:-vda}; ro_dev=/dev/${ro_dev:-vdb}

out=$(g blockdev --getsize64 "$data_dev" 2>&1); echo "$data_dev size: $out"
check size test "$out" = 4194304
out=$(g blockdev --getsize64 "$ro_dev" 2>&1); echo "$ro_dev size (image 1048876 bytes): $out"
check size-rounded-down test "$out" = 1048576
check size-rounding-logged grep -q "not a multiple of 512" "$work/vmm.err"
out=$(g blockdev --getro "$ro_dev" 2>&1); echo "$ro_dev read-only flag: $out"
check ro-flag test "$out" = 1
out=$(g blockdev --getro "$data_dev" 2>&1)
check rw-flag test "$out" = 0

out=$(g sha256sum "$data_dev" 2>&1 | cut -d' ' -f1); echo "guest sha256 $data_dev: $out"
check read-sha256 test "$out" = "$data_sha"
out=$(g sha256sum "$ro_dev" 2>&1 | cut -d' ' -f1); echo "guest sha256 $ro_dev: $out"
check read-sha256-ro test "$out" = "$ro_sha_1m"

$ctl exec -- busybox dd of="$data_dev" bs=512 seek=2048 iflag=fullblock conv=fsync \
  <"$work/pattern.bin" >"$work/dd.out" 2>&1; rc=$?
echo "guest dd of 64 KiB at sector 2048: exit $rc: $(tr '\n' ' ' <"$work/dd.out")"
check write-exit-0 test "$rc" = 0
g sync
out=$(sha <"$work/data.img"); echo "host sha256 of data.img after the guest's sync: $out"
check write-on-host-after-sync test "$out" = "$expected_sha"
out=$(g sh -c "busybox blockdev --flushbufs $data_dev && busybox sha256sum $data_dev" 2>&1 | cut -d' ' -f1)
echo "guest sha256 $data_dev after dropping its cache: $out"
check read-back-after-write test "$out" = "$expected_sha"

# The read-only disk: refused by the guest kernel; even with the block device's read-only flag
# cleared, the device answers IOERR. Either way dd fails and the image is unchanged.
$ctl exec -- busybox dd if=/dev/zero of="$ro_dev" bs=512 count=8 conv=fsync >"$work/ro1.out" 2>&1; rc1=$?
echo "guest dd to $ro_dev: exit $rc1: $(tr '\n' ' ' <"$work/ro1.out")"
check ro-write-refused sh -c "[ $rc1 != 0 ] && grep -qiE 'read-only|not permitted|I/O error' '$work/ro1.out'"
$ctl exec -- busybox sh -c "busybox blockdev --setrw $ro_dev; busybox dd if=/dev/zero of=$ro_dev bs=512 count=8 conv=fsync" \
  >"$work/ro2.out" 2>&1; rc2=$?
echo "guest blockdev --setrw + dd to $ro_dev: exit $rc2: $(tr '\n' ' ' <"$work/ro2.out")"
check ro-write-refused-after-setrw test "$rc2" != 0
check ro-image-unchanged-while-running test "$(sha <"$work/ro.img")" = "$ro_sha"

# No busy polling: the device threads' CPU time (utime+stime ticks) while idle.
blk_ticks() {
  for t in /proc/"$vmm"/task/*; do
    [ "$(cat "$t/comm")" = virtio-blk ] && awk '{s += $14 + $15} END {print s}' "$t/stat"
  done | awk '{s += $1} END {print s + 0}'
}
echo "device threads: $(grep -l virtio-blk /proc/"$vmm"/task/*/comm 2>/dev/null | wc -l)"
t0=$(blk_ticks); sleep 2; t1=$(blk_ticks)
echo "virtio-blk threads' CPU while idle for 2 s: $((t1 - t0)) ticks"
check idle-no-busy-poll test $((t1 - t0)) -le 5

kill -TERM "$vmm"; wait "$vmm"; rc=$?
echo "sandpod-vmm exited $rc (143 = SIGTERM)"
check vmm-sigterm test "$rc" = 143
check data-image-after-exit test "$(sha <"$work/data.img")" = "$expected_sha"
check data-image-size-kept test "$(stat -c %s "$work/data.img")" = 4194304
check ro-image-unchanged test "$(sha <"$work/ro.img")" = "$ro_sha"
grep "virtio-blk .*stopped" "$work/vmm.err"
flushes=$(sed -n 's/.*virtio-blk data.img: stopped: .*flushes=\([0-9]*\).*/\1/p' "$work/vmm.err")
echo "flush requests served for data.img: ${flushes:-none}"
check flush-requests test "${flushes:-0}" -ge 1

# Input errors: one line, before the VM starts.
for case in "missing:$work/nonexistent.img:1" "directory:$work:1" "bad-option:$work/data.img,rw:2"; do
  name=${case%%:*}; rest=${case#*:}; arg=${rest%:*}; want=${rest##*:}
  timeout -k 5 60 "$dir/bin/sandpod-vmm" --kernel "$dir/guest/vmlinux" --disk "$arg" \
    >/dev/null 2>"$work/err"; rc=$?
  echo "--disk $arg: exit $rc: $(head -3 "$work/err" | tr '\n' ' ')"
  if [ "$want" = 1 ]; then
    check "disk-error-$name" sh -c "[ $rc = 1 ] && [ \$(grep -c . '$work/err') = 1 ] && grep -q 'disk image' '$work/err'"
  else
    check "disk-error-$name" sh -c "[ $rc = 2 ] && grep -q 'PATH,ro' '$work/err'"
  fi
done

if grep -qi "panicked\|error" "$work/vmm.err"; then echo "vmm stderr:"; cat "$work/vmm.err"; fi
grep -i "virtio_blk\|vd[a-z]" "$work/console.txt" | head -5
finish blk-check
