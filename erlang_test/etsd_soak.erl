%% etsd_soak: a soak run. Two BEAM seed nodes stream {new, User} (each over
%% its own keys), rpc lookups go to etsd alongside, a BEAM node is
%% restarted every beam_restart_s, and etsd (with --data-dir) is killed
%% with SIGKILL and restarted every etsd_kill_s. Every sample_s it records
%% etsd's RSS, open fds, data-dir (snapshot + WAL) size, stderr log size
%% and table size against the BEAM nodes' tables. At the end the writers
%% stop, write each of their keys once more, and the three tables must
%% agree. bench/soak.sh runs it for long; soak_SUITE for under a minute.
-module(etsd_soak).
-export([main/1, run/1, writer/5, final_round/2]).

-define(DEFAULTS, #{duration_s => 600, writes => 10000000, keys => 100000,
                    beam_restart_s => 60, etsd_kill_s => 180, sample_s => 10,
                    code_path => [], print => true}).

%% bench/soak.sh: etsd_soak ETSD DIR DURATION_S WRITES KEYS [BEAM_RESTART_S ETSD_KILL_S]
main([Etsd, Dir, Dur, Writes, Keys | Rest]) ->
    {Br, Ek} = case Rest of
                   [B, K | _] -> {list_to_integer(B), list_to_integer(K)};
                   _ -> {60, 180}
               end,
    Opts = #{etsd => Etsd, dir => Dir, duration_s => list_to_integer(Dur),
             writes => list_to_integer(Writes), keys => list_to_integer(Keys),
             beam_restart_s => Br, etsd_kill_s => Ek,
             sample_s => max(5, list_to_integer(Dur) div 60),
             code_path => [Dir]},
    R = try run(Opts)
        catch C:E:St ->
                io:format("soak failed: ~p:~p~n~p~n", [C, E, St]),
                #{pass => false}
        end,
    halt(case R of #{pass := true} -> 0; _ -> 1 end).

%% Runs the soak; returns a map with samples, restarts, checks and pass.
run(Opts0) ->
    O = maps:merge(?DEFAULTS, Opts0),
    #{dir := Dir, duration_s := Dur, writes := Writes, keys := Keys} = O,
    Tag = os:getpid() ++ "_" ++ integer_to_list(erlang:unique_integer([positive])),
    Names = ["soaka_" ++ Tag, "soakb_" ++ Tag],
    Nodes = [list_to_atom(N ++ "@127.0.0.1") || N <- Names],
    DataDir = filename:join(Dir, "soak_data_" ++ Tag),
    ok = filelib:ensure_dir(filename:join(DataDir, "x")),
    Self = self(),
    put(soak, O#{tag => Tag, data_dir => DataDir, names => Names, nodes => Nodes,
                 log => filename:join(Dir, "soak_etsd_" ++ Tag ++ ".log"),
                 ename => "soak_etsd_" ++ Tag, report => Self}),
    %% Writes per 10 ms tick per node, to reach Writes in Dur seconds.
    PerTick = max(1, Writes div (2 * Dur * 100)),
    put(per_tick, PerTick),
    Peers = [start_beam(N) || N <- Names],
    [A, B] = Nodes,
    true = erpc:call(A, net_kernel, connect_node, [B]),
    T0 = now_ms(),
    put(t0, T0),
    {RestartMs, _} = start_etsd(),
    put(restarts, [{etsd_start, 0, RestartMs}]),
    EN = enode(),
    Looker = spawn_link(fun() -> lookups(EN, Keys, 0, 0) end),
    [start_writer(N, I) || {N, I} <- lists:zip(Nodes, [0, 1])],
    print("soak: ~b s, ~b writes (~b per 10 ms per node), ~b keys per node, "
          "BEAM restart every ~b s, etsd SIGKILL every ~b s~n",
          [Dur, Writes, PerTick, Keys, maps:get(beam_restart_s, O), maps:get(etsd_kill_s, O)]),
    Peers2 = loop(O, Peers, T0, T0 + Dur * 1000, T0, T0, T0, []),
    %% Quiet: no restarts now. Writers stop, then write every key once.
    Written = stop_writers(),
    Looker ! {stop, self()},
    {LookOk, LookErr} = receive {lookups, Ok, Er} -> {Ok, Er} after 10000 -> {0, 0} end,
    receive after 3000 -> ok end,
    [ok = erpc:call(N, ?MODULE, final_round, [prefix(I), Keys], 120000)
     || {N, I} <- lists:zip(Nodes, [0, 1])],
    Agree = await_agree(Nodes, 2 * Keys, 90000),
    Samples = lists:reverse(get_list(samples)),
    Last = sample(now_ms()),
    stop_etsd(),
    [catch peer:stop(P) || P <- Peers2],
    Checks = checks(Samples ++ [Last], Agree),
    Pass = lists:all(fun({_, ok, _}) -> true; ({_, report, _}) -> true; (_) -> false end,
                     Checks),
    print("soak: ~b writes, ~b rpc lookups answered, ~b failed (etsd down)~n",
          [Written, LookOk, LookErr]),
    [print("soak: restart ~p at ~b s: ~s~n", [What, At div 1000, fmt_restart(Ms)])
     || {What, At, Ms} <- lists:reverse(get(restarts))],
    [print("soak: check ~p: ~p ~s~n", [Name, Res, Why]) || {Name, Res, Why} <- Checks],
    print("soak: ~s~n", [case Pass of true -> "PASS"; false -> "FAIL" end]),
    #{pass => Pass, samples => Samples ++ [Last], checks => Checks,
      restarts => lists:reverse(get(restarts)), writes => Written,
      lookups => {LookOk, LookErr}}.

