%% nodedown_SUITE: connections that end: a peer that goes silent (tick
%% timeout), a peer killed outright, and etsd's own clean shutdown.
-module(nodedown_SUITE).
-include_lib("common_test/include/ct.hrl").
-export([suite/0, all/0]).
-export([tick_timeout_drops_sigstopped_peer/1,
         sigkill_of_peer_gives_nodedown_and_noconnection/1,
         etsd_sigterm_gives_nodedown_on_peers_and_exit_0/1,
         etsd_sigint_exits_0_and_unregisters/1]).

suite() -> [{timetrap, {seconds, 60}}].

all() ->
    [tick_timeout_drops_sigstopped_peer, sigkill_of_peer_gives_nodedown_and_noconnection,
     etsd_sigterm_gives_nodedown_on_peers_and_exit_0, etsd_sigint_exits_0_and_unregisters].

new_mailbox(Node) ->
    {etsd_echo, Node} ! {new_mailbox, self(), undefined},
    receive {mailbox, Pid} -> Pid after 5000 -> ct:fail(no_mailbox) end.

%% A BEAM peer not linked to the test process (it is killed in some cases).
start_peer(Name, Extra) ->
    {ok, P, N} = peer:start(#{name => etsd_test_lib:unique_name(Name), host => "127.0.0.1",
                              longnames => true, connection => standard_io,
                              args => ["-setcookie", atom_to_list(erlang:get_cookie()),
                                       "-pa" | code:get_path()] ++ Extra}),
    {P, N, peer:call(P, os, getpid, [])}.

tick_timeout_drops_sigstopped_peer(Config) ->
    %% net_ticktime 2 on etsd and on the peer; this node never talks to
    %% etsd (its own ticktime is 60 s, so etsd would drop it too).
    E = #{node := Node} = etsd_test_lib:start_etsd(#{config => Config, name => "nd_tick",
                                                    args => ["--net-ticktime", "2"],
                                                    wait => epmd}),
    {P, PNode, OsPid} = start_peer("nd_tick_p", ["-kernel", "net_ticktime", "2"]),
    pong = peer:call(P, net_adm, ping, [Node]),
    os:cmd("kill -STOP " ++ OsPid),
    try
        etsd_test_lib:await_log(E, atom_to_list(PNode) ++ ": no data for net_ticktime", 8000),
        etsd_test_lib:await_log(E, atom_to_list(PNode) ++ ": nodedown: net_tick_timeout", 1000)
    after
        os:cmd("kill -CONT " ++ OsPid)
    end,
    peer:stop(P),
    0 = etsd_test_lib:stop_etsd(E).

sigkill_of_peer_gives_nodedown_and_noconnection(Config) ->
    E = #{node := Node} = etsd_test_lib:start_etsd(#{config => Config, name => "nd_kill"}),
    {P, PNode, OsPid} = start_peer("nd_kill_p", []),
    Target = peer:call(P, erlang, spawn, [fun() -> receive stop -> ok end end]),
    pong = peer:call(P, net_adm, ping, [Node]),
    Mb = new_mailbox(Node),
    Mb ! {monitor, Target, self()},
    Ref = receive {monitored, R} -> R after 5000 -> ct:fail(no_monitor) end,
    os:cmd("kill -KILL " ++ OsPid),
    receive {'DOWN', Ref, process, Target, noconnection} -> ok
    after 10000 -> ct:fail(no_noconnection)
    end,
    etsd_test_lib:await_log(E, atom_to_list(PNode) ++ ": nodedown", 5000),
    catch peer:stop(P),
    0 = etsd_test_lib:stop_etsd(E).

etsd_sigterm_gives_nodedown_on_peers_and_exit_0(Config) ->
    E = #{node := Node, name := Name} =
        etsd_test_lib:start_etsd(#{config => Config, name => "nd_term"}),
    {P, _, _} = start_peer("nd_term_p", []),
    Self = self(),
    Watcher = peer:call(P, erlang, apply,
                        [fun() ->
                                 spawn(fun() ->
                                               pong = net_adm:ping(Node),
                                               monitor_node(Node, true),
                                               Self ! {watching, self()},
                                               receive {nodedown, Node} -> Self ! peer_saw_nodedown
                                               end
                                       end)
                         end, []]),
    receive {watching, Watcher} -> ok after 5000 -> ct:fail(no_watcher) end,
    monitor_node(Node, true),
    0 = etsd_test_lib:stop_etsd(E),
    receive {nodedown, Node} -> ok after 5000 -> ct:fail(no_local_nodedown) end,
    receive peer_saw_nodedown -> ok after 5000 -> ct:fail(no_peer_nodedown) end,
    {ok, Names} = net_adm:names("127.0.0.1"),
    false = lists:keymember(Name, 1, Names),
    peer:stop(P).

etsd_sigint_exits_0_and_unregisters(Config) ->
    E = #{node := Node, name := Name} =
        etsd_test_lib:start_etsd(#{config => Config, name => "nd_int"}),
    monitor_node(Node, true),
    etsd_test_lib:kill_etsd(E, "INT"),
    receive {nodedown, Node} -> ok after 5000 -> ct:fail(no_nodedown) end,
    {ok, 0} = etsd_test_lib:await_exit(E, 5000),
    {ok, Names} = net_adm:names("127.0.0.1"),
    false = lists:keymember(Name, 1, Names),
    etsd_test_lib:await_log(E, "SIGINT: shutting down", 1000).
