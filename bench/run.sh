#!/usr/bin/env bash
# A/B benchmark: kvd against Debian's etcd 3.4, same flags, same workloads.
#
#   bench/run.sh               # build release binaries, 3 rounds, ~10 min
#   bench/run.sh --quick       # 3 s per workload, 1 round (~4 min once built)
#   bench/run.sh --rounds N    # N rounds (default 3, 1 with --quick); medians
#   bench/run.sh --smoke       # CI: every workload ~1 s on debug builds against
#                              # etcd; fails unless each ran (no speed checks)
#   bench/run.sh --only etcd   # one server only; the other column reads "n/a"
#   bench/run.sh --no-build    # use the binaries already in target/release
#   bench/run.sh --cluster     # 3 members per server (put 64/256 clients, range-l)
#   bench/run.sh --etcd latest # compare with the newest etcd release, built from
#                              # the Go module proxy by scripts/etcd-latest.sh
#   bench/run.sh --etcd PATH   # compare with that etcd binary (default: Debian's)
#   bench/run.sh --workloads watch,watch-fanout   # only these workloads
#
# Environment: KVD_BIN, ETCD_BIN, BENCH_BIN override the binaries;
# BENCH_DURATION overrides the length of each workload (e.g. 5s).
#
# Every workload of every round gets fresh servers (new process, new temp data
# dir; etcd keeps its default fsync), one server at a time, kvd and etcd
# alternating which goes first from round to round. So the peak RSS (VmHWM)
# and the CPU per op kv-bench reads from /proc are per workload. Each cell of
# the table is the median over the rounds. Only the PIDs this script starts are
# killed, and its temp dirs are removed, on any exit. A server that is
# missing, fails to build, fails to start or dies shows as "n/a".
# The table goes to stdout and to bench/results/<timestamp>.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=0
CLUSTER=0
BUILD=1
ONLY=""
SMOKE=0
ROUNDS=""
SELECT=""

