%% seed_syncer: the seed app's Syncer. Owns ETS users (set, public,
%% named_table, keypos 1), subscribes to "new" and "node_up" and inserts
%% whatever arrives. With a preload it inserts that data at start and
%% broadcasts it on "node_up".
-module(seed_syncer).
-behaviour(gen_server).

-export([start_link/0, init/1, handle_call/3, handle_cast/2, handle_info/2]).

start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

init([]) ->
    Tab = seed_app:config(table),
    PubSub = seed_app:config(pubsub),
    Tab = ets:new(Tab, [set, public, named_table, {keypos, 1}]),
    ok = phoenix_pubsub_pg2:subscribe(PubSub, <<"new">>),
    ok = phoenix_pubsub_pg2:subscribe(PubSub, <<"node_up">>),
    case seed_app:config(preload) of
        Users when is_list(Users), Users =/= [] ->
            true = ets:insert(Tab, Users),
            ok = phoenix_pubsub_pg2:broadcast(PubSub, <<"node_up">>,
                                              {sync, Users, node()});
        _ ->
            ok
    end,
    {ok, Tab}.

handle_call(_, _From, S) -> {reply, ok, S}.
handle_cast(_, S) -> {noreply, S}.

%% The seed article is inconsistent about the sync shape; accept all three.
handle_info({new, User}, Tab) ->
    true = ets:insert(Tab, User),
    {noreply, Tab};
handle_info({sync, Table}, Tab) when is_list(Table) ->
    true = ets:insert(Tab, Table),
    {noreply, Tab};
handle_info({sync, Table, _Node}, Tab) when is_list(Table) ->
    true = ets:insert(Tab, Table),
    {noreply, Tab};
handle_info({sync, Table, _Node, _}, Tab) when is_list(Table) ->
    true = ets:insert(Tab, Table),
    {noreply, Tab};
handle_info(_, Tab) ->
    {noreply, Tab}.
