%% etsd_ets_gen: random :ets call sequences (failing calls included) for
%% the differential rpc suite and the rpc benchmark, and the normalisation
%% that makes results of a set table comparable across two nodes whose
%% hash order differs.
-module(etsd_ets_gen).

-export([ops/3, run/4, normalize/5, key/0, object/0, await_release/1, without_lines/1]).

%% N random calls {Fun, Args} on table Tab, from seed Seed (an integer).
ops(Seed, N, Tab) ->
    _ = rand:seed(exsss, {Seed, Seed * 7 + 1, Seed * 13 + 2}),
    [op(Tab) || _ <- lists:seq(1, N)].

%% Runs {F, A} as ets:F(A...) on Node through Mode (erpc | rpc | block_call)
%% and returns the outcome as a comparable term.
run(erpc, Node, F, A) ->
    try {ok, erpc:call(Node, ets, F, A, 10000)}
    catch Class:Reason -> {Class, Reason}
    end;
run(rpc, Node, F, A) ->
    {ok, rpc:call(Node, ets, F, A, 10000)};
run(block_call, Node, F, A) ->
    {ok, rpc:block_call(Node, ets, F, A, 10000)}.

%% Result normalisation for order-dependent answers. Mode and Node are
%% used to ask the node a follow-up question (is the key returned by
%% first/next a member?).
normalize(_Mode, _Node, _Tab, F, {ok, R}) when F =:= tab2list; F =:= match;
                                             F =:= match_object; F =:= select ->
    {ok, sort_if_list(R)};
normalize(Mode, Node, Tab, F, {ok, K}) when F =:= first; F =:= last ->
    case K of
        '$end_of_table' -> {ok, K};
        {badrpc, _} -> {ok, K};
        _ -> {ok, {key_in_table, run(Mode, Node, member, [Tab, K])}}
    end;
%% next/prev of a set table: the following key in hash order, or the end
normalize(Mode, Node, Tab, F, {ok, K}) when F =:= next; F =:= prev ->
    case K of
        '$end_of_table' -> {ok, key_or_end};
        {badrpc, _} -> {ok, K};
        _ -> case run(Mode, Node, member, [Tab, K]) of
                 {ok, true} -> {ok, key_or_end};
                 Other -> {ok, {not_a_key, K, Other}}
             end
    end;
normalize(_Mode, _Node, Tab, all, {ok, L}) when is_list(L) ->
    {ok, {has_table, lists:member(Tab, L)}};
%% BEAM answers a tid; etsd, whose tables are known by name, the name.
normalize(_Mode, _Node, Tab, whereis, {ok, R}) when is_reference(R); R =:= Tab ->
    {ok, tid};
normalize(_Mode, _Node, _Tab, info, {ok, L}) when is_list(L) ->
    {ok, [lists:keyfind(I, 1, L) || I <- [name, size, keypos, type, named_table]]};
normalize(_Mode, _Node, _Tab, _F, R) ->
    R.

