#!/bin/sh
# The demo's microVM: sandpod-vmm boots the Sandpod guest kernel with the agent as PID 1 (2 vCPUs,
# 256 MiB), the agent prints its ready line and what the guest sees, then powers the VM off.
# SANDPOD_DIR: where the build outputs are (default /sandpod, as in the test host).
set -u
. "$(dirname "$0")/lib.sh"
echo "\$ sandpod-vmm --kernel vmlinux --initrd initramfs.cpio --vcpus 2 --mem-mib 256"
start=$(date +%s%N)
"$dir/bin/sandpod-vmm" --kernel "$dir/guest/vmlinux" --initrd "$dir/guest/initramfs.cpio" \
  --vcpus 2 --mem-mib 256 \
  --cmdline "console=ttyS0 reboot=k panic=-1 quiet sandpod.after_ready=poweroff" </dev/null
rc=$?
echo "sandpod-vmm exited $rc after $(( ($(date +%s%N) - start) / 1000000 )) ms (0 = guest powered off)"
exit $rc
