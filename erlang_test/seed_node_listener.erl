%% seed_node_listener: the seed app's NodeListener. On every nodeup (visible
%% nodes only: hidden nodes such as etsd raise none), after sync_delay_ms it
%% broadcasts {sync, ets:tab2list(users), node()} on "node_up".
-module(seed_node_listener).
-behaviour(gen_server).

-export([start_link/0, init/1, handle_call/3, handle_cast/2, handle_info/2]).

start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

init([]) ->
    ok = net_kernel:monitor_nodes(true),
    {ok, #{}}.

handle_call(_, _From, S) -> {reply, ok, S}.
handle_cast(_, S) -> {noreply, S}.

handle_info({nodeup, Node}, S) ->
    erlang:send_after(seed_app:config(sync_delay_ms), self(), {sync, Node}),
    {noreply, S};
handle_info({sync, _Node}, S) ->
    ok = phoenix_pubsub_pg2:broadcast(
           seed_app:config(pubsub), <<"node_up">>,
           {sync, ets:tab2list(seed_app:config(table)), node()}),
    {noreply, S};
handle_info(_, S) ->
    {noreply, S}.
