%% handshake_SUITE: etsd joins the cluster as a hidden node: connections in
%% both directions with long and short names, ping, nodes(hidden), cookies,
%% and many BEAM peers at once.
-module(handshake_SUITE).
-include_lib("common_test/include/ct.hrl").
-export([suite/0, all/0, end_per_testcase/2, ask_collector/1]).
-export([beam_connects_and_pings_longnames/1,
         etsd_is_hidden_in_nodes/1,
         etsd_connects_out_to_beam_peer/1,
         short_names_work_both_ways/1,
         wrong_cookie_refused_incoming/1,
         wrong_cookie_refused_outgoing/1,
         ten_beam_peers_at_once/1,
         epmd_lists_etsd_until_sigterm/1,
         simultaneous_connect_between_two_etsd_nodes_resolves/1,
         registers_again_when_epmd_restarts/1,
         cookie_file_is_read_and_checked_as_erl_does/1,
         unknown_option_exits_2_with_usage/1,
         epmd_names_client_lists_etsd_with_its_port/1,
         simultaneous_connect_between_beam_and_etsd_resolves/1,
         join_connects_out_at_start/1]).

suite() -> [{timetrap, {seconds, 60}}].

all() ->
    [beam_connects_and_pings_longnames, etsd_is_hidden_in_nodes,
     etsd_connects_out_to_beam_peer, short_names_work_both_ways,
     wrong_cookie_refused_incoming, wrong_cookie_refused_outgoing,
     ten_beam_peers_at_once, epmd_lists_etsd_until_sigterm,
     simultaneous_connect_between_two_etsd_nodes_resolves,
     registers_again_when_epmd_restarts,
     cookie_file_is_read_and_checked_as_erl_does, unknown_option_exits_2_with_usage,
     epmd_names_client_lists_etsd_with_its_port,
     simultaneous_connect_between_beam_and_etsd_resolves, join_connects_out_at_start].

%% A failed case leaves nothing behind: start_etsd/1 kills its etsd when the
%% test process exits, and peers are linked to it.
end_per_testcase(_Case, _Config) ->
    ok.

%% ---- helpers ----

echo(Node, Term) ->
    {etsd_echo, Node} ! {self(), Term},
    receive Term -> ok
    after 5000 -> ct:fail({no_echo, Node})
    end.

%% A process on Peer that forwards everything it gets to To.
forwarder(Peer, To) ->
    peer:call(Peer, erlang, spawn, [fun() -> fwd_loop(To) end]).

fwd_loop(To) ->
    receive M -> To ! M, fwd_loop(To) end.

%% A forwarder for a peer without distribution to us: it replies over a
%% local queue the test polls through peer:call.
collector(Peer) ->
    peer:call(Peer, erlang, spawn, [fun() -> collect_loop([]) end]).

collect_loop(Acc) ->
    receive
        {get, From} -> From ! {got, lists:reverse(Acc)}, collect_loop(Acc);
        M -> collect_loop([M | Acc])
    end.

collected(Peer, Pid) ->
    peer:call(Peer, ?MODULE, ask_collector, [Pid]).

ask_collector(Pid) ->
    Pid ! {get, self()},
    receive {got, L} -> L after 5000 -> timeout end.

%% ---- cases ----

beam_connects_and_pings_longnames(Config) ->
    E = #{node := Node} = etsd_test_lib:start_etsd(#{config => Config, name => "hs_ping"}),
    pong = net_adm:ping(Node),
    echo(Node, {hello, self(), make_ref(), <<"bin">>}),
    etsd_test_lib:await_log(E, "nodeup \\(incoming\\)", 5000),
    0 = etsd_test_lib:stop_etsd(E).

etsd_is_hidden_in_nodes(Config) ->
    E = #{node := Node} = etsd_test_lib:start_etsd(#{config => Config, name => "hs_hidden"}),
    true = lists:member(Node, nodes(hidden)),
    true = lists:member(Node, nodes(connected)),
    false = lists:member(Node, nodes()),
    0 = etsd_test_lib:stop_etsd(E).