get_list(K) -> case get(K) of undefined -> []; L -> L end.

now_ms() -> erlang:monotonic_time(millisecond).

print(F, A) ->
    case maps:get(print, get(soak)) of
        true -> io:format(F, A);
        false -> ok
    end,
    case get(print_log) of
        undefined -> ok;
        Fun -> Fun(F, A)
    end.

prefix(0) -> <<"a">>;
prefix(1) -> <<"b">>.

%% ---- the schedule --------------------------------------------------------

loop(O, Peers, T0, End, LastSample, LastBeam, LastKill, _) ->
    Now = now_ms(),
    #{sample_s := Ss, beam_restart_s := Br, etsd_kill_s := Ek} = O,
    if
        Now >= End ->
            put(samples, [sample(Now) | get_list(samples)]),
            Peers;
        Now - LastSample >= Ss * 1000 ->
            S = sample(Now),
            put(samples, [S | get_list(samples)]),
            print_sample(S),
            loop(O, Peers, T0, End, Now, LastBeam, LastKill, []);
        Now - LastBeam >= Br * 1000 ->
            Peers2 = restart_beam(Peers, T0),
            loop(O, Peers2, T0, End, LastSample, now_ms(), LastKill, []);
        Now - LastKill >= Ek * 1000 ->
            kill_and_restart_etsd(T0),
            loop(O, Peers, T0, End, LastSample, LastBeam, now_ms(), []);
        true ->
            receive
                {written, _, _} = W -> note_written(W)
            after 100 -> ok
            end,
            loop(O, Peers, T0, End, LastSample, LastBeam, LastKill, [])
    end.

note_written({written, Pid, Count}) ->
    put(written, maps:put(Pid, Count, get_map(written))).

get_map(K) -> case get(K) of undefined -> #{}; M -> M end.

written() ->
    flush_written(),
    lists:sum(maps:values(get_map(written))).

flush_written() ->
    receive {written, _, _} = W -> note_written(W), flush_written()
    after 0 -> ok
    end.

%% ---- BEAM nodes ------------------------------------------------------------

start_beam(Name) ->
    #{code_path := CP} = get(soak),
    Args = ["-setcookie", atom_to_list(erlang:get_cookie()),
            "-kernel", "prevent_overlapping_partitions", "false",
            "-pa" | CP ++ code:get_path()],
    P = start_peer(Name, Args, 20),
    Node = list_to_atom(Name ++ "@127.0.0.1"),
    {ok, _} = erpc:call(Node, seed_app, start, [[{sync_delay_ms, 1000}]]),
    P.

%% A restarted node's name may linger in EPMD for a moment.
start_peer(Name, Args, Tries) ->
    case peer:start(#{name => Name, host => "127.0.0.1", longnames => true,
                      connection => standard_io, args => Args}) of
        {ok, P, _} -> P;
        Err when Tries > 0 ->
            receive after 250 -> ok end,
            _ = Err,
            start_peer(Name, Args, Tries - 1);
        Err -> error({peer_start, Name, Err})
    end.

