#!/bin/sh
# Runs inside the KVM test host: network throughput and latency of a container on Docker's
# default bridge, --runtime kata (sandpod: the veth mirrored into the VM) vs runc, alternating.
#   net-bench.sh [ROUNDS] [MIB]
# Each round and runtime: the container sends MIB MiB to a listener on the L2 host's docker0
# address (busybox nc; timed in the container from the connection to the last byte written),
# then the host makes 20 sequential HTTP requests to busybox httpd in the container (each timed
# on the host, nc's start included: the same cost for both runtimes).
# Prints `net_mbit kata|runc <Mbit/s>|fail` and `net_rr kata|runc <us>|fail` lines.
RUNTIME=kata
. "$(dirname "$0")/engines-lib.sh"
rounds=${1:-3}
mib=${2:-16}
start_dockerd >/dev/null || { echo "net-bench: dockerd did not start"; exit 1; }
load_docker_image >/dev/null || { echo "net-bench: docker load failed"; exit 1; }
gw=$(ip -o -4 addr show docker0 | awk '{print $4}' | cut -d/ -f1)
for rt in kata runc; do
  docker run -d --runtime $rt --name "net-$rt" "$IMG" sh -c 'mkdir -p /www && echo pong >/www/index.html && exec httpd -f -p 80 -h /www' >/dev/null 2>"$work/err" ||
    echo "net-bench: docker run -d --runtime $rt failed: $(head -c 300 "$work/err")"
done
i=0
while [ "$i" -lt "$rounds" ]; do
  for rt in kata runc; do
    busybox nc -l -p 5001 >"$work/recv" 2>/dev/null &
    listener=$!
    sleep 0.5
    t=$(timeout 300 docker exec "net-$rt" sh -c "a=\$(cut -d' ' -f1 /proc/uptime); nc $gw 5001 -e head -c $((mib * 1048576)) /dev/zero || exit 1; b=\$(cut -d' ' -f1 /proc/uptime); echo \$a \$b" 2>"$work/err")
    wait "$listener"
    got=$(wc -c <"$work/recv")
    echo "$t" | awk -v rt=$rt -v mib="$mib" -v got="$got" -v err="$(head -c 200 "$work/err")" '{
      s = $2 - $1
      if (NF == 2 && s > 0 && got == mib * 1048576) printf "net_mbit %s %.1f\n", rt, mib * 8 * 1048576 / s / 1e6
      else printf "net_mbit %s fail (received %d bytes; %s)\n", rt, got, err }'
    ip=$(docker inspect -f '{{.NetworkSettings.IPAddress}}' "net-$rt")
    j=0
    while [ "$j" -lt 20 ]; do
      t0=$(date +%s%N)
      if printf 'GET / HTTP/1.0\r\n\r\n' | timeout 20 busybox nc "$ip" 80 | grep -qx pong; then
        echo "net_rr $rt $(( ($(date +%s%N) - t0) / 1000 ))"
      else
        echo "net_rr $rt fail"
      fi
      j=$((j + 1))
    done
  done
  i=$((i + 1))
done
docker rm -f net-kata net-runc >/dev/null 2>&1
stop_dockerd >/dev/null 2>&1
stop_containerd >/dev/null 2>&1
exit 0
