#!/usr/bin/env bash
# Scale series (issue 16): how kvd's costs grow with the data, beside etcd's.
#
#   bench/scale.sh                     # quick: 10k and 100k keys (minutes on 2 cores)
#   bench/scale.sh --sizes 100k,1m,4m  # the full list (4M: ~15-20 min per server, ~15 GB)
#   bench/scale.sh --etcd latest       # etcd 3.7.3 from .cache/ (scripts/etcd-latest.sh)
#   bench/scale.sh --etcd PATH         # that etcd binary (default: Debian's 3.4)
#   bench/scale.sh --only kvd          # one server only
#   bench/scale.sh --versions 4        # revisions per key: the history is this many times the keys
#   bench/scale.sh --no-build          # use target/release/kvd as it is
#   bench/scale.sh --no-plot           # CSV only, no PNGs
#   bench/scale.sh --plot-dir DIR      # where the PNGs go (default docs/benchmarks)
#   bench/scale.sh --plot CSV          # only redraw the PNGs and print the table from a CSV
#
# For each size and server, on a fresh single member (127.0.0.1, free ports,
# fresh data dir, both servers with --snapshot-count 10000 and an 8 GiB quota):
# load SIZE keys of 256-byte values VERSIONS times each (txns of 100 puts,
# 16 writers, through etcd's Go client), then measure peak RSS, data dir size,
# 1000-key prefix range p50/p99, restart time (SIGTERM, start, until the
# first linearizable read is served) and RSS after it, the time a new member
# takes to catch up (member add as a learner, start, until a serializable
# read on it reaches the head revision; a snapshot once the log is
# compacted), physical compaction at the head and defragmentation (time, and
# p50/p99 of 8 concurrent putters while each runs; a compaction whose RPC
# times out is timed to the first put applied after it), and 10k watchers
# over 1k streams with 100 puts (events/s, peak RSS; SCALE_WATCHERS,
# SCALE_STREAMS, SCALE_WATCH_PUTS change them; SCALE_QUOTA the backend quota). One CSV row per server and size goes to
# bench/results/scale-<UTC timestamp>.csv; the PNGs (one per figure, against
# the key count) and docs/benchmarks/scale.csv come from bench/scale/plot.py.
# Only PIDs this script starts are killed; each data dir is deleted as soon
# as its size is done.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIZES=10k,100k
VERSIONS=4
BUILD=1
PLOT=1
ONLY=""
PLOT_DIR=$ROOT/docs/benchmarks
PLOT_ONLY=""
WATCHERS=${SCALE_WATCHERS:-10000}
STREAMS=${SCALE_STREAMS:-1000}
WATCH_PUTS=${SCALE_WATCH_PUTS:-100} # each put is one event per watcher
# Backend quota of both servers (8 GiB). Before kvd counted its rows' share of
# the file for the quota (docs/reliability.md), 4M keys x 4 versions needed
# SCALE_QUOTA=17179869184 (16 GiB) in kvd.
QUOTA=${SCALE_QUOTA:-8589934592}

usage() { sed -n '2,31p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --sizes) SIZES=${2:?--sizes takes a list like 10k,100k,1m}; shift ;;
    --versions) VERSIONS=${2:?}; shift ;;
    --no-build) BUILD=0 ;;
    --no-plot) PLOT=0 ;;
    --plot-dir) PLOT_DIR=${2:?}; shift ;;
    --plot) PLOT_ONLY=${2:?}; shift ;;
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

log() { echo "[scale.sh $(date -u +%H:%M:%S)] $*" >&2; }

VENV=$ROOT/target/scale-venv
plot() { # plot CSV: the PNGs into $PLOT_DIR, the markdown table on stdout
  if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
    log "creating $VENV with matplotlib (pip)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q matplotlib
  fi
  mkdir -p "$PLOT_DIR"
  "$VENV/bin/python" "$ROOT/bench/scale/plot.py" "$1" "$PLOT_DIR"
}
if [[ -n $PLOT_ONLY ]]; then plot "$PLOT_ONLY"; exit 0; fi