start_writer(Node, I) ->
    #{keys := Keys, report := R} = get(soak),
    Pid = erpc:call(Node, erlang, spawn, [?MODULE, writer, [prefix(I), Keys, get(per_tick), R,
                                                            erlang:unique_integer([positive])]]),
    put(writers, [{Node, Pid} | get_list(writers)]),
    Pid.

%% Restarts the two BEAM nodes in turn: one per call.
restart_beam(Peers, T0) ->
    #{names := Names, nodes := Nodes} = get(soak),
    I = get_int(next_beam),
    put(next_beam, 1 - I),
    Node = lists:nth(I + 1, Nodes),
    Name = lists:nth(I + 1, Names),
    Old = lists:nth(I + 1, Peers),
    Start = now_ms(),
    catch peer:stop(Old),
    P = start_beam(Name),
    Other = lists:nth(2 - I, Nodes),
    true = erpc:call(Node, net_kernel, connect_node, [Other]),
    start_writer(Node, I),
    put(restarts, [{beam, Start - T0, now_ms() - Start} | get(restarts)]),
    case I of 0 -> [P, lists:nth(2, Peers)]; 1 -> [lists:nth(1, Peers), P] end.

get_int(K) -> case get(K) of undefined -> 0; V -> V end.

%% Runs on a seed node: save_and_emit PerTick users every 10 ms over its own
%% keys until told to stop; reports its count every second.
writer(Prefix, Keys, PerTick, Report, Inc) ->
    writer_loop(Prefix, Keys, PerTick, Report, Inc, 0, 0).

writer_loop(Prefix, Keys, PerTick, Report, Inc, N, Count) ->
    receive
        {stop, From} ->
            From ! {stopped, self(), Count}
    after 10 ->
            N2 = write_some(Prefix, Keys, Inc, N, PerTick),
            C2 = Count + PerTick,
            case C2 div (PerTick * 100) =/= Count div (PerTick * 100) of
                true -> Report ! {written, self(), C2};
                false -> ok
            end,
            writer_loop(Prefix, Keys, PerTick, Report, Inc, N2, C2)
    end.

write_some(_, _, _, N, 0) -> N;
write_some(Prefix, Keys, Inc, N, K) ->
    Key = key(Prefix, N rem Keys),
    ok = seed_repo:save_and_emit({Key, Inc, N}),
    write_some(Prefix, Keys, Inc, N + 1, K - 1).

key(Prefix, I) -> <<Prefix/binary, "-", (integer_to_binary(I))/binary, "@example.com">>.

%% Runs on a seed node at the end: every key of Prefix once more.
final_round(Prefix, Keys) ->
    [ok = seed_repo:save_and_emit({key(Prefix, I), final, I}) || I <- lists:seq(0, Keys - 1)],
    ok.

stop_writers() ->
    Live = [{N, P} || {N, P} <- get_list(writers),
                      erpc:call(N, erlang, is_process_alive, [P]) =:= true],
    [P ! {stop, self()} || {_, P} <- Live],
    [receive {stopped, P, C} -> note_written({written, P, C}) after 5000 -> ok end
     || {_, P} <- Live],
    written().

%% ---- etsd ----------------------------------------------------------------

enode() ->
    #{ename := N} = get(soak),
    list_to_atom(N ++ "@127.0.0.1").

