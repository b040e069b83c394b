#!/usr/bin/env bash
# bench_tls.sh: the rpc and join benchmarks with every node on TLS
# distribution (-proto_dist inet_tls, mutual certificates, verify_peer):
# :ets.lookup over erpc (p50/p99), etsd vs a BEAM node, then etsd vs a
# fresh BEAM seed node joining a cluster of N users (default 1,000,000).
# The certificates are made in a temporary folder. Prints both sides.
#   bash bench/bench_tls.sh [N] [LOOKUPS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
L=${2:-20000}
[ -x build/etsd ] || make -s build/etsd
epmd -names >/dev/null 2>&1 || epmd -daemon
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
q() { "$@" >/dev/null 2>&1; }
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$work/ca.key" -out "$work/ca.pem" -days 2 -subj /CN=bench_ca
q openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$work/node.key" -out "$work/node.csr" -subj /CN=node
echo "subjectAltName=DNS:127.0.0.1" > "$work/ext"
q openssl x509 -req -in "$work/node.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
    -CAcreateserial -out "$work/node.pem" -days 2 -extfile "$work/ext"
side="{certfile, \"$work/node.pem\"}, {keyfile, \"$work/node.key\"}, {cacertfile, \"$work/ca.pem\"}, {verify, verify_peer}"
echo "[{server, [$side, {fail_if_no_peer_cert, true}]}, {client, [$side]}]." > "$work/opt.conf"
export BENCH_ERL_DIST="-proto_dist inet_tls -ssl_dist_optfile $work/opt.conf"
export BENCH_ETSD_DIST="--proto-dist inet_tls --ssl-dist-optfile $work/opt.conf"
erlc -o "$work" bench/bench_rpc.erl erlang_test/phoenix_pubsub_pg2.erl erlang_test/seed_app.erl \
    erlang_test/seed_repo.erl erlang_test/seed_node_listener.erl \
    erlang_test/seed_syncer.erl bench/bench_sync.erl
echo "== over TLS: ets:lookup over erpc (tab2list of 100,000 users)"
erl -noshell -name "bench_tls_rpc_$$@127.0.0.1" -setcookie "bench_$$" -pa "$work" \
    $BENCH_ERL_DIST -run bench_rpc main "$PWD/build/etsd" "$work" "$L" 100000
echo "== over TLS: join a cluster of $N users"
erl -noshell -name "bench_tls_sync_$$@127.0.0.1" -setcookie "bench_$$" -pa "$work" \
    $BENCH_ERL_DIST -run bench_sync main "$PWD/build/etsd" "$work" "$N" 20000 none
