#!/usr/bin/env bash
# Python client benchmark: kvclient (release wheel) against python-etcd3 0.12
# and aetcd, in one run against the same release kvd (or, with SERVER=etcd,
# Debian's etcd). Results: JSON lines on stdout, one per client and workload.
#
#   bash bench/python/run.sh            # OPS=5000 WATCH_EVENTS=20000 ROUNDS=3 by default
#   DATA_DIR_ON=disk bash bench/python/run.sh
#   KVD_BIN=path/to/kvd KVCLIENT_WHEEL=path/to/kvclient.whl bash bench/python/run.sh  # no builds
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
# Free ports are picked, then bound by the server: another process may take
# one in between, so a server that could not bind is started again.
start_server() {
    read -r CPORT PPORT < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
    "$BIN" --name=n1 --data-dir="$DIR/data" \
        --listen-client-urls="http://127.0.0.1:$CPORT" --advertise-client-urls="http://127.0.0.1:$CPORT" \
        --listen-peer-urls="http://127.0.0.1:$PPORT" --initial-advertise-peer-urls="http://127.0.0.1:$PPORT" \
        --initial-cluster="n1=http://127.0.0.1:$PPORT" >"$DIR/server.log" 2>&1 &
    SERVER_PID=$!
    EP="127.0.0.1:$CPORT"
}
# Waits until the server has a leader; fails at once if it exited.
server_ready() {
    "$A/bin/python" - "$EP" "$SERVER_PID" <<'PYEOF'
import sys, time, kvclient
deadline = time.monotonic() + 30
while True:
    try:
        with open(f"/proc/{sys.argv[2]}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                sys.exit("the server exited")
    except FileNotFoundError:
        sys.exit("the server exited")
    try:
        c = kvclient.Client([sys.argv[1]], timeout=2.0)
        if c.status().leader:
            break
    except kvclient.KvError:
        if time.monotonic() > deadline:
            raise
    time.sleep(0.1)
PYEOF
}
SERVER_PID=
# (`|| true`: errexit also applies inside the trap, and wait returns 137.)
trap 'if [ -n "$SERVER_PID" ]; then kill -9 $SERVER_PID 2>/dev/null || true; wait $SERVER_PID 2>/dev/null || true; fi; rm -rf "$DIR"' EXIT
for attempt in 1 2 3 4 5; do
    start_server
    if server_ready; then break; fi
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    if [ "$attempt" = 5 ] || ! grep -q "in use" "$DIR/server.log"; then
        echo "the server did not start; its log:" >&2
        tail -20 "$DIR/server.log" >&2
        exit 1
    fi
    echo "a port was taken meanwhile; starting the server on others" >&2
    rm -rf "$DIR/data"
done

echo "# server: $SERVER ($BIN), data dir on $DATA_DIR_ON ($DIR), ops: $OPS, watch events: $WATCH_EVENTS, rounds: $ROUNDS, cores: $(nproc)" >&2
one() { # client round
    local py="$A/bin/python"
    [ "$1" = aetcd ] && py="$B/bin/python"
    "$py" bench/python/bench.py --endpoint "$EP" --clients "$1" --round "$2" \
        --ops "$OPS" --watch-events "$WATCH_EVENTS" | tee -a "$DIR/results.jsonl"
}
for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then order="kvclient etcd3 aetcd"; else order="aetcd etcd3 kvclient"; fi
    for c in $order; do one "$c" "$r"; done
done
python3 bench/python/summarize.py --title "server $SERVER, data dir on $DATA_DIR_ON, OPS=$OPS, WATCH_EVENTS=$WATCH_EVENTS, best of $ROUNDS rounds" <"$DIR/results.jsonl"
