%% bench_scale: how etsd grows with the table. For N users: the time for
%% etsd (with a data dir, --fsync always) to hold them after joining a BEAM
%% seed node that has them, its memory then against the BEAM node's, the
%% compactions it made meanwhile, and the time to hold them again after a
%% restart from its data dir alone. Driven by bench/bench_scale.sh; prints
%% figures, asserts nothing.
-module(bench_scale).
-export([main/1]).

main([Etsd, Dir, NStr]) ->
    N = list_to_integer(NStr),
    try
        run(Etsd, Dir, N),
        halt(0)
    catch C:R:St ->
        io:format("bench_scale failed: ~p:~p~n~p~n", [C, R, St]),
        [os:cmd("kill -9 " ++ integer_to_list(P)) || P <- get_list(etsd_pids)],
        halt(1)
    end.

get_list(K) -> case get(K) of undefined -> []; L -> L end.

%% etsd's log for this run (one per N, so each run reads its own lines).
log_file(Dir) -> filename:join(Dir, "etsd_scale_" ++ integer_to_list(get(n)) ++ ".log").

uniq(P) -> P ++ "_" ++ os:getpid() ++ "_" ++ integer_to_list(erlang:unique_integer([positive])).

now_ms() -> erlang:monotonic_time(microsecond) / 1000.

poll(F) -> poll(F, erlang:monotonic_time(millisecond) + 600000).
poll(F, Deadline) ->
    case catch F() of
        true -> ok;
        Other ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> erlang:error({bench_condition_never_held, Other});
                false -> receive after 20 -> poll(F, Deadline) end
            end
    end.

etsd(Etsd, Dir, Data, Join) ->
    Name = uniq("etsd_scale") ++ "@127.0.0.1",
    Args = ["--name", Name, "--cookie", atom_to_list(erlang:get_cookie()),
            "--sync-delay-ms", "0", "--data-dir", Data]
           ++ case Join of none -> []; _ -> ["--join", atom_to_list(Join)] end,
    Log = log_file(Dir),
    Port = open_port({spawn_executable, "/bin/sh"},
                     [{args, ["-c", "exec \"$0\" \"$@\" 2>>'" ++ Log ++ "'", Etsd | Args]},
                      exit_status]),
    {os_pid, OsPid} = erlang:port_info(Port, os_pid),
    put(etsd_pids, [OsPid | get_list(etsd_pids)]),
    {list_to_atom(Name), OsPid, Port}.

stop_etsd({_, OsPid, Port}) ->
    os:cmd("kill -TERM " ++ integer_to_list(OsPid)),
    receive {Port, {exit_status, _}} -> ok
    after 60000 -> os:cmd("kill -9 " ++ integer_to_list(OsPid))
    end.

rss_mb(OsPid) ->
    {ok, B} = file:read_file("/proc/" ++ integer_to_list(OsPid) ++ "/status"),
    {match, [Kb]} = re:run(B, "VmRSS:\\s+([0-9]+) kB", [{capture, all_but_first, list}]),
    list_to_integer(Kb) / 1024.

run(Etsd, Dir, N) ->
    put(n, N),
    io:format("-- ~b users~n", [N]),
    {ok, PA, A} = peer:start(#{name => uniq("scale"), host => "127.0.0.1",
                               longnames => true, connection => standard_io,
                               args => ["-setcookie", atom_to_list(erlang:get_cookie()),
                                        "-pa", Dir, "+sbwt", "none"]}),
    {ok, _} = erpc:call(A, seed_app, start, [[{sync_delay_ms, 3600000}]]),
    T0 = now_ms(),
    true = erpc:call(A, erlang, apply,
                     [fun() ->
                              lists:foreach(
                                fun(C) ->
                                        ets:insert(users,
                                                   [{<<"user", (integer_to_binary(I))/binary,
                                                       "@example.com">>, <<"token">>, I}
                                                    || I <- lists:seq(C, min(N, C + 99999))])
                                end, lists:seq(1, N, 100000)),
                              true
                      end, []], 600000),
    BeamFill = now_ms() - T0,
    EtsWords = erpc:call(A, ets, info, [users, memory]),
    BeamTotal = erpc:call(A, erlang, memory, [total]),
    Data = filename:join(Dir, uniq("data")),
    T1 = now_ms(),
    E = {EN, OsPid, _} = etsd(Etsd, Dir, Data, A),
    poll(fun() -> erpc:call(EN, ets, info, [users, size]) =:= N end),
    Join = now_ms() - T1,
    Rss = rss_mb(OsPid),
    io:format("BEAM seed node: filled in ~b ms; ets memory ~.1f MB, node total ~.1f MB~n",
              [round(BeamFill), EtsWords * 8 / 1.0e6, BeamTotal / 1.0e6]),
    io:format("etsd join (start to ~b held, --fsync always): ~b ms; RSS ~.1f MB~n",
              [N, round(Join), Rss]),
    peer:stop(PA),
    T3 = now_ms(),
    ok = erpc:call(EN, etsd, snapshot, [], 600000),
    io:format("etsd:snapshot() after it: ~b ms~n", [round(now_ms() - T3)]),
    stop_etsd(E),
    {ok, Log} = file:read_file(log_file(Dir)),
    Comp = [L || L <- binary:split(Log, <<"\n">>, [global]),
                 binary:match(L, <<"compaction">>) =/= nomatch],
    io:format("compactions (the last one is etsd:snapshot()'s): ~b~n~s~n",
              [length(Comp), lists:join("\n", Comp)]),
    io:format("data dir: ~s~n", [os:cmd("ls -l " ++ Data ++ " | tail -n +2")]),
    T2 = now_ms(),
    E2 = {EN2, OsPid2, _} = etsd(Etsd, Dir, Data, none),
    poll(fun() -> erpc:call(EN2, ets, info, [users, size]) =:= N end),
    Restart = now_ms() - T2,
    io:format("etsd restart from its data dir (start to ~b held): ~b ms; RSS ~.1f MB~n",
              [N, round(Restart), rss_mb(OsPid2)]),
    stop_etsd(E2).
