#!/usr/bin/env bash
# soak.sh: the soak run (erlang_test/etsd_soak.erl). Two BEAM seed nodes
# stream {new, User} over their own keys, rpc lookups go to etsd alongside,
# a BEAM node is restarted every BEAM_RESTART_S (60) seconds and etsd, with
# --data-dir, is killed with SIGKILL and restarted every ETSD_KILL_S (180).
# Prints etsd's RSS, open fds, data-dir size, stderr log size and table
# sizes over time, the restart times, and PASS when RSS and fds stayed
# bounded and the tables agree at the end (the data-dir size is reported).
#   bash bench/soak.sh [DURATION_S WRITES KEYS_PER_NODE]
# Defaults: 3600 s, 10,000,000 writes, 100,000 keys per node.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-3600}
WRITES=${2:-10000000}
KEYS=${3:-100000}
[ -x build/etsd ] || make -s build/etsd
epmd -names >/dev/null 2>&1 || epmd -daemon
# The work folder (data dir, etsd's log) is kept when the run fails.
work=$(mktemp -d)
trap 'rc=$?; if [ $rc -eq 0 ]; then rm -rf "$work"; else echo "soak: kept $work" >&2; fi' EXIT
erlc -o "$work" erlang_test/phoenix_pubsub_pg2.erl erlang_test/seed_app.erl \
    erlang_test/seed_repo.erl erlang_test/seed_node_listener.erl \
    erlang_test/seed_syncer.erl erlang_test/etsd_soak.erl
erl -noshell -name "soak_ctl_$$@127.0.0.1" -setcookie "soak_$$" -pa "$work" \
    -run etsd_soak main "$PWD/build/etsd" "$work" "$DUR" "$WRITES" "$KEYS" \
    "${BEAM_RESTART_S:-60}" "${ETSD_KILL_S:-180}"
