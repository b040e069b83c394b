%% phoenix_pubsub_pg2: an Erlang stand-in for Phoenix.PubSub 2.x with its
%% PG2 adapter, wire-identical to the real thing: the same pg scope, group
%% names, registered workers and {forward_to_local, Topic, Msg, Dispatcher}
%% messages, so a node that talks to this talks to Phoenix.
%%
%% Layout, as in phoenix_pubsub 2.x:
%%   scope    pg:start_link('Elixir.Phoenix.PubSub') (the phoenix_pubsub
%%            application starts it once per node; start_scope/0 here)
%%   Name     the local subscriber registry (Elixir's Registry there)
%%   'Elixir.<Server>.Adapter_supervisor'  one worker per listener group,
%%            registered locally under the group name, joined to that group
%% Groups: 'Elixir.<Server>.Adapter', then '..._2' up to '..._N' for
%% pool_size N.
-module(phoenix_pubsub_pg2).
%% Supervisor and gen_server callbacks share init/1 (see below).

-export([start_scope/0, scope_child_spec/0, start_link/2, child_spec/2,
         subscribe/2, unsubscribe/2,
         broadcast/3, broadcast_from/4, direct_broadcast/4,
         local_broadcast/3, local_dispatch/4, dispatch/3,
         adapter_name/1, groups/2, scope/0]).
%% Processes of the tree.
-export([init/1, start_registry/1, start_worker/2, start_adapter/3,
         handle_call/3, handle_cast/2, handle_info/2]).

-define(SCOPE, 'Elixir.Phoenix.PubSub').
%% Phoenix's default dispatcher is the Phoenix.PubSub module itself.
-define(DISPATCHER, 'Elixir.Phoenix.PubSub').

scope() -> ?SCOPE.

%% The pg scope Phoenix.PubSub's application runs on every node.
start_scope() -> pg:start_link(?SCOPE).

scope_child_spec() ->
    #{id => pg, start => {pg, start_link, [?SCOPE]}}.

%% 'Elixir.MyApp.PubSub' -> 'Elixir.MyApp.PubSub.Adapter' (Module.concat).
adapter_name(Name) -> list_to_atom(atom_to_list(Name) ++ ".Adapter").

%% Listener groups for a pool: the adapter name first (phoenix_pubsub 2.0
%% compatibility), then AdapterName_2 .. AdapterName_N.
groups(AdapterName, PoolSize) when PoolSize >= 1 ->
    [AdapterName | [list_to_atom(atom_to_list(AdapterName) ++ "_" ++
                                 integer_to_list(I))
                    || I <- lists:seq(2, PoolSize)]].

child_spec(Name, Opts) ->
    #{id => Name, start => {?MODULE, start_link, [Name, Opts]},
      type => supervisor}.

%% Phoenix.PubSub.Supervisor: registry, then adapter, rest_for_one.
%% Opts: [{pool_size, N}].
start_link(Name, Opts) ->
    SupName = list_to_atom(atom_to_list(Name) ++ ".Supervisor"),
    supervisor:start_link({local, SupName}, ?MODULE, {pubsub, Name, Opts}).

