%% seed_app: an Erlang port of the seed app etsd joins (DESIGN.md): the
%% Phoenix.PubSub pg scope, the PubSub server (PG2 adapter), NodeListener and
%% Syncer, supervised in that order.
%%
%% Options: {pubsub, Name} (default 'Elixir.MyApp.PubSub'), {pool_size, N}
%% (1), {sync_delay_ms, Ms} (3000, the seed's delay), {preload, Users}
%% (Syncer inserts and broadcasts them at start), {table, users}.
-module(seed_app).
-behaviour(supervisor).

-export([start/0, start/1, start_link/1, stop/0, config/1, init/1]).

-define(DEFAULTS, #{pubsub => 'Elixir.MyApp.PubSub', pool_size => 1,
                    sync_delay_ms => 3000, preload => false, table => users}).

%% For rpc: starts the tree unlinked from the calling process.
start() -> start([]).

start(Opts) ->
    case start_link(Opts) of
        {ok, Pid} -> unlink(Pid), {ok, Pid};
        Other -> Other
    end.

start_link(Opts) ->
    Cfg = maps:merge(?DEFAULTS, maps:from_list(Opts)),
    persistent_term:put(?MODULE, Cfg),
    supervisor:start_link({local, ?MODULE}, ?MODULE, Cfg).

stop() ->
    case whereis(?MODULE) of
        undefined -> ok;
        Pid ->
            Ref = monitor(process, Pid),
            exit(Pid, shutdown),
            receive {'DOWN', Ref, _, _, _} -> ok end
    end.

config(Key) -> maps:get(Key, persistent_term:get(?MODULE, ?DEFAULTS)).

init(#{pubsub := PubSub, pool_size := Pool}) ->
    Children =
        [phoenix_pubsub_pg2:scope_child_spec(),
         phoenix_pubsub_pg2:child_spec(PubSub, [{pool_size, Pool}]),
         #{id => seed_node_listener, start => {seed_node_listener, start_link, []}},
         #{id => seed_syncer, start => {seed_syncer, start_link, []}}],
    {ok, {#{strategy => one_for_one, intensity => 5, period => 5}, Children}}.
