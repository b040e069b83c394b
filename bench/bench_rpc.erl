%% bench_rpc: :ets calls over rpc, etsd against a BEAM node in the same run.
%% (1) ets:lookup round trips: latency p50/p99 of one sequential caller and
%% throughput of several concurrent callers; (2) ets:tab2list of N objects
%% (seed users) over erpc, and the worst latency another caller sees on the
%% same node meanwhile (the loop must keep serving). Driven by
%% bench/bench_rpc.sh; prints figures, asserts nothing.
-module(bench_rpc).
-export([main/1, own_table/1, probe_start/2]).

-define(TAB, bench_users).

main([Etsd, Dir, LookupsStr, BigStr]) ->
    Lookups = list_to_integer(LookupsStr),
    Big = list_to_integer(BigStr),
    try
        {PB, B} = beam(Dir),
        E = etsd(Etsd, Dir),
        EN = element(1, E),
        ok = erpc:call(B, ?MODULE, own_table, [?TAB]),
        ?TAB = erpc:call(EN, ets, new, [?TAB, [set, public, named_table]]),
        {PP, Prober} = beam(Dir),
        lookups(EN, B, Lookups),
        tab2list(EN, B, Prober, Big),
        stop_etsd(E),
        peer:stop(PB),
        peer:stop(PP),
        halt(0)
    catch C:R:St ->
        io:format("bench_rpc failed: ~p:~p~n~p~n", [C, R, St]),
        halt(1)
    end.

%% Extra distribution arguments from the environment (bench_tls.sh runs
%% everything over TLS with them): Var holds space-separated words.
dist_args(Var) -> string:lexemes(os:getenv(Var, ""), " ").

uniq(P) -> P ++ "_" ++ os:getpid() ++ "_" ++ integer_to_list(erlang:unique_integer([positive])).

beam(Dir) ->
    {ok, P, Node} = peer:start(#{name => uniq("bench_rpc_beam"), host => "127.0.0.1",
                                 longnames => true, connection => standard_io,
                                 args => ["-setcookie", atom_to_list(erlang:get_cookie()),
                                          "-pa", Dir | dist_args("BENCH_ERL_DIST")]}),
    {P, Node}.

own_table(Tab) ->
    Self = self(),
    Pid = spawn(fun() -> ets:new(Tab, [set, public, named_table]), Self ! {self(), ready},
                         receive stop -> ok end end),
    receive {Pid, ready} -> ok end.

etsd(Etsd, Dir) ->
    Name = uniq("etsd_bench_rpc") ++ "@127.0.0.1",
    Args = ["--name", Name, "--cookie", atom_to_list(erlang:get_cookie()),
            "--log-level", "warn" | dist_args("BENCH_ETSD_DIST")],
    Log = filename:join(Dir, "etsd_bench_rpc.log"),
    Port = open_port({spawn_executable, "/bin/sh"},
                     [{args, ["-c", "exec \"$0\" \"$@\" 2>>'" ++ Log ++ "'", Etsd | Args]},
                      exit_status]),
    {os_pid, OsPid} = erlang:port_info(Port, os_pid),
    Node = list_to_atom(Name),
    poll(fun() -> net_adm:ping(Node) =:= pong end),
    {Node, OsPid, Port}.

stop_etsd({_, OsPid, Port}) ->
    os:cmd("kill -TERM " ++ integer_to_list(OsPid)),
    receive {Port, {exit_status, _}} -> ok
    after 5000 -> os:cmd("kill -9 " ++ integer_to_list(OsPid))
    end.

poll(F) ->
    case catch F() of
        true -> ok;
        _ -> receive after 20 -> poll(F) end
    end.

user(I) -> {<<"user", (integer_to_binary(I))/binary, "@example.com">>, <<"token">>, I}.

fill(Node, From, To) ->
    [true = erpc:call(Node, ets, insert, [?TAB, [user(I) || I <- lists:seq(B, min(B + 9999, To))]])
     || B <- lists:seq(From, To, 10000)],
    ok.

%% ---- (1) lookups -------------------------------------------------------

