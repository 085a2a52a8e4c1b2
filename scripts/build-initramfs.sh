#!/usr/bin/env bash
# Packs the guest initramfs (newc cpio, uncompressed) from the statically linked agent.
#   build/guest/initramfs.cpio       production: only /init (the agent) and the mount points
#   build/guest/initramfs-test.cpio  test variant: the same plus busybox-static in /bin and
#                                    sandpod-vsock-probe (built beside the agent, static too)
# Reproducible: fixed order, owners, modes and timestamps, so the same inputs give the same bytes.
source "$(dirname "$0")/lib.sh"

AGENT=${1:-$REPO_ROOT/target/x86_64-unknown-linux-gnu/guest/sandpod-agent}
PROBE=$(dirname "$AGENT")/sandpod-vsock-probe
for bin in "$AGENT" "$PROBE"; do
  [ -x "$bin" ] || die "no binary at $bin (run: make agent)"
  if readelf -d "$bin" 2>/dev/null | grep -q "(NEEDED)"; then
    die "$bin is dynamically linked; build it with -C target-feature=+crt-static"
  fi
done
command -v cpio >/dev/null || die "cpio is missing (run: make deps)"

# pack DIR OUT : a reproducible newc archive of DIR.
pack() {
  local dir=$1 out=$2
  find "$dir" -exec touch -h -d @0 {} +
  (cd "$dir" && find . -mindepth 1 -printf '%P\0' | LC_ALL=C sort -z |
    cpio --null --create --format=newc --owner=0:0 --reproducible --quiet) >"$out.tmp"
  mv "$out.tmp" "$out"
}

stage() {
  local dir=$1
  mkdir -p "$dir"/{proc,sys,dev,run,tmp,mnt}
  install -m 0755 "$AGENT" "$dir/init"
}

mkdir -p "$BUILD_DIR/guest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

stage "$work/prod"
pack "$work/prod" "$BUILD_DIR/guest/initramfs.cpio"

stage "$work/test"
mkdir -p "$work/test/bin"
install -m 0755 /bin/busybox "$work/test/bin/busybox"
install -m 0755 "$PROBE" "$work/test/bin/sandpod-vsock-probe"
for applet in sh ls cat echo mount ps dmesg; do ln -s busybox "$work/test/bin/$applet"; done
pack "$work/test" "$BUILD_DIR/guest/initramfs-test.cpio"

for f in initramfs.cpio initramfs-test.cpio; do
  log "$f: $(stat -c %s "$BUILD_DIR/guest/$f") bytes, sha256 $(sha256sum "$BUILD_DIR/guest/$f" | cut -c1-16)"
done
