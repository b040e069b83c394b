%% rpc_SUITE: rpc from a BEAM node to etsd, as a user at an iex prompt
%% meets it: rpc:call, erpc:call, rpc:block_call, the casts, the multicalls,
%% and exceptions shaped exactly as a BEAM peer shapes them.
-module(rpc_SUITE).
-include_lib("common_test/include/ct.hrl").
-export([suite/0, all/0, init_per_testcase/2, end_per_testcase/2]).
-export([rpc_call_runs_ets_calls/1, erpc_call_runs_ets_calls/1,
         block_call_runs_ets_calls/1, hidden_node_rex_call_gets_rex_reply/1,
         rpc_cast_and_erpc_cast_run_without_reply/1,
         multicall_over_cluster_includes_etsd/1,
         exceptions_match_beam_peer/1,
         spawn_of_other_mfa_gets_error_not_hang/1,
         timed_out_caller_leaves_etsd_serving/1,
         etsd_module_and_erlang_health_calls/1,
         tab2file_on_etsd_loads_on_beam/1,
         large_tab2list_lets_other_callers_through/1,
         other_node_is_served_during_large_tab2list/1,
         large_tab2list_under_concurrent_writes_lists_each_key_once/1,
         large_tab2list_of_caller_gone_leaves_etsd_serving/1,
         zero_keys_follow_the_release_of_the_cluster/1,
         otp_release_flag_overrides_the_cluster/1,
         restart_follows_the_release_of_the_cluster/1]).
-export([own_table/2]).
-export([rpc_call_carrying_a_seq_trace_token_is_answered/1]).

suite() -> [{timetrap, {seconds, 60}}].

all() ->
    [rpc_call_runs_ets_calls, erpc_call_runs_ets_calls, block_call_runs_ets_calls,
     hidden_node_rex_call_gets_rex_reply, rpc_cast_and_erpc_cast_run_without_reply,
     multicall_over_cluster_includes_etsd, exceptions_match_beam_peer,
     spawn_of_other_mfa_gets_error_not_hang, timed_out_caller_leaves_etsd_serving,
     etsd_module_and_erlang_health_calls, tab2file_on_etsd_loads_on_beam,
     large_tab2list_lets_other_callers_through,
     other_node_is_served_during_large_tab2list,
     large_tab2list_under_concurrent_writes_lists_each_key_once,
     large_tab2list_of_caller_gone_leaves_etsd_serving,
     rpc_call_carrying_a_seq_trace_token_is_answered,
     zero_keys_follow_the_release_of_the_cluster,
     otp_release_flag_overrides_the_cluster,
     restart_follows_the_release_of_the_cluster].

init_per_testcase(Case, Config) ->
    %% tab2file and file2tab over rpc stay inside etsd's --file-dir.
    Args = case Case of
               tab2file_on_etsd_loads_on_beam -> ["--file-dir", ?config(priv_dir, Config)];
               _ -> []
           end,
    E = etsd_test_lib:start_etsd(#{config => Config, name => atom_to_list(Case),
                                   args => Args}),
    [{etsd, E} | Config].

end_per_testcase(_Case, Config) ->
    etsd_test_lib:stop_etsd(?config(etsd, Config)),
    [peer:stop(P) || {peer, P} <- Config],
    ok.

enode(Config) -> maps:get(node, ?config(etsd, Config)).

peer(Prefix) ->
    {ok, P, N} = etsd_test_lib:start_peer(etsd_test_lib:unique_name(Prefix)),
    {P, N}.

%% A set table on a BEAM node, owned by a process that outlives the call.
own_table(Tab, Opts) ->
    Self = self(),
    Pid = spawn(fun() -> ets:new(Tab, Opts), Self ! {self(), ready},
                         receive stop -> ok end end),
    receive {Pid, ready} -> ok end.

new_table(Node, Tab) ->
    Tab = rpc:call(Node, ets, new, [Tab, [set, public, named_table]]).

%% ---- calls -------------------------------------------------------------

