#!/usr/bin/env bash
# bench_rpc.sh: :ets.lookup round trips over rpc to etsd vs to a BEAM node
# (throughput, p50, p99) and ets:tab2list of N users over rpc (default
# 1,000,000), etsd vs BEAM, in the same run. Prints figures.
#   bash bench/bench_rpc.sh [LOOKUPS] [N]
set -euo pipefail
cd "$(dirname "$0")/.."
L=${1:-20000}
N=${2:-1000000}
[ -x build/etsd ] || make -s build/etsd
epmd -names >/dev/null 2>&1 || epmd -daemon
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
erlc -o "$work" bench/bench_rpc.erl
erl -noshell -name "bench_rpc_ctl_$$@127.0.0.1" -setcookie "bench_$$" -pa "$work" \
    -run bench_rpc main "$PWD/build/etsd" "$work" "$L" "$N"
