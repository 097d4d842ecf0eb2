#!/usr/bin/env bash
# CI smoke of the search benchmark (issue 10 target 7): 2,000 SKUs of the simulator's realistic
# catalog, every query kind through the C ABI, answers checked (an exact SKU or EAN comes first);
# no timing is judged here (the figures come from the release run, see the README).
# Budget: 2 minutes on 2 cores with the debug build warm (measured: about 40 s).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --features sim --bench search -- --smoke
