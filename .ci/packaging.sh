#!/usr/bin/env bash
# CI for the operator CLI and the packaging: tests/cli.rs, then scripts/install.sh into a
# scratch prefix and three consumers of the installed files (pkg-config, CMake, and the
# static library linked beside the system libsqlite3).
# Budget: about 3 min once the main suite is built (CLI test build about 1 min; the cold
# release build of the library about 2 min of CPU; the rest takes seconds).
set -euo pipefail
cd "$(dirname "$0")/.."

# The CLI against a database a running client holds.
cargo test --features sim,cli --test cli

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
[ -f /usr/include/sqlite3.h ] || need+=(libsqlite3-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} for the packaging checks"
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"
scripts/install.sh --prefix "$prefix"
lib="$prefix/lib"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

echo "== layout"
for f in include/flow_omnium.h lib/libflow_omnium.so lib/libflow_omnium.a \
         lib/pkgconfig/flow_omnium.pc lib/cmake/flow_omnium/flow_omnium-config.cmake \
         lib/.debug/"libflow_omnium.so.$version.debug"; do
  [ -e "$prefix/$f" ] || { echo "missing $f" >&2; exit 1; }
done
soname=$(readelf -d "$lib/libflow_omnium.so.$version" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
echo "soname $soname"
[ -n "$soname" ] && [ -L "$lib/$soname" ] || { echo "no soname link" >&2; exit 1; }
if readelf -S "$lib/libflow_omnium.so.$version" | grep -q '\.debug_info'; then
  echo "the installed .so is not stripped" >&2; exit 1
fi
echo "stripped .so: $(stat -c %s "$lib/libflow_omnium.so.$version") bytes"

echo "== static library exports only fo_ symbols"
others=$(nm -g --defined-only "$lib/libflow_omnium.a" | awk 'NF == 3 && $3 !~ /^fo_/' | wc -l)
fo=$(nm -g --defined-only "$lib/libflow_omnium.a" | awk 'NF == 3 && $3 ~ /^fo_/' | wc -l)
echo "$fo fo_ symbols, $others others"
[ "$others" = 0 ] && [ "$fo" -gt 30 ] || { nm -g --defined-only "$lib/libflow_omnium.a" | grep -v ' fo_' | head; exit 1; }

export PKG_CONFIG_PATH="$lib/pkgconfig"
run() { mkdir -m 700 "$work/db-$1"; "$work/$1" "$work/db-$1"; }

echo "== pkg-config consumer (shared)"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror tests/packaging/consumer.c $(pkg-config --cflags --libs flow_omnium) \
  -Wl,-rpath,"$lib" -o "$work/pc_shared"
readelf -d "$work/pc_shared" | grep -q "NEEDED.*\[$soname\]" || { echo "not linked by soname" >&2; exit 1; }
run pc_shared

echo "== static library beside the system libsqlite3 (flow-omnium first, the adversarial order)"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror -DWITH_SYSTEM_SQLITE tests/packaging/consumer.c \
  $(pkg-config --cflags flow_omnium) "$lib/libflow_omnium.a" -lsqlite3 \
  $(pkg-config --libs-only-l --static flow_omnium | sed 's/-lflow_omnium//') -o "$work/static_sqlite"
run static_sqlite

echo "== CMake consumer (find_package)"
cmake -S tests/packaging -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_RPATH="$lib" >/dev/null
cmake --build "$work/cmake" >/dev/null
cp "$work/cmake/consumer_shared" "$work/cmake/consumer_static" "$work/"
run consumer_shared
run consumer_static

echo "packaging: 5 passed, 0 failed"