ets_round_trip(Call, Node) ->
    new_table(Node, t1),
    true = Call(Node, ets, insert, [t1, {<<"ann@example.com">>, <<"tok">>}]),
    true = Call(Node, ets, insert, [t1, [{1, a}, {1.0, b}, {"a", c}, {<<"a">>, d}]]),
    [{<<"ann@example.com">>, <<"tok">>}] =
        Call(Node, ets, lookup, [t1, <<"ann@example.com">>]),
    [{1, a}] = Call(Node, ets, lookup, [t1, 1]),
    [{1.0, b}] = Call(Node, ets, lookup, [t1, 1.0]),
    5 = Call(Node, ets, info, [t1, size]),
    [] = Call(Node, ets, lookup, [t1, missing]),
    ok.

rpc_call_runs_ets_calls(Config) ->
    ets_round_trip(fun rpc:call/4, enode(Config)).

erpc_call_runs_ets_calls(Config) ->
    ets_round_trip(fun erpc:call/4, enode(Config)).

block_call_runs_ets_calls(Config) ->
    ets_round_trip(fun rpc:block_call/4, enode(Config)).

%% Hidden C nodes send {From, {call, M, F, A, GL}} to rex and get {rex, Reply}.
hidden_node_rex_call_gets_rex_reply(Config) ->
    N = enode(Config),
    {rex, N} ! {self(), {call, erlang, node, [], user}},
    receive {rex, N} -> ok after 5000 -> ct:fail(no_rex_reply) end,
    {rex, N} ! {self(), {call, nosuchmod, f, [1], user}},
    receive
        {rex, {badrpc, {'EXIT', {undef, [{nosuchmod, f, [1], []}]}}}} -> ok
    after 5000 -> ct:fail(no_rex_reply)
    end.

rpc_cast_and_erpc_cast_run_without_reply(Config) ->
    N = enode(Config),
    new_table(N, t1),
    true = rpc:cast(N, ets, insert, [t1, {a, 1}]),
    ok = erpc:cast(N, ets, insert, [t1, {b, 2}]),
    %% a cast of a failing call is silent too
    ok = erpc:cast(N, nosuchmod, f, []),
    etsd_test_lib:await(fun() -> rpc:call(N, ets, info, [t1, size]) =:= 2 end, 5000),
    [{a, 1}] = rpc:call(N, ets, lookup, [t1, a]),
    [{b, 2}] = rpc:call(N, ets, lookup, [t1, b]),
    receive Unexpected -> ct:fail({unexpected, Unexpected}) after 100 -> ok end.

multicall_over_cluster_includes_etsd(Config) ->
    N = enode(Config),
    {P1, N1} = peer("rpc_mc1"),
    {P2, N2} = peer("rpc_mc2"),
    Nodes = [N1, N2, N],
    {Replies, []} = rpc:multicall(Nodes, erlang, node, []),
    Nodes = Replies,
    [{ok, N1}, {ok, N2}, {ok, N}] = erpc:multicall(Nodes, erlang, node, []),
    %% from a BEAM peer, whose rpc goes to etsd over its own connection
    {[N2, N], []} = erpc:call(N1, rpc, multicall, [[N2, N], erlang, node, []]),
    [{ok, N2}, {ok, N}] = erpc:call(N1, erpc, multicall, [[N2, N], erlang, node, []]),
    %% an undef in a multicall is reported per node, the same way
    [{error, {exception, undef, _}}, {error, {exception, undef, S}}] =
        erpc:multicall([N1, N], nosuchmod, f, [1]),
    [{nosuchmod, f, [1], []}] = S,
    peer:stop(P1),
    peer:stop(P2).

