#!/usr/bin/env bash
# demo.sh (`make demo`): two BEAM nodes running the seed app and one etsd on
# this machine; users created on each side; every node's table and an rpc
# answer from etsd printed; everything stopped. About 15 seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ETSD=${ETSD:-$PWD/build/etsd}
[ -x "$ETSD" ] || { echo "demo: $ETSD is missing; run make first" >&2; exit 1; }
epmd -names >/dev/null 2>&1 || epmd -daemon

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
erlc -o "$work" erlang_test/phoenix_pubsub_pg2.erl erlang_test/seed_app.erl \
    erlang_test/seed_repo.erl erlang_test/seed_node_listener.erl \
    erlang_test/seed_syncer.erl erlang_test/etsd_demo.erl

echo "etsd demo: a Phoenix-style cluster (Erlang port of the seed app) plus etsd"
timeout 60 erl -noshell -name "demo_ctl_$$@127.0.0.1" -setcookie "etsd_demo_$$" \
    -pa "$work" -run etsd_demo main "$ETSD" "$work" "$PWD/build/demo-etsd.log" || {
    s=$?; echo "demo: failed (status $s); etsd's log follows" >&2
    tail -n 40 build/demo-etsd.log >&2 2>/dev/null || true
    exit $s
}
