%% mixed_release_SUITE: etsd in one cluster with OTP 27 and OTP 29 BEAM
%% nodes, as in a rolling upgrade. The CT node runs OTP 27 (make ct-mixed);
%% OTP 29 peers are started in their own root through test/otp-root.sh. Every
%% expected value comes from the BEAM nodes of each release themselves.
-module(mixed_release_SUITE).
-include_lib("common_test/include/ct.hrl").
-export([suite/0, all/0, init_per_suite/1, end_per_suite/1,
         init_per_testcase/2, end_per_testcase/2]).
-export([cluster_runs_two_releases/1,
         existing_data_on_both_releases_reaches_etsd_on_join/1,
         user_saved_on_each_release_reaches_etsd_and_the_other/1,
         user_inserted_through_etsd_from_each_release_reaches_both/1,
         rpc_from_each_release_answers_as_that_release_does/1,
         rolling_upgrade_gets_its_data_back_from_etsd/1]).

-export([catch_erpc/4]).

-define(GROUP, 'Elixir.MyApp.PubSub.Adapter').
-define(DELAY, 300).
-define(OTHER, "29").

suite() -> [{timetrap, {seconds, 120}}].

all() ->
    [cluster_runs_two_releases,
     existing_data_on_both_releases_reaches_etsd_on_join,
     user_saved_on_each_release_reaches_etsd_and_the_other,
     user_inserted_through_etsd_from_each_release_reaches_both,
     rpc_from_each_release_answers_as_that_release_does,
     rolling_upgrade_gets_its_data_back_from_etsd].

init_per_suite(Config) ->
    case erlang:system_info(otp_release) of
        ?OTHER -> {skip, "the CT node must run another release than the peers it starts in a root"};
        _ -> Config
    end.

end_per_suite(Config) -> Config.

init_per_testcase(_, Config) -> Config.

end_per_testcase(_, Config) ->
    [catch etsd_test_lib:stop_etsd(E) || E <- get_list(etsds)],
    [catch peer:stop(P) || P <- get_list(peers)],
    erase(),
    Config.

%% ---- Helpers ------------------------------------------------------------

get_list(K) -> case get(K) of undefined -> []; L -> L end.
push(K, V) -> put(K, [V | get_list(K)]).

%% A seed node on this node's release (here) or on OTP 29 (in its root).
seed_node(Prefix, Where) -> seed_node_named(seed_test_lib:unique(Prefix), Where).

seed_node_named(Name, here) ->
    {ok, Peer, Node} = etsd_test_lib:start_peer(Name),
    start_seed(Peer, Node);
seed_node_named(Name, other) ->
    Script = filename:join([etsd_test_lib:root(), "test", "otp-root.sh"]),
    %% The suites' own modules only: this release's OTP folders mean nothing
    %% in the other root, and its own code path has its own OTP.
    Mine = [D || D <- code:get_path(), not lists:prefix(code:root_dir(), D)],
    Args = ["-setcookie", atom_to_list(erlang:get_cookie()), "-pa" | Mine],
    {ok, Peer, Node} = peer:start_link(#{name => Name, host => "127.0.0.1",
                                         longnames => true,
                                         connection => standard_io,
                                         exec => {Script, [?OTHER, "erl"]},
                                         args => Args}),
    start_seed(Peer, Node).

start_seed(Peer, Node) ->
    push(peers, Peer),
    {ok, _} = erpc:call(Node, seed_app, start, [[{sync_delay_ms, ?DELAY}]]),
    Node.

release(Node) -> erpc:call(Node, erlang, system_info, [otp_release]).

%% One node on each release, connected to each other.
cluster() ->
    A = seed_node("mix27", here),
    B = seed_node("mix29", other),
    seed_test_lib:connect(A, B),
    {A, B}.

