#!/usr/bin/env bash
# Instructions per request (user space) of one side of the throughput
# workload (4 connections x 32 in flight, 64-byte payloads), counted by
# valgrind's cachegrind. Unlike wall-clock figures on a shared machine, the
# count is the same from run to run, so it shows what a change to the
# request path is worth. Kernel time (syscalls) is not counted.
#
#   benches/tools/instructions.sh DIR server|client [PORT]
#   benches/tools/instructions.sh --cli target/release/ikc server|client [PORT]
#
# `--cli IKC` counts what users run, `IKC serve` and `IKC bench`, instead
# of the benchmark peers (BENCH_FLAGS adds flags to the bench, e.g.
# BENCH_FLAGS="--batch 16").
#
# SERVER_FLAGS (environment) adds flags to the server, e.g.
# SERVER_FLAGS=--metrics to count the cost of recording metrics.
#
# DIR holds a `bench_peer_server` and a `bench_peer_client` built with
# `cargo build --release --examples` (any peer with the same flags works,
# e.g. links to shared/peers' codec-server and codec-client). The side
# measured runs under valgrind, the other natively; requests are all the
# calls answered, warm-up included.
#
# Two figures: `instructions_per_request` of one run (start-up and the
# end included: the bench client's per-slot latency histograms are set up
# and merged then, a few hundred instructions per request at this length
# under valgrind), and `net_instructions_per_request`, the difference
# between a long and a short run divided by the difference in requests,
# which leaves only the cost of the requests themselves.
set -euo pipefail
ikc=
if [ "$1" = --cli ]; then
  ikc=$2
  shift
fi
dir=$1
side=$2
port=${3:-50099}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Each side on its own CPU, as side_by_side.sh runs them: tokio starts a
# worker per CPU it may use, and one worker per side is what is measured
# there (SERVER_CPU, CLIENT_CPU: 0 and 1 by default).
server_cpu=${SERVER_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
cg=(valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null)
client=(--addr "127.0.0.1:$port" --conns 4 --inflight 32 --payload 64 --warmup 0.5)

# The server, for about SECS seconds: a bench peer stops by itself, `ikc
# serve` when the script sends SIGTERM (stop_server). Run in the
# background, it becomes the server (exec), so $! is the server's pid.
server() {
  if [ -n "$ikc" ]; then
    # shellcheck disable=SC2086
    exec taskset -c "$server_cpu" "$@" "$ikc" serve --bind "127.0.0.1:$port" ${SERVER_FLAGS:-}
  else
    # shellcheck disable=SC2086
    exec taskset -c "$server_cpu" "$@" "$dir/bench_peer_server" --addr "127.0.0.1:$port" --max-secs $((secs + 6)) ${SERVER_FLAGS:-}
  fi
}
stop_server() {
  [ -n "$ikc" ] && kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
}
# The load for SECS seconds; its output (with the count of answers) in $out/out.
load() {
  if [ -n "$ikc" ]; then
    # shellcheck disable=SC2086
    taskset -c "$client_cpu" "$@" "$ikc" bench "${client[@]}" --secs "$secs" --json ${BENCH_FLAGS:-} >"$out/out"
  else
    taskset -c "$client_cpu" "$@" "$dir/bench_peer_client" "${client[@]}" --secs "$secs" >"$out/out"
  fi
}

# One run with the load on for SECS seconds; sets `instructions` and `requests`.
measure() {
  secs=$1
  case $side in
  server)
    server "${cg[@]}" >"$out/err" 2>&1 &
    pid=$!
    sleep 2
    load
    stop_server
    ;;
  client)
    server >/dev/null 2>&1 &
    pid=$!
    sleep 0.5
    load "${cg[@]}" 2>"$out/err"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    ;;
  *)
    echo "usage: $0 [--cli IKC] DIR server|client [PORT]" >&2
    exit 2
    ;;
  esac
  instructions=$(grep -oP 'I\s+refs:\s+\K[\d,]+' "$out/err" | tr -d ,)
  requests=$(grep -oP '(total_done=|"answered":)\K\d+' "$out/out")
}

measure 2
short_instructions=$instructions
short_requests=$requests
measure 6
net=$(((instructions - short_instructions) / (requests - short_requests)))
echo "$side requests=$requests instructions_per_request=$((instructions / requests)) net_instructions_per_request=$net"
