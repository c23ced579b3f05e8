#!/usr/bin/env bash
# Make sure the TimescaleDB extension is installed for the machine's PostgreSQL 15, so the tests can run
# gatherer databases on it (production hosts run TimescaleDB). Does nothing when it is already there.
# Where Timescale's package repository is reachable, its packages serve as well (README, "TimescaleDB").
# Otherwise it builds the release source from ../shared/timescaledb/ (or $KD_TIMESCALEDB_TARBALL):
# about 70 s on 2 cores. Exit status non-zero when it could not be installed: CI must fail, not skip.
set -euo pipefail

PG_MAJOR=${PG_MAJOR:-15}
VERSION=${KD_TIMESCALEDB_VERSION:-2.28.3}
here=$(cd "$(dirname "$0")/.." && pwd)
tarball=${KD_TIMESCALEDB_TARBALL:-$here/../shared/timescaledb/timescaledb-$VERSION.tar.gz}
libdir=$(pg_config --pkglibdir 2>/dev/null || echo "/usr/lib/postgresql/$PG_MAJOR/lib")

if [ -e "$libdir/timescaledb-$VERSION.so" ] || [ -e "/usr/lib/postgresql/$PG_MAJOR/lib/timescaledb-$VERSION.so" ]; then
  echo "TimescaleDB $VERSION is installed"
  exit 0
fi
if [ ! -f "$tarball" ]; then
  echo "TimescaleDB is not installed and its source is not at $tarball (set KD_TIMESCALEDB_TARBALL)" >&2
  exit 1
fi

echo "TimescaleDB $VERSION is missing: building it from $tarball (about 70 s)" >&2
if command -v apt-get >/dev/null; then
  need=()
  for pkg in "postgresql-server-dev-$PG_MAJOR" cmake gcc make libssl-dev libkrb5-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
  fi
fi

build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
tar xzf "$tarball" -C "$build"
cd "$build/timescaledb-$VERSION"
PATH="/usr/lib/postgresql/$PG_MAJOR/bin:$PATH" ./bootstrap -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
  -DWARNINGS_AS_ERRORS=OFF -DLINTER=OFF -DCMAKE_BUILD_TYPE=Release -DPG_CONFIG="/usr/lib/postgresql/$PG_MAJOR/bin/pg_config" >/dev/null
make -C build -j"$(nproc)" >/dev/null
make -C build install >/dev/null
echo "TimescaleDB $VERSION installed"