etsd(Config, Join) ->
    Args = ["--join", atom_to_list(Join), "--sync-delay-ms", integer_to_list(?DELAY)],
    E = etsd_test_lib:start_etsd(#{config => Config, name => "etsd_mix", args => Args}),
    push(etsds, E),
    E.

enode(#{node := N}) -> N.

etsd_users(E) -> lists:sort(erpc:call(enode(E), ets, tab2list, [users])).

await_member(E, Node) ->
    EN = enode(E),
    etsd_test_lib:await(fun() ->
        lists:any(fun(P) -> node(P) =:= EN end, seed_test_lib:members(Node, ?GROUP))
    end, 15000, {etsd_member, Node}).

users(Prefix, N) ->
    [{iolist_to_binary([Prefix, integer_to_list(I), "@example.com"]),
      <<"token-", (integer_to_binary(I))/binary>>, I} || I <- lists:seq(1, N)].

save_all(Node, Users) ->
    ok = erpc:call(Node, lists, foreach, [fun seed_repo:save/1, Users]).

%% ---- Tests --------------------------------------------------------------

cluster_runs_two_releases(_Config) ->
    {A, B} = cluster(),
    Here = erlang:system_info(otp_release),
    Here = release(A),
    ?OTHER = release(B),
    %% The two releases' pg scopes see each other's listeners.
    etsd_test_lib:await(fun() ->
        length(seed_test_lib:members(A, ?GROUP)) =:= 2 andalso
        length(seed_test_lib:members(B, ?GROUP)) =:= 2
    end, 10000, pg_across_releases).

existing_data_on_both_releases_reaches_etsd_on_join(Config) ->
    {A, B} = cluster(),
    Ua = users("a27-", 300),
    Ub = users("b29-", 300),
    save_all(A, Ua),
    save_all(B, Ub),
    %% etsd is told of the OTP 27 node only and finds the OTP 29 node itself.
    E = etsd(Config, A),
    Want = lists:sort(Ua ++ Ub),
    etsd_test_lib:await(fun() -> etsd_users(E) =:= Want end, 20000, union_on_etsd),
    await_member(E, A),
    await_member(E, B).

user_saved_on_each_release_reaches_etsd_and_the_other(Config) ->
    {A, B} = cluster(),
    E = etsd(Config, B),
    await_member(E, A),
    await_member(E, B),
    U27 = {<<"from27@example.com">>, 27},
    U29 = {<<"from29@example.com">>, 29},
    seed_test_lib:save_and_emit(A, U27),
    seed_test_lib:save_and_emit(B, U29),
    Want = lists:sort([U27, U29]),
    etsd_test_lib:await(fun() -> etsd_users(E) =:= Want andalso
                                 seed_test_lib:users(A) =:= Want andalso
                                 seed_test_lib:users(B) =:= Want end,
                        10000, new_both_ways).

user_inserted_through_etsd_from_each_release_reaches_both(Config) ->
    {A, B} = cluster(),
    E = etsd(Config, A),
    EN = enode(E),
    await_member(E, A),
    await_member(E, B),
    Ua = {<<"via27@example.com">>, <<"rpc">>},
    Ub = {<<"via29@example.com">>, <<"erpc">>},
    true = erpc:call(A, rpc, call, [EN, etsd, insert, [users, Ua]]),
    true = erpc:call(B, erpc, call, [EN, etsd, insert, [users, Ub]]),
    Want = lists:sort([Ua, Ub]),
    etsd_test_lib:await(fun() -> seed_test_lib:users(A) =:= Want andalso
                                 seed_test_lib:users(B) =:= Want andalso
                                 etsd_users(E) =:= Want end,
                        10000, etsd_insert_on_both).

%% Each release calls etsd and a BEAM node of its own release the same way;
%% the answers must be the same, but for stack frames (README: Known
%% differences), which are compared without their line information.
rpc_from_each_release_answers_as_that_release_does(Config) ->
    {A, B} = cluster(),
    E = etsd(Config, A),
    EN = enode(E),
    await_member(E, A),
    await_member(E, B),
    U = {<<"rpc@example.com">>, 1},
    true = erpc:call(EN, ets, insert, [users, U]),
    [begin
         true = erpc:call(Caller, ets, insert, [users, U]),
         Calls = [{rpc, call, [ets, lookup, [users, element(1, U)]]},
                  {rpc, call, [ets, member, [users, <<"nobody">>]]},
                  {rpc, call, [ets, lookup, [no_such_table, 1]]},
                  {rpc, call, [no_such_module, f, [1]]},
                  {rpc, call, [erlang, node, []]}],
         [begin
              Mine = erpc:call(Caller, M, F, [Caller | Args]),
              Theirs = erpc:call(Caller, M, F, [EN | Args]),
              Want = expect_on(EN, Caller, Mine),
              {F, Args, Want} = {F, Args, strip_lines(Theirs)}
          end || {M, F, Args} <- Calls],
         %% erpc raises what the release's own erpc raises.
         Raise = fun(N) -> erpc:call(Caller, ?MODULE, catch_erpc,
                                     [N, ets, update_element, [users, element(1, U), {9, x}]])
                 end,
         {error, {exception, badarg, StackE}} = Raise(EN),
         {error, {exception, badarg, StackB}} = Raise(Caller),
         error_infos(StackB) =:= error_infos(StackE)
             orelse ct:fail({error_info, release(Caller), StackB, StackE}),
         %% multicall over both answers both.
         {[R1, R2], []} = erpc:call(Caller, rpc, multicall,
                                    [[Caller, EN], ets, lookup, [users, element(1, U)]]),
         [U] = R1, [U] = R2
     end || Caller <- [A, B]].

%% What Caller's own answer becomes when etsd answers it: the node name of
%% erlang:node() is etsd's, all else is the same.
expect_on(EN, Caller, Caller) -> EN;
expect_on(_, _, Answer) -> strip_lines(Answer).

%% Stack frames keep module, function and arity or arguments; their
%% location (file, line) differs between a BEAM node and etsd.
strip_lines({badrpc, {'EXIT', {Reason, Stack}}}) when is_list(Stack) ->
    {badrpc, {'EXIT', {Reason, [strip_frame(F) || F <- Stack, keep_frame(F)]}}};
strip_lines({Reason, Stack}) when is_list(Stack) ->
    {Reason, [strip_frame(F) || F <- Stack, keep_frame(F)]};
strip_lines(Other) -> Other.

%% Frames of the callee's own machinery (rpc, erpc) are the caller's view
%% of how the call ran, and are not compared.
keep_frame({M, _, _, _}) -> M =/= erpc andalso M =/= rpc;
keep_frame(_) -> true.

strip_frame({M, F, A, Info}) when is_list(Info) ->
    {M, F, A, [I || {K, _} = I <- Info, K =/= file, K =/= line]};
strip_frame(F) -> F.

%% Runs on a caller: what erpc:call raises there, as {Class, Reason}.
catch_erpc(N, M, F, A) ->
    try erpc:call(N, M, F, A) of R -> {ok, R}
    catch C:R -> {C, R}
    end.

error_infos(Stack) ->
    [EI || {_, _, _, Info} <- Stack, {error_info, EI} <- Info].

%% Rolling upgrade: both BEAM nodes are replaced by nodes of the other
%% release under the same names while etsd stays; etsd re-seeds them.
rolling_upgrade_gets_its_data_back_from_etsd(Config) ->
    NameA = seed_test_lib:unique("rolla"),
    NameB = seed_test_lib:unique("rollb"),
    A = seed_node_named(NameA, here),
    B = seed_node_named(NameB, other),
    seed_test_lib:connect(A, B),
    E = etsd(Config, A),
    await_member(E, A),
    await_member(E, B),
    Users = users("keep", 200),
    [seed_test_lib:save_and_emit(A, U) || U <- Users],
    etsd_test_lib:await(fun() -> length(etsd_users(E)) =:= 200 end, 10000, on_etsd),
    [catch peer:stop(P) || P <- get_list(peers)],
    put(peers, []),
    A2 = seed_node_named(NameA, other),
    B2 = seed_node_named(NameB, here),
    seed_test_lib:connect(A2, B2),
    ?OTHER = release(A2),
    Want = lists:sort(Users),
    etsd_test_lib:await(fun() -> seed_test_lib:users(A2) =:= Want andalso
                                 seed_test_lib:users(B2) =:= Want end, 30000, reseeded).
