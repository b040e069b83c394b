%% seed_repo: the seed app's Repo. save/1 writes the local table only;
%% save_and_emit/1 also tells every other node, as
%% `:ets.insert(:users, user)` then
%% `broadcast_from!(MyApp.PubSub, self(), "new", {:new, user})`.
-module(seed_repo).

-export([save/1, save_and_emit/1, all/0, lookup/1]).

save(User) when is_tuple(User) ->
    true = ets:insert(seed_app:config(table), User),
    ok.

save_and_emit(User) when is_tuple(User) ->
    ok = save(User),
    ok = phoenix_pubsub_pg2:broadcast_from(seed_app:config(pubsub), self(),
                                           <<"new">>, {new, User}).

all() -> ets:tab2list(seed_app:config(table)).

lookup(Key) -> ets:lookup(seed_app:config(table), Key).
