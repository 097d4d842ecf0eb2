#!/usr/bin/env bash
# Smoke of benches/record.rs: a debug build in its quick sizes (ours, the floor, the peers if
# their venv exists, 1 and 8 recording threads). No figure is checked: only that every part
# runs and every call succeeds. Budget: about 1 minute with the debug library built.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_INCREMENTAL=0
cargo test --features sim --bench record
