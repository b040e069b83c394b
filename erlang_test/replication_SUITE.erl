%% replication_SUITE: etsd joins a cluster of BEAM nodes running the seed
%% app (seed_app over the Phoenix.PubSub PG2 stand-in) and replicates with
%% it both ways, with no change on the BEAM side.
-module(replication_SUITE).
-include_lib("common_test/include/ct.hrl").
-export([suite/0, all/0, groups/0, init_per_testcase/2, end_per_testcase/2]).
-export([existing_data_reaches_etsd_on_join/1,
         user_saved_on_beam_reaches_etsd_within_100_ms/1,
         user_inserted_through_etsd_reaches_every_beam_node/1,
         later_beam_node_gets_data_only_etsd_holds/1,
         restarted_beam_cluster_gets_its_data_back_from_etsd/1,
         killed_etsd_restarts_from_data_dir_and_converges/1,
         durable_sync_and_new_stream_survive_kill9/1,
         replicates_both_ways_with_pool_size_4/1,
         restarted_remote_scope_sees_etsd_as_member_again/1,
         restarted_remote_scope_with_pool_size_4_replicates_again/1,
         beam_scope_lists_etsd_listeners_in_get_members/1,
         member_joining_and_leaving_after_sync_is_tracked_by_etsd/1,
         one_million_users_reach_etsd_with_ticks_flowing/1,
         stopped_etsd_leaves_every_group/1,
         malformed_messages_are_ignored/1,
         etsd_sync_pulls_and_pushes_at_once/1,
         pull_forms_are_the_parse_of_their_source/1,
         writes_during_a_chunked_pull_all_arrive/1,
         node_refusing_erl_eval_is_read_with_tab2list/1,
         lying_pull_answers_are_survived/1]).

-define(GROUP, 'Elixir.MyApp.PubSub.Adapter').
-define(SCOPE, 'Elixir.Phoenix.PubSub').
-define(DELAY, 300).

suite() -> [{timetrap, {seconds, 60}}].

all() ->
    [existing_data_reaches_etsd_on_join,
     user_saved_on_beam_reaches_etsd_within_100_ms,
     user_inserted_through_etsd_reaches_every_beam_node,
     replicates_both_ways_with_pool_size_4,
     later_beam_node_gets_data_only_etsd_holds,
     restarted_beam_cluster_gets_its_data_back_from_etsd,
     killed_etsd_restarts_from_data_dir_and_converges,
     durable_sync_and_new_stream_survive_kill9,
     restarted_remote_scope_sees_etsd_as_member_again,
     restarted_remote_scope_with_pool_size_4_replicates_again,
     beam_scope_lists_etsd_listeners_in_get_members,
     member_joining_and_leaving_after_sync_is_tracked_by_etsd,
     stopped_etsd_leaves_every_group,
     malformed_messages_are_ignored,
     etsd_sync_pulls_and_pushes_at_once,
     pull_forms_are_the_parse_of_their_source,
     writes_during_a_chunked_pull_all_arrive,
     node_refusing_erl_eval_is_read_with_tab2list,
     lying_pull_answers_are_survived,
     one_million_users_reach_etsd_with_ticks_flowing].

groups() -> [].

init_per_testcase(_, Config) -> Config.

end_per_testcase(_, Config) ->
    [catch etsd_test_lib:stop_etsd(E) || E <- get_list(etsds)],
    [seed_test_lib:stop_node(N) || N <- get_list(peers)],
    erase(),
    Config.

%% ---- Helpers ------------------------------------------------------------

get_list(K) -> case get(K) of undefined -> []; L -> L end.
push(K, V) -> put(K, [V | get_list(K)]).

seed_node(Prefix, Opts) ->
    seed_node_named(seed_test_lib:unique(Prefix), Opts).

seed_node_named(Name, Opts) ->
    N = seed_test_lib:start_seed_node(Name, [{sync_delay_ms, ?DELAY} | Opts]),
    push(peers, N),
    element(2, N).

%% Two connected BEAM nodes with pool_size Pool.
cluster(Pool) ->
    A = seed_node("repa", [{pool_size, Pool}]),
    B = seed_node("repb", [{pool_size, Pool}]),
    seed_test_lib:connect(A, B),
    {A, B}.

