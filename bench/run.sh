#!/usr/bin/env bash
# A/B benchmark: kvd against Debian's etcd 3.4, same flags, same workloads.
#
#   bench/run.sh               # build release binaries, run both servers, ~2 min
#   bench/run.sh --quick       # shorter workloads (~1 min once built)
#   bench/run.sh --only etcd   # one server only; the other column reads "n/a"
#   bench/run.sh --no-build    # use the binaries already in target/release
#   bench/run.sh --cluster     # 3 members per server (put 64/256 clients, range-l)
#   bench/run.sh --etcd latest # compare with the newest etcd release, built from
#                              # the Go module proxy by scripts/etcd-latest.sh
#   bench/run.sh --etcd PATH   # compare with that etcd binary (default: Debian's)
#
# Environment: KVD_BIN, ETCD_BIN, BENCH_BIN override the binaries;
# BENCH_DURATION overrides the length of each workload (e.g. 5s).
#
# Each server runs alone on 127.0.0.1 with free ports and a fresh temp data
# dir (etcd keeps its default fsync). Only the PIDs this script starts are
# killed, and its temp dirs are removed, on any exit. A server that is
# missing, fails to build, fails to start or dies shows as "n/a".
# The table goes to stdout and to bench/results/<timestamp>.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=0
CLUSTER=0
BUILD=1
ONLY=""

usage() { sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --no-build) BUILD=0 ;;
    --cluster) CLUSTER=1 ;;
    --etcd)
      case ${2:-} in
        latest) ETCD_BIN="$("$ROOT/scripts/etcd-latest.sh")/etcd" || { echo "building the newest etcd failed" >&2; exit 1; } ;;
        debian) ETCD_BIN=/usr/bin/etcd ;;
        "") echo "--etcd takes latest, debian or a path" >&2; exit 2 ;;
        *) ETCD_BIN=$2 ;;
      esac
      shift ;;
    --only)
      ONLY=${2:-}
      [[ $ONLY == kvd || $ONLY == etcd ]] || { echo "--only takes kvd or etcd" >&2; exit 2; }
      shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

if [[ $QUICK == 1 ]]; then DUR=${BENCH_DURATION:-3s}; else DUR=${BENCH_DURATION:-8s}; fi

KVD_BIN_SET=${KVD_BIN:+1}
KVD_BIN=${KVD_BIN:-$ROOT/target/release/kvd}
ETCD_BIN=${ETCD_BIN:-$(command -v etcd || echo /usr/bin/etcd)}  # --etcd may have set it
BENCH_BIN=${BENCH_BIN:-$ROOT/target/release/kv-bench}

WORK=$(mktemp -d -t kv-bench.XXXXXX)
SERVER_PID=""
SERVER_PIDS=()
BENCH_PID=""

stop_server() {
  local pid
  [[ -n $SERVER_PID ]] || return 0
  for pid in "${SERVER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${SERVER_PIDS[@]}"; do
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  SERVER_PID=""
  SERVER_PIDS=()
}

cleanup() {
  if [[ -n $BENCH_PID ]]; then
    kill -TERM "$BENCH_PID" 2>/dev/null || true
    wait "$BENCH_PID" 2>/dev/null || true
  fi
  stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[run.sh] $*" >&2; }

# --- build -------------------------------------------------------------------
KVD_NOTE=""
if [[ $BUILD == 1 ]]; then
  cd "$ROOT"
  log "cargo build --release -p kvd -p kv-bench"
  if ! cargo build --release -p kvd -p kv-bench; then
    log "building kvd failed; building kv-bench alone"
    cargo build --release -p kv-bench
    if [[ -z $KVD_BIN_SET ]]; then
      KVD_NOTE="kvd did not build"
    fi
  fi
fi
[[ -x $BENCH_BIN ]] || { log "no kv-bench binary at $BENCH_BIN"; exit 1; }

# --- helpers -----------------------------------------------------------------
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 30000))
    if [[ $p != "${1:-}" ]] && ! port_taken "$p"; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

# start_server NAME BIN: starts BIN with etcd's flags (one member, or three
# with --cluster); sets SERVER_PID (the first member), SERVER_PIDS and ENDPOINT.
start_server() {
  local name=$1 bin=$2 dir="$WORK/$1" n=1 i cports=() pports=() initial="" eps=""
  [[ $CLUSTER == 1 ]] && n=3
  mkdir -p "$dir"
  for i in $(seq 1 "$n"); do
    cports+=("$(free_port)") || return 1
    pports+=("$(free_port "${cports[-1]}")") || return 1
    initial+="${initial:+,}m$i=http://127.0.0.1:${pports[-1]}"
    eps+="${eps:+,}http://127.0.0.1:${cports[-1]}"
  done
  ENDPOINT=$eps
  for i in $(seq 1 "$n"); do
    local c="http://127.0.0.1:${cports[i-1]}" p="http://127.0.0.1:${pports[i-1]}"
    "$bin" --name "m$i" --data-dir "$dir/data$i" \
      --listen-client-urls "$c" --advertise-client-urls "$c" \
      --listen-peer-urls "$p" --initial-advertise-peer-urls "$p" \
      --initial-cluster "$initial" --initial-cluster-token bench \
      >"$dir/server$i.log" 2>&1 &
    SERVER_PIDS+=("$!")
  done
  SERVER_PID=${SERVER_PIDS[0]}
  for _ in $(seq 1 60); do
    for i in "${SERVER_PIDS[@]}"; do
      if ! kill -0 "$i" 2>/dev/null; then
        log "$name: a member exited during start-up; last log lines:"
        tail -n 5 "$dir"/server*.log >&2 || true
        stop_server
        return 1
      fi
    done
    if "$BENCH_BIN" --endpoints "$ENDPOINT" --timeout 1s ping >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.25
  done
  log "$name did not answer within 15s; last log lines:"
  tail -n 5 "$dir"/server*.log >&2 || true
  stop_server
  return 1
}