%% The same call to etsd and to a BEAM peer holding the same table gives the
%% same answer, exception shapes included, through every rpc flavour. The
%% peer runs this node's release; stack lines are left out (README).
exceptions_match_beam_peer(Config) ->
    N = enode(Config),
    {P, PN} = peer("rpc_exc"),
    etsd_ets_gen:await_release(N),
    ok = erpc:call(PN, ?MODULE, own_table, [t1, [set, public, named_table]]),
    new_table(N, t1),
    true = rpc:call(PN, ets, insert, [t1, [{a, 1}, {b, x}]]),
    true = rpc:call(N, ets, insert, [t1, [{a, 1}, {b, x}]]),
    Calls = [{ets, lookup, [nosuch, 1]}, {ets, lookup, [1, 1]},
             {ets, nosuchfun, [1]}, {ets, lookup, [t1]},
             {nosuchmod, f, [1, "x", <<"y">>]}, {nosuchmod, g, [1, 2, 3]},
             {erlang, throw, [{a, b}]}, {erlang, exit, [bye]},
             {erlang, error, [oops]}, {erlang, error, [oops, [1]]},
             {ets, tab2list, [nosuch]}, {ets, delete_all_objects, [nosuch]},
             {ets, select_delete, [nosuch, [{'_', [], [true]}]]},
             {ets, select_delete, [nosuch, [{{'$1', '_'}, [], [true]}]]},
             {erlang, system_time, [bad]}, {erlang, nodes, [bad]},
             {ets, insert, [nosuch, {a}]}, {ets, insert, [t1, foo]},
             {ets, new, [t1, [set, named_table]]},
             {ets, update_counter, [t1, b, 1]}, {ets, update_counter, [t1, zz, 1]},
             {ets, update_counter, [t1, a, {3, 1}]},
             {ets, lookup_element, [t1, zz, 2]}, {ets, lookup_element, [t1, a, 5]},
             {ets, update_element, [t1, a, {1, x}]},
             {ets, update_element, [t1, a, {3, x}]}, {ets, update_element, [t1, a, [{0, x}, {1, y}]]},
             {ets, insert, [t1, {binary_to_term(<<131, 70, 1:1, 0:63>>), neg}]},
             {ets, lookup, [t1, 0.0]}, {ets, insert, [t1, {0.0, pos}]},
             {ets, lookup, [t1, binary_to_term(<<131, 70, 1:1, 0:63>>)]},
             {ets, info, [nosuch]}, {ets, info, [t1, bogus]},
             {ets, select, [t1, bad]}, {ets, match, [t1, '_', 0]},
             {ets, next, [t1, zzz]}],
    Bad = [{Mode, C, Got, Want}
           || {M, F, A} = C <- Calls,
              Mode <- [erpc, rpc, block_call],
              Got <- [etsd_ets_gen:without_lines(call(Mode, N, M, F, A))],
              Want <- [etsd_ets_gen:without_lines(call(Mode, PN, M, F, A))],
              Got =/= Want],
    [] = Bad,
    peer:stop(P).

call(erpc, N, M, F, A) ->
    try {ok, erpc:call(N, M, F, A, 10000)} catch C:R -> {C, R} end;
call(rpc, N, M, F, A) -> rpc:call(N, M, F, A, 10000);
call(block_call, N, M, F, A) -> rpc:block_call(N, M, F, A, 10000).

spawn_of_other_mfa_gets_error_not_hang(Config) ->
    N = enode(Config),
    Req = spawn_request(N, io, format, ["x"], [monitor]),
    receive
        {spawn_reply, Req, error, notsup} -> ok
    after 5000 -> ct:fail(no_spawn_reply)
    end,
    %% erpc:call with a fun is apply(erlang, apply, [Fun, []]): not run here
    {'EXIT', {{exception, undef, _}, _}} = (catch erpc:call(N, fun() -> ok end, 5000)),
    %% and the node still serves
    N = erpc:call(N, erlang, node, []).

timed_out_caller_leaves_etsd_serving(Config) ->
    N = enode(Config),
    new_table(N, t1),
    [true = rpc:call(N, etsd, insert, [t1, [{I, I} || I <- lists:seq(B, B + 999)]])
     || B <- lists:seq(1, 20000, 1000)],
    %% A zero timeout gives up before the reply; erpc then demonitors.
    Results = [catch erpc:call(N, ets, tab2list, [t1], 0) || _ <- lists:seq(1, 20)],
    true = lists:all(fun({'EXIT', {{erpc, timeout}, _}}) -> true;
                        (L) -> is_list(L) andalso length(L) =:= 20000
                     end, Results),
    N = erpc:call(N, erlang, node, []),
    20000 = erpc:call(N, ets, info, [t1, size]),
    receive Unexpected -> ct:fail({unexpected, Unexpected}) after 100 -> ok end.

