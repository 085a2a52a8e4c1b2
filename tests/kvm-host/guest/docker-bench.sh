#!/bin/sh
# Runs inside the KVM test host: `docker run --rm IMG true` with --runtime kata (sandpod) vs
# Docker's default runc, alternating, RUNS times each; then `docker exec C true` into a running
# container of each runtime, alternating, RUNS times each.
#   docker-bench.sh [RUNS]
# Prints `docker_run kata|runc <ms>|fail` and `docker_exec kata|runc <ms>|fail`.
RUNTIME=kata
. "$(dirname "$0")/engines-lib.sh"
runs=${1:-10}
ms() { echo $(( $(date +%s%N) / 1000000 )); }
start_dockerd >/dev/null || { echo "docker-bench: dockerd did not start"; exit 1; }
load_docker_image >/dev/null || { echo "docker-bench: docker load failed"; exit 1; }
i=0
while [ "$i" -lt "$runs" ]; do
  for rt in kata runc; do
    t0=$(ms)
    if docker run --rm --network none --runtime $rt "$IMG" true >/dev/null 2>"$work/err"; then
      echo "docker_run $rt $(( $(ms) - t0 ))"
    else
      echo "docker_run $rt fail ($(head -c 300 "$work/err"))"
    fi
  done
  i=$((i + 1))
done
for rt in kata runc; do
  docker run -d --network none --runtime $rt --name "bench-$rt" "$IMG" sleep 100000 >/dev/null 2>"$work/err" ||
    echo "docker-bench: docker run -d --runtime $rt failed: $(head -c 300 "$work/err")"
done
i=0
while [ "$i" -lt "$runs" ]; do
  for rt in kata runc; do
    t0=$(ms)
    if docker exec "bench-$rt" true >/dev/null 2>"$work/err"; then
      echo "docker_exec $rt $(( $(ms) - t0 ))"
    else
      echo "docker_exec $rt fail ($(head -c 300 "$work/err"))"
    fi
  done
  i=$((i + 1))
done
docker rm -f bench-kata bench-runc >/dev/null 2>&1
stop_dockerd >/dev/null 2>&1
stop_containerd >/dev/null 2>&1
exit 0
