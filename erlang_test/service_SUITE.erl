%% service_SUITE: etsd run as a service: `make install` lays out the program,
%% manual page, systemd unit and flags file; the manual names exactly the
%% options --help lists; etsd tells systemd it is ready (sd_notify over
%% NOTIFY_SOCKET); GET /metrics passes promtool, agrees with etsd:info(),
%% and hostile HTTP clients cost only their own connections.
-module(service_SUITE).
-include_lib("common_test/include/ct.hrl").
-include_lib("kernel/include/file.hrl").
-export([suite/0, all/0, init_per_testcase/2, end_per_testcase/2]).
-export([install_lays_out_program_manual_unit_and_flags_file/1,
         unit_file_passes_systemd_analyze_verify/1,
         etsd_runs_as_nobody_on_a_read_only_system_like_the_unit/1,
         manual_names_exactly_the_options_help_lists/1,
         notify_socket_hears_ready_after_epmd_registration_and_stopping/1,
         metrics_pass_promtool_and_agree_with_etsd_info/1,
         metrics_count_connections_messages_and_rpc_calls/1,
         hostile_http_clients_cost_only_their_own_connections/1]).

suite() -> [{timetrap, {seconds, 90}}].

all() ->
    [install_lays_out_program_manual_unit_and_flags_file,
     unit_file_passes_systemd_analyze_verify,
     etsd_runs_as_nobody_on_a_read_only_system_like_the_unit,
     manual_names_exactly_the_options_help_lists,
     notify_socket_hears_ready_after_epmd_registration_and_stopping,
     metrics_pass_promtool_and_agree_with_etsd_info,
     metrics_count_connections_messages_and_rpc_calls,
     hostile_http_clients_cost_only_their_own_connections].

init_per_testcase(Case, Config) ->
    Dir = filename:join(?config(priv_dir, Config),
                        atom_to_list(Case) ++ "_" ++
                            integer_to_list(erlang:unique_integer([positive]))),
    ok = filelib:ensure_path(Dir),
    [{work_dir, Dir} | Config].

end_per_testcase(_Case, Config) ->
    case ?config(etsd, Config) of
        undefined -> ok;
        E -> etsd_test_lib:stop_etsd(E)
    end,
    ok.

%% ---- install ------------------------------------------------------------

make_install(Vars) ->
    case os:find_executable("make") of
        false -> {skip, "no make on this system (an OTP root without a toolchain)"};
        Make ->
            Args = ["-s", "-C", etsd_test_lib:root(),
                    "BUILD=" ++ etsd_test_lib:build_dir(), "install" | Vars],
            {S, Out} = etsd_test_lib:run(Make, Args),
            ct:log("make ~p -> ~p~n~s", [Args, S, Out]),
            0 = S,
            ok
    end.