etsd_connects_out_to_beam_peer(Config) ->
    E = #{node := Node} = etsd_test_lib:start_etsd(#{config => Config, name => "hs_out"}),
    {ok, Peer, PNode} = etsd_test_lib:start_peer(etsd_test_lib:unique_name("hs_out_peer")),
    false = lists:member(Node, peer:call(Peer, erlang, nodes, [hidden])),
    %% etsd_echo sends to a pid on a node it has no connection to: it
    %% looks the node up in EPMD and connects, as BEAM does.
    Fwd = forwarder(Peer, self()),
    echo_via(Node, Fwd, {out, 1}),
    true = lists:member(Node, peer:call(Peer, erlang, nodes, [hidden])),
    etsd_test_lib:await_log(E, atom_to_list(PNode) ++ ": nodeup \\(outgoing\\)", 5000),
    peer:stop(Peer),
    0 = etsd_test_lib:stop_etsd(E).

echo_via(Node, Fwd, Term) ->
    {etsd_echo, Node} ! {Fwd, Term},
    receive Term -> ok
    after 5000 -> ct:fail({no_echo_via, Fwd})
    end.

short_names_work_both_ways(Config) ->
    {ok, Host} = inet:gethostname(),
    Cookie = atom_to_list(erlang:get_cookie()),
    E = #{node := Node} = etsd_test_lib:start_etsd(#{config => Config, name => "hs_sname",
                                                    sname => true, wait => epmd}),
    ShortHost = hd(string:split(Host, ".")),
    [_, ShortHost] = string:split(atom_to_list(Node), "@"),
    Start = fun(N) ->
                    {ok, P, PN} = peer:start_link(
                                    #{name => etsd_test_lib:unique_name(N), host => ShortHost,
                                      longnames => false, connection => standard_io,
                                      args => ["-setcookie", Cookie, "-pa" | code:get_path()]}),
                    {P, PN}
            end,
    {P1, _} = Start("hs_sp1"),
    {P2, P2Node} = Start("hs_sp2"),
    %% Incoming: P1 pings etsd by its short name.
    pong = peer:call(P1, net_adm, ping, [Node]),
    true = lists:member(Node, peer:call(P1, erlang, nodes, [hidden])),
    %% Outgoing: P1 asks etsd to echo to a collector on P2, which etsd has
    %% no connection to: etsd resolves the short host name and connects.
    C2 = collector(P2),
    Tag = make_ref(),
    ok = peer:call(P1, erlang, apply, [fun() -> {etsd_echo, Node} ! {C2, {sname, Tag}}, ok end, []]),
    etsd_test_lib:await(fun() -> collected(P2, C2) =:= [{sname, Tag}] end, 5000),
    true = lists:member(Node, peer:call(P2, erlang, nodes, [hidden])),
    etsd_test_lib:await_log(E, atom_to_list(P2Node) ++ ": nodeup \\(outgoing\\)", 5000),
    peer:stop(P1),
    peer:stop(P2),
    0 = etsd_test_lib:stop_etsd(E).

wrong_cookie_refused_incoming(Config) ->
    E = #{node := Node} = etsd_test_lib:start_etsd(#{config => Config, name => "hs_badin",
                                                    cookie => 'not_the_cookie',
                                                    wait => epmd}),
    %% A fresh peer with the test run's cookie knocks, so no connection
    %% state left in this test node by earlier cases takes part.
    {ok, Knocker, _} = peer:start_link(#{name => etsd_test_lib:unique_name("hs_badin_knock"),
                                         host => "127.0.0.1", longnames => true,
                                         connection => standard_io,
                                         args => ["-setcookie", atom_to_list(erlang:get_cookie())]}),
    pang = peer:call(Knocker, net_adm, ping, [Node]),
    false = lists:member(Node, peer:call(Knocker, erlang, nodes, [connected])),
    etsd_test_lib:await_log(E, "handshake failed: wrong cookie", 5000),
    peer:stop(Knocker),
    %% etsd is still up and serves a node with the right cookie.
    {ok, Peer, _} = peer:start_link(#{name => etsd_test_lib:unique_name("hs_badin_ok"),
                                      host => "127.0.0.1", longnames => true,
                                      connection => standard_io,
                                      args => ["-setcookie", "not_the_cookie"]}),
    pong = peer:call(Peer, net_adm, ping, [Node]),
    peer:stop(Peer),
    0 = etsd_test_lib:stop_etsd(E).

