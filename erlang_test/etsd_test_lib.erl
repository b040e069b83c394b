%% etsd_test_lib: helpers shared by the Common Test suites: paths, a real
%% etsd process per test case (started by etsd_peer, src/), BEAM peers on
%% 127.0.0.1, and waiting.
-module(etsd_test_lib).

-export([root/0, build_dir/0, etsd_path/0, tool_path/1,
         run/2, start_peer/1, start_peer/2, await/2, await/3,
         start_etsd/1, stop_etsd/1, kill_etsd/2, await_exit/2, etsd_log/1, unique_name/1,
         etsd_port/1, log_has/2, await_log/3]).
%% A Common Test hook (rebar.config's ct_hooks): fails a test case whose
%% etsd logged a sanitizer report.
-export([id/1, init/2, pre_init_per_testcase/4, post_end_per_testcase/5,
         post_end_per_suite/4, sanitizer_report/1]).

-define(LOGS, etsd_test_logs).

%% The project's top folder: ETSD_ROOT from the Makefile, or found upwards
%% from this module's beam.
root() ->
    case os:getenv("ETSD_ROOT") of
        false -> find_root(filename:dirname(code:which(?MODULE)));
        Dir -> Dir
    end.

find_root("/") -> error(no_project_root);
find_root(Dir) ->
    case filelib:is_regular(filename:join(Dir, "rebar.config")) of
        true -> Dir;
        false -> find_root(filename:dirname(Dir))
    end.

build_dir() ->
    case os:getenv("ETSD_BUILD") of
        false -> filename:join(root(), "build");
        Dir -> Dir
    end.

etsd_path() -> filename:join(build_dir(), "etsd").

%% A helper program built from test/tools/Name.c.
tool_path(Name) -> filename:join(build_dir(), Name).

%% Runs Program with Args to completion; returns {ExitStatus, Output}.
run(Program, Args) ->
    Port = open_port({spawn_executable, Program},
                     [{args, Args}, exit_status, binary, stderr_to_stdout]),
    collect(Port, []).

collect(Port, Acc) ->
    receive
        {Port, {data, D}} -> collect(Port, [D | Acc]);
        {Port, {exit_status, S}} -> {S, iolist_to_binary(lists:reverse(Acc))}
    after 60000 -> error({timeout, Port})
    end.

%% Starts a BEAM peer on 127.0.0.1 with this node's cookie and code path.
%% Returns {ok, PeerPid, Node}.
start_peer(Name) -> start_peer(Name, []).

start_peer(Name, ExtraArgs) ->
    Args = ["-setcookie", atom_to_list(erlang:get_cookie()),
            "-pa" | code:get_path()] ++ ExtraArgs,
    peer:start_link(#{name => Name, host => "127.0.0.1", longnames => true,
                      connection => standard_io, args => Args}).

%% Polls Fun until it returns true or Ms milliseconds pass; returns true or
%% fails the test with {timeout, What}.
await(Fun, Ms) -> await(Fun, Ms, Fun).

await(Fun, Ms, What) ->
    Deadline = erlang:monotonic_time(millisecond) + Ms,
    await_loop(Fun, Deadline, What).

await_loop(Fun, Deadline, What) ->
    case catch Fun() of
        true -> true;
        _ ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> ct:fail({timeout, What});
                false ->
                    receive after 20 -> ok end,
                    await_loop(Fun, Deadline, What)
            end
    end.

%% A node name part no other test uses: Prefix_N.
unique_name(Prefix) ->
    %% The OS pid keeps names apart between two test runs on one epmd.
    lists:flatten(io_lib:format("~s_~s_~b", [Prefix, os:getpid(),
                                             erlang:unique_integer([positive])])).

