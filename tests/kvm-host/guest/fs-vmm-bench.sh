#!/bin/sh
# Runs inside the KVM test host: virtio-fs through sandpod-vmm vs through QEMU, everything else
# the same — one guest kernel, one initramfs whose /init is the workload (no agent, no
# container), one virtiofsd build and command line, one shared directory, 1 vCPU and 512 MiB.
# What differs is only the VMM's side of virtio-fs: the virtio-mmio transport, the vhost-user
# set-up, how a used-buffer signal becomes a guest interrupt. So this tells whether sandpod's
# VMM is the bottleneck of the rootfs figures (fs-bench.sh), or what every VMM pays here.
#   fs-vmm-bench.sh RUNS VMM...    VMM: qemu | sandpod | sandpod:PATH (another sandpod-vmm
#                                  binary, e.g. the previous build, to compare side by side)
# The guest times, on its own clock (/proc/uptime):
#   read:  dd of a 64 MiB file (warm in the host's page cache) to /dev/null, bs=1M;
#   small: tar x of 2000 files of 2.5 KiB into the share, then find, then cat of every file;
# and counts the virtio-fs device's interrupts over both. VMMs alternate run by run.
# Prints one line per run: `fsvmm <vmm> read_ms=… small_ms=… irqs=…` (or `fsvmm <vmm> fail`).
# FSVMM_OPS=1: virtiofsd logs every request (which slows it) and each run also prints
# `fsvmm-ops <vmm> OPCODE=COUNT …`, the FUSE requests the guest sent over the whole run.
set -u
runs=$1
shift
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/fs-vmm-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
shared=$work/shared
mkdir -p "$shared" "$work/root/bin" "$work/root/proc" "$work/root/sys" "$work/root/dev" \
  "$work/root/mnt" "$work/files"

# The shared files: the 64 MiB file and a tarball of the 2000 small ones (made on the host).
head -c 67108864 /dev/urandom >"$shared/big.bin"
i=0
while [ $i -lt 2000 ]; do
  head -c 2560 /dev/urandom >"$work/files/f$i"
  i=$((i + 1))
done
tar -C "$work" -cf "$shared/small.tar" files
rm -rf "$work/files"

# The initramfs: busybox and the workload as /init; it reboots (exit) when done.
cp "$(command -v busybox)" "$work/root/bin/busybox"
cat >"$work/root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
now() { awk '{printf "%d\n", $1 * 1000}' /proc/uptime; }
irqs() { awk '/virtio/ {n = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i; t += n} END {print t + 0}' /proc/interrupts; }
if mount -t virtiofs fs /mnt; then
  i0=$(irqs); a=$(now)
  dd if=/mnt/big.bin of=/dev/null bs=1M 2>/dev/null
  b=$(now)
  mkdir /mnt/w && cd /mnt/w && tar xf /mnt/small.tar && find . >/dev/null &&
    find . -type f -exec cat {} + >/dev/null
  ok=$?
  c=$(now); i1=$(irqs)
  cd /; umount /mnt
  [ $ok = 0 ] && echo "fsvmm-result read_ms=$((b - a)) small_ms=$((c - b)) irqs=$((i1 - i0))"
else
  echo "fsvmm-result mount-failed: $(cat /proc/cmdline) $(dmesg | grep -i -E 'virtio|fuse' | tail -4 | tr '\n' ' ')"
fi
reboot -f
EOF
chmod 755 "$work/root/init"
(cd "$work/root" && find . | busybox cpio -o -H newc 2>/dev/null) >"$work/init.cpio"

cmdline="console=ttyS0 reboot=t panic=-1 quiet"
start_vmm() { # VMM SOCKET
  case $1 in
    qemu)
      exec qemu-system-x86_64 \
        -M microvm,x-option-roms=off,isa-serial=on,rtc=off,acpi=off,memory-backend=mem -enable-kvm \
        -cpu host -smp 1 -m 512M -object memory-backend-memfd,id=mem,size=512M,share=on \
        -chardev "socket,id=vfs,path=$2" -device vhost-user-fs-device,chardev=vfs,tag=fs \
        -nodefaults -no-user-config -display none -no-reboot -serial stdio \
        -kernel "$dir/guest/vmlinux" -initrd "$work/init.cpio" -append "$cmdline" </dev/null 2>&1 ;;
    sandpod | sandpod:*)
      bin=$dir/bin/sandpod-vmm
      case $1 in sandpod:*) bin=${1#sandpod:} ;; esac
      exec "$bin" --kernel "$dir/guest/vmlinux" --initrd "$work/init.cpio" --vcpus 1 \
        --mem-mib 512 --cmdline "$cmdline" --fs "tag=fs,socket=$2" </dev/null 2>&1 ;;
    *) echo "unknown VMM $1" >&2; exit 2 ;;
  esac
}

n=0
while [ "$n" -lt "$runs" ]; do
  for vmm in "$@"; do
    rm -rf "$shared/w" "$work/vfs.sock"
    "$dir/bin/virtiofsd" --socket-path="$work/vfs.sock" --shared-dir="$shared" --cache=auto \
      --sandbox=namespace --log-level="$([ "${FSVMM_OPS:-0}" = 1 ] && echo debug || echo info)" \
      </dev/null 2>"$work/virtiofsd.err" &
    vfsd=$!
    wait_for 10 test -S "$work/vfs.sock"
    out=$( (start_vmm "$vmm" "$work/vfs.sock") | tr -d '\r' | sed -n 's/^fsvmm-result //p')
    reap "$vfsd" 30
    case $out in
      read_ms=*)
        echo "fsvmm $vmm $out"
        [ "${FSVMM_OPS:-0}" = 1 ] && echo "fsvmm-ops $vmm $(sed -n 's/.*Received request: opcode=\([A-Za-z]*\).*/\1/p' \
          "$work/virtiofsd.err" | sort | uniq -c | sort -rn | awk '{printf "%s=%s ", $2, $1}')" ;;
      *) echo "fsvmm $vmm fail ${out:-no result} $(tail -2 "$work/virtiofsd.err" | tr '\n' ' ')" ;;
    esac
  done
  n=$((n + 1))
done