wrong_cookie_refused_outgoing(Config) ->
    E = #{node := Node} = etsd_test_lib:start_etsd(#{config => Config, name => "hs_badout"}),
    %% A BEAM peer with another cookie, driven over stdio only.
    {ok, Peer, PNode} = peer:start_link(
                          #{name => etsd_test_lib:unique_name("hs_badout_peer"),
                            host => "127.0.0.1", longnames => true,
                            connection => standard_io,
                            args => ["-setcookie", "other_cookie", "-pa" | code:get_path()]}),
    C = collector(Peer),
    {etsd_echo, Node} ! {C, never_arrives},
    etsd_test_lib:await_log(E, atom_to_list(PNode) ++ ": handshake failed", 8000),
    [] = collected(Peer, C),
    false = lists:member(Node, peer:call(Peer, erlang, nodes, [hidden])),
    echo(Node, still_up),
    peer:stop(Peer),
    0 = etsd_test_lib:stop_etsd(E).

ten_beam_peers_at_once(Config) ->
    E = #{node := Node} = etsd_test_lib:start_etsd(#{config => Config, name => "hs_ten"}),
    Self = self(),
    Names = [etsd_test_lib:unique_name("hs_ten_" ++ integer_to_list(I)) || I <- lists:seq(1, 10)],
    %% Start the peers in parallel; peer:start (no link) so the starter may exit.
    [spawn(fun() ->
                   {ok, P, _} = peer:start(#{name => N, host => "127.0.0.1", longnames => true,
                                             connection => standard_io,
                                             args => ["-setcookie",
                                                      atom_to_list(erlang:get_cookie()),
                                                      "-pa" | code:get_path()]}),
                   Self ! {started, P}
           end) || N <- Names],
    Peers = [receive {started, P} -> P after 30000 -> ct:fail(peer_start) end || _ <- Names],
    %% All at once: each pings etsd and does an echo round trip.
    [spawn(fun() ->
                   Res = peer:call(P, erlang, apply,
                                   [fun() ->
                                            pong = net_adm:ping(Node),
                                            T = {self(), make_ref()},
                                            {etsd_echo, Node} ! {self(), T},
                                            receive T -> ok after 5000 -> timeout end
                                    end, []], 15000),
                   Self ! {done, P, Res}
           end) || P <- Peers],
    [receive {done, P, R} -> ok = R after 20000 -> ct:fail({no_answer, P}) end || P <- Peers],
    Ups = length(binary:matches(etsd_test_lib:etsd_log(E), <<"nodeup (incoming)">>)),
    true = Ups >= 11,
    [peer:stop(P) || P <- Peers],
    echo(Node, after_ten),
    0 = etsd_test_lib:stop_etsd(E).

epmd_lists_etsd_until_sigterm(Config) ->
    E = #{name := Name} = etsd_test_lib:start_etsd(#{config => Config, name => "hs_epmd"}),
    {ok, Names} = net_adm:names("127.0.0.1"),
    true = lists:keymember(Name, 1, Names),
    0 = etsd_test_lib:stop_etsd(E),
    {ok, After} = net_adm:names("127.0.0.1"),
    false = lists:keymember(Name, 1, After),
    etsd_test_lib:await_log(E, "SIGTERM: shutting down", 1000).