start_etsd() ->
    #{etsd := Etsd, ename := Name, nodes := Nodes, data_dir := DD, log := Log} = get(soak),
    Args = ["--name", Name ++ "@127.0.0.1", "--cookie", atom_to_list(erlang:get_cookie()),
            "--join", string:join([atom_to_list(N) || N <- Nodes], ","),
            "--data-dir", DD, "--sync-delay-ms", "1000"],
    Start = now_ms(),
    Port = open_port({spawn_executable, "/bin/sh"},
                     [{args, ["-c", "exec \"$0\" \"$@\" >>'" ++ Log ++ "' 2>&1", Etsd | Args]},
                      exit_status, binary]),
    {os_pid, OsPid} = erlang:port_info(Port, os_pid),
    Me = self(),
    %% A failed run leaves no etsd behind.
    Guard = spawn(fun() ->
                          Ref = monitor(process, Me),
                          receive
                              {'DOWN', Ref, _, _, _} -> os:cmd("kill -9 " ++ integer_to_list(OsPid));
                              disarm -> ok
                          end
                  end),
    put(etsd, {Port, OsPid, Guard}),
    Node = enode(),
    %% Recovery replays the whole WAL before etsd registers: it takes
    %% longer as the WAL grows (until compaction keeps it short).
    case await(fun() -> port_alive(Port) andalso net_adm:ping(Node) =:= pong end, 300000) of
        ok -> {now_ms() - Start, OsPid};
        timeout ->
            print("soak: etsd did not come back (~s); its log ends:~n~s~n",
                  [case port_alive(Port) of true -> "still running"; false -> "exited" end,
                   log_tail(Log, 20)]),
            error({etsd_restart_failed, Log})
    end.

port_alive(Port) -> erlang:port_info(Port) =/= undefined.

log_tail(Log, N) ->
    case file:read_file(Log) of
        {ok, B} ->
            Lines = binary:split(B, <<"\n">>, [global, trim]),
            lists:join("\n", lists:nthtail(max(0, length(Lines) - N), Lines));
        _ -> "(no log)"
    end.

stop_etsd() ->
    case get(etsd) of
        {Port, OsPid, Guard} ->
            os:cmd("kill -TERM " ++ integer_to_list(OsPid)),
            receive {Port, {exit_status, _}} -> ok
            after 10000 -> os:cmd("kill -9 " ++ integer_to_list(OsPid))
            end,
            Guard ! disarm;
        _ -> ok
    end.

%% SIGKILL, then start again on the same data dir; the restart time is
%% until it answers ping, and until its table is as large as before.
kill_and_restart_etsd(T0) ->
    {Port, OsPid, Guard} = get(etsd),
    Before = etsd_size(),
    At = now_ms(),
    os:cmd("kill -KILL " ++ integer_to_list(OsPid)),
    receive {Port, {exit_status, _}} -> ok after 10000 -> ok end,
    Guard ! disarm,
    {PingMs, _} = start_etsd(),
    Start = now_ms() - PingMs,
    await(fun() -> is_integer(Before) andalso etsd_size() >= Before end, 60000),
    put(restarts, [{etsd_kill, At - T0, {PingMs, now_ms() - Start}} | get(restarts)]).

fmt_restart({Ping, Loaded}) ->
    io_lib:format("answered ping after ~b ms, table back to its size after ~b ms", [Ping, Loaded]);
fmt_restart(Ms) -> io_lib:format("~b ms", [Ms]).

etsd_size() -> size_on(enode()).

size_on(Node) ->
    try erpc:call(Node, ets, info, [users, size], 5000)
    catch _:_ -> undefined
    end.

await(Fun, Ms) ->
    Deadline = now_ms() + Ms,
    await_loop(Fun, Deadline).

await_loop(Fun, Deadline) ->
    case catch Fun() of
        true -> ok;
        _ ->
            case now_ms() > Deadline of
                true -> timeout;
                false -> receive after 50 -> ok end, await_loop(Fun, Deadline)
            end
    end.

lookups(Node, Keys, Ok, Err) ->
    receive
        {stop, From} -> From ! {lookups, Ok, Err}
    after 2 ->
            K = key(prefix(rand:uniform(2) - 1), rand:uniform(Keys) - 1),
            try erpc:call(Node, ets, lookup, [users, K], 2000) of
                L when is_list(L) -> lookups(Node, Keys, Ok + 1, Err)
            catch _:_ ->
                    receive after 100 -> ok end,
                    lookups(Node, Keys, Ok, Err + 1)
            end
    end.

%% ---- samples and checks ---------------------------------------------------

sample(Now) ->
    #{data_dir := DD, log := Log, nodes := [A, B]} = get(soak),
    {_, OsPid, _} = get(etsd),
    P = "/proc/" ++ integer_to_list(OsPid),
    #{t_s => (Now - get(t0)) div 1000,
      rss_kb => rss_kb(P), fds => fds(P),
      data_bytes => dir_bytes(DD), log_bytes => filelib:file_size(Log),
      etsd => etsd_size(), a => size_on(A), b => size_on(B),
      writes => written()}.

