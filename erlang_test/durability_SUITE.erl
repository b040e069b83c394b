%% durability_SUITE: a store in a data directory survives kill -9 at any
%% moment. A writer (test/tools/store_crash.c) applies a deterministic
%% stream of writes with fsync always and prints each one it acknowledged;
%% it is killed at random moments and restarted, and a checker compares the
%% table with a model of the stream after every kill. A second run does the
%% same with most writes in group commits, acknowledged only after their
%% batch's end returned. The writer compacts as etsd does (every 50th
%% write starts one in the background, every 150th snapshots at once), so
%% kills land while a snapshot is written, renamed or the log deleted; a
%% third run makes the writer die at a chosen step of a compaction in each
%% cycle (STORE_CRASH_STEP).
-module(durability_SUITE).
-include_lib("common_test/include/ct.hrl").
-include_lib("kernel/include/file.hrl").
-export([suite/0, all/0, init_per_testcase/2, end_per_testcase/2]).
-export([kill9_at_random_moments_loses_no_acknowledged_write/1,
         kill9_during_group_commits_loses_no_acknowledged_write/1,
         kill9_at_each_compaction_step_loses_no_acknowledged_write/1,
         snapshot_over_rpc_answers_once_durable_and_restart_reads_it/1,
         log_past_compact_at_is_compacted_while_etsd_answers/1,
         etsd_killed_during_compactions_keeps_every_acknowledged_write/1,
         torn_log_tail_is_cut_and_reported/1,
         log_damaged_in_the_middle_is_refused/1,
         second_writer_on_a_directory_is_refused/1]).

-define(CYCLES, 50).
%% Largest group commit the batched writer makes.
-define(BATCH, 24).

suite() -> [{timetrap, {seconds, 120}}].

all() ->
    [kill9_at_random_moments_loses_no_acknowledged_write,
     kill9_during_group_commits_loses_no_acknowledged_write,
     kill9_at_each_compaction_step_loses_no_acknowledged_write,
     snapshot_over_rpc_answers_once_durable_and_restart_reads_it,
     log_past_compact_at_is_compacted_while_etsd_answers,
     etsd_killed_during_compactions_keeps_every_acknowledged_write,
     torn_log_tail_is_cut_and_reported,
     log_damaged_in_the_middle_is_refused,
     second_writer_on_a_directory_is_refused].

init_per_testcase(Case, Config) ->
    Dir = filename:join(?config(priv_dir, Config),
                        atom_to_list(Case) ++ "_" ++
                            integer_to_list(erlang:unique_integer([positive]))),
    [{data_dir_path, Dir} | Config].

end_per_testcase(_Case, _Config) ->
    ok.

tool() -> etsd_test_lib:tool_path("store_crash").

kill9_at_random_moments_loses_no_acknowledged_write(Config) ->
    kill9_run(Config, 1).

%% Batches may be durable in part (a prefix of one write) or whole without
%% having been acknowledged: the checker accepts any state from the last
%% acknowledged op up to a batch beyond it, and nothing older.
kill9_during_group_commits_loses_no_acknowledged_write(Config) ->
    kill9_run(Config, ?BATCH).

%% Each cycle the writer dies by SIGKILL at a random step of a compaction
%% (store/wal_int.h, store_step_t: 1 fork, 2 rename the log to a segment,
%% 3 rename the next log to store.wal, 4 half the snapshot written,
%% 5 before its fsync, 6 rename the snapshot, 7 directory fsync, 8 delete
%% the segment, 9 create the following next log), or is killed from here
%% if it outruns the step; with group commits.
kill9_at_each_compaction_step_loses_no_acknowledged_write(Config) ->
    put(crash_steps, true),
    put(step_deaths, 0),
    kill9_run(Config, ?BATCH),
    %% most cycles must have died at their step, not by the fallback kill
    true = get(step_deaths) >= ?CYCLES div 2.

