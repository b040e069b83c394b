#!/usr/bin/env bash
# bench_wal.sh: what durability costs. etsd's store (WAL + snapshot) and a
# BEAM node doing the same durable inserts with ets + disk_log, same run.
#   N users (default 1000000) without per-write sync, NA (default 2000) with
#   an fsync per write.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD:-build}
N=${N:-1000000}
NA=${NA:-2000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "-- etsd store"
"$B/bench_wal" "$tmp/etsd" "$N" "$NA"

echo "-- BEAM ets + disk_log"
erl -noshell -eval '
    [NS, NAS, Dir] = init:get_plain_arguments(),
    {N, NA} = {list_to_integer(NS), list_to_integer(NAS)},
    User = fun(I) -> {I, <<"user ", (integer_to_binary(I))/binary>>, 18 + I rem 60,
                      <<"user", (integer_to_binary(I))/binary, "@example.com">>} end,
    Run = fun(Name, Count, Sync) ->
        File = filename:join(Dir, Name),
        T = ets:new(users, [set, public]),
        {ok, L} = disk_log:open([{name, list_to_atom(Name)}, {file, File}]),
        T0 = erlang:monotonic_time(microsecond),
        lists:foreach(fun(I) -> U = User(I), ok = disk_log:log(L, U),
                                true = ets:insert(T, U),
                                Sync andalso disk_log:sync(L) end, lists:seq(1, Count)),
        ok = disk_log:sync(L),
        Dt = erlang:monotonic_time(microsecond) - T0,
        ok = disk_log:close(L), ets:delete(T),
        Count * 1000000 / Dt
    end,
    io:format("insert, sync every write:    ~10b /s  (~b users)~n", [round(Run("always", NA, true)), NA]),
    io:format("insert, sync at the end:     ~10b /s  (~b users)~n", [round(Run("never", N, false)), N]),
    halt().' -extra "$N" "$NA" "$tmp"
