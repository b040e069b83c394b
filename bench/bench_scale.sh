#!/usr/bin/env bash
# bench_scale.sh: etsd's join time and memory against a BEAM seed node, the
# compactions during the join, and the restart time from its data dir, for
# each N given (default 1000000 and 10000000), so the growth shows.
#   bash bench/bench_scale.sh [N...]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/etsd ] || make -s build/etsd
epmd -names >/dev/null 2>&1 || epmd -daemon
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
erlc -o "$work" erlang_test/phoenix_pubsub_pg2.erl erlang_test/seed_app.erl \
    erlang_test/seed_repo.erl erlang_test/seed_node_listener.erl \
    erlang_test/seed_syncer.erl bench/bench_scale.erl
for n in "${@:-1000000 10000000}"; do
    erl -noshell -name "scale_ctl_$$@127.0.0.1" -setcookie "scale_$$" -pa "$work" \
        -run bench_scale main "$PWD/build/etsd" "$work" "$n"
done
