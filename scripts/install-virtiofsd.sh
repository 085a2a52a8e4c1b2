#!/usr/bin/env bash
# Installs virtiofsd (the vhost-user-fs backend that sandpod-vmm's virtio-fs device talks to)
# with `cargo install --locked`, pinned, into $SANDPOD_CACHE/virtiofsd-<version>/ (outside the
# repository), then copies the binary to $BUILD_DIR/bin/virtiofsd. A second run only copies.
# Needs libseccomp-dev and libcap-ng-dev (scripts/install-deps.sh).
source "$(dirname "$0")/lib.sh"

VERSION=${SANDPOD_VIRTIOFSD_VERSION:-1.14.0}
root=$SANDPOD_CACHE/virtiofsd-$VERSION
bin=$root/bin/virtiofsd

if [ ! -x "$bin" ]; then
  command -v cargo >/dev/null || die "cargo is missing: install Rust (rustup) first"
  log "building virtiofsd $VERSION (cargo install --locked, once)"
  tmp=$root.tmp.$$
  rm -rf "$tmp"
  cargo install --locked --quiet --root "$tmp" --version "=$VERSION" virtiofsd ||
    die "cargo install virtiofsd $VERSION failed (libseccomp-dev and libcap-ng-dev installed? run: make deps)"
  rm -f "$tmp/.crates.toml" "$tmp/.crates2.json"
  atomic_publish "$tmp" "$root"
fi
mkdir -p "$BUILD_DIR/bin"
cp "$bin" "$BUILD_DIR/bin/virtiofsd.tmp" && mv "$BUILD_DIR/bin/virtiofsd.tmp" "$BUILD_DIR/bin/virtiofsd"
