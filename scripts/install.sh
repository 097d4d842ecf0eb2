#!/usr/bin/env bash
# Builds and installs flow-omnium the way `cargo cinstall` (cargo-c) lays out a C library,
# for machines without cargo-c (see README "Packaging"):
#
#   PREFIX/include/flow_omnium.h
#   LIBDIR/libflow_omnium.so.X.Y.Z     stripped; soname libflow_omnium.so.0.Y (0.x: the
#   LIBDIR/libflow_omnium.so.0.Y  ->   minor is the breaking part, as cargo-c does)
#   LIBDIR/libflow_omnium.so      ->
#   LIBDIR/.debug/libflow_omnium.so.X.Y.Z.debug   debug info (gdb finds it by debuglink)
#   LIBDIR/libflow_omnium.a            exports only fo_* (SQLite and Rust symbols localized)
#   LIBDIR/pkgconfig/flow_omnium.pc
#   LIBDIR/cmake/flow_omnium/flow_omnium-config.cmake, -config-version.cmake
#
# usage: scripts/install.sh [--prefix DIR] [--libdir DIR] [--destdir DIR] [--skip-build]
#   --prefix   default /usr/local;  --libdir default PREFIX/lib
#   --destdir  staged install root (as DESTDIR): files go to DESTDIR/PREFIX/…, and the
#              .pc and CMake files still name PREFIX
#   --skip-build  use target/release as it is (after an earlier run)
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local
libdir=
destdir=
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --libdir) libdir="$2"; shift 2 ;;
    --destdir) destdir="$2"; shift 2 ;;
    --skip-build) build=0; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$prefix" in /*) ;; *) echo "install.sh: --prefix must be absolute" >&2; exit 2 ;; esac
libdir="${libdir:-$prefix/lib}"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
major=${version%%.*}; rest=${version#*.}; minor=${rest%%.*}
if [ "$major" = 0 ]; then soversion="0.$minor"; else soversion="$major"; fi
soname="libflow_omnium.so.$soversion"
release=target/release

mkdir -p "$release"
if [ "$build" = 1 ]; then
  # One compile gives the cdylib (linked with its soname), the staticlib and the list of
  # native libraries a static link needs.
  cargo rustc --release --lib --quiet -- \
    -C link-arg=-Wl,-soname,"$soname" --print native-static-libs 2> "$release/native-static-libs.txt" \
    || { cat "$release/native-static-libs.txt" >&2; exit 1; }
fi
native=$(sed -n 's/.*native-static-libs: //p' "$release/native-static-libs.txt" | tail -1)
[ -n "$native" ] || native="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# Shared library: debug info kept aside, then stripped, with a debuglink to it.
cp "$release/libflow_omnium.so" "$stage/libflow_omnium.so.$version"
objcopy --only-keep-debug "$stage/libflow_omnium.so.$version" "$stage/libflow_omnium.so.$version.debug"
strip --strip-unneeded "$stage/libflow_omnium.so.$version"
(cd "$stage" && objcopy --add-gnu-debuglink="libflow_omnium.so.$version.debug" "libflow_omnium.so.$version")

# Static library: one relocatable object of everything, every global symbol but fo_*
# made local, so a POS that links its own SQLite (or another Rust library) sees no clash.
nm -g --defined-only "$release/libflow_omnium.a" 2>/dev/null \
  | awk '$2 ~ /^[TDBRVW]$/ && $3 ~ /^fo_/ {print $3}' | sort -u > "$stage/exports.txt"
[ -s "$stage/exports.txt" ] || { echo "install.sh: no fo_ symbols in the static library" >&2; exit 1; }
ld -r --whole-archive "$release/libflow_omnium.a" -o "$stage/flow_omnium.o"
# Embedded LLVM bitcode (.llvmbc) is dropped: nothing links it, and an older LLVM plugin
# of binutils (bfd-plugins) would choke on it.
objcopy --keep-global-symbols="$stage/exports.txt" --strip-debug \
  --remove-section=.llvmbc --remove-section=.llvmcmd "$stage/flow_omnium.o"
rm -f "$stage/libflow_omnium.a"
ar rcs "$stage/libflow_omnium.a" "$stage/flow_omnium.o"

root="$destdir"
install -d "$root$prefix/include" "$root$libdir/.debug" "$root$libdir/pkgconfig" "$root$libdir/cmake/flow_omnium"
install -m 644 include/flow_omnium.h "$root$prefix/include/flow_omnium.h"
install -m 755 "$stage/libflow_omnium.so.$version" "$root$libdir/"
install -m 644 "$stage/libflow_omnium.so.$version.debug" "$root$libdir/.debug/"
ln -sf "libflow_omnium.so.$version" "$root$libdir/$soname"
ln -sf "$soname" "$root$libdir/libflow_omnium.so"
install -m 644 "$stage/libflow_omnium.a" "$root$libdir/"

subst() {
  sed -e "s|@PREFIX@|$prefix|g" -e "s|@LIBDIR@|$libdir|g" -e "s|@VERSION@|$version|g" \
      -e "s|@NATIVE_LIBS@|$native|g" -e "s|@SONAME@|$soname|g" -e "s|@MINOR@|$minor|g" "$1"
}
subst packaging/flow_omnium.pc.in > "$root$libdir/pkgconfig/flow_omnium.pc"
subst packaging/flow_omnium-config.cmake.in > "$root$libdir/cmake/flow_omnium/flow_omnium-config.cmake"
subst packaging/flow_omnium-config-version.cmake.in > "$root$libdir/cmake/flow_omnium/flow_omnium-config-version.cmake"
chmod 644 "$root$libdir/pkgconfig/flow_omnium.pc" "$root$libdir"/cmake/flow_omnium/*.cmake

echo "installed flow-omnium $version into $root$prefix (libdir $root$libdir)"
