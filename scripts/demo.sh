#!/usr/bin/env bash
# `make demo`: `sandpod run` of the embedded busybox bundle — a sandpod-vmm microVM with our guest
# kernel and agent, the rootfs over virtio-fs — which prints a line from inside the container. With hardware KVM it runs right here; on a host without it (no VMX/SVM,
# or a kvm_pvm /dev/kvm) it runs inside the KVM test host and says so.
source "$(dirname "$0")/lib.sh"

hardware_kvm() {
  [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
  [ -d /sys/module/kvm_pvm ] && return 1
  grep -qwE 'vmx|svm' /proc/cpuinfo
}

echo "Sandpod demo: run a busybox container in its own sandpod-vmm microVM"
if hardware_kvm; then
  echo "This host has hardware KVM: booting here."
  SANDPOD_DIR=$BUILD_DIR "$REPO_ROOT/tests/kvm-host/guest/sandpod-demo.sh"
else
  why="no /dev/kvm"
  [ -c /dev/kvm ] && why="no VMX/SVM in /proc/cpuinfo"
  [ -d /sys/module/kvm_pvm ] && why="/dev/kvm is kvm_pvm, which only runs PVM guest kernels"
  echo "This host has no hardware KVM ($why):"
  echo "running inside the KVM test host (QEMU-TCG L2 with an emulated AMD SVM CPU; see docs/testing.md)."
  SANDPOD_TESTHOST_NOBUILD=1 "$REPO_ROOT/tests/kvm-host/run" -- /sandpod/scripts/sandpod-demo.sh
fi
