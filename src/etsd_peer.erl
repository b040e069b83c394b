%% etsd_peer: starts a real etsd for an integration test, the way OTP's
%% peer module starts a BEAM node: with a name, a cookie, the nodes to join,
%% a data directory and any other flags; waits until it answers (or has
%% joined the PubSub groups); signals, stops or kills it; and hands back
%% what it logged. Usable from Common Test and from ExUnit
%% (`:etsd_peer.start(%{join: [node()]})`).
%%
%% One process per etsd. It monitors the process that started it and kills
%% etsd (SIGKILL) when that process dies, so a failed test leaves no etsd
%% behind; start_link/1 links to it as well.
-module(etsd_peer).
-behaviour(gen_server).
-compile({no_auto_import, [node/1]}).

-export([start/1, start_link/1, stop/1, kill/1, signal/2, wait_exit/2,
         node/1, os_pid/1, log/1, joined/2]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-type options() ::
        #{name => atom() | string(),      %% node name part (default etsd_<unique>)
          host => string(),               %% default "127.0.0.1"
          longnames => boolean(),         %% default true; false: --sname
          cookie => atom() | none,        %% default erlang:get_cookie()
          join => [node()],               %% --join (default [])
          data_dir => file:filename(),    %% --data-dir (default: memory only)
          args => [string()],             %% any other flags
          env => [{string(), string() | false}],
          exec => file:filename(),        %% default $ETSD, else etsd on PATH
          wrap => [string()],             %% a command that execs etsd (its
                                          %% program, then its arguments),
                                          %% e.g. ["/usr/bin/setpriv", ...]
          log => file:filename(),         %% also append etsd's output here
          wait => ping | epmd | joined | false,   %% default ping
          scope => atom(),                %% pg scope for wait => joined
          timeout => timeout()}.          %% for the wait (default 15000 ms)
-export_type([options/0]).

-define(LOG_KEEP, 4 * 1024 * 1024).      %% bytes of output kept in memory

%% ---- API -------------------------------------------------------------------

%% Starts etsd and waits as Opts says. Returns {ok, Pid, Node}, or
%% {error, Reason} with Reason {exited, Status, Log} when etsd stopped
%% first, {timeout, What, Log} when the wait ran out, or {no_etsd, Path}.
-spec start(options()) -> {ok, pid(), node()} | {error, term()}.
start(Opts) -> do_start(Opts, start).

-spec start_link(options()) -> {ok, pid(), node()} | {error, term()}.
start_link(Opts) -> do_start(Opts, start_link).

%% SIGTERM, then SIGKILL after 10 s. Returns {ExitStatus | killed, Log}
%% and ends the etsd_peer process.
-spec stop(pid()) -> {non_neg_integer() | killed, binary()}.
stop(Pid) -> gen_server:call(Pid, {stop, "TERM", 10000}, infinity).

%% SIGKILL at once. Returns {ExitStatus, Log} (137: killed by the signal).
-spec kill(pid()) -> {non_neg_integer() | killed, binary()}.
kill(Pid) -> gen_server:call(Pid, {stop, "KILL", 10000}, infinity).

%% Sends a signal ("TERM", "INT", "KILL", "STOP", "CONT", ...) and returns.
-spec signal(pid(), string()) -> ok.
signal(Pid, Sig) -> gen_server:call(Pid, {signal, Sig}).

%% Waits until etsd has exited: {ok, ExitStatus}, or timeout.
-spec wait_exit(pid(), timeout()) -> {ok, non_neg_integer()} | timeout.
wait_exit(Pid, Ms) ->
    try gen_server:call(Pid, wait_exit, Ms)
    catch exit:{timeout, _} -> timeout
    end.

-spec node(pid()) -> node().
node(Pid) -> gen_server:call(Pid, node).

-spec os_pid(pid()) -> non_neg_integer().
os_pid(Pid) -> gen_server:call(Pid, os_pid).

%% What etsd wrote to stdout and stderr so far (its log lines).
-spec log(pid()) -> binary().
log(Pid) -> gen_server:call(Pid, log).

%% true once some group in Scope on JoinNode has a member on Etsd: the
%% cluster's PubSub broadcasts reach it.
-spec joined(node(), node()) -> boolean().
joined(Etsd, JoinNode) -> joined(Etsd, JoinNode, 'Elixir.Phoenix.PubSub').

