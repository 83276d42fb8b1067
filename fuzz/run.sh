#!/usr/bin/env bash
# Runs every kvd fuzz target (or the ones named) for SECONDS each, JOBS at a
# time, with libFuzzer's memory limits so unbounded allocations are findings,
# and prints one summary line per target (also kept in fuzz/logs/).
#
#   fuzz/run.sh                      # 180 s per target, 2 at a time
#   SECONDS_PER_TARGET=3600 JOBS=4 fuzz/run.sh apply wal
#   NO_BUILD=1 EXTRA=-len_control=0 fuzz/run.sh apply   # reuse binaries; long inputs at once
#
# New interesting inputs go to fuzz/work/<target>/ (not committed); crashes
# to fuzz/artifacts/<target>/. The committed seeds in fuzz/corpus/<target>/
# are read, never written.
set -euo pipefail
cd "$(dirname "$0")"
SECS=${SECONDS_PER_TARGET:-180}
JOBS=${JOBS:-2}
ALL=(client_request apply snapshot mvcc_row wal peer_message hpack)
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL[@]}")
mkdir -p logs
# Build once, then run the binaries directly: `cargo fuzz run` would
# rebuild kvd before every target whenever its sources changed meanwhile.
[ "${NO_BUILD:-0}" = 1 ] || cargo +nightly fuzz build
BIN=target/x86_64-unknown-linux-gnu/release
run_one() {
    local t=$1
    mkdir -p "work/$t" "artifacts/$t"
    # -timeout: one input taking 10 s is a hang. -max_len: room for a
    # multi-record snapshot or a batch of entries.
    "$BIN/$t" "work/$t" "corpus/$t" \
        -max_total_time="$SECS" -rss_limit_mb=2048 -malloc_limit_mb=512 \
        -timeout=10 -max_len=16384 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" ${EXTRA:-} >"logs/$t.log" 2>&1
    echo "$t exit=$?"
}
export -f run_one
export SECS BIN EXTRA
printf '%s\n' "${TARGETS[@]}" | xargs -P "$JOBS" -I{} bash -c 'run_one {} || true'
for t in "${TARGETS[@]}"; do
    log="logs/$t.log"
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    rss=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    cov=$(echo "$last" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*' || echo "?")
    ft=$(echo "$last" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*' || echo "?")
    crashes=$(find "artifacts/$t" -type f | wc -l)
    echo "| $t | $execs | $rate | ${SECS} | $crashes | $cov | $ft | $rss |"
done