rss_kb(P) ->
    case file:read_file(P ++ "/status") of
        {ok, S} ->
            case re:run(S, "VmRSS:\\s+([0-9]+) kB", [{capture, all_but_first, list}]) of
                {match, [N]} -> list_to_integer(N);
                _ -> undefined
            end;
        _ -> undefined
    end.

fds(P) ->
    case file:list_dir(P ++ "/fd") of
        {ok, L} -> length(L);
        _ -> undefined
    end.

dir_bytes(D) ->
    case file:list_dir(D) of
        {ok, L} -> lists:sum([filelib:file_size(filename:join(D, F)) || F <- L]);
        _ -> 0
    end.

print_sample(#{t_s := T, rss_kb := R, fds := F, data_bytes := D, log_bytes := L,
               etsd := E, a := A, b := B, writes := W}) ->
    print("t=~5b s  rss=~7s  fds=~4w  data-dir=~9s  stderr=~8s  table etsd=~w a=~w b=~w  "
          "writes=~b~n", [T, kb(R), F, bytes(D), bytes(L), E, A, B, W]).

kb(undefined) -> "?";
kb(K) -> io_lib:format("~.1f MB", [K / 1024]).

bytes(N) when N >= 1048576 -> io_lib:format("~.1f MB", [N / 1048576]);
bytes(N) -> io_lib:format("~b kB", [N div 1024]).

%% The three tables hold the same objects.
await_agree(Nodes, Want, Ms) ->
    Deadline = now_ms() + Ms,
    agree_loop(Nodes, Want, Deadline).

agree_loop(Nodes, Want, Deadline) ->
    Sizes = [size_on(N) || N <- [enode() | Nodes]],
    case lists:usort(Sizes) of
        [Want] ->
            [E | Bs] = [lists:sort(tab(N)) || N <- [enode() | Nodes]],
            case lists:all(fun(T) -> T =:= E end, Bs) of
                true -> {ok, Want};
                false when is_integer(Deadline) ->
                    case now_ms() > Deadline of
                        true -> {differ, Want, [length(E -- T) || T <- Bs]};
                        false -> receive after 500 -> ok end, agree_loop(Nodes, Want, Deadline)
                    end
            end;
        _ ->
            case now_ms() > Deadline of
                true -> {sizes, Sizes, Want};
                false -> receive after 500 -> ok end, agree_loop(Nodes, Want, Deadline)
            end
    end.

tab(Node) -> erpc:call(Node, ets, tab2list, [users], 60000).

%% Bounded: the second half of the run peaks no higher than the first half
%% (after the first sample) plus half again and a slack.
checks(Samples, Agree) ->
    Mid = length(Samples) div 2,
    {H1, H2} = lists:split(max(1, Mid), Samples),
    H1b = case H1 of [_ | T] when T =/= [] -> T; _ -> H1 end,
    [bounded(rss_kb, H1b, H2, 20 * 1024, "RSS"),
     bounded(fds, H1b, H2, 10, "open fds"),
     wal(H1b, H2),
     {tables_agree, case Agree of {ok, _} -> ok; _ -> failed end,
      io_lib:format("~p", [Agree])}].

peak(Key, L) -> lists:max([V || S <- L, is_integer(V = maps:get(Key, S))] ++ [0]).

bounded(Key, H1, H2, Slack, What) ->
    P1 = peak(Key, H1),
    P2 = peak(Key, H2),
    Res = case P2 =< P1 * 3 div 2 + Slack of true -> ok; false -> failed end,
    {Key, Res, io_lib:format("~s peak ~b in the first half, ~b in the second", [What, P1, P2])}.

%% The WAL is reported, not judged: it stays bounded only with automatic
%% compaction.
wal(H1, H2) ->
    P1 = peak(data_bytes, H1),
    P2 = peak(data_bytes, H2),
    {data_dir_bytes, report,
     io_lib:format("snapshot + WAL peak ~s in the first half, ~s in the second~s",
                   [bytes(P1), bytes(P2),
                    case P2 > P1 * 3 div 2 + 1048576 of
                        true -> " (growing: no compaction in this build)";
                        false -> " (bounded)"
                    end])}.