install_lays_out_program_manual_unit_and_flags_file(Config) ->
    Dest = filename:join(?config(work_dir, Config), "dest"),
    case make_install(["DESTDIR=" ++ Dest, "PREFIX=/usr"]) of
        {skip, _} = Skip -> Skip;
        ok ->
            P = fun(F) -> filename:join(Dest, F) end,
            {ok, #file_info{mode = BinMode}} = file:read_file_info(P("usr/bin/etsd")),
            8#755 = BinMode band 8#777,
            {0, Help} = etsd_test_lib:run(P("usr/bin/etsd"), ["--version"]),
            match = re:run(Help, "^etsd [0-9]", [{capture, none}]),
            true = filelib:is_regular(P("usr/share/man/man1/etsd.1")),
            true = filelib:is_regular(P("etc/default/etsd")),
            true = filelib:is_regular(P("usr/share/doc/etsd/etsd.default")),
            {ok, Unit} = file:read_file(P("usr/lib/systemd/system/etsd.service")),
            [match = re:run(Unit, "(?m)^" ++ L ++ "$", [{capture, none}])
             || L <- ["Type=notify", "ExecStart=/usr/bin/etsd \\$ETSD_ARGS",
                      "StateDirectory=etsd", "ProtectSystem=strict",
                      "NoNewPrivileges=yes", "EnvironmentFile=-/etc/default/etsd"]],
            nomatch = re:run(Unit, "@BINDIR@", [{capture, none}]),
            %% The sample flags file holds a command line etsd accepts.
            {ok, Env} = file:read_file(P("etc/default/etsd")),
            {match, [Flags]} = re:run(Env, "(?m)^ETSD_ARGS=\"([^\"]*)\"",
                                      [{capture, all_but_first, list}]),
            true = lists:member("--data-dir", string:lexemes(Flags, " ")),
            %% A second install keeps the flags file a user edited.
            ok = file:write_file(P("etc/default/etsd"), <<"ETSD_ARGS=\"--sname mine\"\n">>),
            ok = make_install(["DESTDIR=" ++ Dest, "PREFIX=/usr"]),
            {ok, <<"ETSD_ARGS=\"--sname mine\"\n">>} = file:read_file(P("etc/default/etsd")),
            ok
    end.

%% systemd-analyze verify needs ExecStart's program to exist, so the unit is
%% installed under a PREFIX in the test's folder (without DESTDIR).
unit_file_passes_systemd_analyze_verify(Config) ->
    case os:find_executable("systemd-analyze") of
        false -> {skip, "no systemd-analyze here"};
        Analyze ->
            Prefix = filename:join(?config(work_dir, Config), "prefix"),
            case make_install(["PREFIX=" ++ Prefix, "SYSCONFDIR=" ++ Prefix ++ "/etc"]) of
                {skip, _} = Skip -> Skip;
                ok ->
                    Unit = filename:join(Prefix, "lib/systemd/system/etsd.service"),
                    {S, Out} = etsd_test_lib:run(Analyze, ["verify", "--man=no", Unit]),
                    ct:log("systemd-analyze verify -> ~p~n~s", [S, Out]),
                    0 = S,
                    nomatch = re:run(Out, "etsd.service:", [{capture, none}]),
                    ok
            end
    end.

%% The unit's hardening, as far as it can be had without systemd: a root
%% file system mounted read-only but for the state directory
%% (ProtectSystem=strict, StateDirectory=), an unprivileged user with no
%% capabilities, and no_new_privs (NoNewPrivileges=yes). etsd starts,
%% stores, writes a table file, serves metrics and stops cleanly.
etsd_runs_as_nobody_on_a_read_only_system_like_the_unit(Config) ->
    State = filename:join(?config(work_dir, Config), "state"),
    ok = filelib:ensure_path(State),
    {ok, #file_info{}} = file:read_file_info(State),
    ok = file:change_owner(State, 65534, 65534),
    Script = "mount --make-rprivate / && mount --bind \"$1\" \"$1\" && "
             "mount --bind / / && mount -o remount,ro,bind / && shift && exec \"$@\"",
    Wrap = ["/usr/bin/unshare", "--mount", "/bin/sh", "-c", Script, "sh", State,
            "/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            "--no-new-privs"],
    %% Can this system do it (not inside a user namespace that maps nobody
    %% elsewhere, as the OTP roots' bubblewrap does)?
    ProbeFile = filename:join(State, "probe"),
    Probe = etsd_test_lib:run("/usr/bin/unshare", tl(Wrap) ++ ["/usr/bin/touch", ProbeFile]),
    file:delete(ProbeFile),
    case {os:find_executable("setpriv"), Probe} of
        {false, _} -> {skip, "no setpriv here"};
        {_, {S, Out}} when S =/= 0 -> {skip, "cannot run as nobody on a read-only root here: " ++
                                          binary_to_list(Out)};
        _ ->
            Port = free_port(),
            {ok, Peer, N} = etsd_peer:start(
                              #{exec => etsd_test_lib:etsd_path(), wrap => Wrap,
                                log => filename:join(?config(work_dir, Config), "ro.log"),
                                data_dir => State,
                                args => ["--metrics-port", integer_to_list(Port)],
                                env => [{"HOME", State}]}),
            true = rpc:call(N, etsd, insert, [users, {<<"ro">>, 1}]),
            ok = rpc:call(N, ets, tab2file, [users, "ro.ets"]),
            true = filelib:is_regular(filename:join([State, "files", "ro.ets"])),
            {ok, #file_info{uid = 65534}} =
                file:read_file_info(filename:join(State, "store.wal")),
            1 = value(scrape(Port), "etsd_table_objects{table=\"users\"}"),
            {0, Log} = etsd_peer:stop(Peer),
            nomatch = re:run(Log, "error|denied|Read-only", [{capture, none}]),
            ok
    end.

%% ---- manual page -----------------------------------------------------------

manual_names_exactly_the_options_help_lists(_Config) ->
    {0, Help} = etsd_test_lib:run(etsd_test_lib:etsd_path(), ["--help"]),
    FromHelp = options(Help, "--[a-z][a-z-]*[a-z]"),
    {ok, Man} = file:read_file(filename:join([etsd_test_lib:root(), "dist", "etsd.1"])),
    %% roff writes a dash as \-; comments (.\") are not the manual.
    Text = re:replace(re:replace(Man, "(?m)^\\.\\\\\".*$", "", [global]),
                      "\\\\-", "-", [global, {return, binary}]),
    FromMan = options(Text, "--[a-z][a-z-]*[a-z]") -- ["--help", "--version"],
    ct:log("help: ~p~nman: ~p", [FromHelp, FromMan]),
    [] = FromHelp -- FromMan,    %% documented in --help, missing from the manual
    [] = FromMan -- FromHelp,    %% in the manual, unknown to --help
    true = length(FromHelp) >= 20.

options(Text, Re) ->
    {match, L} = re:run(Text, Re, [global, {capture, first, list}]),
    lists:usort([O || [O] <- L]).

%% ---- sd_notify ------------------------------------------------------------------

notify_socket_hears_ready_after_epmd_registration_and_stopping(Config) ->
    %% A socket path must fit in sun_path (108 bytes): not under priv_dir.
    Path = "/tmp/etsd_notify_" ++ os:getpid() ++ "_" ++
        integer_to_list(erlang:unique_integer([positive])),
    file:delete(Path),
    {ok, S} = gen_udp:open(0, [{ifaddr, {local, Path}}, binary, {active, true}]),
    E = etsd_test_lib:start_etsd(#{config => Config, name => "notify", wait => false,
                                   env => [{"NOTIFY_SOCKET", Path}]}),
    Ready = receive
                {udp, S, _, _, Msg} -> Msg
            after 15000 -> ct:fail({no_notify, etsd_test_lib:etsd_log(E)})
            end,
    ct:log("notify: ~p", [Ready]),
    match = re:run(Ready, "(?m)^READY=1$", [{capture, none}]),
    %% Ready means registered: EPMD already lists it and it answers.
    true = etsd_test_lib:etsd_port(E) =/= undefined,
    pong = net_adm:ping(maps:get(node, E)),
    0 = etsd_test_lib:stop_etsd(E),
    receive
        {udp, S, _, _, Stop} -> match = re:run(Stop, "STOPPING=1", [{capture, none}])
    after 5000 -> ct:fail(no_stopping)
    end,
    gen_udp:close(S),
    file:delete(Path).

%% ---- metrics ---------------------------------------------------------------------

free_port() ->
    {ok, L} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}]),
    {ok, P} = inet:port(L),
    gen_tcp:close(L),
    P.

start_with_metrics(Config, Name, Extra) ->
    Port = free_port(),
    E = etsd_test_lib:start_etsd(#{config => Config, name => Name,
                                   args => ["--metrics-port", integer_to_list(Port),
                                            "--data-dir",
                                            filename:join(?config(work_dir, Config), "data")
                                            | Extra]}),
    {E, Port}.

