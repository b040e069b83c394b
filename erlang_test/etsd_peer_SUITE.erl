%% etsd_peer_SUITE: the helper users put in their own suites: it starts a
%% real etsd that joins a seed-app cluster and waits until etsd is in the
%% PubSub groups, then stops or kills it and hands back its log; a command
%% line etsd refuses, or a missing program, is an error, not a hang.
-module(etsd_peer_SUITE).
-include_lib("common_test/include/ct.hrl").
-export([suite/0, all/0, init_per_testcase/2, end_per_testcase/2]).
-export([joined_etsd_receives_a_users_broadcast_and_stops_with_its_log/1,
         kill_ends_etsd_at_once_and_keeps_the_data_dir_usable/1,
         refused_command_line_is_an_error_with_the_log/1,
         missing_program_is_an_error/1,
         etsd_dies_with_the_process_that_started_it/1]).

suite() -> [{timetrap, {seconds, 90}}].

all() ->
    [joined_etsd_receives_a_users_broadcast_and_stops_with_its_log,
     kill_ends_etsd_at_once_and_keeps_the_data_dir_usable,
     refused_command_line_is_an_error_with_the_log,
     missing_program_is_an_error,
     etsd_dies_with_the_process_that_started_it].

init_per_testcase(_Case, Config) ->
    Config.

end_per_testcase(_Case, _Config) ->
    [seed_test_lib:stop_node(N) || N <- get_list(seeds)],
    ok.

get_list(K) -> case get(K) of undefined -> []; L -> L end.

seed(Prefix) ->
    {_, Node} = N = seed_test_lib:start_seed_node(seed_test_lib:unique(Prefix),
                                                  [{sync_delay_ms, 200}]),
    put(seeds, [N | get_list(seeds)]),
    Node.

base(Config, Extra) ->
    maps:merge(#{exec => etsd_test_lib:etsd_path(),
                 log => filename:join(?config(priv_dir, Config),
                                      "peer_" ++ integer_to_list(
                                                   erlang:unique_integer([positive])) ++ ".log"),
                 args => ["--sync-delay-ms", "200"]}, Extra).

joined_etsd_receives_a_users_broadcast_and_stops_with_its_log(Config) ->
    App = seed("peer_app"),
    %% Two users the app had before etsd came: etsd pulls them when it joins.
    Old = [{<<"old", (integer_to_binary(I))/binary, "@example.com">>, <<"t">>, I}
           || I <- [1, 2]],
    [seed_test_lib:save(App, U) || U <- Old],
    Data = filename:join(?config(priv_dir, Config), "peer_data"),
    Opts = base(Config, #{join => [App], data_dir => Data, wait => joined}),
    {ok, Peer, Etsd} = etsd_peer:start(Opts),
    true = etsd_peer:joined(Etsd, App),
    Etsd = etsd_peer:node(Peer),
    %% Joined: a broadcast from the app now reaches etsd.
    User = {<<"ann@example.com">>, <<"token">>, 1},
    seed_test_lib:save_and_emit(App, User),
    etsd_test_lib:await(fun() -> erpc:call(Etsd, ets, lookup, [users, <<"ann@example.com">>])
                                     =:= [User] end, 10000, user_on_etsd),
    %% The metrics count what replication applied: one {new, User}, and
    %% the pulled objects as merged.
    etsd_test_lib:await(fun() -> erpc:call(Etsd, ets, info, [users, size]) =:= 3 end,
                        10000, old_users_pulled),
    Metrics = maps:get(metrics, erpc:call(Etsd, etsd, info, [])),
    ct:log("metrics: ~p", [Metrics]),
    1 = maps:get(new_applied, Metrics),
    true = maps:get(sync_merged, Metrics) >= length(Old),
    true = maps:get(connections_up, Metrics) >= 2,
    3 = maps:get(table_objects, Metrics),
    Live = etsd_peer:log(Peer),
    match = re:run(Live, "node " ++ atom_to_list(Etsd) ++ " up", [{capture, none}]),
    {0, Log} = etsd_peer:stop(Peer),
    match = re:run(Log, "SIGTERM: shutting down", [{capture, none}]),
    %% The log file got the same lines.
    {ok, Log} = file:read_file(maps:get(log, Opts)),
    false = is_process_alive(Peer).

kill_ends_etsd_at_once_and_keeps_the_data_dir_usable(Config) ->
    Data = filename:join(?config(priv_dir, Config), "kill_data"),
    {ok, Peer, Etsd} = etsd_peer:start(base(Config, #{data_dir => Data})),
    true = erpc:call(Etsd, etsd, insert, [users, {<<"k">>, 1}]),
    OsPid = etsd_peer:os_pid(Peer),
    {Status, _Log} = etsd_peer:kill(Peer),
    true = Status =/= 0,
    "" = os:cmd("kill -0 " ++ integer_to_list(OsPid) ++ " 2>/dev/null"),
    %% A second etsd on the same data directory has the write.
    {ok, Peer2, Etsd2} = etsd_peer:start(base(Config, #{data_dir => Data})),
    [{<<"k">>, 1}] = erpc:call(Etsd2, ets, lookup, [users, <<"k">>]),
    {0, _} = etsd_peer:stop(Peer2).

refused_command_line_is_an_error_with_the_log(Config) ->
    {error, {exited, 2, Log}} =
        etsd_peer:start(base(Config, #{args => ["--fsync", "sometimes"]})),
    match = re:run(Log, "--fsync 'sometimes'", [{capture, none}]).

missing_program_is_an_error(Config) ->
    {error, {cannot_run, _, _}} =
        etsd_peer:start(base(Config, #{exec => "/nonexistent/etsd"})).

etsd_dies_with_the_process_that_started_it(Config) ->
    Self = self(),
    {Starter, Ref} =
        spawn_monitor(fun() ->
                              {ok, P, N} = etsd_peer:start(base(Config, #{})),
                              Self ! {started, P, N, etsd_peer:os_pid(P)},
                              receive stop -> ok end
                      end),
    {Peer, Etsd, OsPid} = receive {started, P, N, O} -> {P, N, O}
                          after 20000 -> ct:fail(not_started)
                          end,
    pong = net_adm:ping(Etsd),
    Starter ! stop,
    receive {'DOWN', Ref, process, _, _} -> ok end,
    etsd_test_lib:await(fun() -> not is_process_alive(Peer) end, 5000, peer_gone),
    etsd_test_lib:await(fun() ->
                                os:cmd("kill -0 " ++ integer_to_list(OsPid) ++
                                           " 2>&1") =/= ""
                        end, 5000, etsd_gone).