usage() { sed -n '2,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --smoke) SMOKE=1 ;;
    --rounds)
      ROUNDS=${2:-}
      [[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || { echo "--rounds takes a number from 1 to 99" >&2; exit 2; }
      shift ;;
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
    --workloads)
      SELECT=${2:-}
      [[ -n $SELECT ]] || { echo "--workloads takes a comma-separated list" >&2; exit 2; }
      shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

# DRAIN: how long watchers may take after the last put (watch-fanout's
# backlog can be large; events/s counts only what arrived, up to the last event).
# LEASES: the smoke grants fewer (debug kvd grants slowly) to stay under a minute.
PROFILE=release
LEASES=1000
if [[ $SMOKE == 1 ]]; then
  DUR=${BENCH_DURATION:-1s}; DRAIN=5s; ROUNDS=${ROUNDS:-1}; PROFILE=debug; LEASES=200
elif [[ $QUICK == 1 ]]; then
  DUR=${BENCH_DURATION:-3s}; DRAIN=10s; ROUNDS=${ROUNDS:-1}
else
  DUR=${BENCH_DURATION:-8s}; DRAIN=10s; ROUNDS=${ROUNDS:-3}
fi

KVD_BIN_SET=${KVD_BIN:+1}
KVD_BIN=${KVD_BIN:-$ROOT/target/$PROFILE/kvd}
ETCD_BIN=${ETCD_BIN:-$(command -v etcd || echo /usr/bin/etcd)}  # --etcd may have set it
BENCH_BIN=${BENCH_BIN:-$ROOT/target/$PROFILE/kv-bench}

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
PROFILE_FLAG=--release
[[ $PROFILE == debug ]] && PROFILE_FLAG=""
if [[ $BUILD == 1 ]]; then
  cd "$ROOT"
  log "cargo build $PROFILE_FLAG -p kvd -p kv-bench"
  if ! cargo build $PROFILE_FLAG -p kvd -p kv-bench; then
    [[ $SMOKE == 1 ]] && { log "smoke: the build failed"; exit 1; }
    log "building kvd failed; building kv-bench alone"
    cargo build $PROFILE_FLAG -p kv-bench
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
    # Below Linux's ephemeral range (32768+): a client socket there cannot
    # take the port between this check and the server's bind.
    p=$((20000 + RANDOM % 12000))
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
        log "$name: a member exited during start-up; its error lines:"
        grep -h -m 3 -i 'error\|panick' "$dir"/server*.log >&2 || tail -n 5 "$dir"/server*.log >&2 || true
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

# run_workload SERVER NAME ROUND ARGS...: writes $WORK/SERVER/NAME.rROUND.json
# on success; returns 1 if the workload failed.
run_workload() {
  local server=$1 name=$2 round=$3 dir="$WORK/$1" pids out
  shift 3
  out="$dir/$name.r$round"
  if [[ -z $SERVER_PID ]] || ! kill -0 "$SERVER_PID" 2>/dev/null; then
    log "$server: server is gone, skipping $name"
    return 1
  fi
  pids=$(IFS=,; echo "${SERVER_PIDS[*]}")
  log "$server: $name (round $round of $ROUNDS, load $(cut -d' ' -f1 /proc/loadavg))"
  # --server-pids: kv-bench reads the servers' CPU time around the measured
  # phase and their VmHWM at its end from /proc.
  timeout --kill-after=5 300 "$BENCH_BIN" --endpoints "$ENDPOINT" --server-pids "$pids" \
    --key-size 32 --val-size 256 --json "$@" >"$out.json" 2>"$out.err" &
  BENCH_PID=$!
  if wait "$BENCH_PID"; then
    BENCH_PID=""
    log "$server: $name: $(summary "$out.json")"
    return 0
  fi
  BENCH_PID=""
  log "$server: $name failed: $(tail -n 1 "$out.err")"
  rm -f "$out.json"
  return 1
}

# workload_args NAME: kv-bench's arguments for one workload of the matrix.
workload_args() {
  local d="--duration $DUR"
  case $1 in
    put-1) echo "--clients 1 --conns 1 $d put" ;;
    put) echo "--clients 64 --conns 8 $d put" ;;
    put-256) echo "--clients 256 --conns 16 $d put" ;;
    range-l) echo "--clients 64 --conns 8 $d --key-space 1000 range --consistency l" ;;
    range-s) echo "--clients 64 --conns 8 $d --key-space 1000 range --consistency s" ;;
    txn) echo "--clients 64 --conns 8 $d txn" ;;
    watch) echo "--clients 1 --conns 8 $d watch --watchers 100 --drain $DRAIN" ;;
    watch-fanout) echo "--clients 8 --conns 8 $d watch --watchers 1000 --streams 100 --drain $DRAIN" ;;
    lease-keepalive) echo "--clients 64 --conns 8 $d lease-keepalive --leases $LEASES" ;;
    *) return 1 ;;
  esac
}

