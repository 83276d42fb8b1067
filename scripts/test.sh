#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, and integration tests that start
# real kvd and etcd processes on 127.0.0.1, then the Python and Node packages'
# suites. Does its own set-up first. KV_TEST_JOBS (default 2) test targets run
# at once (scripts/run_tests.py); each stage prints how long it took.
set -euo pipefail
cd "$(dirname "$0")/.."
stage() {
    local name=$1 t0=$SECONDS
    shift
    echo "[test.sh] $name: $*"
    "$@"
    echo "[test.sh] $name done in $((SECONDS - t0)) s (total $SECONDS s)"
}
stage setup bash scripts/setup.sh
# Every test target (cargo test --workspace --all-targets), in parallel lanes.
stage workspace python3 scripts/run_tests.py
# --all-targets leaves out doc examples; they are tests too.
stage doc cargo test --workspace --doc
stage bench-smoke bash bench/run.sh --smoke  # every kv-bench workload ~1 s on kvd and etcd 3.4: that each ran, no speed checks
# The Python and Node packages, built from this checkout the way users install
# them, tested against the kvd the steps above built (target/debug/kvd).
stage python bash scripts/test-python.sh
stage node bash scripts/test-node.sh
