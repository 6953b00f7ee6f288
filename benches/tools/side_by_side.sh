#!/usr/bin/env bash
# What a user runs, beside the practical limit: `ikc serve` + `ikc bench`
# against the raw tokio-util LengthDelimitedCodec echo of shared/peers,
# alternated in rounds (A B, then B A), for the three workloads:
#
#   latency     1 connection x 1 in flight, 64 B    (compares p50 latency)
#   throughput  4 connections x 32 in flight, 64 B  (compares requests/s)
#   large       1 connection x 1 in flight, 64 KiB  (compares requests/s)
#
# Prints each round's figures and ratios to the codec, then the medians.
#
#   benches/tools/side_by_side.sh                 # 5 rounds x 5 s
#   ROUNDS=3 SECS=2 benches/tools/side_by_side.sh
#   WORKLOADS=throughput benches/tools/side_by_side.sh
#
# Knobs: ROUNDS (5), SECS (5), WARMUP (1), WORKLOADS ("latency throughput
# large"), SERVER_CPU (0), CLIENT_CPU (1), PEERS_DIR (../shared/peers, the
# codec echo's workspace), IKC (a prebuilt `ikc` binary; default: build
# target/release/ikc). Servers are pinned to SERVER_CPU, clients to
# CLIENT_CPU; only one client runs at a time.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${ROUNDS:-5}
secs=${SECS:-5}
warmup=${WARMUP:-1}
workloads=${WORKLOADS:-latency throughput large}
server_cpu=${SERVER_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
peers=${PEERS_DIR:-../shared/peers}
codec_port=50311
ikc_port=50312

if [ -z "${IKC:-}" ]; then
    cargo build --release --quiet --bin ikc
    IKC=target/release/ikc
fi
cargo build --release --quiet --manifest-path "$peers/Cargo.toml" -p codec-echo
codec_dir=$(cd "$peers" && pwd)/target/release

out=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$out"
}
trap cleanup EXIT

max_secs=$(( (rounds * 3 * 2) * (secs + warmup + 2) + 60 ))
taskset -c "$server_cpu" "$codec_dir/codec-server" --addr "127.0.0.1:$codec_port" \
    --workers 1 --max-secs "$max_secs" 2>"$out/codec-server.err" &
pids+=($!)
taskset -c "$server_cpu" "$IKC" serve --bind "127.0.0.1:$ikc_port" 2>"$out/ikc-server.err" &
pids+=($!)
# Both listen within a few seconds; `ikc ping` and a short codec run tell.
for _ in $(seq 100); do
    "$IKC" ping --addr "127.0.0.1:$ikc_port" >/dev/null 2>&1 && break
    sleep 0.1
done

flags() {
    case $1 in
        latency) echo "--conns 1 --inflight 1 --payload 64" ;;
        throughput) echo "--conns 4 --inflight 32 --payload 64" ;;
        large) echo "--conns 1 --inflight 1 --payload 65536" ;;
    esac
}

# One client run; prints "RPS P50_US" from its result line.
measure() {
    local peer=$1 workload=$2 line
    # shellcheck disable=SC2046
    if [ "$peer" = codec ]; then
        line=$(taskset -c "$client_cpu" "$codec_dir/codec-client" --addr "127.0.0.1:$codec_port" \
            $(flags "$workload") --secs "$secs" --warmup "$warmup" --workers 1 | grep 'rps=' | tail -n 1)
    else
        line=$(taskset -c "$client_cpu" "$IKC" bench --addr "127.0.0.1:$ikc_port" \
            $(flags "$workload") --secs "$secs" --warmup "$warmup" | grep 'rps=' | tail -n 1)
    fi
    echo "$line" | tr ' ' '\n' | awk -F= '$1 == "rps" {r = $2} $1 == "p50_us" {p = $2} END {print r, p}'
}

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

printf '%-6s %-11s %14s %14s %9s %9s %9s\n' round workload codec_rps ikc_rps codec_p50 ikc_p50 ratio
for round in $(seq "$rounds"); do
    for workload in $workloads; do
        # A B on odd rounds, B A on even ones.
        if [ $((round % 2)) -eq 1 ]; then
            read -r c_rps c_p50 < <(measure codec "$workload")
            read -r i_rps i_p50 < <(measure ikc "$workload")
        else
            read -r i_rps i_p50 < <(measure ikc "$workload")
            read -r c_rps c_p50 < <(measure codec "$workload")
        fi
        # Latency compares p50 (ikc / codec, lower is better); the others
        # compare throughput (ikc / codec, higher is better).
        if [ "$workload" = latency ]; then
            ratio=$(awk -v a="$i_p50" -v b="$c_p50" 'BEGIN {printf "%.3f", a / b}')
        else
            ratio=$(awk -v a="$i_rps" -v b="$c_rps" 'BEGIN {printf "%.3f", a / b}')
        fi
        echo "$ratio" >>"$out/$workload.ratios"
        printf '%-6s %-11s %14.0f %14.0f %9.1f %9.1f %9s\n' "$round" "$workload" \
            "$c_rps" "$i_rps" "$c_p50" "$i_p50" "$ratio"
    done
done

echo
echo "medians of $rounds rounds (latency: p50 ikc/codec; throughput, large: rps ikc/codec)"
for workload in $workloads; do
    printf '%-11s %s\n' "$workload" "$(median <"$out/$workload.ratios")"
done
