%% carrier_test_lib: the replication and rpc cases that ipv6_SUITE and
%% tls_SUITE run over their distribution carrier (-proto_dist inet6_tcp,
%% inet_tls). The Common Test node itself stays on inet_tcp, so it reaches
%% the BEAM peers through peer's standard_io channel only, and etsd through
%% them: every check is made by a BEAM node of the carrier.
-module(carrier_test_lib).
-include_lib("common_test/include/ct.hrl").

-export([seed/2, seed_named/2, start_peer/2, stop_all/0, on/4, connect/2,
         etsd/3, enode/1, call_etsd/5, users_on/1, await_member/2, users/2,
         pull_on_join/1, new_both_ways/1, late_node_gets_etsd_data/1,
         redeploy_is_reseeded/1, rpc_flavours/1]).

-define(GROUP, 'Elixir.MyApp.PubSub.Adapter').
-define(SCOPE, 'Elixir.Phoenix.PubSub').
-define(DELAY, 300).

%% The carrier is {carrier, #{tag, host, beam_args, etsd_args}} in Config.
carrier(Config) -> ?config(carrier, Config).

get_list(K) -> case get(K) of undefined -> []; L -> L end.
push(K, V) -> put(K, [V | get_list(K)]).

%% A BEAM peer on the carrier, named Prefix_N@Host. Returns {Peer, Node}.
start_peer(C, Name) ->
    Args = ["-setcookie", atom_to_list(erlang:get_cookie()), "-pa" | code:get_path()]
        ++ maps:get(beam_args, C),
    {ok, Peer, Node} = peer:start_link(#{name => Name, host => maps:get(host, C),
                                         longnames => true, connection => standard_io,
                                         args => Args}),
    push(peers, {Peer, Node}),
    {Peer, Node}.

%% A peer running the seed app.
seed(Config, Prefix) -> seed_named(Config, seed_test_lib:unique(Prefix)).

seed_named(Config, Name) ->
    N = start_peer(carrier(Config), Name),
    {ok, _} = on(N, seed_app, start, [[{sync_delay_ms, ?DELAY}]]),
    N.

%% Stops every etsd and peer this test case started.
stop_all() ->
    [catch etsd_test_lib:stop_etsd(E) || E <- get_list(etsds)],
    [catch peer:stop(P) || {P, _} <- get_list(peers)],
    put(etsds, []),
    put(peers, []),
    ok.

on({Peer, _}, M, F, A) -> peer:call(Peer, M, F, A, 30000).

connect(X, {_, Other}) -> true = on(X, net_kernel, connect_node, [Other]).

%% etsd on the carrier, told of Join only.
etsd(Config, {_, Join}, Extra) ->
    C = carrier(Config),
    Args = ["--join", atom_to_list(Join), "--sync-delay-ms", integer_to_list(?DELAY)]
        ++ maps:get(etsd_args, C) ++ Extra,
    E = etsd_test_lib:start_etsd(#{config => Config, name => "etsd_" ++ maps:get(tag, C),
                                   host => maps:get(host, C), args => Args,
                                   wait => epmd}),
    push(etsds, E),
    E.

