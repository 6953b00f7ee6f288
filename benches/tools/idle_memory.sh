#!/usr/bin/env bash
# Memory per idle connection: starts `ikc serve`, opens N connections that
# each finish the handshake and one `IKC/ping`, and prints the server's RSS
# before and after, per connection (ikc-cli/examples/idle_connections.rs).
#
#   benches/tools/idle_memory.sh [CONNS] [PORT]     # default 10000, 6099
#
# Run from the repository root after
# `cargo build --release --bin ikc --example idle_connections`. The server
# and the client each hold a descriptor per connection, so the soft fd
# limit (inherited by both) is raised to CONNS plus some; the hard limit
# must allow it. Traffic stays on 127.0.0.1.
set -euo pipefail
conns=${1:-10000}
port=${2:-6099}
need=$((conns + 100))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$need" ]; then
  echo "the hard fd limit ($(ulimit -Hn)) is below the $need this needs" >&2
  exit 2
fi
ulimit -n "$need"
target/release/ikc serve --bind "127.0.0.1:$port" --max-connections $((conns + 100)) >/dev/null 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  target/release/ikc ping --addr "127.0.0.1:$port" >/dev/null 2>&1 && break
  sleep 0.1
done
target/release/examples/idle_connections --addr "127.0.0.1:$port" --server-pid "$server" --conns "$conns"