KVD_BIN=${KVD_BIN:-$ROOT/target/release/kvd}
ETCD_BIN=${ETCD_BIN:-$(command -v etcd || echo /usr/bin/etcd)}
TOOL=$ROOT/target/kv-scale

# --- build -------------------------------------------------------------------
if [[ $BUILD == 1 && $ONLY != etcd ]]; then
  log "cargo build --release -p kvd"
  (cd "$ROOT" && cargo build --release -p kvd --bin kvd)
fi
log "go build bench/scale -> $TOOL"
(cd "$ROOT/bench/scale" && GOFLAGS=-buildvcs=false go build -trimpath -o "$TOOL" .)

# Sizes: 10k, 1m, 250000 ...
parse_size() {
  local s=${1,,}
  case $s in
    *k) echo $((${s%k} * 1000)) ;;
    *m) echo $((${s%m} * 1000000)) ;;
    *[!0-9]* | "") echo "bad size: $1" >&2; return 1 ;;
    *) echo "$s" ;;
  esac
}
SIZE_LIST=()
IFS=, read -ra _sizes <<<"$SIZES"
for s in "${_sizes[@]}"; do SIZE_LIST+=("$(parse_size "$s")"); done

WORK=$(mktemp -d -t kv-scale.XXXXXX)
PIDS=()
SAMPLER=""
cleanup() {
  local p
  [[ -n $SAMPLER ]] && kill "$SAMPLER" 2>/dev/null
  [[ -n $TOOL_PID ]] && kill "$TOOL_PID" 2>/dev/null
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers -----------------------------------------------------------------
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# free_ports N: N distinct ports nobody listens on now.
free_ports() {
  local p got=()
  for _ in $(seq 1 400); do
    [[ ${#got[@]} -ge $1 ]] && break
    p=$((20000 + RANDOM % 12000)) # below the ephemeral range (32768+): a client socket there can make a later bind fail
    if ! port_taken "$p" && [[ " ${got[*]} " != *" $p "* ]]; then got+=("$p"); fi
  done
  [[ ${#got[@]} -ge $1 ]] && echo "${got[@]}"
}

# start BIN NAME DIR CPORT PPORT INITIAL STATE: starts one member, sets PID.
start() {
  local bin=$1 name=$2 dir=$3 c="http://127.0.0.1:$4" p="http://127.0.0.1:$5"
  "$bin" --name "$name" --data-dir "$dir" \
    --listen-client-urls "$c" --advertise-client-urls "$c" \
    --listen-peer-urls "$p" --initial-advertise-peer-urls "$p" \
    --initial-cluster "$6" --initial-cluster-state "$7" --initial-cluster-token scale \
    --snapshot-count 10000 --quota-backend-bytes "$QUOTA" \
    >>"$dir.log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
}

# stop PID: SIGTERM, then wait for the exit (SIGKILL after 60 s).
stop() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

status_kb() { sed -n "s/^$2:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$1/status" 2>/dev/null || true; }
mb() { awk -v k="${1:-}" 'BEGIN { if (k == "") print ""; else printf "%.1f", k / 1024 }'; }
disk_mb() { du -sb "$1" 2>/dev/null | awk '{ printf "%.1f", $1 / 1048576 }'; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }

# Peak VmRSS of PID while it runs, sampled every 0.2 s, written to FILE.
sample_rss() {
  local pid=$1 file=$2 max=0 r
  while kill -0 "$pid" 2>/dev/null; do
    r=$(status_kb "$pid" VmRSS)
    [[ -n $r && $r -gt $max ]] && max=$r && echo "$max" >"$file"
    sleep 0.2
  done
}

declare -A FIG
TOOL_PID=""
# tool CMD ARGS...: runs kv-scale (at most 30 min) in the background and waits,
# so a Ctrl-C or SIGTERM reaches the trap at once; its stdout is in $WORK/step.out.
tool() {
  timeout --kill-after=5 1800 "$TOOL" "$@" >"$WORK/step.out" 2>"$WORK/step.err" &
  TOOL_PID=$!
  local rc=0
  wait "$TOOL_PID" || rc=$?
  TOOL_PID=""
  if [[ $rc != 0 ]]; then
    log "  kv-scale $1 failed: $(tail -n 2 "$WORK/step.err" | tr '\n' ' ')"
  elif [[ -s $WORK/step.err ]]; then
    log "  kv-scale $1: $(tail -n 2 "$WORK/step.err" | tr '\n' ' ')"
  fi
  return "$rc"
}
# fig CMD ARGS...: runs kv-scale, records its "name value" lines in FIG.
fig() {
  tool "$@" || return 1
  local k v
  while read -r k v; do [[ -n $k ]] && FIG[$k]=$v; done <"$WORK/step.out"
  return 0
}

COLUMNS_CSV=server,version,keys,versions,load_puts,load_s,load_puts_per_s,peak_rss_mb,rss_after_load_mb,disk_mb,range1000_p50_ms,range1000_p99_ms,restart_s,rss_after_restart_mb,catchup_s,new_member_disk_mb,compact_s,compact_rpc_timed_out,compact_puts_during,compact_puts_failed,compact_put_p50_ms,compact_put_p99_ms,compact_put_max_ms,compact_baseline_put_p99_ms,defrag_s,defrag_puts_during,defrag_puts_failed,defrag_put_p50_ms,defrag_put_p99_ms,defrag_put_max_ms,defrag_baseline_put_p99_ms,disk_after_defrag_mb,watchers,watch_streams,watch_open_s,watch_events,watch_events_expected,watch_events_per_s,watch_rss_mb

# measure SERVER BIN KEYS: one CSV row.
measure() {
  local server=$1 bin=$2 keys=$3 dir="$WORK/$1-$3" c1 p1 c2 p2 init t0 head id
  FIG=([server]=$server [keys]=$keys [versions]=$VERSIONS)
  FIG[version]=$("$bin" --version 2>/dev/null | head -n 1 | sed 's/.*[Vv]ersion:* *//; s/^kvd *//' | tr -d ',')
  mkdir -p "$dir"
  read -r c1 p1 c2 p2 <<<"$(free_ports 4)"
  local ep1="http://127.0.0.1:$c1" ep2="http://127.0.0.1:$c2"
  init="m1=http://127.0.0.1:$p1"
  start "$bin" m1 "$dir/m1" "$c1" "$p1" "$init" new
  local pid=$PID
  if ! fig ready --endpoints "$ep1" --timeout 60s; then
    tail -n 5 "$dir/m1.log" >&2; stop "$pid"; rm -rf "$dir"; return 1
  fi
  log "$server $keys: loading $keys keys x $VERSIONS versions"
  fig load --endpoints "$ep1" --keys "$keys" --versions "$VERSIONS" --clients 16 --conns 4 || { stop "$pid"; rm -rf "$dir"; return 1; }
  log "$server $keys: loaded in ${FIG[load_s]} s (${FIG[load_puts_per_s]} puts/s)"
  fig range --endpoints "$ep1" --keys "$keys" --reads 200 || true
  FIG[rss_after_load_mb]=$(mb "$(status_kb "$pid" VmRSS)")
  FIG[peak_rss_mb]=$(mb "$(status_kb "$pid" VmHWM)")
  FIG[disk_mb]=$(disk_mb "$dir/m1")

  log "$server $keys: restart"
  stop "$pid"
  t0=$(now)
  start "$bin" m1 "$dir/m1" "$c1" "$p1" "$init" new
  pid=$PID
  if fig ready --endpoints "$ep1" --timeout 20m; then
    FIG[restart_s]=$(since "$t0")
    FIG[rss_after_restart_mb]=$(mb "$(status_kb "$pid" VmRSS)")
  else
    tail -n 5 "$dir/m1.log" >&2
  fi

  log "$server $keys: new member catch-up"
  local removed=1
  if tool head --endpoints "$ep1"; then
    head=$(cat "$WORK/step.out")
    t0=$(now)
    if tool member-add --endpoints "$ep1" --peer-url "http://127.0.0.1:$p2" --learner; then
      id=$(cat "$WORK/step.out")
      start "$bin" m2 "$dir/m2" "$c2" "$p2" "$init,m2=http://127.0.0.1:$p2" existing
      local pid2=$PID
      if fig caught-up --endpoints "$ep2" --rev "$head" --timeout 20m; then
        FIG[catchup_s]=$(since "$t0")
        FIG[new_member_disk_mb]=$(disk_mb "$dir/m2")
      else
        tail -n 5 "$dir/m2.log" >&2
      fi
      # A learner: etcd's MemberAdd of a voter returns at once (the new
      # member then starts), kvd's waits for the new member to vote, so a
      # learner is the one procedure both follow. Removed again afterwards.
      tool member-remove --endpoints "$ep1" --id "$id" --timeout 2m || removed=0
      stop "$pid2"
      rm -rf "$dir/m2"
    fi
  fi
  if [[ $removed == 0 ]]; then
    log "$server $keys: the new member could not be removed; skipping the rest of this size"
    stop "$pid"
    rm -rf "$dir"
    return 1
  fi

  log "$server $keys: compaction and defrag under puts"
  fig compact --endpoints "$ep1" --keys "$keys" --putters 8 --conns 4 || true
  fig defrag --endpoints "$ep1" --keys "$keys" --putters 8 --conns 4 || true
  FIG[disk_after_defrag_mb]=$(disk_mb "$dir/m1")

  log "$server $keys: $WATCHERS watchers over $STREAMS streams"
  rm -f "$WORK/rss"
  sample_rss "$pid" "$WORK/rss" &
  SAMPLER=$!
  FIG[watchers]=$WATCHERS
  FIG[watch_streams]=$STREAMS
  fig watch --endpoints "$ep1" --watchers "$WATCHERS" --streams "$STREAMS" --writers 4 --puts "$WATCH_PUTS" --conns 8 || true
  kill "$SAMPLER" 2>/dev/null || true
  wait "$SAMPLER" 2>/dev/null || true
  SAMPLER=""
  FIG[watch_rss_mb]=$(mb "$(cat "$WORK/rss" 2>/dev/null)")

  stop "$pid"
  rm -rf "$dir"
}

# row: the CSV row of FIG (what was measured; a figure that failed is empty).
row() {
  local row="" col cols
  IFS=, read -ra cols <<<"$COLUMNS_CSV"
  for col in "${cols[@]}"; do row+="${row:+,}${FIG[$col]:-}"; done
  echo "$row" >>"$CSV"
  log "${FIG[server]} ${FIG[keys]}: $row"
}

# --- run ---------------------------------------------------------------------
STARTED=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$ROOT/bench/results"
CSV=$ROOT/bench/results/scale-$STARTED.csv
META=$ROOT/bench/results/scale-$STARTED.meta
echo "$COLUMNS_CSV" >"$CSV"
{
  echo "date $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo ' (with uncommitted changes)')"
  echo "machine $(nproc) cores, $(grep -m 1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(uname -sr)"
  echo "load_before $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "etcd $ETCD_BIN"
  echo "kvd $KVD_BIN (built $(date -u -r "$KVD_BIN" +%Y-%m-%dT%H:%MZ 2>/dev/null || echo '?'))"
  echo "sizes $SIZES"
  echo "versions $VERSIONS"
  echo "quota $QUOTA"
} >"$META"

for keys in "${SIZE_LIST[@]}"; do
  for server in etcd kvd; do
    [[ -n $ONLY && $ONLY != "$server" ]] && continue
    bin=$KVD_BIN
    [[ $server == etcd ]] && bin=$ETCD_BIN
    if [[ ! -x $bin ]]; then log "no $server binary at $bin"; continue; fi
    measure "$server" "$bin" "$keys" || log "$server $keys: failed part-way"
    row
  done
done
echo "load_after $(cut -d' ' -f1-3 /proc/loadavg)" >>"$META"

log "wrote $CSV"
if [[ $PLOT == 1 ]]; then
  cp "$CSV" "$PLOT_DIR/scale.csv" 2>/dev/null || { mkdir -p "$PLOT_DIR" && cp "$CSV" "$PLOT_DIR/scale.csv"; }
  cp "$META" "$PLOT_DIR/scale.meta"
  plot "$PLOT_DIR/scale.csv"
else
  cat "$CSV"
fi
