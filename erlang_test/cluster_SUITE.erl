%% cluster_SUITE: how etsd finds and keeps the cluster's nodes: --join
%% nodes that come up late, nodes learned from nodes(), DNS names.
-module(cluster_SUITE).
-include_lib("common_test/include/ct.hrl").
-export([suite/0, all/0, end_per_testcase/2]).
-export([join_node_started_later_is_connected/1,
         nodes_of_a_join_node_are_connected/1,
         dns_name_records_become_nodes/1,
         dropped_node_is_reconnected/1]).

suite() -> [{timetrap, {seconds, 60}}].

all() ->
    [join_node_started_later_is_connected,
     nodes_of_a_join_node_are_connected,
     dns_name_records_become_nodes,
     dropped_node_is_reconnected].

end_per_testcase(_, Config) ->
    [catch etsd_test_lib:stop_etsd(E) || E <- get_list(etsds)],
    [seed_test_lib:stop_node(N) || N <- get_list(peers)],
    erase(),
    Config.

get_list(K) -> case get(K) of undefined -> []; L -> L end.
push(K, V) -> put(K, [V | get_list(K)]).

seed_node(Name) -> seed_node(Name, []).

seed_node(Name, Opts) ->
    N = seed_test_lib:start_seed_node(Name, [{sync_delay_ms, 300} | Opts]),
    push(peers, N),
    element(2, N).

etsd(Config, Args) ->
    E = etsd_test_lib:start_etsd(#{config => Config, name => "etsd_cl_" ++ os:getpid(),
                                   args => ["--sync-delay-ms", "300" | Args]}),
    push(etsds, E),
    E.

%% etsd is connected to Node: Node sees it as a hidden node.
connected(E, Node) ->
    lists:member(maps:get(node, E), erpc:call(Node, erlang, nodes, [hidden])).

join_node_started_later_is_connected(Config) ->
    Name = seed_test_lib:unique("cllate"),
    Node = list_to_atom(Name ++ "@127.0.0.1"),
    E = etsd(Config, ["--join", atom_to_list(Node)]),
    %% The node's data exists from its Syncer's start: etsd may connect
    %% while the app is still starting, and must still find scope and table.
    A = seed_node(Name, [{preload, [{<<"late@example.com">>, 1}]}]),
    A = Node,
    etsd_test_lib:await(fun() -> connected(E, A) end, 15000, connected),
    etsd_test_lib:await(fun() ->
        erpc:call(maps:get(node, E), ets, lookup, [users, <<"late@example.com">>]) =/= []
    end, 10000, pulled).

nodes_of_a_join_node_are_connected(Config) ->
    A = seed_node(seed_test_lib:unique("cla")),
    B = seed_node(seed_test_lib:unique("clb")),
    seed_test_lib:connect(A, B),
    E = etsd(Config, ["--join", atom_to_list(A)]),
    etsd_test_lib:await(fun() -> connected(E, B) end, 10000, learned_b),
    %% etsd:info/0 lists the nodes it keeps and the ones running the PubSub.
    etsd_test_lib:await(fun() ->
        #{peers := Peers, replication := #{pubsub_nodes := PS}} =
            erpc:call(maps:get(node, E), etsd, info, []),
        {A, up} =:= lists:keyfind(A, 1, Peers) andalso
            {B, up} =:= lists:keyfind(B, 1, Peers) andalso
            lists:sort(PS) =:= lists:sort([A, B])
    end, 10000, info_peers),
    %% A node that joins the cluster later is found by polling nodes().
    C = seed_node(seed_test_lib:unique("clc")),
    seed_test_lib:connect(C, A),
    etsd_test_lib:await(fun() -> connected(E, C) end, 15000, learned_c).

dns_name_records_become_nodes(Config) ->
    Base = seed_test_lib:unique("cldns"),
    A = seed_node(Base),
    %% localhost resolves to 127.0.0.1 (and maybe ::1, where nobody listens).
    E = etsd(Config, ["--dns", "localhost", "--basename", Base]),
    etsd_test_lib:await(fun() -> connected(E, A) end, 15000, dns_node).

dropped_node_is_reconnected(Config) ->
    A = seed_node(seed_test_lib:unique("cldrop")),
    E = etsd(Config, ["--join", atom_to_list(A)]),
    EN = maps:get(node, E),
    etsd_test_lib:await(fun() -> connected(E, A) end, 10000, connected),
    true = erpc:call(A, erlang, disconnect_node, [EN]),
    false = connected(E, A),
    etsd_test_lib:await(fun() -> connected(E, A) end, 15000, reconnected).
