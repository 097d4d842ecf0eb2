#!/usr/bin/env bash
# CI (issue 8, exactly once without Omnium's help). Budget: about 4 minutes once the release
# build is done (the deterministic simulation's 10,000 seeds), plus the end-to-end tests run a
# second time against a simulator that deduplicates nothing (about 2 minutes).
#   FO_DST_SEEDS / FO_DST_FIRST choose the seeds; a failing seed prints its replay command.
set -euo pipefail
cd "$(dirname "$0")/.."

start=$(date +%s)
FO_DST_SEEDS="${FO_DST_SEEDS:-10000}" \
  cargo test --release --features sim --test dst -- --nocapture
echo "deterministic simulation: $(( $(date +%s) - start )) s with the build"

# Every end-to-end test must also pass when Omnium applies a repeated sale or return again.
start=$(date +%s)
FO_SIM_DEDUP=off cargo test --features sim \
  --test push_e2e --test back_office_e2e --test durability --test exactly_e2e --test kill_points
echo "end-to-end without deduplication: $(( $(date +%s) - start )) s"