joined(Etsd, JoinNode, Scope) ->
    try erpc:call(JoinNode, fun() ->
                                    [G || G <- pg:which_groups(Scope),
                                          P <- pg:get_members(Scope, G),
                                          erlang:node(P) =:= Etsd] =/= []
                            end, 5000)
    catch _:_ -> false
    end.

%% ---- start -------------------------------------------------------------------

do_start(Opts, How) ->
    case exec_path(Opts) of
        {error, _} = E -> E;
        {ok, Exec} ->
            Start = case How of start -> start; start_link -> start_link end,
            case gen_server:Start(?MODULE, {Opts, Exec, self()}, []) of
                {ok, Pid} -> await(Pid, Opts);
                {error, _} = E -> E
            end
    end.

exec_path(#{exec := Path}) -> {ok, Path};
exec_path(_) ->
    case os:getenv("ETSD") of
        false ->
            case os:find_executable("etsd") of
                false -> {error, {no_etsd, "set exec => Path or $ETSD, or put etsd on PATH"}};
                P -> {ok, P}
            end;
        P -> {ok, P}
    end.

await(Pid, Opts) ->
    Node = node(Pid),
    Ms = maps:get(timeout, Opts, 15000),
    Ready = case maps:get(wait, Opts, ping) of
                ping -> fun() -> net_adm:ping(Node) =:= pong end;
                epmd ->
                    [Name, Host] = string:split(atom_to_list(Node), "@"),
                    %% An IP literal goes as an address: a node on IPv4
                    %% cannot look up "::1" as a host name.
                    At = case inet:parse_address(Host) of
                             {ok, IP} -> IP;
                             _ -> Host
                         end,
                    fun() -> element(1, erl_epmd:port_please(Name, At)) =:= port end;
                joined ->
                    Scope = maps:get(scope, Opts, 'Elixir.Phoenix.PubSub'),
                    Join = maps:get(join, Opts, []),
                    fun() -> lists:all(fun(J) -> joined(Node, J, Scope) end, Join) end;
                false -> fun() -> true end
            end,
    Deadline = erlang:monotonic_time(millisecond) + Ms,
    poll(Pid, Ready, Deadline, maps:get(wait, Opts, ping)).

poll(Pid, Ready, Deadline, What) ->
    case gen_server:call(Pid, status) of
        {exited, S} ->
            {_, Log} = stop(Pid),
            {error, {exited, S, Log}};
        running ->
            case catch Ready() of
                true -> {ok, Pid, node(Pid)};
                _ ->
                    case erlang:monotonic_time(millisecond) > Deadline of
                        true ->
                            {_, Log} = kill(Pid),
                            {error, {timeout, What, Log}};
                        false ->
                            receive after 20 -> ok end,
                            poll(Pid, Ready, Deadline, What)
                    end
            end
    end.

%% ---- gen_server ----------------------------------------------------------------

init({Opts, Exec, Owner}) ->
    process_flag(trap_exit, true),
    Name = case maps:get(name, Opts, undefined) of
               undefined -> "etsd_" ++ os:getpid() ++ "_" ++
                                integer_to_list(erlang:unique_integer([positive]));
               A when is_atom(A) -> atom_to_list(A);
               S -> S
           end,
    {NameArgs, Node} =
        case maps:get(longnames, Opts, true) of
            true ->
                Host = maps:get(host, Opts, "127.0.0.1"),
                {["--name", Name ++ "@" ++ Host], list_to_atom(Name ++ "@" ++ Host)};
            false ->
                {ok, H} = inet:gethostname(),
                {["--sname", Name], list_to_atom(Name ++ "@" ++ H)}
        end,
    Cookie = case maps:get(cookie, Opts, erlang:get_cookie()) of
                 none -> [];
                 nocookie -> [];
                 C -> ["--cookie", atom_to_list(C)]
             end,
    Join = case maps:get(join, Opts, []) of
               [] -> [];
               Js -> ["--join", lists:flatten(lists:join(",", [atom_to_list(J) || J <- Js]))]
           end,
    Data = case maps:get(data_dir, Opts, undefined) of
               undefined -> [];
               D -> ["--data-dir", D]
           end,
    Args = NameArgs ++ Cookie ++ Join ++ Data ++ maps:get(args, Opts, []),
    LogFd = case maps:get(log, Opts, undefined) of
                undefined -> undefined;
                F ->
                    ok = filelib:ensure_dir(F),
                    {ok, Fd} = file:open(F, [append, raw, binary]),
                    Fd
            end,
    %% A wrapper must exec etsd in the same process, so that signals and
    %% the exit status are etsd's own.
    {Prog, PArgs} = case maps:get(wrap, Opts, []) of
                        [] -> {Exec, Args};
                        [W | WArgs] -> {W, WArgs ++ [Exec | Args]}
                    end,
    try open_port({spawn_executable, Prog},
                  [{args, [lists:flatten(A) || A <- PArgs]}, {env, maps:get(env, Opts, [])},
                   exit_status, binary, stderr_to_stdout, use_stdio]) of
        Port ->
            {os_pid, OsPid} = erlang:port_info(Port, os_pid),
            monitor(process, Owner),
            {ok, #{port => Port, os_pid => OsPid, node => Node, log => [], log_size => 0,
                   log_fd => LogFd, status => running, waiters => []}}
    catch error:Why ->
            {stop, {cannot_run, Exec, Why}}
    end.