etsd(Config, Join, Extra) ->
    Args = ["--join", atom_to_list(Join), "--sync-delay-ms", integer_to_list(?DELAY)
            | Extra],
    E = etsd_test_lib:start_etsd(#{config => Config, name => "etsd_rep_" ++ os:getpid(), args => Args}),
    push(etsds, E),
    E.

enode(#{node := N}) -> N.

etsd_users(E) -> lists:sort(erpc:call(enode(E), ets, tab2list, [users])).

etsd_size(E) -> erpc:call(enode(E), ets, info, [users, size]).

%% etsd is a member of every listener group in Node's scope.
await_member(E, Node, Pool) ->
    EN = enode(E),
    Groups = phoenix_pubsub_pg2:groups(?GROUP, Pool),
    etsd_test_lib:await(fun() ->
        lists:all(fun(G) ->
            lists:any(fun(P) -> node(P) =:= EN end, seed_test_lib:members(Node, G))
        end, Groups)
    end, 10000, {etsd_member, Node}).

users(Prefix, N) ->
    [{iolist_to_binary([Prefix, integer_to_list(I), "@example.com"]),
      <<"token-", (integer_to_binary(I))/binary>>, I} || I <- lists:seq(1, N)].

save_all(Node, Users) ->
    ok = erpc:call(Node, lists, foreach, [fun seed_repo:save/1, Users]).

%% The BEAM processes etsd talks to must survive every test.
pids(Nodes) -> [{N, seed_test_lib:scope_and_syncer(N)} || N <- Nodes].

check_pids(Before) ->
    Before = pids([N || {N, _} <- Before]),
    [true = is_pid(S) andalso is_pid(Y) || {_, {S, Y}} <- Before],
    ok.

%% ---- Tests --------------------------------------------------------------

existing_data_reaches_etsd_on_join(Config) ->
    {A, B} = cluster(1),
    Before = pids([A, B]),
    Ua = users("a", 200),
    Ub = users("b", 200),
    save_all(A, Ua),
    save_all(B, Ub),
    %% etsd is told of A only; it finds B through A's nodes().
    E = etsd(Config, A, []),
    Want = lists:sort(Ua ++ Ub),
    etsd_test_lib:await(fun() -> etsd_users(E) =:= Want end, 10000, union_on_etsd),
    await_member(E, A, 1),
    await_member(E, B, 1),
    check_pids(Before).

user_saved_on_beam_reaches_etsd_within_100_ms(Config) ->
    {A, B} = cluster(1),
    Before = pids([A, B]),
    E = etsd(Config, A, []),
    await_member(E, A, 1),
    await_member(E, B, 1),
    Lat = [begin
               U = {<<"fast", (integer_to_binary(I))/binary, "@example.com">>, I},
               Node = case I rem 2 of 0 -> A; 1 -> B end,
               T0 = erlang:monotonic_time(microsecond),
               seed_test_lib:save_and_emit(Node, U),
               etsd_test_lib:await(fun() ->
                   erpc:call(enode(E), ets, lookup, [users, element(1, U)]) =:= [U]
               end, 5000, {new_on_etsd, U}),
               erlang:monotonic_time(microsecond) - T0
           end || I <- lists:seq(1, 9)],
    Median = lists:nth(5, lists:sort(Lat)),
    ct:pal("save_and_emit -> visible on etsd (incl. rpc polling): ~p us; median ~p us",
           [Lat, Median]),
    true = Median < 100000,
    check_pids(Before).

user_inserted_through_etsd_reaches_every_beam_node(Config) ->
    {A, B} = cluster(1),
    Before = pids([A, B]),
    E = etsd(Config, A, []),
    await_member(E, A, 1),
    await_member(E, B, 1),
    U = {<<"ann@example.com">>, <<"from-etsd">>},
    true = erpc:call(enode(E), etsd, insert, [users, U]),
    etsd_test_lib:await(fun() -> seed_test_lib:users(A) =:= [U] andalso
                                 seed_test_lib:users(B) =:= [U] end, 5000),
    check_pids(Before).

replicates_both_ways_with_pool_size_4(Config) ->
    {A, B} = cluster(4),
    Before = pids([A, B]),
    E = etsd(Config, A, ["--pool-size", "4"]),
    await_member(E, A, 4),
    await_member(E, B, 4),
    Ua = {<<"a@example.com">>, 1},
    Ub = {<<"b@example.com">>, 2},
    Ue = {<<"e@example.com">>, 3},
    seed_test_lib:save_and_emit(A, Ua),
    seed_test_lib:save_and_emit(B, Ub),
    true = erpc:call(enode(E), etsd, insert, [users, Ue]),
    Want = lists:sort([Ua, Ub, Ue]),
    etsd_test_lib:await(fun() -> etsd_users(E) =:= Want andalso
                                 seed_test_lib:users(A) =:= Want andalso
                                 seed_test_lib:users(B) =:= Want end, 5000),
    check_pids(Before).

later_beam_node_gets_data_only_etsd_holds(Config) ->
    {A, B} = cluster(1),
    E = etsd(Config, A, []),
    Users = users("only", 500),
    save_all(A, Users),
    etsd_test_lib:await(fun() -> etsd_size(E) =:= 500 end, 10000, pulled),
    [true = erpc:call(N, ets, delete_all_objects, [users]) || N <- [A, B]],
    %% A user that only etsd holds: ets:insert over rpc stores without
    %% broadcasting (etsd:insert/2 would broadcast).
    Marker = {<<"marker@example.com">>, <<"etsd-only">>, 0},
    true = erpc:call(enode(E), ets, insert, [users, Marker]),
    Before = pids([A, B]),
    C = seed_node("repc", []),
    seed_test_lib:connect(C, A),
    %% etsd finds C through nodes() and plays NodeListener for it.
    Want = lists:sort([Marker | Users]),
    etsd_test_lib:await(fun() -> seed_test_lib:users(C) =:= Want end,
                        20000, data_on_c),
    check_pids(Before).

restarted_beam_cluster_gets_its_data_back_from_etsd(Config) ->
    NameA = seed_test_lib:unique("reprsa"),
    NameB = seed_test_lib:unique("reprsb"),
    A = seed_node_named(NameA, []),
    B = seed_node_named(NameB, []),
    seed_test_lib:connect(A, B),
    E = etsd(Config, A, []),
    await_member(E, B, 1),
    Users = users("keep", 300),
    [seed_test_lib:save_and_emit(A, U) || U <- Users],
    etsd_test_lib:await(fun() -> etsd_size(E) =:= 300 end, 10000, on_etsd),
    %% Redeploy: every BEAM node stops, new ones come up under the same names.
    [seed_test_lib:stop_node(N) || N <- get_list(peers)],
    put(peers, []),
    A2 = seed_node_named(NameA, []),
    B2 = seed_node_named(NameB, []),
    seed_test_lib:connect(A2, B2),
    Want = lists:sort(Users),
    etsd_test_lib:await(fun() -> seed_test_lib:users(A2) =:= Want andalso
                                 seed_test_lib:users(B2) =:= Want end, 20000, back),
    check_pids(pids([A2, B2])).

killed_etsd_restarts_from_data_dir_and_converges(Config) ->
    {A, B} = cluster(1),
    Dir = filename:join(?config(priv_dir, Config),
                        seed_test_lib:unique("etsd_data")),
    E = etsd(Config, A, ["--data-dir", Dir]),
    await_member(E, A, 1),
    D1 = users("d1-", 100),
    [seed_test_lib:save_and_emit(A, U) || U <- D1],
    etsd_test_lib:await(fun() -> etsd_size(E) =:= 100 end, 10000, d1),
    ok = etsd_test_lib:kill_etsd(E, "KILL"),
    %% While etsd is down the BEAM side loses D1 and gains D2.
    [true = erpc:call(N, ets, delete_all_objects, [users]) || N <- [A, B]],
    D2 = users("d2-", 100),
    [seed_test_lib:save_and_emit(B, U) || U <- D2],
    Before = pids([A, B]),
    E2 = etsd(Config, A, ["--data-dir", Dir]),
    Want = lists:sort(D1 ++ D2),
    etsd_test_lib:await(fun() -> etsd_users(E2) =:= Want end, 10000, etsd_union),
    etsd_test_lib:await(fun() -> seed_test_lib:users(A) =:= Want andalso
                                 seed_test_lib:users(B) =:= Want end, 10000, beam_union),
    check_pids(Before).

%% With --data-dir and the default --fsync always, a 50k-user sync and a
%% stream of {new, U} go to the log in group commits (one fsync per batch,
%% not per user: at one fsync each this took over a minute). Everything
%% etsd holds when it is killed comes back from its directory alone.
durable_sync_and_new_stream_survive_kill9(Config) ->
    N = 50000,
    S = 5000,
    A = seed_node("repdur", []),
    true = erpc:call(A, erlang, apply,
                     [fun() -> ets:insert(users, users("s-", N)) end, []], 30000),
    Dir = filename:join(?config(priv_dir, Config),
                        seed_test_lib:unique("etsd_batch")),
    T0 = erlang:monotonic_time(millisecond),
    E = etsd(Config, A, ["--data-dir", Dir]),
    etsd_test_lib:await(fun() -> etsd_size(E) =:= N end, 15000, synced),
    T1 = erlang:monotonic_time(millisecond),
    await_member(E, A, 1),
    Stream = users("n-", S),
    T2 = erlang:monotonic_time(millisecond),
    ok = erpc:call(A, lists, foreach, [fun seed_repo:save_and_emit/1, Stream], 30000),
    etsd_test_lib:await(fun() -> etsd_size(E) =:= N + S end, 15000, streamed),
    T3 = erlang:monotonic_time(millisecond),
    ct:pal("fsync always: ~p users synced in ~p ms (start included); "
           "~p {new, U} in ~p ms", [N, T1 - T0, S, T3 - T2]),
    ok = etsd_test_lib:kill_etsd(E, "KILL"),
    %% The cluster forgets everything: only etsd's directory has it now.
    true = erpc:call(A, ets, delete_all_objects, [users]),
    E2 = etsd(Config, A, ["--data-dir", Dir]),
    Want = lists:sort(users("s-", N) ++ Stream),
    etsd_test_lib:await(fun() -> etsd_size(E2) =:= N + S end, 10000, recovered),
    Want = etsd_users(E2).

restarted_remote_scope_sees_etsd_as_member_again(Config) ->
    {A, B} = cluster(1),
    E = etsd(Config, A, []),
    await_member(E, A, 1),
    await_member(E, B, 1),
    Before = pids([B]),
    {Scope, Syncer} = seed_test_lib:scope_and_syncer(A),
    true = erpc:call(A, erlang, exit, [Scope, kill]),
    etsd_test_lib:await(fun() ->
        New = erpc:call(A, erlang, whereis, [?SCOPE]),
        is_pid(New) andalso New =/= Scope
    end, 5000, scope_restarted),
    await_member(E, A, 1),
    {_, Syncer} = seed_test_lib:scope_and_syncer(A),
    check_pids(Before).

%% The scope is killed on a node with four listener groups: its new scope
%% must list etsd in every group again, and both directions replicate.
restarted_remote_scope_with_pool_size_4_replicates_again(Config) ->
    {A, B} = cluster(4),
    E = etsd(Config, A, ["--pool-size", "4"]),
    await_member(E, A, 4),
    await_member(E, B, 4),
    {Scope, _} = seed_test_lib:scope_and_syncer(A),
    true = erpc:call(A, erlang, exit, [Scope, kill]),
    etsd_test_lib:await(fun() ->
        New = erpc:call(A, erlang, whereis, [?SCOPE]),
        is_pid(New) andalso New =/= Scope
    end, 5000, scope_restarted),
    await_member(E, A, 4),
    Before = pids([A, B]),
    Ua = {<<"after-restart-a@example.com">>, 1},
    seed_test_lib:save_and_emit(A, Ua),
    etsd_test_lib:await(fun() ->
        erpc:call(enode(E), ets, lookup, [users, element(1, Ua)]) =:= [Ua]
    end, 5000, from_restarted_node),
    Ue = {<<"after-restart-e@example.com">>, 2},
    true = erpc:call(enode(E), etsd, insert, [users, Ue]),
    etsd_test_lib:await(fun() ->
        lists:member(Ue, seed_test_lib:users(B))
    end, 5000, to_other_node),
    check_pids(Before).

%% pg:get_members/2 on a BEAM node lists one etsd pid per listener group
%% (whatever pg protocol the node's release speaks), and each listed pid is
%% etsd's live listener: a PubSub message sent to it lands in etsd's table.
beam_scope_lists_etsd_listeners_in_get_members(Config) ->
    A = seed_node("repget", [{pool_size, 4}]),
    Before = pids([A]),
    E = etsd(Config, A, ["--pool-size", "4"]),
    EN = enode(E),
    await_member(E, A, 4),
    Release = erpc:call(A, erlang, system_info, [otp_release]),
    Groups = phoenix_pubsub_pg2:groups(?GROUP, 4),
    Listed = [{G, [P || P <- seed_test_lib:members(A, G), node(P) =:= EN]} || G <- Groups],
    ct:pal("OTP ~s scope lists etsd as ~p", [Release, Listed]),
    Pids = [P || {_, [P]} <- Listed],
    4 = length(lists:usort(Pids)),
    [begin
         U = {iolist_to_binary(["via-", atom_to_list(G), "@example.com"]), 1},
         P ! {forward_to_local, <<"new">>, {new, U}, 'Elixir.Phoenix.PubSub'},
         etsd_test_lib:await(fun() ->
             erpc:call(EN, ets, lookup, [users, element(1, U)]) =:= [U]
         end, 5000, {listener, G})
     end || {G, [P]} <- Listed],
    check_pids(Before).

%% A process that joins the listener group on a BEAM node after etsd has
%% its membership gets etsd's broadcasts (join, or update on pg version 1),
%% and stops getting them once it leaves.
member_joining_and_leaving_after_sync_is_tracked_by_etsd(Config) ->
    A = seed_node("repjoin", []),
    Before = pids([A]),
    E = etsd(Config, A, []),
    EN = enode(E),
    await_member(E, A, 1),
    Self = self(),
    Probe = erpc:call(A, erlang, spawn, [fun() -> probe(Self) end]),
    ok = erpc:call(A, pg, join, [?SCOPE, ?GROUP, Probe]),
    U1 = {<<"probe1@example.com">>, 1},
    etsd_test_lib:await(fun() ->
        true = erpc:call(EN, etsd, insert, [users, U1]),
        receive {probe, {new, U1}} -> true after 200 -> false end
    end, 10000, probe_gets_broadcast),
    ok = erpc:call(A, pg, leave, [?SCOPE, ?GROUP, Probe]),
    %% etsd has the leave once a broadcast reaches the Syncer but not the
    %% probe; messages to both go out on one connection, in one turn.
    etsd_test_lib:await(fun() ->
        flush_probe(),
        U = {<<"probe2@example.com">>, erlang:unique_integer()},
        true = erpc:call(EN, etsd, insert, [users, U]),
        etsd_test_lib:await(fun() -> lists:member(U, seed_test_lib:users(A)) end,
                            5000, syncer_gets_broadcast),
        receive {probe, {new, U}} -> false after 300 -> true end
    end, 10000, probe_left),
    Probe ! stop,
    check_pids(Before).

probe(To) ->
    receive
        {forward_to_local, <<"new">>, Msg, _} -> To ! {probe, Msg}, probe(To);
        stop -> ok
    end.

flush_probe() ->
    receive {probe, _} -> flush_probe() after 0 -> ok end.

one_million_users_reach_etsd_with_ticks_flowing(Config) ->
    N = 1000000,
    A = seed_node("rep1m", []),
    true = erpc:call(A, erlang, apply,
                     [fun() -> ets:insert(users, [{I, <<"user">>, I} || I <- lists:seq(1, N)]) end,
                      []], 30000),
    Before = pids([A]),
    T0 = erlang:monotonic_time(millisecond),
    E = etsd(Config, A, []),
    EN = enode(E),
    %% While etsd takes the table, it keeps answering: net_kernel is_auth
    %% goes through the same loop as ticks.
    Pings = ping_until(EN, fun() -> etsd_size(E) =:= N end, []),
    Ms = erlang:monotonic_time(millisecond) - T0,
    MaxPing = lists:max(Pings),
    ct:pal("1M users on etsd after ~p ms (start included); ~p pings, slowest ~p ms",
           [Ms, length(Pings), MaxPing]),
    true = lists:member(EN, nodes(hidden)),
    check_pids(Before).

ping_until(Node, Done, Acc) ->
    T0 = erlang:monotonic_time(millisecond),
    pong = net_adm:ping(Node),
    Acc1 = [erlang:monotonic_time(millisecond) - T0 | Acc],
    case catch Done() of
        true -> Acc1;
        _ -> receive after 50 -> ping_until(Node, Done, Acc1) end
    end.

stopped_etsd_leaves_every_group(Config) ->
    {A, B} = cluster(2),
    Before = pids([A, B]),
    E = etsd(Config, A, ["--pool-size", "2"]),
    await_member(E, A, 2),
    await_member(E, B, 2),
    0 = etsd_test_lib:stop_etsd(E),
    EN = enode(E),
    Groups = phoenix_pubsub_pg2:groups(?GROUP, 2),
    etsd_test_lib:await(fun() ->
        [] =:= [P || N <- [A, B], G <- Groups, P <- seed_test_lib:members(N, G),
                     node(P) =:= EN]
    end, 5000, left),
    %% The BEAM side still replicates among itself.
    U = {<<"after@example.com">>, 1},
    seed_test_lib:save_and_emit(A, U),
    etsd_test_lib:await(fun() -> seed_test_lib:users(B) =:= [U] end, 5000),
    check_pids(Before).

%% Shapes a buggy or hostile peer might send to etsd's scope and PubSub
%% mailboxes: each is dropped, and etsd keeps replicating.
malformed_messages_are_ignored(Config) ->
    {A, B} = cluster(1),
    Before = pids([A, B]),
    E = etsd(Config, A, []),
    EN = enode(E),
    await_member(E, A, 1),
    Fwd = fun(Topic, Msg) -> {forward_to_local, Topic, Msg, 'Elixir.Phoenix.PubSub'} end,
    Garbage =
        [{?SCOPE, {discover, not_a_pid}}, {?SCOPE, {'$gen_cast', {sync, self(), bad}}},
         {?SCOPE, {'$gen_cast', {sync, self(), [{g, [not_a_pid]}]}}},
         {?SCOPE, {join, self(), 'g', [1, 2]}}, {?SCOPE, {leave, self(), self(), bad}},
         {?SCOPE, garbage}, {?SCOPE, {'DOWN', make_ref(), process, self(), x}},
         %% pg version 1 shapes (OTP 29's data_publisher), malformed
         {?SCOPE, {discover, self(), not_a_version}}, {?SCOPE, {discover, self(), -1}},
         {?SCOPE, {'$gen_cast', {local_data, self(), 1, not_a_map}}},
         {?SCOPE, {local_data, self(), 1, #{g => [not_a_pid]}}},
         {?SCOPE, {update, self(), [{g, [x], []}]}}, {?SCOPE, {update, self(), bad}},
         {?SCOPE, {'$gen_cast', {update, self(), []}}},
         {?GROUP, garbage}, {?GROUP, {forward_to_local, not_a_binary, x, y}},
         {?GROUP, Fwd(<<"new">>, {new, not_a_tuple})},
         {?GROUP, Fwd(<<"new">>, {new, {}})},
         {?GROUP, Fwd(<<"new">>, {new})},
         {?GROUP, Fwd(<<"node_up">>, {sync, not_a_list, node()})},
         {?GROUP, Fwd(<<"node_up">>, {sync, [{ok, 1}, 3, {}, [x] | tail], node()})},
         {?GROUP, Fwd(<<"node_up">>, {sync})},
         {?GROUP, Fwd(<<"other">>, {new, {<<"other@example.com">>}})}],
    [{Name, EN} ! Msg || {Name, Msg} <- Garbage],
    U = {<<"still@example.com">>, 1},
    seed_test_lib:save_and_emit(B, U),
    etsd_test_lib:await(fun() ->
        erpc:call(EN, ets, lookup, [users, element(1, U)]) =:= [U]
    end, 5000, still_replicating),
    %% From the well-formed parts only {ok, 1} was a valid object.
    [{ok, 1}] = erpc:call(EN, ets, lookup, [users, ok]),
    [] = erpc:call(EN, ets, lookup, [users, <<"other@example.com">>]),
    %% A join or update from a process that is no scope etsd knows is
    %% dropped (pg.erl, data_publisher.erl): this process gets no broadcast.
    {?SCOPE, EN} ! {update, self(), [{?GROUP, [self()], []}]},
    {?SCOPE, EN} ! {join, self(), ?GROUP, self()},
    U2 = {<<"stranger@example.com">>, 2},
    etsd_test_lib:await(fun() ->
        true = erpc:call(EN, etsd, insert, [users, U2]),
        lists:member(U2, seed_test_lib:users(B))
    end, 5000, broadcast_after_stranger_update),
    receive {forward_to_local, _, {new, U2}, _} -> ct:fail(stranger_became_member)
    after 300 -> ok
    end,
    check_pids(Before).

%% etsd:sync/0 over rpc: pull from every node and push to every node now,
%% without waiting for a nodeup.
etsd_sync_pulls_and_pushes_at_once(Config) ->
    {A, B} = cluster(1),
    E = etsd(Config, A, []),
    await_member(E, A, 1),
    await_member(E, B, 1),
    Ua = users("synca", 50),
    save_all(A, Ua),
    Ub = users("syncb", 50),
    save_all(B, Ub),
    Before = pids([A, B]),
    ok = erpc:call(enode(E), etsd, sync, []),
    Want = lists:sort(Ua ++ Ub),
    etsd_test_lib:await(fun() -> etsd_users(E) =:= Want end, 5000, pulled),
    etsd_test_lib:await(fun() -> seed_test_lib:users(A) =:= Want andalso
                                 seed_test_lib:users(B) =:= Want end, 5000, pushed),
    check_pids(Before).

%% etsd pulls a table by having the node's rex evaluate a traversal
%% (cnode/pull.h): the forms it sends must be what erl_parse makes of the
%% source it documents.
pull_forms_are_the_parse_of_their_source(_Config) ->
    Out = os:cmd(etsd_test_lib:tool_path("pull_forms")),
    [Source, FormsText] = string:split(Out, "\n%% forms\n"),
    {ok, Toks, _} = erl_scan:string(Source ++ "."),
    {ok, [Parsed]} = erl_parse:parse_exprs(Toks),
    {ok, FTks, _} = erl_scan:string(FormsText ++ "."),
    {ok, Forms} = erl_parse:parse_term(FTks),
    Forms = erl_parse:map_anno(fun(_) -> 1 end, Parsed),
    %% And they do what the source says, here as on any node.
    T = ets:new(pull_forms_test, [set, public]),
    true = ets:insert(T, [{I, I * I} || I <- lists:seq(1, 25)]),
    Ref = make_ref(),
    3 = erl_eval:expr(Forms, [{'Chunk', 10}, {'Pid', self()}, {'Ref', Ref}, {'Tab', T}],
                      none, none, value),
    receive {Ref, Size} -> 25 = Size after 0 -> ct:fail(no_size_first) end,
    Got = fun G(Acc) -> receive {Ref, L} -> G(Acc ++ L) after 0 -> Acc end end([]),
    true = lists:sort(Got) =:= lists:sort(ets:tab2list(T)),
    false = ets:info(T, safe_fixed).

%% A pull in chunks (200,000 users, 20 chunks) while the node keeps saving
%% new users and new values of old ones. Every new user arrives; a key
%% rewritten while its chunk was on the way may keep either value, as with
%% the seed's own syncs (a chunk read before a write can arrive after its
%% {new, User}), never anything else.
writes_during_a_chunked_pull_all_arrive(Config) ->
    A = seed_node("pullw", []),
    Before = pids([A]),
    Old = users("pulled", 200000),
    true = erpc:call(A, ets, insert, [users, Old], 30000),
    Writes = [{iolist_to_binary(["pulled", integer_to_list(I), "@example.com"]),
               <<"rewritten">>, -I} || I <- lists:seq(10, 200000, 10)]
             ++ users("during", 20000),
    Self = self(),
    Writer = spawn_link(fun() ->
        receive go -> ok end,
        ok = erpc:call(A, lists, foreach, [fun seed_repo:save_and_emit/1, Writes], 30000),
        Self ! written
    end),
    E = etsd(Config, A, []),
    Writer ! go,
    receive written -> ok after 30000 -> ct:fail(writer_stuck) end,
    %% Every chunk is in, then every {new, User} (the last writes are the
    %% new users, sent by one process after the rewrites).
    etsd_test_lib:await_log(E, "pull: merged 2[0-9]{5} objects \\([0-9]+ bytes in [0-9]+ chunks\\)", 20000),
    etsd_test_lib:await(fun() -> etsd_size(E) =:= 220000 end, 20000, all_keys),
    Got = etsd_users(E),
    Written = maps:from_list([{K, U} || U = {K, _, _} <- Writes]),
    Initial = maps:from_list([{K, U} || U = {K, _, _} <- Old]),
    [true = U =:= maps:get(K, Written, none) orelse U =:= maps:get(K, Initial) || U = {K, _, _} <- Got],
    [true = lists:member(U, Got) || U <- users("during", 20000)],
    check_pids(Before).

%% A node whose rex will not evaluate code (here a stand-in registered as
%% rex refuses erl_eval and hands every other request to the real rex):
%% etsd reads the table with ets:tab2list/1 instead, and says why.
node_refusing_erl_eval_is_read_with_tab2list(Config) ->
    A = seed_node("refuse", []),
    Before = pids([A]),
    Ua = users("refused", 25000),
    true = erpc:call(A, ets, insert, [users, Ua], 30000),
    ok = erpc:call(A, erlang, apply, [fun refuse_erl_eval/0, []]),
    E = etsd(Config, A, []),
    Want = lists:sort(Ua),
    etsd_test_lib:await(fun() -> etsd_users(E) =:= Want end, 10000, read_anyway),
    etsd_test_lib:await_log(E, "read with ets:tab2list/1: the chunked read was refused", 5000),
    check_pids(Before).

%% A node that answers the chunked read with lies (here a stand-in
%% registered as rex): a size no table has, chunks that are not lists or
%% hold non-objects, a chunk for another read, then a chunk count that does
%% not match. etsd stays up, drops what is not an object, reads the table
%% again with ets:tab2list/1 and says why.
lying_pull_answers_are_survived(Config) ->
    A = seed_node("liar", []),
    Ua = users("liar", 3000),
    true = erpc:call(A, ets, insert, [users, Ua], 30000),
    ok = erpc:call(A, erlang, apply, [fun() -> install_rex_standin(lie) end, []]),
    E = etsd(Config, A, []),
    Want = lists:sort([{<<"forged">>, v, 1} | Ua]),
    etsd_test_lib:await(fun() -> etsd_users(E) =:= Want end, 10000, read_anyway),
    %% Two chunks came: [1 | 2] (1 is no object, and the list is not
    %% proper) and [garbage, Forged].
    etsd_test_lib:await_log(E, "7 chunks announced, 2 arrived: reading users again with "
                               "ets:tab2list/1", 5000),
    etsd_test_lib:await_log(E, "pull: 3 objects not applied", 5000),
    pong = net_adm:ping(enode(E)).

refuse_erl_eval() -> install_rex_standin(refuse).

install_rex_standin(How) ->
    Rex = whereis(rex),
    Self = self(),
    spawn(fun() ->
        true = unregister(rex),
        true = register(rex, self()),
        Self ! {standin, self()},
        rex_standin(Rex, How)
    end),
    receive {standin, _} -> ok end.

rex_standin(Rex, How) ->
    receive
        {'$gen_call', From, {call, erl_eval, _, _, _}} when How =:= refuse ->
            gen_server:reply(From, {badrpc, {'EXIT', {undef, [{erl_eval, expr, 5, []}]}}});
        {'$gen_call', From, {call, erl_eval, expr, [_Forms, Bindings | _], _}} when How =:= lie ->
            {_, Pid} = lists:keyfind('Pid', 1, Bindings),
            {_, Ref} = lists:keyfind('Ref', 1, Bindings),
            Pid ! {Ref, 1 bsl 70},
            Pid ! {Ref, not_a_list},
            Pid ! {Ref, [1 | 2]},
            Pid ! {make_ref(), [{<<"other read">>, x, 0}]},
            Pid ! {Ref, [garbage, {<<"forged">>, v, 1}]},
            Pid ! {Ref},
            gen_server:reply(From, 7);
        Other ->
            Rex ! Other
    end,
    rex_standin(Rex, How).
