%% etsd_demo: what `make demo` shows. Two BEAM nodes run the seed app (over
%% the Phoenix.PubSub PG2 stand-in), etsd joins them, users are created on
%% both sides, and every node's table and an rpc answer from etsd are
%% printed. Run by erlang_test/demo.sh on a distributed node.
-module(etsd_demo).
-export([main/1]).

-define(SYNC_DELAY, "500").

main([Etsd, Dir, Log]) ->
    try run(Etsd, Dir, Log) of
        ok -> halt(0)
    catch C:R:St ->
        io:format("~ndemo failed: ~p:~p~n~p~n", [C, R, St]),
        halt(1)
    end.

step(Fmt, Args) -> io:format("~n== " ++ Fmt ++ "~n", Args).
say(Fmt, Args) -> io:format("   " ++ Fmt ++ "~n", Args).

run(Etsd, Dir, Log) ->
    Suffix = integer_to_list(list_to_integer(os:getpid())),
    Args = ["-setcookie", atom_to_list(erlang:get_cookie()), "-pa", Dir],
    step("Starting two BEAM nodes running the seed app", []),
    {PA, A} = beam("demo_a_" ++ Suffix, Args),
    {PB, B} = beam("demo_b_" ++ Suffix, Args),
    true = erpc:call(A, net_kernel, connect_node, [B]),
    say("~s and ~s are connected; each runs Phoenix.PubSub (PG2 adapter,", [A, B]),
    say("scope 'Elixir.Phoenix.PubSub'), NodeListener and Syncer over ETS users", []),

    step("Creating users on the BEAM side (Repo.save_and_emit)", []),
    Ann = {<<"ann@example.com">>, <<"Ann">>, <<"token-ann">>},
    Bob = {<<"bob@example.com">>, <<"Bob">>, <<"token-bob">>},
    ok = erpc:call(A, seed_repo, save_and_emit, [Ann]),
    say("on ~s: ~0p", [A, Ann]),
    ok = erpc:call(B, seed_repo, save_and_emit, [Bob]),
    say("on ~s: ~0p", [B, Bob]),
    await(fun() -> length(erpc:call(B, seed_repo, all, [])) =:= 2 end),

    EName = "etsd_demo_" ++ Suffix ++ "@127.0.0.1",
    E = list_to_atom(EName),
    EArgs = ["--name", EName, "--cookie", atom_to_list(erlang:get_cookie()),
             "--join", atom_to_list(A), "--sync-delay-ms", ?SYNC_DELAY],
    step("Starting etsd, told only of ~s", [A]),
    say("~s ~s", [Etsd, lists:join(" ", EArgs)]),
    Port = open_port({spawn_executable, "/bin/sh"},
                     [{args, ["-c", "exec \"$0\" \"$@\" 2>'" ++ Log ++ "'", Etsd | EArgs]},
                      exit_status]),
    {os_pid, OsPid} = erlang:port_info(Port, os_pid),
    try
        await(fun() -> net_adm:ping(E) =:= pong end),
        await(fun() -> length(erpc:call(E, ets, tab2list, [users])) =:= 2 end),
        say("etsd found ~s through ~s, joined the PubSub groups and pulled the table", [B, A]),
        await(fun() -> lists:any(fun(P) -> node(P) =:= E end,
                                 erpc:call(B, pg, get_members,
                                           ['Elixir.Phoenix.PubSub',
                                            'Elixir.MyApp.PubSub.Adapter'])) end),

        step("Creating users on both sides of etsd", []),
        Carol = {<<"carol@example.com">>, <<"Carol">>, <<"token-carol">>},
        say("on etsd, over rpc: rpc:call('~s', etsd, insert, [users, ~0p])", [E, Carol]),
        say("  -> ~0p", [rpc:call(E, etsd, insert, [users, Carol])]),
        Dave = {<<"dave@example.com">>, <<"Dave">>, <<"token-dave">>},
        ok = erpc:call(B, seed_repo, save_and_emit, [Dave]),
        say("on ~s: ~0p", [B, Dave]),
        All = lists:sort([Ann, Bob, Carol, Dave]),
        await(fun() -> lists:all(fun(N) -> table(N) =:= All end, [A, B, E]) end),

        step("What every node holds (ets:tab2list(users))", []),
        [begin
             say("~s:", [N]),
             [say("    ~0p", [U]) || U <- table(N)]
         end || N <- [A, B, E]],

        step("An rpc call answered by etsd, as from iex", []),
        Q = <<"ann@example.com">>,
        say(":rpc.call(:\"~s\", :ets, :lookup, [:users, \"~s\"])", [E, Q]),
        say("  -> ~0p", [rpc:call(E, ets, lookup, [users, Q])]),
        say(":erpc.call(:\"~s\", :ets, :info, [:users, :size])", [E]),
        say("  -> ~0p", [erpc:call(E, ets, info, [users, size])]),
        say(":rpc.call(:\"~s\", :etsd, :info, []) (peers and replication entries)", [E]),
        Info = erpc:call(E, etsd, info, []),
        [say("  ~s => ~0p", [K, maps:get(K, Info)]) || K <- [peers, replication],
                                                       maps:is_key(K, Info)]
    after
        step("Stopping everything", []),
        os:cmd("kill -TERM " ++ integer_to_list(OsPid)),
        receive {Port, {exit_status, S}} -> say("etsd exited with status ~p", [S])
        after 5000 -> os:cmd("kill -9 " ++ integer_to_list(OsPid))
        end,
        catch peer:stop(PA),
        catch peer:stop(PB),
        say("BEAM nodes stopped; etsd's log: ~s", [Log])
    end,
    ok.

beam(Name, Args) ->
    {ok, P, N} = peer:start(#{name => Name, host => "127.0.0.1", longnames => true,
                              connection => standard_io, args => Args}),
    {ok, _} = erpc:call(N, seed_app, start, [[]]),
    {P, N}.

table(N) -> lists:sort(erpc:call(N, ets, tab2list, [users])).

await(F) -> await(F, 100).
await(_, 0) -> error(timeout);
await(F, K) ->
    case catch F() of
        true -> ok;
        _ -> receive after 100 -> await(F, K - 1) end
    end.
