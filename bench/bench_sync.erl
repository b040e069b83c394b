%% bench_sync: (1) time for etsd to hold N users after joining a BEAM seed
%% node that has them, against a fresh BEAM seed node joining the same node;
%% (2) etsd's CPU time per {new, User} under a sustained stream from two
%% BEAM nodes. Driven by bench/bench_sync.sh; prints figures, asserts nothing.
-module(bench_sync).
-export([main/1]).

main([Etsd, Dir, NStr, MStr]) ->
    main([Etsd, Dir, NStr, MStr, "none"]);
main([Etsd, Dir, NStr, MStr, Fsync]) ->
    %% "none": memory only; else a fresh --data-dir per etsd, with --fsync.
    put(fsync, Fsync),
    io:format("etsd storage: ~s~n", [case Fsync of "none" -> "memory only";
                                                   _ -> "--data-dir, --fsync " ++ Fsync end]),
    N = list_to_integer(NStr),
    M = list_to_integer(MStr),
    try
        join(Etsd, Dir, N),
        stream(Etsd, Dir, M),
        halt(0)
    catch C:R:St ->
        io:format("bench_sync failed: ~p:~p~n~p~n", [C, R, St]),
        %% Leave no etsd behind (BEAM peers die with this node).
        [os:cmd("kill -9 " ++ integer_to_list(P)) || P <- get_list(etsd_pids)],
        halt(1)
    end.

get_list(K) -> case get(K) of undefined -> []; L -> L end.

%% Extra distribution arguments from the environment (bench_tls.sh runs
%% everything over TLS with them): Var holds space-separated words.
dist_args(Var) -> string:lexemes(os:getenv(Var, ""), " ").

uniq(P) -> P ++ "_" ++ os:getpid() ++ "_" ++ integer_to_list(erlang:unique_integer([positive])).

beam(Dir, Opts) ->
    {ok, P, Node} = peer:start(#{name => uniq("bench"), host => "127.0.0.1",
                                 longnames => true, connection => standard_io,
                                 args => ["-setcookie", atom_to_list(erlang:get_cookie()),
                                          "-pa", Dir, "+sbwt", "none",
                                          %% Peers come and go between phases; global must
                                          %% not cut the survivors off from each other.
                                          "-kernel", "prevent_overlapping_partitions", "false"
                                          | dist_args("BENCH_ERL_DIST")]}),
    {ok, _} = erpc:call(Node, seed_app, start, [Opts]),
    {P, Node}.

etsd(Etsd, Dir, Join) ->
    Name = uniq("etsd_bench") ++ "@127.0.0.1",
    Args = ["--name", Name, "--cookie", atom_to_list(erlang:get_cookie()),
            "--join", atom_to_list(Join), "--sync-delay-ms", "0", "--log-level", "info"]
           ++ dist_args("BENCH_ETSD_DIST")
           ++ case get(fsync) of
                  "none" -> [];
                  F -> ["--data-dir", filename:join(Dir, uniq("data")), "--fsync", F]
              end,
    Log = filename:join(Dir, "etsd_bench.log"),
    Port = open_port({spawn_executable, "/bin/sh"},
                     [{args, ["-c", "exec \"$0\" \"$@\" 2>>'" ++ Log ++ "'", Etsd | Args]},
                      exit_status]),
    {os_pid, OsPid} = erlang:port_info(Port, os_pid),
    put(etsd_pids, [OsPid | get_list(etsd_pids)]),
    {list_to_atom(Name), OsPid, Port}.

stop_etsd({_, OsPid, Port}) ->
    os:cmd("kill -TERM " ++ integer_to_list(OsPid)),
    receive {Port, {exit_status, _}} -> ok after 5000 -> os:cmd("kill -9 " ++ integer_to_list(OsPid)) end.

%% Waits until F() is true; after 120 s the run stops with the condition
%% that never held, rather than hanging.
poll(F) -> poll(F, erlang:monotonic_time(millisecond) + 120000).

poll(F, Deadline) ->
    case catch F() of
        true -> ok;
        Other ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> erlang:error({bench_condition_never_held, F, Other});
                false -> receive after 5 -> poll(F, Deadline) end
            end
    end.

now_ms() -> erlang:monotonic_time(microsecond) / 1000.

users(N) -> [{<<"user", (integer_to_binary(I))/binary, "@example.com">>,
              <<"token">>, I} || I <- lists:seq(1, N)].