%% One HTTP exchange on a fresh connection: returns {Status, Body}.
http(Port, Request) ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}]),
    ok = gen_tcp:send(S, Request),
    Reply = recv_all(S, []),
    gen_tcp:close(S),
    case binary:split(Reply, <<"\r\n\r\n">>) of
        [Head, Body] ->
            {match, [Code]} = re:run(Head, "^HTTP/1\\.1 ([0-9]{3})",
                                     [{capture, all_but_first, list}]),
            {list_to_integer(Code), Body};
        _ -> {closed, Reply}
    end.

recv_all(S, Acc) ->
    case gen_tcp:recv(S, 0, 10000) of
        {ok, D} -> recv_all(S, [D | Acc]);
        {error, closed} -> iolist_to_binary(lists:reverse(Acc))
    end.

scrape(Port) ->
    {200, Body} = http(Port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
    Body.

%% The value of one sample line, e.g. value(B, "etsd_peers_up").
value(Body, Sample) ->
    Re = "(?m)^" ++ re_quote(Sample) ++ " ([0-9.e+-]+)$",
    case re:run(Body, Re, [{capture, all_but_first, list}]) of
        {match, [V]} ->
            case string:to_integer(V) of
                {I, ""} -> I;
                _ -> list_to_float(V)
            end;
        nomatch -> ct:fail({no_sample, Sample, Body})
    end.

re_quote(S) ->
    re:replace(S, "[][\\\\^$.|?*+(){}]", "\\\\&", [global, {return, list}]).

metrics_pass_promtool_and_agree_with_etsd_info(Config) ->
    {E, Port} = start_with_metrics(Config, "metrics", []),
    N = maps:get(node, E),
    true = rpc:call(N, etsd, insert, [users, [{<<"u", (integer_to_binary(I))/binary>>, I}
                                               || I <- lists:seq(1, 100)]]),
    [{<<"u7">>, 7}] = rpc:call(N, ets, lookup, [users, <<"u7">>]),
    {badrpc, _} = rpc:call(N, nosuch, call, []),
    Body = scrape(Port),
    File = filename:join(?config(work_dir, Config), "metrics.txt"),
    ok = file:write_file(File, Body),
    case os:find_executable("promtool") of
        false -> ct:comment("promtool not installed here: format not checked");
        Promtool ->
            {S, Out} = etsd_test_lib:run("/bin/sh", ["-c", "exec \"$0\" check metrics < \"$1\"",
                                                     Promtool, File]),
            ct:log("promtool check metrics -> ~p~n~s", [S, Out]),
            0 = S
    end,
    Info = maps:get(metrics, rpc:call(N, etsd, info, [])),
    ct:log("etsd:info() metrics: ~p", [Info]),
    100 = value(Body, "etsd_table_objects{table=\"users\"}"),
    100 = maps:get(table_objects, Info),
    Mem = value(Body, "etsd_table_memory_bytes{table=\"users\"}"),
    Mem = maps:get(table_memory_bytes, Info),
    Mem = rpc:call(N, ets, info, [users, memory]) * erlang:system_info(wordsize),
    true = value(Body, "etsd_log_bytes") > 0,
    true = maps:get(log_bytes, Info) >= value(Body, "etsd_log_bytes"),
    1 = value(Body, "etsd_rpc_calls_total{module=\"etsd\",function=\"insert\",result=\"return\"}"),
    1 = value(Body, "etsd_rpc_calls_total{module=\"ets\",function=\"lookup\",result=\"return\"}"),
    1 = value(Body, "etsd_rpc_calls_total{module=\"other\",function=\"other\",result=\"error\"}"),
    Rpc = maps:get(rpc, Info),
    true = lists:member({<<"etsd">>, <<"insert">>, <<"return">>, 1}, Rpc),
    true = lists:member({<<"ets">>, <<"lookup">>, <<"return">>, 1}, Rpc),
    %% --fsync always: the inserts were synced, and timed.
    Syncs = value(Body, "etsd_fsync_duration_seconds_count"),
    true = Syncs >= 1,
    true = maps:get(count, maps:get(fsync, Info)) >= Syncs,
    Syncs = value(Body, "etsd_fsync_duration_seconds_bucket{le=\"+Inf\"}"),
    true = value(Body, "etsd_loop_turn_max_seconds") > 0,
    true = maps:get(loop_turn_max_us, Info) >= 0,
    1 = value(Body, "etsd_peers_up"),
    1 = maps:get(peers_up, Info),
    {200, <<>>} = http(Port, "HEAD /metrics HTTP/1.0\r\n\r\n"),
    0 = etsd_test_lib:stop_etsd(E).

metrics_count_connections_messages_and_rpc_calls(Config) ->
    {E, Port} = start_with_metrics(Config, "metrics_count", []),
    N = maps:get(node, E),
    B0 = scrape(Port),
    Up0 = value(B0, "etsd_connection_events_total{event=\"up\"}"),
    In0 = value(B0, "etsd_dist_messages_total{direction=\"in\"}"),
    Out0 = value(B0, "etsd_dist_messages_total{direction=\"out\"}"),
    BIn0 = value(B0, "etsd_dist_bytes_total{direction=\"in\"}"),
    {ok, P, PN} = etsd_test_lib:start_peer(etsd_test_lib:unique_name("mpeer")),
    Big = binary:copy(<<"x">>, 100000),
    [N = erpc:call(PN, erpc, call, [N, erlang, node, []]) || _ <- lists:seq(1, 10)],
    true = erpc:call(PN, erpc, call, [N, ets, insert, [users, {k, Big}]]),
    B1 = scrape(Port),
    2 = value(B1, "etsd_peers_up"),
    true = value(B1, "etsd_connection_events_total{event=\"up\"}") >= Up0 + 1,
    true = value(B1, "etsd_dist_messages_total{direction=\"in\"}") >= In0 + 11,
    true = value(B1, "etsd_dist_messages_total{direction=\"out\"}") >= Out0 + 11,
    true = value(B1, "etsd_dist_bytes_total{direction=\"in\"}") >= BIn0 + 100000,
    10 = value(B1, "etsd_rpc_calls_total{module=\"erlang\",function=\"node\",result=\"return\"}"),
    %% A big tab2list is encoded in slices off the call path: counted too.
    [true = rpc:call(N, ets, insert, [users, [{I, I} || I <- lists:seq(B, B + 9999)]])
     || B <- lists:seq(1, 60000, 10000)],
    60001 = length(erpc:call(N, ets, tab2list, [users])),
    60001 = length(rpc:call(N, ets, tab2list, [users])),
    2 = value(scrape(Port),
              "etsd_rpc_calls_total{module=\"ets\",function=\"tab2list\",result=\"return\"}"),
    peer:stop(P),
    etsd_test_lib:await(fun() -> value(scrape(Port), "etsd_peers_up") =:= 1 end, 10000,
                        peer_down_counted),
    B2 = scrape(Port),
    true = value(B2, "etsd_connection_events_total{event=\"down\"}") >= 1,
    0 = etsd_test_lib:stop_etsd(E).

%% ---- hostile HTTP --------------------------------------------------------------

hostile_http_clients_cost_only_their_own_connections(Config) ->
    {E, Port} = start_with_metrics(Config, "metrics_hostile", []),
    N = maps:get(node, E),
    %% Junk, a bad method line, a request past the size limit, a header
    %% line without an end: each gets its own error and its connection closed.
    {400, _} = http(Port, "\x00\x01\x02 junk junk\r\n\r\n"),
    {400, _} = http(Port, "GET /metrics HTTP/9.9.9\r\n\r\n"),
    {405, _} = http(Port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
    {404, _} = http(Port, "GET /" ++ lists:duplicate(300, $a) ++ " HTTP/1.1\r\n\r\n"),
    Huge = ["GET /metrics HTTP/1.1\r\n",
            [["X-", integer_to_list(I), ": ", lists:duplicate(100, $v), "\r\n"]
             || I <- lists:seq(1, 200)], "\r\n"],
    case http(Port, Huge) of
        {431, _} -> ok;
        {closed, _} -> ok    %% closed before the whole header was sent
    end,
    %% Slow clients: half a request line each, never finished.
    Slow = [begin
                {ok, S} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}]),
                ok = gen_tcp:send(S, "GET /metr"),
                S
            end || _ <- lists:seq(1, 10)],
    %% Meanwhile a well-behaved scrape is answered, and the node serves rpc.
    T0 = erlang:monotonic_time(millisecond),
    _ = scrape(Port),
    true = erlang:monotonic_time(millisecond) - T0 < 2000,
    N = rpc:call(N, erlang, node, []),
    %% The slow ones are cut off after the request time limit (5 s).
    [{error, closed} = gen_tcp:recv(S, 0, 15000) || S <- Slow],
    %% A flood past the connection limit: the extra ones are closed at once,
    %% and once the flood ends the endpoint serves again.
    Flood = [begin
                 {ok, S} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}]),
                 S
             end || _ <- lists:seq(1, 40)],
    N = rpc:call(N, erlang, node, []),
    [gen_tcp:close(S) || S <- Flood],
    etsd_test_lib:await(fun() -> element(1, http(Port, "GET /metrics HTTP/1.0\r\n\r\n")) =:= 200
                        end, 10000, scrape_after_flood),
    pong = net_adm:ping(N),
    0 = etsd_test_lib:stop_etsd(E).
