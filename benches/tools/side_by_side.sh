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
# large"), PEERS (0; 1 also runs the benchmark peers `bench_peer_server` +
# `bench_peer_client` of ikc-cli, the library's path without the CLI, so the
# two can be compared), METRICS (0; 1 also runs `ikc serve --metrics`, the
# same server recording metrics, and prints its throughput over plain
# `ikc serve`'s, round by round), BATCH (0; N also runs `ikc bench --batch N`,
# its calls sent N at a time with `Client::call_many`, against the same
# `ikc serve`: on the throughput workload only, the other two having one
# call in flight), SERVER_CPU (0), CLIENT_CPU (1), PEERS_DIR (../shared/peers, the
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
peer_port=50313
metrics_port=50314

if [ -z "${IKC:-}" ]; then
    cargo build --release --quiet --bin ikc
    IKC=target/release/ikc
fi
systems="codec ikc"
if [ "${PEERS:-0}" = 1 ]; then
    cargo build --release --quiet -p ikc-cli --example bench_peer_server --example bench_peer_client
    peer_dir=$(dirname "$IKC")/examples
    systems="codec ikc peer"
fi
if [ "${METRICS:-0}" = 1 ]; then
    systems+=" metrics"
fi
batch=${BATCH:-0}
if [ "$batch" != 0 ]; then
    systems+=" batch"
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

max_secs=$(( (rounds * 3 * 3) * (secs + warmup + 2) + 60 ))
taskset -c "$server_cpu" "$codec_dir/codec-server" --addr "127.0.0.1:$codec_port" \
    --workers 1 --max-secs "$max_secs" 2>"$out/codec-server.err" &
pids+=($!)
taskset -c "$server_cpu" "$IKC" serve --bind "127.0.0.1:$ikc_port" 2>"$out/ikc-server.err" &
pids+=($!)
if [ "${PEERS:-0}" = 1 ]; then
    taskset -c "$server_cpu" "$peer_dir/bench_peer_server" --addr "127.0.0.1:$peer_port" \
        --workers 1 --max-secs "$max_secs" 2>"$out/peer-server.err" &
    pids+=($!)
fi
if [ "${METRICS:-0}" = 1 ]; then
    taskset -c "$server_cpu" "$IKC" serve --bind "127.0.0.1:$metrics_port" \
        --metrics 127.0.0.1:0 2>"$out/metrics-server.err" &
    pids+=($!)
fi
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
    local system=$1 workload=$2 line
    # shellcheck disable=SC2046
    case $system in
    codec)
        line=$(taskset -c "$client_cpu" "$codec_dir/codec-client" --addr "127.0.0.1:$codec_port" \
            $(flags "$workload") --secs "$secs" --warmup "$warmup" --workers 1 | grep 'rps=' | tail -n 1) ;;
    ikc | metrics | batch)
        local port=$ikc_port extra=()
        [ "$system" = metrics ] && port=$metrics_port
        [ "$system" = batch ] && [ "$workload" = throughput ] && extra=(--batch "$batch")
        line=$(taskset -c "$client_cpu" "$IKC" bench --addr "127.0.0.1:$port" \
            $(flags "$workload") "${extra[@]}" --secs "$secs" --warmup "$warmup" | grep 'rps=' | tail -n 1) ;;
    peer)
        line=$(taskset -c "$client_cpu" "$peer_dir/bench_peer_client" --addr "127.0.0.1:$peer_port" \
            $(flags "$workload") --secs "$secs" --warmup "$warmup" --workers 1 | grep 'rps=' | tail -n 1) ;;
    esac
    echo "$line" | tr ' ' '\n' | awk -F= '$1 == "rps" {r = $2} $1 == "p50_us" {p = $2} END {print r, p}'
}

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# The systems in the order of odd rounds, reversed on even ones.
reversed=$(echo "$systems" | tr ' ' '\n' | tac | tr '\n' ' ')
header="round  workload   "
for system in $systems; do header+=$(printf ' %12s %9s' "${system}_rps" "${system}_p50"); done
for system in $systems; do [ "$system" = codec ] || header+=$(printf ' %9s' "$system/codec"); done
echo "$header"
for round in $(seq "$rounds"); do
    for workload in $workloads; do
        order=$systems
        [ $((round % 2)) -eq 0 ] && order=$reversed
        declare -A rps=() p50=()
        for system in $order; do
            read -r "rps[$system]" "p50[$system]" < <(measure "$system" "$workload")
        done
        line=$(printf '%-6s %-11s' "$round" "$workload")
        for system in $systems; do
            line+=$(printf ' %12.0f %9.1f' "${rps[$system]}" "${p50[$system]}")
        done
        for system in $systems; do
            [ "$system" = codec ] && continue
            # Latency compares p50 (system / codec, lower is better); the
            # others compare throughput (system / codec, higher is better).
            if [ "$workload" = latency ]; then
                ratio=$(awk -v a="${p50[$system]}" -v b="${p50[codec]}" 'BEGIN {printf "%.3f", a / b}')
            else
                ratio=$(awk -v a="${rps[$system]}" -v b="${rps[codec]}" 'BEGIN {printf "%.3f", a / b}')
            fi
            echo "$ratio" >>"$out/$system.$workload.ratios"
            line+=$(printf ' %9s' "$ratio")
        done
        if [ "${METRICS:-0}" = 1 ] && [ "$workload" != latency ]; then
            ratio=$(awk -v a="${rps[metrics]}" -v b="${rps[ikc]}" 'BEGIN {printf "%.3f", a / b}')
            echo "$ratio" >>"$out/metrics-ikc.$workload.ratios"
            line+=$(printf '  metrics/ikc %s' "$ratio")
        fi
        echo "$line"
    done
done

echo
echo "medians of $rounds rounds (latency: p50 system/codec; throughput, large: rps system/codec)"
for system in $systems; do
    [ "$system" = codec ] && continue
    for workload in $workloads; do
        printf '%-6s %-11s %s\n' "$system" "$workload" "$(median <"$out/$system.$workload.ratios")"
    done
done
if [ "${METRICS:-0}" = 1 ]; then
    for workload in $workloads; do
        [ "$workload" = latency ] && continue
        printf '%-6s %-11s %s   (rps with metrics / without)\n' metrics/ikc "$workload" \
            "$(median <"$out/metrics-ikc.$workload.ratios")"
    done
fi