enode(#{node := N}) -> N.

%% M:F(A) on etsd, called over erpc by the BEAM node Via.
call_etsd(Via, E, M, F, A) -> on(Via, erpc, call, [enode(E), M, F, A, 10000]).

users_on(X) -> lists:sort(on(X, seed_repo, all, [])).

await_member(E, X) ->
    EN = enode(E),
    etsd_test_lib:await(fun() ->
        lists:any(fun(P) -> node(P) =:= EN end, on(X, pg, get_members, [?SCOPE, ?GROUP]))
    end, 15000, {etsd_member, element(2, X)}).

users(Prefix, N) ->
    [{iolist_to_binary([Prefix, integer_to_list(I), "@example.com"]),
      <<"token-", (integer_to_binary(I))/binary>>, I} || I <- lists:seq(1, N)].

save_all(X, Users) -> ok = on(X, lists, foreach, [fun seed_repo:save/1, Users]).

%% ---- The cases ------------------------------------------------------------

%% Pull on join: etsd is told of A only, finds B through A's nodes(), and
%% reads both tables.
pull_on_join(Config) ->
    A = seed(Config, "ca"),
    B = seed(Config, "cb"),
    connect(A, B),
    Ua = users("a", 200),
    Ub = users("b", 200),
    save_all(A, Ua),
    save_all(B, Ub),
    E = etsd(Config, A, []),
    Want = lists:sort(Ua ++ Ub),
    etsd_test_lib:await(fun() -> lists:sort(call_etsd(A, E, ets, tab2list, [users])) =:= Want
                        end, 15000, union_on_etsd),
    await_member(E, A),
    await_member(E, B),
    ok.

%% {new, User} from a BEAM node reaches etsd, and etsd:insert/2 reaches
%% every BEAM node.
new_both_ways(Config) ->
    A = seed(Config, "cn"),
    B = seed(Config, "co"),
    connect(A, B),
    E = etsd(Config, A, []),
    await_member(E, A),
    await_member(E, B),
    U1 = {<<"from-beam@example.com">>, 1},
    ok = on(A, seed_repo, save_and_emit, [U1]),
    etsd_test_lib:await(fun() -> call_etsd(B, E, ets, lookup, [users, element(1, U1)]) =:= [U1]
                        end, 5000, new_on_etsd),
    U2 = {<<"from-etsd@example.com">>, 2},
    true = call_etsd(A, E, etsd, insert, [users, U2]),
    Want = lists:sort([U1, U2]),
    etsd_test_lib:await(fun() -> users_on(A) =:= Want andalso users_on(B) =:= Want end,
                        5000, new_on_beam),
    ok.

%% A node that joins later gets what only etsd holds.
late_node_gets_etsd_data(Config) ->
    A = seed(Config, "cl"),
    E = etsd(Config, A, []),
    Users = users("only", 300),
    save_all(A, Users),
    etsd_test_lib:await(fun() -> call_etsd(A, E, ets, info, [users, size]) =:= 300 end,
                        15000, pulled),
    true = on(A, ets, delete_all_objects, [users]),
    Marker = {<<"marker@example.com">>, <<"etsd-only">>, 0},
    true = call_etsd(A, E, ets, insert, [users, Marker]),
    C = seed(Config, "cm"),
    connect(C, A),
    Want = lists:sort([Marker | Users]),
    etsd_test_lib:await(fun() -> users_on(C) =:= Want end, 20000, data_on_late_node),
    ok.

%% Redeploy: every BEAM node stops and new, empty ones come up under the
%% same names; etsd seeds them again.
redeploy_is_reseeded(Config) ->
    NameA = seed_test_lib:unique("cra"),
    NameB = seed_test_lib:unique("crb"),
    A = seed_named(Config, NameA),
    B = seed_named(Config, NameB),
    connect(A, B),
    E = etsd(Config, A, []),
    await_member(E, B),
    Users = users("keep", 200),
    ok = on(A, lists, foreach, [fun seed_repo:save_and_emit/1, Users]),
    etsd_test_lib:await(fun() -> call_etsd(B, E, ets, info, [users, size]) =:= 200 end,
                        15000, on_etsd),
    [peer:stop(P) || {P, _} <- [A, B]],
    put(peers, []),
    A2 = seed_named(Config, NameA),
    B2 = seed_named(Config, NameB),
    connect(A2, B2),
    Want = lists:sort(Users),
    etsd_test_lib:await(fun() -> users_on(A2) =:= Want andalso users_on(B2) =:= Want end,
                        20000, reseeded),
    ok.

%% rpc:call, erpc:call, rpc:multicall and erpc:multicall from a BEAM node
%% of the carrier, with the answers a BEAM node gives.
rpc_flavours(Config) ->
    A = seed(Config, "cr"),
    B = seed(Config, "cs"),
    connect(A, B),
    E = etsd(Config, A, []),
    EN = enode(E),
    {_, BN} = B,
    U = {<<"rpc@example.com">>, 7},
    true = on(A, rpc, call, [EN, etsd, insert, [users, U]]),
    [U] = on(A, rpc, call, [EN, ets, lookup, [users, element(1, U)]]),
    [U] = on(A, erpc, call, [EN, ets, lookup, [users, element(1, U)]]),
    {[EN, BN], []} = on(A, rpc, multicall, [[EN, BN], erlang, node, []]),
    [{ok, EN}, {ok, BN}] = on(A, erpc, multicall, [[EN, BN], erlang, node, []]),
    %% An unknown function: what the BEAM node B answers, etsd answers.
    Undef = on(A, rpc, call, [BN, etsd_no_such_module, f, [1]]),
    {badrpc, {'EXIT', {undef, _}}} = Undef,
    Undef = on(A, rpc, call, [EN, etsd_no_such_module, f, [1]]),
    ok.
