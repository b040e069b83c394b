%% etsd_test_lib: helpers shared by the Common Test suites: paths, a real
%% etsd process per test case, BEAM peers on 127.0.0.1, and waiting.
-module(etsd_test_lib).

-export([root/0, build_dir/0, etsd_path/0, tool_path/1,
         run/2, start_peer/1, start_peer/2, await/2, await/3]).

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
