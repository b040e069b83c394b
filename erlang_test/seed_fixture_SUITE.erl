%% seed_fixture_SUITE: the seed app port and the Phoenix.PubSub stand-in
%% replicate among BEAM nodes alone, as the real seed app does. Every etsd
%% suite relies on these fixtures behaving like the real thing.
-module(seed_fixture_SUITE).
-include_lib("common_test/include/ct.hrl").
-export([suite/0, all/0, end_per_testcase/2,
         groups_are_named_and_joined_as_phoenix_does/1,
         save_and_emit_reaches_the_other_node/1,
         save_and_emit_reaches_the_other_node_with_pool_4/1,
         node_up_syncs_existing_data_to_a_new_node/1,
         preload_is_broadcast_on_node_up/1,
         forward_to_local_reaches_local_subscribers/1]).

suite() -> [{timetrap, {seconds, 60}}].

all() ->
    [groups_are_named_and_joined_as_phoenix_does,
     save_and_emit_reaches_the_other_node,
     save_and_emit_reaches_the_other_node_with_pool_4,
     node_up_syncs_existing_data_to_a_new_node,
     preload_is_broadcast_on_node_up,
     forward_to_local_reaches_local_subscribers].

end_per_testcase(_, Config) ->
    [seed_test_lib:stop_node(N) || N <- proplists:get_value(nodes, get_nodes(), [])],
    erase(nodes),
    Config.

get_nodes() -> case get(nodes) of undefined -> []; L -> [{nodes, L}] end.

start(Prefix, Opts) ->
    N = seed_test_lib:start_seed_node(seed_test_lib:unique(Prefix), Opts),
    put(nodes, [N | case get(nodes) of undefined -> []; L -> L end]),
    N.

pair(Opts) ->
    {_, A} = start("fixa", Opts),
    {_, B} = start("fixb", Opts),
    seed_test_lib:connect(A, B),
    {A, B}.

groups_are_named_and_joined_as_phoenix_does(_Config) ->
    {A, B} = pair([{pool_size, 3}]),
    Groups = ['Elixir.MyApp.PubSub.Adapter', 'Elixir.MyApp.PubSub.Adapter_2',
              'Elixir.MyApp.PubSub.Adapter_3'],
    Groups = phoenix_pubsub_pg2:groups('Elixir.MyApp.PubSub.Adapter', 3),
    [begin
         WA = erpc:call(A, erlang, whereis, [G]),
         WB = erpc:call(B, erlang, whereis, [G]),
         true = is_pid(WA) andalso is_pid(WB),
         etsd_test_lib:await(fun() ->
             seed_test_lib:members(A, G) =:= lists:sort([WA, WB]) andalso
             seed_test_lib:members(B, G) =:= lists:sort([WA, WB]) end, 5000)
     end || G <- Groups],
    ok.

save_and_emit_reaches_the_other_node(_Config) ->
    emit_both_ways([{pool_size, 1}]).

save_and_emit_reaches_the_other_node_with_pool_4(_Config) ->
    emit_both_ways([{pool_size, 4}]).

emit_both_ways(Opts) ->
    {A, B} = pair(Opts),
    await_groups(A, B, proplists:get_value(pool_size, Opts)),
    Ua = {<<"ann@example.com">>, <<"tok-a">>},
    Ub = {<<"bob@example.com">>, <<"tok-b">>},
    seed_test_lib:save_and_emit(A, Ua),
    seed_test_lib:save_and_emit(B, Ub),
    Want = lists:sort([Ua, Ub]),
    etsd_test_lib:await(fun() -> seed_test_lib:users(A) =:= Want andalso
                                 seed_test_lib:users(B) =:= Want end, 5000).

%% pg learns remote members asynchronously; wait until each node sees two
%% members in every group.
await_groups(A, B, Pool) ->
    Groups = phoenix_pubsub_pg2:groups('Elixir.MyApp.PubSub.Adapter', Pool),
    etsd_test_lib:await(fun() ->
        lists:all(fun(G) -> length(seed_test_lib:members(A, G)) =:= 2 andalso
                            length(seed_test_lib:members(B, G)) =:= 2 end, Groups)
    end, 5000).

node_up_syncs_existing_data_to_a_new_node(_Config) ->
    {_, A} = start("fixa", [{sync_delay_ms, 200}]),
    Users = [{integer_to_binary(I), I} || I <- lists:seq(1, 100)],
    [seed_test_lib:save(A, U) || U <- Users],
    {_, B} = start("fixb", [{sync_delay_ms, 200}]),
    [] = seed_test_lib:users(B),
    seed_test_lib:connect(B, A),
    etsd_test_lib:await(fun() -> seed_test_lib:users(B) =:= lists:sort(Users) end, 5000).

preload_is_broadcast_on_node_up(_Config) ->
    {_, A} = start("fixa", []),
    {_, B} = start("fixb", []),
    seed_test_lib:connect(A, B),
    await_groups(A, B, 1),
    Pre = [{<<"pre@example.com">>, 1}],
    %% A Syncer restarted with a preload broadcasts it.
    ok = erpc:call(A, supervisor, terminate_child, [seed_app, seed_syncer]),
    Cfg = erpc:call(A, persistent_term, get, [seed_app]),
    ok = erpc:call(A, persistent_term, put, [seed_app, Cfg#{preload => Pre}]),
    {ok, _} = erpc:call(A, supervisor, restart_child, [seed_app, seed_syncer]),
    etsd_test_lib:await(fun() -> seed_test_lib:users(B) =:= Pre end, 5000).

%% A raw {forward_to_local, ...} sent to a group name, as another node's
%% adapter (or etsd) sends it, reaches the node's Syncer.
forward_to_local_reaches_local_subscribers(_Config) ->
    {_, A} = start("fixa", [{pool_size, 2}]),
    U = {<<"raw@example.com">>, raw},
    {'Elixir.MyApp.PubSub.Adapter_2', A} !
        {forward_to_local, <<"new">>, {new, U}, 'Elixir.Phoenix.PubSub'},
    S = [{<<"s1">>, 1}, {<<"s2">>, 2}],
    {'Elixir.MyApp.PubSub.Adapter', A} !
        {forward_to_local, <<"node_up">>, {sync, S, node()}, 'Elixir.Phoenix.PubSub'},
    etsd_test_lib:await(fun() -> seed_test_lib:users(A) =:= lists:sort([U | S]) end, 5000).
