#!/bin/sh
# Runs inside the KVM test host: virtio-fs and virtio-blk through sandpod-vmm vs through QEMU,
# everything else the same — one guest kernel, one initramfs whose /init is the workload (no
# agent, no container), one virtiofsd build and command line, one shared directory, one disk
# image (warm in the host's page cache), 1 vCPU and 512 MiB. What differs is only the VMM's
# side of the devices: the virtio-mmio transport, the vhost-user set-up, the block device's
# I/O, how a used buffer becomes a guest interrupt. So this tells whether sandpod's VMM is the
# bottleneck of the figures against runc and the host (fs-bench.sh, blk-bench.sh), or what
# every VMM pays in this test host.
#   vmm-io-bench.sh RUNS VMM...    VMM: qemu | sandpod | sandpod:PATH (another sandpod-vmm
#                                  binary, e.g. the previous build, to compare side by side)
# The guest times, on its own clock (/proc/uptime, 10 ms steps):
#   fs_read:  dd of a 64 MiB file on the share to /dev/null, bs=1M;
#   fs_small: tar x of 2000 files of 2.5 KiB into the share, then find, then cat of every file
#             (and counts the virtio interrupts over both fs parts);
#   blk_read: dd of the whole 256 MiB disk to /dev/null, bs=1M, iflag=direct (every byte
#             crosses the device, as in blk-bench.sh).
# VMMs alternate run by run. Prints one line per run:
#   `vmmio <vmm> fs_read_ms=… fs_small_ms=… fs_irqs=… blk_read_ms=…` (or `vmmio <vmm> fail …`).
# VMMIO_OPS=1: virtiofsd logs every request (which slows it) and each run also prints
# `vmmio-ops <vmm> OPCODE=COUNT …`, the FUSE requests the guest sent over the whole run.
set -u
runs=$1
shift
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/vmm-io-bench.XXXXXX)
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
head -c 268435456 /dev/urandom >"$work/disk.img"
cat "$work/disk.img" >/dev/null

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
  d=$(now)
  dd if=/dev/vda of=/dev/null bs=1M iflag=direct 2>/dev/null || ok=1
  e=$(now)
  [ $ok = 0 ] && echo "vmmio-result fs_read_ms=$((b - a)) fs_small_ms=$((c - b)) fs_irqs=$((i1 - i0)) blk_read_ms=$((e - d))"
else
  echo "vmmio-result mount-failed: $(cat /proc/cmdline) $(dmesg | grep -i -E 'virtio|fuse' | tail -4 | tr '\n' ' ')"
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
        -drive "id=d0,file=$work/disk.img,format=raw,if=none,readonly=on" \
        -device virtio-blk-device,drive=d0 \
        -nodefaults -no-user-config -display none -no-reboot -serial stdio \
        -kernel "$dir/guest/vmlinux" -initrd "$work/init.cpio" -append "$cmdline" </dev/null 2>&1 ;;
    sandpod | sandpod:*)
      bin=$dir/bin/sandpod-vmm
      case $1 in sandpod:*) bin=${1#sandpod:} ;; esac
      exec "$bin" --kernel "$dir/guest/vmlinux" --initrd "$work/init.cpio" --vcpus 1 \
        --mem-mib 512 --cmdline "$cmdline" --fs "tag=fs,socket=$2" \
        --disk "$work/disk.img,ro" </dev/null 2>&1 ;;
    *) echo "unknown VMM $1" >&2; exit 2 ;;
  esac
}

n=0
while [ "$n" -lt "$runs" ]; do
  for vmm in "$@"; do
    rm -rf "$shared/w" "$work/vfs.sock"
    "$dir/bin/virtiofsd" --socket-path="$work/vfs.sock" --shared-dir="$shared" --cache=auto \
      --sandbox=namespace --log-level="$([ "${VMMIO_OPS:-0}" = 1 ] && echo debug || echo info)" \
      </dev/null 2>"$work/virtiofsd.err" &
    vfsd=$!
    wait_for 10 test -S "$work/vfs.sock"
    out=$( (start_vmm "$vmm" "$work/vfs.sock") | tr -d '\r' | sed -n 's/^vmmio-result //p')
    reap "$vfsd" 30
    case $out in
      fs_read_ms=*)
        echo "vmmio $vmm $out"
        [ "${VMMIO_OPS:-0}" = 1 ] && echo "vmmio-ops $vmm $(sed -n 's/.*Received request: opcode=\([A-Za-z]*\).*/\1/p' \
          "$work/virtiofsd.err" | sort | uniq -c | sort -rn | awk '{printf "%s=%s ", $2, $1}')" ;;
      *) echo "vmmio $vmm fail ${out:-no result} $(tail -2 "$work/virtiofsd.err" | tr '\n' ' ')" ;;
    esac
  done
  n=$((n + 1))
done