%% Waits until etsd follows the term semantics of this node's release,
%% learned from the nodes it is connected to (the caller's among them).
await_release(E) ->
    Rel = list_to_integer(erlang:system_info(otp_release)),
    etsd_test_lib:await(fun() -> maps:get(otp_release, rpc:call(E, etsd, info, [])) =:= Rel end,
                        10000, {otp_release, Rel}).

%% T with the line of every stack frame's location left out: ets.erl's
%% lines differ between releases and patch levels (README), the rest of
%% an exception is compared exactly.
without_lines([{file, F}, {line, L}]) when is_list(F), is_integer(L) ->
    [{file, F}, {line, any}];
without_lines(T) when is_tuple(T) -> list_to_tuple(without_lines(tuple_to_list(T)));
without_lines([H | Tl]) -> [without_lines(H) | without_lines(Tl)];
without_lines(X) -> X.

%% A total order under =:= ({2} and {2.0} are == but not =:=).
sort_if_list(L) when is_list(L) ->
    [X || {X, _} <- lists:sort([{X, term_to_binary(X, [deterministic])} || X <- L])];
sort_if_list(X) -> X.

%% ---- Generation -------------------------------------------------------

pick(L) -> lists:nth(rand:uniform(length(L)), L).

%% A small key domain, so that most calls hit an existing object, with the
%% traps of term equality: 1 and 1.0, "a" and <<"a">>, a bignum, a map,
%% 0.0 and -0.0 (one key before OTP 27, two after).
key() ->
    pick([1, 2, 3, 1.0, 2.0, -5, 3.5, a, b, c, "a", <<"a">>, {k, 1}, [1, 2],
          #{x => 1}, 12345678901234567890, <<>>, [], {}, 0.0, minus_zero()]).

%% Built from its bytes: a compiler may fold the literal -0.0 into 0.0.
minus_zero() -> binary_to_term(<<131, 70, 1:1, 0:63>>).

value() ->
    case rand:uniform(6) of
        1 -> rand:uniform(100) - 50;
        2 -> pick([x, y, true, undefined]);
        3 -> <<"v", (integer_to_binary(rand:uniform(9)))/binary>>;
        4 -> {pick([p, q]), rand:uniform(5)};
        5 -> [rand:uniform(3)];
        6 -> rand:uniform(1000)
    end.

%% A tuple object with the key first, arity 1 to 4; counters are integers
%% often enough for update_counter to succeed.
object() -> object(key()).

object(K) ->
    list_to_tuple([K | [case rand:uniform(3) of
                            1 -> value();
                            _ -> rand:uniform(20)
                        end || _ <- lists:seq(1, rand:uniform(4) - 1)]]).

bad_table() -> pick([nosuch_table, 1, "tab"]).

table(Tab) ->
    case rand:uniform(25) of
        1 -> bad_table();
        _ -> Tab
    end.

pos() -> pick([1, 2, 2, 3, 3, 4, 5, 0, -1]).

counter_op() ->
    case rand:uniform(6) of
        1 -> rand:uniform(10) - 3;
        2 -> {pos(), rand:uniform(10) - 3};
        3 -> {pos(), rand:uniform(10), 15, 0};
        4 -> [{2, 1}, {3, -1}];
        5 -> {2, x};
        6 -> [{2, 1} | bad]
    end.

element_op() ->
    case rand:uniform(4) of
        1 -> {pos(), value()};
        2 -> [{2, value()}, {3, value()}];
        3 -> [{pos(), value()}];
        4 -> pick([{2}, foo, [{2, x} | y]])
    end.

pattern() ->
    pick(['_', '$1', {'$1', '_'}, {'_', '$1'}, {'$1', '$2'}, {'$1', '$2', '_'},
          {'_', '_', '_', '_'}, {a, '$1'}, {'$1', 1}, {1.0, '_'}, {'$1', '$1'},
          {<<"a">>, '$1'}, {'_', {p, '$1'}}, {'$1', '_', '$2'}]).

match_spec() ->
    pick([[{'_', [], ['$_']}],
          [{{'$1', '$2'}, [{is_integer, '$2'}, {'>', '$2', 5}], ['$1']}],
          [{{'$1', '_'}, [{is_atom, '$1'}], [true]}],
          [{{'$1', '$2'}, [], [['$2', '$1']]}],
          [{{'$1', '$2', '$3'}, [{'=:=', '$2', '$3'}], ['$$']}],
          [{{'$1', '$2'}, [{'orelse', {'==', '$1', 1}, {is_binary, '$1'}}], [{{'$2', '$1'}}]}],
          [{{'$1', '$2'}, [{'<', {'+', '$2', 1}, 10}], [true]}],
          [{'$1', [], ['$1']}, {{'$1', '_'}, [], ['$1']}],
          [{{'$1', '_'}, [{is_tuple, '$1'}], [{element, 1, '$1'}]}],
          [],
          bad_spec,
          [{'_', [{bad_guard}], [true]}]]).

%% select_count and select_delete count only bodies that are true.
true_spec() ->
    pick([[{'_', [], [true]}],
          [{{'$1', '$2'}, [{is_integer, '$2'}, {'>', '$2', 5}], [true]}],
          [{{'$1', '_'}, [{is_atom, '$1'}], [true]}],
          [{{'$1', '$2', '_'}, [], [true]}],
          [{{'$1', '_'}, [], [false]}],
          bad_spec]).

info_item() ->
    pick([size, keypos, type, named_table, name, bogus, 17]).

op(Tab) ->
    T = table(Tab),
    case rand:uniform(100) of
        N when N =< 22 -> {insert, [T, object()]};
        N when N =< 26 -> {insert, [T, [object() || _ <- lists:seq(1, rand:uniform(4) - 1)]]};
        N when N =< 27 -> {insert, [T, pick([foo, {}, [{a} | b], [{b}, 7]])]};
        N when N =< 31 -> {insert_new, [T, pick([object(), [object(), object()], {}])]};
        N when N =< 41 -> {lookup, [T, key()]};
        N when N =< 44 -> {lookup_element, [T, key(), pos()]};
        N when N =< 47 -> {member, [T, key()]};
        N when N =< 51 -> {delete, [T, key()]};
        N when N =< 53 -> {delete_object, [T, object()]};
        N when N =< 54 -> {delete_all_objects, [pick([T, T, T, T, T, T, T, T, T, nosuch_table])]};
        N when N =< 57 -> {take, [T, key()]};
        N when N =< 61 -> {update_element, [T, key(), element_op()]};
        N when N =< 67 -> {update_counter, [T, key(), counter_op()]};
        N when N =< 70 -> K = key(), {update_counter, [T, K, counter_op(), {K, 0, 0}]};
        N when N =< 72 -> {tab2list, [T]};
        N when N =< 74 -> {info, [T, info_item()]};
        N when N =< 75 -> {info, [T]};
        N when N =< 77 -> {pick([first, last]), [T]};
        N when N =< 80 -> {pick([next, prev]), [T, key()]};
        N when N =< 84 -> {pick([match, match_object]), [T, pattern()]};
        N when N =< 88 -> {select, [T, match_spec()]};
        N when N =< 91 -> {select_count, [T, true_spec()]};
        N when N =< 93 -> {select_delete, [T, true_spec()]};
        N when N =< 94 -> {all, []};
        N when N =< 95 -> {whereis, [pick([Tab, nosuch_table, 1])]};
        N when N =< 96 -> {delete, [pick([nosuch_table, 1])]};
        N when N =< 97 -> {lookup, [T]};
        N when N =< 98 -> {no_such_function, [T, key()]};
        _ -> {match, [T, pattern(), 0]}
    end.
