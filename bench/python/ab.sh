#!/usr/bin/env bash
# A/B of two kvclient wheels (e.g. before and after a change) against one
# release kvd in one session: rounds alternate old/new (the order flipped
# every round), so both see the same machine and load. On a shared machine
# compare CPU per op first (this process, all threads), ops/s second.
#
#   OLD_WHEEL=a.whl NEW_WHEEL=b.whl bash bench/python/ab.sh
#   ROUNDS=6 OPS=5000 WORKLOADS=put_c64,get_c64 KVD_BIN=target/release/kvd (the defaults)
#
# Each wheel goes into its own venv under target/ (py-ab-old, py-ab-new);
# the server's data dir is under /dev/shm and removed on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
: "${OLD_WHEEL:?set OLD_WHEEL to the baseline wheel}"
: "${NEW_WHEEL:?set NEW_WHEEL to the wheel under test}"
OPS="${OPS:-5000}"
ROUNDS="${ROUNDS:-6}"
WORKLOADS="${WORKLOADS:-put_c64,get_c64}"
BIN="${KVD_BIN:-$ROOT/target/release/kvd}"
[ -x "$BIN" ] || { echo "no kvd at $BIN (cargo build --release -p kvd --bin kvd)" >&2; exit 2; }

for side in old new; do
    V="$ROOT/target/py-ab-$side"
    [ -x "$V/bin/python" ] || python3 -m venv "$V"
done
"$ROOT/target/py-ab-old/bin/pip" install -q --force-reinstall --no-deps "$OLD_WHEEL"
"$ROOT/target/py-ab-new/bin/pip" install -q --force-reinstall --no-deps "$NEW_WHEEL"

DIR="$(mktemp -d /dev/shm/kvbench-ab.XXXXXX)"
# shellcheck source=bench/python/server.sh
source bench/python/server.sh
SERVER_PY="$ROOT/target/py-ab-old/bin/python"
launch_server
echo "# A/B: old $OLD_WHEEL, new $NEW_WHEEL; server $BIN; ops $OPS; rounds $ROUNDS; workloads $WORKLOADS; cores $(nproc)" >&2
one() { # side round
    "$ROOT/target/py-ab-$1/bin/python" bench/python/bench.py --endpoint "$EP" --clients kvclient \
        --label "kvclient-$1" --round "$2" --ops "$OPS" --workloads "$WORKLOADS" | tee -a "$DIR/results.jsonl"
}
for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then order="old new"; else order="new old"; fi
    for side in $order; do one "$side" "$r"; done
done
python3 bench/python/summarize.py --ab --title "A/B, OPS=$OPS, $ROUNDS rounds each" <"$DIR/results.jsonl"
