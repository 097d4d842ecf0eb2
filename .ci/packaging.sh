#!/usr/bin/env bash
# CI for the operator CLI and the packaging (install layout, static-library symbols).
# Budget: about 3 min on the 2-core machine after the main suite's build (the `cli` feature
# rebuilds the library once with clap & co. beside it; the release build for packaging is
# the rest).
set -euo pipefail
cd "$(dirname "$0")/.."

# The CLI against a database a running client holds (tests/cli.rs).
cargo test --features sim,cli --test cli
