%% soak_SUITE: the soak run (etsd_soak, bench/soak.sh) cut to under a
%% minute: streams from two BEAM nodes, rpc lookups, one BEAM node
%% restarted, etsd killed with SIGKILL and restarted; RSS and open fds stay
%% bounded and the three tables agree at the end.
-module(soak_SUITE).
-include_lib("common_test/include/ct.hrl").
-export([suite/0, all/0]).
-export([short_soak_stays_bounded_and_tables_agree/1]).

suite() -> [{timetrap, {seconds, 180}}].

all() -> [short_soak_stays_bounded_and_tables_agree].

short_soak_stays_bounded_and_tables_agree(Config) ->
    R = etsd_soak:run(#{etsd => etsd_test_lib:etsd_path(),
                        dir => ?config(priv_dir, Config),
                        duration_s => 45, writes => 200000, keys => 2000,
                        beam_restart_s => 14, etsd_kill_s => 25, sample_s => 5}),
    #{checks := Checks, restarts := Restarts, pass := Pass} = R,
    %% The run did what it says: both kinds of restart happened.
    true = lists:keymember(beam, 1, Restarts),
    true = lists:keymember(etsd_kill, 1, Restarts),
    {tables_agree, ok, _} = lists:keyfind(tables_agree, 1, Checks),
    {rss_kb, ok, _} = lists:keyfind(rss_kb, 1, Checks),
    {fds, ok, _} = lists:keyfind(fds, 1, Checks),
    true = Pass,
    {comment, io_lib:format("~b writes, restarts ~p", [maps:get(writes, R), Restarts])}.
