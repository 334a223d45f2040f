#!/usr/bin/env bash
# A quick check that the load generator and tandem still understand each other: tiny versions of the scenarios
# against a fresh tandem on a free loopback port and a temporary SQLite file. Seconds, not minutes; meant for CI.
#
#   bench/smoke.sh                      # binaries from target/release (cargo build --release -p tandem -p tandem-bench)
#   bench/smoke.sh target/debug         # or any folder holding both binaries
#   TRACE=../shared/traces/friendsforever_flat.json.gz bench/smoke.sh   # trace for replay + cold (default: that one)
#
# Ends with the line "N passed, M failed"; exits non-zero when anything failed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$ROOT/target/release}
TRACE=${TRACE:-$ROOT/../shared/traces/friendsforever_flat.json.gz}
BENCH=$BIN/tandem-bench
TANDEM=$BIN/tandem
for b in "$BENCH" "$TANDEM"; do [ -x "$b" ] || { echo "missing $b (build it first)" >&2; exit 2; }; done
command -v jq >/dev/null || { echo "jq is needed" >&2; exit 2; }

DATA=$(mktemp -d)
PID=
PORT=
passed=0
failed=0

start() {
  for _ in $(seq 20); do
    PORT=$((20000 + RANDOM % 20000))
    TANDEM_LOG=warn TANDEM_MAX_MESSAGES_PER_SEC=0 TANDEM_LISTEN=127.0.0.1:$PORT \
      DATABASE_URL=sqlite://$DATA/tandem.db "$TANDEM" >>"$DATA/server.log" 2>&1 &
    PID=$!
    for _ in $(seq 100); do
      if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz" 2>/dev/null; then return 0; fi
      kill -0 "$PID" 2>/dev/null || break
      sleep 0.1
    done
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  done
  echo "tandem did not start; its log:" >&2
  tail -20 "$DATA/server.log" >&2
  exit 1
}

stop() {
  [ -n "$PID" ] || return 0
  kill -INT "$PID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=
}
trap 'stop; rm -rf "$DATA"' EXIT

# check NAME JQ-CONDITION SCENARIO-ARGS...: runs a scenario and checks its JSON line.
LAST=
check() {
  local name=$1 cond=$2; shift 2
  local line
  line=$("$BENCH" --url "ws://127.0.0.1:$PORT/ws/{doc}" --create tandem --server-pid "$PID" --label smoke "$@" \
    2>&1 | tail -n 1) || true
  LAST=$line
  if jq -e "$cond" >/dev/null 2>&1 <<<"$line"; then
    passed=$((passed + 1))
    echo "ok   $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name: $line"
  fi
}

start
check fanout '.delivered_fraction == 1 and .p99_ms != null' fanout --readers 10 --updates 100 --deadline 5
check throughput '.applied > 0 and .client_errors == 0' throughput --docs 2 --clients 2 --seconds 1
check idle '.errors == 0 and .dropped_by_server == 0' idle --steps 20,50 --docs 5 --settle 0.2
if [ -f "$TRACE" ]; then
  check replay '.finished == true' replay --timeout 120 "$TRACE"
  doc=$(jq -r '.doc // empty' <<<"$LAST")
  if [ -n "$doc" ]; then
    stop
    start
    check cold '.sync_ms > 0' cold-measure --doc "$doc" "$TRACE"
  fi
else
  echo "skip replay and cold: no trace at $TRACE"
fi
stop

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