init({pubsub, Name, Opts}) ->
    PoolSize = proplists:get_value(pool_size, Opts, 1),
    Adapter = adapter_name(Name),
    persistent_term:put({?MODULE, Name}, Adapter),
    Children =
        [#{id => registry, start => {?MODULE, start_registry, [Name]}},
         #{id => Adapter, type => supervisor,
           start => {?MODULE, start_adapter, [Name, Adapter, PoolSize]}}],
    {ok, {#{strategy => rest_for_one, intensity => 3, period => 5}, Children}};
init({adapter, Name, Adapter, PoolSize}) ->
    Groups = groups(Adapter, PoolSize),
    %% Phoenix keeps the broadcast groups in persistent_term under the
    %% adapter name and picks one by phash2(self(), N).
    persistent_term:put(Adapter, list_to_tuple(Groups)),
    Children = [#{id => G, start => {?MODULE, start_worker, [Name, G]}}
                || G <- Groups],
    {ok, {#{strategy => one_for_one, intensity => 3, period => 5}, Children}};
init({registry, Name}) ->
    Tab = ets:new(?MODULE, [duplicate_bag, protected, {read_concurrency, true}]),
    persistent_term:put({?MODULE, registry, Name}, Tab),
    {ok, {registry, Tab, #{}}};
init({worker, Name, Group}) ->
    ok = pg:join(?SCOPE, Group, self()),
    {ok, {worker, Name}}.

start_adapter(Name, Adapter, PoolSize) ->
    SupName = list_to_atom(atom_to_list(Adapter) ++ "_supervisor"),
    supervisor:start_link({local, SupName}, ?MODULE,
                          {adapter, Name, Adapter, PoolSize}).

%% ---- Phoenix.PubSub API ------------------------------------------------

subscribe(Name, Topic) when is_binary(Topic) ->
    gen_server:call(Name, {subscribe, self(), Topic}).

unsubscribe(Name, Topic) when is_binary(Topic) ->
    gen_server:call(Name, {unsubscribe, self(), Topic}).

%% Remote nodes first (the adapter), then local subscribers.
broadcast(Name, Topic, Msg) ->
    case adapter_broadcast(Name, Topic, Msg, ?DISPATCHER) of
        ok -> dispatch_local(Name, none, Topic, Msg), ok;
        Error -> Error
    end.

broadcast_from(Name, From, Topic, Msg) when is_pid(From) ->
    case adapter_broadcast(Name, Topic, Msg, ?DISPATCHER) of
        ok -> dispatch_local(Name, From, Topic, Msg), ok;
        Error -> Error
    end.

%% Phoenix.PubSub.direct_broadcast/4: one node only.
direct_broadcast(Node, Name, Topic, Msg) when Node =:= node() ->
    local_broadcast(Name, Topic, Msg);
direct_broadcast(Node, Name, Topic, Msg) ->
    Adapter = persistent_term:get({?MODULE, Name}),
    erlang:send({group(Adapter), Node},
                {forward_to_local, Topic, Msg, ?DISPATCHER}),
    ok.

local_broadcast(Name, Topic, Msg) ->
    dispatch_local(Name, none, Topic, Msg), ok.

%% What a worker does with {forward_to_local, ...}.
local_dispatch(Name, Topic, Msg, Dispatcher) ->
    Entries = registry_lookup(Name, Topic),
    case Dispatcher of
        ?DISPATCHER -> dispatch(Entries, none, Msg);
        Mod -> Mod:dispatch(Entries, none, Msg)
    end,
    ok.

%% Phoenix.PubSub.dispatch/3, the default dispatcher.
dispatch(Entries, From, Msg) ->
    _ = [Pid ! Msg || {Pid, _} <- Entries, Pid =/= From],
    ok.

dispatch_local(Name, From, Topic, Msg) ->
    dispatch(registry_lookup(Name, Topic), From, Msg).

%% Phoenix.PubSub.PG2.broadcast/4: every member of one group that is not
%% on this node gets the forward_to_local tuple.
adapter_broadcast(Name, Topic, Msg, Dispatcher) ->
    Adapter = persistent_term:get({?MODULE, Name}),
    Fwd = {forward_to_local, Topic, Msg, Dispatcher},
    Me = node(),
    _ = [Pid ! Fwd || Pid <- pg:get_members(?SCOPE, group(Adapter)),
                      node(Pid) =/= Me],
    ok.

group(Adapter) ->
    Groups = persistent_term:get(Adapter),
    element(erlang:phash2(self(), tuple_size(Groups)) + 1, Groups).

%% ---- Local registry (Elixir's duplicate-key Registry) -------------------
%% Both the registry and the workers are gen_servers of this module; init/1
%% tells them from the supervisors by the shape of its argument.

start_registry(Name) ->
    gen_server:start_link({local, Name}, ?MODULE, {registry, Name}, []).

registry_lookup(Name, Topic) ->
    Tab = persistent_term:get({?MODULE, registry, Name}),
    [{Pid, []} || {_, Pid} <- ets:lookup(Tab, Topic)].

%% ---- Phoenix.PubSub.PG2Worker -------------------------------------------

start_worker(Name, Group) ->
    gen_server:start_link({local, Group}, ?MODULE, {worker, Name, Group}, []).

handle_call({subscribe, Pid, Topic}, _From, {registry, Tab, Mons}) ->
    Mons1 = case Mons of
                #{Pid := _} -> Mons;
                _ -> Mons#{Pid => erlang:monitor(process, Pid)}
            end,
    true = ets:insert(Tab, {Topic, Pid}),
    {reply, ok, {registry, Tab, Mons1}};
handle_call({unsubscribe, Pid, Topic}, _From, {registry, Tab, _} = S) ->
    true = ets:delete_object(Tab, {Topic, Pid}),
    {reply, ok, S};
handle_call(_, _From, S) ->
    {reply, {error, unknown_call}, S}.

handle_cast(_, S) -> {noreply, S}.

handle_info({'DOWN', _, process, Pid, _}, {registry, Tab, Mons}) ->
    true = ets:match_delete(Tab, {'_', Pid}),
    {noreply, {registry, Tab, maps:remove(Pid, Mons)}};
handle_info({forward_to_local, Topic, Msg, Dispatcher}, {worker, Name} = S) ->
    local_dispatch(Name, Topic, Msg, Dispatcher),
    {noreply, S};
%% Every other message is ignored, as PG2Worker's catch-all handle_info.
handle_info(_, S) ->
    {noreply, S}.