%% Starts build/etsd through etsd_peer and waits until it answers
%% net_adm:ping. Opts is a CT Config list, or a map with:
%%   config   => CT Config (its priv_dir gets the log file)   (or dir => Dir)
%%   name     => name prefix (default "etsd"); a unique suffix is added
%%   sname    => true for --sname (host: this machine's short name)
%%   host     => the host of --name (default "127.0.0.1"; "::1" for IPv6)
%%   wrap     => a command (list of strings) that runs etsd, given as its
%%               last arguments (os_pid is then the wrapper's)
%%   args     => extra command line arguments (list of strings)
%%   cookie   => cookie atom (default: this node's); none: no --cookie
%%   env      => [{Var, Value}] added to etsd's environment
%%   wait     => ping (default: until it answers net_adm:ping from this
%%               node), epmd (until EPMD lists it: for --sname, another
%%               cookie or a short net_ticktime) or false
%% Returns a map #{node, os_pid, peer, log, name, args} for stop_etsd/1.
%% etsd_peer SIGKILLs etsd if the calling process dies first, so a failed
%% test leaves no etsd behind.
start_etsd(Config) when is_list(Config) -> start_etsd(#{config => Config});
start_etsd(Opts) when is_map(Opts) ->
    Dir = case Opts of
              #{dir := D} -> D;
              #{config := C} -> proplists:get_value(priv_dir, C)
          end,
    Name = unique_name(maps:get(name, Opts, "etsd")),
    Log = filename:join(Dir, Name ++ ".log"),
    %% the sanitizer hook reads it after the test case (no table: no hook)
    catch ets:insert(?LOGS, {Log, 0}),
    PeerOpts = #{name => Name,
                 longnames => not maps:get(sname, Opts, false),
                 host => maps:get(host, Opts, "127.0.0.1"),
                 wrap => maps:get(wrap, Opts, []),
                 cookie => maps:get(cookie, Opts, erlang:get_cookie()),
                 args => maps:get(args, Opts, []),
                 env => maps:get(env, Opts, []),
                 exec => etsd_path(),
                 log => Log,
                 wait => case maps:get(wait, Opts, ping) of
                             true -> ping;
                             W -> W
                         end,
                 timeout => 10000},
    case etsd_peer:start(PeerOpts) of
        {ok, Peer, Node} ->
            #{node => Node, os_pid => etsd_peer:os_pid(Peer), peer => Peer, log => Log,
              name => Name, args => maps:get(args, Opts, [])};
        {error, {Why, _, Out}} ->
            ct:log("etsd ~s did not start (~p):~n~s", [Name, Why, Out]),
            ct:fail({timeout, {etsd_start, Name, Log}})
    end.

%% etsd's distribution port from EPMD, or undefined.
etsd_port(#{name := Name}) ->
    case erl_epmd:port_please(Name, "127.0.0.1") of
        {port, P, _} -> P;
        _ -> undefined
    end.

%% Stops etsd with SIGTERM and returns its exit status (or killed after 10 s).
stop_etsd(#{peer := Peer}) ->
    {S, _Log} = etsd_peer:stop(Peer),
    S.

%% Sends a signal ("KILL", "STOP", "CONT", "TERM") to etsd.
kill_etsd(#{peer := Peer}, Sig) ->
    etsd_peer:signal(Peer, Sig).

%% Waits until etsd has exited: {ok, ExitStatus} or timeout.
await_exit(#{peer := Peer}, Ms) ->
    etsd_peer:wait_exit(Peer, Ms).

%% The log file's contents so far.
etsd_log(#{log := Log}) ->
    case file:read_file(Log) of
        {ok, B} -> B;
        _ -> <<>>
    end.

%% true when etsd's log matches the regular expression Re.
log_has(E, Re) ->
    re:run(etsd_log(E), Re, [{capture, none}]) =:= match.

%% Waits until etsd's log matches Re.
await_log(E, Re, Ms) ->
    await(fun() -> log_has(E, Re) end, Ms, {log, Re}).

%% ---- Sanitizer reports ----------------------------------------------------
%% Under `make ct-asan` etsd is built with AddressSanitizer and
%% UndefinedBehaviorSanitizer and any report ends it with a non-zero
%% status; a test that stops etsd by SIGKILL, or never looks at its exit,
%% would still pass. So every etsd log started by start_etsd/1 is read
%% after each test case, from where the last reading ended, and a report
%% in it fails that test case.

id(_Opts) -> etsd_sanitizer_hook.

init(_Id, _Opts) ->
    %% The table outlives the processes that run suites and test cases.
    Self = self(),
    spawn(fun() ->
                  ets:new(?LOGS, [named_table, public, set]),
                  Self ! {?LOGS, ready},
                  receive stop -> ok end
          end),
    receive {?LOGS, ready} -> ok after 5000 -> ok end,
    {ok, #{}}.

%% ETSD_CT_SKIP="Suite:Case Suite:Case": cases skipped in this run, for
%% `make ct-asan`, whose sanitized etsd is too slow for a case's timing.
pre_init_per_testcase(Suite, TC, Config, State) ->
    Skip = string:lexemes(os:getenv("ETSD_CT_SKIP", ""), " "),
    case lists:member(atom_to_list(Suite) ++ ":" ++ atom_to_list(TC), Skip) of
        true -> {{skip, "in ETSD_CT_SKIP: its timing does not hold in this build"}, State};
        false -> {Config, State}
    end.

post_end_per_testcase(_Suite, _TC, _Config, Return, State) ->
    {check_logs(Return), State}.

post_end_per_suite(_Suite, _Config, Return, State) ->
    {check_logs(Return), State}.

check_logs(Return) ->
    Logs = try ets:tab2list(?LOGS) catch error:badarg -> [] end,
    Reports = lists:filtermap(fun({Log, Off}) -> read_new(Log, Off) end, Logs),
    case Reports of
        [] -> Return;
        [{Log, Excerpt} | _] ->
            ct:pal("sanitizer report in ~s:~n~s", [Log, Excerpt]),
            {fail, {sanitizer_report, Log}}
    end.

read_new(Log, Off) ->
    case file:read_file(Log) of
        {ok, B} when byte_size(B) > Off ->
            ets:insert(?LOGS, {Log, byte_size(B)}),
            case sanitizer_report(binary:part(B, Off, byte_size(B) - Off)) of
                nomatch -> false;
                Excerpt -> {true, {Log, Excerpt}}
            end;
        _ -> false
    end.

%% The first sanitizer report in Bin (up to 4 kB of it), or nomatch.
sanitizer_report(Bin) ->
    Re = "ERROR: (Address|Leak|Memory|Thread)Sanitizer|runtime error: |"
         "SUMMARY: [A-Za-z]+Sanitizer",
    case re:run(Bin, Re, [{capture, first, index}]) of
        {match, [{At, _}]} ->
            Start = max(0, At - 200),
            binary:part(Bin, Start, min(4096, byte_size(Bin) - Start));
        nomatch -> nomatch
    end.