lookups(E, B, N) ->
    Size = 100000,
    fill(E, 1, Size),
    fill(B, 1, Size),
    io:format("~n-- ets:lookup over erpc:call, table of ~b users, ~b calls per run~n",
              [Size, N]),
    io:format("~-6s ~12s ~10s ~10s ~14s~n",
              ["node", "1 caller/s", "p50 us", "p99 us", "8 callers/s"]),
    %% Alternate the two nodes so neither gets a warmer machine.
    Runs = [{Who, sequential(Node, N, Size), concurrent(Node, N, Size, 8)}
            || _ <- [1, 2], {Who, Node} <- [{etsd, E}, {beam, B}]],
    [begin
         {Rate, P50, P99} = best([S || {W, S, _} <- Runs, W =:= Who]),
         Conc = lists:max([C || {W, _, C} <- Runs, W =:= Who]),
         io:format("~-6s ~12b ~10.1f ~10.1f ~14b~n", [Who, Rate, P50, P99, Conc])
     end || Who <- [etsd, beam]],
    ok.

%% The run with the lowest p50 of each node.
best(L) -> hd(lists:sort(fun({_, A, _}, {_, B, _}) -> A =< B end, L)).

key(Size) -> element(1, user(rand:uniform(Size))).

sequential(Node, N, Size) ->
    [_ = erpc:call(Node, ets, lookup, [?TAB, key(Size)]) || _ <- lists:seq(1, 1000)],
    T0 = erlang:monotonic_time(nanosecond),
    Lat = [begin
               K = key(Size),
               S = erlang:monotonic_time(nanosecond),
               [_] = erpc:call(Node, ets, lookup, [?TAB, K]),
               erlang:monotonic_time(nanosecond) - S
           end || _ <- lists:seq(1, N)],
    T = erlang:monotonic_time(nanosecond) - T0,
    Sorted = list_to_tuple(lists:sort(Lat)),
    P = fun(Q) -> element(max(1, round(Q * N)), Sorted) / 1000 end,
    {round(N * 1.0e9 / T), P(0.50), P(0.99)}.

concurrent(Node, N, Size, C) ->
    Self = self(),
    Per = N div C,
    T0 = erlang:monotonic_time(nanosecond),
    Pids = [spawn_link(fun() ->
                               [[_] = erpc:call(Node, ets, lookup, [?TAB, key(Size)])
                                || _ <- lists:seq(1, Per)],
                               Self ! {done, self()}
                       end) || _ <- lists:seq(1, C)],
    [receive {done, P} -> ok end || P <- Pids],
    T = erlang:monotonic_time(nanosecond) - T0,
    round(Per * C * 1.0e9 / T).

%% ---- (2) tab2list ------------------------------------------------------

tab2list(E, B, Prober, Big) ->
    fill(E, 100001, Big),
    fill(B, 100001, Big),
    Big = erpc:call(E, ets, info, [?TAB, size]),
    Big = erpc:call(B, ets, info, [?TAB, size]),
    io:format("~n-- ets:tab2list of ~b users over erpc:call (median of 3), and the~n"
              "   worst latency of erlang:node/0 calls that a third node makes to the~n"
              "   same node meanwhile (its own connection: the loop's longest stall)~n", [Big]),
    io:format("~-6s ~12s ~16s~n", ["node", "tab2list ms", "worst other ms"]),
    Runs = [{Who, one_tab2list(Node, Prober, Big)}
            || _ <- [1, 2, 3], {Who, Node} <- [{etsd, E}, {beam, B}]],
    [begin
         L = lists:sort([R || {W, R} <- Runs, W =:= Who]),
         {Ms, Worst} = lists:nth(2, L),
         io:format("~-6s ~12.1f ~16.1f~n", [Who, Ms, Worst])
     end || Who <- [etsd, beam]],
    ok.

one_tab2list(Node, Prober, Big) ->
    Self = self(),
    P = erpc:call(Prober, ?MODULE, probe_start, [Node, Self]),
    receive {probing, P} -> ok end,
    T0 = erlang:monotonic_time(microsecond),
    L = erpc:call(Node, ets, tab2list, [?TAB], 120000),
    Ms = (erlang:monotonic_time(microsecond) - T0) / 1000,
    Big = length(L),
    P ! {stop, Self},
    Worst = receive {worst, P, W} -> W end,
    {Ms, Worst}.

%% On the prober node: calls erlang:node/0 on Node back to back until told
%% to stop; reports the slowest call in milliseconds.
probe_start(Node, Parent) ->
    spawn(fun() -> Parent ! {probing, self()}, probe(Node, Parent, 0) end).

probe(Node, Parent, Worst) ->
    receive
        {stop, Parent} -> Parent ! {worst, self(), Worst / 1000}
    after 0 ->
        S = erlang:monotonic_time(microsecond),
        Node = erpc:call(Node, erlang, node, []),
        probe(Node, Parent, max(Worst, erlang:monotonic_time(microsecond) - S))
    end.
