#!/usr/bin/env bash
# A short fuzzing pass over every target, from the committed corpus; fails on any crash.
# CI runs it; see README.md for the long runs. Usage: fuzz/smoke.sh [seconds per target]
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-20}
# cargo fuzz needs -Z flags; RUSTC_BOOTSTRAP lets the stable toolchain take them.
export RUSTC_BOOTSTRAP=1
# As the server's allocator does: an impossible reservation fails (yrs then reports an
# error) instead of counting as a crash. Memory really used is still capped (-rss_limit_mb).
export ASAN_OPTIONS=allocator_may_return_null=1
cargo fuzz build -O
for target in $(cargo fuzz list); do
  # A fixed seed: the same corpus gives the same run, so CI fails on a regression, not by luck.
  flags=(-max_total_time="$seconds" -seed=1 -malloc_limit_mb=1048576 -print_final_stats=1)
  if [ "$target" = messages ]; then
    # yrs leaks what a transaction held when it panics; the server catches those panics.
    flags+=(-detect_leaks=0)
  fi
  # New inputs go to a scratch folder, not into the committed corpus.
  scratch=$(mktemp -d)
  log="$scratch/log"
  if ! cargo fuzz run -O "$target" "$scratch" "corpus/$target" -- "${flags[@]}" >"$log" 2>&1; then
    tail -n 80 "$log" >&2
    echo "fuzz target $target failed; the input is under fuzz/artifacts/$target/" >&2
    exit 1
  fi
  echo "$target: $(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$') inputs"
  rm -rf "$scratch"
done