etsd_module_and_erlang_health_calls(Config) ->
    N = enode(Config),
    new_table(N, t1),
    true = rpc:call(N, etsd, insert, [t1, {<<"bob@example.com">>, <<"tok">>}]),
    true = rpc:call(N, etsd, insert, [t1, [{k1, 1}, {k2, 2}]]),
    [{k2, 2}] = rpc:call(N, ets, lookup, [t1, k2]),
    {badrpc, {'EXIT', {badarg, _}}} = rpc:call(N, etsd, insert, [t1, notatuple]),
    Info = rpc:call(N, etsd, info, []),
    true = is_map(Info),
    N = maps:get(node, Info),
    true = is_binary(maps:get(version, Info)),
    true = is_integer(maps:get(uptime_ms, Info)),
    [3] = [S || #{name := t1, size := S} <- maps:get(tables, Info)],
    N = rpc:call(N, erlang, node, []),
    true = lists:member(node(), rpc:call(N, erlang, nodes, [])),
    [N | _] = rpc:call(N, erlang, nodes, [[this, connected]]),
    T = rpc:call(N, erlang, system_time, [millisecond]),
    true = abs(T - erlang:system_time(millisecond)) < 60000,
    true = is_integer(rpc:call(N, erlang, system_time, [])),
    Mem = rpc:call(N, erlang, memory, []),
    true = is_integer(proplists:get_value(total, Mem)),
    true = is_integer(proplists:get_value(ets, Mem)),
    %% sync and snapshot answer something (the cluster service or an error)
    case catch erpc:call(N, etsd, sync, []) of
        {'EXIT', {{exception, undef, _}, _}} = U -> ct:fail({sync, U});
        _ -> ok
    end,
    {badrpc, {'EXIT', {undef, [{etsd, nosuch, [], []}]}}} = rpc:call(N, etsd, nosuch, []).

tab2file_on_etsd_loads_on_beam(Config) ->
    N = enode(Config),
    new_table(N, t1),
    Objs = [{I, integer_to_binary(I), [I, 1.5]} || I <- lists:seq(1, 500)] ++
        [{<<"a">>, 1}, {"a", 2}, {1.0, float}],
    true = rpc:call(N, ets, insert, [t1, Objs]),
    File = filename:join(?config(priv_dir, Config), "t1.ets"),
    ok = rpc:call(N, ets, tab2file, [t1, File]),
    {ok, Tab} = ets:file2tab(File, [{verify, true}]),
    Want = lists:sort(Objs),
    Want = lists:sort(ets:tab2list(Tab)),
    ets:delete(Tab),
    %% and back: a BEAM file loaded by etsd
    Own = ets:new(t2, [set, public, named_table]),
    true = ets:insert(Own, Objs),
    File2 = filename:join(?config(priv_dir, Config), "t2.ets"),
    ok = ets:tab2file(Own, File2, [{extended_info, [object_count, md5sum]}]),
    ets:delete(Own),
    {ok, t2} = rpc:call(N, ets, file2tab, [File2, [{verify, true}]]),
    Want = lists:sort(rpc:call(N, ets, tab2list, [t2])).

%% A big tab2list is answered while other callers keep being served.
large_tab2list_lets_other_callers_through(Config) ->
    N = enode(Config),
    new_table(N, t1),
    Count = 200000,
    [true = rpc:call(N, etsd, insert,
                     [t1, [{<<"user", (integer_to_binary(I))/binary, "@example.com">>,
                            <<"token">>, I} || I <- lists:seq(B, B + 9999)]])
     || B <- lists:seq(1, Count, 10000)],
    Self = self(),
    Big = [spawn_link(fun() -> Self ! {big, length(erpc:call(N, ets, tab2list, [t1]))} end)
           || _ <- [1, 2]],
    Small = [erpc:call(N, ets, lookup, [t1, <<"user7@example.com">>]) || _ <- lists:seq(1, 50)],
    50 = length([x || [{_, <<"token">>, 7}] <- Small]),
    [receive {big, Count} -> ok after 30000 -> ct:fail(big_tab2list) end || _ <- Big],
    pong = net_adm:ping(N).

%% ---- a tab2list too big for one loop turn --------------------------------

user(I) -> {<<"user", (integer_to_binary(I))/binary, "@example.com">>, <<"token">>, I}.

fill(N, Tab, Count) ->
    new_table(N, Tab),
    [true = rpc:call(N, etsd, insert, [Tab, [user(I) || I <- lists:seq(B, B + 9999)]])
     || B <- lists:seq(1, Count, 10000)],
    Count = rpc:call(N, ets, info, [Tab, size]),
    ok.

%% Calls erlang:node/0 on etsd in a loop from a process on node Peer and
%% reports each answer to Parent as {answer, Seq}, until told to stop.
pinger(Peer, N, Parent) ->
    spawn(Peer, fun() -> ping_loop(N, Parent, 1) end).

ping_loop(N, Parent, Seq) ->
    N = erpc:call(N, erlang, node, []),
    Parent ! {answer, Seq},
    receive stop -> ok after 0 -> ping_loop(N, Parent, Seq + 1) end.

%% Counts the {answer, _} messages that arrive before {big, Result}.
answers_until_big(Acc) ->
    receive
        {answer, _} -> answers_until_big(Acc + 1);
        {big, Result} -> {Acc, Result}
    after 30000 -> ct:fail(big_tab2list_never_answered)
    end.

flush_answers() ->
    receive {answer, _} -> flush_answers() after 0 -> ok end.

%% etsd encodes a big table a chunk per loop turn: a third node's calls keep
%% being answered while the list is encoded and sent, and the list is right.
other_node_is_served_during_large_tab2list(Config) ->
    N = enode(Config),
    Count = 300000,
    fill(N, t1, Count),
    {P, PN} = peer(other),
    Self = self(),
    Pinger = pinger(PN, N, Self),
    %% the other node is being served before the big call starts
    receive {answer, _} -> ok after 10000 -> ct:fail(no_answer) end,
    flush_answers(),
    spawn_link(fun() -> Self ! {big, erpc:call(N, ets, tab2list, [t1])} end),
    {During, List} = answers_until_big(0),
    Pinger ! stop,
    ct:pal("answers to the other node during the tab2list: ~p", [During]),
    true = During >= 5,
    Want = lists:sort([user(I) || I <- lists:seq(1, Count)]),
    Want = lists:sort(List),
    %% and through rex (rpc:call is a gen_server call to rex)
    Want = lists:sort(rpc:call(N, ets, tab2list, [t1])),
    peer:stop(P),
    [{peer, P} | Config].

%% Writers change the table while it is being listed: every key appears at
%% most once, whole, and every object nobody touched is there.
large_tab2list_under_concurrent_writes_lists_each_key_once(Config) ->
    N = enode(Config),
    Count = 200000,
    fill(N, t1, Count),
    Self = self(),
    Writer = spawn_link(fun() -> write_loop(N, Count + 1) end),
    Big = fun(Call) ->
              spawn_link(fun() -> Self ! {big, Call(N, ets, tab2list, [t1])} end),
              receive {big, L} -> L after 30000 -> ct:fail(big_tab2list) end
          end,
    Lists = [Big(fun erpc:call/4), Big(fun rpc:call/4), Big(fun erpc:call/4)],
    unlink(Writer),
    exit(Writer, kill),
    Untouched = [user(I) || I <- lists:seq(1001, Count)],
    [begin
         Keys = [element(1, O) || O <- L],
         true = length(Keys) =:= length(lists:usort(Keys)),
         true = lists:all(fun({<<_/binary>>, <<"token">>, I}) -> is_integer(I);
                             ({<<_/binary>>, <<"new">>, I}) -> is_integer(I);
                             (_) -> false
                          end, L),
         Set = maps:from_list([{O, true} || O <- L]),
         true = lists:all(fun(O) -> maps:is_key(O, Set) end, Untouched)
     end || L <- Lists],
    ok.

%% Overwrites keys 1..1000, deletes and re-adds some of them, and adds new
%% keys (which resizes the table now and then), in a loop.
write_loop(N, Next) ->
    K = rand:uniform(1000),
    {Key, _, _} = user(K),
    true = rpc:call(N, etsd, insert, [t1, [{Key, <<"new">>, Next}, user(Next)]]),
    true = rpc:call(N, ets, delete, [t1, element(1, user(rand:uniform(1000)))]),
    write_loop(N, Next + 1).

%% The caller's node goes away while its big tab2list is encoded: etsd
%% drops the work and keeps serving.
large_tab2list_of_caller_gone_leaves_etsd_serving(Config) ->
    N = enode(Config),
    Count = 300000,
    fill(N, t1, Count),
    {P, PN} = peer(gone),
    [spawn(PN, fun() -> catch erpc:call(N, ets, tab2list, [t1]) end) || _ <- [1, 2, 3]],
    peer:stop(P),
    N = erpc:call(N, erlang, node, []),
    Count = length(erpc:call(N, ets, tab2list, [t1])),
    pong = net_adm:ping(N).

%% A caller that holds a sequential trace token spawns with
%% SPAWN_REQUEST_TT (op 30, the token as a seventh element) instead of
%% SPAWN_REQUEST: etsd answers it the same way.
rpc_call_carrying_a_seq_trace_token_is_answered(Config) ->
    Node = enode(Config),
    new_table(Node, traced),
    true = rpc:call(Node, ets, insert, [traced, {k, v}]),
    _ = seq_trace:set_token(label, 4711),
    try
        {label, 4711} = seq_trace:get_token(label),
        [{k, v}] = erpc:call(Node, ets, lookup, [traced, k], 5000),
        [{k, v}] = rpc:call(Node, ets, lookup, [traced, k], 5000),
        ok = erpc:cast(Node, ets, insert, [traced, {k2, v2}])
    after
        seq_trace:set_token([])
    end,
    etsd_test_lib:await(fun() -> rpc:call(Node, ets, lookup, [traced, k2]) =:= [{k2, v2}] end,
                        5000, traced_cast).

%% ---- the cluster's OTP release -------------------------------------------

%% etsd asks the nodes it serves for their release and follows it: 0.0 and
%% -0.0 are one ETS key before OTP 27 and two from it, as in the peer's
%% table, and objects come back bit for bit where the release tells -0.0
%% apart.
zero_keys_follow_the_release_of_the_cluster(Config) ->
    N = enode(Config),
    {P, PN} = peer("rpc_rel"),
    etsd_ets_gen:await_release(N),
    ok = erpc:call(PN, ?MODULE, own_table, [t1, [set, public, named_table]]),
    new_table(N, t1),
    Z = minus_zero(),
    Objs = [{Z, neg}, {0.0, pos}, {{Z}, t1}, {{0.0}, t2}, {[Z, 1.5], l1}, {k, #{Z => 1}}],
    [true = rpc:call(Node, ets, insert, [t1, O]) || O <- Objs, Node <- [N, PN]],
    Size = rpc:call(PN, ets, info, [t1, size]),
    Size = rpc:call(N, ets, info, [t1, size]),
    Keys = [Z, 0.0, {Z}, {0.0}, [Z, 1.5], [0.0, 1.5], k],
    Bad = [{K, Got, Want} || K <- Keys,
                             Got <- [rpc:call(N, ets, lookup, [t1, K])],
                             Want <- [rpc:call(PN, ets, lookup, [t1, K])],
                             not bits_equal(Got, Want)],
    [] = Bad,
    ct:log("OTP ~s: ~p objects", [erlang:system_info(otp_release), Size]),
    peer:stop(P).

%% --otp-release fixes the semantics, whatever the nodes run; a release
%% before 25 is refused at start.
otp_release_flag_overrides_the_cluster(Config) ->
    Other = case list_to_integer(erlang:system_info(otp_release)) of
                R when R >= 27 -> 25;
                _ -> 27
            end,
    E = etsd_test_lib:start_etsd(#{config => Config, name => "rel_flag",
                                   args => ["--otp-release", integer_to_list(Other)]}),
    N = maps:get(node, E),
    try
        new_table(N, t1),
        true = rpc:call(N, ets, insert, [t1, [{minus_zero(), neg}, {0.0, pos}]]),
        Other = maps:get(otp_release, rpc:call(N, etsd, info, [])),
        Size = case Other of 25 -> 1; _ -> 2 end,
        Size = rpc:call(N, ets, info, [t1, size])
    after
        etsd_test_lib:stop_etsd(E)
    end,
    Etsd = etsd_test_lib:etsd_path(),
    {2, _} = etsd_test_lib:run(Etsd, ["--name", "rel_bad@127.0.0.1", "--otp-release", "24"]),
    {0, Help} = etsd_test_lib:run(Etsd, ["--help"]),
    {match, _} = re:run(Help, "--otp-release").

%% A table written under OTP 27's semantics holds 0.0 and -0.0 as two
%% keys. Started again on its data without --otp-release, etsd follows this
%% node's release: before OTP 27 the pairs of keys become one, the object
%% under 0.0 staying, as in a BEAM peer's table where 0.0 came last.
restart_follows_the_release_of_the_cluster(Config) ->
    Dir = filename:join(?config(priv_dir, Config), "rel_restart"),
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    Z = minus_zero(),
    Objs = [{Z, neg}, {0.0, pos}, {{Z}, t1}, {{0.0}, t2}, {k, [Z]}],
    E1 = etsd_test_lib:start_etsd(#{config => Config, name => "rel_restart1",
                                    args => ["--data-dir", Dir, "--otp-release", "27"]}),
    N1 = maps:get(node, E1),
    new_table(N1, t1),
    [true = rpc:call(N1, ets, insert, [t1, O]) || O <- Objs],
    5 = rpc:call(N1, ets, info, [t1, size]),
    etsd_test_lib:stop_etsd(E1),
    E2 = etsd_test_lib:start_etsd(#{config => Config, name => "rel_restart2",
                                    args => ["--data-dir", Dir]}),
    N2 = maps:get(node, E2),
    {P, PN} = peer("rpc_restart"),
    try
        etsd_ets_gen:await_release(N2),
        ok = erpc:call(PN, ?MODULE, own_table, [t1, [set, public, named_table]]),
        [true = rpc:call(PN, ets, insert, [t1, O]) || O <- Objs],
        Size = rpc:call(PN, ets, info, [t1, size]),
        Size = rpc:call(N2, ets, info, [t1, size]),
        Bad = [{K, Got, Want} || K <- [Z, 0.0, {Z}, {0.0}, k],
                                 Got <- [rpc:call(N2, ets, lookup, [t1, K])],
                                 Want <- [rpc:call(PN, ets, lookup, [t1, K])],
                                 not bits_equal(Got, Want)],
        [] = Bad
    after
        etsd_test_lib:stop_etsd(E2),
        peer:stop(P)
    end.

%% Built from its bytes: a compiler may fold the literal -0.0 into 0.0.
minus_zero() -> binary_to_term(<<131, 70, 1:1, 0:63>>).

%% =:=, and from OTP 27 every float with the same bits. Before, -0.0 =:=
%% 0.0 and etsd stores -0.0 as 0.0 (README, known differences).
bits_equal(A, B) ->
    A =:= B andalso (list_to_integer(erlang:system_info(otp_release)) < 27 orelse
                     term_to_binary(A) =:= term_to_binary(B)).
