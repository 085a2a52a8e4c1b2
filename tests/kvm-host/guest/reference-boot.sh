#!/bin/sh
# Runs inside the KVM test host. The reference boot: QEMU -M microvm under KVM boots the Sandpod
# guest kernel + initramfs and must print the agent's ready line; the agent then reboots, which ends the VM.
#   reference-boot.sh [VCPUS] [MEM_MIB] [INITRAMFS]
# reboot=t: QEMU microvm has no i8042, so a keyboard-controller reboot would spin for ages;
# a triple fault ends the VM at once (QEMU runs with -no-reboot).
# Prints the guest console; exits 0 only if the ready line was seen. SANDPOD_DIR: where the
# build outputs are (default /sandpod, as in the test host).
set -u
: "${SANDPOD_GUEST_CMDLINE_EXTRA=quiet}"
. "$(dirname "$0")/lib.sh"
vcpus=${1:-1}
mem=${2:-128}
initrd=${3:-$dir/guest/initramfs.cpio}
log=$(mktemp)
timeout -k 5 120 qemu-system-x86_64 \
  -M microvm,x-option-roms=off,isa-serial=on,rtc=off -enable-kvm -cpu host \
  -smp "$vcpus" -m "${mem}M" -nodefaults -no-user-config -display none -no-reboot \
  -serial stdio \
  -kernel "$dir/guest/vmlinux" -initrd "$initrd" \
  -append "console=ttyS0 reboot=t panic=-1 sandpod.after_ready=reboot $SANDPOD_GUEST_CMDLINE_EXTRA" </dev/null >"$log" 2>&1
rc=$?
tr -d '\r' <"$log"
if grep -q '^sandpod-agent ready [0-9]' "$log"; then
  echo "reference-boot: ready line seen (qemu exit $rc)"
  exit 0
fi
echo "reference-boot: NO ready line (qemu exit $rc)"
exit 1
