#!/usr/bin/env bash
# CI: every fuzz target for a few seconds from the committed seeds (fuzz/seeds/<target>)
# with the dictionary (fuzz/dict/json.dict). A crash, a timeout or an out-of-memory fails CI
# and leaves the input in fuzz/artifacts/<target>/. Budget: 6 minutes cold on 2 cores
# (FUZZ_BUDGET_SECONDS). Measured: installing cargo-fuzz 55 s; a cold build of the targets
# 304 s while other builds loaded the machine (the whole script: 166 s of CPU); then 17
# targets × FUZZ_SECONDS (5), cut to what is left of the budget, at least 1 s each.
# A long run: see the README, "Fuzzing".
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

SECONDS_PER_TARGET="${FUZZ_SECONDS:-5}"
# The whole script's budget: on a loaded machine the targets get fewer seconds (at least 1).
BUDGET="${FUZZ_BUDGET_SECONDS:-360}"
# cargo-fuzz passes -Z flags to rustc; stable accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1

start=$(date +%s)
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
echo "cargo-fuzz ready after $(( $(date +%s) - start )) s"

# Without a sanitizer (Rust's checks and debug assertions still panic) and a debug build
# with SQLite optimised: the quickest build that still finds panics, overflows, hangs and
# OOMs. The README's long run uses AddressSanitizer.
cargo fuzz build --dev -s none
echo "fuzz targets built after $(( $(date +%s) - start )) s"

bin="target/$(rustc -vV | sed -n 's/^host: //p')/debug"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The targets that need a database make it under the temp directory: this one, removed after.
export TMPDIR="$work"
failed=0
passed=0
targets=($(cargo fuzz list))
left=${#targets[@]}
for target in "${targets[@]}"; do
  mkdir -p "$work/$target"
  secs=$(( (BUDGET - ($(date +%s) - start)) / left ))
  [ "$secs" -gt "$SECONDS_PER_TARGET" ] && secs=$SECONDS_PER_TARGET
  [ "$secs" -lt 1 ] && secs=1
  left=$((left - 1))
  # -timeout: one input running 10 s is a hang; -rss_limit_mb: a 2 GB blow-up is a bug.
  # The binary cargo fuzz built, run directly (cargo fuzz run would re-check the build).
  past=()
  [ -d "regressions/$target" ] && past=("regressions/$target")
  if "$bin/$target" "$work/$target" "seeds/$target" "${past[@]}" \
      -dict=dict/json.dict -max_total_time="$secs" -timeout=10 \
      -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 >"$work/$target.log" 2>&1; then
    echo "fuzz $target: $(grep -o 'Done [0-9]* runs' "$work/$target.log" || echo ok)"
    passed=$((passed + 1))
  else
    echo "fuzz $target: FAILED"
    tail -60 "$work/$target.log"
    failed=$((failed + 1))
  fi
done
echo "fuzzing took $(( $(date +%s) - start )) s"
echo "fuzz: $passed passed, $failed failed"
[ "$failed" = 0 ]
