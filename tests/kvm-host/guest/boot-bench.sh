#!/bin/sh
# Runs inside the KVM test host. Boot benchmark: wall time from VMM process start to the agent's
# ready line, for each VMM named, alternating VMMs run by run (a run right after another VMM's
# was seen to be slower under TCG, so alternation spreads that evenly).
#   boot-bench.sh RUNS VCPUS MEM_MIB VMM...
# VMM: qemu | sandpod | sandpod-noseccomp | sandpod:PATH (another sandpod-vmm binary, e.g. the
# previous build, to measure a change side by side).
# sandpod-noseccomp: sandpod-vmm with its seccomp filters off (--no-seccomp), the control for
# what the filters cost. A VMM may be named twice a round: `make bench` runs `sandpod qemu
# sandpod-noseccomp qemu`, so that both sandpod variants follow a QEMU run (the position in
# the round changes a run's time by more than what is compared).
# Prints one line per run: `boot <vmm> <ms>` (or `boot <vmm> fail`).
set -u
runs=$1 vcpus=$2 mem=$3
shift 3
. "$(dirname "$0")/lib.sh"
cmdline="console=ttyS0 reboot=t panic=-1 quiet sandpod.after_ready=reboot"

start_vmm() {
  case $1 in
    qemu)
      exec qemu-system-x86_64 -M microvm,x-option-roms=off,isa-serial=on,rtc=off -enable-kvm \
        -cpu host -smp "$vcpus" -m "${mem}M" -nodefaults -no-user-config -display none \
        -no-reboot -serial stdio -kernel "$dir/guest/vmlinux" \
        -initrd "$dir/guest/initramfs.cpio" -append "$cmdline" </dev/null 2>&1 ;;
    sandpod | sandpod-noseccomp | sandpod:*)
      bin=$dir/bin/sandpod-vmm
      case $1 in sandpod:*) bin=${1#sandpod:} ;; esac
      [ "$1" = sandpod-noseccomp ] && set -- "$1" --no-seccomp
      exec "$bin" --kernel "$dir/guest/vmlinux" \
        --initrd "$dir/guest/initramfs.cpio" --vcpus "$vcpus" --mem-mib "$mem" \
        --cmdline "$cmdline" ${2:-} </dev/null 2>&1 ;;
    *) echo "unknown VMM $1" >&2; exit 2 ;;
  esac
}

i=0
while [ "$i" -lt "$runs" ]; do
  for vmm in "$@"; do
    t0=$(date +%s%N)
    ms=$( (start_vmm "$vmm") | {
      found=fail
      while IFS= read -r line; do
        case $line in
          *"sandpod-agent ready "*) [ "$found" = fail ] && found=$(( ($(date +%s%N) - t0) / 1000000 )) ;;
        esac
      done
      echo "$found"
    })
    echo "boot $vmm $ms"
  done
  i=$((i + 1))
done
