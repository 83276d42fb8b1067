#!/usr/bin/env bash
# Node client benchmark: kvclient against npm etcd3 on the same kvd.
#
#   bench/node/run.sh            # release addon + release kvd, best of 3 rounds
#   bench/node/run.sh --quick    # one short round
#   DATA_DIR_ON=disk bench/node/run.sh   # kvd's data dir on the disk (default: tmpfs, /dev/shm)
#
# Builds what is missing: the release addon (npm install in bindings/node,
# which also installs etcd3, a devDependency) and target/release/kvd.
# Prints a markdown table; docs/benchmarks.md ("Client packages") records full runs.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ -z "${KVD_BIN:-}" ]; then
  [ -x "$CARGO_TARGET_DIR/release/kvd" ] || (cd "$ROOT" && cargo build --release -p kvd --bin kvd)
  export KVD_BIN="$CARGO_TARGET_DIR/release/kvd"
fi
(cd "$ROOT/bindings/node" && KVCLIENT_PROFILE=release npm install --no-audit --no-fund)
exec node "$ROOT/bench/node/bench.mjs" "$@"