kill9_run(Config, Batch) ->
    Dir = ?config(data_dir_path, Config),
    Seed = erlang:phash2({erlang:system_time(), os:getpid()}) + 1,
    rand:seed(exsss, {Seed, Seed * 7, Seed * 13}),
    ct:log("rand seed ~p, batch ~p", [Seed, Batch]),
    put(batch, Batch),
    {Next, Acked, Notes} = cycles(Dir, ?CYCLES, 1, 0, 0),
    ct:log("~p cycles: ~p writes acknowledged, resumed at ~p, ~p torn tails cut, "
           "~p deaths at a compaction step",
           [?CYCLES, Acked, Next, Notes, case get(step_deaths) of undefined -> 0; D -> D end]),
    true = Acked >= ?CYCLES.

%% The crash step for this cycle's writer, if the run uses them.
crash_env() ->
    case get(crash_steps) of
        true ->
            Step = rand:uniform(9),
            put(step, Step),
            [{"STORE_CRASH_STEP", integer_to_list(Step)}];
        _ -> []
    end.

%% Writer and checker arguments for the run's batch size.
write_args(Dir, Start) ->
    case get(batch) of
        1 -> ["write", Dir, integer_to_list(Start)];
        B -> ["write", Dir, integer_to_list(Start), integer_to_list(1 bsl 40),
              integer_to_list(B)]
    end.

check_args(Dir, LastAck) ->
    ["check", Dir, integer_to_list(LastAck), integer_to_list(get(batch))].

%% One cycle: start the writer at op Start, kill -9 it after a random number
%% of acknowledgements (or before the first), then check the directory.
cycles(_Dir, 0, Next, Acked, Notes) ->
    {Next, Acked, Notes};
cycles(Dir, N, Start, Acked, Notes) ->
    %% Target < 0: kill during recovery, before the writer is ready.
    Env = crash_env(),
    Target = case Env of
                 [] -> rand:uniform(45) - 6;
                 _ -> 50 + rand:uniform(50)  % past the next compaction
             end,
    Port = open_port({spawn_executable, tool()},
                     [{args, write_args(Dir, Start)}, {env, Env},
                      {line, 256}, exit_status, binary]),
    {os_pid, OsPid} = erlang:port_info(Port, os_pid),
    Killed = Target < 0 andalso kill_now(OsPid),
    LastAck = writer_until(Port, OsPid, Target, Start - 1, Killed),
    true = LastAck >= Start - 1,
    {Status, Out} = etsd_test_lib:run(tool(), check_args(Dir, LastAck)),
    case Status of
        0 -> ok;
        _ -> ct:fail({mismatch, Start, LastAck, Out})
    end,
    {match, [Done]} = re:run(Out, "ok ([0-9]+)", [{capture, all_but_first, list}]),
    Torn = case binary:match(Out, <<"torn tail">>) of nomatch -> 0; _ -> 1 end,
    cycles(Dir, N - 1, list_to_integer(Done) + 1,
           Acked + (LastAck - Start + 1), Notes + Torn).

%% Collects "ack N" lines; once Target acks past the start have been seen,
%% kills the writer at once or after a short random pause (while it keeps
%% writing), then drains the port up to its exit.
writer_until(Port, OsPid, Target, Last, Killed) ->
    receive
        {Port, {data, {eol, <<"ack ", N/binary>>}}} ->
            Ack = binary_to_integer(N),
            maybe_kill(Port, OsPid, Target, Ack, Killed);
        {Port, {data, {eol, <<"ready">>}}} ->
            maybe_kill(Port, OsPid, Target, Last, Killed);
        {Port, {data, {eol, Line}}} ->
            ct:log("writer: ~s", [Line]),
            writer_until(Port, OsPid, Target, Last, Killed);
        {Port, {exit_status, S}} when Killed ->
            true = S =/= 0,
            Last;
        {Port, {exit_status, 137}} when is_integer(Target) ->
            %% died at its compaction step (128 + SIGKILL)
            true = get(crash_steps),
            put(step_deaths, get(step_deaths) + 1),
            Last;
        {Port, {exit_status, S}} ->
            ct:fail({writer_exited, S, Last})
    after 20000 ->
        ct:fail({writer_silent, Last})
    end.

