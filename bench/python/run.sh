#!/usr/bin/env bash
# Python client benchmark: kvclient (release wheel) against python-etcd3 0.12
# and aetcd, in one run against the same release kvd (or, with SERVER=etcd,
# Debian's etcd). Results: JSON lines on stdout, one per client and workload.
#
#   bash bench/python/run.sh            # OPS=5000 WATCH_EVENTS=20000 ROUNDS=3 by default
#   DATA_DIR_ON=disk bash bench/python/run.sh
#   KVD_BIN=path/to/kvd KVCLIENT_WHEEL=path/to/kvclient.whl bash bench/python/run.sh  # no builds
#   WORKLOADS=put_c64,get_c64 bash bench/python/run.sh  # only these (default: all five)
#
# To compare two kvclient wheels (old/new build) see ab.sh.
#
# DATA_DIR_ON=tmpfs (the default) puts the server's data dir under /dev/shm:
# its fsync then costs nothing, so what differs between clients is their own
# cost. DATA_DIR_ON=disk puts it under target/ (a real disk: every write waits
# for an fsync, the same constant for every client).
# Best of ROUNDS rounds, the client order reversed every other round; a
# markdown table of the best rounds (and the load averages seen) at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
OPS="${OPS:-5000}"
WATCH_EVENTS="${WATCH_EVENTS:-20000}"
ROUNDS="${ROUNDS:-3}"
WORKLOADS="${WORKLOADS:-put_seq,get_seq,put_c64,get_c64,watch}"
DATA_DIR_ON="${DATA_DIR_ON:-tmpfs}"
case "$DATA_DIR_ON" in
    tmpfs) DATA_ROOT=/dev/shm ;;
    disk) DATA_ROOT="$ROOT/target" ;;
    *) echo "DATA_DIR_ON must be tmpfs or disk, not $DATA_DIR_ON" >&2; exit 2 ;;
esac
export CARGO_TARGET_DIR="$ROOT/target"

# Two venvs: python-etcd3 0.12's generated code needs protobuf 3.20 (as in
# server/tests/compat/requirements.txt), aetcd needs protobuf 4 or later.
A="$ROOT/target/py-bench-etcd3"
B="$ROOT/target/py-bench-aetcd"
[ -x "$A/bin/python" ] || python3 -m venv "$A"
[ -x "$B/bin/python" ] || python3 -m venv "$B"
"$A/bin/pip" install -q "maturin>=1.9,<2" etcd3==0.12.0 protobuf==3.20.3 grpcio
"$B/bin/pip" install -q aetcd

# One optimized wheel, installed in both (KVCLIENT_WHEEL: a wheel built already).
if [ -n "${KVCLIENT_WHEEL:-}" ]; then
    WHEEL="$KVCLIENT_WHEEL"
else
    WHEELS="$ROOT/target/wheels/kvclient-bench"
    rm -rf "$WHEELS"
    PATH="$A/bin:$PATH" maturin build --quiet --release -m bindings/python/Cargo.toml --out "$WHEELS"
    WHEEL="$(echo "$WHEELS"/kvclient-*.whl)"
fi
"$A/bin/pip" install -q --force-reinstall --no-deps "$WHEEL"
"$B/bin/pip" install -q --force-reinstall --no-deps "$WHEEL"

# The server: a single member on free ports, its data dir under $DATA_ROOT.
SERVER="${SERVER:-kvd}"
if [ "$SERVER" = kvd ] && [ -n "${KVD_BIN:-}" ]; then
    BIN="$KVD_BIN" # a kvd built already
elif [ "$SERVER" = kvd ]; then
    cargo build --quiet --release -p kvd --bin kvd
    BIN="$ROOT/target/release/kvd"
else
    BIN="$(command -v etcd)"
fi
DIR="$(mktemp -d "$DATA_ROOT/kvbench-py.XXXXXX")"
# shellcheck source=bench/python/server.sh
source bench/python/server.sh
SERVER_PY="$A/bin/python"
launch_server
echo "# server: $SERVER ($BIN), data dir on $DATA_DIR_ON ($DIR), ops: $OPS, watch events: $WATCH_EVENTS, rounds: $ROUNDS, cores: $(nproc)" >&2
one() { # client round
    local py="$A/bin/python"
    [ "$1" = aetcd ] && py="$B/bin/python"
    "$py" bench/python/bench.py --endpoint "$EP" --clients "$1" --round "$2" \
        --ops "$OPS" --watch-events "$WATCH_EVENTS" --workloads "$WORKLOADS" | tee -a "$DIR/results.jsonl"
}
for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then order="kvclient etcd3 aetcd"; else order="aetcd etcd3 kvclient"; fi
    for c in $order; do one "$c" "$r"; done
done
python3 bench/python/summarize.py --title "server $SERVER, data dir on $DATA_DIR_ON, OPS=$OPS, WATCH_EVENTS=$WATCH_EVENTS, best of $ROUNDS rounds" <"$DIR/results.jsonl"
