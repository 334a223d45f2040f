#!/usr/bin/env bash
# Two measurements compare.sh does not make, printed as JSON lines (one per run) and a summary of medians:
#
#   flood    fanout to 100 readers of one document while 20 connections flood another one as fast as they can,
#            with the default message rate, with the limit off, and with no flood (the baseline of the same run)
#   cluster  fanout to 100 (and 1,000) readers spread over three instances fanned out through Redis, against the
#            same readers on one instance; readers on the writer's instance and on the others are timed apart, so
#            the difference is what the hop through Redis adds
#
#   bench/cluster.sh [--runs N] [--only flood|cluster]
#
# Needs Postgres at 127.0.0.1:5432 (trust auth, user postgres) and redis-server on the PATH (a Redis of its own is
# started on a free port). Every server listens on 127.0.0.1 only. Builds the release binaries first.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=3
ONLY=
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build --release -q -p tandem -p tandem-bench)
TANDEM=$TARGET_DIR/release/tandem
BENCH=$TARGET_DIR/release/tandem-bench
SCRATCH=$(mktemp -d)
RESULTS=$SCRATCH/results.jsonl
PIDS=()
log() { printf '[cluster.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$SCRATCH"
}
trap cleanup EXIT

# start NAME PORT [ENV=VALUE...]: a tandem on PORT; its pid in $STARTED
start() {
  local name=$1 port=$2
  shift 2
  env TANDEM_LISTEN=127.0.0.1:$port TANDEM_LOG=tandem=warn "$@" "$TANDEM" >>"$SCRATCH/$name.log" 2>&1 &
  STARTED=$!
  PIDS+=("$STARTED")
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && return 0; sleep 0.1; done
  echo "$name did not start" >&2; cat "$SCRATCH/$name.log" >&2; return 1
}

stop_all() {
  for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}

fresh_db() {
  local name=tandem_bench_$1
  psql -q -h 127.0.0.1 -U postgres -c "drop database if exists $name with (force)" -c "create database $name" >/dev/null
  echo "postgres://postgres@127.0.0.1:5432/$name"
}

# one LABEL CASE RUN PORT ARGS...: one fanout run against the server on PORT, labelled
one() {
  local label=$1 case=$2 run=$3 port=$4
  shift 4
  "$BENCH" --url "ws://127.0.0.1:$port/ws/{doc}" --server-pid "$STARTED" --label "$label" --case "$case" \
    --run "$run" fanout "$@" >>"$RESULTS"
}

flood() {
  local run=$1 port
  for variant in none default unlimited; do
    port=$(free_port)
    case $variant in
      unlimited) start flood "$port" DATABASE_URL="sqlite://$SCRATCH/flood-$run-$variant.db" TANDEM_MAX_MESSAGES_PER_SEC=0 ;;
      *) start flood "$port" DATABASE_URL="sqlite://$SCRATCH/flood-$run-$variant.db" ;;
    esac
    local flooders=20
    [ "$variant" = none ] && flooders=0
    log "flood run $run: $variant"
    one "flood-$variant" flood "$run" "$port" --readers 100 --flooders "$flooders"
    stop_all
  done
}

cluster() {
  local run=$1 readers
  local redis_port
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >"$SCRATCH/redis.log" 2>&1 &
  local redis_pid=$!
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/"$redis_port") 2>/dev/null && break; sleep 0.1; done
  for readers in 100 1000; do
    local db ports=() urls=()
    db=$(fresh_db "single_$run")
    ports=("$(free_port)")
    start single "${ports[0]}" DATABASE_URL="$db"
    log "cluster run $run: one instance, $readers readers"
    one "one-instance" "cluster-$readers" "$run" "${ports[0]}" --readers "$readers"
    stop_all
    db=$(fresh_db "three_$run")
    ports=("$(free_port)" "$(free_port)" "$(free_port)")
    for p in "${ports[@]}"; do
      start "instance-$p" "$p" DATABASE_URL="$db" TANDEM_REDIS_URL="redis://127.0.0.1:$redis_port"
      urls+=("ws://127.0.0.1:$p/ws/{doc}")
    done
    local joined
    joined=$(IFS=,; echo "${urls[*]}")
    log "cluster run $run: three instances, $readers readers"
    # The pid given is the writer's instance; its CPU is one third of the work.
    STARTED=${PIDS[0]}
    one "three-instances" "cluster-$readers" "$run" "${ports[0]}" --readers "$readers" --reader-urls "$joined"
    stop_all
  done
  kill "$redis_pid" 2>/dev/null || true
  wait "$redis_pid" 2>/dev/null || true
}

for run in $(seq "$RUNS"); do
  [ "$ONLY" = cluster ] || flood "$run"
  [ "$ONLY" = flood ] || cluster "$run"
done

cat "$RESULTS"
# Medians per label and case.
python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows[(r.get("case"), r.get("label"))].append(r)
fields = ["p50_ms", "p99_ms", "p50_ms_local", "p99_ms_local", "p50_ms_remote", "p99_ms_remote",
          "delivered_fraction", "server_cpu_s", "flood_updates", "flood_rate_per_conn"]
print("| case | server | runs | " + " | ".join(fields) + " |")
print("|---|---|---:|" + "---:|" * len(fields))
for (case, label), rs in sorted(rows.items()):
    cells = []
    for f in fields:
        values = [r[f] for r in rs if r.get(f) is not None]
        cells.append(f"{statistics.median(values):g}" if values else "–")
    print(f"| {case} | {label} | {len(rs)} | " + " | ".join(cells) + " |")
EOF
