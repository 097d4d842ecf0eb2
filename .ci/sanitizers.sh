#!/usr/bin/env bash
# The C API tests (tests/c_api.rs and tests/c_abi.rs: api_test.c, examples/pos.c, every
# abi_safety.c scenario and the 16-thread stress.c) under sanitizers; any report fails.
# - AddressSanitizer, leak detection on: the C programs (gcc -fsanitize=address) and the
#   library (rustc -Zsanitizer=address via RUSTC_BOOTSTRAP=1, built in target/asan; std
#   itself is not rebuilt, so std's non-inlined code is not instrumented).
# - ThreadSanitizer: the C programs (gcc -fsanitize=thread) against the ordinary library. The
#   library is not TSan-instrumented (see .ci/tsan.supp for why); its threads, locks and
#   callbacks into C are still exercised, and every access the C side makes is checked.
# Budget: 8 minutes cold on 2 cores (one extra build of the library and its dependencies,
# then the tests twice); measured in the README.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cc >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq gcc >/dev/null
fi
target="$(rustc -vV | sed -n 's/^host: //p')"
started=$SECONDS

echo "== AddressSanitizer: the library with -Zsanitizer=address (target/asan)"
RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address" \
  cargo build --quiet --lib --features sim --target "$target" --target-dir target/asan
echo "== AddressSanitizer: the C tests"
FO_C_SANITIZE=address FO_C_LIB_DIR="$PWD/target/asan/$target/debug" \
  ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=1" \
  timeout 600 cargo test --quiet --features sim --test c_api --test c_abi

echo "== ThreadSanitizer: the C tests"
cargo build --quiet --lib --features sim
FO_C_SANITIZE=thread FO_C_LIB_DIR="$PWD/target/debug" \
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/.ci/tsan.supp" \
  timeout 600 cargo test --quiet --features sim --test c_api --test c_abi

echo "sanitizers: AddressSanitizer and ThreadSanitizer reported nothing ($((SECONDS - started)) s)"