maybe_kill(Port, OsPid, Target, Last, false) when Target =< 0 ->
    pause(rand:uniform(4) - 1),
    kill_now(OsPid),
    writer_until(Port, OsPid, 0, Last, true);
maybe_kill(Port, OsPid, Target, Last, Killed) ->
    writer_until(Port, OsPid, Target - 1, Last, Killed).

kill_now(OsPid) ->
    os:cmd("kill -9 " ++ integer_to_list(OsPid)),
    true.

%% A random moment: let the writer run on for Ms milliseconds.
pause(0) -> ok;
pause(Ms) -> receive after Ms -> ok end.

%% Runs the writer for exactly N operations from Start; it stops cleanly.
run_writer(Dir, Start, N) ->
    {0, Out} = etsd_test_lib:run(tool(), ["write", Dir, integer_to_list(Start),
                                          integer_to_list(N)]),
    {match, _} = re:run(Out, "ack " ++ integer_to_list(Start + N - 1) ++ "\n"),
    Start + N - 1.

drain(Port) ->
    receive
        {Port, {exit_status, _}} -> ok;
        {Port, _} -> drain(Port)
    after 20000 -> ct:fail(writer_did_not_exit)
    end.

log_file(Dir) -> filename:join(Dir, "store.wal").

%% ---- etsd itself --------------------------------------------------------

etsd(Config, Dir, Extra) ->
    etsd_test_lib:start_etsd(#{config => Config, name => "dur",
                               args => ["--data-dir", Dir | Extra]}).

segments(Dir) ->
    filelib:wildcard("store.wal.[0-9]*", Dir).

user(I) -> {I, <<"user", (integer_to_binary(I))/binary>>, binary:copy(<<"x">>, 150)}.

%% The object keys in etsd's users table, sorted.
keys(N) ->
    lists:sort([element(1, O) || O <- erpc:call(N, ets, tab2list, [users])]).