join(Etsd, Dir, N) ->
    io:format("~n-- join: time to hold ~b users after joining a seed node that has them~n", [N]),
    %% The NodeListeners of A and C wait (the seed's 3 s would do); the
    %% bench fires A's once C's PubSub is in A's pg view. With no wait, A's
    %% sync raced pg's discovery of C and was, now and then, sent to no one.
    Never = [{sync_delay_ms, 3600000}],
    {PA, A} = beam(Dir, Never),
    true = erpc:call(A, erlang, apply,
                     [fun() -> ets:insert(users, users(N)) end, []], 120000),
    %% Fresh BEAM seed node, before etsd is there: from A's NodeListener
    %% sync (tab2list, send, C's Syncer inserting) to N held; C's connect
    %% and pg discovery are not counted (etsd's are).
    {PC, C} = beam(Dir, Never),
    true = erpc:call(C, net_kernel, connect_node, [A]),
    poll(fun() ->
        lists:any(fun(P) -> node(P) =:= C end,
                  erpc:call(A, pg, get_members,
                            ['Elixir.Phoenix.PubSub', 'Elixir.MyApp.PubSub.Adapter']))
    end),
    T1 = now_ms(),
    {seed_node_listener, A} ! {sync, C},
    poll(fun() -> erpc:call(C, ets, info, [users, size]) =:= N end),
    Tb = now_ms() - T1,
    peer:stop(PC),
    %% etsd: from process start (boot, connect, pull over rex) to N held.
    T0 = now_ms(),
    E = {EN, _, _} = etsd(Etsd, Dir, A),
    poll(fun() -> erpc:call(EN, ets, info, [users, size]) =:= N end),
    Te = now_ms() - T0,
    peer:stop(PA),
    io:format("etsd: ~.1f ms   fresh BEAM seed node: ~.1f ms   etsd/BEAM: ~.2f~n",
              [Te, Tb, Te / Tb]),
    %% The other way: with every BEAM node gone, a fresh one gets the table
    %% from etsd alone (etsd plays NodeListener, delay 0).
    io:format("~n-- push: time for a fresh BEAM seed node to hold ~b users from etsd alone~n", [N]),
    {PD, D} = beam(Dir, [{sync_delay_ms, 0}]),
    T2 = now_ms(),
    true = erpc:call(D, net_kernel, connect_node, [EN]),
    poll(fun() -> erpc:call(D, ets, info, [users, size]) =:= N end),
    Tp = now_ms() - T2,
    peer:stop(PD),
    stop_etsd(E),
    io:format("etsd -> fresh BEAM node: ~.1f ms   (BEAM -> fresh BEAM node above: ~.1f ms)~n",
              [Tp, Tb]),
    %% etsd's own account of the pull and push (bytes, times).
    {ok, LogBin} = file:read_file(filename:join(Dir, "etsd_bench.log")),
    [io:format("  etsd log: ~s~n", [L]) || L <- binary:split(LogBin, <<"\n">>, [global]),
                                          binary:match(L, [<<"merged">>, <<"sent">>]) =/= nomatch].


%% {user, system} CPU milliseconds of a process.
cpu_split_ms(OsPid) ->
    {ok, B} = file:read_file("/proc/" ++ integer_to_list(OsPid) ++ "/stat"),
    %% Fields after the ")" of comm: utime and stime are fields 14 and 15.
    [_, Rest] = binary:split(B, <<") ">>),
    F = binary:split(Rest, <<" ">>, [global]),
    {binary_to_integer(lists:nth(12, F)) * 10, binary_to_integer(lists:nth(13, F)) * 10}.

stream(Etsd, Dir, M) ->
    io:format("~n-- stream: etsd CPU per {new, User}, ~b messages from each of two BEAM nodes~n", [M]),
    %% NodeListener delay 0: the syncs the seed nodes send each other (and
    %% this node) on nodeup go out now, with empty tables. With the seed's
    %% 3 s they land mid-stream, each carrying a whole table that etsd
    %% merges, and that merge is then billed to the {new, User} messages.
    {PA, A} = beam(Dir, [{sync_delay_ms, 0}]),
    {PB, B} = beam(Dir, [{sync_delay_ms, 0}]),
    true = erpc:call(A, net_kernel, connect_node, [B]),
    E = {EN, OsPid, _} = etsd(Etsd, Dir, A),
    poll(fun() ->
        lists:all(fun(Node) ->
            lists:any(fun(P) -> node(P) =:= EN end,
                      erpc:call(Node, pg, get_members,
                                ['Elixir.Phoenix.PubSub', 'Elixir.MyApp.PubSub.Adapter']))
        end, [A, B]) end),
    {U0, S0} = cpu_split_ms(OsPid),
    C0 = U0 + S0,
    T0 = now_ms(),
    Emit = fun(Node, Tag) ->
        erpc:send_request(Node, erlang, apply,
            [fun() -> [seed_repo:save_and_emit({<<Tag/binary, (integer_to_binary(I))/binary>>, I})
                       || I <- lists:seq(1, M)], ok end, []])
    end,
    Ra = Emit(A, <<"a">>),
    Rb = Emit(B, <<"b">>),
    ok = erpc:receive_response(Ra, 600000),
    ok = erpc:receive_response(Rb, 600000),
    poll(fun() -> erpc:call(EN, ets, info, [users, size]) =:= 2 * M end),
    T = now_ms() - T0,
    {U1, S1} = cpu_split_ms(OsPid),
    C = U1 + S1 - C0,
    io:format("~b messages in ~.1f ms (~.1f msg/s); etsd CPU ~b ms = ~.3f us per message"
              " (user ~.3f us, system ~.3f us)~n",
              [2 * M, T, 2 * M / T * 1000, C, C * 1000 / (2 * M),
               (U1 - U0) * 1000 / (2 * M), (S1 - S0) * 1000 / (2 * M)]),
    stop_etsd(E),
    peer:stop(PA),
    peer:stop(PB).
