#!/usr/bin/env bash
# bench_compact.sh: how long a compaction holds the loop (the rotation and
# the fork) and how long it takes in all, for N seed users (default
# 1000000), with writes going on meanwhile. No BEAM counterpart: ETS has no
# log to compact (ets:tab2file of the same table is bench_wal's snapshot).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD:-build}
N=${N:-1000000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$B/bench_compact" "$tmp/etsd" "$N" "${ROUNDS:-3}"