%% Two etsd nodes told at the same moment to send to each other: both
%% connect at once, and BEAM's rule (the greater name keeps its own
%% attempt) leaves one connection that carries both messages.
simultaneous_connect_between_two_etsd_nodes_resolves(Config) ->
    lists:foreach(
      fun(Round) ->
              P = "hs_simul" ++ integer_to_list(Round),
              E1 = #{node := N1} = etsd_test_lib:start_etsd(#{config => Config, name => P ++ "a"}),
              E2 = #{node := N2} = etsd_test_lib:start_etsd(#{config => Config, name => P ++ "b"}),
              M1 = new_test_mailbox(N1),
              M2 = new_test_mailbox(N2),
              Self = self(),
              %% Each mailbox forwards {Self, Tag} to the other; that one
              %% echoes Tag back here.
              M1 ! {M2, {Self, {from1, Round}}},
              M2 ! {M1, {Self, {from2, Round}}},
              receive {from1, Round} -> ok after 10000 -> ct:fail({lost, from1, Round}) end,
              receive {from2, Round} -> ok after 10000 -> ct:fail({lost, from2, Round}) end,
              %% And they stay connected: another exchange goes through.
              M1 ! {M2, {Self, again}},
              receive again -> ok after 5000 -> ct:fail(no_second_exchange) end,
              0 = etsd_test_lib:stop_etsd(E1),
              0 = etsd_test_lib:stop_etsd(E2)
      end, lists:seq(1, 3)).

new_test_mailbox(Node) ->
    {etsd_echo, Node} ! {new_mailbox, self(), undefined},
    receive {mailbox, Pid} -> Pid after 5000 -> ct:fail(no_mailbox) end.

%% The registration lives as long as its socket: when EPMD restarts, etsd
%% registers again. A private EPMD on its own port, so others are unaffected.
registers_again_when_epmd_restarts(Config) ->
    EpmdPort = integer_to_list(20000 + erlang:unique_integer([positive]) rem 20000),
    Epmd = os:find_executable("epmd"),
    StartEpmd = fun() ->
                        open_port({spawn_executable, Epmd},
                                  [{args, ["-port", EpmdPort]}, exit_status])
                end,
    Names = fun() -> os:cmd(Epmd ++ " -port " ++ EpmdPort ++ " -names") end,
    P1 = StartEpmd(),
    E = #{name := Name} =
        etsd_test_lib:start_etsd(#{config => Config, name => "hs_epmd_restart",
                                   env => [{"ERL_EPMD_PORT", EpmdPort}], wait => false}),
    Listed = fun() -> string:find(Names(), "name " ++ Name ++ " at port") =/= nomatch end,
    etsd_test_lib:await(Listed, 10000, first_registration),
    {os_pid, OsPid1} = erlang:port_info(P1, os_pid),
    os:cmd("kill -9 " ++ integer_to_list(OsPid1)),
    etsd_test_lib:await(fun() -> not Listed() end, 5000, epmd_gone),
    P2 = StartEpmd(),
    etsd_test_lib:await(Listed, 10000, registered_again),
    etsd_test_lib:await_log(E, "registration connection lost", 1000),
    0 = etsd_test_lib:stop_etsd(E),
    {os_pid, OsPid2} = erlang:port_info(P2, os_pid),
    os:cmd("kill -9 " ++ integer_to_list(OsPid2)),
    ok.

