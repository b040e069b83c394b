%% ets_rpc_SUITE: differential test of the :ets API over rpc. The same
%% random sequence of calls (failing ones included) goes to etsd and to a
%% BEAM peer holding an identical table; every result and every exception
%% must be =:= (set-table order compared sorted). Set ETSD_SEED to replay.
-module(ets_rpc_SUITE).
-include_lib("common_test/include/ct.hrl").
-export([suite/0, all/0, init_per_testcase/2, end_per_testcase/2]).
-export([same_results_through_erpc_call/1, same_results_through_rpc_call/1,
         same_results_through_rpc_block_call/1, new_and_delete_table_over_rpc/1]).

-define(OPS, 10000).

suite() -> [{timetrap, {seconds, 60}}].

all() ->
    [same_results_through_erpc_call, same_results_through_rpc_call,
     same_results_through_rpc_block_call, new_and_delete_table_over_rpc].

init_per_testcase(Case, Config) ->
    E = etsd_test_lib:start_etsd(#{config => Config, name => atom_to_list(Case)}),
    {ok, P, PN} = etsd_test_lib:start_peer(etsd_test_lib:unique_name("ets_rpc_peer")),
    etsd_ets_gen:await_release(maps:get(node, E)),
    [{etsd, E}, {peer, P}, {peer_node, PN} | Config].

end_per_testcase(_Case, Config) ->
    etsd_test_lib:stop_etsd(?config(etsd, Config)),
    peer:stop(?config(peer, Config)),
    ok.

seed() ->
    case os:getenv("ETSD_SEED") of
        false -> erlang:unique_integer([positive]) + erlang:system_time(second);
        S -> list_to_integer(S)
    end.

same_results_through_erpc_call(Config) -> differential(erpc, Config).
same_results_through_rpc_call(Config) -> differential(rpc, Config).
same_results_through_rpc_block_call(Config) -> differential(block_call, Config).

differential(Mode, Config) ->
    E = maps:get(node, ?config(etsd, Config)),
    P = ?config(peer_node, Config),
    Tab = diff_users,
    ok = erpc:call(P, rpc_SUITE, own_table, [Tab, [set, public, named_table]]),
    Tab = rpc:call(E, ets, new, [Tab, [set, public, named_table]]),
    Seed = seed(),
    ct:log("seed ~p, mode ~p", [Seed, Mode]),
    Ops = etsd_ets_gen:ops(Seed, ?OPS, Tab),
    Mismatches = run_ops(Mode, E, P, Tab, Ops, 1, []),
    %% sorted under =:= ({2} and {2.0} are == and would keep their order)
    Final = [etsd_ets_gen:normalize(rpc, Node, Tab, tab2list,
                                    {ok, rpc:call(Node, ets, tab2list, [Tab])})
             || Node <- [E, P]],
    case {Mismatches, Final} of
        {[], [Same, Same]} ->
            {ok, L} = Same,
            ct:log("~p calls equal; final size ~p", [?OPS, length(L)]);
        _ ->
            ct:fail({seed, Seed, mode, Mode, first_mismatches, lists:reverse(Mismatches),
                     final_equal, hd(Final) =:= lists:last(Final)})
    end.

run_ops(_Mode, _E, _P, _Tab, [], _I, Acc) -> Acc;
run_ops(_Mode, _E, _P, _Tab, _Ops, _I, Acc) when length(Acc) >= 5 -> Acc;
run_ops(Mode, E, P, Tab, [{F, A} | Ops], I, Acc) ->
    Got = etsd_ets_gen:without_lines(
            etsd_ets_gen:normalize(Mode, E, Tab, F, etsd_ets_gen:run(Mode, E, F, A))),
    Want = etsd_ets_gen:without_lines(
             etsd_ets_gen:normalize(Mode, P, Tab, F, etsd_ets_gen:run(Mode, P, F, A))),
    Acc1 = case Got =:= Want of
               true -> Acc;
               false -> [#{n => I, call => {ets, F, A}, etsd => Got, beam => Want} | Acc]
           end,
    run_ops(Mode, E, P, Tab, Ops, I + 1, Acc1).

%% Tables created over rpc live in etsd until deleted (no owner process).
new_and_delete_table_over_rpc(Config) ->
    E = maps:get(node, ?config(etsd, Config)),
    t9 = rpc:call(E, ets, new, [t9, [set, public, named_table, {keypos, 2}]]),
    true = rpc:call(E, ets, insert, [t9, {x, k, 1}]),
    [{x, k, 1}] = rpc:call(E, ets, lookup, [t9, k]),
    2 = rpc:call(E, ets, info, [t9, keypos]),
    set = rpc:call(E, ets, info, [t9, type]),
    {badrpc, {'EXIT', {badarg, [{ets, new, _, [{error_info, #{cause := already_exists}}]}]}}} =
        rpc:call(E, ets, new, [t9, [set, named_table]]),
    %% etsd's tables are known by name: whereis answers the name, not a tid
    t9 = rpc:call(E, ets, whereis, [t9]),
    undefined = rpc:call(E, ets, whereis, [t8]),
    true = lists:member(t9, rpc:call(E, ets, all, [])),
    true = rpc:call(E, ets, delete, [t9]),
    undefined = rpc:call(E, ets, info, [t9]),
    {badrpc, {'EXIT', {badarg, _}}} = rpc:call(E, ets, lookup, [t9, k]).
