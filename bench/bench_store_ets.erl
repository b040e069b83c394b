%% bench_store_ets: the ETS half of bench_store.sh. Inserts and looks up
%% N seed users in a set table from one process and prints medians in the
%% "key value" form of bench_store_bench. Compiled by bench_store.sh: an
%% -eval'd loop would run in the interpreter and measure that instead.
-module(bench_store_ets).
-export([main/1]).

main([NS, RunsS]) ->
    N = list_to_integer(NS),
    Runs = list_to_integer(RunsS),
    Objs = [{<<"user", (integer_to_binary(I))/binary, "@example.com">>,
             <<"tok", (integer_to_binary(I))/binary>>} || I <- lists:seq(0, N - 1)],
    Keys = [K || {K, _} <- Objs],
    Rs = [run(N, Objs, Keys) || _ <- lists:seq(1, Runs)],
    io:format("ets_insert_ns ~.1f~nets_lookup_ns ~.1f~nets_bytes_per_object ~.1f~n",
              [median([I || {I, _, _} <- Rs]), median([L || {_, L, _} <- Rs]),
               median([M || {_, _, M} <- Rs])]),
    halt().

run(N, Objs, Keys) ->
    T = ets:new(users, [set, public]),
    T0 = erlang:monotonic_time(nanosecond),
    ins(T, Objs),
    T1 = erlang:monotonic_time(nanosecond),
    look(T, Keys),
    T2 = erlang:monotonic_time(nanosecond),
    Mem = ets:info(T, memory) * erlang:system_info(wordsize),
    ets:delete(T),
    {(T1 - T0) / N, (T2 - T1) / N, Mem / N}.

ins(_T, []) -> ok;
ins(T, [O | Os]) -> ets:insert(T, O), ins(T, Os).

look(_T, []) -> ok;
look(T, [K | Ks]) -> [_] = ets:lookup(T, K), look(T, Ks).

median(L) ->
    S = lists:sort(L),
    Len = length(S),
    case Len rem 2 of
        1 -> lists:nth((Len + 1) div 2, S);
        0 -> (lists:nth(Len div 2, S) + lists:nth(Len div 2 + 1, S)) / 2
    end.
