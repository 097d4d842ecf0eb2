#!/usr/bin/env bash
# CI: the four language bindings (bindings/). Installs what is missing (g++, Go, Mono,
# pytest), builds the library and omnium-sim once, checks that every function the header
# declares is wrapped by every binding, then runs the four suites, each against its own
# omnium-sim on a free loopback port. A suite that cannot run fails; none may skip.
# Budget: 4 minutes on 2 cores, apt included. Measured with the library built: 149 s with
# g++ present and Go, Mono and pytest installed by apt (cold apt and Go caches), 36 s when
# all tools are present.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
start=$SECONDS

need=()
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v go >/dev/null 2>&1 || need+=(golang-go)
command -v mcs >/dev/null 2>&1 || need+=(mono-mcs)
command -v mono >/dev/null 2>&1 || need+=(mono-runtime)
# pytest: the python3 on PATH if it has it, else Debian's python3 with python3-pytest.
PYTHON=python3
if ! python3 -c 'import pytest' >/dev/null 2>&1; then
  PYTHON=/usr/bin/python3
  /usr/bin/python3 -c 'import pytest' >/dev/null 2>&1 || need+=(python3-pytest)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "bindings: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

echo "bindings: tools ready after $((SECONDS - start)) s; building the library and omnium-sim"
cargo build --features sim --quiet
TARGET=$ROOT/target/debug
SIM=$TARGET/omnium-sim
test -f "$TARGET/libflow_omnium.so" && test -x "$SIM"
OUT=$ROOT/target/bindings
mkdir -p "$OUT"
# Go and Mono keep caches under $HOME; a CI job may have none.
if [ -z "${HOME:-}" ]; then export HOME=$OUT/home; mkdir -p "$HOME"; fi

# Every function the header declares must be called by each binding (comments ignored), so
# a new export fails here until all four wrap it.
echo "bindings: checking every export is wrapped"
exports=$(grep -E '^[a-z].*\bfo_[a-z_]+\(' include/flow_omnium.h | grep -oE '\bfo_[a-z_]+\(' | tr -d '(' | sort -u)
[ "$(echo "$exports" | wc -l)" -ge 30 ] || { echo "found too few exports in the header: $exports"; exit 1; }
code_of() { sed -E "s@$2.*\$@@" "$1"; }
py=$(code_of bindings/python/flow_omnium/__init__.py '#')
go=$(code_of bindings/go/flowomnium.go '//')
cs=$(code_of bindings/dotnet/FlowOmnium.cs '//')
cpp=$(code_of bindings/cpp/include/flow_omnium.hpp '//')
missing=0
for fn in $exports; do
  grep -qE "_lib\.$fn\b" <<<"$py" || { echo "python does not wrap $fn"; missing=1; }
  grep -qE "C\.$fn\b" <<<"$go" || { echo "go does not wrap $fn"; missing=1; }
  grep -qE "Native\.$fn\(" <<<"$cs" || { echo "dotnet does not wrap $fn"; missing=1; }
  grep -qE "\b$fn\b" <<<"$cpp" || { echo "cpp does not wrap $fn"; missing=1; }
done
[ $missing = 0 ]
echo "bindings: $(echo "$exports" | wc -l) exports, each wrapped four times"

# A suite passes only if it says how many checks passed and that none failed or skipped.
expect_counts() { # <name> <log>
  grep -qE '^[1-9][0-9]* passed, 0 failed$' "$2" || { echo "$1: no pass count in its output"; cat "$2"; exit 1; }
}

echo "bindings: C++ (g++ -std=c++17 -Wall -Wextra -Werror)"
g++ -std=c++17 -Wall -Wextra -Werror -pedantic -pthread -Iinclude -Ibindings/cpp/include \
  bindings/cpp/test/client_test.cpp -L"$TARGET" -Wl,-rpath,"$TARGET" -lflow_omnium \
  -o "$OUT/cpp_client_test"
"$OUT/cpp_client_test" "$SIM" | tee "$OUT/cpp.log"
expect_counts cpp "$OUT/cpp.log"

echo "bindings: Python (pytest)"
PYTHONDONTWRITEBYTECODE=1 FLOW_OMNIUM_LIB=$TARGET/libflow_omnium.so FO_SIM_BIN=$SIM \
  "$PYTHON" -m pytest -p no:cacheprovider -q -rs bindings/python/tests | tee "$OUT/python.log"
grep -qE '^[0-9]+ passed in ' "$OUT/python.log" || { echo "python: skipped or failed tests"; exit 1; }

echo "bindings: Go (gofmt, go vet, go test)"
unformatted=$(gofmt -l bindings/go)
[ -z "$unformatted" ] || { echo "gofmt wants to change: $unformatted"; exit 1; }
(cd bindings/go && CGO_LDFLAGS="-L$TARGET" go vet ./...)
(cd bindings/go && CGO_LDFLAGS="-L$TARGET" LD_LIBRARY_PATH=$TARGET FO_SIM_BIN=$SIM \
  go test -count=1 -v ./... ) > "$OUT/go.log" 2>&1 || { cat "$OUT/go.log"; exit 1; }
grep -E '^(--- |ok|FAIL)' "$OUT/go.log"
if grep -q -- '--- SKIP' "$OUT/go.log" || ! grep -q -- '--- PASS' "$OUT/go.log"; then
  echo "go: skipped or no tests"; exit 1
fi

echo "bindings: .NET (mcs, mono)"
mcs -warnaserror -target:library -out:"$OUT/FlowOmnium.dll" bindings/dotnet/FlowOmnium.cs
mcs -warnaserror -r:"$OUT/FlowOmnium.dll" -r:System.Core.dll -out:"$OUT/FlowOmniumTest.exe" \
  bindings/dotnet/FlowOmniumTest.cs
LD_LIBRARY_PATH=$TARGET mono --debug "$OUT/FlowOmniumTest.exe" "$SIM" | tee "$OUT/dotnet.log"
expect_counts dotnet "$OUT/dotnet.log"

echo "bindings: all four suites passed in $((SECONDS - start)) s"
