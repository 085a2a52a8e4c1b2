#!/bin/sh
# `make demo`'s main act: `sandpod run` of the busybox bundle — a microVM boots, the rootfs is
# shared over virtio-fs, the agent creates the container from config.json, and the container
# prints a line with the guest kernel's version. SANDPOD_DIR: the build outputs (default /sandpod).
set -eu
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/sandpod-demo.XXXXXX)
cp -a "$dir/bundles/busybox" "$work/bundle"
echo "\$ sandpod run --bundle $work/bundle demo"
start=$(date +%s%N)
"$dir/bin/sandpod" --root /run/sandpod --log "$work/sandpod.log" run --bundle "$work/bundle" demo
rc=$?
end=$(date +%s%N)
echo "(container exited $rc after $(( (end - start) / 1000000 )) ms: VM boot, container, teardown)"
echo "host kernel: $(uname -r); the container's line above shows the guest kernel."
echo "guest log lines in the runtime log ($work/sandpod.log):"
grep ' guest' "$work/sandpod.log" | head -3
