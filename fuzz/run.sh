#!/usr/bin/env bash
# Builds and runs the ikc fuzz targets with cargo-fuzz (libFuzzer).
#
#   fuzz/run.sh build                 build every target
#   fuzz/run.sh seeds                 rewrite the checked-in seed corpora
#   fuzz/run.sh run TARGET [SECONDS]  fuzz one target (default 600 s)
#   fuzz/run.sh all [SECONDS]         fuzz every target, two at a time
#   fuzz/run.sh list                  the target names
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# CI does not run this: cargo-fuzz needs nightly. Results go to
# RELIABILITY.md at the workspace root.
#
# New inputs libFuzzer finds go to work/TARGET (ignored by git); the
# checked-in seeds in corpus/TARGET are only read. Crashes land in
# artifacts/TARGET/; replay one with
#   cargo +nightly fuzz run TARGET artifacts/TARGET/crash-...
# and turn it into a regression test in the normal test suite.
set -euo pipefail
cd "$(dirname "$0")"

TARGETS=(frame_decoder frame_fast_path handshake_decoder value_decode specifier_parse connection legacy_storable)
TOOLCHAIN="${TOOLCHAIN:-+nightly}"

run_one() {
    local target="$1" seconds="${2:-600}"
    mkdir -p "work/$target" logs
    # -timeout: an input running longer than 10 s is a hang, reported as a crash.
    # -rss_limit_mb: the default 2 GiB, spelled out: memory growth is a finding.
    cargo "$TOOLCHAIN" fuzz run "$target" "work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        2>&1 | tee "logs/$target.log" | grep -E '^(#[0-9]+ +(pulse|DONE|INITED)|==|stat::|Done)' || true
}

case "${1:-}" in
    build) cargo "$TOOLCHAIN" fuzz build ;;
    seeds) cargo run --example seeds ;;
    list) printf '%s\n' "${TARGETS[@]}" ;;
    run) run_one "${2:?target name}" "${3:-600}" ;;
    all)
        cargo "$TOOLCHAIN" fuzz build
        seconds="${2:-600}"
        # Two at a time: CI-sized machines have two cores.
        for ((i = 0; i < ${#TARGETS[@]}; i += 2)); do
            run_one "${TARGETS[i]}" "$seconds" &
            if ((i + 1 < ${#TARGETS[@]})); then run_one "${TARGETS[i + 1]}" "$seconds" & fi
            wait
        done
        ;;
    *) sed -n '2,18p' "$0"; exit 2 ;;
esac
