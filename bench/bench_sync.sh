#!/usr/bin/env bash
# bench_sync.sh: etsd vs a fresh BEAM seed node joining a cluster that holds
# N users (default 1,000,000), and etsd's CPU per {new, User} under a stream
# of 2*M messages from two BEAM nodes (default M 200,000). Prints figures.
#   bash bench/bench_sync.sh [N] [M]
# With FSYNC=always|never|MS in the environment, every etsd started gets a
# fresh --data-dir and that --fsync policy (default: memory only).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
M=${2:-200000}
[ -x build/etsd ] || make -s build/etsd
epmd -names >/dev/null 2>&1 || epmd -daemon
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
erlc -o "$work" erlang_test/phoenix_pubsub_pg2.erl erlang_test/seed_app.erl \
    erlang_test/seed_repo.erl erlang_test/seed_node_listener.erl \
    erlang_test/seed_syncer.erl bench/bench_sync.erl
erl -noshell -name "bench_ctl_$$@127.0.0.1" -setcookie "bench_$$" -pa "$work" \
    -run bench_sync main "$PWD/build/etsd" "$work" "$N" "$M" "${FSYNC:-none}"