WORKLOADS=put-1,put,put-256,range-l,range-s,txn,watch,watch-fanout,lease-keepalive
[[ $CLUSTER == 1 ]] && WORKLOADS=put,put-256,range-l
if [[ -n $SELECT ]]; then
  for w in ${SELECT//,/ }; do
    workload_args "$w" >/dev/null || { echo "unknown workload: $w (known: $WORKLOADS)" >&2; exit 2; }
  done
  WORKLOADS=$SELECT
fi

# start_with_retry NAME BIN: start_server, up to 3 times: on this shared
# machine another process may take a port between our check and the bind.
start_with_retry() {
  local attempt
  for attempt in 1 2 3; do
    start_server "$1" "$2" && return 0
    rm -rf "$WORK/$1"/data*
    # Keep the failed start's logs for the results directory.
    for f in "$WORK/$1"/server*.log; do
      [[ -e $f ]] && mv "$f" "$WORK/$1/start-failed-$(date +%H%M%S)-$attempt.$(basename "$f")"
    done
    log "$1: start attempt $attempt failed"
  done
  return 1
}

# bench_one NAME BIN NOTE ROUND WORKLOAD: one workload on a fresh server.
# STATUS_<name> keeps the first problem seen (or "ok").
STATUS_etcd=""
STATUS_kvd=""
FAILED=0
bench_one() {
  local name=$1 bin=$2 note=$3 round=$4 w=$5 problem="" args
  mkdir -p "$WORK/$name"
  if [[ -n $ONLY && $ONLY != "$name" ]]; then
    problem="not run (--only $ONLY)"
  elif [[ -n $note ]]; then
    problem=$note
  elif [[ ! -x $bin ]]; then
    problem="no binary at $bin"
  elif ! start_with_retry "$name" "$bin"; then
    problem="failed to start ($w, round $round)"
  else
    read -r -a args <<<"$(workload_args "$w")"
    if ! run_workload "$name" "$w" "$round" "${args[@]}"; then
      problem="$w failed in round $round (see its .err)"
      FAILED=$((FAILED + 1))
    fi
    if [[ -z $SERVER_PID ]] || ! kill -0 "$SERVER_PID" 2>/dev/null; then
      problem="died during $w (round $round)"
    fi
    stop_server
  fi
  # Keep the logs of this start, drop its data dir (disk is shared).
  for f in "$WORK/$name"/server*.log; do
    [[ -e $f ]] && mv "$f" "$WORK/$name/$w.r$round.$(basename "$f")"
  done
  rm -rf "$WORK/$name"/data*
  local var="STATUS_$name"
  if [[ -z ${!var} || ${!var} == ok ]]; then printf -v "$var" '%s' "${problem:-ok}"; fi
}

# --- run ---------------------------------------------------------------------
STARTED=$(date -u +%Y%m%dT%H%M%SZ)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
IFS=, read -r -a WL <<<"$WORKLOADS"
for round in $(seq 1 "$ROUNDS"); do
  # Alternate which server goes first, so neither always gets the quieter slot.
  order=(etcd kvd)
  ((round % 2 == 0)) && order=(kvd etcd)
  for w in "${WL[@]}"; do
    for s in "${order[@]}"; do
      if [[ $s == kvd ]]; then
        bench_one kvd "$KVD_BIN" "$KVD_NOTE" "$round" "$w"
      else
        bench_one etcd "$ETCD_BIN" "" "$round" "$w"
      fi
    done
  done
done
log "etcd: $STATUS_etcd"
log "kvd: $STATUS_kvd"

CHECK=()
[[ $SMOKE == 1 ]] && CHECK=(--check)
CHECK_RC=0
TABLE=$("$BENCH_BIN" compare --a-dir "$WORK/kvd" --b-dir "$WORK/etcd" \
  --a-name kvd --b-name etcd --workloads "$WORKLOADS" "${CHECK[@]}") || CHECK_RC=$?

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
# sed reads all of it: head would close the pipe early and, with pipefail, fail it.
ETCD_VERSION=$("$ETCD_BIN" --version 2>/dev/null | sed -n 1p || true)
ETCD_VERSION=${ETCD_VERSION:-unknown}
CPU=$(grep -m 1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //' || true)
REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "none")
DIRTY=$(git -C "$ROOT" status --porcelain 2>/dev/null | head -n 1)

if [[ $SMOKE == 1 ]]; then
  # CI: the table for the log, and whether every workload ran on both servers.
  echo "$TABLE"
  if [[ $CHECK_RC != 0 || $FAILED != 0 || $STATUS_etcd != ok || $STATUS_kvd != ok ]]; then
    log "smoke FAILED: etcd: $STATUS_etcd; kvd: $STATUS_kvd; $FAILED workload runs failed"
    for f in "$WORK"/*/*.err; do
      [[ -s $f ]] && { echo "== $f" >&2; tail -n 3 "$f" >&2; }
    done
    exit 1
  fi
  log "smoke ok: every workload ran on kvd and $ETCD_VERSION"
  exit 0
fi

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
  echo "- each workload: $DUR, 32-byte keys, 256-byte values, client and server on 127.0.0.1;"
  echo "  fresh servers per workload, kvd and etcd alternating; $ROUNDS rounds, each cell the median"
  echo
  echo "$TABLE"
  echo
  echo "ops/s ratio > 1 means kvd is faster; p99 ratio < 1 means kvd's tail is lower."
  echo "watch and watch-fanout compare events delivered per second, put->event p99 and"
  echo "server CPU per event; lease-keepalive counts keep-alive responses."
  echo "CPU us/op: utime+stime of the server processes during the measured phase, per op."
  echo "Peak RSS: VmHWM of the server processes (summed over members) at the end of the workload."
} >"$OUT"
# Keep the raw JSON reports and server logs (not the data dirs) beside the table.
for s in etcd kvd; do
  dest="$ROOT/bench/results/$STARTED-$s"
  for f in "$WORK/$s"/*.json "$WORK/$s"/*.err "$WORK/$s"/*.log; do
    if [[ -e $f ]]; then mkdir -p "$dest" && cp "$f" "$dest/"; fi
  done
done

cat "$OUT"
log "wrote $OUT"