# summary FILE: "N ops/s" (or "N events/s" for watch) from a JSON report.
summary() {
  local rate unit=ops/s
  rate=$(sed -n 's/.*"events_per_sec":\([0-9.]*\).*/\1/p' "$1")
  if [[ -n $rate ]]; then unit=events/s; else
    rate=$(sed -n 's/.*"ops_per_sec":\([0-9.]*\).*/\1/p' "$1")
  fi
  printf '%.0f %s' "${rate:-0}" "$unit"
}

# run_workload SERVER NAME ARGS...: writes $WORK/SERVER/NAME.json on success.
run_workload() {
  local server=$1 name=$2 dir="$WORK/$1"
  shift 2
  if [[ -z $SERVER_PID ]] || ! kill -0 "$SERVER_PID" 2>/dev/null; then
    log "$server: server is gone, skipping $name"
    return 0
  fi
  log "$server: $name"
  timeout --kill-after=5 300 "$BENCH_BIN" --endpoints "$ENDPOINT" --json "$@" \
    >"$dir/$name.json" 2>"$dir/$name.err" &
  BENCH_PID=$!
  if wait "$BENCH_PID"; then
    log "$server: $name: $(summary "$dir/$name.json")"
  else
    log "$server: $name failed: $(tail -n 1 "$dir/$name.err")"
    rm -f "$dir/$name.json"
  fi
  BENCH_PID=""
}

WORKLOADS=put,range-l,range-s,txn,watch
[[ $CLUSTER == 1 ]] && WORKLOADS=put,put-256,range-l
run_matrix() {
  local s=$1
  if [[ $CLUSTER == 1 ]]; then
    run_workload "$s" put --clients 64 --conns 8 --duration "$DUR" put
    run_workload "$s" put-256 --clients 256 --conns 16 --duration "$DUR" put
    run_workload "$s" range-l --clients 64 --conns 8 --duration "$DUR" --key-space 1000 \
      range --consistency l
    return 0
  fi
  run_workload "$s" put --clients 64 --conns 8 --duration "$DUR" put
  run_workload "$s" range-l --clients 64 --conns 8 --duration "$DUR" --key-space 1000 \
    range --consistency l
  run_workload "$s" range-s --clients 64 --conns 8 --duration "$DUR" --key-space 1000 \
    range --consistency s --no-prefill
  run_workload "$s" txn --clients 64 --conns 8 --duration "$DUR" txn
  run_workload "$s" watch --clients 8 --conns 8 --duration "$DUR" watch --watchers 16 --drain 10s
}

# bench_server NAME BIN NOTE: runs the matrix; prints why it could not, if so.
STATUS_etcd=""
STATUS_kvd=""
bench_server() {
  local name=$1 bin=$2 note=$3 status
  mkdir -p "$WORK/$name"
  if [[ -n $ONLY && $ONLY != "$name" ]]; then
    status="not run (--only $ONLY)"
  elif [[ -n $note ]]; then
    status=$note
  elif [[ ! -x $bin ]]; then
    status="no binary at $bin"
  elif ! start_server "$name" "$bin"; then
    status="failed to start"
  else
    run_matrix "$name"
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
      status="ok"
    else
      status="died during the run"
    fi
    stop_server
  fi
  log "$name: $status"
  printf -v "STATUS_$name" '%s' "$status"
}

# --- run ---------------------------------------------------------------------
STARTED=$(date -u +%Y%m%dT%H%M%SZ)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
bench_server etcd "$ETCD_BIN" ""
bench_server kvd "$KVD_BIN" "$KVD_NOTE"

TABLE=$("$BENCH_BIN" compare --a-dir "$WORK/kvd" --b-dir "$WORK/etcd" \
  --a-name kvd --b-name etcd --workloads "$WORKLOADS")

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
ETCD_VERSION=$("$ETCD_BIN" --version 2>/dev/null | head -n 1 || echo "unknown")
CPU=$(grep -m 1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //' || true)
REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "none")
DIRTY=$(git -C "$ROOT" status --porcelain 2>/dev/null | head -n 1)

mkdir -p "$ROOT/bench/results"
OUT="$ROOT/bench/results/$STARTED.md"
{
  echo "# kv-bench A/B run $STARTED"
  echo
  echo "- commit: $REV${DIRTY:+ (with uncommitted changes)}"
  echo "- machine: $(nproc) cores, ${CPU:-unknown CPU}, $(uname -sr)"
  echo "- load average (1/5/15 min) before: $LOAD_BEFORE, after: $LOAD_AFTER"
  echo "- etcd: $ETCD_VERSION ($ETCD_BIN): $STATUS_etcd"
  echo "- kvd: $KVD_BIN: $STATUS_kvd"
  echo "- each workload: $DUR, 8-byte keys, 256-byte values, client and server on 127.0.0.1"
  echo
  echo "$TABLE"
  echo
  echo "ops/s ratio > 1 means kvd is faster; p99 ratio < 1 means kvd's tail is lower."
  echo "watch compares events delivered per second and put->event p99."
} >"$OUT"
# Keep the raw JSON reports and server logs (not the data dirs) beside the table.
for s in etcd kvd; do
  dest="$ROOT/bench/results/$STARTED-$s"
  for f in "$WORK/$s"/*.json "$WORK/$s"/*.err "$WORK/$s"/server.log; do
    if [[ -e $f ]]; then mkdir -p "$dest" && cp "$f" "$dest/"; fi
  done
done

cat "$OUT"
log "wrote $OUT"
