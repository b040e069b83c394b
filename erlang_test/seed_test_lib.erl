%% seed_test_lib: BEAM peers running the seed app port (seed_app), for the
%% suites that check the fixtures and etsd's replication against them.
-module(seed_test_lib).

-export([unique/1, start_seed_node/2, start_seed_node/3, stop_node/1,
         connect/2, users/1, save/2, save_and_emit/2, members/2,
         scope_and_syncer/1]).

%% A node name no other test on the shared EPMD uses, even one run by
%% another test VM at the same time (unique_integer restarts per VM).
unique(Prefix) ->
    lists:flatten(io_lib:format("~s_~s_~b", [Prefix, os:getpid(),
                                             erlang:unique_integer([positive])])).

%% Starts a peer named Name@127.0.0.1 and the seed app on it with Opts
%% (seed_app options). Returns {Peer, Node}.
start_seed_node(Name, Opts) -> start_seed_node(Name, Opts, []).

start_seed_node(Name, Opts, ExtraArgs) ->
    {ok, Peer, Node} = etsd_test_lib:start_peer(Name, ExtraArgs),
    {ok, _} = erpc:call(Node, seed_app, start, [Opts]),
    {Peer, Node}.

stop_node({Peer, _Node}) ->
    catch peer:stop(Peer),
    ok.

connect(Node, Other) ->
    true = erpc:call(Node, net_kernel, connect_node, [Other]).

users(Node) -> lists:sort(erpc:call(Node, seed_repo, all, [])).

save(Node, User) -> ok = erpc:call(Node, seed_repo, save, [User]).

save_and_emit(Node, User) -> ok = erpc:call(Node, seed_repo, save_and_emit, [User]).

%% pg members of Group as seen from Node.
members(Node, Group) ->
    lists:sort(erpc:call(Node, pg, get_members, ['Elixir.Phoenix.PubSub', Group])).

%% The pids a test must leave alive: the pg scope and the Syncer.
scope_and_syncer(Node) ->
    {erpc:call(Node, erlang, whereis, ['Elixir.Phoenix.PubSub']),
     erpc:call(Node, erlang, whereis, [seed_syncer])}.
