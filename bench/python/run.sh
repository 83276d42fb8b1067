#!/usr/bin/env bash
# Python client benchmark: kvclient (release wheel) against python-etcd3 0.12
# and aetcd, in one run against the same release kvd (or, with SERVER=etcd,
# Debian's etcd). Results: JSON lines on stdout, one per client and workload.
#
#   bash bench/python/run.sh            # OPS=5000 WATCH_EVENTS=20000 by default
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
OPS="${OPS:-5000}"
WATCH_EVENTS="${WATCH_EVENTS:-20000}"
export CARGO_TARGET_DIR="$ROOT/target"

# Two venvs: python-etcd3 0.12's generated code needs protobuf 3.20 (as in
# server/tests/compat/requirements.txt), aetcd needs protobuf 4 or later.
A="$ROOT/target/py-bench-etcd3"
B="$ROOT/target/py-bench-aetcd"
[ -x "$A/bin/python" ] || python3 -m venv "$A"
[ -x "$B/bin/python" ] || python3 -m venv "$B"
"$A/bin/pip" install -q "maturin>=1.9,<2" etcd3==0.12.0 protobuf==3.20.3 grpcio
"$B/bin/pip" install -q aetcd

# One optimized wheel, installed in both.
WHEELS="$ROOT/target/wheels/kvclient-bench"
rm -rf "$WHEELS"
PATH="$A/bin:$PATH" maturin build --quiet --release -m bindings/python/Cargo.toml --out "$WHEELS"
"$A/bin/pip" install -q --force-reinstall --no-deps "$WHEELS"/kvclient-*.whl
"$B/bin/pip" install -q --force-reinstall --no-deps "$WHEELS"/kvclient-*.whl

# The server: a single member on free ports, in a temp dir.
SERVER="${SERVER:-kvd}"
if [ "$SERVER" = kvd ]; then
    cargo build --quiet --release -p kvd --bin kvd
    BIN="$ROOT/target/release/kvd"
else
    BIN="$(command -v etcd)"
fi
DIR="$(mktemp -d)"
read -r CPORT PPORT < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
"$BIN" --name=n1 --data-dir="$DIR/data" \
    --listen-client-urls="http://127.0.0.1:$CPORT" --advertise-client-urls="http://127.0.0.1:$CPORT" \
    --listen-peer-urls="http://127.0.0.1:$PPORT" --initial-advertise-peer-urls="http://127.0.0.1:$PPORT" \
    --initial-cluster="n1=http://127.0.0.1:$PPORT" >"$DIR/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill -9 $SERVER_PID 2>/dev/null; rm -rf "$DIR"' EXIT
EP="127.0.0.1:$CPORT"
"$A/bin/python" - "$EP" <<'PYEOF'
import sys, time, kvclient
deadline = time.monotonic() + 30
while True:
    try:
        c = kvclient.Client([sys.argv[1]], timeout=2.0)
        if c.status().leader:
            break
    except kvclient.KvError:
        if time.monotonic() > deadline:
            raise
    time.sleep(0.1)
PYEOF

echo "# server: $SERVER ($BIN), ops: $OPS, watch events: $WATCH_EVENTS, cores: $(nproc)" >&2
"$A/bin/python" bench/python/bench.py --endpoint "$EP" --clients kvclient,etcd3 --ops "$OPS" --watch-events "$WATCH_EVENTS"
"$B/bin/python" bench/python/bench.py --endpoint "$EP" --clients aetcd --ops "$OPS" --watch-events "$WATCH_EVENTS"