handle_call(node, _From, S) -> {reply, maps:get(node, S), S};
handle_call(os_pid, _From, S) -> {reply, maps:get(os_pid, S), S};
handle_call(log, _From, S) -> {reply, log_bin(S), S};
handle_call(status, _From, #{status := running} = S) -> {reply, running, S};
handle_call(status, _From, #{status := St} = S) -> {reply, {exited, St}, S};
handle_call({signal, Sig}, _From, S) ->
    send_signal(S, Sig),
    {reply, ok, S};
handle_call(wait_exit, From, #{status := running, waiters := W} = S) ->
    {noreply, S#{waiters := [From | W]}};
handle_call(wait_exit, _From, #{status := St} = S) ->
    {reply, {ok, St}, S};
handle_call({stop, _Sig, _Ms}, _From, #{status := St} = S) when St =/= running ->
    {stop, normal, {St, log_bin(S)}, S};
handle_call({stop, Sig, Ms}, From, #{waiters := W} = S) ->
    send_signal(S, Sig),
    Timer = erlang:send_after(Ms, self(), stop_deadline),
    {noreply, S#{waiters := [{stop, From, Timer} | W]}}.

handle_cast(_, S) -> {noreply, S}.

handle_info({Port, {data, D}}, #{port := Port} = S) ->
    {noreply, keep_log(S, D)};
handle_info({Port, {exit_status, St}}, #{port := Port, waiters := W} = S) ->
    S1 = S#{status := St, waiters := []},
    Stop = [begin erlang:cancel_timer(T), F end || {stop, F, T} <- W],
    [gen_server:reply(F, {ok, St}) || F <- W, not is_tuple(F) orelse element(1, F) =/= stop],
    case Stop of
        [] -> {noreply, S1};
        _ ->
            [gen_server:reply(F, {St, log_bin(S1)}) || F <- Stop],
            {stop, normal, S1}
    end;
handle_info(stop_deadline, #{status := running} = S) ->
    send_signal(S, "KILL"),
    {noreply, S};
handle_info({'DOWN', _, process, _, _}, S) ->
    %% The test that started etsd is gone: so is etsd.
    {stop, normal, S};
handle_info({'EXIT', Port, _}, #{port := Port} = S) ->
    %% The port closes as etsd exits; its exit_status says how.
    {noreply, S};
handle_info({'EXIT', _, Reason}, S) ->
    {stop, Reason, S};
handle_info(_, S) ->
    {noreply, S}.

terminate(_Reason, #{status := St} = S) ->
    St =:= running andalso send_signal(S, "KILL"),
    case maps:get(log_fd, S) of
        undefined -> ok;
        Fd -> file:close(Fd)
    end,
    ok.

send_signal(#{os_pid := OsPid, status := running}, Sig) ->
    _ = os:cmd("kill -" ++ Sig ++ " " ++ integer_to_list(OsPid)),
    ok;
send_signal(_, _) -> ok.

keep_log(#{log := L, log_size := N, log_fd := Fd} = S, D) ->
    Fd =:= undefined orelse file:write(Fd, D),
    N1 = N + byte_size(D),
    case N1 > ?LOG_KEEP of
        false -> S#{log := [D | L], log_size := N1};
        true ->
            B = iolist_to_binary(lists:reverse([D | L])),
            Tail = binary:part(B, byte_size(B) - ?LOG_KEEP, ?LOG_KEEP),
            S#{log := [Tail], log_size := ?LOG_KEEP}
    end.

log_bin(#{log := L}) -> iolist_to_binary(lists:reverse(L)).
