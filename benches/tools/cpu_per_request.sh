#!/usr/bin/env bash
# User and system CPU time per request on each side of the throughput
# workload (4 connections x 32 in flight, 64-byte payloads), as the peers
# harness runs it: server pinned to CPU 0 and client to CPU 1, one runtime
# worker thread each. Read from /proc/PID/stat over 3 s of the 5-s run.
#
#   benches/tools/cpu_per_request.sh DIR [PORT]
#   BENCH_FLAGS="--batch 16" benches/tools/cpu_per_request.sh --cli target/release/ikc [PORT]
#
# DIR holds a `bench_peer_server` and a `bench_peer_client` (any peer with
# the harness's flags, e.g. links to shared/peers' codec-server and
# codec-client). `--cli IKC` measures what users run instead: `IKC serve`
# and `IKC bench`, with BENCH_FLAGS added to the bench. Needs 2 CPUs.
# Traffic stays on 127.0.0.1.
set -euo pipefail
if [ "$1" = --cli ]; then
  ikc=$2
  shift
fi
dir=$1
port=${2:-50098}
out=$(mktemp -d)
trap 'rm -rf "$out"; kill "$server" 2>/dev/null || true' EXIT
load=(--addr "127.0.0.1:$port" --conns 4 --inflight 32 --payload 64 --warmup 0.5 --secs 5)
if [ -n "${ikc:-}" ]; then
  taskset -c 0 "$ikc" serve --bind "127.0.0.1:$port" 2>/dev/null &
  server=$!
  sleep 0.5
  # shellcheck disable=SC2086
  taskset -c 1 "$ikc" bench "${load[@]}" ${BENCH_FLAGS:-} >"$out/out" &
else
  taskset -c 0 "$dir/bench_peer_server" --addr "127.0.0.1:$port" --workers 1 --max-secs 12 2>/dev/null &
  server=$!
  sleep 0.5
  taskset -c 1 "$dir/bench_peer_client" "${load[@]}" --workers 1 >"$out/out" &
fi
client=$!
# utime and stime, in clock ticks (fields 14 and 15).
times() { awk '{print $14, $15}' "/proc/$1/stat"; }
sleep 1.5
read -r su1 ss1 < <(times "$server")
read -r cu1 cs1 < <(times "$client")
sleep 3
read -r su2 ss2 < <(times "$server")
read -r cu2 cs2 < <(times "$client")
wait "$client"
rps=$(grep -oP '(^| )rps=\K[0-9.]+' "$out/out" | tail -n 1)
awk -v rps="$rps" -v tick="$(getconf CLK_TCK)" \
  -v su=$((su2 - su1)) -v ss=$((ss2 - ss1)) -v cu=$((cu2 - cu1)) -v cs=$((cs2 - cs1)) 'BEGIN {
  n = rps * 3; us = 1e6 / tick
  printf "rps=%d server_user_us=%.3f server_sys_us=%.3f client_user_us=%.3f client_sys_us=%.3f\n",
    rps, su * us / n, ss * us / n, cu * us / n, cs * us / n
}'
