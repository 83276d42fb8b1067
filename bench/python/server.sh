# Sourced by run.sh and ab.sh: starts one kvd (or etcd) member on free
# ports for the benchmark and stops it on exit. Expects BIN (the server
# binary), DIR (a scratch dir, removed on exit) and SERVER_PY (a python
# with kvclient installed, used to wait for a leader); sets EP and
# SERVER_PID.

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
    "$SERVER_PY" - "$EP" "$SERVER_PID" <<'PYEOF'
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
# Starts the server (retrying on a port taken meanwhile) and arranges for
# it and DIR to go on exit.
launch_server() {
    SERVER_PID=
    # (`|| true`: errexit also applies inside the trap, and wait returns 137.)
    trap 'if [ -n "$SERVER_PID" ]; then kill -9 $SERVER_PID 2>/dev/null || true; wait $SERVER_PID 2>/dev/null || true; fi; rm -rf "$DIR"' EXIT
    local attempt
    for attempt in 1 2 3 4 5; do
        start_server
        if server_ready; then return 0; fi
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
}
