#!/usr/bin/env bash
# Installs what building and testing Sandpod needs on Debian 12, idempotently: Debian packages
# (only the missing ones; apt-get update only when something is missing) and the Rust tools.
source "$(dirname "$0")/lib.sh"

APT_PACKAGES=(
  build-essential flex bison bc libelf-dev libssl-dev   # guest kernel build
  linux-source-6.12                                     # guest kernel source
  cpio busybox-static                                   # initramfs
  qemu-system-x86 debootstrap e2fsprogs kmod xz-utils   # KVM test host
  libseccomp-dev libcap-ng-dev protobuf-compiler        # virtiofsd (scripts/install-virtiofsd.sh), ttrpc codegen
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "need root to install: ${missing[*]}"
  log "installing: ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || die "cargo is missing: install Rust (rustup) first"
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
# make fuzz: cargo-fuzz (built once from crates.io; libFuzzer itself is compiled by the fuzz
# targets' libfuzzer-sys with the C++ compiler from build-essential).
if ! command -v cargo-fuzz >/dev/null; then
  log "installing cargo-fuzz"
  cargo install --locked --quiet cargo-fuzz
fi
log "dependencies present"
