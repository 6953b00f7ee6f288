#!/usr/bin/env bash
# Prefork scaling: `ikc serve --workers W` for each W, loaded by one
# `ikc bench` of 8 connections x 32 in flight, 64-byte payloads. Prints a
# line per worker count: rps and latency percentiles (the bench's own
# summary line). Server and bench share the machine's CPUs unpinned, as a
# user runs them; on a machine with few cores the figures say how much the
# workers cost more than how far they scale.
#
#   benches/tools/prefork_scaling.sh                  # workers 1 2 4 8, 4 s each
#   WORKERS="1 2 4 8 16" SECS=8 benches/tools/prefork_scaling.sh
#
# Knobs: WORKERS ("1 2 4 8"), SECS (4), CONNS (8), PORT (29320), IKC (a
# prebuilt `ikc` binary; default: build target/release/ikc). Traffic stays
# on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
workers=${WORKERS:-1 2 4 8}
secs=${SECS:-4}
conns=${CONNS:-8}
# Below the usual ephemeral range (32768-60999): a port the load's own
# connections used lately can be refused to a listener while they linger.
port=${PORT:-29320}
if [ -z "${IKC:-}" ]; then
    cargo build --release --quiet --bin ikc
    IKC=target/release/ikc
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "# $(nproc) CPUs; ikc bench --conns $conns --inflight 32 --payload 64 --secs $secs"
for w in $workers; do
    "$IKC" serve --bind "127.0.0.1:$port" --workers "$w" 2>"$log" &
    server=$!
    # Ready when a ping is answered (every worker accepts on one socket).
    ready=
    for _ in $(seq 100); do
        "$IKC" ping --addr "127.0.0.1:$port" >/dev/null 2>&1 && ready=1 && break
        sleep 0.1
    done
    if [ -z "$ready" ]; then
        echo "workers=$w: the server did not answer:" >&2
        cat "$log" >&2
        kill -TERM "$server" 2>/dev/null || true
        exit 1
    fi
    line=$("$IKC" bench --addr "127.0.0.1:$port" --conns "$conns" --inflight 32 \
        --payload 64 --secs "$secs" --warmup 0.5) || line="failed: $line"
    echo "workers=$w $line"
    kill -TERM "$server"
    wait "$server" 2>/dev/null || true
done
