#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, and integration tests that start
# real kvd and etcd processes on 127.0.0.1, then the Python and Node packages'
# suites. Does its own set-up first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace --all-targets
# --all-targets leaves out doc examples; they are tests too.
cargo test --workspace --doc
bash bench/run.sh --smoke  # every kv-bench workload ~1 s on kvd and etcd 3.4: that each ran, no speed checks
# The Python and Node packages, built from this checkout the way users install
# them, tested against the kvd the steps above built (target/debug/kvd).
bash scripts/test-python.sh
bash scripts/test-node.sh
