#!/usr/bin/env bash
# Runs every benchmark script bench/bench_*.sh in turn. Each one runs etsd
# and a BEAM node on the same work in one run and prints both and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
for b in bench/bench_*.sh; do
    [ -e "$b" ] || continue
    echo "== $b"
    bash "$b"
done