cookie_file_is_read_and_checked_as_erl_does(Config) ->
    Dir = ?config(priv_dir, Config),
    File = filename:join(Dir, "cookie_" ++ integer_to_list(erlang:unique_integer([positive]))),
    ok = file:write_file(File, atom_to_list(erlang:get_cookie()) ++ "\n"),
    %% Readable by others: refused as erl refuses it.
    ok = file:change_mode(File, 8#644),
    {2, Out} = etsd_test_lib:run(etsd_test_lib:etsd_path(),
                                 ["--name", "hs_ck_bad@127.0.0.1", "--cookie-file", File]),
    match = re:run(Out, "must be accessible by owner only", [{capture, none}]),
    %% Owner only: the node starts with that cookie and answers a ping.
    ok = file:change_mode(File, 8#400),
    E = etsd_test_lib:start_etsd(#{config => Config, name => "hs_ck", cookie => none,
                                   args => ["--cookie-file", File]}),
    0 = etsd_test_lib:stop_etsd(E).

unknown_option_exits_2_with_usage(_Config) ->
    {2, Out} = etsd_test_lib:run(etsd_test_lib:etsd_path(),
                                 ["--name", "x@127.0.0.1", "--no-such-option", "1"]),
    match = re:run(Out, "unknown option '--no-such-option'", [{capture, none}]),
    match = re:run(Out, "usage: etsd", [{capture, none}]).

%% etsd's own NAMES client (through test/tools/epmd_names.c) sees what
%% net_adm:names/1 sees for this etsd. EPMD is shared with other tests, so
%% only this node's line is compared.
epmd_names_client_lists_etsd_with_its_port(Config) ->
    E = #{name := Name} = etsd_test_lib:start_etsd(#{config => Config, name => "hs_names"}),
    {ok, Names} = net_adm:names("127.0.0.1"),
    {Name, Port} = lists:keyfind(Name, 1, Names),
    {0, Out} = etsd_test_lib:run(etsd_test_lib:tool_path("epmd_names"), []),
    Lines = string:split(binary_to_list(Out), "\n", all),
    true = lists:member(Name ++ " " ++ integer_to_list(Port), Lines),
    0 = etsd_test_lib:stop_etsd(E).

%% etsd and a BEAM peer connect to each other at the same moment (both
%% sends are scheduled for one instant on the shared clock). Whichever way
%% BEAM's rule resolves it, both messages arrive and one connection stays.
simultaneous_connect_between_beam_and_etsd_resolves(Config) ->
    %% "aa_..." sorts before the peers' names (BEAM keeps its attempt),
    %% "zz_..." after them (etsd keeps its own).
    simultaneous_with_beam(Config, "aa_hs_bsim"),
    simultaneous_with_beam(Config, "zz_hs_bsim").

simultaneous_with_beam(Config, EtsdName) ->
    E = #{node := Node} = etsd_test_lib:start_etsd(#{config => Config, name => EtsdName}),
    Self = self(),
    lists:foreach(
      fun(Round) ->
              {ok, Peer, PNode} = etsd_test_lib:start_peer(
                                    etsd_test_lib:unique_name("hs_bsim_p")),
              Fwd = forwarder(Peer, Self),
              Mb = new_test_mailbox(Node),
              At = erlang:system_time(millisecond) + 300,
              ok = peer:call(Peer, erlang, apply,
                             [fun() ->
                                      spawn(fun() ->
                                                    wait_until(At),
                                                    {etsd_echo, Node} ! {Fwd, {from_beam, Round}}
                                            end),
                                      ok
                              end, []]),
              wait_until(At),
              Mb ! {Fwd, {from_etsd, Round}},
              receive {from_beam, Round} -> ok after 10000 -> ct:fail({lost, from_beam, Round}) end,
              receive {from_etsd, Round} -> ok after 10000 -> ct:fail({lost, from_etsd, Round}) end,
              true = lists:member(Node, peer:call(Peer, erlang, nodes, [hidden])),
              echo_via(Node, Fwd, {still_connected, Round}),
              peer:stop(Peer),
              etsd_test_lib:await_log(E, atom_to_list(PNode) ++ ": nodeup", 1000)
      end, lists:seq(1, 3)),
    0 = etsd_test_lib:stop_etsd(E).

%% Waits for an instant on the system clock shared by both nodes: the
%% point is to make two nodes act at once, not to wait for a result.
wait_until(At) ->
    case At - erlang:system_time(millisecond) of
        D when D > 0 -> receive after D -> ok end;
        _ -> ok
    end.

%% --join: etsd looks the node up in EPMD and connects by itself.
join_connects_out_at_start(Config) ->
    {ok, Peer, PNode} = etsd_test_lib:start_peer(etsd_test_lib:unique_name("hs_join_p")),
    E = #{node := Node} = etsd_test_lib:start_etsd(#{config => Config, name => "hs_join",
                                                    args => ["--join", atom_to_list(PNode)],
                                                    wait => epmd}),
    etsd_test_lib:await(fun() -> lists:member(Node, peer:call(Peer, erlang, nodes, [hidden])) end,
                        10000, joined),
    etsd_test_lib:await_log(E, atom_to_list(PNode) ++ ": nodeup \\(outgoing\\)", 5000),
    peer:stop(Peer),
    0 = etsd_test_lib:stop_etsd(E).