snapshot_over_rpc_answers_once_durable_and_restart_reads_it(Config) ->
    Dir = ?config(data_dir_path, Config),
    E = etsd(Config, Dir, []),
    N = maps:get(node, E),
    true = erpc:call(N, ets, insert, [users, [user(I) || I <- lists:seq(1, 500)]]),
    %% erpc, then rex (block_call): each answers once the snapshot is in place
    ok = erpc:call(N, etsd, snapshot, []),
    {ok, #file_info{size = Snap}} = file:read_file_info(filename:join(Dir, "store.snap")),
    true = Snap > 500 * 150,
    {ok, #file_info{size = 8}} = file:read_file_info(log_file(Dir)),
    [] = segments(Dir),
    true = erpc:call(N, ets, insert, [users, [user(I) || I <- lists:seq(501, 600)]]),
    ok = rpc:block_call(N, etsd, snapshot, []),
    true = erpc:call(N, ets, insert, [users, user(601)]),
    etsd_test_lib:await_log(E, "store: compaction 2: snapshot of 600 objects", 5000),
    etsd_test_lib:kill_etsd(E, "KILL"),
    E2 = etsd(Config, Dir, []),
    Want = lists:seq(1, 601),
    Want = keys(maps:get(node, E2)),
    etsd_test_lib:stop_etsd(E2).

%% Writes 6 MB through a 512 kB --compact-at while a second process calls
%% etsd all along: compactions run, each logs its line, none holds etsd's
%% loop for long (the figure etsd logs, and the longest call seen here),
%% and a restart after kill -9 finds every write.
log_past_compact_at_is_compacted_while_etsd_answers(Config) ->
    Dir = ?config(data_dir_path, Config),
    E = etsd(Config, Dir, ["--compact-at", "524288"]),
    N = maps:get(node, E),
    Self = self(),
    Pinger = spawn_link(fun() -> ping_loop(N, Self, 0, 0) end),
    Batches = 200,
    lists:foreach(fun(B) ->
                          true = erpc:call(N, ets, insert,
                                           [users, [user(B * 200 + I) || I <- lists:seq(1, 200)]])
                  end, lists:seq(0, Batches - 1)),
    Pinger ! {stop, self()},
    {Calls, MaxUs} = receive {pings, C, M} -> {C, M} after 10000 -> ct:fail(no_pings) end,
    etsd_test_lib:await(fun() -> length(compactions(E)) >= 5 end, 10000, compactions),
    Held = [H || {_, H} <- compactions(E)],
    ct:log("~p compactions; loop held per compaction (ms): ~p; ~p calls meanwhile, "
           "longest ~.1f ms", [length(Held), Held, Calls, MaxUs / 1000]),
    true = lists:max(Held) < 200,
    %% the log stays near --compact-at, not near the 6 MB written
    true = filelib:file_size(log_file(Dir)) < 3 * 524288,
    etsd_test_lib:kill_etsd(E, "KILL"),
    E2 = etsd(Config, Dir, []),
    Want = lists:seq(1, Batches * 200),
    Want = keys(maps:get(node, E2)),
    etsd_test_lib:stop_etsd(E2).

%% [{Ms, LoopHeldMs}] from etsd's compaction log lines.
compactions(E) ->
    {match, Ms} = case re:run(etsd_test_lib:etsd_log(E),
                              "compaction [0-9]+: .*; ([0-9]+) ms, loop held ([0-9.]+) ms",
                              [global, {capture, all_but_first, list}]) of
                      nomatch -> {match, []};
                      M -> M
                  end,
    [{list_to_integer(T), list_to_float(H)} || [T, H] <- Ms].

ping_loop(N, Parent, Calls, Max) ->
    receive
        {stop, From} -> From ! {pings, Calls, Max}
    after 0 ->
        T0 = erlang:monotonic_time(microsecond),
        N = erpc:call(N, erlang, node, []),
        Dt = erlang:monotonic_time(microsecond) - T0,
        ping_loop(N, Parent, Calls + 1, max(Max, Dt))
    end.

%% Cycles of: etsd with a 64 kB --compact-at takes acknowledged writes (20
%% objects a call) and is killed with SIGKILL at a random moment, which
%% with a compaction every few dozen calls often falls inside one; the
%% restarted etsd must hold every acknowledged write (and at most the
%% call in flight), whatever files the kill left.
-define(ETSD_CYCLES, 25).
etsd_killed_during_compactions_keeps_every_acknowledged_write(Config) ->
    Dir = ?config(data_dir_path, Config),
    Seed = erlang:phash2({erlang:system_time(), os:getpid()}) + 1,
    rand:seed(exsss, {Seed, Seed * 3, Seed * 5}),
    ct:log("rand seed ~p", [Seed]),
    {Acked, Compactions} = etsd_cycles(Config, Dir, ?ETSD_CYCLES, 0, 0),
    ct:log("~p cycles: ~p writes acknowledged, ~p compactions logged",
           [?ETSD_CYCLES, Acked, Compactions]),
    true = Compactions >= ?ETSD_CYCLES.

etsd_cycles(_Config, _Dir, 0, Acked, Comp) ->
    {Acked, Comp};
etsd_cycles(Config, Dir, K, Acked, Comp) ->
    E = etsd(Config, Dir, ["--compact-at", "65536"]),
    N = maps:get(node, E),
    Keys = keys(N),
    %% everything acknowledged before, and at most one call in flight
    true = lists:prefix(lists:seq(1, Acked), Keys),
    true = length(Keys) =< Acked + 20,
    Self = self(),
    W = spawn(fun() -> etsd_writer(N, Self, length(Keys)) end),
    receive after 100 + rand:uniform(400) -> ok end,
    etsd_test_lib:kill_etsd(E, "KILL"),
    %% The next etsd takes the directory's lock only once this one is gone.
    {ok, _} = etsd_test_lib:await_exit(E, 10000),
    Last = receive {acked, W, L} -> L after 20000 -> ct:fail(writer_stuck) end,
    C = length(compactions(E)),
    etsd_cycles(Config, Dir, K - 1, Last, Comp + C).

%% Writes 20 users a call from key From + 1 on; tells Parent the last key
%% acknowledged when a call fails (etsd was killed).
etsd_writer(N, Parent, From) ->
    case catch erpc:call(N, ets, insert, [users, [user(From + I) || I <- lists:seq(1, 20)]],
                         5000) of
        true -> etsd_writer(N, Parent, From + 20);
        _ -> Parent ! {acked, self(), From}
    end.

torn_log_tail_is_cut_and_reported(Config) ->
    Dir = ?config(data_dir_path, Config),
    %% 30 writes, fewer than the 50 between snapshots: all in the log.
    30 = run_writer(Dir, 1, 30),
    {ok, Before} = file:read_file(log_file(Dir)),
    %% The next write that appends a record (some ops change nothing).
    Op = grow_log(Dir, 31, byte_size(Before)),
    {ok, After} = file:read_file(log_file(Dir)),
    %% Cut that record in half, as a crash in mid-append would.
    Cut = byte_size(Before) + (byte_size(After) - byte_size(Before)) div 2,
    ok = file:write_file(log_file(Dir), binary:part(After, 0, Cut)),
    {0, Out} = etsd_test_lib:run(tool(), ["check", Dir, integer_to_list(Op - 1)]),
    ct:log("~s", [Out]),
    {match, _} = re:run(Out, "note: .*torn tail at offset [0-9]+"),
    {match, _} = re:run(Out, "^ok " ++ integer_to_list(Op - 1) ++ "$", [multiline]),
    %% The cut is permanent: a second open finds a clean log.
    {0, Out2} = etsd_test_lib:run(tool(), ["check", Dir, integer_to_list(Op - 1)]),
    nomatch = re:run(Out2, "torn tail").

grow_log(Dir, Op, Size) ->
    Op = run_writer(Dir, Op, 1),
    case filelib:file_size(log_file(Dir)) of
        Size -> grow_log(Dir, Op + 1, Size);
        _ -> Op
    end.

log_damaged_in_the_middle_is_refused(Config) ->
    Dir = ?config(data_dir_path, Config),
    Last = run_writer(Dir, 1, 30),
    {ok, Bin} = file:read_file(log_file(Dir)),
    %% Flip one byte of an early record: later records are intact, so this is
    %% not a torn tail and recovery must not drop them silently.
    Pos = 40,
    <<A:Pos/binary, B, C/binary>> = Bin,
    ok = file:write_file(log_file(Dir), <<A/binary, (B bxor 16#55), C/binary>>),
    {1, Out} = etsd_test_lib:run(tool(), ["check", Dir, integer_to_list(Last)]),
    ct:log("~s", [Out]),
    {match, _} = re:run(Out, "error: .*store.wal: damaged at offset [0-9]+"),
    {match, _} = re:run(Out, "Bad message").

second_writer_on_a_directory_is_refused(Config) ->
    Dir = ?config(data_dir_path, Config),
    Port = open_port({spawn_executable, tool()},
                     [{args, ["write", Dir, "1"]}, {line, 256}, exit_status, binary]),
    {os_pid, OsPid} = erlang:port_info(Port, os_pid),
    receive {Port, {data, {eol, <<"ready">>}}} -> ok
    after 20000 -> ct:fail(writer_silent)
    end,
    {Status, Out} = etsd_test_lib:run(tool(), ["check", Dir, "0"]),
    os:cmd("kill -9 " ++ integer_to_list(OsPid)),
    drain(Port),
    ct:log("~s", [Out]),
    1 = Status,
    {match, _} = re:run(Out, "in use by another process").
